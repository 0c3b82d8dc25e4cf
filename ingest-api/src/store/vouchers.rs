//! Postgres reads and writes of vouchers through their life, and of closed periods.
//!
//! A posting resolves its lines' accounts, partners and departments inside the caller's company, then writes the
//! voucher and its lines. A draft stops there. Approval (at posting, of a draft, or of a reversal) takes the month's
//! voucher counter row (gapless numbers; a closed month refuses here), then the company row (the event sequence), and
//! queues the `VoucherPosted` event in the same transaction. Every function works inside the caller's transaction, so
//! that an idempotency key can commit with what it created.

use std::collections::HashMap;

use axum::http::StatusCode;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use kerp_core::http::Problem;
use kerp_core::kafka::EVENT_BYTES_MAX;
use kerp_core::voucher::{
    self, AccountRef, FieldError, ValidVoucher, VoucherStatus, VoucherType, DESCRIPTION_CHARS_MAX, VOUCHERS_PER_MONTH_MAX,
};
use kerp_schemas::{VoucherLine, VoucherPosted};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{enqueue, Account};
use crate::Result;

pub mod batch;

/// The answer to a post, an approval or a reversal.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Posted {
    pub id: Uuid,
    /// `None` for a draft: numbers are given at approval.
    #[schema(example = "2025-03-000001")]
    pub voucher_number: Option<String>,
    pub voucher_date: NaiveDate,
    pub status: VoucherStatus,
    pub total_debit: i64,
    pub total_credit: i64,
    /// On a reversal: the voucher it reverses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reversal_of: Option<Uuid>,
}

/// A voucher as lists and reads show it.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct VoucherRow {
    pub id: Uuid,
    pub voucher_number: Option<String>,
    pub voucher_date: NaiveDate,
    pub voucher_type: VoucherType,
    pub description: String,
    pub status: VoucherStatus,
    pub total_debit: i64,
    pub total_credit: i64,
    /// The voucher this one reverses.
    pub reversal_of: Option<Uuid>,
    /// The voucher that reversed this one.
    pub reversed_by: Option<Uuid>,
    pub reason: String,
    pub approved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const VOUCHER_COLUMNS: &str = "v.id, v.voucher_number, v.voucher_date, v.voucher_type, v.description, v.status, v.total_debit,
     v.total_credit, v.reversal_of, (SELECT r.id FROM vouchers r WHERE r.reversal_of = v.id) AS reversed_by, v.reason,
     v.approved_at, v.created_at";

/// A line of a voucher, with its account resolved.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
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

/// A line with its account resolved, as it is stored and published.
#[derive(Debug, Clone)]
struct BookLine {
    account: Account,
    partner_id: Option<Uuid>,
    department_id: Option<Uuid>,
    debit: i64,
    credit: i64,
    description: String,
}

/// The header fields a voucher's event carries.
struct Header<'a> {
    id: Uuid,
    voucher_date: NaiveDate,
    voucher_type: VoucherType,
    description: &'a str,
    reversal_of: Option<Uuid>,
}

fn conflict(detail: impl Into<String>) -> crate::Error {
    Problem::new(StatusCode::CONFLICT, detail).into()
}

/// Turns each line's [`AccountRef`] into one of the company's active accounts, or names the line that fails.
///
/// An account of another company and an account that does not exist get the same words, so a client cannot probe
/// for ids outside its company.
async fn resolve_accounts(tx: &mut PgConnection, company_id: Uuid, v: &ValidVoucher) -> Result<Vec<Account>> {
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
    .fetch_all(&mut *tx)
    .await?;
    match_accounts(&found, v)
}

