//! Reports across a balance snapshot: vouchers posted before a company's snapshot and after it come out of the trial
//! balance and the ledger's opening balance exactly as Postgres sums them. The test stack snapshots a company as soon
//! as it has anything new (`snapshot_idle_ms: 0`), so the reports here read a snapshot plus the rows above it.

mod common;

use std::time::Duration;

use common::{api_trial_balance, company, eventually, get, pg, pg_trial_balance, post_voucher, simple_voucher, stack, Svc};
use kerp_core::clickhouse::uuid_literal;
use uuid::Uuid;

const VISIBLE_WITHIN: Duration = Duration::from_secs(120);

/// (the sequence of the company's newest snapshot, the company's fold watermark), from ClickHouse.
async fn snapshot_and_watermark(company: Uuid) -> (i64, i64) {
    let ch = common::clickhouse().client();
    let c = uuid_literal(&company);
    let snap: i64 =
        ch.query(&format!("SELECT max(upto_seq) FROM snapshot_heads WHERE company_id = {c}")).fetch_one().await.expect("snapshot");
    let mark: i64 = ch.query(&format!("SELECT max(seq) FROM fold_watermarks WHERE company_id = {c}")).fetch_one().await.expect("mark");
    (snap, mark)
}

/// Posts a voucher of `amount` from 1102 to 4101 on `date`, which must be accepted.
async fn post_sale(token: &str, date: &str, amount: i64) {
    let (status, body) = post_voucher(token, &simple_voucher(date, "1102", "4101", amount)).await;
    assert_eq!(status, 201, "{body}");
}

/// The ledger's opening balance of `code` for `year`, from query-api.
async fn ledger_opening(token: &str, code: &str, year: i32) -> i64 {
    let (status, body) =
        get(Svc::Query, token, &format!("/api/v1/reports/account-ledger?account_code={code}&year={year}&page_size=1")).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["opening_balance"].as_i64().unwrap_or_else(|| panic!("no opening balance: {body}"))
}

#[tokio::test]
async fn reports_add_the_rows_above_a_snapshot_to_it_exactly() {
    let _ = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let post = |date: &'static str, amount: i64| post_sale(&c.token, date, amount);
    // Before the snapshot: last year's and this year's postings.
    for i in 1..=6 {
        post("2025-11-10", 10_000 * i).await;
        post("2026-03-05", 1_000 * i).await;
    }
    let covered = eventually(VISIBLE_WITHIN, "a snapshot at the company's watermark", || async {
        let (snap, mark) = snapshot_and_watermark(c.id).await;
        (snap > 0 && snap == mark).then_some(snap)
    })
    .await;

    // After it: more in both years, so the trial balance's opening and its month both need the rows above.
    post("2025-12-31", 7).await;
    post("2026-03-31", 11).await;
    let expected = pg_trial_balance(&pool, c.id, 2026, 3).await;
    eventually(VISIBLE_WITHIN, "the trial balance to match Postgres", || async {
        let (tb, _) = api_trial_balance(&c.token, 2026, 3).await;
        (tb == expected).then_some(())
    })
    .await;
    let (snap, mark) = snapshot_and_watermark(c.id).await;
    assert!(mark > covered, "the later postings were folded");
    assert!(snap >= covered);

    // 1102 before 2026: the 2025 postings (the ledger reads whole months from the balances, snapshot and tail).
    let before_2026: i64 = (1..=6).map(|i| 10_000 * i).sum::<i64>() + 7;
    assert_eq!(ledger_opening(&c.token, "1102", 2026).await, before_2026);
}

/// Reports of `outcome` (see `kerp_query::balances::CACHE_METRIC`) so far, from query-api's metrics.
async fn snapshot_cache_count(outcome: &str) -> f64 {
    let body = reqwest::get(format!("{}/metrics", stack().query_metrics_url)).await.expect("metrics").text().await.expect("text");
    let prefix = format!("{}{{outcome=\"{outcome}\"}} ", kerp_query::balances::CACHE_METRIC);
    body.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.parse().expect("a number"))
}

