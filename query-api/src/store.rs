//! Every ClickHouse query of query-api: a company id and a date range go in, typed sums and rows come out. Handlers
//! never hold SQL; the accounting on what comes out of here lives in [`crate::report`].
//!
//! Every query is filtered by the caller's company. Aggregates are read `FINAL`: `period_balances` and `ledger_lines`
//! hold one row per event (and line), and a second copy of an event, written by a redelivery or by two workers, is only
//! collapsed with the first at read time. Balances are read from the company's newest balance snapshot (sums per
//! account and month up to a sequence) plus the `period_balances` rows above it, so a trial balance collapses a short
//! tail instead of every row the company ever posted. Sums are taken in Decimal128 and sent as text, because an Int64 sum wraps
//! silently once an account passes 9.2 * 10^18 won.
//!
//! The account ledger's page reads of one account's lines collapse copies themselves instead, by the sorting key
//! after the account (`LIMIT 1 BY`): copies of a line are the same event's same row, so keeping any one of them is
//! what `FINAL` keeps, and on 18.16 `FINAL` merges the parts in one thread, which made it three to five times slower
//! than the rest of those reads together. The monthly sums, which read every line of the range, use `FINAL` (see
//! [`ledger_months`]).
//!
//! Column aliases never reuse a column's own name (`sum(debit) AS debit_sum`, not `AS debit`): in ClickHouse an alias
//! can shadow the column elsewhere in the query, and the old and new analyzers resolve such clashes differently. Rows
//! are read positionally (validation is off for 18.16), so struct field names need not match the aliases.

use chrono::NaiveDate;
use clickhouse::{Client, Row};
use kerp_core::clickhouse::uuid_literal;
use kerp_core::telemetry::timed;
use kerp_core::voucher::VOUCHER_DATE_MIN;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::report::{AccountInfo, BucketSums, LedgerLine, MonthSums, Movement, PartnerBalance, PartnerInfo, PartnerLine};
use crate::{Error, Result};

/// `sum(col)` in Decimal128, as text.
fn wide_sum(col: &str) -> String {
    format!("toString(sum(toDecimal128({col}, 0)))")
}

/// A Decimal128 sum sent as text, back as an integer.
fn wide(text: &str) -> Result<i128> {
    text.parse().map_err(|e| Error::Other(format!("ClickHouse sum {text:?} is not an integer: {e}")))
}

/// A date as a ClickHouse literal. Dates come from validated input, never from raw client text.
///
/// A date before [`VOUCHER_DATE_MIN`] (the start of a fiscal year that began in 1969) is raised to it: ClickHouse's
/// `Date` starts at 1970-01-01 and no posting is older, so `col < d` and `col >= d` select the same rows either way.
/// Callers never compare with `<=` against such a date.
fn date(d: NaiveDate) -> String {
    format!("toDate('{}')", d.max(VOUCHER_DATE_MIN))
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

/// The SQL of the company's accounts from the `accounts` dimension (newest version of each), optionally only the one
/// with this id or, bound as the query's one parameter, this code.
fn account_infos_sql(company: Uuid, only: Option<Uuid>, code: Option<&str>) -> String {
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
    format!("SELECT * FROM ({sql}) WHERE 1 = 1 {}", if code.is_some() { "AND account_code = ?" } else { "" })
}

/// The company's accounts from the `accounts` dimension (newest version of each), optionally only the one with this
/// id or this code.
pub async fn account_infos(ch: &Client, company: Uuid, only: Option<Uuid>, code: Option<&str>) -> Result<Vec<AccountInfo>> {
    let mut q = ch.query(&account_infos_sql(company, only, code));
    if let Some(code) = code {
        q = q.bind(code);
    }
    let rows: Vec<InfoRow> = timed("account_infos", q.fetch_all()).await?;
    Ok(rows.into_iter().map(InfoRow::info).collect())
}

impl InfoRow {
    fn info(self) -> AccountInfo {
        AccountInfo { account_id: self.account_id, code: self.code, name: self.name, account_type: self.account_type }
    }
}

/// A company's change signal as ClickHouse holds it: its highest folded sequence, and how many changes that move no
/// sequence were counted for it (`report_changes`, see `crate::answers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Row, Deserialize)]
pub struct SignalRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub company_id: Uuid,
    pub seq: i64,
    pub changes: u64,
}

/// The change signals of `companies` and of every company at once (the nil id): one row per company and table that
/// has any, so a company may come twice (its watermark, its count) or not at all (nothing folded yet).
fn report_signals_sql(companies: &[Uuid]) -> String {
    let ids = |with_nil: bool| {
        let mut ids: Vec<String> = companies.iter().map(uuid_literal).collect();
        if with_nil {
            ids.push(uuid_literal(&Uuid::nil()));
        }
        ids.join(", ")
    };
    format!(
        "SELECT company_id, max(seq) AS max_seq, toUInt64(0) AS change_count FROM fold_watermarks \
         WHERE company_id IN ({}) GROUP BY company_id \
         UNION ALL \
         SELECT company_id, toInt64(0) AS max_seq, sum(changes) AS change_count FROM report_changes \
         WHERE company_id IN ({}) GROUP BY company_id",
        ids(false),
        ids(true)
    )
}

/// Reads the change signals of `companies` (see [`report_signals_sql`]); at most a row or two per company.
///
/// # Errors
/// ClickHouse errors.
pub async fn report_signals(ch: &Client, companies: &[Uuid]) -> Result<Vec<SignalRow>> {
    Ok(timed("report_signals", ch.query(&report_signals_sql(companies)).fetch_all()).await?)
}

/// One account with a posting in a span of a company's sequence, and the first month it was posted into.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct TouchedRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub company_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    /// The first day of the earliest month posted into, as text.
    pub first_period: String,
}

