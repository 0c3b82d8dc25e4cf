//! Rebuild: the whole topic, from offset 0, is folded into a new version of the aggregate tables (suffix
//! [`REBUILD_SUFFIX`]) while query-api keeps reading the live ones; the new version is checked and, only if it has
//! folded every company at least as far as the live version had (so it cannot lose a company or an event the live one
//! has) and is exact against Postgres, swapped in by one multi-table `RENAME`. The old version is dropped after a
//! grace period. What is renamed in is a copy made with the live tables' settings (`*__swap`), given the rebuilt
//! parts by hard links: the rebuild's own tables have settings that spare ClickHouse's memory while they are written
//! and that a live table must not keep.
//!
//! The live worker goes on folding into the live tables meanwhile. Events it writes between the rebuild's last read
//! and the swap are read once more by the rebuild right after the swap and written into the (now live) new tables:
//! every row is keyed by its event, so writing an event twice is harmless. An interrupted or failed rebuild leaves
//! the live tables untouched; running it again starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fold::WatermarkRow;
use crate::reconcile::{self, Scope};
use crate::sink::{self, AGGREGATE_TABLES};
use crate::{Config, Error, Fetched, Folder, Processed, Result};

/// Suffix of the aggregate tables a rebuild folds into.
pub const REBUILD_SUFFIX: &str = "__rebuild";
/// Longest a rebuild waits for Kafka metadata, in milliseconds.
const METADATA_TIMEOUT_MS: u64 = 10_000;
/// Most messages per batch of the rebuild. Larger batches than the live fold's (whose size is set for freshness)
/// mean fewer, larger INSERTs and parts for ClickHouse to write and merge; measured on `large` (16.3M lines, 2 cores):
/// 5,000 messages 135k lines/s, 12,000 messages 237k lines/s with the INSERTs of a batch sent together.
const REBUILD_BATCH_MESSAGES_MAX: usize = 12_000;
/// Most ledger lines per batch of the rebuild. A batch of long vouchers stops here rather than at the message
/// count, so that memory stays bounded by lines (two or three batches are alive at once: one read, one queued, one
/// written).
const REBUILD_BATCH_LINES_MAX: usize = 40_000;
/// librdkafka's prefetch queue, in kilobytes. Its default, 64 MiB, with 100,000 messages kept for each partition
/// (`queued.min.messages`), held the rebuild at 300–470 MiB resident.
const REBUILD_PREFETCH_KBYTES_MAX: u32 = 16_384;
/// Messages librdkafka tries to keep prefetched for each partition.
const REBUILD_PREFETCH_MESSAGES_MIN: u32 = 20_000;
/// Decoded batches queued ahead of the one being written; each holds at most a batch's memory.
const REBUILD_BATCHES_AHEAD_MAX: usize = 1;
/// Suffix of the tables that are swapped in: created with the live tables' DDL and settings, and given the rebuilt
/// tables' parts (hard links, no copy) once those are checked.
const SWAP_SUFFIX: &str = "__swap";
/// Seconds a part that a merge has replaced is kept in the rebuild's own tables (`old_parts_lifetime`; 120 s for the
/// live tables, see compose/clickhouse-config.xml). A rebuild writes parts fast and merges replace them as fast: on
/// `large` (29 Nov), with 120 s, 6,600 replaced parts were waiting at the end of the fold, about 19 KiB of
/// ClickHouse's resident memory each, and the server peaked at 292–321 MiB; with 10 s, at 215–256 MiB (and with
/// [`REBUILD_VERTICAL_MERGE_ROWS_MIN`] too, at 204–223 MiB).
/// Replaced parts are kept so that a merged part lost with the page cache in a power cut can be restored from them.
/// The rebuild's tables need none of that until they are swapped in, which is what [`REBUILD_PARTS_SETTLE_S`] is for:
/// a power cut during the rebuild fails it, and a new run starts over.
const REBUILD_OLD_PARTS_LIFETIME_S: u64 = 10;
/// Fewest rows a merge of the rebuild's tables must have to merge column by column (`vertical_merge_algorithm_min_rows_to_activate`,
/// 131,072 for the live tables). A merge that takes all columns at once holds a 1 MiB read buffer for every column of
/// every part, however small the part: a rebuild's merges of six small parts were seen holding 72 MiB (`invoices`, 1 MB
/// of data) and 111 MiB (`ledger_lines`, 3 MB), and such merges put ClickHouse at 256 MiB (29 Nov). Column by
/// column, only the sort key's columns are read together: the same merges held 13–25 MiB.
const REBUILD_VERTICAL_MERGE_ROWS_MIN: u64 = 1;
/// Default of `--settle-seconds`: how old the newest part of the rebuild's tables must be before their parts are given
/// to the tables that are swapped in. The parts attached are then ones the kernel has written to disk (it writes
/// dirty pages back within `vm.dirty_expire_centisecs`, 30 s), so the short lifetime above does not leave the live
/// tables with a part that a power cut could lose. On `large` the reconciliation before it takes longer than this.
const REBUILD_PARTS_SETTLE_S: u64 = 60;

