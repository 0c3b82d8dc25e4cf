//! Postgres reads and writes of ingest-api, one submodule per subject: [`vouchers`] (posting and the voucher
//! lifecycle, periods), [`invoices`] (tax invoices), [`master`] (partners, departments, accounts, users, company settings) and [`idempotency`]
//! (the keys that make a retried POST create nothing twice). What they share lives here: the chart's accounts and
//! [`enqueue`], which puts an encoded event in the outbox inside the caller's transaction.

use std::future::Future;

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Row};
use uuid::Uuid;

use crate::Result;

pub mod idempotency;
pub mod invoices;
pub mod master;
pub mod vouchers;

/// A new voucher's or invoice's id: a UUIDv7, whose leading bits are the time it was made.
///
/// Their tables' unique indexes on the id (`vouchers_pkey`, `vouchers_company_id_key`, `voucher_lines_pkey`,
/// `invoices_pkey`) then grow at their right-hand end, as a sequence's would. With random (v4) ids, every posting
/// wrote into leaf pages spread over the whole of each index, so after each checkpoint nearly every posting's first
/// write to such a page logged the full 8 KiB page: right after a checkpoint, 1.45 full pages and 10.6 KiB of WAL a
/// posting at 1,000 postings/s (28 Nov, perf/README.md). The id stays opaque to clients; its time is no more than
/// the `created_at` they already see.
#[must_use]
pub fn document_id() -> Uuid {
    Uuid::now_v7()
}

/// An account of the company's chart.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub id: Uuid,
    #[schema(example = "1101")]
    pub code: String,
    pub name: String,
    pub name_en: String,
    #[schema(value_type = kerp_core::chart::AccountType)]
    pub account_type: kerp_core::chart::AccountType,
    pub is_active: bool,
}

/// Lists the company's accounts ordered by code.
///
/// # Errors
/// Database errors.
pub async fn accounts(pool: &PgPool, company_id: Uuid) -> Result<Vec<Account>> {
    Ok(sqlx::query_as("SELECT id, code, name, name_en, account_type, is_active FROM accounts WHERE company_id = $1 ORDER BY code")
        .bind(company_id)
        .fetch_all(pool)
        .await?)
}

/// A listed row and the count of every row the list's filter selects: `count(*) OVER () AS total`, which Postgres
/// takes before the page's LIMIT. A page is then one statement rather than a count and a page: the filter's scan is
/// the same either way, and the second statement cost Postgres a round trip and an execution of its own.
pub(crate) struct Counted<T> {
    pub row: T,
    pub total: i64,
}

impl<'r, T: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Counted<T> {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self { row: T::from_row(row)?, total: row.try_get("total")? })
    }
}

/// The rows of a counted page and the total. A page with no rows carries no count: from the start that means none
/// match, past it only `count` (a plain `count(*)` of the same filter) can tell.
pub(crate) async fn page_total<T, F>(rows: Vec<Counted<T>>, offset: u64, count: F) -> Result<(Vec<T>, u64)>
where
    F: Future<Output = sqlx::Result<i64>>,
{
    let total = match rows.first() {
        Some(first) => first.total,
        None if offset == 0 => 0,
        None => count.await?,
    };
    Ok((rows.into_iter().map(|r| r.row).collect(), u64::try_from(total).unwrap_or(0)))
}

/// Queues an encoded event in the outbox, inside the caller's transaction, for the relay to publish keyed by company.
///
/// # Errors
/// Database errors.
pub async fn enqueue(tx: &mut sqlx::PgConnection, company_id: Uuid, topic: &str, payload: Vec<u8>) -> Result<()> {
    sqlx::query("INSERT INTO outbox (company_id, topic, payload) VALUES ($1, $2, $3)")
        .bind(company_id)
        .bind(topic)
        .bind(payload)
        .execute(tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::document_id;

    /// The indexes on the ids grow at their right-hand end only if each new id sorts after the ones before it, also
    /// within one millisecond (a group-commit batch makes hundreds at once). Postgres compares uuids bytewise, as
    /// `Uuid`'s `Ord` does.
    #[test]
    fn document_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<uuid::Uuid> = (0..10_000).map(|_| document_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "an id sorted before the one made earlier");
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
    }
}
