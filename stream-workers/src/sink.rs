//! ClickHouse side of the fold: creates the tables, loads the watermarks of assigned partitions and the operator's
//! skips, and writes one folded batch: business rows first, the watermark rows that cover them last.
//!
//! Every row is keyed by its event (see `fold`), so a batch written twice, or half written and then written again,
//! leaves the same collapsed rows; the order of the INSERTs only matters for the watermark, which must never claim an
//! event whose rows are not yet durable. Each INSERT's latency is recorded in `clickhouse_insert_duration_seconds`.

use std::collections::HashSet;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fold::{
    AccountRow, BalanceRow, CompanySettingsRow, DepartmentRow, FoldOutput, InvoiceRow, LedgerLineRow, PartnerRow, Skip, UserRow,
    WatermarkRow,
};
use crate::Result;

/// The ClickHouse DDL, applied file by file and statement by statement at start-up.
const DDL: [&str; 7] = [
    include_str!("../../migrations/clickhouse/0001_init.sql"),
    include_str!("../../migrations/clickhouse/0002_dimensions.sql"),
    include_str!("../../migrations/clickhouse/0003_invoices.sql"),
    include_str!("../../migrations/clickhouse/0004_snapshots.sql"),
    include_str!("../../migrations/clickhouse/0005_snapshot_heads.sql"),
    include_str!("../../migrations/clickhouse/0006_users.sql"),
    include_str!("../../migrations/clickhouse/0007_report_changes.sql"),
];

/// Columns added to a table after it was first created: (table, column, type). ClickHouse 18.16 has no
/// `ADD COLUMN IF NOT EXISTS`, so `migrate` looks for each one and adds what is missing. Rows written before get the
/// type's default (the nil UUID: none).
const ADDED_COLUMNS: [(&str, &str, &str); 3] = [
    ("ledger_lines", "department_id", "UUID"),
    // 0 in the rows already there: "not counted", which the ledger notices and counts ledger_lines instead until a
    // rebuild refills the table.
    ("period_balances", "line_count", "UInt32"),
    ("balance_snapshots", "line_count", "UInt64"),
];

/// The aggregate tables, live under these names and versioned with a suffix during a rebuild.
/// A rebuild starts `balance_snapshots` and `snapshot_heads` empty: reports read whole `period_balances` tails until
/// the live worker's snapshots of the new version come (within a snapshot round).
pub const AGGREGATE_TABLES: [&str; 11] = [
    "ledger_lines",
    "period_balances",
    "accounts",
    "company_settings",
    "partners",
    "departments",
    "users",
    "invoices",
    "fold_watermarks",
    "balance_snapshots",
    "snapshot_heads",
];

/// Most rows one INSERT sends. Each INSERT is one block, so ClickHouse writes it as one part per partition.
pub const INSERT_BLOCK_ROWS_MAX: u64 = 1_048_576;

/// Creates the database and tables if they are missing. `suffix` names a version of the aggregate tables (empty for
/// the live ones).
///
/// # Errors
/// ClickHouse errors.
pub async fn migrate(server: &Client, database: &str, suffix: &str) -> Result<()> {
    migrate_with(server, database, suffix, &[]).await
}

/// [`migrate`], creating the versioned tables with these merge-tree settings beyond their DDL's own (the rebuild's
/// own version, see `crate::rebuild`). Tables that exist already keep what they were created with.
///
/// # Errors
/// ClickHouse errors.
pub async fn migrate_with(server: &Client, database: &str, suffix: &str, settings: &[(&str, u64)]) -> Result<()> {
    server.query(&format!("CREATE DATABASE IF NOT EXISTS `{database}`")).execute().await?;
    let db = server.clone().with_database(database);
    if suffix.is_empty() {
        retire_legacy_layout(&db).await?;
    }
    for stmt in DDL.iter().flat_map(|file| statements(file, suffix, settings)) {
        db.query(&stmt).execute().await?;
    }
    for (table, column, ty) in ADDED_COLUMNS {
        let table = format!("{table}{suffix}");
        let present: u64 = db
            .query("SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = ? AND name = ?")
            .bind(&table)
            .bind(column)
            .fetch_one()
            .await?;
        if present == 0 {
            tracing::info!(table, column, "adding a column the table was created without");
            db.query(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}")).execute().await?;
        }
    }
    Ok(())
}

