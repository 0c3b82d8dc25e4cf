//! The baseline: how the original K-ERP answered reports, straight from Postgres, and how it wrote in bulk. Every SQL
//! statement of the perf runner is in this module.
//!
//! - **Trial balance**: the chart of accounts LEFT JOIN its lines LEFT JOIN their vouchers, filtered by company, date
//!   range and status, `SUM(debit)`, `SUM(credit)` per account, ordered by code.
//! - **Account ledger**: one account's lines in a date range with a running `SUM(debit - credit) OVER (ORDER BY
//!   voucher_date, created_at)`; every row is returned (the original had no paging).
//! - **Bulk write**: `COPY` of 1,000 balanced two-line vouchers into a scratch company, one transaction per batch.
//!
//! The original's filter was `status = 'approved'`. Our schema marks a voucher that a reversal netted `reversed` and
//! keeps it in the books (the reversal is the approved voucher that cancels it), so the same books are
//! `status IN ('approved', 'reversed')`; query-api's reports count both, and so do these queries.
//!
//! The indexes a careful engineer adds for these two queries ([`INDEXES`]) are created by the runner, named
//! `perf_baseline_*`, and dropped at the end of the run unless asked to keep them, since every posting pays for them.

use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;
use sqlx::Row;
use uuid::Uuid;

/// Vouchers per bulk `COPY` batch: the thresholds file's `bulk_insert_1000`.
pub const BULK_VOUCHERS: usize = 1_000;

/// The indexes the baseline gets, each with the reason a careful engineer would add it. The existing ones do not
/// suffice: `vouchers_company_list_idx` (company, date, …) has no status and no `id` for the join, and
/// `voucher_lines_account_idx (company_id, account_id)` makes every line a heap visit for `voucher_id`, `debit` and
/// `credit`.
pub const INDEXES: [(&str, &str, &str); 3] = [
    (
        "perf_baseline_vouchers_posted",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS perf_baseline_vouchers_posted ON vouchers (company_id, voucher_date, created_at) \
         INCLUDE (id) WHERE status IN ('approved', 'reversed')",
        "a company's posted vouchers in a date range, already in ledger order, with the id the lines join on",
    ),
    (
        "perf_baseline_lines_account",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS perf_baseline_lines_account ON voucher_lines (company_id, account_id, voucher_id) \
         INCLUDE (line_no, debit, credit)",
        "one account's lines with their amounts, without a heap visit (the ledger)",
    ),
    (
        "perf_baseline_lines_voucher",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS perf_baseline_lines_voucher ON voucher_lines (voucher_id) \
         INCLUDE (account_id, debit, credit)",
        "the lines of the vouchers in range with their account and amounts, without a heap visit (the trial balance)",
    ),
];

/// The trial balance, as the original wrote it (with the line-to-voucher join inside the outer join, so that an
/// account with lines only outside the range is still listed, with zeros). Sums are `numeric`, read as text: a sum of
/// lines of up to 10^15 won each passes `bigint`, and query-api answers them exactly too.
pub const TRIAL_BALANCE_SQL: &str = "\
SELECT a.code, a.name, COALESCE(SUM(l.debit), 0)::text AS debit, COALESCE(SUM(l.credit), 0)::text AS credit
FROM accounts a
LEFT JOIN (voucher_lines l
           JOIN vouchers v ON v.id = l.voucher_id
                          AND v.company_id = $1
                          AND v.status IN ('approved', 'reversed')
                          AND v.voucher_date BETWEEN $2 AND $3)
       ON l.account_id = a.id AND l.company_id = a.company_id
WHERE a.company_id = $1
GROUP BY a.id, a.code, a.name
ORDER BY a.code";

/// The account ledger, as the original wrote it: every line of the account in the range with its running balance.
pub const LEDGER_SQL: &str = "\
SELECT v.voucher_date, v.voucher_number, l.line_no, l.debit, l.credit,
       (SUM(l.debit - l.credit) OVER (ORDER BY v.voucher_date, v.created_at))::text AS balance
FROM voucher_lines l
JOIN vouchers v ON v.id = l.voucher_id
WHERE l.company_id = $1 AND l.account_id = $2
  AND v.company_id = $1 AND v.status IN ('approved', 'reversed') AND v.voucher_date BETWEEN $3 AND $4
ORDER BY v.voucher_date, v.created_at";

/// Creates the baseline's indexes (concurrently, so the stack's writers are not blocked meanwhile), vacuums and
/// analyzes both tables. An index left invalid by an interrupted build is dropped and built again.
///
/// # Errors
/// Postgres refuses.
pub async fn create_indexes(pg: &PgPool) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    for (name, sql, why) in INDEXES {
        let invalid: Option<bool> =
            sqlx::query_scalar("SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1")
                .bind(name)
                .fetch_optional(pg)
                .await?;
        if invalid == Some(true) {
            sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")).execute(pg).await?;
        }
        let t = Instant::now();
        sqlx::query(sql).execute(pg).await.with_context(|| format!("creating {name}"))?;
        notes.push(format!("{name}: {why} ({:.1} s{})", t.elapsed().as_secs_f64(), if invalid.is_some() { ", existed" } else { "" }));
    }
    // VACUUM sets the visibility map that index-only scans need (freshly loaded rows are not all-visible until
    // autovacuum gets to them), and ANALYZE gives the planner the new indexes' statistics.
    sqlx::query("VACUUM (ANALYZE) vouchers, voucher_lines").execute(pg).await?;
    Ok(notes)
}

