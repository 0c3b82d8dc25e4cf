//! ingest-api against real Postgres and Kafka: a post lands in Postgres and on the topic; bad input is refused with a
//! problem+json 4xx and leaves Postgres and the topic untouched; companies cannot see or use each other's data.

mod common;

use common::{account_id, company, company_events, get, outbox_drained, pg, post_voucher, simple_voucher, stack, Svc, SECRET};
use kerp_core::auth::{Claims, Role};
use serde_json::{json, Value};
use uuid::Uuid;

/// Rows a company owns in every table a posting writes.
async fn footprint(pool: &sqlx::PgPool, company: Uuid) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM vouchers WHERE company_id = $1),
                (SELECT count(*) FROM voucher_lines WHERE company_id = $1),
                (SELECT count(*) FROM outbox WHERE company_id = $1),
                (SELECT count(*) FROM voucher_counters WHERE company_id = $1),
                (SELECT event_seq FROM companies WHERE id = $1)",
    )
    .bind(company)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_post_lands_in_postgres_and_on_the_topic() {
    let s = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let (status, body) = post_voucher(&c.token, &simple_voucher("2025-01-15", "5212", "1101", 110_000)).await;
    assert_eq!(status, 201, "{body}");
    let d = &body["data"];
    assert_eq!(d["voucher_number"], "2025-01-000001");
    assert_eq!(d["status"], "approved");
    assert_eq!(d["total_debit"], 110_000);
    assert_eq!(d["total_credit"], 110_000);
    let id = Uuid::parse_str(d["id"].as_str().unwrap()).unwrap();

    let (company_id, total): (Uuid, i64) =
        sqlx::query_as("SELECT company_id, total_debit FROM vouchers WHERE id = $1").bind(id).fetch_one(&pool).await.unwrap();
    assert_eq!((company_id, total), (c.id, 110_000));
    let lines: Vec<(i32, String, i64, i64)> = sqlx::query_as(
        "SELECT l.line_no, a.code, l.debit, l.credit FROM voucher_lines l JOIN accounts a ON a.id = l.account_id WHERE voucher_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(lines, [(1, "5212".into(), 110_000, 0), (2, "1101".into(), 0, 110_000)]);

    // The relay deletes a row only after the broker acknowledged it, so once the outbox is empty the event is there.
    outbox_drained(&pool, c.id).await;
    let events = company_events(&s.topic, c.id).await;
    assert_eq!(events.len(), 1, "the event reached the topic, once");
    let e = &events[0];
    assert_eq!((e.voucher_id, e.company_seq, e.voucher_number.as_str()), (id, 1, "2025-01-000001"));
    assert_eq!(e.lines.len(), 2);
    assert_eq!((e.lines[0].account_code.as_str(), e.lines[0].debit, e.lines[1].credit), ("5212", 110_000, 110_000));

    // And it reads back through the API.
    let (status, v) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["lines"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"]["lines"][0]["account_code"], "5212");
}

#[tokio::test]
async fn lines_may_name_accounts_by_id_and_partners_must_be_the_companys() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let cash = account_id(&c.token, "1101").await;
    let sales = account_id(&c.token, "4101").await;
    let partner = kerp_ingest::company::create_partner(&pool, c.id, &stack().topic, "P007", "Partner 7").await.unwrap();
    let body = json!({"voucher_date": "2025-03-01", "lines": [
        {"account_id": cash, "partner_id": partner, "debit_amount": 5000},
        {"account_id": sales, "account_code": "4101", "credit_amount": 5000}]});
    let (status, b) = post_voucher(&c.token, &body).await;
    assert_eq!(status, 201, "{b}");

    let other = company(&pool).await;
    let foreign_partner = kerp_ingest::company::create_partner(&pool, other.id, &stack().topic, "P001", "Not yours").await.unwrap();
    let body = json!({"voucher_date": "2025-03-01", "lines": [
        {"account_id": cash, "partner_id": foreign_partner, "debit_amount": 5000},
        {"account_code": "4101", "credit_amount": 5000}]});
    let (status, b) = post_voucher(&c.token, &body).await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(b["errors"][0]["field"], "lines[0].partner_id");

    // An inactive account of the company is refused, by code and by id.
    sqlx::query("UPDATE accounts SET is_active = false WHERE company_id = $1 AND code = '1104'").bind(c.id).execute(&pool).await.unwrap();
    let body = json!({"voucher_date": "2025-03-01", "lines": [
        {"account_code": "1104", "debit_amount": 5000},
        {"account_code": "4101", "credit_amount": 5000}]});
    let (status, b) = post_voucher(&c.token, &body).await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(
        (b["errors"][0]["field"].as_str(), b["errors"][0]["message"].as_str()),
        (Some("lines[0].account_code"), Some("account is inactive"))
    );

    // id and code naming two different accounts.
    let body = json!({"voucher_date": "2025-03-01", "lines": [
        {"account_id": cash, "account_code": "1102", "debit_amount": 5000},
        {"account_code": "4101", "credit_amount": 5000}]});
    let (status, b) = post_voucher(&c.token, &body).await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(b["errors"][0]["field"], "lines[0].account_code");
}

async fn raw_post(token: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, String, Value) {
    let s = stack();
    let mut r = common::http().post(format!("{}/api/v1/vouchers", s.ingest_url)).header("content-type", content_type).body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, r.json().await.unwrap_or(Value::Null))
}

