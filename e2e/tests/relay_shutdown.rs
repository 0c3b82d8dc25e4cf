//! Shutdown is bounded while Kafka is down. An ingest-api whose relay is the active one, with an acknowledgement
//! outstanding because Kafka was stopped, must still stop within a few seconds when asked to: the unacknowledged row
//! stays in the outbox for the next relay, so nothing is lost.
//!
//! This file is its own test binary (and uses no shared stack) so that stopping Kafka cannot disturb other tests.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, outbox_rows, pg, repo_root, simple_voucher, SECRET};
use kerp_core::auth::Role;
use tokio_util::sync::CancellationToken;

/// Starts Kafka again even if the test fails half-way, so later test binaries find it running.
struct RestartKafka;

impl Drop for RestartKafka {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("compose/stack")).args(["start", "kafka"]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_stops_within_its_bound_while_kafka_is_down() {
    kerp_core::telemetry::init_logging();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("kerp.test.vouchers.{run}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let metrics_url = format!("http://{}", metrics.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(kerp_ingest::serve_with_metrics(common::ingest_config(&topic), listener, Some(metrics), shutdown.clone()));

    let pool = pg().await;
    let c = kerp_ingest::company::create_company(&pool, &format!("Shutdown {run}"), None, &format!("{run}@example.test"), &topic)
        .await
        .unwrap();
    let token = kerp_ingest::company::token(SECRET, c.admin_user_id, c.company_id, Role::Admin, 3600).unwrap();
    // This relay must be the active one, or the test would prove nothing.
    eventually(Duration::from_secs(30), "this relay to lead and publish the chart", || async {
        (common::gauge(&metrics_url, "outbox_relay_leader").await == Some(1.0) && outbox_rows(&pool, c.company_id).await == 0).then_some(())
    })
    .await;

    let _restart = RestartKafka;
    let status = Command::new(repo_root().join("compose/stack")).args(["stop", "kafka"]).status().unwrap();
    assert!(status.success());
    let r = common::http()
        .post(format!("{url}/api/v1/vouchers"))
        .bearer_auth(&token)
        .json(&simple_voucher("2025-05-02", "5212", "1101", 5_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "postings need only Postgres");
    // Let the relay pick the row up, so an acknowledgement is outstanding when shutdown comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), server).await;
    let took = asked.elapsed();
    assert!(stopped.is_ok(), "ingest-api did not stop within 15 s while Kafka was down");
    assert!(took < Duration::from_secs(10), "took {took:?}; the relay gives up after {} ms", kerp_ingest::relay::SHUTDOWN_WAIT_MS_MAX);
    assert_eq!(outbox_rows(&pool, c.company_id).await, 1, "the unacknowledged row stays for the next relay");
}
