//! `TaxScraperService` (`tax_scraper.proto`, no package: the existing Python clients' `tax_scraper_pb2`): a
//! `ScrapeInvoicesRequest` (a business number, Hometax credentials, a period) comes in; the business's e-tax invoices
//! (전자세금계산서) of the period come out, each imported as a K-ERP draft invoice with its approval number.
//!
//! A call goes through these steps, each in its own module:
//! 1. the token (accountant or admin, as every write), then the request ([`scrape_query`]: INVALID_ARGUMENT with
//!    field violations), then the business number against the token's company's (`companies.business_number`,
//!    compared by digits: PERMISSION_DENIED otherwise, without saying whose it is);
//! 2. the invoices from the configured [`source::InvoiceSource`], whose documentation is the contract a live Hometax
//!    adapter would fill; the one built is [`inbox::Inbox`], reading Hometax downloads ([`export`]) from
//!    `TAX_SCRAPER_INBOX_DIR`;
//! 3. each invoice checked ([`check`]): a malformed one comes back `IMPORT_OUTCOME_REJECTED` with its reasons and
//!    is not imported;
//! 4. each good one imported in a transaction of its own ([`import`]): sales when the company is the supplier,
//!    purchase when it is the buyer, `draft`, deduplicated by approval number, the partner matched by business number
//!    or created.
//!
//! Status codes beyond the shared ones (see the proto): FAILED_PRECONDITION when no source is configured or an inbox
//! file is not a readable export (an operator must act), UNAVAILABLE when the source or the database cannot answer
//! now (a retry is safe: nothing is imported twice), INVALID_ARGUMENT on `end_date` when the period holds more than
//! [`source::SCRAPE_INVOICES_MAX`] invoices.
//!
//! Credentials (`password`, `cert_path`) are used for the call only: they move into [`source::Secret`]s before
//! anything else happens, the request's `Debug` redacts them (`build.rs` leaves that impl to this module), no log
//! line or answer holds them, and nothing stores them.

pub mod check;
pub mod export;
pub mod import;
pub mod inbox;
pub mod source;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::builder::TypedValueParser;
use kerp_core::auth::Claims;
use kerp_core::voucher::{parse_date, FieldError};
use tonic::{Code, Request, Response, Status};

use self::import::Outcome;
use self::source::{Credentials, InvoiceSource, ScrapeQuery, Secret, SourceError, SourceInvoice, REDACTED, SCRAPE_INVOICES_MAX};
use crate::auth::{self, Access};
use crate::pb::root::tax_scraper_service_server::{TaxScraperService, TaxScraperServiceServer};
use crate::pb::root::{ImportOutcome, ScrapeInvoicesRequest, ScrapeInvoicesResponse, TaxInvoice};
use crate::{AppState, Error, Failure, REQUEST_MESSAGE_BYTES_MAX, RESPONSE_MESSAGE_BYTES_MAX};

/// `TaxScraperService`.
pub const SERVICE_NAME: &str = crate::pb::root::tax_scraper_service_server::SERVICE_NAME;

/// Longest Hometax user id taken, in characters.
pub const USER_ID_CHARS_MAX: usize = 100;
/// Longest password taken, in bytes.
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Longest certificate path taken, in bytes (Linux's `PATH_MAX`).
pub const CERT_PATH_BYTES_MAX: usize = 4096;

/// Settings of the tax scraper, part of [`crate::Config`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScraperConfig {
    /// Folder of the Hometax e-tax invoice list downloads (CSV in UTF-8 or CP949, XLSX, XLS) that ScrapeInvoices
    /// reads; unset or empty, ScrapeInvoices answers FAILED_PRECONDITION. Every call reads the folder anew.
    // clap's path parser refuses an empty value, which an env file's `TAX_SCRAPER_INBOX_DIR=` gives; an empty path
    // is taken here and means "none", as unset does.
    #[arg(long = "tax-scraper-inbox-dir", env = "TAX_SCRAPER_INBOX_DIR",
          value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    pub inbox_dir: Option<PathBuf>,
}

impl ScraperConfig {
    /// The source these settings name.
    #[must_use]
    pub fn source(&self) -> Arc<dyn InvoiceSource> {
        match &self.inbox_dir {
            Some(dir) if !dir.as_os_str().is_empty() => Arc::new(inbox::Inbox::new(dir.clone())),
            _ => Arc::new(source::Unconfigured),
        }
    }
}

/// The request's `Debug`, written here because it must not show the credentials (`build.rs` skips the generated one).
impl std::fmt::Debug for ScrapeInvoicesRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeInvoicesRequest")
            .field("business_number", &self.business_number)
            .field("user_id", &self.user_id)
            .field("password", &REDACTED)
            .field("cert_path", &REDACTED)
            .field("start_date", &self.start_date)
            .field("end_date", &self.end_date)
            .finish()
    }
}