/// A span of one company's sequence: the events above the first number up to the second.
pub type SeqSpan = (Uuid, i64, i64);

fn touched_accounts_sql(spans: &[SeqSpan]) -> String {
    let filter: Vec<String> = spans
        .iter()
        .map(|(company, above, upto)| {
            format!("(company_id = {} AND company_seq > {above} AND company_seq <= {upto})", uuid_literal(company))
        })
        .collect();
    // `period_balances` is sorted by company and sequence, so each span is one short range of its primary key. No
    // FINAL: a copy of an event names the same account and month.
    format!(
        "SELECT company_id, account_id, {} AS first_period FROM period_balances WHERE {} GROUP BY company_id, account_id",
        FIRST_PERIOD_TEXT,
        filter.join(" OR ")
    )
}

/// The accounts each span's events posted to, with the earliest month of each: what changed in the ledgers while a
/// company's watermark moved across the span (see `crate::answers`). At most one row per company and account.
///
/// # Errors
/// ClickHouse errors.
pub async fn touched_accounts(ch: &Client, spans: &[SeqSpan]) -> Result<Vec<TouchedRow>> {
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    Ok(timed("touched_accounts", ch.query(&touched_accounts_sql(spans)).fetch_all()).await?)
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

/// The sequence the company's newest balance snapshot covers; 0 when it has none (sequences start at 1, so every
/// balance row is then above it). Read apart from, and before, the rows: the snapshot at this sequence stays until a
/// newer one has long replaced it (see `migrations/clickhouse/0004_snapshots.sql`), whereas the newest sequence may
/// change between two reads of one query. A report that reads the balances more than once looks it up once and
/// passes it to each read, so that they all see the same snapshot.
pub async fn snapshot_seq(ch: &Client, company: Uuid) -> Result<i64> {
    // From the heads, a row per snapshot, which name only snapshots whose rows exist
    // (`migrations/clickhouse/0005_snapshot_heads.sql`).
    Ok(timed("balance_snapshot_seq", ch.query(&newest_snapshot_sql(company)).fetch_one::<i64>()).await?)
}

/// The SQL of [`snapshot_seq`]'s lookup.
fn newest_snapshot_sql(company: Uuid) -> String {
    format!("SELECT max(upto_seq) FROM snapshot_heads WHERE company_id = {}", uuid_literal(&company))
}

/// An account's (debit, credit) totals before `from`: whole months from a company's month rows (`company_months`: its
/// held snapshot's and the tail's, see `crate::balances`), then the days of `from`'s month before it from the lines.
pub async fn ledger_opening(
    ch: &Client,
    company: Uuid,
    account: Uuid,
    from: NaiveDate,
    company_months: &[&[MonthSums]],
) -> Result<(i128, i128)> {
    let month_start = crate::report::month_start(from);
    let (md, mc) = company_months
        .iter()
        .flat_map(|rows| rows.iter())
        .filter(|m| m.account_id == account && m.period < month_start)
        .fold((0, 0), |(d, c), m| (d + m.movement.debit, c + m.movement.credit));
    let (dd, dc) = month_days_before(ch, company, account, from).await?;
    Ok((md + dd, mc + dc))
}

fn ledger_range(company: Uuid, account: Uuid, from: NaiveDate, to: NaiveDate) -> String {
    format!("{} AND voucher_date >= {} AND voucher_date <= {}", account_key(company, account), date(from), date(to))
}

/// The order of ledger entries, also the order pages are cut in.
const LEDGER_ORDER: &str = "ORDER BY voucher_date, voucher_number, line_no";

/// After [`LEDGER_ORDER`] on one account's lines: one row per line, whatever copies of it are stored (in place of
/// `FINAL`, see the module documentation).
const ONE_PER_LINE: &str = "LIMIT 1 BY voucher_date, voucher_number, line_no";

/// (debit, credit) of the first `offset` lines of the range in ledger order: what earlier pages carried.
pub async fn ledger_carry(ch: &Client, company: Uuid, account: Uuid, from: NaiveDate, to: NaiveDate, offset: u64) -> Result<(i128, i128)> {
    if offset == 0 {
        return Ok((0, 0));
    }
    let before: TwoSums = timed(
        "ledger_page_carry",
        ch.query(&format!(
            "SELECT {} AS debit_sum, {} AS credit_sum FROM
             (SELECT debit, credit FROM ledger_lines WHERE {} {LEDGER_ORDER} {ONE_PER_LINE} LIMIT {offset})",
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

/// An account's lines in one month of a ledger range (the range's first and last months may be partial).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthTotals {
    /// The first day of the month.
    pub month: NaiveDate,
    pub lines: u64,
    pub debit: i128,
    pub credit: i128,
}

#[derive(Debug, Row, Deserialize)]
struct MonthTotalsRow {
    month: String,
    lines: u64,
    debit: String,
    credit: String,
}

/// An account's ledger totals for `from..=to`: the (debit, credit) before `from` (the opening) and, per month of the
/// range, in order, the count, debits and credits of its lines; months without lines are left out. One read gives the
/// range's totals and where each page of the ledger starts (see [`crate::report::locate_page`]), so a deep page needs
/// no scan of the lines before it.
///
/// Both come from the company's month rows (`company_months`: its held snapshot's and the tail's, see
/// `crate::balances`), every month up to the range's last whole month, so the months before `from`'s give the opening
/// and the whole months of the range their totals. Balance
/// rows carry each event's line count per account, so a month of 30,000 lines costs one summed row. The days of
/// `from`'s month before it, and the days of the range before and after its whole months, are read from the lines,
/// concurrently. Balance rows written before they counted lines (`line_count` 0) make the range's months be counted
/// from the lines instead, until a rebuild refills them.
pub async fn ledger_totals(
    ch: &Client,
    company: Uuid,
    account: Uuid,
    (from, to): (NaiveDate, NaiveDate),
    company_months: &[&[MonthSums]],
) -> Result<((i128, i128), Vec<MonthTotals>)> {
    let from_month = crate::report::month_start(from);
    let split = crate::report::split_months(from, to);
    let through = split.whole.map_or(from_month, |(_, last)| last.max(from_month));
    let part = |range: Option<(NaiveDate, NaiveDate)>| async move {
        match range {
            Some((a, b)) => months_from_lines(ch, company, account, a, b).await,
            None => Ok(Vec::new()),
        }
    };
    let balances = balance_months(company_months, account, through);
    let (days_before, head, tail) = tokio::try_join!(month_days_before(ch, company, account, from), part(split.head), part(split.tail))?;
    let (opening_debit, opening_credit) =
        balances.iter().filter(|m| m.totals.month < from_month).fold(days_before, |(d, c), m| (d + m.totals.debit, c + m.totals.credit));
    let months = match split.whole {
        None => head,
        Some((first, last)) => {
            let whole: Vec<&BalanceMonth> = balances.iter().filter(|m| m.totals.month >= first && m.totals.month <= last).collect();
            if whole.iter().any(|m| m.uncounted) {
                months_from_lines(ch, company, account, from, to).await?
            } else {
                head.into_iter().chain(whole.into_iter().map(|m| m.totals)).chain(tail).collect()
            }
        }
    };
    Ok(((opening_debit, opening_credit), months))
}

/// [`ledger_totals`] when the company's month rows alone give it, which is when nothing of the range needs the lines:
/// the range is whole months (from a first day to a last day, as a year is), and every month of it counted its lines.
/// `None` otherwise. The ledger then places its page at once, and reads only the page's lines.
#[must_use]
pub fn held_ledger_totals(
    company_months: &[&[MonthSums]],
    account: Uuid,
    (from, to): (NaiveDate, NaiveDate),
) -> Option<((i128, i128), Vec<MonthTotals>)> {
    let split = crate::report::split_months(from, to);
    let (first, last) = split.whole?;
    if split.head.is_some() || split.tail.is_some() || first != from {
        return None;
    }
    let balances = balance_months(company_months, account, last);
    let (before, range): (Vec<&BalanceMonth>, Vec<&BalanceMonth>) = balances.iter().partition(|m| m.totals.month < first);
    if range.iter().any(|m| m.uncounted) {
        return None;
    }
    let opening = before.iter().fold((0, 0), |(d, c), m| (d + m.totals.debit, c + m.totals.credit));
    Some((opening, range.into_iter().map(|m| m.totals).collect()))
}

/// One month of an account's balances.
#[derive(Debug, Clone, Copy)]
struct BalanceMonth {
    totals: MonthTotals,
    /// Some of the month's rows were written before balances counted lines, so `totals.lines` is not its count.
    uncounted: bool,
}

fn month_totals(month: &str, lines: u64, debit: &str, credit: &str) -> Result<MonthTotals> {
    let month = month.parse().map_err(|e| Error::Other(format!("ClickHouse month {month:?} is not a date: {e}")))?;
    Ok(MonthTotals { month, lines, debit: wide(debit)?, credit: wide(credit)? })
}

/// An account's monthly totals for every month up to `through` (a first day), in order, from a company's month rows
/// (its snapshot's and the tail's, which may both hold a month: they are added).
fn balance_months(company_months: &[&[MonthSums]], account: Uuid, through: NaiveDate) -> Vec<BalanceMonth> {
    let mut months: std::collections::BTreeMap<NaiveDate, BalanceMonth> = std::collections::BTreeMap::new();
    for m in company_months.iter().flat_map(|rows| rows.iter()).filter(|m| m.account_id == account && m.period <= through) {
        let e = months
            .entry(m.period)
            .or_insert(BalanceMonth { totals: MonthTotals { month: m.period, lines: 0, debit: 0, credit: 0 }, uncounted: false });
        e.totals.lines += m.lines;
        e.totals.debit += m.movement.debit;
        e.totals.credit += m.movement.credit;
        e.uncounted |= m.uncounted;
    }
    months.into_values().collect()
}

/// An account's (debit, credit) over the days of `day`'s month before it, from the lines: what the balances' whole
/// months leave out of an opening balance at `day`. Nothing to read on the first of a month.
async fn month_days_before(ch: &Client, company: Uuid, account: Uuid, day: NaiveDate) -> Result<(i128, i128)> {
    let (from, until) = (crate::report::month_start(day), day);
    if from == until {
        return Ok((0, 0));
    }
    let sql = format!(
        "SELECT {} AS debit_sum, {} AS credit_sum FROM ledger_lines FINAL
         WHERE {} AND voucher_date >= {} AND voucher_date < {}",
        wide_sum("debit"),
        wide_sum("credit"),
        account_key(company, account),
        date(from),
        date(until),
    );
    timed("ledger_opening_days", ch.query(&sql).fetch_one::<TwoSums>()).await?.pair()
}

/// The monthly totals of `from..=to` counted from the account's lines, copies collapsed with `FINAL`: every line of
/// the range is read, and since `ledger_lines` is partitioned by year, `FINAL` merges the few parts of one partition
/// (on a 30,000-line account-year at 8 concurrent reads, 19/s against 6/s for a `GROUP BY` of the sorting key).
async fn months_from_lines(ch: &Client, company: Uuid, account: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<MonthTotals>> {
    let rows: Vec<MonthTotalsRow> = timed(
        "ledger_months",
        ch.query(&format!(
            "SELECT {MONTH_DAY} AS month_day, count() AS line_count, {} AS debit_sum,
                    {} AS credit_sum
             FROM ledger_lines FINAL WHERE {} GROUP BY month_day ORDER BY month_day",
            wide_sum("debit"),
            wide_sum("credit"),
            ledger_range(company, account, from, to),
        ))
        .fetch_all(),
    )
    .await?;
    rows.iter().map(|r| month_totals(&r.month, r.lines, &r.debit, &r.credit)).collect()
}

/// A ledger line's place in ledger order: the sorting key of `ledger_lines` after the company and account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerKey {
    pub voucher_date: NaiveDate,
    pub voucher_number: String,
    pub line_no: u32,
}

/// The first `limit` of an account's lines in the range that come after `after` in ledger order: a keyset page.
///
/// The bound is spelled out rather than written as a tuple comparison, which 18.16 does not index; its leading
/// `voucher_date >= …` lets the primary key skip the granules before the key, so a deep page reads no more than a
/// first one.
pub async fn ledger_lines_after(
    ch: &Client,
    company: Uuid,
    account: Uuid,
    (from, to): (NaiveDate, NaiveDate),
    after: &LedgerKey,
    limit: u32,
) -> Result<Vec<LedgerLine>> {
    let day = date(after.voucher_date);
    let rows: Vec<LineRow> = timed(
        "ledger_entries_after",
        ch.query(&format!(
            "SELECT {VOUCHER_DAY} AS voucher_day, voucher_number, line_no, voucher_id, voucher_type, partner_id,
                    description, debit, credit
             FROM ledger_lines
             WHERE {} AND voucher_date >= {day}
               AND (voucher_date > {day} OR voucher_number > ? OR (voucher_number = ? AND line_no > {}))
             {LEDGER_ORDER} {ONE_PER_LINE} LIMIT {limit}",
            ledger_range(company, account, from, to),
            after.line_no,
        ))
        .bind(after.voucher_number.as_str())
        .bind(after.voucher_number.as_str())
        .fetch_all(),
    )
    .await?;
    Ok(rows.into_iter().map(LedgerLine::from).collect())
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
            "SELECT {VOUCHER_DAY} AS voucher_day, voucher_number, line_no, voucher_id, voucher_type, partner_id,
                    description, debit, credit
             FROM ledger_lines WHERE {} {LEDGER_ORDER} {ONE_PER_LINE} LIMIT {offset}, {limit}",
            ledger_range(company, account, from, to),
        ))
        .fetch_all(),
    )
    .await?;
    Ok(rows.into_iter().map(LedgerLine::from).collect())
}

/// The month the company's fiscal year starts in, as stored in `company_settings` (newest version); `None` for a
/// company with no settings row yet.
pub async fn fiscal_start_month(ch: &Client, company: Uuid) -> Result<Option<u8>> {
    let sql = format!(
        "SELECT argMax(fiscal_start_month, version) AS start_month FROM company_settings WHERE company_id = {} GROUP BY company_id",
        uuid_literal(&company)
    );
    Ok(timed("fiscal_start_month", ch.query(&sql).fetch_optional::<u8>()).await?)
}

/// A balance snapshot as its head names it: the sequence it covers and when it was written (to the second). Two
/// computations of one snapshot write equal rows, so either names the same sums; a rebuild writes its snapshots anew,
/// at a later second, into tables that start without the old ones. `seq` 0 is "no snapshot": every balance row is
/// above it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SnapshotHead {
    pub seq: i64,
    pub created_at: u32,
}