/// Before per-event balance rows, `period_balances` summed batch deltas and kept the watermark inside it. Those
/// tables cannot be converted in place; they are renamed aside (nothing is dropped) and the log says how to refill
/// the new ones from the topic.
async fn retire_legacy_layout(db: &Client) -> Result<()> {
    let legacy: u64 = db
        .query(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'period_balances'
             AND engine = 'SummingMergeTree'",
        )
        .fetch_one()
        .await?;
    if legacy == 0 {
        return Ok(());
    }
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let mut renames = Vec::new();
    for t in ["ledger_lines", "period_balances", "accounts", "dead_letters"] {
        let exists: u64 =
            db.query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?").bind(t).fetch_one().await?;
        if exists > 0 {
            renames.push(format!("{t} TO {t}__legacy_{stamp}"));
        }
    }
    db.query(&format!("RENAME TABLE {}", renames.join(", "))).execute().await?;
    tracing::warn!(
        "the aggregate tables had the old layout (summed batch deltas with an in-table watermark); they were renamed to \
         *__legacy_{stamp}. Run `stream-workers rebuild` to fold the topic into the new tables"
    );
    Ok(())
}

/// Splits the DDL file into statements, dropping `--` comment lines, naming the aggregate tables' version and adding
/// `settings` to the versioned tables' `SETTINGS` clause (the bookkeeping tables are created as written). Every
/// versioned table is a MergeTree whose `SETTINGS` clause, if it has one, ends its statement.
fn statements(sql: &str, suffix: &str, settings: &[(&str, u64)]) -> Vec<String> {
    let body: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    let extra = settings.iter().map(|(name, value)| format!("{name} = {value}")).collect::<Vec<_>>().join(", ");
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let versioned = s.contains("{v}");
            let s = s.replace("{v}", suffix);
            if !versioned || extra.is_empty() {
                s
            } else if let Some(at) = s.rfind("SETTINGS ") {
                format!("{}{extra}, {}", &s[..at + "SETTINGS ".len()], &s[at + "SETTINGS ".len()..])
            } else {
                format!("{s}\nSETTINGS {extra}")
            }
        })
        .collect()
}

/// The client the fold writes with: settings that make "the INSERT returned" mean "the rows are durable and
/// visible" are pinned on every query, so that a current ClickHouse (whose server or profile may default to
/// asynchronous inserts) behaves like 18.16, which has no such mode.
///
/// # Errors
/// ClickHouse errors while asking for the server version.
pub async fn writer(client: &Client) -> Result<Client> {
    let version: String = client.query("SELECT version()").fetch_one().await?;
    Ok(insert_settings(&version).into_iter().fold(client.clone(), |c, (name, value)| c.with_option(name, value)))
}

/// The settings [`writer`] pins for a server of `version`: one block per INSERT of up to [`INSERT_BLOCK_ROWS_MAX`]
/// rows everywhere, and synchronous inserts where the server has the asynchronous kind.
#[must_use]
pub fn insert_settings(version: &str) -> Vec<(&'static str, String)> {
    let mut settings = vec![("max_insert_block_size", INSERT_BLOCK_ROWS_MAX.to_string())];
    if has_async_insert(version) {
        settings.push(("async_insert", "0".to_owned()));
        settings.push(("wait_for_async_insert", "1".to_owned()));
    }
    settings
}

/// Asynchronous inserts (and the settings that control them) arrived in ClickHouse 21.11; older servers refuse
/// unknown settings, so they are only sent where they exist.
fn has_async_insert(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (21, 11)
}

/// Each company's stored watermark (the highest `seq`, with the partition its events are on) for the companies that
/// `filter` selects (a SQL condition on `fold_watermarks`; `None` for every company), ordered by company. The one
/// query behind loading owned partitions, rechecking held companies and reconciling.
async fn watermarks_where(client: &Client, suffix: &str, filter: Option<&str>) -> Result<Vec<WatermarkRow>> {
    let filter = filter.map(|f| format!("WHERE {f}")).unwrap_or_default();
    let sql = format!(
        "SELECT company_id, any(partition) AS on_partition, max(seq) AS folded_seq FROM fold_watermarks{suffix}
         {filter} GROUP BY company_id ORDER BY company_id"
    );
    Ok(client.query(&sql).fetch_all().await?)
}

