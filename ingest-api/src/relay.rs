//! The outbox relay: outbox rows flow from Postgres to Kafka, in id order, and are deleted only after the broker has
//! acknowledged them (`acks=all`, idempotent producer).
//!
//! Only one relay publishes at a time: it holds a session advisory lock on a dedicated connection and reads every
//! round's rows on that connection, so a relay whose lock connection was lost stops publishing. A company's events
//! reach the topic in the order of their sequence numbers. If Kafka is down the relay waits (messages never time out
//! in the producer) while postings keep succeeding; the backlog drains when Kafka returns. A crash between the
//! broker's acknowledgement and the delete re-publishes those rows later, in the same order; the fold drops such
//! duplicates by their per-company sequence (see `docs/exactly-once.md`).
//!
//! A row that fails for good (too large for the topic, say) must neither block other companies nor be overtaken by
//! its own company's later events: that company is *held* (its rows are not sent), the others go on, and the hold is
//! logged and exported as `outbox_held_companies`. Held companies are tried again every `RELAY_HELD_RETRY_MS`, in
//! case an operator fixed the cause (raised the topic's limit, for example).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kerp_core::kafka::{self, KafkaConfig, MESSAGE_BYTES_MAX};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Config, Result};

/// Most outbox rows published per round. Bounds memory and the size of the delete that follows.
pub const RELAY_BATCH_ROWS_MAX: i64 = 1000;
/// Longest `RELAY_GATHER_MS` may be, in milliseconds: a tenth of the freshness goal (p99 under 500 ms).
pub const RELAY_GATHER_MS_MAX: u64 = 50;
/// Advisory lock key that elects the single active relay ("kerp-relay" in ASCII, to be recognisable in pg_locks).
pub const RELAY_LOCK_KEY: i64 = 0x6B65_7270_7265_6C79;
/// `application_name` of the connection that holds the relay lock, so operators (and tests) can find it.
pub const RELAY_LOCK_APPLICATION: &str = "kerp-relay-lock";
/// Longest pause between attempts after an error, in milliseconds.
const BACKOFF_MS_MAX: u64 = 5_000;
/// How long a standby relay waits before it tries for the lock again, in milliseconds.
const STANDBY_POLL_MS: u64 = 1_000;
/// How often the backlog gauges are refreshed, in milliseconds.
const BACKLOG_INTERVAL_MS: u64 = 5_000;
/// How long a company stays held before its first unpublished row is tried again, in milliseconds (the default of
/// `RELAY_HELD_RETRY_MS`).
pub const HELD_RETRY_INTERVAL_MS: u64 = 60_000;
/// Longest a round waits for its acknowledgements, in milliseconds. The fault suite caught librdkafka's producer never
/// delivering again after Kafka came back from an outage (partition leaders stayed unknown); past this wait the round
/// gives up, the producer is rebuilt and the rows, still in the outbox, are sent again. A re-sent event that had in
/// fact landed is a duplicate the fold skips by its sequence.
pub const DELIVERY_WAIT_MS_MAX: u64 = 30_000;
/// On shutdown, the longest the relay waits for acknowledgements still outstanding, in milliseconds. Past it the
/// rows stay in the outbox and are published again by the next relay, which the fold's sequence check makes harmless.
pub const SHUTDOWN_WAIT_MS_MAX: u64 = 3_000;

/// The idempotent producer the relay publishes with.
///
/// # Errors
/// Invalid configuration.
pub fn producer(kafka: &KafkaConfig) -> Result<FutureProducer> {
    Ok(producer_config(kafka).create()?)
}

/// The settings of the relay's producer: `kafka`'s connection settings and the producer's own. Apart from
/// [`producer`] so that the settings the exactly-once argument rests on can be checked without a broker.
#[must_use]
pub fn producer_config(kafka: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = kafka.client_config();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // Zero means "never time out": while Kafka is down, messages wait in the producer instead of failing out of
        // order, which keeps each company's events in sequence.
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // The same limit as the topic's `max.message.bytes`, so the broker never refuses what the producer sent.
        .set("message.max.bytes", MESSAGE_BYTES_MAX.to_string());
    c
}

/// Errors that will not go away by sending the same message again.
fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::InvalidArgument
        )
    )
}

/// A company whose outbox rows are not sent until `RELAY_HELD_RETRY_MS` has passed.
#[derive(Debug, Clone)]
struct Held {
    row_id: i64,
    since: Instant,
}

