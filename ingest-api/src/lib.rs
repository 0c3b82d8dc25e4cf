//! ingest-api: the write side of K-ERP.
//!
//! HTTP requests come in, are authenticated and validated, and are written to Postgres in one transaction together
//! with an outbox row; the [`relay`] task then publishes outbox rows to Kafka. It also serves the transactional reads
//! (vouchers, accounts) straight from Postgres.

mod access;
pub mod company;
mod error;
pub mod group_commit;
pub mod idempotency;
mod invoices;
mod master;
pub mod openapi;
pub mod partner_cache;
pub mod relay;
mod routes;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// The Postgres migrations, embedded so that the binary can migrate a fresh database by itself.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Settings of ingest-api. Every field can come from a flag or from the environment variable named beside it.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://kerp:kerp@127.0.0.1:5432/kerp")]
    pub database_url: String,
    /// Most Postgres connections the pool opens. Each busy connection is a Postgres backend wanting a core, so past a
    /// few per core of the Postgres machine more connections only queue inside Postgres, at the cost of its context
    /// switches: on this 2-core dev machine, 400 clerks of the realistic workload's morning (60 s, 28 Nov) got
    /// 1,143-1,148 requests/s at p95 156-170 ms with 20 and 1,168-1,192/s at p95 95-125 ms with 8. A group-commit lane
    /// holds one connection while it writes, so keep this above `GROUP_COMMIT_LANES`.
    #[arg(long, env = "DB_POOL_MAX", default_value_t = 8)]
    pub db_pool_max: u32,
    /// Group-commit lanes: postings are written in batches, one transaction per batch, by this many lanes at once
    /// (a company's postings always use the same lane). Each lane holds one pooled connection while it writes, and
    /// keeps it while posts keep coming (`group_commit::LANE_CONN_LINGER_MS` after its queue runs empty); at most
    /// `group_commit::LANES_MAX`.
    #[arg(long, env = "GROUP_COMMIT_LANES", default_value_t = 4)]
    pub group_commit_lanes: usize,
    /// Address the HTTP server listens on.
    #[arg(long, env = "INGEST_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Address of the internal listener that serves `/metrics`; empty disables it. Keep it off the public proxy: the
    /// metrics describe every company's traffic.
    #[arg(long, env = "INGEST_METRICS_LISTEN", default_value = "127.0.0.1:9101")]
    pub metrics_listen: String,
    /// HS256 secret that signs and verifies bearer tokens, at least 32 bytes. Keep it the same for every service.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Set on a dev stack only (compose/dev, compose/compose.yaml): accepts the public sample JWT secret of .env.sample.
    #[arg(long, env = "KERP_DEV_STACK", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_stack: bool,
    #[command(flatten)]
    pub kafka: kerp_core::kafka::KafkaConfig,
    /// Topic that voucher events are published to.
    #[arg(long, env = "VOUCHER_TOPIC", default_value = "kerp.vouchers.v1")]
    pub voucher_topic: String,
    /// Partitions to create the voucher topic with, when it does not exist yet. Events are keyed by company, so this
    /// bounds how many workers can fold in parallel.
    #[arg(long, env = "VOUCHER_TOPIC_PARTITIONS", default_value_t = 6)]
    pub voucher_topic_partitions: i32,
    #[command(flatten)]
    pub topic: kerp_core::kafka::TopicConfig,
    /// Whether this process runs the outbox relay. Only one relay publishes at a time (a Postgres advisory lock picks
    /// it), so running it in every instance is safe.
    #[arg(long, env = "RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_enabled: bool,
    /// Most outbox rows the relay publishes per round.
    #[arg(long, env = "RELAY_BATCH_ROWS", default_value_t = relay::RELAY_BATCH_ROWS_MAX)]
    pub relay_batch_rows: i64,
    /// How long a company whose outbox row failed for good is held back before that row is tried again, in
    /// milliseconds. Other companies are published meanwhile.
    #[arg(long, env = "RELAY_HELD_RETRY_MS", default_value_t = relay::HELD_RETRY_INTERVAL_MS)]
    pub relay_held_retry_ms: u64,
    /// How long the relay sleeps when the outbox is empty, in milliseconds.
    #[arg(long, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 50)]
    pub relay_poll_interval_ms: u64,
    /// How long the relay waits after a round that published everything there was, in milliseconds, so that the
    /// next round carries more rows for its one read, delete and produce request. It adds at most this much to the
    /// time from posting to the trial balance (freshness); at most `relay::RELAY_GATHER_MS_MAX`.
    #[arg(long, env = "RELAY_GATHER_MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=relay::RELAY_GATHER_MS_MAX))]
    pub relay_gather_ms: u64,
    /// Threads of the async runtime that serves requests and runs the relay; 0 is one per core. When the machine's
    /// cores are shared with Postgres, Kafka and ClickHouse, as on the dev stack, 1 does the same work with less CPU:
    /// fewer threads parking and waking each other. On 2 shared cores (28 Nov, perf/README.md) ingest-api used
    /// 9.1-9.2 CPU-s instead of 10.8-11.0 for 30 s of 3,000 posts/s with 1, and at 1,000 posts/s its p99 was no worse.
    /// At most `RUNTIME_THREADS_MAX`.
    #[arg(long, env = "INGEST_RUNTIME_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=i64::from(RUNTIME_THREADS_MAX)))]
    pub runtime_threads: u16,
}

