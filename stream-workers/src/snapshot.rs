//! Balance snapshots: each company's folded `period_balances` summed per account and month up to a sequence its
//! watermark reached, written to `balance_snapshots` (see `migrations/clickhouse/0004_snapshots.sql`). Reports read
//! the newest snapshot plus the few rows above it instead of collapsing every row the company ever posted.
//!
//! What flows through here: the companies' watermarks and newest snapshots in, a plan of which companies to
//! snapshot ([`due`], pure), per planned company its watermark and then one `INSERT … SELECT` bounded by it, then its
//! head (`snapshot_heads`, see `migrations/clickhouse/0005_snapshot_heads.sql`), the full rewrite of a snapshot the
//! reconciler found wrong ([`repair`]), and now and then the drop of hour partitions that only hold superseded
//! snapshots ([`droppable`], pure).
//!
//! Exactness does not depend on timing. Each snapshot reads the watermark before the rows, and a watermark is only
//! written after the rows it covers are durable, so a snapshot at `upto_seq` holds exactly the events up to it. A
//! snapshot written twice (a retry, two workers) repeats equal rows; readers take the newest copy of each.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use clickhouse::{Client, Row};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Result;
use kerp_core::clickhouse::uuid_literal;

/// Most companies snapshotted in one round. Each costs ClickHouse one pass over that company's balance rows, so a
/// worker starting on many companies at once spreads them over rounds rather than stalling the fold's inserts.
pub const SNAPSHOT_COMPANIES_PER_ROUND_MAX: usize = 16;
/// A company whose unsnapshotted tail is at least this many events is snapshotted in the next round, however
/// recently it was last. Bounds the rows a report collapses above the snapshot (about one or two per event).
pub const SNAPSHOT_TAIL_EVENTS_MIN: i64 = 1_000;
/// A company with a newest snapshot older than this, in seconds, is snapshotted again even with nothing new, so
/// that its newest snapshot always has a copy in a recent hour partition and old partitions can be dropped.
pub const SNAPSHOT_REFRESH_AFTER_S: i64 = 1_800;
/// Hour partitions younger than this many hours are kept whatever they hold.
pub const SNAPSHOT_RETENTION_HOURS: i64 = 2;
/// How often old partitions are looked for, in milliseconds.
const RETENTION_CHECK_INTERVAL_MS: u64 = 300_000;
/// Seconds per partition of `balance_snapshots` (`PARTITION BY intDiv(toUInt32(created_at), 3600)`).
const PARTITION_SECONDS: i64 = 3_600;

/// How the snapshot task runs; from the worker's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// Time between rounds, in milliseconds.
    pub interval_ms: u64,
    /// A tail shorter than [`SNAPSHOT_TAIL_EVENTS_MIN`] waits until the newest snapshot is this old, in milliseconds.
    pub idle_ms: u64,
}

/// A company's newest snapshot: the sequence it covers and when it was written (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    pub upto_seq: i64,
    pub created_at_s: i64,
}

/// The companies to snapshot now, longest tail first, at most [`SNAPSHOT_COMPANIES_PER_ROUND_MAX`]: those with a
/// tail of [`SNAPSHOT_TAIL_EVENTS_MIN`] or more; those with any tail whose newest snapshot is `idle_s` old (or that
/// have none); and those whose newest snapshot is due for its refresh.
#[must_use]
pub fn due(watermarks: &[(Uuid, i64)], latest: &HashMap<Uuid, Latest>, now_s: i64, idle_s: i64) -> Vec<Uuid> {
    let mut plan: Vec<(i64, Uuid)> = watermarks
        .iter()
        .filter_map(|&(company, w)| {
            let (upto, age) = latest.get(&company).map_or((0, i64::MAX), |l| (l.upto_seq, now_s - l.created_at_s));
            let tail = w - upto;
            let take = (tail >= SNAPSHOT_TAIL_EVENTS_MIN) || (tail > 0 && age >= idle_s) || (w > 0 && age >= SNAPSHOT_REFRESH_AFTER_S);
            take.then_some((tail, company))
        })
        .collect();
    plan.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    plan.into_iter().take(SNAPSHOT_COMPANIES_PER_ROUND_MAX).map(|(_, c)| c).collect()
}

