//! Reconciliation: the ClickHouse aggregates are compared with a recomputation from Postgres, the source of truth.
//!
//! For every company the comparison is made at a consistent point: the company's watermark `W` in ClickHouse (every
//! event up to `W` is folded). Postgres is summed over the vouchers with `company_seq <= W`, and ClickHouse over
//! the rows with `company_seq <= W`, so events still in flight never show up as differences. Compared per company,
//! account and month: the balances' debit, credit and line count (`period_balances`), and the ledger lines' count,
//! debit and credit (`ledger_lines`), all to the won. Sums are `i128` on both sides (Postgres `numeric`, ClickHouse Decimal128).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::{Datelike, NaiveDate};
use clickhouse::Row;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::fold::WatermarkRow;
use crate::Result;

/// Most companies one ClickHouse query names. Keeps the query text far below `max_query_size` (256 KiB).
pub use crate::sink::COMPANIES_PER_QUERY_MAX;

/// Most companies compared at once. Their sums (three maps of one entry per account and month, about 5,000 entries
/// and 2 MiB per company at the `large` size) are held together, so this bounds the worker's memory: all 101
/// companies of `large` in one round took its resident size from about 20 to over 200 MiB.
pub const RECONCILE_COMPANIES_PER_ROUND_MAX: usize = 8;

/// What to reconcile.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub company: Option<Uuid>,
    /// The first day of one month to restrict the comparison to.
    pub period: Option<NaiveDate>,
    /// Only these companies (the periodic run's companies whose watermark moved); `None` for all.
    pub only: Option<HashSet<Uuid>>,
}

/// The companies a periodic run compares when it is not a full one: those whose watermark moved since they last
/// compared clean, and those that never did (new ones, and every company with a difference, which is never marked
/// clean and so is compared again each run). A company's aggregates only change when its watermark moves, so the
/// others would be compared to the same result; a row written by hand or by a bug outside the fold is what the
/// periodic full run is for.
#[must_use]
pub fn changed(marks: &[(Uuid, i64)], clean: &HashMap<Uuid, i64>) -> HashSet<Uuid> {
    marks.iter().filter(|(c, seq)| clean.get(c) != Some(seq)).map(|(c, _)| *c).collect()
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
    /// `period_balances` or `ledger_lines`.
    pub table: &'static str,
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
            "company {} account {} {}: {} has debit {} credit {} lines {}, Postgres has debit {} credit {} lines {} (off by {} won)",
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
            self.won()
        )
    }
}

/// The outcome of one reconciliation.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub companies: usize,
    /// Keys (company × account × month) compared.
    pub compared: usize,
    pub differences: Vec<Difference>,
    /// Companies whose Postgres sequence is ahead of their watermark (events in flight or held), with both numbers.
    pub behind: Vec<(Uuid, i64, i64)>,
    /// The companies compared, each with the watermark it was compared at.
    pub watermarks: Vec<(Uuid, i64)>,
}

impl Report {
    /// The sum of every difference, in won.
    #[must_use]
    pub fn diff_won(&self) -> i128 {
        self.differences.iter().map(Difference::won).sum()
    }
}

type Key = (Uuid, Uuid, NaiveDate);

/// Compares two sets of sums and lists every key where they differ. Pure, so it is unit-tested.
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
            (c != p).then_some(Difference { company: k.0, account: k.1, period: k.2, table, clickhouse: c, postgres: p })
        })
        .collect()
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

fn day(days: u16) -> NaiveDate {
    NaiveDate::default() + chrono::Duration::days(i64::from(days))
}

fn parse_wide(text: &str) -> i128 {
    // ClickHouse prints Decimal128 with scale 0 as a plain integer.
    text.parse().unwrap_or_default()
}

