//! `kerp.v1.VoucherService` against the real stack, through a tonic client: a voucher posted over gRPC lands in
//! Postgres and on the topic as a REST post does, and reads back; tokens, roles and companies are checked as REST
//! checks them; bad input gets INVALID_ARGUMENT with its field violations (or FAILED_PRECONDITION) and writes nothing;
//! a request_id replays; a CreateVouchers stream of 10,000 items with bad ones among them posts exactly the good ones,
//! and the trial balance from ClickHouse then equals one computed from Postgres; a stream past its limits ends early
//! and says so; the calls are counted in the metrics.

mod common;
mod grpc_common;

use std::time::{Duration, Instant};

use common::{company, company_events, eventually, get, outbox_drained, pg, pg_trial_balance, send, stack, token_with_role, Svc};
use grpc_common::{authed, footprint, grpc, grpc_trial_balance, item, server_deadline, violations, voucher, vouchers, vouchers_at};
use kerp_core::auth::Role;
use kerp_grpc::pb::kerp::v1 as pb;
use kerp_grpc::pb::kerp::v1::create_vouchers_result::Outcome;
use kerp_grpc::pb::kerp::v1::voucher_service_client::VoucherServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use uuid::Uuid;

/// How long the pipeline may take to fold 10,000 vouchers into ClickHouse.
const FOLD_WAIT_SECONDS_MAX: u64 = 180;

#[tokio::test]
async fn a_voucher_posted_over_grpc_lands_like_a_rest_post_and_reads_back() {
    let pool = pg().await;
    let c = company(&pool).await;
    let mut client = vouchers().await;
    let res = client.create_voucher(authed(item("", voucher("2025-03-15", "5212", "1101", 110_000)), &c.token)).await.unwrap().into_inner();
    assert!(!res.replayed);
    let posted = res.voucher.unwrap();
    assert_eq!(posted.voucher_number, "2025-03-000001");
    assert_eq!((posted.status(), posted.total_debit, posted.total_credit), (pb::VoucherStatus::Approved, 110_000, 110_000));
    assert_eq!(posted.voucher_date, "2025-03-15");

    // The same voucher through REST: one store, one shape.
    let (status, rest) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{}", posted.id)).await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["data"]["voucher_number"], "2025-03-000001");
    assert_eq!(rest["data"]["lines"][0]["account_code"], "5212");

    let read = client.get_voucher(authed(pb::GetVoucherRequest { id: posted.id.clone() }, &c.token)).await.unwrap().into_inner();
    let v = read.voucher.unwrap();
    assert_eq!(
        (v.id.as_str(), v.voucher_number.as_str(), v.voucher_type()),
        (posted.id.as_str(), "2025-03-000001", pb::VoucherType::General)
    );
    assert_eq!(v.lines.len(), 2);
    assert_eq!((v.lines[0].account_code.as_str(), v.lines[0].debit_amount, v.lines[0].description.as_str()), ("5212", 110_000, "차변"));
    assert_eq!((v.lines[1].account_code.as_str(), v.lines[1].credit_amount), ("1101", 110_000));
    assert!(!v.created_at.is_empty() && !v.approved_at.is_empty());

    // A draft has no number, and the outbox carried exactly the approved voucher's event.
    let mut draft = voucher("2025-03-16", "5212", "1101", 5_000);
    draft.status = pb::VoucherStatus::Draft.into();
    let d = client.create_voucher(authed(item("", draft), &c.token)).await.unwrap().into_inner().voucher.unwrap();
    assert_eq!((d.voucher_number.as_str(), d.status()), ("", pb::VoucherStatus::Draft));
    outbox_drained(&pool, c.id).await;
    let events = company_events(&stack().topic, c.id).await;
    assert_eq!(events.len(), 1, "one event, for the approved voucher only");
    assert_eq!(events[0].voucher_id.to_string(), posted.id);
    assert_eq!(events[0].voucher_number, "2025-03-000001");
}

/// `msg` with a bearer token, or without any.
fn maybe_authed<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    match token {
        Some(t) => authed(msg, t),
        None => tonic::Request::new(msg),
    }
}

