//! HTTP handlers of query-api: request parameters in, validated and scoped to the token's company, [`crate::store`]
//! reads out, shaped by [`crate::report`] into the contract's JSON.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use axum::Json;
use chrono::{Datelike, NaiveDate};
use kerp_core::http::{Auth, Data, Health, Page, Pagination, Problem};
use kerp_core::openapi::{BadRequest, NotFound, Unavailable, Unprocessable};
use kerp_core::voucher::{parse_date, FieldError, VOUCHER_DATE_MAX, VOUCHER_DATE_MIN};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::answers::LedgerScope;
use crate::{report, store, AppState, Result};

/// Largest page of the partner list (partner ledger without `partner_id`); a bigger `page_size` is clamped to it.
pub const PARTNER_PAGE_SIZE_MAX: u32 = 500;
/// Partner-list page size when the client does not ask for one.
pub const PARTNER_PAGE_SIZE_DEFAULT: u32 = 50;
/// Largest page of one partner's ledger entries; a bigger `page_size` is clamped to it.
pub const PARTNER_LEDGER_PAGE_SIZE_MAX: u32 = 1000;
/// Partner-ledger page size when the client does not ask for one.
pub const PARTNER_LEDGER_PAGE_SIZE_DEFAULT: u32 = 200;

/// Largest page of ledger entries; a bigger `page_size` is clamped to it.
pub const LEDGER_PAGE_SIZE_MAX: u32 = 1000;
/// Ledger page size when the client does not ask for one.
pub const LEDGER_PAGE_SIZE_DEFAULT: u32 = 200;

/// The report routes and `/health`, each registered together with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(trial_balance))
        .routes(routes!(account_ledger))
        .routes(routes!(income_statement))
        .routes(routes!(balance_sheet))
        .routes(routes!(partner_ledger))
}

/// Answers 200 when ClickHouse answers, 503 otherwise. Public as `/query/health` through nginx.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "ClickHouse answers", body = Health), (status = 503, response = Unavailable)))]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match store::ping(&state.ch).await {
        Ok(_) => (StatusCode::OK, Json(Health::OK)).into_response(),
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

/// What is wrong with a request's parameters. A parameter that cannot be read at all (not a number, not a
/// `YYYY-MM-DD` date, not a UUID, not a four-digit code) is *malformed* and gets 400; one that reads but is not
/// acceptable (a missing required one, month 13, a range that ends before it starts) is *invalid* and gets 422, as
/// the trial balance and the ledger have always answered. Both list every offending field.
#[derive(Debug, Default)]
struct Checks {
    malformed: Vec<FieldError>,
    invalid: Vec<FieldError>,
}

impl Checks {
    fn malformed(&mut self, field: &str, message: impl Into<String>) {
        self.malformed.push(FieldError::new(field, message));
    }

    fn invalid(&mut self, field: &str, message: impl Into<String>) {
        self.invalid.push(FieldError::new(field, message));
    }

    /// The problem to answer with, if any.
    fn finish(self) -> Result<(), Problem> {
        if !self.malformed.is_empty() {
            let mut errors = self.malformed;
            errors.extend(self.invalid);
            let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
            return Err(Problem { errors, ..Problem::new(StatusCode::BAD_REQUEST, detail) });
        }
        if !self.invalid.is_empty() {
            return Err(Problem::invalid(self.invalid));
        }
        Ok(())
    }

    /// The year and month of a monthly report, both required.
    fn year_month(&mut self, year: Option<i32>, month: Option<u32>) -> Option<(i32, u32)> {
        if year.is_none() {
            self.invalid("year", "required");
        }
        if month.is_none() {
            self.invalid("month", "required");
        }
        let (y, m) = (year?, month?);
        if !(1..=12).contains(&m) {
            self.invalid("month", "must be 1 to 12");
            return None;
        }
        if first_of_month(y, m).is_none() {
            self.invalid("year", format!("must be between {} and {}", VOUCHER_DATE_MIN.year(), VOUCHER_DATE_MAX.year()));
            return None;
        }
        Some((y, m))
    }

