//! The voucher topic is the replay log that `rebuild` refolds from offset 0, so neither service starts against a topic
//! that deletes events, unless told that this is a throwaway environment (`ALLOW_FINITE_RETENTION`). A topic the relay
//! creates keeps everything.

mod common;

use std::time::Duration;

use kerp_core::kafka::{TopicConfig, TopicError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", common::kafka_brokers()).create().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_service_starts_against_a_topic_that_deletes_events() {
    kerp_core::telemetry::init_logging();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("kerp.test.retention.{run}");
    // Kafka's own default: seven days.
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    admin().create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("retention.ms", "604800000")], &opts).await.unwrap();

    let worker = common::worker_config(&topic, &format!("kerp-test-retention-{run}"), common::clickhouse());
    let refused = tokio::time::timeout(Duration::from_secs(30), kerp_stream::run(worker.clone(), CancellationToken::new())).await;
    let e = refused.expect("stream-workers must refuse at once, not wait").expect_err("stream-workers refuses").to_string();
    assert!(e.contains("retention.ms=604800000"), "{e}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        kerp_ingest::serve_with_metrics(common::ingest_config(&topic), listener, None, CancellationToken::new()),
    )
    .await;
    let e = refused.expect("ingest-api must refuse at once").expect_err("ingest-api refuses").to_string();
    assert!(e.contains("retention.ms=604800000"), "{e}");

    // Told otherwise, the check passes.
    let allowed = TopicConfig { allow_finite_retention: true, ..TopicConfig::default() };
    kerp_core::kafka::check_topic(&common::kafka(), &topic, &allowed).await.expect("allowed");

    // A topic created by the services keeps every event.
    let created = format!("kerp.test.retention.created.{run}");
    kerp_core::kafka::ensure_topic(&common::kafka(), &created, 2, &TopicConfig::default()).await.unwrap();
    let described = admin().describe_configs(&[ResourceSpecifier::Topic(&created)], &opts).await.unwrap();
    let config = described.into_iter().next().unwrap().unwrap();
    let value = |k: &str| config.get(k).and_then(|e| e.value.clone()).unwrap_or_default();
    assert_eq!((value("retention.ms"), value("retention.bytes")), ("-1".to_owned(), "-1".to_owned()));
    assert_eq!(value("max.message.bytes"), kerp_core::kafka::MESSAGE_BYTES_MAX.to_string());
    assert!(matches!(
        kerp_core::kafka::check_topic(&common::kafka(), "kerp.test.no.such.topic", &TopicConfig::default()).await,
        Err(TopicError::Missing(_))
    ));
}