/// The relay's state between rounds.
struct Relay {
    pool: PgPool,
    config: Arc<Config>,
    producer: Option<FutureProducer>,
    lock_conn: Option<PgConnection>,
    /// Topics known to exist with the pipeline's settings: the configured one, and any other an outbox row names.
    ready_topics: HashSet<String>,
    held: HashMap<Uuid, Held>,
    backlog_at: Option<Instant>,
}

/// Runs the relay until `shutdown`. The round in flight is finished first, or given up after
/// [`SHUTDOWN_WAIT_MS_MAX`] if Kafka does not answer.
///
/// # Errors
/// A topic that could lose events (finite retention, a smaller message limit); other problems are retried.
pub async fn run(pool: PgPool, config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    let mut relay =
        Relay { pool, config, producer: None, lock_conn: None, ready_topics: HashSet::new(), held: HashMap::new(), backlog_at: None };
    let mut backoff_ms = 100;
    while !shutdown.is_cancelled() {
        relay.refresh_backlog().await;
        let pause_ms = match relay.round(&shutdown).await {
            // A full round leaves more behind: the next one starts at once. A partial one took all there was, so the
            // next waits `relay_gather_ms` for more to gather: a round costs a read, a delete and a produce request
            // whatever its size, and at 1,000 postings/s rounds back to back carried 11 rows each.
            Ok(Some(n)) if n > 0 => {
                backoff_ms = 100;
                if n >= usize::try_from(relay.round_rows()).unwrap_or(0) {
                    continue;
                }
                relay.config.relay_gather_ms
            }
            Ok(Some(_)) => relay.config.relay_poll_interval_ms,
            Ok(None) => STANDBY_POLL_MS,
            Err(crate::Error::Topic(e @ kafka::TopicError::FiniteRetention { .. } | e @ kafka::TopicError::MessageLimit { .. })) => {
                tracing::error!(error = %e, "outbox relay refuses to publish to this topic; postings stay in the outbox");
                return Err(crate::Error::Topic(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms, "outbox relay round failed; retrying");
                // The lock connection may be the broken part; reconnecting re-runs the election.
                relay.lock_conn = None;
                backoff_ms = (backoff_ms * 2).min(BACKOFF_MS_MAX);
                backoff_ms
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(pause_ms)) => {}
        }
    }
    Ok(())
}

impl Relay {
    /// One round: make sure of the topic and of leadership, then publish. `None` means "standing by".
    async fn round(&mut self, shutdown: &CancellationToken) -> Result<Option<usize>> {
        let topic = self.config.voucher_topic.clone();
        self.ensure_topic(&topic).await?;
        if !self.lead().await? {
            metrics::gauge!("outbox_relay_leader").set(0.0);
            return Ok(None);
        }
        metrics::gauge!("outbox_relay_leader").set(1.0);
        if self.producer.is_none() {
            self.producer = Some(producer(&self.config.kafka)?);
        }
        let retry_after = Duration::from_millis(self.config.relay_held_retry_ms);
        self.held.retain(|company, h| {
            let keep = h.since.elapsed() < retry_after;
            if !keep {
                tracing::info!(%company, row_id = h.row_id, "trying a held company's outbox again");
            }
            keep
        });
        let n = self.publish_round(shutdown).await;
        if let Some(fatal) = self.producer.as_ref().and_then(|p| p.client().fatal_error()) {
            // An idempotent producer that hit a fatal error (the broker refused its producer id, say) fails every
            // later message; only a new one, with a new producer id, can publish again. Its failed rows stayed in the
            // outbox and go out with the new producer.
            self.drop_producer("fatal", &format!("{fatal:?}"));
        }
        metrics::gauge!("outbox_held_companies").set(self.held.len() as f64);
        n.map(Some)
    }

    /// Drops the producer so that the next round builds a new one (with a new producer id). `reason` is the label of
    /// `outbox_producer_rebuilds_total` (`fatal` or `no_ack`), `detail` goes to the log.
    fn drop_producer(&mut self, reason: &'static str, detail: &str) {
        tracing::error!(reason, detail, "dropping the Kafka producer; the next round builds a new one");
        metrics::counter!("outbox_producer_rebuilds_total", "reason" => reason).increment(1);
        self.producer = None;
    }

    /// Creates a topic with the pipeline's settings (every event kept, the message limit) or checks an existing one,
    /// once per topic: a row is never sent to a topic that a broker would create on the fly with finite retention.
    async fn ensure_topic(&mut self, topic: &str) -> Result<()> {
        if !self.ready_topics.contains(topic) {
            let c = &self.config;
            kafka::ensure_topic(&c.kafka, topic, c.voucher_topic_partitions, &c.topic).await?;
            self.ready_topics.insert(topic.to_owned());
        }
        Ok(())
    }

    /// Whether this relay holds the lock, taking it if it is free. A relay that holds it reads each round's rows on
    /// the lock connection itself ([`Relay::publish_round`]): a session-level advisory lock is only ever released
    /// with its session, so a read that succeeds on that session proves the lock is still held, and a lock connection
    /// that was closed or terminated fails the read and loses the lead before anything is published. (Each round
    /// used to ask `pg_locks` first: one more round trip, and the costliest statement of the round.)
    async fn lead(&mut self) -> Result<bool> {
        if self.lock_conn.is_some() {
            return Ok(true);
        }
        let options: PgConnectOptions = self.config.database_url.parse()?;
        let mut conn = options.application_name(RELAY_LOCK_APPLICATION).connect().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(RELAY_LOCK_KEY).fetch_one(&mut conn).await?;
        if got {
            tracing::info!("this outbox relay is now the active one");
            self.lock_conn = Some(conn);
        }
        Ok(got)
    }

    /// Refreshes `outbox_backlog_rows` and `outbox_oldest_row_age_seconds` every [`BACKLOG_INTERVAL_MS`].
    async fn refresh_backlog(&mut self) {
        if self.backlog_at.is_some_and(|t| t.elapsed() < Duration::from_millis(BACKLOG_INTERVAL_MS)) {
            return;
        }
        self.backlog_at = Some(Instant::now());
        let row: Result<(i64, f64), _> =
            sqlx::query_as("SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) FROM outbox")
                .fetch_one(&self.pool)
                .await;
        match row {
            Ok((rows, age)) => {
                metrics::gauge!("outbox_backlog_rows").set(rows as f64);
                metrics::gauge!("outbox_oldest_row_age_seconds").set(age);
            }
            Err(e) => tracing::warn!(error = %e, "could not measure the outbox backlog"),
        }
    }

    /// Most rows a round reads: `RELAY_BATCH_ROWS`, within 1 and [`RELAY_BATCH_ROWS_MAX`].
    fn round_rows(&self) -> i64 {
        self.config.relay_batch_rows.clamp(1, RELAY_BATCH_ROWS_MAX)
    }

    /// A statement on the lock connection failed: the lock may be gone with it, so this relay stops publishing and
    /// stands for election again. Returns the error for the round.
    fn lose_lock(&mut self, e: sqlx::Error) -> crate::Error {
        tracing::warn!(error = %e, "the outbox relay lost its lock connection; it stops publishing and stands for election again");
        metrics::counter!("outbox_relay_lock_lost_total").increment(1);
        self.lock_conn = None;
        e.into()
    }

    fn hold(&mut self, company: Uuid, row_id: i64, error: &dyn std::fmt::Display) {
        tracing::error!(%company, row_id, %error,
            "an outbox row cannot be published; holding back this company's events (others go on)");
        metrics::counter!("outbox_holds_total").increment(1);
        self.held.insert(company, Held { row_id, since: Instant::now() });
    }

    /// Publishes the oldest rows of companies that are not held, and deletes the acknowledged ones. Returns how many
    /// were published.
    async fn publish_round(&mut self, shutdown: &CancellationToken) -> Result<usize> {
        let held: Vec<Uuid> = self.held.keys().copied().collect();
        let limit = self.round_rows();
        let Some(lock_conn) = self.lock_conn.as_mut() else { return Ok(0) };
        // On the lock connection: the read succeeds only while this relay still holds the lock (see `lead`).
        let read = sqlx::query_as("SELECT id, company_id, topic, payload FROM outbox WHERE company_id <> ALL($1) ORDER BY id LIMIT $2")
            .bind(&held)
            .bind(limit)
            .fetch_all(lock_conn)
            .await;
        let rows: Vec<OutboxRow> = match read {
            Ok(rows) => rows,
            Err(e) => return Err(self.lose_lock(e)),
        };
        if rows.is_empty() {
            return Ok(0);
        }
        let Some(producer) = self.producer.clone() else { return Ok(0) };
        // Enqueued one by one in id order; the idempotent producer keeps that order per partition. A company whose
        // row fails is not sent any further in this round, so none of its later events overtakes the failed one.
        let mut blocked: HashSet<Uuid> = HashSet::new();
        let topics: HashSet<String> = rows.iter().map(|r| r.topic.clone()).collect();
        for topic in topics {
            if let Err(e) = self.ensure_topic(&topic).await {
                // The configured topic was checked at the start of the round; a row naming another topic that cannot
                // be used safely holds its company rather than stopping everyone.
                for row in rows.iter().filter(|r| r.topic == topic) {
                    if blocked.insert(row.company_id) {
                        self.hold(row.company_id, row.id, &e);
                    }
                }
            }
        }
        let mut sent: Vec<(&OutboxRow, DeliveryFuture)> = Vec::with_capacity(rows.len());
        let mut transient: Option<KafkaError> = None;
        for row in &rows {
            if blocked.contains(&row.company_id) {
                continue;
            }
            let key = row.company_id.to_string();
            match producer.send_result(FutureRecord::to(&row.topic).key(&key).payload(&row.payload)) {
                Ok(delivery) => sent.push((row, delivery)),
                Err((e, _)) if is_permanent(&e) => {
                    self.hold(row.company_id, row.id, &e);
                    blocked.insert(row.company_id);
                }
                Err((e, _)) => {
                    // Most likely the local queue is full: stop here and send the rest next round, in order.
                    transient = Some(e);
                    break;
                }
            }
        }
        let mut acked: Vec<i64> = Vec::with_capacity(sent.len());
        let deliveries = futures::future::join_all(sent.into_iter().map(|(row, d)| async move { (row, d.await) }));
        let results = tokio::select! {
            r = deliveries => r,
            () = tokio::time::sleep(Duration::from_millis(DELIVERY_WAIT_MS_MAX)) => {
                self.drop_producer("no_ack", "no acknowledgement within DELIVERY_WAIT_MS_MAX");
                return Err(crate::Error::Other(format!(
                    "no acknowledgement for {DELIVERY_WAIT_MS_MAX} ms; the producer is rebuilt and the rows are sent again"
                )));
            }
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(Duration::from_millis(SHUTDOWN_WAIT_MS_MAX)).await;
            } => {
                tracing::warn!(wait_ms = SHUTDOWN_WAIT_MS_MAX, "shutting down with acknowledgements outstanding; those rows stay in the outbox");
                return Ok(0);
            }
        };
        // Companies with a row that failed in this round, and the row; results come in id order.
        let mut failed: HashMap<Uuid, i64> = HashMap::new();
        for (row, result) in results {
            match result {
                Ok(Ok(_)) => {
                    if let Some(&failed_row) = failed.get(&row.company_id) {
                        if blocked.insert(row.company_id) {
                            // A later event of the company landed after an earlier one failed, so sending the failed
                            // one again would put it out of order. Hold the company; the fold sees the gap and holds
                            // it too rather than skip the missing event.
                            self.hold(row.company_id, failed_row, &"a later event was published past this row");
                        }
                    }
                    acked.push(row.id);
                }
                Ok(Err((e, _))) if is_permanent(&e) => {
                    if blocked.insert(row.company_id) {
                        self.hold(row.company_id, row.id, &e);
                    }
                }
                Ok(Err((e, _))) => {
                    // Not the row's fault (the producer hit a fatal error, say): it stays in the outbox and is sent
                    // again, in order, next round.
                    failed.entry(row.company_id).or_insert(row.id);
                    transient.get_or_insert(e);
                }
                // The producer was dropped under the future; nothing is known, so the row stays.
                Err(_) => {}
            }
        }
        if !acked.is_empty() {
            // On the lock connection too, which spares the round trips of taking a pooled connection and giving it
            // back; a lost lock connection fails the delete, and the rows are published again by whoever leads next
            // (the fold skips them by their sequence).
            let Some(lock_conn) = self.lock_conn.as_mut() else { return Ok(0) };
            if let Err(e) = sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&acked).execute(lock_conn).await {
                return Err(self.lose_lock(e));
            }
            metrics::counter!("outbox_published_total").increment(acked.len() as u64);
        }
        match transient {
            Some(e) if acked.is_empty() => Err(crate::Error::Kafka(e)),
            _ => Ok(acked.len()),
        }
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    company_id: Uuid,
    topic: String,
    payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use kerp_core::kafka::{KafkaConfig, MESSAGE_BYTES_MAX};

    /// The producer's message limit equals the topic's `max.message.bytes` (`kafka::ensure_topic` sets it to the same
    /// constant), so an event the producer takes is never refused by the broker for its size; the other settings keep
    /// a company's events in order and published once (docs/exactly-once.md, section 2).
    #[test]
    fn the_producer_is_idempotent_waits_for_every_replica_and_sends_what_the_topic_takes() {
        let c = super::producer_config(&KafkaConfig::plaintext("k:9092"));
        assert_eq!(c.get("message.max.bytes"), Some(MESSAGE_BYTES_MAX.to_string().as_str()));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        assert_eq!(c.get("bootstrap.servers"), Some("k:9092"), "the connection settings are kept");
    }
}
