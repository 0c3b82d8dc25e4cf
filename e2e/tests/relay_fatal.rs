//! The relay rebuilds its producer after a fatal error. The broker's SASL listener (see `compose/stack`) has a user,
//! `kerp_test_limited`, that may describe the test topic but not write to any topic, so the broker refuses its
//! idempotent producer a producer id (`CLUSTER_AUTHORIZATION_FAILED`), which librdkafka treats as fatal: that producer
//! never sends anything again. The relay must notice, drop it and build a new one, without holding the company back
//! or losing a row; once the user is allowed to write, a rebuilt producer publishes every row, in order, once.
//!
//! This file is its own test binary: only one relay publishes at a time, and this one must be it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{company_events, eventually, outbox_rows, pg, repo_root, simple_voucher, SECRET};
use kerp_core::auth::Role;
use kerp_core::kafka::{KafkaConfig, SaslMechanism, SecurityProtocol, TopicConfig};
use tokio_util::sync::CancellationToken;

/// The SASL user of the dev/CI broker that is subject to ACLs, and its password (both set in `compose/stack`).
const LIMITED_USER: &str = "kerp_test_limited";
const LIMITED_PASSWORD: &str = "kerp-test-limited-dev-only";

/// Runs `compose/stack kafka-acl ARGS`.
fn kafka_acl(args: &[&str]) {
    let status = Command::new(repo_root().join("compose/stack")).arg("kafka-acl").args(args).status().expect("compose/stack");
    assert!(status.success(), "compose/stack kafka-acl {args:?} failed");
}

/// Removes the user's ACLs even if the test fails half-way: one WRITE left behind would let the next run's producer
/// get its producer id, and the test would no longer show the fatal path.
struct ClearAcls;

impl Drop for ClearAcls {
    fn drop(&mut self) {
        kafka_acl(&["clear", LIMITED_USER]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_hit_a_fatal_error_is_rebuilt_and_nothing_is_lost() {
    kerp_core::telemetry::init_logging();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("kerp.test.vouchers.{run}");
    // The topic exists, and the limited user may see it and its settings (what the relay checks before it
    // publishes), but may write to no topic at all.
    kafka_acl(&["clear", LIMITED_USER]);
    let _clear = ClearAcls;
    kerp_core::kafka::ensure_topic(&common::kafka(), &topic, common::TEST_TOPIC_PARTITIONS, &TopicConfig::default()).await.unwrap();
    kafka_acl(&["add", LIMITED_USER, &topic, "DESCRIBE,DESCRIBE_CONFIGS,CREATE"]);

    let mut config = common::ingest_config(&topic);
    // A producer's fatal error is not the company's fault, so the company must not be held. Were it held, it would
    // wait this long before being tried again, and the outbox would not drain within the test.
    config.relay_held_retry_ms = 600_000;
    config.kafka = KafkaConfig {
        brokers: common::env("KAFKA_SASL_BROKERS", "127.0.0.1:9094"),
        security_protocol: SecurityProtocol::SaslPlaintext,
        sasl_mechanism: SaslMechanism::Plain,
        sasl_username: Some(LIMITED_USER.into()),
        sasl_password: Some(LIMITED_PASSWORD.into()),
        ssl_ca_location: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let metrics_url = format!("http://{}", metrics.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(kerp_ingest::serve_with_metrics(config, listener, Some(metrics), shutdown.clone()));

    let pool = pg().await;
    let c =
        kerp_ingest::company::create_company(&pool, &format!("Fatal {run}"), None, &format!("{run}@example.test"), &topic).await.unwrap();
    let token = kerp_ingest::company::token(SECRET, c.admin_user_id, c.company_id, Role::Admin, 3600).unwrap();
    for amount in [1_000, 2_000, 3_000] {
        let r = common::http()
            .post(format!("{url}/api/v1/vouchers"))
            .bearer_auth(&token)
            .json(&simple_voucher("2025-06-02", "5212", "1101", amount))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "postings need only Postgres");
    }
    eventually(Duration::from_secs(30), "this relay to lead", || async {
        (common::gauge(&metrics_url, "outbox_relay_leader").await == Some(1.0)).then_some(())
    })
    .await;

    // Fatal errors are met and each one rebuilds the producer; the no-acknowledgement path needs 30 s without an
    // answer, so within this wait only the fatal path can count.
    let fatal = r#"outbox_producer_rebuilds_total{reason="fatal"}"#;
    eventually(Duration::from_secs(25), "two producer rebuilds after fatal errors", || async {
        common::gauge(&metrics_url, fatal).await.filter(|n| *n >= 2.0)
    })
    .await;
    let waiting = outbox_rows(&pool, c.company_id).await;
    assert_eq!(waiting, 6, "the admin, the chart, the company settings and the three vouchers wait in the outbox");
    assert!(company_events(&topic, c.company_id).await.is_empty(), "nothing was published");

    // Allowed to write, the next rebuilt producer gets a producer id and publishes every row, once, in order, without
    // the company having been held.
    kafka_acl(&["add", LIMITED_USER, &topic, "WRITE"]);
    eventually(Duration::from_secs(60), "the outbox to drain through a rebuilt producer", || async {
        (outbox_rows(&pool, c.company_id).await == 0).then_some(())
    })
    .await;
    let seqs: Vec<i64> = company_events(&topic, c.company_id).await.iter().map(|e| e.company_seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "each voucher event once: {seqs:?}");
    assert_eq!(seqs, sorted, "in sequence order");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server).await.expect("ingest-api stops").unwrap().unwrap();
}