#[tokio::test]
async fn tokens_and_roles_are_checked_as_over_rest() {
    let pool = pg().await;
    let c = company(&pool).await;
    let mut client = vouchers().await;
    let posted =
        client.create_voucher(authed(item("", voucher("2025-01-10", "5212", "1101", 1_000)), &c.token)).await.unwrap().into_inner();
    let id = posted.voucher.unwrap().id;
    let before = footprint(&pool, c.id).await;

    let other_secret = kerp_core::auth::Claims::new(c.admin, c.id, Role::Admin, 600);
    let forged = kerp_core::auth::issue(b"a-different-secret-of-at-least-32-bytes", &other_secret).unwrap();
    for token in [None, Some("not.a.jwt"), Some(forged.as_str())] {
        let e = client.create_voucher(maybe_authed(item("", voucher("2025-01-10", "5212", "1101", 1)), token)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}");
        let e = client.get_voucher(maybe_authed(pb::GetVoucherRequest { id: id.clone() }, token)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let stream = tokio_stream::iter(vec![item("", voucher("2025-01-10", "5212", "1101", 1))]);
        assert_eq!(client.create_vouchers(maybe_authed(stream, token)).await.unwrap_err().code(), Code::Unauthenticated);
    }

    let viewer = token_with_role(&pool, c.id, Role::Viewer).await;
    let e = client.create_voucher(authed(item("", voucher("2025-01-10", "5212", "1101", 1)), &viewer)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let stream = tokio_stream::iter(vec![item("", voucher("2025-01-10", "5212", "1101", 1))]);
    assert_eq!(client.create_vouchers(authed(stream, &viewer)).await.unwrap_err().code(), Code::PermissionDenied);
    // A viewer reads.
    let read = client.get_voucher(authed(pb::GetVoucherRequest { id: id.clone() }, &viewer)).await.unwrap().into_inner();
    assert_eq!(read.voucher.unwrap().id, id);
    // An accountant posts.
    let accountant = token_with_role(&pool, c.id, Role::Accountant).await;
    client.create_voucher(authed(item("", voucher("2025-01-11", "5212", "1101", 2)), &accountant)).await.unwrap();

    let after = footprint(&pool, c.id).await;
    assert_eq!((after.0, after.3), (before.0 + 1, before.3 + 1), "only the accountant's voucher was written");
}

#[tokio::test]
async fn companies_cannot_read_or_use_each_others_data() {
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let mut client = vouchers().await;
    let posted = client.create_voucher(authed(item("", voucher("2025-02-01", "5212", "1101", 700)), &a.token)).await.unwrap().into_inner();
    let id = posted.voucher.unwrap().id;
    let (before_a, before_b) = (footprint(&pool, a.id).await, footprint(&pool, b.id).await);

    let e = client.get_voucher(authed(pb::GetVoucherRequest { id: id.clone() }, &b.token)).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "voucher not found"));
    let missing = client.get_voucher(authed(pb::GetVoucherRequest { id: Uuid::new_v4().to_string() }, &b.token)).await.unwrap_err();
    assert_eq!((missing.code(), missing.message()), (e.code(), e.message()), "another company's voucher looks missing");

    // B naming A's account by id gets the words of an unknown account.
    let a_cash = common::account_id(&a.token, "1101").await;
    let mut v = voucher("2025-02-01", "5212", "1101", 700);
    v.lines[1].account_code = String::new();
    v.lines[1].account_id = a_cash;
    let e = client.create_voucher(authed(item("", v.clone()), &b.token)).await.unwrap_err();
    assert_eq!(violations(&e), ["voucher.lines[1].account_id"]);
    assert!(e.message().contains("account not found"), "{}", e.message());
    assert_eq!((footprint(&pool, a.id).await, footprint(&pool, b.id).await), (before_a, before_b));

    // Inside a bulk stream too: B's item naming A's account is that item's error, the stream goes on, and nothing of
    // it lands in either company.
    let res = client.create_vouchers(authed(tokio_stream::iter(vec![item("", v)]), &b.token)).await.unwrap().into_inner();
    assert_eq!((res.end(), res.created, res.failed), (pb::StreamEnd::Complete, 0, 1), "{res:?}");
    match &res.results[0].outcome {
        Some(pb::create_vouchers_result::Outcome::Error(e)) => {
            assert!(e.field_violations.iter().any(|f| f.field == "voucher.lines[1].account_id"), "{e:?}");
        }
        other => panic!("A's account in B's stream: {other:?}"),
    }
    assert_eq!((footprint(&pool, a.id).await, footprint(&pool, b.id).await), (before_a, before_b));
}

