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
use axum::Json;
use kerp_core::http::{Auth, Data, JsonBody, Page, Pagination, Problem};
use kerp_core::invoice::{self, InvoiceInput, InvoiceStatus, InvoiceType};
use kerp_core::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unavailable};
use kerp_core::telemetry::timed;
use kerp_core::voucher::{self, FieldError, DESCRIPTION_CHARS_MAX};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::access::{path_id, require_writer};
use crate::idempotency::{self, IdempotencyKey, Idempotent};
use crate::store::invoices::{self as store, Invoice, InvoiceFilter, Item};
use crate::store::vouchers::Posted;
use crate::{AppState, Result};

/// The tax-invoice routes, each registered together with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_invoices, create_invoice))
        .routes(routes!(get_invoice, update_invoice))
        .routes(routes!(issue_invoice))
        .routes(routes!(cancel_invoice))
        .routes(routes!(set_approval_number))
}

/// An invoice with its items.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct InvoiceDetail {
    #[serde(flatten)]
    invoice: Invoice,
    items: Vec<Item>,
}

/// An issued invoice with the voucher issuing posted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct IssuedInvoice {
    #[serde(flatten)]
    invoice: Invoice,
    voucher: Posted,
}

/// A cancelled invoice with the reversal of its voucher (`null` when a draft was cancelled: it had none).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CancelledInvoice {
    #[serde(flatten)]
    invoice: Invoice,
    reversal: Option<Posted>,
}

/// Creates a draft invoice; the server checks the tax to the won and the items against the supply.
#[utoipa::path(post, path = "/api/v1/invoices", tag = "invoices", params(IdempotencyKey), request_body = InvoiceInput,
    responses((status = 201, description = "Created as a draft", body = Data<Invoice>,
               headers(("Location" = String, description = "The invoice's URL"))),
              (status = 403, response = Forbidden), (status = 503, response = Unavailable)))]
async fn create_invoice(State(state): State<AppState>, Auth(claims): Auth, mut req: Idempotent<InvoiceInput>) -> Result<Response> {
    require_writer(&claims)?;
    let valid = invoice::validate(&req.require_body()?).map_err(Problem::invalid)?;
    let (company, user, topic) = (claims.company_id, claims.sub, state.config.voucher_topic.clone());
    idempotency::run(&state.pool, company, &req, StatusCode::CREATED, move |tx| {
        Box::pin(async move {
            let inv = timed("create_invoice", store::create(tx, company, user, &topic, &valid)).await?;
            let location = format!("/api/v1/invoices/{}", inv.id);
            Ok((Data { data: inv }, Some(location)))
        })
    })
    .await
}

