//! The security review's points, against the real services: tokens with the wrong issuer, audience or an over-long
//! lifetime are refused by both APIs; no service starts with an empty, short or sample JWT secret; metrics are served
//! only on the internal listeners; query-api's ClickHouse user can neither write nor read without limits; Postgres
//! itself refuses a cross-tenant voucher line; every Postgres connection of ingest-api and grpc-api has a statement
//! and a lock timeout; a posting that waits on a locked company gets a quick 503 while other companies go on posting;
//! a posting has written its lines before it waits for its company's row; and the stack's ClickHouse server runs with
//! the merge settings of `compose/clickhouse-config.xml`, which bound its memory and say how long it keeps the parts a
//! merge replaced.

mod common;
mod grpc_common;

use std::time::{Duration, Instant};

use common::{company, get, pg, post_voucher, simple_voucher, stack, Svc, SECRET};
use kerp_core::auth::{AuthError, Claims, Role, JWT_SECRET_BYTES_MIN, JWT_SECRET_SAMPLE, TOKEN_TTL_SECONDS_MAX};
use tokio_util::sync::CancellationToken;
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

/// The `<merge_tree>` settings of `compose/clickhouse-config.xml`, as (name, value) pairs, comments left out.
fn merge_tree_settings_of_compose() -> Vec<(String, String)> {
    let path = common::repo_root().join("compose/clickhouse-config.xml");
    let mut xml = std::fs::read_to_string(&path).expect("compose/clickhouse-config.xml");
    while let Some(start) = xml.find("<!--") {
        let end = xml[start..].find("-->").expect("a closed comment") + start + 3;
        xml.replace_range(start..end, "");
    }
    let section = xml.split("<merge_tree>").nth(1).and_then(|s| s.split("</merge_tree>").next()).expect("a <merge_tree> section");
    let mut settings = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find('<') {
        let name_end = rest[open..].find('>').expect("a closed tag") + open;
        let name = &rest[open + 1..name_end];
        let close = format!("</{name}>");
        let value_end = rest[name_end..].find(&close).unwrap_or_else(|| panic!("no {close}")) + name_end;
        settings.push((name.to_owned(), rest[name_end + 1..value_end].trim().to_owned()));
        rest = &rest[value_end + close.len()..];
    }
    settings
}

#[tokio::test]
async fn the_stacks_clickhouse_runs_with_the_merge_settings_of_compose() {
    stack();
    let settings = merge_tree_settings_of_compose();
    // The two the server's memory was measured with (28 Nov); a file that lost one fails here, not in a perf run.
    for name in ["vertical_merge_algorithm_min_columns_to_activate", "old_parts_lifetime"] {
        assert!(settings.iter().any(|(n, _)| n == name), "compose/clickhouse-config.xml has no {name}: {settings:?}");
    }
    let ch = common::clickhouse().client();
    for (name, value) in &settings {
        let (server, changed): (String, u8) = ch
            .query("SELECT value, changed FROM system.merge_tree_settings WHERE name = ?")
            .bind(name.as_str())
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("the server has no merge_tree setting {name}: {e}"));
        assert_eq!((server.as_str(), changed), (value.as_str(), 1), "{name} on the stack's ClickHouse");
    }
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

/// How long a service that refuses its configuration may take to say so, in milliseconds. Refusing is immediate; a
/// service still running after this is serving.
const REFUSAL_WAIT_MS_MAX: u64 = 5_000;

/// Runs a service's entry point and returns its error, or panics if it is still running (serving) after
/// [`REFUSAL_WAIT_MS_MAX`].
async fn refused<E: std::fmt::Debug>(what: &str, run: impl std::future::Future<Output = Result<(), E>>) -> E {
    match tokio::time::timeout(Duration::from_millis(REFUSAL_WAIT_MS_MAX), run).await {
        Ok(r) => r.expect_err(&format!("{what} returned Ok instead of refusing to start")),
        Err(_) => panic!("{what} started serving"),
    }
}

