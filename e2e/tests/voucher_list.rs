//! The voucher list against the real stack: paging by the keyset cursor visits every voucher exactly once, in list
//! order (date, number with drafts last in their day, creation time, id), drafts and many same-date vouchers
//! included; it agrees with page/page_size paging and with Postgres; `total` stays exact below the count cap and says
//! it is an estimate past it; a cursor that is not one of ours, or that is sent with other filters or with `page`, is
//! a 422 problem.

mod common;

use common::{company, get, pg, post_voucher, simple_voucher, stack, Svc};
use futures::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

/// Every page of the list from `query` on, following `next_cursor`, with the ids of each page.
async fn walk(token: &str, query: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let (status, mut body) = get(Svc::Ingest, token, &format!("/api/v1/vouchers?{query}")).await;
    loop {
        assert_eq!(status, 200, "{body}");
        let ids = body["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        pages.push(ids);
        let Some(cursor) = body["pagination"]["next_cursor"].as_str().map(str::to_owned) else { break };
        assert!(pages.len() < 1000, "the cursor never ends");
        let next = get(Svc::Ingest, token, &format!("/api/v1/vouchers?{query}&cursor={cursor}")).await;
        assert_eq!(next.0, 200, "{}", next.1);
        body = next.1;
    }
    pages
}

#[tokio::test]
async fn the_cursor_visits_every_voucher_once_in_list_order() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    // 120 vouchers on four dates, posted 12 at a time so that many share a date (and, with batched posting, a creation
    // time), and every fifth a draft, which has no number and sorts last in its day.
    let bodies: Vec<Value> = (0..120)
        .map(|i| {
            let mut v = simple_voucher(&format!("2025-04-{:02}", 1 + (i % 4) * 7), "5212", "1101", 1000 + i);
            if i % 5 == 0 {
                v["status"] = json!("draft");
            }
            v
        })
        .collect();
    let token = c.token.clone();
    let mut posts = futures::stream::iter(bodies.iter().map(|b| post_voucher(&token, b))).buffer_unordered(12);
    while let Some((status, body)) = posts.next().await {
        assert_eq!(status, 201, "{body}");
    }

    // The order Postgres gives by the documented key.
    let expected: Vec<String> = sqlx::query_scalar::<_, Uuid>(
        "SELECT id FROM vouchers WHERE company_id = $1 ORDER BY voucher_date, voucher_number NULLS LAST, created_at, id",
    )
    .bind(c.id)
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|id| id.to_string())
    .collect();
    assert_eq!(expected.len(), 120);

    // The cursor, 7 at a time: every voucher once, in order, in full pages but the last.
    let pages = walk(&c.token, "page_size=7").await;
    assert_eq!(pages.len(), 120usize.div_ceil(7));
    assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == 7));
    let walked: Vec<String> = pages.iter().flatten().cloned().collect();
    assert_eq!(walked, expected);

    // page/page_size gives the same pages, with the contract's pagination.
    for (i, cursor_page) in pages.iter().enumerate() {
        let (status, body) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers?page={}&page_size=7", i + 1)).await;
        assert_eq!(status, 200, "{body}");
        let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
        assert_eq!(ids, *cursor_page, "page {}", i + 1);
        assert_eq!(body["pagination"]["page"], i + 1);
        assert_eq!(body["pagination"]["page_size"], 7);
        assert_eq!(body["pagination"]["total"], 120, "{}", body["pagination"]);
        assert_eq!(body["pagination"]["total_is_estimate"], false);
    }

    // A cursor page reports its page number and the same total.
    let (_, first) = get(Svc::Ingest, &c.token, "/api/v1/vouchers?page_size=50").await;
    let cursor = first["pagination"]["next_cursor"].as_str().unwrap();
    let (status, second) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers?page_size=50&cursor={cursor}")).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!((second["pagination"]["page"].as_u64(), second["pagination"]["total"].as_u64()), (Some(2), Some(120)));
    let (_, exact) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers?page_size=50&include_total=true&cursor={cursor}")).await;
    assert_eq!(exact["pagination"]["total"], 120);
    assert_eq!(exact["data"], second["data"]);

    // Past the end: an empty page that still knows the total.
    let (_, past) = get(Svc::Ingest, &c.token, "/api/v1/vouchers?page=100&page_size=50").await;
    assert_eq!((past["data"].as_array().unwrap().len(), past["pagination"]["total"].as_u64()), (0, Some(120)));
    assert!(past["pagination"]["next_cursor"].is_null());

    // Filters stay with the cursor: only the drafts, and only one date.
    let drafts: Vec<String> = walk(&c.token, "status=draft&page_size=5").await.into_iter().flatten().collect();
    let draft_ids: Vec<String> = expected
        .iter()
        .zip(
            sqlx::query_scalar::<_, String>(
                "SELECT status FROM vouchers WHERE company_id = $1 ORDER BY voucher_date, voucher_number NULLS LAST, created_at, id",
            )
            .bind(c.id)
            .fetch_all(&pool)
            .await
            .unwrap(),
        )
        .filter(|(_, s)| s == "draft")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(drafts, draft_ids);
    assert_eq!(drafts.len(), 24);
    let one_day: Vec<String> = walk(&c.token, "from_date=2025-04-08&to_date=2025-04-08&page_size=4").await.into_iter().flatten().collect();
    assert_eq!(one_day.len(), 30);
}

