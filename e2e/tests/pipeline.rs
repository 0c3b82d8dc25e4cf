//! The whole pipeline: vouchers posted to ingest-api become visible in query-api's trial balance and account ledger,
//! exactly matching a trial balance recomputed from Postgres with SQL.

mod common;

use std::time::Duration;

use common::{api_trial_balance, company, eventually, get, pg, pg_trial_balance, post_voucher, simple_voucher, stack, Svc};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

/// How long the aggregates may take to catch up in these tests. Generous for a loaded 2-core CI machine; the real
/// freshness is measured by the `fold_event_freshness_seconds` histogram, not here.
const VISIBLE_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_post_becomes_visible_in_the_trial_balance_and_the_ledger() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    assert_eq!(post_voucher(&c.token, &simple_voucher("2025-01-10", "1101", "3101", 10_000_000)).await.0, 201);
    assert_eq!(post_voucher(&c.token, &simple_voucher("2025-02-03", "5212", "1101", 330_000)).await.0, 201);
    assert_eq!(post_voucher(&c.token, &simple_voucher("2025-02-20", "1103", "4101", 1_100_000)).await.0, 201);

    let tb = eventually(VISIBLE_WITHIN, "the February trial balance", || async {
        let (status, b) = get(Svc::Query, &c.token, "/api/v1/reports/trial-balance?year=2025&month=2").await;
        (status == 200 && b["data"]["totals"]["closing_debit"] == 11_100_000).then_some(b)
    })
    .await;
    let accounts = tb["data"]["accounts"].as_array().unwrap();
    let codes: Vec<&str> = accounts.iter().map(|a| a["account_code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["1101", "1103", "3101", "4101", "5212"], "ordered by code");
    let cash = &accounts[0];
    assert_eq!(cash["account_name"], "현금");
    assert_eq!(cash["account_type"], "asset");
    assert_eq!((cash["opening_debit"].as_i64(), cash["opening_credit"].as_i64()), (Some(10_000_000), Some(0)));
    assert_eq!((cash["period_debit"].as_i64(), cash["period_credit"].as_i64()), (Some(0), Some(330_000)));
    assert_eq!((cash["closing_debit"].as_i64(), cash["closing_credit"].as_i64()), (Some(9_670_000), Some(0)));
    let t = &tb["data"]["totals"];
    assert_eq!(t["opening_debit"], t["opening_credit"]);
    assert_eq!(t["period_debit"], t["period_credit"]);
    assert_eq!(t["closing_debit"], t["closing_credit"]);

    let (status, ledger) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1101&year=2025").await;
    assert_eq!(status, 200, "{ledger}");
    let d = &ledger["data"];
    assert_eq!(d["opening_balance"], 0);
    let entries = d["entries"].as_array().unwrap();
    let seen: Vec<(&str, i64)> = entries.iter().map(|e| (e["voucher_number"].as_str().unwrap(), e["balance"].as_i64().unwrap())).collect();
    assert_eq!(seen, [("2025-01-000001", 10_000_000), ("2025-02-000001", 9_670_000)]);
    assert_eq!(d["closing_balance"], 9_670_000);
    // The contract's form names the account by id: the same ledger.
    let cash_id = cash["account_id"].as_str().expect("the trial balance names each account's id");
    let (status, by_id) = get(Svc::Query, &c.token, &format!("/api/v1/reports/account-ledger?account_id={cash_id}&year=2025")).await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["data"], ledger["data"], "account_id and account_code give the same ledger");

    // From February on: January becomes the opening balance.
    let (_, feb) =
        get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1101&from_date=2025-02-01&to_date=2025-02-28").await;
    assert_eq!(feb["data"]["opening_balance"], 10_000_000);
    assert_eq!(feb["data"]["entries"].as_array().unwrap().len(), 1);
    // Mid-month start: the opening includes the days of the month before from_date.
    let (_, mid) =
        get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1101&from_date=2025-02-10&to_date=2025-12-31").await;
    assert_eq!(mid["data"]["opening_balance"], 9_670_000);
    // A credit-normal account runs credit minus debit.
    let (_, sales) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=4101&year=2025").await;
    assert_eq!(sales["data"]["account"]["normal_side"], "credit");
    assert_eq!(sales["data"]["closing_balance"], 1_100_000);
}