/// The SQL of the company's newest snapshot head, `(0, 0)` when it has none: the highest sequence, and of its heads
/// the latest written.
fn newest_head_sql(company: Uuid) -> String {
    format!("SELECT max(tuple(upto_seq, toUInt32(created_at))) FROM snapshot_heads WHERE company_id = {}", uuid_literal(&company))
}

/// The SQL of whether the head `head` is still in `snapshot_heads` (its rows counted): a head goes with its snapshot's
/// rows (retention drops both by the hour), and a rebuild swaps in tables without it. "No snapshot" always holds.
fn head_count_sql(head: SnapshotHead) -> String {
    if head.seq == 0 {
        return "toUInt64(1)".to_owned();
    }
    format!("countIf(upto_seq = {} AND toUInt32(created_at) = {})", head.seq, head.created_at)
}

/// The SQL of a scalar subquery giving `((newest sequence, its latest second), rows of head)` from the company's heads,
/// one read of `snapshot_heads` for both: the newest head as in [`newest_head_sql`] and whether `head` is still there as
/// in [`head_count_sql`].
fn heads_sql(company: Uuid, head: SnapshotHead) -> String {
    format!(
        "(SELECT tuple(max(tuple(upto_seq, toUInt32(created_at))), {}) FROM snapshot_heads WHERE company_id = {})",
        head_count_sql(head),
        uuid_literal(&company)
    )
}

