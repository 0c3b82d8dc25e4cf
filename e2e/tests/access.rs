//! Access to every ingest-api route, checked the same way for all of them: without a token 401; with a viewer token
//! 200 on reads and 403 on writes; with an accountant token 403 on master data, users, periods and settings; with
//! another company's admin token 404 on every one of company A's objects, and nothing of A changes.

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

/// A snapshot of everything company A has, to show that other companies' attempts changed nothing.
async fn footprint(pool: &sqlx::PgPool, company: uuid::Uuid) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*) FROM vouchers WHERE company_id = $1",
        "SELECT count(*) FROM vouchers WHERE company_id = $1 AND status = 'draft'",
        "SELECT count(*) FROM invoices WHERE company_id = $1 AND status = 'draft'",
        "SELECT count(*) FROM partners WHERE company_id = $1 AND is_active",
        "SELECT count(*) FROM departments WHERE company_id = $1 AND name = '부서'",
        "SELECT count(*) FROM accounts WHERE company_id = $1 AND name = '기타비용'",
        "SELECT count(*) FROM users WHERE company_id = $1 AND role = 'viewer'",
        "SELECT count(*) FROM closed_periods WHERE company_id = $1",
        "SELECT fiscal_start_month::bigint FROM companies WHERE id = $1",
    ] {
        out.push(sqlx::query_scalar(sql).bind(company).fetch_one(pool).await.unwrap());
    }
    out
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

    let before = footprint(&pool, a.id).await;
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
    assert_eq!(footprint(&pool, a.id).await, before, "nothing of company A changed");
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
    // Unknown routes and methods are problem+json too.
    let (status, problem) = send(Method::GET, Svc::Ingest, &a.token, "/api/v1/nothing-here", None).await;
    assert_eq!((status, problem["type"].as_str()), (404, Some("https://kerp.dev/problems/not-found")));
    let (status, problem) = send(Method::PATCH, Svc::Ingest, &a.token, "/api/v1/vouchers", None).await;
    assert_eq!((status, problem["type"].as_str()), (405, Some("https://kerp.dev/problems/method-not-allowed")));
}
