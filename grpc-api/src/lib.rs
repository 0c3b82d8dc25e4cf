//! grpc-api: K-ERP over gRPC (tonic). Authenticated RPCs come in on two listeners; vouchers go out through exactly the
//! REST write path (`kerp_core::voucher::validate`, then `kerp_ingest::store` in one Postgres transaction with the
//! idempotency key and the outbox event), and reports are read through query-api's ClickHouse queries and report
//! arithmetic (`kerp_query::store`, `kerp_query::report`), never from Postgres.
//!
//! - [`GRPC_LISTEN`](Config::listen) (127.0.0.1:50051) serves `kerp.v1.VoucherService` ([`vouchers`]),
//!   `kerp.v1.ReportService` ([`reports`]) and `TaxScraperService` ([`tax_scraper`]);
//! - [`GRPC_EDI_LISTEN`](Config::edi_listen) (127.0.0.1:50052) serves `InsuranceEDIService` ([`insurance_edi`]);
//! - both also serve `grpc.health.v1.Health` and server reflection (v1 and v1alpha), so `grpcurl list` works;
//! - the internal [`GRPC_METRICS_LISTEN`](Config::metrics_listen) serves `/metrics` and `/health` over HTTP.
//!
//! What every service shares lives here and in [`auth`] (bearer tokens in `authorization` metadata), [`error`] (one
//! status code per kind of failure, field violations as `google.rpc.BadRequest`), [`metrics`]
//! (`grpc_server_handling_seconds`, `grpc_server_handled_total`) and [`deadline`] (`grpc-timeout` for streams). A
//! new service plugs in as [`tax_scraper`] and [`insurance_edi`] do: a module with a server over [`AppState`], added
//! to [`main_routes`] or [`edi_routes`] and named in [`metrics::KNOWN_METHODS`].

pub mod auth;
pub mod deadline;
pub mod error;
pub mod insurance_edi;
pub mod metrics;
pub mod reports;
pub mod tax_scraper;
pub mod vouchers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kerp_core::clickhouse::ClickHouseReaderConfig;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health, HealthServer};
use tower::layer::util::{Identity, Stack};

pub use error::{Error, Failure, Result};

/// The code generated from `schemas/proto` (see `build.rs`).
pub mod pb {
    /// `package kerp.v1`: vouchers and reports.
    pub mod kerp {
        pub mod v1 {
            tonic::include_proto!("kerp.v1");
        }
    }
    /// The contracts without a package, whose names the existing Python clients were generated from:
    /// `tax_scraper.proto` and `insurance_edi.proto`.
    pub mod root {
        include!(concat!(env!("OUT_DIR"), "/_.rs"));
    }
    /// Every contract as an encoded `FileDescriptorSet`, for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kerp_descriptor.bin"));
}

/// Largest message the server reads, in bytes: the REST services' body limit, so a voucher that REST takes is taken
/// here too. A larger message is refused before it is decoded: a unary call with OUT_OF_RANGE (tonic's code for it),
/// a CreateVouchers stream by ending there (`STREAM_END_UNREADABLE`).
pub const REQUEST_MESSAGE_BYTES_MAX: usize = kerp_core::http::BODY_BYTES_MAX;

/// Largest message the server sends, in bytes. The largest answer is a CreateVouchers response of
/// [`CREATE_VOUCHERS_ITEMS_MAX`] results with [`ITEM_FIELD_VIOLATIONS_MAX`] violations each (about 8 MiB); a clean one
/// of that many items is about 1 MiB. Clients reading such answers raise their receive limit to this.
pub const RESPONSE_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most items one CreateVouchers stream posts. Its answer holds a result per item, so this bounds the answer's size
/// and the server's memory; a loader with more vouchers opens another stream.
pub const CREATE_VOUCHERS_ITEMS_MAX: usize = 10_000;

/// Most field violations one item's result in a CreateVouchers answer carries (its message gives the full count).
/// Unary calls carry them all, as REST does; in a stream, ten thousand items of a thousand bad lines each would
/// otherwise make an answer of hundreds of megabytes.
pub const ITEM_FIELD_VIOLATIONS_MAX: usize = 10;

/// Most ledger entries in one AccountLedger message, which is also the page read from ClickHouse at a time: the REST
/// ledger's largest page.
pub const LEDGER_CHUNK_ENTRIES_MAX: u32 = kerp_query::LEDGER_PAGE_SIZE_MAX;

/// Chunks a ledger stream reads ahead of the client. The reader waits once this many are queued, so a slow client
/// holds at most this many chunks (and one ClickHouse page) in the server's memory.
pub const LEDGER_BUFFER_CHUNKS_MAX: usize = 2;

