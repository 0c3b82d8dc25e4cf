//! Postgres writes and reads of insurance reports (`migrations/postgres/0007_insurance.sql`): a computed report with
//! its encrypted lines goes in, inside the caller's transaction (so it commits with the accrual voucher or not at
//! all); a prepared report comes back out, decrypted, for a transmission adapter; and a report is marked transmitted.
//!
//! The plain resident number never reaches a query: lines carry the AES-GCM blob and the masked form only.

use chrono::{DateTime, NaiveDate, Utc};
use kerp_core::insurance::{Contribution, EmployerSize, Insurance, Month, Schedule};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::cipher::{CipherError, ResidentCipher};
use super::transmit::{PreparedLine, PreparedReport, Transmission};
use crate::{Error, Result};

/// One employee's line as it is stored.
#[derive(Debug, Clone)]
pub struct StoredLine {
    pub employee_id: String,
    pub name: String,
    /// The AES-GCM blob of [`ResidentCipher::encrypt`].
    pub resident_number_encrypted: Vec<u8>,
    pub resident_number_masked: String,
    pub monthly_salary: i64,
    pub contribution: Contribution,
}

/// A computed report, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewReport<'a> {
    pub id: Uuid,
    pub company_id: Uuid,
    pub created_by: Uuid,
    pub schedule: &'a Schedule,
    pub employer_size: EmployerSize,
    pub lines: &'a [StoredLine],
    pub total_employee: i64,
    pub total_employer: i64,
    pub voucher_id: Option<Uuid>,
}

