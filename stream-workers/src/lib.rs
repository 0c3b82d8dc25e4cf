//! stream-workers: voucher and account events flow from Kafka through the pure [`fold`] into ClickHouse via [`sink`].
//!
//! The loop collects a batch (up to `batch_rows` lines or `flush_interval_ms`), folds it against the in-memory
//! watermarks of the partitions this worker owns (loaded from ClickHouse on assignment), writes it to ClickHouse, and
//! only then commits the Kafka offsets. Exactly-once comes from rows keyed by event, which collapse when written
//! twice; see `docs/exactly-once.md`.

pub mod fold;
pub mod rebuild;
pub mod reconcile;
pub mod sink;
pub mod snapshot;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kerp_core::clickhouse::ClickHouseConfig;
use kerp_schemas::Event;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::fold::FoldState;
use crate::sink::DeadLetterRow;

/// Hard cap on lines per batch, whatever the configuration says. Bounds the worker's memory and keeps each INSERT
/// within one block (`sink::INSERT_BLOCK_ROWS_MAX`).
pub const BATCH_ROWS_MAX: usize = 200_000;
/// librdkafka's prefetch queue of the live fold, in kilobytes, bounded as the rebuild's is (see `rebuild.rs`). Its
/// default is 64 MiB, with `queued.min.messages` at 100,000 per partition. Measured on catch-ups of 120,000 and
/// 480,000 vouchers (perf/README.md): the peak stayed where it was (126–178 MiB resident, mostly the batches being
/// decoded and written), and the worker kept 58–81 MiB afterwards instead of 41–118.
const FOLD_PREFETCH_KBYTES_MAX: u32 = 16_384;
/// Messages librdkafka tries to keep prefetched for each partition of the live fold: a batch's worth (a batch is at
/// most `batch_rows` lines, 10,000 two-line vouchers by default) spread over the partitions, with room to spare.
const FOLD_PREFETCH_MESSAGES_MIN: u32 = 10_000;
/// How long librdkafka's fetcher waits before it fetches again for a full prefetch queue, in milliseconds. With a
/// bounded queue its default (1 s) leaves the fetcher idle each time the queue fills during a catch-up.
pub(crate) const FETCH_QUEUE_BACKOFF_MS: u32 = 10;
/// How often a worker with held companies looks for operator skips that clear them, in milliseconds.
const HOLD_RECHECK_INTERVAL_MS: u64 = 5_000;
/// Longest the consumer may be out of its group (librdkafka's group state not `up`) before the worker rebuilds it,
/// in milliseconds. librdkafka can stay out for good after a long broker outage (its coordinator requests time out
/// and it never rejoins); a new consumer rejoins. Meanwhile `/health` answers 503.
const CONSUMER_GROUP_DOWN_MS_MAX: i64 = 60_000;
/// Longest the loop waits for a retired consumer to close (to leave its group), in milliseconds. Closing waits for
/// the group coordinator; a consumer whose coordinator requests are stuck never closes, so it is left closing on a
/// thread of its own. That is the likeliest reading of a fresh-clone CI run whose fold stood still for 17 minutes, with
/// "GroupCoordinator: Timed out ... 1 out-queue" logged every minute and no rewind logged: the watchdog had retired the
/// stuck consumer, and rust-rdkafka's drop, which polls until the close completes, never returned.
const CONSUMER_CLOSE_MS_MAX: u64 = 10_000;
/// Most retired consumers left closing at once. Each holds a librdkafka instance (its threads and buffers); past
/// this, something keeps the group from working at all, and the worker exits so that its supervisor starts it afresh.
const CONSUMERS_CLOSING_MAX: usize = 4;
/// Retired consumers still closing on their own threads.
static CONSUMERS_CLOSING: AtomicUsize = AtomicUsize::new(0);
/// The group membership of the current consumer, for `/health` (`None` before there is a consumer).
static CURRENT_GROUP: Mutex<Option<Arc<GroupHealth>>> = Mutex::new(None);
/// Pause between checks while the voucher topic does not exist yet, in milliseconds.
const TOPIC_WAIT_MS: u64 = 2_000;
/// Longest the loop waits for a message before it looks after holds and ownership changes anyway, in milliseconds.
const IDLE_WAKE_MS: u64 = 1_000;
/// Longest a batch's reads and writes in ClickHouse may take before the attempt is abandoned and retried, in
/// milliseconds. An HTTP request that hangs must not stall the fold forever.
const CLICKHOUSE_ATTEMPT_MS_MAX: u64 = 60_000;
/// Longest wait between attempts to write a failed batch again, in milliseconds.
const RETRY_BACKOFF_MS_MAX: u64 = 10_000;
/// How long an idle connection of the periodic reconciler stays open, in seconds: less than its interval, so the
/// backend and the memory its last run left behind are not kept between runs.
const RECONCILE_IDLE_CONNECTION_S: u64 = 60;