/// Most runtime threads `INGEST_RUNTIME_THREADS` may ask for: past the cores of any machine we run on, more threads
/// only take turns.
pub const RUNTIME_THREADS_MAX: u16 = 256;

impl Config {
    /// Refuses a JWT secret that is too short, or the public sample one outside a dev stack, before it signs or
    /// verifies anything.
    ///
    /// # Errors
    /// [`Error::Auth`] saying what is wrong with the secret.
    pub fn check_jwt_secret(&self) -> Result<()> {
        Ok(kerp_core::auth::check_secret(self.jwt_secret.as_bytes(), self.dev_stack)?)
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    /// Postings without an idempotency key go through group commit.
    pub poster: group_commit::Poster,
    /// Companies' partners for the partner list and search, checked against Postgres's version on every request.
    pub partners: partner_cache::PartnerCache,
}

impl kerp_core::http::JwtSecret for AppState {
    fn jwt_secret(&self) -> &[u8] {
        self.config.jwt_secret.as_bytes()
    }
}

/// Longest a statement of the pool waits for a lock (Postgres `lock_timeout`), in milliseconds. A company's postings
/// queue on its company row; past this wait the posting fails with a 503 and Retry-After and gives its connection back,
/// so one company's burst cannot hold the pool that the other companies need.
pub const DB_LOCK_WAIT_MS_MAX: u64 = 2_000;

/// Longest a statement of the pool may run (Postgres `statement_timeout`), in milliseconds; beyond it the request gets
/// a 503. The largest voucher (`LINES_MAX` lines) and the widest list page take a small fraction of it.
pub const DB_STATEMENT_MS_MAX: u64 = 10_000;

/// Longest a request waits for a pooled connection, in milliseconds; beyond it the request gets a 503. While Postgres
/// is down, sqlx keeps trying to open a connection until this runs out, so it is how fast the API says "503" then:
/// the fault suite measured 5 s answers with 5 000, which let every client slot hang. A healthy pool hands out a
/// connection in well under a millisecond.
pub const DB_ACQUIRE_MS_MAX: u64 = 1_000;

/// A pooled connection idle at least this long is tested (pinged) before it is handed out, in milliseconds. sqlx
/// tests every connection it hands out by default, and again every one given back: two round trips around each
/// request's statements. The test on return stays, so a connection used within this time was working when it went
/// idle. One broken since (Postgres restarted in between) fails its request with a 503 and Retry-After, as a request
/// in flight at the restart does, and sqlx then closes it.
pub const DB_IDLE_PING_AFTER_MS: u64 = 1_000;

/// The pool options ingest-api and grpc-api share: `max` connections, the acquire limit, and the ping only for
/// connections idle for [`DB_IDLE_PING_AFTER_MS`].
#[must_use]
pub fn pool_options(max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_millis(DB_ACQUIRE_MS_MAX))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= Duration::from_millis(DB_IDLE_PING_AFTER_MS) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Opens the pool, with the time limits above on every connection, and brings the schema up to date.
///
/// # Errors
/// When Postgres is unreachable or a migration fails.
pub async fn connect(config: &Config) -> Result<PgPool> {
    let options: PgConnectOptions = config.database_url.parse()?;
    // Migrations run on a connection of their own without the limits: they may wait for and hold table locks, and
    // rewrite tables, longer than any request should.
    // A one-connection pool rather than a bare connection: `Migrator::run` over `&mut PgConnection` makes the future
    // not `Send` for every lifetime, which `tokio::spawn` of the server needs.
    let migration = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
    MIGRATOR.run(&migration).await?;
    migration.close().await;
    let pool = pool_options(config.db_pool_max).connect_with(options.options(session_settings())).await?;
    Ok(pool)
}

/// The settings every pooled session of ingest-api and grpc-api starts with: the time limits above, and generic plans.
///
/// `plan_cache_mode = force_generic_plan`: sqlx prepares each statement once per connection, and Postgres then plans
/// a prepared statement anew on every execution whenever it judges a plan for the actual values cheaper than the
/// generic one. Under the realistic workload (28 Nov, 500 VUs) that was a quarter of Postgres's CPU: the partner
/// page alone planned on 13,564 of 14,264 executions, 0.31 ms each against 0.14 ms of execution, because estimating
/// `name ILIKE $2` runs the pattern over the column's histogram; the account and partner look-ups of a posting (`=
/// ANY($1)`) and the relay's statements planned every time too. Every statement here is scoped to one company by an
/// indexed `company_id = $1`. The voucher list writes only the filters in use into its SQL (`push_list_where`), so
/// its generic plan keeps every bound as an index condition; the partner list's `$n IS NULL OR …` filters have no
/// index of their own since migration 0011, so they are a filter over the company's partners either way.
#[must_use]
pub fn session_settings() -> [(&'static str, String); 3] {
    [
        ("lock_timeout", format!("{DB_LOCK_WAIT_MS_MAX}ms")),
        ("statement_timeout", format!("{DB_STATEMENT_MS_MAX}ms")),
        ("plan_cache_mode", "force_generic_plan".to_owned()),
    ]
}

/// The public HTTP routes, exactly those [`openapi::openapi`] documents, with request metrics recorded; the metrics
/// themselves are served on the internal listener.
pub fn router(state: AppState) -> Router {
    let (routes, _) = openapi::api_routes().split_for_parts();
    kerp_core::http::tracked(routes.with_state(state))
}

/// How long start-up waits for Kafka to say whether the voucher topic keeps every event, in milliseconds. Past it
/// ingest-api starts anyway (postings only need Postgres) and the relay checks before it publishes anything.
const TOPIC_CHECK_MS_MAX: u64 = 15_000;

/// Refuses to start against a voucher topic that could lose events (finite retention, a smaller message limit).
/// A topic that does not exist yet is created by the relay; an unreachable Kafka is left to the relay as well.
async fn check_topic_at_start(config: &Config) -> Result<()> {
    let check = kerp_core::kafka::check_topic(&config.kafka, &config.voucher_topic, &config.topic);
    match tokio::time::timeout(std::time::Duration::from_millis(TOPIC_CHECK_MS_MAX), check).await {
        Ok(Err(e @ (kerp_core::kafka::TopicError::FiniteRetention { .. } | kerp_core::kafka::TopicError::MessageLimit { .. }))) => {
            Err(e.into())
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "voucher topic not checked at start (missing or Kafka unreachable); the relay checks it");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("Kafka did not answer at start; the relay checks the voucher topic before it publishes");
            Ok(())
        }
        Ok(Ok(())) => Ok(()),
    }
}

/// How often expired idempotency keys are deleted, in milliseconds.
const IDEMPOTENCY_PURGE_INTERVAL_MS: u64 = 600_000;
/// Most expired idempotency keys one purge deletes; the next one takes the rest.
const IDEMPOTENCY_PURGE_ROWS_MAX: i64 = 10_000;

/// Deletes idempotency keys past their time every [`IDEMPOTENCY_PURGE_INTERVAL_MS`], so the table holds about a day
/// of keys. Every instance may run it: the deletes are idempotent.
async fn purge_idempotency_keys(pool: PgPool, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(IDEMPOTENCY_PURGE_INTERVAL_MS)) => {}
        }
        match store::idempotency::purge(&pool, IDEMPOTENCY_PURGE_ROWS_MAX).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "expired idempotency keys deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete expired idempotency keys"),
        }
    }
}

