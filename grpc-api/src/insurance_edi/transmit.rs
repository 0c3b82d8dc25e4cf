//! Transmission of a prepared report to the four-insurance EDI portal (4대사회보험 정보연계센터, edi.4insure.or.kr): the
//! contract a live adapter fills. None is built: this machine cannot reach the portal, and a report stays `prepared`
//! until an adapter hands it over. Nothing here pretends to be the portal.
//!
//! A live adapter implements [`EdiTransmitter`]. What it must do, and may rely on:
//! - it receives a [`PreparedReport`] whose lines carry the plain resident numbers (decrypted by
//!   [`store::load_prepared`](super::store::load_prepared) with the configured key), the pay, the base and the
//!   shares exactly as stored and as answered to the client;
//! - it signs and sends the report as the portal requires (the employer's joint certificate, 공동인증서, and the
//!   portal's file layout per insurance: 국민연금 and 건강보험 monthly contribution reports, 고용·산재 보수 신고), keeping
//!   the plain numbers in memory only and never logging them (a [`ResidentNumber`] formats masked, so logging a line
//!   is safe; formatting its digits is not);
//! - it answers [`Transmission`] with the portal's own receipt once the portal has accepted the report, or
//!   [`TransmitError::Unavailable`] (retry later; nothing was accepted) or [`TransmitError::Rejected`] (the portal
//!   refused the content; the message is the portal's, without personal data);
//! - it is called through [`transmit`], which marks the report `transmitted` with the receipt only after acceptance
//!   and refuses a report already transmitted, so a report is accepted at most once from this side.
//!
//! [`ResidentNumber`]: kerp_core::resident::ResidentNumber

use std::future::Future;

use kerp_core::insurance::{Contribution, Insurance, Month};
use kerp_core::resident::ResidentNumber;
use sqlx::PgPool;
use uuid::Uuid;

use super::cipher::ResidentCipher;
use super::store;
use crate::{Error, Result};

/// A stored report as a transmission adapter receives it. Its `Debug` shows the numbers masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedReport {
    pub receipt_id: Uuid,
    pub company_id: Uuid,
    pub insurance: Insurance,
    pub month: Month,
    /// Whether it was handed over already.
    pub transmitted: bool,
    pub lines: Vec<PreparedLine>,
}

/// One employee of a [`PreparedReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedLine {
    pub employee_id: String,
    pub name: String,
    /// Decrypted; formats masked.
    pub resident_number: ResidentNumber,
    pub monthly_salary: i64,
    pub contribution: Contribution,
}

/// The portal's acceptance of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission {
    /// The portal's receipt number, stored with the report.
    pub portal_receipt: String,
}

/// Why a report was not handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransmitError {
    /// The portal could not be reached or did not answer; nothing was accepted, so a retry is safe.
    #[error("the EDI portal is unavailable: {0}")]
    Unavailable(String),
    /// The portal refused the report's content.
    #[error("the EDI portal rejected the report: {0}")]
    Rejected(String),
    /// The report is not the company's, or was transmitted already.
    #[error("no prepared report {0} for this company")]
    NotPrepared(Uuid),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// Hands a prepared report to the EDI portal. See the module documentation for the contract.
pub trait EdiTransmitter: Send + Sync {
    /// Sends `report` and answers the portal's receipt once the portal has accepted it.
    fn transmit(&self, report: &PreparedReport) -> impl Future<Output = Result<Transmission, TransmitError>> + Send;
}

/// Loads the company's prepared report `receipt_id`, hands it to `adapter` and, once accepted, marks it
/// `transmitted` with the portal's receipt.
///
/// # Errors
/// [`TransmitError::NotPrepared`] for a report that is not the company's or was transmitted already, the adapter's
/// errors (the report stays `prepared`), [`TransmitError::Store`] when the store fails.
pub async fn transmit<T: EdiTransmitter>(
    pool: &PgPool,
    cipher: &ResidentCipher,
    adapter: &T,
    company_id: Uuid,
    receipt_id: Uuid,
) -> Result<Transmission, TransmitError> {
    let store_error = |e: Error| TransmitError::Store(e.to_string());
    let report = store::load_prepared(pool, cipher, company_id, receipt_id).await.map_err(store_error)?;
    let report = report.filter(|r| !r.transmitted).ok_or(TransmitError::NotPrepared(receipt_id))?;
    let accepted = adapter.transmit(&report).await?;
    let marked = store::mark_transmitted(pool, company_id, receipt_id, &accepted, chrono::Utc::now()).await.map_err(store_error)?;
    if !marked {
        // Another caller marked it between the load and now: the portal has it twice, which its operator must know.
        tracing::error!(company = %company_id, receipt = %receipt_id, "a report was transmitted twice concurrently");
        return Err(TransmitError::NotPrepared(receipt_id));
    }
    Ok(accepted)
}
