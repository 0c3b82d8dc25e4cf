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
    let (status, problem) = post(&a.token, "/api/v1/partners", &partner("P001", "중복", None)).await;
    assert_eq!((status, &problem["type"]), (409, &json!(kerp_core::http::PROBLEM_TYPE_DUPLICATE)), "{problem}");
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
    // The total rides on a page's rows; a page past the last still has it, and a search that matches nothing is 0.
    let (_, second) = get(Svc::Ingest, &a.token, "/api/v1/partners?page=2&page_size=3").await;
    assert_eq!((second["data"].as_array().unwrap().len(), &second["pagination"]["total"]), (1, &json!(4)), "{second}");
    let (_, past) = get(Svc::Ingest, &a.token, "/api/v1/partners?page=9&page_size=3").await;
    assert_eq!((past["data"].as_array().unwrap().len(), &past["pagination"]["total"]), (0, &json!(4)), "{past}");
    let (_, none) = get(Svc::Ingest, &a.token, "/api/v1/partners?q=zzz").await;
    assert_eq!((none["data"].as_array().unwrap().len(), &none["pagination"]["total"]), (0, &json!(0)), "{none}");
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
    // The search reads the lowercase Postgres keeps with the row, so it follows the update.
    let (_, renamed) = get(Svc::Ingest, &a.token, "/api/v1/partners?q=%EC%A0%84%EC%9E%90(%EC%A3%BC)").await;
    assert_eq!(renamed["data"][0]["id"], json!(id), "{renamed}");
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
    // Switched on again, it takes new lines; and off once more, for the dimension check below.
    let (status, on) = post(&a.token, &format!("/api/v1/partners/{id}/activate"), &json!({})).await;
    assert_eq!((status, &on["data"]["is_active"]), (200, &json!(true)), "{on}");
    assert_eq!(post_voucher(&a.token, &line(&id)).await.0, 201);
    assert_eq!(post(&a.token, &format!("/api/v1/partners/{id}/deactivate"), &json!({})).await.0, 200);

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
    assert_eq!(list["pagination"]["total"], 1, "{list}");
    let (_, past) = get(Svc::Ingest, &viewer, "/api/v1/departments?page=3&page_size=1").await;
    assert_eq!((past["data"].as_array().unwrap().len(), &past["pagination"]["total"]), (0, &json!(1)), "{past}");
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

/// A user's state as the `users` dimension keeps it.
#[derive(Debug, PartialEq, Eq, Row, Deserialize)]
struct UserDim {
    email: String,
    name: String,
    role: String,
    is_active: u8,
    version: u64,
}

