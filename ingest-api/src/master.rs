//! HTTP handlers of master data: partners, departments, accounts beyond the seeded chart, users and the company's
//! settings. Requests flow in, are checked by `kerp_core::master`, stored by [`crate::store::master`] (which queues
//! the change's event) and answered in the contract's envelopes.
//!
//! Every role reads; only an admin changes master data, users and settings (403 for the others).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kerp_core::auth::{self, Claims, Role};
use kerp_core::http::{Auth, Data, JsonBody, MaybeJsonBody, Page, Pagination, Problem};
use kerp_core::master::{self, AccountInput, AccountUpdate, CompanyUpdate, DepartmentInput, PartnerInput, PartnerType, UserInput};
use kerp_core::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable};
use kerp_core::telemetry::timed;
use kerp_core::voucher::FieldError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::{bad_query, not_found, path_id, require_admin};
use crate::idempotency::{self, IdempotencyKey, Idempotent};
use crate::store::master::{self as store, Company, Department, Partner, PartnerFilter, User};
use crate::store::Account;
use crate::{AppState, Result};

/// The master-data routes, each registered together with its OpenAPI operation (`POST /api/v1/accounts` is
/// registered by [`crate::routes`] beside the path's GET).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_partners, create_partner))
        .routes(routes!(get_partner, update_partner))
        .routes(routes!(deactivate_partner))
        .routes(routes!(activate_partner))
        .routes(routes!(list_departments, create_department))
        .routes(routes!(get_department, update_department))
        .routes(routes!(get_account, update_account))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(issue_token))
        .routes(routes!(get_company, update_company))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PartnerQuery {
    /// A part of the name or the code, Korean included, at most `SEARCH_CHARS_MAX` (100) characters.
    #[param(example = "한빛")]
    q: Option<String>,
    #[param(value_type = Option<PartnerType>)]
    partner_type: Option<String>,
    is_active: Option<bool>,
    /// From 1 (0 is taken as 1).
    page: Option<u32>,
    /// `PAGE_SIZE_DEFAULT` (50) when left out; larger than `PAGE_SIZE_MAX` (500) is clamped to it.
    page_size: Option<u32>,
}

/// Lists and searches the company's partners (거래처).
#[utoipa::path(get, path = "/api/v1/partners", tag = "partners", params(PartnerQuery),
    responses((status = 200, description = "A page of partners", body = Page<Partner>), (status = 400, response = BadRequest),
              (status = 503, response = Unavailable)))]
async fn list_partners(
    State(state): State<AppState>,
    Auth(claims): Auth,
    query: Result<Query<PartnerQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let mut errors = Vec::new();
    let term = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let pattern = term.and_then(|s| master::like_pattern(s).map_err(|m| errors.push(FieldError::new("q", m))).ok());
    let partner_type = q.partner_type.as_deref().and_then(|t| {
        let parsed = PartnerType::parse(t);
        if parsed.is_none() {
            errors.push(FieldError::new("partner_type", format!("'{t}' is not a partner type (customer, supplier, both)")));
        }
        parsed
    });
    if !errors.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "),
        )
        .into());
    }
    let filter = PartnerFilter { term: term.map(str::to_owned), pattern, partner_type, is_active: q.is_active };
    let mut pagination = Pagination::clamp(q.page, q.page_size);
    let page = store::list_partners(&state.pool, &state.partners, claims.company_id, &filter, pagination.page_size, pagination.offset());
    let (rows, total) = timed("list_partners", page).await?;
    pagination.total = total;
    Ok(Json(Page { data: rows, pagination }))
}

/// Adds a partner.
#[utoipa::path(post, path = "/api/v1/partners", tag = "partners", params(IdempotencyKey), request_body = PartnerInput,
    responses((status = 201, description = "Created", body = Data<Partner>, headers(("Location" = String, description = "The partner's URL"))),
              (status = 403, response = Forbidden), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn create_partner(State(state): State<AppState>, Auth(claims): Auth, mut req: Idempotent<PartnerInput>) -> Result<Response> {
    require_admin(&claims)?;
    let valid = master::validate_partner(&req.require_body()?).map_err(Problem::invalid)?;
    let (company, topic) = (claims.company_id, state.config.voucher_topic.clone());
    idempotency::run(&state.pool, company, &req, StatusCode::CREATED, move |tx| {
        Box::pin(async move {
            let p = timed("create_partner", store::create_partner(tx, company, &topic, &valid)).await?;
            let location = format!("/api/v1/partners/{}", p.id);
            Ok((Data { data: p }, Some(location)))
        })
    })
    .await
}

/// Reads a partner.
#[utoipa::path(get, path = "/api/v1/partners/{id}", tag = "partners", params(("id" = Uuid, Path, description = "The partner's id")),
    responses((status = 200, description = "The partner", body = Data<Partner>), (status = 404, response = NotFound),
              (status = 503, response = Unavailable)))]
