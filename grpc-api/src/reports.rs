//! `kerp.v1.ReportService`: report parameters come in and are checked as query-api checks them ([`trial_balance_params`],
//! [`ledger_params`]); the sums are read from ClickHouse by query-api's own queries (`kerp_query::store`) and shaped by
//! its report arithmetic (`kerp_query::report`); trial balances and ledger streams go out, with every sum and balance as
//! a decimal string (they are `i128`, see `reports.proto`). Nothing here reads Postgres.
//!
//! A ledger is streamed in bounded memory: ClickHouse is read one month at a time (`ledger_lines` is partitioned by
//! month and ordered by date within the account, so a month is a cheap range), in pages of
//! [`LEDGER_CHUNK_ENTRIES_MAX`] lines; entries are sent in chunks of that size through a channel of
//! [`LEDGER_BUFFER_CHUNKS_MAX`] chunks, so the reader waits whenever the client is slower than ClickHouse.
//!
//! Identical `TrialBalance` calls in flight share one read, as query-api's report GETs do (`kerp_query::coalesce`):
//! a call with the same company and role (from its verified token) and the same request message as a call being
//! answered now waits for that answer and gets a copy; nothing is kept once it is out. Many users of one company
//! mostly ask for the same month, and each read costs ClickHouse the same scan. The streamed `AccountLedger` is not
//! shared: it is sent as it is read, in bounded memory, and holding a whole ledger for several waiters would undo that.

use std::pin::Pin;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use futures::{Stream, StreamExt};
use kerp_core::chart::AccountType;
use kerp_core::voucher::{parse_date, FieldError, VOUCHER_DATE_MAX, VOUCHER_DATE_MIN};
use kerp_query::coalesce::Flights;
use kerp_query::report::{self, AccountInfo, CodeRange, LedgerEntry};
use kerp_query::store;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use crate::auth::{self, Access};
use crate::deadline::Deadline;
use crate::pb::kerp::v1 as pb;
use crate::pb::kerp::v1::report_service_server::{ReportService, ReportServiceServer};
use crate::{
    AppState, Error, Failure, LEDGER_BUFFER_CHUNKS_MAX, LEDGER_CHUNK_ENTRIES_MAX, REQUEST_MESSAGE_BYTES_MAX, RESPONSE_MESSAGE_BYTES_MAX,
};

/// `kerp.v1.ReportService`.
pub const SERVICE_NAME: &str = crate::pb::kerp::v1::report_service_server::SERVICE_NAME;

/// The service, with the message limits.
pub fn server(state: AppState) -> ReportServiceServer<Reports> {
    ReportServiceServer::new(Reports { state, trial_balances: Arc::new(Flights::new(COALESCED_METRIC)) })
        .max_decoding_message_size(REQUEST_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RESPONSE_MESSAGE_BYTES_MAX)
}

/// The counter of `TrialBalance` calls answered with a copy of a read in flight.
pub const COALESCED_METRIC: &str = "grpc_requests_coalesced_total";

/// The implementation of `kerp.v1.ReportService`.
pub struct Reports {
    state: AppState,
    /// Trial balances being read, which identical calls join (see the module's comment).
    trial_balances: Arc<Flights<TrialBalanceKey, Result<pb::TrialBalanceResponse, Status>>>,
}

/// What makes two trial-balance calls the same read: the company and role of their verified tokens, and the request
/// message as encoded.
type TrialBalanceKey = (Uuid, &'static str, Vec<u8>);

// ---------------------------------------------------------------------------------------------------------------------
// Parameters and mapping (no IO)
// ---------------------------------------------------------------------------------------------------------------------

/// A checked trial-balance request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialBalanceParams {
    pub year: i32,
    pub month: u32,
    /// The month's first and last day.
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub codes: CodeRange,
    pub department: Option<Uuid>,
}

fn first_of_month(year: i32, month: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, 1).filter(|d| (VOUCHER_DATE_MIN..=VOUCHER_DATE_MAX).contains(d))
}

/// A four-digit account code, or the field error naming `field`.
fn code(errors: &mut Vec<FieldError>, field: &str, value: &str) -> Option<String> {
    let s = value.trim();
    if s.is_empty() {
        return None;
    }
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) {
        Some(s.to_owned())
    } else {
        errors.push(FieldError::new(field, format!("'{s}' is not a four-digit account code")));
        None
    }
}

