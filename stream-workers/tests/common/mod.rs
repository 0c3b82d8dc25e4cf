//! Shared harness of the stream-workers integration tests: the worker binary as a child process, events and their
//! expected sums, a topic of the test's own, and readers of what the fold left in ClickHouse and in the group's offsets.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use clickhouse::Row;
use kerp_core::clickhouse::{uuid_literal, ClickHouseConfig};
use kerp_schemas::{VoucherLine, VoucherPosted};
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;
use uuid::Uuid;

pub fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The ClickHouse settings of the tests: the database is `kerp_test` (or `KERP_TEST_CLICKHOUSE_DATABASE`), never the
/// dev stack's `kerp`, because these tests publish events that Postgres does not have.
pub fn clickhouse() -> ClickHouseConfig {
    let mut c = ClickHouseConfig::from_env();
    c.clickhouse_database = env("KERP_TEST_CLICKHOUSE_DATABASE", "kerp_test");
    c
}

pub fn brokers() -> String {
    env("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// A worker process that is killed if the test fails while it runs, so no orphan keeps consuming.
pub struct Worker(pub Child);

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the worker binary on `topic` in `group`, with extra environment variables (fault switches, timeouts).
pub fn worker(topic: &str, group: &str, extra: &[(&str, &str)]) -> Worker {
    let ch = clickhouse();
    Worker(
        Command::new(env!("CARGO_BIN_EXE_stream-workers"))
            .env("KAFKA_BROKERS", brokers())
            .env("VOUCHER_TOPIC", topic)
            .env("CONSUMER_GROUP", group)
            .env("CLICKHOUSE_URL", ch.clickhouse_url)
            .env("CLICKHOUSE_DATABASE", ch.clickhouse_database)
            .env("WORKER_METRICS_LISTEN", "")
            // Per-batch lines in the CI log, should this test ever need explaining.
            .env("RUST_LOG", "info,kerp_stream=debug")
            .env("FLUSH_INTERVAL_MS", "1500")
            .env("BATCH_ROWS_MAX", "100000")
            // Last, so a test's own settings win over the defaults above.
            .envs(extra.iter().copied())
            .spawn()
            .expect("start stream-workers"),
    )
}

pub fn wait_exit(Worker(child): &mut Worker, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stream-workers did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn event(rng: &mut impl Rng, company: Uuid, seq: i64, accounts: &[Uuid]) -> VoucherPosted {
    let amount = rng.gen_range(1..=9_999_999);
    let (dr, cr) = (accounts[rng.gen_range(0..accounts.len())], accounts[rng.gen_range(0..accounts.len())]);
    let month = rng.gen_range(1..=3);
    // Days since the epoch of 2025-0M-10.
    let date = [20_098, 20_129, 20_157][month - 1];
    let line = |no, account, debit, credit| VoucherLine {
        line_no: no,
        account_id: account,
        account_code: "1101".into(),
        account_name: "현금".into(),
        account_type: "asset".into(),
        partner_id: None,
        debit,
        credit,
        description: String::new(),
        department_id: None,
    };
    VoucherPosted {
        event_id: Uuid::new_v4(),
        company_id: company,
        company_seq: seq,
        voucher_id: Uuid::new_v4(),
        voucher_number: format!("2025-0{month}-{seq:06}"),
        voucher_date: date,
        voucher_type: "general".into(),
        status: "approved".into(),
        description: String::new(),
        posted_at: chrono::Utc::now().timestamp_micros(),
        lines: vec![line(1, dr, amount, 0), line(2, cr, 0, amount)],
        reversal_of: None,
    }
}

#[derive(Debug, Row, Deserialize)]
pub struct Sums {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    period: u16,
    debit: i64,
    credit: i64,
}

#[derive(Debug, Row, Deserialize)]
pub struct Mark {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    seq: i64,
}

pub type Totals = BTreeMap<(Uuid, Uuid, u16), (i64, i64)>;

/// The balances as readers see them (`FINAL` collapses copies of an event), and each company's watermark.
pub async fn balances(ch: &clickhouse::Client, companies: &[Uuid]) -> (Totals, BTreeMap<Uuid, i64>) {
    let list = companies.iter().map(uuid_literal).collect::<Vec<_>>().join(",");
    let rows: Vec<Sums> = ch
        .query(&format!(
            "SELECT company_id, account_id, period, sum(debit) AS debit_sum, sum(credit) AS credit_sum FROM period_balances FINAL
             WHERE company_id IN ({list}) GROUP BY company_id, account_id, period"
        ))
        .fetch_all()
        .await
        .expect("balances");
    let totals = rows.into_iter().map(|r| ((r.company_id, r.account_id, r.period), (r.debit, r.credit))).collect();
    let marks: Vec<Mark> = ch
        .query(&format!("SELECT company_id, max(seq) AS folded_seq FROM fold_watermarks WHERE company_id IN ({list}) GROUP BY company_id"))
        .fetch_all()
        .await
        .expect("watermarks");
    (totals, marks.into_iter().map(|m| (m.company_id, m.seq)).collect())
}

/// A company's settings as readers see them (`FINAL`: the newest version of each row).
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct CompanySettings {
    #[serde(with = "clickhouse::serde::uuid")]
    pub company_id: Uuid,
    pub name: String,
    pub fiscal_start_month: u8,
    pub version: u64,
}

/// A partner as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct Partner {
    #[serde(with = "clickhouse::serde::uuid")]
    pub partner_id: Uuid,
    pub code: String,
    pub name: String,
    pub business_number: String,
    pub partner_type: String,
    pub is_active: u8,
    pub version: u64,
}

/// A department as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct Department {
    #[serde(with = "clickhouse::serde::uuid")]
    pub department_id: Uuid,
    pub code: String,
    pub name: String,
    pub is_active: u8,
    pub version: u64,
}

/// The master data of `company` as the fold left it, each table read with `FINAL`, ordered by code.
pub async fn master_data(ch: &clickhouse::Client, company: Uuid) -> (Vec<CompanySettings>, Vec<Partner>, Vec<Department>) {
    let c = uuid_literal(&company);
    let settings = ch
        .query(&format!("SELECT company_id, name, fiscal_start_month, version FROM company_settings FINAL WHERE company_id = {c}"))
        .fetch_all()
        .await
        .expect("company_settings");
    let partners = ch
        .query(&format!(
            "SELECT partner_id, code, name, business_number, partner_type, is_active, version FROM partners FINAL
             WHERE company_id = {c} ORDER BY code"
        ))
        .fetch_all()
        .await
        .expect("partners");
    let departments = ch
        .query(&format!("SELECT department_id, code, name, is_active, version FROM departments FINAL WHERE company_id = {c} ORDER BY code"))
        .fetch_all()
        .await
        .expect("departments");
    (settings, partners, departments)
}

/// An invoice as readers see it (`FINAL`: the newest version of each invoice).
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct Invoice {
    #[serde(with = "clickhouse::serde::uuid")]
    pub invoice_id: Uuid,
    pub invoice_type: String,
    pub vat_type: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub partner_id: Uuid,
    /// Days since 1970-01-01.
    pub invoice_date: u16,
    pub supply_amount: i64,
    pub tax_amount: i64,
    pub status: String,
    pub approval_number: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub voucher_id: Uuid,
    pub version: u64,
}

/// The invoices of `company` as the fold left them, read with `FINAL`, ordered by id as Rust orders UUIDs (ClickHouse
/// orders them by their two 64-bit halves, which is another order).
pub async fn invoices(ch: &clickhouse::Client, company: Uuid) -> Vec<Invoice> {
    let mut rows: Vec<Invoice> = ch
        .query(&format!(
            "SELECT invoice_id, invoice_type, vat_type, partner_id, invoice_date, supply_amount, tax_amount, status, approval_number,
                    voucher_id, version
             FROM invoices FINAL WHERE company_id = {}",
            uuid_literal(&company)
        ))
        .fetch_all()
        .await
        .expect("invoices");
    rows.sort_by_key(|r| r.invoice_id);
    rows
}

#[derive(Debug, Row, Deserialize)]
struct LineDepartment {
    voucher_number: String,
    line_no: u32,
    #[serde(with = "clickhouse::serde::uuid")]
    department_id: Uuid,
}

/// Each ledger line's department (nil for none) by (voucher number, line number), read with `FINAL`.
pub async fn line_departments(ch: &clickhouse::Client, company: Uuid) -> BTreeMap<(String, u32), Uuid> {
    let rows: Vec<LineDepartment> = ch
        .query(&format!(
            "SELECT voucher_number, line_no, department_id FROM ledger_lines FINAL WHERE company_id = {}",
            uuid_literal(&company)
        ))
        .fetch_all()
        .await
        .expect("ledger line departments");
    rows.into_iter().map(|r| ((r.voucher_number, r.line_no), r.department_id)).collect()
}

pub async fn ledger_line_count(ch: &clickhouse::Client, companies: &[Uuid]) -> u64 {
    let list = companies.iter().map(uuid_literal).collect::<Vec<_>>().join(",");
    ch.query(&format!("SELECT count() FROM ledger_lines FINAL WHERE company_id IN ({list})")).fetch_one::<u64>().await.expect("count")
}

/// The group's committed offset for each partition, paired with the partition's end offset.
pub fn progress(topic: &str, group: &str, partitions: i32) -> Vec<(Offset, i64)> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", group).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    got.elements()
        .iter()
        .map(|e| {
            let (_, high) = c.fetch_watermarks(topic, e.partition(), Duration::from_secs(10)).expect("watermarks");
            (e.offset(), high)
        })
        .collect()
}

