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
    /// Per company, a watermark it compared clean at before (the periodic run's memory): such a company is compared
    /// only in the months of its events above that watermark, since no other month of it can have changed through
    /// the fold. Rows changed outside the fold, in an untouched month, are what the periodic full run is for. Empty for
    /// every company in full.
    pub since: HashMap<Uuid, i64>,
}

/// The companies a periodic run compares when it is not a full one: those whose watermark moved since they last
/// compared clean, and those that never did (new ones, and every company with a difference, which is never marked
/// clean and so is compared again each run). A company's aggregates only change when its watermark moves, so the
/// others would be compared to the same result; a row written by hand or by a bug outside the fold is what the
/// periodic full run is for. Of a company that compared clean before, only the months it posted into since are
/// compared ([`Scope::since`]): re-summing the whole history of a company with 385,000 vouchers took Postgres 31.7 s
/// of CPU every 5 minutes while it kept posting.
#[must_use]
pub fn changed(marks: &[(Uuid, i64)], clean: &HashMap<Uuid, i64>) -> HashSet<Uuid> {
    marks.iter().filter(|(c, seq)| clean.get(c) != Some(seq)).map(|(c, _)| *c).collect()
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
             (up to sequence {}; off by {} won)",
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
            (c != p).then_some(Difference { company: k.0, account: k.1, period: k.2, table, upto_seq: 0, clickhouse: c, postgres: p })
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
    // With a month in scope every company is compared in that month alone already.
    let months = if scope.period.is_some() { HashMap::new() } else { touched_months(pg, &with_rows, &scope.since).await? };
    let (whole, by_month) = plan_months(with_rows, &months);
    let per_round = RECONCILE_COMPANIES_PER_ROUND_MAX.min(COMPANIES_PER_QUERY_MAX);
    for chunk in whole.chunks(per_round).chain(without.chunks(COMPANIES_PER_QUERY_MAX)) {
        let marks: Vec<(Uuid, i64)> = chunk.iter().map(|c| (c.id, c.folded)).collect();
        round(pg, ch, suffix, &marks, scope, &mut report).await?;
    }
    for (month, companies) in by_month {
        // A scope with a month is the command's `--period`, whose code paths (and their tests) this reuses.
        let in_month = Scope { period: Some(month), ..scope.clone() };
        for chunk in companies.chunks(per_round) {
            let marks: Vec<(Uuid, i64)> = chunk.iter().map(|c| (c.id, c.folded)).collect();
            round(pg, ch, suffix, &marks, &in_month, &mut report).await?;
        }
    }
    Ok(report)
}

/// Splits the companies into those compared in full and, per month, those compared in that month only: a company
/// with months in `months` (those of its events since it last compared clean, see [`Scope::since`]) is compared in
/// each of them, any other in full. When the scope already names a month, `months` is empty and all are compared in
/// it. Pure, so it is unit-tested.
#[must_use]
pub fn plan_months(companies: Vec<Company>, months: &HashMap<Uuid, Vec<NaiveDate>>) -> (Vec<Company>, BTreeMap<NaiveDate, Vec<Company>>) {
    let (mut whole, mut by_month) = (Vec::new(), BTreeMap::<NaiveDate, Vec<Company>>::new());
    for c in companies {
        match months.get(&c.id) {
            Some(ms) if !ms.is_empty() => {
                for m in ms {
                    by_month.entry(*m).or_default().push(c);
                }
            }
            _ => whole.push(c),
        }
    }
    (whole, by_month)
}

