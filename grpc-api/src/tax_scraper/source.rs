//! Where scraped e-tax invoices come from: a [`ScrapeQuery`] (a business, a period, the caller's Hometax credentials)
//! goes into an [`InvoiceSource`], and [`SourceInvoice`]s, every field as the text Hometax shows, come out. The
//! service then checks each one ([`super::check`]) and imports the good ones ([`super::import`]), whatever the source.
//!
//! # The contract a source fills
//!
//! K-ERP's servers cannot reach Hometax, so the source built now is [`super::inbox::Inbox`], which reads the e-tax
//! invoice list downloads that Hometax users put in a folder. A live adapter (logging in to Hometax with the
//! credentials and reading the same list) would implement [`InvoiceSource`] alike and keep these rules:
//!
//! 1. **What to return.** Every e-tax invoice (전자세금계산서 and 전자계산서, issued and received alike) that the
//!    NTS holds where `query.business_number` is the supplier or the buyer and whose write date (작성일자) lies in
//!    `start_date..=end_date`, each once (one record per approval number, every item in it). Returning more is
//!    allowed: the service keeps only what [`concerns`] the query. Returning less is not: an invoice of the business
//!    that the source cannot read completely is still returned, with what it could read and the reason in
//!    [`SourceInvoice::problems`], so that the caller hears of it as a rejected invoice instead of never.
//! 2. **How.** Fields are the text Hometax shows (dates `YYYY-MM-DD` or `YYYYMMDD`, business numbers with or
//!    without dashes, amounts with or without thousands separators); the service parses and validates them, so every
//!    source is held to the same rules. [`SourceInvoice::origin`] says where a record came from, for people.
//! 3. **Bounds.** At most [`SCRAPE_INVOICES_MAX`] records that concern the query; past that, stop and answer
//!    [`SourceError::TooMany`]. The future may be dropped at any await (the call's deadline, the client leaving), so
//!    a source holds nothing that must be released by hand.
//! 4. **Read-only and repeatable.** A source never writes to K-ERP, and the same query gives the same invoices;
//!    deduplication by approval number happens at import, so scraping again is always safe.
//! 5. **Credentials.** [`Credentials`] are used to log in for this one call and dropped with the query: never
//!    stored, logged, put in an error message or in a record. [`Secret`] does not print its value through `Debug`,
//!    and has no `Display`. The inbox source ignores them.
//! 6. **Failures.** [`SourceError`] says whose move it is: the operator's ([`SourceError::NotConfigured`],
//!    [`SourceError::Unreadable`]: FAILED_PRECONDITION), nobody's yet ([`SourceError::Unavailable`]: UNAVAILABLE,
//!    retry later), or the caller's ([`SourceError::CredentialsRefused`], [`SourceError::TooMany`]:
//!    INVALID_ARGUMENT). Messages are for the caller: they name a file or a field, never a server path or a
//!    credential; details go to the server's log.

use chrono::NaiveDate;

use super::check;

/// Most e-tax invoices of one business that one call returns and imports. Each takes one short transaction, and the
/// answer carries every one of them (about 1 KiB each with its items), so the call stays well within a deadline of a
/// minute and [`crate::RESPONSE_MESSAGE_BYTES_MAX`]; a business with more in a period asks for a shorter period.
pub const SCRAPE_INVOICES_MAX: usize = 2_000;

/// A value that must never reach a log, an answer or the database: a password, a certificate's path. `Debug` prints
/// a placeholder, there is no `Display`, and the value is read only through [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

/// What `Debug` prints instead of a secret.
pub const REDACTED: &str = "[redacted]";

impl Secret {
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that uses it (a live adapter's login).
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The caller's Hometax login, for a live source. Its `Debug` shows the user id only.
#[derive(Clone, Default)]
pub struct Credentials {
    pub user_id: String,
    pub password: Secret,
    /// Path of the joint certificate (공동인증서) on the server.
    pub cert_path: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .field("password", &self.password)
            .field("cert_path", &self.cert_path)
            .finish()
    }
}

/// What a source is asked for: checked by the service before any source sees it.
#[derive(Debug, Clone)]
pub struct ScrapeQuery {
    /// A valid business registration number, dashed (`134-86-72683`): the caller's company's.
    pub business_number: String,
    /// The period by write date (작성일자), both ends inclusive, `start_date <= end_date`.
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub credentials: Credentials,
}

impl ScrapeQuery {
    /// What [`concerns`] compares records with, without the credentials, so that it can move to a blocking task.
    #[must_use]
    pub fn scope(&self) -> Scope {
        Scope { business_digits: check::digits(&self.business_number), start_date: self.start_date, end_date: self.end_date }
    }
}

/// The business and period of a query, without its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The business number's ten digits.
    pub business_digits: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
}

/// One party of an invoice (공급자 or 공급받는자), as the source shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceParty {
    /// 사업자등록번호.
    pub business_number: String,
    /// 종사업장번호: the branch's number, empty for the head office.
    pub sub_number: String,
    /// 상호.
    pub name: String,
    /// 대표자명.
    pub representative: String,
    /// 주소.
    pub address: String,
}

/// One item (품목) of an invoice, as the source shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceItem {
    /// 품목일자.
    pub date: String,
    /// 품목명.
    pub name: String,
    /// 품목규격.
    pub specification: String,
    /// 품목수량.
    pub quantity: String,
    /// 품목단가.
    pub unit_price: String,
    /// 품목공급가액.
    pub supply_amount: String,
    /// 품목세액.
    pub tax_amount: String,
    /// 품목비고.
    pub remark: String,
}