/// January 1970 is the first month a voucher may have (`VOUCHER_DATE_MIN`), and ClickHouse 18.16 writes its first
/// day as `0000-00-00`: every balance report of such a company answered 500, and its ledger showed that date
/// (schemathesis found it, 28 Nov).
#[tokio::test]
async fn a_voucher_of_january_1970_shows_in_the_reports() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    assert_eq!(post_voucher(&c.token, &simple_voucher("1970-01-01", "1101", "3101", 70_000)).await.0, 201);
    assert_eq!(post_voucher(&c.token, &simple_voucher("1970-02-02", "5212", "1101", 1_000)).await.0, 201);
    let tb = eventually(VISIBLE_WITHIN, "the February 1970 trial balance", || async {
        let (status, b) = get(Svc::Query, &c.token, "/api/v1/reports/trial-balance?year=1970&month=2").await;
        assert!(status < 500, "{status}: {b}");
        (status == 200 && b["data"]["totals"]["closing_debit"] == 70_000).then_some(b)
    })
    .await;
    let cash = &tb["data"]["accounts"][0];
    assert_eq!(cash["account_code"], "1101");
    assert_eq!((cash["opening_debit"].as_i64(), cash["closing_debit"].as_i64()), (Some(70_000), Some(69_000)));
    let (status, ledger) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1101&year=1970").await;
    assert_eq!(status, 200, "{ledger}");
    assert_eq!(ledger["data"]["closing_balance"], 69_000);
    let days: Vec<&str> = ledger["data"]["entries"].as_array().unwrap().iter().map(|e| e["voucher_date"].as_str().unwrap()).collect();
    assert_eq!(days, ["1970-01-01", "1970-02-02"]);
}

#[tokio::test]
async fn an_account_without_postings_has_an_empty_ledger() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    // The chart reaches ClickHouse through the AccountsChanged event written when the company was created.
    let ledger = eventually(VISIBLE_WITHIN, "the chart of accounts in ClickHouse", || async {
        let (status, b) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=5214&year=2025").await;
        (status == 200).then_some(b)
    })
    .await;
    let d = &ledger["data"];
    assert_eq!(d["account"]["account_name"], "광고선전비");
    assert_eq!(d["account"]["normal_side"], "debit");
    assert_eq!((d["opening_balance"].as_i64(), d["closing_balance"].as_i64()), (Some(0), Some(0)));
    assert_eq!(d["entries"], json!([]));
    assert_eq!(ledger["pagination"]["total"], 0);
    let (status, tb) = get(Svc::Query, &c.token, "/api/v1/reports/trial-balance?year=2025&month=1").await;
    assert_eq!((status, &tb["data"]["accounts"]), (200, &json!([])), "no postings, no trial balance lines");
}

#[tokio::test]
async fn the_ledger_pages_carry_the_running_balance() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    for (i, d) in ["2025-04-01", "2025-04-02", "2025-04-02", "2025-04-03", "2025-04-05"].iter().enumerate() {
        let amount = 100 * (i as i64 + 1);
        assert_eq!(post_voucher(&c.token, &simple_voucher(d, "1102", "4102", amount)).await.0, 201);
    }
    let full = eventually(VISIBLE_WITHIN, "five ledger entries", || async {
        let (_, b) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1102&year=2025").await;
        (b["pagination"]["total"] == 5).then_some(b)
    })
    .await;
    let all: Vec<i64> = full["data"]["entries"].as_array().unwrap().iter().map(|e| e["balance"].as_i64().unwrap()).collect();
    assert_eq!(all, [100, 300, 600, 1000, 1500]);
    let (_, p2) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1102&year=2025&page=2&page_size=2").await;
    let page: Vec<i64> = p2["data"]["entries"].as_array().unwrap().iter().map(|e| e["balance"].as_i64().unwrap()).collect();
    assert_eq!(page, [600, 1000]);
    assert_eq!(p2["data"]["closing_balance"], 1500);
    let (_, big) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1102&year=2025&page_size=100000").await;
    assert_eq!(big["pagination"]["page_size"], kerp_query::LEDGER_PAGE_SIZE_MAX, "the ledger's own cap, not the voucher list's");
}

