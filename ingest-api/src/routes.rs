//! HTTP handlers of ingest-api: requests in, [`crate::store`] calls, contract envelopes out.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use kerp_core::http::{Auth, Data, JsonBody, Page, Pagination, Problem};
use kerp_core::telemetry::timed;
use kerp_core::voucher::{self, FieldError, VoucherInput};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::store::{self, VoucherFilter};
use crate::{AppState, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/vouchers", get(list_vouchers).post(post_voucher))
        .route("/api/v1/vouchers/{id}", get(get_voucher))
        .route("/api/v1/accounts", get(list_accounts).post(crate::master::create_account))
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

async fn post_voucher(
    State(state): State<AppState>,
    Auth(claims): Auth,
    JsonBody(input): JsonBody<VoucherInput>,
) -> Result<impl IntoResponse> {
    if !claims.role.can_write() {
        return Err(Problem::new(StatusCode::FORBIDDEN, "this role may not post vouchers").into());
    }
    let valid = voucher::validate(&input).map_err(Problem::invalid)?;
    let posted =
        timed("post_voucher", store::post_voucher(&state.pool, claims.company_id, claims.sub, &state.config.voucher_topic, &valid)).await?;
    let location = format!("/api/v1/vouchers/{}", posted.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(Data { data: posted })))
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
    if let Some(s) = q.status.as_deref().filter(|s| !matches!(*s, "approved" | "draft")) {
        errors.push(FieldError::new("status", format!("'{s}' is not a status (approved, draft)")));
    }
    if let (Some(f), Some(t)) = (from_date, to_date) {
        if f > t {
            errors.push(FieldError::new("from_date", "must not be after to_date"));
        }
    }
    if errors.is_empty() {
        Ok(VoucherFilter { from_date, to_date, status: q.status.clone() })
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
    let not_found = || Problem::new(StatusCode::NOT_FOUND, "voucher not found");
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let (v, lines) = timed("get_voucher", store::get_voucher(&state.pool, claims.company_id, id)).await?.ok_or_else(not_found)?;
    let mut body = serde_json::to_value(v).unwrap_or_default();
    body["lines"] = serde_json::to_value(lines).unwrap_or_default();
    Ok(Json(Data { data: body }))
}

async fn list_accounts(State(state): State<AppState>, Auth(claims): Auth) -> Result<impl IntoResponse> {
    Ok(Json(Data { data: timed("list_accounts", store::accounts(&state.pool, claims.company_id)).await? }))
}
