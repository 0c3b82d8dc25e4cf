//! query-api: the read side of K-ERP. Authenticated report requests come in, the `store` module's ClickHouse queries
//! read the aggregates (never Postgres), and the pure [`report`] module shapes them (fiscal years, statements, net and
//! running balances) into the contract's JSON.

pub mod answers;
pub mod balances;
pub mod coalesce;
mod error;
mod openapi;
pub mod report;
mod routes;
pub mod store;
mod vat;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use kerp_core::clickhouse::ClickHouseReaderConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use openapi::openapi;
pub use routes::{
    LEDGER_PAGE_SIZE_DEFAULT, LEDGER_PAGE_SIZE_MAX, PARTNER_LEDGER_PAGE_SIZE_DEFAULT, PARTNER_LEDGER_PAGE_SIZE_MAX,
    PARTNER_PAGE_SIZE_DEFAULT, PARTNER_PAGE_SIZE_MAX, SEOUL_UTC_OFFSET_HOURS,
};

/// Settings of query-api.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "QUERY_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,
    /// Address of the internal listener that serves `/metrics`; empty disables it. Keep it off the public proxy: the
    /// metrics describe every company's traffic.
    #[arg(long, env = "QUERY_METRICS_LISTEN", default_value = "127.0.0.1:9103")]
    pub metrics_listen: String,
    /// HS256 secret that verifies bearer tokens, at least 32 bytes; the same as ingest-api's.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Set on a dev stack only (compose/dev, compose/compose.yaml): accepts the public sample JWT secret of .env.sample.
    #[arg(long, env = "KERP_DEV_STACK", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_stack: bool,
    /// How often, in milliseconds, the change signals of the companies whose account ledgers were asked for lately
    /// are polled; a held ledger answer is served only while its company's signal has not moved, or has moved only by
    /// postings the page does not read (see `query-api/src/answers.rs`). A held answer may miss the changes of about
    /// this long, on top of the pipeline's own delay. 0 holds no answers.
    #[arg(long, env = "QUERY_ANSWERS_POLL_INTERVAL_MS", default_value_t = 100)]
    pub answers_poll_interval_ms: u64,
    /// ClickHouse, read as the read-only reader user rather than the writer of stream-workers.
    #[command(flatten)]
    pub clickhouse: ClickHouseReaderConfig,
}

#[derive(Clone)]
pub struct AppState {
    pub ch: clickhouse::Client,
    pub config: Arc<Config>,
    /// The reports' reads of balances (with the snapshots held) and accounts, shared per company (see [`balances`]).
    pub balances: balances::Reader,
    /// The account ledger's answers held until the company's books change (see [`answers`]); `None` holds none.
    pub answers: Option<Arc<answers::Answers>>,
}

impl kerp_core::http::JwtSecret for AppState {
    fn jwt_secret(&self) -> &[u8] {
        self.config.jwt_secret.as_bytes()
    }
}

/// The public HTTP routes, exactly those [`openapi()`] documents, with request metrics recorded; the metrics
/// themselves are served on the internal listener.
pub fn router(state: AppState) -> Router {
    kerp_core::http::tracked(coalesced_routes(state))
}

/// The public routes with the in-flight limit and the coalescing middleware, but without the request metrics and
/// spans of [`router`]: what the held answers' poller reads pages again through (`answers::Answers::poll`), so that
/// its refreshes are not counted as clients' requests.
fn coalesced_routes(state: AppState) -> Router {
    let (routes, _) = openapi::api_routes().split_for_parts();
    // Inside `tracked`, so the request's measured time includes its wait for a slot. `Router::layer` wraps each route
    // apart, so the limit must be the global one, whose slots every route shares: with a limit per route, each report
    // had 16 slots of its own, and under the realistic workload's 200 report users the costliest one (the ledger)
    // queued 4.5 s behind its own slots while the trial balance waited 0.5 s.
    //
    // Coalescing sits outside the limit: a request that joins a read in flight takes no slot and waits for none.
    let coalescer = coalesce::Coalescer {
        secret: Arc::from(state.config.jwt_secret.as_bytes()),
        flights: Arc::new(coalesce::Flights::new(coalesce::JOINED_METRIC)),
        answers: state.answers.clone(),
    };
    let routes = limit_in_flight(routes.with_state(state));
    routes.layer(axum::middleware::from_fn_with_state(coalescer, coalesce::coalesce))
}

/// The routes with at most [`REQUESTS_IN_FLIGHT_MAX`] requests in flight across all of them.
fn limit_in_flight(routes: Router) -> Router {
    routes.layer(tower::limit::GlobalConcurrencyLimitLayer::new(REQUESTS_IN_FLIGHT_MAX))
}

/// Most requests query-api works on at once; the rest wait for a slot. A report runs one to three ClickHouse queries
/// at once, so this keeps the service well under the server's `max_concurrent_queries` (100), which otherwise refuses
/// queries outright under a burst, and keeps a 2-core machine from thrashing: past a few queries per core, more at once
/// only makes each slower.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 16;

/// Describes query-api's own metrics for `/metrics` (the request and query metrics are described by `kerp_core`).
pub fn describe_metrics() {
    coalesce::describe_metrics();
    balances::describe_metrics();
    answers::describe_metrics();
}

/// Binds the configured address and serves until `shutdown`.
///
/// # Errors
/// When the address cannot be bound.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    serve(config, listener, shutdown).await
}

/// Serves on an already bound listener, and `/metrics` on the configured internal address; in-flight requests finish
/// before it returns.
///
/// # Errors
/// A refused JWT secret (see [`kerp_core::auth::check_secret`]), a metrics address that cannot be bound, server IO
/// errors.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    kerp_core::auth::check_secret(config.jwt_secret.as_bytes(), config.dev_stack)?;
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
    // Refused before serving, so a service with a guessable secret never accepts a token.
    kerp_core::auth::check_secret(config.jwt_secret.as_bytes(), config.dev_stack)?;
    if let Some(metrics) = metrics {
        kerp_core::http::spawn_metrics(metrics, shutdown.clone());
    }
    describe_metrics();
    let ch = config.clickhouse.client();
    tracing::info!(addr = %listener.local_addr()?, "query-api listening");
    let answers = (config.answers_poll_interval_ms > 0).then(|| Arc::new(answers::Answers::new(config.answers_poll_interval_ms)));
    let state = AppState { ch: ch.clone(), config: Arc::new(config), balances: balances::Reader::default(), answers: answers.clone() };
    let routes = coalesced_routes(state);
    if let Some(answers) = answers {
        tokio::spawn(answers.poll(ch, routes.clone(), shutdown.clone()));
    }
    kerp_core::http::serve(listener, kerp_core::http::tracked(routes), shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// Requests to different routes share the slots: twice the limit, spread over two routes, never has more than
    /// the limit in flight at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_in_flight_limit_is_shared_by_every_route() {
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let slow = {
            let (now, peak) = (now.clone(), peak.clone());
            move || {
                let (now, peak) = (now.clone(), peak.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                }
            }
        };
        let app = limit_in_flight(Router::new().route("/a", get(slow.clone())).route("/b", get(slow)));
        let calls = (0..2 * REQUESTS_IN_FLIGHT_MAX).map(|i| {
            let app = app.clone();
            let uri = if i % 2 == 0 { "/a" } else { "/b" };
            tokio::spawn(async move { app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap().status() })
        });
        for call in calls.collect::<Vec<_>>() {
            assert!(call.await.unwrap().is_success());
        }
        assert_eq!(peak.load(Ordering::SeqCst), REQUESTS_IN_FLIGHT_MAX);
    }
}
