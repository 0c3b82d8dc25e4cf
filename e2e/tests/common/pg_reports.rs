//! The financial statements and the VAT summary computed straight from Postgres, the source of truth, and the API's
//! answers read into the same shapes, so that a test compares query-api (which reads ClickHouse) with Postgres to the
//! won.
//!
//! The computations follow the rules of the shared reference independently of query-api's code: reports count the
//! vouchers that were approved (a reversed voucher stays approved in the books, netted by its reversal, which is an
//! approved voucher itself; drafts count nowhere); income-statement accounts (revenue, expense) start each fiscal year
//! at zero and every earlier fiscal year's income is added to retained earnings (3201); the partner ledger is the lines
//! naming a partner on accounts receivable (1103) and accounts payable (2101); the VAT summary sums the issued invoices
//! dated in the quarter. Each API reader asks for a page large enough to hold everything the tests post.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// The income-statement sections, by the API's field names.
pub const IS_SECTIONS: [&str; 6] =
    ["sales", "cost_of_sales", "selling_and_administrative_expenses", "non_operating_income", "non_operating_expenses", "income_taxes"];

/// The vouchers the reports count, as an SQL condition on `vouchers v`.
const COUNTED: &str = "v.status IN ('approved', 'reversed')";

/// An amount of an API answer as an integer, naming what it is when it is not one.
fn int(v: &Value, what: &str) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("{what} is not an integer amount: {v}"))
}

fn uuid(v: &Value) -> Uuid {
    Uuid::parse_str(v.as_str().unwrap_or_else(|| panic!("not an id: {v}"))).expect("uuid")
}

/// The month a company's fiscal year starts in, as Postgres has it.
pub async fn fiscal_start_month(pool: &PgPool, company: Uuid) -> u32 {
    let m: i16 =
        sqlx::query_scalar("SELECT fiscal_start_month FROM companies WHERE id = $1").bind(company).fetch_one(pool).await.expect("company");
    u32::try_from(m).expect("month")
}

/// The first day of the fiscal year that `day` is in.
pub fn fiscal_year_start(day: NaiveDate, start_month: u32) -> NaiveDate {
    let year = if day.month() >= start_month { day.year() } else { day.year() - 1 };
    NaiveDate::from_ymd_opt(year, start_month, 1).expect("fiscal year start")
}

/// The last day of a month.
pub fn month_end(year: i32, month: u32) -> NaiveDate {
    let next = if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) };
    next.and_then(|d| d.pred_opt()).expect("month end")
}

// ---------------------------------------------------------------------------------------------------------------------
// Income statement
// ---------------------------------------------------------------------------------------------------------------------

/// An income statement in the shape the tests compare: every listed account's (month, year to date) on its section's
/// side (revenue credit minus debit, expense debit minus credit), each section's totals, and net income.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomeStatement {
    pub accounts: BTreeMap<Uuid, (i64, i64)>,
    pub sections: BTreeMap<&'static str, (i64, i64)>,
    pub net_income: (i64, i64),
}

/// The section of an income-statement account by its code, as the reference's structure has it: 41xx sales, other
/// revenue non-operating income; 51xx cost of sales, 52xx–53xx SG&A, 8xxx income taxes, other expense non-operating.
fn is_section(code: &str, revenue: bool) -> &'static str {
    let n: u32 = code.parse().unwrap_or(0);
    match (revenue, n) {
        (true, 4100..=4199) => "sales",
        (true, _) => "non_operating_income",
        (false, 5100..=5199) => "cost_of_sales",
        (false, 5200..=5399) => "selling_and_administrative_expenses",
        (false, 8000..=8999) => "income_taxes",
        (false, _) => "non_operating_expenses",
    }
}