/// The hour partitions that may be dropped: older than [`SNAPSHOT_RETENTION_HOURS`] and not holding the newest copy
/// of any company's newest snapshot (`protected`).
#[must_use]
pub fn droppable(partitions: &[i64], protected: &HashSet<i64>, now_s: i64) -> Vec<i64> {
    let keep_from = now_s / PARTITION_SECONDS - SNAPSHOT_RETENTION_HOURS;
    partitions.iter().copied().filter(|p| *p < keep_from && !protected.contains(p)).collect()
}

#[derive(Debug, Row, Deserialize)]
struct SnapshotRow {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    upto_seq: i64,
    created_s: u32,
}

/// Per company, its snapshots' sequences and the time of the newest copy of each, from `table`: the snapshots'
/// rows (`balance_snapshots`, for retention, which must see every copy) or their heads (`snapshot_heads`, one row
/// per snapshot written, for planning a round: the rows are hundreds of thousands and were read every second).
async fn snapshot_rows(ch: &Client, table: &str, suffix: &str) -> Result<Vec<SnapshotRow>> {
    Ok(ch
        .query(&format!(
            "SELECT company_id, upto_seq, toUInt32(max(created_at)) AS created_s FROM {table}{suffix}
             GROUP BY company_id, upto_seq"
        ))
        .fetch_all()
        .await?)
}

/// Each company's newest snapshot, from [`snapshot_rows`].
fn newest(rows: &[SnapshotRow]) -> HashMap<Uuid, Latest> {
    let mut out: HashMap<Uuid, Latest> = HashMap::new();
    for r in rows {
        let l = Latest { upto_seq: r.upto_seq, created_at_s: i64::from(r.created_s) };
        out.entry(r.company_id).and_modify(|cur| *cur = (*cur).max_by_seq(l)).or_insert(l);
    }
    out
}

impl Latest {
    /// The newer of two: the higher sequence, and of equal ones the later copy.
    fn max_by_seq(self, other: Latest) -> Latest {
        if (other.upto_seq, other.created_at_s) > (self.upto_seq, self.created_at_s) {
            other
        } else {
            self
        }
    }
}

/// Writes one company's snapshot at its current watermark, then its head (`snapshot_heads`, what reports look the
/// newest snapshot up in).
///
/// The watermark is read first, in a statement of its own, and the rows after it, bounded by that number. A
/// watermark is written only once the rows it covers are durable, so rows read after it hold every event up to it.
/// The two were once read in one statement, the watermark through a JOIN; ClickHouse runs a JOIN's right side only
/// when the statement starts reading, after it has picked the parts the rows come from, so a batch whose rows and
/// watermark landed in between was counted by the watermark and missing from the rows (the demo company's snapshot of
/// 28 Nov lacked 1,237 events, and each snapshot built on it kept the hole; `tests/snapshots.rs` races the fold).
///
/// The rows' statement checks that the watermark it reads is still at least the one read first. A rebuild's swap
/// in between can put in place a version that is behind, whose rows below that watermark may not all be there yet;
/// then nothing is written.
///
/// With `base`, the sequence of the company's newest snapshot (from its head), the new one is that snapshot plus
/// the balance rows above it: a pass over the tail instead of over every row the company ever posted (3.6M rows and
/// 1.3 s for the demo company at 1,000 posts/s, when every snapshot summed the whole company). The same statement
/// checks that the base's head is there; after a rebuild's swap it is not (the new version starts without
/// snapshots), and nothing is written, so a snapshot never builds on one of another version. Without `base` it sums
/// every row.
///
/// The head is read back from the rows at the watermark read first, so it names only a snapshot that exists: when
/// the rows' statement wrote nothing (a missing base, a swap to a version that is behind), no head is written. A
/// snapshot written twice gets equal heads, which the table's key folds.
///
/// # Errors
/// ClickHouse errors.
pub async fn snapshot_company(ch: &Client, suffix: &str, company: Uuid, base: Option<i64>) -> Result<()> {
    write_snapshot(ch, suffix, company, base, "now()").await
}