/// Most concurrent calls (HTTP/2 streams) one connection may have open. Each call may hold a database connection, so
/// one client cannot take the whole pool by multiplexing.
pub const CONNECTION_STREAMS_MAX: u32 = 64;

/// How often the gRPC health service re-checks Postgres and ClickHouse, in milliseconds.
pub const HEALTH_CHECK_INTERVAL_MS: u64 = 5_000;

/// Settings of grpc-api. Every field can come from a flag or from the environment variable named beside it.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of VoucherService, ReportService and TaxScraperService (the existing tax-scraper clients dial
    /// 127.0.0.1:50051).
    #[arg(long, env = "GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of InsuranceEDIService (the existing insurance-EDI clients dial 127.0.0.1:50052).
    #[arg(long, env = "GRPC_EDI_LISTEN", default_value = "127.0.0.1:50052")]
    pub edi_listen: SocketAddr,
    /// Address of the internal listener that serves `/metrics` and `/health` over HTTP; empty disables it. Keep it off
    /// any public proxy: the metrics describe every company's traffic.
    #[arg(long, env = "GRPC_METRICS_LISTEN", default_value = "127.0.0.1:9106")]
    pub metrics_listen: String,
    /// Postgres connection URL (vouchers are written and read there). The schema is ingest-api's, which migrates it.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://kerp:kerp@127.0.0.1:5432/kerp")]
    pub database_url: String,
    /// Most Postgres connections the pool opens.
    #[arg(long, env = "GRPC_DB_POOL_MAX", default_value_t = 10)]
    pub db_pool_max: u32,
    /// HS256 secret that verifies bearer tokens, at least 32 bytes; the same as ingest-api's and query-api's.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Set on a dev stack only (compose/dev, compose/compose.yaml): accepts the public sample JWT secret of .env.sample.
    #[arg(long, env = "KERP_DEV_STACK", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_stack: bool,
    /// ClickHouse, read as query-api's read-only reader user.
    #[command(flatten)]
    pub clickhouse: ClickHouseReaderConfig,
    /// Topic the outbox events of posted vouchers are queued for; ingest-api's relay publishes them.
    #[arg(long, env = "VOUCHER_TOPIC", default_value = "kerp.vouchers.v1")]
    pub voucher_topic: String,
    /// Most items a CreateVouchers stream posts: [`CREATE_VOUCHERS_ITEMS_MAX`]; tests lower it.
    #[arg(skip = CREATE_VOUCHERS_ITEMS_MAX)]
    pub create_vouchers_items_max: usize,
    /// Group-commit lanes for voucher posts without a request_id, as ingest-api's `GROUP_COMMIT_LANES`.
    #[arg(long, env = "GROUP_COMMIT_LANES", default_value_t = 4)]
    pub group_commit_lanes: usize,
    /// TaxScraperService: where its invoices come from (`TAX_SCRAPER_INBOX_DIR`).
    #[command(flatten)]
    pub tax_scraper: tax_scraper::ScraperConfig,
    /// InsuranceEDIService: the resident-number key (`RESIDENT_NUMBER_KEY`).
    #[command(flatten)]
    pub insurance_edi: insurance_edi::EdiConfig,
}

impl Config {
    /// Refuses a JWT secret that is too short, or the public sample one outside a dev stack, before any token is
    /// verified with it.
    ///
    /// # Errors
    /// [`Error::Auth`] saying what is wrong with the secret.
    pub fn check_jwt_secret(&self) -> Result<()> {
        Ok(kerp_core::auth::check_secret(self.jwt_secret.as_bytes(), self.dev_stack)?)
    }
}

/// What every service can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub ch: clickhouse::Client,
    pub config: Arc<Config>,
    /// Cancelled when the server shuts down: long streams end early instead of holding the shutdown up.
    pub shutdown: CancellationToken,
    /// Voucher posts without a request_id go through group commit (`kerp_ingest::group_commit`).
    pub poster: kerp_ingest::group_commit::Poster,
    /// The trial balances' reads of balances (with the snapshots held) and accounts, shared per company
    /// (`kerp_query::balances`).
    pub balances: kerp_query::balances::Reader,
}

