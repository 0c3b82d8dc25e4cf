//! Call metrics: every call to either listener passes through [`MetricsLayer`], which records, when the call ends,
//! `grpc_server_handled_total` (a counter) and `grpc_server_handling_seconds` (a histogram, in seconds), both labelled
//! `grpc_service`, `grpc_method` and `grpc_code`, as go-grpc-prometheus names them, so existing dashboards read them.
//!
//! A call ends when its response body ends: the code is read from the trailers (or from the headers of a
//! trailers-only answer), so a server stream is timed to its last message and counted with the code it ended with. A
//! call whose response is dropped before it ends was cancelled by its client, or cut off by its deadline.
//!
//! Label values are bounded: the service and method must be one of [`KNOWN_METHODS`], or are recorded as
//! `unknown`, so a client cannot grow the label set by calling made-up paths.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tonic::Code;

/// Every service and its methods, as their full names appear in call paths (`/<service>/<method>`).
pub const KNOWN_METHODS: &[(&str, &[&str])] = &[
    (crate::vouchers::SERVICE_NAME, &["CreateVoucher", "CreateVouchers", "GetVoucher"]),
    (crate::reports::SERVICE_NAME, &["TrialBalance", "AccountLedger"]),
    (crate::tax_scraper::SERVICE_NAME, &["ScrapeInvoices"]),
    (crate::insurance_edi::SERVICE_NAME, &["SubmitReport"]),
    (crate::HEALTH_SERVICE_NAME, &["Check", "Watch", "List"]),
    (crate::REFLECTION_V1_NAME, &["ServerReflectionInfo"]),
    (crate::REFLECTION_V1ALPHA_NAME, &["ServerReflectionInfo"]),
];

/// Installs the metrics recorder (see [`kerp_core::telemetry::metrics_handle`]) and gives the help text of the call
/// metrics, and of ingest-api's posting metrics, which grpc-api records too since it posts through the same store.
pub fn describe() {
    kerp_ingest::describe_metrics();
    kerp_query::balances::describe_metrics();
    metrics::describe_counter!(
        crate::reports::COALESCED_METRIC,
        "TrialBalance calls answered with a copy of an identical read already in flight (same company, role and request) instead of a read of their own."
    );
    metrics::describe_counter!(
        "grpc_server_handled_total",
        "gRPC calls that ended, by service (grpc_service), method (grpc_method) and status code (grpc_code)."
    );
    metrics::describe_histogram!(
        "grpc_server_handling_seconds",
        "Seconds from a gRPC call's arrival to its end (a server stream's last message), by service, method and status code."
    );
}

/// The label value of a service or method outside [`KNOWN_METHODS`].
pub const UNKNOWN: &str = "unknown";

/// The `grpc_service` and `grpc_method` labels of a call path.
#[must_use]
pub fn labels(path: &str) -> (&'static str, &'static str) {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else { return (UNKNOWN, UNKNOWN) };
    let Some((service, methods)) = KNOWN_METHODS.iter().find(|(s, _)| *s == service) else { return (UNKNOWN, UNKNOWN) };
    (service, methods.iter().find(|m| **m == method).copied().unwrap_or(UNKNOWN))
}

/// The `grpc_code` label of a status code: the names go-grpc-prometheus and every other gRPC ecosystem use.
#[must_use]
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The code in a `grpc-status` header or trailer.
fn code_in(headers: &http::HeaderMap) -> Option<Code> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok()).map(Code::from_i32)
}

/// Records one call when dropped: with the code it saw, or, if none, as cut off by the deadline or cancelled.
struct Call {
    service: &'static str,
    method: &'static str,
    started: Instant,
    timeout: Option<Duration>,
    code: Option<Code>,
}

impl Drop for Call {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let code = self.code.unwrap_or(if self.timeout.is_some_and(|t| elapsed >= t) { Code::DeadlineExceeded } else { Code::Cancelled });
        let labels = [("grpc_service", self.service), ("grpc_method", self.method), ("grpc_code", code_label(code))];
        metrics::counter!("grpc_server_handled_total", &labels).increment(1);
        metrics::histogram!("grpc_server_handling_seconds", &labels).record(elapsed.as_secs_f64());
    }
}

/// The tower layer of the servers; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered { inner }
    }
}

/// A service whose calls are recorded.
#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Metered<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = labels(req.uri().path());
        let mut call = Call { service, method, started: Instant::now(), timeout: crate::deadline::timeout_of(req.headers()), code: None };
        let response = self.inner.call(req);
        Box::pin(async move {
            let res = response.await;
            match res {
                Ok(res) => {
                    // A trailers-only answer (every error before the first message) has its code in the headers.
                    call.code = code_in(res.headers());
                    Ok(res.map(|inner| MeteredBody { inner, call: Some(call) }))
                }
                Err(e) => {
                    call.code = Some(Code::Internal);
                    // Recorded now, with that code.
                    drop(call);
                    Err(e)
                }
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when it ends or is dropped.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(call)) = (frame.trailers_ref(), this.call.as_mut()) {
                    call.code = code_in(trailers).or(call.code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.as_mut() {
                    call.code = Some(Code::Internal);
                }
                this.call.take();
            }
            Poll::Ready(None) => {
                this.call.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_give_bounded_labels() {
        assert_eq!(labels("/kerp.v1.VoucherService/CreateVouchers"), ("kerp.v1.VoucherService", "CreateVouchers"));
        assert_eq!(labels("/InsuranceEDIService/SubmitReport"), ("InsuranceEDIService", "SubmitReport"));
        assert_eq!(labels("/kerp.v1.VoucherService/DropTables"), ("kerp.v1.VoucherService", UNKNOWN));
        assert_eq!(labels("/evil.Service/Anything"), (UNKNOWN, UNKNOWN));
        assert_eq!(labels("/"), (UNKNOWN, UNKNOWN));
        assert_eq!(labels(""), (UNKNOWN, UNKNOWN));
    }

    #[test]
    fn codes_have_their_conventional_names() {
        assert_eq!(code_label(Code::Ok), "OK");
        assert_eq!(code_label(Code::Cancelled), "Canceled");
        assert_eq!(code_label(Code::InvalidArgument), "InvalidArgument");
        let mut h = http::HeaderMap::new();
        assert_eq!(code_in(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(code_in(&h), Some(Code::NotFound));
    }

    /// Every method of every contract has its labels, so a method added to a `.proto` without being named here fails
    /// this test rather than being counted as `unknown`.
    #[test]
    fn every_contract_method_is_known() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut seen = 0;
        for file in &set.file {
            for service in &file.service {
                let name = match file.package() {
                    "" => service.name().to_owned(),
                    p => format!("{p}.{}", service.name()),
                };
                for method in &service.method {
                    let path = format!("/{name}/{}", method.name());
                    assert_eq!(labels(&path), (name.as_str(), method.name()), "{path} is missing from KNOWN_METHODS");
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 7, "the four contracts have seven methods");
    }
}
