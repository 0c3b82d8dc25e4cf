//! The metrics audit: every metric a service records (found by reading the services' sources for `counter!`,
//! `gauge!` and `histogram!` calls) leaves `/metrics` with a `# HELP` line, once each service has described its
//! metrics at start-up. A metric added without a `describe_*` fails here with its name and file. Needs no services.

use std::path::{Path, PathBuf};

/// The crates whose metrics are scraped, relative to the workspace root.
const SOURCE_DIRS: [&str; 5] = ["core/src", "ingest-api/src", "stream-workers/src", "query-api/src", "grpc-api/src"];

/// The metric kinds and the macro each is recorded with.
const KINDS: [&str; 3] = ["counter", "gauge", "histogram"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Every `(kind, name, file)` recorded with a literal name, as `metrics::counter!("name"…` or `counter!("name"…`;
/// `describe_counter!` and the like are descriptions, not recordings, and are left out.
fn recorded_metrics() -> Vec<(&'static str, String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e sits in the workspace");
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for kind in KINDS {
            let needle = format!("{kind}!(\"");
            for (at, _) in text.match_indices(&needle) {
                if text[..at].ends_with('_') {
                    continue;
                }
                let rest = &text[at + needle.len()..];
                let name = &rest[..rest.find('"').expect("a closed string")];
                found.push((kind, name.to_owned(), file.clone()));
            }
        }
    }
    found
}

#[test]
fn every_recorded_metric_has_help_text() {
    let handle = kerp_core::telemetry::metrics_handle();
    kerp_ingest::describe_metrics();
    kerp_stream::describe_metrics();
    kerp_query::describe_metrics();
    kerp_grpc::metrics::describe();
    let recorded = recorded_metrics();
    // The audit must see the metrics it is about, or it proves nothing.
    for name in ["http_request_duration_seconds", "db_query_duration_seconds", "grpc_server_handling_seconds", "outbox_backlog_rows"] {
        assert!(recorded.iter().any(|(_, n, _)| n == name), "{name} was not found in the sources");
    }
    for name in ["kafka_consumer_lag_messages", "fold_event_freshness_seconds", "clickhouse_insert_duration_seconds"] {
        assert!(recorded.iter().any(|(_, n, _)| n == name), "{name} was not found in the sources");
    }
    // Rendered only once recorded, so each is recorded once, without labels.
    for (kind, name, _) in &recorded {
        match *kind {
            "counter" => metrics::counter!(name.clone()).increment(0),
            "gauge" => metrics::gauge!(name.clone()).set(0.0),
            _ => metrics::histogram!(name.clone()).record(0.0),
        }
    }
    let text = handle.render();
    let mut missing: Vec<String> = recorded
        .iter()
        .filter(|(_, name, _)| !text.contains(&format!("# HELP {name} ")))
        .map(|(kind, name, file)| format!("{kind} {name} ({})", file.display()))
        .collect();
    // A metric recorded in several places is named once.
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "metrics without describe_* help text:\n{}", missing.join("\n"));
}
