//! The fold: decoded voucher events in, ClickHouse rows out. Pure code with no IO, so the exactly-once bookkeeping
//! can be unit-tested.
//!
//! Given each company's watermark (the highest `company_seq` already folded), an event at or below it is a duplicate
//! and is skipped; the rest become ledger lines, per-month balance deltas and account dimension rows, plus one
//! watermark-advance row per company that goes into the same INSERT as the deltas.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use clickhouse::Row;
use kerp_schemas::{AccountsChanged, VoucherPosted};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The account id of watermark rows in `period_balances`.
pub const WATERMARK_ACCOUNT: Uuid = Uuid::nil();
/// The period of watermark rows: day 0, 1970-01-01 (`toDate('1970-01-01')` in SQL).
pub const WATERMARK_PERIOD: u16 = 0;

/// A row of `ledger_lines`. Field order is column order.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct LedgerLineRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub company_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    /// Days since 1970-01-01.
    pub voucher_date: u16,
    pub voucher_number: String,
    pub line_no: u32,
    #[serde(with = "clickhouse::serde::uuid")]
    pub voucher_id: Uuid,
    pub voucher_type: String,
    /// Nil when the line has no partner.
    #[serde(with = "clickhouse::serde::uuid")]
    pub partner_id: Uuid,
    pub debit: i64,
    pub credit: i64,
    pub description: String,
    pub company_seq: i64,
    /// Seconds since the epoch.
    pub posted_at: u32,
}

/// A row of `period_balances`: a delta to be summed, or a watermark advance.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct BalanceRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub company_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    /// First day of the month, in days since 1970-01-01.
    pub period: u16,
    pub debit: i64,
    pub credit: i64,
}

/// A row of the `accounts` dimension.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AccountRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub company_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub account_id: Uuid,
    pub code: String,
    pub name: String,
    pub account_type: String,
    /// When the event that carried it was written (microseconds since the epoch), so the newest name wins.
    pub version: u64,
}

/// Why an event could not be folded. It goes to `dead_letters`; its sequence still counts as handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// Everything one batch writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FoldOutput {
    pub lines: Vec<LedgerLineRow>,
    /// Deltas followed by watermark advances; write them in one INSERT.
    pub balances: Vec<BalanceRow>,
    pub accounts: Vec<AccountRow>,
    pub rejected: Vec<Rejected>,
    /// Indexes (into the input) of events folded now, for freshness metrics.
    pub folded: Vec<usize>,
    pub duplicates: usize,
    /// Events whose sequence jumped past the next expected one. Should stay zero; see docs/exactly-once.md.
    pub gaps: usize,
}

fn days(d: NaiveDate) -> Option<u16> {
    u16::try_from(d.signed_duration_since(NaiveDate::default()).num_days()).ok()
}

/// The first day of the event's month, and the date itself, as ClickHouse `Date` values.
fn dates(voucher_date: i32) -> Option<(u16, u16)> {
    let d = NaiveDate::default().checked_add_signed(chrono::Duration::days(i64::from(voucher_date)))?;
    let month = NaiveDate::from_ymd_opt(d.year(), d.month(), 1)?;
    Some((days(d)?, days(month)?))
}

fn check(e: &VoucherPosted) -> Result<(u16, u16), String> {
    let dates = dates(e.voucher_date).ok_or_else(|| format!("voucher_date {} is outside ClickHouse's Date range", e.voucher_date))?;
    let mut debit: i64 = 0;
    let mut credit: i64 = 0;
    for l in &e.lines {
        if l.debit < 0 || l.credit < 0 {
            return Err(format!("line {} has a negative amount", l.line_no));
        }
        debit = debit.checked_add(l.debit).ok_or("debit total overflows")?;
        credit = credit.checked_add(l.credit).ok_or("credit total overflows")?;
    }
    if debit != credit {
        return Err(format!("unbalanced: debit {debit}, credit {credit}"));
    }
    Ok(dates)
}

/// The dimension rows an accounts event carries.
#[must_use]
pub fn account_rows(e: &AccountsChanged) -> Vec<AccountRow> {
    let version = u64::try_from(e.changed_at).unwrap_or(0);
    e.accounts
        .iter()
        .map(|a| AccountRow {
            company_id: e.company_id,
            account_id: a.account_id,
            code: a.code.clone(),
            name: a.name.clone(),
            account_type: a.account_type.clone(),
            version,
        })
        .collect()
}

