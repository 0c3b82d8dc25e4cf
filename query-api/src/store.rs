//! Every ClickHouse query of query-api: a company id and a date range go in, typed sums and rows come out. Handlers
//! never hold SQL; the accounting on what comes out of here lives in [`crate::report`].
//!
//! Every query is filtered by the caller's company. Aggregates are read `FINAL`: `period_balances` and `ledger_lines`
//! hold one row per event (and line), and a second copy of an event, written by a redelivery or by two workers, is only
//! collapsed with the first at read time. Sums are taken in Decimal128 and sent as text, because an Int64 sum wraps
//! silently once an account passes 9.2 * 10^18 won.
//!
//! Column aliases never reuse a column's own name (`sum(debit) AS debit_sum`, not `AS debit`): in ClickHouse an alias
//! can shadow the column elsewhere in the query, and the old and new analyzers resolve such clashes differently. Rows
//! are read positionally (validation is off for 18.16), so struct field names need not match the aliases.

use chrono::NaiveDate;
use clickhouse::{Client, Row};
use kerp_core::clickhouse::uuid_literal;
use kerp_core::telemetry::timed;
use serde::Deserialize;
use uuid::Uuid;

use crate::report::{AccountInfo, AccountSums, LedgerLine};
use crate::{Error, Result};

/// `sum(col)` in Decimal128, as text.
fn wide_sum(col: &str) -> String {
    format!("toString(sum(toDecimal128({col}, 0)))")
}

/// `sumIf(col, cond)` in Decimal128, as text.
fn wide_sum_if(col: &str, cond: &str) -> String {
    format!("toString(sumIf(toDecimal128({col}, 0), {cond}))")
}

/// A Decimal128 sum sent as text, back as an integer.
fn wide(text: &str) -> Result<i128> {
    text.parse().map_err(|e| Error::Other(format!("ClickHouse sum {text:?} is not an integer: {e}")))
}

/// A date as a ClickHouse literal. Dates come from validated input, never from raw client text.
fn date(d: NaiveDate) -> String {
    format!("toDate('{d}')")
}

/// Whether ClickHouse answers at all, for `/health`.
pub async fn ping(ch: &Client) -> Result<()> {
    ch.query("SELECT 1").fetch_one::<u8>().await?;
    Ok(())
}

#[derive(Debug, Row, Deserialize)]
struct InfoRow {
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    code: String,
    name: String,
    account_type: String,
}

/// The company's accounts from the `accounts` dimension (newest version of each), optionally only the one with this
/// id or this code.
pub async fn account_infos(ch: &Client, company: Uuid, only: Option<Uuid>, code: Option<&str>) -> Result<Vec<AccountInfo>> {
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
    let mut q = ch.query(&format!("SELECT * FROM ({sql}) WHERE 1 = 1 {}", if code.is_some() { "AND account_code = ?" } else { "" }));
    if let Some(code) = code {
        q = q.bind(code);
    }
    let rows: Vec<InfoRow> = timed("account_infos", q.fetch_all()).await?;
    Ok(rows
        .into_iter()
        .map(|r| AccountInfo { account_id: r.account_id, code: r.code, name: r.name, account_type: r.account_type })
        .collect())
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

impl SumsRow {
    fn into_sums(self) -> Result<AccountSums> {
        Ok(AccountSums {
            account_id: self.account_id,
            opening_debit: wide(&self.opening_debit)?,
            opening_credit: wide(&self.opening_credit)?,
            period_debit: wide(&self.period_debit)?,
            period_credit: wide(&self.period_credit)?,
        })
    }
}

/// Per account: debits and credits of every month before `month` (opening) and of `month` itself (period), from
/// `period_balances`. `month` is the first day of a month.
pub async fn month_sums(ch: &Client, company: Uuid, month: NaiveDate) -> Result<Vec<AccountSums>> {
    let before = format!("period < {}", date(month));
    let within = format!("period = {}", date(month));
    let sql = format!(
        "SELECT account_id, {} AS opening_debit_sum, {} AS opening_credit_sum, {} AS period_debit_sum, {} AS period_credit_sum
         FROM period_balances FINAL
         WHERE company_id = {} AND period <= {}
         GROUP BY account_id",
        wide_sum_if("debit", &before),
        wide_sum_if("credit", &before),
        wide_sum_if("debit", &within),
        wide_sum_if("credit", &within),
        uuid_literal(&company),
        date(month),
    );
    let rows: Vec<SumsRow> = timed("trial_balance", ch.query(&sql).fetch_all()).await?;
    rows.into_iter().map(SumsRow::into_sums).collect()
}

#[derive(Debug, Row, Deserialize)]
struct TwoSums {
    debit: String,
    credit: String,
}

impl TwoSums {
    fn pair(&self) -> Result<(i128, i128)> {
        Ok((wide(&self.debit)?, wide(&self.credit)?))
    }
}

/// The filter of one company's account.
fn account_key(company: Uuid, account: Uuid) -> String {
    format!("company_id = {} AND account_id = {}", uuid_literal(&company), uuid_literal(&account))
}

/// An account's (debit, credit) totals before `from`: whole months from the balances table, then the days of
/// `from`'s month before it from the lines.
pub async fn ledger_opening(ch: &Client, company: Uuid, account: Uuid, from: NaiveDate) -> Result<(i128, i128)> {
    let key = account_key(company, account);
    let month_start = crate::report::month_start(from);
    let before_months: TwoSums = timed(
        "ledger_opening_months",
        ch.query(&format!(
            "SELECT {} AS debit_sum, {} AS credit_sum FROM period_balances FINAL WHERE {key} AND period < {}",
            wide_sum("debit"),
            wide_sum("credit"),
            date(month_start),
        ))
        .fetch_one(),
    )
    .await?;
    let before_days: TwoSums = timed(
        "ledger_opening_days",
        ch.query(&format!(
            "SELECT {} AS debit_sum, {} AS credit_sum FROM ledger_lines FINAL
             WHERE {key} AND voucher_date >= {} AND voucher_date < {}",
            wide_sum("debit"),
            wide_sum("credit"),
            date(month_start),
            date(from),
        ))
        .fetch_one(),
    )
    .await?;
    let (md, mc) = before_months.pair()?;
    let (dd, dc) = before_days.pair()?;
    Ok((md + dd, mc + dc))
}

/// Line count, debit and credit of an account's lines dated `from` to `to` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeTotals {
    pub lines: u64,
    pub debit: i128,
    pub credit: i128,
}

