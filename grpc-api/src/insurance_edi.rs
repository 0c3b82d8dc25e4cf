//! `InsuranceEDIService` (`insurance_edi.proto`, no package: the existing Python clients' `insurance_edi_pb2`), on
//! its own listener (`GRPC_EDI_LISTEN`, 127.0.0.1:50052): a month's employees and pay come in; each employee's and
//! the employer's four-insurance contributions, the stored report's totals and its receipt id are to go out.
//!
//! Only the contract is served so far: the call is authenticated like every other and then answers UNIMPLEMENTED,
//! and reflection lists the service. The implementation replaces [`InsuranceEdi::submit_report`]'s body;
//! [`AppState`] gives it Postgres, the config (where a resident-number encryption key belongs) and the shutdown
//! token, and [`crate::auth::same_company`] checks `company_id`. Resident numbers must never reach a log line
//! unmasked: this module logs nothing of the request.

use tonic::{Request, Response, Status};

use crate::auth::{self, Access};
use crate::pb::root::insurance_edi_service_server::{InsuranceEdiService, InsuranceEdiServiceServer};
use crate::pb::root::{SubmitReportRequest, SubmitReportResponse};
use crate::{AppState, REQUEST_MESSAGE_BYTES_MAX, RESPONSE_MESSAGE_BYTES_MAX};

/// `InsuranceEDIService`.
pub const SERVICE_NAME: &str = crate::pb::root::insurance_edi_service_server::SERVICE_NAME;

/// The service, with the message limits.
pub fn server(state: AppState) -> InsuranceEdiServiceServer<InsuranceEdi> {
    InsuranceEdiServiceServer::new(InsuranceEdi { state })
        .max_decoding_message_size(REQUEST_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RESPONSE_MESSAGE_BYTES_MAX)
}

/// The implementation of `InsuranceEDIService`.
pub struct InsuranceEdi {
    state: AppState,
}

#[tonic::async_trait]
impl InsuranceEdiService for InsuranceEdi {
    async fn submit_report(&self, request: Request<SubmitReportRequest>) -> Result<Response<SubmitReportResponse>, Status> {
        auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Write)?;
        Err(Status::unimplemented("InsuranceEDIService.SubmitReport is not implemented yet"))
    }
}