/// How the worker's comparisons with Postgres connect (the periodic reconciler, and the `reconcile` and `rebuild`
/// commands): with no parallel workers and no JIT. Measured with full runs over `large`-sized companies, Postgres went
/// over its 256 MiB goal without these settings:
///  - parallel workers: the sums took both cores and three backends of 40-60 MiB each; one backend is slower but
///    leaves the other core to the requests;
///  - JIT: the sums' cost crosses `jit_above_cost`, which loaded LLVM (56 MiB) into the backend, and a pooled
///    connection kept it until it closed.
///
/// The realistic workload's periodic full run showed both; `rebuild` over the dev stack's 7M vouchers reached 364 MiB
/// (summed PSS) with Postgres's defaults (perf/README.md).
///
/// # Errors
/// An unparsable URL.
pub fn reconcile_pg_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions> {
    Ok(url.parse::<sqlx::postgres::PgConnectOptions>()?.options([("max_parallel_workers_per_gather", "0"), ("jit", "off")]))
}

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
    #[error("voucher topic: {0}")]
    Topic(#[from] kerp_core::kafka::TopicError),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("rebuild: {0}")]
    Rebuild(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{0} retired Kafka consumers are still waiting for their group coordinator to let them close")]
    ConsumersStuck(usize),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of stream-workers.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: kerp_core::kafka::KafkaConfig,
    /// Topic of voucher events.
    #[arg(long, env = "VOUCHER_TOPIC", default_value = "kerp.vouchers.v1")]
    pub voucher_topic: String,
    /// Consumer group; workers in one group share the topic's partitions.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "kerp-fold")]
    pub consumer_group: String,
    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,
    #[command(flatten)]
    pub topic: kerp_core::kafka::TopicConfig,
    /// Most voucher lines per ClickHouse batch of the live fold (capped at `BATCH_ROWS_MAX`). `rebuild` batches by
    /// its own bounds (`REBUILD_BATCH_MESSAGES_MAX`, `REBUILD_BATCH_LINES_MAX`), set for throughput, not freshness.
    #[arg(long, env = "BATCH_ROWS_MAX", default_value_t = 20_000)]
    pub batch_rows_max: usize,
    /// Longest time a batch stays open after its first event, in milliseconds. Bounds freshness under light load.
    #[arg(long, env = "FLUSH_INTERVAL_MS", default_value_t = 200)]
    pub flush_interval_ms: u64,
    /// Address of the `/metrics` and `/health` endpoint; empty to disable.
    #[arg(long, env = "WORKER_METRICS_LISTEN", default_value = "127.0.0.1:9102")]
    pub metrics_listen: String,
    /// Postgres, the source of truth, for `reconcile`, `rebuild` and the periodic reconciliation. Without it the
    /// worker folds but does not reconcile.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// How often the worker reconciles the aggregates with Postgres, in milliseconds (0 turns it off). The result is
    /// exported as `kerp_reconciliation_diff_won` and `kerp_reconciliation_last_run_timestamp_seconds`.
    #[arg(long, env = "RECONCILE_INTERVAL_MS", default_value_t = 300_000)]
    pub reconcile_interval_ms: u64,
    /// Every this many periodic reconciliations, one compares every company; the others compare only the companies
    /// whose watermark moved since they last compared clean (and any with a difference), over their events since.
    /// The default, with the default interval, is one full run a day (and one five minutes after a start), as a
    /// nightly reconciliation: on the dev stack's 4.9M vouchers a full run re-sums every line in Postgres, which took
    /// one core 3 to 6 minutes (hourly, that was 5 to 10 % of a core all day). A full run only adds what the partial
    /// ones cannot see: a row changed in ClickHouse outside the fold, below the sequence its company compared clean
    /// at.
    #[arg(long, env = "RECONCILE_FULL_EVERY", default_value_t = 288)]
    pub reconcile_full_every: u64,
    /// How often the worker looks for companies whose balance snapshot is due, in milliseconds (0 turns snapshots
    /// off; reports stay exact, only slower). See `snapshot.rs`.
    #[arg(long, env = "SNAPSHOT_INTERVAL_MS", default_value_t = 1_000)]
    pub snapshot_interval_ms: u64,
    /// A company with fewer than `SNAPSHOT_TAIL_EVENTS_MIN` events above its newest snapshot is snapshotted again
    /// once that snapshot is this old, in milliseconds. Lower means shorter tails for reports to collapse, and more
    /// snapshot work for ClickHouse.
    #[arg(long, env = "SNAPSHOT_IDLE_MS", default_value_t = 10_000)]
    pub snapshot_idle_ms: u64,
    /// Kafka consumer session timeout, in milliseconds: a worker silent for this long loses its partitions.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// Kafka `max.poll.interval.ms`: a worker that does not poll for this long loses its partitions. A batch that
    /// cannot be written within it is given up rather than written after another worker may have taken over.
    #[arg(long, env = "KAFKA_MAX_POLL_INTERVAL_MS", default_value_t = 300_000)]
    pub max_poll_interval_ms: u64,
    /// Test only: abort the process right after a batch reached ClickHouse and before its offsets are committed.
    #[arg(long, env = "KERP_FAULT_ABORT_AFTER_INSERT", default_value_t = false, hide = true)]
    pub fault_abort_after_insert: bool,
    /// Test only: stop the process (SIGSTOP) once, with a folded batch not yet written, to test fencing.
    #[arg(long, env = "KERP_FAULT_STOP_BEFORE_WRITE", default_value_t = false, hide = true)]
    pub fault_stop_before_write: bool,
}

/// A change of the partitions this worker owns, as the rebalance callback saw it.
enum Ownership {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Counts rebalances, passes ownership changes to the loop, and reports consumer lag from librdkafka's statistics.
struct WorkerContext {
    topic: String,
    generation: AtomicU64,
    changes: Mutex<Vec<Ownership>>,
    health: Arc<GroupHealth>,
    /// The group state last logged (`state/join_state`, and whether a coordinator request timed out), so that the
    /// log shows every change of membership and nothing else.
    logged_state: Mutex<String>,
}

/// Whether one consumer is a member of its group. Each consumer has its own: a retired consumer that is still
/// closing keeps logging its coordinator's timeouts, which must not count against its successor.
struct GroupHealth {
    /// When the consumer was last seen in its group (epoch milliseconds).
    up_at_ms: AtomicI64,
    /// When a request to the group coordinator first timed out since the last assignment (0: none). Set from
    /// librdkafka's log, cleared by the next assignment; while set, the consumer does not count as in its group.
    stuck_since_ms: AtomicI64,
}

impl GroupHealth {
    fn new() -> Self {
        Self { up_at_ms: AtomicI64::new(now_ms()), stuck_since_ms: AtomicI64::new(0) }
    }

    /// Whether the consumer has been out of its group for longer than [`CONSUMER_GROUP_DOWN_MS_MAX`].
    fn down_too_long(&self) -> bool {
        now_ms() - self.up_at_ms.load(Ordering::Relaxed) > CONSUMER_GROUP_DOWN_MS_MAX
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether the current consumer has been out of its group for longer than [`CONSUMER_GROUP_DOWN_MS_MAX`].
fn group_down_too_long() -> bool {
    CURRENT_GROUP.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref().is_some_and(|h| h.down_too_long())
}

/// Whether librdkafka's consumer-group statistics say the consumer is a member of its group: its coordinator is up
/// *and* it has joined (`steady`). The fault suite caught a consumer whose coordinator state stayed `up` after a Kafka
/// restart while its join requests sat in an out-queue forever (`join_state` never back to `steady`), so `state`
/// alone would keep the watchdog quiet while nothing is folded.
fn in_group(group: &rdkafka::statistics::ConsumerGroup) -> bool {
    group.state == "up" && group.join_state == "steady"
}

/// Whether a librdkafka log line says a request to the group coordinator timed out (`REQTMOUT`). A fresh-clone CI
/// caught a consumer whose session timed out during a Kafka stop, whose assignment was revoked, and whose rejoin then
/// sat in an out-queue for good ("GroupCoordinator: Timed out 0 in-flight, 0 retry-queued, 1 out-queue" every
/// minute) while the statistics kept reporting the group `up` and `steady`: nothing was folded for five minutes and
/// the watchdog never fired. Such a line is therefore taken as "out of the group" until the next assignment.
fn coordinator_timed_out(fac: &str, message: &str) -> bool {
    fac == "REQTMOUT" && message.contains("GroupCoordinator")
}

impl ClientContext for WorkerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if coordinator_timed_out(fac, log_message) {
            let _ = self.health.stuck_since_ms.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        }
        // As rust-rdkafka's default context logs.
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => tracing::error!(target: "librdkafka", "librdkafka: {fac} {log_message}"),
            L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {log_message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {log_message}"),
            L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {log_message}"),
        }
    }

    fn stats(&self, stats: Statistics) {
        let stuck = self.health.stuck_since_ms.load(Ordering::Relaxed) != 0;
        let up = stats.cgrp.as_ref().is_some_and(in_group) && !stuck;
        if up {
            self.health.up_at_ms.store(now_ms(), Ordering::Relaxed);
        }
        let state = stats.cgrp.as_ref().map_or_else(|| "none".to_owned(), |g| format!("{}/{}", g.state, g.join_state));
        let state = if stuck { format!("{state}, coordinator requests timing out") } else { state };
        let mut logged = self.logged_state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *logged != state {
            tracing::info!(group_state = %state, was = %logged, "consumer group state changed");
            *logged = state;
        }
        metrics::gauge!("kafka_consumer_group_up").set(if up { 1.0 } else { 0.0 });
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

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| {
            tpl.elements().iter().map(rdkafka::topic_partition_list::TopicPartitionListElem::partition).collect()
        };
        let change = match rebalance {
            Rebalance::Assign(tpl) => {
                self.health.stuck_since_ms.store(0, Ordering::Relaxed);
                Ownership::Assigned(partitions(tpl))
            }
            Rebalance::Revoke(tpl) => Ownership::Revoked(partitions(tpl)),
            Rebalance::Error(_) => return,
        };
        self.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(change);
    }
}

/// One fetched message, detached from the consumer.
pub struct Fetched {
    /// Decoded on receipt, so the batch can be bounded by its real line count.
    pub message: fold::Message,
    generation: u64,
    payload: Vec<u8>,
}

impl Fetched {
    /// Decodes a Kafka message; the company is also taken from the key, for messages that do not decode.
    fn decode(m: &impl Message) -> Self {
        let payload = m.payload().unwrap_or_default().to_vec();
        let event = kerp_schemas::decode(&payload).map_err(|e| e.to_string());
        let key_company = m.key().and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| Uuid::parse_str(k).ok());
        Self { message: fold::Message { partition: m.partition(), offset: m.offset(), key_company, event }, generation: 0, payload }
    }

    /// The ledger lines (or dimension rows) the message makes, at least 1: what batches are bounded by.
    fn lines(&self) -> usize {
        match &self.message.event {
            Ok(Event::VoucherPosted(e)) => e.lines.len().max(1),
            Ok(Event::AccountsChanged(e)) => e.accounts.len().max(1),
            Ok(Event::CompanyChanged(_)) => 1,
            Ok(Event::PartnersChanged(e)) => e.partners.len().max(1),
            Ok(Event::DepartmentsChanged(e)) => e.departments.len().max(1),
            Ok(Event::UsersChanged(e)) => e.users.len().max(1),
            Ok(Event::InvoiceChanged(_)) => 1,
            Err(_) => 1,
        }
    }
}

fn consumer(config: &Config) -> Result<StreamConsumer<WorkerContext>> {
    // A new consumer gets the full allowance to join its group.
    let health = Arc::new(GroupHealth::new());
    let ctx = WorkerContext {
        topic: config.voucher_topic.clone(),
        generation: AtomicU64::new(0),
        changes: Mutex::new(Vec::new()),
        health: Arc::clone(&health),
        logged_state: Mutex::new("none".to_owned()),
    };
    let c: StreamConsumer<WorkerContext> = config
        .kafka
        .client_config()
        .set("group.id", &config.consumer_group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set("max.poll.interval.ms", config.max_poll_interval_ms.to_string())
        // Bounds what a catch-up prefetches (see FOLD_PREFETCH_KBYTES_MAX).
        .set("queued.max.messages.kbytes", FOLD_PREFETCH_KBYTES_MAX.to_string())
        .set("queued.min.messages", FOLD_PREFETCH_MESSAGES_MIN.to_string())
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string())
        .create_with_context(ctx)?;
    c.subscribe(&[&config.voucher_topic])?;
    *CURRENT_GROUP.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(health);
    Ok(c)
}

/// Installs the metrics recorder (see [`kerp_core::telemetry::metrics_handle`]) and gives the help text of every
/// metric the worker records. Labels are bounded: `partition` by the topic's partition count, `reason` by the kinds
/// of hold, `table` by the aggregate tables.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    let _ = kerp_core::telemetry::metrics_handle();
    describe_gauge!(
        "kafka_consumer_group_up",
        "1 while the consumer is a joined member of its group (coordinator up, join state steady), else 0."
    );
    describe_gauge!(
        "kafka_consumer_lag_messages",
        "Messages between the consumer's position and the end of the partition, per partition this worker consumes (librdkafka statistics, every 5 s)."
    );
    describe_counter!("kafka_commit_errors_total", "Offset commits that failed (the next commit covers their offsets).");
    describe_counter!("kafka_consumer_rebuilds_total", "Consumers rebuilt because they had been out of their group for too long.");
    describe_counter!(
        "kafka_consumer_close_timeouts_total",
        "Retired consumers that had not closed (left their group) in time and were left closing in the background."
    );
    describe_counter!(
        "fold_rewinds_total",
        "Consumer sessions restarted from the committed offsets (a batch outlived its poll, or an operator skip)."
    );
    describe_counter!("fold_events_total", "Events folded into ClickHouse (written, and their offsets about to be committed).");
    describe_counter!("fold_lines_total", "Ledger lines written to ClickHouse by the fold.");
    describe_counter!("fold_duplicates_skipped_total", "Redelivered events the fold skipped because the watermark already covers them.");
    describe_counter!("fold_held_messages_total", "Messages not folded because their company (or partition) is held.");
    describe_counter!("fold_operator_skips_total", "Messages given up by an operator's `stream-workers skip`.");
    describe_counter!(
        "fold_account_rows_unchanged_total",
        "Account rows left out of a batch because the accounts table already shows them (same content, or a newer version)."
    );
    describe_counter!("fold_holds_total", "Companies (or partitions) newly held back, by reason (undecodable, gap, invalid).");
    describe_gauge!(
        "fold_held_companies",
        "Companies (or partitions) held back now: nothing of theirs is folded until the cause is fixed."
    );
    describe_counter!(
        "fold_write_errors_total",
        "Attempts to write a folded batch to ClickHouse that failed or timed out (each is retried)."
    );
    describe_counter!(
        "fold_batches_abandoned_total",
        "Batches given up because they were too late for the poll interval (read again after the rewind)."
    );
    describe_histogram!(
        "fold_batch_duration_seconds",
        "Seconds from folding a batch to having written it to ClickHouse, retries included."
    );
    describe_histogram!(
        "fold_event_freshness_seconds",
        "Seconds from a voucher's posting (its posted_at) to its rows being written to ClickHouse, per folded voucher."
    );
    describe_histogram!(
        "clickhouse_insert_duration_seconds",
        "Seconds one successful ClickHouse INSERT took, from its start to the server's answer, by table (base name)."
    );
    describe_gauge!(
        "kerp_reconciliation_differences",
        "Differences the last periodic reconciliation found between ClickHouse and Postgres (0 when exact)."
    );
    describe_gauge!("kerp_reconciliation_diff_won", "Sum of the absolute amount differences, in won, that the last reconciliation found.");
    describe_gauge!("kerp_reconciliation_last_run_timestamp_seconds", "Unix time of the last reconciliation that ran to the end.");
    describe_histogram!(
        "kerp_reconciliation_duration_seconds",
        "Seconds one periodic reconciliation took, by kind (full: every company; partial: those whose watermark moved)."
    );
    describe_counter!("balance_snapshots_total", "Balance snapshots written (one company at its watermark each).");
    describe_counter!(
        "balance_snapshot_repairs_total",
        "Balance snapshots rewritten in full because the reconciler found the newest one different from Postgres."
    );
    describe_counter!("balance_snapshot_errors_total", "Balance snapshot rounds or partition drops that failed (retried next round).");
    describe_histogram!("balance_snapshot_duration_seconds", "Time to compute and write one company's balance snapshot.");
    describe_counter!("kerp_reconciliation_errors_total", "Periodic reconciliations that could not run (a store unreachable).");
}

