//! Reconciliation: the ClickHouse aggregates are compared with a recomputation from Postgres, the source of truth.
//!
//! Which companies: every company with a posted voucher in Postgres (one with a `company_seq`; with `--period`, one
//! dated in that month), together with every company that has a watermark in ClickHouse. Postgres is the source of
//! truth for which companies exist, so a company that ClickHouse lost entirely, or never folded, is still seen: its
//! folded sequence is 0 and all its events count as in flight.
//!
//! For every company the comparison is made at a consistent point: the company's watermark `W` in ClickHouse (every
//! event up to `W` is folded; 0 when there is no watermark). Postgres is summed over the vouchers with
//! `company_seq <= W`, and ClickHouse over the rows with `company_seq <= W`, so events still in flight never show up
//! as differences; a company whose newest posted voucher is above `W` is listed as behind instead. Compared per
//! company, account and month, all to the won:
//!
//! - `period_balances`: debit, credit and line count;
//! - `ledger_lines`: debit, credit and line count;
//! - `balance_snapshots`: the company's newest snapshot at or below `W` (the one the trial balance, the statements and
//!   the ledger's opening read, see `snapshot.rs`), whose debit, credit and line count must equal Postgres summed over
//!   `company_seq <= upto_seq`. The newest stored copies of each snapshot row are checked, since readers take the
//!   newest (a later copy at the same sequence is a repair, see `snapshot::repair`) and of one second any one.
//!
//! The worker's periodic run also compares from where a company last compared clean ([`Scope::since`]): only the
//! events after that watermark, on both sides, and the newest snapshot as the one checked then plus Postgres's events
//! in between. What the fold cannot have changed is not summed again; the periodic full run covers the rest.
//!
//! Sums are `i128` on both sides (Postgres `numeric`, ClickHouse Decimal128). Master data and invoices are not compared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::{Datelike, Months, NaiveDate};
use clickhouse::Row;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// Most companies one ClickHouse query names. Keeps the query text far below `max_query_size` (256 KiB).
pub use crate::sink::COMPANIES_PER_QUERY_MAX;

/// Most companies compared at once. Their sums (three maps of one entry per account and month, about 5,000 entries
/// and 2 MiB per company at the `large` size) are held together, so this bounds the worker's memory: all 101
/// companies of `large` in one round took its resident size from about 20 to over 200 MiB. Companies with nothing
/// folded have nothing to sum on either side (a stray row at sequence 0 at most) and go
/// [`COMPANIES_PER_QUERY_MAX`] at a time.
pub const RECONCILE_COMPANIES_PER_ROUND_MAX: usize = 8;

/// What to reconcile.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub company: Option<Uuid>,
    /// The first day of one month to restrict the comparison to. It also narrows the companies Postgres names to those
    /// with a posted voucher in that month, and "behind" to a voucher of that month above the watermark.
    pub period: Option<NaiveDate>,
    /// Only these companies (the periodic run's companies whose watermark moved); `None` for all.
    pub only: Option<HashSet<Uuid>>,
    /// Per company, where it compared clean before (the periodic run's memory). Such a company is compared from
    /// there: its events above that watermark, summed on both sides, and its newest snapshot as the one checked then
    /// plus Postgres's events in between (see [`Delta`]). Nothing else of it can have changed through the fold; rows
    /// changed outside the fold are what the periodic full run is for. Empty for every company in full.
    pub since: HashMap<Uuid, Clean>,
}

/// Where a company last compared clean: its watermark then and the snapshot checked then (0: it had none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clean {
    pub watermark: i64,
    pub snapshot: i64,
}

/// The companies a periodic run compares when it is not a full one: those whose watermark moved since they last
/// compared clean, and those that never did (new ones, and every company with a difference, which is never marked
/// clean and so is compared again each run). A company's aggregates only change when its watermark moves, so the
/// others would be compared to the same result; a row written by hand or by a bug outside the fold is what the
/// periodic full run is for. A company that compared clean before is compared from there ([`Scope::since`]):
/// re-summing the whole history of a company with 385,000 vouchers took Postgres 31.7 s of CPU every 5 minutes while
/// it kept posting, and re-summing only the months it posted into was no better for a company that posts into every
/// month (minutes of Postgres for the demo company's 1.5M vouchers, during a load test).
#[must_use]
pub fn changed(marks: &[(Uuid, i64)], clean: &HashMap<Uuid, Clean>) -> HashSet<Uuid> {
    marks.iter().filter(|(c, seq)| clean.get(c).map(|k| k.watermark) != Some(*seq)).map(|(c, _)| *c).collect()
}

/// How one company is compared from where it last compared clean: the events in `(clean, watermark]` on both sides,
/// and, when its newest snapshot is not the one checked then, that snapshot (`snapshot`) against the rows of the
/// snapshot `base` (checked then; 0 when there is none to build on) plus Postgres's events in `(base, snapshot]`.
/// Postgres is read once, over `(low, watermark]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub company: Uuid,
    pub low: i64,
    pub clean: i64,
    pub watermark: i64,
    pub base: i64,
    pub snapshot: i64,
    pub check_snapshot: bool,
}