/// The income statement of a month and of its fiscal year to the month's end, from Postgres. An account is listed when
/// it has a line in the year to date, as the API lists it (even when the lines net to zero).
pub async fn pg_income_statement(pool: &PgPool, company: Uuid, year: i32, month: u32) -> IncomeStatement {
    let first = NaiveDate::from_ymd_opt(year, month, 1).expect("date");
    let last = month_end(year, month);
    let fy = fiscal_year_start(first, fiscal_start_month(pool, company).await);
    // (account, code, is revenue, month debit, month credit, year-to-date debit, year-to-date credit)
    type Row = (Uuid, String, bool, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT a.id, a.code, a.account_type = 'revenue',
                COALESCE(SUM(l.debit) FILTER (WHERE v.voucher_date >= $3), 0)::bigint,
                COALESCE(SUM(l.credit) FILTER (WHERE v.voucher_date >= $3), 0)::bigint,
                SUM(l.debit)::bigint, SUM(l.credit)::bigint
         FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id JOIN accounts a ON a.id = l.account_id
         WHERE v.company_id = $1 AND {COUNTED} AND a.account_type IN ('revenue', 'expense')
           AND v.voucher_date >= $2 AND v.voucher_date <= $4
         GROUP BY a.id, a.code, a.account_type"
    ))
    .bind(company)
    .bind(fy)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await
    .expect("pg income statement");
    let mut out = IncomeStatement { sections: IS_SECTIONS.iter().map(|s| (*s, (0, 0))).collect(), ..IncomeStatement::default() };
    for (id, code, revenue, md, mc, yd, yc) in rows {
        let side = |d: i64, c: i64| if revenue { c - d } else { d - c };
        let (m, y) = (side(md, mc), side(yd, yc));
        out.accounts.insert(id, (m, y));
        let s = out.sections.get_mut(is_section(&code, revenue)).expect("section");
        *s = (s.0 + m, s.1 + y);
        out.net_income = if revenue { (out.net_income.0 + m, out.net_income.1 + y) } else { (out.net_income.0 - m, out.net_income.1 - y) };
    }
    out
}

/// The API's income statement (`GET /api/v1/reports/income-statement`'s `data`) in the same shape.
pub fn api_income_statement(data: &Value) -> IncomeStatement {
    let mut out = IncomeStatement::default();
    for s in IS_SECTIONS {
        for a in data[s]["accounts"].as_array().unwrap_or_else(|| panic!("{s} accounts: {data}")) {
            let prev = out.accounts.insert(uuid(&a["account_id"]), (int(&a["month"], "month"), int(&a["year_to_date"], "year_to_date")));
            assert!(prev.is_none(), "an account is listed twice: {a}");
        }
        out.sections.insert(s, (int(&data[s]["month"], s), int(&data[s]["year_to_date"], s)));
    }
    out.net_income = (int(&data["net_income"]["month"], "net income"), int(&data["net_income"]["year_to_date"], "net income"));
    out
}

// ---------------------------------------------------------------------------------------------------------------------
// Balance sheet
// ---------------------------------------------------------------------------------------------------------------------

/// A balance sheet in the shape the tests compare: each section's accounts with a non-zero balance on its normal
/// side, the section totals (equity's with the current-year earnings), the current-year earnings, and the right-hand
/// side's total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceSheet {
    pub assets: BTreeMap<Uuid, i64>,
    pub liabilities: BTreeMap<Uuid, i64>,
    pub equity: BTreeMap<Uuid, i64>,
    pub total_assets: i64,
    pub total_liabilities: i64,
    pub total_equity: i64,
    pub current_year_earnings: i64,
    pub total_liabilities_and_equity: i64,
}