#[tokio::test]
async fn bad_input_gets_its_field_violations_and_writes_nothing() {
    let pool = pg().await;
    let c = company(&pool).await;
    let mut client = vouchers().await;
    let (status, body) = send(reqwest::Method::POST, Svc::Ingest, &c.token, "/api/v1/periods/2025-03/close", None).await;
    assert_eq!(status, 200, "{body}");
    let before = footprint(&pool, c.id).await;

    let ok = || voucher("2025-01-15", "5212", "1101", 1_000);
    let mut unbalanced = ok();
    unbalanced.lines[1].credit_amount = 999;
    let mut several = ok();
    several.voucher_date = "2025-02-30".into();
    several.lines[0].debit_amount = -5;
    several.lines[0].partner_id = "p-7".into();
    let mut one_line = ok();
    one_line.lines.pop();
    let mut unknown_account = ok();
    unknown_account.lines[1].account_code = "9999".into();
    let mut reversed = ok();
    reversed.status = pb::VoucherStatus::Reversed.into();
    let mut bad_type = ok();
    bad_type.voucher_type = 42;
    let cases: Vec<(pb::CreateVoucherRequest, &[&str])> = vec![
        (item("", unbalanced), &["voucher.lines"]),
        (item("", several), &["voucher.voucher_date", "voucher.lines[0].partner_id", "voucher.lines[0].debit_amount", "voucher.lines"]),
        (item("", one_line), &["voucher.lines"]),
        (item("", unknown_account), &["voucher.lines[1].account_code"]),
        (item("", reversed), &["voucher.status"]),
        (item("", bad_type), &["voucher.voucher_type"]),
        (pb::CreateVoucherRequest { request_id: "k".into(), voucher: None }, &["voucher"]),
        (item("a key with spaces", ok()), &["request_id"]),
        (item(&"k".repeat(256), ok()), &["request_id"]),
    ];
    for (req, expected) in cases {
        let e = client.create_voucher(authed(req.clone(), &c.token)).await.unwrap_err();
        let got = violations(&e);
        for field in expected {
            assert!(got.iter().any(|g| g == field), "{field} missing from {got:?} for {req:?}");
        }
        assert!(got.iter().all(|g| expected.contains(&g.as_str())), "unexpected violations {got:?} for {req:?}");
    }

    let e = client.create_voucher(authed(item("closed", voucher("2025-03-10", "5212", "1101", 1)), &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("closed"), "{}", e.message());
    let e = client.get_voucher(authed(pb::GetVoucherRequest { id: "not-a-uuid".into() }, &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    assert_eq!(footprint(&pool, c.id).await, before, "nothing of a refused voucher is written, not even its key");
}

#[tokio::test]
async fn a_request_id_replays_the_stored_answer_through_either_call() {
    let pool = pg().await;
    let c = company(&pool).await;
    let mut client = vouchers().await;
    let key = format!("grpc-{}", Uuid::new_v4());
    let v = voucher("2025-05-05", "5212", "1101", 42_000);
    let first = client.create_voucher(authed(item(&key, v.clone()), &c.token)).await.unwrap().into_inner();
    assert!(!first.replayed);
    let after_first = footprint(&pool, c.id).await;

    let again = client.create_voucher(authed(item(&key, v.clone()), &c.token)).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(again.voucher, first.voucher);
    assert_eq!(footprint(&pool, c.id).await, after_first, "a replay writes nothing");

    let mut changed = v.clone();
    changed.lines[0].debit_amount += 1;
    changed.lines[1].credit_amount += 1;
    let e = client.create_voucher(authed(item(&key, changed), &c.token)).await.unwrap_err();
    assert_eq!(violations(&e), ["request_id"]);

    // The same key inside a stream replays too, and a key new in the stream posts once though sent twice.
    let key2 = format!("grpc-{}", Uuid::new_v4());
    let v2 = voucher("2025-05-06", "1102", "4101", 9_000);
    let stream = tokio_stream::iter(vec![item(&key, v.clone()), item(&key2, v2.clone()), item(&key2, v2)]);
    let res = client.create_vouchers(authed(stream, &c.token)).await.unwrap().into_inner();
    assert_eq!((res.created, res.replayed, res.failed, res.end()), (1, 2, 0, pb::StreamEnd::Complete));
    let posted = |r: &pb::CreateVouchersResult| match &r.outcome {
        Some(Outcome::Voucher(v)) => v.clone(),
        other => panic!("not posted: {other:?}"),
    };
    assert_eq!(Some(posted(&res.results[0])), first.voucher);
    assert!(res.results[0].replayed && !res.results[1].replayed && res.results[2].replayed);
    assert_eq!(posted(&res.results[1]), posted(&res.results[2]));
    assert_eq!(res.results[1].request_id, key2);
    assert_eq!(footprint(&pool, c.id).await.0, after_first.0 + 1);

    // Keys are REST's Idempotency-Keys: the same key over REST is a different request.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/vouchers", stack().ingest_url))
        .bearer_auth(&c.token)
        .header("Idempotency-Key", &key)
        .json(&common::simple_voucher("2025-05-05", "5212", "1101", 42_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
}

/// The item at `i` of the bulk stream, and the violation it must get if it is a bad one.
fn bulk_item(i: usize, run: &str) -> (pb::CreateVoucherRequest, Option<&'static str>) {
    const PAIRS: [(&str, &str); 4] = [("5212", "1101"), ("1102", "4101"), ("5213", "2101"), ("1201", "1102")];
    let (debit, credit) = PAIRS[i % PAIRS.len()];
    let date = format!("2025-{:02}-{:02}", i % 12 + 1, i % 28 + 1);
    let amount = 1_000 + i64::try_from(i).unwrap();
    let mut v = voucher(&date, debit, credit, amount);
    let request_id = if i % 1000 == 0 { format!("bulk-{run}-{i}") } else { String::new() };
    let bad = match i % 500 {
        7 => {
            v.lines[1].credit_amount += 1;
            Some("voucher.lines")
        }
        123 => {
            v.lines[0].account_code = "9999".into();
            Some("voucher.lines[0].account_code")
        }
        250 => {
            v.voucher_date = "2025-02-30".into();
            Some("voucher.voucher_date")
        }
        400 => return (pb::CreateVoucherRequest { request_id, voucher: None }, Some("voucher")),
        _ => None,
    };
    (item(&request_id, v), bad)
}

#[tokio::test]
async fn a_stream_of_ten_thousand_posts_exactly_the_good_items_and_the_trial_balance_matches_postgres() {
    const ITEMS: usize = 10_000;
    let pool = pg().await;
    let c = company(&pool).await;
    let run = Uuid::new_v4().simple().to_string();
    let before = footprint(&pool, c.id).await;
    let (items, bad): (Vec<_>, Vec<_>) = (0..ITEMS).map(|i| bulk_item(i, &run)).unzip();
    let bad_count = bad.iter().filter(|b| b.is_some()).count();
    let good_amount: i64 = (0..ITEMS).filter(|i| bad[*i].is_none()).map(|i| 1_000 + i64::try_from(i).unwrap()).sum();

    let started = Instant::now();
    let res = vouchers().await.create_vouchers(authed(tokio_stream::iter(items), &c.token)).await.unwrap().into_inner();
    let took = started.elapsed();
    eprintln!(
        "CreateVouchers: {ITEMS} items ({bad_count} bad) in {:.1} s, {:.0} items/s",
        took.as_secs_f64(),
        ITEMS as f64 / took.as_secs_f64()
    );
    assert_eq!(res.end(), pb::StreamEnd::Complete, "{}", res.end_message);
    assert_eq!(res.results.len(), ITEMS);
    assert_eq!((res.created as usize, res.failed as usize, res.replayed), (ITEMS - bad_count, bad_count, 0));
    for (i, r) in res.results.iter().enumerate() {
        assert_eq!(r.index as usize, i);
        match (&r.outcome, bad[i]) {
            (Some(Outcome::Voucher(v)), None) => assert!(v.voucher_number.starts_with("2025-"), "{v:?}"),
            (Some(Outcome::Error(e)), Some(field)) => {
                assert_eq!(e.code, i32::from(Code::InvalidArgument), "item {i}: {e:?}");
                assert!(e.field_violations.iter().any(|v| v.field == field), "item {i}: {e:?}");
            }
            (other, expected) => panic!("item {i}: {other:?}, expected error on {expected:?}"),
        }
    }

    // Exactly the good ones in Postgres, numbered without gaps in each month.
    let after = footprint(&pool, c.id).await;
    let good = i64::try_from(ITEMS - bad_count).unwrap();
    assert_eq!((after.0 - before.0, after.1 - before.1, after.3 - before.3), (good, 2 * good, good));
    let (total, gaps): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(total_debit), 0)::bigint,
                COALESCE(SUM(n - numbered), 0)::bigint
         FROM (SELECT date_trunc('month', voucher_date) AS m, count(*) AS numbered,
                      max(right(voucher_number, 6)::bigint) AS n, SUM(total_debit) AS total_debit
               FROM vouchers WHERE company_id = $1 GROUP BY 1) t",
    )
    .bind(c.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((total, gaps), (good_amount, 0));

    // Through the outbox, Kafka and the fold: every month's trial balance from ClickHouse equals Postgres's.
    outbox_drained(&pool, c.id).await;
    let expected = pg_trial_balance(&pool, c.id, 2025, 12).await;
    let folded = Instant::now();
    eventually(Duration::from_secs(FOLD_WAIT_SECONDS_MAX), "the stream's vouchers in the trial balance", || async {
        (grpc_trial_balance(&c.token, 2025, 12).await.0 == expected).then_some(())
    })
    .await;
    eprintln!("trial balance matched Postgres {:.1} s after the relay drained", folded.elapsed().as_secs_f64());
    for month in 1..=12 {
        let (tb, totals) = grpc_trial_balance(&c.token, 2025, month).await;
        assert_eq!(tb, pg_trial_balance(&pool, c.id, 2025, u32::try_from(month).unwrap()).await, "2025-{month:02}");
        assert_eq!((totals.opening_debit.clone(), totals.closing_debit.clone()), (totals.opening_credit, totals.closing_credit));
        assert_eq!(totals.period_debit, totals.period_credit);
    }
}

#[tokio::test]
async fn a_stream_ends_early_past_its_item_limit_or_at_an_unreadable_message() {
    let pool = pg().await;
    let c = company(&pool).await;
    // A server whose streams post at most five items.
    let mut config = grpc_common::config();
    config.create_vouchers_items_max = 5;
    let (small, _) = grpc_common::spawn(config, CancellationToken::new());
    let items: Vec<_> = (0..8).map(|i| item("", voucher("2025-06-01", "5212", "1101", 100 + i))).collect();
    let res = vouchers_at(small.addr).await.create_vouchers(authed(tokio_stream::iter(items), &c.token)).await.unwrap().into_inner();
    assert_eq!((res.results.len(), res.created, res.end()), (5, 5, pb::StreamEnd::ItemsMax));
    assert!(res.end_message.contains("CREATE_VOUCHERS_ITEMS_MAX"), "{}", res.end_message);
    assert_eq!(footprint(&pool, c.id).await.0, 5);

    // A message over REQUEST_MESSAGE_BYTES_MAX: a thousand lines of 500 three-byte characters each.
    let mut huge = voucher("2025-06-02", "5212", "1101", 1);
    huge.lines = (0..1000)
        .map(|i| pb::LineInput {
            account_code: "5212".into(),
            debit_amount: if i % 2 == 0 { 1 } else { 0 },
            credit_amount: if i % 2 == 0 { 0 } else { 1 },
            description: "가".repeat(500),
            ..Default::default()
        })
        .collect();
    assert!(prost::Message::encoded_len(&huge) > kerp_grpc::REQUEST_MESSAGE_BYTES_MAX);
    let e = vouchers().await.create_voucher(authed(item("", huge.clone()), &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert_eq!(footprint(&pool, c.id).await.0, 5);
    let items =
        vec![item("", voucher("2025-06-03", "5212", "1101", 1)), item("", huge), item("", voucher("2025-06-04", "5212", "1101", 1))];
    let res = vouchers().await.create_vouchers(authed(tokio_stream::iter(items), &c.token)).await.unwrap().into_inner();
    assert_eq!((res.results.len(), res.created, res.end()), (1, 1, pb::StreamEnd::Unreadable), "{}", res.end_message);
    assert!(res.end_message.starts_with("item 1 could not be read"), "{}", res.end_message);
    assert_eq!(footprint(&pool, c.id).await.0, 6, "neither the unreadable item nor the one after it was posted");
}

#[tokio::test]
async fn a_deadline_ends_a_stream_and_the_retry_with_the_same_request_ids_completes_it() {
    const ITEMS: usize = 3_000;
    let pool = pg().await;
    let c = company(&pool).await;
    let run = Uuid::new_v4().simple().to_string();
    let items: Vec<_> = (0..ITEMS)
        .map(|i| item(&format!("deadline-{run}-{i}"), voucher("2025-08-01", "5212", "1101", 1 + i64::try_from(i).unwrap())))
        .collect();
    let (bare, origin) = grpc_common::bare(grpc().addr);
    let mut req = authed(tokio_stream::iter(items.clone()), &c.token);
    server_deadline(&mut req, "500m");
    let e = VoucherServiceClient::with_origin(bare, origin).create_vouchers(req).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    // What was committed before the deadline stays, and nothing more lands after it; the item in flight, if any,
    // was rolled back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let landed = footprint(&pool, c.id).await.0;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(footprint(&pool, c.id).await.0, landed, "the server stopped at the deadline");
    let mut client = vouchers().await;
    assert!((1..i64::try_from(ITEMS).unwrap()).contains(&landed), "{landed} of {ITEMS} landed before the deadline");

    let res = client.create_vouchers(authed(tokio_stream::iter(items), &c.token)).await.unwrap().into_inner();
    assert_eq!(res.end(), pb::StreamEnd::Complete);
    assert_eq!((i64::from(res.replayed), i64::from(res.created), res.failed), (landed, i64::try_from(ITEMS).unwrap() - landed, 0));
    assert_eq!(footprint(&pool, c.id).await.0, i64::try_from(ITEMS).unwrap(), "every item exactly once");
}

#[tokio::test]
async fn calls_are_counted_in_the_metrics_and_the_internal_health_answers() {
    let pool = pg().await;
    let c = company(&pool).await;
    let mut client = vouchers().await;
    client.create_voucher(authed(item("", voucher("2025-07-01", "5212", "1101", 1)), &c.token)).await.unwrap();
    let e = client.create_voucher(tonic::Request::new(item("", voucher("2025-07-01", "5212", "1101", 1)))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let http = reqwest::Client::new();
    let text = http.get(format!("{}/metrics", grpc().metrics_url)).send().await.unwrap().text().await.unwrap();
    let has = |metric: &str, code: &str| {
        text.lines().any(|l| {
            l.starts_with(metric)
                && l.contains(r#"grpc_service="kerp.v1.VoucherService""#)
                && l.contains(r#"grpc_method="CreateVoucher""#)
                && l.contains(&format!(r#"grpc_code="{code}""#))
        })
    };
    for code in ["OK", "Unauthenticated"] {
        assert!(has("grpc_server_handled_total{", code), "no handled_total for {code}:\n{text}");
        assert!(has("grpc_server_handling_seconds_bucket{", code), "no handling_seconds for {code}");
    }
    let health = http.get(format!("{}/health", grpc().metrics_url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