    /// An optional `YYYY-MM-DD` date inside the supported range.
    fn date(&mut self, field: &str, value: Option<&str>) -> Option<NaiveDate> {
        let s = present(value)?;
        let Some(d) = (s.len() == 10).then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).flatten() else {
            self.malformed(field, format!("'{s}' is not a date (YYYY-MM-DD)"));
            return None;
        };
        if d < VOUCHER_DATE_MIN || d > VOUCHER_DATE_MAX {
            self.invalid(field, format!("must be between {VOUCHER_DATE_MIN} and {VOUCHER_DATE_MAX}"));
            return None;
        }
        Some(d)
    }

    /// An optional UUID.
    fn uuid(&mut self, field: &str, value: Option<&str>) -> Option<Uuid> {
        let s = present(value)?;
        Uuid::parse_str(s).map_err(|_| self.malformed(field, format!("'{s}' is not a UUID"))).ok()
    }

    /// An optional four-digit account code.
    fn code(&mut self, field: &str, value: Option<&str>) -> Option<String> {
        let s = present(value)?;
        if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) {
            Some(s.to_owned())
        } else {
            self.malformed(field, format!("'{s}' is not a four-digit account code"));
            None
        }
    }
}

/// A parameter's value, trimmed, with an empty value taken as absent (as clients send `?department_id=`).
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|s| !s.is_empty())
}

/// Hours Korea is ahead of UTC (no daylight saving), for "today" when a report's date is not given.
pub const SEOUL_UTC_OFFSET_HOURS: i32 = 9;

/// Today in Korea, clamped into the supported date range.
pub(crate) fn today() -> NaiveDate {
    let now = chrono::Utc::now().naive_utc() + chrono::Duration::hours(i64::from(SEOUL_UTC_OFFSET_HOURS));
    now.date().clamp(VOUCHER_DATE_MIN, VOUCHER_DATE_MAX)
}

/// A checked year and month with the month's first and last day. `period` is `None` only when [`Checks::year_month`]
/// recorded an error, which [`Checks::finish`] has answered before this is called.
fn month_bounds(period: Option<(i32, u32)>) -> Result<(i32, u32, NaiveDate, NaiveDate)> {
    let bounds = period.and_then(|(y, m)| Some((y, m, first_of_month(y, m)?, report::month_end(y, m)?)));
    bounds.ok_or_else(|| crate::Error::Other("a month passed the checks without bounds".into()))
}

