//! ClickHouse side of the fold: creates the tables, reads watermarks, and writes one batch in the order that makes a
//! crash at any point safe (ledger lines and dimensions first, then balances with their watermark in one INSERT).

use std::collections::HashMap;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fold::{AccountRow, BalanceRow, FoldOutput, LedgerLineRow, WATERMARK_ACCOUNT};
use crate::Result;

/// The ClickHouse DDL, applied statement by statement at start-up.
const DDL: &str = include_str!("../../migrations/clickhouse/0001_init.sql");

/// Creates the database and tables if they are missing.
///
/// # Errors
/// ClickHouse errors.
pub async fn migrate(server: &Client, database: &str) -> Result<()> {
    server.query(&format!("CREATE DATABASE IF NOT EXISTS `{database}`")).execute().await?;
    let db = server.clone().with_database(database);
    for stmt in statements(DDL) {
        db.query(&stmt).execute().await?;
    }
    Ok(())
}

/// Splits the DDL file into statements, dropping `--` comment lines.
fn statements(sql: &str) -> Vec<String> {
    let body: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    body.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[derive(Debug, Row, Deserialize)]
struct WatermarkRow {
    #[serde(with = "clickhouse::serde::uuid")]
    company_id: Uuid,
    seq: i64,
}

/// The highest folded `company_seq` of each company; companies never folded are absent.
///
/// Summing without FINAL is exact: unmerged parts of a SummingMergeTree add up to the same total.
///
/// # Errors
/// ClickHouse errors.
pub async fn watermarks(client: &Client, companies: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
    if companies.is_empty() {
        return Ok(HashMap::new());
    }
    let list = companies.iter().map(kerp_core::clickhouse::uuid_literal).collect::<Vec<_>>().join(",");
    let sql = format!(
        "SELECT company_id, sum(debit) AS seq FROM period_balances
         WHERE company_id IN ({list}) AND account_id = {} AND period = toDate('1970-01-01')
         GROUP BY company_id",
        kerp_core::clickhouse::uuid_literal(&WATERMARK_ACCOUNT)
    );
    let rows: Vec<WatermarkRow> = client.query(&sql).fetch_all().await?;
    Ok(rows.into_iter().map(|r| (r.company_id, r.seq)).collect())
}

async fn insert_all<T>(client: &Client, table: &str, rows: &[T]) -> Result<()>
where
    T: clickhouse::RowWrite + for<'a> Row<Value<'a> = T>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert::<T>(table).await?;
    for r in rows {
        insert.write(r).await?;
    }
    insert.end().await?;
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

/// Writes one folded batch. The balances INSERT is the commit point: until it lands, a replay redoes the batch, and
/// the ledger lines written before it collapse by key.
///
/// `commit_query_id` names the balances INSERT on the server, so that a retry can first wait for an earlier attempt
/// whose outcome it does not know (see [`wait_until_finished`]).
///
/// # Errors
/// ClickHouse errors; the caller retries the whole batch.
pub async fn write(client: &Client, out: &FoldOutput, dead: &[DeadLetterRow], commit_query_id: &str) -> Result<()> {
    insert_all::<LedgerLineRow>(client, "ledger_lines", &out.lines).await?;
    insert_all::<AccountRow>(client, "accounts", &out.accounts).await?;
    insert_all::<DeadLetterRow>(client, "dead_letters", dead).await?;
    let named = client.clone().with_option("query_id", commit_query_id);
    insert_all::<BalanceRow>(&named, "period_balances", &out.balances).await?;
    Ok(())
}

/// Waits until no query with this id runs on the server any more.
///
/// After a timeout or a dropped connection the client cannot know whether its balances INSERT will still land. Once
/// the query is gone from `system.processes` it has either committed or failed for good, and only then may the
/// watermark be read again; otherwise a late landing could be folded a second time.
///
/// # Errors
/// ClickHouse errors; the caller retries.
pub async fn wait_until_finished(client: &Client, query_id: &str) -> Result<()> {
    loop {
        let running: u64 = client.query("SELECT count() FROM system.processes WHERE query_id = ?").bind(query_id).fetch_one().await?;
        if running == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ddl_splits_into_create_statements() {
        let s = super::statements(super::DDL);
        assert_eq!(s.len(), 4);
        assert!(s.iter().all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
    }
}