/// The service with the configured source, and the message limits.
pub fn server(state: AppState) -> TaxScraperServiceServer<TaxScraper> {
    let source = state.config.tax_scraper.source();
    server_with(state, source)
}

/// The service reading from `source`.
pub fn server_with(state: AppState, source: Arc<dyn InvoiceSource>) -> TaxScraperServiceServer<TaxScraper> {
    TaxScraperServiceServer::new(TaxScraper { state, source })
        .max_decoding_message_size(REQUEST_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RESPONSE_MESSAGE_BYTES_MAX)
}

/// The implementation of `TaxScraperService`.
pub struct TaxScraper {
    state: AppState,
    source: Arc<dyn InvoiceSource>,
}

/// The query a request stands for, its credentials moved into [`Secret`]s.
///
/// # Errors
/// Every offending field; messages never repeat a credential.
pub fn scrape_query(req: ScrapeInvoicesRequest) -> Result<ScrapeQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let business_number = match req.business_number.trim() {
        "" => {
            errors.push(FieldError::new("business_number", "is required (XXX-XX-XXXXX)"));
            None
        }
        b => kerp_core::master::business_number(b).map_err(|m| errors.push(FieldError::new("business_number", m))).ok(),
    };
    let mut date = |field: &str, text: &str| {
        if text.trim().is_empty() {
            errors.push(FieldError::new(field, "is required (YYYY-MM-DD)"));
            return None;
        }
        parse_date(text.trim()).map_err(|m| errors.push(FieldError::new(field, m))).ok()
    };
    let start_date = date("start_date", &req.start_date);
    let end_date = date("end_date", &req.end_date);
    if let (Some(start), Some(end)) = (start_date, end_date) {
        if end < start {
            errors.push(FieldError::new("end_date", "must not be before start_date"));
        }
    }
    if req.user_id.chars().count() > USER_ID_CHARS_MAX {
        errors.push(FieldError::new("user_id", format!("must be at most {USER_ID_CHARS_MAX} characters")));
    }
    if req.password.len() > PASSWORD_BYTES_MAX {
        errors.push(FieldError::new("password", format!("must be at most {PASSWORD_BYTES_MAX} bytes")));
    }
    if req.cert_path.len() > CERT_PATH_BYTES_MAX {
        errors.push(FieldError::new("cert_path", format!("must be at most {CERT_PATH_BYTES_MAX} bytes")));
    }
    let credentials = Credentials { user_id: req.user_id, password: Secret::new(req.password), cert_path: Secret::new(req.cert_path) };
    match (business_number, start_date, end_date, errors.is_empty()) {
        (Some(business_number), Some(start_date), Some(end_date), true) => {
            Ok(ScrapeQuery { business_number, start_date, end_date, credentials })
        }
        _ => Err(errors),
    }
}

/// The status a source's failure answers with (see the module).
#[must_use]
pub fn source_status(e: &SourceError) -> Status {
    match e {
        SourceError::NotConfigured | SourceError::Unreadable(_) => Status::failed_precondition(e.to_string()),
        SourceError::Unavailable(m) => Status::unavailable(m.clone()),
        SourceError::CredentialsRefused { field, message } => {
            Failure::invalid(vec![FieldError::new(*field, message.clone())]).into_status()
        }
        SourceError::TooMany { .. } => Failure::invalid(vec![FieldError::new("end_date", e.to_string())]).into_status(),
    }
}

/// The message of an invoice with its outcome.
fn outcome_message(mut m: TaxInvoice, outcome: &Outcome) -> TaxInvoice {
    match outcome {
        Outcome::Imported { invoice_id, .. } => {
            m.set_import_outcome(ImportOutcome::Imported);
            m.invoice_id = invoice_id.to_string();
        }
        Outcome::Duplicate { invoice_id } => {
            m.set_import_outcome(ImportOutcome::Duplicate);
            m.invoice_id = invoice_id.to_string();
        }
        Outcome::Rejected(why) => {
            m.set_import_outcome(ImportOutcome::Rejected);
            m.import_error.clone_from(why);
        }
    }
    m
}

/// The answer: invoices by write date, approval number and origin, and the counts.
#[must_use]
pub fn answer(mut invoices: Vec<TaxInvoice>, partners_created: usize) -> ScrapeInvoicesResponse {
    invoices.sort_by(|a, b| (&a.write_date, &a.approval_number, &a.origin).cmp(&(&b.write_date, &b.approval_number, &b.origin)));
    let count = |o: ImportOutcome| i32::try_from(invoices.iter().filter(|i| i.import_outcome() == o).count()).unwrap_or(i32::MAX);
    ScrapeInvoicesResponse {
        imported_count: count(ImportOutcome::Imported),
        duplicate_count: count(ImportOutcome::Duplicate),
        rejected_count: count(ImportOutcome::Rejected),
        partners_created: i32::try_from(partners_created).unwrap_or(i32::MAX),
        invoices,
    }
}