/// The pure half of [`resolve_accounts`]: each line's account among `found` (the company's accounts that any line
/// names), or the lines that fail. Group commit resolves a whole batch with one query and then calls this per voucher.
pub(super) fn match_accounts(found: &[Account], v: &ValidVoucher) -> Result<Vec<Account>> {
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

/// Refuses lines that name a row of `table` (partners or departments) that the company does not have or has
/// switched off; `pick` reads the line's reference and `field` names it in the error.
async fn check_refs(
    tx: &mut PgConnection,
    company_id: Uuid,
    v: &ValidVoucher,
    table: &str,
    field: &str,
    pick: fn(&voucher::ValidLine) -> Option<Uuid>,
) -> Result<()> {
    let wanted: Vec<Uuid> = v.lines.iter().filter_map(pick).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let found: Vec<Uuid> = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE company_id = $1 AND is_active AND id = ANY($2)"))
        .bind(company_id)
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?;
    missing_refs(v, &found, field, pick)
}

/// The pure half of [`check_refs`]: refuses lines whose reference `pick` reads is not among `found`.
pub(super) fn missing_refs(v: &ValidVoucher, found: &[Uuid], field: &str, pick: fn(&voucher::ValidLine) -> Option<Uuid>) -> Result<()> {
    let what = field.trim_end_matches("_id");
    let errors: Vec<FieldError> = v
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| pick(l).is_some_and(|p| !found.contains(&p)))
        .map(|(i, _)| FieldError::new(format!("lines[{i}].{field}"), format!("{what} not found")))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid(errors).into())
    }
}

/// Resolves and checks every reference of a voucher body.
async fn book_lines(tx: &mut PgConnection, company_id: Uuid, v: &ValidVoucher) -> Result<Vec<BookLine>> {
    let accounts = resolve_accounts(tx, company_id, v).await?;
    check_refs(tx, company_id, v, "partners", "partner_id", |l| l.partner_id).await?;
    check_refs(tx, company_id, v, "departments", "department_id", |l| l.department_id).await?;
    Ok(to_book_lines(v, accounts))
}

/// A voucher's lines with their resolved accounts (in line order, as [`match_accounts`] returns them).
fn to_book_lines(v: &ValidVoucher, accounts: Vec<Account>) -> Vec<BookLine> {
    v.lines
        .iter()
        .zip(accounts)
        .map(|(l, account)| BookLine {
            account,
            partner_id: l.partner_id,
            department_id: l.department_id,
            debit: l.debit,
            credit: l.credit,
            description: l.description.clone(),
        })
        .collect()
}

/// Writes a voucher's lines, numbered from 1. Their foreign key to the voucher is checked at commit, so they may go
/// in before the voucher row.
async fn insert_lines(tx: &mut PgConnection, company_id: Uuid, voucher_id: Uuid, lines: &[BookLine]) -> Result<()> {
    let line_nos: Vec<i32> = (1..=i32::try_from(lines.len()).unwrap_or(i32::MAX)).collect();
    let account_ids: Vec<Uuid> = lines.iter().map(|l| l.account.id).collect();
    let partner_ids: Vec<Option<Uuid>> = lines.iter().map(|l| l.partner_id).collect();
    let department_ids: Vec<Option<Uuid>> = lines.iter().map(|l| l.department_id).collect();
    let debits: Vec<i64> = lines.iter().map(|l| l.debit).collect();
    let credits: Vec<i64> = lines.iter().map(|l| l.credit).collect();
    let descriptions: Vec<&str> = lines.iter().map(|l| l.description.as_str()).collect();
    sqlx::query(
        "INSERT INTO voucher_lines (voucher_id, line_no, company_id, account_id, partner_id, department_id, debit, credit, description)
         SELECT $1, line_no, $2, account_id, partner_id, department_id, debit, credit, description
         FROM UNNEST($3::int[], $4::uuid[], $5::uuid[], $6::uuid[], $7::bigint[], $8::bigint[], $9::text[])
              AS t(line_no, account_id, partner_id, department_id, debit, credit, description)",
    )
    .bind(voucher_id)
    .bind(company_id)
    .bind(&line_nos)
    .bind(&account_ids)
    .bind(&partner_ids)
    .bind(&department_ids)
    .bind(&debits)
    .bind(&credits)
    .bind(&descriptions)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Takes the month's voucher counter row for `date` and refuses a closed month. Closing a month takes the same row,
/// so a posting and a close never cross. Returns the month's next number.
async fn next_number(tx: &mut PgConnection, company_id: Uuid, date: NaiveDate) -> Result<String> {
    let period = first_of_month(date);
    let no: i32 = sqlx::query_scalar(
        "INSERT INTO voucher_counters (company_id, period, last_no) VALUES ($1, $2, 1)
         ON CONFLICT (company_id, period) DO UPDATE SET last_no = voucher_counters.last_no + 1
         RETURNING last_no",
    )
    .bind(company_id)
    .bind(period)
    .fetch_one(&mut *tx)
    .await?;
    if is_closed(tx, company_id, period).await? {
        return Err(period_closed(period));
    }
    let no = u32::try_from(no).unwrap_or(u32::MAX);
    if no > VOUCHERS_PER_MONTH_MAX {
        return Err(conflict(format!("the month {period} already has {VOUCHERS_PER_MONTH_MAX} vouchers")));
    }
    Ok(voucher::voucher_number(date, no))
}

/// The 409 of a posting into a closed month.
fn period_closed(period: NaiveDate) -> crate::Error {
    Problem::period_closed(format!("the period {} is closed", period.format("%Y-%m"))).into()
}

fn first_of_month(date: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or(date)
}

async fn is_closed(tx: &mut PgConnection, company_id: Uuid, period: NaiveDate) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM closed_periods WHERE company_id = $1 AND period = $2)")
        .bind(company_id)
        .bind(period)
        .fetch_one(&mut *tx)
        .await?)
}

