//! A real double write, against the real ClickHouse: the same folded batch written twice, as two workers that both
//! think they own a partition would write it, and a batch cut off after its business INSERTs but before its watermark
//! INSERT, then written whole by the worker that takes over. Both go through the code path the live worker uses
//! (`fold::fold` on decoded Kafka payloads, then `sink::write`), and the result is read back the way the reports read
//! it (`kerp_query::store::bucket_sums`: the newest balance snapshot plus the collapsed rows above it, and the ledger
//! lines with `FINAL`), together with the ledger's line count and the stored watermark.
//!
//! The argument of docs/exactly-once.md section 3 is that every aggregate row is a function of one event, keyed by its
//! `(company, seq)` in a `ReplacingMergeTree`, so a second copy replaces the first instead of adding to it, and that
//! the watermark is written last, so it never claims rows that are not durable. `stream-workers/tests/fencing.rs`
//! shows a stale worker giving its batch up; here the second write does happen, and every sum must still be exact.

mod common;

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use kerp_query::store::bucket_sums;
use kerp_schemas::VoucherPosted;
use kerp_stream::fold::{self, FoldOutput, FoldState, Message};
use kerp_stream::{sink, snapshot};
use rand::SeedableRng;
use uuid::Uuid;

/// Per (account, month bucket): the debit and credit a report shows. Bucket 0 is January 2025, 1 February, 2 March.
type Buckets = BTreeMap<(Uuid, u8), (i128, i128)>;

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

/// A database of the test's own, dropped at the end, so that what it finds was written by this test alone.
async fn database() -> clickhouse::Client {
    let mut cfg = common::clickhouse();
    cfg.clickhouse_database = format!("kerp_test_double_write_{}", Uuid::new_v4().simple());
    sink::migrate(&cfg.server_client(), &cfg.clickhouse_database, "").await.expect("migrate");
    // The worker's own client, with the settings that make a returned INSERT durable and visible.
    sink::writer(&cfg.client()).await.expect("writer")
}

/// Each event through the real codec and back, as the worker receives it: encoded as the relay publishes it, decoded
/// as `Fetched::decode` does, at consecutive offsets of one partition.
fn messages(events: &[VoucherPosted], first_offset: i64) -> Vec<Message> {
    (first_offset..)
        .zip(events)
        .map(|(offset, e)| {
            let payload = kerp_schemas::encode_voucher_posted(e).expect("encode");
            Message {
                partition: 0,
                offset,
                key_company: Some(e.company_id),
                event: kerp_schemas::decode(&payload).map_err(|e| e.to_string()),
            }
        })
        .collect()
}

/// A worker's fold state as it is right after it was assigned the partition: the company's watermark loaded from
/// ClickHouse, nothing else.
async fn assigned(ch: &clickhouse::Client, company: Uuid) -> FoldState {
    let mut state = FoldState::default();
    state.load_watermarks(sink::load_company_watermarks(ch, "", &[company]).await.expect("watermarks"));
    state
}

fn fold_all(messages: &[Message], state: &mut FoldState) -> FoldOutput {
    let out = fold::fold(messages, state, &HashSet::new());
    assert!(out.new_holds.is_empty(), "nothing may hold: {:?}", out.new_holds);
    out
}

/// What the reports must show for `events`, per account and month bucket.
fn expected(events: &[VoucherPosted]) -> Buckets {
    let mut out = Buckets::new();
    for ((_, account, period), (debit, credit)) in common::expected_totals(events) {
        // The periods of `common::event`: 2025-01-01, 2025-02-01 and 2025-03-01 in days since the epoch.
        let bucket = match period {
            20_089 => 0,
            20_120 => 1,
            _ => 2,
        };
        let e = out.entry((account, bucket)).or_default();
        e.0 += i128::from(debit);
        e.1 += i128::from(credit);
    }
    out
}

/// A report's per-month sums of the company, from the balances (its newest snapshot plus the tail above it, as the
/// reports read them) or else from the ledger lines.
async fn report(ch: &clickhouse::Client, company: Uuid, balances: bool) -> Buckets {
    let cuts = [day(2025, 2, 1), day(2025, 3, 1)];
    let through = day(2025, 3, 31);
    let rows = if balances {
        // As query-api reads them: a snapshot read and held, then (the second read) the held one plus the tail.
        let cache = std::sync::Arc::default();
        let first = kerp_query::balances::company_balances(ch, &cache, company).await.expect("balances read");
        let held = kerp_query::balances::company_balances(ch, &cache, company).await.expect("balances read");
        assert_eq!(first.buckets(None, &cuts, through), held.buckets(None, &cuts, through), "a held snapshot reads the same");
        held.buckets(None, &cuts, through)
    } else {
        bucket_sums(ch, company, None, None, &cuts, through).await.expect("report read")
    };
    let mut out = Buckets::new();
    for r in rows.into_iter().filter(|r| !r.movement.is_zero()) {
        out.insert((r.account_id, r.bucket), (r.movement.debit, r.movement.credit));
    }
    out
}