/// Stores a report (status `prepared`) and its lines. The lines go in as one statement over arrays, so a report of
/// `EMPLOYEES_PER_REPORT_MAX` lines is one round trip.
///
/// # Errors
/// Database errors.
pub async fn insert_report(tx: &mut PgConnection, r: &NewReport<'_>) -> Result<()> {
    let s = r.schedule;
    let ppm = |rate: kerp_core::insurance::Rate| i32::try_from(rate.ppm()).unwrap_or(i32::MAX);
    sqlx::query(
        "INSERT INTO insurance_reports (id, company_id, report_type, report_month, status, employer_size_class,
             employee_rate_ppm, employer_rate_ppm, long_term_care_rate_ppm, base_floor_won, base_cap_won, employee_count,
             total_employee_contribution, total_employer_contribution, voucher_id, created_by)
         VALUES ($1, $2, $3, $4, 'prepared', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(r.id)
    .bind(r.company_id)
    .bind(s.insurance.as_str())
    .bind(s.month.first_day())
    .bind(r.employer_size.as_str())
    .bind(ppm(s.employee_rate))
    .bind(ppm(s.employer_rate))
    .bind(s.long_term_care_rate.map(ppm))
    .bind(s.base_floor_won)
    .bind(s.base_cap_won)
    .bind(i32::try_from(r.lines.len()).unwrap_or(i32::MAX))
    .bind(r.total_employee)
    .bind(r.total_employer)
    .bind(r.voucher_id)
    .bind(r.created_by)
    .execute(&mut *tx)
    .await?;

    let n = r.lines.len();
    let mut line_no = Vec::with_capacity(n);
    let (mut employee_id, mut name, mut encrypted, mut masked) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut salary, mut base, mut employee, mut employer, mut ltc_employee, mut ltc_employer) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (i, l) in r.lines.iter().enumerate() {
        line_no.push(i32::try_from(i).unwrap_or(i32::MAX));
        employee_id.push(l.employee_id.as_str());
        name.push(l.name.as_str());
        encrypted.push(l.resident_number_encrypted.as_slice());
        masked.push(l.resident_number_masked.as_str());
        salary.push(l.monthly_salary);
        base.push(l.contribution.base);
        employee.push(l.contribution.employee);
        employer.push(l.contribution.employer);
        ltc_employee.push(l.contribution.long_term_care_employee);
        ltc_employer.push(l.contribution.long_term_care_employer);
    }
    sqlx::query(
        "INSERT INTO insurance_report_lines (company_id, report_id, line_no, employee_id, name, resident_number_encrypted,
             resident_number_masked, monthly_salary, contribution_base, employee_contribution, employer_contribution,
             long_term_care_employee, long_term_care_employer)
         SELECT $1, $2, * FROM UNNEST($3::int[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::bigint[], $9::bigint[],
                                      $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[])",
    )
    .bind(r.company_id)
    .bind(r.id)
    .bind(&line_no)
    .bind(&employee_id)
    .bind(&name)
    .bind(&encrypted)
    .bind(&masked)
    .bind(&salary)
    .bind(&base)
    .bind(&employee)
    .bind(&employer)
    .bind(&ltc_employee)
    .bind(&ltc_employer)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The codes among `codes` that the company has no active account for.
///
/// # Errors
/// Database errors.
pub async fn missing_accounts(tx: &mut PgConnection, company_id: Uuid, codes: &[&str]) -> Result<Vec<String>> {
    let found: Vec<String> = sqlx::query_scalar("SELECT code FROM accounts WHERE company_id = $1 AND is_active AND code = ANY($2)")
        .bind(company_id)
        .bind(codes)
        .fetch_all(&mut *tx)
        .await?;
    Ok(codes.iter().filter(|c| !found.iter().any(|f| f == *c)).map(|c| (*c).to_owned()).collect())
}

#[derive(FromRow)]
struct ReportRow {
    report_type: String,
    report_month: NaiveDate,
    status: String,
}

#[derive(FromRow)]
struct LineRow {
    employee_id: String,
    name: String,
    resident_number_encrypted: Vec<u8>,
    monthly_salary: i64,
    contribution_base: i64,
    employee_contribution: i64,
    employer_contribution: i64,
    long_term_care_employee: i64,
    long_term_care_employer: i64,
}

/// The company's report `receipt_id` with its resident numbers decrypted, for a transmission adapter; `None` when
/// the company has no such report. A report already transmitted is returned as well (see `transmitted`).
///
/// # Errors
/// Database errors, or [`Error::Other`] when a stored number does not decrypt with the configured key (the key was
/// changed without re-encrypting); the error names the line, never the number.
pub async fn load_prepared(pool: &PgPool, cipher: &ResidentCipher, company_id: Uuid, receipt_id: Uuid) -> Result<Option<PreparedReport>> {
    let Some(head) =
        sqlx::query_as::<_, ReportRow>("SELECT report_type, report_month, status FROM insurance_reports WHERE company_id = $1 AND id = $2")
            .bind(company_id)
            .bind(receipt_id)
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };
    let insurance =
        Insurance::parse(&head.report_type).ok_or_else(|| Error::Other(format!("unknown report_type {:?}", head.report_type)))?;
    let month = Month::of(head.report_month).ok_or_else(|| Error::Other("report_month out of range".into()))?;
    let rows: Vec<LineRow> = sqlx::query_as(
        "SELECT employee_id, name, resident_number_encrypted, monthly_salary, contribution_base, employee_contribution,
                employer_contribution, long_term_care_employee, long_term_care_employer
         FROM insurance_report_lines WHERE company_id = $1 AND report_id = $2 ORDER BY line_no",
    )
    .bind(company_id)
    .bind(receipt_id)
    .fetch_all(pool)
    .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let resident_number = cipher
            .decrypt(company_id, &row.resident_number_encrypted)
            .map_err(|e: CipherError| Error::Other(format!("report {receipt_id} line {i}: {e}")))?;
        lines.push(PreparedLine {
            employee_id: row.employee_id,
            name: row.name,
            resident_number,
            monthly_salary: row.monthly_salary,
            contribution: Contribution {
                base: row.contribution_base,
                employee: row.employee_contribution,
                employer: row.employer_contribution,
                long_term_care_employee: row.long_term_care_employee,
                long_term_care_employer: row.long_term_care_employer,
            },
        });
    }
    Ok(Some(PreparedReport { receipt_id, company_id, insurance, month, transmitted: head.status == "transmitted", lines }))
}

/// Marks a prepared report transmitted with the portal's receipt; `false` when the company has no such prepared
/// report (unknown, or transmitted already), so a report is handed over at most once.
///
/// # Errors
/// Database errors.
pub async fn mark_transmitted(pool: &PgPool, company_id: Uuid, receipt_id: Uuid, t: &Transmission, at: DateTime<Utc>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE insurance_reports SET status = 'transmitted', transmitted_at = $3, portal_receipt = $4
         WHERE company_id = $1 AND id = $2 AND status = 'prepared'",
    )
    .bind(company_id)
    .bind(receipt_id)
    .bind(at)
    .bind(&t.portal_receipt)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