#[tokio::test]
async fn no_service_starts_with_an_empty_short_or_sample_jwt_secret() {
    // grpc-api's test settings name the stack's topic.
    let topic = &stack().topic;
    let short = "x".repeat(JWT_SECRET_BYTES_MIN - 1);
    for (what, secret) in [("an empty secret", ""), ("a secret one byte short", short.as_str()), ("the public sample", JWT_SECRET_SAMPLE)] {
        let is_refusal = |e: &AuthError| match e {
            AuthError::SecretTooShort(n) => *n == secret.len() && secret != JWT_SECRET_SAMPLE,
            AuthError::SampleSecret => secret == JWT_SECRET_SAMPLE,
            _ => false,
        };
        // Each entry point as the binaries call it, on port 0 with no metrics listener, outside a dev stack. ingest-api's
        // relay is off so that, should the check ever be skipped, nothing publishes to the stack's topic.
        let ingest =
            kerp_ingest::Config { jwt_secret: secret.into(), dev_stack: false, relay_enabled: false, ..common::ingest_config(topic) };
        let e = refused("ingest-api", kerp_ingest::run(ingest, CancellationToken::new())).await;
        assert!(matches!(&e, kerp_ingest::Error::Auth(a) if is_refusal(a)), "ingest-api with {what}: {e:?}");

        let query = kerp_query::Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            metrics_listen: String::new(),
            jwt_secret: secret.into(),
            dev_stack: false,
            answers_poll_interval_ms: common::ANSWERS_POLL_INTERVAL_MS,
            clickhouse: common::clickhouse_reader(),
        };
        let e = refused("query-api", kerp_query::run(query, CancellationToken::new())).await;
        assert!(matches!(&e, kerp_query::Error::Auth(a) if is_refusal(a)), "query-api with {what}: {e:?}");

        let grpc = kerp_grpc::Config { jwt_secret: secret.into(), dev_stack: false, ..grpc_common::config() };
        let e = refused("grpc-api", kerp_grpc::run(grpc, CancellationToken::new())).await;
        assert!(matches!(&e, kerp_grpc::Error::Auth(a) if is_refusal(a)), "grpc-api with {what}: {e:?}");
    }
}

/// The value of a Postgres setting on one connection of `pool`, in the setting's own unit (milliseconds for both
/// timeouts).
async fn setting(pool: &sqlx::PgPool, name: &str) -> String {
    sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = $1").bind(name).fetch_one(pool).await.expect("setting")
}

#[tokio::test]
async fn ingest_and_grpc_connections_have_a_statement_and_a_lock_timeout() {
    let topic = &stack().topic;
    // The pools exactly as the services build them (ingest-api's also migrates, which the stack has done already).
    let ingest = kerp_ingest::connect(&common::ingest_config(topic)).await.expect("ingest-api pool");
    let grpc = kerp_grpc::connect(&grpc_common::config()).expect("grpc-api pool");
    let want = [("statement_timeout", kerp_ingest::DB_STATEMENT_MS_MAX), ("lock_timeout", kerp_ingest::DB_LOCK_WAIT_MS_MAX)];
    // A connection without the builder's options has the server's defaults: if they were already these values, the
    // assertions below would pass without the services setting anything.
    let plain = pg().await;
    for (name, ms) in want {
        assert_ne!(setting(&plain, name).await, ms.to_string(), "the server's own {name} hides the services'");
        // Several connections each, since every new connection must carry the options, not just the first.
        for (service, pool) in [("ingest-api", &ingest), ("grpc-api", &grpc)] {
            let conns: Vec<_> = futures::future::join_all((0..3).map(|_| pool.acquire())).await;
            for mut conn in conns.into_iter().map(|c| c.expect("connection")) {
                let v: String = sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *conn)
                    .await
                    .expect(name);
                assert_eq!(v, ms.to_string(), "{service}: {name} of a pooled connection, in ms");
            }
        }
    }
}