/// (case, token, body, expected status, expected offending field)
type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, Option<&'a str>);

#[tokio::test]
async fn bad_input_gets_a_problem_and_writes_nothing() {
    let s = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let other = company(&pool).await;
    let foreign_cash = account_id(&other.token, "1101").await;
    let line = |k: &str, v: Value| {
        let mut l = json!({"account_code": "1101"});
        l[k] = v;
        l
    };
    let with_lines = |lines: Value| json!({"voucher_date": "2025-01-15", "lines": lines});
    let now = chrono::Utc::now().timestamp();
    let expired =
        kerp_core::auth::issue(SECRET.as_bytes(), &Claims { iat: now - 70, exp: now - 10, ..Claims::new(c.admin, c.id, Role::Admin, 60) })
            .unwrap();
    let forged = kerp_core::auth::issue(b"not-the-secret", &Claims::new(c.admin, c.id, Role::Admin, 600)).unwrap();
    let json_of = |v: Value| serde_json::to_vec(&v).unwrap();
    // The company's chart event leaves the outbox first, so that every row counted below would be the bad inputs'.
    outbox_drained(&pool, c.id).await;

    let cases: Vec<Case> = vec![
        (
            "unbalanced",
            Some(&c.token),
            json_of(with_lines(json!([line("debit_amount", json!(100)), line("credit_amount", json!(99))]))),
            422,
            Some("lines"),
        ),
        ("one line", Some(&c.token), json_of(with_lines(json!([line("debit_amount", json!(100))]))), 422, Some("lines")),
        (
            "zero amounts",
            Some(&c.token),
            json_of(with_lines(json!([line("debit_amount", json!(0)), line("credit_amount", json!(0))]))),
            422,
            Some("lines[0].debit_amount"),
        ),
        (
            "negative",
            Some(&c.token),
            json_of(with_lines(json!([line("debit_amount", json!(-100)), line("credit_amount", json!(-100))]))),
            422,
            Some("lines[0].debit_amount"),
        ),
        (
            "both sides",
            Some(&c.token),
            json_of(with_lines(
                json!([{"account_code": "1101", "debit_amount": 100, "credit_amount": 100}, line("credit_amount", json!(100)), line("debit_amount", json!(100))]),
            )),
            422,
            Some("lines[0].debit_amount"),
        ),
        (
            "fractional amount",
            Some(&c.token),
            json_of(with_lines(json!([line("debit_amount", json!(100.5)), line("credit_amount", json!(100.5))]))),
            422,
            Some("lines[0].debit_amount"),
        ),
        (
            "unknown account code",
            Some(&c.token),
            json_of(with_lines(json!([{"account_code": "9999", "debit_amount": 100}, line("credit_amount", json!(100))]))),
            422,
            Some("lines[0].account_code"),
        ),
        (
            "unknown account id",
            Some(&c.token),
            json_of(with_lines(json!([{"account_id": Uuid::new_v4(), "debit_amount": 100}, line("credit_amount", json!(100))]))),
            422,
            Some("lines[0].account_id"),
        ),
        (
            "another company's account",
            Some(&c.token),
            json_of(with_lines(json!([{"account_id": foreign_cash, "debit_amount": 100}, line("credit_amount", json!(100))]))),
            422,
            Some("lines[0].account_id"),
        ),
        (
            "bad date",
            Some(&c.token),
            json_of(json!({"voucher_date": "2025-02-30", "lines": [line("debit_amount", json!(1)), line("credit_amount", json!(1))]})),
            422,
            Some("voucher_date"),
        ),
        (
            "missing date",
            Some(&c.token),
            json_of(json!({"lines": [line("debit_amount", json!(1)), line("credit_amount", json!(1))]})),
            422,
            Some("body"),
        ),
        ("lines not a list", Some(&c.token), json_of(json!({"voucher_date": "2025-01-15", "lines": "two"})), 422, Some("lines")),
        ("malformed JSON", Some(&c.token), b"{\"voucher_date\": \"2025-01-15\", \"lines\": [".to_vec(), 400, None),
        ("not JSON at all", Some(&c.token), b"hello".to_vec(), 400, None),
        (
            "oversized body",
            Some(&c.token),
            json_of(json!({"voucher_date": "2025-01-15", "description": "x".repeat(kerp_core::http::BODY_BYTES_MAX + 1), "lines": []})),
            413,
            None,
        ),
        ("missing token", None, json_of(common::simple_voucher("2025-01-15", "5212", "1101", 1)), 401, None),
        ("expired token", Some(&expired), json_of(common::simple_voucher("2025-01-15", "5212", "1101", 1)), 401, None),
        ("forged token", Some(&forged), json_of(common::simple_voucher("2025-01-15", "5212", "1101", 1)), 401, None),
        ("garbage token", Some("abc.def.ghi"), json_of(common::simple_voucher("2025-01-15", "5212", "1101", 1)), 401, None),
    ];
    for (name, token, body, want, field) in cases {
        let (status, ct, problem) = raw_post(token, "application/json", body).await;
        assert_eq!(status, want, "{name}: {problem}");
        assert_eq!(ct, "application/problem+json", "{name}");
        assert_eq!(problem["status"], want, "{name}: {problem}");
        if let Some(field) = field {
            let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
            assert!(fields.contains(&field), "{name}: expected {field} in {fields:?}");
        }
    }
    let (status, ct, _) = raw_post(Some(&c.token), "text/plain", b"{}".to_vec()).await;
    assert_eq!((status, ct.as_str()), (415, "application/problem+json"));

    // A viewer may read but not post.
    let viewer =
        kerp_ingest::company::create_user(&pool, c.id, &format!("viewer-{}@example.test", Uuid::new_v4()), Role::Viewer).await.unwrap();
    let viewer_token = kerp_ingest::company::token(SECRET, viewer, c.id, Role::Viewer, 600).unwrap();
    let (status, _) = post_voucher(&viewer_token, &simple_voucher("2025-01-15", "5212", "1101", 1)).await;
    assert_eq!(status, 403);

    assert_eq!(footprint(&pool, c.id).await, (0, 0, 0, 0, 0), "nothing was written to Postgres");

    // The topic: after one good post, the only event of this company is that one, with sequence 1.
    let (status, good) = post_voucher(&c.token, &simple_voucher("2025-01-15", "5212", "1101", 7)).await;
    assert_eq!(status, 201);
    assert_eq!(good["data"]["voucher_number"], "2025-01-000001", "no number was used up by the refused posts");
    outbox_drained(&pool, c.id).await;
    let events = company_events(&s.topic, c.id).await;
    assert_eq!(events.len(), 1, "exactly one event for the company");
    assert_eq!(events[0].company_seq, 1);
    assert_eq!(events[0].voucher_id.to_string(), good["data"]["id"].as_str().unwrap());
}

