//! Exactly-once across a crash: the worker binary is made to abort right after its ClickHouse write and before the
//! Kafka offset commit. Restarted, it is handed the same messages again, and every line must still count once. A third
//! run under a new consumer group re-reads the whole topic from the start (full redelivery) and must add nothing, and
//! an event published twice (as a relay crash would) counts once.
//!
//! Runs against the real Kafka and ClickHouse; it publishes its own events to a topic of its own.

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use clickhouse::Row;
use kerp_core::clickhouse::{uuid_literal, ClickHouseConfig};
use kerp_schemas::{VoucherLine, VoucherPosted};
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;
use uuid::Uuid;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn brokers() -> String {
    env("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// A worker process that is killed if the test fails while it runs, so no orphan keeps consuming.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn worker(topic: &str, group: &str, abort_after_insert: bool) -> Worker {
    let ch = ClickHouseConfig::from_env();
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
            .env("KERP_FAULT_ABORT_AFTER_INSERT", abort_after_insert.to_string())
            .spawn()
            .expect("start stream-workers"),
    )
}

fn wait_exit(Worker(child): &mut Worker, timeout: Duration) -> ExitStatus {
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

fn event(rng: &mut impl Rng, company: Uuid, seq: i64, accounts: &[Uuid]) -> VoucherPosted {
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
    }
}

#[derive(Debug, Row, Deserialize)]
struct Sums {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    period: u16,
    debit: i64,
    credit: i64,
}

#[derive(Debug, Row, Deserialize)]
struct Mark {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    seq: i64,
}

type Totals = BTreeMap<(Uuid, Uuid, u16), (i64, i64)>;

/// The balances as readers see them (`FINAL` collapses copies of an event), and each company's watermark.
async fn balances(ch: &clickhouse::Client, companies: &[Uuid]) -> (Totals, BTreeMap<Uuid, i64>) {
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

async fn ledger_line_count(ch: &clickhouse::Client, companies: &[Uuid]) -> u64 {
    let list = companies.iter().map(uuid_literal).collect::<Vec<_>>().join(",");
    ch.query(&format!("SELECT count() FROM ledger_lines FINAL WHERE company_id IN ({list})")).fetch_one::<u64>().await.expect("count")
}

/// The group's committed offset for each partition, paired with the partition's end offset.
fn progress(topic: &str, group: &str, partitions: i32) -> Vec<(Offset, i64)> {
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
fn caught_up(topic: &str, group: &str, partitions: i32) -> bool {
    progress(topic, group, partitions).iter().all(|(offset, high)| match offset {
        Offset::Offset(o) => o == high,
        _ => *high == 0,
    })
}

#[tokio::test]
async fn a_crash_between_insert_and_commit_counts_every_line_once() {
    kerp_core::telemetry::init_logging();
    let run = Uuid::new_v4().simple().to_string();
    let topic = format!("kerp.test.kill.{run}");
    let partitions = 2;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin");
    admin
        .create_topics(
            &[NewTopic::new(&topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topic");
    let ch_config = ClickHouseConfig::from_env();
    kerp_stream::sink::migrate(&ch_config.server_client(), &ch_config.clickhouse_database, "").await.expect("migrate");
    let ch = ch_config.client();

    // Three companies, 40 vouchers each, and one event published twice.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let companies: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let accounts: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let mut events = Vec::new();
    for c in &companies {
        for seq in 1..=40 {
            events.push(event(&mut rng, *c, seq, &accounts));
        }
    }
    let mut expected = Totals::new();
    for e in &events {
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
    let expected_lines = events.iter().map(|e| e.lines.len() as u64).sum::<u64>();
    let mut published = events.clone();
    published.push(events[5].clone());

    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("enable.idempotence", "true").create().expect("producer");
    for e in &published {
        let payload = kerp_schemas::encode_voucher_posted(e).expect("encode");
        let key = e.company_id.to_string();
        producer.send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(5)).await.expect("produce");
    }

    let group = format!("kerp-test-kill-{run}");
    // 1. Crash after the ClickHouse write, before the commit.
    let mut w = worker(&topic, &group, true);
    let status = wait_exit(&mut w, Duration::from_secs(90));
    assert!(!status.success(), "the worker must have aborted: {status:?}");
    let (after_crash, _) = balances(&ch, &companies).await;
    assert!(!after_crash.is_empty(), "the crashed batch reached ClickHouse");
    assert!(progress(&topic, &group, partitions).iter().all(|(o, _)| !matches!(o, Offset::Offset(_))), "no offset was committed");

    // 2. Restart: the same messages come again and must not be counted again.
    let mut w = worker(&topic, &group, false);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (totals, marks) = balances(&ch, &companies).await;
        if marks.len() == companies.len() && marks.values().all(|m| *m == 40) && caught_up(&topic, &group, partitions) {
            assert_eq!(totals, expected, "every line counted exactly once after the crash");
            break;
        }
        assert!(Instant::now() < deadline, "the restarted worker did not catch up: {marks:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Graceful stop: SIGTERM, the worker finishes its batch and exits 0.
    Command::new("kill").args(["-TERM", &w.0.id().to_string()]).status().expect("kill");
    assert!(wait_exit(&mut w, Duration::from_secs(30)).success(), "graceful shutdown exits 0");

    // 3. Full redelivery under a new group: nothing changes.
    let mut w = worker(&topic, &format!("{group}-again"), false);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !caught_up(&topic, &format!("{group}-again"), partitions) {
        assert!(Instant::now() < deadline, "the second group did not get through the topic");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Command::new("kill").args(["-TERM", &w.0.id().to_string()]).status().expect("kill");
    assert!(wait_exit(&mut w, Duration::from_secs(30)).success());
    let (totals, marks) = balances(&ch, &companies).await;
    assert_eq!(totals, expected, "a full redelivery adds nothing");
    assert!(marks.values().all(|m| *m == 40));
    assert_eq!(ledger_line_count(&ch, &companies).await, expected_lines, "each ledger line appears once");
}
