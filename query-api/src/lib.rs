//! query-api: the read side of K-ERP. Authenticated report requests come in, ClickHouse aggregates are read, and the
//! pure [`report`] module shapes them (net balances, running balances) into the contract's JSON.

mod error;
pub mod report;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use kerp_core::clickhouse::ClickHouseConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use routes::{LEDGER_PAGE_SIZE_DEFAULT, LEDGER_PAGE_SIZE_MAX};

/// Settings of query-api.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "QUERY_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,
    /// HS256 secret that verifies bearer tokens, at least 32 bytes; the same as ingest-api's.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Set on a dev stack only (compose/dev, compose/compose.yaml): accepts the public sample JWT secret of .env.sample.
    #[arg(long, env = "KERP_DEV_STACK", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_stack: bool,
    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,
}

#[derive(Clone)]
pub struct AppState {
    pub ch: clickhouse::Client,
    pub config: Arc<Config>,
}

impl kerp_core::http::JwtSecret for AppState {
    fn jwt_secret(&self) -> &[u8] {
        self.config.jwt_secret.as_bytes()
    }
}

/// The HTTP routes with request metrics.
pub fn router(state: AppState) -> Router {
    kerp_core::http::observed(routes::routes().with_state(state))
}

/// Binds the configured address and serves until `shutdown`.
///
/// # Errors
/// When the address cannot be bound.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    serve(config, listener, shutdown).await
}

/// Serves on an already bound listener; in-flight requests finish before it returns.
///
/// # Errors
/// A refused JWT secret (see [`kerp_core::auth::check_secret`]), server IO errors.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    // Refused before serving, so a service with a guessable secret never accepts a token.
    kerp_core::auth::check_secret(config.jwt_secret.as_bytes(), config.dev_stack)?;
    let ch = config.clickhouse.client();
    tracing::info!(addr = %listener.local_addr()?, "query-api listening");
    let app = router(AppState { ch, config: Arc::new(config) });
    kerp_core::http::serve(listener, app, shutdown).await?;
    Ok(())
}