/// Runs the fold until `shutdown`. The batch in flight is written and committed before this returns.
///
/// The fold runs in consumer *sessions*. A session ends, and a new one starts from the committed offsets with its
/// state loaded afresh from ClickHouse, when the worker may have lost its partitions (a batch outlived the poll
/// interval) or when an operator skip clears a hold; both are rewinds, safe because every row is idempotent.
///
/// # Errors
/// Kafka configuration errors, or ClickHouse unreachable at start-up.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    // Metrics and health first: a worker waiting for its topic is alive and says so.
    if !config.metrics_listen.is_empty() {
        describe_metrics();
        spawn_metrics(&config.metrics_listen, shutdown.clone()).await?;
    }
    // The tables before the topic: query-api reads them as soon as it starts, whether or not events flow yet.
    let server = config.clickhouse.server_client();
    sink::migrate(&server, &config.clickhouse.clickhouse_database, "").await?;
    let ch = sink::writer(&config.clickhouse.client()).await?;
    if config.snapshot_interval_ms > 0 {
        let cadence = snapshot::Cadence { interval_ms: config.snapshot_interval_ms, idle_ms: config.snapshot_idle_ms };
        tokio::spawn(snapshot::run(ch.clone(), cadence, shutdown.clone()));
    }
    if !wait_for_topic(&config, &shutdown).await? {
        return Ok(());
    }
    if let (Some(url), true) = (&config.database_url, config.reconcile_interval_ms > 0) {
        // The periodic runs are background work beside the live load, so their backends are kept lean
        // (`reconcile_pg_options`), and an idle connection, which keeps its freed heap, is closed a minute after the
        // run.
        let options = reconcile_pg_options(url)?;
        let pg = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .idle_timeout(Duration::from_secs(RECONCILE_IDLE_CONNECTION_S))
            .connect_lazy_with(options);
        let cadence = (config.reconcile_interval_ms, config.reconcile_full_every.max(1));
        tokio::spawn(reconcile_periodically(pg, config.clickhouse.client(), cadence, shutdown.clone()));
    }
    tracing::info!(topic = %config.voucher_topic, group = %config.consumer_group, "stream-workers folding");
    loop {
        let consumer = consumer(&config)?;
        let ended = session(&config, &ch, &consumer, &shutdown).await;
        if let Ok(Session::Rewind(why)) = &ended {
            metrics::counter!("fold_rewinds_total").increment(1);
            tracing::warn!(%why, "rewinding: rejoining the group and reading again from the committed offsets");
        }
        close_consumer(consumer).await?;
        if !matches!(ended?, Session::Rewind(_)) {
            break;
        }
    }
    tracing::info!("stream-workers stopped");
    Ok(())
}

