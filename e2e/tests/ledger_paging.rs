//! Account-ledger paging against the real stack: with more lines than fit a page, spread unevenly over months (one
//! month empty, several lines of one voucher on the account), every page's running balance equals the one computed
//! independently from Postgres, deep pages included; offset pages and cursor pages give the same entries and balances,
//! also over a range that starts and ends inside months; a cursor that is not one of ours, or that is sent for another
//! account or range, is a 422 problem. First and cursor pages are read in the same round as the company's balances
//! (`kerp_query::balances::Reader::ledger_guess`), and what they show is checked like every other page.

mod common;

use std::time::Duration;

use common::{company, eventually, get, pg, post_voucher, stack, Svc};
use futures::StreamExt;
use serde_json::{json, Value};

/// Ledger pages whose read alongside their company's balances was the page, so far, from query-api's metrics.
async fn guessed_pages() -> f64 {
    let body = reqwest::get(format!("{}/metrics", stack().query_metrics_url)).await.expect("metrics").text().await.expect("text");
    let prefix = format!("{}{{result=\"page\"}} ", kerp_query::balances::LEDGER_GUESS_METRIC);
    body.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.parse().expect("a number"))
}

/// One line of account 1102 as Postgres has it: date, voucher number, line number, debit, credit.
type PgLine = (String, String, i32, i64, i64);

/// Every entry of a ledger range as (voucher number, line, balance), by page/page_size.
async fn by_offset(token: &str, range: &str, page_size: usize) -> (Vec<(String, u64, i64)>, Value) {
    let mut entries = Vec::new();
    let mut first = Value::Null;
    for page in 1.. {
        let (status, body) =
            get(Svc::Query, token, &format!("/api/v1/reports/account-ledger?account_code=1102&{range}&page={page}&page_size={page_size}"))
                .await;
        assert_eq!(status, 200, "{body}");
        let page_entries = body["data"]["entries"].as_array().unwrap().clone();
        if page == 1 {
            first = body.clone();
        }
        if page_entries.is_empty() {
            break;
        }
        entries.extend(page_entries.iter().map(entry));
    }
    (entries, first)
}

/// Every entry of a ledger range, following `next_cursor` from the first page.
async fn by_cursor(token: &str, range: &str, page_size: usize) -> Vec<(String, u64, i64)> {
    let base = format!("/api/v1/reports/account-ledger?account_code=1102&{range}&page_size={page_size}");
    let mut entries = Vec::new();
    let mut path = base.clone();
    for page in 1.. {
        let (status, body) = get(Svc::Query, token, &path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["pagination"]["page"], page, "{}", body["pagination"]);
        entries.extend(body["data"]["entries"].as_array().unwrap().iter().map(entry));
        match body["pagination"]["next_cursor"].as_str() {
            Some(c) => path = format!("{base}&cursor={c}"),
            None => break,
        }
    }
    entries
}

fn entry(e: &Value) -> (String, u64, i64) {
    (e["voucher_number"].as_str().unwrap().to_owned(), e["line_no"].as_u64().unwrap(), e["balance"].as_i64().unwrap())
}

/// The entries of 1102 dated `from` to `to` with their running balance, computed from Postgres' lines alone.
fn expected(lines: &[PgLine], from: &str, to: &str) -> (i64, Vec<(String, u64, i64)>) {
    let opening: i64 = lines.iter().filter(|l| l.0.as_str() < from).map(|l| l.3 - l.4).sum();
    let mut balance = opening;
    let entries = lines
        .iter()
        .filter(|l| l.0.as_str() >= from && l.0.as_str() <= to)
        .map(|l| {
            balance += l.3 - l.4;
            (l.1.clone(), u64::try_from(l.2).unwrap(), balance)
        })
        .collect();
    (opening, entries)
}

