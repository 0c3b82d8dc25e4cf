//! Shared harness of the pipeline tests: one in-process stack per test binary (ingest-api with its relay,
//! stream-workers, query-api), on a topic and consumer group of its own, plus helpers for companies, tokens, posting,
//! reading the topic and waiting for the aggregates.
//!
//! Services run on a dedicated thread with its own runtime, because each `#[tokio::test]` has a runtime that ends
//! with the test. Every test makes its own companies, so tests can share the stack and the databases.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kerp_core::auth::Role;
use kerp_schemas::VoucherPosted;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod pg_reports;
pub mod pipeline;

/// The JWT secret of the test stack: at least `JWT_SECRET_BYTES_MIN` bytes, as the services require.
pub const SECRET: &str = "e2e-test-secret-of-at-least-32-bytes";
/// Partitions of each test topic.
pub const TEST_TOPIC_PARTITIONS: i32 = 3;

pub fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The Postgres database the tests write: `kerp_test` on the stack's server (or `KERP_TEST_DATABASE_URL`), never the
/// dev stack's `kerp`, as [`test_database`] is for ClickHouse. The dev stack's `reconcile` compares every company
/// of its Postgres with its ClickHouse, and the tests' companies fold elsewhere (their own topics and databases).
/// Created and migrated on first use, so a stack started before this database existed works too.
pub fn database_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let base = env("DATABASE_URL", "postgres://kerp:kerp@127.0.0.1:5432/kerp");
        let url = std::env::var("KERP_TEST_DATABASE_URL").unwrap_or_else(|_| match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{TEST_POSTGRES_DATABASE}"),
            None => base.clone(),
        });
        let (server, test) = (base, url.clone());
        // Its own thread and runtime: the first caller may be inside a test's runtime, which must not be blocked on.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                use sqlx::ConnectOptions;
                let opts: sqlx::postgres::PgConnectOptions = server.parse().expect("DATABASE_URL");
                let mut admin = opts.database("postgres").connect().await.expect("postgres (to create the test database)");
                let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(TEST_POSTGRES_DATABASE)
                    .fetch_one(&mut admin)
                    .await
                    .expect("pg_database");
                if !exists {
                    // Another test binary may create it at the same moment: 42P04 (duplicate_database) is success.
                    if let Err(e) = sqlx::query(&format!("CREATE DATABASE {TEST_POSTGRES_DATABASE}")).execute(&mut admin).await {
                        assert!(e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04"), "create the test database: {e}");
                    }
                }
                let pool = PgPool::connect(&test).await.expect("the test database");
                kerp_ingest::MIGRATOR.run(&pool).await.expect("migrate the test database");
            });
        })
        .join()
        .expect("test database set-up");
        url
    })
    .clone()
}

/// The name of the tests' Postgres database on the stack's server.
pub const TEST_POSTGRES_DATABASE: &str = "kerp_test";

/// Plaintext access to the test broker.
pub fn kafka() -> kerp_core::kafka::KafkaConfig {
    kerp_core::kafka::KafkaConfig::plaintext(kafka_brokers())
}

