//! HTTP helpers shared by ingest-api and query-api: problem+json errors (RFC 9457), the bearer-token extractor, a JSON
//! body extractor with a size limit, the `{"data": …}` envelope, the request metrics middleware and the internal
//! listener that serves the metrics.
//!
//! Requests pass through [`track_metrics`] and the extractors; errors leave as [`Problem`] responses. Metrics leave
//! only through `/metrics` on an internal listener ([`bind_metrics`], [`spawn_metrics`]), never on the public one.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{self, Claims};
use crate::voucher::FieldError;

/// Largest request body any endpoint reads, in bytes. A voucher at `LINES_MAX` lines with long descriptions stays
/// under it; anything bigger is refused with 413 before it is parsed.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// Bodies over [`BODY_BYTES_MAX`] but under this are read to the end and dropped before the 413 is sent, so ordinary
/// clients see the 413 instead of a broken pipe. Larger ones are cut off at once.
pub const BODY_DRAIN_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Largest page a list endpoint returns; a bigger `page_size` is clamped to it.
pub const PAGE_SIZE_MAX: u32 = 500;
/// Page size when the client does not ask for one.
pub const PAGE_SIZE_DEFAULT: u32 = 50;

/// An RFC 9457 problem document, served as `application/problem+json`: the body of every error answer of both
/// services.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "https://kerp.dev/problems/validation", "title": "Unprocessable Entity", "status": 422,
    "detail": "lines[0].account_code: account not found",
    "errors": [{"field": "lines[0].account_code", "message": "account not found"}]}))]
pub struct Problem {
    /// One of [`PROBLEM_TYPES`].
    #[serde(rename = "type")]
    #[schema(schema_with = crate::openapi::problem_type_schema)]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: &'static str,
    /// The HTTP status of the answer.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong, for people; its words may change.
    pub detail: String,
    /// Every offending field, on validation problems; left out otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Where the problem types are documented; every `type` URI starts with it (see `docs/errors.md`).
pub const PROBLEM_TYPE_BASE: &str = "https://kerp.dev/problems/";

/// A duplicate: a code, business number, e-mail, voucher number or approval number the company already has (409).
pub const PROBLEM_TYPE_DUPLICATE: &str = "https://kerp.dev/problems/duplicate";
/// A posting, approval, reversal or invoice issue dated in a closed period (409): reopen the period or date it later.
pub const PROBLEM_TYPE_PERIOD_CLOSED: &str = "https://kerp.dev/problems/period-closed";
/// An `Idempotency-Key` already used for a different request (422): send a new key for a new request.
pub const PROBLEM_TYPE_IDEMPOTENCY_KEY_REUSED: &str = "https://kerp.dev/problems/idempotency-key-reused";

/// The stable `type` URI of each kind of error: the one list that [`problem_type`], `docs/errors.md` and the OpenAPI
/// document's `Problem` schema ([`crate::openapi::problem_type_schema`]) follow. The first entry of a status is its
/// general kind; the later ones of 409 and 422 are finer kinds that clients act on differently (a duplicate is
/// resolved by another code, a closed period by an admin, a reused key by a new key), set by the constructors below.
pub const PROBLEM_TYPES: &[(u16, &str)] = &[
    (400, "https://kerp.dev/problems/bad-request"),
    (401, "https://kerp.dev/problems/unauthorized"),
    (403, "https://kerp.dev/problems/forbidden"),
    (404, "https://kerp.dev/problems/not-found"),
    (405, "https://kerp.dev/problems/method-not-allowed"),
    (409, "https://kerp.dev/problems/conflict"),
    (409, PROBLEM_TYPE_DUPLICATE),
    (409, PROBLEM_TYPE_PERIOD_CLOSED),
    (413, "https://kerp.dev/problems/payload-too-large"),
    (415, "https://kerp.dev/problems/unsupported-media-type"),
    (422, "https://kerp.dev/problems/validation"),
    (422, PROBLEM_TYPE_IDEMPOTENCY_KEY_REUSED),
    (503, "https://kerp.dev/problems/unavailable"),
    (500, "https://kerp.dev/problems/internal"),
];

/// The stable `type` URI of a status's general kind of error (see [`PROBLEM_TYPES`]). Clients branch on it rather than
/// on `detail`, whose words may change.
#[must_use]
pub fn problem_type(status: StatusCode) -> &'static str {
    PROBLEM_TYPES.iter().find(|(s, _)| *s == status.as_u16()).map_or("about:blank", |(_, uri)| uri)
}

