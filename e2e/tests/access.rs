//! Access to every ingest-api route, checked the same way for all of them: without a token 401; with a viewer token
//! 200 on reads and 403 on writes; with an accountant token 403 on master data, users, periods and settings; with
//! another company's admin token 404 on every one of company A's objects, and nothing of A changes. And every write
//! route, sent bad input by an admin, answers a 4xx problem+json and writes nothing.

mod common;

use common::{company, pg, post_voucher, send, simple_voucher, stack, token_with_role, Svc};
use kerp_core::auth::Role;
use reqwest::Method;
use serde_json::{json, Value};

/// What company A owns, to aim the requests at.
struct Fixture {
    voucher: String,
    draft: String,
    invoice: String,
    partner: String,
    department: String,
    account: String,
    user: String,
}

async fn create(token: &str, path: &str, body: Value) -> String {
    let (status, v) = send(Method::POST, Svc::Ingest, token, path, Some(&body)).await;
    assert!(status == 201, "{path}: {status} {v}");
    v["data"]["id"].as_str().unwrap().to_owned()
}

async fn fixture(token: &str) -> Fixture {
    let partner = create(token, "/api/v1/partners", json!({"code": "C1", "name": "고객", "partner_type": "both"})).await;
    let department = create(token, "/api/v1/departments", json!({"code": "D1", "name": "부서"})).await;
    let account = create(token, "/api/v1/accounts", json!({"code": "5298", "name": "기타비용"})).await;
    let user = create(
        token,
        "/api/v1/users",
        json!({"email": format!("u-{}@example.test", uuid::Uuid::new_v4().simple()), "name": "u", "role": "viewer"}),
    )
    .await;
    let (_, v) = post_voucher(token, &simple_voucher("2025-05-05", "5212", "1101", 1000)).await;
    let mut d = simple_voucher("2025-05-06", "5212", "1101", 2000);
    d["status"] = json!("draft");
    let (_, draft) = post_voucher(token, &d).await;
    let invoice = create(
        token,
        "/api/v1/invoices",
        json!({"invoice_type": "sales", "partner_id": partner, "invoice_date": "2025-05-07", "supply_amount": 1000, "tax_amount": 100,
               "items": [{"description": "x", "quantity": 1, "unit_price": 1000}]}),
    )
    .await;
    Fixture {
        voucher: v["data"]["id"].as_str().unwrap().to_owned(),
        draft: draft["data"]["id"].as_str().unwrap().to_owned(),
        invoice,
        partner,
        department,
        account,
        user,
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Read,
    Write,
    Admin,
}

#[tokio::test]
async fn every_route_checks_the_token_the_role_and_the_company() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let f = fixture(&a.token).await;
    let viewer = token_with_role(&pool, a.id, Role::Viewer).await;
    let accountant = token_with_role(&pool, a.id, Role::Accountant).await;
    let voucher_body = simple_voucher("2025-05-08", "5212", "1101", 10);
    let invoice_body = json!({"invoice_type": "sales", "partner_id": f.partner, "invoice_date": "2025-05-07", "supply_amount": 1000,
                              "tax_amount": 100, "items": [{"description": "x", "quantity": 1, "unit_price": 1000}]});
    let partner_body = json!({"code": "C9", "name": "x", "partner_type": "both"});
    // (method, path, body, who may call it, whether the path names one of A's objects)
    let routes: Vec<(Method, String, Option<Value>, Needs, bool)> = vec![
        (Method::GET, "/api/v1/vouchers".into(), None, Needs::Read, false),
        (Method::POST, "/api/v1/vouchers".into(), Some(voucher_body.clone()), Needs::Write, false),
        (Method::GET, format!("/api/v1/vouchers/{}", f.voucher), None, Needs::Read, true),
        (Method::PUT, format!("/api/v1/vouchers/{}", f.draft), Some(voucher_body.clone()), Needs::Write, true),
        (Method::POST, format!("/api/v1/vouchers/{}/approve", f.draft), None, Needs::Write, true),
        (Method::POST, format!("/api/v1/vouchers/{}/reverse", f.voucher), None, Needs::Write, true),
        (Method::DELETE, format!("/api/v1/vouchers/{}", f.draft), None, Needs::Write, true),
        (Method::GET, "/api/v1/accounts".into(), None, Needs::Read, false),
        (Method::POST, "/api/v1/accounts".into(), Some(json!({"code": "5297", "name": "x"})), Needs::Admin, false),
        (Method::GET, format!("/api/v1/accounts/{}", f.account), None, Needs::Read, true),
        (Method::PATCH, format!("/api/v1/accounts/{}", f.account), Some(json!({"name": "y"})), Needs::Admin, true),
        (Method::GET, "/api/v1/partners".into(), None, Needs::Read, false),
        (Method::POST, "/api/v1/partners".into(), Some(partner_body.clone()), Needs::Admin, false),
        (Method::GET, format!("/api/v1/partners/{}", f.partner), None, Needs::Read, true),
        (Method::PUT, format!("/api/v1/partners/{}", f.partner), Some(partner_body.clone()), Needs::Admin, true),
        (Method::POST, format!("/api/v1/partners/{}/deactivate", f.partner), None, Needs::Admin, true),
        (Method::POST, format!("/api/v1/partners/{}/activate", f.partner), None, Needs::Admin, true),
        (Method::GET, "/api/v1/departments".into(), None, Needs::Read, false),
        (Method::POST, "/api/v1/departments".into(), Some(json!({"code": "D9", "name": "x"})), Needs::Admin, false),
        (Method::GET, format!("/api/v1/departments/{}", f.department), None, Needs::Read, true),
        (Method::PUT, format!("/api/v1/departments/{}", f.department), Some(json!({"code": "D1", "name": "y"})), Needs::Admin, true),
        (Method::GET, "/api/v1/users".into(), None, Needs::Read, false),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"email": "x@example.test", "name": "x", "role": "viewer"})),
            Needs::Admin,
            false,
        ),
        (Method::GET, format!("/api/v1/users/{}", f.user), None, Needs::Read, true),
        (
            Method::PUT,
            format!("/api/v1/users/{}", f.user),
            Some(json!({"email": "y@example.test", "name": "y", "role": "admin"})),
            Needs::Admin,
            true,
        ),
        (Method::POST, format!("/api/v1/users/{}/token", f.user), None, Needs::Admin, true),
        (Method::GET, "/api/v1/company".into(), None, Needs::Read, false),
        (Method::PATCH, "/api/v1/company".into(), Some(json!({"fiscal_start_month": 7})), Needs::Admin, false),
        (Method::GET, "/api/v1/periods?year=2025".into(), None, Needs::Read, false),
        (Method::POST, "/api/v1/periods/2025-05/close".into(), None, Needs::Admin, false),
        (Method::POST, "/api/v1/periods/2025-05/reopen".into(), None, Needs::Admin, false),
        (Method::GET, "/api/v1/invoices".into(), None, Needs::Read, false),
        (Method::POST, "/api/v1/invoices".into(), Some(invoice_body.clone()), Needs::Write, false),
        (Method::GET, format!("/api/v1/invoices/{}", f.invoice), None, Needs::Read, true),
        (Method::PUT, format!("/api/v1/invoices/{}", f.invoice), Some(invoice_body.clone()), Needs::Write, true),
        (Method::POST, format!("/api/v1/invoices/{}/issue", f.invoice), None, Needs::Write, true),
        (Method::POST, format!("/api/v1/invoices/{}/cancel", f.invoice), None, Needs::Write, true),
        (
            Method::PUT,
            format!("/api/v1/invoices/{}/approval-number", f.invoice),
            Some(json!({"approval_number": "20250507-00000000-00000001"})),
            Needs::Write,
            true,
        ),
    ];

    // Every row of every company table, and the events on the topic: what other tokens' attempts must leave alone.
    let before = footprint_with_events(&pool, a.id).await;
    for (method, path, body, needs, owned) in &routes {
        let call = |token: String| {
            let (method, path, body) = (method.clone(), path.clone(), body.clone());
            async move { send(method, Svc::Ingest, &token, &path, body.as_ref()).await }
        };
        let (status, problem) = call("not-a-token".into()).await;
        assert_eq!(status, 401, "{method} {path} without a token: {problem}");
        assert_eq!(problem["type"], "https://kerp.dev/problems/unauthorized", "{method} {path}");
        if *needs != Needs::Read {
            let (status, problem) = call(viewer.clone()).await;
            assert_eq!(status, 403, "{method} {path} as a viewer: {problem}");
            assert_eq!(problem["type"], "https://kerp.dev/problems/forbidden");
        }
        if *needs == Needs::Admin {
            assert_eq!(call(accountant.clone()).await.0, 403, "{method} {path} as an accountant");
        }
        if *owned {
            let (status, problem) = call(b.token.clone()).await;
            assert_eq!(status, 404, "{method} {path} with another company's token: {problem}");
        }
    }
    assert_eq!(footprint_with_events(&pool, a.id).await, before, "nothing of company A changed");
    // Reads as a viewer succeed, and company B's lists show nothing of A.
    for (method, path, _, needs, _) in &routes {
        if *method == Method::GET && *needs == Needs::Read {
            assert_eq!(send(Method::GET, Svc::Ingest, &viewer, path, None).await.0, 200, "{path} as a viewer");
        }
    }
    for path in ["/api/v1/vouchers", "/api/v1/partners", "/api/v1/departments", "/api/v1/invoices"] {
        let (_, list) = send(Method::GET, Svc::Ingest, &b.token, path, None).await;
        assert_eq!(list["pagination"]["total"], 0, "{path} of company B: {list}");
    }
    // B's own chart and users are there, and none of A's account or user ids is among them.
    for (path, a_id) in [("/api/v1/accounts?page_size=500", &f.account), ("/api/v1/users?page_size=500", &f.user)] {
        let (status, list) = send(Method::GET, Svc::Ingest, &b.token, path, None).await;
        assert_eq!(status, 200, "{path}: {list}");
        let ids: Vec<&str> = list["data"].as_array().unwrap().iter().filter_map(|x| x["id"].as_str()).collect();
        assert!(!ids.is_empty(), "{path} of company B lists its own: {list}");
        assert!(!ids.contains(&a_id.as_str()), "{path} of company B lists A's {a_id}");
    }
    // Unknown routes and methods are problem+json too.
    let (status, problem) = send(Method::GET, Svc::Ingest, &a.token, "/api/v1/nothing-here", None).await;
    assert_eq!((status, problem["type"].as_str()), (404, Some("https://kerp.dev/problems/not-found")));
    let (status, problem) = send(Method::PATCH, Svc::Ingest, &a.token, "/api/v1/vouchers", None).await;
    assert_eq!((status, problem["type"].as_str()), (405, Some("https://kerp.dev/problems/method-not-allowed")));
}

