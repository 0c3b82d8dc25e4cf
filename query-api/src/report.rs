//! Report arithmetic with no IO: aggregated sums in, contract-shaped trial balances, ledgers, income statements,
//! balance sheets and partner ledgers out.
//!
//! Fiscal years: income-statement accounts (classes 4–8) start each fiscal year at zero, and the net income of every
//! earlier fiscal year is added to retained earnings (3201) as a virtual closing, so a trial balance still balances and
//! the balance sheet satisfies assets = liabilities + equity without any closing voucher.
//!
//! Opening and closing columns of the trial balance are *net* balances shown on their side (a debit balance in the
//! debit column, a credit balance in the credit column); period columns are the month's movements. With that
//! convention every pair of total columns is equal whenever the postings balance.
//!
//! Sums are `i128`: a line is at most 10^15 won, so a few maximal vouchers already pass `i64::MAX` on one account.
//! ClickHouse sums them in Decimal128 and this module keeps them wide, so no balance or total can overflow.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use kerp_core::chart::AccountType;
use kerp_core::voucher::VOUCHER_DATE_MIN;
use serde::Serialize;
use uuid::Uuid;

/// Per-account sums read from `period_balances`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSums {
    pub account_id: Uuid,
    pub opening_debit: i128,
    pub opening_credit: i128,
    pub period_debit: i128,
    pub period_credit: i128,
}

/// Name and class of an account, from the `accounts` dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub account_id: Uuid,
    pub code: String,
    pub name: String,
    pub account_type: String,
}

/// The six amount columns of a trial balance, for one account or as totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Columns {
    pub opening_debit: i128,
    pub opening_credit: i128,
    pub period_debit: i128,
    pub period_credit: i128,
    pub closing_debit: i128,
    pub closing_credit: i128,
}

impl std::ops::AddAssign for Columns {
    fn add_assign(&mut self, o: Self) {
        self.opening_debit += o.opening_debit;
        self.opening_credit += o.opening_credit;
        self.period_debit += o.period_debit;
        self.period_credit += o.period_credit;
        self.closing_debit += o.closing_debit;
        self.closing_credit += o.closing_credit;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TrialBalanceLine {
    pub account_id: Uuid,
    pub account_code: String,
    pub account_name: String,
    pub account_type: String,
    #[serde(flatten)]
    pub columns: Columns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TrialBalance {
    pub year: i32,
    pub month: u32,
    pub accounts: Vec<TrialBalanceLine>,
    pub totals: Columns,
}

/// A net balance split onto its side: (debit column, credit column).
fn sides(net: i128) -> (i128, i128) {
    if net >= 0 {
        (net, 0)
    } else {
        (0, -net)
    }
}

/// Builds the trial balance. Accounts without any posting up to the month are left out; the rest are ordered by code.
/// An account missing from the dimension (not expected) is still listed, under an empty code, so totals stay whole.
#[must_use]
pub fn trial_balance(year: i32, month: u32, sums: &[AccountSums], infos: &[AccountInfo]) -> TrialBalance {
    let infos: HashMap<Uuid, &AccountInfo> = infos.iter().map(|i| (i.account_id, i)).collect();
    let mut accounts: Vec<TrialBalanceLine> = sums
        .iter()
        .filter(|s| s.opening_debit != 0 || s.opening_credit != 0 || s.period_debit != 0 || s.period_credit != 0)
        .map(|s| {
            let info = infos.get(&s.account_id);
            let opening = s.opening_debit - s.opening_credit;
            let closing = opening + s.period_debit - s.period_credit;
            let (opening_debit, opening_credit) = sides(opening);
            let (closing_debit, closing_credit) = sides(closing);
            TrialBalanceLine {
                account_id: s.account_id,
                account_code: info.map(|i| i.code.clone()).unwrap_or_default(),
                account_name: info.map(|i| i.name.clone()).unwrap_or_default(),
                account_type: info.map(|i| i.account_type.clone()).unwrap_or_default(),
                columns: Columns {
                    opening_debit,
                    opening_credit,
                    period_debit: s.period_debit,
                    period_credit: s.period_credit,
                    closing_debit,
                    closing_credit,
                },
            }
        })
        .collect();
    accounts.sort_by(|a, b| a.account_code.cmp(&b.account_code).then(a.account_id.cmp(&b.account_id)));
    let mut totals = Columns::default();
    for a in &accounts {
        totals += a.columns;
    }
    TrialBalance { year, month, accounts, totals }
}

/// The first day of `d`'s month.
#[must_use]
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// Whether an account's balance is shown as debit minus credit (assets, expenses) or credit minus debit.
#[must_use]
pub fn debit_normal(account_type: &str) -> bool {
    AccountType::parse(account_type).is_none_or(AccountType::is_debit_normal)
}

/// The signed effect of a movement on a balance kept on the account's normal side.
#[must_use]
pub fn signed(debit_normal: bool, debit: i128, credit: i128) -> i128 {
    if debit_normal {
        debit - credit
    } else {
        credit - debit
    }
}

/// One ledger line as read from ClickHouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LedgerLine {
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub voucher_date: String,
    pub voucher_number: String,
    pub line_no: u32,
    pub voucher_id: Uuid,
    pub voucher_type: String,
    pub partner_id: Option<Uuid>,
    pub description: String,
    pub debit: i64,
    pub credit: i64,
}

/// A ledger line with the running balance after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    #[serde(flatten)]
    pub line: LedgerLine,
    pub balance: i128,
}

/// Adds the running balance to ordered lines, starting from `start` (the opening balance carried to this page).
#[must_use]
pub fn running(debit_normal: bool, start: i128, lines: Vec<LedgerLine>) -> Vec<LedgerEntry> {
    let mut balance = start;
    lines
        .into_iter()
        .map(|line| {
            balance += signed(debit_normal, line.debit.into(), line.credit.into());
            LedgerEntry { line, balance }
        })
        .collect()
}

/// Where an offset page of a ledger lies, found from the range's monthly totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageStart {
    /// The page's lines are read from this day on: the range's start, or the first day of the month the page
    /// starts in.
    pub from: NaiveDate,
    /// ... up to this day: the last day of the month the page ends in (or of the range). `ledger_lines` is sorted
    /// by company, account and date, so the page's reads touch only its own months' granules.
    pub to: NaiveDate,
    /// Lines to skip from `from` on: the page's place inside its first month.
    pub skip: u64,
    /// Debits and credits of the range's whole months before that month.
    pub carried_debit: i128,
    pub carried_credit: i128,
}

/// The start of the page of `limit` lines that begins `offset` lines into a ledger range whose lines per month are
/// `months` (ascending, as [`crate::store::ledger_months`] gives them), or `None` when the range has no more than
/// `offset` lines. The balance carried into the page is then the whole months before it plus at most one month of
/// lines, however deep the page.
#[must_use]
pub fn locate_page(
    (range_from, range_to): (NaiveDate, NaiveDate),
    months: &[crate::store::MonthTotals],
    offset: u64,
    limit: u32,
) -> Option<PageStart> {
    let (mut before, mut debit, mut credit) = (0u64, 0i128, 0i128);
    for m in months {
        if before + m.lines > offset {
            return Some(PageStart {
                from: range_from.max(m.month),
                to: page_end(range_to, months, offset + u64::from(limit.max(1)) - 1),
                skip: offset - before,
                carried_debit: debit,
                carried_credit: credit,
            });
        }
        before += m.lines;
        debit += m.debit;
        credit += m.credit;
    }
    None
}

/// The last day a read must reach to see the line at `last` (counted from 0) of a ledger range: the end of the month
/// that holds it, or the range's end when the range has no such line.
#[must_use]
pub fn page_end(range_to: NaiveDate, months: &[crate::store::MonthTotals], last: u64) -> NaiveDate {
    let mut before = 0u64;
    for m in months {
        before += m.lines;
        if before > last {
            return month_end(m.month.year(), m.month.month()).map_or(range_to, |end| end.min(range_to));
        }
    }
    range_to
}

/// A ledger page's lines read from where the page starts before the range's months were known: the first lines of
/// `account` from the range's first day, or after a cursor's line, through `end`, at most a page of them.
#[derive(Debug)]
pub struct EarlyPage {
    pub account: Uuid,
    pub end: NaiveDate,
    pub lines: Vec<LedgerLine>,
}

impl EarlyPage {
    /// Whether the read is the page of `limit` lines of `account` in a range ending `to`: it read that account, and
    /// took `limit` lines (every later line lies after `end`, so after them in ledger order) or all there are up to
    /// the range's end. A shorter read that stopped before `to` may lack lines that belong on the page.
    #[must_use]
    pub fn is_page(&self, account: Uuid, limit: u32, to: NaiveDate) -> bool {
        self.account == account && (self.lines.len() == limit as usize || self.end == to)
    }
}