/// query-api holds a company's snapshot between reports (`kerp_query::balances`) and reads only the rows above it. The
/// trial balance stays exact while the held snapshot ages and newer ones are written above it: read before any
/// snapshot (the whole tail), across the worker's new snapshots, and after a heads check has had the newer snapshot
/// read in the background.
#[tokio::test]
async fn a_held_snapshot_plus_the_rows_above_it_stays_exact_as_newer_snapshots_come() {
    let _ = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let post = |date: &'static str, amount: i64| post_sale(&c.token, date, amount);
    let matches_postgres = |round: &'static str| {
        let (pool, token, id) = (pool.clone(), c.token.clone(), c.id);
        async move {
            let expected = pg_trial_balance(&pool, id, 2026, 3).await;
            eventually(VISIBLE_WITHIN, round, || async {
                let (tb, _) = api_trial_balance(&token, 2026, 3).await;
                (tb == expected).then_some(())
            })
            .await;
        }
    };
    let hits_before = snapshot_cache_count("hit").await;
    for round in 1..=4 {
        for i in 1..=3 {
            post("2026-03-05", 1_000 * round + i).await;
            post("2025-12-20", 7 * round + i).await;
        }
        matches_postgres("the trial balance to match Postgres").await;
        // Past the heads check interval, so that the next read checks the heads and has any newer snapshot read.
        tokio::time::sleep(Duration::from_millis(kerp_query::balances::HEADS_CHECK_INTERVAL_MS + 100)).await;
        let (tb, _) = api_trial_balance(&c.token, 2026, 3).await;
        assert_eq!(tb, pg_trial_balance(&pool, c.id, 2026, 3).await, "round {round}: nothing was posted since it matched");
    }
    let (snap, _) = snapshot_and_watermark(c.id).await;
    assert!(snap > 0, "the worker snapshotted the company meanwhile");
    assert!(snapshot_cache_count("hit").await > hits_before, "reports were answered from a held snapshot");
}

/// Trial balances of one company for different months at the same time share one read of its balances and accounts
/// (`kerp_query::balances::Reader`); each still buckets them for its own month and matches Postgres.
#[tokio::test]
async fn concurrent_trial_balances_of_different_months_each_match_postgres() {
    let _ = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    for (i, date) in ["2025-11-03", "2025-12-09", "2026-01-15", "2026-02-20", "2026-03-25"].into_iter().enumerate() {
        let amount = 1_000 * (i64::try_from(i).unwrap() + 1);
        post_sale(&c.token, date, amount).await;
    }
    let months = [(2025, 11), (2025, 12), (2026, 1), (2026, 2), (2026, 3), (2026, 4)];
    let mut expected = Vec::new();
    for (y, m) in months {
        expected.push(pg_trial_balance(&pool, c.id, y, m).await);
    }
    eventually(VISIBLE_WITHIN, "every month's trial balance, read at once, to match Postgres", || async {
        let got = futures::future::join_all(months.iter().map(|(y, m)| api_trial_balance(&c.token, *y, *m))).await;
        got.into_iter().map(|(tb, _)| tb).eq(expected.iter().cloned()).then_some(())
    })
    .await;
}

/// A report reads the company's accounts alongside its balances, so the accounts can be read a moment before a new
/// account's first balance is (`kerp_query::balances::Reader::accounts_naming`; CI once saw a trial balance whose totals
/// held an invoice's voucher while one of its accounts was missing). Given accounts that lack an account the balances
/// name, the reader reads them again; given complete ones it keeps them; and an account is unknown to a ledger only if
/// the fresh read lacks it too.
#[tokio::test]
async fn accounts_read_before_a_new_accounts_first_balance_are_read_again() {
    let _ = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    post_sale(&c.token, "2026-02-03", 5_000).await;
    let ch = common::clickhouse().client();
    let reader = kerp_query::balances::Reader::default();
    let ids: Vec<Uuid> = eventually(VISIBLE_WITHIN, "the voucher's balances", || async {
        let b = reader.balances(&ch, c.id).await.ok()?;
        let ids: Vec<Uuid> = b.snapshot.rows.iter().chain(&b.tail).map(|m| m.account_id).collect();
        (ids.len() >= 2).then_some(ids)
    })
    .await;

    let stale = std::sync::Arc::new(Vec::new());
    let fresh = reader.accounts_naming(&ch, c.id, stale, ids.iter().copied()).await.expect("accounts");
    for id in &ids {
        assert!(fresh.iter().any(|a| a.account_id == *id), "the fresh read names {id}: {fresh:?}");
    }
    for code in ["1102", "4101"] {
        assert!(fresh.iter().any(|a| a.code == code), "the fresh read names {code}: {fresh:?}");
    }
    let kept = reader.accounts_naming(&ch, c.id, fresh.clone(), ids.iter().copied()).await.expect("accounts");
    assert!(std::sync::Arc::ptr_eq(&kept, &fresh), "complete accounts are not read again");

    let found = reader.find_account(&ch, c.id, &[], None, Some("4101")).await.expect("account");
    assert_eq!(found.map(|a| a.code).as_deref(), Some("4101"));
    assert!(reader.find_account(&ch, c.id, &fresh, None, Some("9999")).await.expect("account").is_none());
}