/// Numbers a voucher, gives it the company's next event sequence and queues its `VoucherPosted` event. The caller
/// then writes the number and sequence onto the voucher row.
async fn publish(
    tx: &mut PgConnection,
    company_id: Uuid,
    topic: &str,
    h: &Header<'_>,
    lines: &[BookLine],
) -> Result<(String, i64, DateTime<Utc>)> {
    let voucher_number = next_number(tx, company_id, h.voucher_date).await?;
    // Taking the company row orders a company's postings: their events get consecutive sequence numbers in commit
    // order, which is what the fold relies on to drop re-published events and to notice a missing one. It comes
    // last, so that the lock that serialises the company's postings is held as briefly as possible.
    let seq: Option<i64> = sqlx::query_scalar("UPDATE companies SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq")
        .bind(company_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(company_seq) = seq else {
        // A validly signed token for a company that does not exist (any more).
        return Err(Problem::unauthorized().into());
    };
    let posted_at = Utc::now();
    let payload = event_payload(company_id, company_seq, &voucher_number, h, lines, posted_at)?;
    enqueue(tx, company_id, topic, payload).await?;
    metrics::counter!("vouchers_posted_total").increment(1);
    Ok((voucher_number, company_seq, posted_at))
}

/// The encoded `VoucherPosted` event of a voucher being approved, or a 413 when it is larger than Kafka carries.
fn event_payload(
    company_id: Uuid,
    company_seq: i64,
    voucher_number: &str,
    h: &Header<'_>,
    lines: &[BookLine],
    posted_at: DateTime<Utc>,
) -> Result<Vec<u8>> {
    let event = VoucherPosted {
        event_id: Uuid::new_v4(),
        company_id,
        company_seq,
        voucher_id: h.id,
        voucher_number: voucher_number.to_owned(),
        // `NaiveDate::default()` is 1970-01-01, the epoch of Avro's `date` logical type.
        voucher_date: i32::try_from(h.voucher_date.signed_duration_since(NaiveDate::default()).num_days()).unwrap_or(0),
        voucher_type: h.voucher_type.as_str().to_owned(),
        status: VoucherStatus::Approved.as_str().to_owned(),
        description: h.description.to_owned(),
        posted_at: posted_at.timestamp_micros(),
        lines: lines
            .iter()
            .zip(1..)
            .map(|(l, no)| VoucherLine {
                line_no: no,
                account_id: l.account.id,
                account_code: l.account.code.clone(),
                account_name: l.account.name.clone(),
                account_type: l.account.account_type.as_str().to_owned(),
                partner_id: l.partner_id,
                debit: l.debit,
                credit: l.credit,
                description: l.description.clone(),
                department_id: l.department_id,
            })
            .collect(),
        reversal_of: h.reversal_of,
    };
    let payload = kerp_schemas::encode_voucher_posted(&event)?;
    if payload.len() > EVENT_BYTES_MAX {
        // The caller's transaction rolls back: the number, the sequence and the lines are given back.
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
    Ok(payload)
}

/// Stores a validated voucher and its lines; an approved one is also numbered and published.
///
/// # Errors
/// 422 for accounts, partners or departments outside the company or switched off, 409 for a closed period or a
/// month whose numbers are used up, 413 when the event would be larger than Kafka carries, database errors.
pub async fn post_voucher(tx: &mut PgConnection, company_id: Uuid, user_id: Uuid, topic: &str, v: &ValidVoucher) -> Result<Posted> {
    let lines = book_lines(tx, company_id, v).await?;
    let id = crate::store::document_id();
    insert_lines(tx, company_id, id, &lines).await?;
    let (number, seq, approved_at) = if v.status == VoucherStatus::Approved {
        let h = Header { id, voucher_date: v.voucher_date, voucher_type: v.voucher_type, description: &v.description, reversal_of: None };
        let (n, s, at) = publish(tx, company_id, topic, &h, &lines).await?;
        (Some(n), Some(s), Some(at))
    } else {
        (None, None, None)
    };
    sqlx::query(
        "INSERT INTO vouchers (id, company_id, voucher_number, voucher_date, voucher_type, description, status,
                               total_debit, total_credit, created_by, created_at, company_seq, approved_at, approved_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, COALESCE($11, now()), $10, $11, CASE WHEN $11 IS NULL THEN NULL ELSE $9 END)",
    )
    .bind(id)
    .bind(company_id)
    .bind(&number)
    .bind(v.voucher_date)
    .bind(v.voucher_type)
    .bind(&v.description)
    .bind(v.status)
    .bind(v.total)
    .bind(user_id)
    .bind(seq)
    .bind(approved_at)
    .execute(&mut *tx)
    .await?;
    Ok(Posted {
        id,
        voucher_number: number,
        voucher_date: v.voucher_date,
        status: v.status,
        total_debit: v.total,
        total_credit: v.total,
        reversal_of: None,
    })
}

/// The company's voucher `id`, locked for the rest of the transaction, or a 404.
async fn lock_voucher(tx: &mut PgConnection, company_id: Uuid, id: Uuid) -> Result<VoucherRow> {
    let row: Option<VoucherRow> =
        sqlx::query_as(&format!("SELECT {VOUCHER_COLUMNS} FROM vouchers v WHERE v.company_id = $1 AND v.id = $2 FOR UPDATE"))
            .bind(company_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    row.ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "voucher not found").into())
}