/// How far a page read that starts at `first_day` should reach so that it likely holds `limit` lines, judged from a
/// held balance snapshot's month rows (`rows`, any order) before the page's own balances are read: the end of the
/// first month by which the account's counted lines reach `limit`, or `to` when they never do.
///
/// The first month's lines count only when the read takes the whole of it (`whole_first_month`: a first page from a
/// month's first day); a cursor or a range that starts mid-month reads only part of it. Why a guess is safe: a read of
/// `limit` lines up to the returned day is the page whatever the counts were, since every line after that day comes
/// later in ledger order, and a read that reaches `to` is the whole rest of the range. Any other read is let go and the
/// page is read after its balances, as without the guess. The snapshot's counts only make the guess good more often:
/// lines are added after it, so it counts at most the lines there are (a month counted before balance rows counted
/// lines counts as none).
#[must_use]
pub fn early_page_end(
    rows: &[MonthSums],
    account: Uuid,
    first_day: NaiveDate,
    whole_first_month: bool,
    to: NaiveDate,
    limit: u32,
) -> NaiveDate {
    let first_month = month_start(first_day);
    let mut months: Vec<(NaiveDate, u64)> = rows
        .iter()
        .filter(|r| r.account_id == account && r.period >= first_month && r.period <= to && !r.uncounted)
        .filter(|r| whole_first_month || r.period > first_month)
        .map(|r| (r.period, r.lines))
        .collect();
    months.sort_unstable();
    let mut lines = 0u64;
    for (month, n) in months {
        lines += n;
        if lines >= u64::from(limit) {
            return month_end(month.year(), month.month()).map_or(to, |end| end.min(to));
        }
    }
    to
}

// ---------------------------------------------------------------------------------------------------------------------
// Fiscal years and the virtual closing
// ---------------------------------------------------------------------------------------------------------------------

/// The month a fiscal year starts in for a company that has set none (or whose setting is out of range): January.
pub const FISCAL_START_MONTH_DEFAULT: u32 = 1;
/// Retained earnings (이익잉여금): the account that takes the net income of every closed fiscal year.
pub const RETAINED_EARNINGS_CODE: &str = "3201";
/// Korean name of retained earnings, for a company whose chart has not reached ClickHouse yet.
pub const RETAINED_EARNINGS_NAME: &str = "이익잉여금";
/// Accounts receivable (외상매출금), the partner ledger's receivable side.
pub const RECEIVABLE_CODE: &str = "1103";
/// Accounts payable (외상매입금), the partner ledger's payable side.
pub const PAYABLE_CODE: &str = "2101";

/// The fiscal start month a company's stored setting stands for: the setting when it is a month, January otherwise.
#[must_use]
pub fn fiscal_start_month(stored: Option<u8>) -> u32 {
    stored.map(u32::from).filter(|m| (1..=12).contains(m)).unwrap_or(FISCAL_START_MONTH_DEFAULT)
}

/// The first day of the fiscal year that `day` falls in, for a fiscal year starting in `start_month` (1 to 12).
///
/// A year starting in April runs from April 1 to March 31, so March 2025 belongs to the year that began on
/// 2024-04-01.
#[must_use]
pub fn fiscal_year_start(day: NaiveDate, start_month: u32) -> NaiveDate {
    let start_month = if (1..=12).contains(&start_month) { start_month } else { FISCAL_START_MONTH_DEFAULT };
    let year = if day.month() >= start_month { day.year() } else { day.year() - 1 };
    // Day 1 of a month from 1 to 12 exists in every year chrono can hold a `day` of.
    NaiveDate::from_ymd_opt(year, start_month, 1).unwrap_or(day)
}

/// How a day range splits for the ledger's monthly totals: the whole months inside it (the first day of the first
/// and of the last), whose totals the balances give, and the days before and after them, which are counted from the
/// lines. `None` for whole months when the range holds none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthSplit {
    pub whole: Option<(NaiveDate, NaiveDate)>,
    pub head: Option<(NaiveDate, NaiveDate)>,
    pub tail: Option<(NaiveDate, NaiveDate)>,
}

/// Splits `from..=to` (see [`MonthSplit`]).
#[must_use]
pub fn split_months(from: NaiveDate, to: NaiveDate) -> MonthSplit {
    let first = if from.day() == 1 { Some(from) } else { month_end(from.year(), from.month()).and_then(|e| e.succ_opt()) };
    let last_end = if month_end(to.year(), to.month()) == Some(to) { Some(to) } else { month_start(to).pred_opt() };
    match (first, last_end) {
        (Some(first), Some(last_end)) if first <= last_end && from <= to => MonthSplit {
            whole: Some((first, month_start(last_end))),
            head: (from < first).then(|| (from, first.pred_opt().unwrap_or(from))),
            tail: (last_end < to).then(|| (last_end.succ_opt().unwrap_or(to), to)),
        },
        _ => MonthSplit { whole: None, head: (from <= to).then_some((from, to)), tail: None },
    }
}

/// The last day of a month.
#[must_use]
pub fn month_end(year: i32, month: u32) -> Option<NaiveDate> {
    let next = if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) };
    next?.pred_opt()
}

/// How a balance up to and including `day` is read: whole months from `period_balances` through the returned month
/// end (`None` when `day` is in the first month there can be data for), then the days of `day`'s month from
/// `ledger_lines` (`None` when `day` is a month end, so the balances cover it all).
#[must_use]
pub fn split_at_month(day: NaiveDate) -> (Option<NaiveDate>, Option<(NaiveDate, NaiveDate)>) {
    let first = month_start(day);
    if day.succ_opt().is_none_or(|next| next.day() == 1) {
        return (Some(day), None);
    }
    (first.pred_opt().filter(|d| *d >= VOUCHER_DATE_MIN), Some((first, day)))
}

/// The class of an account: by its four-digit code when it has one (the code decides the statement), by the class the
/// dimension carried otherwise. `None` for an account the dimension does not have.
#[must_use]
pub fn class_of(info: Option<&AccountInfo>) -> Option<AccountType> {
    let info = info?;
    AccountType::from_code(&info.code).or_else(|| AccountType::parse(&info.account_type))
}

/// Whether an account belongs to the income statement (revenue, expense): such accounts start each fiscal year at zero.
#[must_use]
pub fn is_income_statement(class: Option<AccountType>) -> bool {
    matches!(class, Some(AccountType::Revenue | AccountType::Expense))
}

/// Debits and credits on an account over some stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Movement {
    pub debit: i128,
    pub credit: i128,
}

impl Movement {
    #[must_use]
    pub fn new(debit: i128, credit: i128) -> Self {
        Self { debit, credit }
    }

    /// Debit minus credit.
    #[must_use]
    pub fn net_debit(self) -> i128 {
        self.debit - self.credit
    }

    /// Credit minus debit.
    #[must_use]
    pub fn net_credit(self) -> i128 {
        self.credit - self.debit
    }

    #[must_use]
    pub fn is_zero(self) -> bool {
        self.debit == 0 && self.credit == 0
    }
}

impl std::ops::Add for Movement {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self { debit: self.debit + o.debit, credit: self.credit + o.credit }
    }
}

impl std::ops::AddAssign for Movement {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

/// One account's movement in one of the date buckets a query asked for (bucket `i` lies between cut `i - 1` and cut
/// `i`; see `store::bucket_sums`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSums {
    pub account_id: Uuid,
    pub bucket: u8,
    pub movement: Movement,
}

/// The accounts `rows` name, in their order (with repeats).
#[must_use]
pub fn account_ids(rows: &[BucketSums]) -> Vec<Uuid> {
    rows.iter().map(|r| r.account_id).collect()
}

/// The account with this id, or this code, or both (a ledger names it either way); of accounts sharing a code, the
/// lowest id, so that the choice is stable.
#[must_use]
pub fn find_account(infos: &[AccountInfo], id: Option<Uuid>, code: Option<&str>) -> Option<AccountInfo> {
    infos
        .iter()
        .filter(|i| id.is_none_or(|id| i.account_id == id) && code.is_none_or(|c| i.code == c))
        .min_by_key(|i| i.account_id)
        .cloned()
}

/// One account's movement in one month: a row of a balance snapshot, or of the `period_balances` rows above it summed
/// by account and month (see `crate::balances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthSums {
    pub account_id: Uuid,
    /// The first day of the month.
    pub period: NaiveDate,
    pub movement: Movement,
    /// The account's ledger lines in the month, as the balance rows counted them.
    pub lines: u64,
    /// Some balance row summed here was written before balance rows counted lines, so `lines` is not the count.
    pub uncounted: bool,
}

/// What `store::bucket_sums` computes in SQL from the balances, over month rows in memory: per account and date
/// bucket, the movements of the months from `from` (inclusive; `None` from the first) through `through`'s month.
/// `cuts` are ascending first days of months: bucket 0 lies before `cuts[0]`, bucket `i` from `cuts[i - 1]` up to
/// `cuts[i]`, the last bucket from the last cut on. A month that appears in several rows (a snapshot's and the rows
/// above it) is added up. Rows come out sorted by account and bucket.
#[must_use]
pub fn bucket_months<'a>(
    rows: impl IntoIterator<Item = &'a MonthSums>,
    from: Option<NaiveDate>,
    cuts: &[NaiveDate],
    through: NaiveDate,
) -> Vec<BucketSums> {
    let through = month_start(through);
    let mut sums: BTreeMap<(Uuid, u8), Movement> = BTreeMap::new();
    for r in rows {
        if from.is_some_and(|f| r.period < f) || r.period > through {
            continue;
        }
        // At most 255 cuts are ever asked for (a report's fiscal year and month starts), so the count fits.
        let bucket = u8::try_from(cuts.iter().take_while(|c| r.period >= **c).count()).unwrap_or(u8::MAX);
        *sums.entry((r.account_id, bucket)).or_default() += r.movement;
    }
    sums.into_iter().map(|((account_id, bucket), movement)| BucketSums { account_id, bucket, movement }).collect()
}

