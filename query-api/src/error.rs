//! The one error type of query-api and its HTTP mapping: problems go to the client, causes of 5xx go to the log only;
//! a busy or unreachable ClickHouse is a 503 with Retry-After.

use axum::http::{header, HeaderValue, StatusCode};
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

/// Seconds a client is asked to wait (`Retry-After`) when ClickHouse is busy or out of reach.
pub const BUSY_RETRY_AFTER_SECONDS: u32 = 1;

/// What to tell the client when a ClickHouse error is ClickHouse being busy or unreachable rather than a defect: the
/// same request may well succeed a moment later, so it is a 503 with Retry-After, not a 500.
fn unavailable(e: &clickhouse::error::Error) -> Option<&'static str> {
    match e {
        clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => {
            Some("the reports database cannot be reached; retry shortly")
        }
        // 202 TOO_MANY_SIMULTANEOUS_QUERIES, 159 TIMEOUT_EXCEEDED (the reader profile's max_execution_time), 241
        // MEMORY_LIMIT_EXCEEDED: load, not a wrong request.
        clickhouse::error::Error::BadResponse(text) if ["Code: 202", "Code: 159", "Code: 241"].iter().any(|c| text.contains(c)) => {
            Some("the reports database is busy; retry shortly")
        }
        _ => None,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Client(p) => p.into_response(),
            Error::ClickHouse(e) if unavailable(&e).is_some() => {
                tracing::warn!(error = %e, "request refused: ClickHouse busy or unreachable");
                let mut res = Problem::new(StatusCode::SERVICE_UNAVAILABLE, unavailable(&e).unwrap_or_default()).into_response();
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_AFTER_SECONDS));
                res
            }
            other => {
                tracing::error!(error = %other, "request failed");
                Problem::internal().into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_clickhouse_is_a_503_with_retry_after_and_a_defect_a_500() {
        let busy = Error::ClickHouse(clickhouse::error::Error::BadResponse(
            "Code: 202, e.displayText() = DB::Exception: Too many simultaneous queries. Maximum: 100".into(),
        ))
        .into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let defect = Error::ClickHouse(clickhouse::error::Error::BadResponse("Code: 47, Unknown identifier".into())).into_response();
        assert_eq!(defect.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
