//! Importing one checked e-tax invoice into K-ERP: a [`Scraped`] invoice comes in; a draft K-ERP invoice carrying its
//! approval number (or the one imported before under that number, or the reason K-ERP refused it) comes out.
//!
//! Each invoice is one Postgres transaction, so one refused invoice never holds up the others:
//! 1. an invoice of the company with the same approval number means it was imported before: nothing is written;
//! 2. the other party is the company's partner with that business number, or a new one created through
//!    `kerp_ingest::store::master::create_partner` (so its `PartnersChanged` event is queued), of type `both`:
//!    the import sees one invoice at a time and the same business often sells to the company and buys from it, and
//!    `both` is what REST gives a partner whose side is not said. A partner that an admin made customer-only or
//!    supplier-only, or switched off, is left as it is: the invoice is refused with the reason, since changing master
//!    data behind the admin's back is worse than asking;
//! 3. the draft goes in through `kerp_ingest::store::invoices::create_imported`, which checks it as REST does and
//!    queues its `InvoiceChanged` event.
//!
//! Two imports of one invoice at once (two scrapes, two server instances) both pass step 1; the unique indexes
//! (`RACE_CONSTRAINTS`) let one of them commit and make the other fail, which then runs again from step 1 and
//! finds the invoice or the partner: so an invoice is imported once and a partner created once, whatever the
//! interleaving.

use kerp_core::auth::Claims;
use kerp_core::invoice;
use kerp_core::master::{self, PartnerInput, PartnerType};
use kerp_ingest::store::{invoices, master as partners};
use sqlx::{PgConnection, PgPool};
use tonic::Code;
use uuid::Uuid;

use super::check::{self, Scraped};
use crate::{Error, Failure};

/// How often one invoice is tried: once more after losing a race on a unique index, which the second try resolves.
const IMPORT_ATTEMPTS_MAX: u32 = 2;

/// The constraints whose violation means another import of the same invoice or partner committed first. Two
/// imports creating one partner collide on its code as well as on its business number, whichever index Postgres
/// checks first; a code taken by an unrelated partner fails the second try too, and is reported.
const RACE_CONSTRAINTS: [&str; 3] =
    ["invoices_company_approval_number_key", "partners_company_business_number_key", "partners_company_code_key"];

/// Prefix of the codes of partners the import creates: `HT` (Hometax) and the business number's ten digits, unique
/// per business number and at most 12 characters, within `kerp_core::master::CODE_CHARS_MAX`.
pub const PARTNER_CODE_PREFIX: &str = "HT";

/// What became of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Imported now as the draft `invoice_id`; `partner_created` when its partner was created for it.
    Imported { invoice_id: Uuid, partner_created: bool },
    /// Imported before as `invoice_id`; nothing was written.
    Duplicate { invoice_id: Uuid },
    /// K-ERP refused it, for this reason (for people).
    Rejected(String),
}

/// The code of the partner created for a business number.
#[must_use]
pub fn partner_code(business_number: &str) -> String {
    format!("{PARTNER_CODE_PREFIX}{}", check::digits(business_number))
}

/// Whether an error is a lost race on one of [`RACE_CONSTRAINTS`].
fn lost_race(e: &kerp_ingest::Error) -> bool {
    match e {
        kerp_ingest::Error::Db(sqlx::Error::Database(db)) => db.constraint().is_some_and(|c| RACE_CONSTRAINTS.contains(&c)),
        _ => false,
    }
}