impl Problem {
    /// A problem with the standard reason phrase as its title and the status's stable type URI.
    #[must_use]
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: problem_type(status),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// A 422 that names each offending field.
    #[must_use]
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self::with_fields(StatusCode::UNPROCESSABLE_ENTITY, errors)
    }

    /// A 400 that names each query parameter that cannot be read (a date that is no date, a word that is no enum
    /// value): the request is malformed, as opposed to well formed but refused (422).
    #[must_use]
    pub fn malformed(errors: Vec<FieldError>) -> Self {
        Self::with_fields(StatusCode::BAD_REQUEST, errors)
    }

    /// A 409 for something the company already has (see [`PROBLEM_TYPE_DUPLICATE`]).
    #[must_use]
    pub fn duplicate(detail: impl Into<String>) -> Self {
        Self { kind: PROBLEM_TYPE_DUPLICATE, ..Self::new(StatusCode::CONFLICT, detail) }
    }

    /// A 409 for a change dated in a closed period (see [`PROBLEM_TYPE_PERIOD_CLOSED`]).
    #[must_use]
    pub fn period_closed(detail: impl Into<String>) -> Self {
        Self { kind: PROBLEM_TYPE_PERIOD_CLOSED, ..Self::new(StatusCode::CONFLICT, detail) }
    }

    /// A 422 for an idempotency key reused with a different request (see [`PROBLEM_TYPE_IDEMPOTENCY_KEY_REUSED`]).
    #[must_use]
    pub fn idempotency_key_reused(detail: impl Into<String>) -> Self {
        Self { kind: PROBLEM_TYPE_IDEMPOTENCY_KEY_REUSED, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail) }
    }

    fn with_fields(status: StatusCode, errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        Self { errors, ..Self::new(status, detail) }
    }

    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required")
    }

    /// The 500 that clients see: the cause is logged by the caller, never sent.
    #[must_use]
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; it has been logged")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// The success envelope of the contract: `{"data": …}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// The answer of `GET /health` when the service's store answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

impl Health {
    pub const OK: Health = Health { status: "ok" };
}

/// The list envelope of the contract: `{"data": [...], "pagination": {...}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

/// `page` starts at 1.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Pagination {
    /// The page answered, from 1.
    pub page: u32,
    /// Rows per page, after clamping.
    pub page_size: u32,
    /// Rows of every page together.
    pub total: u64,
}

impl Pagination {
    /// Clamps client values: page at least 1, page size between 1 and [`PAGE_SIZE_MAX`].
    #[must_use]
    pub fn clamp(page: Option<u32>, page_size: Option<u32>) -> Self {
        Self::clamp_with(page, page_size, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX)
    }

    /// [`Pagination::clamp`] for an endpoint with its own default and largest page size.
    #[must_use]
    pub fn clamp_with(page: Option<u32>, page_size: Option<u32>, default: u32, max: u32) -> Self {
        Self { page: page.unwrap_or(1).max(1), page_size: page_size.unwrap_or(default).clamp(1, max), total: 0 }
    }

    /// Rows to skip for this page.
    #[must_use]
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.page_size)
    }
}

/// Services that verify bearer tokens expose their HS256 secret through this.
pub trait JwtSecret {
    fn jwt_secret(&self) -> &[u8];
}

/// The verified caller. Extracting it refuses the request with 401 unless a valid bearer token is present.
#[derive(Debug, Clone)]
pub struct Auth(pub Claims);

impl<S: JwtSecret + Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(Problem::unauthorized)?;
        auth::verify(state.jwt_secret(), token.trim()).map(Auth).map_err(|_| Problem::unauthorized())
    }
}

/// A JSON body, read up to [`BODY_BYTES_MAX`] and parsed with field paths in the errors.
///
/// Oversized bodies get 413, bodies that are not JSON get 400, and JSON of the wrong shape gets 422 naming the field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"));
        }
        parse_json(&read_body(req).await?).map(JsonBody)
    }
}

