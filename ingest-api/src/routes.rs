//! HTTP handlers of ingest-api for vouchers, their lifecycle and the periods: requests in, [`crate::store::vouchers`]
//! calls inside one transaction (with the request's idempotency key), contract envelopes out. Master data has its
//! own module, [`crate::master`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use kerp_core::http::{Auth, Data, Health, JsonBody, Pagination, Problem};
use kerp_core::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unavailable, Unprocessable};
use kerp_core::telemetry::timed;
use kerp_core::voucher::{self, FieldError, VoucherInput, VoucherStatus, DESCRIPTION_CHARS_MAX};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::{path_id, require_admin, require_writer};
use crate::idempotency::{self, IdempotencyKey, Idempotent};
use crate::store::vouchers::{
    self as store, LineRow, ListCount, ListKey, ListStart, Period, PeriodState, Posted, VoucherFilter, VoucherRow,
};
use crate::store::Account;
use crate::{AppState, Result};

/// The voucher, account-list and period routes, each registered together with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_vouchers, post_voucher))
        .routes(routes!(get_voucher, update_voucher, delete_voucher))
        .routes(routes!(approve_voucher))
        .routes(routes!(reverse_voucher))
        .routes(routes!(list_accounts, crate::master::create_account))
        .routes(routes!(list_periods))
        .routes(routes!(close_period))
        .routes(routes!(reopen_period))
        .routes(routes!(health))
}

/// Answers 200 when the database answers, 503 otherwise, so a load balancer stops sending writes that would fail.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Postgres answers", body = Health), (status = 503, response = Unavailable)))]
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => (StatusCode::OK, Json(Health::OK)).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

/// Posts a voucher: approved (numbered, published, in the reports) unless it says `"status": "draft"`.
#[utoipa::path(post, path = "/api/v1/vouchers", tag = "vouchers", params(IdempotencyKey), request_body = VoucherInput,
    responses((status = 201, description = "Posted; replayed with `Idempotent-Replayed: true` for a repeated key", body = Data<Posted>,
               headers(("Location" = String, description = "The voucher's URL"))),
              (status = 403, response = Forbidden), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn post_voucher(State(state): State<AppState>, Auth(claims): Auth, mut req: Idempotent<VoucherInput>) -> Result<Response> {
    require_writer(&claims)?;
    let valid = voucher::validate(&req.require_body()?).map_err(Problem::invalid)?;
    let (company, user, topic) = (claims.company_id, claims.sub, state.config.voucher_topic.clone());
    if req.key.is_none() {
        // Group commit: written in a batch with whatever else is being posted (see `group_commit`). A keyed post
        // takes the path below, where its key is claimed and answered in the voucher's own transaction.
        let posted = timed("post_voucher", state.poster.post(company, user, valid)).await?;
        let location = format!("/api/v1/vouchers/{}", posted.id);
        let mut res = (StatusCode::CREATED, Json(Data { data: posted })).into_response();
        if let Ok(location) = axum::http::HeaderValue::from_str(&location) {
            res.headers_mut().insert(axum::http::header::LOCATION, location);
        }
        return Ok(res);
    }
    idempotency::run(&state.pool, company, &req, StatusCode::CREATED, move |tx| {
        Box::pin(async move {
            let posted = timed("post_voucher", store::post_voucher(tx, company, user, &topic, &valid)).await?;
            let location = format!("/api/v1/vouchers/{}", posted.id);
            Ok((Data { data: posted }, Some(location)))
        })
    })
    .await
}

/// Replaces a draft; an approved voucher is corrected by a reversal instead (409).
#[utoipa::path(put, path = "/api/v1/vouchers/{id}", tag = "vouchers", params(("id" = Uuid, Path, description = "The voucher's id")),
    request_body = VoucherInput,
    responses((status = 200, description = "The draft as stored", body = Data<Posted>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 503, response = Unavailable)))]
async fn update_voucher(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<VoucherInput>,
) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = path_id(&id, "voucher")?;
    let valid = voucher::validate(&input).map_err(Problem::invalid)?;
    let mut tx = state.pool.begin().await?;
    let posted =
        timed("update_voucher", store::update_draft(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, id, &valid))
            .await?;
    tx.commit().await?;
    Ok(Json(Data { data: posted }))
}

