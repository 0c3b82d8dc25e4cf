//! HTTP handlers of ingest-api for vouchers, their lifecycle and the periods: requests in, [`crate::store::vouchers`]
//! calls inside one transaction (with the request's idempotency key), contract envelopes out. Master data has its
//! own module, [`crate::master`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use kerp_core::auth::Claims;
use kerp_core::http::{Auth, Data, JsonBody, Page, Pagination, Problem};
use kerp_core::telemetry::timed;
use kerp_core::voucher::{self, FieldError, VoucherInput, VoucherStatus, DESCRIPTION_CHARS_MAX};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::idempotency::{self, Idempotent};
use crate::store::vouchers::{self as store, VoucherFilter};
use crate::{AppState, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/vouchers", get(list_vouchers).post(post_voucher))
        .route("/api/v1/vouchers/{id}", get(get_voucher).put(update_voucher).delete(delete_voucher))
        .route("/api/v1/vouchers/{id}/approve", post(approve_voucher))
        .route("/api/v1/vouchers/{id}/reverse", post(reverse_voucher))
        .route("/api/v1/accounts", get(list_accounts).post(crate::master::create_account))
        .route("/api/v1/periods", get(list_periods))
        .route("/api/v1/periods/{period}/close", post(close_period))
        .route("/api/v1/periods/{period}/reopen", post(reopen_period))
}

/// Answers 200 when the database answers, 503 otherwise, so a load balancer stops sending writes that would fail.
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

fn require_writer(claims: &Claims) -> Result<(), Problem> {
    if claims.role.can_write() {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, "this role may only read"))
    }
}

fn voucher_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::new(StatusCode::NOT_FOUND, "voucher not found"))
}

async fn post_voucher(State(state): State<AppState>, Auth(claims): Auth, mut req: Idempotent<VoucherInput>) -> Result<Response> {
    require_writer(&claims)?;
    let valid = voucher::validate(&req.require_body()?).map_err(Problem::invalid)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replay) = idempotency::begin(&mut tx, claims.company_id, &req).await? {
        return Ok(replay);
    }
    let posted =
        timed("post_voucher", store::post_voucher(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, &valid)).await?;
    let location = format!("/api/v1/vouchers/{}", posted.id);
    idempotency::finish(tx, claims.company_id, &req, StatusCode::CREATED, &Data { data: posted }, Some(location)).await
}

async fn update_voucher(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<VoucherInput>,
) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = voucher_id(&id)?;
    let valid = voucher::validate(&input).map_err(Problem::invalid)?;
    let mut tx = state.pool.begin().await?;
    let posted =
        timed("update_voucher", store::update_draft(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, id, &valid))
            .await?;
    tx.commit().await?;
    Ok(Json(Data { data: posted }))
}

async fn delete_voucher(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = voucher_id(&id)?;
    let mut tx = state.pool.begin().await?;
    timed("delete_voucher", store::delete_draft(&mut tx, claims.company_id, id)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn approve_voucher(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = voucher_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let posted = timed("approve_voucher", store::approve(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, id)).await?;
    tx.commit().await?;
    Ok(Json(Data { data: posted }))
}

/// The optional body of `POST /api/v1/vouchers/{id}/reverse`.
#[derive(Debug, Default, Deserialize)]
struct ReverseInput {
    /// `YYYY-MM-DD`; the original's date when left out.
    date: Option<String>,
    reason: Option<String>,
}

async fn reverse_voucher(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    req: Idempotent<ReverseInput>,
) -> Result<Response> {
    require_writer(&claims)?;
    let id = voucher_id(&id)?;
    let input = req.body.as_ref();
    let mut errors = Vec::new();
    let date = input
        .and_then(|b| b.date.as_deref())
        .and_then(|d| voucher::parse_date(d).map_err(|m| errors.push(FieldError::new("date", m))).ok());
    let reason = input.and_then(|b| b.reason.as_deref()).unwrap_or_default().trim().to_owned();
    if reason.chars().count() > DESCRIPTION_CHARS_MAX {
        errors.push(FieldError::new("reason", format!("must be at most {DESCRIPTION_CHARS_MAX} characters")));
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors).into());
    }
    let mut tx = state.pool.begin().await?;
    if let Some(replay) = idempotency::begin(&mut tx, claims.company_id, &req).await? {
        return Ok(replay);
    }
    let posted =
        timed("reverse_voucher", store::reverse(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, id, date, &reason))
            .await?;
    let location = format!("/api/v1/vouchers/{}", posted.id);
    idempotency::finish(tx, claims.company_id, &req, StatusCode::CREATED, &Data { data: posted }, Some(location)).await
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    from_date: Option<String>,
    to_date: Option<String>,
    status: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
}