/// The rows of the snapshots `filter` selects (a condition on `balance_snapshots`), each (company, account, month)
/// from its newest copy, as `d`, `c` and `n` (debit, credit, lines): what readers take. A snapshot written twice has
/// equal copies, and a later copy at the same sequence is a repair ([`repair`]).
pub(crate) fn newest_copies_sql(suffix: &str, filter: &str) -> String {
    format!(
        "SELECT company_id, account_id, period,
                argMax(debit, created_at) AS d, argMax(credit, created_at) AS c, argMax(line_count, created_at) AS n
         FROM balance_snapshots{suffix} WHERE {filter}
         GROUP BY company_id, account_id, period"
    )
}

/// [`snapshot_company`], with the rows' `created_at` given as a ClickHouse expression.
async fn write_snapshot(ch: &Client, suffix: &str, company: Uuid, base: Option<i64>, created_at: &str) -> Result<()> {
    let id = uuid_literal(&company);
    let watermark_of = format!("SELECT max(seq) FROM fold_watermarks{suffix} WHERE company_id = {id}");
    let watermark: i64 = ch.query(&watermark_of).fetch_one().await?;
    if watermark <= 0 {
        // Nothing folded (an empty aggregate reads 0): nothing to snapshot.
        return Ok(());
    }
    let still_covered = format!("({watermark_of}) >= {watermark}");
    let rows = match base {
        None => format!(
            "SELECT company_id, toInt64({watermark}), account_id, period, sum(toDecimal128(debit, 0)), sum(toDecimal128(credit, 0)),
                    if(min(line_count) = 0, toUInt64(0), sum(toUInt64(line_count))), {created_at}
             FROM period_balances{suffix} FINAL
             WHERE company_id = {id} AND company_seq <= {watermark} AND {still_covered}
             GROUP BY company_id, account_id, period"
        ),
        // The base snapshot's rows stand at its sequence, which the watermark is never below; each (account,
        // month) is taken once, from the newest copy, as readers do (a snapshot may have been written twice, and a
        // later copy may be a repair, see `repair`).
        Some(base) => format!(
            "SELECT company_id, toInt64({watermark}), account_id, period, sum(d), sum(c), if(min(n) = 0, toUInt64(0), sum(n)), {created_at}
             FROM (
                 {}
                 UNION ALL
                 SELECT company_id, account_id, period,
                        toDecimal128(debit, 0) AS d, toDecimal128(credit, 0) AS c, toUInt64(line_count) AS n
                 FROM period_balances{suffix} FINAL
                 WHERE company_id = {id} AND company_seq > {base} AND company_seq <= {watermark}
             )
             WHERE (SELECT count() FROM snapshot_heads{suffix} WHERE company_id = {id} AND upto_seq = {base}) > 0
               AND {still_covered}
             GROUP BY company_id, account_id, period",
            newest_copies_sql(suffix, &format!("company_id = {id} AND upto_seq = {base}"))
        ),
    };
    ch.query(&format!(
        "INSERT INTO balance_snapshots{suffix} (company_id, upto_seq, account_id, period, debit, credit, line_count, created_at)
         {rows}"
    ))
    .execute()
    .await?;
    ch.query(&format!(
        "INSERT INTO snapshot_heads{suffix} (company_id, upto_seq, created_at)
         SELECT company_id, upto_seq, max(created_at) FROM balance_snapshots{suffix}
         WHERE company_id = {id} AND upto_seq = {watermark} GROUP BY company_id, upto_seq"
    ))
    .execute()
    .await?;
    Ok(())
}

/// Writes the heads of the snapshots that have none, when `snapshot_heads` is empty: once, after an upgrade from a
/// version without heads, so reports need not wait for each company's next snapshot. Read from the rows, as
/// [`snapshot_company`] does. Returns how many heads were written.
///
/// # Errors
/// ClickHouse errors.
pub async fn backfill_heads(ch: &Client, suffix: &str) -> Result<u64> {
    let heads: u64 = ch.query(&format!("SELECT count() FROM snapshot_heads{suffix}")).fetch_one().await?;
    if heads > 0 {
        return Ok(0);
    }
    ch.query(&format!(
        "INSERT INTO snapshot_heads{suffix} (company_id, upto_seq, created_at)
         SELECT company_id, upto_seq, max(created_at) FROM balance_snapshots{suffix} GROUP BY company_id, upto_seq"
    ))
    .execute()
    .await?;
    Ok(ch.query(&format!("SELECT count() FROM snapshot_heads{suffix}")).fetch_one().await?)
}