/// Per account, the movements of `buckets` buckets, adding rows that name the same account and bucket (a balance read
/// from whole months and from the days of a partial month arrives as two sets of rows). Rows of a bucket past the
/// last are a defect of the query and ignored.
#[must_use]
pub fn pivot(rows: &[BucketSums], buckets: usize) -> Vec<(Uuid, Vec<Movement>)> {
    let mut by_account: HashMap<Uuid, Vec<Movement>> = HashMap::new();
    for r in rows {
        let slots = by_account.entry(r.account_id).or_insert_with(|| vec![Movement::default(); buckets]);
        if let Some(slot) = slots.get_mut(usize::from(r.bucket)) {
            *slot += r.movement;
        }
    }
    let mut out: Vec<_> = by_account.into_iter().collect();
    out.sort_by_key(|(id, _)| *id);
    out
}

/// The retained-earnings account of a chart: the account coded [`RETAINED_EARNINGS_CODE`], or a stand-in under the nil
/// id while the company's chart has not reached ClickHouse, so that the closed years' income still has a line.
#[must_use]
pub fn retained_earnings(infos: &[AccountInfo]) -> AccountInfo {
    infos.iter().filter(|i| i.code == RETAINED_EARNINGS_CODE).min_by_key(|i| i.account_id).cloned().unwrap_or_else(|| AccountInfo {
        account_id: Uuid::nil(),
        code: RETAINED_EARNINGS_CODE.into(),
        name: RETAINED_EARNINGS_NAME.into(),
        account_type: AccountType::Equity.as_str().into(),
    })
}

/// An inclusive range of account codes, compared as text (codes are four digits, so that is numeric order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl CodeRange {
    #[must_use]
    pub fn contains(&self, code: &str) -> bool {
        self.from.as_deref().is_none_or(|f| code >= f) && self.to.as_deref().is_none_or(|t| code <= t)
    }

    #[must_use]
    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

/// The fiscal-year trial balance of a month.
///
/// `rows` carry three buckets per account: 0 before the fiscal year, 1 from the fiscal-year start to the month, 2 the
/// month. Balance-sheet accounts open with buckets 0 and 1; income-statement accounts open with bucket 1 only, and
/// their bucket 0 (every earlier fiscal year's revenue and expense) is added to the opening of retained earnings, a
/// virtual closing entry. Since that moves amounts between accounts without creating any, the totals still balance.
///
/// With `codes` narrowed, only the accounts in the range are listed and totalled (those totals need not balance).
#[must_use]
pub fn fiscal_trial_balance(year: i32, month: u32, rows: &[BucketSums], infos: &[AccountInfo], codes: &CodeRange) -> TrialBalance {
    let by_id: HashMap<Uuid, &AccountInfo> = infos.iter().map(|i| (i.account_id, i)).collect();
    let retained = retained_earnings(infos);
    let mut closed = Movement::default();
    let mut sums: Vec<AccountSums> = Vec::new();
    for (account_id, b) in pivot(rows, 3) {
        let opening = if is_income_statement(class_of(by_id.get(&account_id).copied())) {
            closed += b[0];
            b[1]
        } else {
            b[0] + b[1]
        };
        sums.push(AccountSums {
            account_id,
            opening_debit: opening.debit,
            opening_credit: opening.credit,
            period_debit: b[2].debit,
            period_credit: b[2].credit,
        });
    }
    if !closed.is_zero() {
        match sums.iter_mut().find(|s| s.account_id == retained.account_id) {
            Some(s) => {
                s.opening_debit += closed.debit;
                s.opening_credit += closed.credit;
            }
            None => sums.push(AccountSums {
                account_id: retained.account_id,
                opening_debit: closed.debit,
                opening_credit: closed.credit,
                ..AccountSums::default()
            }),
        }
    }
    let mut all_infos = infos.to_vec();
    if !by_id.contains_key(&retained.account_id) {
        all_infos.push(retained);
    }
    let mut tb = trial_balance(year, month, &sums, &all_infos);
    if !codes.is_all() {
        tb.accounts.retain(|a| codes.contains(&a.account_code));
        tb.totals = Columns::default();
        for a in &tb.accounts {
            tb.totals += a.columns;
        }
    }
    tb
}

// ---------------------------------------------------------------------------------------------------------------------
// Income statement (손익계산서)
// ---------------------------------------------------------------------------------------------------------------------

/// The sections of the income statement an account can fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsSection {
    /// 매출액, 41xx.
    Sales,
    /// 매출원가, 51xx.
    CostOfSales,
    /// 판매비와관리비, 52xx–53xx.
    SellingAndAdministrative,
    /// 영업외수익, 42xx–49xx.
    NonOperatingIncome,
    /// 영업외비용, 5400–7999.
    NonOperatingExpenses,
    /// 법인세비용, 8xxx.
    IncomeTaxes,
}

/// The income-statement section of an account, by its code; `None` for balance-sheet accounts. An income account whose
/// code is in none of the ranges (40xx, 50xx, or no four-digit code at all) goes to the non-operating section of its
/// class, where an unusual account belongs. Which accounts are on the income statement is decided by [`class_of`], as
/// for the trial balance's closing and the balance sheet's current-year earnings, so the three always agree.
#[must_use]
pub fn is_section(info: &AccountInfo) -> Option<IsSection> {
    let code: Option<u32> =
        (info.code.len() == 4 && info.code.bytes().all(|b| b.is_ascii_digit())).then(|| info.code.parse().ok()).flatten();
    let by_code = match code {
        Some(4100..=4199) => Some(IsSection::Sales),
        Some(4200..=4999) => Some(IsSection::NonOperatingIncome),
        Some(5100..=5199) => Some(IsSection::CostOfSales),
        Some(5200..=5399) => Some(IsSection::SellingAndAdministrative),
        Some(5400..=7999) => Some(IsSection::NonOperatingExpenses),
        Some(8000..=8999) => Some(IsSection::IncomeTaxes),
        _ => None,
    };
    match class_of(Some(info))? {
        AccountType::Revenue => Some(by_code.unwrap_or(IsSection::NonOperatingIncome)),
        AccountType::Expense => Some(by_code.unwrap_or(IsSection::NonOperatingExpenses)),
        AccountType::Asset | AccountType::Liability | AccountType::Equity => None,
    }
}

/// One account's line of the income statement, on the section's side (revenue as credit minus debit, expense as
/// debit minus credit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatementLine {
    pub account_id: Uuid,
    pub account_code: String,
    pub account_name: String,
    pub month: i128,
    pub year_to_date: i128,
}

/// A section of accounts with its totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Section {
    pub label_ko: &'static str,
    pub accounts: Vec<StatementLine>,
    pub month: i128,
    pub year_to_date: i128,
}

impl Section {
    fn new(label_ko: &'static str) -> Self {
        Self { label_ko, accounts: Vec::new(), month: 0, year_to_date: 0 }
    }
}

/// A computed line (gross profit, operating income…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Subtotal {
    pub label_ko: &'static str,
    pub month: i128,
    pub year_to_date: i128,
}

/// The income statement of a month and of the fiscal year to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IncomeStatement {
    pub year: i32,
    pub month: u32,
    pub fiscal_year_start: NaiveDate,
    pub month_start: NaiveDate,
    pub month_end: NaiveDate,
    pub sales: Section,
    pub cost_of_sales: Section,
    pub gross_profit: Subtotal,
    pub selling_and_administrative_expenses: Section,
    pub operating_income: Subtotal,
    pub non_operating_income: Section,
    pub non_operating_expenses: Section,
    pub income_before_income_taxes: Subtotal,
    pub income_taxes: Section,
    pub net_income: Subtotal,
}

/// The dates an income statement covers: the month and the fiscal year from its start through the month's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsPeriod {
    pub year: i32,
    pub month: u32,
    pub fiscal_year_start: NaiveDate,
    pub month_start: NaiveDate,
    pub month_end: NaiveDate,
}