fn refuse_unless_draft(v: &VoucherRow, action: &str) -> Result<()> {
    match v.status {
        VoucherStatus::Draft => Ok(()),
        s => Err(conflict(format!(
            "the voucher is {}; only a draft can be {action} (an approved voucher is corrected by a reversal)",
            s.as_str()
        ))),
    }
}

/// Replaces a draft's header and lines; with `"status": "approved"` it is approved as well.
///
/// # Errors
/// 404 for no such voucher, 409 unless it is a draft, and those of [`post_voucher`].
pub async fn update_draft(
    tx: &mut PgConnection,
    company_id: Uuid,
    user_id: Uuid,
    topic: &str,
    id: Uuid,
    v: &ValidVoucher,
) -> Result<Posted> {
    let current = lock_voucher(tx, company_id, id).await?;
    refuse_unless_draft(&current, "edited")?;
    let lines = book_lines(tx, company_id, v).await?;
    sqlx::query("DELETE FROM voucher_lines WHERE voucher_id = $1").bind(id).execute(&mut *tx).await?;
    insert_lines(tx, company_id, id, &lines).await?;
    sqlx::query(
        "UPDATE vouchers SET voucher_date = $2, voucher_type = $3, description = $4, total_debit = $5, total_credit = $5,
                             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(v.voucher_date)
    .bind(v.voucher_type)
    .bind(&v.description)
    .bind(v.total)
    .execute(&mut *tx)
    .await?;
    if v.status == VoucherStatus::Approved {
        return approve(tx, company_id, user_id, topic, id).await;
    }
    Ok(Posted {
        id,
        voucher_number: None,
        voucher_date: v.voucher_date,
        status: VoucherStatus::Draft,
        total_debit: v.total,
        total_credit: v.total,
        reversal_of: None,
    })
}

/// Deletes a draft and its lines.
///
/// # Errors
/// 404 for no such voucher, 409 unless it is a draft.
pub async fn delete_draft(tx: &mut PgConnection, company_id: Uuid, id: Uuid) -> Result<()> {
    let current = lock_voucher(tx, company_id, id).await?;
    refuse_unless_draft(&current, "deleted")?;
    sqlx::query("DELETE FROM voucher_lines WHERE voucher_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM vouchers WHERE id = $1").bind(id).execute(&mut *tx).await?;
    Ok(())
}

/// The stored lines of a voucher with their accounts, in line order.
async fn stored_lines(tx: &mut PgConnection, id: Uuid) -> Result<Vec<BookLine>> {
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        account: Account,
        partner_id: Option<Uuid>,
        department_id: Option<Uuid>,
        debit: i64,
        credit: i64,
        description: String,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, a.code, a.name, a.name_en, a.account_type, a.is_active, l.partner_id, l.department_id, l.debit, l.credit,
                l.description
         FROM voucher_lines l JOIN accounts a ON a.id = l.account_id WHERE l.voucher_id = $1 ORDER BY l.line_no",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| BookLine {
            account: r.account,
            partner_id: r.partner_id,
            department_id: r.department_id,
            debit: r.debit,
            credit: r.credit,
            description: r.description,
        })
        .collect())
}