/// Opens the Postgres pool with ingest-api's time limits on every connection (a lock wait, a statement and a
/// connection checkout are bounded, and answer UNAVAILABLE past their bound). The pool connects lazily, so reports
/// are served while Postgres is down; the voucher calls answer UNAVAILABLE meanwhile.
///
/// # Errors
/// A `DATABASE_URL` that does not parse.
pub fn connect(config: &Config) -> Result<PgPool> {
    let options: PgConnectOptions = config.database_url.parse()?;
    Ok(kerp_ingest::pool_options(config.db_pool_max).connect_lazy_with(options.options(kerp_ingest::session_settings())))
}

/// The services of the main listener: VoucherService, ReportService and TaxScraperService, with health and reflection.
///
/// # Errors
/// A file descriptor set the reflection service cannot read (a build defect).
pub fn main_routes(state: &AppState, health: &tonic_health::server::HealthReporter) -> Result<Routes> {
    let mut routes = Routes::builder();
    routes
        .add_service(vouchers::server(state.clone()))
        .add_service(reports::server(state.clone()))
        .add_service(tax_scraper::server(state.clone()))
        .add_service(health_server(health));
    add_reflection(&mut routes, &[vouchers::SERVICE_NAME, reports::SERVICE_NAME, tax_scraper::SERVICE_NAME])?;
    Ok(routes.routes())
}

/// The services of the EDI listener: InsuranceEDIService, with health and reflection.
///
/// # Errors
/// As [`main_routes`].
pub fn edi_routes(state: &AppState, health: &tonic_health::server::HealthReporter) -> Result<Routes> {
    let mut routes = Routes::builder();
    routes.add_service(insurance_edi::server(state.clone())?).add_service(health_server(health));
    add_reflection(&mut routes, &[insurance_edi::SERVICE_NAME])?;
    Ok(routes.routes())
}

/// A health service that answers from `reporter`'s statuses. `tonic_health::server::health_reporter` makes a reporter
/// and its service together; both listeners share one reporter instead, so one check updates both.
fn health_server(reporter: &tonic_health::server::HealthReporter) -> HealthServer<impl Health> {
    HealthServer::new(tonic_health::server::HealthService::from_health_reporter(reporter.clone()))
}

/// Adds reflection (v1 for current grpcurl and grpcio tools, v1alpha for older ones) that lists `services`, health
/// and reflection itself, and describes every message they use, `google.rpc.BadRequest` included, so that a tool can
/// decode the field violations of an INVALID_ARGUMENT.
fn add_reflection(routes: &mut RoutesBuilder, services: &[&str]) -> Result<()> {
    let configure = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH_SERVICE_NAME);
        for s in services {
            b = b.with_service_name(*s);
        }
        b
    };
    routes
        .add_service(configure().with_service_name(REFLECTION_V1_NAME).build_v1()?)
        .add_service(configure().with_service_name(REFLECTION_V1ALPHA_NAME).build_v1alpha()?);
    Ok(())
}

/// The standard health service's name.
pub const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.Health";
/// The reflection services' names.
pub const REFLECTION_V1_NAME: &str = "grpc.reflection.v1.ServerReflection";
pub const REFLECTION_V1ALPHA_NAME: &str = "grpc.reflection.v1alpha.ServerReflection";

/// The listeners of one grpc-api process, bound by the caller (tests bind port 0 and read the addresses first).
pub struct Listeners {
    /// VoucherService, ReportService, TaxScraperService.
    pub main: TcpListener,
    /// InsuranceEDIService.
    pub edi: TcpListener,
    /// `/metrics` and `/health` over HTTP; `None` serves none.
    pub metrics: Option<TcpListener>,
}

/// Binds the configured addresses and serves until `shutdown` is cancelled.
///
/// # Errors
/// An address that cannot be bound, and those of [`serve`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    config.check_jwt_secret()?;
    let listeners = Listeners {
        main: TcpListener::bind(config.listen).await?,
        edi: TcpListener::bind(config.edi_listen).await?,
        metrics: kerp_core::http::bind_metrics(&config.metrics_listen).await?,
    };
    serve(config, listeners, shutdown).await
}

