//! `Idempotency-Key` on the POSTs that create something. A request flows in through [`Idempotent`] (its key, a hash
//! of method, path and body, and the parsed body); the handler hands its work to [`run`], which opens a transaction,
//! takes the key (or answers with what an earlier request under it stored), runs the work, and stores the answer with
//! the key in the same transaction as what the work wrote.
//!
//! The same key with the same request returns the original status and body and creates nothing; with a different
//! request it gets 422. Keys are scoped per company and kept [`KEY_TTL_HOURS`](crate::store::idempotency::KEY_TTL_HOURS).

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::BoxFuture;
use kerp_core::http::{self, Problem};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::store::idempotency as store;
use crate::Result;

/// Longest idempotency key, in characters. A UUID needs 36.
pub const KEY_CHARS_MAX: usize = 255;
/// The request header that carries the key.
pub const KEY_HEADER: &str = "idempotency-key";
/// The response header that marks a stored answer given again.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The `Idempotency-Key` request header as an OpenAPI parameter, for the POSTs that read [`Idempotent`]. It only
/// documents the header: [`Idempotent`] reads the key from the request itself, so the field is never read.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// 1 to `KEY_CHARS_MAX` (255) visible ASCII characters, kept 24 hours per company. The same key with the same request
    /// answers the stored status and body again (with `Idempotent-Replayed: true`) and creates nothing; with a
    /// different request it gets 422.
    #[serde(rename = "Idempotency-Key")]
    #[param(value_type = String, required = false, pattern = "^[!-~]{1,255}$", example = "7b1c2f9e-0d4a-4c55-9d1e-3f0a8b6c2d11")]
    pub key: Option<String>,
}

/// A POST body that may be left out (as for `…/reverse`), with the request's idempotency key and hash.
#[derive(Debug)]
pub struct Idempotent<T> {
    pub key: Option<String>,
    hash: Vec<u8>,
    pub body: Option<T>,
}

impl<T> Idempotent<T> {
    /// The body, or the 400 a request that needs one gets.
    ///
    /// # Errors
    /// 400 when the body was left out.
    pub fn require_body(&mut self) -> Result<T, Problem> {
        self.body.take().ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "a JSON body is required"))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Idempotent<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let key = match req.headers().get(KEY_HEADER) {
            None => None,
            Some(v) => {
                let k = v
                    .to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|k| !k.is_empty() && k.len() <= KEY_CHARS_MAX && k.chars().all(|c| c.is_ascii_graphic()));
                Some(
                    k.ok_or_else(|| {
                        Problem::new(
                            StatusCode::BAD_REQUEST,
                            format!("Idempotency-Key must be 1 to {KEY_CHARS_MAX} visible ASCII characters"),
                        )
                    })?
                    .to_owned(),
                )
            }
        };
        let mut hasher = Sha256::new();
        hasher.update(req.method().as_str().as_bytes());
        hasher.update([0]);
        hasher.update(req.uri().path().as_bytes());
        hasher.update([0]);
        let json = http::is_json(req.headers());
        let bytes = http::read_body(req).await?;
        hasher.update(&bytes);
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else if !json {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"));
        } else {
            Some(http::parse_json(&bytes)?)
        };
        Ok(Idempotent { key, hash: hasher.finalize().to_vec(), body })
    }
}

/// What a request's work answers: the body and, for a creation, the new object's URL.
pub type Answer<B> = (B, Option<String>);

/// Runs `work` in one transaction under the request's idempotency key: the answer an earlier request with the key
/// stored is given again; otherwise `work` runs, and its answer is stored with the key and committed together with
/// what `work` wrote. `work` gets the transaction and must not commit it.
///
/// # Errors
/// 422 for a key reused with a different request, `work`'s errors (then nothing is kept), database errors.
pub async fn run<T, B, W>(pool: &PgPool, company_id: Uuid, req: &Idempotent<T>, status: StatusCode, work: W) -> Result<Response>
where
    B: Serialize,
    W: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<Answer<B>>>,
{
    let mut tx = pool.begin().await?;
    if let Some(replay) = begin(&mut tx, company_id, req).await? {
        return Ok(replay);
    }
    let (body, location) = work(&mut tx).await?;
    finish(tx, company_id, req, status, &body, location).await
}

/// Takes the request's key inside `tx`, or returns the answer stored under it. Without a key there is nothing to do.
///
/// # Errors
/// 422 when the key was used for a different request, database errors.
async fn begin<T>(tx: &mut PgConnection, company_id: Uuid, req: &Idempotent<T>) -> Result<Option<Response>> {
    let Some(key) = &req.key else { return Ok(None) };
    let Some(stored) = store::claim(tx, company_id, key, &req.hash).await? else { return Ok(None) };
    if stored.request_hash != req.hash {
        return Err(Problem::idempotency_key_reused(
            "this Idempotency-Key was already used for a different request; send a new key for a new request",
        )
        .into());
    }
    let status = StatusCode::from_u16(u16::try_from(stored.status).unwrap_or(200)).unwrap_or(StatusCode::OK);
    let mut res = (status, Json(stored.body)).into_response();
    if let Some(location) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    res.headers_mut().insert(HeaderName::from_static(REPLAYED_HEADER), HeaderValue::from_static("true"));
    Ok(Some(res))
}

/// Stores the answer under the request's key (if it has one) and commits it together with the work done in `tx`.
///
/// # Errors
/// Database errors; then nothing of the request is kept.
async fn finish<T, B: Serialize>(
    mut tx: Transaction<'_, Postgres>,
    company_id: Uuid,
    req: &Idempotent<T>,
    status: StatusCode,
    body: &B,
    location: Option<String>,
) -> Result<Response> {
    let body = serde_json::to_value(body).map_err(|e| crate::Error::Other(format!("serialising a response: {e}")))?;
    if let Some(key) = &req.key {
        store::record(&mut tx, company_id, key, status.as_u16(), &body, location.as_deref()).await?;
    }
    tx.commit().await?;
    let mut res = (status, Json(body)).into_response();
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    Ok(res)
}
