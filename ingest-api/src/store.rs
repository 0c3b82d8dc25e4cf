//! Postgres reads and writes of vouchers and accounts. A posting resolves the lines' accounts inside the caller's
//! company, then writes voucher, lines and the outbox event in one transaction.

use std::collections::HashMap;

use axum::http::StatusCode;
use chrono::{Datelike, NaiveDate};
use kerp_core::http::Problem;
use kerp_core::kafka::EVENT_BYTES_MAX;
use kerp_core::voucher::{self, AccountRef, FieldError, ValidVoucher, VOUCHERS_PER_MONTH_MAX};
use kerp_schemas::{VoucherLine, VoucherPosted};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::Result;

pub mod master;

/// Status of every voucher posted through the API today: posting is approval. Drafts arrive with a later issue.
pub const STATUS_APPROVED: &str = "approved";

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Account {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub name_en: String,
    pub account_type: String,
    pub is_active: bool,
}

/// The answer to a successful post.
#[derive(Debug, Clone, Serialize)]
pub struct Posted {
    pub id: Uuid,
    pub voucher_number: String,
    pub voucher_date: NaiveDate,
    pub status: &'static str,
    pub total_debit: i64,
    pub total_credit: i64,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct VoucherRow {
    pub id: Uuid,
    pub voucher_number: String,
    pub voucher_date: NaiveDate,
    pub voucher_type: String,
    pub description: String,
    pub status: String,
    pub total_debit: i64,
    pub total_credit: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct LineRow {
    pub line_no: i32,
    pub account_id: Uuid,
    pub account_code: String,
    pub account_name: String,
    pub partner_id: Option<Uuid>,
    pub department_id: Option<Uuid>,
    pub debit_amount: i64,
    pub credit_amount: i64,
    pub description: String,
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

/// Turns each line's [`AccountRef`] into one of the company's active accounts, or names the line that fails.
///
/// An account of another company and an account that does not exist get the same words, so a client cannot probe
/// for ids outside its company.
async fn resolve_accounts(pool: &PgPool, company_id: Uuid, v: &ValidVoucher) -> Result<Vec<Account>> {
    let mut ids = Vec::new();
    let mut codes = Vec::new();
    for l in &v.lines {
        match &l.account {
            AccountRef::Id(id) => ids.push(*id),
            AccountRef::Code(c) => codes.push(c.clone()),
            AccountRef::Both(id, c) => {
                ids.push(*id);
                codes.push(c.clone());
            }
        }
    }
    let found: Vec<Account> = sqlx::query_as(
        "SELECT id, code, name, name_en, account_type, is_active FROM accounts
         WHERE company_id = $1 AND (id = ANY($2) OR code = ANY($3))",
    )
    .bind(company_id)
    .bind(&ids)
    .bind(&codes)
    .fetch_all(pool)
    .await?;
    let by_id: HashMap<Uuid, &Account> = found.iter().map(|a| (a.id, a)).collect();
    let by_code: HashMap<&str, &Account> = found.iter().map(|a| (a.code.as_str(), a)).collect();

    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(v.lines.len());
    for (i, l) in v.lines.iter().enumerate() {
        let (field, account) = match &l.account {
            AccountRef::Id(id) => ("account_id", by_id.get(id).copied()),
            AccountRef::Code(c) => ("account_code", by_code.get(c.as_str()).copied()),
            AccountRef::Both(id, c) => match (by_id.get(id), by_code.get(c.as_str())) {
                (Some(a), Some(b)) if a.id == b.id => ("account_id", Some(*a)),
                (Some(_), Some(_)) => {
                    errors.push(FieldError::new(format!("lines[{i}].account_code"), "account_id and account_code name different accounts"));
                    continue;
                }
                _ => ("account_id", None),
            },
        };
        match account {
            None => errors.push(FieldError::new(format!("lines[{i}].{field}"), "account not found")),
            Some(a) if !a.is_active => errors.push(FieldError::new(format!("lines[{i}].{field}"), "account is inactive")),
            Some(a) => out.push(a.clone()),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Problem::invalid(errors).into())
    }
}

async fn check_partners(pool: &PgPool, company_id: Uuid, v: &ValidVoucher) -> Result<()> {
    let wanted: Vec<Uuid> = v.lines.iter().filter_map(|l| l.partner_id).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let found: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM partners WHERE company_id = $1 AND is_active AND id = ANY($2)")
        .bind(company_id)
        .bind(&wanted)
        .fetch_all(pool)
        .await?;
    let errors: Vec<FieldError> = v
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.partner_id.is_some_and(|p| !found.contains(&p)))
        .map(|(i, _)| FieldError::new(format!("lines[{i}].partner_id"), "partner not found"))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid(errors).into())
    }
}

