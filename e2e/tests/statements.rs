//! Financial statements through the whole pipeline: vouchers posted to ingest-api over several years come out of
//! query-api as fiscal-year trial balances, income statements, balance sheets and partner ledgers that balance and
//! agree with each other, with a ledger kept in memory by the test, and with the same statements computed straight from
//! Postgres (`common::pg_reports`), the source of truth.
//!
//! Company settings, partners and departments are made through ingest-api's master-data API, so they reach ClickHouse
//! as events like everything else. One partner is written straight into Postgres instead: it stands for a partner whose
//! event has not been folded yet, which the reports must still show, without a name.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use common::{company, eventually, get, pg, pg_reports, post_voucher, send, simple_voucher, stack, Company, Svc};
use kerp_core::auth::Role;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// How long the aggregates may take to catch up in these tests; generous for a loaded 2-core CI machine.
const VISIBLE_WITHIN: Duration = Duration::from_secs(120);

/// The accounts the random books post to: every class of the seeded chart, but not retained earnings (3201), so that
/// its opening balance moves only by the virtual closing of each fiscal year.
const CODES: &[&str] =
    &["1101", "1102", "1103", "1201", "1303", "2101", "2105", "2201", "3101", "4101", "4201", "5101", "5201", "5212", "6101", "8101"];

/// One posted line, as the test's own ledger keeps it: date, account code, debit, credit.
type Line = (NaiveDate, String, i128, i128);

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn month_end(year: i32, month: u32) -> NaiveDate {
    let next = if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) };
    next.and_then(|d| d.pred_opt()).expect("month end")
}

fn fiscal_year_start(d: NaiveDate, start_month: u32) -> NaiveDate {
    let year = if d.month() >= start_month { d.year() } else { d.year() - 1 };
    NaiveDate::from_ymd_opt(year, start_month, 1).expect("fiscal year start")
}

fn is_income_code(code: &str) -> bool {
    matches!(code.as_bytes()[0], b'4'..=b'8')
}

/// An amount of a report as an exact integer (the amounts of these tests fit an i64).
fn amount(v: &Value) -> i128 {
    i128::from(v.as_i64().unwrap_or_else(|| panic!("not an integer amount: {v}")))
}

/// Net income (revenue minus expense) of the lines dated `from` to `to`, inclusive.
fn net_income(lines: &[Line], from: NaiveDate, to: NaiveDate) -> i128 {
    lines.iter().filter(|(d, c, _, _)| *d >= from && *d <= to && is_income_code(c)).map(|(_, _, dr, cr)| cr - dr).sum()
}

/// Total assets (class 1, debit minus credit) at the end of `as_of`.
fn assets(lines: &[Line], as_of: NaiveDate) -> i128 {
    lines.iter().filter(|(d, c, _, _)| *d <= as_of && c.starts_with('1')).map(|(_, _, dr, cr)| dr - cr).sum()
}

/// The fiscal-year trial balance's closing net balance (debit minus credit) per account code at the end of a month:
/// balance-sheet accounts over all time, income accounts over the fiscal year, and retained earnings with every earlier
/// fiscal year's income.
fn closing_by_code(lines: &[Line], year: i32, month: u32, start_month: u32) -> BTreeMap<String, i128> {
    let end = month_end(year, month);
    let fy = fiscal_year_start(end, start_month);
    let mut out: BTreeMap<String, i128> = BTreeMap::new();
    for (d, code, dr, cr) in lines.iter().filter(|(d, _, _, _)| *d <= end) {
        if is_income_code(code) && *d < fy {
            *out.entry("3201".into()).or_default() += dr - cr;
        } else {
            *out.entry(code.clone()).or_default() += dr - cr;
        }
    }
    out
}

/// A random balanced voucher between `from` and `to`: one to three debit lines and one to three credit lines.
fn random_voucher(rng: &mut rand::rngs::StdRng, from: NaiveDate, days: u64) -> (Value, Vec<Line>) {
    let date = from + chrono::Days::new(rng.gen_range(0..days));
    let debits: Vec<i64> = (0..rng.gen_range(1..=3)).map(|_| rng.gen_range(1..=5_000_000)).collect();
    let total: i64 = debits.iter().sum();
    let n_credits: i64 = rng.gen_range(1..=3).min(total);
    let mut credits = Vec::new();
    let mut left = total;
    for k in 0..n_credits {
        let rest = n_credits - k - 1;
        let c = if rest == 0 { left } else { rng.gen_range(1..=left - rest) };
        credits.push(c);
        left -= c;
    }
    let mut json_lines = Vec::new();
    let mut lines = Vec::new();
    for d in debits {
        let code = CODES[rng.gen_range(0..CODES.len())];
        json_lines.push(json!({"account_code": code, "debit_amount": d}));
        lines.push((date, code.to_owned(), i128::from(d), 0));
    }
    for c in credits {
        let code = CODES[rng.gen_range(0..CODES.len())];
        json_lines.push(json!({"account_code": code, "credit_amount": c}));
        lines.push((date, code.to_owned(), 0, i128::from(c)));
    }
    (json!({"voucher_date": date.to_string(), "voucher_type": "general", "description": "random", "lines": json_lines}), lines)
}

/// Posts `count` random vouchers dated from `from` over `days` days, eight at a time, and returns their lines.
async fn post_random_books(c: &Company, seed: u64, count: usize, from: NaiveDate, days: u64) -> Vec<Line> {
    use futures::StreamExt;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vouchers: Vec<(Value, Vec<Line>)> = (0..count).map(|_| random_voucher(&mut rng, from, days)).collect();
    let mut posts = futures::stream::iter(vouchers.iter().map(|(body, _)| post_voucher(&c.token, body))).buffer_unordered(8);
    while let Some((status, body)) = posts.next().await {
        assert_eq!(status, 201, "{body}");
    }
    drop(posts);
    vouchers.into_iter().flat_map(|(_, lines)| lines).collect()
}

