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
                Ok(h) => {
                    // Descriptions go to the recorder installed at the time of the call, so they are given right
                    // after it is installed; a metric that is never recorded shows no help line.
                    describe();
                    h
                }
                // Another recorder is already installed (for example by a test harness): render an empty registry.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Gives the help text of the metrics that the shared helpers record: the request metrics of [`crate::http`] and
/// [`timed`]. Each service describes its own metrics as well (for instance `kerp_stream::describe_metrics`).
fn describe() {
    metrics::describe_counter!("http_requests_total", "HTTP requests answered, by route template (handler), method and status code.");
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        "Seconds from a request's arrival to its response headers, by route template (handler), method and status code."
    );
    metrics::describe_histogram!(
        "db_query_duration_seconds",
        "Seconds a named database call (Postgres or ClickHouse) took, by query name."
    );
}

/// Awaits a database call and records its duration in `db_query_duration_seconds{query}`. `query` is a fixed name,
/// never SQL text, to keep the label set small.
pub async fn timed<F: std::future::Future>(query: &'static str, f: F) -> F::Output {
    let start = std::time::Instant::now();
    let out = f.await;
    metrics::histogram!("db_query_duration_seconds", "query" => query).record(start.elapsed().as_secs_f64());
    out
}

#[cfg(test)]
mod tests {
    /// The shared metrics leave with their help text, so a scrape explains what each one measures.
    #[test]
    fn shared_metrics_are_rendered_with_their_help() {
        let handle = super::metrics_handle();
        let labels = [("handler", "/test/help"), ("method", "GET"), ("status", "200")];
        metrics::counter!("http_requests_total", &labels).increment(1);
        metrics::histogram!("http_request_duration_seconds", &labels).record(0.002);
        metrics::histogram!("db_query_duration_seconds", "query" => "test_help").record(0.001);
        let text = handle.render();
        for name in ["http_requests_total", "http_request_duration_seconds", "db_query_duration_seconds"] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name} has no help line:\n{text}");
        }
        assert!(text.contains("# TYPE http_request_duration_seconds histogram"), "{text}");
    }
}