fn parse_filter(q: &ListQuery) -> Result<VoucherFilter, Problem> {
    let mut errors = Vec::new();
    let mut date = |name: &str, v: &Option<String>| {
        v.as_deref().and_then(|s| voucher::parse_date(s).map_err(|m| errors.push(FieldError::new(name, m))).ok())
    };
    let from_date = date("from_date", &q.from_date);
    let to_date = date("to_date", &q.to_date);
    let status = q.status.as_deref().and_then(|s| {
        let parsed = VoucherStatus::parse(s);
        if parsed.is_none() {
            errors.push(FieldError::new("status", format!("'{s}' is not a status (draft, approved, reversed)")));
        }
        parsed
    });
    if let (Some(f), Some(t)) = (from_date, to_date) {
        if f > t {
            errors.push(FieldError::new("from_date", "must not be after to_date"));
        }
    }
    if errors.is_empty() {
        Ok(VoucherFilter { from_date, to_date, status })
    } else {
        Err(Problem::invalid(errors))
    }
}

async fn list_vouchers(
    State(state): State<AppState>,
    Auth(claims): Auth,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let filter = parse_filter(&q)?;
    let mut pagination = Pagination::clamp(q.page, q.page_size);
    let (rows, total) =
        timed("list_vouchers", store::list_vouchers(&state.pool, claims.company_id, &filter, pagination.page_size, pagination.offset()))
            .await?;
    pagination.total = total;
    Ok(Json(Page { data: rows, pagination }))
}

async fn get_voucher(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let id = voucher_id(&id)?;
    let (v, lines) = timed("get_voucher", store::get_voucher(&state.pool, claims.company_id, id))
        .await?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "voucher not found"))?;
    let mut body = serde_json::to_value(v).unwrap_or_default();
    body["lines"] = serde_json::to_value(lines).unwrap_or_default();
    Ok(Json(Data { data: body }))
}

async fn list_accounts(State(state): State<AppState>, Auth(claims): Auth) -> Result<impl IntoResponse> {
    Ok(Json(Data { data: timed("list_accounts", crate::store::accounts(&state.pool, claims.company_id)).await? }))
}

#[derive(Debug, Deserialize)]
struct PeriodsQuery {
    year: Option<i32>,
}

async fn list_periods(
    State(state): State<AppState>,
    Auth(claims): Auth,
    query: Result<Query<PeriodsQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let year = q.year.unwrap_or_else(|| chrono::Datelike::year(&chrono::Utc::now().date_naive()));
    let (min, max) = (chrono::Datelike::year(&voucher::VOUCHER_DATE_MIN), chrono::Datelike::year(&voucher::VOUCHER_DATE_MAX));
    if !(min..=max).contains(&year) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("year must be between {min} and {max}")).into());
    }
    Ok(Json(Data { data: timed("list_periods", store::periods(&state.pool, claims.company_id, year)).await? }))
}

/// Parses `YYYY-MM` into the month's first day; anything else names no period (404).
fn parse_period(s: &str) -> Result<NaiveDate, Problem> {
    let not_found = || Problem::new(StatusCode::NOT_FOUND, format!("'{s}' is not a period (YYYY-MM)"));
    if s.len() != 7 {
        return Err(not_found());
    }
    let d = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").map_err(|_| not_found())?;
    if d < voucher::VOUCHER_DATE_MIN || d > voucher::VOUCHER_DATE_MAX {
        return Err(not_found());
    }
    Ok(d)
}

fn require_admin(claims: &Claims) -> Result<(), Problem> {
    if claims.role.can_manage() {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, "only an admin may close and reopen periods"))
    }
}

async fn close_period(State(state): State<AppState>, Auth(claims): Auth, Path(period): Path<String>) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let p = parse_period(&period)?;
    let mut tx = state.pool.begin().await?;
    timed("close_period", store::close_period(&mut tx, claims.company_id, claims.sub, p)).await?;
    tx.commit().await?;
    Ok(Json(Data { data: json!({"period": period, "state": "closed"}) }))
}

async fn reopen_period(State(state): State<AppState>, Auth(claims): Auth, Path(period): Path<String>) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let p = parse_period(&period)?;
    let mut tx = state.pool.begin().await?;
    timed("reopen_period", store::reopen_period(&mut tx, claims.company_id, p)).await?;
    tx.commit().await?;
    Ok(Json(Data { data: json!({"period": period, "state": "open"}) }))
}
