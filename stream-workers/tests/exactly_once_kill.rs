//! Exactly-once across a crash: the worker binary is made to abort right after its ClickHouse write and before the
//! Kafka offset commit. Restarted, it is handed the same messages again, and every line must still count once. A third
//! run under a new consumer group re-reads the whole topic from the start (full redelivery) and must add nothing, and
//! an event published twice (as a relay crash would) counts once.
//!
//! Runs against the real Kafka and ClickHouse; it publishes its own events to a topic of its own.

mod common;

use std::time::{Duration, Instant};

use common::{balances, caught_up, event, expected_totals, ledger_line_count, progress, publish_events, signal, wait_exit, worker};
use rand::SeedableRng;
use rdkafka::Offset;
use uuid::Uuid;

#[tokio::test]
async fn a_crash_between_insert_and_commit_counts_every_line_once() {
    let partitions = 2;
    let common::Setup { run, topic, ch } = common::setup("kill", partitions).await;

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
    let expected = expected_totals(&events);
    let expected_lines = events.iter().map(|e| e.lines.len() as u64).sum::<u64>();
    let mut published = events.clone();
    published.push(events[5].clone());

    publish_events(&topic, &published).await;

    let group = format!("kerp-test-kill-{run}");
    // 1. Crash after the ClickHouse write, before the commit.
    let mut w = worker(&topic, &group, &[("KERP_FAULT_ABORT_AFTER_INSERT", "true")]);
    let status = wait_exit(&mut w, Duration::from_secs(90));
    assert!(!status.success(), "the worker must have aborted: {status:?}");
    let (after_crash, _) = balances(&ch, &companies).await;
    assert!(!after_crash.is_empty(), "the crashed batch reached ClickHouse");
    assert!(progress(&topic, &group, partitions).iter().all(|(o, _)| !matches!(o, Offset::Offset(_))), "no offset was committed");

    // 2. Restart: the same messages come again and must not be counted again.
    let mut w = worker(&topic, &group, &[]);
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
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w, Duration::from_secs(30)).success(), "graceful shutdown exits 0");

    // 3. Full redelivery under a new group: nothing changes.
    let mut w = worker(&topic, &format!("{group}-again"), &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !caught_up(&topic, &format!("{group}-again"), partitions) {
        assert!(Instant::now() < deadline, "the second group did not get through the topic");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w, Duration::from_secs(30)).success());
    let (totals, marks) = balances(&ch, &companies).await;
    assert_eq!(totals, expected, "a full redelivery adds nothing");
    assert!(marks.values().all(|m| *m == 40));
    assert_eq!(ledger_line_count(&ch, &companies).await, expected_lines, "each ledger line appears once");
}