/// Whether the group has committed through the end of every partition. A partition that got no message (all companies
/// can hash to one partition) has nothing to commit, so an absent offset counts as done there.
pub fn caught_up(topic: &str, group: &str, partitions: i32) -> bool {
    progress(topic, group, partitions).iter().all(|(offset, high)| match offset {
        Offset::Offset(o) => o == high,
        _ => *high == 0,
    })
}

/// The expected balances of `events`: (company, account, first day of the month) → (debit, credit).
pub fn expected_totals(events: &[VoucherPosted]) -> Totals {
    let mut expected = Totals::new();
    for e in events {
        // The first day of the voucher's month, in days since the epoch.
        let period: u16 = match e.voucher_date {
            20_098 => 20_089,
            20_129 => 20_120,
            _ => 20_148,
        };
        for l in &e.lines {
            let t = expected.entry((e.company_id, l.account_id, period)).or_insert((0, 0));
            t.0 += l.debit;
            t.1 += l.credit;
        }
    }
    expected
}

/// A topic of the test's own, created like the voucher topic (every event kept).
pub async fn topic(prefix: &str, run: &str, partitions: i32) -> String {
    let topic = format!("kerp.test.{prefix}.{run}");
    kerp_core::kafka::ensure_topic(
        &kerp_core::kafka::KafkaConfig::plaintext(brokers()),
        &topic,
        partitions,
        &kerp_core::kafka::TopicConfig::default(),
    )
    .await
    .expect("create topic");
    topic
}

