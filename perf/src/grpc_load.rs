//! `kerp-perf grpc-load`: a closed-model load on grpc-api. Concurrent workers, each on its own HTTP/2 connection with
//! the bearer token in `authorization` metadata, call one method after another for a fixed time:
//!
//! - `unary`: `VoucherService/CreateVoucher`, one balanced voucher per call;
//! - `bulk`: `VoucherService/CreateVouchers`, a client stream of `--batch` vouchers per call (lines/s is the measure);
//! - `reports`: `ReportService/TrialBalance` and `ReportService/AccountLedger` (the whole ledger stream), alternately;
//! - `all`: the three above, one after another, each for the full duration.
//!
//! Vouchers go without a `request_id` unless `--request-ids` is given, so they take grpc-api's group commit.
//!
//! Every call's latency is kept (no sampling, no outlier dropped) and sorted for p50/p95/p99; failures are counted by
//! gRPC code, and for `bulk` also each refused item by its code. The result is a [`GrpcLoadReport`]: a table on
//! stdout and JSON in `--out`, and what the perf runner gets from [`measure`] in-process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kerp_grpc::pb::kerp::v1 as pb;
use kerp_grpc::pb::kerp::v1::report_service_client::ReportServiceClient;
use kerp_grpc::pb::kerp::v1::voucher_service_client::VoucherServiceClient;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

/// Most concurrent workers: each holds a connection and a task, and beyond this a 2-core machine measures the
/// client, not the server.
pub const WORKERS_MAX: usize = 1_024;

/// Longest run of one mode, in seconds: a load harness, not a soak (the k6 scripts' SCALE is for that).
pub const LOAD_SECONDS_MAX: u64 = 3_600;

/// Most lines per voucher, the server's `LINES_MAX`.
pub const VOUCHER_LINES_MAX: usize = 1_000;

/// Seconds one call may take before the harness counts it as failed (`DEADLINE_EXCEEDED`), so a stuck server ends
/// the run instead of hanging it.
const CALL_SECONDS_MAX: u64 = 120;

/// Seconds to wait for a connection to grpc-api.
const CONNECT_SECONDS_MAX: u64 = 10;

/// Which calls a run makes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// CreateVoucher, one voucher per call.
    Unary,
    /// CreateVouchers, `--batch` vouchers per client stream.
    Bulk,
    /// TrialBalance and AccountLedger, alternately.
    Reports,
    /// unary, then bulk, then reports.
    All,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GrpcLoadArgs {
    /// grpc-api's URL (VoucherService and ReportService).
    #[arg(long, env = "GRPC_URL", default_value = "http://127.0.0.1:50051")]
    pub url: String,
    /// A bearer token of an accountant or admin (a viewer can run `reports` only); e.g. `$(compose/dev token)`.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub token: String,
    /// What to call.
    #[arg(long, env = "GRPC_LOAD_MODE", value_enum, default_value = "unary")]
    pub mode: Mode,
    /// Concurrent workers, each with its own connection and one call in flight (at most WORKERS_MAX = 1024).
    #[arg(long, env = "GRPC_LOAD_WORKERS", default_value_t = 8)]
    pub workers: usize,
    /// Seconds each mode runs; calls in flight at the end are finished and counted (at most LOAD_SECONDS_MAX = 3600).
    #[arg(long, env = "GRPC_LOAD_SECONDS", default_value_t = 10)]
    pub seconds: u64,
    /// Vouchers per CreateVouchers stream in `bulk` (at most the server's CREATE_VOUCHERS_ITEMS_MAX = 10,000).
    #[arg(long, env = "GRPC_LOAD_BATCH", default_value_t = 1_000)]
    pub batch: usize,
    /// Lines per voucher (2 to 1000): the first lines are debits, the last line credits their sum.
    #[arg(long, env = "GRPC_LOAD_LINES", default_value_t = 2)]
    pub lines: usize,
    /// The account debited, by code.
    #[arg(long, env = "GRPC_LOAD_DEBIT_CODE", default_value = "5212")]
    pub debit_code: String,
    /// The account credited, by code.
    #[arg(long, env = "GRPC_LOAD_CREDIT_CODE", default_value = "1101")]
    pub credit_code: String,
    /// The vouchers' date, YYYY-MM-DD, in an open period; today (UTC) when left out.
    #[arg(long, env = "GRPC_LOAD_DATE")]
    pub date: Option<String>,
    /// The reports' year; this year when left out.
    #[arg(long, env = "REPORT_YEAR")]
    pub year: Option<i32>,
    /// The trial balance's month; this month when left out.
    #[arg(long, env = "REPORT_MONTH")]
    pub month: Option<i32>,
    /// The account whose whole-year ledger `reports` streams, by code.
    #[arg(long, env = "GRPC_LOAD_LEDGER_CODE", default_value = "1101")]
    pub ledger_code: String,
    /// Also write the report as JSON to this file.
    #[arg(long, env = "GRPC_LOAD_OUT")]
    pub out: Option<PathBuf>,
    /// Send every voucher with a unique `request_id`. Keyed posts take the single path (their key, voucher and answer
    /// in one transaction of their own); unkeyed posts, the default, are group-committed in batches with whatever
    /// else is being posted, which is the throughput path.
    #[arg(long, env = "GRPC_LOAD_REQUEST_IDS")]
    pub request_ids: bool,
}

