//! The voucher topic's settings, shared by ingest-api (which creates the topic) and stream-workers (which refuses to
//! fold a topic that could lose events). Topic settings flow in from [`TopicConfig`]; out come a created topic, or a
//! [`TopicError`] naming the setting that is wrong.
//!
//! The topic is the pipeline's replay log: `stream-workers rebuild` refolds it from offset 0, so it must keep every
//! event (`retention.ms=-1`, `retention.bytes=-1`), and its message size limit must equal the producer's, so that an
//! event the producer accepts is never refused by the broker.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Largest Kafka message, in bytes, set alike as the producer's `message.max.bytes` and the topic's
/// `max.message.bytes`: 1 MiB.
pub const MESSAGE_BYTES_MAX: usize = 1_048_576;
/// Room kept under [`MESSAGE_BYTES_MAX`] for what Kafka adds to an event: the key (a 36-byte company id), the record
/// and batch headers. An event payload may be at most [`EVENT_BYTES_MAX`].
pub const RECORD_OVERHEAD_BYTES_MAX: usize = 4_096;
/// Largest encoded event, in bytes. ingest-api refuses a voucher whose event would be larger.
pub const EVENT_BYTES_MAX: usize = MESSAGE_BYTES_MAX - RECORD_OVERHEAD_BYTES_MAX;
/// How long admin requests may take, in milliseconds.
const ADMIN_TIMEOUT_MS: u64 = 10_000;

/// How the voucher topic is created and what is checked of an existing one.
#[derive(Debug, Clone, clap::Args)]
pub struct TopicConfig {
    /// Replication factor the voucher topic is created with: 1 on the single-broker dev stack, 3 in production.
    #[arg(long, env = "VOUCHER_TOPIC_REPLICATION", default_value_t = 1)]
    pub voucher_topic_replication: i32,
    /// `min.insync.replicas` of the voucher topic: with `acks=all`, how many replicas must have an event before it
    /// counts as published. 1 on the dev stack, 2 with three brokers.
    #[arg(long, env = "VOUCHER_TOPIC_MIN_INSYNC_REPLICAS", default_value_t = 1)]
    pub voucher_topic_min_insync_replicas: i32,
    /// Start even if the voucher topic deletes old events. Rebuilds and replays then cannot reach what was deleted,
    /// so this is for throwaway environments only.
    #[arg(long, env = "ALLOW_FINITE_RETENTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_finite_retention: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self { voucher_topic_replication: 1, voucher_topic_min_insync_replicas: 1, allow_finite_retention: false }
    }
}

/// Why the topic cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {0}: {1}")]
    Create(String, RDKafkaErrorCode),
    #[error("topic {0} does not exist")]
    Missing(String),
    #[error("reading the settings of topic {0}: {1}")]
    Describe(String, RDKafkaErrorCode),
    #[error(
        "topic {topic} has {setting}={value}: it would delete events that replays and rebuilds need. Set it to -1 \
         (kafka-configs --alter --add-config {setting}=-1), or start with ALLOW_FINITE_RETENTION=true for a \
         throwaway environment"
    )]
    FiniteRetention { topic: String, setting: &'static str, value: String },
    #[error("topic {topic} has max.message.bytes={value}, below the producer's {MESSAGE_BYTES_MAX}: raise it to {MESSAGE_BYTES_MAX}")]
    MessageLimit { topic: String, value: String },
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, TopicError> {
    Ok(ClientConfig::new().set("bootstrap.servers", brokers).create()?)
}

fn options() -> AdminOptions {
    let t = Some(Duration::from_millis(ADMIN_TIMEOUT_MS));
    AdminOptions::new().operation_timeout(t).request_timeout(t)
}

/// Creates the topic with the settings above if it does not exist, then checks it with [`check_topic`].
///
/// # Errors
/// Kafka errors, or a topic that could lose events.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32, config: &TopicConfig) -> Result<(), TopicError> {
    let min_isr = config.voucher_topic_min_insync_replicas.to_string();
    let max_bytes = MESSAGE_BYTES_MAX.to_string();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(config.voucher_topic_replication))
        .set("retention.ms", "-1")
        .set("retention.bytes", "-1")
        .set("max.message.bytes", &max_bytes)
        .set("min.insync.replicas", &min_isr);
    for r in admin(brokers)?.create_topics(&[new], &options()).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(TopicError::Create(t, code)),
        }
    }
    check_topic(brokers, topic, config).await
}

/// Refuses a topic that deletes events (unless allowed) or whose message limit is below the producer's.
///
/// # Errors
/// Kafka errors, or the setting at fault.
pub async fn check_topic(brokers: &str, topic: &str, config: &TopicConfig) -> Result<(), TopicError> {
    let results = admin(brokers)?.describe_configs(&[ResourceSpecifier::Topic(topic)], &options()).await?;
    for r in results {
        let resource = r.map_err(|code| TopicError::Describe(topic.to_owned(), code))?;
        if resource.entries.is_empty() {
            // Kafka describes a topic that does not exist as one without settings rather than as an error.
            return Err(TopicError::Missing(topic.to_owned()));
        }
        let value = |name: &str| resource.get(name).and_then(|e| e.value.clone()).unwrap_or_default();
        if !config.allow_finite_retention {
            for setting in ["retention.ms", "retention.bytes"] {
                let v = value(setting);
                if v != "-1" {
                    return Err(TopicError::FiniteRetention { topic: topic.to_owned(), setting, value: v });
                }
            }
        }
        let limit = value("max.message.bytes");
        if limit.parse::<usize>().map_or(true, |l| l < MESSAGE_BYTES_MAX) {
            return Err(TopicError::MessageLimit { topic: topic.to_owned(), value: limit });
        }
    }
    Ok(())
}
