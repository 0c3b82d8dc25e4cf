//! Postgres reads and writes of ingest-api, one submodule per subject: [`vouchers`] (posting and the voucher
//! lifecycle, periods), [`invoices`] (tax invoices), [`master`] (partners, departments, accounts, users, company settings) and [`idempotency`]
//! (the keys that make a retried POST create nothing twice). What they share lives here: the chart's accounts and
//! [`enqueue`], which puts an encoded event in the outbox inside the caller's transaction.

use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::Result;

pub mod idempotency;
pub mod invoices;
pub mod master;
pub mod vouchers;

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
