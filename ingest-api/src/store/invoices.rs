//! Postgres reads and writes of tax invoices and their items. Every change queues an `InvoiceChanged` event with the
//! invoice's new state, inside the caller's transaction. Issuing posts the invoice's voucher through
//! [`super::vouchers::post_voucher`] (so a closed period, a switched-off account or partner refuse it the same way) and
//! cancelling an issued invoice reverses that voucher through [`super::vouchers::reverse`].

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use kerp_core::chart::AccountType;
use kerp_core::http::Problem;
use kerp_core::invoice::{self, InvoiceStatus, InvoiceType, ValidInvoice, VatType};
use kerp_core::master::PartnerType;
use kerp_core::voucher::{AccountRef, FieldError, ValidLine, ValidVoucher, VoucherStatus, VoucherType};
use kerp_schemas::InvoiceChanged;
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::enqueue;
use super::vouchers::{self, Posted};
use crate::Result;

/// A tax invoice (세금계산서) without its items.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    pub id: Uuid,
    pub invoice_type: InvoiceType,
    pub vat_type: VatType,
    pub partner_id: Uuid,
    pub invoice_date: NaiveDate,
    pub supply_amount: i64,
    pub tax_amount: i64,
    pub total_amount: i64,
    pub description: String,
    pub account_code: Option<String>,
    pub status: InvoiceStatus,
    pub approval_number: Option<String>,
    pub voucher_id: Option<Uuid>,
    pub cancel_voucher_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub issued_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

const INVOICE_COLUMNS: &str = "id, invoice_type, vat_type, partner_id, invoice_date, supply_amount, tax_amount,
     supply_amount + tax_amount AS total_amount, description, account_code, status, approval_number, voucher_id,
     cancel_voucher_id, created_at, issued_at, cancelled_at";

/// An item of a tax invoice.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct Item {
    pub line_no: i32,
    pub description: String,
    pub spec: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub supply_amount: i64,
}

/// Filters of the invoice list, already checked.
#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub status: Option<InvoiceStatus>,
    pub invoice_type: Option<InvoiceType>,
    pub from_date: Option<NaiveDate>,
    pub to_date: Option<NaiveDate>,
    pub partner_id: Option<Uuid>,
}

fn conflict(detail: impl Into<String>) -> crate::Error {
    Problem::new(StatusCode::CONFLICT, detail).into()
}

fn invalid(field: &str, message: impl Into<String>) -> crate::Error {
    Problem::invalid(vec![FieldError::new(field, message)]).into()
}

async fn invoice_changed(tx: &mut PgConnection, company_id: Uuid, topic: &str, i: &Invoice) -> Result<()> {
    let event = InvoiceChanged {
        event_id: Uuid::new_v4(),
        company_id,
        changed_at: Utc::now().timestamp_micros(),
        invoice_id: i.id,
        invoice_type: i.invoice_type.as_str().to_owned(),
        vat_type: i.vat_type.as_str().to_owned(),
        partner_id: i.partner_id,
        // `NaiveDate::default()` is 1970-01-01, the epoch of Avro's `date` logical type.
        invoice_date: i32::try_from(i.invoice_date.signed_duration_since(NaiveDate::default()).num_days()).unwrap_or(0),
        supply_amount: i.supply_amount,
        tax_amount: i.tax_amount,
        status: i.status.as_str().to_owned(),
        approval_number: i.approval_number.clone(),
        voucher_id: i.voucher_id,
    };
    enqueue(tx, company_id, topic, kerp_schemas::encode_invoice_changed(&event)?).await
}

