//! Nothing is skipped silently. A message written with a schema this worker does not know, and a company whose
//! sequence jumps (an event missing), each hold back *their own company* (named by the message key): the metric
//! `fold_held_companies` says so, other companies on the same partitions go on, and the group's offsets are not
//! committed past the held messages, so a newer worker would read them again. An operator's `stream-workers skip`
//! (which leaves an audit record) releases each hold, and folding resumes where it stopped.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{balances, event, eventually, free_addr, metric, publish, signal, wait_exit, worker};
use rand::SeedableRng;
use rdkafka::Offset;
use uuid::Uuid;

fn skip(topic: &str, args: &[&str]) {
    let ch = common::clickhouse();
    let out = Command::new(env!("CARGO_BIN_EXE_stream-workers"))
        .env("KAFKA_BROKERS", common::brokers())
        .env("VOUCHER_TOPIC", topic)
        .env("CLICKHOUSE_URL", ch.clickhouse_url)
        .env("CLICKHOUSE_DATABASE", ch.clickhouse_database)
        .arg("skip")
        .args(args)
        .args(["--reason", "test: lost for good", "--operator", "holds-test"])
        .output()
        .expect("stream-workers skip");
    assert!(out.status.success(), "skip failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn unknown_schemas_and_gaps_hold_their_company_until_an_operator_skips() {
    let common::Setup { run, topic, ch } = common::setup("holds", 1).await;
    // One partition, so that every company shares it and the commit limit is visible.

    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let accounts: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let (unknown, gap, fine) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut bogus = vec![0xC3, 0x01];
    bogus.extend_from_slice(&0x0123_4567_89AB_CDEF_u64.to_le_bytes());
    bogus.extend_from_slice(b"a datum of a schema from the future");
    let encode = |e: &kerp_schemas::VoucherPosted| (e.company_id, kerp_schemas::encode_voucher_posted(e).unwrap());
    let messages = vec![
        encode(&event(&mut rng, fine, 1, &accounts)), // offset 0
        (unknown, bogus),                             // offset 1: unknown fingerprint
        encode(&event(&mut rng, unknown, 1, &accounts)),
        encode(&event(&mut rng, gap, 1, &accounts)),
        encode(&event(&mut rng, gap, 3, &accounts)), // offset 4: sequence 2 is missing
        encode(&event(&mut rng, fine, 2, &accounts)),
        encode(&event(&mut rng, gap, 4, &accounts)),
        encode(&event(&mut rng, fine, 3, &accounts)),
    ];
    publish(&topic, &messages).await;

    let group = format!("kerp-test-holds-{run}");
    let metrics = free_addr();
    let mut w = worker(&topic, &group, &[("WORKER_METRICS_LISTEN", metrics.as_str()), ("FLUSH_INTERVAL_MS", "200")]);
    let companies = [unknown, gap, fine];
    let marks = eventually(Duration::from_secs(60), "the unaffected company to be folded", || async {
        let (_, marks) = balances(&ch, &companies).await;
        (marks.get(&fine) == Some(&3)).then_some(marks)
    })
    .await;
    assert_eq!(marks.get(&unknown), None, "nothing of the company behind the unknown schema is folded");
    assert_eq!(marks.get(&gap), Some(&1), "the company with a gap stops before it");
    eventually(Duration::from_secs(20), "fold_held_companies = 2", || async {
        metric(&metrics, "fold_held_companies").await.filter(|v| *v == 2.0)
    })
    .await;
    let committed = eventually(Duration::from_secs(20), "a commit", || async {
        common::progress(&topic, &group, 1).first().and_then(|(o, _)| if let Offset::Offset(o) = o { Some(*o) } else { None })
    })
    .await;
    assert_eq!(committed, 1, "the group is committed no further than the first held message");

    // The operator gives up the message of the unknown schema and the missing sequence number.
    skip(&topic, &["--partition", "0", "--offset", "1"]);
    skip(&topic, &["--company", &gap.to_string(), "--seq", "2"]);
    eventually(Duration::from_secs(60), "both companies to resume", || async {
        let (_, marks) = balances(&ch, &companies).await;
        (marks.get(&unknown) == Some(&1) && marks.get(&gap) == Some(&4)).then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "fold_held_companies = 0", || async {
        metric(&metrics, "fold_held_companies").await.filter(|v| *v == 0.0)
    })
    .await;
    let audit: u64 = ch
        .query("SELECT count() FROM fold_skips WHERE topic = ? AND operator = 'holds-test' AND reason != ''")
        .bind(&topic)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(audit, 2, "each skip left an audit record");
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w, Duration::from_secs(30)).success());
}