/// The watermarks of every company on these partitions.
///
/// # Errors
/// ClickHouse errors.
pub async fn load_watermarks(client: &Client, suffix: &str, partitions: &[i32]) -> Result<Vec<WatermarkRow>> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let list = partitions.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    watermarks_where(client, suffix, Some(&format!("partition IN ({list})"))).await
}

/// Most companies one query names: about 13 KiB of UUID literals, far below ClickHouse's `max_query_size` (256 KiB).
/// Watermark rechecks of held companies take this many (they are few; more wait for the next check), and
/// [`latest_accounts`] and reconcile ask in chunks of it.
pub const COMPANIES_PER_QUERY_MAX: usize = 500;

/// The stored watermarks of these companies (at most [`COMPANIES_PER_QUERY_MAX`] of them are asked for).
///
/// # Errors
/// ClickHouse errors.
pub async fn load_company_watermarks(client: &Client, suffix: &str, companies: &[Uuid]) -> Result<Vec<WatermarkRow>> {
    if companies.is_empty() {
        return Ok(Vec::new());
    }
    let list = companies.iter().take(COMPANIES_PER_QUERY_MAX).map(kerp_core::clickhouse::uuid_literal).collect::<Vec<_>>().join(",");
    watermarks_where(client, suffix, Some(&format!("company_id IN ({list})"))).await
}

/// The stored watermarks of every company, or of one.
///
/// # Errors
/// ClickHouse errors.
pub async fn all_watermarks(client: &Client, suffix: &str, company: Option<Uuid>) -> Result<Vec<WatermarkRow>> {
    let filter = company.map(|c| format!("company_id = {}", kerp_core::clickhouse::uuid_literal(&c)));
    watermarks_where(client, suffix, filter.as_deref()).await
}

#[derive(Debug, Row, Serialize, Deserialize)]
pub struct SkipRow {
    pub topic: String,
    pub kind: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub company_id: Uuid,
    pub seq: i64,
    pub reason: String,
    pub operator: String,
    pub created_at: u32,
}

impl SkipRow {
    /// The fold's view of this record, if its kind is known.
    #[must_use]
    pub fn skip(&self) -> Option<Skip> {
        match self.kind.as_str() {
            "message" => Some(Skip::Message { partition: self.partition, offset: self.offset }),
            "sequence" => Some(Skip::Sequence { company: self.company_id, seq: self.seq }),
            _ => None,
        }
    }
}

/// The skips an operator recorded for this topic.
///
/// # Errors
/// ClickHouse errors.
pub async fn load_skips(client: &Client, topic: &str) -> Result<HashSet<Skip>> {
    let rows: Vec<SkipRow> = client
        .query("SELECT topic, kind, partition, offset, company_id, seq, reason, operator, toUInt32(created_at) FROM fold_skips WHERE topic = ?")
        .bind(topic)
        .fetch_all()
        .await?;
    Ok(rows.iter().filter_map(SkipRow::skip).collect())
}

/// Records an operator skip.
///
/// # Errors
/// ClickHouse errors.
pub async fn record_skip(client: &Client, row: &SkipRow) -> Result<()> {
    insert_all(client, "fold_skips", "", std::slice::from_ref(row)).await
}

/// What the `accounts` table of version `suffix` shows for every account of `companies`: each account's content at
/// its highest version, with that version, as reports read it (`argMax`). Seeds `fold::AccountsSeen`.
///
/// # Errors
/// ClickHouse errors.
pub async fn latest_accounts(client: &Client, suffix: &str, companies: &[Uuid]) -> Result<Vec<AccountRow>> {
    let mut out = Vec::new();
    // In chunks: a batch may bring thousands of companies, and a query text is limited (`max_query_size`, 256 KiB).
    for chunk in companies.chunks(COMPANIES_PER_QUERY_MAX) {
        let list: Vec<String> = chunk.iter().map(kerp_core::clickhouse::uuid_literal).collect();
        out.extend(
            client
                .query(&format!(
                    // The aggregates are named apart from the columns inside, and renamed outside: an alias equal to
                    // a column's name replaces that column in the other aggregates (ClickHouse then refuses
                    // `max(version)` inside `argMax(code, version)`).
                    "SELECT company_id, account_id, c AS code, n AS name, t AS account_type, v AS version FROM
                       (SELECT company_id, account_id, argMax(code, version) AS c, argMax(name, version) AS n,
                               argMax(account_type, version) AS t, max(version) AS v
                        FROM accounts{suffix} WHERE company_id IN ({}) GROUP BY company_id, account_id)",
                    list.join(", ")
                ))
                .fetch_all::<AccountRow>()
                .await?,
        );
    }
    Ok(out)
}