/// The partner must be the company's, active, and on the right side: a sales invoice's buyer is a customer, a
/// purchase invoice's supplier a supplier (or a partner that is both). The account, when given, must be an active
/// account of the class the supply belongs to.
async fn check_refs(tx: &mut PgConnection, company_id: Uuid, v: &ValidInvoice) -> Result<()> {
    let partner: Option<(PartnerType, bool)> =
        sqlx::query_as("SELECT partner_type, is_active FROM partners WHERE company_id = $1 AND id = $2")
            .bind(company_id)
            .bind(v.partner_id)
            .fetch_optional(&mut *tx)
            .await?;
    match (partner, v.invoice_type) {
        (None, _) => return Err(invalid("partner_id", "partner not found")),
        (Some((_, false)), _) => return Err(invalid("partner_id", "partner is inactive")),
        (Some((PartnerType::Supplier, _)), InvoiceType::Sales) => {
            return Err(invalid("partner_id", "a sales invoice needs a customer (this partner is a supplier only)"));
        }
        (Some((PartnerType::Customer, _)), InvoiceType::Purchase) => {
            return Err(invalid("partner_id", "a purchase invoice needs a supplier (this partner is a customer only)"));
        }
        _ => {}
    }
    if let Some(code) = &v.account_code {
        let account: Option<(AccountType, bool)> =
            sqlx::query_as("SELECT account_type, is_active FROM accounts WHERE company_id = $1 AND code = $2")
                .bind(company_id)
                .bind(code)
                .fetch_optional(&mut *tx)
                .await?;
        let allowed: &[AccountType] = match v.invoice_type {
            InvoiceType::Sales => &[AccountType::Revenue],
            InvoiceType::Purchase => &[AccountType::Asset, AccountType::Expense],
        };
        match account {
            None => return Err(invalid("account_code", "account not found")),
            Some((_, false)) => return Err(invalid("account_code", "account is inactive")),
            Some((t, true)) if !allowed.contains(&t) => {
                let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
                return Err(invalid(
                    "account_code",
                    format!("a {} invoice books its supply to a {} account", v.invoice_type.as_str(), names.join(" or ")),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn insert_items(tx: &mut PgConnection, id: Uuid, v: &ValidInvoice) -> Result<()> {
    let nos: Vec<i32> = (1..=i32::try_from(v.items.len()).unwrap_or(i32::MAX)).collect();
    let descriptions: Vec<&str> = v.items.iter().map(|i| i.description.as_str()).collect();
    let specs: Vec<&str> = v.items.iter().map(|i| i.spec.as_str()).collect();
    let quantities: Vec<i64> = v.items.iter().map(|i| i.quantity).collect();
    let prices: Vec<i64> = v.items.iter().map(|i| i.unit_price).collect();
    let amounts: Vec<i64> = v.items.iter().map(|i| i.supply_amount).collect();
    sqlx::query(
        "INSERT INTO invoice_items (invoice_id, line_no, description, spec, quantity, unit_price, supply_amount)
         SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[])",
    )
    .bind(id)
    .bind(&nos)
    .bind(&descriptions)
    .bind(&specs)
    .bind(&quantities)
    .bind(&prices)
    .bind(&amounts)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Creates a draft invoice with its items and queues its event.
///
/// # Errors
/// 422 for a partner or account the invoice cannot use, database errors.
pub async fn create(tx: &mut PgConnection, company_id: Uuid, user_id: Uuid, topic: &str, v: &ValidInvoice) -> Result<Invoice> {
    insert_draft(tx, company_id, user_id, topic, v, None).await
}

/// Creates a draft invoice that already has its NTS approval number (an e-tax invoice imported from Hometax, whose
/// `approval_number` is the checked 24 digits) and queues its event, the number in it: one event, as for [`create`].
///
/// # Errors
/// As [`create`]; a number the company already has violates `invoices_company_approval_number_key`, which an
/// importer takes for "imported before" (the index makes concurrent imports of one invoice store it once).
pub async fn create_imported(
    tx: &mut PgConnection,
    company_id: Uuid,
    user_id: Uuid,
    topic: &str,
    v: &ValidInvoice,
    approval_number: &str,
) -> Result<Invoice> {
    insert_draft(tx, company_id, user_id, topic, v, Some(approval_number)).await
}

async fn insert_draft(
    tx: &mut PgConnection,
    company_id: Uuid,
    user_id: Uuid,
    topic: &str,
    v: &ValidInvoice,
    approval_number: Option<&str>,
) -> Result<Invoice> {
    check_refs(tx, company_id, v).await?;
    let id = crate::store::document_id();
    let row: Invoice = sqlx::query_as(&format!(
        "INSERT INTO invoices (id, company_id, invoice_type, vat_type, partner_id, invoice_date, supply_amount, tax_amount,
                               description, account_code, status, created_by, approval_number)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'draft', $11, $12) RETURNING {INVOICE_COLUMNS}"
    ))
    .bind(id)
    .bind(company_id)
    .bind(v.invoice_type)
    .bind(v.vat_type)
    .bind(v.partner_id)
    .bind(v.invoice_date)
    .bind(v.supply_amount)
    .bind(v.tax_amount)
    .bind(&v.description)
    .bind(&v.account_code)
    .bind(user_id)
    .bind(approval_number)
    .fetch_one(&mut *tx)
    .await?;
    insert_items(tx, id, v).await?;
    invoice_changed(tx, company_id, topic, &row).await?;
    Ok(row)
}

/// The company's invoice `id`, locked for the rest of the transaction, or a 404.
async fn lock(tx: &mut PgConnection, company_id: Uuid, id: Uuid) -> Result<Invoice> {
    let row: Option<Invoice> =
        sqlx::query_as(&format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE company_id = $1 AND id = $2 FOR UPDATE"))
            .bind(company_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    row.ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "invoice not found").into())
}

/// Replaces a draft invoice and its items and queues its event.
///
/// # Errors
/// 404, 409 unless it is a draft, 422 for a partner or account it cannot use, database errors.
pub async fn update(tx: &mut PgConnection, company_id: Uuid, topic: &str, id: Uuid, v: &ValidInvoice) -> Result<Invoice> {
    let current = lock(tx, company_id, id).await?;
    if current.status != InvoiceStatus::Draft {
        return Err(conflict(format!("the invoice is {}; only a draft can be edited", current.status.as_str())));
    }
    check_refs(tx, company_id, v).await?;
    let row: Invoice = sqlx::query_as(&format!(
        "UPDATE invoices SET invoice_type = $2, vat_type = $3, partner_id = $4, invoice_date = $5, supply_amount = $6,
                             tax_amount = $7, description = $8, account_code = $9, updated_at = now()
         WHERE id = $1 RETURNING {INVOICE_COLUMNS}"
    ))
    .bind(id)
    .bind(v.invoice_type)
    .bind(v.vat_type)
    .bind(v.partner_id)
    .bind(v.invoice_date)
    .bind(v.supply_amount)
    .bind(v.tax_amount)
    .bind(&v.description)
    .bind(&v.account_code)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM invoice_items WHERE invoice_id = $1").bind(id).execute(&mut *tx).await?;
    insert_items(tx, id, v).await?;
    invoice_changed(tx, company_id, topic, &row).await?;
    Ok(row)
}

/// Issues a draft invoice: posts its voucher (approved, linked to the invoice) and queues the invoice's event.
///
/// # Errors
/// 404, 409 unless it is a draft or when the invoice's period is closed, 422 when its partner or accounts were
/// switched off, database errors.
pub async fn issue(tx: &mut PgConnection, company_id: Uuid, user_id: Uuid, topic: &str, id: Uuid) -> Result<(Invoice, Posted)> {
    let current = lock(tx, company_id, id).await?;
    if current.status != InvoiceStatus::Draft {
        return Err(conflict(format!("the invoice is {}; only a draft can be issued", current.status.as_str())));
    }
    let partner_active: bool = sqlx::query_scalar("SELECT is_active FROM partners WHERE company_id = $1 AND id = $2")
        .bind(company_id)
        .bind(current.partner_id)
        .fetch_one(&mut *tx)
        .await?;
    if !partner_active {
        return Err(invalid("partner_id", "partner is inactive"));
    }
    let kind = current.invoice_type;
    let label = match kind {
        InvoiceType::Sales => "매출 세금계산서",
        InvoiceType::Purchase => "매입 세금계산서",
    };
    let description = if current.description.is_empty() { label.to_owned() } else { format!("{label} {}", current.description) };
    let lines: Vec<ValidLine> = invoice::postings(kind, current.supply_amount, current.tax_amount, current.account_code.as_deref())
        .into_iter()
        .map(|p| ValidLine {
            account: AccountRef::Code(p.account_code),
            partner_id: Some(current.partner_id),
            department_id: None,
            debit: p.debit,
            credit: p.credit,
            description: description.clone(),
        })
        .collect();
    let voucher = ValidVoucher {
        voucher_date: current.invoice_date,
        voucher_type: match kind {
            InvoiceType::Sales => VoucherType::Sales,
            InvoiceType::Purchase => VoucherType::Purchase,
        },
        description: description.chars().take(kerp_core::voucher::DESCRIPTION_CHARS_MAX).collect(),
        total: current.supply_amount + current.tax_amount,
        lines,
        status: VoucherStatus::Approved,
    };
    let posted = vouchers::post_voucher(tx, company_id, user_id, topic, &voucher).await?;
    let row: Invoice = sqlx::query_as(&format!(
        "UPDATE invoices SET status = 'issued', voucher_id = $2, issued_at = now(), updated_at = now() WHERE id = $1
         RETURNING {INVOICE_COLUMNS}"
    ))
    .bind(id)
    .bind(posted.id)
    .fetch_one(&mut *tx)
    .await?;
    invoice_changed(tx, company_id, topic, &row).await?;
    Ok((row, posted))
}

/// Cancels an invoice. A draft is simply cancelled; an issued one has its voucher reversed (dated `date`, the
/// invoice's date by default).
///
/// # Errors
/// 404, 409 when it is already cancelled or the reversal's period is closed, database errors.
pub async fn cancel(
    tx: &mut PgConnection,
    company_id: Uuid,
    user_id: Uuid,
    topic: &str,
    id: Uuid,
    date: Option<NaiveDate>,
    reason: &str,
) -> Result<(Invoice, Option<Posted>)> {
    let current = lock(tx, company_id, id).await?;
    let reversal = match (current.status, current.voucher_id) {
        (InvoiceStatus::Cancelled, _) => return Err(conflict("the invoice is already cancelled")),
        (InvoiceStatus::Issued, Some(voucher)) => Some(vouchers::reverse(tx, company_id, user_id, topic, voucher, date, reason).await?),
        _ => None,
    };
    let row: Invoice = sqlx::query_as(&format!(
        "UPDATE invoices SET status = 'cancelled', cancel_voucher_id = $2, cancelled_at = now(), updated_at = now()
         WHERE id = $1 RETURNING {INVOICE_COLUMNS}"
    ))
    .bind(id)
    .bind(reversal.as_ref().map(|r| r.id))
    .fetch_one(&mut *tx)
    .await?;
    invoice_changed(tx, company_id, topic, &row).await?;
    Ok((row, reversal))
}

/// Records the NTS approval number of a transmitted or imported invoice.
///
/// # Errors
/// 404, 409 for a cancelled invoice or a number another invoice of the company has, database errors.
pub async fn set_approval_number(tx: &mut PgConnection, company_id: Uuid, topic: &str, id: Uuid, number: &str) -> Result<Invoice> {
    let current = lock(tx, company_id, id).await?;
    if current.status == InvoiceStatus::Cancelled {
        return Err(conflict("the invoice is cancelled"));
    }
    let row: Invoice =
        sqlx::query_as(&format!("UPDATE invoices SET approval_number = $2, updated_at = now() WHERE id = $1 RETURNING {INVOICE_COLUMNS}"))
            .bind(id)
            .bind(number)
            .fetch_one(&mut *tx)
            .await?;
    invoice_changed(tx, company_id, topic, &row).await?;
    Ok(row)
}

/// One invoice of the company with its items, or `None` (also for another company's invoice).
///
/// # Errors
/// Database errors.
pub async fn get(pool: &PgPool, company_id: Uuid, id: Uuid) -> Result<Option<(Invoice, Vec<Item>)>> {
    let row: Option<Invoice> = sqlx::query_as(&format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE company_id = $1 AND id = $2"))
        .bind(company_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let items = sqlx::query_as(
        "SELECT line_no, description, spec, quantity, unit_price, supply_amount FROM invoice_items WHERE invoice_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some((row, items)))
}

/// Appends the list's filters. Only the conditions in use are written (rather than `$n IS NULL OR …`), so that
/// Postgres's generic plan for a prepared statement still has each of them as an index condition: with the `OR` form,
/// once Postgres switched to the generic plan the drafts count scanned every invoice of the company (57 ms on 54,000).
fn push_list_where(b: &mut QueryBuilder<'_, Postgres>, company_id: Uuid, f: &InvoiceFilter) {
    b.push(" WHERE company_id = ").push_bind(company_id);
    if let Some(status) = f.status {
        b.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(kind) = f.invoice_type {
        b.push(" AND invoice_type = ").push_bind(kind.as_str());
    }
    if let Some(from) = f.from_date {
        b.push(" AND invoice_date >= ").push_bind(from);
    }
    if let Some(to) = f.to_date {
        b.push(" AND invoice_date <= ").push_bind(to);
    }
    if let Some(partner) = f.partner_id {
        b.push(" AND partner_id = ").push_bind(partner);
    }
}

/// One page of the company's invoices ordered by date (newest last), and the total count.
///
/// # Errors
/// Database errors.
pub async fn list(pool: &PgPool, company_id: Uuid, f: &InvoiceFilter, limit: u32, offset: u64) -> Result<(Vec<Invoice>, u64)> {
    let mut count = QueryBuilder::new("SELECT count(*) FROM invoices");
    push_list_where(&mut count, company_id, f);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut page = QueryBuilder::new(format!("SELECT {INVOICE_COLUMNS} FROM invoices"));
    push_list_where(&mut page, company_id, f);
    page.push(" ORDER BY invoice_date, created_at LIMIT ")
        .push_bind(i64::from(limit))
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
    let rows = page.build_query_as().fetch_all(pool).await?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}
