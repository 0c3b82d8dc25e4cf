//! A closed-model load at fixed concurrency for a fixed count: `concurrency` workers take the next request number
//! until `count` were made, each timed from send to the whole answer read. The runner uses it for both sides of the
//! report comparison (query-api over HTTP, the baseline's SQL) and for the voucher POSTs, so both sides of every
//! comparison are driven the same way.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::stats::Dist;

/// Workers of one load at most: the machine has two cores, and beyond this the client measures itself.
pub const CONCURRENCY_MAX: usize = 256;

/// Seconds one request may take before it counts as failed, so a stuck service ends the load.
pub const REQUEST_SECONDS_MAX: u64 = 30;

/// Error messages kept per load (the count of each kind is kept in full).
const ERROR_EXAMPLES_MAX: usize = 5;

/// What a load did: every latency, the answers by kind, and its wall time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub concurrency: usize,
    /// Milliseconds, every request (failures included), in completion order. Written to `samples.json`, not to the
    /// summary.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
    /// Answers by kind: the HTTP status, `ok` for SQL, or `error` for a request that got no answer.
    pub answers: BTreeMap<String, u64>,
    /// Requests that did not succeed (non-2xx, SQL error, timeout).
    pub failures: u64,
    pub error_examples: Vec<String>,
    pub wall_seconds: f64,
    pub dist: Dist,
    /// Requests per second over the wall time.
    pub rate: f64,
}

/// One request's result: `Ok(kind)` when it succeeded, `Err((kind, message))` otherwise.
pub type Answer = Result<String, (String, String)>;

/// Runs `count` calls of `call(i)` with `concurrency` in flight.
pub async fn fixed<F, Fut>(name: &str, concurrency: usize, count: usize, call: F) -> Outcome
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send,
{
    let concurrency = concurrency.clamp(1, CONCURRENCY_MAX);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, call) = (next.clone(), call.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return mine;
                }
                let t = Instant::now();
                let answer = match tokio::time::timeout(Duration::from_secs(REQUEST_SECONDS_MAX), call(i)).await {
                    Ok(a) => a,
                    Err(_) => Err(("timeout".to_owned(), format!("no answer in {REQUEST_SECONDS_MAX} s"))),
                };
                mine.push((t.elapsed().as_secs_f64() * 1000.0, answer));
            }
        }));
    }
    let mut samples = Vec::with_capacity(count);
    for w in workers {
        samples.extend(w.await.unwrap_or_default());
    }
    outcome(name, concurrency, samples, started.elapsed().as_secs_f64())
}

/// The outcome of `samples` (milliseconds and answer of each request) taken with `concurrency` in flight over
/// `wall_seconds`.
pub fn outcome(name: &str, concurrency: usize, samples: Vec<(f64, Answer)>, wall_seconds: f64) -> Outcome {
    let mut out = Outcome { name: name.to_owned(), concurrency, wall_seconds, ..Outcome::default() };
    for (ms, answer) in samples {
        out.latencies_ms.push(ms);
        match answer {
            Ok(kind) => *out.answers.entry(kind).or_default() += 1,
            Err((kind, message)) => {
                *out.answers.entry(kind).or_default() += 1;
                out.failures += 1;
                if out.error_examples.len() < ERROR_EXAMPLES_MAX {
                    out.error_examples.push(message);
                }
            }
        }
    }
    out.dist = Dist::of(&out.latencies_ms);
    #[allow(clippy::cast_precision_loss)]
    let n = out.latencies_ms.len() as f64;
    out.rate = if out.wall_seconds > 0.0 { n / out.wall_seconds } else { 0.0 };
    out
}

/// Sends a request and reads the whole body; a 2xx is `Ok(status)`.
pub async fn http(req: reqwest::RequestBuilder) -> Answer {
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            match resp.bytes().await {
                Ok(_) if status.is_success() => Ok(status.as_u16().to_string()),
                Ok(body) => {
                    Err((status.as_u16().to_string(), format!("{status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]))))
                }
                Err(e) => Err(("error".to_owned(), format!("reading the body: {e}"))),
            }
        }
        Err(e) => Err(("error".to_owned(), e.to_string())),
    }
}

/// An `anyhow` result as an answer: `ok`, or `error` with the message.
pub fn from_result<T>(r: anyhow::Result<T>) -> Answer {
    r.map(|_| "ok".to_owned()).map_err(|e| ("error".to_owned(), format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_call_is_made_once_and_failures_are_counted() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let out = fixed("t", 4, 10, move |i| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(i);
                if i % 5 == 0 {
                    Err(("500".to_owned(), format!("call {i}")))
                } else {
                    Ok("200".to_owned())
                }
            }
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(out.latencies_ms.len(), 10);
        assert_eq!(out.answers["200"], 8);
        assert_eq!(out.answers["500"], 2);
        assert_eq!(out.failures, 2);
        assert_eq!(out.dist.count, 10);
    }
}