/// Latency percentiles of one method, in milliseconds, nearest-rank over every call (failed calls included: a
/// failure that took long is part of what a client waited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// What one method did during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodReport {
    /// `CreateVoucher`, `CreateVouchers`, `TrialBalance` or `AccountLedger`.
    pub method: String,
    /// Calls made, and those that ended OK.
    pub calls: u64,
    pub ok: u64,
    /// Failed calls by gRPC code name (e.g. `Unavailable`).
    pub errors: BTreeMap<String, u64>,
    /// Seconds from the first call to the end of the last.
    pub elapsed_seconds: f64,
    /// Calls per second (streams per second for CreateVouchers).
    pub rps: f64,
    pub latency_ms: LatencyMs,
    /// Vouchers posted and lines in them (voucher methods only).
    pub vouchers: u64,
    pub lines: u64,
    pub vouchers_per_second: Option<f64>,
    pub lines_per_second: Option<f64>,
    /// Bulk items refused inside OK streams, by gRPC code name.
    pub item_errors: BTreeMap<String, u64>,
    /// Ledger entries streamed (AccountLedger only).
    pub ledger_entries: u64,
}

/// The result of a run: its settings and one row per method called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpcLoadReport {
    pub url: String,
    pub mode: Mode,
    pub workers: usize,
    pub seconds: u64,
    pub batch: usize,
    pub lines_per_voucher: usize,
    /// Whether vouchers carried a `request_id` (the single path) or not (group commit).
    #[serde(default)]
    pub request_ids: bool,
    /// When the run started, RFC 3339.
    pub started_at: String,
    pub methods: Vec<MethodReport>,
}

impl GrpcLoadReport {
    /// Failed calls and refused bulk items over all methods.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.methods.iter().map(|m| m.errors.values().sum::<u64>() + m.item_errors.values().sum::<u64>()).sum()
    }

    /// The table `run` prints.
    #[must_use]
    pub fn table(&self) -> String {
        let mut s = format!(
            "grpc-load {:?} against {}: {} workers, {} s per mode, batch {}, {} lines per voucher, {}\n",
            self.mode,
            self.url,
            self.workers,
            self.seconds,
            self.batch,
            self.lines_per_voucher,
            if self.request_ids { "with request_ids (single path)" } else { "no request_ids (group commit)" }
        );
        s.push_str(&format!(
            "{:<15} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>11} {:>10}  errors\n",
            "method", "calls", "ok", "rps", "p50 ms", "p95 ms", "p99 ms", "max ms", "vouchers/s", "lines/s"
        ));
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        for m in &self.methods {
            let mut errors: Vec<String> = m.errors.iter().map(|(c, n)| format!("{c}: {n}")).collect();
            errors.extend(m.item_errors.iter().map(|(c, n)| format!("item {c}: {n}")));
            s.push_str(&format!(
                "{:<15} {:>8} {:>8} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>11} {:>10}  {}\n",
                m.method,
                m.calls,
                m.ok,
                m.rps,
                m.latency_ms.p50,
                m.latency_ms.p95,
                m.latency_ms.p99,
                m.latency_ms.max,
                opt(m.vouchers_per_second),
                opt(m.lines_per_second),
                if errors.is_empty() { "none".to_owned() } else { errors.join(", ") }
            ));
        }
        s
    }
}

/// Runs the load, prints the table, writes `--out`.
///
/// # Errors
/// Bad arguments, grpc-api out of reach, the output file cannot be written, or any call failed or item was refused
/// (after the table and the file, which count them by code).
pub async fn run(args: &GrpcLoadArgs) -> Result<()> {
    let report = measure(args).await?;
    print!("{}", report.table());
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", out.display()))?;
        println!("grpc-load: report written to {}", out.display());
    }
    // A run with failures exits 1, so a script or CI step cannot pass on a load that never reached the server.
    match report.failures() {
        0 => Ok(()),
        n => bail!("{n} failed calls and refused items (see the errors column)"),
    }
}

