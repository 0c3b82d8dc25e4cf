//! The one error type of grpc-api and its single mapping to gRPC: what went wrong comes in as an [`Error`] (often one
//! of the REST services' own errors, since the work is theirs), and out goes a [`Failure`], a status code with a
//! message and field violations, which becomes a [`tonic::Status`] (violations as `google.rpc.BadRequest` details) or,
//! inside a CreateVouchers answer, an item's error.
//!
//! The kinds follow REST's problem statuses one to one (see `docs/errors.md`): 400 and 422 are INVALID_ARGUMENT, 401
//! UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 409 ALREADY_EXISTS for a duplicate and FAILED_PRECONDITION
//! otherwise (a closed period, a voucher in the wrong state), 413 INVALID_ARGUMENT (the voucher is too large to
//! publish), 503 UNAVAILABLE, anything else INTERNAL. Postgres errors go through ingest-api's own mapping, so a
//! constraint names the same conflict and a busy database is UNAVAILABLE exactly when REST says 503. An INTERNAL
//! answer never carries its cause: the cause is logged here (or by ingest-api's mapping) and the client reads
//! [`INTERNAL_MESSAGE`].

use axum::response::IntoResponse;
use kerp_core::http::Problem;
use kerp_core::voucher::FieldError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Everything that can go wrong in grpc-api.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem the client can fix or retry, in the REST services' terms.
    #[error("{}: {}", .0.status, .0.detail)]
    Client(Problem),
    /// An error of ingest-api's store (Postgres, the outbox, a voucher refused there).
    #[error("ingest: {0}")]
    Ingest(#[from] kerp_ingest::Error),
    /// An error of query-api's store (ClickHouse) or report code.
    #[error("query: {0}")]
    Query(#[from] kerp_query::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A JWT secret the service refuses to start with.
    #[error(transparent)]
    Auth(#[from] kerp_core::auth::AuthError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Client(p)
    }
}

/// What an INTERNAL answer says. The cause is in the server's log.
pub const INTERNAL_MESSAGE: &str = "internal error; it has been logged";

/// Largest problem+json body read back from ingest-api's error mapping, in bytes. Its bodies are a few hundred bytes,
/// or a field error per line of a voucher of `LINES_MAX` lines.
const PROBLEM_BYTES_MAX: usize = 1024 * 1024;

/// A failed call in gRPC terms: a code, a message for people and the fields at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    /// Every offending field (path and what is wrong), on INVALID_ARGUMENT.
    pub violations: Vec<FieldError>,
}

impl Failure {
    #[must_use]
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), violations: Vec::new() }
    }

    /// INVALID_ARGUMENT naming each offending field; the message lists them.
    #[must_use]
    pub fn invalid(violations: Vec<FieldError>) -> Self {
        Self { code: Code::InvalidArgument, message: joined(&violations), violations }
    }

    #[must_use]
    pub fn internal() -> Self {
        Self::new(Code::Internal, INTERNAL_MESSAGE)
    }

    /// The failure a REST problem stands for (see the module's table).
    #[must_use]
    pub fn from_problem(p: &Problem) -> Self {
        Self::from_parts(p.status, p.kind, &p.detail, p.errors.clone())
    }

    /// [`Failure::from_problem`] from a problem's status, `type` URI, detail and field errors.
    #[must_use]
    pub fn from_parts(status: u16, kind: &str, detail: &str, errors: Vec<FieldError>) -> Self {
        let code = match status {
            400 | 413 | 415 | 422 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            // A duplicate (a code, a number, an approval number) has a type of its own; every other conflict is a
            // state the object or the period is in.
            409 if kind == kerp_core::http::PROBLEM_TYPE_DUPLICATE => Code::AlreadyExists,
            409 => Code::FailedPrecondition,
            503 => Code::Unavailable,
            _ => return Self::internal(),
        };
        if code == Code::InvalidArgument && !errors.is_empty() {
            return Self::invalid(errors);
        }
        Self::new(code, detail)
    }

    /// The same failure with every field path put under `prefix` (`lines[0].debit_amount` becomes
    /// `voucher.lines[0].debit_amount`), so that paths name fields of the gRPC request rather than of a REST body.
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Self {
        if self.violations.is_empty() {
            return self;
        }
        for v in &mut self.violations {
            v.field = format!("{prefix}.{}", v.field);
        }
        self.message = joined(&self.violations);
        self
    }

    /// The status to answer with, field violations as `google.rpc.BadRequest` details.
    #[must_use]
    pub fn into_status(self) -> Status {
        if self.violations.is_empty() {
            return Status::new(self.code, self.message);
        }
        let violations: Vec<tonic_types::FieldViolation> =
            self.violations.into_iter().map(|v| tonic_types::FieldViolation::new(v.field, v.message)).collect();
        Status::with_error_details(self.code, self.message, ErrorDetails::with_bad_request(violations))
    }
}