async fn get_partner(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let id = path_id(&id, "partner")?;
    let p = timed("get_partner", store::partner(&state.pool, claims.company_id, id)).await?.ok_or_else(|| not_found("partner"))?;
    Ok(Json(Data { data: p }))
}

/// Replaces a partner.
#[utoipa::path(put, path = "/api/v1/partners/{id}", tag = "partners", params(("id" = Uuid, Path, description = "The partner's id")), request_body = PartnerInput,
    responses((status = 200, description = "As stored", body = Data<Partner>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 503, response = Unavailable)))]
async fn update_partner(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PartnerInput>,
) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let id = path_id(&id, "partner")?;
    let valid = master::validate_partner(&input).map_err(Problem::invalid)?;
    let p = timed("update_partner", store::update_partner(&state.pool, claims.company_id, &state.config.voucher_topic, id, &valid))
        .await?
        .ok_or_else(|| not_found("partner"))?;
    Ok(Json(Data { data: p }))
}

async fn set_partner_active(state: &AppState, claims: &Claims, id: &str, active: bool) -> Result<impl IntoResponse> {
    require_admin(claims)?;
    let id = path_id(id, "partner")?;
    let p = timed("set_partner_active", store::set_partner_active(&state.pool, claims.company_id, &state.config.voucher_topic, id, active))
        .await?
        .ok_or_else(|| not_found("partner"))?;
    Ok(Json(Data { data: p }))
}

/// Switches a partner off: new lines and invoices may not name it.
#[utoipa::path(post, path = "/api/v1/partners/{id}/deactivate", tag = "partners", params(("id" = Uuid, Path, description = "The partner's id")),
    responses((status = 200, description = "Switched off", body = Data<Partner>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 503, response = Unavailable)))]
async fn deactivate_partner(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    set_partner_active(&state, &claims, &id, false).await
}

/// Switches a partner back on.
#[utoipa::path(post, path = "/api/v1/partners/{id}/activate", tag = "partners", params(("id" = Uuid, Path, description = "The partner's id")),
    responses((status = 200, description = "Switched on", body = Data<Partner>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 503, response = Unavailable)))]
async fn activate_partner(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    set_partner_active(&state, &claims, &id, true).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// From 1 (0 is taken as 1).
    page: Option<u32>,
    /// `PAGE_SIZE_DEFAULT` (50) when left out; larger than `PAGE_SIZE_MAX` (500) is clamped to it.
    page_size: Option<u32>,
}

/// Lists the company's departments by code.
#[utoipa::path(get, path = "/api/v1/departments", tag = "departments", params(PageQuery),
    responses((status = 200, description = "A page of departments", body = Page<Department>), (status = 400, response = BadRequest),
              (status = 503, response = Unavailable)))]
async fn list_departments(
    State(state): State<AppState>,
    Auth(claims): Auth,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let mut pagination = Pagination::clamp(q.page, q.page_size);
    let (rows, total) =
        timed("list_departments", store::list_departments(&state.pool, claims.company_id, pagination.page_size, pagination.offset()))
            .await?;
    pagination.total = total;
    Ok(Json(Page { data: rows, pagination }))
}

/// Adds a department.
#[utoipa::path(post, path = "/api/v1/departments", tag = "departments", params(IdempotencyKey), request_body = DepartmentInput,
    responses((status = 201, description = "Created", body = Data<Department>, headers(("Location" = String, description = "The department's URL"))),
              (status = 403, response = Forbidden), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn create_department(State(state): State<AppState>, Auth(claims): Auth, mut req: Idempotent<DepartmentInput>) -> Result<Response> {
    require_admin(&claims)?;
    let valid = master::validate_department(&req.require_body()?).map_err(Problem::invalid)?;
    let (company, topic) = (claims.company_id, state.config.voucher_topic.clone());
    idempotency::run(&state.pool, company, &req, StatusCode::CREATED, move |tx| {
        Box::pin(async move {
            let d = timed("create_department", store::create_department(tx, company, &topic, &valid)).await?;
            let location = format!("/api/v1/departments/{}", d.id);
            Ok((Data { data: d }, Some(location)))
        })
    })
    .await
}

/// Reads a department.
#[utoipa::path(get, path = "/api/v1/departments/{id}", tag = "departments", params(("id" = Uuid, Path, description = "The department's id")),
    responses((status = 200, description = "The department", body = Data<Department>), (status = 404, response = NotFound),
              (status = 503, response = Unavailable)))]
