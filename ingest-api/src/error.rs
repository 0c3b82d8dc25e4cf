//! The one error type of ingest-api and its single mapping to HTTP: client mistakes become problem+json 4xx, and
//! anything else is logged with its cause and answered with a bare 500.

use axum::http::StatusCode;
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
    #[error("event codec: {0}")]
    Codec(#[from] kerp_schemas::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A token that cannot be minted, or a JWT secret the service refuses to start with.
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

/// Maps a Postgres constraint name to the status a client should see, when the violation is the client's doing.
fn constraint_status(name: &str) -> Option<(StatusCode, &'static str)> {
    Some(match name {
        "vouchers_company_number_key" => (StatusCode::CONFLICT, "a voucher with this number already exists"),
        "users_email_key" => (StatusCode::CONFLICT, "a user with this email already exists"),
        "accounts_company_code_key" => (StatusCode::CONFLICT, "an account with this code already exists"),
        "partners_company_code_key" => (StatusCode::CONFLICT, "a partner with this code already exists"),
        "vouchers_balanced" | "voucher_lines_one_side" => (StatusCode::UNPROCESSABLE_ENTITY, "the voucher does not balance"),
        "voucher_lines_account_id_fkey" => (StatusCode::UNPROCESSABLE_ENTITY, "account not found"),
        "voucher_lines_partner_id_fkey" => (StatusCode::UNPROCESSABLE_ENTITY, "partner not found"),
        _ => return None,
    })
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Client(p) = self {
            return p.into_response();
        }
        if let Error::Db(sqlx::Error::Database(db)) = &self {
            if let Some((status, detail)) = db.constraint().and_then(constraint_status) {
                return Problem::new(status, detail).into_response();
            }
        }
        tracing::error!(error = %self, "request failed");
        Problem::internal().into_response()
    }
}
