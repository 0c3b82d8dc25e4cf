//! The Prometheus set-up in `compose/prometheus` loads, and its alerts fire when they should: `promtool` (from
//! Debian's `prometheus` package, which `compose/stack install` installs) checks the config and the rules, runs the
//! rules' unit tests (`alerts_test.yml`), and parses every query of the Grafana dashboard. A machine without promtool
//! fails here rather than skipping: these files are only worth anything if something loads them. Needs no services.

use std::path::{Path, PathBuf};
use std::process::Command;

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e sits in the workspace").join("compose")
}

/// Runs `promtool` with `args` and fails the test with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).output().unwrap_or_else(|e| {
        panic!("promtool could not be run ({e}); install it with `compose/stack install` (Debian's prometheus package)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} failed:\n{text}", args.join(" "));
    text
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn the_prometheus_config_and_alert_rules_load() {
    let dir = compose_dir().join("prometheus");
    let config = promtool(&["check", "config", path(&dir.join("prometheus.yml"))]);
    assert!(config.contains("SUCCESS: 1 rule files found"), "the config must load alerts.yml:\n{config}");
    let rules = promtool(&["check", "rules", path(&dir.join("alerts.yml"))]);
    assert!(rules.contains("SUCCESS"), "{rules}");
}

/// The alerts fire on the series their unit tests feed them (a reconciliation difference, a 0.2 % error rate, a
/// growing lag) and stay quiet on the others.
#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let out = promtool(&["test", "rules", path(&compose_dir().join("prometheus/alerts_test.yml"))]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every query of the dashboard parses: each becomes a recording rule in a scratch rule file that promtool checks,
/// with Grafana's variables replaced by what Grafana would send.
#[test]
fn every_dashboard_query_parses() {
    let text = std::fs::read_to_string(compose_dir().join("grafana/dashboards/kerp.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has a query");
            exprs.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                expr.replace("$__rate_interval", "1m").replace("$job", ".*"),
            ));
        }
    }
    assert!(exprs.len() >= 12, "the dashboard has the API and pipeline panels, got {} queries", exprs.len());
    for metric in ["http_request_duration_seconds_bucket", "db_query_duration_seconds_bucket", "grpc_server_handling_seconds_bucket"] {
        assert!(exprs.iter().any(|(_, e)| e.contains(metric)), "no panel shows {metric}");
    }
    for metric in ["outbox_backlog_rows", "kafka_consumer_lag_messages", "fold_events_total", "fold_event_freshness_seconds_bucket"] {
        assert!(exprs.iter().any(|(_, e)| e.contains(metric)), "no panel shows {metric}");
    }
    for metric in ["clickhouse_insert_duration_seconds_bucket", "kerp_reconciliation_diff_won"] {
        assert!(exprs.iter().any(|(_, e)| e.contains(metric)), "no panel shows {metric}");
    }
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (title, expr))| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr, "labels": {"panel": title}}))
        .collect();
    // JSON is YAML, so the scratch file is written with serde_json.
    let file = std::env::temp_dir().join(format!("kerp-dashboard-queries-{}.yml", std::process::id()));
    std::fs::write(&file, serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string()).unwrap();
    let out = promtool(&["check", "rules", path(&file)]);
    std::fs::remove_file(&file).unwrap();
    assert!(out.contains(&format!("SUCCESS: {} rules found", exprs.len())), "{out}");
}