/// What every test starts from: a run id, a topic of its own, and the ClickHouse tables (in the test database).
pub struct Setup {
    pub run: String,
    pub topic: String,
    pub ch: clickhouse::Client,
}

/// Logging, a fresh run id, the topic `kerp.test.<prefix>.<run>` and the migrated test database.
pub async fn setup(prefix: &str, partitions: i32) -> Setup {
    kerp_core::telemetry::init_logging();
    let run = Uuid::new_v4().simple().to_string();
    let topic = topic(prefix, &run, partitions).await;
    let ch_config = clickhouse();
    kerp_stream::sink::migrate(&ch_config.server_client(), &ch_config.clickhouse_database, "").await.expect("migrate");
    Setup { run, topic, ch: ch_config.client() }
}

/// Publishes raw payloads keyed by company, in order.
pub async fn publish(topic: &str, messages: &[(Uuid, Vec<u8>)]) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("enable.idempotence", "true").create().expect("producer");
    // Enqueued in order and awaited together: the idempotent producer keeps the order within each partition.
    let keys: Vec<String> = messages.iter().map(|(c, _)| c.to_string()).collect();
    let sends = messages
        .iter()
        .zip(&keys)
        .map(|((_, payload), key)| producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(30)));
    for r in futures::future::join_all(sends).await {
        r.expect("produce");
    }
}

/// Publishes voucher events keyed by company, in order.
pub async fn publish_events(topic: &str, events: &[VoucherPosted]) {
    let messages: Vec<(Uuid, Vec<u8>)> =
        events.iter().map(|e| (e.company_id, kerp_schemas::encode_voucher_posted(e).expect("encode"))).collect();
    publish(topic, &messages).await;
}

/// Sends a signal to a worker (`-TERM`, `-STOP`, `-CONT`).
pub fn signal(w: &Worker, sig: &str) {
    Command::new("kill").args([sig, &w.0.id().to_string()]).status().expect("kill");
}

/// A free loopback address for a worker's metrics listener.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// The value of a counter or gauge on a worker's metrics listener (summed over label sets), if it answers.
pub async fn metric(addr: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.ok()?.text().await.ok()?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether the process is stopped (state `T` in /proc), as after SIGSTOP.
pub fn is_stopped(w: &Worker) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", w.0.id()))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|rest| rest.trim_start().starts_with('T')))
        .unwrap_or(false)
}
