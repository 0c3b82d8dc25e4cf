//! The security review's points, against the real services: tokens with the wrong issuer, audience or an over-long
//! lifetime are refused by both APIs; metrics are served only on the internal listeners; query-api's ClickHouse user
//! can neither write nor read without limits; Postgres itself refuses a cross-tenant voucher line; and a posting that
//! waits on a locked company gets a quick 503 while other companies go on posting.

mod common;

use std::time::{Duration, Instant};

use common::{company, get, pg, post_voucher, simple_voucher, stack, Svc, SECRET};
use kerp_core::auth::{Claims, Role, TOKEN_TTL_SECONDS_MAX};
use uuid::Uuid;

/// Signs claims as they are, without `kerp_core::auth::issue`'s lifetime check, as a forger with the secret could.
fn sign_raw(claims: &serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), claims, &key).expect("sign")
}

#[tokio::test]
async fn tokens_with_a_wrong_issuer_audience_or_lifetime_get_401() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let good = Claims::new(c.admin, c.id, Role::Admin, 600);
    let issue = |claims: &Claims| kerp_core::auth::issue(SECRET.as_bytes(), claims).expect("issue");

    let mut over_long = serde_json::to_value(&good).expect("claims");
    over_long["exp"] = (good.iat + TOKEN_TTL_SECONDS_MAX + 1).into();
    let mut without_iat = serde_json::to_value(&good).expect("claims");
    without_iat.as_object_mut().expect("object").remove("iat");
    let cases = [
        ("wrong issuer", issue(&Claims { iss: "not-kerp".into(), ..good.clone() })),
        ("wrong audience", issue(&Claims { aud: "another-api".into(), ..good.clone() })),
        ("lifetime over TOKEN_TTL_SECONDS_MAX", sign_raw(&over_long)),
        ("no iat", sign_raw(&without_iat)),
    ];
    let year = chrono::Utc::now().format("%Y");
    let report = format!("/api/v1/reports/trial-balance?year={year}&month=1");
    for (svc, path) in [(Svc::Ingest, "/api/v1/accounts"), (Svc::Query, report.as_str())] {
        for (what, token) in &cases {
            let (status, body) = get(svc, token, path).await;
            assert_eq!(status, 401, "{svc:?} {path}: a token with {what} got {status}: {body}");
        }
        let (status, body) = get(svc, &issue(&good), path).await;
        assert_eq!(status, 200, "{svc:?} {path}: a good token got {status}: {body}");
    }
}