/// Writes `rows` into `table` followed by the version `suffix` as one INSERT, and records how long the INSERT took,
/// to the end of the server's answer, in `clickhouse_insert_duration_seconds{table}`. The label is the table's base
/// name, without the suffix, so rebuilds add no label values. Only inserts that succeed are timed: failures are
/// counted by `fold_write_errors_total`, and an attempt cut off by its timeout never ends here.
async fn insert_all<T>(client: &Client, table: &'static str, suffix: &str, rows: &[T]) -> Result<()>
where
    T: clickhouse::RowWrite + for<'a> Row<Value<'a> = T>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut insert = client.insert::<T>(&format!("{table}{suffix}")).await?;
    for r in rows {
        insert.write(r).await?;
    }
    insert.end().await?;
    metrics::histogram!("clickhouse_insert_duration_seconds", "table" => table).record(started.elapsed().as_secs_f64());
    Ok(())
}

/// A message the fold could not use.
#[derive(Debug, Clone, Row, Serialize)]
pub struct DeadLetterRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    pub payload_hex: String,
    pub received_at: u32,
}

/// Writes one folded batch into the aggregate tables of version `suffix` in three steps: the dimension rows (accounts,
/// company settings, partners, departments, users), then the facts (ledger lines, invoices, balances), then the
/// watermarks. Each row is an idempotent upsert (keyed by event, or by entity and version for the dimensions and
/// invoices), so a crash anywhere is repaired by writing the batch again. The dimension rows come before the
/// watermarks although they claim no sequence: the offsets of their messages are committed after this returns, so they
/// too must be durable by then.
///
/// # Errors
/// ClickHouse errors; the caller retries the whole batch.
pub async fn write(client: &Client, suffix: &str, out: &FoldOutput, dead: &[DeadLetterRow]) -> Result<()> {
    // A batch often carries a new company's chart of accounts together with its first vouchers. Reports read the
    // balances without waiting for the watermark and name each account from the dimension, so a balance made visible
    // before its account would be shown for a moment under an empty code. The dimensions therefore go first. They are
    // small and most batches have none, so the extra round trip is rarely paid.
    tokio::try_join!(
        insert_all::<AccountRow>(client, "accounts", suffix, &out.accounts),
        insert_all::<CompanySettingsRow>(client, "company_settings", suffix, &out.company_settings),
        insert_all::<PartnerRow>(client, "partners", suffix, &out.partners),
        insert_all::<DepartmentRow>(client, "departments", suffix, &out.departments),
        insert_all::<UserRow>(client, "users", suffix, &out.users),
    )?;
    // The facts go to different tables and depend on each other in nothing, so they are sent together and ClickHouse
    // writes them in parallel (the ledger lines and the balances are the two big INSERTs of a batch, and one after the
    // other left a core idle). Only the watermarks must wait until every one of them is durable.
    tokio::try_join!(
        insert_all::<LedgerLineRow>(client, "ledger_lines", suffix, &out.lines),
        insert_all::<InvoiceRow>(client, "invoices", suffix, &out.invoices),
        insert_all::<BalanceRow>(client, "period_balances", suffix, &out.balances),
        insert_all::<DeadLetterRow>(client, "dead_letters", "", dead),
    )?;
    // The live version's changes that move no watermark are counted for query-api's held answers, after the rows
    // they count are durable, like the watermarks. A rebuild's version is read by no one until its swap, which is
    // counted then, for every company.
    let changed = if suffix.is_empty() { unsequenced_changes(out) } else { Vec::new() };
    tokio::try_join!(insert_all::<WatermarkRow>(client, "fold_watermarks", suffix, &out.watermarks), note_changes(client, &changed),)?;
    Ok(())
}

/// The company id under which a change to every company is counted (a rebuild's swap).
pub const EVERY_COMPANY: Uuid = Uuid::nil();

/// A row of `report_changes`: one change to what a company's reports read.
#[derive(Debug, Clone, Row, Serialize)]
pub struct ReportChangeRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub company_id: Uuid,
    pub changes: u64,
}