/// Approves a draft: numbers it (in its month, which must be open) and publishes it.
///
/// # Errors
/// 404 for no such voucher, 409 unless it is a draft or when its period is closed, 422 when one of its accounts,
/// partners or departments was switched off since it was drafted.
pub async fn approve(tx: &mut PgConnection, company_id: Uuid, user_id: Uuid, topic: &str, id: Uuid) -> Result<Posted> {
    let current = lock_voucher(tx, company_id, id).await?;
    refuse_unless_draft(&current, "approved")?;
    let lines = stored_lines(tx, id).await?;
    let inactive: Vec<FieldError> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.account.is_active)
        .map(|(i, _)| FieldError::new(format!("lines[{i}].account_id"), "account is inactive"))
        .collect();
    if !inactive.is_empty() {
        return Err(Problem::invalid(inactive).into());
    }
    let h = Header {
        id,
        voucher_date: current.voucher_date,
        voucher_type: current.voucher_type,
        description: &current.description,
        reversal_of: None,
    };
    let (number, seq, at) = publish(tx, company_id, topic, &h, &lines).await?;
    sqlx::query(
        "UPDATE vouchers SET status = 'approved', voucher_number = $2, company_seq = $3, approved_at = $4, approved_by = $5,
                             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(&number)
    .bind(seq)
    .bind(at)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    Ok(Posted {
        id,
        voucher_number: Some(number),
        voucher_date: current.voucher_date,
        status: VoucherStatus::Approved,
        total_debit: current.total_debit,
        total_credit: current.total_credit,
        reversal_of: None,
    })
}

/// Reverses an approved voucher: posts a new approved voucher dated `date` (the original's date by default) with
/// every debit and credit swapped, referencing the original, and marks the original `reversed`. The original stays in
/// the reports, netted by the reversal. Accounts, partners and departments switched off since are still used: a
/// correction must remain possible.
///
/// # Errors
/// 404 for no such voucher, 409 when it is a draft, already reversed, a reversal itself, or when the reversal's
/// period is closed.
pub async fn reverse(
    tx: &mut PgConnection,
    company_id: Uuid,
    user_id: Uuid,
    topic: &str,
    id: Uuid,
    date: Option<NaiveDate>,
    reason: &str,
) -> Result<Posted> {
    let original = lock_voucher(tx, company_id, id).await?;
    match original.status {
        VoucherStatus::Approved => {}
        VoucherStatus::Draft => return Err(conflict("a draft is not reversed; edit or delete it")),
        VoucherStatus::Reversed => return Err(conflict("the voucher is already reversed")),
    }
    if original.reversal_of.is_some() {
        return Err(conflict("the voucher is itself a reversal; post a new voucher instead"));
    }
    let date = date.unwrap_or(original.voucher_date);
    let lines: Vec<BookLine> =
        stored_lines(tx, id).await?.into_iter().map(|l| BookLine { debit: l.credit, credit: l.debit, ..l }).collect();
    let number = original.voucher_number.clone().unwrap_or_default();
    let description: String = format!("[역분개 {number}] {}", original.description).chars().take(DESCRIPTION_CHARS_MAX).collect();
    let new_id = crate::store::document_id();
    insert_lines(tx, company_id, new_id, &lines).await?;
    let h =
        Header { id: new_id, voucher_date: date, voucher_type: original.voucher_type, description: &description, reversal_of: Some(id) };
    let (new_number, seq, at) = publish(tx, company_id, topic, &h, &lines).await?;
    sqlx::query(
        "INSERT INTO vouchers (id, company_id, voucher_number, voucher_date, voucher_type, description, status, total_debit,
                               total_credit, created_by, created_at, company_seq, approved_at, approved_by, reversal_of, reason)
         VALUES ($1, $2, $3, $4, $5, $6, 'approved', $7, $7, $8, $9, $10, $9, $8, $11, $12)",
    )
    .bind(new_id)
    .bind(company_id)
    .bind(&new_number)
    .bind(date)
    .bind(original.voucher_type)
    .bind(&description)
    .bind(original.total_debit)
    .bind(user_id)
    .bind(at)
    .bind(seq)
    .bind(id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE vouchers SET status = 'reversed', updated_at = now() WHERE id = $1").bind(id).execute(&mut *tx).await?;
    Ok(Posted {
        id: new_id,
        voucher_number: Some(new_number),
        voucher_date: date,
        status: VoucherStatus::Approved,
        total_debit: original.total_debit,
        total_credit: original.total_credit,
        reversal_of: Some(id),
    })
}