/// The balance sheet at the end of `as_of`, from Postgres: balance-sheet accounts over all time; revenue and expense of
/// earlier fiscal years in retained earnings (3201), those of the current fiscal year as current-year earnings.
pub async fn pg_balance_sheet(pool: &PgPool, company: Uuid, as_of: NaiveDate) -> BalanceSheet {
    let fy = fiscal_year_start(as_of, fiscal_start_month(pool, company).await);
    // (account, account type, debit minus credit before the fiscal year, in it through `as_of`)
    let rows: Vec<(Uuid, String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT a.id, a.account_type,
                COALESCE(SUM(l.debit - l.credit) FILTER (WHERE v.voucher_date < $2), 0)::bigint,
                COALESCE(SUM(l.debit - l.credit) FILTER (WHERE v.voucher_date >= $2), 0)::bigint
         FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id JOIN accounts a ON a.id = l.account_id
         WHERE v.company_id = $1 AND {COUNTED} AND v.voucher_date <= $3
         GROUP BY a.id, a.account_type"
    ))
    .bind(company)
    .bind(fy)
    .bind(as_of)
    .fetch_all(pool)
    .await
    .expect("pg balance sheet");
    let retained = super::pg_account_id(pool, company, "3201").await;
    let mut out = BalanceSheet::default();
    let mut closed = 0;
    for (id, account_type, before, during) in rows {
        match account_type.as_str() {
            "revenue" | "expense" => {
                closed -= before;
                out.current_year_earnings -= during;
            }
            "asset" => {
                out.assets.insert(id, before + during);
            }
            "liability" => {
                out.liabilities.insert(id, -(before + during));
            }
            "equity" => {
                out.equity.insert(id, -(before + during));
            }
            other => panic!("account type {other}"),
        }
    }
    *out.equity.entry(retained).or_default() += closed;
    for section in [&mut out.assets, &mut out.liabilities, &mut out.equity] {
        section.retain(|_, b| *b != 0);
    }
    out.total_assets = out.assets.values().sum();
    out.total_liabilities = out.liabilities.values().sum();
    out.total_equity = out.equity.values().sum::<i64>() + out.current_year_earnings;
    out.total_liabilities_and_equity = out.total_liabilities + out.total_equity;
    out
}

/// The API's balance sheet (`GET /api/v1/reports/balance-sheet`'s `data`) in the same shape.
pub fn api_balance_sheet(data: &Value) -> BalanceSheet {
    let accounts = |section: &str| -> BTreeMap<Uuid, i64> {
        data[section]["accounts"]
            .as_array()
            .unwrap_or_else(|| panic!("{section} accounts: {data}"))
            .iter()
            .map(|a| (uuid(&a["account_id"]), int(&a["balance"], "balance")))
            .collect()
    };
    BalanceSheet {
        assets: accounts("assets"),
        liabilities: accounts("liabilities"),
        equity: accounts("equity"),
        total_assets: int(&data["assets"]["total"], "total assets"),
        total_liabilities: int(&data["liabilities"]["total"], "total liabilities"),
        total_equity: int(&data["equity"]["total"], "total equity"),
        current_year_earnings: int(&data["equity"]["current_year_earnings"]["amount"], "current-year earnings"),
        total_liabilities_and_equity: int(&data["total_liabilities_and_equity"], "total liabilities and equity"),
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Partner ledger
// ---------------------------------------------------------------------------------------------------------------------

/// Each partner with a line on 1103 or 2101 up to and including `through`: (receivable as debit minus credit on 1103,
/// payable as credit minus debit on 2101).
pub async fn pg_partner_balances(pool: &PgPool, company: Uuid, through: NaiveDate) -> BTreeMap<Uuid, (i64, i64)> {
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(&format!(
        "SELECT l.partner_id,
                COALESCE(SUM(l.debit - l.credit) FILTER (WHERE a.code = '1103'), 0)::bigint,
                COALESCE(SUM(l.credit - l.debit) FILTER (WHERE a.code = '2101'), 0)::bigint
         FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id JOIN accounts a ON a.id = l.account_id
         WHERE v.company_id = $1 AND {COUNTED} AND l.partner_id IS NOT NULL AND a.code IN ('1103', '2101')
           AND v.voucher_date <= $2
         GROUP BY l.partner_id"
    ))
    .bind(company)
    .bind(through)
    .fetch_all(pool)
    .await
    .expect("pg partner balances");
    rows.into_iter().map(|(p, r, c)| (p, (r, c))).collect()
}

/// The ids of the company's partners in Postgres.
pub async fn pg_partners(pool: &PgPool, company: Uuid) -> BTreeSet<Uuid> {
    sqlx::query_scalar("SELECT id FROM partners WHERE company_id = $1")
        .bind(company)
        .fetch_all(pool)
        .await
        .expect("partners")
        .into_iter()
        .collect()
}

/// The API's partner list (`GET /api/v1/reports/partner-ledger` without `partner_id`, one page holding every partner)
/// as partner id → (receivable, payable).
pub fn api_partner_balances(body: &Value) -> BTreeMap<Uuid, (i64, i64)> {
    let rows = body["data"].as_array().unwrap_or_else(|| panic!("partners: {body}"));
    assert_eq!(body["pagination"]["total"].as_u64(), Some(rows.len() as u64), "one page holds every partner: {body}");
    rows.iter().map(|r| (uuid(&r["partner_id"]), (int(&r["receivable"], "receivable"), int(&r["payable"], "payable")))).collect()
}

/// Checks the API's partner list against Postgres: every partner with a line has Postgres's balances, and every other
/// partner listed (one the dimension knows without lines) is one of the company's partners with nothing owed.
pub fn assert_partner_balances(api: &BTreeMap<Uuid, (i64, i64)>, pg: &BTreeMap<Uuid, (i64, i64)>, partners: &BTreeSet<Uuid>, what: &str) {
    let with_lines: BTreeMap<Uuid, (i64, i64)> = api.iter().filter(|(id, _)| pg.contains_key(*id)).map(|(id, b)| (*id, *b)).collect();
    assert_eq!(&with_lines, pg, "{what}: the partners with lines, against Postgres");
    for (id, balances) in api.iter().filter(|(id, _)| !pg.contains_key(*id)) {
        assert_eq!(*balances, (0, 0), "{what}: partner {id} has no line in Postgres");
        assert!(partners.contains(id), "{what}: partner {id} is not one of the company's");
    }
}

/// One line of a partner's ledger in the shape the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerEntry {
    pub voucher_date: String,
    pub voucher_number: String,
    pub line_no: i64,
    pub voucher_id: Uuid,
    pub account_code: String,
    pub debit: i64,
    pub credit: i64,
    /// The running net balance (receivable minus payable) after the line.
    pub balance: i64,
}

/// One partner's ledger in the shape the tests compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerLedger {
    pub opening_receivable: i64,
    pub opening_payable: i64,
    pub opening_balance: i64,
    pub entries: Vec<PartnerEntry>,
    pub period_debit: i64,
    pub period_credit: i64,
    pub closing_receivable: i64,
    pub closing_payable: i64,
    pub closing_balance: i64,
}