/// The companies of a batch with a change that moves no watermark and that the held ledger answers read (see
/// `query-api/src/answers.rs`): master data, which is upserted without a sequence. Sorted, each once.
///
/// The account rows a voucher carries count too, though its sequence already marks its lines' accounts as changed:
/// `AccountsSeen` leaves out every such row that changes nothing, so they are rare, and a row dated by a voucher after
/// a ledger's range may still rename the account it shows.
///
/// Invoices are left out: no ledger reads them (an issued invoice's voucher is a voucher of its own, with a
/// sequence), and counting them let go of every held page of a company whenever it wrote an invoice. A report held
/// later that reads invoices must count them again.
#[must_use]
pub fn unsequenced_changes(out: &FoldOutput) -> Vec<Uuid> {
    let companies: std::collections::BTreeSet<Uuid> = out
        .accounts
        .iter()
        .map(|r| r.company_id)
        .chain(out.company_settings.iter().map(|r| r.company_id))
        .chain(out.partners.iter().map(|r| r.company_id))
        .chain(out.departments.iter().map(|r| r.company_id))
        .chain(out.users.iter().map(|r| r.company_id))
        .collect();
    companies.into_iter().collect()
}

/// Counts one change to what each of `companies`' reports read (`report_changes`), so that query-api lets go of the
/// answers it holds for them. Call it after the change is durable. [`EVERY_COMPANY`] counts a change to all.
///
/// # Errors
/// ClickHouse errors.
pub async fn note_changes(client: &Client, companies: &[Uuid]) -> Result<()> {
    let rows: Vec<ReportChangeRow> = companies.iter().map(|&company_id| ReportChangeRow { company_id, changes: 1 }).collect();
    insert_all::<ReportChangeRow>(client, "report_changes", "", &rows).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn ddl_splits_into_create_statements_with_the_version_suffix() {
        let s = super::statements(super::DDL[0], "__rebuild", &[]);
        assert_eq!(s.len(), 6);
        assert!(s.iter().all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        assert!(s[0].contains("ledger_lines__rebuild"));
        assert!(s[4].contains("dead_letters ("), "bookkeeping tables are not versioned");
        assert!(s.iter().all(|s| !s.contains("old_parts_lifetime")));
    }

    /// Extra settings go into a versioned table's own `SETTINGS` clause, or make one; bookkeeping tables are left as
    /// written.
    #[test]
    fn extra_settings_go_to_the_versioned_tables_only() {
        let all: Vec<String> =
            super::DDL.iter().flat_map(|f| super::statements(f, "__r", &[("old_parts_lifetime", 10), ("a", 2)])).collect();
        let ledger = all.iter().find(|s| s.contains("ledger_lines__r (")).unwrap();
        assert!(ledger.ends_with("SETTINGS old_parts_lifetime = 10, a = 2, index_granularity = 1024"), "{ledger}");
        let accounts = all.iter().find(|s| s.contains("accounts__r (")).unwrap();
        assert!(accounts.ends_with("\nSETTINGS old_parts_lifetime = 10, a = 2"), "{accounts}");
        assert_eq!(accounts.matches("SETTINGS").count(), 1);
        let versioned = all.iter().filter(|s| s.contains("__r (")).count();
        assert_eq!(versioned, super::AGGREGATE_TABLES.len());
        assert_eq!(all.iter().filter(|s| s.contains("old_parts_lifetime = 10")).count(), versioned);
        let skips = all.iter().find(|s| s.contains("fold_skips (")).unwrap();
        assert!(!skips.contains("old_parts_lifetime"), "{skips}");
    }

    /// Every versioned table of the DDL is one that a rebuild swaps, and the other way round.
    #[test]
    fn the_rebuild_swaps_exactly_the_versioned_tables() {
        let mut versioned: Vec<String> = super::DDL
            .iter()
            .flat_map(|f| super::statements(f, "__v", &[]))
            .filter_map(|s| s.split_whitespace().nth(5).and_then(|t| t.split_once("__v")).map(|(t, _)| t.to_owned()))
            .collect();
        versioned.sort();
        let mut swapped: Vec<String> = super::AGGREGATE_TABLES.iter().map(|t| (*t).to_owned()).collect();
        swapped.sort();
        assert_eq!(versioned, swapped);
    }

    /// Each row type writes exactly its table's columns, in the DDL's order. An INSERT names its columns, so a field
    /// the table lacks would fail every batch at run time; this says so at test time.
    #[test]
    fn row_types_write_the_columns_of_their_tables() {
        use super::*;
        let columns = |table: &str| -> Vec<String> {
            let head = format!("CREATE TABLE IF NOT EXISTS {table} (");
            let stmt = DDL
                .iter()
                .flat_map(|f| statements(f, "", &[]))
                .find(|s| s.starts_with(&head))
                .unwrap_or_else(|| panic!("no table {table}"));
            let body = &stmt[head.len()..stmt.find(") ENGINE").unwrap()];
            body.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
        };
        for (table, names) in [
            ("ledger_lines", LedgerLineRow::COLUMN_NAMES),
            ("period_balances", BalanceRow::COLUMN_NAMES),
            ("accounts", AccountRow::COLUMN_NAMES),
            ("company_settings", CompanySettingsRow::COLUMN_NAMES),
            ("partners", PartnerRow::COLUMN_NAMES),
            ("departments", DepartmentRow::COLUMN_NAMES),
            ("users", UserRow::COLUMN_NAMES),
            ("invoices", InvoiceRow::COLUMN_NAMES),
            ("fold_watermarks", WatermarkRow::COLUMN_NAMES),
            ("dead_letters", DeadLetterRow::COLUMN_NAMES),
            ("fold_skips", SkipRow::COLUMN_NAMES),
            ("report_changes", ReportChangeRow::COLUMN_NAMES),
        ] {
            assert_eq!(columns(table), names, "columns of {table}");
        }
    }

    /// Master data counts a change for its companies, each once; vouchers, which move the watermark instead, count
    /// none, and neither do invoices, which no held report reads.
    #[test]
    fn only_rows_without_a_sequence_count_a_change() {
        use crate::fold::{AccountRow, CompanySettingsRow, DepartmentRow, FoldOutput, WatermarkRow};
        let (a, b, c) = (uuid::Uuid::from_u128(3), uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut out = FoldOutput::default();
        assert!(super::unsequenced_changes(&out).is_empty());
        out.watermarks.push(WatermarkRow { company_id: c, partition: 0, seq: 9 });
        assert!(super::unsequenced_changes(&out).is_empty(), "a voucher moves the watermark and counts no change");
        let account = |company_id| AccountRow {
            company_id,
            account_id: uuid::Uuid::from_u128(9),
            code: "1101".into(),
            name: "현금".into(),
            account_type: "asset".into(),
            version: 1,
        };
        out.invoices.push(crate::fold::InvoiceRow {
            company_id: c,
            invoice_id: uuid::Uuid::from_u128(7),
            invoice_type: "sales".into(),
            vat_type: "taxable".into(),
            partner_id: uuid::Uuid::nil(),
            invoice_date: 20_000,
            supply_amount: 100,
            tax_amount: 10,
            status: "issued".into(),
            approval_number: String::new(),
            voucher_id: uuid::Uuid::nil(),
            version: 1,
        });
        assert!(super::unsequenced_changes(&out).is_empty(), "an invoice counts no change");
        out.accounts.extend([account(a), account(b), account(a)]);
        out.company_settings.push(CompanySettingsRow { company_id: a, name: "a".into(), fiscal_start_month: 1, version: 1 });
        out.departments.push(DepartmentRow {
            company_id: c,
            department_id: uuid::Uuid::from_u128(8),
            code: "D1".into(),
            name: "d".into(),
            is_active: 1,
            version: 1,
        });
        assert_eq!(super::unsequenced_changes(&out), [b, c, a], "sorted by id, each company once");
    }

    #[test]
    fn async_insert_settings_are_only_sent_to_servers_that_know_them() {
        assert!(!super::has_async_insert("18.16.1"));
        assert!(!super::has_async_insert("21.8.3.44"));
        assert!(super::has_async_insert("21.11.1"));
        assert!(super::has_async_insert("25.3.2.39"));
        let block = ("max_insert_block_size", super::INSERT_BLOCK_ROWS_MAX.to_string());
        assert_eq!(super::insert_settings("18.16.1").as_slice(), std::slice::from_ref(&block));
        assert_eq!(
            super::insert_settings("25.3.2.39"),
            [block, ("async_insert", "0".to_owned()), ("wait_for_async_insert", "1".to_owned())],
            "a current server: synchronous inserts, acknowledged once written"
        );
    }
}