/// Filters of the voucher list, already checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherFilter {
    pub from_date: Option<NaiveDate>,
    pub to_date: Option<NaiveDate>,
    pub status: Option<VoucherStatus>,
}

/// Most rows the voucher list counts for `total` when the client does not ask for an exact total: past it the count
/// stops, and `total` is a lower bound. Counting at most this many index entries from the page on keeps a page's cost
/// independent of how many vouchers the company has. It was 10,000: under the realistic workload's 400 voucher-entry
/// users (each lists today's vouchers before posting one) counting that far cost 1.4 ms of Postgres CPU per page, a
/// fifth of what Postgres did; a list shows "1,000+" as well as "10,000+". At 1,000 it was still 0.93 ms of a 1.4 ms
/// page (28 Nov, the same workload): the vouchers posted that day are not yet all-visible, so each entry counted is
/// a heap fetch too, and the page was a quarter of Postgres's time in the morning phase. A page larger than this
/// counts up to its own size instead, so `total` never falls short of the rows it shows.
pub const LIST_COUNT_ROWS_MAX: u64 = 200;

/// How many vouchers a capped count takes from a page's start: [`LIST_COUNT_ROWS_MAX`], or the page's size when
/// that is larger.
fn count_rows_max(limit: u32) -> u64 {
    LIST_COUNT_ROWS_MAX.max(u64::from(limit))
}

/// A voucher's place in the list: date, then number with drafts (no number yet) last in their day, then creation
/// time, then id. The id makes the order total, so a page that ends between two vouchers of the same date and
/// creation time still resumes at exactly the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListKey {
    pub voucher_date: NaiveDate,
    pub voucher_number: Option<String>,
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl ListKey {
    /// The key of a listed voucher.
    #[must_use]
    pub fn of(v: &VoucherRow) -> Self {
        Self { voucher_date: v.voucher_date, voucher_number: v.voucher_number.clone(), created_at: v.created_at, id: v.id }
    }
}

/// Where a page of the voucher list starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListStart {
    /// After this many vouchers, by `OFFSET`: the page/page_size contract, whose cost grows with the offset.
    Offset(u64),
    /// Just after this voucher, by the keyset: an index range scan from the key, whatever the depth.
    After(ListKey),
}

/// How `total` is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListCount {
    /// `count(*)` over every voucher the filters select.
    Exact,
    /// The vouchers from the page's start on, up to [`LIST_COUNT_ROWS_MAX`].
    Capped,
}

/// One page of the voucher list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub rows: Vec<VoucherRow>,
    /// Whether more vouchers follow the page.
    pub more: bool,
    /// With [`ListCount::Exact`], every voucher the filters select. With [`ListCount::Capped`], from an offset: the
    /// vouchers up to the offset plus at most [`LIST_COUNT_ROWS_MAX`] more; after a key: at most that many from the
    /// key on, and the caller adds the ones before it.
    pub counted: u64,
    /// Whether the capped count stopped at its cap, so there are more than `counted`.
    pub count_capped: bool,
}

