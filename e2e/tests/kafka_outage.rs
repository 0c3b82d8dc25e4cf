//! Kafka goes down: postings keep succeeding into Postgres, the outbox holds them, and when Kafka returns the relay
//! drains the backlog and the aggregates catch up exactly, with nothing lost or counted twice.
//!
//! This file is its own test binary so that stopping Kafka cannot disturb other tests (cargo runs test binaries one
//! after another).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    api_trial_balance, company, eventually, outbox_drained, outbox_rows, pg, pg_trial_balance, post_voucher, repo_root, simple_voucher,
    stack,
};

fn stack_cmd(args: &[&str]) {
    let status = Command::new(repo_root().join("compose/stack")).args(args).status().expect("run compose/stack");
    assert!(status.success(), "compose/stack {args:?} failed");
}

/// Starts Kafka again even if the test fails half-way, so later test binaries find it running.
struct RestartKafka;

impl Drop for RestartKafka {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("compose/stack")).args(["start", "kafka"]).status();
    }
}

#[tokio::test]
async fn postings_survive_a_kafka_outage_and_the_aggregates_catch_up_exactly() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    assert_eq!(post_voucher(&c.token, &simple_voucher("2025-06-01", "1101", "3101", 5_000_000)).await.0, 201);
    eventually(Duration::from_secs(60), "the first posting to be folded", || async {
        let (_, totals) = api_trial_balance(&c.token, 2025, 6).await;
        (totals["closing_debit"] == 5_000_000).then_some(())
    })
    .await;

    let _guard = RestartKafka;
    stack_cmd(&["stop", "kafka"]);
    let mut posted = 0;
    for i in 0..30 {
        let (status, body) =
            post_voucher(&c.token, &simple_voucher(&format!("2025-06-{:02}", 2 + i % 20), "5212", "1101", 1_000 + i)).await;
        assert_eq!(status, 201, "posting must not depend on Kafka: {body}");
        posted += 1;
    }
    assert_eq!(posted, 30);
    assert_eq!(outbox_rows(&pool, c.id).await, 30, "with Kafka down the events wait in the outbox");

    stack_cmd(&["start", "kafka"]);
    let expected = pg_trial_balance(&pool, c.id, 2025, 6).await;
    eventually(Duration::from_secs(120), "the aggregates to catch up after Kafka returned", || async {
        let (got, _) = api_trial_balance(&c.token, 2025, 6).await;
        (got == expected).then_some(())
    })
    .await;
    // The worker can fold an event before the relay has deleted its acknowledged row, so the drain is awaited, not assumed.
    outbox_drained(&pool, c.id).await;
    // Settle, then check again: late duplicates would show up as a difference now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (got, _) = api_trial_balance(&c.token, 2025, 6).await;
    assert_eq!(got, expected);
}