/// Past `LIST_COUNT_ROWS_MAX` vouchers from the page's start the count stops: `total` is the cap and says it is an
/// estimate; `include_total=true` counts them all; a page deep enough that fewer than the cap follow it is exact again,
/// and so is a page larger than the cap.
#[tokio::test]
async fn the_total_stops_at_the_count_cap_unless_asked_for() {
    const CAP: u64 = kerp_ingest::store::vouchers::LIST_COUNT_ROWS_MAX;
    const POSTED: u64 = CAP + 3;
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let bodies: Vec<Value> = (0..POSTED).map(|i| simple_voucher("2025-05-02", "5212", "1101", 1000 + i64::try_from(i).unwrap())).collect();
    let mut posts = futures::stream::iter(bodies.iter().map(|b| post_voucher(&c.token, b))).buffer_unordered(16);
    while let Some((status, body)) = posts.next().await {
        assert_eq!(status, 201, "{body}");
    }
    let pagination = |query: String| {
        let token = c.token.clone();
        async move {
            let (status, body) = get(Svc::Ingest, &token, &format!("/api/v1/vouchers?{query}")).await;
            assert_eq!(status, 200, "{body}");
            (body["pagination"]["total"].as_u64().unwrap(), body["pagination"]["total_is_estimate"].as_bool().unwrap())
        }
    };
    assert_eq!(pagination("page_size=20".into()).await, (CAP, true), "capped from the first page");
    assert_eq!(pagination("page_size=20&include_total=true".into()).await, (POSTED, false), "exact when asked");
    // A page larger than the cap counts as far as its own size: its total is never below the rows it shows.
    assert_eq!(pagination(format!("page_size={}", CAP + 50)).await, (POSTED, false), "a page past the cap counts itself");
    let deep = POSTED - 10;
    assert_eq!(pagination(format!("page={}&page_size=10", deep / 10 + 1)).await, (POSTED, false), "exact near the end");
}

#[tokio::test]
async fn a_bad_cursor_is_a_422_problem() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    for i in 0..3 {
        assert_eq!(post_voucher(&c.token, &simple_voucher("2025-05-02", "5212", "1101", 100 + i)).await.0, 201);
    }
    let (_, first) = get(Svc::Ingest, &c.token, "/api/v1/vouchers?page_size=1&status=approved").await;
    let cursor = first["pagination"]["next_cursor"].as_str().unwrap().to_owned();
    let long = "0".repeat(5000);
    let not_ours = ["zz", "abc", "7b7d", "6e756c6c", long.as_str()];
    for bad in not_ours {
        let r =
            common::http().get(format!("{}/api/v1/vouchers?cursor={bad}", stack().ingest_url)).bearer_auth(&c.token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 422, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "cursor", "{body}");
    }
    // With page, or with other filters than the cursor was made for.
    for query in
        [format!("page=2&cursor={cursor}"), format!("status=draft&cursor={cursor}"), format!("from_date=2025-05-03&cursor={cursor}")]
    {
        let (status, body) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], "cursor", "{body}");
    }
    // The same filters, or none, go on.
    assert_eq!(get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers?status=approved&cursor={cursor}")).await.0, 200);
    let (status, body) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers?cursor={cursor}&page_size=5")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(get(Svc::Ingest, &c.token, "/api/v1/vouchers?include_total=maybe").await.0, 400);
}