/// A partner's lines on 1103 and 2101 from `from` to `to` (inclusive) in ledger order (date, number, line), with the
/// running net balance from the balance before `from`, from Postgres.
pub async fn pg_partner_ledger(pool: &PgPool, company: Uuid, partner: Uuid, from: NaiveDate, to: NaiveDate) -> PartnerLedger {
    // Debit minus credit of each account before `from`.
    let (ar, ap): (i64, i64) = sqlx::query_as(&format!(
        "SELECT COALESCE(SUM(l.debit - l.credit) FILTER (WHERE a.code = '1103'), 0)::bigint,
                COALESCE(SUM(l.debit - l.credit) FILTER (WHERE a.code = '2101'), 0)::bigint
         FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id JOIN accounts a ON a.id = l.account_id
         WHERE v.company_id = $1 AND {COUNTED} AND l.partner_id = $2 AND a.code IN ('1103', '2101') AND v.voucher_date < $3"
    ))
    .bind(company)
    .bind(partner)
    .bind(from)
    .fetch_one(pool)
    .await
    .expect("pg partner opening");
    type Row = (NaiveDate, String, i32, Uuid, String, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT v.voucher_date, v.voucher_number, l.line_no, v.id, a.code, l.debit, l.credit
         FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id JOIN accounts a ON a.id = l.account_id
         WHERE v.company_id = $1 AND {COUNTED} AND l.partner_id = $2 AND a.code IN ('1103', '2101')
           AND v.voucher_date >= $3 AND v.voucher_date <= $4
         ORDER BY v.voucher_date, v.voucher_number COLLATE \"C\", l.line_no"
    ))
    .bind(company)
    .bind(partner)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
    .expect("pg partner lines");
    let mut out = PartnerLedger { opening_receivable: ar, opening_payable: -ap, opening_balance: ar + ap, ..PartnerLedger::default() };
    let (mut closing_ar, mut closing_ap, mut balance) = (ar, ap, ar + ap);
    for (date, voucher_number, line_no, voucher_id, account_code, debit, credit) in rows {
        balance += debit - credit;
        out.period_debit += debit;
        out.period_credit += credit;
        if account_code == "1103" {
            closing_ar += debit - credit;
        } else {
            closing_ap += debit - credit;
        }
        out.entries.push(PartnerEntry {
            voucher_date: date.to_string(),
            voucher_number,
            line_no: i64::from(line_no),
            voucher_id,
            account_code,
            debit,
            credit,
            balance,
        });
    }
    out.closing_receivable = closing_ar;
    out.closing_payable = -closing_ap;
    out.closing_balance = balance;
    out
}