#[tokio::test]
async fn reports_are_scoped_to_the_token_company_and_check_their_parameters() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    assert_eq!(post_voucher(&b.token, &simple_voucher("2025-05-05", "1101", "3101", 777)).await.0, 201);
    // Wait until B's posting is visible to B, then check A sees nothing of it.
    eventually(VISIBLE_WITHIN, "B's trial balance", || async {
        let (_, body) = get(Svc::Query, &b.token, "/api/v1/reports/trial-balance?year=2025&month=5").await;
        (body["data"]["totals"]["closing_debit"] == 777).then_some(())
    })
    .await;
    let (status, tb) = get(Svc::Query, &a.token, "/api/v1/reports/trial-balance?year=2025&month=5").await;
    assert_eq!(status, 200);
    assert_eq!(tb["data"]["accounts"], json!([]));
    let b_cash = common::account_id(&b.token, "1101").await;
    let (s1, p1) = get(Svc::Query, &a.token, &format!("/api/v1/reports/account-ledger?account_id={b_cash}&year=2025")).await;
    let (s2, p2) = get(Svc::Query, &a.token, &format!("/api/v1/reports/account-ledger?account_id={}&year=2025", Uuid::new_v4())).await;
    assert_eq!(s1, 404);
    assert_eq!((s1, &p1), (s2, &p2), "another company's account looks like an unknown one");

    for bad in ["year=2025", "month=1", "year=2025&month=13", "year=1900&month=1"] {
        let (status, p) = get(Svc::Query, &a.token, &format!("/api/v1/reports/trial-balance?{bad}")).await;
        assert_eq!(status, 422, "{bad}: {p}");
    }
    for bad in [
        "account_code=1101",
        "year=2025",
        "account_code=1101&from_date=2025-01-01",
        "account_code=1101&from_date=2025-02-01&to_date=2025-01-01",
    ] {
        let (status, p) = get(Svc::Query, &a.token, &format!("/api/v1/reports/account-ledger?{bad}")).await;
        assert_eq!(status, 422, "{bad}: {p}");
    }
    let (status, _) = get(Svc::Query, &a.token, "/api/v1/reports/trial-balance?year=abc&month=1").await;
    assert_eq!(status, 400);
    let (status, _) = get(Svc::Query, "not-a-token", "/api/v1/reports/trial-balance?year=2025&month=1").await;
    assert_eq!(status, 401);
}