#[tokio::test]
async fn offset_and_cursor_pages_carry_the_exact_running_balance() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    // 640 vouchers from November 2024 to December 2025, none in March 2025, most in June; each has two lines on the
    // bank account 1102 (a deposit in two parts, or a deposit and a payment).
    let months = [(2024, 11), (2024, 12), (2025, 1), (2025, 2), (2025, 4), (2025, 6), (2025, 6), (2025, 6), (2025, 8), (2025, 12)];
    let bodies: Vec<Value> = (0..640i64)
        .map(|i| {
            let (y, m) = months[usize::try_from(i).unwrap() % months.len()];
            let date = format!("{y}-{m:02}-{:02}", i % 28 + 1);
            let lines = if i % 4 == 0 {
                json!([{"account_code": "1102", "debit_amount": 5000 + i}, {"account_code": "1102", "credit_amount": 1000 + i},
                       {"account_code": "5212", "debit_amount": 1000 + i}, {"account_code": "4101", "credit_amount": 5000 + i}])
            } else {
                json!([{"account_code": "1102", "debit_amount": 300 + i}, {"account_code": "1102", "debit_amount": 70},
                       {"account_code": "4101", "credit_amount": 370 + i}])
            };
            json!({"voucher_date": date, "voucher_type": "general", "description": format!("v{i}"), "lines": lines})
        })
        .collect();
    let token = c.token.clone();
    let mut posts = futures::stream::iter(bodies.iter().map(|b| post_voucher(&token, b))).buffer_unordered(12);
    while let Some((status, body)) = posts.next().await {
        assert_eq!(status, 201, "{body}");
    }
    let mut lines: Vec<PgLine> = sqlx::query_as(
        "SELECT v.voucher_date::text, v.voucher_number, l.line_no, l.debit, l.credit
         FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id JOIN accounts a ON a.id = l.account_id
         WHERE l.company_id = $1 AND a.code = '1102'",
    )
    .bind(c.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    // Ledger order, sorted here byte-wise as ClickHouse sorts, whatever Postgres' collation.
    lines.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    assert_eq!(lines.len(), 1280);

    let (opening, want) = expected(&lines, "2025-01-01", "2025-12-31");
    assert!(opening != 0 && want.len() > 1000, "{opening} {}", want.len());
    eventually(Duration::from_secs(120), "every line of 2025 in the ledger", || async {
        let (_, body) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1102&year=2025&page_size=1").await;
        (body["pagination"]["total"].as_u64() == Some(want.len() as u64)).then_some(())
    })
    .await;

    // Offset pages, 97 at a time (pages end inside months and inside vouchers): every balance exact.
    let (offset_entries, first) = by_offset(&c.token, "year=2025", 97).await;
    assert_eq!(first["data"]["opening_balance"].as_i64(), Some(opening));
    assert_eq!(first["data"]["closing_balance"].as_i64(), want.last().map(|e| e.2));
    assert_eq!(offset_entries, want);

    // A deep page on its own: its first balance is the opening plus every line before it.
    let (status, deep) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1102&year=2025&page=9&page_size=100").await;
    assert_eq!(status, 200, "{deep}");
    let first_deep = &deep["data"]["entries"][0];
    let before: i64 = lines.iter().filter(|l| l.0.as_str() >= "2025-01-01").take(800).map(|l| l.3 - l.4).sum();
    let (d, cr) = (first_deep["debit"].as_i64().unwrap(), first_deep["credit"].as_i64().unwrap());
    assert_eq!(first_deep["balance"].as_i64(), Some(opening + before + d - cr));

    // Cursor pages give the same entries and balances, at two page sizes. Each page of 97 was read alongside the
    // balances (the accounts read above name 1102), whatever this binary's other test read meanwhile.
    let guessed_before = guessed_pages().await;
    assert_eq!(by_cursor(&c.token, "year=2025", 97).await, want);
    let pages = want.len().div_ceil(97) as f64;
    assert!(guessed_pages().await - guessed_before >= pages, "fewer than {pages} cursor pages were read in one round");
    assert_eq!(by_cursor(&c.token, "year=2025", 1000).await, want);

    // A range that starts and ends inside months.
    let range = "from_date=2025-02-10&to_date=2025-08-20";
    let (opening, want) = expected(&lines, "2025-02-10", "2025-08-20");
    let (offset_entries, first) = by_offset(&c.token, range, 50).await;
    assert_eq!(first["data"]["opening_balance"].as_i64(), Some(opening));
    assert_eq!(offset_entries, want);
    assert_eq!(by_cursor(&c.token, range, 50).await, want);
}

#[tokio::test]
async fn a_bad_ledger_cursor_is_a_422_problem() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    for i in 0..3 {
        let body = json!({"voucher_date": "2025-05-02", "lines": [{"account_code": "1102", "debit_amount": 10 + i},
                                                                  {"account_code": "4101", "credit_amount": 10 + i}]});
        assert_eq!(post_voucher(&c.token, &body).await.0, 201);
    }
    let path = "/api/v1/reports/account-ledger?account_code=1102&year=2025&page_size=1";
    let cursor = eventually(Duration::from_secs(60), "the ledger's lines", || async {
        let (_, body) = get(Svc::Query, &c.token, path).await;
        body["pagination"]["next_cursor"].as_str().filter(|_| body["pagination"]["total"] == 3).map(str::to_owned)
    })
    .await;
    let (status, second) = get(Svc::Query, &c.token, &format!("{path}&cursor={cursor}")).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["data"]["entries"][0]["balance"], 21);
    for query in [
        "account_code=1102&year=2025&cursor=zz".to_owned(),
        "account_code=1102&year=2025&cursor=7b7d".to_owned(),
        format!("account_code=1102&year=2025&page=2&cursor={cursor}"),
        format!("account_code=1102&year=2024&cursor={cursor}"),
        format!("account_code=1102&from_date=2025-01-01&to_date=2025-12-30&cursor={cursor}"),
        format!("account_code=1101&year=2025&cursor={cursor}"),
    ] {
        let r = common::http()
            .get(format!("{}/api/v1/reports/account-ledger?{query}", stack().query_url))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "cursor", "{query}: {body}");
    }
}