pub fn kafka_brokers() -> String {
    env("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// The ClickHouse database the tests fold into: `kerp_test` (or `KERP_TEST_CLICKHOUSE_DATABASE`), never the dev
/// stack's `kerp`. Tests publish events that Postgres does not have (injected rows, other schemas), and the dev
/// stack's `reconcile` must not find them.
pub fn test_database() -> String {
    env("KERP_TEST_CLICKHOUSE_DATABASE", "kerp_test")
}

/// The writer's ClickHouse settings, on the test database.
pub fn clickhouse() -> kerp_core::clickhouse::ClickHouseConfig {
    let mut c = kerp_core::clickhouse::ClickHouseConfig::from_env();
    c.clickhouse_database = test_database();
    c
}

/// query-api's (read-only) ClickHouse settings, on the test database.
pub fn clickhouse_reader() -> kerp_core::clickhouse::ClickHouseReaderConfig {
    let mut c = kerp_core::clickhouse::ClickHouseReaderConfig::from_env();
    c.clickhouse_database = test_database();
    c
}

/// The repository root, for calling `compose/stack`.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Stack {
    pub ingest_url: String,
    pub query_url: String,
    /// Base URLs of the internal listeners that serve `/metrics`.
    pub ingest_metrics_url: String,
    pub query_metrics_url: String,
    pub topic: String,
}

/// How often the test stack's query-api polls the change signals of held ledger answers (`kerp_query::answers`).
pub const ANSWERS_POLL_INTERVAL_MS: u64 = 100;

/// Starts the three services once per test binary and waits until both HTTP services answer `/health`.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        kerp_core::telemetry::init_logging();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let run = Uuid::new_v4().simple().to_string();
                let topic = format!("kerp.test.vouchers.{run}");
                let ingest_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let query_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let ingest_metrics_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let query_metrics_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let ingest_url = format!("http://{}", ingest_l.local_addr().expect("addr"));
                let query_url = format!("http://{}", query_l.local_addr().expect("addr"));
                let ingest_metrics_url = format!("http://{}", ingest_metrics_l.local_addr().expect("addr"));
                let query_metrics_url = format!("http://{}", query_metrics_l.local_addr().expect("addr"));
                // The process ends when the tests do; nothing cancels this.
                let shutdown = CancellationToken::new();
                let ingest = ingest_config(&topic);
                let worker = worker_config(&topic, &format!("kerp-test-{run}"), clickhouse());
                let query = kerp_query::Config {
                    listen: "127.0.0.1:0".parse().expect("addr"),
                    metrics_listen: String::new(),
                    jwt_secret: SECRET.into(),
                    dev_stack: false,
                    answers_poll_interval_ms: ANSWERS_POLL_INTERVAL_MS,
                    clickhouse: clickhouse_reader(),
                };
                // Create the tables before anything reads them; the worker's own migrate is then a no-op.
                let ch = clickhouse();
                kerp_stream::sink::migrate(&ch.server_client(), &ch.clickhouse_database, "").await.expect("clickhouse migrate");
                tokio::spawn(async move {
                    kerp_ingest::serve_with_metrics(ingest, ingest_l, Some(ingest_metrics_l), shutdown.clone()).await.expect("ingest-api")
                });
                tokio::spawn(async move { kerp_stream::run(worker, CancellationToken::new()).await.expect("stream-workers") });
                tokio::spawn(async move {
                    kerp_query::serve_with_metrics(query, query_l, Some(query_metrics_l), CancellationToken::new())
                        .await
                        .expect("query-api")
                });
                let http = reqwest::Client::new();
                for url in [&ingest_url, &query_url] {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        if http.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                            break;
                        }
                        assert!(Instant::now() < deadline, "{url} did not become healthy");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                tx.send(Stack { ingest_url, query_url, ingest_metrics_url, query_metrics_url, topic }).expect("send");
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("stack started")
    })
}

/// ingest-api's settings for a test stack publishing to `topic`.
pub fn ingest_config(topic: &str) -> kerp_ingest::Config {
    kerp_ingest::Config {
        database_url: database_url(),
        db_pool_max: 20,
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: String::new(),
        jwt_secret: SECRET.into(),
        dev_stack: false,
        kafka: kafka(),
        voucher_topic: topic.to_owned(),
        voucher_topic_partitions: TEST_TOPIC_PARTITIONS,
        topic: kerp_core::kafka::TopicConfig::default(),
        relay_enabled: true,
        relay_batch_rows: 1000,
        relay_poll_interval_ms: 20,
        relay_gather_ms: 20,
        runtime_threads: 0,
        relay_held_retry_ms: 2_000,
        // One lane: every company of the tests shares it, so a test whose company is locked elsewhere shows that the
        // lane does not hold up the others (e2e security).
        group_commit_lanes: 1,
    }
}

