//! HTTP handlers of query-api and the ClickHouse queries behind them. Every query is filtered by the token's company.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Datelike, NaiveDate};
use clickhouse::Row;
use kerp_core::clickhouse::uuid_literal;
use kerp_core::http::{Auth, Data, Pagination, Problem};
use kerp_core::telemetry::timed;
use kerp_core::voucher::{parse_date, FieldError, VOUCHER_DATE_MAX, VOUCHER_DATE_MIN};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::report::{self, AccountInfo, AccountSums, LedgerLine};
use crate::{AppState, Result};

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
    match state.ch.query("SELECT 1").fetch_one::<u8>().await {
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

// Column aliases never reuse a column's own name (`sum(debit) AS debit_sum`, not `AS debit`): in ClickHouse an alias
// can shadow the column elsewhere in the query, and the old and new analyzers resolve such clashes differently.
// Rows are read positionally (validation is off for 18.16), so struct field names need not match the aliases.

#[derive(Debug, Deserialize)]
struct TrialBalanceQuery {
    year: Option<i32>,
    month: Option<u32>,
}

// Balances are read `FINAL`: `period_balances` and `ledger_lines` hold one row per event (and line), and a second copy
// of an event, written by a redelivery or by two workers, is only collapsed with the first at read time. Sums are
// taken in Decimal128 and sent as text, because an Int64 sum wraps silently once an account passes 9.2 * 10^18 won.

/// `sum(col)` in Decimal128, as text.
fn wide_sum(col: &str) -> String {
    format!("toString(sum(toDecimal128({col}, 0)))")
}

/// `sumIf(col, cond)` in Decimal128, as text.
fn wide_sum_if(col: &str, cond: &str) -> String {
    format!("toString(sumIf(toDecimal128({col}, 0), {cond}))")
}

fn wide(text: &str) -> Result<i128> {
    text.parse().map_err(|e| crate::Error::Other(format!("ClickHouse sum {text:?} is not an integer: {e}")))
}

#[derive(Debug, Row, Deserialize)]
struct SumsRow {
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    opening_debit: String,
    opening_credit: String,
    period_debit: String,
    period_credit: String,
}

#[derive(Debug, Row, Deserialize)]
struct InfoRow {
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    code: String,
    name: String,
    account_type: String,
}

async fn account_infos(state: &AppState, company: Uuid, only: Option<Uuid>, code: Option<&str>) -> Result<Vec<AccountInfo>> {
    let mut sql = format!(
        "SELECT account_id, argMax(code, version) AS account_code, argMax(name, version) AS account_name,
                argMax(account_type, version) AS account_class
         FROM accounts WHERE company_id = {}",
        uuid_literal(&company)
    );
    if let Some(id) = only {
        sql.push_str(&format!(" AND account_id = {}", uuid_literal(&id)));
    }
    sql.push_str(" GROUP BY account_id");
    let mut q = state.ch.query(&format!("SELECT * FROM ({sql}) WHERE 1 = 1 {}", if code.is_some() { "AND account_code = ?" } else { "" }));
    if let Some(code) = code {
        q = q.bind(code);
    }
    let rows: Vec<InfoRow> = timed("account_infos", q.fetch_all()).await?;
    Ok(rows
        .into_iter()
        .map(|r| AccountInfo { account_id: r.account_id, code: r.code, name: r.name, account_type: r.account_type })
        .collect())
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
    let before = format!("period < toDate('{start}')");
    let within = format!("period = toDate('{start}')");
    let sql = format!(
        "SELECT account_id, {} AS opening_debit_sum, {} AS opening_credit_sum, {} AS period_debit_sum, {} AS period_credit_sum
         FROM period_balances FINAL
         WHERE company_id = {} AND period <= toDate('{start}')
         GROUP BY account_id",
        wide_sum_if("debit", &before),
        wide_sum_if("credit", &before),
        wide_sum_if("debit", &within),
        wide_sum_if("credit", &within),
        uuid_literal(&company),
    );
    let rows: Vec<SumsRow> = timed("trial_balance", state.ch.query(&sql).fetch_all()).await?;
    let sums = rows
        .into_iter()
        .map(|r| {
            Ok(AccountSums {
                account_id: r.account_id,
                opening_debit: wide(&r.opening_debit)?,
                opening_credit: wide(&r.opening_credit)?,
                period_debit: wide(&r.period_debit)?,
                period_credit: wide(&r.period_credit)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let infos = account_infos(&state, company, None, None).await?;
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

#[derive(Debug, Row, Deserialize)]
struct TwoSums {
    debit: String,
    credit: String,
}

impl TwoSums {
    fn signed(&self, debit_normal: bool) -> Result<i128> {
        Ok(report::signed(debit_normal, wide(&self.debit)?, wide(&self.credit)?))
    }
}

#[derive(Debug, Row, Deserialize)]
struct RangeTotals {
    lines: u64,
    debit: String,
    credit: String,
}

#[derive(Debug, Row, Deserialize)]
struct LineRow {
    /// Aliased apart from `voucher_date`: in ClickHouse an alias shadows the column in WHERE and ORDER BY.
    voucher_day: String,
    voucher_number: String,
    line_no: u32,
    #[serde(with = "clickhouse::serde::uuid")]
    voucher_id: Uuid,
    voucher_type: String,
    #[serde(with = "clickhouse::serde::uuid")]
    partner_id: Uuid,
    description: String,
    debit: i64,
    credit: i64,
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
    let info = account_infos(&state, company, account_id, account_code).await?.into_iter().next().ok_or_else(not_found)?;
    let debit_normal = report::debit_normal(&info.account_type);

    let mut pagination = Pagination::clamp_with(q.page, q.page_size, LEDGER_PAGE_SIZE_DEFAULT, LEDGER_PAGE_SIZE_MAX);
    let key = format!("company_id = {} AND account_id = {}", uuid_literal(&company), uuid_literal(&info.account_id));
    let month_start = NaiveDate::from_ymd_opt(from.year(), from.month(), 1).unwrap_or(from);

    // Opening: whole months from the balances table, then the days of the first month before `from` from the lines.
    let before_months: TwoSums = timed(
        "ledger_opening_months",
        state
            .ch
            .query(&format!(
                "SELECT {} AS debit_sum, {} AS credit_sum FROM period_balances FINAL WHERE {key} AND period < toDate('{month_start}')",
                wide_sum("debit"),
                wide_sum("credit")
            ))
            .fetch_one(),
    )
    .await?;
    let before_days: TwoSums = timed(
        "ledger_opening_days",
        state
            .ch
            .query(&format!(
                "SELECT {} AS debit_sum, {} AS credit_sum FROM ledger_lines FINAL
                 WHERE {key} AND voucher_date >= toDate('{month_start}') AND voucher_date < toDate('{from}')",
                wide_sum("debit"),
                wide_sum("credit")
            ))
            .fetch_one(),
    )
    .await?;
    let opening = before_months.signed(debit_normal)? + before_days.signed(debit_normal)?;

    let range_sql = format!("{key} AND voucher_date >= toDate('{from}') AND voucher_date <= toDate('{to}')");
    let totals: RangeTotals = timed(
        "ledger_totals",
        state
            .ch
            .query(&format!(
                "SELECT count() AS line_count, {} AS debit_sum, {} AS credit_sum FROM ledger_lines FINAL WHERE {range_sql}",
                wide_sum("debit"),
                wide_sum("credit")
            ))
            .fetch_one(),
    )
    .await?;
    pagination.total = totals.lines;
    let order = "ORDER BY voucher_date, voucher_number, line_no";
    let offset = pagination.offset();
    let carried = if offset == 0 {
        0
    } else {
        let before: TwoSums = timed(
            "ledger_page_carry",
            state
                .ch
                .query(&format!(
                    "SELECT {} AS debit_sum, {} AS credit_sum FROM
                     (SELECT debit, credit FROM ledger_lines FINAL WHERE {range_sql} {order} LIMIT {offset})",
                    wide_sum("debit"),
                    wide_sum("credit")
                ))
                .fetch_one(),
        )
        .await?;
        before.signed(debit_normal)?
    };
    let rows: Vec<LineRow> = timed(
        "ledger_entries",
        state
            .ch
            .query(&format!(
                "SELECT toString(voucher_date) AS voucher_day, voucher_number, line_no, voucher_id, voucher_type, partner_id,
                        description, debit, credit
                 FROM ledger_lines FINAL WHERE {range_sql} {order} LIMIT {offset}, {}",
                pagination.page_size
            ))
            .fetch_all(),
    )
    .await?;
    let lines = rows
        .into_iter()
        .map(|r| LedgerLine {
            voucher_date: r.voucher_day,
            voucher_number: r.voucher_number,
            line_no: r.line_no,
            voucher_id: r.voucher_id,
            voucher_type: r.voucher_type,
            partner_id: (!r.partner_id.is_nil()).then_some(r.partner_id),
            description: r.description,
            debit: r.debit,
            credit: r.credit,
        })
        .collect();
    let entries = report::running(debit_normal, opening + carried, lines);
    let (period_debit, period_credit) = (wide(&totals.debit)?, wide(&totals.credit)?);
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