impl From<Failure> for Status {
    fn from(f: Failure) -> Self {
        f.into_status()
    }
}

fn joined(violations: &[FieldError]) -> String {
    violations.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// The failure to answer with. Causes of INTERNAL and UNAVAILABLE are logged here, never sent.
    pub async fn into_failure(self) -> Failure {
        match self {
            Error::Client(p) | Error::Ingest(kerp_ingest::Error::Client(p)) | Error::Query(kerp_query::Error::Client(p)) => {
                Failure::from_problem(&p)
            }
            Error::Ingest(e) => ingest_failure(e).await,
            Error::Db(e) => ingest_failure(kerp_ingest::Error::Db(e)).await,
            Error::Query(kerp_query::Error::ClickHouse(e)) if clickhouse_busy(&e) => {
                tracing::warn!(error = %e, "call refused: ClickHouse busy or unreachable");
                Failure::new(Code::Unavailable, "ClickHouse cannot answer in time; retry shortly")
            }
            other => {
                tracing::error!(error = %other, "call failed");
                Failure::internal()
            }
        }
    }

    /// The status to answer with (see [`Error::into_failure`]).
    pub async fn into_status(self) -> Status {
        self.into_failure().await.into_status()
    }
}

/// Runs an error of ingest-api's through its own HTTP mapping, which knows its constraints and when Postgres is busy,
/// and logs what must not be sent, then reads the status and problem back.
async fn ingest_failure(e: kerp_ingest::Error) -> Failure {
    let res = e.into_response();
    let status = res.status().as_u16();
    let Ok(body) = axum::body::to_bytes(res.into_body(), PROBLEM_BYTES_MAX).await else {
        return Failure::internal();
    };
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let detail = problem["detail"].as_str().unwrap_or_default();
    let kind = problem["type"].as_str().unwrap_or_default();
    let errors = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| FieldError::new(e["field"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Failure::from_parts(status, kind, detail, errors)
}

/// Whether a ClickHouse error is the server being out of reach or overloaded rather than a defect: a retry may
/// succeed. Server errors arrive as text with their code: 159 is TIMEOUT_EXCEEDED (the reader profile's
/// `max_execution_time`), 202 TOO_MANY_SIMULTANEOUS_QUERIES.
fn clickhouse_busy(e: &clickhouse::error::Error) -> bool {
    match e {
        clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => true,
        clickhouse::error::Error::BadResponse(text) => text.contains("Code: 159") || text.contains("Code: 202"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn every_rest_status_has_its_code() {
        let cases = [
            (Problem::new(StatusCode::BAD_REQUEST, "bad"), Code::InvalidArgument),
            (Problem::new(StatusCode::UNAUTHORIZED, "x"), Code::Unauthenticated),
            (Problem::new(StatusCode::FORBIDDEN, "x"), Code::PermissionDenied),
            (Problem::new(StatusCode::NOT_FOUND, "voucher not found"), Code::NotFound),
            (Problem::period_closed("the period 2025-03 is closed"), Code::FailedPrecondition),
            (Problem::new(StatusCode::CONFLICT, "the voucher is already reversed"), Code::FailedPrecondition),
            // The words do not decide: the type does.
            (Problem::new(StatusCode::CONFLICT, "a partner with this code already exists"), Code::FailedPrecondition),
            (Problem::duplicate("a partner with this code already exists"), Code::AlreadyExists),
            (Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too large"), Code::InvalidArgument),
            (Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "x"), Code::InvalidArgument),
            (Problem::idempotency_key_reused("x"), Code::InvalidArgument),
            (Problem::new(StatusCode::SERVICE_UNAVAILABLE, "busy"), Code::Unavailable),
            (Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "secret cause"), Code::Internal),
            (Problem::new(StatusCode::BAD_GATEWAY, "secret cause"), Code::Internal),
        ];
        for (problem, code) in cases {
            let (status, detail) = (problem.status, problem.detail.clone());
            let f = Failure::from_problem(&problem);
            assert_eq!(f.code, code, "{status} {detail}");
            if code == Code::Internal {
                assert_eq!(f.message, INTERNAL_MESSAGE, "an internal failure never says its cause");
            }
        }
    }

    #[test]
    fn validation_errors_become_field_violations_under_the_request_field() {
        let p = Problem::invalid(vec![
            FieldError::new("lines[0].debit_amount", "must not be negative"),
            FieldError::new("voucher_date", "'x' is not a valid date (YYYY-MM-DD)"),
        ]);
        let f = Failure::from_problem(&p).under("voucher");
        assert_eq!(f.code, Code::InvalidArgument);
        assert_eq!(f.violations[0].field, "voucher.lines[0].debit_amount");
        assert_eq!(
            f.message,
            "voucher.lines[0].debit_amount: must not be negative; voucher.voucher_date: 'x' is not a valid date (YYYY-MM-DD)"
        );
        let status = f.into_status();
        let details = status.get_error_details();
        let bad = details.bad_request().expect("BadRequest details");
        assert_eq!(bad.field_violations.len(), 2);
        assert_eq!(bad.field_violations[1].field, "voucher.voucher_date");
        assert_eq!(bad.field_violations[0].description, "must not be negative");
    }

    #[test]
    fn a_failure_without_violations_has_no_details() {
        let status = Failure::new(Code::NotFound, "voucher not found").under("voucher").into_status();
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.get_error_details().bad_request().is_none());
    }

    #[tokio::test]
    async fn busy_postgres_is_unavailable_and_a_bug_is_internal_through_ingest_mapping() {
        let f = Error::Db(sqlx::Error::PoolTimedOut).into_failure().await;
        assert_eq!(f.code, Code::Unavailable);
        let f = Error::Db(sqlx::Error::RowNotFound).into_failure().await;
        assert_eq!(f, Failure::internal());
        let f = Error::Ingest(kerp_ingest::Error::Client(Problem::new(StatusCode::CONFLICT, "the period 2025-03 is closed")))
            .into_failure()
            .await;
        assert_eq!(f.code, Code::FailedPrecondition);
        let f =
            Error::Ingest(kerp_ingest::Error::Client(Problem::duplicate("a partner with this code already exists"))).into_failure().await;
        assert_eq!(f.code, Code::AlreadyExists);
    }

    #[tokio::test]
    async fn unreachable_clickhouse_is_unavailable() {
        let e = clickhouse::error::Error::Network("connection refused".into());
        assert_eq!(Error::Query(kerp_query::Error::ClickHouse(e)).into_failure().await.code, Code::Unavailable);
        let e = clickhouse::error::Error::BadResponse("Code: 159. DB::Exception: Timeout exceeded".into());
        assert_eq!(Error::Query(kerp_query::Error::ClickHouse(e)).into_failure().await.code, Code::Unavailable);
        let e = clickhouse::error::Error::BadResponse("Code: 62. DB::Exception: Syntax error".into());
        assert_eq!(Error::Query(kerp_query::Error::ClickHouse(e)).into_failure().await, Failure::internal());
    }
}