#[tokio::test]
async fn metrics_are_served_on_the_internal_listener_only() {
    let s = stack();
    let http = common::http();
    for (public, internal) in [(&s.ingest_url, &s.ingest_metrics_url), (&s.query_url, &s.query_metrics_url)] {
        // A request on the public listener, so that its counters have something to show.
        let health = http.get(format!("{public}/health")).send().await.expect("health");
        assert_eq!(health.status(), 200, "{public}/health");
        let r = http.get(format!("{public}/metrics")).send().await.expect("public metrics");
        assert_eq!(r.status(), 404, "{public}/metrics is public");
        let r = http.get(format!("{internal}/metrics")).send().await.expect("internal metrics");
        assert_eq!(r.status(), 200, "{internal}/metrics");
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{internal}/metrics is {content_type}");
        let body = r.text().await.expect("body");
        assert!(body.contains("# TYPE http_requests_total counter"), "{internal}/metrics:\n{body}");
        assert!(body.contains(r#"handler="/health""#), "{internal}/metrics has no /health requests:\n{body}");
    }
}

#[tokio::test]
async fn query_apis_clickhouse_user_cannot_write_and_has_a_row_limit() {
    // The stack has created the tables, so a refused INSERT below is refused for being a write, not for a missing table.
    stack();
    // The credentials the stack's query-api uses.
    let ch = common::clickhouse_reader().client();
    ch.query("SELECT count() FROM accounts").fetch_one::<u64>().await.expect("the reader reads");
    let setting = |name: &'static str| {
        let ch = ch.clone();
        async move { ch.query("SELECT value FROM system.settings WHERE name = ?").bind(name).fetch_one::<String>().await.expect("setting") }
    };
    assert_eq!(setting("readonly").await, "1");
    let seconds: u64 = setting("max_execution_time").await.parse().expect("number");
    assert!(seconds > 0, "no max_execution_time");
    let rows: u64 = setting("max_rows_to_read").await.parse().expect("number");
    assert!(rows > 0, "no max_rows_to_read");

    let refused = |what: &str, r: Result<(), clickhouse::error::Error>| {
        let e = r.expect_err(what).to_string();
        assert!(e.to_lowercase().contains("readonly"), "{what} failed, but not for being read-only: {e}");
    };
    let table = format!("reader_probe_{}", uuid::Uuid::new_v4().simple());
    refused("CREATE TABLE", ch.query(&format!("CREATE TABLE {table} (x UInt8) ENGINE = Memory")).execute().await);
    refused("INSERT", ch.query("INSERT INTO accounts SELECT * FROM accounts LIMIT 0").execute().await);
    refused("lifting the row limit", ch.clone().with_option("max_rows_to_read", "0").query("SELECT 1").execute().await);

    // system.numbers yields as many rows as asked for, so this reads one row over the limit.
    let e = ch
        .query(&format!("SELECT count() FROM (SELECT number FROM system.numbers LIMIT {})", rows + 1))
        .fetch_one::<u64>()
        .await
        .expect_err("a read over max_rows_to_read")
        .to_string();
    // 158 is TOO_MANY_ROWS, in 18.16 and in current releases.
    assert!(e.contains("Code: 158"), "the read over the limit failed otherwise: {e}");
}

/// Inserts one line straight into Postgres, bypassing ingest-api, in a transaction that is rolled back, and returns the
/// constraint that refused it, if any.
async fn insert_line(pool: &sqlx::PgPool, voucher: Uuid, company: Uuid, account: Uuid, partner: Option<Uuid>) -> Option<String> {
    let mut tx = pool.begin().await.expect("begin");
    let r = sqlx::query(
        "INSERT INTO voucher_lines (voucher_id, line_no, company_id, account_id, partner_id, debit) VALUES ($1, 99, $2, $3, $4, 1)",
    )
    .bind(voucher)
    .bind(company)
    .bind(account)
    .bind(partner)
    .execute(&mut *tx)
    .await;
    tx.rollback().await.expect("rollback");
    match r {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some(e.constraint().unwrap_or("no constraint").to_owned()),
        Err(e) => panic!("insert failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn postgres_refuses_a_voucher_line_with_another_companys_account_or_partner() {
    stack();
    let pool = pg().await;
    let (a, b) = (company(&pool).await, company(&pool).await);
    let (status, posted) = post_voucher(&a.token, &simple_voucher("2025-04-01", "1101", "4101", 1000)).await;
    assert_eq!(status, 201, "{posted}");
    let voucher = Uuid::parse_str(posted["data"]["id"].as_str().expect("id")).expect("uuid");
    let cash = |company: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>("SELECT id FROM accounts WHERE company_id = $1 AND code = '1101'")
                .bind(company)
                .fetch_one(&pool)
                .await
                .expect("account")
        }
    };
    let (a_cash, b_cash) = (cash(a.id).await, cash(b.id).await);
    let a_partner = kerp_ingest::company::create_partner(&pool, a.id, &stack().topic, "P-A", "Partner of A").await.expect("partner");
    let b_partner = kerp_ingest::company::create_partner(&pool, b.id, &stack().topic, "P-B", "Partner of B").await.expect("partner");

    assert_eq!(insert_line(&pool, voucher, a.id, a_cash, Some(a_partner)).await, None, "a line within the company is refused");
    assert_eq!(insert_line(&pool, voucher, a.id, b_cash, None).await.as_deref(), Some("voucher_lines_company_account_fkey"));
    assert_eq!(insert_line(&pool, voucher, a.id, a_cash, Some(b_partner)).await.as_deref(), Some("voucher_lines_company_partner_fkey"));
    assert_eq!(insert_line(&pool, voucher, a.id, Uuid::new_v4(), None).await.as_deref(), Some("voucher_lines_company_account_fkey"));
}

#[tokio::test]
async fn a_posting_behind_a_locked_company_gets_a_quick_503_while_others_post() {
    let s = stack();
    let pool = pg().await;
    let (locked, other) = (company(&pool).await, company(&pool).await);
    let body = simple_voucher("2025-05-02", "5212", "1101", 5000);

    // Another session holds the company row, as a long posting of the same company would.
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM companies WHERE id = $1 FOR UPDATE").bind(locked.id).execute(&mut *holder).await.expect("lock");
    let blocked = async {
        let started = Instant::now();
        let r = common::http()
            .post(format!("{}/api/v1/vouchers", s.ingest_url))
            .bearer_auth(&locked.token)
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("post");
        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let status = r.status().as_u16();
        (status, retry_after, content_type, r.text().await.unwrap_or_default(), started.elapsed())
    };
    let unaffected = async {
        let started = Instant::now();
        let (status, body) = post_voucher(&other.token, &body).await;
        (status, body, started.elapsed())
    };
    let ((status, retry_after, content_type, problem, waited), (other_status, other_body, other_took)) = tokio::join!(blocked, unaffected);
    holder.rollback().await.expect("unlock");

    assert_eq!(status, 503, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert!(retry_after.as_deref().is_some_and(|s| s.parse::<u32>().is_ok()), "no Retry-After: {retry_after:?}");
    let lock_wait = Duration::from_millis(kerp_ingest::DB_LOCK_WAIT_MS_MAX);
    // It waited for the lock, then gave up soon after lock_timeout instead of hanging.
    assert!(waited >= lock_wait.saturating_sub(Duration::from_millis(100)), "refused after {waited:?}, before lock_timeout");
    assert!(waited < lock_wait + Duration::from_secs(5), "the 503 took {waited:?}");
    assert_eq!(other_status, 201, "the other company could not post while the first was locked: {other_body}");
    assert!(other_took < lock_wait, "the other company waited {other_took:?}");

    // Once the lock is gone the same posting goes through, and the refused one took no voucher number.
    let (status, posted) = post_voucher(&locked.token, &body).await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(posted["data"]["voucher_number"], "2025-05-000001");
}
