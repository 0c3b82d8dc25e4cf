//! Reconcile and rebuild against the real services. A stack of its own (its own topic and its own ClickHouse
//! database, so swapping tables cannot disturb other tests) folds vouchers; an aggregate is then corrupted on purpose
//! with a stray balance row. `reconcile` must fail and name it, `rebuild` must repair it from the topic and swap the
//! new version in, and `reconcile` must then pass, also for vouchers the live worker folds after the swap.

mod common;

use std::time::Duration;

use common::{eventually, simple_voucher, SECRET};
use kerp_core::auth::Role;
use kerp_core::clickhouse::uuid_literal;
use kerp_stream::rebuild::{self, RebuildArgs};
use kerp_stream::reconcile::{self, Scope};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_delta_is_found_by_reconcile_and_repaired_by_rebuild() {
    kerp_core::telemetry::init_logging();
    let run = Uuid::new_v4().simple().to_string();
    let topic = format!("kerp.test.rebuild.{run}");
    let mut ch_config = common::clickhouse();
    ch_config.clickhouse_database = format!("kerp_test_rebuild_{run}");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(kerp_ingest::serve_with_metrics(common::ingest_config(&topic), listener, None, shutdown.clone()));
    let mut worker = common::worker_config(&topic, &format!("kerp-test-rebuild-{run}"), ch_config.clone());
    // The worker's own periodic reconciliation, every second, seen through its metrics.
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    worker.metrics_listen.clone_from(&metrics_addr);
    worker.database_url = Some(common::database_url());
    worker.reconcile_interval_ms = 1_000;
    // Every run a full one: the stray row below is written by hand, with no event to move its company's watermark.
    worker.reconcile_full_every = 1;
    tokio::spawn(kerp_stream::run(worker.clone(), shutdown.clone()));
    let diff_won = |expected: f64| {
        let base = format!("http://{metrics_addr}");
        async move {
            eventually(Duration::from_secs(30), &format!("kerp_reconciliation_diff_won {expected}"), || async {
                (common::gauge(&base, "kerp_reconciliation_diff_won").await? == expected
                    && common::gauge(&base, "kerp_reconciliation_last_run_timestamp_seconds").await? > 0.0)
                    .then_some(())
            })
            .await;
        }
    };

    let pool = common::pg().await;
    let mut companies = Vec::new();
    for i in 0..2 {
        let name = format!("Rebuild {run} {i}");
        let c = kerp_ingest::company::create_company(&pool, &name, None, &format!("{run}-{i}@example.test"), &topic).await.unwrap();
        let token = kerp_ingest::company::token(SECRET, c.admin_user_id, c.company_id, Role::Admin, 3600).unwrap();
        companies.push((c.company_id, token));
    }
    let post = |token: String, n: i64| {
        let url = ingest_url.clone();
        async move {
            let body = simple_voucher(&format!("2025-0{}-1{}", 1 + n % 3, n % 10), "5212", "1101", 1000 + n);
            let r = common::http().post(format!("{url}/api/v1/vouchers")).bearer_auth(&token).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        }
    };
    let wait_exact = |expected_seq: i64| {
        let (pool, ch) = (pool.clone(), ch_config.client());
        async move {
            eventually(Duration::from_secs(90), "every voucher folded and reconciled", || async {
                let report = reconcile::reconcile(&pool, &ch, "", &Scope::default()).await.ok()?;
                (report.companies == 2 && report.behind.is_empty() && report.differences.is_empty()).then_some(report)
            })
            .await;
            let marks: Vec<i64> = ch.query("SELECT max(seq) FROM fold_watermarks GROUP BY company_id").fetch_all().await.unwrap();
            assert_eq!(marks, vec![expected_seq; 2]);
        }
    };
    for n in 0..15 {
        for (_, token) in &companies {
            post(token.clone(), n).await;
        }
    }
    wait_exact(15).await;

    // Corrupt: a stray balance row (a delta no event made) for the first company.
    let (victim, _) = companies[0];
    let ch = ch_config.client();
    let account: String = ch
        .query(&format!("SELECT toString(any(account_id)) FROM period_balances WHERE company_id = {}", uuid_literal(&victim)))
        .fetch_one()
        .await
        .unwrap();
    let account = Uuid::parse_str(&account).unwrap();
    ch.query(&format!(
        "INSERT INTO period_balances (company_id, account_id, period, company_seq, debit, credit)
         VALUES ({}, {}, toDate('2025-01-01'), 0, 12345, 0)",
        uuid_literal(&victim),
        uuid_literal(&account)
    ))
    .execute()
    .await
    .unwrap();
    let report = reconcile::reconcile(&pool, &ch, "", &Scope::default()).await.unwrap();
    assert_eq!(report.differences.len(), 1, "{:?}", report.differences);
    let d = &report.differences[0];
    assert_eq!((d.company, d.account, d.table, d.won()), (victim, account, "period_balances", 12345));
    assert!(d.to_string().contains("2025-01"), "{d}");
    let scoped = reconcile::reconcile(&pool, &ch, "", &Scope { company: Some(companies[1].0), ..Scope::default() }).await.unwrap();
    assert!(scoped.differences.is_empty(), "--company limits the comparison");
    diff_won(12345.0).await;

    // Rebuild from the topic: the new version is exact and replaces the live one.
    let summary = rebuild::rebuild(&worker, &pool, &RebuildArgs { grace_seconds: 0, no_swap: false }, &shutdown).await.unwrap();
    assert!(summary.swapped);
    assert_eq!(summary.lines, 2 * 15 * 2, "every ledger line of the topic was folded once");
    let report = reconcile::reconcile(&pool, &ch, "", &Scope::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    let old: u64 = ch
        .query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND (name LIKE '%__old_%' OR name LIKE '%__rebuild')")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(old, 0, "the old version is dropped after the grace period, and nothing is left half-built");
    diff_won(0.0).await;

    // The live worker goes on folding into the swapped-in tables.
    for n in 15..20 {
        for (_, token) in &companies {
            post(token.clone(), n).await;
        }
    }
    wait_exact(20).await;

    // The database is this run's own: drop it, or every run leaves one behind. The worker stops first.
    shutdown.cancel();
    ch.query(&format!("DROP DATABASE IF EXISTS `{}`", ch_config.clickhouse_database)).execute().await.unwrap();
}