/// Refuses to fold a topic that deletes events (replays and rebuilds need all of them) unless allowed, and waits
/// while the topic does not exist yet or Kafka is unreachable. `false` means shutdown came first.
async fn wait_for_topic(config: &Config, shutdown: &CancellationToken) -> Result<bool> {
    use kerp_core::kafka::TopicError;
    loop {
        match kerp_core::kafka::check_topic(&config.kafka, &config.voucher_topic, &config.topic).await {
            Ok(()) => return Ok(true),
            Err(e @ (TopicError::FiniteRetention { .. } | TopicError::MessageLimit { .. })) => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, topic = %config.voucher_topic, "waiting for the voucher topic"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            () = tokio::time::sleep(Duration::from_millis(TOPIC_WAIT_MS)) => {}
        }
    }
}

/// Reconciles every `interval_ms` and exports the outcome; differences are logged as errors.
async fn reconcile_periodically(
    pg: sqlx::PgPool,
    ch: clickhouse::Client,
    (interval_ms, full_every): (u64, u64),
    shutdown: CancellationToken,
) {
    // Per company, where it last compared clean (see `reconcile::changed` and `reconcile::Scope::since`).
    let mut clean: HashMap<Uuid, reconcile::Clean> = HashMap::new();
    for run in 0u64.. {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(interval_ms)) => {}
        }
        let full = run % full_every == 0;
        let started = Instant::now();
        let result = async {
            let mut scope = reconcile::Scope::default();
            if !full {
                let marks: Vec<(Uuid, i64)> =
                    sink::all_watermarks(&ch, "", None).await?.into_iter().map(|m| (m.company_id, m.seq)).collect();
                let only = reconcile::changed(&marks, &clean);
                // A company that compared clean before is compared from there.
                scope.since = only.iter().filter_map(|c| clean.get(c).map(|k| (*c, *k))).collect();
                scope.only = Some(only);
            }
            reconcile::reconcile(&pg, &ch, "", &scope).await
        }
        .await;
        match result {
            Ok(report) => {
                for d in &report.differences {
                    tracing::error!(%d, "reconciliation: ClickHouse differs from Postgres");
                }
                let differing: HashSet<Uuid> = report.differences.iter().map(|d| d.company).collect();
                // A wrong snapshot over right balance rows is rewritten from the rows; a company whose rows differ
                // too is left as it is, for the operator (a rebuild), since a snapshot of wrong rows is no better.
                let rows_differ: HashSet<Uuid> =
                    report.differences.iter().filter(|d| d.table != "balance_snapshots").map(|d| d.company).collect();
                let wrong_snapshots: Vec<Uuid> = differing.difference(&rows_differ).copied().collect();
                if !wrong_snapshots.is_empty() {
                    match snapshot::repair(&ch, "", &wrong_snapshots).await {
                        Ok(()) => tracing::warn!(companies = ?wrong_snapshots, "rewrote balance snapshots from the balance rows"),
                        Err(e) => tracing::warn!(companies = ?wrong_snapshots, error = %e, "rewriting balance snapshots failed"),
                    }
                }
                for (company, seq) in &report.watermarks {
                    if differing.contains(company) {
                        clean.remove(company);
                    } else {
                        let snapshot = report.snapshot_seqs.get(company).copied().unwrap_or(0);
                        clean.insert(*company, reconcile::Clean { watermark: *seq, snapshot });
                    }
                }
                metrics::gauge!("kerp_reconciliation_diff_won").set(report.diff_won() as f64);
                metrics::gauge!("kerp_reconciliation_differences").set(report.differences.len() as f64);
                metrics::gauge!("kerp_reconciliation_last_run_timestamp_seconds").set(chrono::Utc::now().timestamp() as f64);
                let took_s = started.elapsed().as_secs_f64();
                let kind = if full { "full" } else { "partial" };
                metrics::histogram!("kerp_reconciliation_duration_seconds", "kind" => kind).record(took_s);
                tracing::info!(full, companies = report.companies, differences = report.differences.len(), took_s, "reconciliation done");
            }
            Err(e) => {
                metrics::counter!("kerp_reconciliation_errors_total").increment(1);
                tracing::warn!(error = %e, "reconciliation could not run");
            }
        }
    }
}