/// stream-workers' settings for a test stack folding `topic` into `clickhouse`'s database.
pub fn worker_config(topic: &str, group: &str, clickhouse: kerp_core::clickhouse::ClickHouseConfig) -> kerp_stream::Config {
    kerp_stream::Config {
        kafka: kafka(),
        voucher_topic: topic.to_owned(),
        consumer_group: group.to_owned(),
        clickhouse,
        topic: kerp_core::kafka::TopicConfig::default(),
        batch_rows_max: 5000,
        flush_interval_ms: 100,
        metrics_listen: String::new(),
        database_url: None,
        reconcile_interval_ms: 0,
        reconcile_full_every: 12,
        // Snapshot as soon as anything is new, so the tests' reports read snapshots and tails, not tails alone.
        snapshot_interval_ms: 200,
        snapshot_idle_ms: 0,
        session_timeout_ms: 10_000,
        max_poll_interval_ms: 300_000,
        fault_abort_after_insert: false,
        fault_stop_before_write: false,
    }
}

/// The id of the company's account `code`, from Postgres.
pub async fn pg_account_id(pool: &PgPool, company: Uuid, code: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM accounts WHERE company_id = $1 AND code = $2")
        .bind(company)
        .bind(code)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("account {code}: {e}"))
}

pub async fn pg() -> PgPool {
    PgPool::connect(&database_url()).await.expect("postgres")
}

pub struct Company {
    pub id: Uuid,
    pub admin: Uuid,
    pub token: String,
}