/// Refuses lines that name a department the company does not have or has switched off.
async fn check_departments(pool: &PgPool, company_id: Uuid, v: &ValidVoucher) -> Result<()> {
    let wanted: Vec<Uuid> = v.lines.iter().filter_map(|l| l.department_id).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let found: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM departments WHERE company_id = $1 AND is_active AND id = ANY($2)")
        .bind(company_id)
        .bind(&wanted)
        .fetch_all(pool)
        .await?;
    let errors: Vec<FieldError> = v
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.department_id.is_some_and(|d| !found.contains(&d)))
        .map(|(i, _)| FieldError::new(format!("lines[{i}].department_id"), "department not found"))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid(errors).into())
    }
}

/// Stores a validated voucher, its lines and its outbox event in one transaction and returns what was stored.
///
/// # Errors
/// 422 for accounts or partners outside the company, 409 when the month's numbers are used up, 413 when the event
/// would be larger than Kafka carries ([`EVENT_BYTES_MAX`]), database errors.
pub async fn post_voucher(pool: &PgPool, company_id: Uuid, user_id: Uuid, topic: &str, v: &ValidVoucher) -> Result<Posted> {
    let accounts = resolve_accounts(pool, company_id, v).await?;
    check_partners(pool, company_id, v).await?;
    check_departments(pool, company_id, v).await?;

    let mut tx = pool.begin().await?;
    let period = NaiveDate::from_ymd_opt(v.voucher_date.year(), v.voucher_date.month(), 1).unwrap_or(v.voucher_date);
    let no: i32 = sqlx::query_scalar(
        "INSERT INTO voucher_counters (company_id, period, last_no) VALUES ($1, $2, 1)
         ON CONFLICT (company_id, period) DO UPDATE SET last_no = voucher_counters.last_no + 1
         RETURNING last_no",
    )
    .bind(company_id)
    .bind(period)
    .fetch_one(&mut *tx)
    .await?;
    let no = u32::try_from(no).unwrap_or(u32::MAX);
    if no > VOUCHERS_PER_MONTH_MAX {
        return Err(Problem::new(StatusCode::CONFLICT, format!("the month {period} already has {VOUCHERS_PER_MONTH_MAX} vouchers")).into());
    }
    let voucher_number = voucher::voucher_number(v.voucher_date, no);
    let id = Uuid::new_v4();

    // The lines go in before the company row is locked (their foreign key to the voucher is checked at commit), so
    // the lock that serialises the company's postings covers only the voucher row and the outbox row.
    let n = v.lines.len();
    let line_nos: Vec<i32> = (1..=i32::try_from(n).unwrap_or(i32::MAX)).collect();
    let account_ids: Vec<Uuid> = accounts.iter().map(|a| a.id).collect();
    let partner_ids: Vec<Option<Uuid>> = v.lines.iter().map(|l| l.partner_id).collect();
    let department_ids: Vec<Option<Uuid>> = v.lines.iter().map(|l| l.department_id).collect();
    let debits: Vec<i64> = v.lines.iter().map(|l| l.debit).collect();
    let credits: Vec<i64> = v.lines.iter().map(|l| l.credit).collect();
    let descriptions: Vec<&str> = v.lines.iter().map(|l| l.description.as_str()).collect();
    sqlx::query(
        "INSERT INTO voucher_lines (voucher_id, line_no, company_id, account_id, partner_id, department_id, debit, credit, description)
         SELECT $1, line_no, $2, account_id, partner_id, department_id, debit, credit, description
         FROM UNNEST($3::int[], $4::uuid[], $5::uuid[], $9::uuid[], $6::bigint[], $7::bigint[], $8::text[])
              AS t(line_no, account_id, partner_id, department_id, debit, credit, description)",
    )
    .bind(id)
    .bind(company_id)
    .bind(&line_nos)
    .bind(&account_ids)
    .bind(&partner_ids)
    .bind(&debits)
    .bind(&credits)
    .bind(&descriptions)
    .bind(&department_ids)
    .execute(&mut *tx)
    .await?;

    // Taking the company row orders a company's postings: their events get consecutive sequence numbers in commit
    // order, which is what the fold relies on to drop re-published events and to notice a missing one.
    let seq: Option<i64> = sqlx::query_scalar("UPDATE companies SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq")
        .bind(company_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(company_seq) = seq else {
        // A validly signed token for a company that does not exist (any more).
        return Err(Problem::unauthorized().into());
    };
    let posted_at = chrono::Utc::now();
    sqlx::query(
        "INSERT INTO vouchers (id, company_id, voucher_number, voucher_date, voucher_type, description, status,
                               total_debit, total_credit, created_by, created_at, company_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(company_id)
    .bind(&voucher_number)
    .bind(v.voucher_date)
    .bind(&v.voucher_type)
    .bind(&v.description)
    .bind(STATUS_APPROVED)
    .bind(v.total)
    .bind(user_id)
    .bind(posted_at)
    .bind(company_seq)
    .execute(&mut *tx)
    .await?;

    let event = VoucherPosted {
        event_id: Uuid::new_v4(),
        company_id,
        company_seq,
        voucher_id: id,
        voucher_number: voucher_number.clone(),
        // `NaiveDate::default()` is 1970-01-01, the epoch of Avro's `date` logical type.
        voucher_date: i32::try_from(v.voucher_date.signed_duration_since(NaiveDate::default()).num_days()).unwrap_or(0),
        voucher_type: v.voucher_type.clone(),
        status: STATUS_APPROVED.to_owned(),
        description: v.description.clone(),
        posted_at: posted_at.timestamp_micros(),
        lines: v
            .lines
            .iter()
            .zip(&accounts)
            .zip(&line_nos)
            .map(|((l, a), no)| VoucherLine {
                line_no: *no,
                account_id: a.id,
                account_code: a.code.clone(),
                account_name: a.name.clone(),
                account_type: a.account_type.clone(),
                partner_id: l.partner_id,
                debit: l.debit,
                credit: l.credit,
                description: l.description.clone(),
                department_id: l.department_id,
            })
            .collect(),
        reversal_of: None,
    };
    let payload = kerp_schemas::encode_voucher_posted(&event)?;
    if payload.len() > EVENT_BYTES_MAX {
        // Dropping the transaction rolls it back: the number, the sequence and the lines are given back.
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the voucher's event would be {} bytes, over the limit of {EVENT_BYTES_MAX} bytes (EVENT_BYTES_MAX) that \
                 Kafka carries; post fewer lines or shorter descriptions",
                payload.len()
            ),
        )
        .into());
    }
    enqueue(&mut tx, company_id, topic, payload).await?;
    tx.commit().await?;
    metrics::counter!("vouchers_posted_total").increment(1);

    Ok(Posted { id, voucher_number, voucher_date: v.voucher_date, status: STATUS_APPROVED, total_debit: v.total, total_credit: v.total })
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

