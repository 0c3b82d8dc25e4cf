//! Reconcile against the real services, on pipelines of their own (a topic and a ClickHouse database each, see
//! `common/pipeline.rs`), since both tests damage the aggregates on purpose:
//!
//! - a company whose rows and watermark are gone from ClickHouse is still seen, from Postgres, as in flight (not
//!   exact, not settled), by the library and by the `stream-workers reconcile` command; a rebuild brings it back;
//! - a corrupt balance snapshot row (what the trial balance reads) is a difference: named by reconcile, counted in
//!   the worker's `kerp_reconciliation_diff_won`, and the command exits 1 on it;
//! - a periodic partial run compares a company that compared clean before from there: it finds a difference in its
//!   events since and a wrong new snapshot, and leaves a change below that watermark to the full run.

mod common;

use std::process::Output;
use std::time::Duration;

use chrono::NaiveDate;
use common::pipeline::Pipeline;
use common::{eventually, simple_voucher};
use kerp_core::clickhouse::uuid_literal;
use kerp_stream::rebuild::{self, RebuildArgs};
use kerp_stream::reconcile::{self, Clean, Scope};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Runs `stream-workers reconcile` with these arguments on the pipeline's database.
async fn reconcile_command(p: &Pipeline, args: &[&str]) -> (Option<i32>, String) {
    let mut c = p.worker_command();
    c.arg("reconcile").args(args);
    let out: Output = tokio::task::spawn_blocking(move || c.output().expect("run stream-workers reconcile")).await.expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.code().is_some_and(|c| c <= 1), "reconcile failed: {}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), stdout)
}