#[derive(Debug, Row, Deserialize)]
struct RangeTotalsRow {
    lines: u64,
    debit: String,
    credit: String,
}

fn ledger_range(company: Uuid, account: Uuid, from: NaiveDate, to: NaiveDate) -> String {
    format!("{} AND voucher_date >= {} AND voucher_date <= {}", account_key(company, account), date(from), date(to))
}

/// The order of ledger entries, also the order pages are cut in.
const LEDGER_ORDER: &str = "ORDER BY voucher_date, voucher_number, line_no";

pub async fn ledger_totals(ch: &Client, company: Uuid, account: Uuid, from: NaiveDate, to: NaiveDate) -> Result<RangeTotals> {
    let row: RangeTotalsRow = timed(
        "ledger_totals",
        ch.query(&format!(
            "SELECT count() AS line_count, {} AS debit_sum, {} AS credit_sum FROM ledger_lines FINAL WHERE {}",
            wide_sum("debit"),
            wide_sum("credit"),
            ledger_range(company, account, from, to),
        ))
        .fetch_one(),
    )
    .await?;
    Ok(RangeTotals { lines: row.lines, debit: wide(&row.debit)?, credit: wide(&row.credit)? })
}

/// (debit, credit) of the first `offset` lines of the range in ledger order: what earlier pages carried.
pub async fn ledger_carry(ch: &Client, company: Uuid, account: Uuid, from: NaiveDate, to: NaiveDate, offset: u64) -> Result<(i128, i128)> {
    if offset == 0 {
        return Ok((0, 0));
    }
    let before: TwoSums = timed(
        "ledger_page_carry",
        ch.query(&format!(
            "SELECT {} AS debit_sum, {} AS credit_sum FROM
             (SELECT debit, credit FROM ledger_lines FINAL WHERE {} {LEDGER_ORDER} LIMIT {offset})",
            wide_sum("debit"),
            wide_sum("credit"),
            ledger_range(company, account, from, to),
        ))
        .fetch_one(),
    )
    .await?;
    before.pair()
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

impl From<LineRow> for LedgerLine {
    fn from(r: LineRow) -> Self {
        LedgerLine {
            voucher_date: r.voucher_day,
            voucher_number: r.voucher_number,
            line_no: r.line_no,
            voucher_id: r.voucher_id,
            voucher_type: r.voucher_type,
            partner_id: (!r.partner_id.is_nil()).then_some(r.partner_id),
            description: r.description,
            debit: r.debit,
            credit: r.credit,
        }
    }
}

/// One page of an account's lines in the range, in ledger order.
pub async fn ledger_lines(
    ch: &Client,
    company: Uuid,
    account: Uuid,
    from: NaiveDate,
    to: NaiveDate,
    offset: u64,
    limit: u32,
) -> Result<Vec<LedgerLine>> {
    let rows: Vec<LineRow> = timed(
        "ledger_entries",
        ch.query(&format!(
            "SELECT toString(voucher_date) AS voucher_day, voucher_number, line_no, voucher_id, voucher_type, partner_id,
                    description, debit, credit
             FROM ledger_lines FINAL WHERE {} {LEDGER_ORDER} LIMIT {offset}, {limit}",
            ledger_range(company, account, from, to),
        ))
        .fetch_all(),
    )
    .await?;
    Ok(rows.into_iter().map(LedgerLine::from).collect())
}
