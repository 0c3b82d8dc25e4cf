//! HTTP handlers of tax invoices: bodies are checked by `kerp_core::invoice`, stored by [`crate::store::invoices`]
//! inside one transaction with the request's idempotency key, and answered in the contract's envelopes. Accountants
//! and admins write; every role reads.
//!
//! `POST /api/v1/invoices/{id}/issue` arrives from existing clients with no body but `Content-Type:
//! application/json`, which [`Idempotent`] accepts as "no body".

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kerp_core::auth::Claims;
use kerp_core::http::{Auth, Data, JsonBody, Page, Pagination, Problem};
use kerp_core::invoice::{self, InvoiceInput, InvoiceStatus, InvoiceType};
use kerp_core::telemetry::timed;
use kerp_core::voucher::{self, FieldError, DESCRIPTION_CHARS_MAX};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::idempotency::{self, Idempotent};
use crate::store::invoices::{self as store, InvoiceFilter};
use crate::{AppState, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/invoices", get(list_invoices).post(create_invoice))
        .route("/api/v1/invoices/{id}", get(get_invoice).put(update_invoice))
        .route("/api/v1/invoices/{id}/issue", post(issue_invoice))
        .route("/api/v1/invoices/{id}/cancel", post(cancel_invoice))
        .route("/api/v1/invoices/{id}/approval-number", put(set_approval_number))
}

fn require_writer(claims: &Claims) -> Result<(), Problem> {
    if claims.role.can_write() {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, "this role may only read"))
    }
}

fn invoice_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::new(StatusCode::NOT_FOUND, "invoice not found"))
}

async fn create_invoice(State(state): State<AppState>, Auth(claims): Auth, mut req: Idempotent<InvoiceInput>) -> Result<Response> {
    require_writer(&claims)?;
    let valid = invoice::validate(&req.require_body()?).map_err(Problem::invalid)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replay) = idempotency::begin(&mut tx, claims.company_id, &req).await? {
        return Ok(replay);
    }
    let inv = timed("create_invoice", store::create(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, &valid)).await?;
    let location = format!("/api/v1/invoices/{}", inv.id);
    idempotency::finish(tx, claims.company_id, &req, StatusCode::CREATED, &Data { data: inv }, Some(location)).await
}

async fn update_invoice(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<InvoiceInput>,
) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = invoice_id(&id)?;
    let valid = invoice::validate(&input).map_err(Problem::invalid)?;
    let mut tx = state.pool.begin().await?;
    let inv = timed("update_invoice", store::update(&mut tx, claims.company_id, &state.config.voucher_topic, id, &valid)).await?;
    tx.commit().await?;
    Ok(Json(Data { data: inv }))
}

/// Issues a draft and answers with the invoice and the voucher it posted (also linked as `voucher_id`).
async fn issue_invoice(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    req: Idempotent<serde_json::Value>,
) -> Result<Response> {
    require_writer(&claims)?;
    let id = invoice_id(&id)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replay) = idempotency::begin(&mut tx, claims.company_id, &req).await? {
        return Ok(replay);
    }
    let (inv, voucher) =
        timed("issue_invoice", store::issue(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, id)).await?;
    let mut body = serde_json::to_value(&inv).unwrap_or_default();
    body["voucher"] = serde_json::to_value(&voucher).unwrap_or_default();
    idempotency::finish(tx, claims.company_id, &req, StatusCode::OK, &Data { data: body }, None).await
}

/// The optional body of `POST /api/v1/invoices/{id}/cancel`.
#[derive(Debug, Default, Deserialize)]
struct CancelInput {
    /// The reversal's date, `YYYY-MM-DD`; the invoice's date when left out.
    date: Option<String>,
    reason: Option<String>,
}

async fn cancel_invoice(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    req: Idempotent<CancelInput>,
) -> Result<Response> {
    require_writer(&claims)?;
    let id = invoice_id(&id)?;
    let mut errors = Vec::new();
    let body = req.body.as_ref();
    let date =
        body.and_then(|b| b.date.as_deref()).and_then(|d| voucher::parse_date(d).map_err(|m| errors.push(FieldError::new("date", m))).ok());
    let reason = body.and_then(|b| b.reason.as_deref()).unwrap_or_default().trim().to_owned();
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
    let (inv, reversal) =
        timed("cancel_invoice", store::cancel(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, id, date, &reason))
            .await?;
    let mut out = serde_json::to_value(&inv).unwrap_or_default();
    out["reversal"] = serde_json::to_value(&reversal).unwrap_or_default();
    idempotency::finish(tx, claims.company_id, &req, StatusCode::OK, &Data { data: out }, None).await
}

#[derive(Debug, Deserialize)]
struct ApprovalNumberInput {
    approval_number: String,
}

async fn set_approval_number(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ApprovalNumberInput>,
) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = invoice_id(&id)?;
    let number =
        invoice::approval_number(&input.approval_number).map_err(|m| Problem::invalid(vec![FieldError::new("approval_number", m)]))?;
    let mut tx = state.pool.begin().await?;
    let inv =
        timed("set_approval_number", store::set_approval_number(&mut tx, claims.company_id, &state.config.voucher_topic, id, &number))
            .await?;
    tx.commit().await?;
    Ok(Json(Data { data: inv }))
}

async fn get_invoice(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let id = invoice_id(&id)?;
    let (inv, items) = timed("get_invoice", store::get(&state.pool, claims.company_id, id))
        .await?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "invoice not found"))?;
    let mut body = serde_json::to_value(inv).unwrap_or_default();
    body["items"] = json!(items);
    Ok(Json(Data { data: body }))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    invoice_type: Option<String>,
    from_date: Option<String>,
    to_date: Option<String>,
    partner_id: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
}

fn parse_filter(q: &ListQuery) -> Result<InvoiceFilter, Problem> {
    let mut errors = Vec::new();
    let status = q.status.as_deref().and_then(|s| {
        InvoiceStatus::parse(s).or_else(|| {
            errors.push(FieldError::new("status", format!("'{s}' is not an invoice status (draft, issued, cancelled)")));
            None
        })
    });
    let invoice_type = q.invoice_type.as_deref().and_then(|s| {
        InvoiceType::parse(s).or_else(|| {
            errors.push(FieldError::new("invoice_type", format!("'{s}' is not an invoice type (sales, purchase)")));
            None
        })
    });
    let mut date = |name: &str, v: &Option<String>| {
        v.as_deref().and_then(|s| voucher::parse_date(s).map_err(|m| errors.push(FieldError::new(name, m))).ok())
    };
    let from_date = date("from_date", &q.from_date);
    let to_date = date("to_date", &q.to_date);
    let partner_id = q
        .partner_id
        .as_deref()
        .and_then(|p| Uuid::parse_str(p).map_err(|_| errors.push(FieldError::new("partner_id", format!("'{p}' is not an id")))).ok());
    if errors.is_empty() {
        Ok(InvoiceFilter { status, invoice_type, from_date, to_date, partner_id })
    } else {
        Err(Problem::new(
            StatusCode::BAD_REQUEST,
            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "),
        ))
    }
}

async fn list_invoices(
    State(state): State<AppState>,
    Auth(claims): Auth,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let filter = parse_filter(&q)?;
    let mut pagination = Pagination::clamp(q.page, q.page_size);
    let (rows, total) =
        timed("list_invoices", store::list(&state.pool, claims.company_id, &filter, pagination.page_size, pagination.offset())).await?;
    pagination.total = total;
    Ok(Json(Page { data: rows, pagination }))
}