/// The body a bad request sends.
#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    /// Bytes sent as `application/json` that are not JSON.
    Raw(&'static str),
}

/// One bad request to a write route: the route's OpenAPI template, the request, the 4xx it must get and why it is bad.
struct Bad {
    route: (&'static str, &'static str),
    path: String,
    body: Body,
    /// Sent as `Idempotency-Key`: a refused request must not keep its key either.
    key: Option<&'static str>,
    status: u16,
    why: &'static str,
}

fn bad(route: (&'static str, &'static str), path: impl Into<String>, body: Body, status: u16, why: &'static str) -> Bad {
    Bad { route, path: path.into(), body, key: None, status, why }
}

/// Sends a bad request as `token` and returns its status, content type and body.
async fn send_bad(token: &str, b: &Bad) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(b.route.0.as_bytes()).expect("method");
    let mut r = common::http().request(method, format!("{}{}", stack().ingest_url, b.path)).bearer_auth(token);
    if let Some(k) = b.key {
        r = r.header("idempotency-key", k);
    }
    r = match &b.body {
        Body::None => r,
        Body::Json(v) => r.json(v),
        Body::Raw(text) => r.header("content-type", "application/json").body(*text),
    };
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, content_type, r.json().await.unwrap_or(Value::Null))
}

/// Everything Postgres holds of a company, per table: its row count and a digest of its rows' text, so that an
/// update shows as well as an insert or a delete. The tables are found in the catalogue: every table with a
/// `company_id` column, the company's own row, and the invoices' items (which reach the company through their
/// invoice); a table that is none of these fails the test, so a new table cannot be left out unseen.
async fn company_rows(pool: &sqlx::PgPool, company: uuid::Uuid) -> std::collections::BTreeMap<String, (i64, String)> {
    let tables: Vec<(String, bool)> = sqlx::query_as(
        "SELECT t.table_name::text,
                EXISTS (SELECT 1 FROM information_schema.columns c
                        WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name AND c.column_name = 'company_id')
         FROM information_schema.tables t
         WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND t.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    let mut out = std::collections::BTreeMap::new();
    for (table, has_company) in tables {
        let filter = match table.as_str() {
            "companies" => "id = $1",
            "invoice_items" => "invoice_id IN (SELECT id FROM invoices WHERE company_id = $1)",
            _ if has_company => "company_id = $1",
            _ => panic!("table {table} is not tied to a company here; add it to company_rows"),
        };
        let digest: (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), COALESCE(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t WHERE {filter}"
        ))
        .bind(company)
        .fetch_one(pool)
        .await
        .expect("digest");
        out.insert(table, digest);
    }
    for table in ["vouchers", "voucher_lines", "voucher_counters", "outbox", "idempotency_keys", "invoices", "invoice_items", "companies"] {
        assert!(out.contains_key(table), "{table} is in the footprint");
    }
    out
}