/// Creating a user, replacing them and switching them off each put exactly one `UsersChanged` on the topic, carrying
/// the user's new state and nothing secret; writes that are refused, and a replayed create, put none; and the newest
/// state reaches ClickHouse's `users` dimension once folded.
#[tokio::test]
async fn every_user_change_is_one_event_without_secrets_that_reaches_clickhouse() {
    let s = stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let email = format!("kim-{}@example.test", Uuid::new_v4().simple());
    let users = format!("{}/api/v1/users", s.ingest_url);

    // Created with an Idempotency-Key, and the same request again: the replay answers like the first and queues nothing.
    let key = Uuid::new_v4().to_string();
    let body = json!({"email": email.to_uppercase(), "name": "김뷰어", "role": "viewer"});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = common::http().post(&users).bearer_auth(&a.token).header("Idempotency-Key", &key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        ids.push(created["data"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1], "the replay is the same user");
    let id = Uuid::parse_str(&ids[0]).unwrap();
    let path = format!("/api/v1/users/{id}");

    // The user gets a token, which no event may carry.
    let (status, issued) = post(&a.token, &format!("{path}/token"), &json!({})).await;
    assert_eq!(status, 200, "{issued}");
    let user_token = issued["data"]["token"].as_str().unwrap().to_owned();

    // Promoted and renamed, then switched off: two more changes.
    let (status, promoted) = put(&a.token, &path, &json!({"email": email, "name": "김회계", "role": "accountant"})).await;
    assert_eq!(status, 200, "{promoted}");
    let (status, off) = put(&a.token, &path, &json!({"email": email, "name": "김회계", "role": "accountant", "is_active": false})).await;
    assert_eq!(status, 200, "{off}");

    // Another user, whose address the first may not take: the UPDATE fails inside the transaction that would have
    // queued the event, so the event goes with it.
    let other_email = format!("lee-{}@example.test", Uuid::new_v4().simple());
    let (status, other) = post(&a.token, "/api/v1/users", &json!({"email": other_email, "name": "이관리", "role": "admin"})).await;
    assert_eq!(status, 201, "{other}");
    let other_id = Uuid::parse_str(other["data"]["id"].as_str().unwrap()).unwrap();
    assert_eq!(put(&a.token, &path, &json!({"email": other_email, "name": "김회계", "role": "accountant"})).await.0, 409);

    // Other refused writes queue nothing either: a duplicate address, an unknown role, a viewer, another company's
    // admin, an unknown user, and an admin demoting themselves.
    assert_eq!(post(&a.token, "/api/v1/users", &json!({"email": email, "name": "중복", "role": "viewer"})).await.0, 409);
    assert_eq!(post(&a.token, "/api/v1/users", &json!({"email": "x@example.test", "name": "x", "role": "owner"})).await.0, 422);
    let viewer = token_with_role(&pool, a.id, Role::Viewer).await;
    assert_eq!(put(&viewer, &path, &json!({"email": email, "name": "x", "role": "admin"})).await.0, 403);
    assert_eq!(put(&b.token, &path, &json!({"email": email, "name": "x", "role": "admin"})).await.0, 404);
    let unknown = format!("/api/v1/users/{}", Uuid::new_v4());
    assert_eq!(put(&a.token, &unknown, &json!({"email": "y@example.test", "name": "y", "role": "viewer"})).await.0, 404);
    let demote = json!({"email": format!("{}@x.test", a.admin), "name": "a", "role": "viewer"});
    assert_eq!(put(&a.token, &format!("/api/v1/users/{}", a.admin), &demote).await.0, 409);

    common::outbox_drained(&pool, a.id).await;
    let events: Vec<(kerp_schemas::UsersChanged, Vec<u8>)> = common::company_messages(&s.topic, a.id)
        .await
        .into_iter()
        .filter_map(|(e, payload)| match e {
            kerp_schemas::Event::UsersChanged(e) => Some((e, payload)),
            _ => None,
        })
        .collect();
    assert!(events.iter().all(|(e, _)| e.users.len() == 1), "one user a change: {events:?}");
    let states = |user: Uuid| -> Vec<(String, String, String, bool)> {
        events
            .iter()
            .flat_map(|(e, _)| &e.users)
            .filter(|u| u.user_id == user)
            .map(|u| (u.email.clone(), u.name.clone(), u.role.clone(), u.is_active))
            .collect()
    };
    let state = |name: &str, role: &str, is_active| (email.clone(), name.to_owned(), role.to_owned(), is_active);
    assert_eq!(
        states(id),
        [state("김뷰어", "viewer", true), state("김회계", "accountant", true), state("김회계", "accountant", false)],
        "exactly one event for each change, in order, with the address as stored (lower-cased)"
    );
    assert_eq!(states(other_id), [(other_email.clone(), "이관리".to_owned(), "admin".to_owned(), true)]);
    // The company's first admin, made with the company, is an event of its own, before any change through the API.
    let first = &events.first().expect("events").0.users[0];
    assert_eq!((first.name.as_str(), first.role.as_str(), first.is_active), ("Administrator", "admin", true), "{events:?}");
    assert_eq!(events.len(), 5, "the first admin's and one for each change, nothing else: {events:?}");
    let changed_at: Vec<i64> = events.iter().map(|(e, _)| e.changed_at).collect();
    assert!(changed_at.windows(2).all(|w| w[0] < w[1]), "each change is newer than the one before: {changed_at:?}");
    let carries = |payload: &[u8], secret: &str| payload.windows(secret.len()).any(|w| w == secret.as_bytes());
    for (_, payload) in &events {
        for secret in [user_token.as_str(), a.token.as_str(), common::SECRET] {
            assert!(!carries(payload, secret), "a users event carries a token or the signing secret");
        }
    }
    let b_users: Vec<(String, String)> = common::company_messages(&s.topic, b.id)
        .await
        .into_iter()
        .filter_map(|(e, _)| match e {
            kerp_schemas::Event::UsersChanged(e) => Some(e.users.into_iter().map(|u| (u.name, u.role))),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        b_users,
        [("Administrator".to_owned(), "admin".to_owned())],
        "another company's admin changed nothing but its own first admin"
    );

    // Folded, the dimension holds each user once, at their newest state, versioned by the event's `changed_at`.
    let version_of =
        |user: Uuid| u64::try_from(events.iter().rev().find(|(e, _)| e.users[0].user_id == user).unwrap().0.changed_at).unwrap();
    let expected = [
        UserDim { email: email.clone(), name: "김회계".into(), role: "accountant".into(), is_active: 0, version: version_of(id) },
        UserDim { email: other_email.clone(), name: "이관리".into(), role: "admin".into(), is_active: 1, version: version_of(other_id) },
    ];
    let ch = common::clickhouse().client();
    let dim: Vec<UserDim> = eventually(Duration::from_secs(60), "both users' last events folded", || {
        let (ch, expected) = (ch.clone(), &expected);
        async move {
            let rows: Vec<UserDim> = ch
                .query(
                    "SELECT email, name, role, is_active, version FROM users FINAL
                     WHERE company_id = toUUID(?) AND user_id IN (toUUID(?), toUUID(?)) ORDER BY email",
                )
                .bind(a.id.to_string())
                .bind(id.to_string())
                .bind(other_id.to_string())
                .fetch_all()
                .await
                .ok()?;
            // Ordered by address: kim-… before lee-…. Wait until the newest versions are there, then compare all.
            (rows.len() == 2 && rows.iter().zip(expected.iter()).all(|(r, e)| r.version == e.version)).then_some(rows)
        }
    })
    .await;
    assert_eq!(dim, expected);
}

#[tokio::test]
async fn partner_search_at_ten_thousand_partners_finds_korean_names_in_one_company() {
    // One more than ingest-api holds in memory for a company, so this company's list is answered by SQL (the
    // other tests here are answered from memory).
    const PARTNERS: i64 = kerp_ingest::partner_cache::PARTNER_CACHE_COMPANY_ROWS_MAX as i64 + 1;
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    // 10,001 partners straight into Postgres (the search is what is measured, not their creation); every 100th
    // is a 한빛 company.
    sqlx::query(
        "INSERT INTO partners (id, company_id, code, name, partner_type)
         SELECT gen_random_uuid(), $1, 'P' || lpad(i::text, 6, '0'),
                CASE WHEN i % 100 = 0 THEN '(주)한빛전자 ' || i ELSE '(주)대한상사 ' || i END, 'both'
         FROM generate_series(1, $2) AS i",
    )
    .bind(a.id)
    .bind(PARTNERS)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE partners").execute(&pool).await.unwrap();

    // Through the API, as a clerk types: two Korean characters (too short for a trigram), then three.
    for q in ["%ED%95%9C%EB%B9%9B", "%ED%95%9C%EB%B9%9B%EC%A0%84"] {
        let (status, page) = get(Svc::Ingest, &a.token, &format!("/api/v1/partners?q={q}&page=1&page_size=50")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["pagination"]["total"], PARTNERS / 100, "{q}");
        assert!(page["data"].as_array().unwrap().iter().all(|p| p["name"].as_str().unwrap().contains("한빛")));
    }
    // What Postgres spends on the list's own filter, printed for the record (`-- --nocapture`): speed is the
    // benchmarks' business, not an assertion's. The plan depends on the table: in this small test database most
    // partners are this company's, so a sequential scan may well be the cheapest.
    for pattern in ["%한빛%", "%한빛전%"] {
        let sql =
            format!("EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM partners {}", kerp_ingest::store::master::PARTNER_LIST_WHERE);
        let plan: Value =
            sqlx::query_scalar(&sql).bind(a.id).bind(pattern).bind(None::<String>).bind(None::<bool>).fetch_one(&pool).await.unwrap();
        assert_eq!(plan[0]["Plan"]["Actual Rows"], 1, "{plan:#}");
        eprintln!("partner search {pattern} at {PARTNERS} partners: {} ms in Postgres", plan[0]["Execution Time"]);
    }
}

/// The partners' page and total as the original SQL gives them (`ILIKE` on name and code, ordered by code): what the
/// API must answer whether it reads Postgres or its memory.
async fn pg_partner_codes(pool: &sqlx::PgPool, company: Uuid, q: &str, active: Option<bool>) -> Vec<String> {
    let pattern = (!q.trim().is_empty()).then(|| kerp_core::master::like_pattern(q).unwrap());
    sqlx::query_scalar(
        "SELECT code FROM partners WHERE company_id = $1 AND ($2::text IS NULL OR name ILIKE $2 OR code ILIKE $2)
           AND ($3::bool IS NULL OR is_active = $3) ORDER BY code",
    )
    .bind(company)
    .bind(pattern)
    .bind(active)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The API's partner codes for `q` (percent-encoded here), all of them on one page, and its total.
async fn api_partner_codes(token: &str, q: &str, active: Option<bool>) -> (Vec<String>, u64) {
    let q: String = q.bytes().map(|b| format!("%{b:02X}")).collect();
    let active = active.map(|a| format!("&is_active={a}")).unwrap_or_default();
    let (status, page) = get(Svc::Ingest, token, &format!("/api/v1/partners?q={q}{active}&page=1&page_size=500")).await;
    assert_eq!(status, 200, "{page}");
    let codes = page["data"].as_array().unwrap().iter().map(|p| p["code"].as_str().unwrap().to_owned()).collect();
    (codes, page["pagination"]["total"].as_u64().unwrap())
}

/// ingest-api answers the partner list and search from the company's partners held in memory
/// (`kerp_ingest::partner_cache`) while Postgres's version of them is the one held. A change by any writer, here
/// plain SQL as another ingest-api instance or someone at psql would make it, shows on the very next request, and
/// every answer is the one the SQL gives.
#[tokio::test]
async fn the_partner_list_is_exact_on_the_next_request_after_a_change_by_any_writer() {
    let stack = stack();
    let pool = pg().await;
    let a = company(&pool).await;
    for (code, name) in
        [("P001", "삼성전자"), ("P002", "Hanbit TRADING"), ("P003", "한빛상사"), ("P004", "50%_off Mart"), ("X100", "삼성물산")]
    {
        assert_eq!(post(&a.token, "/api/v1/partners", &partner(code, name, None)).await.0, 201);
    }
    let same_as_sql = |q: &'static str, active: Option<bool>| {
        let (pool, token) = (pool.clone(), a.token.clone());
        async move {
            let expected = pg_partner_codes(&pool, a.id, q, active).await;
            let (codes, total) = api_partner_codes(&token, q, active).await;
            assert_eq!(codes, expected, "q={q:?} is_active={active:?}");
            assert_eq!(total, expected.len() as u64, "q={q:?} is_active={active:?}");
            codes
        }
    };
    let terms = ["", "삼성", "hanbit", "TRAD", "x1", "%_", "t_", "zzz"];
    let hit = r#"kerp_partner_cache_requests_total{result="hit"}"#;
    let hits_before = common::gauge(&stack.ingest_metrics_url, hit).await.unwrap_or(0.0);
    // Twice each: the first may load the company, the second is answered from memory.
    for _ in 0..2 {
        for q in terms {
            same_as_sql(q, None).await;
        }
    }
    let hits = common::gauge(&stack.ingest_metrics_url, hit).await.unwrap_or(0.0) - hits_before;
    assert!(hits >= terms.len() as f64, "the repeated requests were answered from memory: {hits} hits");

    // Another writer renames a partner: the next search finds the new name and not the old one.
    let sql = |q: &'static str| sqlx::query(q).bind(a.id);
    sql("UPDATE partners SET name = 'Zeta Foods' WHERE company_id = $1 AND code = 'P003'").execute(&pool).await.unwrap();
    assert_eq!(same_as_sql("zeta", None).await, ["P003"]);
    assert_eq!(same_as_sql("한빛", None).await, Vec::<String>::new());
    // Adds one.
    sql("INSERT INTO partners (id, company_id, code, name, partner_type) VALUES (gen_random_uuid(), $1, 'P005', 'ZETA Two', 'supplier')")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(same_as_sql("zeta", None).await, ["P003", "P005"]);
    assert_eq!(same_as_sql("", None).await.len(), 6);
    // Switches one off.
    sql("UPDATE partners SET is_active = false WHERE company_id = $1 AND code = 'P005'").execute(&pool).await.unwrap();
    assert_eq!(same_as_sql("zeta", Some(true)).await, ["P003"]);
    assert_eq!(same_as_sql("zeta", Some(false)).await, ["P005"]);
    // Deletes one (it is on no line).
    sql("DELETE FROM partners WHERE company_id = $1 AND code = 'P005'").execute(&pool).await.unwrap();
    assert_eq!(same_as_sql("zeta", None).await, ["P003"]);
    // And through the API, on this instance.
    assert_eq!(post(&a.token, "/api/v1/partners", &partner("P006", "Zeta Three", None)).await.0, 201);
    assert_eq!(same_as_sql("zeta", None).await, ["P003", "P006"]);
}