/// Filters of the voucher list, already checked.
#[derive(Debug, Clone, Default)]
pub struct VoucherFilter {
    pub from_date: Option<NaiveDate>,
    pub to_date: Option<NaiveDate>,
    pub status: Option<String>,
}

/// One page of a company's vouchers ordered by date and number, and the total count.
///
/// # Errors
/// Database errors.
pub async fn list_vouchers(pool: &PgPool, company_id: Uuid, f: &VoucherFilter, limit: u32, offset: u64) -> Result<(Vec<VoucherRow>, u64)> {
    const WHERE: &str = "WHERE company_id = $1 AND ($2::date IS NULL OR voucher_date >= $2)
                         AND ($3::date IS NULL OR voucher_date <= $3) AND ($4::text IS NULL OR status = $4)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM vouchers {WHERE}"))
        .bind(company_id)
        .bind(f.from_date)
        .bind(f.to_date)
        .bind(&f.status)
        .fetch_one(pool)
        .await?;
    let rows = sqlx::query_as(&format!(
        "SELECT id, voucher_number, voucher_date, voucher_type, description, status, total_debit, total_credit, created_at
         FROM vouchers {WHERE} ORDER BY voucher_date, voucher_number LIMIT $5 OFFSET $6"
    ))
    .bind(company_id)
    .bind(f.from_date)
    .bind(f.to_date)
    .bind(&f.status)
    .bind(i64::from(limit))
    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

/// One voucher of the company with its lines, or `None` (also for another company's voucher).
///
/// # Errors
/// Database errors.
pub async fn get_voucher(pool: &PgPool, company_id: Uuid, id: Uuid) -> Result<Option<(VoucherRow, Vec<LineRow>)>> {
    let v: Option<VoucherRow> = sqlx::query_as(
        "SELECT id, voucher_number, voucher_date, voucher_type, description, status, total_debit, total_credit, created_at
         FROM vouchers WHERE company_id = $1 AND id = $2",
    )
    .bind(company_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(v) = v else { return Ok(None) };
    let lines = sqlx::query_as(
        "SELECT l.line_no, l.account_id, a.code AS account_code, a.name AS account_name, l.partner_id, l.department_id,
                l.debit AS debit_amount, l.credit AS credit_amount, l.description
         FROM voucher_lines l JOIN accounts a ON a.id = l.account_id
         WHERE l.voucher_id = $1 ORDER BY l.line_no",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some((v, lines)))
}
