//! Deadlines: the `grpc-timeout` header of a call comes in, the instant by which the call must be answered comes out,
//! and a call still unanswered then ends with DEADLINE_EXCEEDED.
//!
//! [`DeadlineLayer`] ends every call whose response has not started by its deadline, which covers the unary calls and
//! CreateVouchers; the handler's future is dropped, so its open transaction rolls back. A server stream has started
//! its response long before it ends, so AccountLedger checks the same deadline itself between chunks, with
//! [`Deadline`].
//!
//! tonic's server also cuts calls off at the deadline, but answers CANCELLED ("Timeout expired"). Ours fire
//! [`DEADLINE_MARGIN_MS`] earlier, so the client reads the code the gRPC spec gives for a deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// How much earlier than its client's deadline a call is ended, in milliseconds: enough for our timer to fire in an
/// earlier tick of tokio's millisecond clock than tonic's own, which was armed a moment before for the same instant.
pub const DEADLINE_MARGIN_MS: u64 = 5;

/// The header a client's deadline travels in.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Most digits a `grpc-timeout` value may have (the gRPC spec's bound, which also keeps the arithmetic from overflowing).
const TIMEOUT_DIGITS_MAX: usize = 8;

/// Reads a `grpc-timeout` value: at most eight digits and a unit, `H`, `M`, `S`, `m` (milliseconds), `u` or `n`.
/// `None` for a value that is not one, which, as in tonic's own parsing, means no deadline.
#[must_use]
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let unit_at = value.len().checked_sub(1)?;
    let (digits, unit) = (value.get(..unit_at)?, value.get(unit_at..)?);
    if digits.is_empty() || digits.len() > TIMEOUT_DIGITS_MAX || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The timeout a request's headers ask for, if any.
#[must_use]
pub fn timeout_of(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get(GRPC_TIMEOUT).and_then(|v| v.to_str().ok()).and_then(parse_timeout)
}

/// The instant a call that arrived now with these headers is ended at, [`DEADLINE_MARGIN_MS`] before its deadline.
fn ends_at(headers: &http::HeaderMap) -> Option<Instant> {
    timeout_of(headers).map(|t| Instant::now() + t.saturating_sub(Duration::from_millis(DEADLINE_MARGIN_MS)))
}

/// The answer to a call whose deadline passed before it was answered.
fn exceeded() -> tonic::Status {
    tonic::Status::deadline_exceeded("the call's deadline passed before it was answered")
}

/// When a call must be answered by, if its client set a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// The deadline of a call, counted from now (the call has just arrived), less [`DEADLINE_MARGIN_MS`].
    #[must_use]
    pub fn of<T>(req: &tonic::Request<T>) -> Self {
        Self(ends_at(req.metadata().as_ref()))
    }

    /// Whether the deadline has passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }

    /// Runs `f` until the deadline; `None` when the deadline passed first.
    pub async fn run<F: std::future::Future>(&self, f: F) -> Option<F::Output> {
        match self.0 {
            None => Some(f.await),
            Some(at) => tokio::time::timeout_at(at, f).await.ok(),
        }
    }
}

/// The tower layer that ends calls at their deadline; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> WithDeadline<S> {
        WithDeadline { inner }
    }
}

/// A service whose calls end at their deadline.
#[derive(Debug, Clone)]
pub struct WithDeadline<S> {
    inner: S,
}

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for WithDeadline<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let at = ends_at(req.headers());
        let response = self.inner.call(req);
        Box::pin(async move {
            match at {
                None => response.await,
                Some(at) => match tokio::time::timeout_at(at, response).await {
                    Ok(res) => res,
                    Err(_) => Ok(exceeded().into_http()),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_in_every_unit() {
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_timeout("5n"), Some(Duration::from_nanos(5)));
    }

    #[test]
    fn malformed_timeouts_are_no_deadline() {
        for v in ["", "S", "10", "10s", "123456789S", "-1S", "1.5S", "+1S", "1 S"] {
            assert_eq!(parse_timeout(v), None, "{v:?}");
        }
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_deadline_exceeded() {
        use tower::{Layer, Service, ServiceExt};
        let slow = tower::service_fn(|_req: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        let mut svc = DeadlineLayer.layer(slow);
        let req = http::Request::builder().header(GRPC_TIMEOUT, "20m").body(()).unwrap();
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.headers()["grpc-status"], (tonic::Code::DeadlineExceeded as i32).to_string().as_str());
    }

    #[test]
    fn a_request_carries_its_deadline() {
        let mut req = tonic::Request::new(());
        assert!(!Deadline::of(&req).passed());
        req.metadata_mut().insert(GRPC_TIMEOUT, "0m".parse().unwrap());
        assert!(Deadline::of(&req).passed());
        req.metadata_mut().insert(GRPC_TIMEOUT, format!("{DEADLINE_MARGIN_MS}m").parse().unwrap());
        assert!(Deadline::of(&req).passed(), "the margin is taken off");
        req.metadata_mut().insert(GRPC_TIMEOUT, "1H".parse().unwrap());
        assert!(!Deadline::of(&req).passed());
    }
}