/// Builds the income statement. `rows` carry two buckets per account: 0 from the fiscal-year start to the month, 1 the
/// month; the year to date is their sum. Balance-sheet accounts are ignored; income-statement accounts with any
/// movement in the year to date are listed, by code.
#[must_use]
pub fn income_statement(period: IsPeriod, rows: &[BucketSums], infos: &[AccountInfo]) -> IncomeStatement {
    let by_id: HashMap<Uuid, &AccountInfo> = infos.iter().map(|i| (i.account_id, i)).collect();
    let mut sales = Section::new("매출액");
    let mut cost_of_sales = Section::new("매출원가");
    let mut sga = Section::new("판매비와관리비");
    let mut non_op_income = Section::new("영업외수익");
    let mut non_op_expenses = Section::new("영업외비용");
    let mut taxes = Section::new("법인세비용");
    for (account_id, b) in pivot(rows, 2) {
        let Some(info) = by_id.get(&account_id) else { continue };
        let Some(kind) = is_section(info) else { continue };
        let ytd = b[0] + b[1];
        if ytd.is_zero() {
            continue;
        }
        let revenue = matches!(kind, IsSection::Sales | IsSection::NonOperatingIncome);
        let side = |m: Movement| if revenue { m.net_credit() } else { m.net_debit() };
        let section = match kind {
            IsSection::Sales => &mut sales,
            IsSection::CostOfSales => &mut cost_of_sales,
            IsSection::SellingAndAdministrative => &mut sga,
            IsSection::NonOperatingIncome => &mut non_op_income,
            IsSection::NonOperatingExpenses => &mut non_op_expenses,
            IsSection::IncomeTaxes => &mut taxes,
        };
        let line = StatementLine {
            account_id,
            account_code: info.code.clone(),
            account_name: info.name.clone(),
            month: side(b[1]),
            year_to_date: side(ytd),
        };
        section.month += line.month;
        section.year_to_date += line.year_to_date;
        section.accounts.push(line);
    }
    for s in [&mut sales, &mut cost_of_sales, &mut sga, &mut non_op_income, &mut non_op_expenses, &mut taxes] {
        s.accounts.sort_by(|a, b| a.account_code.cmp(&b.account_code).then(a.account_id.cmp(&b.account_id)));
    }
    // The subtotals, for one column (the month or the year to date) at a time.
    let subtotals = |v: fn(&Section) -> i128| {
        let gross = v(&sales) - v(&cost_of_sales);
        let operating = gross - v(&sga);
        let before_taxes = operating + v(&non_op_income) - v(&non_op_expenses);
        [gross, operating, before_taxes, before_taxes - v(&taxes)]
    };
    let (m, y) = (subtotals(|s| s.month), subtotals(|s| s.year_to_date));
    let sub = |label_ko, i: usize| Subtotal { label_ko, month: m[i], year_to_date: y[i] };
    let (gross_profit, operating_income) = (sub("매출총이익", 0), sub("영업이익", 1));
    let (income_before_income_taxes, net_income) = (sub("법인세차감전순이익", 2), sub("당기순이익", 3));
    IncomeStatement {
        year: period.year,
        month: period.month,
        fiscal_year_start: period.fiscal_year_start,
        month_start: period.month_start,
        month_end: period.month_end,
        sales,
        cost_of_sales,
        gross_profit,
        selling_and_administrative_expenses: sga,
        operating_income,
        non_operating_income: non_op_income,
        non_operating_expenses: non_op_expenses,
        income_before_income_taxes,
        income_taxes: taxes,
        net_income,
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Balance sheet (재무상태표)
// ---------------------------------------------------------------------------------------------------------------------

/// One account's balance on its normal side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BalanceLine {
    pub account_id: Uuid,
    pub account_code: String,
    pub account_name: String,
    pub balance: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BalanceSection {
    pub label_ko: &'static str,
    pub accounts: Vec<BalanceLine>,
    pub total: i128,
}

/// Equity: the equity accounts (retained earnings with every closed fiscal year's income in it), then the income of
/// the fiscal year so far, which no closing has moved yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EquitySection {
    pub label_ko: &'static str,
    pub accounts: Vec<BalanceLine>,
    pub current_year_earnings: LabelledAmount,
    pub total: i128,
}

/// An amount with its Korean label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LabelledAmount {
    pub label_ko: &'static str,
    pub amount: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BalanceSheet {
    pub as_of: NaiveDate,
    pub fiscal_year_start: NaiveDate,
    pub assets: BalanceSection,
    pub liabilities: BalanceSection,
    pub equity: EquitySection,
    pub total_liabilities_and_equity: i128,
}

/// Builds the balance sheet at the end of `as_of`. `rows` carry two buckets per account: 0 before the fiscal year, 1
/// from its start through `as_of`.
///
/// Assets run debit minus credit, liabilities and equity credit minus debit. Income-statement accounts are not listed:
/// their bucket 0 (closed years) is added to retained earnings and their bucket 1 is the current-year earnings line.
/// An account the dimension does not know is listed with the assets, on the debit side as the trial balance treats it,
/// so that every posting is on the sheet and the identity assets = liabilities + equity holds whenever the postings
/// balance. Accounts with a zero balance are left out.
#[must_use]
pub fn balance_sheet(as_of: NaiveDate, fiscal_year_start: NaiveDate, rows: &[BucketSums], infos: &[AccountInfo]) -> BalanceSheet {
    let by_id: HashMap<Uuid, &AccountInfo> = infos.iter().map(|i| (i.account_id, i)).collect();
    let retained = retained_earnings(infos);
    let mut closed = 0i128;
    let mut current = 0i128;
    let mut balances: Vec<(Option<AccountType>, Uuid, i128)> = Vec::new();
    for (account_id, b) in pivot(rows, 2) {
        let class = class_of(by_id.get(&account_id).copied());
        let all = b[0] + b[1];
        match class {
            Some(AccountType::Revenue | AccountType::Expense) => {
                closed += b[0].net_credit();
                current += b[1].net_credit();
            }
            Some(AccountType::Liability | AccountType::Equity) => balances.push((class, account_id, all.net_credit())),
            Some(AccountType::Asset) | None => balances.push((Some(AccountType::Asset), account_id, all.net_debit())),
        }
    }
    if closed != 0 {
        match balances.iter_mut().find(|(_, id, _)| *id == retained.account_id) {
            Some((_, _, balance)) => *balance += closed,
            None => balances.push((Some(AccountType::Equity), retained.account_id, closed)),
        }
    }
    let line = |id: Uuid, balance: i128| {
        let info = if id == retained.account_id { Some(&retained) } else { by_id.get(&id).copied() };
        BalanceLine {
            account_id: id,
            account_code: info.map(|i| i.code.clone()).unwrap_or_default(),
            account_name: info.map(|i| i.name.clone()).unwrap_or_default(),
            balance,
        }
    };
    let section = |label_ko, class: AccountType| {
        let mut accounts: Vec<BalanceLine> =
            balances.iter().filter(|(c, _, b)| *c == Some(class) && *b != 0).map(|(_, id, b)| line(*id, *b)).collect();
        accounts.sort_by(|a, b| a.account_code.cmp(&b.account_code).then(a.account_id.cmp(&b.account_id)));
        let total = accounts.iter().map(|a| a.balance).sum();
        BalanceSection { label_ko, accounts, total }
    };
    let assets = section("자산", AccountType::Asset);
    let liabilities = section("부채", AccountType::Liability);
    let equity_accounts = section("자본", AccountType::Equity);
    let equity = EquitySection {
        label_ko: equity_accounts.label_ko,
        accounts: equity_accounts.accounts,
        current_year_earnings: LabelledAmount { label_ko: "당기순이익", amount: current },
        total: equity_accounts.total + current,
    };
    BalanceSheet { as_of, fiscal_year_start, total_liabilities_and_equity: liabilities.total + equity.total, assets, liabilities, equity }
}

// ---------------------------------------------------------------------------------------------------------------------
// Partner ledger (거래처원장)
// ---------------------------------------------------------------------------------------------------------------------

/// A partner as the `partners` dimension has it; every field but the id is `null` while the dimension lacks the
/// partner (its events may not have been folded yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PartnerInfo {
    pub partner_id: Uuid,
    pub partner_code: Option<String>,
    pub partner_name: Option<String>,
    pub business_number: Option<String>,
    pub partner_type: Option<String>,
    pub is_active: Option<bool>,
}

/// A partner with what it owes (receivable, on 1103) and is owed (payable, on 2101), each on its normal side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PartnerBalance {
    #[serde(flatten)]
    pub partner: PartnerInfo,
    pub receivable: i128,
    pub payable: i128,
}

impl PartnerBalance {
    #[must_use]
    pub fn new(partner: PartnerInfo, receivable: Movement, payable: Movement) -> Self {
        Self { partner, receivable: receivable.net_debit(), payable: payable.net_credit() }
    }
}

/// One line of a partner's ledger as read: a ledger line and the account (1103 or 2101) it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerLine {
    pub account_id: Uuid,
    pub line: LedgerLine,
}

/// A partner-ledger line with its account code and the running balance after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PartnerEntry {
    pub account_id: Uuid,
    pub account_code: String,
    #[serde(flatten)]
    pub line: LedgerLine,
    pub balance: i128,
}

/// The net balance of a partner, receivable minus payable: both accounts' debits minus credits, since a debit raises
/// a receivable and lowers a payable. Positive means the partner owes the company on balance.
#[must_use]
pub fn partner_net(receivable: Movement, payable: Movement) -> i128 {
    receivable.net_debit() + payable.net_debit()
}