async fn get_department(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let id = path_id(&id, "department")?;
    let d = timed("get_department", store::department(&state.pool, claims.company_id, id)).await?.ok_or_else(|| not_found("department"))?;
    Ok(Json(Data { data: d }))
}

/// Replaces a department.
#[utoipa::path(put, path = "/api/v1/departments/{id}", tag = "departments", params(("id" = Uuid, Path, description = "The department's id")), request_body = DepartmentInput,
    responses((status = 200, description = "As stored", body = Data<Department>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 503, response = Unavailable)))]
async fn update_department(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<DepartmentInput>,
) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let id = path_id(&id, "department")?;
    let valid = master::validate_department(&input).map_err(Problem::invalid)?;
    let d = timed("update_department", store::update_department(&state.pool, claims.company_id, &state.config.voucher_topic, id, &valid))
        .await?
        .ok_or_else(|| not_found("department"))?;
    Ok(Json(Data { data: d }))
}

/// Adds an account to the chart.
///
/// Registered by `crate::routes` beside the path's GET, as `routes!` takes the handlers of one path together.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", params(IdempotencyKey), request_body = AccountInput,
    responses((status = 201, description = "Created", body = Data<Account>, headers(("Location" = String, description = "The account's URL"))),
              (status = 403, response = Forbidden), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
pub async fn create_account(State(state): State<AppState>, Auth(claims): Auth, mut req: Idempotent<AccountInput>) -> Result<Response> {
    require_admin(&claims)?;
    let valid = master::validate_account(&req.require_body()?).map_err(Problem::invalid)?;
    let (company, topic) = (claims.company_id, state.config.voucher_topic.clone());
    idempotency::run(&state.pool, company, &req, StatusCode::CREATED, move |tx| {
        Box::pin(async move {
            let a = timed("create_account", store::create_account(tx, company, &topic, &valid)).await?;
            let location = format!("/api/v1/accounts/{}", a.id);
            Ok((Data { data: a }, Some(location)))
        })
    })
    .await
}

/// Reads an account.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts", params(("id" = Uuid, Path, description = "The account's id")),
    responses((status = 200, description = "The account", body = Data<Account>), (status = 404, response = NotFound),
              (status = 503, response = Unavailable)))]
async fn get_account(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let id = path_id(&id, "account")?;
    let a = timed("get_account", store::account(&state.pool, claims.company_id, id)).await?.ok_or_else(|| not_found("account"))?;
    Ok(Json(Data { data: a }))
}

/// Renames an account or switches it off or on; fields left out stay as they are.
#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts", params(("id" = Uuid, Path, description = "The account's id")), request_body = AccountUpdate,
    responses((status = 200, description = "As stored", body = Data<Account>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 503, response = Unavailable)))]
async fn update_account(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AccountUpdate>,
) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let id = path_id(&id, "account")?;
    let valid = master::validate_account_update(&input).map_err(Problem::invalid)?;
    let a = timed("update_account", store::update_account(&state.pool, claims.company_id, &state.config.voucher_topic, id, &valid))
        .await?
        .ok_or_else(|| not_found("account"))?;
    Ok(Json(Data { data: a }))
}

/// Lists the company's users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, description = "A page of users", body = Page<User>), (status = 400, response = BadRequest),
              (status = 503, response = Unavailable)))]
async fn list_users(
    State(state): State<AppState>,
    Auth(claims): Auth,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let mut pagination = Pagination::clamp(q.page, q.page_size);
    let (rows, total) =
        timed("list_users", store::list_users(&state.pool, claims.company_id, pagination.page_size, pagination.offset())).await?;
    pagination.total = total;
    Ok(Json(Page { data: rows, pagination }))
}

/// Adds a user; `POST /api/v1/users/{id}/token` then issues their token.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", params(IdempotencyKey), request_body = UserInput,
    responses((status = 201, description = "Created", body = Data<User>, headers(("Location" = String, description = "The user's URL"))),
              (status = 403, response = Forbidden), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn create_user(State(state): State<AppState>, Auth(claims): Auth, mut req: Idempotent<UserInput>) -> Result<Response> {
    require_admin(&claims)?;
    let valid = master::validate_user(&req.require_body()?).map_err(Problem::invalid)?;
    let (company, topic) = (claims.company_id, state.config.voucher_topic.clone());
    idempotency::run(&state.pool, company, &req, StatusCode::CREATED, move |tx| {
        Box::pin(async move {
            let u = timed("create_user", store::create_user(tx, company, &topic, &valid)).await?;
            let location = format!("/api/v1/users/{}", u.id);
            Ok((Data { data: u }, Some(location)))
        })
    })
    .await
}

/// Reads a user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = Data<User>), (status = 404, response = NotFound),
              (status = 503, response = Unavailable)))]