/// Settings of one rebuild.
#[derive(Debug, Clone, clap::Args)]
pub struct RebuildArgs {
    /// How long the replaced tables are kept (renamed `*__old_<time>`) before they are dropped, in seconds.
    #[arg(long, default_value_t = 300)]
    pub grace_seconds: u64,
    /// Fold and reconcile the new version, but do not swap it in (it is left as `*__rebuild`).
    #[arg(long, default_value_t = false)]
    pub no_swap: bool,
    /// How old, in seconds, the newest rebuilt part must be before the rebuilt tables are swapped in, so that the
    /// kernel has written them to disk (0 for tests, which do not survive power cuts anyway).
    #[arg(long, default_value_t = REBUILD_PARTS_SETTLE_S)]
    pub settle_seconds: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub messages: u64,
    pub lines: u64,
    pub seconds: f64,
    pub swapped: bool,
}

impl Summary {
    /// Ledger lines folded per second.
    #[must_use]
    pub fn lines_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.lines as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Reads the topic from the given offsets up to `end` (exclusive), folding into `folder`.
async fn fold_range(
    config: &Config,
    folder: &mut Folder,
    from: &HashMap<i32, i64>,
    end: &HashMap<i32, i64>,
    progress: &ProgressBar,
    shutdown: &CancellationToken,
) -> Result<(u64, u64)> {
    let todo: Vec<(i32, i64, i64)> =
        end.iter().map(|(p, e)| (*p, from.get(p).copied().unwrap_or(0), *e)).filter(|(_, start, end)| start < end).collect();
    if todo.is_empty() {
        return Ok((0, 0));
    }
    let consumer: StreamConsumer = config
        .kafka
        .client_config()
        .set("group.id", format!("kerp-rebuild-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // The rebuild owns every partition, and librdkafka keeps up to `queued.min.messages` (100,000 by default)
        // prefetched for each: hundreds of MiB. A smaller queue needs a short `fetch.queue.backoff.ms`
        // (`crate::FETCH_QUEUE_BACKOFF_MS`).
        .set("queued.max.messages.kbytes", REBUILD_PREFETCH_KBYTES_MAX.to_string())
        .set("queued.min.messages", REBUILD_PREFETCH_MESSAGES_MIN.to_string())
        .set("fetch.queue.backoff.ms", crate::FETCH_QUEUE_BACKOFF_MS.to_string())
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, start, _) in &todo {
        tpl.add_partition_offset(&config.voucher_topic, *p, Offset::Offset(*start))?;
    }
    consumer.assign(&tpl)?;
    let mut remaining: HashMap<i32, i64> = todo.iter().map(|(p, _, e)| (*p, *e)).collect();
    // Reading and decoding the next batch (this process's CPU) overlaps writing the current one (ClickHouse's): a
    // reader task hands decoded batches over a short queue, in topic order.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(Vec<Fetched>, u64)>>(REBUILD_BATCHES_AHEAD_MAX);
    let reader_stop = shutdown.clone();
    let reader = tokio::spawn(async move {
        while !remaining.is_empty() {
            let mut batch: Vec<Fetched> = Vec::new();
            let (mut batch_lines, mut lines) = (0usize, 0u64);
            while !remaining.is_empty() && batch.len() < REBUILD_BATCH_MESSAGES_MAX && batch_lines < REBUILD_BATCH_LINES_MAX {
                let m = tokio::select! {
                    () = reader_stop.cancelled() => return,
                    m = consumer.recv() => match m {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    },
                };
                let (p, o) = (m.partition(), m.offset());
                let Some(end) = remaining.get(&p).copied() else { continue };
                if o >= end {
                    continue;
                }
                if o + 1 >= end {
                    remaining.remove(&p);
                }
                let fetched = Fetched::decode(&m);
                batch_lines += fetched.lines();
                if let Ok(kerp_schemas::Event::VoucherPosted(e)) = &fetched.message.event {
                    lines += e.lines.len() as u64;
                }
                batch.push(fetched);
            }
            if tx.send(Ok((batch, lines))).await.is_err() {
                // The folding side stopped (an error): nothing waits for more.
                return;
            }
        }
    });
    // A folding error returns early: the reader must not go on reading for nobody.
    let _reader_guard = AbortOnDrop(reader.abort_handle());
    let (mut messages, mut lines) = (0u64, 0u64);
    while let Some(next) = rx.recv().await {
        let (batch, batch_line_count) = next?;
        messages += batch.len() as u64;
        lines += batch_line_count;
        match folder.process(&batch, Instant::now(), shutdown).await? {
            Processed::Written => {}
            Processed::Abandoned(why) => return Err(Error::Rebuild(why)),
            Processed::Stopped => return Err(Error::Interrupted),
        }
        progress.inc(batch.len() as u64);
        if let Some(h) = folder.state.holds().next() {
            return Err(Error::Rebuild(format!(
                "the topic holds a message the fold cannot use at partition {} offset {} ({}); skip it with `stream-workers skip` or deploy a reader that knows it, then rebuild again",
                h.partition, h.offset, h.reason
            )));
        }
    }
    // The queue ends when the reader has read every partition to its end, or stopped early: for shutdown, or because
    // it failed, which `reader` tells.
    reader.await.map_err(|e| Error::Rebuild(format!("the rebuild's reader failed: {e}")))?;
    if shutdown.is_cancelled() {
        return Err(Error::Interrupted);
    }
    Ok((messages, lines))
}

/// The companies whose rebuilt watermark is below their live one (missing counts as 0), with both sequences. A
/// rebuilt version that lacks events the live one has folded must never be swapped in. Pure, so it is unit-tested.
#[must_use]
pub fn behind_live(live: &[WatermarkRow], rebuilt: &[WatermarkRow]) -> Vec<(Uuid, i64, i64)> {
    let rebuilt: HashMap<Uuid, i64> = rebuilt.iter().map(|w| (w.company_id, w.seq)).collect();
    live.iter()
        .filter_map(|w| {
            let r = rebuilt.get(&w.company_id).copied().unwrap_or(0);
            (r < w.seq).then_some((w.company_id, r, w.seq))
        })
        .collect()
}

/// Waits until the newest part of the rebuild's tables is `settle_s` old. Merges that finish meanwhile write newer
/// parts, so the age is asked again after each wait; merges of tables nobody writes to end soon.
async fn settle(ch: &clickhouse::Client, settle_s: u64, shutdown: &CancellationToken) -> Result<()> {
    let tables: Vec<String> = AGGREGATE_TABLES.iter().map(|t| format!("{t}{REBUILD_SUFFIX}")).collect();
    loop {
        // No parts at all reads as the epoch: old enough.
        let age_s: i64 = ch
            .query(
                "SELECT toInt64(now()) - toInt64(max(modification_time)) FROM system.parts
                 WHERE database = currentDatabase() AND has(?, table) AND active",
            )
            .bind(&tables)
            .fetch_one()
            .await?;
        let wait_s = i64::try_from(settle_s).unwrap_or(i64::MAX).saturating_sub(age_s);
        if wait_s <= 0 {
            return Ok(());
        }
        tracing::info!(wait_s, "waiting for the rebuilt parts to reach the disk");
        tokio::select! {
            () = shutdown.cancelled() => return Err(Error::Interrupted),
            () = tokio::time::sleep(Duration::from_secs(wait_s.unsigned_abs())) => {}
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The current end offset of every partition of the topic.
async fn end_offsets(config: &Config) -> Result<HashMap<i32, i64>> {
    let kafka = config.kafka.client_config();
    let topic = config.voucher_topic.clone();
    tokio::task::spawn_blocking(move || {
        let c: rdkafka::consumer::BaseConsumer = kafka.create()?;
        let timeout = Duration::from_millis(METADATA_TIMEOUT_MS);
        let meta = c.fetch_metadata(Some(&topic), timeout)?;
        let mut out = HashMap::new();
        for t in meta.topics() {
            for p in t.partitions() {
                let (_, high) = c.fetch_watermarks(&topic, p.id(), timeout)?;
                out.insert(p.id(), high);
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::Rebuild(format!("reading end offsets: {e}")))?
}

/// Rebuilds the aggregates from the topic, reconciles the new version with Postgres and swaps it in.
///
/// # Errors
/// Kafka, ClickHouse or Postgres errors; differences found by the reconciliation; a message the fold cannot use.
/// In every case the live tables are left as they were.
pub async fn rebuild(config: &Config, pg: &PgPool, args: &RebuildArgs, shutdown: &CancellationToken) -> Result<Summary> {
    let started = Instant::now();
    let server = config.clickhouse.server_client();
    let db = &config.clickhouse.clickhouse_database;
    sink::migrate(&server, db, "").await?;
    let ch = sink::writer(&config.clickhouse.client()).await?;
    // A rebuild always starts over: whatever an interrupted one left behind is dropped first.
    for t in AGGREGATE_TABLES {
        ch.query(&format!("DROP TABLE IF EXISTS {t}{REBUILD_SUFFIX}")).execute().await?;
        ch.query(&format!("DROP TABLE IF EXISTS {t}{SWAP_SUFFIX}")).execute().await?;
    }
    sink::migrate_with(
        &server,
        db,
        REBUILD_SUFFIX,
        &[
            ("old_parts_lifetime", REBUILD_OLD_PARTS_LIFETIME_S),
            ("vertical_merge_algorithm_min_rows_to_activate", REBUILD_VERTICAL_MERGE_ROWS_MIN),
        ],
    )
    .await?;

    let mut folder = Folder::new(config, ch.clone(), REBUILD_SUFFIX);
    folder.skips = sink::load_skips(&ch, &config.voucher_topic).await?;
    let end = end_offsets(config).await?;
    let total: i64 = end.values().sum();
    let progress = ProgressBar::new(u64::try_from(total).unwrap_or(0));
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} messages, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut summary = Summary::default();
    let (m, l) = fold_range(config, &mut folder, &HashMap::new(), &end, &progress, shutdown).await?;
    summary.messages += m;
    summary.lines += l;
    // What the live version claims, read before the end of the last pass: every event a live watermark covers was
    // read from the topic by the live worker, so it lies below the end offsets read after this, and the rebuilt
    // version must reach at least these watermarks.
    let live_marks = sink::all_watermarks(&ch, "", None).await?;
    // Events posted while the topic was read: one more pass up to the end as it is now, so the reconciliation
    // compares nearly everything.
    let end2 = end_offsets(config).await?;
    progress.inc_length(u64::try_from(end2.values().sum::<i64>() - total).unwrap_or(0));
    let (m, l) = fold_range(config, &mut folder, &end, &end2, &progress, shutdown).await?;
    summary.messages += m;
    summary.lines += l;
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();

    let rebuilt_marks = sink::all_watermarks(&ch, REBUILD_SUFFIX, None).await?;
    let short = behind_live(&live_marks, &rebuilt_marks);
    if let Some((company, rebuilt, live)) = short.first() {
        for (company, rebuilt, live) in &short {
            tracing::error!(%company, rebuilt, live, "the rebuilt version is behind the live one");
        }
        return Err(Error::Rebuild(format!(
            "the rebuilt version is behind the live one for {} companies (company {company}: rebuilt up to sequence {rebuilt}, \
             live up to {live}); the topic no longer holds what the live tables were folded from, or the rebuild was held \
             back; the live tables are untouched",
            short.len()
        )));
    }

    let report = reconcile::reconcile(pg, &ch, REBUILD_SUFFIX, &Scope::default()).await?;
    for d in &report.differences {
        tracing::error!(%d, "rebuilt version differs from Postgres");
    }
    if !report.behind.is_empty() {
        // Not a reason to refuse: the live version is no further (checked above), and posts go on while this runs.
        tracing::info!(companies = report.behind.len(), "companies with events in Postgres beyond the rebuilt version (in flight)");
    }
    if !report.differences.is_empty() {
        return Err(Error::Rebuild(format!(
            "the rebuilt version differs from Postgres in {} places ({} won); the live tables are untouched",
            report.differences.len(),
            report.diff_won()
        )));
    }
    tracing::info!(companies = report.companies, compared = report.compared, "the rebuilt version matches Postgres");
    if args.no_swap {
        return Ok(summary);
    }

    // The rebuilt tables keep replaced parts only briefly and merge column by column (`REBUILD_OLD_PARTS_LIFETIME_S`,
    // `REBUILD_VERTICAL_MERGE_ROWS_MIN`), settings a table keeps for life (18.16 cannot alter them). So their parts,
    // once on disk, go to tables created with the live settings, and those are swapped in.
    settle(&ch, args.settle_seconds, shutdown).await?;
    sink::migrate(&server, db, SWAP_SUFFIX).await?;
    for t in AGGREGATE_TABLES {
        let partitions: Vec<String> = ch
            .query("SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() AND table = ? AND active")
            .bind(format!("{t}{REBUILD_SUFFIX}"))
            .fetch_all()
            .await?;
        for p in partitions {
            // Attaching a partition FROM another table hard-links its active parts: the rows are the reconciled ones,
            // not copied, and the rebuilt table's later merges do not touch them.
            ch.query(&format!("ALTER TABLE {t}{SWAP_SUFFIX} ATTACH PARTITION ID '{p}' FROM {t}{REBUILD_SUFFIX}")).execute().await?;
        }
    }
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let renames: Vec<String> =
        AGGREGATE_TABLES.iter().flat_map(|t| [format!("{t} TO {t}__old_{stamp}"), format!("{t}{SWAP_SUFFIX} TO {t}")]).collect();
    // One statement: ClickHouse renames all the tables together, so readers see either the old set or the new one.
    ch.query(&format!("RENAME TABLE {}", renames.join(", "))).execute().await?;
    summary.swapped = true;
    tracing::info!("swapped the rebuilt tables in");
    for t in AGGREGATE_TABLES {
        ch.query(&format!("DROP TABLE IF EXISTS {t}{REBUILD_SUFFIX}")).execute().await?;
    }
    // Every company's reports now read the new tables, which may hold corrected sums under the same watermarks. A
    // failure here is logged, not returned: the swap is done, and answers query-api holds expire by age anyway
    // (`ANSWER_AGE_MAX_MS` there).
    if let Err(e) = sink::note_changes(&ch, &[sink::EVERY_COMPANY]).await {
        tracing::error!(error = %e, "could not count the swap in report_changes; query-api's held answers expire by age");
    }

    // What the live worker wrote into the old tables after the last pass is folded into the new live ones too.
    let mut live = Folder::new(config, ch.clone(), "");
    live.skips = folder.skips.clone();
    live.state = folder.state.clone();
    let end3 = end_offsets(config).await?;
    let (m, l) = fold_range(config, &mut live, &end2, &end3, &ProgressBar::hidden(), shutdown).await?;
    summary.messages += m;
    summary.lines += l;

    if args.grace_seconds > 0 {
        tracing::info!(grace_seconds = args.grace_seconds, "keeping the old tables for the grace period");
        tokio::select! {
            () = shutdown.cancelled() => {
                tracing::warn!("interrupted during the grace period; the old tables stay as *__old_{stamp}");
                return Ok(summary);
            }
            () = tokio::time::sleep(Duration::from_secs(args.grace_seconds)) => {}
        }
    }
    for t in AGGREGATE_TABLES {
        ch.query(&format!("DROP TABLE IF EXISTS {t}__old_{stamp}")).execute().await?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(company: u128, seq: i64) -> WatermarkRow {
        WatermarkRow { company_id: Uuid::from_u128(company), partition: 0, seq }
    }

    #[test]
    fn a_rebuilt_version_missing_a_company_or_behind_it_is_refused() {
        let live = [mark(1, 10), mark(2, 5), mark(3, 7)];
        assert!(behind_live(&live, &[mark(1, 10), mark(2, 6), mark(3, 7), mark(4, 1)]).is_empty(), "ahead or equal is fine");
        assert_eq!(
            behind_live(&live, &[mark(1, 9), mark(3, 7)]),
            vec![(Uuid::from_u128(1), 9, 10), (Uuid::from_u128(2), 0, 5)],
            "behind, and missing (0)"
        );
    }
}
