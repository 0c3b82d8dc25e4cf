//! The outbox relay: outbox rows flow from Postgres to Kafka, in id order, and are deleted only after the broker has
//! acknowledged them (`acks=all`, idempotent producer).
//!
//! Only one relay publishes at a time: it holds a session advisory lock on a dedicated connection, so a company's events
//! reach the topic in the order of their sequence numbers. If Kafka is down the relay waits (messages never time out
//! in the producer) while postings keep succeeding; the backlog drains when Kafka returns. A crash between the
//! broker's acknowledgement and the delete re-publishes those rows later, in the same order; the fold drops such
//! duplicates by their per-company sequence (see `docs/exactly-once.md`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Config, Result};

/// Most outbox rows published per round. Bounds memory and the size of the delete that follows.
pub const RELAY_BATCH_ROWS_MAX: i64 = 1000;
/// Advisory lock key that elects the single active relay ("kerp-relay" in ASCII, to be recognisable in pg_locks).
const RELAY_LOCK_KEY: i64 = 0x6B65_7270_7265_6C79;
/// Longest pause between attempts after an error, in milliseconds.
const BACKOFF_MS_MAX: u64 = 5_000;
/// How long a send may wait for room in the producer's local queue before it counts as an error, in milliseconds.
const QUEUE_WAIT_MS_MAX: u64 = 5_000;

/// The idempotent producer the relay publishes with.
///
/// # Errors
/// Invalid configuration.
pub fn producer(brokers: &str) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Zero means "never time out": while Kafka is down, messages wait in the producer instead of failing out of
        // order, which keeps each company's events in sequence.
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()?)
}

/// Creates the topic if it does not exist. Already existing is fine.
///
/// # Errors
/// Kafka errors other than "already exists".
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))).request_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &opts).await?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(crate::Error::Other(format!("creating topic {t}: {code}"))),
        }
    }
    Ok(())
}

/// Runs the relay until `shutdown`; the round in flight is finished first.
///
/// # Errors
/// Only a producer that cannot be configured; connection problems are retried.
pub async fn run(pool: PgPool, config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    let producer = producer(&config.kafka_brokers)?;
    let mut backoff_ms = 100;
    let mut topic_ready = false;
    let mut lock_conn: Option<PgConnection> = None;
    while !shutdown.is_cancelled() {
        let round = async {
            if !topic_ready {
                ensure_topic(&config.kafka_brokers, &config.voucher_topic, config.voucher_topic_partitions).await?;
                topic_ready = true;
            }
            if lock_conn.is_none() {
                let mut conn = PgConnection::connect(&config.database_url).await?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(RELAY_LOCK_KEY).fetch_one(&mut conn).await?;
                if !got {
                    // Another relay is active; stay on standby.
                    return Ok(None);
                }
                lock_conn = Some(conn);
            }
            publish_round(&pool, &producer, config.relay_batch_rows.clamp(1, RELAY_BATCH_ROWS_MAX)).await.map(Some)
        };
        let pause_ms = match round.await {
            Ok(Some(n)) if n > 0 => {
                backoff_ms = 100;
                continue;
            }
            Ok(Some(_)) => config.relay_poll_interval_ms,
            Ok(None) => 1_000,
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms, "outbox relay round failed; retrying");
                // The lock connection may be the broken part; reconnecting re-runs the election.
                lock_conn = None;
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

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    company_id: Uuid,
    topic: String,
    payload: Vec<u8>,
}

/// Publishes the oldest outbox rows and deletes the acknowledged prefix. Returns how many were published.
async fn publish_round(pool: &PgPool, producer: &FutureProducer, limit: i64) -> Result<usize> {
    let rows: Vec<OutboxRow> =
        sqlx::query_as("SELECT id, company_id, topic, payload FROM outbox ORDER BY id LIMIT $1").bind(limit).fetch_all(pool).await?;
    if rows.is_empty() {
        metrics::gauge!("outbox_backlog_rows").set(0.0);
        return Ok(0);
    }
    let keys: Vec<String> = rows.iter().map(|r| r.company_id.to_string()).collect();
    // All sends are queued at once, in id order; the idempotent producer keeps that order per partition.
    let sends = rows.iter().zip(&keys).map(|(r, key)| {
        producer.send(FutureRecord::to(&r.topic).key(key.as_str()).payload(&r.payload), Duration::from_millis(QUEUE_WAIT_MS_MAX))
    });
    let results = join_all(sends).await;
    // Only the acknowledged prefix is deleted: a later row is never removed while an earlier one still waits.
    let acked: Vec<i64> = rows.iter().zip(&results).take_while(|(_, r)| r.is_ok()).map(|(row, _)| row.id).collect();
    if !acked.is_empty() {
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&acked).execute(pool).await?;
        metrics::counter!("outbox_published_total").increment(acked.len() as u64);
    }
    if let Some((_, Err((e, _)))) = results.iter().enumerate().find(|(_, r)| r.is_err()) {
        return Err(crate::Error::Kafka(e.clone()));
    }
    Ok(acked.len())
}