/// The month a company's fiscal year starts in.
async fn fiscal_start_month(state: &AppState, company: Uuid) -> Result<u32> {
    Ok(report::fiscal_start_month(store::fiscal_start_month(&state.ch, company).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TrialBalanceQuery {
    /// Required, 1970 to 2099.
    #[param(required = true, example = 2025)]
    year: Option<i32>,
    /// Required, 1 to 12.
    #[param(required = true, example = 2)]
    month: Option<u32>,
    /// The first four-digit account code listed.
    #[param(pattern = "^[0-9]{4}$", example = "1000")]
    account_code_from: Option<String>,
    /// The last four-digit account code listed.
    #[param(pattern = "^[0-9]{4}$", example = "1999")]
    account_code_to: Option<String>,
    /// Only the lines of this department (summed from the ledger lines).
    #[param(format = Uuid)]
    department_id: Option<String>,
}

/// `GET /api/v1/reports/trial-balance?year=&month=[&account_code_from=&account_code_to=][&department_id=]`: the
/// fiscal-year trial balance of a month (see [`report::fiscal_trial_balance`]). With a department, its lines are summed
/// from `ledger_lines`; otherwise the cheaper `period_balances` serve.
#[utoipa::path(get, path = "/api/v1/reports/trial-balance", tag = "reports", summary = "The trial balance (시산표) of a month", params(TrialBalanceQuery),
    responses((status = 200, description = "The trial balance (시산표) of the month", body = Data<report::TrialBalance>),
              (status = 400, response = BadRequest), (status = 422, response = Unprocessable)))]
async fn trial_balance(
    State(state): State<AppState>,
    Auth(claims): Auth,
    q: Result<Query<TrialBalanceQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = q.map_err(|e| bad_query(&e))?;
    let mut checks = Checks::default();
    let period = checks.year_month(q.year, q.month);
    let codes = report::CodeRange {
        from: checks.code("account_code_from", q.account_code_from.as_deref()),
        to: checks.code("account_code_to", q.account_code_to.as_deref()),
    };
    if let (Some(f), Some(t)) = (&codes.from, &codes.to) {
        if f > t {
            checks.invalid("account_code_from", "must not be after account_code_to");
        }
    }
    let department = checks.uuid("department_id", q.department_id.as_deref());
    checks.finish()?;
    let (year, month, start, end) = month_bounds(period)?;
    let company = claims.company_id;
    let rows = async {
        match department {
            Some(d) => {
                let fiscal_start = report::fiscal_year_start(start, fiscal_start_month(&state, company).await?);
                store::bucket_sums(&state.ch, company, Some(d), None, &[fiscal_start, start], end).await
            }
            None => {
                let balances = state.balances.balances(&state.ch, company).await?;
                let fiscal_start = report::fiscal_year_start(start, report::fiscal_start_month(balances.fiscal_start_month));
                Ok(balances.buckets(None, &[fiscal_start, start], end))
            }
        }
    };
    let (rows, infos) = state.balances.with_accounts(&state.ch, company, rows, |rows| report::account_ids(rows)).await?;
    Ok(Json(Data { data: report::fiscal_trial_balance(year, month, &rows, &infos, &codes) }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LedgerQuery {
    /// The account, by id; or give `account_code`.
    #[param(format = Uuid)]
    account_id: Option<String>,
    /// The account, by code; or give `account_id`.
    #[param(example = "1102")]
    account_code: Option<String>,
    /// A whole calendar year; or give `from_date` and `to_date`.
    #[param(example = 2025)]
    year: Option<i32>,
    /// `YYYY-MM-DD`, with `to_date`.
    #[param(format = Date)]
    from_date: Option<String>,
    /// `YYYY-MM-DD`, with `from_date`.
    #[param(format = Date)]
    to_date: Option<String>,
    /// From 1 (0 is taken as 1). Not together with `cursor`.
    page: Option<u32>,
    /// `LEDGER_PAGE_SIZE_DEFAULT` (200) when left out; larger than `LEDGER_PAGE_SIZE_MAX` (1000) is clamped to it.
    page_size: Option<u32>,
    /// The `pagination.next_cursor` of the previous page, with the same account and range: the next page, started from
    /// the balance the previous page ended on. Opaque.
    cursor: Option<String>,
}

/// Reads a [`report::EarlyPage`]: lines of `account` in `from..=end`, after `after` when a cursor gives it.
async fn early_page(
    ch: &clickhouse::Client,
    company: Uuid,
    account: Uuid,
    (from, end): (NaiveDate, NaiveDate),
    after: Option<&store::LedgerKey>,
    limit: u32,
) -> Result<report::EarlyPage> {
    let lines = match after {
        Some(key) => store::ledger_lines_after(ch, company, account, (from, end), key, limit).await?,
        None => store::ledger_lines(ch, company, account, from, end, 0, limit).await?,
    };
    Ok(report::EarlyPage { account, end, lines })
}

/// What a ledger cursor carries: the account and range it belongs to, the last line sent, the running balance after
/// it and how many lines came before the next page.
#[derive(Debug, Serialize, Deserialize)]
struct LedgerCursor {
    account_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
    after: store::LedgerKey,
    balance: i128,
    position: u64,
}

/// The ledger's `pagination`: `page`, `page_size` and `total` (lines in the range), and the cursor of the next page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LedgerPagination {
    #[serde(flatten)]
    page: Pagination,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LedgerAccount {
    account_id: Uuid,
    account_code: String,
    account_name: String,
    account_type: String,
    /// `debit` when the balance is debit minus credit (assets, expenses), `credit` otherwise.
    normal_side: &'static str,
}

/// An account's ledger (계정별원장) over a range of days.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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

/// A page of an account's ledger: the entries of the page, with the balances of the whole range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LedgerPage {
    data: Ledger,
    pagination: LedgerPagination,
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

/// An account's entries by date, voucher number and line, each with the running balance on the account's normal side;
/// pages carry the running balance over.
///
/// Page by `page`/`page_size`, or by cursor: each page's `pagination.next_cursor`, sent back as `cursor` with the same
/// account and range, gives the next page with its running balance carried in the cursor. Either way a page costs the
/// same at any depth: the range's monthly totals place the page in its months, which are all its lines are read from;
/// an offset page sums at most one month of earlier lines for its carried balance, and a cursor page none.
///
/// A page asked for again while its account's books are unchanged (no line posted to the account dated up to the
/// range's end, no change to the chart of accounts) is answered from memory, with an `Age` header; it may trail the
/// other reports by about 100 ms. `Cache-Control: no-cache` reads it afresh.
#[utoipa::path(get, path = "/api/v1/reports/account-ledger", tag = "reports", params(LedgerQuery),
    responses((status = 200, description = "A page of the ledger", body = LedgerPage), (status = 400, response = BadRequest),
              (status = 404, response = NotFound), (status = 422, response = Unprocessable)))]
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
    let cursor = match q.cursor.as_deref() {
        Some(_) if q.page.is_some() => {
            errors.push(FieldError::new("cursor", "give either page or cursor"));
            None
        }
        Some(text) => kerp_core::cursor::decode::<LedgerCursor>(text).map_err(|m| errors.push(FieldError::new("cursor", m))).ok(),
        None => None,
    };
    let (Some((from, to)), true) = (range, errors.is_empty()) else {
        return Err(Problem::invalid(errors).into());
    };
    if let Some(c) = &cursor {
        if (c.from, c.to) != (from, to) || account_id.is_some_and(|id| id != c.account_id) {
            return Err(Problem::invalid(vec![FieldError::new("cursor", "was made for another account or range")]).into());
        }
    }
    let company = claims.company_id;
    let ch = &state.ch;
    let mut pagination = Pagination::clamp_with(q.page, q.page_size, LEDGER_PAGE_SIZE_DEFAULT, LEDGER_PAGE_SIZE_MAX);
    let limit = pagination.page_size;
    // Where the page starts, when that is known before anything is read: the range's first day for a first page, the
    // line after a cursor's for a cursor page. Only an offset page needs the range's months to find its start.
    let page_start = match &cursor {
        Some(c) => Some((c.after.voucher_date, false)),
        None if pagination.offset() == 0 => Some((from, from.day() == 1)),
        None => None,
    };
    let first_month = |day: NaiveDate| report::month_end(day.year(), day.month()).map_or(to, |end| end.min(to));
    // Such a page is read in the same round as the company's accounts and balances, with the account the request
    // likely names and, from the held balance snapshot, how far the page likely reaches (`report::early_page_end`).
    // It is checked against what that round read before it is used; a wrong guess costs the round that follows, as
    // if nothing had been guessed.
    let guess = page_start.and_then(|(day, whole_month)| {
        let g = state.balances.ledger_guess(company, account_id.or(cursor.as_ref().map(|c| c.account_id)), account_code)?;
        let end = g.snapshot.map_or_else(|| first_month(day), |s| report::early_page_end(&s.rows, g.account, day, whole_month, to, limit));
        Some((g.account, end))
    });
    let after = cursor.as_ref().map(|c| &c.after);
    let guessed = async {
        match guess {
            Some((account, end)) => early_page(ch, company, account, (from, end), after, limit).await.map(Some),
            None => Ok(None),
        }
    };
    // The company's accounts and balances, as the statements read them (held snapshot plus tail, shared with the
    // company's other reports in flight, see `crate::balances`): the opening and the monthly totals below both come
    // from these balances, so they agree.
    let (accounts, balances, guessed) =
        tokio::try_join!(state.balances.accounts(ch, company), state.balances.balances(ch, company), guessed)?;
    let info = state.balances.find_account(ch, company, &accounts, account_id, account_code).await?.ok_or_else(not_found)?;
    if cursor.as_ref().is_some_and(|c| c.account_id != info.account_id) {
        return Err(Problem::invalid(vec![FieldError::new("cursor", "was made for another account or range")]).into());
    }
    let account = info.account_id;
    let debit_normal = report::debit_normal(&info.account_type);
    let is_page = |e: &report::EarlyPage| e.is_page(account, limit, to);
    let guessed = guessed.filter(|e| {
        let page = is_page(e);
        metrics::counter!(crate::balances::LEDGER_GUESS_METRIC, "result" => if page { "page" } else { "missed" }).increment(1);
        page
    });

    // The opening balance and the range's monthly totals come from one read of the balances (and a few of the lines
    // at the range's ragged ends). The totals then place the page: its months (`ledger_lines` is sorted by company,
    // account and date, so the page's reads touch only those days' granules) and, for an offset page, the whole
    // months before it, so only the lines of its first month before it are summed.
    //
    // A page that starts at a known place (the first page, or a cursor's line) was read alongside the balances when
    // its account could be guessed (above). Otherwise, for a range that needs lines for its totals, it is read
    // alongside those, from its first month only: when that month fills the page, which it does for the accounts whose
    // ledgers are long, the page costs one round of reads fewer.
    //
    // A range of whole months (a year, the usual ledger) needs no lines for its totals: they come from the balances
    // alone, so a page read alongside them is the only other read, and one that was not is the one read that follows.
    let company_months = [balances.snapshot.rows.as_slice(), balances.tail.as_slice()];
    let ((opening, months), early) = match store::held_ledger_totals(&company_months, account, (from, to)) {
        Some(totals) => (totals, guessed),
        None => {
            let totals = store::ledger_totals(ch, company, account, (from, to), &company_months);
            let known_start = async {
                match page_start.filter(|_| guessed.is_none()) {
                    Some((day, _)) => early_page(ch, company, account, (from, first_month(day)), after, limit).await.map(Some),
                    None => Ok(None),
                }
            };
            let (totals, read) = tokio::try_join!(totals, known_start)?;
            (totals, guessed.or(read.filter(is_page)))
        }
    };
    let early = early.map(|e| e.lines);
    let (start, lines) = match (&cursor, early) {
        (Some(c), Some(lines)) => (c.balance, lines),
        (None, Some(lines)) => (report::signed(debit_normal, opening.0, opening.1), lines),
        (Some(c), None) => {
            let end = report::page_end(to, &months, c.position + u64::from(limit) - 1);
            let mut lines = store::ledger_lines_after(ch, company, account, (from, end), &c.after, limit).await?;
            // Lines posted into earlier days since the cursor was made push the page later than its position says;
            // a short page then reads on to the range's end rather than stop early.
            if lines.len() < limit as usize && end < to {
                lines = store::ledger_lines_after(ch, company, account, (from, to), &c.after, limit).await?;
            }
            (c.balance, lines)
        }
        (None, None) => {
            let mut start = report::signed(debit_normal, opening.0, opening.1);
            let lines = match report::locate_page((from, to), &months, pagination.offset(), limit) {
                Some(p) => {
                    let carry = store::ledger_carry(ch, company, account, p.from, p.to, p.skip);
                    let page = store::ledger_lines(ch, company, account, p.from, p.to, p.skip, limit);
                    let ((in_month_debit, in_month_credit), lines) = tokio::try_join!(carry, page)?;
                    start += report::signed(debit_normal, p.carried_debit + in_month_debit, p.carried_credit + in_month_credit);
                    lines
                }
                None => Vec::new(),
            };
            (start, lines)
        }
    };
    let opening = report::signed(debit_normal, opening.0, opening.1);
    let total_lines: u64 = months.iter().map(|m| m.lines).sum();
    let (period_debit, period_credit) = months.iter().fold((0, 0), |(d, c), m| (d + m.debit, c + m.credit));
    let position = cursor.as_ref().map_or(pagination.offset(), |c| c.position);
    if cursor.is_some() {
        pagination.page = u32::try_from(position / u64::from(limit) + 1).unwrap_or(u32::MAX);
    }
    pagination.total = total_lines;
    let entries = report::running(debit_normal, start, lines);
    let after = position + entries.len() as u64;
    let next_cursor = entries.last().filter(|_| after < total_lines).map(|last| {
        kerp_core::cursor::encode(&LedgerCursor {
            account_id: account,
            from,
            to,
            after: store::LedgerKey {
                voucher_date: last.line.voucher_date.parse().unwrap_or(from),
                voucher_number: last.line.voucher_number.clone(),
                line_no: last.line.line_no,
            },
            balance: last.balance,
            position: after,
        })
    });
    let pagination = LedgerPagination { page: pagination, next_cursor };
    let closing = opening + report::signed(debit_normal, period_debit, period_credit);
    // What the page was read from: this account's lines and balances dated up to `to` (and its own row of the chart
    // of accounts). A held copy of it stays good while no posting touches that (`crate::answers`).
    let scope = Extension(LedgerScope { account, through: to });
    Ok((
        scope,
        Json(LedgerPage {
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
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct IncomeStatementQuery {
    /// Required, 1970 to 2099.
    #[param(required = true, example = 2025)]
    year: Option<i32>,
    /// Required, 1 to 12.
    #[param(required = true, example = 3)]
    month: Option<u32>,
}

/// `GET /api/v1/reports/income-statement?year=&month=`: the month and the fiscal year to its end, in the Korean
/// structure (see [`report::income_statement`]).
#[utoipa::path(get, path = "/api/v1/reports/income-statement", tag = "reports", summary = "The income statement (손익계산서) of a month and its fiscal year to date", params(IncomeStatementQuery),
    responses((status = 200, description = "The income statement (손익계산서)", body = Data<report::IncomeStatement>),
              (status = 400, response = BadRequest), (status = 422, response = Unprocessable)))]
async fn income_statement(
    State(state): State<AppState>,
    Auth(claims): Auth,
    q: Result<Query<IncomeStatementQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = q.map_err(|e| bad_query(&e))?;
    let mut checks = Checks::default();
    let period = checks.year_month(q.year, q.month);
    checks.finish()?;
    let (year, month, start, end) = month_bounds(period)?;
    let company = claims.company_id;
    let read = async {
        let balances = state.balances.balances(&state.ch, company).await?;
        let fiscal_year_start = report::fiscal_year_start(start, report::fiscal_start_month(balances.fiscal_start_month));
        Ok::<_, crate::Error>((fiscal_year_start, balances.buckets(Some(fiscal_year_start), &[start], end)))
    };
    let ((fiscal_year_start, rows), infos) =
        state.balances.with_accounts(&state.ch, company, read, |(_, rows)| report::account_ids(rows)).await?;
    let period = report::IsPeriod { year, month, fiscal_year_start, month_start: start, month_end: end };
    Ok(Json(Data { data: report::income_statement(period, &rows, &infos) }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct BalanceSheetQuery {
    /// `YYYY-MM-DD`; today in Korea when left out.
    #[param(format = Date, example = "2025-03-31")]
    as_of: Option<String>,
}

/// `GET /api/v1/reports/balance-sheet?as_of=YYYY-MM-DD` (default today in Korea): balances at the end of that day
/// (see [`report::balance_sheet`]). Whole months come from `period_balances`, the days of a partial month from
/// `ledger_lines`.
#[utoipa::path(get, path = "/api/v1/reports/balance-sheet", tag = "reports", summary = "The balance sheet (재무상태표) at the end of a day", params(BalanceSheetQuery),
    responses((status = 200, description = "The balance sheet (재무상태표)", body = Data<report::BalanceSheet>),
              (status = 400, response = BadRequest), (status = 422, response = Unprocessable)))]
async fn balance_sheet(
    State(state): State<AppState>,
    Auth(claims): Auth,
    q: Result<Query<BalanceSheetQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = q.map_err(|e| bad_query(&e))?;
    let mut checks = Checks::default();
    let as_of = checks.date("as_of", q.as_of.as_deref());
    checks.finish()?;
    let as_of = as_of.unwrap_or_else(today);
    let company = claims.company_id;
    let read = async {
        let balances = state.balances.balances(&state.ch, company).await?;
        let fiscal_year_start = report::fiscal_year_start(as_of, report::fiscal_start_month(balances.fiscal_start_month));
        let cuts = [fiscal_year_start];
        let (months, days) = report::split_at_month(as_of);
        let whole = async { Ok(months.map(|through| balances.buckets(None, &cuts, through)).unwrap_or_default()) };
        let partial = async {
            match days {
                Some((from, to)) => store::bucket_sums(&state.ch, company, None, Some(from), &cuts, to).await,
                None => Ok(Vec::new()),
            }
        };
        let (mut rows, more) = tokio::try_join!(whole, partial)?;
        rows.extend(more);
        Ok::<_, crate::Error>((fiscal_year_start, rows))
    };
    let ((fiscal_year_start, rows), infos) =
        state.balances.with_accounts(&state.ch, company, read, |(_, rows)| report::account_ids(rows)).await?;
    Ok(Json(Data { data: report::balance_sheet(as_of, fiscal_year_start, &rows, &infos) }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PartnerLedgerQuery {
    /// One partner's ledger; without it, the list of partners with their balances.
    #[param(format = Uuid)]
    partner_id: Option<String>,
    /// `YYYY-MM-DD`; the start of `to_date`'s fiscal year when left out.
    #[param(format = Date)]
    from_date: Option<String>,
    /// `YYYY-MM-DD`; today in Korea when left out.
    #[param(format = Date)]
    to_date: Option<String>,
    /// From 1 (0 is taken as 1).
    page: Option<u32>,
    /// Partners: `PARTNER_PAGE_SIZE_DEFAULT` (50), at most `PARTNER_PAGE_SIZE_MAX` (500); a partner's entries:
    /// `PARTNER_LEDGER_PAGE_SIZE_DEFAULT` (200), at most `PARTNER_LEDGER_PAGE_SIZE_MAX` (1000); larger is clamped.
    page_size: Option<u32>,
}

/// One partner's ledger (거래처원장) on receivables (1103) and payables (2101).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PartnerLedger {
    partner: report::PartnerInfo,
    from_date: NaiveDate,
    to_date: NaiveDate,
    /// Receivable minus payable before `from_date`: what the partner owes the company, net.
    opening_balance: i128,
    opening_receivable: i128,
    opening_payable: i128,
    entries: Vec<report::PartnerEntry>,
    period_debit: i128,
    period_credit: i128,
    closing_balance: i128,
    closing_receivable: i128,
    closing_payable: i128,
}

/// A page of one partner's ledger, with the balances of the whole range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PartnerLedgerPage {
    data: PartnerLedger,
    pagination: Pagination,
}

/// The partner ledger's answer: a page of partners without `partner_id`, one partner's ledger with it. The two differ
/// in `data` (an array or an object), so exactly one schema matches each answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum PartnerLedgerAnswer {
    Partners(Page<report::PartnerBalance>),
    /// Boxed: a ledger page is several times the size of a list page.
    Partner(Box<PartnerLedgerPage>),
}

/// `GET /api/v1/reports/partner-ledger`: without `partner_id`, a page of partners with their receivable (1103) and
/// payable (2101) balances at the end of `to_date` (default today in Korea); with `partner_id`, that partner's lines
/// on those two accounts from `from_date` (default the start of `to_date`'s fiscal year) to `to_date`, each with the
/// running net balance, after the opening balance. Pages carry the running balance over, as the account ledger's do.
/// `from_date` is checked but has no use without `partner_id`: the list shows balances, not movements.
#[utoipa::path(get, path = "/api/v1/reports/partner-ledger", tag = "reports", summary = "Partners with their receivables and payables, or one partner's ledger (거래처원장)", params(PartnerLedgerQuery),
    responses((status = 200, description = "Partners with their balances, or one partner's ledger", body = PartnerLedgerAnswer),
              (status = 400, response = BadRequest), (status = 422, response = Unprocessable)))]
async fn partner_ledger(
    State(state): State<AppState>,
    Auth(claims): Auth,
    q: Result<Query<PartnerLedgerQuery>, QueryRejection>,
) -> Result<Json<PartnerLedgerAnswer>> {
    let Query(q) = q.map_err(|e| bad_query(&e))?;
    let mut checks = Checks::default();
    let partner = checks.uuid("partner_id", q.partner_id.as_deref());
    if partner.is_some_and(|p| p.is_nil()) {
        checks.invalid("partner_id", "the nil UUID names no partner");
    }
    let from = checks.date("from_date", q.from_date.as_deref());
    let to = checks.date("to_date", q.to_date.as_deref());
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            checks.invalid("from_date", "must not be after to_date");
        }
    }
    checks.finish()?;
    let to = to.unwrap_or_else(today);
    let company = claims.company_id;
    let infos = store::account_infos(&state.ch, company, None, None).await?;
    let account = |code: &str| infos.iter().filter(|i| i.code == code).min_by_key(|i| i.account_id).cloned();
    let accounts: Vec<report::AccountInfo> = [report::RECEIVABLE_CODE, report::PAYABLE_CODE].into_iter().filter_map(account).collect();
    let id_of = |code: &str| accounts.iter().find(|a| a.code == code).map_or(Uuid::nil(), |a| a.account_id);
    let (receivable_id, payable_id) = (id_of(report::RECEIVABLE_CODE), id_of(report::PAYABLE_CODE));

    let Some(partner) = partner else {
        let mut pagination = Pagination::clamp_with(q.page, q.page_size, PARTNER_PAGE_SIZE_DEFAULT, PARTNER_PAGE_SIZE_MAX);
        let (rows, total) =
            store::partner_balances(&state.ch, company, receivable_id, payable_id, to, pagination.offset(), pagination.page_size).await?;
        pagination.total = total;
        return Ok(Json(PartnerLedgerAnswer::Partners(Page { data: rows, pagination })));
    };

    let from = match from {
        Some(f) => f,
        None => report::fiscal_year_start(to, fiscal_start_month(&state, company).await?).max(VOUCHER_DATE_MIN),
    };
    let ids: Vec<Uuid> = accounts.iter().map(|a| a.account_id).collect();
    let mut pagination = Pagination::clamp_with(q.page, q.page_size, PARTNER_LEDGER_PAGE_SIZE_DEFAULT, PARTNER_LEDGER_PAGE_SIZE_MAX);
    let offset = pagination.offset();
    let until = to.succ_opt().unwrap_or(to);
    let (info, opening, range, carried, lines) = tokio::try_join!(
        store::partner(&state.ch, company, partner),
        store::partner_sums(&state.ch, company, partner, &ids, None, from),
        store::partner_sums(&state.ch, company, partner, &ids, Some(from), until),
        store::partner_carry(&state.ch, company, partner, &ids, (from, to), offset),
        store::partner_lines(&state.ch, company, partner, &ids, (from, to), offset, pagination.page_size),
    )?;
    let on = |sums: &[(Uuid, u64, report::Movement)], id: Uuid| {
        sums.iter().filter(|(a, _, _)| *a == id).fold(report::Movement::default(), |acc, (_, _, m)| acc + *m)
    };
    let (opening_ar, opening_ap) = (on(&opening, receivable_id), on(&opening, payable_id));
    let (period_ar, period_ap) = (on(&range, receivable_id), on(&range, payable_id));
    let period = period_ar + period_ap;
    pagination.total = range.iter().map(|(_, n, _)| n).sum();
    let opening_balance = report::partner_net(opening_ar, opening_ap);
    let start = opening_balance + carried.net_debit();
    let entries = report::partner_running(start, lines, &accounts);
    let closing = report::partner_net(opening_ar + period_ar, opening_ap + period_ap);
    let ledger = PartnerLedger {
        partner: info.unwrap_or(report::PartnerInfo { partner_id: partner, ..report::PartnerInfo::default() }),
        from_date: from,
        to_date: to,
        opening_balance,
        opening_receivable: opening_ar.net_debit(),
        opening_payable: opening_ap.net_credit(),
        entries,
        period_debit: period.debit,
        period_credit: period.credit,
        closing_balance: closing,
        closing_receivable: (opening_ar + period_ar).net_debit(),
        closing_payable: (opening_ap + period_ap).net_credit(),
    };
    Ok(Json(PartnerLedgerAnswer::Partner(Box::new(PartnerLedgerPage { data: ledger, pagination }))))
}