/// The SQL of the company's fiscal start month (0 when it has no settings row yet), as a scalar subquery.
fn start_month_sql(company: Uuid) -> String {
    format!("(SELECT argMax(fiscal_start_month, version) FROM company_settings WHERE company_id = {})", uuid_literal(&company))
}

/// The SQL of a `Date` column as `YYYY-MM-DD` text, the same on every ClickHouse: 18.16's `toString` writes the
/// first day it has, 1970-01-01, as `0000-00-00` (current releases write `1970-01-01`). That day is a voucher date like
/// any other (`VOUCHER_DATE_MIN`); before the reads went through these, every balance report of a company with a
/// voucher in January 1970 answered 500, and its ledger showed the day as `0000-00-00` (28 Nov, found by schemathesis).
macro_rules! date_text_sql {
    ($date:literal) => {
        concat!("if(", $date, " = toDate(0), '1970-01-01', toString(", $date, "))")
    };
}
/// A ledger line's voucher date as text (see [`date_text_sql`]).
const VOUCHER_DAY: &str = date_text_sql!("voucher_date");
/// The first day of a ledger line's month as text.
const MONTH_DAY: &str = date_text_sql!("toStartOfMonth(voucher_date)");
/// A balance row's month as text.
const PERIOD_TEXT: &str = date_text_sql!("period");
/// The earliest month of balance rows as text.
const FIRST_PERIOD_TEXT: &str = date_text_sql!("min(period)");

