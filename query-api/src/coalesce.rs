//! Coalescing of identical report reads. A report request (a `GET` under `/api/v1/reports/`) with a valid token comes
//! in; if a request with the same company, role and URI is being answered at this moment, this one waits for that
//! answer and gets a copy of it instead of running the same ClickHouse queries again. Nothing is kept once an answer
//! is sent: the next request after it reads afresh.
//!
//! Why: under many report users (the realistic workload's 200 midday users of one company) most requests are the same
//! trial balance or income statement of the same month, each costing ClickHouse the same scan, and the machine spent
//! its CPU computing identical answers side by side. A shared answer is no staler than the slowest of those reads
//! would have been: it was read from data at most one read's duration older than the request, and the pipeline's own
//! delay (an event reaches the reports within about half a second of its 201) is larger than that.
//!
//! The flights themselves ([`Flights`]) know nothing of HTTP: grpc-api shares its unary report calls with them too.
//!
//! What a shared answer never crosses: companies and roles (they are the key, taken from the verified token, so one
//! company never sees another's answer) and tokens that do not verify (those pass through and get their own 401).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures::future::{BoxFuture, FutureExt, Shared};
use kerp_core::http::Problem;
use tracing::Instrument;
use uuid::Uuid;

use crate::answers::{Answers, Asked, LedgerScope, Lookup, Refreshing};

/// The routes whose answers are shared: reads only, and each a function of the company's data and the URI alone.
const REPORTS_PREFIX: &str = "/api/v1/reports/";

/// Largest answer that is shared, in bytes. Report pages are bounded (at most `LEDGER_PAGE_SIZE_MAX` lines, one
/// line per account on a statement), so a real answer is far below this; a larger one is a bug and answers 500 rather
/// than being held in memory for every waiter.
pub const SHARED_ANSWER_BYTES_MAX: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub company: Uuid,
    role: &'static str,
    pub(crate) uri: String,
}

impl Key {
    #[cfg(test)]
    #[must_use]
    pub fn new(company: Uuid, role: &'static str, uri: String) -> Self {
        Self { company, role, uri }
    }
}

/// A finished answer, cloned into each waiter's response.
#[derive(Debug)]
pub struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// What a ledger answer was read from, as its route said (a response extension, never sent).
    scope: Option<LedgerScope>,
}

impl Answer {
    /// A JSON answer (tests).
    #[cfg(test)]
    #[must_use]
    pub fn new(status: StatusCode, body: &str) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        Self { status, headers, body: Bytes::from(body.to_owned()), scope: None }
    }

    /// A JSON answer read from `scope` (tests).
    #[cfg(test)]
    #[must_use]
    pub fn scoped(status: StatusCode, body: &str, scope: LedgerScope) -> Self {
        Self { scope: Some(scope), ..Self::new(status, body) }
    }

    /// What it was read from, if its route said.
    #[must_use]
    pub fn scope(&self) -> Option<LedgerScope> {
        self.scope
    }

    /// Whether it is a 200.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.status == StatusCode::OK
    }

    /// About how many bytes it holds: its body and headers.
    #[must_use]
    pub fn size(&self) -> usize {
        self.body.len() + self.headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum::<usize>()
    }
}

/// The route whose answers are also held after they are sent (see [`crate::answers`]).
const HELD_PATH: &str = "/api/v1/reports/account-ledger";

/// The counter of report requests answered with a copy.
pub const JOINED_METRIC: &str = "http_requests_coalesced_total";

/// The report reads in flight.
pub type ReportFlights = Flights<Key, Arc<Answer>>;

/// The shared state of the middleware: the JWT secret, to verify tokens before using them as keys, the flights, and
/// the held answers (`None`: none are held).
#[derive(Clone)]
pub struct Coalescer {
    pub secret: Arc<[u8]>,
    pub flights: Arc<ReportFlights>,
    pub answers: Option<Arc<Answers>>,
}

fn key_of(secret: &[u8], req: &Request) -> Option<Key> {
    if req.method() != Method::GET || !req.uri().path().starts_with(REPORTS_PREFIX) {
        return None;
    }
    let token = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = token.strip_prefix("Bearer ").or_else(|| token.strip_prefix("bearer "))?;
    let claims = kerp_core::auth::verify(secret, token.trim()).ok()?;
    Some(Key { company: claims.company_id, role: claims.role.as_str(), uri: req.uri().to_string() })
}

/// Describes this module's metric for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_counter!(
        JOINED_METRIC,
        "Report requests answered with a copy of an identical read already in flight (same company, role and URI) instead of a read of their own."
    );
}