impl TaxScraper {
    /// PERMISSION_DENIED unless `business_number` is the token's company's.
    async fn check_company(&self, claims: &Claims, business_number: &str) -> Result<(), Status> {
        let company = match kerp_ingest::store::master::company(&self.state.pool, claims.company_id).await {
            Ok(c) => c,
            Err(e) => return Err(Error::from(e).into_status().await),
        };
        let on_record = company.and_then(|c| c.business_number).map(|b| check::digits(&b));
        if on_record.as_deref() == Some(check::digits(business_number).as_str()) {
            Ok(())
        } else {
            Err(Status::permission_denied("the business number is not the token's company's (companies.business_number)"))
        }
    }

    /// Checks and imports the records, in order; stops at a failure that is not one invoice's.
    async fn import_all(&self, claims: &Claims, business: &str, records: &[SourceInvoice]) -> Result<ScrapeInvoicesResponse, Failure> {
        let topic = &self.state.config.voucher_topic;
        let mut invoices = Vec::with_capacity(records.len());
        let mut partners_created = 0;
        for record in records {
            let message = match check::check(record, business) {
                Ok(scraped) => {
                    let outcome = import::import(&self.state.pool, claims, topic, &scraped).await?;
                    if let Outcome::Imported { partner_created: true, .. } = outcome {
                        partners_created += 1;
                    }
                    if let Outcome::Rejected(why) = &outcome {
                        tracing::info!(origin = %record.origin, reason = %why, "an e-tax invoice was refused at import");
                    }
                    outcome_message(scraped.message(), &outcome)
                }
                Err(reasons) => {
                    tracing::info!(origin = %record.origin, reasons = %reasons.join("; "), "a malformed e-tax invoice was not imported");
                    outcome_message(check::echo(record, business), &Outcome::Rejected(reasons.join("; ")))
                }
            };
            invoices.push(message);
        }
        Ok(answer(invoices, partners_created))
    }
}