/// Runs the load and answers its report; the perf runner calls this in-process.
///
/// # Errors
/// Bad arguments or grpc-api out of reach. Failed calls are counted in the report, not errors.
pub async fn measure(args: &GrpcLoadArgs) -> Result<GrpcLoadReport> {
    check_args(args)?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let mut methods = Vec::new();
    let modes = match args.mode {
        Mode::All => vec![Mode::Unary, Mode::Bulk, Mode::Reports],
        m => vec![m],
    };
    for mode in modes {
        methods.extend(run_mode(args, mode).await?);
    }
    Ok(GrpcLoadReport {
        url: args.url.clone(),
        mode: args.mode,
        workers: args.workers,
        seconds: args.seconds,
        batch: args.batch,
        lines_per_voucher: args.lines,
        request_ids: args.request_ids,
        started_at,
        methods,
    })
}

fn check_args(args: &GrpcLoadArgs) -> Result<()> {
    if args.workers == 0 || args.workers > WORKERS_MAX {
        bail!("--workers must be 1 to {WORKERS_MAX}");
    }
    if args.seconds == 0 || args.seconds > LOAD_SECONDS_MAX {
        bail!("--seconds must be 1 to {LOAD_SECONDS_MAX}");
    }
    if args.batch == 0 || args.batch > kerp_grpc::CREATE_VOUCHERS_ITEMS_MAX {
        bail!("--batch must be 1 to {}", kerp_grpc::CREATE_VOUCHERS_ITEMS_MAX);
    }
    if !(2..=VOUCHER_LINES_MAX).contains(&args.lines) {
        bail!("--lines must be 2 to {VOUCHER_LINES_MAX}");
    }
    Ok(())
}

/// What one worker saw of one method.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    item_errors: BTreeMap<String, u64>,
    vouchers: u64,
    ledger_entries: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.item_errors {
            *self.item_errors.entry(k).or_default() += v;
        }
        self.vouchers += other.vouchers;
        self.ledger_entries += other.ledger_entries;
    }

    fn error(&mut self, code: tonic::Code) {
        *self.errors.entry(format!("{code:?}")).or_default() += 1;
    }
}

/// The per-worker tallies of one mode, by method name.
type Tallies = BTreeMap<&'static str, Tally>;