/// One e-tax invoice as the source shows it: every field is text, checked later by [`super::check::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInvoice {
    /// Where it was read, for people: a file and its rows (`received-2025q1.csv:3-4`), or what a live source names.
    pub origin: String,
    /// 승인번호.
    pub approval_number: String,
    /// 작성일자, 발급일자, 전송일자.
    pub write_date: String,
    pub issue_date: String,
    pub transmit_date: String,
    pub supplier: SourceParty,
    pub buyer: SourceParty,
    /// 합계금액, 공급가액, 세액.
    pub total_amount: String,
    pub supply_amount: String,
    pub tax_amount: String,
    /// 전자세금계산서분류 (세금계산서, 계산서).
    pub classification: String,
    /// 전자세금계산서종류 (일반, 영세율, 위수탁 …).
    pub kind: String,
    /// 비고.
    pub remark: String,
    pub items: Vec<SourceItem>,
    /// What the source found wrong while reading it (the rows of one invoice that disagree); never empty strings.
    /// Such an invoice is reported as rejected.
    pub problems: Vec<String>,
}

/// Why a source could not answer. See the module's contract for who acts on each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The server has no source configured (no inbox folder): FAILED_PRECONDITION.
    #[error("no e-tax invoice source is configured on this server (TAX_SCRAPER_INBOX_DIR)")]
    NotConfigured,
    /// The source cannot be reached or read now (the inbox folder is missing; Hometax is down): UNAVAILABLE.
    #[error("{0}")]
    Unavailable(String),
    /// Hometax refused the login (a live source): INVALID_ARGUMENT on `field` (`user_id`, `password` or
    /// `cert_path`). The message never holds the value.
    #[error("{field}: {message}")]
    CredentialsRefused { field: &'static str, message: String },
    /// The data is there but cannot be read (an export file that is not one, too large, broken): FAILED_PRECONDITION.
    #[error("{0}")]
    Unreadable(String),
    /// The period holds more than [`SCRAPE_INVOICES_MAX`] invoices of the business: INVALID_ARGUMENT on `end_date`.
    #[error("the period holds more than {limit} e-tax invoices of this business; ask for a shorter period")]
    TooMany { limit: usize },
}

/// A source of e-tax invoices; the module's documentation is the contract.
#[tonic::async_trait]
pub trait InvoiceSource: Send + Sync {
    /// A short name for the logs (`inbox`, `hometax`).
    fn name(&self) -> &'static str;

    /// The e-tax invoices of `query.business_number` written in the query's period.
    ///
    /// # Errors
    /// [`SourceError`], as the contract says.
    async fn invoices(&self, query: &ScrapeQuery) -> Result<Vec<SourceInvoice>, SourceError>;
}

/// The source of a server without one configured: every call is [`SourceError::NotConfigured`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Unconfigured;

#[tonic::async_trait]
impl InvoiceSource for Unconfigured {
    fn name(&self) -> &'static str {
        "unconfigured"
    }

    async fn invoices(&self, _query: &ScrapeQuery) -> Result<Vec<SourceInvoice>, SourceError> {
        Err(SourceError::NotConfigured)
    }
}

/// Whether a record is one of the scope's: the business is its supplier or its buyer (compared by digits, so that a
/// number with a wrong check digit still finds its owner, who then hears why it was rejected), and its write date is
/// in the period. A record whose write date cannot be read is kept, to be reported rather than lost.
#[must_use]
pub fn concerns(record: &SourceInvoice, scope: &Scope) -> bool {
    let ours = check::digits(&record.supplier.business_number) == scope.business_digits
        || check::digits(&record.buyer.business_number) == scope.business_digits;
    let in_period = match check::date_text(&record.write_date, None) {
        Some(d) => (scope.start_date..=scope.end_date).contains(&d),
        None => true,
    };
    ours && in_period
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            business_digits: "1348672683".into(),
            start_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            end_date: NaiveDate::from_ymd_opt(2025, 3, 31).unwrap(),
        }
    }

    fn record(supplier: &str, buyer: &str, date: &str) -> SourceInvoice {
        SourceInvoice {
            supplier: SourceParty { business_number: supplier.into(), ..Default::default() },
            buyer: SourceParty { business_number: buyer.into(), ..Default::default() },
            write_date: date.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_concerns_its_parties_in_the_period() {
        assert!(concerns(&record("134-86-72683", "124-81-00998", "2025-01-15"), &scope()));
        assert!(concerns(&record("1248100998", "1348672683", "20250331"), &scope()));
        assert!(!concerns(&record("117-81-35785", "201-86-09118", "2025-02-11"), &scope()), "two other businesses");
        assert!(!concerns(&record("134-86-72683", "124-81-00998", "2025-04-01"), &scope()), "after the period");
        assert!(!concerns(&record("134-86-72683", "124-81-00998", "2024-12-31"), &scope()), "before the period");
        assert!(concerns(&record("134-86-72683", "124-81-00998", "someday"), &scope()), "an unreadable date is reported, not dropped");
        assert!(!concerns(&record("", "", ""), &scope()), "a totals row names nobody");
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials {
            user_id: "kerp01".into(),
            password: Secret::new("hunter2-password".into()),
            cert_path: Secret::new("/secure/signPri.key".into()),
        };
        let printed = format!("{c:?} {:?}", c.password);
        assert!(!printed.contains("hunter2") && !printed.contains("signPri"), "{printed}");
        assert!(printed.contains(REDACTED) && printed.contains("kerp01"), "{printed}");
        let q = ScrapeQuery {
            business_number: "134-86-72683".into(),
            start_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            end_date: NaiveDate::from_ymd_opt(2025, 3, 31).unwrap(),
            credentials: c,
        };
        assert!(!format!("{q:?}").contains("hunter2"));
        assert!(!format!("{q:#?}").contains("signPri"));
        assert_eq!(q.scope(), scope());
    }
}