/// Month rows as sent: (account id, first day of the month, debit sum, credit sum) as text, then the lines counted and
/// how many of the rows summed did not count them (`line_count` 0).
type MonthText = (String, String, String, String, u64, u64);

/// Month rows as sent, back as [`MonthSums`].
fn month_sums(rows: Vec<MonthText>) -> Result<Vec<MonthSums>> {
    rows.into_iter()
        .map(|(account, period, debit, credit, lines, uncounted)| {
            Ok(MonthSums {
                account_id: account.parse().map_err(|e| Error::Other(format!("ClickHouse account id {account:?}: {e}")))?,
                period: NaiveDate::parse_from_str(&period, "%Y-%m-%d")
                    .map_err(|e| Error::Other(format!("ClickHouse period {period:?}: {e}")))?,
                movement: Movement::new(wide(&debit)?, wide(&credit)?),
                lines,
                uncounted: uncounted > 0,
            })
        })
        .collect()
}

/// The company's newest snapshot head.
pub async fn newest_head(ch: &Client, company: Uuid) -> Result<SnapshotHead> {
    let (seq, created_at) = timed("balance_newest_head", ch.query(&newest_head_sql(company)).fetch_one::<(i64, u32)>()).await?;
    Ok(SnapshotHead { seq, created_at })
}

#[derive(Debug, Row, Deserialize)]
struct SnapshotMonthsRow {
    heads: ((i64, u32), u64),
    rows: Vec<MonthText>,
}

/// The rows of the snapshot `head` names, per account and month; `None` when the head is gone (see
/// [`head_count_sql`]). The head is checked in the statement that reads the rows, so both come from the same version
/// of the tables; a head is written only once its rows are durable, so a head that is there has all of them. Empty
/// for "no snapshot", without a read.
pub async fn snapshot_months(ch: &Client, company: Uuid, head: SnapshotHead) -> Result<Option<Vec<MonthSums>>> {
    if head.seq == 0 {
        return Ok(Some(Vec::new()));
    }
    // A snapshot written twice has each row twice: the newest copy is taken. Copies written by one statement are
    // equal; a later one is a repair (stream-workers rewrites a snapshot the reconciler found wrong), so it wins.
    let sql = format!(
        "SELECT {} AS heads_found,
                groupArray(tuple(toString(account_id), {PERIOD_TEXT}, debit_text, credit_text, line_sum, uncounted_rows)) AS month_rows
         FROM (SELECT account_id, period, toString(argMax(debit, created_at)) AS debit_text,
                      toString(argMax(credit, created_at)) AS credit_text, toUInt64(argMax(line_count, created_at)) AS line_sum,
                      toUInt64(argMax(line_count, created_at) = 0) AS uncounted_rows
               FROM balance_snapshots WHERE company_id = {} AND upto_seq = {} GROUP BY account_id, period)",
        heads_sql(company, head),
        uuid_literal(&company),
        head.seq
    );
    let row: SnapshotMonthsRow = timed("balance_snapshot_rows", ch.query(&sql).fetch_one()).await?;
    if row.heads.1 == 0 {
        return Ok(None);
    }
    month_sums(row.rows).map(Some)
}

#[derive(Debug, Row, Deserialize)]
struct TailRow {
    start_month: u8,
    heads: ((i64, u32), u64),
    rows: Vec<MonthText>,
}

/// What one read of the balances above a snapshot gives: the fiscal start month, the newest head and whether the
/// snapshot read above is still there (when the heads were checked), and the `period_balances` rows above it summed per
/// account and month.
#[derive(Debug)]
pub struct Tail {
    pub fiscal_start_month: Option<u8>,
    /// `None` when the heads were not checked.
    pub newest: Option<SnapshotHead>,
    /// True when the heads were not checked.
    pub head_exists: bool,
    pub rows: Vec<MonthSums>,
}

/// The `period_balances` rows above the snapshot `head` (collapsed with FINAL) summed per account and month, with the
/// company's fiscal start month and, with `check_heads`, its newest snapshot head and whether `head` is still there, in
/// one statement (so the check and the rows come from the same version of the tables, as in [`snapshot_months`]).
/// Without `check_heads` the statement reads two tables instead of three: `snapshot_heads` is written by every
/// snapshot, so it has the most parts, and on 18.16 each part read costs a fixed share of a millisecond.
pub async fn balance_tail(ch: &Client, company: Uuid, head: SnapshotHead, check_heads: bool) -> Result<Tail> {
    let heads = if check_heads { heads_sql(company, head) } else { "tuple(tuple(toInt64(0), toUInt32(0)), toUInt64(1))".to_owned() };
    let sql = format!(
        "SELECT {} AS start_month, {heads} AS heads_found,
                groupArray(tuple(toString(account_id), {PERIOD_TEXT}, debit_text, credit_text, line_sum, uncounted_rows)) AS month_rows
         FROM (SELECT account_id, period, {} AS debit_text, {} AS credit_text, toUInt64(sum(line_count)) AS line_sum,
                      toUInt64(countIf(line_count = 0)) AS uncounted_rows
               FROM period_balances FINAL WHERE company_id = {} AND company_seq > {} GROUP BY account_id, period)",
        start_month_sql(company),
        wide_sum("debit"),
        wide_sum("credit"),
        uuid_literal(&company),
        head.seq
    );
    let row: TailRow = timed("balance_tail", ch.query(&sql).fetch_one()).await?;
    let ((seq, created_at), found) = row.heads;
    Ok(Tail {
        fiscal_start_month: (row.start_month != 0).then_some(row.start_month),
        newest: check_heads.then_some(SnapshotHead { seq, created_at }),
        head_exists: found != 0,
        rows: month_sums(row.rows)?,
    })
}