/// The months (first days) of each company's posted vouchers with a sequence above the one it last compared clean at
/// (`since`) and up to its watermark: one index range of `vouchers_company_seq_key` per company. Companies without a
/// `since` entry, or with nothing in that range, are not in the answer and are compared in full.
async fn touched_months(pg: &PgPool, companies: &[Company], since: &HashMap<Uuid, i64>) -> Result<HashMap<Uuid, Vec<NaiveDate>>> {
    let (mut ids, mut from, mut to) = (Vec::new(), Vec::new(), Vec::new());
    for c in companies {
        if let Some(&clean) = since.get(&c.id) {
            if clean > 0 && clean < c.folded {
                ids.push(c.id);
                from.push(clean);
                to.push(c.folded);
            }
        }
    }
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, NaiveDate)> = sqlx::query_as(
        "SELECT DISTINCT w.company_id, date_trunc('month', v.voucher_date)::date
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS w(company_id, after_seq, upto_seq)
         JOIN vouchers v ON v.company_id = w.company_id AND v.company_seq > w.after_seq AND v.company_seq <= w.upto_seq",
    )
    .bind(&ids)
    .bind(&from)
    .bind(&to)
    .fetch_all(pg)
    .await?;
    let mut out: HashMap<Uuid, Vec<NaiveDate>> = HashMap::new();
    for (company, month) in rows {
        out.entry(company).or_default().push(month);
    }
    for months in out.values_mut() {
        months.sort();
    }
    Ok(out)
}

