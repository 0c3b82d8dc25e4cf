//! The voucher topic is the replay log that `rebuild` refolds from offset 0, so neither service starts against a topic
//! that deletes events, unless told that this is a throwaway environment (`ALLOW_FINITE_RETENTION`). A topic the relay
//! creates keeps everything, with the replication factor and `min.insync.replicas` it was configured with.

mod common;

use std::time::Duration;

use kerp_core::kafka::{TopicConfig, TopicError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
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

/// `VOUCHER_TOPIC_REPLICATION` and `VOUCHER_TOPIC_MIN_INSYNC_REPLICAS` reach the topic the services create: with
/// `acks=all`, `min.insync.replicas` is how many copies an event has before it counts as published, so a setting that
/// was parsed but never sent would leave production topics with Kafka's default of 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_topic_has_the_configured_replication_and_min_insync_replicas() {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let brokers = {
        let admin = admin();
        let meta = admin.inner().fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
        i32::try_from(meta.brokers().len()).expect("broker count")
    };
    // As many replicas as there are brokers (1 on the dev stack, where Kafka's default would give the same), and a
    // min.insync.replicas above the default of 1. Kafka does not check it against the replication factor when the topic
    // is created, only when an acks=all producer writes, so the topic is made whatever the broker count.
    let custom = TopicConfig { voucher_topic_replication: brokers, voucher_topic_min_insync_replicas: 2, ..TopicConfig::default() };
    let topic = format!("kerp.test.retention.isr.{run}");
    kerp_core::kafka::ensure_topic(&common::kafka(), &topic, 2, &custom).await.expect("create");

    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let described = admin().describe_configs(&[ResourceSpecifier::Topic(&topic)], &opts).await.expect("describe");
    let config = described.into_iter().next().expect("one resource").expect("settings");
    let min_isr = config.get("min.insync.replicas").and_then(|e| e.value.clone());
    assert_eq!(min_isr.as_deref(), Some("2"), "min.insync.replicas of the created topic");

    let meta = admin().inner().fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let replicas: Vec<usize> = meta.topics()[0].partitions().iter().map(|p| p.replicas().len()).collect();
    assert_eq!(replicas, vec![usize::try_from(brokers).expect("count"); 2], "replicas of each partition");

    // One replica more than there are brokers is refused by Kafka itself, which shows the factor is sent with the
    // request rather than left to the broker's default (which would create the topic without complaint).
    let too_many = TopicConfig { voucher_topic_replication: brokers + 1, ..TopicConfig::default() };
    let refused = kerp_core::kafka::ensure_topic(&common::kafka(), &format!("kerp.test.retention.rf.{run}"), 1, &too_many).await;
    assert!(
        matches!(refused, Err(TopicError::Create(_, RDKafkaErrorCode::InvalidReplicationFactor))),
        "a replication factor of {} on {brokers} broker(s): {refused:?}",
        brokers + 1
    );
}