/// Rewrites the companies' snapshots in full, each at its current watermark, summed from every balance row. For
/// companies whose newest snapshot the reconciler found different from Postgres while their balance rows agree: every
/// snapshot after a wrong one is built on it and keeps the error, so only a snapshot summed from the rows ends it. The
/// new copy is the newest, which readers and the next snapshot take (`argMax(…, created_at)`), also where it has the
/// same sequence as the wrong one; the wrong copies leave with their hour partitions ([`drop_old`]). Stops at the
/// first company that fails; the reconciler finds the rest again on its next run.
///
/// # Errors
/// ClickHouse errors.
pub async fn repair(ch: &Client, suffix: &str, companies: &[Uuid]) -> Result<()> {
    for company in companies {
        // Stamped after every copy the company has, not at `now()`: a wrong copy written in this second, or stamped
        // ahead by a clock that was ahead, would otherwise tie with the repair or beat it, and readers take either.
        let after_every_copy = format!(
            "greatest(now(), (SELECT max(created_at) FROM balance_snapshots{suffix} WHERE company_id = {}) + 1)",
            uuid_literal(company)
        );
        write_snapshot(ch, suffix, *company, None, &after_every_copy).await?;
        metrics::counter!("balance_snapshot_repairs_total").increment(1);
        // The rewritten snapshot changes the company's reports without moving its watermark.
        if suffix.is_empty() {
            crate::sink::note_changes(ch, std::slice::from_ref(company)).await?;
        }
    }
    Ok(())
}