/// Installs the metrics recorder (see [`kerp_core::telemetry::metrics_handle`]) and gives the help text of the
/// metrics ingest-api records: the outbox relay's, the posting counter, the group-commit batch sizes and the partner
/// cache's. grpc-api posts through the same store and group commit, and calls this too. Every label is bounded
/// (`reason` and `result` have two values each, `stage` three).
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    let _ = kerp_core::telemetry::metrics_handle();
    describe_counter!(
        "vouchers_posted_total",
        "Vouchers numbered and written to the outbox as VoucherPosted: posted approved, approved drafts and reversals."
    );
    describe_histogram!("group_commit_batch_vouchers", "Posts written together by one group-commit batch (one transaction, one commit).");
    describe_counter!(
        "group_commit_failures_total",
        "Group-commit batches that failed, by stage (batch: rolled back, its posts retried one by one; lock: a row held elsewhere, its posts \
         went on alone aside from the lane; commit: the commit failed)."
    );
    describe_gauge!("outbox_backlog_rows", "Outbox rows not yet published to Kafka, measured by the relay every few seconds.");
    describe_gauge!("outbox_oldest_row_age_seconds", "Age of the oldest unpublished outbox row, in seconds (0 when the outbox is empty).");
    describe_counter!("outbox_published_total", "Outbox rows published to Kafka (acknowledged by acks=all) and deleted.");
    describe_gauge!(
        "outbox_relay_leader",
        "1 while this instance's relay holds the Postgres advisory lock and publishes, 0 while it stands by."
    );
    describe_counter!("outbox_relay_lock_lost_total", "Times this relay found it had lost its advisory lock and stopped publishing.");
    describe_gauge!("outbox_held_companies", "Companies whose outbox is held back because a row of theirs could not be published.");
    describe_counter!(
        "kerp_partner_cache_requests_total",
        "Partner list and search requests, by result (hit: served from the partners held at Postgres's current version; miss: the \
         company's partners were loaded first)."
    );
    describe_counter!("outbox_holds_total", "Times a company's outbox was held back because one of its rows could not be published.");
    describe_counter!(
        "outbox_producer_rebuilds_total",
        "Kafka producers dropped and built anew, by reason (fatal: the producer hit a fatal error; no_ack: no acknowledgement within the delivery wait)."
    );
}