/// Checks a trial-balance request as query-api checks its parameters, naming every offending field.
///
/// # Errors
/// INVALID_ARGUMENT with the field violations.
pub fn trial_balance_params(r: &pb::TrialBalanceRequest) -> Result<TrialBalanceParams, Failure> {
    let mut errors = Vec::new();
    if r.year == 0 {
        errors.push(FieldError::new("year", "required"));
    }
    let month = match u32::try_from(r.month) {
        Ok(0) => {
            errors.push(FieldError::new("month", "required"));
            None
        }
        Ok(m @ 1..=12) => Some(m),
        _ => {
            errors.push(FieldError::new("month", "must be 1 to 12"));
            None
        }
    };
    let bounds = month.filter(|_| r.year != 0).and_then(|m| {
        let b = first_of_month(r.year, m).zip(report::month_end(r.year, m));
        if b.is_none() {
            errors.push(FieldError::new("year", format!("must be between {} and {}", VOUCHER_DATE_MIN.year(), VOUCHER_DATE_MAX.year())));
        }
        b.map(|(start, end)| (m, start, end))
    });
    let codes = CodeRange {
        from: code(&mut errors, "account_code_from", &r.account_code_from),
        to: code(&mut errors, "account_code_to", &r.account_code_to),
    };
    if let (Some(f), Some(t)) = (&codes.from, &codes.to) {
        if f > t {
            errors.push(FieldError::new("account_code_from", "must not be after account_code_to"));
        }
    }
    let department = match r.department_id.trim() {
        "" => None,
        s => Uuid::parse_str(s).map_err(|_| errors.push(FieldError::new("department_id", format!("'{s}' is not a UUID")))).ok(),
    };
    match bounds {
        Some((month, start, end)) if errors.is_empty() => Ok(TrialBalanceParams { year: r.year, month, start, end, codes, department }),
        _ => Err(Failure::invalid(errors)),
    }
}

/// A checked ledger request: the account by id or code, and the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerParams {
    pub account_id: Option<Uuid>,
    pub account_code: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// Checks a ledger request as query-api does: an account (a malformed id names none, so it is NOT_FOUND, as REST
/// answers 404), and either a year or both dates of a range that does not end before it starts.
///
/// # Errors
/// NOT_FOUND for a malformed account id, INVALID_ARGUMENT with the field violations otherwise.
pub fn ledger_params(r: &pb::AccountLedgerRequest) -> Result<LedgerParams, Failure> {
    let account_id = match r.account_id.trim() {
        "" => None,
        s => Some(Uuid::parse_str(s).map_err(|_| Failure::new(Code::NotFound, "account not found"))?),
    };
    let account_code = Some(r.account_code.trim().to_owned()).filter(|c| !c.is_empty());
    let mut errors = Vec::new();
    if account_id.is_none() && account_code.is_none() {
        errors.push(FieldError::new("account_id", "account_id or account_code is required"));
    }
    let mut date = |field: &str, s: &str| match s.trim() {
        "" => None,
        s => parse_date(s).map_err(|m| errors.push(FieldError::new(field, m))).ok(),
    };
    let from = date("from_date", &r.from_date);
    let to = date("to_date", &r.to_date);
    let dates_given = !r.from_date.trim().is_empty() || !r.to_date.trim().is_empty();
    let range = match (r.year, dates_given) {
        (0, false) => {
            errors.push(FieldError::new("year", "year or from_date/to_date is required"));
            None
        }
        (0, true) => {
            if r.from_date.trim().is_empty() || r.to_date.trim().is_empty() {
                errors.push(FieldError::new("from_date", "from_date and to_date go together"));
            }
            from.zip(to)
        }
        (_, true) => {
            errors.push(FieldError::new("year", "give either year or from_date/to_date"));
            None
        }
        (y, false) => {
            let r = first_of_month(y, 1).zip(NaiveDate::from_ymd_opt(y, 12, 31));
            if r.is_none() {
                errors
                    .push(FieldError::new("year", format!("must be between {} and {}", VOUCHER_DATE_MIN.year(), VOUCHER_DATE_MAX.year())));
            }
            r
        }
    };
    if let Some((f, t)) = range {
        if f > t {
            errors.push(FieldError::new("from_date", "must not be after to_date"));
        }
    }
    match range {
        Some((from, to)) if errors.is_empty() => Ok(LedgerParams { account_id, account_code, from, to }),
        _ => Err(Failure::invalid(errors)),
    }
}

