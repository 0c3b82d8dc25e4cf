//! `TaxScraperService` (`tax_scraper.proto`, no package: the existing Python clients' `tax_scraper_pb2`): a
//! `ScrapeInvoicesRequest` with Hometax credentials comes in; the e-tax invoices of the period, imported as K-ERP
//! draft invoices, are to go out.
//!
//! Only the contract is served so far: the call is authenticated like every other (so a client without a token
//! learns that first) and then answers UNIMPLEMENTED, and reflection lists the service. The implementation replaces
//! [`TaxScraper::scrape_invoices`]'s body; [`AppState`] gives it Postgres (`kerp_ingest::store::invoices` and
//! `::master` hold the invoice and partner writes), the config and the shutdown token, and
//! [`crate::auth::same_company`] checks the company behind `business_number`. Credentials in the request must never
//! reach a log line: this module logs nothing of the request.

use tonic::{Request, Response, Status};

use crate::auth::{self, Access};
use crate::pb::root::tax_scraper_service_server::{TaxScraperService, TaxScraperServiceServer};
use crate::pb::root::{ScrapeInvoicesRequest, ScrapeInvoicesResponse};
use crate::{AppState, REQUEST_MESSAGE_BYTES_MAX, RESPONSE_MESSAGE_BYTES_MAX};

/// `TaxScraperService`.
pub const SERVICE_NAME: &str = crate::pb::root::tax_scraper_service_server::SERVICE_NAME;

/// The service, with the message limits.
pub fn server(state: AppState) -> TaxScraperServiceServer<TaxScraper> {
    TaxScraperServiceServer::new(TaxScraper { state })
        .max_decoding_message_size(REQUEST_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RESPONSE_MESSAGE_BYTES_MAX)
}

/// The implementation of `TaxScraperService`.
pub struct TaxScraper {
    state: AppState,
}

#[tonic::async_trait]
impl TaxScraperService for TaxScraper {
    async fn scrape_invoices(&self, request: Request<ScrapeInvoicesRequest>) -> Result<Response<ScrapeInvoicesResponse>, Status> {
        auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Write)?;
        Err(Status::unimplemented("TaxScraperService.ScrapeInvoices is not implemented yet"))
    }
}
