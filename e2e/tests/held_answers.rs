//! Held account-ledger answers (`kerp_query::answers`) against the real stack: a ledger read twice with nothing
//! changed in between is served from memory the second time (it carries an `Age` header), and a held answer is let go
//! within a few poll intervals of every kind of change: a voucher folded (the company's watermark) that posts to the
//! page's account within its range, an account renamed (its `report_changes` count), and a change counted for every
//! company (a rebuild's swap). A page let go by a posting to its account, and served before, is read again by the
//! poller before anyone asks. Postings to other accounts, or dated after the range, leave the page held.
//! `Cache-Control: no-cache` always reads afresh.
//!
//! "Within a few poll intervals" is checked against the uncached trial balance: once it shows a change, the ledger
//! must show it within [`LET_GO_WITHIN`]. Without the signal, a held answer would be served for
//! `kerp_query::answers::ANSWER_AGE_MAX_MS` (30 s), so each check fails if its kind of change is not signalled.

mod common;

use std::time::{Duration, Instant};

use common::{account_id, company, eventually, get, pg, post_voucher, send, simple_voucher, stack, Svc, ANSWERS_POLL_INTERVAL_MS};
use serde_json::{json, Value};

/// How long the pipeline may take to show a posting anywhere.
const VISIBLE_WITHIN: Duration = Duration::from_secs(120);

/// How long after the trial balance shows a change the ledger may still show the held answer: the signals' age limit
/// (three poll intervals) and a poll's own time, with room for a busy CI machine.
const LET_GO_WITHIN: Duration = Duration::from_millis(10 * ANSWERS_POLL_INTERVAL_MS);

const LEDGER: &str = "/api/v1/reports/account-ledger?account_code=1101&year=2025";

/// A ledger read, which must be a 200: its body and whether it was a held answer (an `Age` header).
async fn ledger(token: &str, fresh: bool) -> (Value, bool) {
    let (status, body, held) = ledger_read(token, fresh).await;
    assert_eq!(status, 200, "{body}");
    (body, held)
}

/// A ledger read: its status, its body and whether it was a held answer.
async fn ledger_read(token: &str, fresh: bool) -> (u16, Value, bool) {
    let mut req = common::http().get(format!("{}{LEDGER}", stack().query_url)).bearer_auth(token);
    if fresh {
        req = req.header("cache-control", "no-cache");
    }
    let r = req.send().await.expect("ledger");
    let (status, held) = (r.status().as_u16(), r.headers().contains_key("age"));
    (status, r.json().await.expect("json"), held)
}