/// Deletes a draft.
#[utoipa::path(delete, path = "/api/v1/vouchers/{id}", tag = "vouchers", params(("id" = Uuid, Path, description = "The voucher's id")),
    responses((status = 204, description = "Deleted"), (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 409, response = Conflict), (status = 503, response = Unavailable)))]
async fn delete_voucher(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = path_id(&id, "voucher")?;
    let mut tx = state.pool.begin().await?;
    timed("delete_voucher", store::delete_draft(&mut tx, claims.company_id, id)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Approves a draft: it gets its number and reaches the reports.
#[utoipa::path(post, path = "/api/v1/vouchers/{id}/approve", tag = "vouchers", params(("id" = Uuid, Path, description = "The voucher's id")),
    responses((status = 200, description = "Approved", body = Data<Posted>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict),
              (status = 422, response = Unprocessable), (status = 503, response = Unavailable)))]
async fn approve_voucher(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    require_writer(&claims)?;
    let id = path_id(&id, "voucher")?;
    let mut tx = state.pool.begin().await?;
    let posted = timed("approve_voucher", store::approve(&mut tx, claims.company_id, claims.sub, &state.config.voucher_topic, id)).await?;
    tx.commit().await?;
    Ok(Json(Data { data: posted }))
}

/// The optional body of `POST /api/v1/vouchers/{id}/reverse`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct ReverseInput {
    /// `YYYY-MM-DD`; the original's date when left out.
    #[schema(format = Date)]
    date: Option<String>,
    /// At most `DESCRIPTION_CHARS_MAX` (500) characters.
    #[schema(example = "wrong account")]
    reason: Option<String>,
}