/// One round: snapshots the companies [`due`] says. Returns how many were written. `tried` remembers when (Unix
/// seconds) each company was last snapshotted, so a company with no balance rows (whose snapshot writes nothing) waits the idle
/// time between tries instead of being tried every round. It only ever makes a company look younger, never covered:
/// what a snapshot covers is always read from ClickHouse, so snapshots lost with a rebuild's swap are made again.
///
/// # Errors
/// ClickHouse errors.
pub async fn round(ch: &Client, suffix: &str, idle_s: i64, tried: &mut HashMap<Uuid, i64>) -> Result<usize> {
    let watermarks: Vec<(Uuid, i64)> =
        crate::sink::all_watermarks(ch, suffix, None).await?.into_iter().map(|w| (w.company_id, w.seq)).collect();
    // Heads, not rows: a snapshot without a head (its head's INSERT failed) is made again, which is harmless, and
    // the newest head is the base the next snapshot builds on.
    let heads = newest(&snapshot_rows(ch, "snapshot_heads", suffix).await?);
    let mut latest = heads.clone();
    for (company, &at_s) in tried.iter() {
        latest
            .entry(*company)
            .and_modify(|l| l.created_at_s = l.created_at_s.max(at_s))
            .or_insert(Latest { upto_seq: 0, created_at_s: at_s });
    }
    let now_s = chrono::Utc::now().timestamp();
    let plan = due(&watermarks, &latest, now_s, idle_s);
    for company in &plan {
        let started = Instant::now();
        snapshot_company(ch, suffix, *company, heads.get(company).map(|l| l.upto_seq)).await?;
        metrics::histogram!("balance_snapshot_duration_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("balance_snapshots_total").increment(1);
        tried.insert(*company, now_s);
    }
    Ok(plan.len())
}

/// Drops the hour partitions [`droppable`] allows. Returns how many.
///
/// # Errors
/// ClickHouse errors.
pub async fn drop_old(ch: &Client, suffix: &str) -> Result<usize> {
    let rows = snapshot_rows(ch, "balance_snapshots", suffix).await?;
    let protected: HashSet<i64> = newest(&rows).values().map(|l| l.created_at_s / PARTITION_SECONDS).collect();
    let partitions: Vec<String> = ch
        .query("SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = ? AND active")
        .bind(format!("balance_snapshots{suffix}"))
        .fetch_all()
        .await?;
    let partitions: Vec<i64> = partitions.iter().filter_map(|p| p.trim_matches('\'').parse().ok()).collect();
    let drop = droppable(&partitions, &protected, chrono::Utc::now().timestamp());
    for p in &drop {
        // The heads first: a head must never outlive its rows.
        ch.query(&format!("ALTER TABLE snapshot_heads{suffix} DROP PARTITION {p}")).execute().await?;
        ch.query(&format!("ALTER TABLE balance_snapshots{suffix} DROP PARTITION {p}")).execute().await?;
    }
    Ok(drop.len())
}

/// Runs rounds every `cadence.interval_ms` until `shutdown`; a failed round is logged and counted, and the next
/// one tries again (reports stay exact without snapshots, only slower).
pub async fn run(ch: Client, cadence: Cadence, shutdown: CancellationToken) {
    let idle_s = i64::try_from(cadence.idle_ms / 1000).unwrap_or(i64::MAX);
    let mut tried = HashMap::new();
    let mut last_retention = Instant::now();
    match backfill_heads(&ch, "").await {
        Ok(0) => {}
        Ok(n) => tracing::info!(heads = n, "wrote the heads of the balance snapshots made before heads existed"),
        Err(e) => {
            metrics::counter!("balance_snapshot_errors_total").increment(1);
            tracing::warn!(error = %e, "writing the heads of older balance snapshots failed (they go unused)");
        }
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(cadence.interval_ms)) => {}
        }
        if let Err(e) = round(&ch, "", idle_s, &mut tried).await {
            metrics::counter!("balance_snapshot_errors_total").increment(1);
            tracing::warn!(error = %e, "balance snapshot round failed");
        }
        if last_retention.elapsed() >= Duration::from_millis(RETENTION_CHECK_INTERVAL_MS) {
            last_retention = Instant::now();
            match drop_old(&ch, "").await {
                Ok(n) if n > 0 => tracing::info!(partitions = n, "dropped superseded balance snapshots"),
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("balance_snapshot_errors_total").increment(1);
                    tracing::warn!(error = %e, "dropping old balance snapshots failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_long_tail_is_due_at_once_and_a_short_one_after_the_idle_time() {
        let now = 10_000;
        let latest: HashMap<Uuid, Latest> = [
            (id(1), Latest { upto_seq: 10, created_at_s: now }),
            (id(2), Latest { upto_seq: 10, created_at_s: now }),
            (id(3), Latest { upto_seq: 10, created_at_s: now - 20 }),
        ]
        .into();
        let marks = [(id(1), 10 + SNAPSHOT_TAIL_EVENTS_MIN), (id(2), 11), (id(3), 11), (id(4), 5), (id(5), 0)];
        assert_eq!(due(&marks, &latest, now, 10), vec![id(1), id(4), id(3)], "longest tail first; no snapshot yet counts as idle");
        assert!(due(&[(id(2), 10)], &latest, now, 0).is_empty(), "nothing new, not yet due for refresh");
        assert_eq!(due(&[(id(2), 10)], &latest, now + SNAPSHOT_REFRESH_AFTER_S, 10), vec![id(2)], "refresh");
    }

    #[test]
    fn a_round_takes_at_most_its_cap() {
        let marks: Vec<(Uuid, i64)> = (1..=100).map(|n| (id(n), i64::try_from(n).unwrap())).collect();
        let plan = due(&marks, &HashMap::new(), 0, 0);
        assert_eq!(plan.len(), SNAPSHOT_COMPANIES_PER_ROUND_MAX);
        assert_eq!(plan[0], id(100));
    }

    #[test]
    fn old_partitions_go_unless_they_hold_a_newest_snapshot() {
        let now = 100 * PARTITION_SECONDS + 5;
        let protected: HashSet<i64> = [90].into();
        let parts = [90, 91, 97, 98, 99, 100];
        assert_eq!(droppable(&parts, &protected, now), vec![91, 97]);
    }

    #[test]
    fn the_newest_snapshot_is_the_highest_sequence_then_the_latest_copy() {
        let rows = [
            SnapshotRow { company_id: id(1), upto_seq: 5, created_s: 900 },
            SnapshotRow { company_id: id(1), upto_seq: 7, created_s: 100 },
            SnapshotRow { company_id: id(2), upto_seq: 3, created_s: 100 },
        ];
        let n = newest(&rows);
        assert_eq!(n[&id(1)], Latest { upto_seq: 7, created_at_s: 100 });
        assert_eq!(n[&id(2)].upto_seq, 3);
    }
}
