//! stream-workers: voucher and account events flow from Kafka through the pure [`fold`] into ClickHouse via [`sink`].
//!
//! The loop collects a batch (up to `batch_rows` lines or `flush_interval_ms`), reads the watermarks of the
//! companies in it, folds, writes to ClickHouse, and only then commits the Kafka offsets. Exactly-once comes from
//! the per-company watermark written atomically with the balances; see `docs/exactly-once.md`.

pub mod fold;
pub mod sink;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kerp_core::clickhouse::ClickHouseConfig;
use kerp_schemas::{Event, VoucherPosted};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::sink::DeadLetterRow;

/// Hard cap on lines per batch, whatever the configuration says. A batch's balance deltas must stay one ClickHouse
/// block (`max_insert_block_size`, 1,048,576 rows by default) so that the INSERT lands as one part, atomically.
pub const BATCH_ROWS_MAX: usize = 200_000;
/// Longest a batch's reads and writes in ClickHouse may take before the attempt is abandoned and retried, in
/// milliseconds. An HTTP request that hangs must not stall the fold forever.
const CLICKHOUSE_ATTEMPT_MS_MAX: u64 = 60_000;
/// Longest wait between attempts to write a failed batch again, in milliseconds.
const RETRY_BACKOFF_MS_MAX: u64 = 10_000;

/// Errors of stream-workers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("ClickHouse did not answer within {0} ms")]
    Timeout(u64),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of stream-workers.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kafka bootstrap servers, comma separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Topic of voucher events.
    #[arg(long, env = "VOUCHER_TOPIC", default_value = "kerp.vouchers.v1")]
    pub voucher_topic: String,
    /// Consumer group; workers in one group share the topic's partitions.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "kerp-fold")]
    pub consumer_group: String,
    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,
    /// Most voucher lines per ClickHouse batch (capped at `BATCH_ROWS_MAX`).
    #[arg(long, env = "BATCH_ROWS_MAX", default_value_t = 20_000)]
    pub batch_rows_max: usize,
    /// Longest time a batch stays open after its first event, in milliseconds. Bounds freshness under light load.
    #[arg(long, env = "FLUSH_INTERVAL_MS", default_value_t = 200)]
    pub flush_interval_ms: u64,
    /// Address of the `/metrics` and `/health` endpoint; empty to disable.
    #[arg(long, env = "WORKER_METRICS_LISTEN", default_value = "127.0.0.1:9102")]
    pub metrics_listen: String,
    /// Test only: abort the process right after a batch reached ClickHouse and before its offsets are committed.
    #[arg(long, env = "KERP_FAULT_ABORT_AFTER_INSERT", default_value_t = false, hide = true)]
    pub fault_abort_after_insert: bool,
}

/// Counts rebalances and reports consumer lag from librdkafka's statistics.
struct WorkerContext {
    topic: String,
    generation: AtomicU64,
}