/// The list's sort key as SQL. "NULLS LAST" is spelled as `voucher_number IS NULL` (false first) then the number with
/// NULL read as '', because a row comparison cannot step over a NULL; migration 0008 indexes exactly these columns.
const LIST_KEY: &str = "v.voucher_date, (v.voucher_number IS NULL), COALESCE(v.voucher_number, ''), v.created_at, v.id";

/// Appends the filters, and the keyset bound when the page starts after a key. Only the conditions in use are written
/// (rather than `$n IS NULL OR …`), so that Postgres's generic plan for a prepared statement still has every bound as
/// an index condition.
fn push_list_where(b: &mut QueryBuilder<'_, Postgres>, company_id: Uuid, f: &VoucherFilter, after: Option<&ListKey>) {
    b.push(" WHERE v.company_id = ").push_bind(company_id);
    if let Some(from) = f.from_date {
        b.push(" AND v.voucher_date >= ").push_bind(from);
    }
    if let Some(to) = f.to_date {
        b.push(" AND v.voucher_date <= ").push_bind(to);
    }
    if let Some(status) = f.status {
        b.push(" AND v.status = ").push_bind(status.as_str());
    }
    if let Some(k) = after {
        b.push(format_args!(" AND ({LIST_KEY}) > ("))
            .push_bind(k.voucher_date)
            .push(", ")
            .push_bind(k.voucher_number.is_none())
            .push(", ")
            .push_bind(k.voucher_number.clone().unwrap_or_default())
            .push(", ")
            .push_bind(k.created_at)
            .push(", ")
            .push_bind(k.id)
            .push(")");
    }
}

/// One page of a company's vouchers in list order (see [`ListKey`]), whether more follow, and the count `total` is
/// made of.
///
/// The page and its count are one statement, the count a scalar subquery Postgres runs once (an InitPlan) and puts on
/// every row. They were two statements on two connections, run concurrently: a little sooner on an idle server, but
/// under load (the realistic workload's 400 clerks list before each posting) the second statement's round trip and
/// execution start were Postgres CPU that every other request waited for. A page with no rows carries no count, so
/// only an empty page past the start counts on its own.
///
/// # Errors
/// Database errors.
pub async fn list_vouchers(
    pool: &PgPool,
    company_id: Uuid,
    f: &VoucherFilter,
    start: &ListStart,
    limit: u32,
    count: ListCount,
) -> Result<ListPage> {
    let (after, offset) = match start {
        ListStart::Offset(o) => (None, i64::try_from(*o).unwrap_or(i64::MAX)),
        ListStart::After(k) => (Some(k), 0),
    };
    let push_count = |b: &mut QueryBuilder<'_, Postgres>| match count {
        ListCount::Exact => {
            b.push("SELECT count(*) FROM vouchers v");
            push_list_where(b, company_id, f, None);
        }
        ListCount::Capped => {
            // From the key on, or from the start through the offset (which the OFFSET page scans anyway), so that a
            // page past the end still learns the real total.
            b.push("SELECT count(*) FROM (SELECT 1 FROM vouchers v");
            push_list_where(b, company_id, f, after);
            let rows_max = offset.saturating_add(i64::try_from(count_rows_max(limit)).unwrap_or(i64::MAX));
            b.push(" LIMIT ").push_bind(rows_max.saturating_add(1));
            b.push(") AS counted");
        }
    };
    // The page's ids are cut first, from the list index alone (an index-only scan: the index holds the whole key),
    // then only those rows are read and get the per-row `reversed_by` lookup. In one SELECT, Postgres would read
    // every row an OFFSET skips and run that lookup for each; as a join, it tends to pick a sequential scan.
    let mut page = QueryBuilder::new(format!("SELECT {VOUCHER_COLUMNS}, ("));
    push_count(&mut page);
    page.push(") AS total FROM vouchers v WHERE v.company_id = ");
    page.push_bind(company_id).push(" AND v.id = ANY (ARRAY(SELECT v.id FROM vouchers v");
    push_list_where(&mut page, company_id, f, after);
    // One row past the page tells whether another page follows.
    page.push(format_args!(" ORDER BY {LIST_KEY} LIMIT ")).push_bind(i64::from(limit) + 1);
    if offset > 0 {
        page.push(" OFFSET ").push_bind(offset);
    }
    page.push(format_args!(")) ORDER BY {LIST_KEY}"));
    let rows: Vec<super::Counted<VoucherRow>> = page.build_query_as().fetch_all(pool).await?;
    // An empty page means a count of 0 when the count selects no more than the page would from its start: no offset,
    // and no key, or a capped count, which starts at the key too.
    let empty_means_none = offset == 0 && (after.is_none() || count == ListCount::Capped);
    let counted = match rows.first() {
        Some(first) => first.total,
        None if empty_means_none => 0,
        None => {
            let mut counter = QueryBuilder::new("");
            push_count(&mut counter);
            counter.build_query_scalar().fetch_one(pool).await?
        }
    };
    let mut rows: Vec<VoucherRow> = rows.into_iter().map(|r| r.row).collect();
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let counted = u64::try_from(counted).unwrap_or(0);
    let cap = u64::try_from(offset).unwrap_or(0) + count_rows_max(limit);
    let count_capped = count == ListCount::Capped && counted > cap;
    let counted = if count_capped { cap } else { counted };
    Ok(ListPage { rows, more, counted, count_capped })
}