/// Drops the baseline's indexes.
///
/// # Errors
/// Postgres refuses.
pub async fn drop_indexes(pg: &PgPool) -> anyhow::Result<()> {
    for (name, _, _) in INDEXES {
        sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")).execute(pg).await?;
    }
    Ok(())
}

/// The report parameters both sides get: both reports cover `from..=to`, the year of the busiest account up to the
/// end of its last month with postings (a past year whole), so both sides read the same rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub company_id: Uuid,
    /// The ledger's account: the one with the most posted lines in any year of the company.
    pub account_id: Uuid,
    pub account_code: String,
    /// Its lines in that year.
    pub account_lines: i64,
    pub year: i32,
    /// The trial balance's month: the last month of that year with postings; the baseline sums the year up to its end.
    pub month: u32,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// Picks the parameters: the busiest account and year of the company, so the ledger is the heaviest one it has, among
/// postings dated before `before` (the first day of the current month). The load scenarios post dated today, so
/// leaving the current month out keeps the measured books the same from one run to the next.
///
/// # Errors
/// Postgres refuses, or the company has no posted lines.
pub async fn pick_params(pg: &PgPool, company: Uuid, before: NaiveDate) -> anyhow::Result<Params> {
    let row = sqlx::query(
        "SELECT l.account_id, a.code, EXTRACT(YEAR FROM v.voucher_date)::int AS year, count(*) AS n,
                max(EXTRACT(MONTH FROM v.voucher_date))::int AS last_month
         FROM voucher_lines l
         JOIN vouchers v ON v.id = l.voucher_id
         JOIN accounts a ON a.id = l.account_id
         WHERE l.company_id = $1 AND v.status IN ('approved', 'reversed') AND v.voucher_date < $2
         GROUP BY 1, 2, 3 ORDER BY n DESC, year DESC LIMIT 1",
    )
    .bind(company)
    .bind(before)
    .fetch_optional(pg)
    .await?
    .with_context(|| format!("company {company} has no posted voucher lines before {before}"))?;
    let year: i32 = row.try_get("year")?;
    let month = u32::try_from(row.try_get::<i32, _>("last_month")?)?;
    let from = NaiveDate::from_ymd_opt(year, 1, 1).context("year out of range")?;
    let next = if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) };
    let to = next.and_then(|d| d.pred_opt()).context("month out of range")?;
    Ok(Params {
        company_id: company,
        account_id: row.try_get("account_id")?,
        account_code: row.try_get("code")?,
        account_lines: row.try_get("n")?,
        year,
        month,
        from,
        to,
    })
}

/// Runs the trial balance once; returns its row count.
///
/// # Errors
/// Postgres refuses.
pub async fn trial_balance(pg: &PgPool, p: &Params) -> anyhow::Result<usize> {
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as(TRIAL_BALANCE_SQL).bind(p.company_id).bind(p.from).bind(p.to).fetch_all(pg).await?;
    Ok(rows.len())
}

/// Runs the ledger once over the range (every row); returns its row count.
///
/// # Errors
/// Postgres refuses.
pub async fn ledger(pg: &PgPool, p: &Params) -> anyhow::Result<usize> {
    let rows: Vec<(NaiveDate, Option<String>, i32, i64, i64, String)> =
        sqlx::query_as(LEDGER_SQL).bind(p.company_id).bind(p.account_id).bind(p.from).bind(p.to).fetch_all(pg).await?;
    Ok(rows.len())
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of both queries with the run's parameters, as text.
///
/// # Errors
/// Postgres refuses.
pub async fn explain(pg: &PgPool, p: &Params) -> anyhow::Result<(String, String)> {
    let plan = |rows: Vec<(String,)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n");
    let tb = sqlx::query_as(&format!("EXPLAIN (ANALYZE, BUFFERS) {TRIAL_BALANCE_SQL}"))
        .bind(p.company_id)
        .bind(p.from)
        .bind(p.to)
        .fetch_all(pg)
        .await?;
    let ledger = sqlx::query_as(&format!("EXPLAIN (ANALYZE, BUFFERS) {LEDGER_SQL}"))
        .bind(p.company_id)
        .bind(p.account_id)
        .bind(p.from)
        .bind(p.to)
        .fetch_all(pg)
        .await?;
    Ok((plan(tb), plan(ledger)))
}

/// What the scratch company's bulk writes need: two of its accounts and its admin.
#[derive(Debug, Clone)]
pub struct Scratch {
    pub company_id: Uuid,
    pub admin_user_id: Uuid,
    pub debit_account: Uuid,
    pub credit_account: Uuid,
}

/// Looks up the scratch company's accounts 5212 (debited) and 1101 (credited).
///
/// # Errors
/// Postgres refuses, or the company lacks one of them.
pub async fn scratch(pg: &PgPool, company: Uuid, admin: Uuid) -> anyhow::Result<Scratch> {
    let account = |code: &'static str| async move {
        sqlx::query_scalar::<_, Uuid>("SELECT id FROM accounts WHERE company_id = $1 AND code = $2")
            .bind(company)
            .bind(code)
            .fetch_optional(pg)
            .await?
            .with_context(|| format!("the scratch company has no account {code}"))
    };
    Ok(Scratch { company_id: company, admin_user_id: admin, debit_account: account("5212").await?, credit_account: account("1101").await? })
}