/// The middleware: serves a held answer (the account ledger's, see [`crate::answers`]), or joins the read in flight
/// for the request's key, or starts it.
pub async fn coalesce(State(c): State<Coalescer>, req: Request, next: Next) -> Response {
    let Some(key) = key_of(&c.secret, &req) else { return next.run(req).await };
    let answers = c.answers.filter(|_| req.uri().path() == HELD_PATH);
    // Taken before the read starts: the answer is held under the signal seen before it, and its age counts from
    // then (see `crate::answers`).
    let asked_at = Instant::now();
    let asked = match (req.extensions().get::<Refreshing>(), asks_fresh(req.headers())) {
        (Some(_), _) => Asked::Refresh,
        (None, true) => Asked::ClientFresh,
        (None, false) => Asked::Client,
    };
    let hold = match &answers {
        Some(answers) => match answers.lookup_as(&key, asked, asked_at, crate::routes::today()) {
            Lookup::Hit(answer, age) => return respond_held(&answer, age),
            // The token goes with the held page, so that the poller can read it again after a posting (it was
            // verified above, and it is no more than the request carried).
            Lookup::Read(tag) => Some((Arc::clone(answers), key.clone(), tag, req.headers().get(header::AUTHORIZATION).cloned())),
            Lookup::ReadUnheld => None,
        },
        None => None,
    };
    let uri = key.uri.clone();
    let read = async move {
        let answer = Arc::new(read(next.run(req).await, &uri).await);
        if let Some((answers, key, tag, authorization)) = hold {
            answers.hold_refreshable(key, tag, asked_at, &answer, authorization);
        }
        answer
    };
    respond(&c.flights.run(key, read, || Arc::new(internal())).await)
}

/// Whether the request asks not to be served a held answer (`Cache-Control: no-cache`, or `no-store`, or `max-age=0`).
fn asks_fresh(headers: &HeaderMap) -> bool {
    headers.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|d| {
        let d = d.trim().to_ascii_lowercase();
        d == "no-cache" || d == "no-store" || d == "max-age=0"
    })
}

/// Most distinct reads in flight that others may join. Past it, a call is answered on its own, as without
/// coalescing, so the map stays small whatever the traffic.
pub const FLIGHTS_MAX: usize = 1024;

type Flight<V> = Shared<BoxFuture<'static, V>>;

/// The reads in flight, by key. Each entry is removed by its own read as it finishes.
pub struct Flights<K, V> {
    inner: Mutex<HashMap<K, (u64, Flight<V>)>>,
    next_id: AtomicU64,
    /// The counter of joined reads (`http_requests_coalesced_total`, `grpc_requests_coalesced_total`).
    joined_metric: &'static str,
}

impl<K, V> Flights<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// No reads in flight; each joined read counts in the counter `joined_metric`.
    #[must_use]
    pub fn new(joined_metric: &'static str) -> Self {
        Self { inner: Mutex::new(HashMap::new()), next_id: AtomicU64::new(0), joined_metric }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (u64, Flight<V>)>> {
        // The map holds no invariant a panic could break halfway, so a poisoned lock is taken over.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many reads are in flight (tests).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no read is in flight (tests).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer of `read` for `key`: a copy of the answer of the read in flight for `key` if there is one, else
    /// `read`'s own, shared with the calls that come while it runs. `lost` answers when the read did not finish (it
    /// panicked, or the runtime is shutting down).
    pub async fn run<F>(self: &Arc<Self>, key: K, read: F, lost: fn() -> V) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        match self.join_or_start(key, read, lost) {
            Ok(flight) => flight.await,
            Err(alone) => alone.await,
        }
    }

    /// The read in flight for `key`, joined or started; `read` back when [`FLIGHTS_MAX`] reads are in flight. Not
    /// async, so the lock is never held across an await.
    fn join_or_start<F>(self: &Arc<Self>, key: K, read: F, lost: fn() -> V) -> Result<Flight<V>, F>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let mut flights = self.lock();
        if let Some((_, flight)) = flights.get(&key) {
            metrics::counter!(self.joined_metric).increment(1);
            return Ok(flight.clone());
        }
        if flights.len() >= FLIGHTS_MAX {
            return Err(read);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Inserted under the same lock the read takes to remove itself, so it cannot finish before it is in the map.
        let flight = self.start(key.clone(), id, read, lost);
        flights.insert(key, (id, flight.clone()));
        Ok(flight)
    }

    /// The read of `key`, shareable. It runs as a task of its own, so it finishes (and takes itself out of the map)
    /// even when every call waiting for it has gone away: a read left half done in the map would be resumed, long
    /// after, by the next call with its key.
    fn start<F>(self: &Arc<Self>, key: K, id: u64, read: F, lost: fn() -> V) -> Flight<V>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let flights = Arc::clone(self);
        let task = tokio::spawn(
            async move {
                let answer = read.await;
                let mut map = flights.lock();
                if map.get(&key).is_some_and(|(current, _)| *current == id) {
                    map.remove(&key);
                }
                answer
            }
            .in_current_span(),
        );
        async move {
            task.await.unwrap_or_else(|e| {
                // The read panicked past `CatchPanicLayer`, or the runtime is shutting down.
                tracing::error!(error = %e, "a shared report read did not finish");
                lost()
            })
        }
        .boxed()
        .shared()
    }
}