/// Deletes every aggregate row and the watermark of `company` from the live tables, and waits for the deletions
/// (mutations, which ClickHouse applies in the background) to be done.
async fn erase(p: &Pipeline, company: Uuid) {
    let ch = p.ch();
    for table in ["ledger_lines", "period_balances", "balance_snapshots", "snapshot_heads", "fold_watermarks"] {
        ch.query(&format!("ALTER TABLE {table} DELETE WHERE company_id = {}", uuid_literal(&company))).execute().await.expect("delete");
    }
    eventually(Duration::from_secs(60), "the deletions to be applied", || async {
        let pending: u64 =
            ch.query("SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0").fetch_one().await.ok()?;
        (pending == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_missing_from_clickhouse_is_in_flight_never_exact() {
    let p = Pipeline::start("reconcile_missing", |_| {}).await;
    let (lost, lost_token) = p.company("Lost").await;
    let (kept, kept_token) = p.company("Kept").await;
    for n in 0..3 {
        p.post(&lost_token, &simple_voucher(&format!("2025-0{}-10", 1 + n), "5212", "1101", 1000 + n)).await;
        p.post(&kept_token, &simple_voucher("2025-01-20", "5212", "1101", 500)).await;
    }
    let report = p.settled(&[lost, kept]).await;
    assert_eq!(report.watermarks, {
        let mut w = vec![(lost, 3), (kept, 3)];
        w.sort();
        w
    });

    // ClickHouse loses everything of one company. Postgres still has its vouchers, so reconcile must say so: its
    // folded sequence is now 0 and all three events are in flight. (Before, its company list came from the watermarks
    // alone, and it reported one company, exact.)
    erase(&p, lost).await;
    let report = p.reconcile(&[lost, kept]).await;
    assert_eq!(report.companies, 2, "{report:?}");
    assert_eq!(report.behind, vec![(lost, 0, 3)]);
    assert!(report.differences.is_empty(), "events in flight are not differences: {:?}", report.differences);
    assert!(!report.settled());
    // --company and --period narrow the companies Postgres names too.
    let one = reconcile::reconcile(&p.pool, &p.ch(), "", &Scope { company: Some(lost), ..Scope::default() }).await.unwrap();
    assert_eq!((one.companies, one.behind.clone()), (1, vec![(lost, 0, 3)]));
    let march = NaiveDate::from_ymd_opt(2025, 3, 1);
    let only = Some([lost, kept].into());
    let in_march =
        reconcile::reconcile(&p.pool, &p.ch(), "", &Scope { period: march, only: only.clone(), ..Scope::default() }).await.unwrap();
    assert_eq!(in_march.behind, vec![(lost, 0, 3)], "its March voucher is in flight");
    let july = NaiveDate::from_ymd_opt(2025, 7, 1);
    let in_july = reconcile::reconcile(&p.pool, &p.ch(), "", &Scope { period: july, only, ..Scope::default() }).await.unwrap();
    assert!(in_july.behind.is_empty() && in_july.differences.is_empty(), "nothing of July is in flight: {in_july:?}");

    // The command says the same: exit 0 (in flight is not a difference), and the company listed as in flight, so that
    // whatever waits for nothing in flight (the fault suite's verdict) keeps waiting.
    let (code, out) = reconcile_command(&p, &["--company", &lost.to_string()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("in flight: company {lost} folded up to sequence 0, Postgres is at 3 (nothing of it is in ClickHouse)")),
        "{out}"
    );

    // A rebuild from the topic brings the company back.
    let shutdown = CancellationToken::new();
    let summary = rebuild::rebuild(&p.worker, &p.pool, &RebuildArgs { grace_seconds: 0, no_swap: false, settle_seconds: 0 }, &shutdown)
        .await
        .unwrap();
    assert!(summary.swapped);
    let report = p.settled(&[lost, kept]).await;
    assert!(report.watermarks.contains(&(lost, 3)), "{report:?}");
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_balance_snapshot_fails_reconcile_and_is_named() {
    let p = Pipeline::start("reconcile_snapshot", |w| {
        // No periodic reconciliation here: the worker would repair the corruption below (the next test), and this one
        // is about finding and naming it.
        w.reconcile_interval_ms = 0;
    })
    .await;
    let (company, token) = p.company("Snapshot").await;
    for n in 0..4 {
        p.post(&token, &simple_voucher("2025-02-14", "5212", "1101", 10_000 + n)).await;
    }
    p.settled(&[company]).await;
    p.snapshot_at(company, 4).await;
    let report = p.reconcile(&[company]).await;
    assert_eq!((report.snapshots, report.differences.len()), (1, 0), "{report:?}");
    let (code, out) = reconcile_command(&p, &["--company", &company.to_string()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 balance snapshots checked, 0 differences"), "{out}");

    // A second copy of one snapshot row, 777 won off, written in the same second as the first. Readers take the newest
    // copy, and of copies of one second any one, so it may be what the trial balance shows.
    let ch = p.ch();
    let c = uuid_literal(&company);
    let (account, debit): (String, String) = ch
        .query(&format!(
            "SELECT toString(account_id), toString(debit) FROM balance_snapshots
             WHERE company_id = {c} AND upto_seq = 4 AND debit > 0 LIMIT 1"
        ))
        .fetch_one()
        .await
        .expect("a snapshot row");
    let wrong: i128 = debit.parse::<i128>().unwrap() + 777;
    ch.query(&format!(
        "INSERT INTO balance_snapshots (company_id, upto_seq, account_id, period, debit, credit, line_count, created_at)
         SELECT company_id, upto_seq, account_id, period, toDecimal128({wrong}, 0), credit, line_count, created_at
         FROM balance_snapshots WHERE company_id = {c} AND upto_seq = 4 AND account_id = toUUID('{account}') LIMIT 1"
    ))
    .execute()
    .await
    .expect("corrupt the snapshot");

    let report = p.reconcile(&[company]).await;
    assert_eq!(report.differences.len(), 1, "{:?}", report.differences);
    let d = &report.differences[0];
    let account = Uuid::parse_str(&account).unwrap();
    assert_eq!((d.company, d.account, d.table, d.upto_seq, d.won()), (company, account, "balance_snapshots", 4, 777));
    assert!(d.to_string().contains("2025-02") && d.to_string().contains("balance_snapshots"), "{d}");
    assert!(report.behind.is_empty());

    // The command exits 1 and names it; restricted to another month it finds nothing.
    let (code, out) = reconcile_command(&p, &["--company", &company.to_string()]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(&format!("DIFFERENCE company {company} account {account} 2025-02: balance_snapshots"))),
        "{out}"
    );
    let (code, out) = reconcile_command(&p, &["--company", &company.to_string(), "--period", "2025-03"]).await;
    assert_eq!(code, Some(0), "{out}");
    p.finish().await;
}

/// The worker's periodic reconciliation finds a wrong snapshot over right balance rows and rewrites it from the rows
/// (`snapshot::repair`), so what the reports read is right again without an operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_repairs_a_wrong_balance_snapshot() {
    let p = Pipeline::start("reconcile_repair", |w| {
        // Every second and always in full: the corruption below moves no watermark.
        w.reconcile_interval_ms = 1_000;
        w.reconcile_full_every = 1;
    })
    .await;
    let (company, token) = p.company("Repair").await;
    for n in 0..4 {
        p.post(&token, &simple_voucher("2025-02-14", "5212", "1101", 10_000 + n)).await;
    }
    p.settled(&[company]).await;
    p.snapshot_at(company, 4).await;

    // A newer copy of one snapshot row, 777 won off: the one readers take.
    newer_wrong_copy(&p, company, 4, "").await;

    eventually(Duration::from_secs(30), "balance_snapshot_repairs_total >= 1", || async {
        (common::gauge(&p.metrics_url, "balance_snapshot_repairs_total").await? >= 1.0).then_some(())
    })
    .await;
    let report = p.reconcile(&[company]).await;
    assert_eq!((report.snapshots, report.differences.len()), (1, 0), "{report:?}");
    p.finish().await;
}

/// Writes a copy of one debit row of the company's snapshot at `seq` (narrowed by the SQL `and_where`), 777 won off and
/// a second newer than the row it copies, so it is the copy readers take.
async fn newer_wrong_copy(p: &Pipeline, company: Uuid, seq: i64, and_where: &str) {
    p.ch()
        .query(&format!(
            "INSERT INTO balance_snapshots (company_id, upto_seq, account_id, period, debit, credit, line_count, created_at)
             SELECT company_id, upto_seq, account_id, period, toDecimal128(toString(debit + 777), 0), credit, line_count,
                    created_at + 1
             FROM balance_snapshots WHERE company_id = {} AND upto_seq = {seq}{and_where} AND debit > 0 LIMIT 1",
            uuid_literal(&company)
        ))
        .execute()
        .await
        .expect("a wrong copy of a snapshot row");
}

/// A row of `period_balances` that Postgres has no voucher line for: `debit` won on a made-up account, in `period`, as
/// the company's event `seq`.
async fn stray_balance(p: &Pipeline, company: Uuid, seq: i64, period: &str, debit: i64) {
    p.ch()
        .query(&format!(
            "INSERT INTO period_balances (company_id, account_id, period, company_seq, debit, credit, line_count)
             VALUES ({}, {}, toDate('{period}'), {seq}, {debit}, 0, 1)",
            uuid_literal(&company),
            uuid_literal(&Uuid::new_v4())
        ))
        .execute()
        .await
        .expect("insert a stray balance row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_run_compares_a_company_from_where_it_was_clean() {
    let p = Pipeline::start("reconcile_partial", |_| {}).await;
    let (company, token) = p.company("Partial").await;
    p.post(&token, &simple_voucher("2025-01-10", "5212", "1101", 1_000)).await;
    p.post(&token, &simple_voucher("2025-01-11", "5212", "1101", 2_000)).await;
    p.post(&token, &simple_voucher("2025-02-12", "5212", "1101", 3_000)).await;
    p.settled(&[company]).await;
    p.snapshot_at(company, 3).await;
    let clean = p.reconcile(&[company]).await;
    assert_eq!((clean.watermarks.clone(), clean.differences.len()), (vec![(company, 3)], 0), "{clean:?}");
    assert_eq!(clean.snapshot_seqs.get(&company), Some(&3), "the snapshot checked is remembered with the watermark");

    // The company posts into March, and the worker snapshots it at 4 (on the one at 3).
    p.post(&token, &simple_voucher("2025-03-13", "5212", "1101", 4_000)).await;
    p.snapshot_at(company, 4).await;
    let partial = |since: i64, snapshot: i64| {
        let scope =
            Scope { only: Some([company].into()), since: [(company, Clean { watermark: since, snapshot })].into(), ..Scope::default() };
        let (pool, ch) = (p.pool.clone(), p.ch());
        async move { reconcile::reconcile(&pool, &ch, "", &scope).await.unwrap() }
    };
    // From 3: the March voucher's two keys (5212 and 1101), and the snapshot at 4 against the one at 3 plus it.
    let from_3 = partial(3, 3).await;
    assert_eq!((from_3.compared, from_3.snapshots, from_3.differences.len()), (2, 1, 0), "{from_3:?}");
    assert_eq!(from_3.snapshot_seqs.get(&company), Some(&4));

    // January goes wrong outside the fold, below the clean watermark: only the full run sees it. March goes wrong
    // at sequence 4, above it: the partial run sees that, named with the range it summed.
    stray_balance(&p, company, 1, "2025-01-01", 111).await;
    stray_balance(&p, company, 4, "2025-03-01", 222).await;
    let found = partial(3, 3).await;
    let d: Vec<(&str, NaiveDate, i64, i64, i128)> =
        found.differences.iter().map(|d| (d.table, d.period, d.after_seq, d.upto_seq, d.won())).collect();
    assert_eq!(d, vec![("period_balances", NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(), 3, 4, 222)], "{found:?}");
    assert!(found.differences[0].to_string().contains("events after sequence 3 up to sequence 4"), "{}", found.differences[0]);

    // A wrong copy of the new snapshot is found from the one checked before, and, with no base to build on, against
    // Postgres in full.
    newer_wrong_copy(&p, company, 4, " AND period = toDate('2025-01-01')").await;
    for base in [3, 0] {
        let wrong = partial(3, base).await;
        let snap: Vec<(NaiveDate, i64, i128)> =
            wrong.differences.iter().filter(|d| d.table == "balance_snapshots").map(|d| (d.period, d.upto_seq, d.won())).collect();
        assert_eq!(snap, vec![(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), 4, 777)], "base {base}: {wrong:?}");
    }
    // With the snapshot at 4 remembered as checked, it is not compared again.
    let same = partial(3, 4).await;
    assert_eq!((same.snapshots, same.differences.len()), (0, 1), "{same:?}");

    // The full run sees both months' differences in the table the stray rows went into, and the wrong snapshot.
    let full = p.reconcile(&[company]).await;
    let mut periods: Vec<(&str, NaiveDate, i128)> = full.differences.iter().map(|d| (d.table, d.period, d.won())).collect();
    periods.sort();
    assert_eq!(
        periods,
        vec![
            ("balance_snapshots", NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), 777),
            ("period_balances", NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), 111),
            ("period_balances", NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(), 222)
        ]
    );
    p.finish().await;
}