/// Reverses an approved voucher with a new approved voucher of the opposite amounts; both stay in the reports.
#[utoipa::path(post, path = "/api/v1/vouchers/{id}/reverse", tag = "vouchers",
    params(("id" = Uuid, Path, description = "The voucher's id"), IdempotencyKey),
    request_body(content = Option<ReverseInput>, description = "May be left out"),
    responses((status = 201, description = "The reversal", body = Data<Posted>, headers(("Location" = String, description = "The reversal's URL"))),
              (status = 403, response = Forbidden), (status = 404, response = NotFound),
              (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn reverse_voucher(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    req: Idempotent<ReverseInput>,
) -> Result<Response> {
    require_writer(&claims)?;
    let id = path_id(&id, "voucher")?;
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
    let (company, user, topic) = (claims.company_id, claims.sub, state.config.voucher_topic.clone());
    idempotency::run(&state.pool, company, &req, StatusCode::CREATED, move |tx| {
        Box::pin(async move {
            let posted = timed("reverse_voucher", store::reverse(tx, company, user, &topic, id, date, &reason)).await?;
            let location = format!("/api/v1/vouchers/{}", posted.id);
            Ok((Data { data: posted }, Some(location)))
        })
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Vouchers dated on or after this day, `YYYY-MM-DD`.
    #[param(format = Date)]
    from_date: Option<String>,
    /// Vouchers dated on or before this day, `YYYY-MM-DD`.
    #[param(format = Date)]
    to_date: Option<String>,
    #[param(value_type = Option<VoucherStatus>)]
    status: Option<String>,
    /// From 1 (0 is taken as 1). Deep pages cost more the deeper they are (an `OFFSET` scan); use `cursor` to walk
    /// a long list. Not together with `cursor`.
    page: Option<u32>,
    /// `PAGE_SIZE_DEFAULT` (50) when left out; larger than `PAGE_SIZE_MAX` (500) is clamped to it.
    page_size: Option<u32>,
    /// The `pagination.next_cursor` of the previous page: the page just after it, read from an index whatever its
    /// depth. Opaque; it keeps the filters of the page that gave it (filters sent with it must be the same).
    cursor: Option<String>,
    /// `true` for an exact `total` on every page (a full `count(*)`, slow on large companies). By default the vouchers
    /// from the page on are counted up to `LIST_COUNT_ROWS_MAX` (200), or the page's size if larger.
    include_total: Option<bool>,
}

/// What a voucher-list cursor carries: where the next page starts, what came before it, and the filters it belongs to.
#[derive(Debug, Serialize, Deserialize)]
struct ListCursor {
    filter: VoucherFilter,
    after: ListKey,
    /// Vouchers before the next page, for its `page` and `total`.
    position: u64,
}

/// The voucher list's `pagination`: the contract's `page`, `page_size` and `total`, and how to go on.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VoucherPagination {
    #[serde(flatten)]
    page: Pagination,
    /// `false` when `total` is exact. `true` when counting stopped at `LIST_COUNT_ROWS_MAX` (200, or the page's size) vouchers past
    /// the page's start: then `total` is a lower bound, and `include_total=true` gives the exact number.
    total_is_estimate: bool,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// A page of vouchers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VoucherPage {
    data: Vec<VoucherRow>,
    pagination: VoucherPagination,
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
    // A date or status that cannot be read is a malformed request (400); readable dates in the wrong order are a
    // well-formed request that is refused (422).
    if !errors.is_empty() {
        return Err(Problem::malformed(errors));
    }
    if let (Some(f), Some(t)) = (from_date, to_date) {
        if f > t {
            return Err(Problem::invalid(vec![FieldError::new("from_date", "must not be after to_date")]));
        }
    }
    Ok(VoucherFilter { from_date, to_date, status })
}

/// Where a voucher-list request starts: from a cursor (with its filters and the vouchers before it) or at an offset.
fn list_start(q: &ListQuery, filter: VoucherFilter, pagination: &Pagination) -> Result<(VoucherFilter, ListStart, u64), Problem> {
    let Some(text) = q.cursor.as_deref() else {
        return Ok((filter, ListStart::Offset(pagination.offset()), pagination.offset()));
    };
    let invalid = |m: &str| Problem::invalid(vec![FieldError::new("cursor", m)]);
    if q.page.is_some() {
        return Err(invalid("give either page or cursor"));
    }
    let c: ListCursor = kerp_core::cursor::decode(text).map_err(|m| invalid(&m))?;
    let filtered = q.from_date.is_some() || q.to_date.is_some() || q.status.is_some();
    if filtered && filter != c.filter {
        return Err(invalid("was made for other filters; send the same from_date, to_date and status, or none"));
    }
    Ok((c.filter, ListStart::After(c.after), c.position))
}

/// Lists the company's vouchers by date, number (drafts last in their day), creation time and id.
///
/// Two ways to page, both in that order: `page`/`page_size` as the contract has it, whose cost grows with the page
/// number (an `OFFSET` scan); or the keyset cursor: each page's `pagination.next_cursor`, sent back as `cursor`,
/// gives the next page from an index range scan, as fast at the 1,000th page as at the first, and without skipping
/// or repeating a voucher when others are posted meanwhile. `total` counts the vouchers from the page on up to
/// `LIST_COUNT_ROWS_MAX` (200, or the page's size if larger), plus those before it; past that `total_is_estimate` is `true` and `total` is a lower
/// bound. `include_total=true` counts them all, exactly.
#[utoipa::path(get, path = "/api/v1/vouchers", tag = "vouchers", params(ListQuery),
    responses((status = 200, description = "A page of vouchers", body = VoucherPage), (status = 400, response = BadRequest),
              (status = 422, response = Unprocessable),
              (status = 503, response = Unavailable)))]
async fn list_vouchers(
    State(state): State<AppState>,
    Auth(claims): Auth,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let filter = parse_filter(&q)?;
    let mut pagination = Pagination::clamp(q.page, q.page_size);
    let (filter, start, before) = list_start(&q, filter, &pagination)?;
    let count = if q.include_total == Some(true) { ListCount::Exact } else { ListCount::Capped };
    let page =
        timed("list_vouchers", store::list_vouchers(&state.pool, claims.company_id, &filter, &start, pagination.page_size, count)).await?;
    if matches!(start, ListStart::After(_)) {
        pagination.page = u32::try_from(before / u64::from(pagination.page_size) + 1).unwrap_or(u32::MAX);
    }
    pagination.total = match (count, &start) {
        (ListCount::Capped, ListStart::After(_)) => before + page.counted,
        _ => page.counted,
    };
    let next_cursor = page.rows.last().filter(|_| page.more).map(|last| {
        let position = before + page.rows.len() as u64;
        kerp_core::cursor::encode(&ListCursor { filter, after: ListKey::of(last), position })
    });
    let pagination = VoucherPagination { page: pagination, total_is_estimate: page.count_capped, next_cursor };
    Ok(Json(VoucherPage { data: page.rows, pagination }))
}

/// A voucher with its lines.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VoucherDetail {
    #[serde(flatten)]
    voucher: VoucherRow,
    lines: Vec<LineRow>,
}