/// A fresh company with the default chart, and an admin token for it.
pub async fn company(pool: &PgPool) -> Company {
    let name = format!("Test {}", Uuid::new_v4().simple());
    let topic = &stack().topic;
    let c = kerp_ingest::company::create_company(pool, &name, None, &format!("{name}@example.test"), topic).await.expect("create company");
    let token = kerp_ingest::company::token(SECRET, c.admin_user_id, c.company_id, Role::Admin, 3600).expect("token");
    Company { id: c.company_id, admin: c.admin_user_id, token }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Posts a voucher body and returns status and JSON body.
pub async fn post_voucher(token: &str, body: &Value) -> (u16, Value) {
    let s = stack();
    let r = http().post(format!("{}/api/v1/vouchers", s.ingest_url)).bearer_auth(token).json(body).send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// GETs a path of ingest-api (`Ingest`) or query-api (`Query`).
#[derive(Debug, Clone, Copy)]
pub enum Svc {
    Ingest,
    Query,
}

pub async fn get(svc: Svc, token: &str, path: &str) -> (u16, Value) {
    let s = stack();
    let base = match svc {
        Svc::Ingest => &s.ingest_url,
        Svc::Query => &s.query_url,
    };
    let r = http().get(format!("{base}{path}")).bearer_auth(token).send().await.expect("get");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Sends `method` to a path of ingest-api or query-api with an optional JSON body and returns status and JSON body.
pub async fn send(method: reqwest::Method, svc: Svc, token: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let s = stack();
    let base = match svc {
        Svc::Ingest => &s.ingest_url,
        Svc::Query => &s.query_url,
    };
    let mut r = http().request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(b);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A token of a new user with `role` in the company.
pub async fn token_with_role(pool: &PgPool, company: Uuid, role: Role) -> String {
    let email = format!("{}-{}@example.test", role.as_str(), Uuid::new_v4().simple());
    let user = kerp_ingest::company::create_user(pool, company, &email, role).await.expect("user");
    kerp_ingest::company::token(SECRET, user, company, role, 3600).expect("token")
}

/// The id of the company's account with this code, read through `GET /api/v1/accounts`.
pub async fn account_id(token: &str, code: &str) -> String {
    let (status, accounts) = get(Svc::Ingest, token, "/api/v1/accounts").await;
    assert_eq!(status, 200, "{accounts}");
    let account = accounts["data"].as_array().expect("accounts").iter().find(|a| a["code"] == code).expect("account with that code");
    account["id"].as_str().expect("id").to_owned()
}

/// A balanced two-line voucher by account codes.
pub fn simple_voucher(date: &str, debit_code: &str, credit_code: &str, amount: i64) -> Value {
    json!({
        "voucher_date": date,
        "voucher_type": "general",
        "description": "test",
        "lines": [
            {"account_code": debit_code, "debit_amount": amount, "description": "Debit entry"},
            {"account_code": credit_code, "credit_amount": amount, "description": "Credit entry"}
        ]
    })
}

/// A consumer outside any real group, for tests that read the topic themselves.
fn reader() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("kerp-test-reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// The event in `m` with its raw payload, if it is one of `company`'s.
fn event_of(m: &rdkafka::message::BorrowedMessage<'_>, company: Uuid) -> Option<(kerp_schemas::Event, Vec<u8>)> {
    let payload = m.payload().unwrap_or_default();
    let event = kerp_schemas::decode(payload).expect("every message decodes");
    (event.company_id() == company).then(|| (event, payload.to_vec()))
}

/// How many of `company`'s events wait in the outbox, not yet acknowledged by the broker.
pub async fn outbox_rows(pool: &PgPool, company: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE company_id = $1").bind(company).fetch_one(pool).await.unwrap()
}

/// Waits until the relay has published every outbox row of `company` and had it acknowledged by the broker.
pub async fn outbox_drained(pool: &PgPool, company: Uuid) {
    eventually(Duration::from_secs(60), "the company's outbox to be relayed", || async {
        (outbox_rows(pool, company).await == 0).then_some(())
    })
    .await;
}

/// Reads every voucher event of `company` on the topic, like [`company_messages`]. Account events (the chart, at
/// creation) and the other master-data events are not vouchers and are left out.
pub async fn company_events(topic: &str, company: Uuid) -> Vec<VoucherPosted> {
    company_messages(topic, company)
        .await
        .into_iter()
        .filter_map(|(e, _)| match e {
            kerp_schemas::Event::VoucherPosted(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Reads every event of `company` on the topic, of any kind and with its raw payload, from the beginning up to the
/// partitions' end offsets as they are now. It does not wait for events to come, so it can show that no other event
/// is there: call it after [`outbox_drained`], when every acknowledged event is below those end offsets.
pub async fn company_messages(topic: &str, company: Uuid) -> Vec<(kerp_schemas::Event, Vec<u8>)> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer = reader();
        let meta = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
        let mut tpl = TopicPartitionList::new();
        let mut remaining = std::collections::HashMap::new();
        for p in meta.topics()[0].partitions() {
            let (low, high) = consumer.fetch_watermarks(&topic, p.id(), Duration::from_secs(10)).expect("watermarks");
            if high > low {
                tpl.add_partition_offset(&topic, p.id(), Offset::Beginning).expect("tpl");
                remaining.insert(p.id(), high);
            }
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        // Bounded so that a broker problem fails the test instead of hanging it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !remaining.is_empty() {
            assert!(Instant::now() < deadline, "could not read the topic to its end");
            let Some(m) = consumer.poll(Duration::from_millis(200)) else { continue };
            let m = m.expect("message");
            out.extend(event_of(&m, company));
            if remaining.get(&m.partition()).is_some_and(|high| m.offset() + 1 >= *high) {
                remaining.remove(&m.partition());
            }
        }
        out
    })
    .await
    .expect("reader")
}

/// The value of an unlabelled gauge or counter on a service's metrics listener (`base` is `http://host:port`), if it
/// answers and has it.
pub async fn gauge(base: &str, name: &str) -> Option<f64> {
    let text = http().get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()?.parse().ok())
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The trial balance of a company and month, straight from Postgres, in the API's shape:
/// account id → (opening_debit, opening_credit, period_debit, period_credit, closing_debit, closing_credit).
///
/// It follows the fiscal-year rules independently of query-api: income-statement accounts (revenue, expense) open at
/// zero on the first day of the company's fiscal year, and every earlier fiscal year's revenue and expense is added to
/// the opening of retained earnings (3201). An account is listed when it has an opening or a movement.
pub async fn pg_trial_balance(pool: &PgPool, company: Uuid, year: i32, month: u32) -> std::collections::BTreeMap<Uuid, [i64; 6]> {
    let start = chrono::NaiveDate::from_ymd_opt(year, month, 1).expect("date");
    let end =
        if month == 12 { chrono::NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { chrono::NaiveDate::from_ymd_opt(year, month + 1, 1) }
            .expect("date");
    let start_month: i16 =
        sqlx::query_scalar("SELECT fiscal_start_month FROM companies WHERE id = $1").bind(company).fetch_one(pool).await.expect("company");
    let start_month = u32::try_from(start_month).expect("month");
    let fy_year = if month >= start_month { year } else { year - 1 };
    let fy = chrono::NaiveDate::from_ymd_opt(fy_year, start_month, 1).expect("date");
    // Debit and credit sums per account in three buckets: before the fiscal year, from its start to the month, the month.
    // (account, is an income-statement account, debit and credit before the year, in the year, in the month)
    type Buckets = (Uuid, bool, i64, i64, i64, i64, i64, i64);
    let rows: Vec<Buckets> = sqlx::query_as(
        "SELECT l.account_id, a.account_type IN ('revenue', 'expense'),
                COALESCE(SUM(l.debit) FILTER (WHERE v.voucher_date < $4), 0)::bigint,
                COALESCE(SUM(l.credit) FILTER (WHERE v.voucher_date < $4), 0)::bigint,
                COALESCE(SUM(l.debit) FILTER (WHERE v.voucher_date >= $4 AND v.voucher_date < $2), 0)::bigint,
                COALESCE(SUM(l.credit) FILTER (WHERE v.voucher_date >= $4 AND v.voucher_date < $2), 0)::bigint,
                COALESCE(SUM(l.debit) FILTER (WHERE v.voucher_date >= $2), 0)::bigint,
                COALESCE(SUM(l.credit) FILTER (WHERE v.voucher_date >= $2), 0)::bigint
         FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id JOIN accounts a ON a.id = l.account_id
         WHERE v.company_id = $1 AND v.status IN ('approved', 'reversed') AND v.voucher_date < $3
         GROUP BY l.account_id, a.account_type",
    )
    .bind(company)
    .bind(start)
    .bind(end)
    .bind(fy)
    .fetch_all(pool)
    .await
    .expect("pg trial balance");
    let retained = pg_account_id(pool, company, "3201").await;
    let mut sums: std::collections::BTreeMap<Uuid, [i64; 4]> = std::collections::BTreeMap::new();
    let (mut closed_d, mut closed_c) = (0, 0);
    for (id, income, d0, c0, d1, c1, d2, c2) in rows {
        let (od, oc) = if income {
            closed_d += d0;
            closed_c += c0;
            (d1, c1)
        } else {
            (d0 + d1, c0 + c1)
        };
        sums.insert(id, [od, oc, d2, c2]);
    }
    let re = sums.entry(retained).or_insert([0; 4]);
    re[0] += closed_d;
    re[1] += closed_c;
    let side = |net: i64| (net.max(0), (-net).max(0));
    sums.into_iter()
        .filter(|(_, s)| s.iter().any(|v| *v != 0))
        .map(|(id, [od, oc, pd, pc])| {
            let (o_d, o_c) = side(od - oc);
            let (c_d, c_c) = side(od - oc + pd - pc);
            (id, [o_d, o_c, pd, pc, c_d, c_c])
        })
        .collect()
}

/// The API's trial balance in the same shape as [`pg_trial_balance`], plus its totals.
pub async fn api_trial_balance(token: &str, year: i32, month: u32) -> (std::collections::BTreeMap<Uuid, [i64; 6]>, Value) {
    let (status, body) = get(Svc::Query, token, &format!("/api/v1/reports/trial-balance?year={year}&month={month}")).await;
    assert_eq!(status, 200, "{body}");
    let mut m = std::collections::BTreeMap::new();
    for a in body["data"]["accounts"].as_array().expect("accounts") {
        let n = |k: &str| a[k].as_i64().expect(k);
        let id = Uuid::parse_str(a["account_id"].as_str().expect("id")).expect("uuid");
        m.insert(
            id,
            [n("opening_debit"), n("opening_credit"), n("period_debit"), n("period_credit"), n("closing_debit"), n("closing_credit")],
        );
    }
    (m, body["data"]["totals"].clone())
}