#[tokio::test]
async fn unknown_and_foreign_accounts_look_the_same() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let foreign = account_id(&b.token, "1101").await;
    let body = |id: &str| json!({"voucher_date": "2025-01-15", "lines": [{"account_id": id, "debit_amount": 1}, {"account_code": "1101", "credit_amount": 1}]});
    let (s1, p1) = post_voucher(&a.token, &body(&foreign)).await;
    let (s2, p2) = post_voucher(&a.token, &body(&Uuid::new_v4().to_string())).await;
    assert_eq!((s1, s2), (422, 422));
    assert_eq!(p1, p2, "the response must not reveal that the other company's account exists");
}

#[tokio::test]
async fn tenants_are_isolated() {
    stack();
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let (_, va) = post_voucher(&a.token, &simple_voucher("2025-01-10", "1101", "3101", 1_000_000)).await;
    let (_, vb) = post_voucher(&b.token, &simple_voucher("2025-01-10", "1101", "3101", 2_000_000)).await;
    let vb_id = vb["data"]["id"].as_str().unwrap();

    let (status, list) = get(Svc::Ingest, &a.token, "/api/v1/vouchers").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [va["data"]["id"].as_str().unwrap()]);
    assert_eq!(list["pagination"]["total"], 1);

    let (status, p) = get(Svc::Ingest, &a.token, &format!("/api/v1/vouchers/{vb_id}")).await;
    assert_eq!(status, 404, "{p}");
    let (status, p_random) = get(Svc::Ingest, &a.token, &format!("/api/v1/vouchers/{}", Uuid::new_v4())).await;
    assert_eq!((status, &p), (404, &p_random));

    let (_, aa) = get(Svc::Ingest, &a.token, "/api/v1/accounts").await;
    let (_, ba) = get(Svc::Ingest, &b.token, "/api/v1/accounts").await;
    let ids = |v: &Value| {
        v["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect::<std::collections::HashSet<_>>()
    };
    assert!(ids(&aa).is_disjoint(&ids(&ba)));
    assert_eq!(ids(&aa).len(), kerp_core::chart::DEFAULT_CHART.len());
    let codes: Vec<&str> = aa["data"].as_array().unwrap().iter().map(|a| a["code"].as_str().unwrap()).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted, "accounts are ordered by code");
}