/// Reads the ledger until a read is a held answer, which must come within a few seconds of the first read (the
/// company's signal is polled once it is asked for), and returns it.
async fn until_held(token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (body, held) = ledger(token, false).await;
        if held {
            return body;
        }
        assert!(Instant::now() < deadline, "no ledger read was served from memory within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the ledger until `done` holds for it, which must happen within [`LET_GO_WITHIN`] of `since`.
async fn ledger_within(token: &str, since: Instant, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let (body, _) = ledger(token, false).await;
        if done(&body) {
            return body;
        }
        assert!(since.elapsed() < LET_GO_WITHIN, "the ledger still showed a held answer {LET_GO_WITHIN:?} after {what}: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The trial balance's row of 1101 for January 2025, once `done` holds for it (the trial balance holds no answers).
async fn cash_in_trial_balance(token: &str, what: &str, done: impl Fn(&Value) -> bool) {
    in_trial_balance(token, "year=2025&month=1", "1101", what, done).await;
}

/// The trial balance's row of `code` for the month `when` (`year=..&month=..`) names, once `done` holds for it.
async fn in_trial_balance(token: &str, when: &str, code: &str, what: &str, done: impl Fn(&Value) -> bool) {
    eventually(VISIBLE_WITHIN, what, || async {
        let (status, tb) = get(Svc::Query, token, &format!("/api/v1/reports/trial-balance?{when}")).await;
        let row = tb["data"]["accounts"].as_array()?.iter().find(|a| a["account_code"] == code)?.clone();
        (status == 200 && done(&row)).then_some(())
    })
    .await;
}

/// query-api's counters of held answers, refreshes and failed polls, as `/metrics` shows them.
async fn answer_counters() -> String {
    let url = format!("{}/metrics", stack().query_metrics_url);
    let text = match common::http().get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => return format!("(no metrics: {e})"),
    };
    let names = [kerp_query::answers::ANSWERS_METRIC, kerp_query::answers::REFRESHES_METRIC, kerp_query::answers::POLL_ERRORS_METRIC];
    text.lines().filter(|l| names.iter().any(|n| l.starts_with(n))).collect::<Vec<_>>().join("\n")
}

fn total(ledger: &Value) -> u64 {
    ledger["pagination"]["total"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_held_ledger_is_let_go_when_a_voucher_a_rename_or_a_rebuild_changes_the_books() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    assert_eq!(post_voucher(&c.token, &simple_voucher("2025-01-10", "1101", "3101", 1_000)).await.0, 201);
    eventually(VISIBLE_WITHIN, "the first voucher in the ledger", || async {
        (total(&ledger_read(&c.token, false).await.1) == 1).then_some(())
    })
    .await;
    let held = until_held(&c.token).await;
    assert_eq!(total(&held), 1);
    let (fresh, was_held) = ledger(&c.token, true).await;
    assert!(!was_held, "Cache-Control: no-cache reads afresh");
    assert_eq!(fresh, held, "and the books did not change");

    // A voucher to the page's account within its range moves the company's watermark and lets go of the page. The
    // page was served from memory, so the poller reads it again at once: the first read after the trial balance
    // shows the voucher and a poll has had its time is already held, and shows it.
    assert_eq!(post_voucher(&c.token, &simple_voucher("2025-01-20", "1101", "3101", 2_000)).await.0, 201);
    cash_in_trial_balance(&c.token, "the second voucher in the trial balance", |cash| cash["closing_debit"] == 3_000).await;
    tokio::time::sleep(LET_GO_WITHIN).await;
    let (after, refreshed) = ledger(&c.token, false).await;
    assert_eq!(total(&after), 2, "the ledger still showed a held answer {LET_GO_WITHIN:?} after the second voucher: {after}");
    assert_eq!(after["data"]["closing_balance"], 3_000);
    if !refreshed {
        // CI saw this fail once (29 Nov) and it did not fail again in 24 runs here: the counters say which step did
        // not happen (no refresh, a refresh that failed or was skipped, or a page let go again after it).
        panic!(
            "the page let go by the voucher was not read again before it was asked for; query-api's counters:\n{}",
            answer_counters().await
        );
    }
    assert_eq!(ledger(&c.token, true).await.0, after, "and a fresh read agrees");

    // Postings the page was not read from move the watermark too, but leave the page held: one to other accounts
    // within the range, one to 1101 dated after the range's end. Once the trial balance shows both and the poll has
    // had its time to see them, the page is still served from memory, and it is still right.
    assert_eq!(post_voucher(&c.token, &simple_voucher("2025-03-10", "1102", "3101", 4_000)).await.0, 201);
    assert_eq!(post_voucher(&c.token, &simple_voucher("2026-01-05", "1101", "3101", 8_000)).await.0, 201);
    in_trial_balance(&c.token, "year=2025&month=3", "1102", "the posting to 1102", |a| a["period_debit"] == 4_000).await;
    in_trial_balance(&c.token, "year=2026&month=1", "1101", "the posting to 1101 in 2026", |a| a["period_debit"] == 8_000).await;
    tokio::time::sleep(LET_GO_WITHIN).await;
    let (still, held) = ledger(&c.token, false).await;
    assert!(held, "a posting to other accounts or after the range's end let go of the held page");
    assert_eq!(still, after);
    assert_eq!(ledger(&c.token, true).await.0, after, "and a fresh read agrees");

    // A rename moves no watermark: it is counted in report_changes.
    let id = account_id(&c.token, "1101").await;
    let (status, body) =
        send(reqwest::Method::PATCH, Svc::Ingest, &c.token, &format!("/api/v1/accounts/{id}"), Some(&json!({"name": "현금 (본점)"}))).await;
    assert_eq!(status, 200, "{body}");
    cash_in_trial_balance(&c.token, "the new name in the trial balance", |cash| cash["account_name"] == "현금 (본점)").await;
    let shown = Instant::now();
    ledger_within(&c.token, shown, "the rename", |l| l["data"]["account"]["account_name"] == "현금 (본점)").await;

    // What a rebuild counts once it has swapped its tables in: a change for every company. In the same test, after
    // the others: it lets go of every held answer, so run beside them it would let those checks pass without their
    // own signals.
    until_held(&c.token).await;
    let ch = common::clickhouse().client();
    kerp_stream::sink::note_changes(&ch, &[kerp_stream::sink::EVERY_COMPANY]).await.expect("count a change for every company");
    let counted = Instant::now();
    loop {
        let (_, held) = ledger(&c.token, false).await;
        if !held {
            break;
        }
        assert!(counted.elapsed() < LET_GO_WITHIN, "the held ledger was still served {LET_GO_WITHIN:?} after a change to every company");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    until_held(&c.token).await;
}