/// One voucher of the company with its lines, or `None` (also for another company's voucher).
///
/// # Errors
/// Database errors.
pub async fn get_voucher(pool: &PgPool, company_id: Uuid, id: Uuid) -> Result<Option<(VoucherRow, Vec<LineRow>)>> {
    let v: Option<VoucherRow> = sqlx::query_as(&format!("SELECT {VOUCHER_COLUMNS} FROM vouchers v WHERE v.company_id = $1 AND v.id = $2"))
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

/// One month of a company's books and whether it is closed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Period {
    /// `YYYY-MM`.
    pub period: String,
    pub state: PeriodState,
    pub closed_at: Option<DateTime<Utc>>,
    /// Vouchers numbered in the month so far.
    pub voucher_count: i32,
}

/// Whether a month takes postings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeriodState {
    Open,
    Closed,
}

/// The twelve months of `year` with their state.
///
/// # Errors
/// Database errors.
pub async fn periods(pool: &PgPool, company_id: Uuid, year: i32) -> Result<Vec<Period>> {
    let rows: Vec<(NaiveDate, Option<DateTime<Utc>>, Option<i32>)> = sqlx::query_as(
        "SELECT m::date, c.closed_at, n.last_no
         FROM generate_series(make_date($2, 1, 1), make_date($2, 12, 1), interval '1 month') AS m
         LEFT JOIN closed_periods c ON c.company_id = $1 AND c.period = m::date
         LEFT JOIN voucher_counters n ON n.company_id = $1 AND n.period = m::date
         ORDER BY m",
    )
    .bind(company_id)
    .bind(year)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(m, closed_at, count)| Period {
            period: m.format("%Y-%m").to_string(),
            state: if closed_at.is_some() { PeriodState::Closed } else { PeriodState::Open },
            closed_at,
            voucher_count: count.unwrap_or(0),
        })
        .collect())
}

/// Closes a month. It takes the month's counter row first, as postings do, so that no posting into the month is
/// between its check and its commit.
///
/// # Errors
/// 409 when the month is already closed, database errors.
pub async fn close_period(tx: &mut PgConnection, company_id: Uuid, user_id: Uuid, period: NaiveDate) -> Result<()> {
    sqlx::query(
        "INSERT INTO voucher_counters (company_id, period, last_no) VALUES ($1, $2, 0)
         ON CONFLICT (company_id, period) DO UPDATE SET last_no = voucher_counters.last_no",
    )
    .bind(company_id)
    .bind(period)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query("INSERT INTO closed_periods (company_id, period, closed_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(company_id)
        .bind(period)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(conflict(format!("the period {} is already closed", period.format("%Y-%m"))));
    }
    Ok(())
}

/// Reopens a closed month.
///
/// # Errors
/// 409 when the month is not closed, database errors.
pub async fn reopen_period(tx: &mut PgConnection, company_id: Uuid, period: NaiveDate) -> Result<()> {
    let done = sqlx::query("DELETE FROM closed_periods WHERE company_id = $1 AND period = $2")
        .bind(company_id)
        .bind(period)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(conflict(format!("the period {} is not closed", period.format("%Y-%m"))));
    }
    Ok(())
}
