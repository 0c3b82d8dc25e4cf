//! The outbox relay against real Postgres and Kafka: an event too large for Kafka is refused at the door; a row that
//! fails for good holds back its own company only, and nothing of that company overtakes it; the backlog gauge shows
//! the real backlog; a relay that lost its advisory lock stops publishing.

mod common;

use std::time::Duration;

use common::{company, company_events, eventually, outbox_drained, outbox_rows, pg, post_voucher, simple_voucher, stack};
use kerp_core::kafka::EVENT_BYTES_MAX;
use kerp_schemas::{VoucherLine, VoucherPosted};
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

/// Rows a company owns in every table a posting writes, and its event sequence.
async fn footprint(pool: &sqlx::PgPool, company: Uuid) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM vouchers WHERE company_id = $1),
                (SELECT count(*) FROM voucher_lines WHERE company_id = $1),
                (SELECT count(*) FROM outbox WHERE company_id = $1),
                (SELECT COALESCE(sum(last_no), 0)::bigint FROM voucher_counters WHERE company_id = $1),
                (SELECT event_seq FROM companies WHERE id = $1)",
    )
    .bind(company)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The value of a gauge on ingest-api's internal metrics listener.
async fn gauge(name: &str) -> Option<f64> {
    common::gauge(&stack().ingest_metrics_url, name).await
}

#[tokio::test]
async fn an_event_larger_than_kafka_carries_is_refused_with_413_and_writes_nothing() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    // 1000 lines (the most a voucher may have) of 327 Hangul characters each: the body stays under the 1 MiB body
    // limit, but the event, which adds each line's account id, code, name and type, passes EVENT_BYTES_MAX.
    let text: String = "가".repeat(327);
    let lines: Vec<_> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                json!({"account_code": "5212", "debit_amount": 1, "description": text})
            } else {
                json!({"account_code": "1101", "credit_amount": 1, "description": text})
            }
        })
        .collect();
    let body = json!({"voucher_date": "2025-03-15", "voucher_type": "general", "description": "big", "lines": lines});
    let size = serde_json::to_vec(&body).unwrap().len();
    assert!(size < kerp_core::http::BODY_BYTES_MAX, "the body ({size} bytes) must pass the body limit");
    // The company's own events (its accounts, its settings) leave the outbox whenever the relay's next round comes;
    // they must be gone first, or that round changes the footprint compared below.
    outbox_drained(&pool, c.id).await;
    let before = footprint(&pool, c.id).await;
    let (status, problem) = post_voucher(&c.token, &body).await;
    assert_eq!(status, 413, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("EVENT_BYTES_MAX") && detail.contains(&EVENT_BYTES_MAX.to_string()), "names the limit: {detail}");
    assert_eq!(footprint(&pool, c.id).await, before, "nothing written, no number or sequence used");
    // The company's next voucher is number 1 with sequence 1, and reaches the topic.
    let (status, posted) = post_voucher(&c.token, &simple_voucher("2025-03-16", "5212", "1101", 1000)).await;
    assert_eq!((status, posted["data"]["voucher_number"].as_str()), (201, Some("2025-03-000001")), "{posted}");
    let seq: i64 = sqlx::query_scalar("SELECT company_seq FROM vouchers WHERE id = $1::uuid")
        .bind(posted["data"]["id"].as_str().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(seq, 1, "Postgres records the event's sequence");
    outbox_drained(&pool, c.id).await;
    let events = company_events(&stack().topic, c.id).await;
    assert_eq!(events.iter().map(|e| e.company_seq).collect::<Vec<_>>(), [1]);
}

fn event(company: Uuid, seq: i64) -> VoucherPosted {
    let line = |no, debit, credit| VoucherLine {
        line_no: no,
        account_id: Uuid::new_v4(),
        account_code: "1101".into(),
        account_name: "현금".into(),
        account_type: "asset".into(),
        partner_id: None,
        debit,
        credit,
        description: String::new(),
        department_id: None,
    };
    VoucherPosted {
        event_id: Uuid::new_v4(),
        company_id: company,
        company_seq: seq,
        voucher_id: Uuid::new_v4(),
        voucher_number: format!("2025-01-{seq:06}"),
        voucher_date: 20_103,
        voucher_type: "general".into(),
        status: "approved".into(),
        description: String::new(),
        posted_at: chrono::Utc::now().timestamp_micros(),
        lines: vec![line(1, 500, 0), line(2, 0, 500)],
        reversal_of: None,
    }
}