/// Replaces a draft invoice.
#[utoipa::path(put, path = "/api/v1/invoices/{id}", tag = "invoices", params(("id" = Uuid, Path, description = "The invoice's id")), request_body = InvoiceInput,
    responses((status = 200, description = "As stored", body = Data<Invoice>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn update_invoice(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<InvoiceInput>,
) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = path_id(&id, "invoice")?;
    let valid = invoice::validate(&input).map_err(Problem::invalid)?;
    let mut tx = state.pool.begin().await?;
    let inv = timed("update_invoice", store::update(&mut tx, claims.company_id, &state.config.voucher_topic, id, &valid)).await?;
    tx.commit().await?;
    Ok(Json(Data { data: inv }))
}

/// Issues a draft and answers with the invoice and the voucher it posted (also linked as `voucher_id`). Clients send it
/// with no body, often with `Content-Type: application/json`; a JSON body is read and ignored.
#[utoipa::path(post, path = "/api/v1/invoices/{id}/issue", tag = "invoices",
    params(("id" = Uuid, Path, description = "The invoice's id"), IdempotencyKey),
    request_body(content = Option<Object>, description = "Left out, or any JSON (ignored)"),
    responses((status = 200, description = "Issued", body = Data<IssuedInvoice>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound),
              (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn issue_invoice(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    req: Idempotent<serde_json::Value>,
) -> Result<Response> {
    require_writer(&claims)?;
    let id = path_id(&id, "invoice")?;
    let (company, user, topic) = (claims.company_id, claims.sub, state.config.voucher_topic.clone());
    idempotency::run(&state.pool, company, &req, StatusCode::OK, move |tx| {
        Box::pin(async move {
            let (invoice, voucher) = timed("issue_invoice", store::issue(tx, company, user, &topic, id)).await?;
            Ok((Data { data: IssuedInvoice { invoice, voucher } }, None))
        })
    })
    .await
}

/// The optional body of `POST /api/v1/invoices/{id}/cancel`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct CancelInput {
    /// The reversal's date, `YYYY-MM-DD`; the invoice's date when left out.
    #[schema(format = Date)]
    date: Option<String>,
    /// At most `DESCRIPTION_CHARS_MAX` (500) characters.
    reason: Option<String>,
}

/// Cancels an invoice: a draft simply, an issued one by reversing its voucher.
#[utoipa::path(post, path = "/api/v1/invoices/{id}/cancel", tag = "invoices",
    params(("id" = Uuid, Path, description = "The invoice's id"), IdempotencyKey),
    request_body(content = Option<CancelInput>, description = "May be left out"),
    responses((status = 200, description = "Cancelled", body = Data<CancelledInvoice>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound),
              (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn cancel_invoice(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    req: Idempotent<CancelInput>,
) -> Result<Response> {
    require_writer(&claims)?;
    let id = path_id(&id, "invoice")?;
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
    let (company, user, topic) = (claims.company_id, claims.sub, state.config.voucher_topic.clone());
    idempotency::run(&state.pool, company, &req, StatusCode::OK, move |tx| {
        Box::pin(async move {
            let (invoice, reversal) = timed("cancel_invoice", store::cancel(tx, company, user, &topic, id, date, &reason)).await?;
            Ok((Data { data: CancelledInvoice { invoice, reversal } }, None))
        })
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ApprovalNumberInput {
    /// The National Tax Service's approval number (승인번호) of the e-invoice.
    approval_number: String,
}

/// Records the approval number the National Tax Service gave the e-invoice.
#[utoipa::path(put, path = "/api/v1/invoices/{id}/approval-number", tag = "invoices", params(("id" = Uuid, Path, description = "The invoice's id")),
    request_body = ApprovalNumberInput,
    responses((status = 200, description = "As stored", body = Data<Invoice>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn set_approval_number(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ApprovalNumberInput>,
) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = path_id(&id, "invoice")?;
    let number =
        invoice::approval_number(&input.approval_number).map_err(|m| Problem::invalid(vec![FieldError::new("approval_number", m)]))?;
    let mut tx = state.pool.begin().await?;
    let inv =
        timed("set_approval_number", store::set_approval_number(&mut tx, claims.company_id, &state.config.voucher_topic, id, &number))
            .await?;
    tx.commit().await?;
    Ok(Json(Data { data: inv }))
}

/// Reads an invoice with its items.
#[utoipa::path(get, path = "/api/v1/invoices/{id}", tag = "invoices", params(("id" = Uuid, Path, description = "The invoice's id")),
    responses((status = 200, description = "The invoice", body = Data<InvoiceDetail>), (status = 404, response = NotFound),
              (status = 503, response = Unavailable)))]
async fn get_invoice(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let id = path_id(&id, "invoice")?;
    let (invoice, items) = timed("get_invoice", store::get(&state.pool, claims.company_id, id))
        .await?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "invoice not found"))?;
    Ok(Json(Data { data: InvoiceDetail { invoice, items } }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[param(value_type = Option<InvoiceStatus>)]
    status: Option<String>,
    #[param(value_type = Option<InvoiceType>)]
    invoice_type: Option<String>,
    /// Invoices dated on or after this day, `YYYY-MM-DD`.
    #[param(format = Date)]
    from_date: Option<String>,
    /// Invoices dated on or before this day, `YYYY-MM-DD`.
    #[param(format = Date)]
    to_date: Option<String>,
    #[param(format = Uuid)]
    partner_id: Option<String>,
    /// From 1 (0 is taken as 1).
    page: Option<u32>,
    /// `PAGE_SIZE_DEFAULT` (50) when left out; larger than `PAGE_SIZE_MAX` (500) is clamped to it.
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
        Err(Problem::malformed(errors))
    }
}

/// Lists the company's invoices.
#[utoipa::path(get, path = "/api/v1/invoices", tag = "invoices", params(ListQuery),
    responses((status = 200, description = "A page of invoices", body = Page<Invoice>),
              (status = 400, response = BadRequest),
              (status = 503, response = Unavailable)))]
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
