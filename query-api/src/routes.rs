//! HTTP handlers of query-api: request parameters in, validated and scoped to the token's company, [`crate::store`]
//! reads out, shaped by [`crate::report`] into the contract's JSON.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Datelike, NaiveDate};
use kerp_core::http::{Auth, Data, Pagination, Problem};
use kerp_core::voucher::{parse_date, FieldError, VOUCHER_DATE_MAX, VOUCHER_DATE_MIN};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{report, store, AppState, Result};

/// Largest page of ledger entries; a bigger `page_size` is clamped to it.
pub const LEDGER_PAGE_SIZE_MAX: u32 = 1000;
/// Ledger page size when the client does not ask for one.
pub const LEDGER_PAGE_SIZE_DEFAULT: u32 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/reports/trial-balance", get(trial_balance))
        .route("/api/v1/reports/account-ledger", get(account_ledger))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match store::ping(&state.ch).await {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: ClickHouse unreachable");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "ClickHouse unreachable").into_response()
        }
    }
}

fn bad_query(e: &QueryRejection) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, e.body_text())
}

fn first_of_month(year: i32, month: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, 1).filter(|d| *d >= VOUCHER_DATE_MIN && *d <= VOUCHER_DATE_MAX)
}

#[derive(Debug, Deserialize)]
struct TrialBalanceQuery {
    year: Option<i32>,
    month: Option<u32>,
}

async fn trial_balance(
    State(state): State<AppState>,
    Auth(claims): Auth,
    q: Result<Query<TrialBalanceQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = q.map_err(|e| bad_query(&e))?;
    let mut errors = Vec::new();
    let year = q.year.ok_or(()).map_err(|()| errors.push(FieldError::new("year", "required"))).ok();
    let month = q.month.ok_or(()).map_err(|()| errors.push(FieldError::new("month", "required"))).ok();
    if let (Some(y), Some(m)) = (year, month) {
        if !(1..=12).contains(&m) {
            errors.push(FieldError::new("month", "must be 1 to 12"));
        } else if first_of_month(y, m).is_none() {
            errors.push(FieldError::new("year", format!("must be between {} and {}", VOUCHER_DATE_MIN.year(), VOUCHER_DATE_MAX.year())));
        }
    }
    let (Some(year), Some(month), true) = (year, month, errors.is_empty()) else {
        return Err(Problem::invalid(errors).into());
    };
    let start = first_of_month(year, month).unwrap_or(VOUCHER_DATE_MIN);
    let company = claims.company_id;
    let sums = store::month_sums(&state.ch, company, start).await?;
    let infos = store::account_infos(&state.ch, company, None, None).await?;
    Ok(Json(Data { data: report::trial_balance(year, month, &sums, &infos) }))
}

#[derive(Debug, Deserialize)]
struct LedgerQuery {
    account_id: Option<String>,
    account_code: Option<String>,
    year: Option<i32>,
    from_date: Option<String>,
    to_date: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
}

#[derive(Debug, Serialize)]
struct LedgerAccount {
    account_id: Uuid,
    account_code: String,
    account_name: String,
    account_type: String,
    /// `debit` when the balance is debit minus credit (assets, expenses), `credit` otherwise.
    normal_side: &'static str,
}

#[derive(Debug, Serialize)]
struct Ledger {
    account: LedgerAccount,
    from_date: NaiveDate,
    to_date: NaiveDate,
    opening_balance: i128,
    entries: Vec<report::LedgerEntry>,
    period_debit: i128,
    period_credit: i128,
    closing_balance: i128,
}

#[derive(Debug, Serialize)]
struct LedgerPage {
    data: Ledger,
    pagination: Pagination,
}

fn ledger_range(q: &LedgerQuery, errors: &mut Vec<FieldError>) -> Option<(NaiveDate, NaiveDate)> {
    let mut date =
        |name: &str, v: &Option<String>| v.as_deref().and_then(|s| parse_date(s).map_err(|m| errors.push(FieldError::new(name, m))).ok());
    let from = date("from_date", &q.from_date);
    let to = date("to_date", &q.to_date);
    let range = match (q.year, from, to, q.from_date.is_some() || q.to_date.is_some()) {
        (Some(y), None, None, false) => match (first_of_month(y, 1), NaiveDate::from_ymd_opt(y, 12, 31)) {
            (Some(f), Some(t)) => Some((f, t)),
            _ => {
                errors
                    .push(FieldError::new("year", format!("must be between {} and {}", VOUCHER_DATE_MIN.year(), VOUCHER_DATE_MAX.year())));
                None
            }
        },
        (None, Some(f), Some(t), _) => Some((f, t)),
        (None, _, _, true) => {
            if q.from_date.is_none() || q.to_date.is_none() {
                errors.push(FieldError::new("from_date", "from_date and to_date go together"));
            }
            None
        }
        (Some(_), _, _, true) => {
            errors.push(FieldError::new("year", "give either year or from_date/to_date"));
            None
        }
        _ => {
            errors.push(FieldError::new("year", "year or from_date/to_date is required"));
            None
        }
    };
    if let Some((f, t)) = range {
        if f > t {
            errors.push(FieldError::new("from_date", "must not be after to_date"));
            return None;
        }
    }
    range
}

async fn account_ledger(
    State(state): State<AppState>,
    Auth(claims): Auth,
    q: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = q.map_err(|e| bad_query(&e))?;
    let mut errors = Vec::new();
    let not_found = || Problem::new(StatusCode::NOT_FOUND, "account not found");
    let account_id = match q.account_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(Uuid::parse_str(s).map_err(|_| not_found())?),
        None => None,
    };
    let account_code = q.account_code.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if account_id.is_none() && account_code.is_none() {
        errors.push(FieldError::new("account_id", "account_id or account_code is required"));
    }
    let range = ledger_range(&q, &mut errors);
    let (Some((from, to)), true) = (range, errors.is_empty()) else {
        return Err(Problem::invalid(errors).into());
    };
    let company = claims.company_id;
    let info = store::account_infos(&state.ch, company, account_id, account_code).await?.into_iter().next().ok_or_else(not_found)?;
    let debit_normal = report::debit_normal(&info.account_type);

    let mut pagination = Pagination::clamp_with(q.page, q.page_size, LEDGER_PAGE_SIZE_DEFAULT, LEDGER_PAGE_SIZE_MAX);
    let (opening_debit, opening_credit) = store::ledger_opening(&state.ch, company, info.account_id, from).await?;
    let opening = report::signed(debit_normal, opening_debit, opening_credit);
    let totals = store::ledger_totals(&state.ch, company, info.account_id, from, to).await?;
    pagination.total = totals.lines;
    let offset = pagination.offset();
    let (carried_debit, carried_credit) = store::ledger_carry(&state.ch, company, info.account_id, from, to, offset).await?;
    let carried = report::signed(debit_normal, carried_debit, carried_credit);
    let lines = store::ledger_lines(&state.ch, company, info.account_id, from, to, offset, pagination.page_size).await?;
    let entries = report::running(debit_normal, opening + carried, lines);
    let (period_debit, period_credit) = (totals.debit, totals.credit);
    let closing = opening + report::signed(debit_normal, period_debit, period_credit);
    Ok(Json(LedgerPage {
        data: Ledger {
            account: LedgerAccount {
                account_id: info.account_id,
                account_code: info.code,
                account_name: info.name,
                account_type: info.account_type,
                normal_side: if debit_normal { "debit" } else { "credit" },
            },
            from_date: from,
            to_date: to,
            opening_balance: opening,
            entries,
            period_debit,
            period_credit,
            closing_balance: closing,
        },
        pagination,
    }))
}