async fn enqueue(pool: &sqlx::PgPool, company: Uuid, payload: Vec<u8>) {
    sqlx::query("INSERT INTO outbox (company_id, topic, payload) VALUES ($1, $2, $3)")
        .bind(company)
        .bind(&stack().topic)
        .bind(payload)
        .execute(pool)
        .await
        .unwrap();
}

/// A row that can never be published (2 MiB, twice what Kafka takes) is injected ahead of its company's next event and
/// of another company's event. The other company is published; the stuck company is held, and its later event is
/// not published past the stuck row. Once an operator removes the row, the company resumes.
#[tokio::test]
async fn a_row_that_fails_for_good_holds_back_only_its_own_company() {
    stack();
    let pool = pg().await;
    let (stuck, other) = (Uuid::new_v4(), Uuid::new_v4());
    enqueue(&pool, stuck, vec![0u8; 2 * 1024 * 1024]).await;
    enqueue(&pool, stuck, kerp_schemas::encode_voucher_posted(&event(stuck, 1)).unwrap()).await;
    enqueue(&pool, other, kerp_schemas::encode_voucher_posted(&event(other, 1)).unwrap()).await;

    outbox_drained(&pool, other).await;
    assert_eq!(company_events(&stack().topic, other).await.len(), 1, "the other company is published");
    eventually(Duration::from_secs(15), "outbox_held_companies >= 1", || async {
        gauge("outbox_held_companies").await.filter(|v| *v >= 1.0)
    })
    .await;
    eventually(Duration::from_secs(15), "outbox_backlog_rows >= 2", || async { gauge("outbox_backlog_rows").await.filter(|v| *v >= 2.0) })
        .await;
    // Held past several retries (the test stack retries a held company every 2 s): nothing of it is published.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(outbox_rows(&pool, stuck).await, 2, "both of the stuck company's rows wait");
    assert!(company_events(&stack().topic, stuck).await.is_empty(), "its later event did not overtake the stuck row");

    // The operator removes the stuck row (after dealing with it by hand); the company's next event follows.
    sqlx::query("DELETE FROM outbox WHERE id = (SELECT min(id) FROM outbox WHERE company_id = $1)")
        .bind(stuck)
        .execute(&pool)
        .await
        .unwrap();
    outbox_drained(&pool, stuck).await;
    assert_eq!(company_events(&stack().topic, stuck).await.iter().map(|e| e.company_seq).collect::<Vec<_>>(), [1]);
}

/// The relay reads every round on its lock connection, which holds its advisory lock. That connection is terminated
/// and the lock taken by another session (as a second relay would): the old relay must stop publishing until it wins
/// the lock back.
#[tokio::test]
async fn a_relay_that_lost_its_lock_stops_publishing() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    outbox_drained(&pool, c.id).await;
    let mut rival = sqlx::PgConnection::connect(&common::database_url()).await.unwrap();
    // Terminate the relay's lock connection and take the lock before it can try again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let _ = sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(kerp_ingest::relay::RELAY_LOCK_APPLICATION)
            .execute(&pool)
            .await;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(kerp_ingest::relay::RELAY_LOCK_KEY)
            .fetch_one(&mut rival)
            .await
            .unwrap();
        if got {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the rival could not take the relay lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = post_voucher(&c.token, &simple_voucher("2025-04-01", "5212", "1101", 700)).await;
    assert_eq!(status, 201, "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(outbox_rows(&pool, c.id).await, 1, "a relay without the lock publishes nothing");
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(kerp_ingest::relay::RELAY_LOCK_KEY).execute(&mut rival).await.unwrap();
    outbox_drained(&pool, c.id).await;
    assert_eq!(company_events(&stack().topic, c.id).await.len(), 1);
}