/// Binds the configured address and serves until `shutdown` is cancelled.
///
/// # Errors
/// When the address cannot be bound or the database cannot be reached.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    serve(config, listener, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 and read the address first), and `/metrics` on the
/// configured internal address.
///
/// In-flight requests finish before this returns; the relay finishes its current round.
///
/// # Errors
/// A refused JWT secret (see [`Config::check_jwt_secret`]), a metrics address that cannot be bound, or a database that
/// cannot be reached or migrated.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    config.check_jwt_secret()?;
    let metrics = kerp_core::http::bind_metrics(&config.metrics_listen).await?;
    serve_with_metrics(config, listener, metrics, shutdown).await
}

/// [`serve`] with the internal metrics listener bound by the caller as well (tests bind port 0); `None` serves no
/// metrics, whatever `metrics_listen` says.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with_metrics(
    config: Config,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<()> {
    config.check_jwt_secret()?;
    if metrics.is_some() {
        // Before the relay starts, so that its first gauges already reach the recorder, with their help text.
        describe_metrics();
    }
    let pool = connect(&config).await?;
    check_topic_at_start(&config).await?;
    let config = Arc::new(config);
    let relay = config.relay_enabled.then(|| tokio::spawn(relay::run(pool.clone(), config.clone(), shutdown.clone())));
    if let Some(metrics) = metrics {
        kerp_core::http::spawn_metrics(metrics, shutdown.clone());
    }
    tokio::spawn(purge_idempotency_keys(pool.clone(), shutdown.clone()));
    tracing::info!(addr = %listener.local_addr()?, "ingest-api listening");
    let poster = group_commit::Poster::start(pool.clone(), config.voucher_topic.clone(), config.group_commit_lanes);
    let app = router(AppState { pool, config, poster, partners: partner_cache::PartnerCache::default() });
    kerp_core::http::serve(listener, app, shutdown).await?;
    if let Some(relay) = relay {
        // A panicked relay has already logged; the server itself stopped cleanly.
        if let Ok(Err(e)) = relay.await {
            tracing::error!(error = %e, "outbox relay stopped with an error");
        }
    }
    Ok(())
}
