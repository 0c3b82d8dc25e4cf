//! Master data through the API against the real stack: partners (with the business number check and a Korean `q=`
//! search), departments on voucher lines, accounts added, renamed and switched off, users with roles and tokens, and
//! the company's settings. For each: the happy path, 401/403, tenancy (another company's token neither sees nor
//! changes anything), bad input (4xx with nothing written), and the event that carries the change to ClickHouse, so a
//! renamed account shows under its new name in the trial balance with no Postgres read.

mod common;

use std::time::Duration;

use clickhouse::Row;
use common::{company, eventually, get, pg, post_voucher, send, stack, token_with_role, Svc};
use kerp_core::auth::Role;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

async fn post(token: &str, path: &str, body: &Value) -> (u16, Value) {
    send(Method::POST, Svc::Ingest, token, path, Some(body)).await
}

async fn put(token: &str, path: &str, body: &Value) -> (u16, Value) {
    send(Method::PUT, Svc::Ingest, token, path, Some(body)).await
}

async fn patch(token: &str, path: &str, body: &Value) -> (u16, Value) {
    send(Method::PATCH, Svc::Ingest, token, path, Some(body)).await
}

async fn count(pool: &sqlx::PgPool, sql: &str, company: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(company).fetch_one(pool).await.unwrap()
}

fn partner(code: &str, name: &str, business_number: Option<&str>) -> Value {
    json!({"code": code, "name": name, "business_number": business_number, "partner_type": "customer",
           "representative": "김대표", "address": "서울특별시 중구 세종대로 110"})
}