/// The months `from` through `to` touch, each cut to the range: the windows a ledger is read in.
pub fn month_windows(from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = (NaiveDate, NaiveDate)> {
    let mut next = (from <= to).then_some(from);
    std::iter::from_fn(move || {
        let start = next?;
        let end = report::month_end(start.year(), start.month()).unwrap_or(start).min(to);
        next = end.succ_opt().filter(|d| *d <= to);
        Some((start, end))
    })
}

/// The message type of an account type as ClickHouse stores it.
#[must_use]
pub fn account_type(name: &str) -> pb::AccountType {
    match AccountType::parse(name) {
        Some(AccountType::Asset) => pb::AccountType::Asset,
        Some(AccountType::Liability) => pb::AccountType::Liability,
        Some(AccountType::Equity) => pb::AccountType::Equity,
        Some(AccountType::Revenue) => pb::AccountType::Revenue,
        Some(AccountType::Expense) => pb::AccountType::Expense,
        None => pb::AccountType::Unspecified,
    }
}

/// The columns of a trial balance as decimal strings.
#[must_use]
pub fn columns(c: &report::Columns) -> pb::Columns {
    pb::Columns {
        opening_debit: c.opening_debit.to_string(),
        opening_credit: c.opening_credit.to_string(),
        period_debit: c.period_debit.to_string(),
        period_credit: c.period_credit.to_string(),
        closing_debit: c.closing_debit.to_string(),
        closing_credit: c.closing_credit.to_string(),
    }
}

/// The message of a trial balance.
#[must_use]
pub fn trial_balance(tb: &report::TrialBalance) -> pb::TrialBalanceResponse {
    pb::TrialBalanceResponse {
        year: tb.year,
        month: i32::try_from(tb.month).unwrap_or(0),
        accounts: tb
            .accounts
            .iter()
            .map(|a| pb::TrialBalanceLine {
                account_id: a.account_id.to_string(),
                account_code: a.account_code.clone(),
                account_name: a.account_name.clone(),
                account_type: account_type(&a.account_type).into(),
                columns: Some(columns(&a.columns)),
            })
            .collect(),
        totals: Some(columns(&tb.totals)),
    }
}

/// The message of a ledger entry.
#[must_use]
pub fn entry(e: LedgerEntry) -> pb::LedgerEntry {
    let l = e.line;
    pb::LedgerEntry {
        voucher_date: l.voucher_date,
        voucher_number: l.voucher_number,
        line_no: l.line_no,
        voucher_id: l.voucher_id.to_string(),
        voucher_type: crate::vouchers::voucher_type_of(&l.voucher_type).into(),
        partner_id: l.partner_id.map(|p| p.to_string()).unwrap_or_default(),
        description: l.description,
        debit: l.debit,
        credit: l.credit,
        balance: e.balance.to_string(),
    }
}

fn ledger_account(info: &AccountInfo, debit_normal: bool) -> pb::LedgerAccount {
    pb::LedgerAccount {
        account_id: info.account_id.to_string(),
        account_code: info.code.clone(),
        account_name: info.name.clone(),
        account_type: account_type(&info.account_type).into(),
        normal_side: if debit_normal { pb::NormalSide::Debit } else { pb::NormalSide::Credit }.into(),
    }
}

fn part(p: pb::account_ledger_response::Part) -> pb::AccountLedgerResponse {
    pb::AccountLedgerResponse { part: Some(p) }
}

/// What a ledger stream has sent so far: the running balance and the period's sums and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub balance: i128,
    pub debit: i128,
    pub credit: i128,
    pub entries: u64,
}