async fn watermark(ch: &clickhouse::Client, company: Uuid) -> Option<i64> {
    sink::all_watermarks(ch, "", Some(company)).await.expect("watermark").first().map(|w| w.seq)
}

/// Every reader sees `events` exactly once: balances, ledger lines (sums and count) and the watermark.
async fn assert_exact(ch: &clickhouse::Client, company: Uuid, events: &[VoucherPosted], what: &str) {
    let want = expected(events);
    assert_eq!(report(ch, company, true).await, want, "{what}: balances");
    assert_eq!(report(ch, company, false).await, want, "{what}: ledger line sums");
    let lines: u64 = events.iter().map(|e| e.lines.len() as u64).sum();
    assert_eq!(common::ledger_line_count(ch, &[company]).await, lines, "{what}: ledger line count");
    assert_eq!(watermark(ch, company).await, events.last().map(|e| e.company_seq), "{what}: watermark");
}

// Why this fails if rows were summed instead of collapsed: before per-event rows, `period_balances` was a
// SummingMergeTree of batch deltas keyed by (company, account, month), so the second `sink::write` of the same batch
// added every amount again and each balance below would be exactly twice the expected one; any engine or key under
// which two copies of one event's row do not collapse into one (a plain MergeTree, a key without `company_seq`) doubles
// them the same way, and the line count doubles if `ledger_lines` does not collapse. It was checked by recreating
// `period_balances` after `migrate` as `SummingMergeTree ORDER BY (company_id, company_seq, account_id, period)` (before
// `migrate` it would be taken for the legacy layout and renamed aside): the first assertion after the double write then
// fails with every balance doubled.
#[tokio::test]
async fn a_batch_written_twice_or_cut_off_before_its_watermark_counts_once() {
    kerp_core::telemetry::init_logging();
    let ch = database().await;
    let company = Uuid::new_v4();
    let accounts: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let events: Vec<VoucherPosted> = (1..=40).map(|seq| common::event(&mut rng, company, seq, &accounts)).collect();
    let all = messages(&events, 0);

    // 1. Two workers, both assigned the partition while nothing of the company is written (the stale owner and the
    // new one of a rebalance), fold the same first batch and both write it.
    let (mut stale, mut owner) = (assigned(&ch, company).await, assigned(&ch, company).await);
    let stale_out = fold_all(&all[..24], &mut stale);
    let owner_out = fold_all(&all[..24], &mut owner);
    assert_eq!(stale_out.folded.len(), 24, "the stale worker folds the batch");
    assert_eq!(stale_out, owner_out, "both workers make the same rows from the same events");
    sink::write(&ch, "", &owner_out, &[]).await.expect("first write");
    assert_exact(&ch, company, &events[..24], "one write").await;
    sink::write(&ch, "", &stale_out, &[]).await.expect("second write of the same batch");
    assert_exact(&ch, company, &events[..24], "the same batch written twice").await;

    // 2. The owner folds the next batch and dies after its business INSERTs, before its watermark INSERT: the batch
    // written without its watermark rows is exactly what such a crash leaves behind.
    let cut_off = fold_all(&all[24..], &mut owner);
    assert_eq!(cut_off.watermarks.len(), 1, "the batch advances the company's watermark");
    let business_only = FoldOutput { watermarks: Vec::new(), ..cut_off.clone() };
    sink::write(&ch, "", &business_only, &[]).await.expect("business rows of the cut-off batch");
    assert_eq!(watermark(&ch, company).await, Some(24), "the watermark claims nothing of the cut-off batch");

    // The worker that takes over loads the watermark and reads again from the group's committed offset, which may lie
    // before the end of the first batch (commits are asynchronous): events 17 to 24 are duplicates, 25 to 40 are folded
    // again, over the rows the crash left, and this time the watermark follows.
    let mut successor = assigned(&ch, company).await;
    let replay = fold_all(&all[16..], &mut successor);
    assert_eq!((replay.duplicates, replay.folded.len()), (8, 16), "the successor skips what the watermark claims");
    sink::write(&ch, "", &replay, &[]).await.expect("the successor's write");
    assert_exact(&ch, company, &events, "a cut-off batch written whole again").await;

    // 3. Reports read a balance snapshot plus the rows above it. A snapshot is taken, then both stale copies land late
    // (the first batch once more, the cut-off batch with its watermark): the snapshot counted each event once, and the
    // late copies fall at or below it and collapse into rows it already covers.
    snapshot::snapshot_company(&ch, "", company, None).await.expect("snapshot");
    assert_eq!(kerp_query::store::snapshot_seq(&ch, company).await.expect("snapshot seq"), 40, "reports read the snapshot");
    sink::write(&ch, "", &stale_out, &[]).await.expect("late stale write");
    sink::write(&ch, "", &cut_off, &[]).await.expect("late cut-off batch");
    assert_exact(&ch, company, &events, "late copies after a snapshot").await;

    let db: String = ch.query("SELECT currentDatabase()").fetch_one().await.expect("database");
    ch.query(&format!("DROP DATABASE IF EXISTS `{db}`")).execute().await.expect("drop database");
}