/// What the company has in Postgres and on the topic, once the relay has published every queued event: an event
/// that a refused request queued would be gone from the outbox by then, but on the topic.
async fn footprint_with_events(pool: &sqlx::PgPool, company: uuid::Uuid) -> (std::collections::BTreeMap<String, (i64, String)>, usize) {
    common::outbox_drained(pool, company).await;
    (company_rows(pool, company).await, common::company_messages(&stack().topic, company).await.len())
}

/// Every write route of ingest-api (each POST, PUT, PATCH and DELETE its OpenAPI document lists), sent bad input by an
/// admin of the company (malformed JSON, a field that does not validate, a reference or a code that the database
/// refuses, a state or a closed period that forbids it, a malformed id or period), answers a 4xx problem+json and
/// changes nothing: no row of any of the company's tables (outbox, idempotency keys and voucher counters included)
/// and no event on the topic. The requests that fail late, inside the transaction after rows were already written
/// (an approval or a reversal into a closed month, a duplicate code), show that those writes are rolled back.
#[tokio::test]
async fn every_write_route_refuses_bad_input_and_writes_nothing() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let t = &a.token;
    let f = fixture(t).await;
    // More objects to aim at: a second partner, department and user whose code and e-mail are taken, a partner and an
    // account switched off (with a draft on the account from before), an issued invoice with an approval number, and
    // April 2025 closed with a draft voucher and a draft invoice dated inside it.
    create(t, "/api/v1/partners", json!({"code": "C2", "name": "둘째", "partner_type": "both"})).await;
    let retired = create(t, "/api/v1/partners", json!({"code": "C3", "name": "셋째", "partner_type": "both"})).await;
    assert_eq!(send(Method::POST, Svc::Ingest, t, &format!("/api/v1/partners/{retired}/deactivate"), None).await.0, 200);
    create(t, "/api/v1/departments", json!({"code": "D2", "name": "둘째 부서"})).await;
    let taken = format!("taken-{}@example.test", uuid::Uuid::new_v4().simple());
    create(t, "/api/v1/users", json!({"email": taken, "name": "t", "role": "viewer"})).await;
    let closed_account = create(t, "/api/v1/accounts", json!({"code": "5297", "name": "닫을 계정"})).await;
    let mut d = simple_voucher("2025-05-09", "5297", "1101", 500);
    d["status"] = json!("draft");
    let (_, on_closed_account) = post_voucher(t, &d).await;
    let on_closed_account = on_closed_account["data"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/accounts/{closed_account}");
    assert_eq!(send(Method::PATCH, Svc::Ingest, t, &path, Some(&json!({"is_active": false}))).await.0, 200);
    let invoice = |date: &str| {
        json!({"invoice_type": "sales", "partner_id": f.partner, "invoice_date": date, "supply_amount": 1000, "tax_amount": 100,
               "items": [{"description": "x", "quantity": 1, "unit_price": 1000}]})
    };
    let issued = create(t, "/api/v1/invoices", invoice("2025-05-07")).await;
    assert_eq!(send(Method::POST, Svc::Ingest, t, &format!("/api/v1/invoices/{issued}/issue"), None).await.0, 200);
    let number = json!({"approval_number": "20250507-00000000-00000002"});
    assert_eq!(send(Method::PUT, Svc::Ingest, t, &format!("/api/v1/invoices/{issued}/approval-number"), Some(&number)).await.0, 200);
    let april_invoice = create(t, "/api/v1/invoices", invoice("2025-04-10")).await;
    let mut d = simple_voucher("2025-04-10", "5212", "1101", 700);
    d["status"] = json!("draft");
    let (_, april_draft) = post_voucher(t, &d).await;
    let april_draft = april_draft["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(send(Method::POST, Svc::Ingest, t, "/api/v1/periods/2025-04/close", None).await.0, 200);

    let unbalanced = json!({"voucher_date": "2025-05-10", "voucher_type": "general",
                            "lines": [{"account_code": "5212", "debit_amount": 1000}, {"account_code": "1101", "credit_amount": 999}]});
    let in_april = simple_voucher("2025-04-15", "5212", "1101", 300);
    let mut on_retired = simple_voucher("2025-05-10", "1103", "4101", 300);
    on_retired["lines"][0]["partner_id"] = json!(retired);
    let mut bad_tax = invoice("2025-05-08");
    bad_tax["tax_amount"] = json!(150);
    let mut retired_invoice = invoice("2025-05-08");
    retired_invoice["partner_id"] = json!(retired);
    let nobody = uuid::Uuid::new_v4();
    let long_reason = "사유".repeat(300);
    let j = Body::Json;
    const VOUCHERS: (&str, &str) = ("POST", "/api/v1/vouchers");
    const VOUCHER_PUT: (&str, &str) = ("PUT", "/api/v1/vouchers/{id}");
    const VOUCHER_DELETE: (&str, &str) = ("DELETE", "/api/v1/vouchers/{id}");
    const APPROVE: (&str, &str) = ("POST", "/api/v1/vouchers/{id}/approve");
    const REVERSE: (&str, &str) = ("POST", "/api/v1/vouchers/{id}/reverse");
    const ACCOUNTS: (&str, &str) = ("POST", "/api/v1/accounts");
    const ACCOUNT_PATCH: (&str, &str) = ("PATCH", "/api/v1/accounts/{id}");
    const PARTNERS: (&str, &str) = ("POST", "/api/v1/partners");
    const PARTNER_PUT: (&str, &str) = ("PUT", "/api/v1/partners/{id}");
    const DEACTIVATE: (&str, &str) = ("POST", "/api/v1/partners/{id}/deactivate");
    const ACTIVATE: (&str, &str) = ("POST", "/api/v1/partners/{id}/activate");
    const DEPARTMENTS: (&str, &str) = ("POST", "/api/v1/departments");
    const DEPARTMENT_PUT: (&str, &str) = ("PUT", "/api/v1/departments/{id}");
    const USERS: (&str, &str) = ("POST", "/api/v1/users");
    const USER_PUT: (&str, &str) = ("PUT", "/api/v1/users/{id}");
    const TOKEN: (&str, &str) = ("POST", "/api/v1/users/{id}/token");
    const COMPANY: (&str, &str) = ("PATCH", "/api/v1/company");
    const CLOSE: (&str, &str) = ("POST", "/api/v1/periods/{period}/close");
    const REOPEN: (&str, &str) = ("POST", "/api/v1/periods/{period}/reopen");
    const INVOICES: (&str, &str) = ("POST", "/api/v1/invoices");
    const INVOICE_PUT: (&str, &str) = ("PUT", "/api/v1/invoices/{id}");
    const ISSUE: (&str, &str) = ("POST", "/api/v1/invoices/{id}/issue");
    const CANCEL: (&str, &str) = ("POST", "/api/v1/invoices/{id}/cancel");
    const APPROVAL: (&str, &str) = ("PUT", "/api/v1/invoices/{id}/approval-number");
    let cases = vec![
        bad(VOUCHERS, "/api/v1/vouchers", Body::Raw("{\"voucher_date\": "), 400, "malformed JSON"),
        bad(VOUCHERS, "/api/v1/vouchers", j(unbalanced.clone()), 422, "debits and credits differ"),
        Bad { key: Some("bad-voucher-1"), ..bad(VOUCHERS, "/api/v1/vouchers", j(unbalanced.clone()), 422, "unbalanced, with a key") },
        bad(VOUCHERS, "/api/v1/vouchers", j(in_april.clone()), 409, "approved into a closed month (its number was taken)"),
        Bad { key: Some("bad-voucher-2"), ..bad(VOUCHERS, "/api/v1/vouchers", j(in_april.clone()), 409, "closed month, with a key") },
        bad(VOUCHERS, "/api/v1/vouchers", j(on_retired), 422, "a partner switched off"),
        bad(VOUCHER_PUT, format!("/api/v1/vouchers/{}", f.draft), j(unbalanced.clone()), 422, "an unbalanced draft"),
        bad(VOUCHER_PUT, format!("/api/v1/vouchers/{}", f.draft), j(in_april.clone()), 409, "a draft replaced and approved into April"),
        bad(VOUCHER_PUT, format!("/api/v1/vouchers/{}", f.voucher), j(simple_voucher("2025-05-10", "5212", "1101", 5)), 409, "approved"),
        bad(VOUCHER_DELETE, format!("/api/v1/vouchers/{}", f.voucher), Body::None, 409, "an approved voucher deleted"),
        bad(VOUCHER_DELETE, "/api/v1/vouchers/not-a-uuid", Body::None, 404, "a malformed id"),
        bad(APPROVE, format!("/api/v1/vouchers/{april_draft}/approve"), Body::None, 409, "a draft of a closed month"),
        bad(APPROVE, format!("/api/v1/vouchers/{on_closed_account}/approve"), Body::None, 422, "a draft on an account switched off"),
        bad(APPROVE, format!("/api/v1/vouchers/{}/approve", f.voucher), Body::None, 409, "approved already"),
        bad(APPROVE, format!("/api/v1/vouchers/{nobody}/approve"), Body::None, 404, "no such voucher"),
        bad(REVERSE, format!("/api/v1/vouchers/{}/reverse", f.voucher), j(json!({"date": "2025-13-01"})), 422, "no such date"),
        bad(REVERSE, format!("/api/v1/vouchers/{}/reverse", f.voucher), j(json!({"reason": long_reason})), 422, "a reason too long"),
        bad(REVERSE, format!("/api/v1/vouchers/{}/reverse", f.voucher), j(json!({"date": "2025-04-30"})), 409, "into a closed month"),
        Bad {
            key: Some("bad-reverse"),
            ..bad(REVERSE, format!("/api/v1/vouchers/{}/reverse", f.voucher), j(json!({"date": "2025-04-30"})), 409, "closed, keyed")
        },
        bad(REVERSE, format!("/api/v1/vouchers/{}/reverse", f.draft), Body::None, 409, "a draft reversed"),
        bad(ACCOUNTS, "/api/v1/accounts", j(json!({"code": "12", "name": "x"})), 422, "a code of two digits"),
        bad(ACCOUNTS, "/api/v1/accounts", j(json!({"code": "5298", "name": "x"})), 409, "a code the chart has"),
        Bad { key: Some("bad-account"), ..bad(ACCOUNTS, "/api/v1/accounts", j(json!({"code": "5298", "name": "x"})), 409, "keyed") },
        bad(ACCOUNT_PATCH, format!("/api/v1/accounts/{}", f.account), j(json!({})), 422, "nothing to change"),
        bad(ACCOUNT_PATCH, format!("/api/v1/accounts/{}", f.account), j(json!({"is_active": "no"})), 422, "a flag that is text"),
        bad(ACCOUNT_PATCH, format!("/api/v1/accounts/{nobody}"), j(json!({"name": "x"})), 404, "no such account"),
        bad(PARTNERS, "/api/v1/partners", j(json!({"code": "C9", "name": "x", "partner_type": "alien"})), 422, "no such type"),
        bad(PARTNERS, "/api/v1/partners", j(json!({"code": "C1", "name": "x", "partner_type": "both"})), 409, "a code taken"),
        bad(
            PARTNER_PUT,
            format!("/api/v1/partners/{}", f.partner),
            j(json!({"code": "C1", "name": " ", "partner_type": "both"})),
            422,
            "no name",
        ),
        bad(
            PARTNER_PUT,
            format!("/api/v1/partners/{}", f.partner),
            j(json!({"code": "C2", "name": "x", "partner_type": "both"})),
            409,
            "taken",
        ),
        bad(DEACTIVATE, "/api/v1/partners/not-a-uuid/deactivate", Body::None, 404, "a malformed id"),
        bad(DEACTIVATE, format!("/api/v1/partners/{nobody}/deactivate"), Body::None, 404, "no such partner"),
        bad(ACTIVATE, "/api/v1/partners/not-a-uuid/activate", Body::None, 404, "a malformed id"),
        bad(ACTIVATE, format!("/api/v1/partners/{nobody}/activate"), Body::None, 404, "no such partner"),
        bad(DEPARTMENTS, "/api/v1/departments", j(json!({"code": "D9"})), 422, "no name"),
        bad(DEPARTMENTS, "/api/v1/departments", j(json!({"code": "D1", "name": "x"})), 409, "a code taken"),
        bad(
            DEPARTMENT_PUT,
            format!("/api/v1/departments/{}", f.department),
            j(json!({"code": "D 1", "name": "y"})),
            422,
            "a space in the code",
        ),
        bad(DEPARTMENT_PUT, format!("/api/v1/departments/{}", f.department), j(json!({"code": "D2", "name": "y"})), 409, "a code taken"),
        bad(USERS, "/api/v1/users", j(json!({"email": "nope", "name": "x", "role": "viewer"})), 422, "no e-mail address"),
        bad(USERS, "/api/v1/users", j(json!({"email": taken, "name": "x", "role": "viewer"})), 409, "an e-mail address taken"),
        bad(
            USER_PUT,
            format!("/api/v1/users/{}", f.user),
            j(json!({"email": "ok@example.test", "name": "y", "role": "boss"})),
            422,
            "no such role",
        ),
        bad(USER_PUT, format!("/api/v1/users/{}", f.user), j(json!({"email": taken, "name": "y", "role": "viewer"})), 409, "e-mail taken"),
        bad(
            USER_PUT,
            format!("/api/v1/users/{}", a.admin),
            j(json!({"email": taken, "name": "me", "role": "viewer"})),
            409,
            "self-demotion",
        ),
        bad(TOKEN, format!("/api/v1/users/{}/token", f.user), j(json!({"ttl_seconds": 0})), 422, "a token that never lives"),
        bad(TOKEN, format!("/api/v1/users/{nobody}/token"), Body::None, 404, "no such user"),
        bad(COMPANY, "/api/v1/company", j(json!({"fiscal_start_month": 13})), 422, "no such month"),
        bad(COMPANY, "/api/v1/company", j(json!({"name": "x", "business_number": "116-82-00278"})), 422, "a wrong check digit"),
        bad(CLOSE, "/api/v1/periods/2025-13/close", Body::None, 404, "no such month"),
        bad(CLOSE, "/api/v1/periods/2025-04/close", Body::None, 409, "closed already"),
        bad(REOPEN, "/api/v1/periods/25-04/reopen", Body::None, 404, "a malformed period"),
        bad(REOPEN, "/api/v1/periods/2025-06/reopen", Body::None, 409, "not closed"),
        bad(INVOICES, "/api/v1/invoices", j(bad_tax.clone()), 422, "tax that is not 10%"),
        bad(INVOICES, "/api/v1/invoices", j(retired_invoice), 422, "a partner switched off"),
        Bad { key: Some("bad-invoice"), ..bad(INVOICES, "/api/v1/invoices", j(bad_tax.clone()), 422, "bad tax, keyed") },
        bad(INVOICE_PUT, format!("/api/v1/invoices/{}", f.invoice), j(bad_tax.clone()), 422, "tax that is not 10%"),
        bad(INVOICE_PUT, format!("/api/v1/invoices/{issued}"), j(invoice("2025-05-08")), 409, "an issued invoice edited"),
        bad(ISSUE, format!("/api/v1/invoices/{issued}/issue"), Body::None, 409, "issued already"),
        bad(ISSUE, format!("/api/v1/invoices/{april_invoice}/issue"), Body::None, 409, "into a closed month"),
        bad(ISSUE, format!("/api/v1/invoices/{}/issue", f.invoice), Body::Raw("{"), 400, "malformed JSON"),
        bad(CANCEL, format!("/api/v1/invoices/{issued}/cancel"), j(json!({"date": "2025-02-30"})), 422, "no such date"),
        bad(CANCEL, format!("/api/v1/invoices/{issued}/cancel"), j(json!({"date": "2025-04-30"})), 409, "reversal into a closed month"),
        bad(APPROVAL, format!("/api/v1/invoices/{}/approval-number", f.invoice), j(json!({"approval_number": "123"})), 422, "too short"),
        bad(APPROVAL, format!("/api/v1/invoices/{}/approval-number", f.invoice), j(number.clone()), 409, "another invoice's number"),
    ];

    // Every write operation the OpenAPI document lists gets at least one bad request.
    let doc: Value =
        common::http().get(format!("{}/openapi.json", stack().ingest_url)).send().await.expect("get").json().await.expect("json");
    let mut writes = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                writes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let covered: std::collections::BTreeSet<(String, String)> =
        cases.iter().map(|c| (c.route.0.to_owned(), c.route.1.to_owned())).collect();
    assert_eq!(covered, writes, "each write route of the OpenAPI document, and only those, has bad requests");

    let before = footprint_with_events(&pool, a.id).await;
    for c in &cases {
        let (status, content_type, problem) = send_bad(t, c).await;
        let what = format!("{} {} ({})", c.route.0, c.path, c.why);
        assert_eq!(status, c.status, "{what}: {problem}");
        assert_eq!(content_type, "application/problem+json", "{what}");
        assert_eq!(problem["status"], c.status, "{what}: {problem}");
        if c.status == 422 {
            assert!(problem["errors"].as_array().is_some_and(|e| !e.is_empty()), "{what} names the field: {problem}");
        }
    }
    assert_eq!(footprint_with_events(&pool, a.id).await, before, "the refused requests wrote nothing");
}
