//! The one error type of ingest-api and its single mapping to HTTP: client mistakes become problem+json 4xx, a busy or
//! unreachable database becomes a 503 with Retry-After, and anything else is logged with its cause and answered with a
//! bare 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kerp_core::http::Problem;

/// Everything that can go wrong in ingest-api.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem the client can fix; sent as is.
    #[error("{}: {}", .0.status, .0.detail)]
    Client(Problem),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("voucher topic: {0}")]
    Topic(#[from] kerp_core::kafka::TopicError),
    #[error("event codec: {0}")]
    Codec(#[from] kerp_schemas::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A token that cannot be minted, or a JWT secret the service refuses to start with.
    #[error(transparent)]
    Auth(#[from] kerp_core::auth::AuthError),
    /// The database was busy or out of reach, said once for many requests: a group commit's failed commit gives
    /// each of its posts this copy of the cause (an `sqlx::Error` cannot be cloned). A 503 with Retry-After.
    #[error("database unavailable: {0}")]
    Unavailable(&'static str),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Client(p)
    }
}

/// Maps a Postgres constraint name to the status a client should see, when the violation is the client's doing.
fn constraint_status(name: &str) -> Option<(StatusCode, &'static str)> {
    Some(match name {
        "vouchers_company_number_key" => (StatusCode::CONFLICT, "a voucher with this number already exists"),
        "users_email_key" => (StatusCode::CONFLICT, "a user with this email already exists"),
        "accounts_company_code_key" => (StatusCode::CONFLICT, "an account with this code already exists"),
        "partners_company_code_key" => (StatusCode::CONFLICT, "a partner with this code already exists"),
        "partners_company_business_number_key" => (StatusCode::CONFLICT, "a partner with this business number already exists"),
        "departments_company_code_key" => (StatusCode::CONFLICT, "a department with this code already exists"),
        "invoices_company_approval_number_key" => (StatusCode::CONFLICT, "an invoice with this approval number already exists"),
        "invoices_company_partner_fkey" => (StatusCode::UNPROCESSABLE_ENTITY, "partner not found"),
        "companies_fiscal_start_month_check" => (StatusCode::UNPROCESSABLE_ENTITY, "fiscal_start_month must be 1 to 12"),
        "vouchers_balanced" | "voucher_lines_one_side" => (StatusCode::UNPROCESSABLE_ENTITY, "the voucher does not balance"),
        // The composite keys of 0003_security.sql also refuse another company's account or partner; the words are
        // the same as for one that does not exist, so that a client cannot probe for other companies' ids.
        "voucher_lines_company_account_fkey" => (StatusCode::UNPROCESSABLE_ENTITY, "account not found"),
        "voucher_lines_company_partner_fkey" => (StatusCode::UNPROCESSABLE_ENTITY, "partner not found"),
        "voucher_lines_company_department_fkey" => (StatusCode::UNPROCESSABLE_ENTITY, "department not found"),
        _ => return None,
    })
}

/// Seconds a client is asked to wait (`Retry-After`) after a 503 for a busy or unreachable database.
pub const BUSY_RETRY_AFTER_SECONDS: u32 = 1;

/// What to tell the client when a database error is the database being busy or out of reach rather than anything
/// wrong with the request: it gets a 503 with Retry-After, and the same request may well succeed a moment later.
pub(crate) fn unavailable(e: &sqlx::Error) -> Option<&'static str> {
    match e {
        sqlx::Error::PoolTimedOut => Some("every database connection is busy; retry shortly"),
        sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Some("the database cannot be reached; retry shortly"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // lock_not_available: lock_timeout passed while waiting, usually behind the same company's other postings.
            Some("55P03") => Some("the company's data is locked by other requests; retry shortly"),
            // query_canceled: statement_timeout passed.
            Some("57014") => Some("the database took too long; retry shortly"),
            // too_many_connections, admin_shutdown, cannot_connect_now: the server is full or restarting.
            Some("53300" | "57P01" | "57P03") => Some("the database is unavailable; retry shortly"),
            _ => None,
        },
        _ => None,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Client(p) = self {
            return p.into_response();
        }
        if let Error::Db(sqlx::Error::Database(db)) = &self {
            if let Some((status, detail)) = db.constraint().and_then(constraint_status) {
                // Every 409 a constraint gives is a unique key: something the company already has.
                let problem = if status == StatusCode::CONFLICT { Problem::duplicate(detail) } else { Problem::new(status, detail) };
                return problem.into_response();
            }
        }
        let busy = match &self {
            Error::Db(e) => unavailable(e),
            Error::Unavailable(detail) => Some(*detail),
            _ => None,
        };
        if let Some(detail) = busy {
            tracing::warn!(error = %self, "request refused: database busy or unreachable");
            let mut res = Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail).into_response();
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_AFTER_SECONDS));
            return res;
        }
        tracing::error!(error = %self, "request failed");
        Problem::internal().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_tenant_references_are_422_like_missing_ones() {
        assert_eq!(constraint_status("voucher_lines_company_account_fkey"), Some((StatusCode::UNPROCESSABLE_ENTITY, "account not found")));
        assert_eq!(constraint_status("voucher_lines_company_partner_fkey"), Some((StatusCode::UNPROCESSABLE_ENTITY, "partner not found")));
    }

    #[test]
    fn a_busy_pool_is_503_with_retry_after() {
        for e in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed, sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into())] {
            let res = Error::Db(e).into_response();
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(res.headers()[header::RETRY_AFTER], BUSY_RETRY_AFTER_SECONDS.to_string().as_str());
            assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
        }
        assert_eq!(Error::Db(sqlx::Error::RowNotFound).into_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