/// The API's ledger of one partner (`GET /api/v1/reports/partner-ledger?partner_id=…`, one page holding every line) in
/// the same shape.
pub fn api_partner_ledger(body: &Value) -> PartnerLedger {
    let d = &body["data"];
    let entries: Vec<PartnerEntry> = d["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("entries: {body}"))
        .iter()
        .map(|e| PartnerEntry {
            voucher_date: e["voucher_date"].as_str().expect("date").to_owned(),
            voucher_number: e["voucher_number"].as_str().expect("number").to_owned(),
            line_no: int(&e["line_no"], "line_no"),
            voucher_id: uuid(&e["voucher_id"]),
            account_code: e["account_code"].as_str().expect("code").to_owned(),
            debit: int(&e["debit"], "debit"),
            credit: int(&e["credit"], "credit"),
            balance: int(&e["balance"], "balance"),
        })
        .collect();
    assert_eq!(body["pagination"]["total"].as_u64(), Some(entries.len() as u64), "one page holds every line: {body}");
    let n = |k: &str| int(&d[k], k);
    PartnerLedger {
        opening_receivable: n("opening_receivable"),
        opening_payable: n("opening_payable"),
        opening_balance: n("opening_balance"),
        entries,
        period_debit: n("period_debit"),
        period_credit: n("period_credit"),
        closing_receivable: n("closing_receivable"),
        closing_payable: n("closing_payable"),
        closing_balance: n("closing_balance"),
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// VAT summary
// ---------------------------------------------------------------------------------------------------------------------

/// The figures of a quarter's VAT summary from Postgres's invoices: the issued invoices dated in the quarter, counted
/// and summed per invoice type and VAT type, with output VAT (sales' tax), input VAT (purchases' tax) and payable VAT
/// (output minus input), in the API's JSON shape (see [`api_vat_figures`]).
pub async fn pg_vat_figures(pool: &PgPool, company: Uuid, year: i32, quarter: u32) -> Value {
    let from = NaiveDate::from_ymd_opt(year, quarter * 3 - 2, 1).expect("quarter start");
    let to = month_end(year, quarter * 3);
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT invoice_type, vat_type, count(*), SUM(supply_amount)::bigint, SUM(tax_amount)::bigint
         FROM invoices WHERE company_id = $1 AND status = 'issued' AND invoice_date >= $2 AND invoice_date <= $3
         GROUP BY invoice_type, vat_type",
    )
    .bind(company)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
    .expect("pg vat summary");
    let side = |invoice_type: &str| {
        let mut parts = serde_json::Map::new();
        let mut total = (0, 0, 0);
        for vat_type in ["taxable", "zero_rated", "exempt"] {
            let (n, s, t) = rows.iter().find(|r| r.0 == invoice_type && r.1 == vat_type).map_or((0, 0, 0), |r| (r.2, r.3, r.4));
            total = (total.0 + n, total.1 + s, total.2 + t);
            parts.insert(vat_type.into(), json!({"count": n, "supply_amount": s, "tax_amount": t}));
        }
        parts.insert("total".into(), json!({"count": total.0, "supply_amount": total.1, "tax_amount": total.2}));
        (Value::Object(parts), total.2)
    };
    let ((sales, output), (purchases, input)) = (side("sales"), side("purchase"));
    json!({"sales": sales, "purchases": purchases, "output_vat": output, "input_vat": input, "payable_vat": output - input})
}

/// The parts of the API's VAT summary (`GET /api/v1/reports/vat-summary`'s `data`) that [`pg_vat_figures`] computes.
pub fn api_vat_figures(data: &Value) -> Value {
    json!({
        "sales": data["sales"], "purchases": data["purchases"],
        "output_vat": data["output_vat"], "input_vat": data["input_vat"], "payable_vat": data["payable_vat"],
    })
}