async fn run_mode(args: &GrpcLoadArgs, mode: Mode) -> Result<Vec<MethodReport>> {
    let endpoint = Endpoint::from_shared(args.url.clone())
        .context("--url")?
        .connect_timeout(Duration::from_secs(CONNECT_SECONDS_MAX))
        .timeout(Duration::from_secs(CALL_SECONDS_MAX));
    // Connections first, so the clock starts with every worker ready.
    let mut channels = Vec::with_capacity(args.workers);
    for _ in 0..args.workers {
        channels.push(endpoint.connect().await.with_context(|| format!("connecting to grpc-api at {}", args.url))?);
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, channel) in channels.into_iter().enumerate() {
        let w = Worker { args: args.clone(), channel, deadline, key_prefix: format!("grpc-load-{run_id}-{worker}") };
        tasks.spawn(async move {
            match mode {
                Mode::Unary => w.unary().await,
                Mode::Bulk => w.bulk().await,
                Mode::Reports => w.reports().await,
                Mode::All => unreachable!("`all` is split into its modes by `measure`"),
            }
        });
    }
    let mut tallies = Tallies::new();
    while let Some(done) = tasks.join_next().await {
        for (method, tally) in done.context("a load worker panicked")? {
            tallies.entry(method).or_default().merge(tally);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let lines = args.lines as u64;
    Ok(tallies.into_iter().map(|(method, t)| report(method, t, elapsed, lines)).collect())
}

fn report(method: &str, mut t: Tally, elapsed: f64, lines_per_voucher: u64) -> MethodReport {
    t.latencies.sort_unstable();
    let calls = t.latencies.len() as u64;
    let failed: u64 = t.errors.values().sum();
    let is_voucher = matches!(method, "CreateVoucher" | "CreateVouchers");
    let lines = t.vouchers * lines_per_voucher;
    MethodReport {
        method: method.to_owned(),
        calls,
        ok: calls - failed,
        errors: t.errors,
        elapsed_seconds: elapsed,
        rps: calls as f64 / elapsed,
        latency_ms: percentiles(&t.latencies),
        vouchers: t.vouchers,
        lines,
        vouchers_per_second: is_voucher.then(|| t.vouchers as f64 / elapsed),
        lines_per_second: is_voucher.then(|| lines as f64 / elapsed),
        item_errors: t.item_errors,
        ledger_entries: t.ledger_entries,
    }
}

/// Nearest-rank percentiles of sorted latencies.
fn percentiles(sorted: &[Duration]) -> LatencyMs {
    if sorted.is_empty() {
        return LatencyMs::default();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let rank = |p: f64| {
        // The smallest value with at least p% of the values at or below it.
        let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        ms(sorted[i.clamp(1, sorted.len()) - 1])
    };
    let total: f64 = sorted.iter().map(|d| ms(*d)).sum();
    LatencyMs { p50: rank(50.0), p95: rank(95.0), p99: rank(99.0), max: ms(sorted[sorted.len() - 1]), mean: total / sorted.len() as f64 }
}

/// One worker: its connection and what it sends.
struct Worker {
    args: GrpcLoadArgs,
    channel: Channel,
    deadline: Instant,
    /// Request ids are `<prefix>-<n>`: unique per run and worker, so nothing is replayed.
    key_prefix: String,
}

impl Worker {
    fn authed<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        // A token with characters metadata cannot carry fails every call with UNAUTHENTICATED, which the report shows.
        if let Ok(v) = format!("Bearer {}", self.args.token).parse() {
            req.metadata_mut().insert("authorization", v);
        }
        req
    }

    /// The n-th voucher's `request_id`: unique per run and worker with `--request-ids`, empty (none) without.
    fn request_id(&self, n: u64) -> String {
        if self.args.request_ids {
            format!("{}-{n}", self.key_prefix)
        } else {
            String::new()
        }
    }

    fn date(&self) -> String {
        self.args.date.clone().unwrap_or_else(|| chrono::Utc::now().date_naive().format("%Y-%m-%d").to_string())
    }

    /// A balanced voucher: `lines - 1` debits of `amount` won and one credit of their sum.
    fn voucher(&self, date: &str, n: u64) -> pb::VoucherInput {
        let amount = 10_000 + i64::try_from(n % 9_990_000).unwrap_or(0);
        let line = |code: &str, debit: i64, credit: i64| pb::LineInput {
            account_code: code.to_owned(),
            debit_amount: debit,
            credit_amount: credit,
            description: "grpc-load".to_owned(),
            ..Default::default()
        };
        let debits = self.args.lines - 1;
        let mut lines: Vec<pb::LineInput> = (0..debits).map(|_| line(&self.args.debit_code, amount, 0)).collect();
        lines.push(line(&self.args.credit_code, 0, amount * i64::try_from(debits).unwrap_or(1)));
        pb::VoucherInput {
            voucher_date: date.to_owned(),
            voucher_type: pb::VoucherType::General.into(),
            description: "kerp-perf grpc-load".to_owned(),
            status: pb::VoucherStatus::Unspecified.into(),
            lines,
        }
    }

    async fn unary(self) -> Tallies {
        let mut client = VoucherServiceClient::new(self.channel.clone()).max_decoding_message_size(kerp_grpc::RESPONSE_MESSAGE_BYTES_MAX);
        let (date, mut t, mut n) = (self.date(), Tally::default(), 0u64);
        while Instant::now() < self.deadline {
            n += 1;
            let req = pb::CreateVoucherRequest { request_id: self.request_id(n), voucher: Some(self.voucher(&date, n)) };
            let started = Instant::now();
            let result = client.create_voucher(self.authed(req)).await;
            t.latencies.push(started.elapsed());
            match result {
                Ok(_) => t.vouchers += 1,
                Err(status) => t.error(status.code()),
            }
        }
        BTreeMap::from([("CreateVoucher", t)])
    }

    async fn bulk(self) -> Tallies {
        let mut client = VoucherServiceClient::new(self.channel.clone()).max_decoding_message_size(kerp_grpc::RESPONSE_MESSAGE_BYTES_MAX);
        let (date, mut t, mut n) = (self.date(), Tally::default(), 0u64);
        while Instant::now() < self.deadline {
            // The batch is built before the clock starts, so the latency is the stream's, not the harness's.
            let items: Vec<pb::CreateVoucherRequest> = (0..self.args.batch)
                .map(|_| {
                    n += 1;
                    pb::CreateVoucherRequest { request_id: self.request_id(n), voucher: Some(self.voucher(&date, n)) }
                })
                .collect();
            let started = Instant::now();
            let result = client.create_vouchers(self.authed(futures::stream::iter(items))).await;
            t.latencies.push(started.elapsed());
            match result {
                Ok(res) => {
                    let res = res.into_inner();
                    t.vouchers += u64::from(res.created);
                    // A stream the server ended early left items unread: they are neither posted nor refused.
                    let read = u64::from(res.created) + u64::from(res.replayed) + u64::from(res.failed);
                    let unread = (self.args.batch as u64).saturating_sub(read);
                    if unread > 0 {
                        *t.item_errors.entry(format!("unread ({:?})", res.end())).or_default() += unread;
                    }
                    for r in res.results {
                        if let Some(pb::create_vouchers_result::Outcome::Error(e)) = r.outcome {
                            *t.item_errors.entry(format!("{:?}", tonic::Code::from_i32(e.code))).or_default() += 1;
                        }
                    }
                }
                Err(status) => t.error(status.code()),
            }
        }
        BTreeMap::from([("CreateVouchers", t)])
    }

    async fn reports(self) -> Tallies {
        let mut client = ReportServiceClient::new(self.channel.clone()).max_decoding_message_size(kerp_grpc::RESPONSE_MESSAGE_BYTES_MAX);
        let today = chrono::Utc::now().date_naive();
        let year = self.args.year.unwrap_or_else(|| chrono::Datelike::year(&today));
        let month = self.args.month.unwrap_or_else(|| i32::try_from(chrono::Datelike::month(&today)).unwrap_or(1));
        let (mut tb, mut ledger) = (Tally::default(), Tally::default());
        let mut turn = 0u64;
        while Instant::now() < self.deadline {
            turn += 1;
            let started = Instant::now();
            if turn % 2 == 1 {
                let req = pb::TrialBalanceRequest { year, month, ..Default::default() };
                let result = client.trial_balance(self.authed(req)).await;
                tb.latencies.push(started.elapsed());
                if let Err(status) = result {
                    tb.error(status.code());
                }
            } else {
                let req = pb::AccountLedgerRequest { account_code: self.args.ledger_code.clone(), year, ..Default::default() };
                let result = match client.account_ledger(self.authed(req)).await {
                    Ok(res) => drain_ledger(res.into_inner()).await,
                    Err(status) => Err(status),
                };
                ledger.latencies.push(started.elapsed());
                match result {
                    Ok(entries) => ledger.ledger_entries += entries,
                    Err(status) => ledger.error(status.code()),
                }
            }
        }
        BTreeMap::from([("TrialBalance", tb), ("AccountLedger", ledger)])
    }
}

/// Reads a ledger stream to its end; answers the footer's entry count.
async fn drain_ledger(mut stream: tonic::Streaming<pb::AccountLedgerResponse>) -> Result<u64, tonic::Status> {
    let mut entries = 0;
    while let Some(msg) = stream.message().await? {
        if let Some(pb::account_ledger_response::Part::Footer(f)) = msg.part {
            entries = f.entry_count;
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_over_every_value() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = percentiles(&sorted);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert!((p.mean - 50.5).abs() < 1e-9);
        let one = percentiles(&[Duration::from_millis(7)]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(percentiles(&[]), LatencyMs::default());
    }

    #[test]
    fn a_report_counts_failures_and_rates() {
        let mut t = Tally { latencies: vec![Duration::from_millis(2); 10], vouchers: 8, ..Tally::default() };
        t.error(tonic::Code::Unavailable);
        t.error(tonic::Code::Unavailable);
        let r = report("CreateVoucher", t, 2.0, 2);
        assert_eq!((r.calls, r.ok, r.lines), (10, 8, 16));
        assert_eq!(r.errors.get("Unavailable"), Some(&2));
        assert_eq!((r.rps, r.lines_per_second), (5.0, Some(8.0)));
    }

    #[test]
    fn the_report_round_trips_as_json() {
        let report = GrpcLoadReport {
            url: "http://127.0.0.1:50051".into(),
            mode: Mode::Bulk,
            workers: 2,
            seconds: 1,
            batch: 10,
            lines_per_voucher: 2,
            request_ids: false,
            started_at: "2026-01-01T00:00:00Z".into(),
            methods: vec![report("CreateVouchers", Tally::default(), 1.0, 2)],
        };
        let json = serde_json::to_string(&report).expect("json");
        assert_eq!(serde_json::from_str::<GrpcLoadReport>(&json).expect("parse"), report);
        assert!(report.table().contains("CreateVouchers"));
    }
}