impl ClientContext for WorkerContext {
    fn stats(&self, stats: Statistics) {
        if let Some(t) = stats.topics.get(&self.topic) {
            for (p, s) in &t.partitions {
                // librdkafka reports -1 for partitions it does not consume; they are not ours to measure.
                if *p >= 0 && s.consumer_lag >= 0 {
                    metrics::gauge!("kafka_consumer_lag_messages", "partition" => p.to_string()).set(s.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // Not fatal: the next commit covers these offsets, and a replay meanwhile is skipped by the watermark.
            tracing::warn!(error = %e, "offset commit failed");
            metrics::counter!("kafka_commit_errors_total").increment(1);
        }
    }

    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Messages fetched before a rebalance may belong to partitions that now have another owner. Bumping the
        // generation makes the loop drop them; the consumer resumes from committed offsets, so nothing is skipped.
        self.generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(?rebalance, "rebalance");
    }
}

/// One fetched message, detached from the consumer.
struct Fetched {
    partition: i32,
    offset: i64,
    generation: u64,
    payload: Vec<u8>,
    /// Decoded on receipt, so the batch can be bounded by its real line count.
    event: Result<Event, String>,
}

fn consumer(config: &Config) -> Result<StreamConsumer<WorkerContext>> {
    let ctx = WorkerContext { topic: config.voucher_topic.clone(), generation: AtomicU64::new(0) };
    let c: StreamConsumer<WorkerContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", &config.consumer_group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .set("session.timeout.ms", "10000")
        .create_with_context(ctx)?;
    c.subscribe(&[&config.voucher_topic])?;
    Ok(c)
}

/// Runs the fold until `shutdown`. The batch in flight is written and committed before this returns.
///
/// # Errors
/// Kafka configuration errors, or ClickHouse unreachable at start-up.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let server = config.clickhouse.server_client();
    sink::migrate(&server, &config.clickhouse.clickhouse_database).await?;
    let ch = config.clickhouse.client();
    if !config.metrics_listen.is_empty() {
        spawn_metrics(&config.metrics_listen, shutdown.clone()).await?;
    }
    let consumer = consumer(&config)?;
    let batch_rows = config.batch_rows_max.clamp(1, BATCH_ROWS_MAX);
    let flush = Duration::from_millis(config.flush_interval_ms.max(1));
    tracing::info!(topic = %config.voucher_topic, group = %config.consumer_group, batch_rows, "stream-workers folding");

    while !shutdown.is_cancelled() {
        let batch = collect(&consumer, batch_rows, flush, &shutdown).await?;
        if batch.is_empty() {
            continue;
        }
        let generation = consumer.context().generation.load(Ordering::SeqCst);
        let batch: Vec<Fetched> = batch.into_iter().filter(|m| m.generation == generation).collect();
        if batch.is_empty() {
            continue;
        }
        process(&config, &ch, &consumer, batch, &shutdown).await?;
    }
    tracing::info!("stream-workers stopped");
    Ok(())
}

/// Waits for a first message, then keeps the batch open until it is full or `flush` has passed.
async fn collect(
    consumer: &StreamConsumer<WorkerContext>,
    batch_rows: usize,
    flush: Duration,
    shutdown: &CancellationToken,
) -> Result<Vec<Fetched>> {
    let mut batch = Vec::new();
    let mut lines = 0usize;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let wait = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(batch),
            () = wait => return Ok(batch),
            m = consumer.recv() => match m {
                Ok(m) => {
                    let payload = m.payload().unwrap_or_default().to_vec();
                    let event = kerp_schemas::decode(&payload).map_err(|e| e.to_string());
                    lines += match &event {
                        Ok(Event::VoucherPosted(e)) => e.lines.len().max(1),
                        Ok(Event::AccountsChanged(e)) => e.accounts.len().max(1),
                        Err(_) => 1,
                    };
                    batch.push(Fetched {
                        partition: m.partition(),
                        offset: m.offset(),
                        generation: consumer.context().generation.load(Ordering::SeqCst),
                        payload,
                        event,
                    });
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + flush);
                    if lines >= batch_rows {
                        return Ok(batch);
                    }
                }
                Err(e) => {
                    // Broker outages surface here; librdkafka reconnects by itself.
                    tracing::warn!(error = %e, "kafka receive error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Decodes, folds, writes and commits one batch, retrying the ClickHouse write until it succeeds or shutdown.
async fn process(
    config: &Config,
    ch: &clickhouse::Client,
    consumer: &StreamConsumer<WorkerContext>,
    batch: Vec<Fetched>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let started = Instant::now();
    let mut events: Vec<VoucherPosted> = Vec::with_capacity(batch.len());
    let mut origin: Vec<usize> = Vec::with_capacity(batch.len());
    let mut dead = Vec::new();
    // Account changes are idempotent upserts into the dimension: no sequence, no watermark.
    let mut account_rows = Vec::new();
    let now_s = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    for (i, m) in batch.iter().enumerate() {
        match &m.event {
            Ok(Event::VoucherPosted(e)) => {
                events.push(e.clone());
                origin.push(i);
            }
            Ok(Event::AccountsChanged(e)) => account_rows.extend(fold::account_rows(e)),
            Err(e) => dead.push(dead_letter(config, m, e.clone(), now_s)),
        }
    }
    let mut companies: Vec<_> = events.iter().map(|e| e.company_id).collect();
    companies.sort_unstable();
    companies.dedup();

    let mut backoff_ms = 200;
    let commit_query_id = format!("kerp-fold-{}", uuid::Uuid::new_v4());
    let mut retry = false;
    let out = loop {
        let attempt = async {
            if retry {
                sink::wait_until_finished(ch, &commit_query_id).await?;
            }
            let w = sink::watermarks(ch, &companies).await?;
            let mut out = fold::fold(&events, &w);
            out.accounts.extend(account_rows.iter().cloned());
            let mut dead = dead.clone();
            dead.extend(out.rejected.iter().map(|r| dead_letter(config, &batch[origin[r.index]], r.reason.clone(), now_s)));
            sink::write(ch, &out, &dead, &commit_query_id).await?;
            Ok::<_, Error>(out)
        };
        let attempt = async {
            tokio::time::timeout(Duration::from_millis(CLICKHOUSE_ATTEMPT_MS_MAX), attempt)
                .await
                .map_err(|_| Error::Timeout(CLICKHOUSE_ATTEMPT_MS_MAX))?
        };
        match attempt.await {
            Ok(out) => break out,
            Err(e) => {
                tracing::error!(error = %e, backoff_ms, "writing batch to ClickHouse failed; retrying");
                metrics::counter!("fold_write_errors_total").increment(1);
                retry = true;
                tokio::select! {
                    // Nothing was committed, so the batch is replayed after restart; the watermark makes that safe.
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                }
                backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
            }
        }
    };

    if config.fault_abort_after_insert {
        tracing::warn!("fault injection: aborting after the ClickHouse write, before the offset commit");
        std::process::abort();
    }

    let mut next: HashMap<i32, i64> = HashMap::new();
    for m in &batch {
        let e = next.entry(m.partition).or_insert(0);
        *e = (*e).max(m.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &next {
        tpl.add_partition_offset(&config.voucher_topic, *p, Offset::Offset(*o))?;
    }
    // Asynchronous on purpose: the rows are already in ClickHouse, so a commit that fails or never lands only means
    // a replay that the watermark skips. Waiting for it would stall the fold on a slow group coordinator.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::warn!(error = %e, "offset commit could not be sent");
    }

    let now_us = chrono::Utc::now().timestamp_micros();
    for i in &out.folded {
        let age = (now_us - events[*i].posted_at).max(0) as f64 / 1e6;
        metrics::histogram!("fold_event_freshness_seconds").record(age);
    }
    metrics::counter!("fold_events_total").increment(out.folded.len() as u64);
    metrics::counter!("fold_lines_total").increment(out.lines.len() as u64);
    metrics::counter!("fold_duplicates_skipped_total").increment(out.duplicates as u64);
    metrics::counter!("fold_dead_letters_total").increment((dead.len() + out.rejected.len()) as u64);
    if out.gaps > 0 {
        tracing::error!(gaps = out.gaps, "company sequence gaps seen; an event may have been published out of order");
        metrics::counter!("fold_sequence_gaps_total").increment(out.gaps as u64);
    }
    metrics::histogram!("fold_batch_duration_seconds").record(started.elapsed().as_secs_f64());
    tracing::debug!(
        messages = batch.len(),
        folded = out.folded.len(),
        duplicates = out.duplicates,
        lines = out.lines.len(),
        "batch written and committed"
    );
    Ok(())
}

fn dead_letter(config: &Config, m: &Fetched, error: String, now_s: u32) -> DeadLetterRow {
    use std::fmt::Write;
    let payload_hex = m.payload.iter().fold(String::with_capacity(m.payload.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    tracing::error!(partition = m.partition, offset = m.offset, %error, "dead letter");
    DeadLetterRow { topic: config.voucher_topic.clone(), partition: m.partition, offset: m.offset, error, payload_hex, received_at: now_s }
}

async fn spawn_metrics(listen: &str, shutdown: CancellationToken) -> Result<()> {
    let addr: SocketAddr = listen.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{listen}: {e}")))?;
    let app = kerp_core::http::observed(axum::Router::new().route("/health", axum::routing::get(|| std::future::ready("ok"))));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(kerp_core::http::serve(listener, app, shutdown));
    Ok(())
}
