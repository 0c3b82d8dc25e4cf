//! Report arithmetic with no IO: aggregated sums in, contract-shaped trial balances and ledgers out.
//!
//! Opening and closing columns of the trial balance are *net* balances shown on their side (a debit balance in the
//! debit column, a credit balance in the credit column); period columns are the month's movements. With that
//! convention every pair of total columns is equal whenever the postings balance.
//!
//! Sums are `i128`: a line is at most 10^15 won, so a few maximal vouchers already pass `i64::MAX` on one account.
//! ClickHouse sums them in Decimal128 and this module keeps them wide, so no balance or total can overflow.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use kerp_core::chart::AccountType;
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrialBalanceLine {
    pub account_id: Uuid,
    pub account_code: String,
    pub account_name: String,
    pub account_type: String,
    #[serde(flatten)]
    pub columns: Columns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerLine {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn running_balance_follows_the_normal_side() {
        let line = |d, c| LedgerLine {
            voucher_date: "2025-01-01".into(),
            voucher_number: "2025-01-000001".into(),
            line_no: 1,
            voucher_id: Uuid::nil(),
            voucher_type: "general".into(),
            partner_id: None,
            description: String::new(),
            debit: d,
            credit: c,
        };
        let asset = running(true, 100, vec![line(50, 0), line(0, 30)]);
        assert_eq!(asset.iter().map(|e| e.balance).collect::<Vec<_>>(), [150, 120]);
        let revenue = running(debit_normal("revenue"), 0, vec![line(0, 80), line(5, 0)]);
        assert_eq!(revenue.iter().map(|e| e.balance).collect::<Vec<_>>(), [80, 75]);
    }
}