/// How a consumer session ended.
enum Session {
    Stopped,
    Rewind(String),
}

/// Closes a consumer (it leaves its group and its last offset commits are sent) on a thread of its own: closing
/// blocks until the group coordinator answers, which may be never (see [`CONSUMER_CLOSE_MS_MAX`]).
///
/// # Errors
/// [`Error::ConsumersStuck`] when more than [`CONSUMERS_CLOSING_MAX`] consumers are still closing.
async fn close_consumer(consumer: StreamConsumer<WorkerContext>) -> Result<()> {
    let closing = CONSUMERS_CLOSING.fetch_add(1, Ordering::SeqCst) + 1;
    let (closed, wait) = tokio::sync::oneshot::channel();
    // A plain thread, not `spawn_blocking`: the runtime waits for its blocking tasks when it shuts down, and a close
    // that never ends must not keep the process from exiting.
    std::thread::Builder::new().name("consumer-close".into()).spawn(move || {
        drop(consumer);
        CONSUMERS_CLOSING.fetch_sub(1, Ordering::SeqCst);
        let _ = closed.send(());
    })?;
    if tokio::time::timeout(Duration::from_millis(CONSUMER_CLOSE_MS_MAX), wait).await.is_ok() {
        return Ok(());
    }
    metrics::counter!("kafka_consumer_close_timeouts_total").increment(1);
    tracing::warn!(
        closing,
        "the retired consumer has not closed in {CONSUMER_CLOSE_MS_MAX} ms (its group coordinator does not answer); it goes on \
         closing in the background and a new consumer takes over"
    );
    if closing > CONSUMERS_CLOSING_MAX {
        return Err(Error::ConsumersStuck(closing));
    }
    Ok(())
}