/// Reads a request body of at most [`BODY_BYTES_MAX`] bytes.
///
/// # Errors
/// 413 for a larger body, 400 when it cannot be read.
pub async fn read_body(req: Request) -> Result<Vec<u8>, Problem> {
    let too_large = || Problem::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body must be at most {BODY_BYTES_MAX} bytes"));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_DRAIN_BYTES_MAX) {
        // Too big to be worth reading: answer now; the client may see the connection close while it still sends.
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut seen = 0usize;
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "the body could not be read"))?;
        seen += chunk.len();
        if seen > BODY_DRAIN_BYTES_MAX {
            return Err(too_large());
        }
        // Past the limit the rest is read and dropped, so that the client is not cut off mid-send and gets the 413.
        if seen <= BODY_BYTES_MAX {
            body.extend_from_slice(&chunk);
        }
    }
    if seen > BODY_BYTES_MAX {
        return Err(too_large());
    }
    Ok(body)
}

/// Whether the request says its body is JSON (`application/json` or a `+json` type).
#[must_use]
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"))
}

/// A JSON body that may be left out: an empty body (with or without `Content-Type: application/json`, as the
/// contract's clients send `POST …/issue`) is `None`; anything else is read and parsed like [`JsonBody`].
#[derive(Debug)]
pub struct MaybeJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MaybeJsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
        if declared == Some(0) || (declared.is_none() && !chunked) {
            return Ok(MaybeJsonBody(None));
        }
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, BODY_BYTES_MAX)
            .await
            .map_err(|_| Problem::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body must be at most {BODY_BYTES_MAX} bytes")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeJsonBody(None));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        JsonBody::from_request(req, state).await.map(|JsonBody(v)| MaybeJsonBody(Some(v)))
    }
}

/// Parses JSON and words the error the way a client can act on.
///
/// # Errors
/// 400 for bytes that are not JSON, 422 naming the field for JSON of the wrong shape or for a string holding NUL.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // JSON can carry U+0000 only escaped; Postgres text cannot hold it at all, so such a string would fail its insert
    // with a 500 (schemathesis found it). Only a body with the escape is walked, to name the field.
    if bytes.windows(NUL_ESCAPE.len()).any(|w| w == NUL_ESCAPE) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Some(field) = nul_string_at(&value, String::new()) {
                let field = if field.is_empty() { "body".to_owned() } else { field };
                return Err(Problem::invalid(vec![FieldError::new(field, "must not contain the NUL character (U+0000)")]));
            }
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if field == "." { "body".to_owned() } else { field };
            Problem::invalid(vec![FieldError::new(field, inner.to_string())])
        } else {
            Problem::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {inner}"))
        }
    })
}

/// How JSON writes U+0000 inside a string.
const NUL_ESCAPE: &[u8] = b"\\u0000";

/// The path (as `serde_path_to_error` writes it, e.g. `lines[1].description`) of the first string value under `value`
/// that holds U+0000.
fn nul_string_at(value: &serde_json::Value, at: String) -> Option<String> {
    match value {
        serde_json::Value::String(s) => s.contains('\0').then_some(at),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_string_at(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
            nul_string_at(v, path)
        }),
        _ => None,
    }
}

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Adds the request metrics layer to a service's public routes. `/metrics` is not among them: the metrics name every
/// route's traffic and errors, so they are served on an internal listener that the public proxy does not route.
pub fn tracked(routes: axum::Router) -> axum::Router {
    routes
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async { Problem::new(StatusCode::METHOD_NOT_ALLOWED, "the route does not take this method") })
        // Inside the metrics layer, so that a panicking handler is counted as the 500 the client sees instead of
        // a dropped connection (which nginx would turn into a 502 with an HTML body).
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(track_metrics))
}

/// The answer to a handler that panicked: logged with its message, answered as an opaque problem+json 500.
fn panic_response(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = cause
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| cause.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!(panic = message, "a request handler panicked; answered 500");
    Problem::internal().into_response()
}

/// Adds `/metrics` and the request metrics layer to routes that are served on an internal listener only, such as
/// stream-workers' metrics and health listener. Public routes use [`tracked`].
pub fn observed(routes: axum::Router) -> axum::Router {
    tracked(routes.merge(metrics_routes()))
}

/// `GET /metrics` in the Prometheus text format, for an internal listener.
pub fn metrics_routes() -> axum::Router {
    let metrics = crate::telemetry::metrics_handle();
    axum::Router::new()
        .route("/metrics", axum::routing::get(move || std::future::ready(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], metrics.render()))))
}

/// Binds the internal metrics listener at `listen` (`host:port`); an empty `listen` disables it and gives `None`.
///
/// # Errors
/// An address that does not parse, or one that cannot be bound.
pub async fn bind_metrics(listen: &str) -> std::io::Result<Option<tokio::net::TcpListener>> {
    if listen.is_empty() {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("metrics listen address {listen}: {e}")))?;
    Ok(Some(tokio::net::TcpListener::bind(addr).await?))
}