/// Adds the running net balance (see [`partner_net`]) to ordered lines, starting from `start`, and names each line's
/// account by its code from `accounts`.
#[must_use]
pub fn partner_running(start: i128, lines: Vec<PartnerLine>, accounts: &[AccountInfo]) -> Vec<PartnerEntry> {
    let mut balance = start;
    lines
        .into_iter()
        .map(|PartnerLine { account_id, line }| {
            balance += i128::from(line.debit) - i128::from(line.credit);
            let account_code = accounts.iter().find(|a| a.account_id == account_id).map(|a| a.code.clone()).unwrap_or_default();
            PartnerEntry { account_id, account_code, line, balance }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_splits_into_whole_months_and_the_days_around_them() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let year = split_months(d("2026-01-01"), d("2026-12-31"));
        assert_eq!(year, MonthSplit { whole: Some((d("2026-01-01"), d("2026-12-01"))), head: None, tail: None });
        let ragged = split_months(d("2026-01-15"), d("2026-03-10"));
        assert_eq!(ragged.whole, Some((d("2026-02-01"), d("2026-02-01"))));
        assert_eq!(ragged.head, Some((d("2026-01-15"), d("2026-01-31"))));
        assert_eq!(ragged.tail, Some((d("2026-03-01"), d("2026-03-10"))));
        let inside = split_months(d("2026-02-03"), d("2026-02-20"));
        assert_eq!(inside, MonthSplit { whole: None, head: Some((d("2026-02-03"), d("2026-02-20"))), tail: None });
        let to_month_end = split_months(d("2024-02-10"), d("2024-02-29"));
        assert_eq!(to_month_end, MonthSplit { whole: None, head: Some((d("2024-02-10"), d("2024-02-29"))), tail: None });
        let two_partial = split_months(d("2026-01-31"), d("2026-02-01"));
        assert_eq!(two_partial, MonthSplit { whole: None, head: Some((d("2026-01-31"), d("2026-02-01"))), tail: None });
    }

    fn info(id: Uuid, code: &str, t: &str) -> AccountInfo {
        AccountInfo { account_id: id, code: code.into(), name: code.into(), account_type: t.into() }
    }

    #[test]
    fn trial_balance_nets_openings_orders_by_code_and_balances() {
        let (cash, sales, ar) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        // Before the month: cash 100 Dr / sales 100 Cr. In the month: AR 40 Dr / sales 40 Cr, cash 30 Cr / AR 30 Dr.
        let sums = [
            AccountSums { account_id: sales, opening_debit: 0, opening_credit: 100, period_debit: 0, period_credit: 40 },
            AccountSums { account_id: cash, opening_debit: 100, opening_credit: 0, period_debit: 0, period_credit: 30 },
            AccountSums { account_id: ar, opening_debit: 0, opening_credit: 0, period_debit: 70, period_credit: 0 },
        ];
        let infos = [info(cash, "1101", "asset"), info(sales, "4101", "revenue"), info(ar, "1103", "asset")];
        let tb = trial_balance(2025, 1, &sums, &infos);
        let codes: Vec<_> = tb.accounts.iter().map(|a| a.account_code.as_str()).collect();
        assert_eq!(codes, ["1101", "1103", "4101"]);
        assert_eq!((tb.accounts[0].columns.closing_debit, tb.accounts[0].columns.closing_credit), (70, 0));
        assert_eq!((tb.accounts[2].columns.closing_debit, tb.accounts[2].columns.closing_credit), (0, 140));
        let t = &tb.totals;
        assert_eq!(t.opening_debit, t.opening_credit);
        assert_eq!(t.period_debit, t.period_credit);
        assert_eq!(t.closing_debit, t.closing_credit);
        assert_eq!(t.closing_debit, 140);
    }

    #[test]
    fn a_balance_that_changes_side_moves_column() {
        let a = Uuid::new_v4();
        let tb = trial_balance(
            2025,
            2,
            &[AccountSums { account_id: a, opening_debit: 10, opening_credit: 0, period_debit: 0, period_credit: 25 }],
            &[info(a, "1101", "asset")],
        );
        assert_eq!((tb.accounts[0].columns.opening_debit, tb.accounts[0].columns.opening_credit), (10, 0));
        assert_eq!((tb.accounts[0].columns.closing_debit, tb.accounts[0].columns.closing_credit), (0, 15));
    }

    #[test]
    fn accounts_without_postings_are_left_out() {
        let a = Uuid::new_v4();
        assert!(trial_balance(2025, 1, &[AccountSums { account_id: a, ..Default::default() }], &[]).accounts.is_empty());
    }

    #[test]
    fn sums_past_i64_stay_exact() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let big = i128::from(i64::MAX) * 3;
        let sums = [
            AccountSums { account_id: a, opening_debit: big, opening_credit: 0, period_debit: big, period_credit: 0 },
            AccountSums { account_id: b, opening_debit: 0, opening_credit: big, period_debit: 0, period_credit: big },
        ];
        let tb = trial_balance(2025, 1, &sums, &[info(a, "1101", "asset"), info(b, "4101", "revenue")]);
        assert_eq!(tb.totals.closing_debit, 2 * big);
        assert_eq!(tb.totals.closing_debit, tb.totals.closing_credit);
        let json = serde_json::to_string(&tb.totals).unwrap();
        assert!(json.contains(&(2 * big).to_string()), "serialised as an exact JSON integer: {json}");
    }

    /// A line of the first voucher of 2025 with `debit` and `credit`.
    fn ledger_line(debit: i64, credit: i64) -> LedgerLine {
        LedgerLine {
            voucher_date: "2025-01-01".into(),
            voucher_number: "2025-01-000001".into(),
            line_no: 1,
            voucher_id: Uuid::nil(),
            voucher_type: "general".into(),
            partner_id: None,
            description: String::new(),
            debit,
            credit,
        }
    }

    #[test]
    fn running_balance_follows_the_normal_side() {
        let line = ledger_line;
        let asset = running(true, 100, vec![line(50, 0), line(0, 30)]);
        assert_eq!(asset.iter().map(|e| e.balance).collect::<Vec<_>>(), [150, 120]);
        let revenue = running(debit_normal("revenue"), 0, vec![line(0, 80), line(5, 0)]);
        assert_eq!(revenue.iter().map(|e| e.balance).collect::<Vec<_>>(), [80, 75]);
    }
    #[test]
    fn a_page_starts_in_its_month_with_the_months_before_it_carried() {
        use crate::store::MonthTotals;
        let month = |m, lines, debit| MonthTotals { month: day(&format!("2025-{m:02}-01")), lines, debit, credit: 1 };
        let months = [month(1, 3, 10), month(2, 0, 0), month(3, 4, 20), month(5, 2, 40)];
        let (from, to) = (day("2025-01-15"), day("2025-12-31"));
        let start = |offset, limit| locate_page((from, to), &months, offset, limit);
        let page = |from, to, skip, carried_debit, carried_credit| Some(PageStart { from, to, skip, carried_debit, carried_credit });
        assert_eq!(start(0, 2), page(from, day("2025-01-31"), 0, 0, 0));
        assert_eq!(start(0, 3), page(from, day("2025-01-31"), 0, 0, 0));
        assert_eq!(start(2, 2), page(from, day("2025-03-31"), 2, 0, 0));
        assert_eq!(start(3, 1), page(day("2025-03-01"), day("2025-03-31"), 0, 10, 2));
        assert_eq!(start(6, 2), page(day("2025-03-01"), day("2025-05-31"), 3, 10, 2));
        assert_eq!(start(7, 100), page(day("2025-05-01"), to, 0, 30, 3));
        assert_eq!(start(9, 1), None);
        assert_eq!(locate_page((from, to), &[], 0, 1), None);
        assert_eq!(page_end(day("2025-05-20"), &months, 8), day("2025-05-20"), "never past the range");
    }

    // ----- fiscal years, statements and partner ledgers -----

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// One posting: account, date, debit, credit.
    type Posting = (Uuid, NaiveDate, i128, i128);

    /// What `store::bucket_sums` computes in SQL, over postings in memory: the postings from `from` through `through`,
    /// bucketed by `cuts`, one row per account and bucket.
    fn bucketize(postings: &[Posting], from: Option<NaiveDate>, cuts: &[NaiveDate], through: NaiveDate) -> Vec<BucketSums> {
        let mut out: Vec<BucketSums> = Vec::new();
        for &(account_id, d, debit, credit) in postings {
            if from.is_some_and(|f| d < f) || d > through {
                continue;
            }
            let bucket = u8::try_from(cuts.iter().take_while(|c| d >= **c).count()).unwrap();
            match out.iter_mut().find(|r| r.account_id == account_id && r.bucket == bucket) {
                Some(r) => r.movement += Movement::new(debit, credit),
                None => out.push(BucketSums { account_id, bucket, movement: Movement::new(debit, credit) }),
            }
        }
        out
    }

    /// A small chart with ids: cash, capital, retained earnings, sales, interest income, cost of sales, salaries,
    /// interest expense (6101), income tax, receivable, payable.
    struct Chart {
        infos: Vec<AccountInfo>,
    }

    impl Chart {
        fn new() -> Self {
            let codes = [
                ("1101", "asset"),
                ("1103", "asset"),
                ("2101", "liability"),
                ("3101", "equity"),
                ("3201", "equity"),
                ("4101", "revenue"),
                ("4201", "revenue"),
                ("5101", "expense"),
                ("5201", "expense"),
                ("5400", "expense"),
                ("6101", "expense"),
                ("8101", "expense"),
            ];
            Self { infos: codes.iter().map(|(c, t)| info(Uuid::new_v4(), c, t)).collect() }
        }

        fn id(&self, code: &str) -> Uuid {
            self.infos.iter().find(|i| i.code == code).unwrap().account_id
        }
    }

    /// A balanced voucher of two lines.
    fn entry(postings: &mut Vec<Posting>, d: &str, debit: Uuid, credit: Uuid, amount: i128) {
        postings.push((debit, day(d), amount, 0));
        postings.push((credit, day(d), 0, amount));
    }

    fn tb_at(c: &Chart, postings: &[Posting], year: i32, month: u32, start_month: u32) -> TrialBalance {
        let start = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
        let fy = fiscal_year_start(start, start_month);
        let rows = bucketize(postings, None, &[fy, start], month_end(year, month).unwrap());
        fiscal_trial_balance(year, month, &rows, &c.infos, &CodeRange::default())
    }

    fn line<'a>(tb: &'a TrialBalance, code: &str) -> Option<&'a TrialBalanceLine> {
        tb.accounts.iter().find(|a| a.account_code == code)
    }

    fn assert_balanced(tb: &TrialBalance) {
        let t = &tb.totals;
        assert_eq!(t.opening_debit, t.opening_credit, "{tb:?}");
        assert_eq!(t.period_debit, t.period_credit, "{tb:?}");
        assert_eq!(t.closing_debit, t.closing_credit, "{tb:?}");
    }

    /// Postings summed by account and month, as a snapshot or the rows above it hold them; `split` sends each posting
    /// to the first set or the second, as postings before and after a snapshot's sequence are.
    fn month_rows(postings: &[Posting], split: impl Fn(usize) -> bool) -> (Vec<MonthSums>, Vec<MonthSums>) {
        let mut sets: [BTreeMap<(Uuid, NaiveDate), Movement>; 2] = Default::default();
        for (i, &(account_id, d, debit, credit)) in postings.iter().enumerate() {
            *sets[usize::from(split(i))].entry((account_id, month_start(d))).or_default() += Movement::new(debit, credit);
        }
        let rows = |set: &BTreeMap<(Uuid, NaiveDate), Movement>| {
            set.iter()
                .map(|(&(account_id, period), &movement)| MonthSums { account_id, period, movement, lines: 0, uncounted: false })
                .collect()
        };
        (rows(&sets[0]), rows(&sets[1]))
    }

    fn sorted(mut rows: Vec<BucketSums>) -> Vec<BucketSums> {
        rows.sort_by_key(|r| (r.account_id, r.bucket));
        rows
    }

    /// Month rows bucketed in memory give what the SQL over the same postings gives (the `bucketize` model), for
    /// random postings split at random between a snapshot and the rows above it, and the cuts and ranges the reports ask
    /// for: a trial balance (no start, fiscal year and month cuts), an income statement (from the fiscal year, the month
    /// cut) and a balance sheet (no start, the fiscal year cut, through a month).
    #[test]
    fn bucket_months_sums_as_the_sql_does() {
        let accounts: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        // A fixed linear congruential sequence, so a failure reproduces.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let postings: Vec<Posting> = (0..400)
            .map(|_| {
                let d = day("2024-01-01") + chrono::Days::new(next(3 * 366));
                let amount = i128::from(next(10_000_000)) + 1;
                let account = accounts[usize::try_from(next(5)).unwrap()];
                if next(2) == 0 {
                    (account, d, amount, 0)
                } else {
                    (account, d, 0, amount)
                }
            })
            .collect();
        let splits: [&dyn Fn(usize) -> bool; 3] = [&|_| false, &|_| true, &|i| i % 3 == 0];
        for split in splits {
            let (snapshot, tail) = month_rows(&postings, split);
            for (from, cuts, through) in [
                (None, vec![day("2025-01-01"), day("2025-06-01")], day("2025-06-30")),
                (Some(day("2025-04-01")), vec![day("2025-09-01")], day("2025-09-30")),
                (None, vec![day("2026-01-01")], day("2026-02-28")),
                (None, vec![], day("2023-12-31")),
            ] {
                let expected = sorted(bucketize(&postings, from, &cuts, month_end(through.year(), through.month()).unwrap()));
                let got = bucket_months(snapshot.iter().chain(&tail), from, &cuts, through);
                assert_eq!(got, expected, "from {from:?}, cuts {cuts:?}, through {through}");
            }
        }
        assert!(!bucket_months(&month_rows(&postings, |_| false).0, None, &[], day("2026-12-31")).is_empty());
    }

    #[test]
    fn fiscal_years_start_in_their_month() {
        assert_eq!(fiscal_year_start(day("2025-01-01"), 1), day("2025-01-01"));
        assert_eq!(fiscal_year_start(day("2024-12-31"), 1), day("2024-01-01"));
        assert_eq!(fiscal_year_start(day("2025-03-31"), 4), day("2024-04-01"));
        assert_eq!(fiscal_year_start(day("2025-04-01"), 4), day("2025-04-01"));
        assert_eq!(fiscal_year_start(day("2025-12-15"), 12), day("2025-12-01"));
        assert_eq!(fiscal_year_start(day("2025-11-30"), 12), day("2024-12-01"));
        assert_eq!(fiscal_year_start(day("1970-02-01"), 4), day("1969-04-01"));
        // A setting that is not a month falls back to January.
        assert_eq!(fiscal_year_start(day("2025-03-31"), 13), day("2025-01-01"));
        assert_eq!(fiscal_start_month(None), 1);
        assert_eq!(fiscal_start_month(Some(0)), 1);
        assert_eq!(fiscal_start_month(Some(13)), 1);
        assert_eq!(fiscal_start_month(Some(7)), 7);
    }

    #[test]
    fn months_end_and_split_into_whole_months_and_days() {
        assert_eq!(month_end(2024, 2), Some(day("2024-02-29")));
        assert_eq!(month_end(2025, 2), Some(day("2025-02-28")));
        assert_eq!(month_end(2025, 12), Some(day("2025-12-31")));
        assert_eq!(split_at_month(day("2025-03-31")), (Some(day("2025-03-31")), None));
        assert_eq!(split_at_month(day("2025-03-15")), (Some(day("2025-02-28")), Some((day("2025-03-01"), day("2025-03-15")))));
        assert_eq!(split_at_month(day("2025-03-01")), (Some(day("2025-02-28")), Some((day("2025-03-01"), day("2025-03-01")))));
        assert_eq!(split_at_month(day("1970-01-10")), (None, Some((day("1970-01-01"), day("1970-01-10")))));
    }

    #[test]
    fn revenue_and_expense_open_at_zero_and_earlier_years_close_into_retained_earnings() {
        let c = Chart::new();
        let mut p = Vec::new();
        entry(&mut p, "2024-01-05", c.id("1101"), c.id("3101"), 1_000);
        entry(&mut p, "2024-06-10", c.id("1101"), c.id("4101"), 700);
        entry(&mut p, "2024-07-10", c.id("5201"), c.id("1101"), 200);
        entry(&mut p, "2025-01-10", c.id("1101"), c.id("4101"), 50);
        entry(&mut p, "2025-02-10", c.id("5201"), c.id("1101"), 30);

        let dec = tb_at(&c, &p, 2024, 12, 1);
        assert_balanced(&dec);
        assert_eq!(line(&dec, "4101").unwrap().columns.opening_credit, 700, "within the year, revenue accumulates");
        assert!(line(&dec, "3201").is_none(), "no earlier year to close");

        let feb = tb_at(&c, &p, 2025, 2, 1);
        assert_balanced(&feb);
        let sales = line(&feb, "4101").unwrap().columns;
        assert_eq!((sales.opening_debit, sales.opening_credit, sales.closing_credit), (0, 50, 50), "2024's sales are closed");
        let re = line(&feb, "3201").expect("retained earnings gets a line for 2024's income").columns;
        assert_eq!((re.opening_credit, re.closing_credit), (500, 500));
        assert_eq!(line(&feb, "1101").unwrap().columns.closing_debit, 1_520, "balance-sheet accounts carry over");
    }

    #[test]
    fn a_fiscal_year_starting_in_april_closes_on_march_31() {
        let c = Chart::new();
        let mut p = Vec::new();
        entry(&mut p, "2024-03-31", c.id("1101"), c.id("4101"), 100); // fiscal year 2023-04 .. 2024-03
        entry(&mut p, "2024-04-01", c.id("1101"), c.id("4101"), 40); // fiscal year 2024-04 .. 2025-03
        entry(&mut p, "2025-01-15", c.id("6101"), c.id("1101"), 15);
        entry(&mut p, "2025-04-02", c.id("1101"), c.id("4201"), 7); // fiscal year 2025-04 ..

        let mar = tb_at(&c, &p, 2025, 3, 4);
        assert_balanced(&mar);
        assert_eq!(line(&mar, "4101").unwrap().columns.closing_credit, 40, "January to March 2025 is still fiscal 2024");
        assert_eq!(line(&mar, "6101").unwrap().columns.closing_debit, 15);
        assert_eq!(line(&mar, "3201").unwrap().columns.opening_credit, 100);

        let apr = tb_at(&c, &p, 2025, 4, 4);
        assert_balanced(&apr);
        assert!(line(&apr, "4101").is_none(), "nothing in the new fiscal year yet");
        assert!(line(&apr, "6101").is_none());
        assert_eq!(line(&apr, "3201").unwrap().columns.opening_credit, 100 + 40 - 15);
        assert_eq!(line(&apr, "4201").unwrap().columns.period_credit, 7);

        // The same postings with a January year: 2025's January expense stays in the year.
        let mar_jan = tb_at(&c, &p, 2025, 3, 1);
        assert_balanced(&mar_jan);
        assert_eq!(line(&mar_jan, "3201").unwrap().columns.opening_credit, 140);
    }

    #[test]
    fn closed_income_adds_to_posted_retained_earnings_and_a_missing_chart_gets_a_stand_in() {
        let c = Chart::new();
        let mut p = Vec::new();
        entry(&mut p, "2023-05-01", c.id("3201"), c.id("1101"), 30); // a dividend out of retained earnings
        entry(&mut p, "2023-06-01", c.id("1101"), c.id("4101"), 100);
        let tb = tb_at(&c, &p, 2024, 1, 1);
        assert_balanced(&tb);
        let re = line(&tb, "3201").unwrap().columns;
        assert_eq!((re.opening_debit, re.opening_credit), (0, 70));

        // Without the chart in ClickHouse the closed income still has a line (and the books still balance).
        let rows = bucketize(&p, None, &[day("2024-01-01"), day("2024-01-01")], day("2024-01-31"));
        let bare = fiscal_trial_balance(2024, 1, &rows, &[], &CodeRange::default());
        assert_balanced(&bare);
        // Unknown accounts are carried as balance-sheet accounts, so nothing is closed.
        assert!(bare.accounts.iter().all(|a| a.account_code.is_empty()));
        let only_re = [c.infos.iter().find(|i| i.code == "4101").unwrap().clone()];
        let stand_in = fiscal_trial_balance(2024, 1, &rows, &only_re, &CodeRange::default());
        assert_balanced(&stand_in);
        let re = line(&stand_in, "3201").expect("a stand-in retained-earnings line");
        assert_eq!((re.account_id, re.account_name.as_str(), re.columns.opening_credit), (Uuid::nil(), RETAINED_EARNINGS_NAME, 100));
    }

    #[test]
    fn a_code_range_narrows_lines_and_totals() {
        let c = Chart::new();
        let mut p = Vec::new();
        entry(&mut p, "2025-01-05", c.id("1101"), c.id("3101"), 1_000);
        entry(&mut p, "2025-01-06", c.id("5201"), c.id("1101"), 100);
        let start = day("2025-01-01");
        let rows = bucketize(&p, None, &[start, start], day("2025-01-31"));
        let codes = CodeRange { from: Some("3000".into()), to: Some("5201".into()) };
        let tb = fiscal_trial_balance(2025, 1, &rows, &c.infos, &codes);
        assert_eq!(tb.accounts.iter().map(|a| a.account_code.as_str()).collect::<Vec<_>>(), ["3101", "5201"]);
        assert_eq!((tb.totals.closing_debit, tb.totals.closing_credit), (100, 1_000));
        assert!(CodeRange { from: Some("1101".into()), to: None }.contains("1101"));
        assert!(!CodeRange { from: None, to: Some("1100".into()) }.contains("1101"));
    }

    #[test]
    fn income_statement_sections_follow_the_korean_structure() {
        let assign = |code: &str| is_section(&info(Uuid::nil(), code, ""));
        assert_eq!(assign("4101"), Some(IsSection::Sales));
        assert_eq!(assign("4201"), Some(IsSection::NonOperatingIncome));
        assert_eq!(assign("4999"), Some(IsSection::NonOperatingIncome));
        assert_eq!(assign("5101"), Some(IsSection::CostOfSales));
        assert_eq!(assign("5201"), Some(IsSection::SellingAndAdministrative));
        assert_eq!(assign("5399"), Some(IsSection::SellingAndAdministrative));
        assert_eq!(assign("5400"), Some(IsSection::NonOperatingExpenses));
        assert_eq!(assign("7999"), Some(IsSection::NonOperatingExpenses));
        assert_eq!(assign("8101"), Some(IsSection::IncomeTaxes));
        assert_eq!(assign("3201"), None);
        assert_eq!(assign("1101"), None);
        assert_eq!(is_section(&info(Uuid::nil(), "X1", "revenue")), Some(IsSection::NonOperatingIncome));
        assert_eq!(is_section(&info(Uuid::nil(), "4001", "revenue")), Some(IsSection::NonOperatingIncome));
        assert_eq!(is_section(&info(Uuid::nil(), "5001", "expense")), Some(IsSection::NonOperatingExpenses));
        // The code decides over the class the dimension carried, as everywhere else.
        assert_eq!(is_section(&info(Uuid::nil(), "1101", "revenue")), None);
        assert_eq!(is_section(&info(Uuid::nil(), "9101", "expense")), Some(IsSection::NonOperatingExpenses));
        // Every account the closing treats as income is on the income statement, and no other.
        for n in 0..10_000 {
            for t in ["asset", "liability", "equity", "revenue", "expense", ""] {
                let i = info(Uuid::nil(), &format!("{n:04}"), t);
                assert_eq!(is_section(&i).is_some(), is_income_statement(class_of(Some(&i))), "{n:04} {t}");
            }
        }

        let c = Chart::new();
        let mut p = Vec::new();
        entry(&mut p, "2025-01-10", c.id("1101"), c.id("4101"), 1_000);
        entry(&mut p, "2025-02-10", c.id("1101"), c.id("4101"), 2_000);
        entry(&mut p, "2025-02-11", c.id("5101"), c.id("1101"), 1_200);
        entry(&mut p, "2025-02-12", c.id("5201"), c.id("1101"), 300);
        entry(&mut p, "2025-02-13", c.id("1101"), c.id("4201"), 50);
        entry(&mut p, "2025-02-14", c.id("5400"), c.id("1101"), 20);
        entry(&mut p, "2025-02-14", c.id("6101"), c.id("1101"), 10);
        entry(&mut p, "2025-02-15", c.id("8101"), c.id("1101"), 100);
        entry(&mut p, "2025-02-16", c.id("1101"), c.id("4101"), 0); // nothing
        entry(&mut p, "2025-02-17", c.id("4101"), c.id("1101"), 500); // a sales return lowers sales
        let period = IsPeriod {
            year: 2025,
            month: 2,
            fiscal_year_start: day("2025-01-01"),
            month_start: day("2025-02-01"),
            month_end: day("2025-02-28"),
        };
        let rows = bucketize(&p, Some(period.fiscal_year_start), &[period.month_start], period.month_end);
        let is = income_statement(period, &rows, &c.infos);
        assert_eq!((is.sales.month, is.sales.year_to_date), (1_500, 2_500));
        assert_eq!(is.sales.accounts[0].account_code, "4101");
        assert_eq!((is.cost_of_sales.month, is.gross_profit.month, is.gross_profit.year_to_date), (1_200, 300, 1_300));
        assert_eq!((is.selling_and_administrative_expenses.month, is.operating_income.month), (300, 0));
        assert_eq!((is.non_operating_income.month, is.non_operating_expenses.month), (50, 30));
        let codes: Vec<_> = is.non_operating_expenses.accounts.iter().map(|a| a.account_code.as_str()).collect();
        assert_eq!(codes, ["5400", "6101"]);
        assert_eq!(is.income_before_income_taxes.month, 20);
        assert_eq!((is.income_taxes.month, is.net_income.month, is.net_income.year_to_date), (100, -80, 920));
        assert_eq!(is.net_income.label_ko, "당기순이익");
        let json = serde_json::to_value(&is).unwrap();
        assert_eq!(json["net_income"]["year_to_date"], 920);
        assert_eq!(json["sales"]["accounts"][0]["year_to_date"], 2_500);
    }

    /// A deterministic pseudo-random sequence (no dependency for the tests of one module).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    fn random_books(c: &Chart, seed: u64) -> Vec<Posting> {
        let mut rng = Lcg(seed);
        let mut p = Vec::new();
        for _ in 0..400 {
            let a = &c.infos[usize::try_from(rng.below(c.infos.len() as u64)).unwrap()];
            let b = &c.infos[usize::try_from(rng.below(c.infos.len() as u64)).unwrap()];
            let d = day("2023-01-01") + chrono::Days::new(rng.below(3 * 365));
            let amount = i128::from(rng.below(1_000_000) + 1);
            p.push((a.account_id, d, amount, 0));
            p.push((b.account_id, d, 0, amount));
        }
        p
    }

    fn bs_at(c: &Chart, p: &[Posting], as_of: NaiveDate, start_month: u32) -> BalanceSheet {
        let fy = fiscal_year_start(as_of, start_month);
        let (months, days) = split_at_month(as_of);
        let mut rows = months.map(|t| bucketize(p, None, &[fy], t)).unwrap_or_default();
        if let Some((f, t)) = days {
            rows.extend(bucketize(p, Some(f), &[fy], t));
        }
        balance_sheet(as_of, fy, &rows, &c.infos)
    }

    fn income_at(c: &Chart, p: &[Posting], year: i32, month: u32, start_month: u32) -> IncomeStatement {
        let month_start = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
        let period = IsPeriod {
            year,
            month,
            fiscal_year_start: fiscal_year_start(month_start, start_month),
            month_start,
            month_end: month_end(year, month).unwrap(),
        };
        income_statement(period, &bucketize(p, Some(period.fiscal_year_start), &[month_start], period.month_end), &c.infos)
    }

    #[test]
    fn every_trial_balance_and_balance_sheet_balances_and_income_rolls_into_retained_earnings() {
        let c = Chart::new();
        for (seed, start_month) in [(1, 1), (2, 4), (3, 7), (4, 12)] {
            let p = random_books(&c, seed);
            for year in 2023..=2025 {
                for month in 1..=12 {
                    assert_balanced(&tb_at(&c, &p, year, month, start_month));
                    for d in [1, 15, 28] {
                        let as_of = NaiveDate::from_ymd_opt(year, month, d).unwrap();
                        let bs = bs_at(&c, &p, as_of, start_month);
                        assert_eq!(bs.assets.total, bs.total_liabilities_and_equity, "{as_of} starting in {start_month}");
                    }
                    let end = month_end(year, month).unwrap();
                    let bs = bs_at(&c, &p, end, start_month);
                    assert_eq!(bs.assets.total, bs.total_liabilities_and_equity);
                    // The balance sheet's current-year earnings are the income statement's year to date.
                    assert_eq!(bs.equity.current_year_earnings.amount, income_at(&c, &p, year, month, start_month).net_income.year_to_date);
                }
            }
            // Across each fiscal-year boundary, retained earnings grow by the closed year's net income (nothing is
            // posted to 3201 directly in these books except by chance, so compare with the postings on it).
            let posted_3201 = |from: NaiveDate, to: NaiveDate| -> i128 {
                p.iter().filter(|(a, d, _, _)| *a == c.id("3201") && *d >= from && *d < to).map(|(_, _, dr, cr)| cr - dr).sum()
            };
            let re_opening = |year: i32, month: u32| {
                let tb = tb_at(&c, &p, year, month, start_month);
                line(&tb, "3201").map_or(0, |l| l.columns.opening_credit - l.columns.opening_debit)
            };
            for year in 2023..=2025 {
                let fy = NaiveDate::from_ymd_opt(year, start_month, 1).unwrap();
                let next = NaiveDate::from_ymd_opt(year + 1, start_month, 1).unwrap();
                let last = next.pred_opt().unwrap();
                let income = income_at(&c, &p, last.year(), last.month(), start_month).net_income.year_to_date;
                let grew = re_opening(next.year(), next.month()) - re_opening(fy.year(), fy.month());
                assert_eq!(grew, income + posted_3201(fy, next), "fiscal year from {fy}");
            }
        }
    }

    #[test]
    fn the_year_to_date_is_the_sum_of_the_months() {
        let c = Chart::new();
        let p = random_books(&c, 9);
        for start_month in [1, 4] {
            let mut months = 0;
            let mut running = 0;
            let mut d = NaiveDate::from_ymd_opt(2024, start_month, 1).unwrap();
            while months < 12 {
                let is = income_at(&c, &p, d.year(), d.month(), start_month);
                running += is.net_income.month;
                assert_eq!(is.net_income.year_to_date, running);
                let s = &is.selling_and_administrative_expenses;
                assert_eq!(s.year_to_date, s.accounts.iter().map(|a| a.year_to_date).sum::<i128>());
                d = month_end(d.year(), d.month()).unwrap().succ_opt().unwrap();
                months += 1;
            }
        }
    }

    #[test]
    fn balance_sheet_lists_accounts_by_class_with_retained_earnings_rolled_forward() {
        let c = Chart::new();
        let mut p = Vec::new();
        entry(&mut p, "2024-01-05", c.id("1101"), c.id("3101"), 1_000);
        entry(&mut p, "2024-03-05", c.id("1103"), c.id("4101"), 400);
        entry(&mut p, "2024-04-05", c.id("5101"), c.id("2101"), 150);
        entry(&mut p, "2025-02-05", c.id("1101"), c.id("4101"), 60);
        entry(&mut p, "2025-02-20", c.id("5201"), c.id("1101"), 10);
        let bs = bs_at(&c, &p, day("2025-02-10"), 1);
        assert_eq!(bs.fiscal_year_start, day("2025-01-01"));
        let codes = |s: &[BalanceLine]| s.iter().map(|a| (a.account_code.clone(), a.balance)).collect::<Vec<_>>();
        assert_eq!(codes(&bs.assets.accounts), [("1101".into(), 1_060), ("1103".into(), 400)]);
        assert_eq!(codes(&bs.liabilities.accounts), [("2101".into(), 150)]);
        assert_eq!(codes(&bs.equity.accounts), [("3101".into(), 1_000), ("3201".into(), 250)]);
        assert_eq!(bs.equity.current_year_earnings.amount, 60, "the expense of 2025-02-20 is after as_of");
        assert_eq!((bs.assets.total, bs.liabilities.total, bs.equity.total), (1_460, 150, 1_310));
        assert_eq!(bs.total_liabilities_and_equity, bs.assets.total);

        let empty = balance_sheet(day("2025-01-01"), day("2025-01-01"), &[], &c.infos);
        assert!(empty.assets.accounts.is_empty() && empty.equity.accounts.is_empty());
        assert_eq!((empty.assets.total, empty.total_liabilities_and_equity, empty.equity.current_year_earnings.amount), (0, 0, 0));
    }

    #[test]
    fn partner_ledger_runs_receivable_minus_payable() {
        let (ar, ap) = (Uuid::new_v4(), Uuid::new_v4());
        let accounts = [info(ar, RECEIVABLE_CODE, "asset"), info(ap, PAYABLE_CODE, "liability")];
        let l = |account_id, debit, credit| PartnerLine { account_id, line: ledger_line(debit, credit) };
        // Opening: the partner owes 100 on receivables and is owed 30 on payables.
        let start = partner_net(Movement::new(100, 0), Movement::new(0, 30));
        assert_eq!(start, 70);
        let entries = partner_running(start, vec![l(ar, 50, 0), l(ap, 0, 200), l(ar, 0, 20), l(ap, 40, 0)], &accounts);
        assert_eq!(entries.iter().map(|e| e.balance).collect::<Vec<_>>(), [120, -80, -100, -60]);
        assert_eq!(entries[1].account_code, PAYABLE_CODE);
        let b = PartnerBalance::new(PartnerInfo::default(), Movement::new(150, 20), Movement::new(40, 230));
        assert_eq!((b.receivable, b.payable), (130, 190));
        let json = serde_json::to_value(&b).unwrap();
        assert!(json["partner_name"].is_null() && json["receivable"] == 130, "{json}");
    }

    #[test]
    fn an_early_read_is_the_page_only_when_full_or_through_the_range() {
        let (a, other) = (Uuid::new_v4(), Uuid::new_v4());
        let d = |m: u32, day: u32| NaiveDate::from_ymd_opt(2025, m, day).unwrap();
        let read = |account, end, n: usize| EarlyPage { account, end, lines: vec![ledger_line(1, 0); n] };
        assert!(read(a, d(3, 31), 2).is_page(a, 2, d(12, 31)), "a full page, whatever its end");
        assert!(read(a, d(12, 31), 1).is_page(a, 2, d(12, 31)), "the rest of the range");
        assert!(read(a, d(12, 31), 0).is_page(a, 2, d(12, 31)), "an empty range");
        assert!(!read(a, d(3, 31), 1).is_page(a, 2, d(12, 31)), "short, and lines may follow in April");
        assert!(!read(other, d(12, 31), 2).is_page(a, 2, d(12, 31)), "a guess of the wrong account");
    }

    #[test]
    fn an_early_page_read_reaches_the_month_its_counted_lines_fill_the_page() {
        let (a, other) = (Uuid::new_v4(), Uuid::new_v4());
        let d = |m: u32, day: u32| NaiveDate::from_ymd_opt(2025, m, day).unwrap();
        let row = |account_id, m: u32, lines: u64, uncounted: bool| MonthSums {
            account_id,
            period: d(m, 1),
            movement: Movement::new(1, 0),
            lines,
            uncounted,
        };
        // Months out of order, another account's lines, and a month counted before balances counted lines.
        let rows = [row(a, 3, 50, false), row(a, 1, 120, false), row(other, 2, 1_000, false), row(a, 2, 60, false), row(a, 4, 500, true)];
        let year_end = d(12, 31);
        // A first page from 1 January: January's 120 and February's 60 are short of 200, March's 50 fill it.
        assert_eq!(early_page_end(&rows, a, d(1, 1), true, year_end, 200), d(3, 31));
        // January alone fills a page of 100.
        assert_eq!(early_page_end(&rows, a, d(1, 1), true, year_end, 100), d(1, 31));
        // From a cursor (or mid-month) January counts for nothing: February and March are 110.
        assert_eq!(early_page_end(&rows, a, d(1, 20), false, year_end, 100), d(3, 31));
        // The uncounted April never fills a page, so the read reaches the range's end.
        assert_eq!(early_page_end(&rows, a, d(1, 20), false, year_end, 200), year_end);
        // A range that ends before the month that fills the page ends the read.
        assert_eq!(early_page_end(&rows, a, d(1, 1), true, d(3, 15), 200), d(3, 15));
        assert_eq!(early_page_end(&rows, a, d(1, 1), true, d(2, 10), 200), d(2, 10));
        // No snapshot rows for the account: the whole range.
        assert_eq!(early_page_end(&[], a, d(1, 1), true, year_end, 1), year_end);
    }
}