#[tokio::test]
async fn partners_are_created_searched_updated_and_deactivated_by_an_admin_only() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;

    let (status, created) = post(&a.token, "/api/v1/partners", &partner("P001", "삼성전자", Some("124-81-00998"))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["data"]["business_number"], "124-81-00998");
    assert_eq!(created["data"]["is_active"], true);
    for (code, name) in [("P002", "삼성물산"), ("P003", "엘지화학"), ("X-9", "100% 유기농")] {
        assert_eq!(post(&a.token, "/api/v1/partners", &partner(code, name, None)).await.0, 201);
    }

    // Bad input: a failing check digit, a duplicate code, a duplicate business number. Nothing is written.
    let before = count(&pool, "SELECT count(*) FROM partners WHERE company_id = $1", a.id).await;
    let (status, problem) = post(&a.token, "/api/v1/partners", &partner("P010", "잘못", Some("116-82-00278"))).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "business_number");
    assert_eq!(post(&a.token, "/api/v1/partners", &partner("P001", "중복", None)).await.0, 409);
    assert_eq!(post(&a.token, "/api/v1/partners", &partner("P011", "중복번호", Some("1248100998"))).await.0, 409);
    assert_eq!(post(&a.token, "/api/v1/partners", &json!({"name": "코드 없음"})).await.0, 422);
    assert_eq!(count(&pool, "SELECT count(*) FROM partners WHERE company_id = $1", a.id).await, before);

    // Search by a part of the name, in Korean (reqwest percent-encodes it), by code, and literally.
    let (status, found) = get(Svc::Ingest, &a.token, "/api/v1/partners?q=%EC%82%BC%EC%84%B1&page_size=10").await;
    assert_eq!(status, 200, "{found}");
    let names: Vec<&str> = found["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["삼성전자", "삼성물산"]);
    assert_eq!(found["pagination"]["total"], 2);
    let (_, by_code) = get(Svc::Ingest, &a.token, "/api/v1/partners?q=p003").await;
    assert_eq!(by_code["data"][0]["name"], "엘지화학");
    let (_, literal) = get(Svc::Ingest, &a.token, "/api/v1/partners?q=100%25").await;
    assert_eq!(literal["pagination"]["total"], 1, "% is taken literally: {literal}");
    assert_eq!(get(Svc::Ingest, &a.token, "/api/v1/partners?page=abc").await.0, 400);
    assert_eq!(get(Svc::Ingest, &a.token, "/api/v1/partners?partner_type=vendor").await.0, 400);
    assert_eq!(get(Svc::Ingest, &a.token, "/api/v1/partners?unknown=1").await.0, 200, "unknown parameters are ignored");

    // Roles: a viewer and an accountant read but may not change partners.
    let viewer = token_with_role(&pool, a.id, Role::Viewer).await;
    let accountant = token_with_role(&pool, a.id, Role::Accountant).await;
    assert_eq!(get(Svc::Ingest, &viewer, &format!("/api/v1/partners/{id}")).await.0, 200);
    assert_eq!(post(&viewer, "/api/v1/partners", &partner("P020", "x", None)).await.0, 403);
    assert_eq!(post(&accountant, "/api/v1/partners", &partner("P021", "x", None)).await.0, 403);
    assert_eq!(put(&accountant, &format!("/api/v1/partners/{id}"), &partner("P001", "x", None)).await.0, 403);
    assert_eq!(send(Method::GET, Svc::Ingest, "not-a-token", "/api/v1/partners", None).await.0, 401);

    // Tenancy: company B sees none of A's partners and cannot change them.
    assert_eq!(get(Svc::Ingest, &b.token, &format!("/api/v1/partners/{id}")).await.0, 404);
    assert_eq!(get(Svc::Ingest, &b.token, "/api/v1/partners").await.1["pagination"]["total"], 0);
    assert_eq!(put(&b.token, &format!("/api/v1/partners/{id}"), &partner("P001", "탈취", None)).await.0, 404);
    assert_eq!(post(&b.token, &format!("/api/v1/partners/{id}/deactivate"), &json!({})).await.0, 404);

    // Update, then deactivate: a deactivated partner cannot go on a new line, and its history stays.
    let (status, updated) = put(&a.token, &format!("/api/v1/partners/{id}"), &partner("P001", "삼성전자(주)", Some("124-81-00998"))).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["name"], "삼성전자(주)");
    let line = |p: &str| {
        json!({"voucher_date": "2025-03-02", "lines": [
            {"account_code": "1103", "partner_id": p, "debit_amount": 1000},
            {"account_code": "4101", "credit_amount": 1000}]})
    };
    assert_eq!(post_voucher(&a.token, &line(&id)).await.0, 201);
    let (status, off) = post(&a.token, &format!("/api/v1/partners/{id}/deactivate"), &json!({})).await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["data"]["is_active"], false);
    let (status, problem) = post_voucher(&a.token, &line(&id)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "lines[0].partner_id");

    // The partner's latest state reaches ClickHouse through its events.
    #[derive(Debug, Row, Deserialize)]
    struct PartnerDim {
        name: String,
        business_number: String,
        is_active: u8,
    }
    let ch = common::clickhouse().client();
    let dim: PartnerDim = eventually(Duration::from_secs(60), "the partner's last event folded", || {
        let ch = ch.clone();
        let id = id.clone();
        async move {
            let rows: Vec<PartnerDim> = ch
                .query("SELECT name, business_number, is_active FROM partners FINAL WHERE partner_id = toUUID(?)")
                .bind(id)
                .fetch_all()
                .await
                .ok()?;
            rows.into_iter().next().filter(|p| p.is_active == 0)
        }
    })
    .await;
    assert_eq!((dim.name.as_str(), dim.business_number.as_str()), ("삼성전자(주)", "124-81-00998"));
}

#[tokio::test]
async fn departments_go_on_voucher_lines_of_their_own_company_only() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let (status, d) = post(&a.token, "/api/v1/departments", &json!({"code": "SALES", "name": "영업부"})).await;
    assert_eq!(status, 201, "{d}");
    let dept = d["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(post(&a.token, "/api/v1/departments", &json!({"code": "SALES", "name": "중복"})).await.0, 409);
    assert_eq!(post(&a.token, "/api/v1/departments", &json!({"code": "bad code!", "name": "x"})).await.0, 422);
    let viewer = token_with_role(&pool, a.id, Role::Viewer).await;
    assert_eq!(post(&viewer, "/api/v1/departments", &json!({"code": "HR", "name": "인사부"})).await.0, 403);
    let (status, renamed) = put(&a.token, &format!("/api/v1/departments/{dept}"), &json!({"code": "SALES", "name": "국내영업부"})).await;
    assert_eq!(status, 200, "{renamed}");
    let (status, list) = get(Svc::Ingest, &viewer, "/api/v1/departments").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["name"], "국내영업부");
    assert_eq!(get(Svc::Ingest, &b.token, "/api/v1/departments").await.1["pagination"]["total"], 0);
    assert_eq!(get(Svc::Ingest, &b.token, &format!("/api/v1/departments/{dept}")).await.0, 404);

    let voucher = |d: &str| {
        json!({"voucher_date": "2025-04-10", "lines": [
            {"account_code": "5212", "department_id": d, "debit_amount": 5000},
            {"account_code": "1101", "credit_amount": 5000}]})
    };
    let (status, posted) = post_voucher(&a.token, &voucher(&dept)).await;
    assert_eq!(status, 201, "{posted}");
    let (_, v) = get(Svc::Ingest, &a.token, &format!("/api/v1/vouchers/{}", posted["data"]["id"].as_str().unwrap())).await;
    assert_eq!(v["data"]["lines"][0]["department_id"], dept.as_str());
    // Company B cannot book onto A's department; nothing is written.
    let before = count(&pool, "SELECT count(*) FROM vouchers WHERE company_id = $1", b.id).await;
    let (status, problem) = post_voucher(&b.token, &voucher(&dept)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "lines[0].department_id");
    assert_eq!(count(&pool, "SELECT count(*) FROM vouchers WHERE company_id = $1", b.id).await, before);
}