#[derive(Debug, Row, Deserialize)]
struct BucketRow {
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    bucket: u8,
    debit: String,
    credit: String,
}

/// Per account and date bucket, the debits and credits of the company's ledger lines (of one department, if given)
/// dated from `from` (inclusive; `None` from the first posting) through `through` (inclusive). `cuts` are ascending
/// dates: bucket 0 lies before `cuts[0]`, bucket `i` from `cuts[i - 1]` up to `cuts[i]`, the last bucket from the last
/// cut on.
pub async fn bucket_sums(
    ch: &Client,
    company: Uuid,
    department: Option<Uuid>,
    from: Option<NaiveDate>,
    cuts: &[NaiveDate],
    through: NaiveDate,
) -> Result<Vec<BucketSums>> {
    // Lines are collapsed with FINAL. Whole months of balances come from `crate::balances` instead.
    let (rows, col, (debit, credit), name) = (
        format!("ledger_lines FINAL WHERE company_id = {}", uuid_literal(&company)),
        "voucher_date",
        ("debit", "credit"),
        "bucket_sums_lines",
    );
    let mut filter = department.map(|d| format!(" AND department_id = {}", uuid_literal(&d))).unwrap_or_default();
    if let Some(from) = from {
        filter.push_str(&format!(" AND {col} >= {}", date(from)));
    }
    let bucket = if cuts.is_empty() {
        "toUInt8(0)".to_owned()
    } else {
        let arms: Vec<String> = cuts.iter().enumerate().map(|(i, c)| format!("{col} < {}, {i}", date(*c))).collect();
        format!("toUInt8(multiIf({}, {}))", arms.join(", "), cuts.len())
    };
    let sql = format!(
        "SELECT account_id, {bucket} AS bucket_no, {} AS debit_sum, {} AS credit_sum
         FROM {rows}{filter} AND {col} <= {}
         GROUP BY account_id, bucket_no",
        wide_sum(debit),
        wide_sum(credit),
        date(through),
    );
    let rows: Vec<BucketRow> = timed(name, ch.query(&sql).fetch_all()).await?;
    rows.into_iter()
        .map(|r| Ok(BucketSums { account_id: r.account_id, bucket: r.bucket, movement: Movement::new(wide(&r.debit)?, wide(&r.credit)?) }))
        .collect()
}

#[derive(Debug, Row, Deserialize)]
struct PartnerRow {
    #[serde(with = "clickhouse::serde::uuid")]
    partner_id: Uuid,
    known: u8,
    code: String,
    name: String,
    business_number: String,
    partner_type: String,
    is_active: u8,
}

impl PartnerRow {
    fn info(&self) -> PartnerInfo {
        let known = self.known != 0;
        let text = |s: &String| known.then(|| s.clone());
        PartnerInfo {
            partner_id: self.partner_id,
            partner_code: text(&self.code),
            partner_name: text(&self.name),
            business_number: text(&self.business_number),
            partner_type: text(&self.partner_type),
            is_active: known.then_some(self.is_active != 0),
        }
    }
}

/// One partner from the `partners` dimension (newest version); `None` while the dimension does not have it.
pub async fn partner(ch: &Client, company: Uuid, partner: Uuid) -> Result<Option<PartnerInfo>> {
    let sql = format!(
        "SELECT partner_id, toUInt8(1) AS known, argMax(code, version) AS code_text, argMax(name, version) AS name_text,
                argMax(business_number, version) AS number_text, argMax(partner_type, version) AS type_text,
                argMax(is_active, version) AS active_flag
         FROM partners WHERE company_id = {} AND partner_id = {} GROUP BY partner_id",
        uuid_literal(&company),
        uuid_literal(&partner)
    );
    let row: Option<PartnerRow> = timed("partner", ch.query(&sql).fetch_optional()).await?;
    Ok(row.map(|r| r.info()))
}

#[derive(Debug, Row, Deserialize)]
struct PartnerBalanceRow {
    #[serde(with = "clickhouse::serde::uuid")]
    partner_id: Uuid,
    known: u8,
    code: String,
    name: String,
    business_number: String,
    partner_type: String,
    is_active: u8,
    receivable_debit: String,
    receivable_credit: String,
    payable_debit: String,
    payable_credit: String,
}