async fn session(
    config: &Config,
    ch: &clickhouse::Client,
    consumer: &StreamConsumer<WorkerContext>,
    shutdown: &CancellationToken,
) -> Result<Session> {
    let batch_rows = config.batch_rows_max.clamp(1, BATCH_ROWS_MAX);
    let flush = Duration::from_millis(config.flush_interval_ms.max(1));
    let mut folder = Folder::new(config, ch.clone(), "");
    folder.skips = retry_clickhouse(shutdown, || sink::load_skips(ch, &config.voucher_topic)).await?.unwrap_or_default();
    let mut last_recheck = Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return Ok(Session::Stopped);
        }
        let batch = collect(consumer, batch_rows, flush, shutdown).await?;
        let polled_at = Instant::now();
        if consumer.context().health.down_too_long() && batch.is_empty() {
            metrics::counter!("kafka_consumer_rebuilds_total").increment(1);
            return Ok(Session::Rewind(format!("the consumer has been out of its group for over {CONSUMER_GROUP_DOWN_MS_MAX} ms")));
        }
        // Ownership changes are applied before anything is folded: a revoked partition's state is forgotten, and an
        // assigned one's watermarks are loaded, so the fold never judges a company by a stale watermark.
        let changes: Vec<Ownership> =
            std::mem::take(&mut *consumer.context().changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for change in changes {
            match change {
                Ownership::Revoked(ps) => {
                    ps.iter().for_each(|p| folder.state.forget_partition(*p));
                    // Another worker may now write these companies' accounts.
                    folder.accounts_seen.forget();
                }
                Ownership::Assigned(ps) => {
                    let Some(rows) = retry_clickhouse(shutdown, || sink::load_watermarks(ch, "", &ps)).await? else {
                        return Ok(Session::Stopped);
                    };
                    tracing::info!(partitions = ?ps, companies = rows.len(), "partitions assigned; watermarks loaded");
                    folder.state.load_watermarks(rows);
                }
            }
        }
        let generation = consumer.context().generation.load(Ordering::SeqCst);
        let batch: Vec<Fetched> = batch.into_iter().filter(|m| m.generation == generation).collect();
        if !batch.is_empty() {
            match folder.process(&batch, polled_at, shutdown).await? {
                Processed::Written => commit(config, consumer, &batch, &folder.state)?,
                Processed::Abandoned(why) => return Ok(Session::Rewind(why)),
                Processed::Stopped => return Ok(Session::Stopped),
            }
        }
        folder.export_holds();
        // A held company waits for a new reader (a restart) or for an operator skip; skips are looked for now and then.
        if folder.state.holds().next().is_some() && last_recheck.elapsed() >= Duration::from_millis(HOLD_RECHECK_INTERVAL_MS) {
            last_recheck = Instant::now();
            if let Ok(skips) = sink::load_skips(ch, &config.voucher_topic).await {
                if folder.state.holds().any(|h| skips.iter().any(|s| s.clears(h))) {
                    return Ok(Session::Rewind("an operator skip clears a hold".into()));
                }
            }
            // A held company that someone else folded further (another worker, or a rebuild that swapped in new
            // tables) is judged again from the stored watermarks.
            let held: Vec<Uuid> = folder.state.held.keys().copied().collect();
            if let Ok(stored) = sink::load_company_watermarks(ch, "", &held).await {
                if stored.iter().any(|r| r.seq > folder.state.watermarks.get(&r.company_id).copied().unwrap_or(0)) {
                    return Ok(Session::Rewind("the stored watermark of a held company moved on".into()));
                }
            }
        }
    }
}