/// A response as an [`Answer`]; one whose body cannot be read whole is a 500.
async fn read(response: Response, uri: &str) -> Answer {
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, SHARED_ANSWER_BYTES_MAX).await {
        Ok(body) => Answer { status: parts.status, scope: parts.extensions.get::<LedgerScope>().copied(), headers: parts.headers, body },
        Err(e) => {
            tracing::error!(error = %e, uri, "a report answer could not be read whole; answered 500");
            internal()
        }
    }
}

fn internal() -> Answer {
    let problem = Problem::internal();
    let body = Bytes::from(serde_json::to_vec(&problem).unwrap_or_default());
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
    Answer { status: StatusCode::INTERNAL_SERVER_ERROR, headers, body, scope: None }
}

/// A held answer, with its `Age` in whole seconds as an HTTP cache would give it.
fn respond_held(answer: &Arc<Answer>, age: Duration) -> Response {
    let mut response = respond(answer);
    response.headers_mut().insert(header::AGE, header::HeaderValue::from(age.as_secs()));
    response
}

fn respond(answer: &Arc<Answer>) -> Response {
    let mut response = Response::new(Body::from(answer.body.clone()));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers.clone();
    response
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;
    use kerp_core::auth::{Claims, Role};
    use tower::ServiceExt;

    use super::*;

    const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

    fn token(company: Uuid, role: Role) -> String {
        kerp_core::auth::issue(SECRET, &Claims::new(Uuid::new_v4(), company, role, 3600)).expect("token")
    }

    /// An app whose report route counts its runs and takes 100 ms, answering with the run's number.
    fn app(runs: Arc<AtomicUsize>) -> (Router, Arc<ReportFlights>) {
        let flights = Arc::new(Flights::new(JOINED_METRIC));
        let coalescer = Coalescer { secret: Arc::from(SECRET), flights: flights.clone(), answers: None };
        let report = move || {
            let runs = runs.clone();
            async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                n.to_string()
            }
        };
        let router = Router::new()
            .route("/api/v1/reports/trial-balance", get(report.clone()))
            .route("/api/v1/other", get(report))
            .layer(axum::middleware::from_fn_with_state(coalescer, coalesce));
        (router, flights)
    }

    async fn call(app: &Router, uri: &str, token: &str) -> (StatusCode, String) {
        let req = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        (status, String::from_utf8(axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap())
    }

    /// Many identical requests at once, each with a token of its own (same company and role): one run, one answer.
    /// Another month, another company, another role, or a route outside the reports: runs of their own.
    #[tokio::test]
    async fn identical_reads_at_once_share_one_run_and_nothing_else_does() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (app, flights) = app(runs.clone());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let tb = "/api/v1/reports/trial-balance?year=2025&month=1";
        let mut calls = Vec::new();
        for _ in 0..20 {
            let (app, t) = (app.clone(), token(a, Role::Accountant));
            calls.push(tokio::spawn(async move { call(&app, tb, &t).await }));
        }
        let others = [
            ("/api/v1/reports/trial-balance?year=2025&month=2", token(a, Role::Accountant)),
            (tb, token(b, Role::Accountant)),
            (tb, token(a, Role::Admin)),
            ("/api/v1/other", token(a, Role::Accountant)),
            ("/api/v1/other", token(a, Role::Accountant)),
        ];
        for (uri, t) in others {
            let app = app.clone();
            calls.push(tokio::spawn(async move { call(&app, uri, &t).await }));
        }
        let mut answers = Vec::new();
        for c in calls {
            answers.push(c.await.unwrap());
        }
        assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK), "{answers:?}");
        let shared: std::collections::HashSet<&String> = answers[..20].iter().map(|(_, body)| body).collect();
        assert_eq!(shared.len(), 1, "the twenty identical reads got one answer: {answers:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 1 + 5, "one shared run, and one for each of the others");
        assert!(flights.is_empty(), "a finished read leaves the map");

        // After an answer went out, the same read runs again: nothing is cached.
        let before = runs.load(Ordering::SeqCst);
        call(&app, tb, &token(a, Role::Accountant)).await;
        assert_eq!(runs.load(Ordering::SeqCst), before + 1);
    }

    /// `Cache-Control` asks for a fresh read with `no-cache`, `no-store` or `max-age=0`, in any case and among
    /// other directives; anything else (or nothing) may be served a held answer.
    #[test]
    fn cache_control_asks_for_a_fresh_read() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::CACHE_CONTROL, header::HeaderValue::from_str(v).unwrap());
            }
            asks_fresh(&h)
        };
        assert!(with(&["no-cache"]) && with(&["No-Store"]) && with(&["max-age=0"]));
        assert!(with(&["max-stale=5, no-cache"]) && with(&["private", "no-cache"]));
        assert!(!with(&[]) && !with(&["max-age=60"]) && !with(&["no-transform"]));
    }

    /// A token that does not verify is never a key: its request reaches the handler's own check (here, two bad
    /// requests at once both run).
    #[tokio::test]
    async fn requests_without_a_valid_token_are_not_coalesced() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (app, _) = app(runs.clone());
        let tb = "/api/v1/reports/trial-balance?year=2025&month=1";
        let (x, y) = tokio::join!(call(&app, tb, "not-a-token"), call(&app, tb, "not-a-token"));
        assert_eq!((x.0, y.0), (StatusCode::OK, StatusCode::OK));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    /// The request that started a read goes away (its client hung up): a request that joined it still gets the
    /// answer, and the map is empty afterwards.
    #[tokio::test]
    async fn a_read_outlives_the_request_that_started_it() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (app, flights) = app(runs.clone());
        let tb = "/api/v1/reports/trial-balance?year=2025&month=1";
        let t = token(Uuid::new_v4(), Role::Accountant);
        let first = {
            let (app, t) = (app.clone(), t.clone());
            tokio::spawn(async move { call(&app, tb, &t).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        let (status, body) = call(&app, tb, &t).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "1"), "the joined read's answer");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.is_empty());
    }
}