async fn get_user(State(state): State<AppState>, Auth(claims): Auth, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let id = path_id(&id, "user")?;
    let u = timed("get_user", store::user(&state.pool, claims.company_id, id)).await?.ok_or_else(|| not_found("user"))?;
    Ok(Json(Data { data: u }))
}

/// Replaces a user; an admin cannot change their own role or switch themselves off (409).
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "The user's id")), request_body = UserInput,
    responses((status = 200, description = "As stored", body = Data<User>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 503, response = Unavailable)))]
async fn update_user(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<UserInput>,
) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let id = path_id(&id, "user")?;
    let valid = master::validate_user(&input).map_err(Problem::invalid)?;
    if id == claims.sub && (valid.role != claims.role || !valid.is_active) {
        // An admin who demotes or switches off themselves could leave the company with no one to manage it.
        return Err(Problem::new(StatusCode::CONFLICT, "an admin cannot change their own role or switch themselves off").into());
    }
    let u = timed("update_user", store::update_user(&state.pool, claims.company_id, &state.config.voucher_topic, id, &valid))
        .await?
        .ok_or_else(|| not_found("user"))?;
    Ok(Json(Data { data: u }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct TokenRequest {
    /// Lifetime of the token, in seconds; at most `auth::TOKEN_TTL_SECONDS_MAX`, which is also the default.
    #[schema(example = 3600)]
    ttl_seconds: Option<i64>,
}

/// A bearer token issued for a user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct IssuedToken {
    token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds the token lives.
    expires_in: i64,
    role: Role,
}

/// Issues a bearer token for an active user of the company, with that user's role. Only an admin may: this is how
/// the people and integrations the admin created get their access.
#[utoipa::path(post, path = "/api/v1/users/{id}/token", tag = "users", params(("id" = Uuid, Path, description = "The user's id")),
    request_body(content = Option<TokenRequest>, description = "May be left out (a token for `TOKEN_TTL_SECONDS_MAX`, a day)"),
    responses((status = 200, description = "The token", body = Data<IssuedToken>), (status = 403, response = Forbidden),
              (status = 404, response = NotFound), (status = 409, response = Conflict),
              (status = 503, response = Unavailable)))]
async fn issue_token(
    State(state): State<AppState>,
    Auth(claims): Auth,
    Path(id): Path<String>,
    MaybeJsonBody(body): MaybeJsonBody<TokenRequest>,
) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let id = path_id(&id, "user")?;
    let ttl = body.and_then(|b| b.ttl_seconds).unwrap_or(auth::TOKEN_TTL_SECONDS_MAX);
    if !(1..=auth::TOKEN_TTL_SECONDS_MAX).contains(&ttl) {
        return Err(Problem::invalid(vec![FieldError::new(
            "ttl_seconds",
            format!("must be between 1 and {}", auth::TOKEN_TTL_SECONDS_MAX),
        )])
        .into());
    }
    let u = timed("get_user", store::user(&state.pool, claims.company_id, id)).await?.ok_or_else(|| not_found("user"))?;
    if !u.is_active {
        return Err(Problem::new(StatusCode::CONFLICT, "the user is switched off").into());
    }
    let token = crate::company::token(&state.config.jwt_secret, u.id, claims.company_id, u.role, ttl)?;
    Ok(Json(Data { data: IssuedToken { token, token_type: "Bearer", expires_in: ttl, role: u.role } }))
}

/// The token's company and its settings.
#[utoipa::path(get, path = "/api/v1/company", tag = "company",
    responses((status = 200, description = "The company", body = Data<Company>),
              (status = 401, response = Unauthorized),
              (status = 503, response = Unavailable)))]
async fn get_company(State(state): State<AppState>, Auth(claims): Auth) -> Result<impl IntoResponse> {
    let c = timed("get_company", store::company(&state.pool, claims.company_id)).await?.ok_or_else(Problem::unauthorized)?;
    Ok(Json(Data { data: c }))
}

/// Changes the company's name, business number or fiscal start month; fields left out stay as they are.
#[utoipa::path(patch, path = "/api/v1/company", tag = "company", request_body = CompanyUpdate,
    responses((status = 200, description = "As stored", body = Data<Company>), (status = 403, response = Forbidden),
              (status = 503, response = Unavailable)))]
async fn update_company(
    State(state): State<AppState>,
    Auth(claims): Auth,
    JsonBody(input): JsonBody<CompanyUpdate>,
) -> Result<impl IntoResponse> {
    require_admin(&claims)?;
    let valid = master::validate_company_update(&input).map_err(Problem::invalid)?;
    let c = timed("update_company", store::update_company(&state.pool, claims.company_id, &state.config.voucher_topic, &valid))
        .await?
        .ok_or_else(Problem::unauthorized)?;
    Ok(Json(Data { data: c }))
}
