//! Logging and Prometheus metrics set-up shared by the binaries. Log lines go to stderr; metrics are rendered on demand
//! by the `/metrics` route of each service from the handle returned here.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for request and query latencies, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets for event-to-visible freshness, in seconds: 10 ms to 2 minutes.
const FRESHNESS_BUCKETS_SECONDS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Starts logging to stderr, filtered by `RUST_LOG` (default `info`). Safe to call more than once.
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // A second call (tests start several services in one process) fails harmlessly.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Installs the process-wide Prometheus recorder once and returns its handle. Later calls return the same handle,
/// because a process has one global recorder even when tests run several services in it.
///
/// # Panics
/// Only if the bucket constants are empty, which they are not.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS_SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("handling_seconds".into()), LATENCY_BUCKETS_SECONDS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("freshness_seconds".into()), FRESHNESS_BUCKETS_SECONDS))
                .expect("bucket lists are non-empty");
            match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is already installed (for example by a test harness): render an empty registry.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Awaits a database call and records its duration in `db_query_duration_seconds{query}`. `query` is a fixed name,
/// never SQL text, to keep the label set small.
pub async fn timed<F: std::future::Future>(query: &'static str, f: F) -> F::Output {
    let start = std::time::Instant::now();
    let out = f.await;
    metrics::histogram!("db_query_duration_seconds", "query" => query).record(start.elapsed().as_secs_f64());
    out
}