/// Serves on already bound listeners until `shutdown` is cancelled. On shutdown the listeners stop accepting, the
/// health service says NOT_SERVING, ledger streams and CreateVouchers streams end at their next chunk or item (see
/// `StreamEnd`), and calls in flight finish before this returns.
///
/// # Errors
/// A refused JWT secret or resident-number key, a `DATABASE_URL` that does not parse, transport errors.
pub async fn serve(config: Config, listeners: Listeners, shutdown: CancellationToken) -> Result<()> {
    config.check_jwt_secret()?;
    // The resident-number key is checked before anything starts, as the JWT secret is: no instance serves without it.
    config.insurance_edi.cipher(config.dev_stack)?;
    let pool = connect(&config)?;
    let ch = config.clickhouse.client();
    let poster = kerp_ingest::group_commit::Poster::start(pool.clone(), config.voucher_topic.clone(), config.group_commit_lanes);
    let state = AppState {
        pool,
        ch,
        config: Arc::new(config),
        shutdown: shutdown.clone(),
        poster,
        balances: kerp_query::balances::Reader::default(),
    };
    let health = tonic_health::server::HealthReporter::new();
    if let Some(metrics) = listeners.metrics {
        crate::metrics::describe();
        spawn_internal_http(metrics, state.clone());
    }
    tokio::spawn(watch_health(state.clone(), health.clone()));
    tracing::info!(main = %listeners.main.local_addr()?, edi = %listeners.edi.local_addr()?, "grpc-api listening");
    let main = server().serve_with_incoming_shutdown(
        main_routes(&state, &health)?,
        TcpListenerStream::new(listeners.main),
        shutdown.clone().cancelled_owned(),
    );
    let edi = server().serve_with_incoming_shutdown(
        edi_routes(&state, &health)?,
        TcpListenerStream::new(listeners.edi),
        shutdown.clone().cancelled_owned(),
    );
    tokio::try_join!(main, edi)?;
    Ok(())
}

/// The layers of both listeners, outermost first: the metrics, then the deadlines (so that a call cut off at its
/// deadline is counted with that code).
type Layers = Stack<deadline::DeadlineLayer, Stack<metrics::MetricsLayer, Identity>>;

/// The transport settings both listeners share, with their layers.
fn server() -> Server<Layers> {
    Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(CONNECTION_STREAMS_MAX)
        .layer(metrics::MetricsLayer)
        .layer(deadline::DeadlineLayer)
}

/// Keeps the health statuses current: the server ("") and the services that need a store say NOT_SERVING while it
/// does not answer (VoucherService needs Postgres, ReportService ClickHouse), and everything says NOT_SERVING once
/// shutdown begins, so a balancer drains the instance.
async fn watch_health(state: AppState, health: tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    let all = ["", vouchers::SERVICE_NAME, reports::SERVICE_NAME, tax_scraper::SERVICE_NAME, insurance_edi::SERVICE_NAME];
    loop {
        let (pg, ch) = tokio::join!(sqlx::query("SELECT 1").execute(&state.pool), kerp_query::store::ping(&state.ch));
        let status = |up: bool| if up { Serving } else { NotServing };
        health.set_service_status(vouchers::SERVICE_NAME, status(pg.is_ok())).await;
        health.set_service_status(reports::SERVICE_NAME, status(ch.is_ok())).await;
        // TaxScraperService imports into Postgres. Its source is checked per call instead: a late inbox mount answers
        // that call UNAVAILABLE, which is no reason to drain the instance of its other services.
        health.set_service_status(tax_scraper::SERVICE_NAME, status(pg.is_ok())).await;
        // InsuranceEDIService stores its reports in Postgres.
        health.set_service_status(insurance_edi::SERVICE_NAME, status(pg.is_ok())).await;
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(HEALTH_CHECK_INTERVAL_MS)) => {}
        }
    }
    for name in all {
        health.set_service_status(name, NotServing).await;
    }
}

/// Serves `/metrics` and `/health` (200 when Postgres and ClickHouse answer, 503 otherwise) on the internal listener,
/// in the background until shutdown. `/health` is what `compose/dev` waits for.
fn spawn_internal_http(listener: TcpListener, state: AppState) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    let shutdown = state.shutdown.clone();
    let health = move || {
        let state = state.clone();
        async move {
            use axum::response::IntoResponse;
            let (pg, ch) = tokio::join!(sqlx::query("SELECT 1").execute(&state.pool), kerp_query::store::ping(&state.ch));
            match (pg, ch) {
                (Ok(_), Ok(())) => axum::Json(kerp_core::http::Health::OK).into_response(),
                (pg, ch) => {
                    let what = match (pg.is_err(), ch.is_err()) {
                        (true, true) => "Postgres and ClickHouse unreachable",
                        (true, false) => "Postgres unreachable",
                        _ => "ClickHouse unreachable",
                    };
                    tracing::warn!(what, "health check failed");
                    kerp_core::http::Problem::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, what).into_response()
                }
            }
        }
    };
    let app = kerp_core::http::observed(axum::Router::new().route("/health", axum::routing::get(health)));
    tokio::spawn(async move {
        if let Err(e) = kerp_core::http::serve(listener, app, shutdown).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
}