/// Reconciles the aggregate tables of version `suffix` (empty for the live ones) with Postgres.
///
/// # Errors
/// Postgres or ClickHouse errors.
pub async fn reconcile(pg: &PgPool, ch: &clickhouse::Client, suffix: &str, scope: &Scope) -> Result<Report> {
    let mut marks = crate::sink::all_watermarks(ch, suffix, scope.company).await?;
    if let Some(only) = &scope.only {
        marks.retain(|m| only.contains(&m.company_id));
    }
    let watermarks = marks.iter().map(|m| (m.company_id, m.seq)).collect();
    let mut report = Report { companies: marks.len(), watermarks, ..Report::default() };
    for chunk in marks.chunks(RECONCILE_COMPANIES_PER_ROUND_MAX.min(COMPANIES_PER_QUERY_MAX)) {
        let ids: Vec<Uuid> = chunk.iter().map(|m| m.company_id).collect();
        let seqs: Vec<i64> = chunk.iter().map(|m| m.seq).collect();
        let (balances, ledger) = clickhouse_sums(ch, suffix, chunk, scope).await?;
        let postgres = postgres_sums(pg, &ids, &seqs, scope).await?;
        report.compared += postgres.len().max(balances.len());
        // The balances' line counts too: the ledger places its pages by them.
        report.differences.extend(compare("period_balances", &balances, &postgres, true));
        report.differences.extend(compare("ledger_lines", &ledger, &postgres, true));
        let latest: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT company_id, max(company_seq) FROM vouchers WHERE company_id = ANY($1) GROUP BY company_id")
                .bind(&ids)
                .fetch_all(pg)
                .await?;
        let latest: HashMap<Uuid, i64> = latest.into_iter().collect();
        report
            .behind
            .extend(chunk.iter().filter_map(|m| latest.get(&m.company_id).filter(|l| **l > m.seq).map(|l| (m.company_id, m.seq, *l))));
    }
    Ok(report)
}

/// `period_balances` and `ledger_lines` sums per company × account × month, up to each company's watermark.
async fn clickhouse_sums(
    ch: &clickhouse::Client,
    suffix: &str,
    marks: &[WatermarkRow],
    scope: &Scope,
) -> Result<(BTreeMap<Key, Sums>, BTreeMap<Key, Sums>)> {
    // transform() maps each company to its watermark inside the query; UUIDs go in as text, which every ClickHouse
    // version compares, and the UUID text cannot carry SQL.
    let ids = marks.iter().map(|m| format!("'{}'", m.company_id)).collect::<Vec<_>>().join(",");
    let seqs = marks.iter().map(|m| format!("toInt64({})", m.seq)).collect::<Vec<_>>().join(",");
    let upto = format!("company_seq <= transform(toString(company_id), [{ids}], [{seqs}], toInt64(0))");
    // The company filter names UUIDs as UUIDs, so ClickHouse reads only these companies' ranges of the primary key.
    let companies = format!(
        "company_id IN ({})",
        marks.iter().map(|m| kerp_core::clickhouse::uuid_literal(&m.company_id)).collect::<Vec<_>>().join(",")
    );
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
                let sums =
                    Sums { debit: parse_wide(&r.debit), credit: parse_wide(&r.credit), lines: i64::try_from(r.lines).unwrap_or(i64::MAX) };
                ((r.company_id, r.account_id, day(r.period)), sums)
            })
            .collect()
    };
    let balances = to_map(ch.query(&balances_sql).fetch_all().await?);
    let ledger = to_map(ch.query(&ledger_sql).fetch_all().await?);
    Ok((balances, ledger))
}

/// The same sums recomputed from Postgres, over the vouchers up to each company's watermark.
async fn postgres_sums(pg: &PgPool, ids: &[Uuid], seqs: &[i64], scope: &Scope) -> Result<BTreeMap<Key, Sums>> {
    let rows: Vec<(Uuid, Uuid, NaiveDate, String, String, i64)> = sqlx::query_as(
        "SELECT v.company_id, l.account_id, date_trunc('month', v.voucher_date)::date AS period,
                sum(l.debit)::text, sum(l.credit)::text, count(*)
         FROM UNNEST($1::uuid[], $2::bigint[]) AS w(company_id, seq)
         JOIN vouchers v ON v.company_id = w.company_id AND v.company_seq <= w.seq
         JOIN voucher_lines l ON l.voucher_id = v.id
         WHERE v.status IN ('approved', 'reversed') AND ($3::date IS NULL OR date_trunc('month', v.voucher_date)::date = $3)
         GROUP BY 1, 2, 3",
    )
    .bind(ids)
    .bind(seqs)
    .bind(scope.period)
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(c, a, p, d, cr, n)| {
            (
                (c, a, NaiveDate::from_ymd_opt(p.year(), p.month(), 1).unwrap_or(p)),
                Sums { debit: parse_wide(&d), credit: parse_wide(&cr), lines: n },
            )
        })
        .collect())
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
    fn a_periodic_run_compares_the_companies_whose_watermark_moved_or_never_compared_clean() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let clean: HashMap<Uuid, i64> = [(a, 5), (b, 7)].into();
        let only = super::changed(&[(a, 5), (b, 8), (c, 1)], &clean);
        assert_eq!(only, [b, c].into());
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