impl Running {
    /// Adds a page of lines, in ledger order, and gives them their running balances.
    pub fn add(&mut self, debit_normal: bool, lines: Vec<report::LedgerLine>) -> Vec<LedgerEntry> {
        for l in &lines {
            self.debit += i128::from(l.debit);
            self.credit += i128::from(l.credit);
        }
        self.entries += lines.len() as u64;
        let entries = report::running(debit_normal, self.balance, lines);
        if let Some(last) = entries.last() {
            self.balance = last.balance;
        }
        entries
    }

    /// The footer of the stream.
    #[must_use]
    pub fn footer(&self) -> pb::LedgerFooter {
        pb::LedgerFooter {
            entry_count: self.entries,
            period_debit: self.debit.to_string(),
            period_credit: self.credit.to_string(),
            closing_balance: self.balance.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The calls
// ---------------------------------------------------------------------------------------------------------------------

/// Why a ledger stream stopped before its footer.
enum Stop {
    /// The client went away: nothing more to say to anyone.
    Gone,
    /// End the stream with this status.
    Status(Status),
}

/// The ledger stream's producer: its reads, its channel, the call's deadline and the server's shutdown.
struct LedgerStream {
    state: AppState,
    company: Uuid,
    info: AccountInfo,
    debit_normal: bool,
    params: LedgerParams,
    deadline: Deadline,
    tx: mpsc::Sender<pb::AccountLedgerResponse>,
}

impl LedgerStream {
    /// Sends one message, waiting at most until the deadline for the client to take it.
    async fn send(&self, msg: pb::AccountLedgerResponse) -> Result<(), Stop> {
        match self.deadline.run(self.tx.send(msg)).await {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(Stop::Gone),
            None => Err(Stop::Status(deadline_exceeded())),
        }
    }

    /// Sends every entry of the range in chunks, then the footer, starting from the opening balance.
    async fn run(&self, opening: i128) -> Result<(), Stop> {
        let chunk = usize::try_from(LEDGER_CHUNK_ENTRIES_MAX).unwrap_or(1000);
        let mut running = Running { balance: opening, debit: 0, credit: 0, entries: 0 };
        let mut pending: Vec<pb::LedgerEntry> = Vec::with_capacity(chunk);
        for (from, to) in month_windows(self.params.from, self.params.to) {
            // Each read continues after the last line sent (a keyset), not at an offset: a line folded into the window
            // meanwhile, before that place, would shift an offset read back over lines already sent (a fresh-clone
            // CI saw an entry twice, out of order). It is left out instead, as anything folded after the read is.
            let mut after: Option<store::LedgerKey> = None;
            loop {
                if self.state.shutdown.is_cancelled() {
                    return Err(Stop::Status(Status::unavailable("the server is shutting down; read the ledger again")));
                }
                let (ch, company, account) = (&self.state.ch, self.company, self.info.account_id);
                let read = async {
                    match &after {
                        None => store::ledger_lines(ch, company, account, from, to, 0, LEDGER_CHUNK_ENTRIES_MAX).await,
                        Some(key) => store::ledger_lines_after(ch, company, account, (from, to), key, LEDGER_CHUNK_ENTRIES_MAX).await,
                    }
                };
                let lines = match self.deadline.run(read).await {
                    None => return Err(Stop::Status(deadline_exceeded())),
                    Some(Err(e)) => return Err(Stop::Status(Error::from(e).into_status().await)),
                    Some(Ok(lines)) => lines,
                };
                let n = lines.len();
                if let Some(last) = lines.last() {
                    let voucher_date = last.voucher_date.parse().map_err(|e| {
                        tracing::error!(date = %last.voucher_date, error = %e, "a ledger line's date from ClickHouse did not parse");
                        Stop::Status(Status::internal("internal error"))
                    })?;
                    after = Some(store::LedgerKey { voucher_date, voucher_number: last.voucher_number.clone(), line_no: last.line_no });
                }
                pending.extend(running.add(self.debit_normal, lines).into_iter().map(entry));
                while pending.len() >= chunk {
                    let rest = pending.split_off(chunk);
                    let full = std::mem::replace(&mut pending, rest);
                    self.send(part(pb::account_ledger_response::Part::Entries(pb::LedgerEntries { entries: full }))).await?;
                }
                if n < chunk {
                    break;
                }
            }
        }
        if !pending.is_empty() {
            self.send(part(pb::account_ledger_response::Part::Entries(pb::LedgerEntries { entries: pending }))).await?;
        }
        self.send(part(pb::account_ledger_response::Part::Footer(running.footer()))).await
    }
}

/// Reads one trial balance from ClickHouse. It owns what it needs, since it may run as the shared read of several
/// calls.
async fn read_trial_balance(state: AppState, company: Uuid, p: TrialBalanceParams) -> Result<pb::TrialBalanceResponse, Status> {
    let ch = &state.ch;
    let rows = async {
        match p.department {
            Some(d) => {
                let fiscal_start =
                    report::fiscal_year_start(p.start, report::fiscal_start_month(store::fiscal_start_month(ch, company).await?));
                store::bucket_sums(ch, company, Some(d), None, &[fiscal_start, p.start], p.end).await
            }
            None => {
                // Held snapshots and shared reads, as query-api's REST reports (`kerp_query::balances`).
                let balances = state.balances.balances(ch, company).await?;
                let fiscal_start = report::fiscal_year_start(p.start, report::fiscal_start_month(balances.fiscal_start_month));
                Ok(balances.buckets(None, &[fiscal_start, p.start], p.end))
            }
        }
    };
    let read = state.balances.with_accounts(ch, company, rows, |rows| report::account_ids(rows)).await;
    let (rows, infos) = match read {
        Ok(read) => read,
        Err(e) => return Err(Error::from(e).into_status().await),
    };
    let tb = report::fiscal_trial_balance(p.year, p.month, &rows, &infos, &p.codes);
    Ok(trial_balance(&tb))
}

fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("the call's deadline passed before the ledger was sent; read the rest with a later from_date")
}

#[tonic::async_trait]
impl ReportService for Reports {
    async fn trial_balance(&self, request: Request<pb::TrialBalanceRequest>) -> Result<Response<pb::TrialBalanceResponse>, Status> {
        let claims = auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Read)?;
        let p = trial_balance_params(request.get_ref())?;
        let key = (claims.company_id, claims.role.as_str(), request.get_ref().encode_to_vec());
        let read = read_trial_balance(self.state.clone(), claims.company_id, p);
        let lost = || Err(Failure::internal().into());
        self.trial_balances.run(key, read, lost).await.map(Response::new)
    }

    type AccountLedgerStream = Pin<Box<dyn Stream<Item = Result<pb::AccountLedgerResponse, Status>> + Send + 'static>>;

    async fn account_ledger(&self, request: Request<pb::AccountLedgerRequest>) -> Result<Response<Self::AccountLedgerStream>, Status> {
        let claims = auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Read)?;
        let deadline = Deadline::of(&request);
        let params = ledger_params(request.get_ref())?;
        let (ch, company) = (&self.state.ch, claims.company_id);
        // The account and the opening balance are read before the stream starts, so that a missing account or an
        // unreachable ClickHouse is the call's status rather than an error after a header.
        // Both come from the company's shared reads (held snapshot, tail, accounts; `kerp_query::balances`).
        let start = async {
            let reads = &self.state.balances;
            let (accounts, balances) = tokio::try_join!(reads.accounts(ch, company), reads.balances(ch, company))?;
            let found = reads.find_account(ch, company, &accounts, params.account_id, params.account_code.as_deref()).await?;
            let Some(info) = found else { return Ok(None) };
            let months = [balances.snapshot.rows.as_slice(), balances.tail.as_slice()];
            let (debit, credit) = store::ledger_opening(ch, company, info.account_id, params.from, &months).await?;
            Ok::<_, kerp_query::Error>(Some((info, debit, credit)))
        };
        let (info, opening_debit, opening_credit) = match start.await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(Status::not_found("account not found")),
            Err(e) => return Err(Error::from(e).into_status().await),
        };
        let debit_normal = report::debit_normal(&info.account_type);
        let opening = report::signed(debit_normal, opening_debit, opening_credit);
        let (tx, rx) = mpsc::channel(LEDGER_BUFFER_CHUNKS_MAX);
        // How the stream ends goes apart from the chunks, so that telling the client never waits for room in a full
        // channel: the chunks already queued are sent, then the status.
        let (end_tx, end_rx) = oneshot::channel::<Result<(), Status>>();
        let header = pb::LedgerHeader {
            account: Some(ledger_account(&info, debit_normal)),
            from_date: params.from.to_string(),
            to_date: params.to.to_string(),
            opening_balance: opening.to_string(),
        };
        let stream = LedgerStream { state: self.state.clone(), company, info, debit_normal, params, deadline, tx };
        tokio::spawn(async move {
            let result = match stream.send(part(pb::account_ledger_response::Part::Header(header))).await {
                Ok(()) => stream.run(opening).await,
                Err(stop) => Err(stop),
            };
            let end = match result {
                Ok(()) => Ok(()),
                Err(Stop::Status(status)) => Err(status),
                // No one is listening any more.
                Err(Stop::Gone) => return,
            };
            let _ = end_tx.send(end);
        });
        let end = futures::stream::once(end_rx).filter_map(|end| {
            std::future::ready(match end {
                Ok(Ok(())) => None,
                Ok(Err(status)) => Some(Err(status)),
                // The producer stopped without saying how (it panicked, and the panic is logged): the client must not
                // take the entries so far for the whole ledger.
                Err(_) => Some(Err(Status::internal(crate::error::INTERNAL_MESSAGE))),
            })
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok).chain(end))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn fields(f: Failure) -> Vec<String> {
        assert_eq!(f.code, Code::InvalidArgument);
        f.violations.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_trial_balance_needs_a_year_and_a_month() {
        let ok = trial_balance_params(&pb::TrialBalanceRequest { year: 2025, month: 2, ..Default::default() }).unwrap();
        assert_eq!((ok.start, ok.end, ok.department), (d("2025-02-01"), d("2025-02-28"), None));
        assert!(ok.codes.is_all());
        assert_eq!(fields(trial_balance_params(&pb::TrialBalanceRequest::default()).unwrap_err()), ["year", "month"]);
        assert_eq!(
            fields(trial_balance_params(&pb::TrialBalanceRequest { year: 2025, month: 13, ..Default::default() }).unwrap_err()),
            ["month"]
        );
        assert_eq!(
            fields(trial_balance_params(&pb::TrialBalanceRequest { year: 1969, month: 12, ..Default::default() }).unwrap_err()),
            ["year"]
        );
        assert_eq!(
            fields(trial_balance_params(&pb::TrialBalanceRequest { year: 2025, month: -1, ..Default::default() }).unwrap_err()),
            ["month"]
        );
    }

    #[test]
    fn trial_balance_filters_are_checked() {
        let r = pb::TrialBalanceRequest {
            year: 2025,
            month: 1,
            account_code_from: "4000".into(),
            account_code_to: "1000".into(),
            department_id: "dept".into(),
        };
        assert_eq!(fields(trial_balance_params(&r).unwrap_err()), ["account_code_from", "department_id"]);
        let id = Uuid::new_v4();
        let r =
            pb::TrialBalanceRequest { account_code_from: "110".into(), account_code_to: "1999".into(), department_id: id.to_string(), ..r };
        assert_eq!(fields(trial_balance_params(&r).unwrap_err()), ["account_code_from"]);
        let r = pb::TrialBalanceRequest { account_code_from: "1100".into(), ..r };
        let ok = trial_balance_params(&r).unwrap();
        assert_eq!(ok.department, Some(id));
        assert!(ok.codes.contains("1500") && !ok.codes.contains("2000"));
    }

    #[test]
    fn a_ledger_takes_a_year_or_a_range() {
        let year = ledger_params(&pb::AccountLedgerRequest { account_code: "1102".into(), year: 2024, ..Default::default() }).unwrap();
        assert_eq!((year.from, year.to, year.account_code.as_deref()), (d("2024-01-01"), d("2024-12-31"), Some("1102")));
        let range = pb::AccountLedgerRequest {
            account_id: Uuid::nil().to_string(),
            from_date: "2020-02-01".into(),
            to_date: "2029-12-31".into(),
            ..Default::default()
        };
        assert_eq!(ledger_params(&range).unwrap().to, d("2029-12-31"));
        let both = pb::AccountLedgerRequest { year: 2024, ..range.clone() };
        assert_eq!(fields(ledger_params(&both).unwrap_err()), ["year"]);
        let half = pb::AccountLedgerRequest { to_date: String::new(), ..range.clone() };
        assert_eq!(fields(ledger_params(&half).unwrap_err()), ["from_date"]);
        let backwards = pb::AccountLedgerRequest { from_date: "2030-01-01".into(), ..range.clone() };
        assert_eq!(fields(ledger_params(&backwards).unwrap_err()), ["from_date"]);
        let bad_date = pb::AccountLedgerRequest { to_date: "2029-13-01".into(), ..range };
        assert_eq!(fields(ledger_params(&bad_date).unwrap_err()), ["to_date"]);
        assert_eq!(fields(ledger_params(&pb::AccountLedgerRequest::default()).unwrap_err()), ["account_id", "year"]);
        let malformed = pb::AccountLedgerRequest { account_id: "x".into(), year: 2024, ..Default::default() };
        assert_eq!(ledger_params(&malformed).unwrap_err().code, Code::NotFound);
    }

    #[test]
    fn months_cover_the_range_exactly_once() {
        let w: Vec<_> = month_windows(d("2024-01-15"), d("2024-03-02")).collect();
        assert_eq!(w, [(d("2024-01-15"), d("2024-01-31")), (d("2024-02-01"), d("2024-02-29")), (d("2024-03-01"), d("2024-03-02"))]);
        assert_eq!(month_windows(d("2024-05-05"), d("2024-05-05")).collect::<Vec<_>>(), [(d("2024-05-05"), d("2024-05-05"))]);
        assert_eq!(month_windows(d("2024-05-06"), d("2024-05-05")).count(), 0);
        assert_eq!(month_windows(d("2015-01-01"), d("2024-12-31")).count(), 120);
        let last = month_windows(VOUCHER_DATE_MIN, VOUCHER_DATE_MAX).last();
        assert_eq!(last, Some((d("2099-12-01"), VOUCHER_DATE_MAX)));
    }

    fn line(debit: i64, credit: i64) -> report::LedgerLine {
        report::LedgerLine {
            voucher_date: "2024-01-02".into(),
            voucher_number: "2024-01-000001".into(),
            line_no: 1,
            voucher_id: Uuid::nil(),
            voucher_type: "sales".into(),
            partner_id: None,
            description: String::new(),
            debit,
            credit,
        }
    }

    #[test]
    fn the_running_balance_carries_across_pages_and_ends_in_the_footer() {
        let mut r = Running { balance: 1000, debit: 0, credit: 0, entries: 0 };
        let first = r.add(true, vec![line(500, 0), line(0, 200)]);
        assert_eq!(first.iter().map(|e| e.balance).collect::<Vec<_>>(), [1500, 1300]);
        let second = r.add(true, vec![line(i64::MAX, 0), line(i64::MAX, 0)]);
        let expected = 1300 + 2 * i128::from(i64::MAX);
        assert_eq!(second[1].balance, expected, "balances are i128 and never wrap");
        assert!(r.add(true, Vec::new()).is_empty());
        let f = r.footer();
        assert_eq!(f.entry_count, 4);
        assert_eq!(f.closing_balance, expected.to_string());
        assert_eq!(f.period_debit, (500 + 2 * i128::from(i64::MAX)).to_string());
        assert_eq!(f.period_credit, "200");
        let mut credit_side = Running { balance: 0, debit: 0, credit: 0, entries: 0 };
        assert_eq!(credit_side.add(false, vec![line(0, 70), line(20, 0)])[1].balance, 50);
    }

    #[test]
    fn entries_and_columns_become_messages() {
        let e = entry(LedgerEntry { line: line(5, 0), balance: -5 });
        assert_eq!((e.balance.as_str(), e.voucher_type()), ("-5", pb::VoucherType::Sales));
        assert_eq!(e.partner_id, "");
        let c = columns(&report::Columns { opening_debit: i128::from(i64::MAX) * 3, ..Default::default() });
        assert_eq!(c.opening_debit, "27670116110564327421");
        assert_eq!(c.closing_credit, "0");
        assert_eq!(account_type("revenue"), pb::AccountType::Revenue);
        assert_eq!(account_type("?"), pb::AccountType::Unspecified);
    }
}
