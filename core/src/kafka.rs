//! How the services reach Kafka, and the voucher topic's settings, shared by ingest-api (which creates the topic) and
//! stream-workers (which refuses to fold a topic that could lose events). Connection settings flow in from
//! [`KafkaConfig`] and out as an rdkafka [`ClientConfig`]; topic settings flow in from [`TopicConfig`]; out come a
//! created topic, or a [`TopicError`] naming the setting that is wrong.
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

/// How clients talk to the brokers (librdkafka's `security.protocol`). The values are spelled as librdkafka and the
/// Java client spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

/// How SASL clients prove who they are (librdkafka's `sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    Plain,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-512")]
    ScramSha512,
}

/// How every Kafka client of a service (producer, consumers, admin) connects. A production cluster usually asks for
/// TLS and SASL; the dev stack takes plaintext.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, comma separated.
    #[arg(id = "kafka_brokers", long = "kafka-brokers", env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// How clients talk to the brokers.
    #[arg(id = "kafka_security_protocol", long = "kafka-security-protocol", env = "KAFKA_SECURITY_PROTOCOL",
          value_enum, default_value_t = SecurityProtocol::Plaintext)]
    pub security_protocol: SecurityProtocol,
    /// SASL mechanism, with the `sasl_*` protocols.
    #[arg(id = "kafka_sasl_mechanism", long = "kafka-sasl-mechanism", env = "KAFKA_SASL_MECHANISM",
          value_enum, default_value_t = SaslMechanism::Plain)]
    pub sasl_mechanism: SaslMechanism,
    /// SASL user name, with the `sasl_*` protocols.
    #[arg(id = "kafka_sasl_username", long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password, with the `sasl_*` protocols.
    #[arg(id = "kafka_sasl_password", long = "kafka-sasl-password", env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<String>,
    /// File of CA certificates that sign the brokers' certificates, with the `ssl` protocols; the system's by default.
    #[arg(id = "kafka_ssl_ca_location", long = "kafka-ssl-ca-location", env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<String>,
}

impl KafkaConfig {
    /// Plaintext access to `brokers`, as on the dev stack.
    #[must_use]
    pub fn plaintext(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: SaslMechanism::Plain,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
        }
    }

    /// The connection settings as the start of an rdkafka client configuration; callers add their role's settings.
    #[must_use]
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        let protocol = match self.security_protocol {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if matches!(self.security_protocol, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl) {
            let mechanism = match self.sasl_mechanism {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            c.set("sasl.mechanism", mechanism);
            if let Some(u) = &self.sasl_username {
                c.set("sasl.username", u);
            }
            if let Some(p) = &self.sasl_password {
                c.set("sasl.password", p);
            }
        }
        if let Some(ca) = &self.ssl_ca_location {
            c.set("ssl.ca.location", ca);
        }
        c
    }
}

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

fn admin(kafka: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, TopicError> {
    Ok(kafka.client_config().create()?)
}

fn options() -> AdminOptions {
    let t = Some(Duration::from_millis(ADMIN_TIMEOUT_MS));
    AdminOptions::new().operation_timeout(t).request_timeout(t)
}

/// Creates the topic with the settings above if it does not exist, then checks it with [`check_topic`].
///
/// # Errors
/// Kafka errors, or a topic that could lose events.
pub async fn ensure_topic(kafka: &KafkaConfig, topic: &str, partitions: i32, config: &TopicConfig) -> Result<(), TopicError> {
    let min_isr = config.voucher_topic_min_insync_replicas.to_string();
    let max_bytes = MESSAGE_BYTES_MAX.to_string();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(config.voucher_topic_replication))
        .set("retention.ms", "-1")
        .set("retention.bytes", "-1")
        .set("max.message.bytes", &max_bytes)
        .set("min.insync.replicas", &min_isr);
    for r in admin(kafka)?.create_topics(&[new], &options()).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(TopicError::Create(t, code)),
        }
    }
    // The controller answers the creation before every broker's metadata has the topic, so a describe sent at once
    // may find no such topic yet (a busy CI machine saw it). Only that answer is retried, and only for a bound.
    let deadline = std::time::Instant::now() + Duration::from_millis(TOPIC_VISIBLE_WAIT_MS_MAX);
    loop {
        match check_topic(kafka, topic, config).await {
            Err(TopicError::Missing(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(TOPIC_VISIBLE_POLL_MS)).await;
            }
            other => return other,
        }
    }
}

/// How long [`ensure_topic`] waits for a topic it just created to show in the brokers' metadata.
pub const TOPIC_VISIBLE_WAIT_MS_MAX: u64 = 10_000;
/// How often it looks meanwhile.
const TOPIC_VISIBLE_POLL_MS: u64 = 100;

/// Refuses a topic that deletes events (unless allowed) or whose message limit is below the producer's.
///
/// # Errors
/// Kafka errors, or the setting at fault.
pub async fn check_topic(kafka: &KafkaConfig, topic: &str, config: &TopicConfig) -> Result<(), TopicError> {
    let results = admin(kafka)?.describe_configs(&[ResourceSpecifier::Topic(topic)], &options()).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_sets_no_credentials() {
        let c = KafkaConfig::plaintext("k1:9092,k2:9092").client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("sasl.mechanism"), None);
        assert_eq!(c.get("sasl.username"), None);
    }

    #[test]
    fn sasl_over_tls_carries_mechanism_credentials_and_ca() {
        let kafka = KafkaConfig {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: SaslMechanism::ScramSha512,
            sasl_username: Some("relay".into()),
            sasl_password: Some("secret".into()),
            ssl_ca_location: Some("/etc/ca.pem".into()),
            ..KafkaConfig::plaintext("k:9093")
        };
        let c = kafka.client_config();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("relay"));
        assert_eq!(c.get("sasl.password"), Some("secret"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
    }

    #[test]
    fn credentials_are_not_sent_without_sasl() {
        let kafka = KafkaConfig { sasl_username: Some("relay".into()), ..KafkaConfig::plaintext("k:9092") };
        assert_eq!(kafka.client_config().get("sasl.username"), None);
    }

    /// The command line names of the flattened settings, so that every service spells them alike.
    #[test]
    fn parses_from_the_command_line() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            kafka: KafkaConfig,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "x",
            "--kafka-brokers",
            "k:9094",
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-mechanism",
            "scram-sha-256",
            "--kafka-sasl-username",
            "u",
        ])
        .unwrap();
        assert_eq!(cli.kafka.security_protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(cli.kafka.client_config().get("sasl.mechanism"), Some("SCRAM-SHA-256"));
    }
}