#[tokio::test]
async fn accounts_are_added_by_class_renamed_in_the_reports_and_switched_off() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let (status, created) = post(&a.token, "/api/v1/accounts", &json!({"code": "5299", "name": "잡비", "name_en": "Sundry"})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["account_type"], "expense");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(post(&a.token, "/api/v1/accounts", &json!({"code": "5299", "name": "중복"})).await.0, 409);
    let (status, problem) = post(&a.token, "/api/v1/accounts", &json!({"code": "4999", "name": "x", "account_type": "expense"})).await;
    assert_eq!(status, 422, "the class must match the first digit: {problem}");
    assert_eq!(post(&a.token, "/api/v1/accounts", &json!({"code": "9999", "name": "x"})).await.0, 422);
    let accountant = token_with_role(&pool, a.id, Role::Accountant).await;
    assert_eq!(post(&accountant, "/api/v1/accounts", &json!({"code": "5298", "name": "x"})).await.0, 403);
    assert_eq!(patch(&b.token, &format!("/api/v1/accounts/{id}"), &json!({"name": "탈취"})).await.0, 404);

    let voucher = json!({"voucher_date": "2025-05-20", "lines": [
        {"account_code": "5299", "debit_amount": 7000}, {"account_code": "1101", "credit_amount": 7000}]});
    let (status, posted) = post_voucher(&accountant, &voucher).await;
    assert_eq!(status, 201, "{posted}");
    let (status, renamed) = patch(&a.token, &format!("/api/v1/accounts/{id}"), &json!({"name": "잡손비"})).await;
    assert_eq!(status, 200, "{renamed}");
    // The rename reaches the trial balance through the event: query-api reads no Postgres.
    eventually(Duration::from_secs(60), "the renamed account in the trial balance", || async {
        let (status, tb) = get(Svc::Query, &a.token, "/api/v1/reports/trial-balance?year=2025&month=5").await;
        (status == 200
            && tb["data"]["accounts"].as_array()?.iter().any(|r| r["account_id"] == id.as_str() && r["account_name"] == "잡손비"))
        .then_some(())
    })
    .await;

    // Switched off: new postings are refused, the posted history stays.
    assert_eq!(patch(&a.token, &format!("/api/v1/accounts/{id}"), &json!({"is_active": false})).await.0, 200);
    let (status, problem) = post_voucher(&a.token, &voucher).await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("inactive"), "{problem}");
    let (status, v) = get(Svc::Ingest, &a.token, &format!("/api/v1/vouchers/{}", posted["data"]["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["lines"][0]["account_id"], id.as_str());
    assert_eq!(patch(&a.token, &format!("/api/v1/accounts/{id}"), &json!({})).await.0, 422, "an update must change something");
}

#[tokio::test]
async fn admins_create_users_whose_tokens_carry_their_role() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let email = format!("viewer-{}@example.test", Uuid::new_v4().simple());
    let (status, created) = post(&a.token, "/api/v1/users", &json!({"email": email, "name": "이뷰어", "role": "viewer"})).await;
    assert_eq!(status, 201, "{created}");
    let viewer_id = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(post(&a.token, "/api/v1/users", &json!({"email": email.to_uppercase(), "name": "중복", "role": "viewer"})).await.0, 409);
    assert_eq!(post(&a.token, "/api/v1/users", &json!({"email": "x@example.test", "name": "x", "role": "owner"})).await.0, 422);
    let (status, list) = get(Svc::Ingest, &a.token, "/api/v1/users").await;
    assert_eq!(status, 200);
    assert_eq!(list["pagination"]["total"], 2, "the admin and the viewer: {list}");
    assert_eq!(get(Svc::Ingest, &b.token, &format!("/api/v1/users/{viewer_id}")).await.0, 404);
    assert_eq!(post(&b.token, &format!("/api/v1/users/{viewer_id}/token"), &json!({})).await.0, 404);

    // The admin issues the viewer a token (the body may be left out); it reads and may not write.
    let r = common::http()
        .post(format!("{}/api/v1/users/{viewer_id}/token", stack().ingest_url))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let issued: Value = r.json().await.unwrap();
    let viewer = issued["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(get(Svc::Ingest, &viewer, "/api/v1/accounts").await.0, 200);
    assert_eq!(get(Svc::Query, &viewer, "/api/v1/reports/trial-balance?year=2025&month=1").await.0, 200);
    assert_eq!(post_voucher(&viewer, &common::simple_voucher("2025-01-05", "5212", "1101", 100)).await.0, 403);
    assert_eq!(post(&viewer, "/api/v1/users", &json!({"email": "v2@example.test", "name": "x", "role": "admin"})).await.0, 403);
    assert_eq!(post(&viewer, &format!("/api/v1/users/{viewer_id}/token"), &json!({})).await.0, 403);

    // Promoted to accountant, a new token posts vouchers; a switched-off user gets no token.
    let (status, _) =
        put(&a.token, &format!("/api/v1/users/{viewer_id}"), &json!({"email": email, "name": "이회계", "role": "accountant"})).await;
    assert_eq!(status, 200);
    let (_, issued) = post(&a.token, &format!("/api/v1/users/{viewer_id}/token"), &json!({"ttl_seconds": 600})).await;
    assert_eq!(issued["data"]["role"], "accountant");
    let accountant = issued["data"]["token"].as_str().unwrap();
    assert_eq!(post_voucher(accountant, &common::simple_voucher("2025-01-05", "5212", "1101", 100)).await.0, 201);
    assert_eq!(post(&a.token, &format!("/api/v1/users/{viewer_id}/token"), &json!({"ttl_seconds": 0})).await.0, 422);
    put(
        &a.token,
        &format!("/api/v1/users/{viewer_id}"),
        &json!({"email": email, "name": "이회계", "role": "accountant", "is_active": false}),
    )
    .await;
    assert_eq!(post(&a.token, &format!("/api/v1/users/{viewer_id}/token"), &json!({})).await.0, 409);
    // An admin cannot demote themselves and leave the company without one.
    let (status, _) = put(
        &a.token,
        &format!("/api/v1/users/{}", a.admin),
        &json!({"email": format!("{}@x.test", a.admin), "name": "a", "role": "viewer"}),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn the_company_settings_reach_clickhouse() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let (status, c) = get(Svc::Ingest, &a.token, "/api/v1/company").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["data"]["fiscal_start_month"], 1);
    assert_eq!(patch(&a.token, "/api/v1/company", &json!({"fiscal_start_month": 13})).await.0, 422);
    assert_eq!(patch(&a.token, "/api/v1/company", &json!({"business_number": "116-82-00278"})).await.0, 422);
    let accountant = token_with_role(&pool, a.id, Role::Accountant).await;
    assert_eq!(patch(&accountant, "/api/v1/company", &json!({"fiscal_start_month": 4})).await.0, 403);
    let (status, c) = patch(&a.token, "/api/v1/company", &json!({"fiscal_start_month": 4, "business_number": "116-82-00276"})).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!((c["data"]["fiscal_start_month"].as_i64(), c["data"]["business_number"].as_str()), (Some(4), Some("116-82-00276")));

    let ch = common::clickhouse().client();
    eventually(Duration::from_secs(60), "the company's settings folded", || {
        let ch = ch.clone();
        async move {
            let month: u8 = ch
                .query("SELECT fiscal_start_month FROM company_settings FINAL WHERE company_id = toUUID(?)")
                .bind(a.id.to_string())
                .fetch_one()
                .await
                .ok()?;
            (month == 4).then_some(())
        }
    })
    .await;
}
