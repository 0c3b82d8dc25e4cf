//! `kerp-perf generate`: loads one of the thresholds file's data sizes as books of real-looking companies.
//!
//! What flows through it: for each company, a seeded random generator makes users, the default chart of accounts
//! extended to the size's account count, departments, partners with valid business numbers, draft tax invoices and
//! `vouchers_per_month × months` approved two-line vouchers. They go into Postgres with COPY, in one transaction per
//! company, together with the outbox rows a posting would have queued (the master-data events, then one
//! `VoucherPosted` per voucher carrying consecutive `company_seq`s). ClickHouse is never written here: the relay
//! publishes those outbox rows to Kafka and stream-workers folds them, exactly as for postings through the API, so a
//! load also measures the relay and the fold. The generator waits until every company's fold watermark reaches its
//! last sequence, then writes `<out_dir>/manifest-<size>-<seed>.json` with the companies and each stage's time.
//!
//! The books are a function of the size and the seed: ids, numbers, dates, amounts, names and business numbers are the
//! same on every run. Only the timestamps (`created_at`, the events' `posted_at`) are the time of the load, because the
//! freshness the pipeline reports is measured from them.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kerp_core::chart::{AccountType, DEFAULT_CHART};
use kerp_core::voucher::{voucher_number, VoucherType};
use kerp_schemas::{
    AccountState, AccountsChanged, CompanyChanged, DepartmentState, DepartmentsChanged, InvoiceChanged, PartnerState, PartnersChanged,
    VoucherLine, VoucherPosted,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::thresholds::{DataSize, Thresholds};

/// A stage shorter than this, in seconds, did no work in this run (its rows were already loaded), so no rate is printed.
const STAGE_SECONDS_TIMED_MIN: f64 = 0.5;
/// Departments every generated company has (the thresholds file does not size them).
const DEPARTMENTS: [&str; 10] =
    ["경영지원팀", "영업1팀", "영업2팀", "생산팀", "구매팀", "연구개발팀", "재무팀", "인사팀", "마케팅팀", "물류팀"];
/// The last month of every size's books. A fixed month, not the current one, so that a seed gives the same dates on any
/// day; the books run back `months` from here.
const LAST_MONTH: (i32, u32) = (2026, 10);
/// Smallest and largest amount of a voucher, in won (the issue's range).
const AMOUNT_WON_MIN: i64 = 10_000;
const AMOUNT_WON_MAX: i64 = 10_000_000;
/// One draft tax invoice per this many vouchers of a month (at least one a month).
const VOUCHERS_PER_INVOICE: u32 = 50;
/// Vouchers written per COPY round. Bounds the memory a company's books take while they are written (about 3 KB per
/// voucher across its row, its lines and its outbox row) and sets how often the progress bar moves.
const COPY_CHUNK_VOUCHERS_MAX: usize = 5_000;
/// How long the generator waits for the pipeline to fold what it wrote before it gives up, in seconds.
const FOLD_WAIT_SECONDS_MAX: u64 = 4 * 3600;
/// How often the pipeline's progress is read while waiting, in milliseconds.
const POLL_INTERVAL_MS: u64 = 500;
/// How often a log (not a terminal) gets a progress line while the pipeline folds, in seconds.
const LOG_INTERVAL_S: u64 = 10;
/// Postgres connections the generator holds: one writes, one reads progress.
const POOL_CONNECTIONS_MAX: u32 = 2;

/// The data sizes of the thresholds file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Medium,
    Large,
    Xlarge,
}

impl Size {
    /// The size's name in the thresholds file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
            Size::Xlarge => "xlarge",
        }
    }
}

/// Arguments of `kerp-perf generate`.
#[derive(clap::Args, Clone, Debug)]
pub struct GenerateArgs {
    /// The data size, as in the thresholds file's `data_sizes`.
    #[arg(long, value_enum, default_value = "small")]
    pub size: Size,
    /// The seed: the same seed and size give the same books (ids, dates, amounts).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Load only this many companies of the size (the first N); all of them when absent.
    #[arg(long)]
    pub companies: Option<usize>,
    /// The thresholds file whose `data_sizes` are loaded.
    #[arg(long, env = "KERP_PERF_THRESHOLDS", default_value = "perf/thresholds.yaml")]
    pub thresholds: PathBuf,
    /// Postgres, where the books are written with COPY.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// The topic the outbox rows are addressed to (ingest-api's `VOUCHER_TOPIC`).
    #[arg(long, env = "VOUCHER_TOPIC", default_value = "kerp.vouchers.v1")]
    pub topic: String,
    /// ClickHouse, read (never written) to wait until the pipeline folded everything the generator wrote.
    #[command(flatten)]
    pub clickhouse: kerp_core::clickhouse::ClickHouseConfig,
    /// Where the manifest (companies, users, stage timings) is written.
    #[arg(long, default_value = "perf/data")]
    pub out_dir: PathBuf,
    /// Write Postgres and return without waiting for the pipeline to fold it.
    #[arg(long)]
    pub no_wait: bool,
}