/// A waiter for the rival transaction, as pg_stat_activity and pg_locks show it.
#[derive(Debug, sqlx::FromRow)]
struct Waiter {
    pid: i32,
    query: String,
    /// Whether the backend holds a granted RowExclusiveLock on `voucher_lines`: it has inserted into it in this
    /// transaction.
    lines_written: bool,
}

#[tokio::test]
async fn a_posting_has_written_its_lines_when_it_waits_for_its_company_row() {
    let s = stack();
    let pool = pg().await;
    let c = company(&pool).await;

    // A rival transaction holds the company row, the row whose lock orders the company's postings (`company_seq`),
    // with the lock another posting's `UPDATE companies SET event_seq = …` takes: FOR NO KEY UPDATE. (FOR UPDATE would
    // also block the foreign-key checks of the posting's earlier inserts into tables that reference the company, such
    // as a new month's voucher counter, and the posting would then wait there instead.)
    let mut rival = pool.begin().await.expect("begin");
    let rival_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *rival).await.expect("pid");
    sqlx::query("SELECT 1 FROM companies WHERE id = $1 FOR NO KEY UPDATE").bind(c.id).execute(&mut *rival).await.expect("lock");

    let body = simple_voucher("2025-06-03", "5212", "1101", 7000);
    let post = tokio::spawn({
        let (url, token) = (format!("{}/api/v1/vouchers", s.ingest_url), c.token.clone());
        async move {
            let r = common::http().post(url).bearer_auth(token).json(&body).timeout(Duration::from_secs(60)).send().await.expect("post");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    });

    // Every backend that waits for the rival, seen while the posting waits. Group commit first tries the post in a
    // batch, which writes the batch's lines with its counters and then queues on the company rows; it gives up after
    // `BATCH_LOCK_WAIT_MS_MAX` and posts the voucher alone, in a transaction of its own with the pool's full lock
    // wait, which also writes its lines first. Whichever transaction is caught waiting must already hold its lines.
    let mut seen: Vec<Waiter> = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(kerp_ingest::DB_LOCK_WAIT_MS_MAX);
    let found = loop {
        let waiters: Vec<Waiter> = sqlx::query_as(
            "SELECT a.pid, a.query,
                    EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted AND l.mode = 'RowExclusiveLock'
                                                       AND l.relation = 'voucher_lines'::regclass) AS lines_written
             FROM pg_stat_activity a WHERE $1 = ANY(pg_blocking_pids(a.pid))",
        )
        .bind(rival_pid)
        .fetch_all(&pool)
        .await
        .expect("waiters");
        if let Some(w) = waiters.iter().position(|w| w.lines_written) {
            break Some(waiters.into_iter().nth(w).expect("waiter"));
        }
        seen.extend(waiters);
        if Instant::now() > deadline || post.is_finished() {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Released at once, so the waiting posting goes on instead of running into its lock timeout.
    rival.rollback().await.expect("unlock");
    let (status, posted) = post.await.expect("post task");

    let waiter = found.unwrap_or_else(|| panic!("no backend waited for the company row with its lines written; waiters seen: {seen:?}"));
    // The rival holds nothing but the company row, so every backend it blocks waits for that row; none may do so
    // before its lines are written, the batch path's first try included.
    assert!(seen.is_empty(), "a posting waited for the company row before writing its lines: {seen:?}");
    // The single path's statement, or the batch's (a CTE that locks the company rows, then the same UPDATE).
    assert!(
        waiter.query.starts_with("UPDATE companies SET event_seq") || waiter.query.contains("UPDATE companies c SET event_seq"),
        "backend {} waits on the company row in another statement: {}",
        waiter.pid,
        waiter.query
    );
    // The waiting transaction was this posting's: once the rival let go, it went through, as the company's first voucher.
    assert_eq!(status, 201, "{posted}");
    assert_eq!(posted["data"]["voucher_number"], "2025-06-000001");
}