/// The flights alone, as grpc-api uses them: any key, any answer.
#[cfg(test)]
mod flights_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::Flights;

    type TestFlights = Flights<(u32, &'static str), Result<u32, String>>;

    fn flights() -> Arc<TestFlights> {
        Arc::new(Flights::new("test_coalesced_total"))
    }

    fn lost() -> Result<u32, String> {
        Err("lost".into())
    }

    /// A read that counts its runs and takes `ms` milliseconds.
    fn read(runs: &Arc<AtomicUsize>, ms: u64, answer: u32) -> impl std::future::Future<Output = Result<u32, String>> + Send + 'static {
        let runs = Arc::clone(runs);
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(answer)
        }
    }

    #[tokio::test]
    async fn identical_calls_in_flight_share_one_read_and_distinct_keys_do_not() {
        let flights = flights();
        let runs = Arc::new(AtomicUsize::new(0));
        let same = (0..8).map(|_| {
            let (f, r) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move { f.run((1, "accountant"), read(&r, 100, 7), lost).await })
        });
        let other_company = {
            let (f, r) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move { f.run((2, "accountant"), read(&r, 100, 8), lost).await })
        };
        let other_role = {
            let (f, r) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move { f.run((1, "viewer"), read(&r, 100, 9), lost).await })
        };
        for call in same.collect::<Vec<_>>() {
            assert_eq!(call.await.unwrap(), Ok(7));
        }
        assert_eq!(other_company.await.unwrap(), Ok(8));
        assert_eq!(other_role.await.unwrap(), Ok(9));
        assert_eq!(runs.load(Ordering::SeqCst), 3, "one read per key");
        assert!(flights.is_empty(), "finished reads leave the map");
        // After an answer, the next call reads afresh.
        assert_eq!(flights.run((1, "accountant"), read(&runs, 1, 10), lost).await, Ok(10));
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_read_whose_callers_all_went_away_still_finishes_and_leaves_the_map() {
        let flights = flights();
        let runs = Arc::new(AtomicUsize::new(0));
        let call = {
            let (f, r) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move { f.run((1, "accountant"), read(&r, 50, 7), lost).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        call.abort();
        assert_eq!(flights.len(), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(flights.is_empty());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_are_shared_too_and_a_panicking_read_answers_lost() {
        let flights = flights();
        let failing = flights.run((1, "accountant"), async { Err::<u32, _>("unavailable".to_owned()) }, lost).await;
        assert_eq!(failing, Err("unavailable".into()));
        let panicking = flights.run((1, "accountant"), async { panic!("a bug") }, lost).await;
        assert_eq!(panicking, Err("lost".into()));
    }
}