/// One generated company.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GeneratedCompany {
    pub company_id: Uuid,
    pub admin_user_id: Uuid,
    pub name: String,
}

/// How long one stage took.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    /// Vouchers the stage carried (each has two lines).
    pub rows: u64,
    pub seconds: f64,
}

/// What `generate` wrote: `<out_dir>/manifest-<size>-<seed>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub size: Size,
    pub seed: u64,
    pub companies: Vec<GeneratedCompany>,
    pub vouchers: u64,
    pub lines: u64,
    pub stages: Vec<Stage>,
}

/// Generates the size unless its companies are already in Postgres; returns the manifest either way.
///
/// # Errors
/// A thresholds file without the size, database errors, or a pipeline that does not fold the books in
/// [`FOLD_WAIT_SECONDS_MAX`].
pub async fn ensure(args: &GenerateArgs) -> anyhow::Result<Manifest> {
    let thresholds = Thresholds::load(&args.thresholds)?;
    let spec =
        thresholds.data_sizes.get(args.size.as_str()).with_context(|| format!("no size {} in the thresholds", args.size.as_str()))?;
    let count = args.companies.unwrap_or(usize::MAX).min(spec.companies as usize);
    let plans: Vec<Plan> = (0..count).map(|i| Plan::new(args.size, args.seed, i)).collect();
    let pool =
        PgPoolOptions::new().max_connections(POOL_CONNECTIONS_MAX).connect(&args.database_url).await.context("connecting to Postgres")?;
    let ids: Vec<Uuid> = plans.iter().map(|p| p.company_id).collect();
    let present: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM companies WHERE id = ANY($1)").bind(&ids).fetch_all(&pool).await?.into_iter().collect();
    let missing: Vec<&Plan> = plans.iter().filter(|p| !present.contains(&p.company_id)).collect();
    let per_company = u64::from(spec.vouchers_per_month) * u64::from(spec.months);
    let mut stages = Vec::new();
    let started = Instant::now();
    let bars = MultiProgress::new();
    if missing.is_empty() {
        println!("{} companies of size {} (seed {}) are already loaded", plans.len(), args.size.as_str(), args.seed);
    } else {
        let target = per_company * missing.len() as u64;
        let bar = bars.add(bar(target, "postgres"));
        let now = Utc::now();
        let mut rows = 0;
        for (n, plan) in missing.iter().enumerate() {
            rows += write_company(&pool, &args.topic, plan, &spec, now, &bar).await?;
            if !bar_visible() {
                // Progress bars draw only on a terminal; a log gets a line per company instead.
                println!(
                    "postgres: company {} of {} written, {rows} vouchers in {:.1} s",
                    n + 1,
                    missing.len(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        bar.finish();
        stages.push(Stage {
            name: "postgres (COPY: master data, vouchers, lines, outbox)".into(),
            rows,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if !args.no_wait {
        let bar = bars.add(bar(per_company * plans.len() as u64, "pipeline"));
        let relay_s = wait_for_pipeline(&pool, &args.clickhouse, &ids, per_company, &bar, &mut stages, started).await?;
        bar.finish();
        if !missing.is_empty() {
            stages.push(Stage { name: "outbox drained by the relay".into(), rows: per_company * missing.len() as u64, seconds: relay_s });
        }
    }
    let manifest = Manifest {
        size: args.size,
        seed: args.seed,
        companies: plans
            .iter()
            .map(|p| GeneratedCompany { company_id: p.company_id, admin_user_id: p.admin_user_id, name: p.name.clone() })
            .collect(),
        vouchers: per_company * plans.len() as u64,
        lines: 2 * per_company * plans.len() as u64,
        stages,
    };
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let path = args.out_dir.join(format!("manifest-{}-{}.json", args.size.as_str(), args.seed));
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    for s in &manifest.stages {
        if s.seconds < STAGE_SECONDS_TIMED_MIN {
            // The data was there before this run (a rerun finds the companies loaded and folded): no rate to report.
            println!("{:<58} {:>9} vouchers: already done, not timed", s.name, s.rows);
            continue;
        }
        let per_s = s.rows as f64 / s.seconds;
        println!("{:<58} {:>9} vouchers {:>8.1} s {:>9.0} vouchers/s {:>9.0} lines/s", s.name, s.rows, s.seconds, per_s, 2.0 * per_s);
    }
    println!("manifest: {}", path.display());
    Ok(manifest)
}

/// `kerp-perf generate`.
///
/// # Errors
/// As [`ensure`].
pub async fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    ensure(args).await.map(|_| ())
}

/// Whether progress bars are drawn: only on a terminal (indicatif hides them otherwise).
fn bar_visible() -> bool {
    std::io::stderr().is_terminal()
}

fn bar(len: u64, name: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} vouchers ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(name.to_owned());
    bar
}

/// A company's identity, drawn first from its own seeded generator so that loading the first N companies of a size
/// gives the same N companies as loading all of them.
struct Plan {
    index: usize,
    company_id: Uuid,
    admin_user_id: Uuid,
    name: String,
    rng_seed: u64,
}

impl Plan {
    fn new(size: Size, seed: u64, index: usize) -> Plan {
        // SplitMix64's constants spread (size, seed, index) over the whole seed space, so neighbouring companies do
        // not get correlated streams.
        let mut x = seed ^ ((size as u64) << 56) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let rng_seed = x ^ (x >> 31);
        let mut rng = StdRng::seed_from_u64(rng_seed);
        Plan {
            index,
            company_id: uuid(&mut rng),
            admin_user_id: uuid(&mut rng),
            name: format!("Perf {} s{seed} #{index:03}", size.as_str()),
            rng_seed,
        }
    }
}

/// A version-4 UUID from the seeded generator.
fn uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

/// A version-7 UUID for a document dated `date`, its `n`th of the company: the time field is the date's midnight
/// plus `n` milliseconds, the rest comes from the seeded generator. ingest-api gives documents time-ordered ids
/// (`Uuid::now_v7`) so that new rows go to the right edge of the primary keys' indexes instead of a random page of
/// them; generated books get the same shape while staying a function of the seed. It draws the same 16 bytes as
/// [`uuid`], so every later draw, and thus the rest of the books, is what it was with random ids.
fn uuid_v7(rng: &mut StdRng, date: NaiveDate, n: i64) -> Uuid {
    let bytes: [u8; 16] = rng.gen();
    let midnight_ms = date.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis();
    let millis = u64::try_from(midnight_ms.saturating_add(n)).unwrap_or(0);
    let mut random = [0u8; 10];
    random.copy_from_slice(&bytes[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// A valid business registration number (its check digit is [`crate::demo::business_number`]'s): a first group of
/// 101 or more, a middle group and a serial that are not zero, as issued numbers have.
fn business_number(rng: &mut StdRng) -> String {
    let first: u64 = rng.gen_range(101..=999);
    let middle: u64 = rng.gen_range(1..=99);
    let serial: u64 = rng.gen_range(1..=9999);
    crate::demo::business_number(first * 1_000_000 + middle * 10_000 + serial)
}

#[derive(Clone)]
struct Account {
    id: Uuid,
    code: String,
    name: String,
    name_en: String,
    account_type: AccountType,
}

/// The default chart, then extra accounts up to `count`: codes `c9nn` of the classes in turn, which the default chart
/// leaves free, so the extended chart still reads as a Korean one (the first digit is the class).
fn chart(rng: &mut StdRng, count: usize) -> Vec<Account> {
    let mut accounts: Vec<Account> = DEFAULT_CHART
        .iter()
        .map(|a| Account {
            id: uuid(rng),
            code: a.code.to_owned(),
            name: a.name_ko.to_owned(),
            name_en: a.name_en.to_owned(),
            account_type: a.account_type(),
        })
        .collect();
    let taken: HashSet<String> = accounts.iter().map(|a| a.code.clone()).collect();
    let classes = [b'1', b'5', b'2', b'8', b'4', b'6', b'3', b'7'];
    let mut n = 0;
    while accounts.len() < count && n < 800 {
        let class = classes[n % classes.len()];
        let code = format!("{}9{:02}", char::from(class), n / classes.len());
        n += 1;
        if taken.contains(&code) {
            continue;
        }
        let account_type = AccountType::from_code(&code).unwrap_or(AccountType::Expense);
        accounts.push(Account {
            id: uuid(rng),
            name: format!("추가 계정 {code}"),
            name_en: format!("Extra account {code}"),
            code,
            account_type,
        });
    }
    accounts
}

struct Partner {
    id: Uuid,
    code: String,
    name: String,
    business_number: String,
    partner_type: &'static str,
    representative: String,
    address: String,
}

fn partners(rng: &mut StdRng, count: usize) -> Vec<Partner> {
    let mut numbers = HashSet::new();
    (1..=count)
        .map(|n| {
            let mut bn = business_number(rng);
            while !numbers.insert(bn.clone()) {
                bn = business_number(rng);
            }
            Partner {
                id: uuid(rng),
                code: format!("P{n:05}"),
                name: format!("(주)성능거래처{n:04}"),
                business_number: bn,
                partner_type: ["customer", "supplier", "both"][n % 3],
                representative: format!("대표{n}"),
                address: format!("서울특별시 중구 세종대로 {n}"),
            }
        })
        .collect()
}

/// COPY's text format: a tab between columns, `\N` for NULL, and backslash escapes in text.
struct CopyBuf(String);

impl CopyBuf {
    fn new() -> Self {
        CopyBuf(String::with_capacity(1 << 20))
    }
    fn text(&mut self, s: &str) -> &mut Self {
        self.sep();
        for c in s.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '\t' => self.0.push_str("\\t"),
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                c => self.0.push(c),
            }
        }
        self
    }
    fn val(&mut self, v: impl std::fmt::Display) -> &mut Self {
        self.sep();
        let _ = write!(self.0, "{v}");
        self
    }
    fn opt(&mut self, v: Option<impl std::fmt::Display>) -> &mut Self {
        match v {
            Some(v) => self.val(v),
            None => {
                self.sep();
                self.0.push_str("\\N");
                self
            }
        }
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.sep();
        // bytea's hex input `\x…`, whose backslash COPY's text format needs doubled.
        self.0.push_str("\\\\x");
        for byte in b {
            let _ = write!(self.0, "{byte:02x}");
        }
        self
    }
    fn ts(&mut self, t: DateTime<Utc>) -> &mut Self {
        self.val(t.format("%Y-%m-%d %H:%M:%S%.6f+00"))
    }
    fn sep(&mut self) {
        if !self.0.is_empty() && !self.0.ends_with('\n') {
            self.0.push('\t');
        }
    }
    fn end(&mut self) {
        self.0.push('\n');
    }
    async fn copy(&mut self, conn: &mut PgConnection, statement: &str) -> anyhow::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut copy = conn.copy_in_raw(statement).await.with_context(|| statement.to_owned())?;
        copy.send(std::mem::take(&mut self.0).into_bytes()).await?;
        copy.finish().await.with_context(|| statement.to_owned())?;
        Ok(())
    }
}

const COPY_OUTBOX: &str = "COPY outbox (company_id, topic, payload) FROM STDIN";
const COPY_VOUCHERS: &str = "COPY vouchers (id, company_id, voucher_number, voucher_date, voucher_type, description, status, total_debit, \
                             total_credit, created_by, created_at, company_seq, approved_at, approved_by, updated_at) FROM STDIN";
const COPY_LINES: &str =
    "COPY voucher_lines (voucher_id, line_no, company_id, account_id, partner_id, department_id, debit, credit, description) FROM STDIN";

fn days(date: NaiveDate) -> i32 {
    // `NaiveDate::default()` is 1970-01-01, the epoch of Avro's `date` logical type.
    i32::try_from(date.signed_duration_since(NaiveDate::default()).num_days()).unwrap_or(0)
}

/// The first day of each month of the books, oldest first.
fn months(count: u32) -> Vec<NaiveDate> {
    let (y, m) = LAST_MONTH;
    let last = i64::from(y) * 12 + i64::from(m) - 1;
    (0..i64::from(count))
        .rev()
        .filter_map(|back| {
            let k = last - back;
            NaiveDate::from_ymd_opt(i32::try_from(k.div_euclid(12)).ok()?, u32::try_from(k.rem_euclid(12)).ok()? + 1, 1)
        })
        .collect()
}

fn days_in_month(first: NaiveDate) -> u32 {
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.map_or(28, |n| u32::try_from(n.signed_duration_since(first).num_days()).unwrap_or(28))
}

/// Writes one company's books and their outbox rows in one transaction, so a failed load leaves no half company (and
/// `ensure` loads it again next time). Returns the vouchers written.
#[allow(clippy::too_many_lines)] // One straight pass over a company's tables, in the order their keys need.
async fn write_company(
    pool: &PgPool,
    topic: &str,
    plan: &Plan,
    spec: &DataSize,
    now: DateTime<Utc>,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let mut rng = StdRng::seed_from_u64(plan.rng_seed);
    // The identity draws come first, as in `Plan::new`.
    let (_, _) = (uuid(&mut rng), uuid(&mut rng));
    let company = plan.company_id;
    let company_bn = business_number(&mut rng);
    let users: Vec<(Uuid, &str)> = (0..spec.users.max(1))
        .map(|u| if u == 0 { (plan.admin_user_id, "admin") } else { (uuid(&mut rng), if u % 5 == 0 { "viewer" } else { "accountant" }) })
        .collect();
    let writers: Vec<Uuid> = users.iter().filter(|(_, r)| *r != "viewer").map(|(id, _)| *id).collect();
    let accounts = chart(&mut rng, spec.accounts as usize);
    let departments: Vec<(Uuid, String, &str)> =
        DEPARTMENTS.iter().enumerate().map(|(i, n)| (uuid(&mut rng), format!("D{:02}", i + 1), *n)).collect();
    let partners = partners(&mut rng, spec.partners as usize);
    let months = months(spec.months);
    let per_company = u64::from(spec.vouchers_per_month) * u64::from(spec.months);
    let changed_at = now.timestamp_micros();

    let mut tx = pool.begin().await?;
    let conn: &mut PgConnection = &mut tx;
    sqlx::query("INSERT INTO companies (id, name, business_number, event_seq, fiscal_start_month) VALUES ($1, $2, $3, $4, 1)")
        .bind(company)
        .bind(&plan.name)
        .bind(&company_bn)
        .bind(i64::try_from(per_company)?)
        .execute(&mut *conn)
        .await?;
    let mut b = CopyBuf::new();
    for (u, (id, role)) in users.iter().enumerate() {
        let email = format!("perf-{}-{u}@{}.perf.kerp.local", plan.index, company.simple());
        b.val(id).val(company).text(&email).text(&format!("성능시험 사용자 {u}")).text(role).end();
    }
    b.copy(conn, "COPY users (id, company_id, email, name, role) FROM STDIN").await?;
    for a in &accounts {
        b.val(a.id).val(company).text(&a.code).text(&a.name).text(&a.name_en).text(a.account_type.as_str()).end();
    }
    b.copy(conn, "COPY accounts (id, company_id, code, name, name_en, account_type) FROM STDIN").await?;
    for (id, code, name) in &departments {
        b.val(id).val(company).text(code).text(name).end();
    }
    b.copy(conn, "COPY departments (id, company_id, code, name) FROM STDIN").await?;
    for p in &partners {
        b.val(p.id)
            .val(company)
            .text(&p.code)
            .text(&p.name)
            .text(&p.business_number)
            .text(p.partner_type)
            .text(&p.representative)
            .text(&p.address)
            .end();
    }
    b.copy(conn, "COPY partners (id, company_id, code, name, business_number, partner_type, representative, address) FROM STDIN").await?;

    // The master-data events come first on the company's stream, as they would for a company set up through the API.
    let mut outbox = CopyBuf::new();
    let event = |outbox: &mut CopyBuf, payload: Vec<u8>| {
        outbox.val(company).text(topic).bytes(&payload).end();
    };
    let master = [
        kerp_schemas::encode_accounts_changed(&AccountsChanged {
            event_id: uuid(&mut rng),
            company_id: company,
            changed_at,
            accounts: accounts
                .iter()
                .map(|a| AccountState {
                    account_id: a.id,
                    code: a.code.clone(),
                    name: a.name.clone(),
                    account_type: a.account_type.as_str().into(),
                    is_active: true,
                })
                .collect(),
        })?,
        kerp_schemas::encode_company_changed(&CompanyChanged {
            event_id: uuid(&mut rng),
            company_id: company,
            changed_at,
            name: plan.name.clone(),
            business_number: Some(company_bn.clone()),
            fiscal_start_month: 1,
        })?,
        kerp_schemas::encode_departments_changed(&DepartmentsChanged {
            event_id: uuid(&mut rng),
            company_id: company,
            changed_at,
            departments: departments
                .iter()
                .map(|(id, code, name)| DepartmentState {
                    department_id: *id,
                    code: code.clone(),
                    name: (*name).to_owned(),
                    is_active: true,
                })
                .collect(),
        })?,
        kerp_schemas::encode_partners_changed(&PartnersChanged {
            event_id: uuid(&mut rng),
            company_id: company,
            changed_at,
            partners: partners
                .iter()
                .map(|p| PartnerState {
                    partner_id: p.id,
                    code: p.code.clone(),
                    name: p.name.clone(),
                    business_number: Some(p.business_number.clone()),
                    partner_type: p.partner_type.into(),
                    representative: p.representative.clone(),
                    address: p.address.clone(),
                    is_active: true,
                })
                .collect(),
        })?,
    ];
    for payload in master {
        event(&mut outbox, payload);
    }

    // Draft tax invoices: the end-of-day workload lists and issues them.
    let mut invoices = CopyBuf::new();
    let mut items = CopyBuf::new();
    for first in &months {
        for _ in 0..(spec.vouchers_per_month / VOUCHERS_PER_INVOICE).max(1) {
            let sales = rng.gen_bool(0.5);
            let candidates: Vec<&Partner> = partners
                .iter()
                .filter(|p| p.partner_type == "both" || p.partner_type == if sales { "customer" } else { "supplier" })
                .collect();
            let Some(partner) = candidates.get(rng.gen_range(0..candidates.len().max(1))) else { continue };
            let id = uuid(&mut rng);
            let date = first.with_day(rng.gen_range(1..=days_in_month(*first))).unwrap_or(*first);
            let supply: i64 = rng.gen_range(AMOUNT_WON_MIN..=AMOUNT_WON_MAX);
            let tax = supply / 10;
            let invoice_type = if sales { "sales" } else { "purchase" };
            invoices.val(id).val(company).text(invoice_type).text("taxable").val(partner.id).val(date).val(supply).val(tax);
            invoices.text("성능시험 세금계산서").text("draft").val(plan.admin_user_id).ts(now).ts(now).end();
            items.val(id).val(1).text("용역").val(1).val(supply).val(supply).end();
            event(
                &mut outbox,
                kerp_schemas::encode_invoice_changed(&InvoiceChanged {
                    event_id: uuid(&mut rng),
                    company_id: company,
                    changed_at,
                    invoice_id: id,
                    invoice_type: invoice_type.into(),
                    vat_type: "taxable".into(),
                    partner_id: partner.id,
                    invoice_date: days(date),
                    supply_amount: supply,
                    tax_amount: tax,
                    status: "draft".into(),
                    approval_number: None,
                    voucher_id: None,
                })?,
            );
        }
    }
    invoices
        .copy(
            conn,
            "COPY invoices (id, company_id, invoice_type, vat_type, partner_id, invoice_date, supply_amount, tax_amount, description, status, \
             created_by, created_at, updated_at) FROM STDIN",
        )
        .await?;
    items.copy(conn, "COPY invoice_items (invoice_id, line_no, description, quantity, unit_price, supply_amount) FROM STDIN").await?;
    outbox.copy(conn, COPY_OUTBOX).await?;

    // The vouchers, month by month in date order, so that numbers and sequences rise with the date as they would for
    // books entered day by day.
    let mut vouchers = CopyBuf::new();
    let mut lines = CopyBuf::new();
    let mut counters = CopyBuf::new();
    let mut seq: i64 = 0;
    let mut pending = 0;
    let mut rows = 0u64;
    for first in &months {
        let mut dates: Vec<NaiveDate> =
            (0..spec.vouchers_per_month).map(|_| first.with_day(rng.gen_range(1..=days_in_month(*first))).unwrap_or(*first)).collect();
        dates.sort_unstable();
        for (no, date) in (1u32..).zip(dates) {
            seq += 1;
            let id = uuid_v7(&mut rng, date, seq);
            let number = voucher_number(date, no);
            let amount: i64 = rng.gen_range(AMOUNT_WON_MIN..=AMOUNT_WON_MAX);
            let debit = &accounts[rng.gen_range(0..accounts.len())];
            let mut credit = &accounts[rng.gen_range(0..accounts.len())];
            while credit.id == debit.id {
                credit = &accounts[rng.gen_range(0..accounts.len())];
            }
            let partner = rng.gen_bool(0.5).then(|| partners.get(rng.gen_range(0..partners.len().max(1)))).flatten().map(|p| p.id);
            let department = rng.gen_bool(0.3).then(|| departments[rng.gen_range(0..departments.len())].0);
            let voucher_type = VoucherType::ALL[rng.gen_range(0..VoucherType::ALL.len())];
            let by = writers[rng.gen_range(0..writers.len())];
            // Creation order is sequence order, as the posting transaction's row lock makes it.
            let at = now + chrono::Duration::microseconds(seq);
            let description = format!("성능시험 전표 {number}");
            vouchers.val(id).val(company).text(&number).val(date).text(voucher_type.as_str()).text(&description).text("approved");
            vouchers.val(amount).val(amount).val(by).ts(at).val(seq).ts(at).val(by).ts(at).end();
            let sides = [(debit, amount, 0), (credit, 0, amount)];
            for (line_no, (account, dr, cr)) in (1..).zip(sides) {
                let partner = if line_no == 1 { partner } else { None };
                lines.val(id).val(line_no).val(company).val(account.id).opt(partner).opt(department).val(dr).val(cr).text("").end();
            }
            event(
                &mut outbox,
                kerp_schemas::encode_voucher_posted(&VoucherPosted {
                    event_id: uuid(&mut rng),
                    company_id: company,
                    company_seq: seq,
                    voucher_id: id,
                    voucher_number: number,
                    voucher_date: days(date),
                    voucher_type: voucher_type.as_str().into(),
                    status: "approved".into(),
                    description,
                    posted_at: at.timestamp_micros(),
                    lines: (1..)
                        .zip(sides)
                        .map(|(line_no, (account, dr, cr))| VoucherLine {
                            line_no,
                            account_id: account.id,
                            account_code: account.code.clone(),
                            account_name: account.name.clone(),
                            account_type: account.account_type.as_str().into(),
                            partner_id: if line_no == 1 { partner } else { None },
                            debit: dr,
                            credit: cr,
                            description: String::new(),
                            department_id: department,
                        })
                        .collect(),
                    reversal_of: None,
                })?,
            );
            pending += 1;
            if pending == COPY_CHUNK_VOUCHERS_MAX {
                rows += flush(conn, &mut vouchers, &mut lines, &mut outbox, pending).await?;
                bar.inc(pending as u64);
                pending = 0;
            }
        }
        counters.val(company).val(first).val(spec.vouchers_per_month).end();
    }
    rows += flush(conn, &mut vouchers, &mut lines, &mut outbox, pending).await?;
    bar.inc(pending as u64);
    counters.copy(conn, "COPY voucher_counters (company_id, period, last_no) FROM STDIN").await?;
    if seq != i64::try_from(per_company)? {
        bail!("generated {seq} vouchers for {company}, not {per_company}");
    }
    tx.commit().await?;
    Ok(rows)
}

/// Writes a chunk of vouchers, their lines and their events; returns the vouchers written.
async fn flush(
    conn: &mut PgConnection,
    vouchers: &mut CopyBuf,
    lines: &mut CopyBuf,
    outbox: &mut CopyBuf,
    count: usize,
) -> anyhow::Result<u64> {
    vouchers.copy(conn, COPY_VOUCHERS).await?;
    lines.copy(conn, COPY_LINES).await?;
    outbox.copy(conn, COPY_OUTBOX).await?;
    Ok(count as u64)
}

#[derive(clickhouse::Row, Deserialize)]
struct Folded {
    folded: u64,
}

/// Waits until the relay has drained the companies' outbox rows and the fold's watermark of every company reached its
/// last voucher's sequence. Adds the fold stage; returns the seconds until the outbox was drained.
async fn wait_for_pipeline(
    pool: &PgPool,
    clickhouse: &kerp_core::clickhouse::ClickHouseConfig,
    ids: &[Uuid],
    per_company: u64,
    bar: &ProgressBar,
    stages: &mut Vec<Stage>,
    started: Instant,
) -> anyhow::Result<f64> {
    let client = clickhouse.client();
    let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    // `least` caps each company at its own total, so a company folded past what this load wrote (postings through the
    // API afterwards) does not hide another that is behind.
    let sql = format!(
        "SELECT toUInt64(sum(least(s, {per_company}))) AS folded FROM
           (SELECT company_id, max(seq) AS s FROM fold_watermarks WHERE company_id IN ({}) GROUP BY company_id)",
        list.join(", ")
    );
    let target = per_company * ids.len() as u64;
    let mut drained_s = None;
    let mut last_line = Instant::now();
    loop {
        if drained_s.is_none() {
            let backlog: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE company_id = ANY($1)").bind(ids).fetch_one(pool).await?;
            if backlog == 0 {
                drained_s = Some(started.elapsed().as_secs_f64());
            }
        }
        let folded = client.query(&sql).fetch_optional::<Folded>().await?.map_or(0, |f| f.folded);
        bar.set_position(folded);
        if !bar_visible() && last_line.elapsed() >= Duration::from_secs(LOG_INTERVAL_S) {
            println!("pipeline: {folded} of {target} vouchers folded in {:.1} s", started.elapsed().as_secs_f64());
            last_line = Instant::now();
        }
        if folded >= target && drained_s.is_some() {
            stages.push(Stage {
                name: "folded into ClickHouse (relay → Kafka → stream-workers)".into(),
                rows: target,
                seconds: started.elapsed().as_secs_f64(),
            });
            return Ok(drained_s.unwrap_or_default());
        }
        if started.elapsed() > Duration::from_secs(FOLD_WAIT_SECONDS_MAX) {
            bail!("the pipeline folded {folded} of {target} vouchers in {FOLD_WAIT_SECONDS_MAX} s; are ingest-api's relay and stream-workers running?");
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_numbers_pass_the_check_digit() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let bn = business_number(&mut rng);
            assert_eq!(kerp_core::master::business_number(&bn).as_deref(), Ok(bn.as_str()));
        }
    }

    #[test]
    fn a_seed_gives_the_same_companies_and_books() {
        let a = Plan::new(Size::Large, 1, 7);
        let b = Plan::new(Size::Large, 1, 7);
        assert_eq!((a.company_id, a.admin_user_id, a.rng_seed), (b.company_id, b.admin_user_id, b.rng_seed));
        assert_ne!(a.company_id, Plan::new(Size::Large, 2, 7).company_id);
        assert_ne!(a.company_id, Plan::new(Size::Medium, 1, 7).company_id);
        assert_ne!(a.company_id, Plan::new(Size::Large, 1, 8).company_id);
        let chart_a = chart(&mut StdRng::seed_from_u64(a.rng_seed), 200);
        let chart_b = chart(&mut StdRng::seed_from_u64(b.rng_seed), 200);
        assert_eq!(
            chart_a.iter().map(|x| (x.id, x.code.clone())).collect::<Vec<_>>(),
            chart_b.iter().map(|x| (x.id, x.code.clone())).collect::<Vec<_>>()
        );
    }

    #[test]
    fn voucher_ids_sort_by_date_and_number_and_draw_what_random_ids_drew() {
        let day = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap_or_default();
        let next = NaiveDate::from_ymd_opt(2025, 3, 2).unwrap_or_default();
        let mut rng = StdRng::seed_from_u64(7);
        let ids: Vec<Uuid> = [(day, 1), (day, 2), (day, 3), (next, 4), (next, 5)].iter().map(|(d, n)| uuid_v7(&mut rng, *d, *n)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "an id sorted before an earlier one: {ids:?}");
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        let (secs, _) = ids[3].get_timestamp().map(|t| t.to_unix()).unwrap_or_default();
        assert_eq!(secs, 1_740_873_600, "the time field is not the date's midnight (2025-03-02T00:00:00Z)");
        // The same seed gives the same ids, and the draws after them are those the random ids left.
        let mut again = StdRng::seed_from_u64(7);
        assert_eq!(uuid_v7(&mut again, day, 1), ids[0]);
        let (mut a, mut b) = (StdRng::seed_from_u64(9), StdRng::seed_from_u64(9));
        let _ = (uuid_v7(&mut a, day, 1), uuid(&mut b));
        assert_eq!(a.gen::<u64>(), b.gen::<u64>());
    }

    #[test]
    fn the_chart_extends_to_the_size_with_unique_valid_codes() {
        for count in [100, 150, 200, 300] {
            let accounts = chart(&mut StdRng::seed_from_u64(1), count);
            assert_eq!(accounts.len(), count);
            let codes: HashSet<&str> = accounts.iter().map(|a| a.code.as_str()).collect();
            assert_eq!(codes.len(), count, "codes are unique");
            for a in &accounts {
                assert_eq!(AccountType::from_code(&a.code), Some(a.account_type), "{}", a.code);
            }
        }
    }

    #[test]
    fn months_end_at_the_anchor() {
        let m = months(24);
        assert_eq!(m.len(), 24);
        assert_eq!(m[0], NaiveDate::from_ymd_opt(2024, 11, 1).unwrap());
        assert_eq!(m[23], NaiveDate::from_ymd_opt(2026, 10, 1).unwrap());
        assert_eq!(days_in_month(NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()), 29);
        assert_eq!(days_in_month(NaiveDate::from_ymd_opt(2025, 12, 1).unwrap()), 31);
    }

    #[test]
    fn copy_text_escapes_what_the_format_reserves() {
        let mut b = CopyBuf::new();
        b.text("a\tb\\c\nd").opt(None::<i64>).bytes(&[0, 255]).end();
        assert_eq!(b.0, "a\\tb\\\\c\\nd\t\\N\t\\\\x00ff\n");
    }
}