#[tonic::async_trait]
impl TaxScraperService for TaxScraper {
    async fn scrape_invoices(&self, request: Request<ScrapeInvoicesRequest>) -> Result<Response<ScrapeInvoicesResponse>, Status> {
        let started = Instant::now();
        let claims = auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Write)?;
        let query = scrape_query(request.into_inner()).map_err(|v| Failure::invalid(v).into_status())?;
        self.check_company(&claims, &query.business_number).await?;
        let scope = query.scope();
        let fetched = self.source.invoices(&query).await;
        // The credentials go here: nothing after this point can reach them.
        drop(query);
        let records: Vec<SourceInvoice> = match fetched {
            Ok(records) => records.into_iter().filter(|r| source::concerns(r, &scope)).collect(),
            Err(e) => {
                tracing::warn!(company = %claims.company_id, source = self.source.name(), error = %e, "the e-tax invoice source failed");
                return Err(source_status(&e));
            }
        };
        // The source promises the bound; a source that breaks it must not make the answer unbounded.
        if records.len() > SCRAPE_INVOICES_MAX {
            return Err(source_status(&SourceError::TooMany { limit: SCRAPE_INVOICES_MAX }));
        }
        let answer = self.import_all(&claims, &scope.business_digits, &records).await.map_err(|f| {
            if f.code == Code::Unavailable {
                tracing::warn!(company = %claims.company_id, "the import stopped: the database is unavailable");
            }
            f.into_status()
        })?;
        tracing::info!(
            company = %claims.company_id,
            source = self.source.name(),
            from = %scope.start_date,
            to = %scope.end_date,
            invoices = answer.invoices.len(),
            imported = answer.imported_count,
            duplicates = answer.duplicate_count,
            rejected = answer.rejected_count,
            partners_created = answer.partners_created,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "e-tax invoices scraped"
        );
        Ok(Response::new(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ScrapeInvoicesRequest {
        ScrapeInvoicesRequest {
            business_number: "134-86-72683".into(),
            user_id: "kerp01".into(),
            password: "s3cret-pw".into(),
            cert_path: "/certs/signPri.key".into(),
            start_date: "2025-01-01".into(),
            end_date: "2025-03-31".into(),
        }
    }

    fn fields(r: ScrapeInvoicesRequest) -> Vec<String> {
        scrape_query(r).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_request_becomes_a_query_with_its_credentials_hidden() {
        let q = scrape_query(request()).unwrap();
        assert_eq!(q.business_number, "134-86-72683");
        assert_eq!((q.start_date.to_string(), q.end_date.to_string()), ("2025-01-01".into(), "2025-03-31".into()));
        assert_eq!(q.credentials.password.expose(), "s3cret-pw");
        let mut bare = request();
        bare.business_number = "1348672683".into();
        assert_eq!(scrape_query(bare).unwrap().business_number, "134-86-72683");
        let shown = format!("{:?} {:?}", request(), q);
        assert!(!shown.contains("s3cret-pw") && !shown.contains("signPri"), "{shown}");
        assert!(shown.contains("134-86-72683"));
    }

    #[test]
    fn bad_fields_are_each_named_without_echoing_credentials() {
        let mut r = request();
        r.business_number = "134-86-72684".into();
        r.start_date = "2025-02-30".into();
        r.end_date = String::new();
        assert_eq!(fields(r), ["business_number", "start_date", "end_date"]);
        let mut r = request();
        r.start_date = "2025-04-01".into();
        assert_eq!(fields(r), ["end_date"]);
        let mut r = request();
        r.password = "p".repeat(PASSWORD_BYTES_MAX + 1);
        r.cert_path = "c".repeat(CERT_PATH_BYTES_MAX + 1);
        r.user_id = "u".repeat(USER_ID_CHARS_MAX + 1);
        let errors = scrape_query(r).unwrap_err();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["user_id", "password", "cert_path"]);
        assert!(errors.iter().all(|e| !e.message.contains("ppp") && !e.message.contains("ccc")));
        let mut r = request();
        r.business_number = String::new();
        assert_eq!(fields(r), ["business_number"]);
        let mut r = request();
        (r.user_id, r.password, r.cert_path) = (String::new(), String::new(), String::new());
        assert!(scrape_query(r).is_ok(), "the inbox source needs no credentials; a live one says what it misses");
    }

    #[test]
    fn source_failures_have_their_codes() {
        assert_eq!(source_status(&SourceError::NotConfigured).code(), Code::FailedPrecondition);
        assert_eq!(source_status(&SourceError::Unreadable("x.csv is broken".into())).code(), Code::FailedPrecondition);
        assert_eq!(source_status(&SourceError::Unavailable("later".into())).code(), Code::Unavailable);
        let s = source_status(&SourceError::TooMany { limit: SCRAPE_INVOICES_MAX });
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().starts_with("end_date: the period holds more than 2000"), "{}", s.message());
        let s = source_status(&SourceError::CredentialsRefused { field: "password", message: "Hometax refused the login".into() });
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "password: Hometax refused the login"));
    }

    #[test]
    fn answers_are_ordered_and_counted() {
        let m = |date: &str, number: &str, outcome: Outcome| {
            outcome_message(TaxInvoice { write_date: date.into(), approval_number: number.into(), ..Default::default() }, &outcome)
        };
        let id = uuid::Uuid::new_v4();
        let a = answer(
            vec![
                m("2025-02-01", "b", Outcome::Duplicate { invoice_id: id }),
                m("2025-01-01", "a", Outcome::Imported { invoice_id: id, partner_created: true }),
                m("2025-02-01", "a", Outcome::Rejected("세액: wrong".into())),
            ],
            1,
        );
        let order: Vec<(&str, &str)> = a.invoices.iter().map(|i| (i.write_date.as_str(), i.approval_number.as_str())).collect();
        assert_eq!(order, [("2025-01-01", "a"), ("2025-02-01", "a"), ("2025-02-01", "b")]);
        assert_eq!((a.imported_count, a.duplicate_count, a.rejected_count, a.partners_created), (1, 1, 1, 1));
        assert_eq!(a.invoices[1].import_error, "세액: wrong");
        assert_eq!(a.invoices[2].invoice_id, id.to_string());
        assert!(a.invoices[1].invoice_id.is_empty());
    }

    #[test]
    fn the_config_picks_the_source() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            scraper: ScraperConfig,
        }
        let parse = |args: &[&str]| <Cli as clap::Parser>::try_parse_from(args).unwrap().scraper;
        assert_eq!(parse(&["grpc-api", "--tax-scraper-inbox-dir="]).inbox_dir, Some(PathBuf::new()));
        assert_eq!(parse(&["grpc-api", "--tax-scraper-inbox-dir", "/srv/hometax"]).inbox_dir, Some("/srv/hometax".into()));
        assert_eq!(ScraperConfig::default().source().name(), "unconfigured");
        assert_eq!(ScraperConfig { inbox_dir: Some(PathBuf::new()) }.source().name(), "unconfigured");
        assert_eq!(ScraperConfig { inbox_dir: Some("/srv/hometax".into()) }.source().name(), "inbox");
    }
}