impl Delta {
    /// Plans a company that compared clean at `clean`, now at watermark `watermark`, whose newest snapshot at or
    /// below it is `newest` (0: none), where `base_exists` says whether the snapshot checked then is still stored
    /// (retention drops old ones by the hour, and a rebuild's swap starts without any). Pure, so it is unit-tested.
    #[must_use]
    pub fn plan(company: Uuid, clean: Clean, watermark: i64, newest: i64, base_exists: bool) -> Delta {
        let check_snapshot = newest > 0 && newest != clean.snapshot;
        let base = if check_snapshot && clean.snapshot > 0 && clean.snapshot < newest && base_exists { clean.snapshot } else { 0 };
        let low = if check_snapshot { clean.watermark.min(base) } else { clean.watermark };
        Delta { company, low, clean: clean.watermark, watermark, base, snapshot: newest, check_snapshot }
    }
}

/// One company to reconcile: the sequence ClickHouse folded it up to (0 when it has no watermark) and its newest
/// posted voucher's sequence in Postgres (0 when it has none in scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Company {
    pub id: Uuid,
    pub folded: i64,
    pub latest: i64,
}

/// The companies to reconcile: those with a watermark in ClickHouse (`folded`) and those with posted vouchers in
/// Postgres (`latest`), each once, ordered by id. Pure, so it is unit-tested.
#[must_use]
pub fn companies(folded: &[(Uuid, i64)], latest: &[(Uuid, i64)]) -> Vec<Company> {
    let mut all: BTreeMap<Uuid, Company> = BTreeMap::new();
    for &(id, seq) in folded {
        all.entry(id).or_insert(Company { id, folded: 0, latest: 0 }).folded = seq;
    }
    for &(id, seq) in latest {
        all.entry(id).or_insert(Company { id, folded: 0, latest: 0 }).latest = seq;
    }
    all.into_values().collect()
}

/// Debit, credit and line count of one company × account × month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub debit: i128,
    pub credit: i128,
    pub lines: i64,
}

/// One place where ClickHouse and Postgres disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub company: Uuid,
    pub account: Uuid,
    pub period: NaiveDate,
    /// `period_balances`, `ledger_lines` or `balance_snapshots`.
    pub table: &'static str,
    /// The company sequence both sides were summed up to: the company's watermark, or the snapshot's `upto_seq`.
    pub upto_seq: i64,
    /// The sequence both sides were summed from (exclusive): 0 for every event, or where the company last compared
    /// clean in a periodic run that compares from there. A snapshot is always compared whole, so 0 for those.
    pub after_seq: i64,
    pub clickhouse: Sums,
    pub postgres: Sums,
}

impl Difference {
    /// The absolute difference in won, debit and credit together.
    #[must_use]
    pub fn won(&self) -> i128 {
        (self.clickhouse.debit - self.postgres.debit).abs() + (self.clickhouse.credit - self.postgres.credit).abs()
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, p) = (self.clickhouse, self.postgres);
        write!(
            f,
            "company {} account {} {}: {} has debit {} credit {} lines {}, Postgres has debit {} credit {} lines {} \
             ({}up to sequence {}; off by {} won)",
            self.company,
            self.account,
            self.period.format("%Y-%m"),
            self.table,
            c.debit,
            c.credit,
            c.lines,
            p.debit,
            p.credit,
            p.lines,
            if self.after_seq > 0 { format!("events after sequence {} ", self.after_seq) } else { String::new() },
            self.upto_seq,
            self.won()
        )
    }
}

/// The outcome of one reconciliation.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Companies reconciled: those with a watermark and those with posted vouchers in Postgres.
    pub companies: usize,
    /// Keys (company × account × month) compared.
    pub compared: usize,
    /// Balance snapshots checked (at most one per company: its newest at or below its watermark).
    pub snapshots: usize,
    pub differences: Vec<Difference>,
    /// Companies whose Postgres sequence is ahead of their watermark (events in flight or held), with both numbers. A
    /// company ClickHouse has no watermark for is here with 0: nothing of it is folded.
    pub behind: Vec<(Uuid, i64, i64)>,
    /// The companies compared, each with the watermark it was compared at (0: nothing folded).
    pub watermarks: Vec<(Uuid, i64)>,
    /// The companies with a snapshot, each with the sequence of the one compared (or, compared from where it was
    /// clean, the one checked then when it is still the newest). With `watermarks`, what [`Scope::since`] remembers.
    pub snapshot_seqs: HashMap<Uuid, i64>,
}

impl Report {
    /// The sum of every difference, in won.
    #[must_use]
    pub fn diff_won(&self) -> i128 {
        self.differences.iter().map(Difference::won).sum()
    }