/// Folds a batch. `watermarks` holds each company's highest folded sequence (absent means 0).
#[must_use]
pub fn fold(events: &[VoucherPosted], watermarks: &HashMap<Uuid, i64>) -> FoldOutput {
    let mut out = FoldOutput::default();
    let mut current: HashMap<Uuid, i64> = HashMap::new();
    let mut deltas: BTreeMap<(Uuid, Uuid, u16), (i64, i64)> = BTreeMap::new();
    let mut accounts: BTreeMap<(Uuid, Uuid), AccountRow> = BTreeMap::new();

    for (i, e) in events.iter().enumerate() {
        let w = current.entry(e.company_id).or_insert_with(|| watermarks.get(&e.company_id).copied().unwrap_or(0));
        if e.company_seq <= *w {
            out.duplicates += 1;
            continue;
        }
        if e.company_seq != *w + 1 {
            out.gaps += 1;
        }
        *w = e.company_seq;
        let (date, period) = match check(e) {
            Ok(d) => d,
            Err(reason) => {
                out.rejected.push(Rejected { index: i, reason });
                continue;
            }
        };
        out.folded.push(i);
        let posted_at = u32::try_from(e.posted_at.div_euclid(1_000_000)).unwrap_or(0);
        for l in &e.lines {
            out.lines.push(LedgerLineRow {
                company_id: e.company_id,
                account_id: l.account_id,
                voucher_date: date,
                voucher_number: e.voucher_number.clone(),
                line_no: u32::try_from(l.line_no).unwrap_or(0),
                voucher_id: e.voucher_id,
                voucher_type: e.voucher_type.clone(),
                partner_id: l.partner_id.unwrap_or_default(),
                debit: l.debit,
                credit: l.credit,
                description: l.description.clone(),
                company_seq: e.company_seq,
                posted_at,
            });
            let d = deltas.entry((e.company_id, l.account_id, period)).or_default();
            d.0 += l.debit;
            d.1 += l.credit;
            let version = u64::try_from(e.posted_at).unwrap_or(0);
            let a = accounts.entry((e.company_id, l.account_id)).or_insert_with(|| AccountRow {
                company_id: e.company_id,
                account_id: l.account_id,
                code: l.account_code.clone(),
                name: l.account_name.clone(),
                account_type: l.account_type.clone(),
                version,
            });
            if version >= a.version {
                a.code.clone_from(&l.account_code);
                a.name.clone_from(&l.account_name);
                a.account_type.clone_from(&l.account_type);
                a.version = version;
            }
        }
    }

    out.balances = deltas
        .into_iter()
        .map(|((company_id, account_id, period), (debit, credit))| BalanceRow { company_id, account_id, period, debit, credit })
        .collect();
    let mut advances: Vec<(Uuid, i64)> = current
        .into_iter()
        .filter_map(|(c, w)| {
            let before = watermarks.get(&c).copied().unwrap_or(0);
            (w > before).then_some((c, w - before))
        })
        .collect();
    advances.sort_unstable();
    out.balances.extend(advances.into_iter().map(|(company_id, advance)| BalanceRow {
        company_id,
        account_id: WATERMARK_ACCOUNT,
        period: WATERMARK_PERIOD,
        debit: advance,
        credit: 0,
    }));
    out.accounts = accounts.into_values().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kerp_schemas::VoucherLine;

    fn event(company: Uuid, seq: i64, date: i32, amounts: &[(Uuid, i64, i64)]) -> VoucherPosted {
        VoucherPosted {
            event_id: Uuid::new_v4(),
            company_id: company,
            company_seq: seq,
            voucher_id: Uuid::new_v4(),
            voucher_number: format!("2025-01-{seq:06}"),
            voucher_date: date,
            voucher_type: "general".into(),
            status: "approved".into(),
            description: String::new(),
            posted_at: 1_700_000_000_000_000,
            lines: amounts
                .iter()
                .enumerate()
                .map(|(i, (account, debit, credit))| VoucherLine {
                    line_no: i32::try_from(i + 1).unwrap(),
                    account_id: *account,
                    account_code: "1101".into(),
                    account_name: "현금".into(),
                    account_type: "asset".into(),
                    partner_id: None,
                    debit: *debit,
                    credit: *credit,
                    description: String::new(),
                })
                .collect(),
        }
    }

    /// Sums of balance deltas per (company, account, period), excluding watermarks, like the trial balance reads them.
    fn totals(rows: &[BalanceRow]) -> BTreeMap<(Uuid, Uuid, u16), (i64, i64)> {
        let mut m = BTreeMap::new();
        for r in rows.iter().filter(|r| r.account_id != WATERMARK_ACCOUNT) {
            let e = m.entry((r.company_id, r.account_id, r.period)).or_insert((0, 0));
            e.0 += r.debit;
            e.1 += r.credit;
        }
        m
    }

    fn watermark_sums(rows: &[BalanceRow]) -> HashMap<Uuid, i64> {
        let mut m = HashMap::new();
        for r in rows.iter().filter(|r| r.account_id == WATERMARK_ACCOUNT) {
            *m.entry(r.company_id).or_insert(0) += r.debit;
        }
        m
    }

    // 2025-01-15 and 2025-02-03 as days since the epoch.
    const JAN_15: i32 = 20_103;
    const FEB_03: i32 = 20_122;

    #[test]
    fn folds_lines_deltas_and_watermark() {
        let (c, cash, sales) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let events = [event(c, 1, JAN_15, &[(cash, 100, 0), (sales, 0, 100)]), event(c, 2, FEB_03, &[(cash, 50, 0), (sales, 0, 50)])];
        let out = fold(&events, &HashMap::new());
        assert_eq!(out.lines.len(), 4);
        assert_eq!(out.folded, [0, 1]);
        let t = totals(&out.balances);
        let jan = dates(JAN_15).unwrap().1;
        let feb = dates(FEB_03).unwrap().1;
        assert_eq!(t[&(c, cash, jan)], (100, 0));
        assert_eq!(t[&(c, sales, feb)], (0, 50));
        assert_eq!(watermark_sums(&out.balances)[&c], 2);
        assert_eq!(out.accounts.len(), 2);
        // The watermark rows come last, after every delta, in the same batch.
        assert_eq!(out.balances.last().unwrap().account_id, WATERMARK_ACCOUNT);
    }

    #[test]
    fn a_redelivered_batch_adds_nothing() {
        let (c, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let events: Vec<_> = (1..=5).map(|s| event(c, s, JAN_15, &[(a, s * 10, 0), (b, 0, s * 10)])).collect();
        let first = fold(&events, &HashMap::new());
        let w = watermark_sums(&first.balances);
        let again = fold(&events, &w);
        assert!(again.balances.is_empty() && again.lines.is_empty());
        assert_eq!(again.duplicates, 5);
    }

    #[test]
    fn a_partly_folded_batch_adds_only_the_rest_and_sums_match_a_single_pass() {
        let (c1, c2, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut events = Vec::new();
        for s in 1..=6 {
            events.push(event(c1, s, JAN_15, &[(a, s, 0), (b, 0, s)]));
            events.push(event(c2, s, FEB_03, &[(b, 7 * s, 0), (a, 0, 7 * s)]));
        }
        let once = fold(&events, &HashMap::new());
        // Crash after the first 5 events were folded: the replay starts from the beginning of the batch.
        let head = fold(&events[..5], &HashMap::new());
        let replay = fold(&events, &watermark_sums(&head.balances));
        let mut combined = head.balances.clone();
        combined.extend(replay.balances.clone());
        assert_eq!(totals(&combined), totals(&once.balances));
        assert_eq!(watermark_sums(&combined), watermark_sums(&once.balances));
        assert_eq!(replay.duplicates, 5);
    }

    #[test]
    fn duplicates_inside_one_batch_are_skipped() {
        let (c, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let e1 = event(c, 1, JAN_15, &[(a, 5, 0), (b, 0, 5)]);
        let out = fold(&[e1.clone(), e1.clone(), event(c, 2, JAN_15, &[(a, 1, 0), (b, 0, 1)]), e1], &HashMap::new());
        assert_eq!(out.duplicates, 2);
        assert_eq!(totals(&out.balances)[&(c, a, dates(JAN_15).unwrap().1)], (6, 0));
        assert_eq!(out.gaps, 0);
    }

    #[test]
    fn a_sequence_gap_is_counted() {
        let (c, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let out = fold(&[event(c, 3, JAN_15, &[(a, 5, 0), (b, 0, 5)])], &HashMap::from([(c, 1)]));
        assert_eq!(out.gaps, 1);
        assert_eq!(watermark_sums(&out.balances)[&c], 2);
    }

    #[test]
    fn an_unbalanced_or_undatable_event_is_rejected_but_handled() {
        let (c, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let out = fold(&[event(c, 1, JAN_15, &[(a, 5, 0), (b, 0, 4)]), event(c, 2, 70_000, &[(a, 5, 0), (b, 0, 5)])], &HashMap::new());
        assert_eq!(out.rejected.len(), 2);
        assert!(out.lines.is_empty());
        assert_eq!(watermark_sums(&out.balances)[&c], 2);
    }

    #[test]
    fn an_accounts_event_becomes_dimension_rows() {
        let e = AccountsChanged {
            event_id: Uuid::new_v4(),
            company_id: Uuid::new_v4(),
            changed_at: 42,
            accounts: vec![kerp_schemas::AccountState {
                account_id: Uuid::new_v4(),
                code: "1101".into(),
                name: "현금".into(),
                account_type: "asset".into(),
                is_active: true,
            }],
        };
        let rows = account_rows(&e);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].company_id, rows[0].code.as_str(), rows[0].version), (e.company_id, "1101", 42));
    }

    #[test]
    fn month_start_is_computed_from_the_date() {
        let (d, m) = dates(JAN_15).unwrap();
        assert_eq!(d, 20_103);
        assert_eq!(m, 20_089); // 2025-01-01
    }
}