/// Serves [`metrics_routes`] on an internal `listener` in the background until `shutdown` is cancelled.
pub fn spawn_metrics(listener: tokio::net::TcpListener, shutdown: tokio_util::sync::CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    tokio::spawn(async move {
        if let Err(e) = serve(listener, metrics_routes(), shutdown).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
}

/// Serves `app` on `listener` until `shutdown` is cancelled; requests in flight finish first.
///
/// # Errors
/// Server IO errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

/// Records `http_requests_total` and `http_request_duration_seconds` with the route template as the `handler` label,
/// so ids in paths do not explode the label set.
pub async fn track_metrics(req: Request<Body>, next: Next) -> Response {
    let start = Instant::now();
    let handler = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [("handler", handler), ("method", method), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        n: i64,
    }

    #[test]
    fn malformed_json_is_400_and_wrong_shape_is_422_with_the_field() {
        assert_eq!(parse_json::<Body>(b"{\"n\": ").unwrap_err().status, 400);
        let p = parse_json::<Body>(b"{\"n\": \"x\"}").unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "n");
    }

    #[test]
    fn every_kind_of_error_has_a_stable_type() {
        for code in [400, 401, 403, 404, 405, 409, 413, 415, 422, 500, 503] {
            let status = StatusCode::from_u16(code).unwrap();
            let p = Problem::new(status, "x");
            assert!(p.kind.starts_with(PROBLEM_TYPE_BASE), "{code}: {}", p.kind);
        }
        assert_eq!(Problem::invalid(vec![FieldError::new("a", "b")]).kind, "https://kerp.dev/problems/validation");
        assert_eq!(Problem::malformed(vec![FieldError::new("a", "b")]).kind, "https://kerp.dev/problems/bad-request");
        // The finer kinds keep their status's number and have their own type.
        let finer = [
            (Problem::duplicate("x"), 409, PROBLEM_TYPE_DUPLICATE),
            (Problem::period_closed("x"), 409, PROBLEM_TYPE_PERIOD_CLOSED),
            (Problem::idempotency_key_reused("x"), 422, PROBLEM_TYPE_IDEMPOTENCY_KEY_REUSED),
        ];
        for (p, status, kind) in finer {
            assert_eq!((p.status, p.kind), (status, kind));
            assert!(PROBLEM_TYPES.contains(&(status, kind)), "{kind} is listed");
        }
        // One general type per status, listed first, which is what Problem::new gives.
        assert_eq!(problem_type(StatusCode::CONFLICT), "https://kerp.dev/problems/conflict");
    }

    #[test]
    fn docs_errors_md_lists_every_type_with_its_status() {
        let doc = include_str!("../../docs/errors.md");
        for (status, uri) in PROBLEM_TYPES {
            assert!(doc.contains(&format!("| `{uri}` | {status} |")), "docs/errors.md has no row for {uri} ({status})");
        }
    }

    #[test]
    fn a_string_with_nul_is_422_naming_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Line {
            description: String,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Voucher {
            lines: Vec<Line>,
        }
        let p = parse_json::<Voucher>(br#"{"lines": [{"description": "a"}, {"description": "b\u0000c"}]}"#).unwrap_err();
        assert_eq!((p.status, p.errors[0].field.as_str()), (422, "lines[1].description"));
        // An escaped backslash followed by "u0000" is no NUL.
        assert!(parse_json::<Line>(br#"{"description": "C:\\u0000"}"#).is_ok());
    }

    /// A handler that panics answers a problem+json 500 instead of dropping the connection.
    #[tokio::test]
    async fn a_panicking_handler_is_a_500_problem() {
        use tower::ServiceExt;
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let app = tracked(axum::Router::new().route("/boom", axum::routing::get(boom)));
        let res = app.oneshot(Request::builder().uri("/boom").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
    }

    #[test]
    fn pagination_is_clamped() {
        assert_eq!(Pagination::clamp(Some(0), Some(100_000)), Pagination { page: 1, page_size: PAGE_SIZE_MAX, total: 0 });
        assert_eq!(Pagination::clamp(Some(3), Some(10)).offset(), 20);
        assert_eq!(Pagination::clamp_with(None, Some(5000), 200, 1000).page_size, 1000);
        assert_eq!(Pagination::clamp_with(None, None, 200, 1000).page_size, 200);
    }
}
