//! The voucher lifecycle, closed periods and idempotency keys, against the real stack: drafts are edited, deleted and
//! approved (numbered at approval, so numbers stay gapless) and never reach the reports; approved vouchers are final
//! and corrected by a reversal that nets them to zero while the original stays untouched; a closed month refuses
//! postings, approvals and reversals; a retried POST with the same key creates one object, even twenty at once.

mod common;

use std::time::Duration;

use common::{company, eventually, get, pg, post_voucher, send, simple_voucher, stack, token_with_role, Svc};
use kerp_core::auth::Role;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

async fn post(token: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    send(Method::POST, Svc::Ingest, token, path, body).await
}

fn id_of(v: &Value) -> String {
    v["data"]["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

/// The company's trial balance row of `code` for a month, as (period debit, period credit), once the fold has seen
/// every voucher the test posted (the API's totals then equal Postgres').
async fn settled_tb(pool: &sqlx::PgPool, c: &common::Company, year: i32, month: u32) -> Value {
    let pg = common::pg_trial_balance(pool, c.id, year, month).await;
    eventually(Duration::from_secs(60), "the trial balance to match Postgres", || async {
        let (api, _) = common::api_trial_balance(&c.token, year, month).await;
        (api == pg).then_some(())
    })
    .await;
    get(Svc::Query, &c.token, &format!("/api/v1/reports/trial-balance?year={year}&month={month}")).await.1
}

#[tokio::test]
async fn drafts_are_edited_deleted_and_numbered_only_when_approved() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let draft = |amount: i64| {
        let mut v = simple_voucher("2025-06-10", "5212", "1101", amount);
        v["status"] = json!("draft");
        v
    };
    let (status, first) = post_voucher(&c.token, &simple_voucher("2025-06-01", "5212", "1101", 100)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["data"]["voucher_number"], "2025-06-000001");
    let (status, d) = post_voucher(&c.token, &draft(777)).await;
    assert_eq!(status, 201, "{d}");
    assert_eq!((d["data"]["status"].as_str(), d["data"]["voucher_number"].as_str()), (Some("draft"), None));
    let d = id_of(&d);
    let (_, second) = post_voucher(&c.token, &simple_voucher("2025-06-02", "5212", "1101", 200)).await;
    assert_eq!(second["data"]["voucher_number"], "2025-06-000002", "a draft takes no number");
    let mut bad = draft(1);
    bad["status"] = json!("reversed");
    assert_eq!(post_voucher(&c.token, &bad).await.0, 422, "a voucher is not posted as reversed");

    // Edited while a draft; listed by status.
    let (status, edited) = send(Method::PUT, Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{d}"), Some(&draft(888))).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["data"]["total_debit"], 888);
    let (_, drafts) = get(Svc::Ingest, &c.token, "/api/v1/vouchers?status=draft").await;
    assert_eq!(drafts["pagination"]["total"], 1);
    assert_eq!(get(Svc::Ingest, &c.token, "/api/v1/vouchers?status=posted").await.0, 400);

    // A draft never reaches the reports: the trial balance holds the two approved vouchers only.
    let tb = settled_tb(&pool, &c, 2025, 6).await;
    assert_eq!(tb["data"]["totals"]["period_debit"], 300, "{tb}");

    // Approval numbers it next in its month and publishes it; then it is final.
    let viewer = token_with_role(&pool, c.id, Role::Viewer).await;
    assert_eq!(post(&viewer, &format!("/api/v1/vouchers/{d}/approve"), None).await.0, 403);
    let (status, approved) = post(&c.token, &format!("/api/v1/vouchers/{d}/approve"), None).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["data"]["voucher_number"], "2025-06-000003");
    assert_eq!(post(&c.token, &format!("/api/v1/vouchers/{d}/approve"), None).await.0, 409);
    assert_eq!(send(Method::PUT, Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{d}"), Some(&draft(1))).await.0, 409);
    assert_eq!(send(Method::DELETE, Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{d}"), None).await.0, 409);
    let tb = settled_tb(&pool, &c, 2025, 6).await;
    assert_eq!(tb["data"]["totals"]["period_debit"], 1188);

    // A draft is deleted with its lines; another company cannot touch it.
    let (_, gone) = post_voucher(&c.token, &draft(5)).await;
    let gone = id_of(&gone);
    let other = company(&pool).await;
    assert_eq!(send(Method::DELETE, Svc::Ingest, &other.token, &format!("/api/v1/vouchers/{gone}"), None).await.0, 404);
    assert_eq!(post(&other.token, &format!("/api/v1/vouchers/{gone}/approve"), None).await.0, 404);
    assert_eq!(send(Method::DELETE, Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{gone}"), None).await.0, 204);
    assert_eq!(get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{gone}")).await.0, 404);
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM voucher_lines WHERE voucher_id = $1")
        .bind(Uuid::parse_str(&gone).unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(lines, 0);
}

#[tokio::test]
async fn a_reversal_nets_the_original_to_zero_and_leaves_it_untouched() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let sale = json!({"voucher_date": "2025-07-15", "description": "외상매출", "lines": [
        {"account_code": "1103", "debit_amount": 110_000},
        {"account_code": "4101", "credit_amount": 100_000},
        {"account_code": "2105", "credit_amount": 10_000}]});
    let (status, v) = post_voucher(&c.token, &sale).await;
    assert_eq!(status, 201, "{v}");
    let id = id_of(&v);
    let (_, before) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{id}")).await;

    let (status, r) = post(&c.token, &format!("/api/v1/vouchers/{id}/reverse"), Some(&json!({"reason": "잘못된 거래처"}))).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["data"]["reversal_of"], id.as_str());
    assert_eq!(r["data"]["voucher_number"], "2025-07-000002");
    let (_, reversal) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{}", id_of(&r))).await;
    for (orig, rev) in before["data"]["lines"].as_array().unwrap().iter().zip(reversal["data"]["lines"].as_array().unwrap()) {
        assert_eq!(
            (orig["debit_amount"].clone(), orig["credit_amount"].clone()),
            (rev["credit_amount"].clone(), rev["debit_amount"].clone())
        );
        assert_eq!(orig["account_id"], rev["account_id"]);
    }
    let (_, after) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{id}")).await;
    assert_eq!(after["data"]["status"], "reversed");
    assert_eq!(after["data"]["reversed_by"], id_of(&r).as_str());
    assert_eq!(after["data"]["lines"], before["data"]["lines"], "the original's lines are untouched");
    assert_eq!(after["data"]["voucher_number"], before["data"]["voucher_number"]);

    assert_eq!(post(&c.token, &format!("/api/v1/vouchers/{id}/reverse"), None).await.0, 409, "reversed once only");
    assert_eq!(post(&c.token, &format!("/api/v1/vouchers/{}/reverse", id_of(&r)), None).await.0, 409, "a reversal is not reversed");
    assert_eq!(post(&c.token, &format!("/api/v1/vouchers/{id}/reverse"), Some(&json!({"date": "2025-13-01"}))).await.0, 422);
    let viewer = token_with_role(&pool, c.id, Role::Viewer).await;
    assert_eq!(post(&viewer, &format!("/api/v1/vouchers/{id}/reverse"), None).await.0, 403);

    // Both stay in the reports and net to zero on every account.
    let tb = settled_tb(&pool, &c, 2025, 7).await;
    let rows = tb["data"]["accounts"].as_array().unwrap();
    for code in ["1103", "4101", "2105"] {
        let row = rows.iter().find(|r| r["account_code"] == code).unwrap_or_else(|| panic!("{code} in {tb}"));
        assert_eq!(row["period_debit"], row["period_credit"], "{code} nets to zero: {row}");
        assert_eq!((row["closing_debit"].as_i64(), row["closing_credit"].as_i64()), (Some(0), Some(0)));
    }
    assert_eq!(tb["data"]["totals"]["period_debit"], 220_000);
}

#[tokio::test]
async fn a_closed_period_refuses_postings_approvals_and_reversals() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let (_, feb) = post_voucher(&c.token, &simple_voucher("2025-02-10", "5212", "1101", 1_000)).await;
    let feb = id_of(&feb);
    let mut draft = simple_voucher("2025-02-11", "5212", "1101", 2_000);
    draft["status"] = json!("draft");
    let (_, d) = post_voucher(&c.token, &draft).await;
    let d = id_of(&d);

    let accountant = token_with_role(&pool, c.id, Role::Accountant).await;
    assert_eq!(post(&accountant, "/api/v1/periods/2025-02/close", None).await.0, 403);
    assert_eq!(post(&c.token, "/api/v1/periods/2025-2/close", None).await.0, 404);
    let (status, closed) = post(&c.token, "/api/v1/periods/2025-02/close", None).await;
    assert_eq!(status, 200, "{closed}");
    let (status, problem) = post(&c.token, "/api/v1/periods/2025-02/close", None).await;
    assert_eq!((status, &problem["type"]), (409, &json!("https://kerp.dev/problems/conflict")), "closed twice: {problem}");
    let (_, periods) = get(Svc::Ingest, &c.token, "/api/v1/periods?year=2025").await;
    let months = periods["data"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    assert_eq!((months[1]["period"].as_str(), months[1]["state"].as_str()), (Some("2025-02"), Some("closed")));
    assert_eq!(months[1]["voucher_count"], 1);
    assert_eq!(months[2]["state"], "open");
    assert_eq!(get(Svc::Ingest, &c.token, "/api/v1/periods?year=abc").await.0, 400);

    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM vouchers WHERE company_id = $1").bind(c.id).fetch_one(&pool).await.unwrap();
    let (status, problem) = post_voucher(&accountant, &simple_voucher("2025-02-28", "5212", "1101", 5)).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("closed"), "{problem}");
    assert_eq!(problem["type"], kerp_core::http::PROBLEM_TYPE_PERIOD_CLOSED, "{problem}");
    let (status, problem) = post(&accountant, &format!("/api/v1/vouchers/{d}/approve"), None).await;
    assert_eq!((status, &problem["type"]), (409, &json!(kerp_core::http::PROBLEM_TYPE_PERIOD_CLOSED)), "{problem}");
    let (status, problem) = post(&accountant, &format!("/api/v1/vouchers/{feb}/reverse"), None).await;
    assert_eq!(
        (status, &problem["type"]),
        (409, &json!(kerp_core::http::PROBLEM_TYPE_PERIOD_CLOSED)),
        "reversed into the closed month: {problem}"
    );
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM vouchers WHERE company_id = $1").bind(c.id).fetch_one(&pool).await.unwrap();
    assert_eq!(after, before, "nothing was written");
    // A reversal dated in an open month is the way to correct a closed one.
    let (status, r) = post(&accountant, &format!("/api/v1/vouchers/{feb}/reverse"), Some(&json!({"date": "2025-03-01"}))).await;
    assert_eq!(status, 201, "{r}");

    assert_eq!(post(&c.token, "/api/v1/periods/2025-02/reopen", None).await.0, 200);
    assert_eq!(post(&c.token, "/api/v1/periods/2025-02/reopen", None).await.0, 409);
    let (status, approved) = post(&accountant, &format!("/api/v1/vouchers/{d}/approve"), None).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["data"]["voucher_number"], "2025-02-000002");
}

async fn count_described(pool: &sqlx::PgPool, company: Uuid, description: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM vouchers WHERE company_id = $1 AND description = $2")
        .bind(company)
        .bind(description)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn post_with_key(token: &str, path: &str, key: &str, body: &Value) -> (u16, Value, bool) {
    let r = common::http()
        .post(format!("{}{path}", stack().ingest_url))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null), replayed)
}

#[tokio::test]
async fn a_retried_post_with_the_same_key_creates_one_voucher() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let mut body = simple_voucher("2025-08-01", "5212", "1101", 4_200);
    body["description"] = json!("idempotent once");
    let key = Uuid::new_v4().to_string();
    let (s1, b1, r1) = post_with_key(&c.token, "/api/v1/vouchers", &key, &body).await;
    let (s2, b2, r2) = post_with_key(&c.token, "/api/v1/vouchers", &key, &body).await;
    assert_eq!((s1, r1), (201, false), "{b1}");
    assert_eq!((s2, r2), (201, true), "{b2}");
    assert_eq!(b1, b2, "the original answer, given again");
    assert_eq!(count_described(&pool, c.id, "idempotent once").await, 1);
    // The same key with another body is refused and writes nothing.
    let mut other = body.clone();
    other["lines"][0]["debit_amount"] = json!(1);
    other["lines"][1]["credit_amount"] = json!(1);
    let (status, problem, _) = post_with_key(&c.token, "/api/v1/vouchers", &key, &other).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], kerp_core::http::PROBLEM_TYPE_IDEMPOTENCY_KEY_REUSED, "{problem}");
    // Keys are per company: another company's same key is its own.
    let c2 = company(&pool).await;
    assert_eq!(post_with_key(&c2.token, "/api/v1/vouchers", &key, &body).await.0, 201);
    assert_eq!(count_described(&pool, c2.id, "idempotent once").await, 1);
    // A failed request stores nothing: after a 422 the key is free for the fixed request.
    let key2 = Uuid::new_v4().to_string();
    let mut broken = body.clone();
    broken["lines"][0]["account_code"] = json!("0000");
    assert_eq!(post_with_key(&c.token, "/api/v1/vouchers", &key2, &broken).await.0, 422);
    assert_eq!(post_with_key(&c.token, "/api/v1/vouchers", &key2, &body).await.0, 201);
    assert_eq!(count_described(&pool, c.id, "idempotent once").await, 2);
    // A malformed key is a 400, and master data creations take keys too.
    assert_eq!(post_with_key(&c.token, "/api/v1/vouchers", &"k".repeat(300), &body).await.0, 400);
    let partner = json!({"code": "IDEM", "name": "멱등 거래처"});
    let pkey = Uuid::new_v4().to_string();
    let (p1, pb1, _) = post_with_key(&c.token, "/api/v1/partners", &pkey, &partner).await;
    let (p2, pb2, replayed) = post_with_key(&c.token, "/api/v1/partners", &pkey, &partner).await;
    assert_eq!((p1, p2, replayed), (201, 201, true), "{pb1} {pb2}");
    assert_eq!(pb1, pb2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_retries_of_one_key_create_exactly_one_voucher() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let mut body = simple_voucher("2025-08-02", "5212", "1101", 9_900);
    body["description"] = json!("twenty retries");
    let key = Uuid::new_v4().to_string();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (token, key, body) = (c.token.clone(), key.clone(), body.clone());
            tokio::spawn(async move { post_with_key(&token, "/api/v1/vouchers", &key, &body).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, b, _) = t.await.unwrap();
        // A retry that waited past the lock timeout is told to retry (503); none may create a second voucher.
        assert!(status == 201 || status == 503, "{status} {b}");
        if status == 201 {
            ids.insert(id_of(&b));
        }
    }
    assert_eq!(ids.len(), 1, "every 201 names the same voucher: {ids:?}");
    assert_eq!(count_described(&pool, c.id, "twenty retries").await, 1);
    let events: Vec<_> = {
        common::outbox_drained(&pool, c.id).await;
        common::company_events(&stack().topic, c.id).await
    };
    assert_eq!(events.iter().filter(|e| e.description == "twenty retries").count(), 1, "one event");
}
