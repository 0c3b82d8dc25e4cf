//! The one error type of query-api and its HTTP mapping: problems go to the client, causes of 5xx go to the log only.

use axum::response::{IntoResponse, Response};
use kerp_core::http::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {}", .0.status, .0.detail)]
    Client(Problem),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// ClickHouse answered something this service cannot read (a defect, not the client's doing).
    #[error("{0}")]
    Other(String),
    /// A JWT secret the service refuses to start with.
    #[error(transparent)]
    Auth(#[from] kerp_core::auth::AuthError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Client(p)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            other => {
                tracing::error!(error = %other, "request failed");
                Problem::internal().into_response()
            }
        }
    }
}