/// Compares one round of companies, given with their watermarks, and adds what it found to `report`.
async fn round(
    pg: &PgPool,
    ch: &clickhouse::Client,
    suffix: &str,
    marks: &[(Uuid, i64)],
    scope: &Scope,
    report: &mut Report,
) -> Result<()> {
    let heads = if marks.iter().any(|(_, w)| *w > 0) { snapshot_heads(ch, suffix, marks).await? } else { Vec::new() };
    let (balances, ledger) = clickhouse_sums(ch, suffix, marks, scope).await?;
    let (snap_low, snap_high) = snapshot_sums(ch, suffix, &heads, scope).await?;
    let snap_of: HashMap<Uuid, i64> = heads.iter().copied().collect();
    let snaps: Vec<i64> = marks.iter().map(|(c, _)| snap_of.get(c).copied().unwrap_or(0)).collect();
    let (postgres, postgres_snap) = postgres_sums(pg, marks, &snaps, scope).await?;
    report.compared += postgres.len().max(balances.len());
    report.snapshots += heads.len();
    let upto: HashMap<Uuid, i64> = marks.iter().copied().collect();
    let at = |seqs: &HashMap<Uuid, i64>, diffs: Vec<Difference>| -> Vec<Difference> {
        diffs
            .into_iter()
            .map(|mut d| {
                d.upto_seq = seqs.get(&d.company).copied().unwrap_or(0);
                d
            })
            .collect()
    };
    // The balances' line counts too: the ledger places its pages by them.
    report.differences.extend(at(&upto, compare("period_balances", &balances, &postgres, true)));
    report.differences.extend(at(&upto, compare("ledger_lines", &ledger, &postgres, true)));
    report.differences.extend(at(&snap_of, compare_snapshot(&snap_low, &snap_high, &postgres_snap)));
    Ok(())
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

/// `period_balances` and `ledger_lines` sums per company × account × month, up to each company's watermark.
async fn clickhouse_sums(
    ch: &clickhouse::Client,
    suffix: &str,
    marks: &[(Uuid, i64)],
    scope: &Scope,
) -> Result<(BTreeMap<Key, Sums>, BTreeMap<Key, Sums>)> {
    let upto = format!("company_seq <= {}", seq_of_company(marks, 0));
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
    let to_map = |rows: Vec<SumRow>| -> BTreeMap<Key, Sums> {
        rows.into_iter()
            .map(|r| {
                let sums = Sums { debit: parse_wide(&r.debit), credit: parse_wide(&r.credit), lines: lines(r.lines) };
                ((r.company_id, r.account_id, day(r.period)), sums)
            })
            .collect()
    };
    let balances = to_map(ch.query(&balances_sql).fetch_all().await?);
    let ledger = to_map(ch.query(&ledger_sql).fetch_all().await?);
    Ok((balances, ledger))
}

/// One row of [`postgres_sums`]: the key, the sums up to the watermark, and the sums up to the snapshot.
type PgSumRow = (Uuid, Uuid, NaiveDate, String, String, i64, String, String, i64);

/// The same sums recomputed from Postgres, over the vouchers up to each company's watermark (`marks`), and, in the
/// same pass, over those up to its snapshot's sequence (`snaps`, in the order of `marks`; 0 for none).
async fn postgres_sums(
    pg: &PgPool,
    marks: &[(Uuid, i64)],
    snaps: &[i64],
    scope: &Scope,
) -> Result<(BTreeMap<Key, Sums>, BTreeMap<Key, Sums>)> {
    // Sequences start at 1, so a company with nothing folded has nothing to sum; the planner may not know that, and
    // 500 of them at 0 once cost a scan of every voucher.
    let (mut ids, mut seqs, mut snap_seqs) = (Vec::new(), Vec::new(), Vec::new());
    for (&(company, seq), &snap) in marks.iter().zip(snaps) {
        if seq > 0 {
            ids.push(company);
            seqs.push(seq);
            snap_seqs.push(snap);
        }
    }
    if ids.is_empty() {
        return Ok((BTreeMap::new(), BTreeMap::new()));
    }
    let rows: Vec<PgSumRow> = sqlx::query_as(
        "SELECT v.company_id, l.account_id, date_trunc('month', v.voucher_date)::date AS period,
                sum(l.debit)::text, sum(l.credit)::text, count(*),
                COALESCE(sum(l.debit) FILTER (WHERE v.company_seq <= w.snap), 0)::text,
                COALESCE(sum(l.credit) FILTER (WHERE v.company_seq <= w.snap), 0)::text,
                count(*) FILTER (WHERE v.company_seq <= w.snap)
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS w(company_id, seq, snap)
         JOIN vouchers v ON v.company_id = w.company_id AND v.company_seq <= w.seq
         JOIN voucher_lines l ON l.voucher_id = v.id
         WHERE v.status IN ('approved', 'reversed') AND ($4::date IS NULL OR date_trunc('month', v.voucher_date)::date = $4)
         GROUP BY 1, 2, 3",
    )
    .bind(&ids)
    .bind(&seqs)
    .bind(&snap_seqs)
    .bind(scope.period)
    .fetch_all(pg)
    .await?;
    let (mut upto_watermark, mut upto_snapshot) = (BTreeMap::new(), BTreeMap::new());
    for (c, a, p, d, cr, n, sd, scr, sn) in rows {
        let key = (c, a, NaiveDate::from_ymd_opt(p.year(), p.month(), 1).unwrap_or(p));
        upto_watermark.insert(key, Sums { debit: parse_wide(&d), credit: parse_wide(&cr), lines: n });
        if sn > 0 {
            upto_snapshot.insert(key, Sums { debit: parse_wide(&sd), credit: parse_wide(&scr), lines: sn });
        }
    }
    Ok((upto_watermark, upto_snapshot))
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
    fn companies_with_touched_months_are_compared_in_those_months_only() {
        let company = |n: u128| Company { id: Uuid::from_u128(n), folded: 10, latest: 10 };
        let (a, b, c) = (company(1), company(2), company(3));
        let (jan, mar) = (NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        let months = HashMap::from([(a.id, vec![jan, mar]), (b.id, vec![mar]), (c.id, Vec::new())]);
        let (whole, by_month) = plan_months(vec![a, b, c, company(4)], &months);
        assert_eq!(whole.iter().map(|c| c.id.as_u128()).collect::<Vec<_>>(), [3, 4], "no months: compared in full");
        assert_eq!(by_month[&jan], [a]);
        assert_eq!(by_month[&mar], [a, b]);
        assert_eq!(by_month.len(), 2);
    }

    #[test]
    fn a_periodic_run_compares_the_companies_whose_watermark_moved_or_never_compared_clean() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let clean: HashMap<Uuid, i64> = [(a, 5), (b, 7)].into();
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