/// Random vouchers over several companies and months; the API's trial balance must equal the one Postgres computes,
/// to the won, for every (company, month).
#[tokio::test]
async fn random_vouchers_match_postgres_to_the_won() {
    stack();
    let pool = pg().await;
    let mut companies = Vec::new();
    for _ in 0..4 {
        companies.push(company(&pool).await);
    }
    let codes = ["1101", "1102", "1103", "1201", "2101", "2105", "3101", "4101", "5101", "5201", "5212", "5213"];
    let months = [(2024, 11), (2024, 12), (2025, 1), (2025, 2), (2025, 3)];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6B65_7270);
    let mut bodies: Vec<(usize, Value)> = Vec::new();
    for _ in 0..320 {
        let ci = rng.gen_range(0..companies.len());
        let (y, m) = months[rng.gen_range(0..months.len())];
        let day = rng.gen_range(1..=28);
        let n_debits = rng.gen_range(1..=3);
        let n_credits = rng.gen_range(1..=3);
        let debits: Vec<i64> = (0..n_debits).map(|_| rng.gen_range(1..=50_000_000)).collect();
        let total: i64 = debits.iter().sum();
        // Split the total over the credit lines, each at least 1 won.
        let mut credits = Vec::new();
        let mut left = total;
        for k in 0..n_credits {
            let remaining_lines = n_credits - k - 1;
            let c = if remaining_lines == 0 { left } else { rng.gen_range(1..=(left - remaining_lines as i64).max(1)) };
            credits.push(c);
            left -= c;
        }
        let mut lines: Vec<Value> =
            debits.iter().map(|d| json!({"account_code": codes[rng.gen_range(0..codes.len())], "debit_amount": d})).collect();
        lines.extend(
            credits.iter().filter(|c| **c > 0).map(|c| json!({"account_code": codes[rng.gen_range(0..codes.len())], "credit_amount": c})),
        );
        if lines.len() < 2 {
            continue;
        }
        bodies.push((ci, json!({"voucher_date": format!("{y}-{m:02}-{day:02}"), "description": "random", "lines": lines})));
    }
    let posted = bodies.len();
    // Eight posts in flight at a time.
    let mut stream = futures::stream::iter(bodies.into_iter().map(|(ci, body)| {
        let token = companies[ci].token.clone();
        async move { post_voucher(&token, &body).await }
    }))
    .buffer_unordered(8);
    use futures::StreamExt;
    let mut ok = 0;
    while let Some((status, b)) = stream.next().await {
        assert_eq!(status, 201, "{b}");
        ok += 1;
    }
    assert_eq!(ok, posted);

    for c in &companies {
        for (y, m) in months {
            let expected = pg_trial_balance(&pool, c.id, y, m).await;
            assert!(!expected.is_empty());
            let got = eventually(VISIBLE_WITHIN, &format!("trial balance {y}-{m:02} of {}", c.id), || async {
                let (got, totals) = api_trial_balance(&c.token, y, m).await;
                (got == expected).then_some((got, totals))
            })
            .await;
            let totals = got.1;
            assert_eq!(totals["opening_debit"], totals["opening_credit"]);
            assert_eq!(totals["period_debit"], totals["period_credit"]);
            assert_eq!(totals["closing_debit"], totals["closing_credit"]);
        }
    }
}

/// Lines are capped at 10^15 won and vouchers at 1000 lines, so twenty maximal vouchers put 10^19 won on one account:
/// past `i64::MAX` (about 9.2 * 10^18), where an Int64 sum wraps. The reports must show the exact amounts.
#[tokio::test]
async fn balances_past_i64_stay_exact() {
    const LINE_MAX: i64 = kerp_core::voucher::LINE_AMOUNT_WON_MAX;
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let lines: Vec<Value> = (0..kerp_core::voucher::LINES_MAX)
        .map(|i| {
            if i % 2 == 0 {
                json!({"account_code": "1101", "debit_amount": LINE_MAX})
            } else {
                json!({"account_code": "4101", "credit_amount": LINE_MAX})
            }
        })
        .collect();
    let body = json!({"voucher_date": "2025-06-10", "voucher_type": "general", "description": "maximal", "lines": lines});
    for _ in 0..20 {
        let (status, posted) = post_voucher(&c.token, &body).await;
        assert_eq!(status, 201, "{posted}");
    }
    let per_account = 20 * 500 * i128::from(LINE_MAX);
    assert!(per_account > i128::from(i64::MAX));
    let tb = eventually(Duration::from_secs(90), "the maximal vouchers in the trial balance", || async {
        let r = common::http()
            .get(format!("{}/api/v1/reports/trial-balance?year=2025&month=6", stack().query_url))
            .bearer_auth(&c.token)
            .send()
            .await
            .ok()?;
        let text = r.text().await.ok()?;
        text.contains(&format!("\"period_debit\":{per_account}")).then_some(text)
    })
    .await;
    assert!(tb.contains(&format!("\"closing_debit\":{per_account}")), "{tb}");
    assert!(tb.contains(&format!("\"closing_credit\":{per_account}")), "sales on the credit side: {tb}");
    assert!(tb.contains(&format!("\"totals\":{{\"opening_debit\":0,\"opening_credit\":0,\"period_debit\":{per_account},\"period_credit\":{per_account},\"closing_debit\":{per_account},\"closing_credit\":{per_account}}}")), "{tb}");
    let ledger = common::http()
        .get(format!("{}/api/v1/reports/account-ledger?account_code=1101&year=2025&page_size=1", stack().query_url))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ledger.contains(&format!("\"closing_balance\":{per_account}")), "{ledger}");
}
