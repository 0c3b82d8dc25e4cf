//! Idempotency keys in Postgres: a POST's key, the hash of its request and, once it succeeded, its answer.
//!
//! The key row is inserted in the same transaction as what the request creates. A concurrent request with the same
//! key blocks on that row until the first commits (then it finds the stored answer) or rolls back (then it goes on
//! as the first), so one key never creates two objects. Failed requests store nothing: the retry runs again.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// How long a key is remembered, in hours. Clients are promised at least a day.
pub const KEY_TTL_HOURS: i64 = 24;

/// The stored answer of an earlier request with the same key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stored {
    pub request_hash: Vec<u8>,
    pub status: i16,
    pub body: serde_json::Value,
    pub location: Option<String>,
}

/// Takes `key` for this request, or returns what an earlier request with it stored. Run first in the transaction.
///
/// # Errors
/// Database errors (a lock wait past `lock_timeout` is a 503, see the crate's error mapping).
pub async fn claim(tx: &mut PgConnection, company_id: Uuid, key: &str, request_hash: &[u8]) -> Result<Option<Stored>> {
    // A key older than the promise is forgotten, so that its row does not answer a new request.
    sqlx::query("DELETE FROM idempotency_keys WHERE company_id = $1 AND key = $2 AND created_at < now() - make_interval(hours => $3)")
        .bind(company_id)
        .bind(key)
        .bind(i32::try_from(KEY_TTL_HOURS).unwrap_or(24))
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (company_id, key, request_hash, status, body) VALUES ($1, $2, $3, 0, 'null')
         ON CONFLICT (company_id, key) DO NOTHING",
    )
    .bind(company_id)
    .bind(key)
    .bind(request_hash)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(None);
    }
    Ok(sqlx::query_as("SELECT request_hash, status, body, location FROM idempotency_keys WHERE company_id = $1 AND key = $2")
        .bind(company_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?)
}

/// Stores the answer under the key taken by [`claim`], in the same transaction as what the request created.
///
/// # Errors
/// Database errors.
pub async fn record(
    tx: &mut PgConnection,
    company_id: Uuid,
    key: &str,
    status: u16,
    body: &serde_json::Value,
    location: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE idempotency_keys SET status = $3, body = $4, location = $5 WHERE company_id = $1 AND key = $2")
        .bind(company_id)
        .bind(key)
        .bind(i16::try_from(status).unwrap_or(0))
        .bind(body)
        .bind(location)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Forgets keys past [`KEY_TTL_HOURS`], at most `limit` of them; returns how many.
///
/// # Errors
/// Database errors.
pub async fn purge(pool: &sqlx::PgPool, limit: i64) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys WHERE ctid IN (
             SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1) LIMIT $2)",
    )
    .bind(i32::try_from(KEY_TTL_HOURS).unwrap_or(24))
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
