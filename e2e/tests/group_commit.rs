//! Group commit against real Postgres, Kafka and ClickHouse: concurrent posts are written in batches, and each keeps its
//! own answer, its own gapless number and its own place in the company's event sequence; refused posts write nothing;
//! a batch that cannot be written as one falls back to single postings with the same answers. A lane keeps its
//! connection between batches only while posts come, and the pool replaces a connection that broke while idle.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    api_trial_balance, company, company_events, eventually, outbox_drained, pg, pg_trial_balance, post_voucher, simple_voucher, stack,
};
use futures::StreamExt;
use kerp_core::voucher::{ValidVoucher, VoucherInput, VOUCHERS_PER_MONTH_MAX};
use kerp_ingest::group_commit::{Poster, LANE_CONN_LINGER_MS};
use kerp_ingest::store::vouchers::batch::{post_batch, Item};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

fn valid(body: &Value) -> ValidVoucher {
    let input: VoucherInput = serde_json::from_value(body.clone()).expect("voucher input");
    kerp_core::voucher::validate(&input).expect("valid voucher")
}

/// (id, number, seq) of the company's numbered vouchers, by sequence.
async fn numbered(pool: &PgPool, company: Uuid) -> Vec<(Uuid, String, i64)> {
    sqlx::query_as(
        "SELECT id, voucher_number, company_seq FROM vouchers WHERE company_id = $1 AND company_seq IS NOT NULL ORDER BY company_seq",
    )
    .bind(company)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn event_seq(pool: &PgPool, company: Uuid) -> i64 {
    sqlx::query_scalar("SELECT event_seq FROM companies WHERE id = $1").bind(company).fetch_one(pool).await.unwrap()
}

/// Numbers per month must be exactly 1..=n: gapless and each given once.
fn assert_gapless(numbers: &[String]) {
    let mut by_month: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for n in numbers {
        by_month.entry(&n[..7]).or_default().push(n[8..].parse().unwrap());
    }
    for (month, mut nos) in by_month {
        nos.sort_unstable();
        let expected: Vec<u32> = (1..=u32::try_from(nos.len()).unwrap()).collect();
        assert_eq!(nos, expected, "numbers of {month}");
    }
}

#[tokio::test]
async fn concurrent_posts_keep_their_own_answers_numbers_and_sequence() {
    let s = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    const POSTS: usize = 240;
    // Every tenth post names an account the company does not have, every seventh is a draft; the rest are approved,
    // over two months.
    let bodies: Vec<(usize, Value)> = (0..POSTS)
        .map(|i| {
            let date = if i % 2 == 0 { "2025-03-10" } else { "2025-04-20" };
            let mut body = simple_voucher(date, "5212", if i % 10 == 3 { "9999" } else { "1101" }, 1_000 + i as i64);
            if i % 7 == 5 {
                body["status"] = json!("draft");
            }
            (i, body)
        })
        .collect();
    let answers: Vec<(usize, u16, Value)> = futures::stream::iter(bodies.clone())
        .map(|(i, body)| {
            let token = c.token.clone();
            async move {
                let (status, b) = post_voucher(&token, &body).await;
                (i, status, b)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut approved = Vec::new();
    for (i, status, b) in &answers {
        if i % 10 == 3 {
            assert_eq!(*status, 422, "{b}");
            assert_eq!(b["errors"][0]["field"], "lines[1].account_code", "{b}");
            continue;
        }
        assert_eq!(*status, 201, "{b}");
        assert_eq!(b["data"]["total_debit"], 1_000 + *i as i64, "each post gets its own answer: {b}");
        if i % 7 == 5 {
            assert_eq!(b["data"]["status"], "draft");
            assert!(b["data"]["voucher_number"].is_null());
        } else {
            approved.push((
                b["data"]["id"].as_str().unwrap().parse::<Uuid>().unwrap(),
                b["data"]["voucher_number"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let rows = numbered(&pool, c.id).await;
    assert_eq!(rows.len(), approved.len());
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (1..=i64::try_from(approved.len()).unwrap()).collect::<Vec<_>>());
    assert_eq!(event_seq(&pool, c.id).await, i64::try_from(approved.len()).unwrap());
    let by_id: BTreeMap<Uuid, &String> = rows.iter().map(|(id, n, _)| (*id, n)).collect();
    for (id, number) in &approved {
        assert_eq!(by_id.get(id), Some(&number), "the answer's number is the stored one");
    }
    assert_gapless(&approved.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>());
    // Within a month, numbers rise with the sequence: both are handed out in the same order.
    let mut last: BTreeMap<String, u32> = BTreeMap::new();
    for (_, n, _) in &rows {
        let no: u32 = n[8..].parse().unwrap();
        let prev = last.insert(n[..7].to_owned(), no).unwrap_or(0);
        assert!(no > prev, "{n} after {prev}");
    }
    let drafts: i64 = sqlx::query_scalar("SELECT count(*) FROM vouchers WHERE company_id = $1 AND status = 'draft'")
        .bind(c.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(drafts, (0..POSTS).filter(|i| i % 7 == 5 && i % 10 != 3).count() as i64);

    // On the topic: one event per approved voucher, in sequence order, with the stored numbers.
    outbox_drained(&pool, c.id).await;
    let events = company_events(&s.topic, c.id).await;
    assert_eq!(events.iter().map(|e| e.company_seq).collect::<Vec<_>>(), rows.iter().map(|r| r.2).collect::<Vec<_>>());
    for (e, (id, n, _)) in events.iter().zip(&rows) {
        assert_eq!((e.voucher_id, &e.voucher_number), (*id, n));
    }
    // And in the reports, exactly once.
    for m in [3, 4] {
        let expected = pg_trial_balance(&pool, c.id, 2025, m).await;
        eventually(std::time::Duration::from_secs(60), "the trial balance to match Postgres", || async {
            (api_trial_balance(&c.token, 2025, m).await.0 == expected).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn one_batch_of_several_companies_answers_each_post_as_a_single_posting_would() {
    stack();
    let pool = pg().await;
    let (a, b) = (company(&pool).await, company(&pool).await);
    sqlx::query("INSERT INTO closed_periods (company_id, period, closed_by) VALUES ($1, '2025-01-01', $2)")
        .bind(a.id)
        .bind(a.admin)
        .execute(&pool)
        .await
        .unwrap();
    let ok = |amount| valid(&simple_voucher("2025-02-03", "5212", "1101", amount));
    let closed = valid(&simple_voucher("2025-01-15", "5212", "1101", 9));
    let mut unknown_partner = simple_voucher("2025-02-03", "5212", "1101", 8);
    unknown_partner["lines"][0]["partner_id"] = json!(Uuid::new_v4());
    let unknown_partner = valid(&unknown_partner);
    let bodies = [
        (a.id, ok(1)),
        (b.id, ok(2)),
        (a.id, closed.clone()),
        (a.id, ok(3)),
        (b.id, unknown_partner.clone()),
        (b.id, ok(4)),
        (a.id, ok(5)),
    ];
    let items: Vec<Item<'_>> =
        bodies.iter().map(|(company, v)| Item { company_id: *company, user_id: Uuid::new_v4(), voucher: v }).collect();
    let mut tx = pool.begin().await.unwrap();
    let answers = post_batch(&mut tx, &common::stack().topic, &items).await.expect("the batch is written as one");
    tx.commit().await.unwrap();

    // The refused ones get what the single path says for them.
    let single = |company: Uuid, v: ValidVoucher| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let e = kerp_ingest::store::vouchers::post_voucher(&mut tx, company, Uuid::new_v4(), "unused", &v).await.expect_err("refused");
            e.to_string()
        }
    };
    assert_eq!(answers[2].as_ref().expect_err("closed month").to_string(), single(a.id, closed).await);
    assert_eq!(answers[4].as_ref().expect_err("unknown partner").to_string(), single(b.id, unknown_partner).await);
    let numbers: Vec<Option<String>> = answers.iter().map(|r| r.as_ref().ok().and_then(|p| p.voucher_number.clone())).collect();
    assert_eq!(
        numbers,
        [
            Some("2025-02-000001"),
            Some("2025-02-000001"),
            None,
            Some("2025-02-000002"),
            None,
            Some("2025-02-000002"),
            Some("2025-02-000003")
        ]
        .map(|n| n.map(str::to_owned))
        .to_vec(),
        "numbers in arrival order, per company and month"
    );
    // Sequences in arrival order, and the outbox holds each company's events in that order.
    for (c, want) in [(a.id, vec![0, 3, 6]), (b.id, vec![1, 5])] {
        let rows = numbered(&pool, c).await;
        let ids: Vec<Uuid> = want.iter().map(|i| answers[*i].as_ref().unwrap().id).collect();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), ids);
        assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), (1..=i64::try_from(ids.len()).unwrap()).collect::<Vec<_>>());
        outbox_drained(&pool, c).await;
        let events = company_events(&common::stack().topic, c).await;
        assert_eq!(events.iter().map(|e| e.voucher_id).collect::<Vec<_>>(), ids);
        let lines: i64 =
            sqlx::query_scalar("SELECT count(*) FROM voucher_lines WHERE company_id = $1").bind(c).fetch_one(&pool).await.unwrap();
        assert_eq!(lines, 2 * i64::try_from(ids.len()).unwrap(), "refused posts wrote no lines");
    }
}

/// A month closed while a batch waits for its counter shows after the wait, in the statement that takes the company
/// rows: the batch fails as a whole (its posts then go one by one and get the closed month's answer) instead of
/// posting into a closed month.
#[tokio::test]
async fn a_month_closed_while_a_batch_waits_for_its_counter_fails_the_batch() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    sqlx::query("INSERT INTO voucher_counters (company_id, period, last_no) VALUES ($1, '2025-06-01', 0)")
        .bind(c.id)
        .execute(&pool)
        .await
        .unwrap();
    // A rival transaction holds June's counter and closes June; it commits only once the batch waits for it.
    let mut rival = pool.begin().await.unwrap();
    let rival_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *rival).await.unwrap();
    sqlx::query("SELECT last_no FROM voucher_counters WHERE company_id = $1 AND period = '2025-06-01' FOR UPDATE")
        .bind(c.id)
        .execute(&mut *rival)
        .await
        .unwrap();
    sqlx::query("INSERT INTO closed_periods (company_id, period, closed_by) VALUES ($1, '2025-06-01', $2)")
        .bind(c.id)
        .bind(c.admin)
        .execute(&mut *rival)
        .await
        .unwrap();
    let batch = {
        let (pool, company, user) = (pool.clone(), c.id, c.admin);
        tokio::spawn(async move {
            let v = valid(&simple_voucher("2025-06-02", "5212", "1101", 5));
            let items = [Item { company_id: company, user_id: user, voucher: &v }];
            let mut tx = pool.begin().await.unwrap();
            post_batch(&mut tx, &common::stack().topic, &items).await.map(|answers| answers.len()).map_err(|e| e.to_string())
        })
    };
    eventually(std::time::Duration::from_secs(10), "the batch to wait for the rival's counter", || {
        let pool = pool.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))")
                .bind(rival_pid)
                .fetch_one(&pool)
                .await
                .unwrap();
            (waiting > 0).then_some(())
        }
    })
    .await;
    rival.commit().await.unwrap();
    let outcome = batch.await.unwrap();
    assert!(outcome.is_err(), "the batch must not post into the month closed while it waited: {outcome:?}");
    assert!(numbered(&pool, c.id).await.is_empty(), "nothing was numbered");
    assert_eq!(event_seq(&pool, c.id).await, 0, "no sequence was taken");
}

#[tokio::test]
async fn a_batch_that_cannot_be_written_as_one_falls_back_to_single_postings() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    // One number left in May: a batch of three takes the counter past the end, which shows only after it was taken.
    sqlx::query("INSERT INTO voucher_counters (company_id, period, last_no) VALUES ($1, '2025-05-01', $2)")
        .bind(c.id)
        .bind(i32::try_from(VOUCHERS_PER_MONTH_MAX - 1).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let vouchers: Vec<ValidVoucher> = (1..=3).map(|i| valid(&simple_voucher("2025-05-02", "5212", "1101", i))).collect();
    let items: Vec<Item<'_>> = vouchers.iter().map(|v| Item { company_id: c.id, user_id: c.admin, voucher: v }).collect();
    let mut tx = pool.begin().await.unwrap();
    assert!(post_batch(&mut tx, &common::stack().topic, &items).await.is_err(), "the batch refuses as a whole");
    drop(tx);
    assert!(numbered(&pool, c.id).await.is_empty(), "the rolled-back batch left nothing");

    // Through the lanes, the same three posts: however they are batched, one gets the last number and two a 409.
    let poster = Poster::start(pool.clone(), common::stack().topic.clone(), 1);
    let answers = futures::future::join_all(vouchers.into_iter().map(|v| poster.post(c.id, c.admin, v))).await;
    let posted: Vec<_> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(posted.len(), 1, "{answers:?}");
    assert_eq!(posted[0].voucher_number.as_deref(), Some("2025-05-999999"));
    for e in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert!(e.to_string().starts_with("409"), "{e}");
    }
    assert_eq!(numbered(&pool, c.id).await.len(), 1);
    assert_eq!(event_seq(&pool, c.id).await, 1);
}

#[tokio::test]
async fn a_lane_keeps_its_connection_while_posts_come_and_gives_it_back_once_idle() {
    stack();
    let c = company(&pg().await).await;
    let pool = kerp_ingest::pool_options(4).connect(&common::database_url()).await.expect("pool");
    let poster = Poster::start(pool.clone(), common::stack().topic.clone(), 1);
    for i in 1..=3 {
        poster.post(c.id, c.admin, valid(&simple_voucher("2025-06-02", "5212", "1101", i))).await.expect("posted");
        // Right after its answer the lane still holds the connection it wrote on, for the next batch.
        assert_eq!(pool.num_idle(), pool.size() as usize - 1, "after post {i}: the lane gave its connection back");
    }
    assert_eq!(pool.size(), 1, "three posts one after the other used one connection");
    tokio::time::sleep(Duration::from_millis(LANE_CONN_LINGER_MS * 3)).await;
    assert_eq!(pool.num_idle(), pool.size() as usize, "an idle lane keeps a connection from the pool");
}

#[tokio::test]
async fn a_connection_broken_while_idle_is_replaced_once_idle_past_the_ping_time() {
    stack();
    let admin = pg().await;
    let pool = kerp_ingest::pool_options(1).connect(&common::database_url()).await.expect("pool");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await.unwrap();
    // As a Postgres restart would, with the connection idle in the pool.
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&admin).await.unwrap();
    assert!(terminated);
    tokio::time::sleep(Duration::from_millis(kerp_ingest::DB_IDLE_PING_AFTER_MS + 300)).await;
    let again: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("the ping found the broken connection and the pool opened another");
    assert_ne!(again, pid);
}