async fn report(token: &str, path: &str) -> Value {
    let (status, body) = get(Svc::Query, token, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn trial_balance(token: &str, year: i32, month: u32) -> Value {
    report(token, &format!("/api/v1/reports/trial-balance?year={year}&month={month}")).await
}

async fn income_statement(token: &str, year: i32, month: u32) -> Value {
    report(token, &format!("/api/v1/reports/income-statement?year={year}&month={month}")).await
}

async fn balance_sheet(token: &str, as_of: NaiveDate) -> Value {
    report(token, &format!("/api/v1/reports/balance-sheet?as_of={as_of}")).await
}

/// The opening net credit balance of retained earnings (3201) in a month's trial balance; 0 without a line.
async fn retained_earnings_opening(token: &str, year: i32, month: u32) -> i128 {
    let tb = trial_balance(token, year, month).await;
    tb["data"]["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["account_code"] == "3201")
        .map_or(0, |a| amount(&a["opening_credit"]) - amount(&a["opening_debit"]))
}

fn assert_tb_balanced(tb: &Value, what: &str) {
    let t = &tb["data"]["totals"];
    assert_eq!(t["opening_debit"], t["opening_credit"], "{what}: {tb}");
    assert_eq!(t["period_debit"], t["period_credit"], "{what}: {tb}");
    assert_eq!(t["closing_debit"], t["closing_credit"], "{what}: {tb}");
}

/// Checks the balance sheet at `as_of` against the identity, the test's own ledger and Postgres, and returns it.
async fn check_balance_sheet(pool: &sqlx::PgPool, c: &Company, lines: &[Line], as_of: NaiveDate, start_month: u32) -> Value {
    let token = &c.token;
    let bs = balance_sheet(token, as_of).await;
    let d = &bs["data"];
    assert_eq!(
        pg_reports::api_balance_sheet(d),
        pg_reports::pg_balance_sheet(pool, c.id, as_of).await,
        "balance sheet at {as_of} against Postgres"
    );
    let total_assets = amount(&d["assets"]["total"]);
    assert_eq!(total_assets, amount(&d["total_liabilities_and_equity"]), "assets = liabilities + equity at {as_of}: {bs}");
    assert_eq!(total_assets, assets(lines, as_of), "total assets at {as_of}");
    let sum = |section: &Value| section["accounts"].as_array().expect("accounts").iter().map(|a| amount(&a["balance"])).sum::<i128>();
    assert_eq!(sum(&d["assets"]), total_assets);
    assert_eq!(sum(&d["liabilities"]), amount(&d["liabilities"]["total"]));
    let current = amount(&d["equity"]["current_year_earnings"]["amount"]);
    assert_eq!(sum(&d["equity"]) + current, amount(&d["equity"]["total"]));
    assert_eq!(current, net_income(lines, fiscal_year_start(as_of, start_month), as_of), "current-year earnings at {as_of}");
    bs
}

/// Waits until every posted line shows: the balance sheet at the last date and the year's income both match.
async fn wait_for_books(token: &str, lines: &[Line], last: NaiveDate, start_month: u32) {
    let want_assets = assets(lines, last);
    let want_income = net_income(lines, fiscal_year_start(last, start_month), last);
    eventually(VISIBLE_WITHIN, "the random books in the balance sheet", || async {
        let (status, bs) = get(Svc::Query, token, &format!("/api/v1/reports/balance-sheet?as_of={last}")).await;
        let d = &bs["data"];
        (status == 200
            && d["assets"]["total"].as_i64().map(i128::from) == Some(want_assets)
            && d["equity"]["current_year_earnings"]["amount"].as_i64().map(i128::from) == Some(want_income))
        .then_some(())
    })
    .await;
}

/// Three years of random books with a January fiscal year: every trial balance balances and matches the test's
/// ledger, every balance sheet satisfies its identity, each year's net income is what retained earnings grow by across
/// the year boundary, and the year to date is the sum of the months.
#[tokio::test]
async fn three_random_years_give_statements_that_balance_and_agree() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let lines = post_random_books(&c, 0x5354_4154, 300, day("2023-01-01"), 3 * 365).await;
    wait_for_books(&c.token, &lines, day("2025-12-31"), 1).await;

    for (y, m) in [(2023, 1), (2023, 12), (2024, 1), (2024, 2), (2024, 12), (2025, 1), (2025, 7), (2025, 12)] {
        let (api, _) = common::api_trial_balance(&c.token, y, m).await;
        assert_eq!(api, common::pg_trial_balance(&pool, c.id, y, m).await, "{y}-{m:02} against Postgres, to the won");
        let tb = trial_balance(&c.token, y, m).await;
        assert_tb_balanced(&tb, &format!("{y}-{m:02}"));
        let got: BTreeMap<String, i128> = tb["data"]["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| (a["account_code"].as_str().expect("code").to_owned(), amount(&a["closing_debit"]) - amount(&a["closing_credit"])))
            .collect();
        let mut want = closing_by_code(&lines, y, m, 1);
        // The API lists an account with postings that net to zero; the comparison is on balances only.
        want.retain(|_, v| *v != 0);
        let got: BTreeMap<_, _> = got.into_iter().filter(|(_, v)| *v != 0).collect();
        assert_eq!(got, want, "closing balances of {y}-{m:02}");
    }

    for as_of in
        ["2023-01-31", "2023-06-15", "2023-12-31", "2024-01-01", "2024-02-29", "2024-07-19", "2024-12-31", "2025-03-01", "2025-12-31"]
    {
        check_balance_sheet(&pool, &c, &lines, day(as_of), 1).await;
    }

    // Every month's income statement, per account for the month and the year to date, per section and in net income.
    for year in 2023..=2025 {
        for month in 1..=12 {
            let is = income_statement(&c.token, year, month).await;
            let want = pg_reports::pg_income_statement(&pool, c.id, year, month).await;
            assert_eq!(pg_reports::api_income_statement(&is["data"]), want, "income statement of {year}-{month:02} against Postgres");
        }
    }

    for year in [2023, 2024] {
        let is = income_statement(&c.token, year, 12).await;
        let income = amount(&is["data"]["net_income"]["year_to_date"]);
        assert_eq!(income, net_income(&lines, NaiveDate::from_ymd_opt(year, 1, 1).unwrap(), month_end(year, 12)), "{year}");
        let grew = retained_earnings_opening(&c.token, year + 1, 1).await - retained_earnings_opening(&c.token, year, 1).await;
        assert_eq!(grew, income, "retained earnings grow by {year}'s net income across the year boundary");
    }

    let mut running = 0;
    for month in 1..=12 {
        let is = income_statement(&c.token, 2024, month).await;
        let d = &is["data"];
        running += amount(&d["net_income"]["month"]);
        assert_eq!(amount(&d["net_income"]["year_to_date"]), running, "2024-{month:02}: the year to date is the sum of the months");
        assert_eq!(amount(&d["net_income"]["month"]), net_income(&lines, day(&format!("2024-{month:02}-01")), month_end(2024, month)));
        // The subtotals follow the Korean structure from the sections.
        let v = |k: &str| amount(&d[k]["year_to_date"]);
        assert_eq!(v("gross_profit"), v("sales") - v("cost_of_sales"));
        assert_eq!(v("operating_income"), v("gross_profit") - v("selling_and_administrative_expenses"));
        assert_eq!(v("income_before_income_taxes"), v("operating_income") + v("non_operating_income") - v("non_operating_expenses"));
        assert_eq!(v("net_income"), v("income_before_income_taxes") - v("income_taxes"));
        for section in [
            "sales",
            "cost_of_sales",
            "selling_and_administrative_expenses",
            "non_operating_income",
            "non_operating_expenses",
            "income_taxes",
        ] {
            let accounts = d[section]["accounts"].as_array().expect("accounts");
            let sum: i128 = accounts.iter().map(|a| amount(&a["year_to_date"])).sum();
            assert_eq!(sum, v(section), "{section} of 2024-{month:02}");
        }
    }
    let is = income_statement(&c.token, 2025, 6).await;
    assert_eq!(is["data"]["sales"]["label_ko"], "매출액");
    assert_eq!(is["data"]["net_income"]["label_ko"], "당기순이익");
    let codes: Vec<&str> =
        is["data"]["non_operating_expenses"]["accounts"].as_array().unwrap().iter().map(|a| a["account_code"].as_str().unwrap()).collect();
    assert!(codes.iter().all(|c| *c == "6101"), "6xxx is non-operating: {codes:?}");

    // Narrowed to a code range, the trial balance lists only those accounts.
    let tb = report(&c.token, "/api/v1/reports/trial-balance?year=2025&month=12&account_code_from=4000&account_code_to=5999").await;
    let codes: Vec<&str> = tb["data"]["accounts"].as_array().unwrap().iter().map(|a| a["account_code"].as_str().unwrap()).collect();
    assert!(!codes.is_empty() && codes.iter().all(|c| ("4000"..="5999").contains(c)), "{codes:?}");
    let closing: i128 = tb["data"]["accounts"].as_array().unwrap().iter().map(|a| amount(&a["closing_debit"])).sum();
    assert_eq!(closing, amount(&tb["data"]["totals"]["closing_debit"]));
}

/// A company whose fiscal year starts in April: income accounts open at zero on April 1, and the year that ends on
/// March 31 closes into retained earnings.
#[tokio::test]
async fn a_fiscal_year_starting_in_april_closes_on_march_31() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    // Set before any posting: the setting reaches ClickHouse as an event ahead of the company's vouchers.
    let (status, body) = send(Method::PATCH, Svc::Ingest, &c.token, "/api/v1/company", Some(&json!({"fiscal_start_month": 4}))).await;
    assert_eq!(status, 200, "{body}");
    let lines = post_random_books(&c, 0x0000_0004, 120, day("2023-04-01"), 2 * 365 + 90).await;
    let last = day("2025-06-29");
    wait_for_books(&c.token, &lines, last, 4).await;

    for (y, m) in [(2024, 3), (2024, 4), (2025, 1), (2025, 3), (2025, 4)] {
        assert_tb_balanced(&trial_balance(&c.token, y, m).await, &format!("{y}-{m:02}"));
        let (api, _) = common::api_trial_balance(&c.token, y, m).await;
        assert_eq!(api, common::pg_trial_balance(&pool, c.id, y, m).await, "{y}-{m:02} against Postgres, to the won");
    }
    // The fiscal year 2023-04-01 .. 2024-03-31 moves into retained earnings on 2024-04-01, not on 2024-01-01.
    let fiscal_2023 = net_income(&lines, day("2023-04-01"), day("2024-03-31"));
    assert_eq!(retained_earnings_opening(&c.token, 2024, 3).await, 0);
    assert_eq!(retained_earnings_opening(&c.token, 2024, 4).await, fiscal_2023);
    let fiscal_2024 = net_income(&lines, day("2024-04-01"), day("2025-03-31"));
    assert_eq!(retained_earnings_opening(&c.token, 2025, 4).await - retained_earnings_opening(&c.token, 2024, 4).await, fiscal_2024);

    let mut month = day("2023-04-01");
    while month <= last {
        let (y, m) = (month.year(), month.month());
        let is = income_statement(&c.token, y, m).await;
        let want = pg_reports::pg_income_statement(&pool, c.id, y, m).await;
        assert_eq!(pg_reports::api_income_statement(&is["data"]), want, "income statement of {y}-{m:02} against Postgres");
        month = month_end(y, m).succ_opt().expect("next month");
    }
    let is = income_statement(&c.token, 2025, 3).await;
    assert_eq!(is["data"]["fiscal_year_start"], "2024-04-01");
    assert_eq!(amount(&is["data"]["net_income"]["year_to_date"]), fiscal_2024);
    let april = income_statement(&c.token, 2025, 4).await;
    assert_eq!(april["data"]["net_income"]["month"], april["data"]["net_income"]["year_to_date"], "April opens the year");

    for as_of in ["2024-03-31", "2024-04-01", "2024-12-31", "2025-01-15", "2025-03-31", last.to_string().as_str()] {
        let bs = check_balance_sheet(&pool, &c, &lines, day(as_of), 4).await;
        assert_eq!(bs["data"]["fiscal_year_start"], fiscal_year_start(day(as_of), 4).to_string());
    }
}

/// Creates a partner through the API, which queues the event that brings it to ClickHouse, and returns its id.
async fn api_partner(token: &str, code: &str, name: &str, partner_type: &str) -> Uuid {
    let body = json!({"code": code, "name": name, "partner_type": partner_type});
    let (status, created) = send(Method::POST, Svc::Ingest, token, "/api/v1/partners", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    Uuid::parse_str(created["data"]["id"].as_str().expect("id")).expect("uuid")
}

/// Writes a partner into Postgres only, with no event: a partner the ClickHouse dimension does not know (yet).
async fn pg_only_partner(pool: &sqlx::PgPool, company: Uuid, code: &str, name: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO partners (id, company_id, code, name, partner_type) VALUES ($1, $2, $3, $4, 'supplier')")
        .bind(id)
        .bind(company)
        .bind(code)
        .bind(name)
        .execute(pool)
        .await
        .expect("partner");
    id
}

fn line(code: &str, side: &str, amount: i64, partner: Option<Uuid>) -> Value {
    let mut l = json!({"account_code": code, side: amount});
    if let Some(p) = partner {
        l["partner_id"] = json!(p.to_string());
    }
    l
}

async fn post(c: &Company, date: &str, lines: Vec<Value>) {
    let (status, body) = post_voucher(&c.token, &json!({"voucher_date": date, "voucher_type": "general", "lines": lines})).await;
    assert_eq!(status, 201, "{body}");
}

/// The partner ledger: a paged list of partners with receivable and payable balances, names from the dimension when it
/// has them, and one partner's lines on 1103 and 2101 with a running balance that pages carry over.
#[tokio::test]
async fn the_partner_ledger_lists_partners_and_runs_their_balances() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let p1 = api_partner(&c.token, "P001", "가나상사", "both").await;
    let p2 = pg_only_partner(&pool, c.id, "P002", "Partner Two").await;
    let p3 = api_partner(&c.token, "P003", "Dimension Only", "customer").await;

    let dr = "debit_amount";
    let cr = "credit_amount";
    post(&c, "2025-01-10", vec![line("1103", dr, 1_100_000, Some(p1)), line("4101", cr, 1_000_000, None), line("2105", cr, 100_000, None)])
        .await;
    post(&c, "2025-01-20", vec![line("1201", dr, 500_000, None), line("2101", cr, 500_000, Some(p2))]).await;
    post(&c, "2025-01-25", vec![line("1103", dr, 999, None), line("4101", cr, 999, None)]).await; // no partner
    post(&c, "2025-01-26", vec![line("1101", dr, 777, Some(p1)), line("4101", cr, 777, None)]).await; // not on 1103/2101
    post(&c, "2025-02-05", vec![line("1102", dr, 600_000, None), line("1103", cr, 600_000, Some(p1))]).await;
    post(&c, "2025-02-05", vec![line("2101", dr, 200_000, Some(p2)), line("1102", cr, 200_000, None)]).await;
    post(&c, "2025-02-15", vec![line("1201", dr, 300_000, None), line("2101", cr, 300_000, Some(p1))]).await;
    post(&c, "2025-03-01", vec![line("1103", dr, 50_000, Some(p1)), line("4101", cr, 50_000, None)]).await;

    // Postings fold in order, so once the last one shows (to_date defaults to today, after every posting) all do.
    let today = eventually(VISIBLE_WITHIN, "the partner list", || async {
        let (status, b) = get(Svc::Query, &c.token, "/api/v1/reports/partner-ledger").await;
        (status == 200 && b["data"][0]["receivable"] == 550_000).then_some(b)
    })
    .await;
    assert_eq!(today["data"][0]["payable"], 300_000);
    let list = report(&c.token, "/api/v1/reports/partner-ledger?to_date=2025-02-28").await;
    assert_eq!(list["pagination"]["total"], 3, "{list}");
    let rows = list["data"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["partner_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [p1.to_string(), p3.to_string(), p2.to_string()], "known partners first, by code");
    assert_eq!((rows[0]["partner_name"].as_str(), rows[0]["partner_code"].as_str()), (Some("가나상사"), Some("P001")));
    assert_eq!((amount(&rows[0]["receivable"]), amount(&rows[0]["payable"])), (500_000, 300_000));
    assert_eq!((amount(&rows[1]["receivable"]), amount(&rows[1]["payable"])), (0, 0));
    assert_eq!(rows[1]["partner_name"], "Dimension Only");
    assert!(rows[2]["partner_name"].is_null(), "a partner the dimension lacks has no name: {}", rows[2]);
    assert_eq!((amount(&rows[2]["receivable"]), amount(&rows[2]["payable"])), (0, 300_000));

    let page = report(&c.token, "/api/v1/reports/partner-ledger?to_date=2025-02-28&page=2&page_size=1").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["partner_id"], p3.to_string());
    let big = report(&c.token, "/api/v1/reports/partner-ledger?page_size=100000").await;
    assert_eq!(big["pagination"]["page_size"], kerp_query::PARTNER_PAGE_SIZE_MAX);

    let path = format!("/api/v1/reports/partner-ledger?partner_id={p1}&from_date=2025-02-01&to_date=2025-03-31");
    let ledger = report(&c.token, &path).await;
    let d = &ledger["data"];
    assert_eq!(d["partner"]["partner_name"], "가나상사");
    assert_eq!((amount(&d["opening_receivable"]), amount(&d["opening_payable"]), amount(&d["opening_balance"])), (1_100_000, 0, 1_100_000));
    let entries = d["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str, i128)> =
        entries.iter().map(|e| (e["voucher_date"].as_str().unwrap(), e["account_code"].as_str().unwrap(), amount(&e["balance"]))).collect();
    assert_eq!(seen, [("2025-02-05", "1103", 500_000), ("2025-02-15", "2101", 200_000), ("2025-03-01", "1103", 250_000)]);
    assert_eq!(
        (amount(&d["closing_receivable"]), amount(&d["closing_payable"]), amount(&d["closing_balance"])),
        (550_000, 300_000, 250_000)
    );
    assert_eq!((amount(&d["period_debit"]), amount(&d["period_credit"])), (50_000, 900_000));
    assert_eq!(ledger["pagination"]["total"], 3);
    let second = report(&c.token, &format!("{path}&page=2&page_size=1")).await;
    assert_eq!(second["data"]["entries"][0]["balance"], 200_000, "the second page carries the first page's running balance");
    assert_eq!(second["data"]["closing_balance"], 250_000);
    let big = report(&c.token, &format!("{path}&page_size=100000")).await;
    assert_eq!(big["pagination"]["page_size"], kerp_query::PARTNER_LEDGER_PAGE_SIZE_MAX);

    // Partner 2's lines, in ledger order, end with the company owing it.
    let (_, p2_ledger) =
        get(Svc::Query, &c.token, &format!("/api/v1/reports/partner-ledger?partner_id={p2}&from_date=2025-01-01&to_date=2025-12-31")).await;
    let d = &p2_ledger["data"];
    assert!(d["partner"]["partner_name"].is_null());
    let numbers: Vec<&str> = d["entries"].as_array().unwrap().iter().map(|e| e["voucher_number"].as_str().unwrap()).collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(numbers, sorted);
    assert_eq!(amount(&d["closing_balance"]), -300_000, "the company owes partner 2");

    // The same reports computed straight from Postgres: every partner's balances at several dates, and each partner's
    // entries with their running balance over several ranges (one a single day with two vouchers, so the order counts).
    let partners = pg_reports::pg_partners(&pool, c.id).await;
    check_partner_reports(
        &pool,
        &c,
        &partners,
        &["2025-01-25", "2025-02-05", "2025-02-28", "2025-12-31"],
        &[("2025-01-01", "2025-12-31"), ("2025-02-01", "2025-03-31"), ("2025-02-05", "2025-02-05")],
    )
    .await;
}

/// Checks query-api's partner list at each date of `list_dates`, and every partner's ledger over each of `ranges`,
/// against the same computed straight from Postgres.
async fn check_partner_reports(
    pool: &sqlx::PgPool,
    c: &Company,
    partners: &std::collections::BTreeSet<Uuid>,
    list_dates: &[&str],
    ranges: &[(&str, &str)],
) {
    for to in list_dates {
        let api =
            report(&c.token, &format!("/api/v1/reports/partner-ledger?to_date={to}&page_size={}", kerp_query::PARTNER_PAGE_SIZE_MAX)).await;
        let want = pg_reports::pg_partner_balances(pool, c.id, day(to)).await;
        assert!(!want.is_empty(), "the partners at {to} have lines to compare");
        pg_reports::assert_partner_balances(&pg_reports::api_partner_balances(&api), &want, partners, &format!("partners at {to}"));
    }
    for p in partners {
        for (from, to) in ranges {
            let path = format!(
                "/api/v1/reports/partner-ledger?partner_id={p}&from_date={from}&to_date={to}&page_size={}",
                kerp_query::PARTNER_LEDGER_PAGE_SIZE_MAX
            );
            let api = pg_reports::api_partner_ledger(&report(&c.token, &path).await);
            assert_eq!(api, pg_reports::pg_partner_ledger(pool, c.id, *p, day(from), day(to)).await, "{path} against Postgres");
        }
    }
}

/// Posts a voucher body and returns its id.
async fn post_id(c: &Company, body: Value) -> Uuid {
    let (status, posted) = post_voucher(&c.token, &body).await;
    assert_eq!(status, 201, "{posted}");
    Uuid::parse_str(posted["data"]["id"].as_str().expect("id")).expect("uuid")
}

/// Reverses an approved voucher, on `date` or on the original's date.
async fn reverse(c: &Company, id: Uuid, date: Option<&str>) {
    let body = date.map_or_else(|| json!({"reason": "test"}), |d| json!({"date": d, "reason": "test"}));
    let (status, posted) = send(Method::POST, Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{id}/reverse"), Some(&body)).await;
    assert_eq!(status, 201, "{posted}");
}

/// Books with everything the voucher lifecycle makes, and a fiscal year starting in July: every statement query-api
/// answers equals the one computed straight from Postgres, to the won. The books have drafts (one left, one edited,
/// one deleted, one approved later), reversals on the original's date and into the next fiscal year, and partners on
/// receivables and payables, one of them known to Postgres only.
///
/// The reports are read once, not polled until they agree: a sentinel voucher dated 2030 is posted after everything
/// else, and a company's events fold in order, so once it shows (through the monthly balances and through the lines)
/// every earlier posting is in ClickHouse.
#[tokio::test]
async fn statements_equal_postgres_through_drafts_reversals_and_partners() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let (status, body) = send(Method::PATCH, Svc::Ingest, &c.token, "/api/v1/company", Some(&json!({"fiscal_start_month": 7}))).await;
    assert_eq!(status, 200, "{body}");
    let p1 = api_partner(&c.token, "L001", "라이프상사", "both").await;
    let p2 = api_partner(&c.token, "L002", "Supplier Two", "supplier").await;
    let p3 = pg_only_partner(&pool, c.id, "L003", "Postgres Only").await;
    post_random_books(&c, 0x4C49_4645, 100, day("2024-01-01"), 730).await;

    let (dr, cr) = ("debit_amount", "credit_amount");
    let voucher = |date: &str, status: &str, lines: Vec<Value>| json!({"voucher_date": date, "voucher_type": "general", "status": status, "lines": lines});
    let sale = post_id(
        &c,
        voucher(
            "2024-06-20",
            "approved",
            vec![line("1103", dr, 2_200_000, Some(p1)), line("4101", cr, 2_000_000, None), line("2105", cr, 200_000, None)],
        ),
    )
    .await;
    let purchase =
        post_id(&c, voucher("2024-06-28", "approved", vec![line("1201", dr, 800_000, None), line("2101", cr, 800_000, Some(p2))])).await;
    post_id(&c, voucher("2024-07-15", "approved", vec![line("1102", dr, 1_000_000, None), line("1103", cr, 1_000_000, Some(p1))])).await;
    post_id(&c, voucher("2024-09-30", "approved", vec![line("2101", dr, 300_000, Some(p2)), line("1102", cr, 300_000, None)])).await;
    post_id(
        &c,
        voucher(
            "2025-02-11",
            "approved",
            vec![line("1103", dr, 440_000, Some(p3)), line("4101", cr, 400_000, None), line("2105", cr, 40_000, None)],
        ),
    )
    .await;
    post_id(&c, voucher("2025-03-03", "approved", vec![line("5212", dr, 90_000, None), line("2101", cr, 90_000, Some(p1))])).await;
    let salary =
        post_id(&c, voucher("2025-06-30", "approved", vec![line("5201", dr, 3_000_000, None), line("1102", cr, 3_000_000, None)])).await;

    // The sale is reversed on its own date, so both stay in the books and net to zero; the purchase of 2024-06-28 and
    // the salary of 2025-06-30 are reversed on the first days of the next fiscal years, so one year keeps the
    // original and the next carries the reversal.
    reverse(&c, sale, None).await;
    reverse(&c, purchase, Some("2024-07-02")).await;
    reverse(&c, salary, Some("2025-07-01")).await;

    // Drafts count nowhere until approved: one left as it is, one edited and left, one deleted, one approved.
    post_id(&c, voucher("2024-08-08", "draft", vec![line("1103", dr, 777_777, Some(p1)), line("4101", cr, 777_777, None)])).await;
    let edited =
        post_id(&c, voucher("2024-10-10", "draft", vec![line("2101", dr, 55_555, Some(p2)), line("1101", cr, 55_555, None)])).await;
    let body = voucher("2025-01-10", "draft", vec![line("2101", dr, 66_666, Some(p2)), line("1101", cr, 66_666, None)]);
    let (status, put) = send(Method::PUT, Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{edited}"), Some(&body)).await;
    assert_eq!(status, 200, "{put}");
    let deleted =
        post_id(&c, voucher("2024-11-11", "draft", vec![line("5212", dr, 44_444, None), line("2101", cr, 44_444, Some(p1))])).await;
    let (status, gone) = send(Method::DELETE, Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{deleted}"), None).await;
    assert_eq!(status, 204, "{gone}");
    let later =
        post_id(&c, voucher("2025-05-05", "draft", vec![line("1103", dr, 123_456, Some(p2)), line("4201", cr, 123_456, None)])).await;
    let (status, approved) = send(Method::POST, Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{later}/approve"), None).await;
    assert_eq!(status, 200, "{approved}");

    let sentinel = 4_321;
    assert_eq!(post_voucher(&c.token, &simple_voucher("2030-01-15", "1101", "4101", sentinel)).await.0, 201);
    eventually(VISIBLE_WITHIN, "the sentinel voucher of 2030", || async {
        let (s1, tb) = get(Svc::Query, &c.token, "/api/v1/reports/trial-balance?year=2030&month=1").await;
        let (s2, bs) = get(Svc::Query, &c.token, "/api/v1/reports/balance-sheet?as_of=2030-01-15").await;
        (s1 == 200
            && s2 == 200
            && tb["data"]["totals"]["period_debit"] == sentinel
            && bs["data"]["equity"]["current_year_earnings"]["amount"] == sentinel)
            .then_some(())
    })
    .await;

    for (y, m) in [(2024, 6), (2024, 7), (2025, 6), (2025, 7), (2025, 12)] {
        let (api, _) = common::api_trial_balance(&c.token, y, m).await;
        assert_eq!(api, common::pg_trial_balance(&pool, c.id, y, m).await, "trial balance of {y}-{m:02} against Postgres");
    }
    for year in 2024..=2025 {
        for month in 1..=12 {
            let is = income_statement(&c.token, year, month).await;
            let want = pg_reports::pg_income_statement(&pool, c.id, year, month).await;
            assert_eq!(pg_reports::api_income_statement(&is["data"]), want, "income statement of {year}-{month:02} against Postgres");
        }
    }
    for as_of in ["2024-06-20", "2024-06-30", "2024-07-01", "2024-07-02", "2025-02-11", "2025-06-30", "2025-07-01", "2025-12-31"] {
        let bs = balance_sheet(&c.token, day(as_of)).await;
        let got = pg_reports::api_balance_sheet(&bs["data"]);
        assert_eq!(got, pg_reports::pg_balance_sheet(&pool, c.id, day(as_of)).await, "balance sheet at {as_of} against Postgres");
        assert_eq!(got.total_assets, got.total_liabilities_and_equity, "assets = liabilities + equity at {as_of}");
    }
    let partners = pg_reports::pg_partners(&pool, c.id).await;
    assert_eq!(partners, [p1, p2, p3].into_iter().collect());
    check_partner_reports(
        &pool,
        &c,
        &partners,
        &["2024-06-20", "2024-07-01", "2025-06-30", "2025-12-31"],
        &[("2024-07-01", "2025-06-30"), ("2024-01-01", "2025-12-31"), ("2024-06-20", "2024-06-20")],
    )
    .await;
}

/// Lines charged to a department: the trial balance filtered by it sums those lines only.
#[tokio::test]
async fn the_trial_balance_filters_by_department() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let body = json!({"code": "D01", "name": "영업부"});
    let (status, created) = send(Method::POST, Svc::Ingest, &c.token, "/api/v1/departments", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let dept = Uuid::parse_str(created["data"]["id"].as_str().expect("id")).expect("uuid");
    let d = Some(dept.to_string());
    let with_dept = |code: &str, side: &str, amount: i64| {
        let mut l = line(code, side, amount, None);
        l["department_id"] = json!(d);
        l
    };
    post(&c, "2024-11-03", vec![with_dept("5201", "debit_amount", 70_000), line("1101", "credit_amount", 70_000, None)]).await;
    post(&c, "2025-01-03", vec![with_dept("5212", "debit_amount", 5_000), with_dept("1101", "credit_amount", 5_000)]).await;
    post(&c, "2025-01-04", vec![line("5212", "debit_amount", 9_000, None), line("1101", "credit_amount", 9_000, None)]).await;

    let path = format!("/api/v1/reports/trial-balance?year=2025&month=1&department_id={dept}");
    let tb = eventually(VISIBLE_WITHIN, "the department's January", || async {
        let (status, b) = get(Svc::Query, &c.token, &path).await;
        (status == 200 && b["data"]["totals"]["period_debit"] == 5_000).then_some(b)
    })
    .await;
    let by_code: BTreeMap<&str, [i128; 4]> = tb["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let n = |k: &str| amount(&a[k]);
            (a["account_code"].as_str().unwrap(), [n("opening_debit"), n("opening_credit"), n("period_debit"), n("period_credit")])
        })
        .collect();
    // 2024's salaries of the department closed into retained earnings; only its own lines of January count.
    assert_eq!(by_code.get("5212"), Some(&[0, 0, 5_000, 0]));
    assert_eq!(by_code.get("1101"), Some(&[0, 0, 0, 5_000]));
    assert_eq!(by_code.get("3201"), Some(&[70_000, 0, 0, 0]));
    assert_eq!(by_code.len(), 3, "{tb}");
    let other = report(&c.token, &format!("/api/v1/reports/trial-balance?year=2025&month=1&department_id={}", Uuid::new_v4())).await;
    assert_eq!(other["data"]["accounts"], json!([]));
}

/// A company with no postings gets zeros from every report, and a viewer may read them all.
#[tokio::test]
async fn an_empty_company_gets_zeros_from_every_report() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let viewer = common::token_with_role(&pool, c.id, Role::Viewer).await;
    for token in [&c.token, &viewer] {
        let tb = report(token, "/api/v1/reports/trial-balance?year=2025&month=3").await;
        assert_eq!(tb["data"]["accounts"], json!([]));
        assert!(tb["data"]["totals"].as_object().unwrap().values().all(|v| v == 0), "{tb}");
        let is = income_statement(token, 2025, 3).await;
        for key in ["sales", "cost_of_sales", "gross_profit", "operating_income", "net_income"] {
            assert_eq!((&is["data"][key]["month"], &is["data"][key]["year_to_date"]), (&json!(0), &json!(0)), "{key}");
        }
        assert_eq!(is["data"]["sales"]["accounts"], json!([]));
        let bs = balance_sheet(token, day("2025-03-15")).await;
        for key in ["assets", "liabilities", "equity"] {
            assert_eq!((&bs["data"][key]["accounts"], &bs["data"][key]["total"]), (&json!([]), &json!(0)), "{key}");
        }
        assert_eq!(bs["data"]["equity"]["current_year_earnings"]["amount"], 0);
        assert_eq!(bs["data"]["total_liabilities_and_equity"], 0);
        let default_bs = report(token, "/api/v1/reports/balance-sheet").await;
        assert_eq!(default_bs["data"]["assets"]["total"], 0);
        let list = report(token, "/api/v1/reports/partner-ledger").await;
        assert_eq!((&list["data"], &list["pagination"]["total"]), (&json!([]), &json!(0)));
        let ledger = report(token, &format!("/api/v1/reports/partner-ledger?partner_id={}&from_date=2025-01-01", Uuid::new_v4())).await;
        assert_eq!(ledger["data"]["entries"], json!([]));
        assert_eq!((&ledger["data"]["opening_balance"], &ledger["data"]["closing_balance"]), (&json!(0), &json!(0)));
    }
}

/// Reports need a token, and a company's token shows nothing of another company.
#[tokio::test]
async fn reports_need_a_token_and_stay_inside_the_token_company() {
    let s = stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let partner = api_partner(&b.token, "B001", "B's partner", "customer").await;
    assert_eq!(post_voucher(&b.token, &simple_voucher("2024-05-05", "1101", "4101", 4_444)).await.0, 201);
    post(&b, "2025-05-06", vec![line("1103", "debit_amount", 333, Some(partner)), line("4101", "credit_amount", 333, None)]).await;
    eventually(VISIBLE_WITHIN, "B's balance sheet", || async {
        let (_, body) = get(Svc::Query, &b.token, "/api/v1/reports/balance-sheet?as_of=2025-05-31").await;
        (body["data"]["assets"]["total"] == 4_777).then_some(())
    })
    .await;
    let b_tb = report(&b.token, "/api/v1/reports/trial-balance?year=2025&month=5").await;
    assert!(b_tb["data"]["accounts"].as_array().unwrap().iter().any(|a| a["account_code"] == "3201"), "B's 2024 income closed");

    let tb = report(&a.token, "/api/v1/reports/trial-balance?year=2025&month=5").await;
    assert_eq!(tb["data"]["accounts"], json!([]));
    let is = income_statement(&a.token, 2025, 5).await;
    assert_eq!(is["data"]["net_income"]["year_to_date"], 0);
    let bs = balance_sheet(&a.token, day("2025-05-31")).await;
    assert_eq!((&bs["data"]["assets"]["total"], &bs["data"]["equity"]["accounts"]), (&json!(0), &json!([])));
    let list = report(&a.token, "/api/v1/reports/partner-ledger").await;
    assert_eq!(list["data"], json!([]), "B's partner is not A's");
    let ledger = report(&a.token, &format!("/api/v1/reports/partner-ledger?partner_id={partner}&from_date=2025-01-01")).await;
    assert_eq!((&ledger["data"]["entries"], &ledger["data"]["closing_balance"]), (&json!([]), &json!(0)));
    assert!(ledger["data"]["partner"]["partner_name"].is_null(), "B's partner name does not show to A");

    let paths = [
        "/api/v1/reports/trial-balance?year=2025&month=5",
        "/api/v1/reports/income-statement?year=2025&month=5",
        "/api/v1/reports/balance-sheet?as_of=2025-05-31",
        "/api/v1/reports/partner-ledger",
    ];
    for path in paths {
        let r = common::http().get(format!("{}{path}", s.query_url)).send().await.expect("get");
        assert_eq!(r.status(), 401, "{path} without a token");
        let (status, _) = get(Svc::Query, "not-a-token", path).await;
        assert_eq!(status, 401, "{path} with a bad token");
    }
}

/// Malformed parameters get 400, parameters that read but are not acceptable get 422, both as problem+json naming the
/// field; unknown parameters are ignored.
#[tokio::test]
async fn malformed_parameters_get_a_problem() {
    let s = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let cases: &[(&str, u16, &str)] = &[
        ("/api/v1/reports/trial-balance?year=2025&month=1&account_code_from=11", 400, "account_code_from"),
        ("/api/v1/reports/trial-balance?year=2025&month=1&account_code_to=abcd", 400, "account_code_to"),
        ("/api/v1/reports/trial-balance?year=2025&month=1&department_id=sales", 400, "department_id"),
        ("/api/v1/reports/trial-balance?year=2025&month=1&account_code_from=5000&account_code_to=4000", 422, "account_code_from"),
        ("/api/v1/reports/trial-balance?year=abc&month=1", 400, ""),
        ("/api/v1/reports/trial-balance?year=2025&month=13", 422, "month"),
        ("/api/v1/reports/income-statement?year=2025&month=x", 400, ""),
        ("/api/v1/reports/income-statement?year=2025", 422, "month"),
        ("/api/v1/reports/income-statement?year=1900&month=1", 422, "year"),
        ("/api/v1/reports/balance-sheet?as_of=2025-13-01", 400, "as_of"),
        ("/api/v1/reports/balance-sheet?as_of=20250101", 400, "as_of"),
        ("/api/v1/reports/balance-sheet?as_of=1960-01-01", 422, "as_of"),
        ("/api/v1/reports/partner-ledger?partner_id=p-7", 400, "partner_id"),
        ("/api/v1/reports/partner-ledger?to_date=2025/01/31", 400, "to_date"),
        ("/api/v1/reports/partner-ledger?page=first", 400, ""),
        ("/api/v1/reports/partner-ledger?partner_id=00000000-0000-0000-0000-000000000000", 422, "partner_id"),
        ("/api/v1/reports/partner-ledger?from_date=2025-03-01&to_date=2025-02-01", 422, "from_date"),
    ];
    for (path, want, field) in cases {
        let r = common::http().get(format!("{}{path}", s.query_url)).bearer_auth(&c.token).send().await.expect("get");
        let status = r.status().as_u16();
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, *want, "{path}: {body}");
        assert_eq!(content_type, "application/problem+json", "{path}");
        assert_eq!(body["status"], *want, "{path}: {body}");
        if !field.is_empty() {
            let fields: Vec<&str> = body["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().unwrap()).collect();
            assert!(fields.contains(field), "{path}: {fields:?}");
        }
    }
    for path in [
        "/api/v1/reports/trial-balance?year=2025&month=1&foo=bar&account_code_from=",
        "/api/v1/reports/income-statement?year=2025&month=1&format=pdf",
        "/api/v1/reports/balance-sheet?as_of=2025-01-31&unused=1",
    ] {
        let (status, body) = get(Svc::Query, &c.token, path).await;
        assert_eq!(status, 200, "{path}: unknown and empty parameters are ignored: {body}");
    }
}