/// Commits each partition's offset after the batch, but never past a held message, so that it is read again by
/// the next session (perhaps of a newer worker that can decode it).
fn commit(config: &Config, consumer: &StreamConsumer<WorkerContext>, batch: &[Fetched], state: &FoldState) -> Result<()> {
    if config.fault_abort_after_insert {
        tracing::warn!("fault injection: aborting after the ClickHouse write, before the offset commit");
        std::process::abort();
    }
    let mut next: HashMap<i32, i64> = HashMap::new();
    for m in batch {
        let e = next.entry(m.message.partition).or_insert(0);
        *e = (*e).max(m.message.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &next {
        let o = state.commit_limit(*p).map_or(*o, |held| held.min(*o));
        tpl.add_partition_offset(&config.voucher_topic, *p, Offset::Offset(o))?;
    }
    // Asynchronous on purpose: the rows are already in ClickHouse, so a commit that fails or never lands only means
    // a replay, which writes the same rows again. Waiting for it would stall the fold on a slow group coordinator.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::warn!(error = %e, "offset commit could not be sent");
    }
    Ok(())
}

/// Runs a ClickHouse call until it succeeds, backing off, or until shutdown (`None`).
async fn retry_clickhouse<T, F, Fut>(shutdown: &CancellationToken, mut call: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff_ms = 200;
    loop {
        match tokio::time::timeout(Duration::from_millis(CLICKHOUSE_ATTEMPT_MS_MAX), call()).await {
            Ok(Ok(v)) => return Ok(Some(v)),
            Ok(Err(e)) => tracing::warn!(error = %e, backoff_ms, "ClickHouse call failed; retrying"),
            Err(_) => tracing::warn!(backoff_ms, "ClickHouse call timed out; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
        }
        backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
    }
}

/// Waits for a first message, then keeps the batch open until it is full or `flush` has passed. Returns an empty
/// batch after [`IDLE_WAKE_MS`] without messages, so the loop can look after holds and ownership changes.
async fn collect(
    consumer: &StreamConsumer<WorkerContext>,
    batch_rows: usize,
    flush: Duration,
    shutdown: &CancellationToken,
) -> Result<Vec<Fetched>> {
    let mut batch = Vec::new();
    let mut lines = 0usize;
    let mut deadline = tokio::time::Instant::now() + Duration::from_millis(IDLE_WAKE_MS);
    let mut first = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(batch),
            () = tokio::time::sleep_until(deadline) => return Ok(batch),
            m = consumer.recv() => match m {
                Ok(m) => {
                    let mut fetched = Fetched::decode(&m);
                    fetched.generation = consumer.context().generation.load(Ordering::SeqCst);
                    lines += fetched.lines();
                    batch.push(fetched);
                    if first {
                        first = false;
                        deadline = tokio::time::Instant::now() + flush;
                    }
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

/// What became of a batch.
pub enum Processed {
    /// Its rows are durable in ClickHouse.
    Written,
    /// It was given up before it could outlive the consumer's poll interval; nothing of it may be written now.
    Abandoned(String),
    /// Shutdown came while it was being retried; nothing is committed, so it is read again after a restart.
    Stopped,
}

/// The fold of one topic into one version of the aggregate tables: the state, the operator's skips, and the write
/// with its retries. The live worker and `rebuild` share it.
pub struct Folder {
    pub state: FoldState,
    pub skips: HashSet<fold::Skip>,
    /// What the `accounts` table holds, so that batches leave out account rows that change nothing.
    pub accounts_seen: fold::AccountsSeen,
    ch: clickhouse::Client,
    suffix: String,
    topic: String,
    /// Longest a batch may take from its last poll to the end of its write, in milliseconds: past the consumer's
    /// poll interval the group may have given its partitions to another worker.
    poll_budget_ms: u64,
    fault_stop_before_write: bool,
}

impl Folder {
    #[must_use]
    pub fn new(config: &Config, ch: clickhouse::Client, suffix: &str) -> Self {
        Self {
            state: FoldState::default(),
            skips: HashSet::new(),
            accounts_seen: fold::AccountsSeen::default(),
            ch,
            suffix: suffix.to_owned(),
            topic: config.voucher_topic.clone(),
            poll_budget_ms: config.max_poll_interval_ms,
            fault_stop_before_write: config.fault_stop_before_write,
        }
    }

    /// Folds and writes one batch, retrying the ClickHouse write until it succeeds, the poll budget runs out, or
    /// shutdown.
    ///
    /// # Errors
    /// None today; ClickHouse failures are retried.
    pub async fn process(&mut self, batch: &[Fetched], polled_at: Instant, shutdown: &CancellationToken) -> Result<Processed> {
        let span = tracing::info_span!("fold_batch", messages = batch.len(), first_offset = batch.first().map(|m| m.message.offset));
        self.process_inner(batch, polled_at, shutdown).instrument(span).await
    }

    async fn process_inner(&mut self, batch: &[Fetched], polled_at: Instant, shutdown: &CancellationToken) -> Result<Processed> {
        let started = Instant::now();
        // Borrowed, not cloned: a rebuild's batch holds tens of thousands of messages.
        let messages: Vec<&fold::Message> = batch.iter().map(|f| &f.message).collect();
        // The fold runs on a copy of the state, which replaces the real one only once the batch is durable.
        let mut next = self.state.clone();
        let mut out = fold::fold(&messages, &mut next, &self.skips);
        // Account rows that would change nothing in `accounts` are left out; the companies not yet known are read first.
        let unseeded = self.accounts_seen.unseeded(&out.accounts);
        if !unseeded.is_empty() {
            let Some(rows) = retry_clickhouse(shutdown, || sink::latest_accounts(&self.ch, &self.suffix, &unseeded)).await? else {
                return Ok(Processed::Stopped);
            };
            self.accounts_seen.seed(&unseeded, rows);
        }
        let mut accounts = self.accounts_seen.changed(&out.accounts);
        metrics::counter!("fold_account_rows_unchanged_total").increment((out.accounts.len() - accounts.rows.len()) as u64);
        out.accounts = std::mem::take(&mut accounts.rows);
        let now_s = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let dead: Vec<DeadLetterRow> = out
            .new_holds
            .iter()
            .filter_map(|h| batch.iter().find(|f| f.message.partition == h.partition && f.message.offset == h.offset).map(|f| (h, f)))
            .map(|(h, f)| dead_letter(&self.topic, f, &h.reason.to_string(), now_s))
            .collect();
        if self.fault_stop_before_write && !out.balances.is_empty() {
            self.fault_stop_before_write = false;
            tracing::warn!("fault injection: stopping this process (SIGSTOP) with a folded batch not yet written");
            let _ = std::process::Command::new("kill").args(["-STOP", &std::process::id().to_string()]).status();
        }
        let attempt_ms = CLICKHOUSE_ATTEMPT_MS_MAX.min(self.poll_budget_ms / 2).max(1);
        let mut backoff_ms = 200;
        loop {
            // An attempt starts only if it can end within the poll interval. A worker that was paused or slowed
            // down past it may no longer own its partitions; it gives the batch up instead of writing it.
            let spent = u64::try_from(polled_at.elapsed().as_millis()).unwrap_or(u64::MAX);
            if spent.saturating_add(attempt_ms) > self.poll_budget_ms {
                metrics::counter!("fold_batches_abandoned_total").increment(1);
                return Ok(Processed::Abandoned(format!(
                    "the batch is {spent} ms past its poll; the poll interval is {} ms",
                    self.poll_budget_ms
                )));
            }
            let attempt = tokio::time::timeout(Duration::from_millis(attempt_ms), sink::write(&self.ch, &self.suffix, &out, &dead));
            match attempt.await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => tracing::error!(error = %e, backoff_ms, "writing batch to ClickHouse failed; retrying"),
                Err(_) => tracing::error!(attempt_ms, backoff_ms, "writing batch to ClickHouse timed out; retrying"),
            }
            metrics::counter!("fold_write_errors_total").increment(1);
            tokio::select! {
                // Nothing was committed, so the batch is read again after a restart and its rows written again.
                () = shutdown.cancelled() => return Ok(Processed::Stopped),
                () = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
            }
            backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
        }
        self.state = next;
        self.accounts_seen.remember(accounts);
        for h in &out.new_holds {
            tracing::error!(partition = h.partition, offset = h.offset, company = ?h.company, reason = %h.reason,
                "holding back a company: its next message cannot be folded; nothing of it is folded until a reader that \
                 understands it is deployed or an operator runs `stream-workers skip`");
            metrics::counter!("fold_holds_total", "reason" => h.reason.kind()).increment(1);
        }
        let now_us = chrono::Utc::now().timestamp_micros();
        for i in &out.folded {
            if let Ok(Event::VoucherPosted(e)) = &batch[*i].message.event {
                metrics::histogram!("fold_event_freshness_seconds").record((now_us - e.posted_at).max(0) as f64 / 1e6);
            }
        }
        metrics::counter!("fold_events_total").increment(out.folded.len() as u64);
        metrics::counter!("fold_lines_total").increment(out.lines.len() as u64);
        metrics::counter!("fold_duplicates_skipped_total").increment(out.duplicates as u64);
        metrics::counter!("fold_held_messages_total").increment(out.held_messages as u64);
        metrics::counter!("fold_operator_skips_total").increment(out.skipped as u64);
        metrics::histogram!("fold_batch_duration_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(
            folded = out.folded.len(),
            duplicates = out.duplicates,
            held = out.held_messages,
            lines = out.lines.len(),
            "batch written"
        );
        Ok(Processed::Written)
    }

    /// Exports the holds as the alert gauge `fold_held_companies` (a held partition counts as one).
    pub fn export_holds(&self) {
        metrics::gauge!("fold_held_companies").set(self.state.holds().count() as f64);
    }
}

fn dead_letter(topic: &str, m: &Fetched, error: &str, now_s: u32) -> DeadLetterRow {
    use std::fmt::Write;
    let payload_hex = m.payload.iter().fold(String::with_capacity(m.payload.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let (partition, offset) = (m.message.partition, m.message.offset);
    DeadLetterRow { topic: topic.to_owned(), partition, offset, error: error.to_owned(), payload_hex, received_at: now_s }
}

async fn spawn_metrics(listen: &str, shutdown: CancellationToken) -> Result<()> {
    let addr: SocketAddr = listen.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{listen}: {e}")))?;
    let health = || async {
        if group_down_too_long() {
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "the Kafka consumer is out of its group")
        } else {
            (axum::http::StatusCode::OK, "ok")
        }
    };
    let app = kerp_core::http::observed(axum::Router::new().route("/health", axum::routing::get(health)));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(kerp_core::http::serve(listener, app, shutdown));
    Ok(())
}

#[cfg(test)]
mod tests {
    use rdkafka::statistics::ConsumerGroup;

    fn group(state: &str, join_state: &str) -> ConsumerGroup {
        ConsumerGroup { state: state.into(), join_state: join_state.into(), ..ConsumerGroup::default() }
    }

    /// A consumer whose coordinator is up but who is not (yet, or any more) in the group counts as out of it, so the
    /// watchdog rebuilds a consumer stuck that way.
    #[test]
    fn a_coordinator_request_timeout_is_recognised() {
        assert!(super::coordinator_timed_out(
            "REQTMOUT",
            "[thrd:GroupCoordinator]: GroupCoordinator: Timed out 0 in-flight, 0 retry-queued, 1 out-queue, 0 partially-sent requests"
        ));
        assert!(!super::coordinator_timed_out("REQTMOUT", "[thrd:127.0.0.1:9092/1]: 127.0.0.1:9092/1: Timed out 1 in-flight"));
        assert!(!super::coordinator_timed_out("SESSTMOUT", "GroupCoordinator"));
    }

    #[test]
    fn only_a_joined_consumer_is_in_its_group() {
        assert!(super::in_group(&group("up", "steady")));
        for (state, join) in
            [("up", "init"), ("up", "wait-join"), ("up", "wait-unassign-to-complete"), ("query-coord", "steady"), ("down", "init")]
        {
            assert!(!super::in_group(&group(state, join)), "{state}/{join}");
        }
    }
}