/// Reads a voucher with its lines.
#[utoipa::path(get, path = "/api/v1/vouchers/{id}", tag = "vouchers", params(("id" = Uuid, Path, description = "The voucher's id")),
    responses((status = 200, description = "The voucher", body = Data<VoucherDetail>), (status = 404, response = NotFound),
              (status = 503, response = Unavailable)))]
async fn get_voucher(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let id = path_id(&id, "voucher")?;
    let (voucher, lines) = timed("get_voucher", store::get_voucher(&state.pool, claims.company_id, id))
        .await?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "voucher not found"))?;
    Ok(Json(Data { data: VoucherDetail { voucher, lines } }))
}

/// The company's chart of accounts, by code (not paged: a chart has a few hundred accounts at most).
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    responses((status = 200, description = "Every account", body = Data<Vec<Account>>), (status = 503, response = Unavailable)))]
async fn list_accounts(State(state): State<AppState>, Auth(claims): Auth) -> Result<impl IntoResponse> {
    Ok(Json(Data { data: timed("list_accounts", crate::store::accounts(&state.pool, claims.company_id)).await? }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PeriodsQuery {
    /// 1970 to 2099; this year (UTC) when left out.
    year: Option<i32>,
}

/// The twelve months of a year with their state.
#[utoipa::path(get, path = "/api/v1/periods", tag = "periods", params(PeriodsQuery),
    responses((status = 200, description = "January to December", body = Data<Vec<Period>>),
              (status = 400, response = BadRequest),
              (status = 503, response = Unavailable)))]
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

/// A month's new state after a close or a reopen.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PeriodChange {
    /// `YYYY-MM`.
    #[schema(example = "2025-03")]
    period: String,
    state: PeriodState,
}

/// Closes a month: it refuses postings, approvals and reversals until reopened.
#[utoipa::path(post, path = "/api/v1/periods/{period}/close", tag = "periods",
    params(("period" = String, Path, description = "`YYYY-MM`; anything else names no period (404)", example = "2025-03")),
    responses((status = 200, description = "Closed", body = Data<PeriodChange>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn close_period(State(state): State<AppState>, Auth(claims): Auth, Path(period): Path<String>) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let p = parse_period(&period)?;
    let mut tx = state.pool.begin().await?;
    timed("close_period", store::close_period(&mut tx, claims.company_id, claims.sub, p)).await?;
    tx.commit().await?;
    Ok(Json(Data { data: PeriodChange { period, state: PeriodState::Closed } }))
}

/// Reopens a closed month.
#[utoipa::path(post, path = "/api/v1/periods/{period}/reopen", tag = "periods",
    params(("period" = String, Path, description = "`YYYY-MM`; anything else names no period (404)", example = "2025-03")),
    responses((status = 200, description = "Open", body = Data<PeriodChange>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 503, response = Unavailable)))]
async fn reopen_period(State(state): State<AppState>, Auth(claims): Auth, Path(period): Path<String>) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let p = parse_period(&period)?;
    let mut tx = state.pool.begin().await?;
    timed("reopen_period", store::reopen_period(&mut tx, claims.company_id, p)).await?;
    tx.commit().await?;
    Ok(Json(Data { data: PeriodChange { period, state: PeriodState::Open } }))
}