/// A batch that brings a company's chart of accounts with its first vouchers must not show a balance before the account
/// it belongs to: reports name accounts from the `accounts` dimension without waiting for the watermark, and a balance
/// without its account is listed for a moment under an empty code (the trial balance of a fresh company was seen that way
/// by `e2e/tests/invoices.rs`). So `sink::write` makes the dimension rows durable before it sends any fact. Here the
/// dimension INSERT fails (its table is gone), and not one fact of the batch may be in ClickHouse afterwards. When the
/// dimensions were sent together with the facts, the ledger lines and balances of this batch were written regardless.
#[tokio::test]
async fn no_fact_of_a_batch_is_written_before_its_dimension_rows() {
    let ch = database().await;
    let company = Uuid::new_v4();
    let accounts: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let events: Vec<VoucherPosted> = (1..=6).map(|seq| common::event(&mut rng, company, seq, &accounts)).collect();
    let mut out = fold_all(&messages(&events, 0), &mut assigned(&ch, company).await);
    assert!(!out.lines.is_empty() && !out.balances.is_empty(), "the batch has facts");
    out.accounts = accounts
        .iter()
        .zip(["1101", "1102", "4101", "5101"])
        .map(|(&account_id, code)| fold::AccountRow {
            company_id: company,
            account_id,
            code: code.to_owned(),
            name: format!("account {code}"),
            account_type: "asset".to_owned(),
            version: 1,
        })
        .collect();
    ch.query("DROP TABLE accounts").execute().await.expect("drop the dimension table");

    assert!(sink::write(&ch, "", &out, &[]).await.is_err(), "the dimension INSERT fails");
    // The fact INSERTs of the old order were answered within milliseconds of the failing one; give any such write the
    // time to land before looking.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(common::ledger_line_count(&ch, &[company]).await, 0, "no ledger line before its accounts");
    assert_eq!(report(&ch, company, true).await, Buckets::new(), "no balance before its accounts");
    assert_eq!(watermark(&ch, company).await, None, "no watermark");

    let db: String = ch.query("SELECT currentDatabase()").fetch_one().await.expect("database");
    ch.query(&format!("DROP DATABASE IF EXISTS `{db}`")).execute().await.expect("drop database");
}

/// The settings the argument above relies on (one block per INSERT; on a server with asynchronous inserts, none) are
/// pinned on every query of the writer's client, whatever the client it is made from carries: here one whose
/// `max_insert_block_size` is skewed, as a server's or profile's default could be, and the writer's queries still run
/// at the pinned value. (18.16 has no asynchronous inserts, so there only the block size is pinned; the unit test of
/// `sink::insert_settings` covers a current server.)
#[tokio::test]
async fn the_writers_queries_carry_the_settings_atomicity_relies_on() {
    const SKEWED_BLOCK_ROWS: &str = "12345";
    let plain = common::clickhouse().client();
    let version: String = plain.query("SELECT version()").fetch_one().await.expect("version");
    let skewed = plain.clone().with_option("max_insert_block_size", SKEWED_BLOCK_ROWS);
    let writer = sink::writer(&skewed).await.expect("writer");
    let setting = |client: clickhouse::Client, name: &'static str| async move {
        client.query("SELECT value FROM system.settings WHERE name = ?").bind(name).fetch_one::<String>().await.expect("setting")
    };
    assert_eq!(setting(skewed.clone(), "max_insert_block_size").await, SKEWED_BLOCK_ROWS, "the skew reaches the server");
    let pinned = sink::insert_settings(&version);
    assert!(pinned.iter().any(|(name, _)| *name == "max_insert_block_size"), "{pinned:?}");
    for (name, value) in pinned {
        assert_eq!(setting(writer.clone(), name).await, value, "{name} on the writer's queries");
    }
}