/// Imports `s` for the caller's company (see the module).
///
/// # Errors
/// A failure that is not this invoice's fault (the database is busy or down, a defect): the caller stops there,
/// since every later invoice would meet it too. Retrying the whole call later is safe.
pub async fn import(pool: &PgPool, claims: &Claims, topic: &str, s: &Scraped) -> Result<Outcome, Failure> {
    let mut attempt = 1;
    loop {
        match try_import(pool, claims, topic, s).await {
            Ok(outcome) => return Ok(outcome),
            Err(Error::Ingest(e)) if attempt < IMPORT_ATTEMPTS_MAX && lost_race(&e) => attempt += 1,
            Err(e) => {
                let f = e.into_failure().await;
                return match f.code {
                    // The invoice's own fault, as REST would answer 409 or 422 for it.
                    Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition | Code::NotFound => {
                        Ok(Outcome::Rejected(f.message))
                    }
                    _ => Err(f),
                };
            }
        }
    }
}

/// The company's invoice with this approval number, if any.
async fn imported_before(tx: &mut PgConnection, company: Uuid, approval_number: &str) -> Result<Option<Uuid>, Error> {
    Ok(sqlx::query_scalar("SELECT id FROM invoices WHERE company_id = $1 AND approval_number = $2")
        .bind(company)
        .bind(approval_number)
        .fetch_optional(tx)
        .await?)
}

/// The company's partner with this (dashed) business number, if any.
async fn partner_with(tx: &mut PgConnection, company: Uuid, business_number: &str) -> Result<Option<Uuid>, Error> {
    Ok(sqlx::query_scalar("SELECT id FROM partners WHERE company_id = $1 AND business_number = $2")
        .bind(company)
        .bind(business_number)
        .fetch_optional(tx)
        .await?)
}

/// One attempt: one transaction, committed only when the invoice is stored.
async fn try_import(pool: &PgPool, claims: &Claims, topic: &str, s: &Scraped) -> Result<Outcome, Error> {
    let company = claims.company_id;
    let mut tx = pool.begin().await?;
    if let Some(invoice_id) = imported_before(&mut tx, company, &s.approval_number).await? {
        // Nothing was written: the transaction rolls back as it is dropped.
        return Ok(Outcome::Duplicate { invoice_id });
    }
    let party = s.counterparty();
    let (partner_id, partner_created) = match partner_with(&mut tx, company, &party.business_number).await? {
        Some(id) => (id, false),
        None => {
            let input = PartnerInput {
                code: Some(partner_code(&party.business_number)),
                name: Some(party.name.clone()),
                business_number: Some(party.business_number.clone()),
                partner_type: Some(PartnerType::Both.as_str().into()),
                representative: Some(party.representative.clone()),
                address: Some(party.address.clone()),
                is_active: Some(true),
            };
            let valid = match master::validate_partner(&input) {
                Ok(v) => v,
                Err(errors) => return Ok(Outcome::Rejected(reasons("the partner cannot be created", &errors))),
            };
            (partners::create_partner(&mut tx, company, topic, &valid).await?.id, true)
        }
    };
    let valid = match invoice::validate(&s.invoice_input(partner_id)) {
        Ok(v) => v,
        Err(errors) => return Ok(Outcome::Rejected(reasons("K-ERP refuses the invoice", &errors))),
    };
    let row = invoices::create_imported(&mut tx, company, claims.sub, topic, &valid, &s.approval_number).await?;
    tx.commit().await?;
    Ok(Outcome::Imported { invoice_id: row.id, partner_created })
}

fn reasons(what: &str, errors: &[kerp_core::voucher::FieldError]) -> String {
    let list: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
    format!("{what}: {}", list.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_partners_have_codes_k_erp_takes() {
        let code = partner_code("124-81-00998");
        assert_eq!(code, "HT1248100998");
        let input = PartnerInput { code: Some(code), name: Some("(주)한빛전자".into()), ..Default::default() };
        assert!(master::validate_partner(&input).is_ok());
    }

    #[test]
    fn only_the_unique_indexes_of_a_race_are_retried() {
        assert!(!lost_race(&kerp_ingest::Error::Db(sqlx::Error::PoolTimedOut)));
        assert!(!lost_race(&kerp_ingest::Error::Client(kerp_core::http::Problem::invalid(Vec::new()))));
    }
}