#[tokio::test]
async fn voucher_numbers_are_gapless_per_month_under_concurrency() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    // A company's postings queue on its rows; on a busy machine the last of 24 may wait past the lock timeout and get
    // the documented 503. A client retries those with the same Idempotency-Key, and so does this test: numbers must
    // stay gapless and nothing may be posted twice.
    let posts = (0..24).map(|i| {
        let token = c.token.clone();
        let date = if i % 3 == 0 { "2025-02-10" } else { "2025-03-05" };
        async move {
            let key = Uuid::new_v4().to_string();
            for _ in 0..20 {
                let r = common::http()
                    .post(format!("{}/api/v1/vouchers", stack().ingest_url))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", &key)
                    .json(&simple_voucher(date, "5212", "1101", 1000 + i))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if status != 503 {
                    return (status, body);
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            panic!("still 503 after 20 tries");
        }
    });
    let results = futures::future::join_all(posts).await;
    let mut feb = Vec::new();
    let mut mar = Vec::new();
    for (status, b) in results {
        assert_eq!(status, 201, "{b}");
        let n = b["data"]["voucher_number"].as_str().unwrap().to_owned();
        if n.starts_with("2025-02-") {
            feb.push(n)
        } else {
            mar.push(n)
        }
    }
    feb.sort();
    mar.sort();
    assert_eq!(feb, (1..=8).map(|i| format!("2025-02-{i:06}")).collect::<Vec<_>>());
    assert_eq!(mar, (1..=16).map(|i| format!("2025-03-{i:06}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_voucher_list_filters_and_pages() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    for d in ["2025-01-05", "2025-01-20", "2025-02-03", "2025-02-28", "2025-03-01"] {
        assert_eq!(post_voucher(&c.token, &simple_voucher(d, "5212", "1101", 10)).await.0, 201);
    }
    let (status, b) =
        get(Svc::Ingest, &c.token, "/api/v1/vouchers?from_date=2025-01-15&to_date=2025-02-28&status=approved&page=2&page_size=2").await;
    assert_eq!(status, 200, "{b}");
    // The contract's page, page_size and total, and what the list adds: whether total is exact, and the next cursor.
    assert_eq!(b["pagination"], json!({"page": 2, "page_size": 2, "total": 3, "total_is_estimate": false, "next_cursor": null}));
    assert_eq!(b["data"][0]["voucher_date"], "2025-02-28");
    let (status, b) = get(Svc::Ingest, &c.token, "/api/v1/vouchers?page_size=100000").await;
    assert_eq!(status, 200);
    assert_eq!(b["pagination"]["page_size"], kerp_core::http::PAGE_SIZE_MAX);
    // A filter that cannot be read is malformed (400, naming the parameter); readable dates in the wrong order are
    // refused (422).
    for (bad, expected, field) in [
        ("from_date=2025-13-01", 400, "from_date"),
        ("status=deleted", 400, "status"),
        ("from_date=2025-03-01&to_date=2025-01-01", 422, "from_date"),
    ] {
        let (status, p) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers?{bad}")).await;
        assert_eq!(status, expected, "{bad}: {p}");
        assert_eq!(p["errors"][0]["field"], field, "{bad}: {p}");
    }
    let (status, _) = get(Svc::Ingest, &c.token, "/api/v1/vouchers?page=-1").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn health_needs_no_token_and_reads_need_one() {
    let s = stack();
    let r = common::http().get(format!("{}/health", s.ingest_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = common::http().get(format!("{}/api/v1/accounts", s.ingest_url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Metrics are on the internal listener only (see security.rs).
    let metrics = common::http().get(format!("{}/metrics", s.ingest_metrics_url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_request_duration_seconds"), "{metrics}");
}