/// The partners of a company with their balances on the receivable and payable accounts (`Uuid::nil()` for one the
/// chart lacks) through `through`: every partner of the dimension and every partner named on such a line, the known
/// ones first by code, then by id. Returns one page and the number of partners.
///
/// Dimension rows and line sums are brought together with `UNION ALL` and one `GROUP BY` rather than a join, which
/// 18.16 and current servers read alike.
pub async fn partner_balances(
    ch: &Client,
    company: Uuid,
    receivable: Uuid,
    payable: Uuid,
    through: NaiveDate,
    offset: u64,
    limit: u32,
) -> Result<(Vec<PartnerBalance>, u64)> {
    let company_key = uuid_literal(&company);
    let (ar, ap) = (uuid_literal(&receivable), uuid_literal(&payable));
    let amount = |account: &str, col: &str| format!("toDecimal128(if(account_id = {account}, {col}, 0), 0)");
    let zero = "toDecimal128(0, 0)";
    let union = format!(
        "SELECT partner_id, toUInt8(0) AS in_dimension, '' AS p_code, '' AS p_name, '' AS p_number, '' AS p_type,
                toUInt8(0) AS p_active, toUInt64(0) AS p_version,
                {} AS ar_debit, {} AS ar_credit, {} AS ap_debit, {} AS ap_credit
         FROM ledger_lines FINAL
         WHERE company_id = {company_key} AND account_id IN ({ar}, {ap}) AND partner_id != {} AND voucher_date <= {}
         UNION ALL
         SELECT partner_id, toUInt8(1), code, name, business_number, partner_type, is_active, version, {zero}, {zero}, {zero}, {zero}
         FROM partners WHERE company_id = {company_key}",
        amount(&ar, "debit"),
        amount(&ar, "credit"),
        amount(&ap, "debit"),
        amount(&ap, "credit"),
        uuid_literal(&Uuid::nil()),
        date(through),
    );
    let total: u64 = timed(
        "partner_count",
        ch.query(&format!("SELECT count() FROM (SELECT partner_id FROM ({union}) GROUP BY partner_id)")).fetch_one(),
    )
    .await?;
    let sql = format!(
        "SELECT partner_id, max(in_dimension) AS known,
                argMaxIf(p_code, p_version, in_dimension = 1) AS code_text, argMaxIf(p_name, p_version, in_dimension = 1) AS name_text,
                argMaxIf(p_number, p_version, in_dimension = 1) AS number_text,
                argMaxIf(p_type, p_version, in_dimension = 1) AS type_text,
                argMaxIf(p_active, p_version, in_dimension = 1) AS active_flag,
                toString(sum(ar_debit)) AS ar_debit_sum, toString(sum(ar_credit)) AS ar_credit_sum,
                toString(sum(ap_debit)) AS ap_debit_sum, toString(sum(ap_credit)) AS ap_credit_sum
         FROM ({union})
         GROUP BY partner_id
         ORDER BY known DESC, code_text, partner_id
         LIMIT {offset}, {limit}"
    );
    let rows: Vec<PartnerBalanceRow> = timed("partner_balances", ch.query(&sql).fetch_all()).await?;
    let page = rows
        .into_iter()
        .map(|r| {
            let partner = PartnerRow {
                partner_id: r.partner_id,
                known: r.known,
                code: r.code,
                name: r.name,
                business_number: r.business_number,
                partner_type: r.partner_type,
                is_active: r.is_active,
            };
            Ok(PartnerBalance::new(
                partner.info(),
                Movement::new(wide(&r.receivable_debit)?, wide(&r.receivable_credit)?),
                Movement::new(wide(&r.payable_debit)?, wide(&r.payable_credit)?),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((page, total))
}

/// The filter of one partner's lines on the given accounts.
fn partner_key(company: Uuid, partner: Uuid, accounts: &[Uuid]) -> String {
    let ids: Vec<String> = accounts.iter().map(uuid_literal).collect();
    // An empty IN list is a syntax error; the nil id stands for "no account" and matches no line.
    let ids = if ids.is_empty() { uuid_literal(&Uuid::nil()) } else { ids.join(", ") };
    format!("company_id = {} AND partner_id = {} AND account_id IN ({ids})", uuid_literal(&company), uuid_literal(&partner))
}

#[derive(Debug, Row, Deserialize)]
struct AccountLinesRow {
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    lines: u64,
    debit: String,
    credit: String,
}

/// Per account, the number of a partner's lines and their debits and credits dated from `from` (inclusive; `None`
/// from the first) up to `until` (exclusive).
pub async fn partner_sums(
    ch: &Client,
    company: Uuid,
    partner: Uuid,
    accounts: &[Uuid],
    from: Option<NaiveDate>,
    until: NaiveDate,
) -> Result<Vec<(Uuid, u64, Movement)>> {
    let from = from.map(|f| format!(" AND voucher_date >= {}", date(f))).unwrap_or_default();
    let sql = format!(
        "SELECT account_id, count() AS line_count, {} AS debit_sum, {} AS credit_sum FROM ledger_lines FINAL
         WHERE {}{from} AND voucher_date < {} GROUP BY account_id",
        wide_sum("debit"),
        wide_sum("credit"),
        partner_key(company, partner, accounts),
        date(until),
    );
    let rows: Vec<AccountLinesRow> = timed("partner_sums", ch.query(&sql).fetch_all()).await?;
    rows.into_iter().map(|r| Ok((r.account_id, r.lines, Movement::new(wide(&r.debit)?, wide(&r.credit)?)))).collect()
}

fn partner_range(company: Uuid, partner: Uuid, accounts: &[Uuid], from: NaiveDate, to: NaiveDate) -> String {
    format!("{} AND voucher_date >= {} AND voucher_date <= {}", partner_key(company, partner, accounts), date(from), date(to))
}

/// Debits and credits of the first `offset` lines of a partner's range in ledger order: what earlier pages carried.
pub async fn partner_carry(
    ch: &Client,
    company: Uuid,
    partner: Uuid,
    accounts: &[Uuid],
    (from, to): (NaiveDate, NaiveDate),
    offset: u64,
) -> Result<Movement> {
    if offset == 0 {
        return Ok(Movement::default());
    }
    let before: TwoSums = timed(
        "partner_page_carry",
        ch.query(&format!(
            "SELECT {} AS debit_sum, {} AS credit_sum FROM
             (SELECT debit, credit FROM ledger_lines FINAL WHERE {} {LEDGER_ORDER} LIMIT {offset})",
            wide_sum("debit"),
            wide_sum("credit"),
            partner_range(company, partner, accounts, from, to),
        ))
        .fetch_one(),
    )
    .await?;
    let (debit, credit) = before.pair()?;
    Ok(Movement::new(debit, credit))
}

#[derive(Debug, Row, Deserialize)]
struct PartnerLineRow {
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
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

/// One page of a partner's lines on the given accounts in the range, in ledger order (date, voucher number, line).
pub async fn partner_lines(
    ch: &Client,
    company: Uuid,
    partner: Uuid,
    accounts: &[Uuid],
    (from, to): (NaiveDate, NaiveDate),
    offset: u64,
    limit: u32,
) -> Result<Vec<PartnerLine>> {
    let rows: Vec<PartnerLineRow> = timed(
        "partner_entries",
        ch.query(&format!(
            "SELECT account_id, {VOUCHER_DAY} AS voucher_day, voucher_number, line_no, voucher_id, voucher_type,
                    partner_id, description, debit, credit
             FROM ledger_lines FINAL WHERE {} {LEDGER_ORDER} LIMIT {offset}, {limit}",
            partner_range(company, partner, accounts, from, to),
        ))
        .fetch_all(),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PartnerLine {
            account_id: r.account_id,
            line: LineRow {
                voucher_day: r.voucher_day,
                voucher_number: r.voucher_number,
                line_no: r.line_no,
                voucher_id: r.voucher_id,
                voucher_type: r.voucher_type,
                partner_id: r.partner_id,
                description: r.description,
                debit: r.debit,
                credit: r.credit,
            }
            .into(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(account: Uuid, period: &str, debit: i128, lines: u64, uncounted: bool) -> MonthSums {
        MonthSums {
            account_id: account,
            period: NaiveDate::parse_from_str(period, "%Y-%m-%d").unwrap(),
            movement: Movement::new(debit, 0),
            lines,
            uncounted,
        }
    }

    /// The accounts posted to are read for each company's span of sequence, bounds exclusive below and inclusive
    /// above, in one statement.
    #[test]
    fn touched_accounts_read_each_span() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let sql = super::touched_accounts_sql(&[(a, 5, 9), (b, 0, 3)]);
        assert!(sql.contains(&format!("(company_id = toUUID('{a}') AND company_seq > 5 AND company_seq <= 9) OR ")), "{sql}");
        assert!(sql.contains(&format!("(company_id = toUUID('{b}') AND company_seq > 0 AND company_seq <= 3)")), "{sql}");
        assert!(sql.contains("FROM period_balances") && sql.ends_with("GROUP BY company_id, account_id"), "{sql}");
    }

    /// A ledger of whole months is totalled from the month rows alone: the months before it make the opening, its
    /// own months the totals. A range with ragged ends, or a month of it that did not count its lines, needs the lines.
    #[test]
    fn held_ledger_totals_serve_whole_counted_months_only() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let snapshot = [month(a, "2024-12-01", 100, 4, false), month(a, "2025-02-01", 10, 2, false), month(b, "2025-02-01", 99, 9, false)];
        let tail = [month(a, "2025-02-01", 5, 1, false), month(a, "2025-12-01", 7, 3, false), month(a, "2026-01-01", 1000, 1, false)];
        let months = [snapshot.as_slice(), tail.as_slice()];
        let (opening, got) = held_ledger_totals(&months, a, (d("2025-01-01"), d("2025-12-31"))).expect("a whole year");
        assert_eq!(opening, (100, 0));
        let seen: Vec<(String, u64, i128)> = got.iter().map(|m| (m.month.to_string(), m.lines, m.debit)).collect();
        assert_eq!(seen, vec![("2025-02-01".to_owned(), 3, 15), ("2025-12-01".to_owned(), 3, 7)]);
        let (opening, got) = held_ledger_totals(&months, a, (d("2025-02-01"), d("2025-02-28"))).expect("a whole month");
        assert_eq!((opening, got.len()), ((100, 0), 1));

        assert!(held_ledger_totals(&months, a, (d("2025-01-02"), d("2025-12-31"))).is_none(), "ragged start");
        assert!(held_ledger_totals(&months, a, (d("2025-01-01"), d("2025-12-30"))).is_none(), "ragged end");
        assert!(held_ledger_totals(&months, a, (d("2025-01-10"), d("2025-01-20"))).is_none(), "within a month");
        let uncounted = [month(a, "2025-12-01", 7, 0, true)];
        assert!(held_ledger_totals(&[&snapshot, &uncounted], a, (d("2025-01-01"), d("2025-12-31"))).is_none(), "uncounted month");
        let (opening, _) =
            held_ledger_totals(&[&uncounted, &snapshot], a, (d("2026-01-01"), d("2026-12-31"))).expect("uncounted before it");
        assert_eq!(opening, (117, 0), "a month before the range is summed whether or not it counted lines");
    }

    /// An account's months from a snapshot's rows and the tail's: a month in both is added up (uncounted if either
    /// is), months after `through` and other accounts are left out, and the months come in order.
    #[test]
    fn balance_months_add_the_snapshot_and_the_tail_per_month() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let snapshot = [month(a, "2025-03-01", 10, 2, false), month(a, "2025-01-01", 5, 1, false), month(b, "2025-01-01", 99, 9, false)];
        let tail = [month(a, "2025-03-01", 7, 1, true), month(a, "2025-04-01", 1, 1, false), month(a, "2025-02-01", 3, 3, false)];
        let got = balance_months(&[&snapshot, &tail], a, NaiveDate::from_ymd_opt(2025, 3, 1).unwrap());
        let seen: Vec<(String, u64, i128, bool)> =
            got.iter().map(|m| (m.totals.month.to_string(), m.totals.lines, m.totals.debit, m.uncounted)).collect();
        assert_eq!(
            seen,
            vec![("2025-01-01".to_owned(), 1, 5, false), ("2025-02-01".to_owned(), 3, 3, false), ("2025-03-01".to_owned(), 3, 17, true),]
        );
    }
}