/// One `COPY` of [`BULK_VOUCHERS`] vouchers (and their 2,000 lines) in one transaction, committed; returns its
/// milliseconds. `batch` numbers the batch, so numbers and sequences stay unique across batches.
///
/// The vouchers bypass the outbox: they never become events, so [`delete_scratch`] must remove them before anyone
/// reconciles ClickHouse against Postgres.
///
/// # Errors
/// Postgres refuses.
pub async fn copy_batch(pg: &PgPool, s: &Scratch, batch: usize) -> anyhow::Result<f64> {
    use std::fmt::Write as _;
    let (mut vouchers, mut lines) = (String::new(), String::new());
    for i in 0..BULK_VOUCHERS {
        let n = batch * BULK_VOUCHERS + i + 1;
        let id = Uuid::new_v4();
        let amount = 10_000 + (n % 9_990) * 1_000;
        let _ = writeln!(
            vouchers,
            "{id}\t{}\t2030-01-{n:06}\t2030-01-15\tgeneral\tbulk copy {n}\tapproved\t{amount}\t{amount}\t{}\t{n}\t2030-01-15 00:00:00+00\t{}",
            s.company_id, s.admin_user_id, s.admin_user_id
        );
        let _ = writeln!(lines, "{id}\t1\t{}\t{}\t{amount}\t0", s.company_id, s.debit_account);
        let _ = writeln!(lines, "{id}\t2\t{}\t{}\t0\t{amount}", s.company_id, s.credit_account);
    }
    let t = Instant::now();
    let mut tx = pg.begin().await?;
    let mut copy = tx
        .copy_in_raw(
            "COPY vouchers (id, company_id, voucher_number, voucher_date, voucher_type, description, status, total_debit, \
             total_credit, created_by, company_seq, approved_at, approved_by) FROM STDIN",
        )
        .await?;
    copy.send(vouchers.as_bytes()).await?;
    copy.finish().await?;
    let mut copy = tx.copy_in_raw("COPY voucher_lines (voucher_id, line_no, company_id, account_id, debit, credit) FROM STDIN").await?;
    copy.send(lines.as_bytes()).await?;
    copy.finish().await?;
    tx.commit().await?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// Deletes every voucher of the scratch company (lines first); returns how many vouchers went.
///
/// # Errors
/// Postgres refuses.
pub async fn delete_scratch(pg: &PgPool, company: Uuid) -> anyhow::Result<u64> {
    let mut tx = pg.begin().await?;
    sqlx::query("DELETE FROM voucher_lines WHERE company_id = $1").bind(company).execute(&mut *tx).await?;
    let n = sqlx::query("DELETE FROM vouchers WHERE company_id = $1").bind(company).execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(n)
}

/// Posted voucher lines of every company: what a rebuild replays (the topic holds one event per posted voucher).
///
/// # Errors
/// Postgres refuses.
pub async fn posted_lines(pg: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id WHERE v.status IN ('approved', 'reversed')",
    )
    .fetch_one(pg)
    .await?)
}

/// The debits a company posted in a date range: what query-api's trial balance shows as the month's `period_debit`
/// total once everything is folded (the freshness probe counts from it).
///
/// # Errors
/// Postgres refuses.
pub async fn posted_debits(pg: &PgPool, company: Uuid, from: NaiveDate, to: NaiveDate) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(SUM(l.debit), 0)::bigint FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id
         WHERE l.company_id = $1 AND v.company_id = $1 AND v.status IN ('approved', 'reversed') AND v.voucher_date BETWEEN $2 AND $3",
    )
    .bind(company)
    .bind(from)
    .bind(to)
    .fetch_one(pg)
    .await?)
}

/// A company's first admin user (the `created_by` of the scratch company's copies).
///
/// # Errors
/// Postgres refuses.
pub async fn admin_of(pg: &PgPool, company: Uuid) -> anyhow::Result<Option<Uuid>> {
    Ok(sqlx::query_scalar("SELECT id FROM users WHERE company_id = $1 AND role = 'admin' ORDER BY created_at LIMIT 1")
        .bind(company)
        .fetch_optional(pg)
        .await?)
}