    /// Whether every company in scope is folded as far as Postgres goes and matches it: nothing in flight, nothing
    /// missing, no difference.
    #[must_use]
    pub fn settled(&self) -> bool {
        self.behind.is_empty() && self.differences.is_empty()
    }
}

type Key = (Uuid, Uuid, NaiveDate);

/// Compares two sets of sums and lists every key where they differ. Pure, so it is unit-tested. `upto_seq` is 0 in
/// what it returns; the caller names the sequence.
#[must_use]
pub fn compare(table: &'static str, clickhouse: &BTreeMap<Key, Sums>, postgres: &BTreeMap<Key, Sums>, with_lines: bool) -> Vec<Difference> {
    let mut keys: Vec<&Key> = clickhouse.keys().chain(postgres.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let c = clickhouse.get(k).copied().unwrap_or_default();
            let mut p = postgres.get(k).copied().unwrap_or_default();
            if !with_lines {
                p.lines = c.lines;
            }
            (c != p).then_some(Difference {
                company: k.0,
                account: k.1,
                period: k.2,
                table,
                upto_seq: 0,
                after_seq: 0,
                clickhouse: c,
                postgres: p,
            })
        })
        .collect()
}

/// Compares the stored copies of snapshot rows with Postgres: `low` and `high` hold, per key, the smallest and the
/// largest value of each column over the copies, so they are equal when the copies agree. A key differs when either
/// differs from Postgres; it is listed once when the copies agree, and once per disagreeing side when they do not.
#[must_use]
pub fn compare_snapshot(low: &BTreeMap<Key, Sums>, high: &BTreeMap<Key, Sums>, postgres: &BTreeMap<Key, Sums>) -> Vec<Difference> {
    let mut out = compare("balance_snapshots", low, postgres, true);
    for d in compare("balance_snapshots", high, postgres, true) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

#[derive(Debug, Row, Deserialize)]
struct SumRow {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    period: u16,
    debit: String,
    credit: String,
    lines: u64,
}

/// A snapshot row's values over its stored copies: the smallest and the largest of each column.
#[derive(Debug, Row, Deserialize)]
struct SnapshotCopiesRow {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    account_id: Uuid,
    period: u16,
    debit_min: String,
    debit_max: String,
    credit_min: String,
    credit_max: String,
    lines_min: u64,
    lines_max: u64,
}

#[derive(Debug, Row, Deserialize)]
struct DeltaHeadRow {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    newest: i64,
    base_heads: u64,
}

#[derive(Debug, Row, Deserialize)]
struct HeadRow {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    upto_seq: i64,
}

fn day(days: u16) -> NaiveDate {
    NaiveDate::default() + chrono::Duration::days(i64::from(days))
}

fn parse_wide(text: &str) -> i128 {
    // ClickHouse prints Decimal128 with scale 0 as a plain integer.
    text.parse().unwrap_or_default()
}

fn lines(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reconciles the aggregate tables of version `suffix` (empty for the live ones) with Postgres.
///
/// # Errors
/// Postgres or ClickHouse errors.
pub async fn reconcile(pg: &PgPool, ch: &clickhouse::Client, suffix: &str, scope: &Scope) -> Result<Report> {
    let mut folded: Vec<(Uuid, i64)> =
        crate::sink::all_watermarks(ch, suffix, scope.company).await?.into_iter().map(|m| (m.company_id, m.seq)).collect();
    let mut latest = postgres_latest(pg, scope).await?;
    if let Some(only) = &scope.only {
        folded.retain(|(c, _)| only.contains(c));
        latest.retain(|(c, _)| only.contains(c));
    }
    let all = companies(&folded, &latest);
    let mut report = Report {
        companies: all.len(),
        watermarks: all.iter().map(|c| (c.id, c.folded)).collect(),
        behind: all.iter().filter(|c| c.latest > c.folded).map(|c| (c.id, c.folded, c.latest)).collect(),
        ..Report::default()
    };
    let (with_rows, without): (Vec<Company>, Vec<Company>) = all.into_iter().partition(|c| c.folded > 0);
    // A company compared from where it was clean: one whose watermark moved up since (after a rebuild's swap to a
    // version that is behind, it may have moved down; that one is compared in full). A scope with a month is the
    // command's, which never has `since`.
    type WithClean = Vec<(Company, Clean)>;
    let (delta, whole): (WithClean, WithClean) = with_rows
        .into_iter()
        .map(|c| (c, scope.since.get(&c.id).copied().unwrap_or_default()))
        .partition(|(c, k)| scope.period.is_none() && k.watermark > 0 && k.watermark < c.folded);
    let per_round = RECONCILE_COMPANIES_PER_ROUND_MAX.min(COMPANIES_PER_QUERY_MAX);
    let whole: Vec<Company> = whole.into_iter().map(|(c, _)| c).collect();
    for chunk in whole.chunks(per_round).chain(without.chunks(COMPANIES_PER_QUERY_MAX)) {
        let marks: Vec<(Uuid, i64)> = chunk.iter().map(|c| (c.id, c.folded)).collect();
        round(pg, ch, suffix, &marks, scope, &mut report).await?;
    }
    for chunk in delta.chunks(per_round) {
        delta_round(pg, ch, suffix, chunk, &mut report).await?;
    }
    Ok(report)
}

/// Compares one round of companies, given with their watermarks, in full, and adds what it found to `report`.
async fn round(
    pg: &PgPool,
    ch: &clickhouse::Client,
    suffix: &str,
    marks: &[(Uuid, i64)],
    scope: &Scope,
    report: &mut Report,
) -> Result<()> {
    let heads = if marks.iter().any(|(_, w)| *w > 0) { snapshot_heads(ch, suffix, marks).await? } else { Vec::new() };
    let snap_of: HashMap<Uuid, i64> = heads.into_iter().collect();
    // In full: from nothing clean, so every event up to the watermark, and the newest snapshot against Postgres.
    let plans: Vec<Delta> = marks
        .iter()
        .map(|&(company, watermark)| Delta::plan(company, Clean::default(), watermark, snap_of.get(&company).copied().unwrap_or(0), false))
        .collect();
    compare_plans(pg, ch, suffix, &plans, scope, report).await
}

/// Names on each difference the range of sequences it was summed over: per company, (after, up to).
fn at(ranges: &HashMap<Uuid, (i64, i64)>, diffs: Vec<Difference>) -> Vec<Difference> {
    diffs
        .into_iter()
        .map(|mut d| {
            (d.after_seq, d.upto_seq) = ranges.get(&d.company).copied().unwrap_or_default();
            d
        })
        .collect()
}

/// Compares one round of companies from where each last compared clean (see [`Delta`]) and adds what it found to
/// `report`. Postgres reads each company's events above the lower of its clean watermark and its base snapshot, an
/// index range of `vouchers_company_seq_key`; ClickHouse reads `period_balances` by the same range of its key, and
/// `ledger_lines` (sorted by account and date) over the company's rows, filtered by sequence.
async fn delta_round(pg: &PgPool, ch: &clickhouse::Client, suffix: &str, chunk: &[(Company, Clean)], report: &mut Report) -> Result<()> {
    let newest = delta_heads(ch, suffix, chunk).await?;
    let plans: Vec<Delta> = chunk
        .iter()
        .map(|(c, k)| {
            let (head, base_exists) = newest.get(&c.id).copied().unwrap_or((0, false));
            Delta::plan(c.id, *k, c.folded, head, base_exists)
        })
        .collect();
    compare_plans(pg, ch, suffix, &plans, &Scope::default(), report).await
}

/// Compares the companies as `plans` say, in full or from where each was clean, and adds what it found to `report`.
async fn compare_plans(
    pg: &PgPool,
    ch: &clickhouse::Client,
    suffix: &str,
    plans: &[Delta],
    scope: &Scope,
    report: &mut Report,
) -> Result<()> {
    let marks: Vec<(Uuid, i64)> = plans.iter().map(|d| (d.company, d.watermark)).collect();
    // No lower bound when every company is compared in full: a company with nothing folded may still have a stray
    // row at sequence 0, which must count.
    let after: Vec<(Uuid, i64)> = plans.iter().map(|d| (d.company, d.clean)).collect();
    let after = plans.iter().any(|d| d.clean > 0).then_some(after.as_slice());
    let (balances, ledger) = clickhouse_sums(ch, suffix, &marks, after, scope).await?;
    let checked: Vec<(Uuid, i64)> = plans.iter().filter(|d| d.check_snapshot).map(|d| (d.company, d.snapshot)).collect();
    let (snap_low, snap_high) = snapshot_sums(ch, suffix, &checked, scope).await?;
    let bases: Vec<(Uuid, i64)> = plans.iter().filter(|d| d.check_snapshot && d.base > 0).map(|d| (d.company, d.base)).collect();
    let base_rows = newest_copies(ch, suffix, &bases).await?;
    let (postgres, postgres_tail) = postgres_sums(pg, plans, scope.period).await?;
    let expected = add(base_rows, postgres_tail);
    report.compared += postgres.len().max(balances.len());
    report.snapshots += checked.len();
    report.snapshot_seqs.extend(plans.iter().filter(|d| d.snapshot > 0).map(|d| (d.company, d.snapshot)));
    let upto: HashMap<Uuid, (i64, i64)> = plans.iter().map(|d| (d.company, (d.clean, d.watermark))).collect();
    let snap_at: HashMap<Uuid, (i64, i64)> = checked.iter().map(|&(c, s)| (c, (0, s))).collect();
    // The balances' line counts too: the ledger places its pages by them.
    report.differences.extend(at(&upto, compare("period_balances", &balances, &postgres, true)));
    report.differences.extend(at(&upto, compare("ledger_lines", &ledger, &postgres, true)));
    report.differences.extend(at(&snap_at, compare_snapshot(&snap_low, &snap_high, &expected)));
    Ok(())
}

/// The sums of two sets of sums, key by key; the smaller is added into the larger (a round in full adds its
/// Postgres sums to no base rows). Pure, so it is unit-tested.
#[must_use]
pub fn add(a: BTreeMap<Key, Sums>, b: BTreeMap<Key, Sums>) -> BTreeMap<Key, Sums> {
    let (mut out, other) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    for (k, s) in other {
        let e = out.entry(k).or_default();
        e.debit += s.debit;
        e.credit += s.credit;
        e.lines += s.lines;
    }
    out
}

/// Per company of a delta round, its newest snapshot at or below its watermark (0: none) and whether the snapshot
/// it was clean with is still stored: one read of the heads for both.
async fn delta_heads(ch: &clickhouse::Client, suffix: &str, chunk: &[(Company, Clean)]) -> Result<HashMap<Uuid, (i64, bool)>> {
    let marks: Vec<(Uuid, i64)> = chunk.iter().map(|(c, _)| (c.id, c.folded)).collect();
    let bases: Vec<(Uuid, i64)> = chunk.iter().map(|(c, k)| (c.id, k.snapshot)).collect();
    let sql = format!(
        "SELECT company_id, max(upto_seq) AS newest, countIf(upto_seq = {}) AS base_heads FROM snapshot_heads{suffix}
         WHERE {} AND upto_seq <= {} GROUP BY company_id",
        seq_of_company(&bases, -1),
        companies_in(&marks),
        seq_of_company(&marks, 0)
    );
    let rows: Vec<DeltaHeadRow> = ch.query(&sql).fetch_all().await?;
    Ok(rows.into_iter().map(|r| (r.company_id, (r.newest, r.base_heads > 0))).collect())
}

/// The rows of the snapshots `snapshots` (company, sequence), each from its newest copy, as readers take them.
async fn newest_copies(ch: &clickhouse::Client, suffix: &str, snapshots: &[(Uuid, i64)]) -> Result<BTreeMap<Key, Sums>> {
    if snapshots.is_empty() {
        return Ok(BTreeMap::new());
    }
    let newest = crate::snapshot::newest_copies_sql(
        suffix,
        &format!("{} AND upto_seq = {}", companies_in(snapshots), seq_of_company(snapshots, -1)),
    );
    let sql = format!(
        "SELECT company_id, account_id, period, toString(d) AS debit_sum, toString(c) AS credit_sum, toUInt64(n) AS line_sum
         FROM ({newest})"
    );
    Ok(to_map(ch.query(&sql).fetch_all().await?))
}

fn to_map(rows: Vec<SumRow>) -> BTreeMap<Key, Sums> {
    rows.into_iter()
        .map(|r| {
            let sums = Sums { debit: parse_wide(&r.debit), credit: parse_wide(&r.credit), lines: lines(r.lines) };
            ((r.company_id, r.account_id, day(r.period)), sums)
        })
        .collect()
}

/// The companies with a posted voucher in Postgres (in the scope's month, if it has one), each with the sequence of
/// its newest one. One index lookup per company (`vouchers_company_seq_key`, or `vouchers_company_date_idx` for a
/// month), not a scan of the vouchers.
async fn postgres_latest(pg: &PgPool, scope: &Scope) -> Result<Vec<(Uuid, i64)>> {
    let (from, to) = match scope.period {
        Some(p) => (Some(p), p.checked_add_months(Months::new(1))),
        None => (None, None),
    };
    Ok(sqlx::query_as(
        "SELECT c.id, m.latest
         FROM companies c
         CROSS JOIN LATERAL (
             SELECT max(v.company_seq) AS latest FROM vouchers v
             WHERE v.company_id = c.id AND v.company_seq IS NOT NULL
               AND ($2::date IS NULL OR (v.voucher_date >= $2 AND v.voucher_date < $3))
         ) m
         WHERE m.latest IS NOT NULL AND ($1::uuid IS NULL OR c.id = $1)",
    )
    .bind(scope.company)
    .bind(from)
    .bind(to)
    .fetch_all(pg)
    .await?)
}

/// `transform(toString(company_id), [ids], [seqs], default)`: each company's sequence inside a query. UUIDs go in as
/// text, which every ClickHouse version compares, and the UUID text cannot carry SQL.
fn seq_of_company(pairs: &[(Uuid, i64)], default: i64) -> String {
    let ids = pairs.iter().map(|(c, _)| format!("'{c}'")).collect::<Vec<_>>().join(",");
    let seqs = pairs.iter().map(|(_, s)| format!("toInt64({s})")).collect::<Vec<_>>().join(",");
    format!("transform(toString(company_id), [{ids}], [{seqs}], toInt64({default}))")
}

/// `company_id IN (…)`, naming UUIDs as UUIDs so that ClickHouse reads only these companies' ranges of the primary key.
fn companies_in(pairs: &[(Uuid, i64)]) -> String {
    format!("company_id IN ({})", pairs.iter().map(|(c, _)| kerp_core::clickhouse::uuid_literal(c)).collect::<Vec<_>>().join(","))
}

/// Each company's newest balance snapshot at or below its watermark, from the heads (what readers look it up in).
/// A snapshot written after the watermarks were read is above them and left for the next run.
async fn snapshot_heads(ch: &clickhouse::Client, suffix: &str, marks: &[(Uuid, i64)]) -> Result<Vec<(Uuid, i64)>> {
    let sql = format!(
        "SELECT company_id, max(upto_seq) AS newest FROM snapshot_heads{suffix}
         WHERE {} AND upto_seq <= {} GROUP BY company_id",
        companies_in(marks),
        seq_of_company(marks, 0)
    );
    let rows: Vec<HeadRow> = ch.query(&sql).fetch_all().await?;
    Ok(rows.into_iter().filter(|r| r.upto_seq > 0).map(|r| (r.company_id, r.upto_seq)).collect())
}

/// The rows of each company's snapshot named in `heads`, as the smallest and the largest value of each column over the
/// newest stored copies of each row: readers take the newest copy (`argMax(…, created_at)`), and of copies written in
/// the same second any one, so all of those must be right.
async fn snapshot_sums(
    ch: &clickhouse::Client,
    suffix: &str,
    heads: &[(Uuid, i64)],
    scope: &Scope,
) -> Result<(BTreeMap<Key, Sums>, BTreeMap<Key, Sums>)> {
    if heads.is_empty() {
        return Ok((BTreeMap::new(), BTreeMap::new()));
    }
    let month = scope.period.map(|p| format!(" AND period = toDate('{p}')")).unwrap_or_default();
    let sql = format!(
        "SELECT company_id, account_id, period,
                toString(min(debit)) AS debit_min, toString(max(debit)) AS debit_max,
                toString(min(credit)) AS credit_min, toString(max(credit)) AS credit_max,
                min(line_count) AS lines_min, max(line_count) AS lines_max
         FROM balance_snapshots{suffix}
         WHERE {companies} AND upto_seq = {seq}{month}
           AND (company_id, account_id, period, created_at) IN
               (SELECT company_id, account_id, period, max(created_at) FROM balance_snapshots{suffix}
                WHERE {companies} AND upto_seq = {seq}{month} GROUP BY company_id, account_id, period)
         GROUP BY company_id, account_id, period",
        companies = companies_in(heads),
        seq = seq_of_company(heads, -1)
    );
    let rows: Vec<SnapshotCopiesRow> = ch.query(&sql).fetch_all().await?;
    let (mut low, mut high) = (BTreeMap::new(), BTreeMap::new());
    for r in rows {
        let key = (r.company_id, r.account_id, day(r.period));
        low.insert(key, Sums { debit: parse_wide(&r.debit_min), credit: parse_wide(&r.credit_min), lines: lines(r.lines_min) });
        high.insert(key, Sums { debit: parse_wide(&r.debit_max), credit: parse_wide(&r.credit_max), lines: lines(r.lines_max) });
    }
    Ok((low, high))
}

/// `period_balances` and `ledger_lines` sums per company × account × month, up to each company's watermark (`marks`)
/// and, with `after`, above the sequence it names for the company.
async fn clickhouse_sums(
    ch: &clickhouse::Client,
    suffix: &str,
    marks: &[(Uuid, i64)],
    after: Option<&[(Uuid, i64)]>,
    scope: &Scope,
) -> Result<(BTreeMap<Key, Sums>, BTreeMap<Key, Sums>)> {
    let mut upto = format!("company_seq <= {}", seq_of_company(marks, 0));
    if let Some(after) = after {
        upto.push_str(&format!(" AND company_seq > {}", seq_of_company(after, 0)));
    }
    let companies = companies_in(marks);
    let month = |col: &str| scope.period.map(|p| format!(" AND {col} = toDate('{p}')")).unwrap_or_default();
    let balances_sql = format!(
        "SELECT company_id, account_id, period, toString(sum(toDecimal128(debit, 0))) AS debit_sum,
                toString(sum(toDecimal128(credit, 0))) AS credit_sum, sum(toUInt64(line_count)) AS line_sum
         FROM period_balances{suffix} FINAL WHERE {companies} AND {upto}{} GROUP BY company_id, account_id, period",
        month("period")
    );
    let ledger_sql = format!(
        "SELECT company_id, account_id, toStartOfMonth(voucher_date) AS month_start, toString(sum(toDecimal128(debit, 0))) AS debit_sum,
                toString(sum(toDecimal128(credit, 0))) AS credit_sum, count() AS line_count
         FROM ledger_lines{suffix} FINAL WHERE {companies} AND {upto}{} GROUP BY company_id, account_id, month_start",
        month("toStartOfMonth(voucher_date)")
    );
    let balances = to_map(ch.query(&balances_sql).fetch_all().await?);
    let ledger = to_map(ch.query(&ledger_sql).fetch_all().await?);
    Ok((balances, ledger))
}

/// One row of [`postgres_sums`]: the key, the balance rows' side and the snapshot's side.
type PgSumRow = (Uuid, Uuid, NaiveDate, String, String, i64, String, String, i64);

/// The sums recomputed from Postgres for each company's [`Delta`], in one pass over its events in `(low, watermark]`:
/// those above `clean` as the balance rows' side, and, when its snapshot is checked, those in `(base, snapshot]` as
/// the snapshot's; per company, account and month (only in `period`, when given).
async fn postgres_sums(pg: &PgPool, plans: &[Delta], period: Option<NaiveDate>) -> Result<(BTreeMap<Key, Sums>, BTreeMap<Key, Sums>)> {
    // Sequences start at 1, so a company with nothing folded has nothing to sum; the planner may not know that, and
    // 500 of them at 0 once cost a scan of every voucher.
    let ranges: Vec<&Delta> = plans.iter().filter(|r| r.watermark > r.low).collect();
    if ranges.is_empty() {
        return Ok((BTreeMap::new(), BTreeMap::new()));
    }
    let column = |f: fn(&Delta) -> i64| -> Vec<i64> { ranges.iter().map(|r| f(r)).collect() };
    let ids: Vec<Uuid> = ranges.iter().map(|r| r.company).collect();
    let rows: Vec<PgSumRow> = sqlx::query_as(
        "SELECT v.company_id, l.account_id, date_trunc('month', v.voucher_date)::date AS period,
                COALESCE(sum(l.debit) FILTER (WHERE v.company_seq > w.clean), 0)::text,
                COALESCE(sum(l.credit) FILTER (WHERE v.company_seq > w.clean), 0)::text,
                count(*) FILTER (WHERE v.company_seq > w.clean),
                COALESCE(sum(l.debit) FILTER (WHERE v.company_seq > w.base AND v.company_seq <= w.snap), 0)::text,
                COALESCE(sum(l.credit) FILTER (WHERE v.company_seq > w.base AND v.company_seq <= w.snap), 0)::text,
                count(*) FILTER (WHERE v.company_seq > w.base AND v.company_seq <= w.snap)
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
              AS w(company_id, low, clean, seq, base, snap)
         JOIN vouchers v ON v.company_id = w.company_id AND v.company_seq > w.low AND v.company_seq <= w.seq
         JOIN voucher_lines l ON l.voucher_id = v.id
         WHERE v.status IN ('approved', 'reversed') AND ($7::date IS NULL OR date_trunc('month', v.voucher_date)::date = $7)
         GROUP BY 1, 2, 3",
    )
    .bind(&ids)
    .bind(column(|r| r.low))
    .bind(column(|r| r.clean))
    .bind(column(|r| r.watermark))
    .bind(column(|r| r.base))
    .bind(column(|r| if r.check_snapshot { r.snapshot } else { 0 }))
    .bind(period)
    .fetch_all(pg)
    .await?;
    let (mut rows_side, mut snapshot_side) = (BTreeMap::new(), BTreeMap::new());
    for (c, a, p, d, cr, n, sd, scr, sn) in rows {
        let key = (c, a, NaiveDate::from_ymd_opt(p.year(), p.month(), 1).unwrap_or(p));
        if n > 0 {
            rows_side.insert(key, Sums { debit: parse_wide(&d), credit: parse_wide(&cr), lines: n });
        }
        if sn > 0 {
            snapshot_side.insert(key, Sums { debit: parse_wide(&sd), credit: parse_wide(&scr), lines: sn });
        }
    }
    Ok((rows_side, snapshot_side))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sums_have_no_difference_and_a_stray_delta_is_named() {
        let (c, a) = (Uuid::new_v4(), Uuid::new_v4());
        let m = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let pg = BTreeMap::from([((c, a, m), Sums { debit: 100, credit: 0, lines: 1 })]);
        assert!(compare("ledger_lines", &pg, &pg, true).is_empty());
        let mut ch = pg.clone();
        ch.get_mut(&(c, a, m)).unwrap().debit += 7;
        let d = compare("period_balances", &ch, &pg, false);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].won(), 7);
        assert!(d[0].to_string().contains(&c.to_string()) && d[0].to_string().contains("2025-03"));
    }

    #[test]
    fn a_key_on_one_side_only_is_a_difference() {
        let (c, a) = (Uuid::new_v4(), Uuid::new_v4());
        let m = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let only_ch = BTreeMap::from([((c, a, m), Sums { debit: 0, credit: 5, lines: 0 })]);
        assert_eq!(compare("period_balances", &only_ch, &BTreeMap::new(), false)[0].won(), 5);
        assert_eq!(compare("period_balances", &BTreeMap::new(), &only_ch, false)[0].won(), 5);
    }

    #[test]
    fn a_company_clean_before_is_compared_from_there_and_its_new_snapshot_on_the_one_checked_then() {
        let c = Uuid::from_u128(1);
        let clean = Clean { watermark: 100, snapshot: 90 };
        // Same snapshot as then: only the events after 100.
        assert_eq!(
            Delta::plan(c, clean, 150, 90, true),
            Delta { company: c, low: 100, clean: 100, watermark: 150, base: 0, snapshot: 90, check_snapshot: false }
        );
        // A new snapshot at 140: built on the one at 90, so Postgres is read from 90.
        assert_eq!(
            Delta::plan(c, clean, 150, 140, true),
            Delta { company: c, low: 90, clean: 100, watermark: 150, base: 90, snapshot: 140, check_snapshot: true }
        );
        // The one at 90 is gone (retention, a rebuild's swap), or there was none: the new one is compared in full.
        assert_eq!(Delta::plan(c, clean, 150, 140, false).low, 0);
        assert_eq!(Delta::plan(c, Clean { watermark: 100, snapshot: 0 }, 150, 140, true).base, 0);
        // Behind the one checked then (a swap to a version whose snapshots are older): in full, never built on.
        let behind = Delta::plan(c, clean, 150, 80, true);
        assert_eq!((behind.low, behind.base, behind.check_snapshot), (0, 0, true));
        // No snapshot at all: nothing to check.
        assert!(!Delta::plan(c, clean, 150, 0, false).check_snapshot);
    }

    #[test]
    fn sums_add_key_by_key() {
        let (c, a, b) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let m = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let x = BTreeMap::from([((c, a, m), Sums { debit: 10, credit: 1, lines: 2 })]);
        let y = BTreeMap::from([((c, a, m), Sums { debit: 5, credit: 0, lines: 1 }), ((c, b, m), Sums { debit: 0, credit: 7, lines: 1 })]);
        let sum = add(x, y);
        assert_eq!(sum[&(c, a, m)], Sums { debit: 15, credit: 1, lines: 3 });
        assert_eq!(sum[&(c, b, m)], Sums { debit: 0, credit: 7, lines: 1 });
    }

    #[test]
    fn a_periodic_run_compares_the_companies_whose_watermark_moved_or_never_compared_clean() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let clean: HashMap<Uuid, Clean> = [(a, Clean { watermark: 5, snapshot: 0 }), (b, Clean { watermark: 7, snapshot: 3 })].into();
        let only = super::changed(&[(a, 5), (b, 8), (c, 1)], &clean);
        assert_eq!(only, [b, c].into());
    }

    /// A company Postgres has posted vouchers for and ClickHouse has no watermark of is reconciled at 0, with all its
    /// events in flight, rather than left out.
    #[test]
    fn a_company_only_postgres_knows_is_reconciled_at_zero() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let all = super::companies(&[(a, 5), (b, 7)], &[(a, 5), (b, 9), (c, 4)]);
        assert_eq!(
            all,
            vec![Company { id: a, folded: 5, latest: 5 }, Company { id: b, folded: 7, latest: 9 }, Company { id: c, folded: 0, latest: 4 },]
        );
        // A company ClickHouse folded but Postgres has nothing for (in scope) is still compared.
        assert_eq!(super::companies(&[(a, 5)], &[]), vec![Company { id: a, folded: 5, latest: 0 }]);
    }

    /// Copies of a snapshot row that disagree are a difference even when one of them is right: a reader takes either.
    #[test]
    fn every_copy_of_a_snapshot_row_must_match() {
        let (c, a) = (Uuid::new_v4(), Uuid::new_v4());
        let m = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let right = Sums { debit: 100, credit: 0, lines: 2 };
        let pg = BTreeMap::from([((c, a, m), right)]);
        assert!(compare_snapshot(&pg, &pg, &pg).is_empty());
        let wrong = BTreeMap::from([((c, a, m), Sums { debit: 777, ..right })]);
        let d = compare_snapshot(&pg, &wrong, &pg);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].table, d[0].won()), ("balance_snapshots", 677));
        assert_eq!(compare_snapshot(&wrong, &wrong, &pg).len(), 1, "agreeing copies are one difference");
        assert_eq!(compare_snapshot(&BTreeMap::new(), &BTreeMap::new(), &pg).len(), 1, "a missing row is a difference");
    }

    #[test]
    fn line_counts_count_only_for_the_ledger() {
        let (c, a) = (Uuid::new_v4(), Uuid::new_v4());
        let m = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let pg = BTreeMap::from([((c, a, m), Sums { debit: 10, credit: 0, lines: 2 })]);
        let ch = BTreeMap::from([((c, a, m), Sums { debit: 10, credit: 0, lines: 1 })]);
        assert!(compare("period_balances", &ch, &pg, false).is_empty());
        assert_eq!(compare("ledger_lines", &ch, &pg, true).len(), 1);
    }
}
