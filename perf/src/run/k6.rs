//! The k6 scenarios: `perf/k6/api_load_test.js` and `perf/k6/realistic_workload.js`, run as a child process with the
//! run's URL, token, scale and data, and read back from the JSON summary they write to `SUMMARY_JSON`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The k6 sub-metric prefix the scripts tag every request with (`endpoint:<name>`).
const ENDPOINT_PREFIX: &str = "http_req_duration{endpoint:";

/// Latencies of one endpoint, milliseconds, as k6 summarised them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub count: f64,
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// What one k6 run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct K6Run {
    pub script: String,
    pub exit_code: Option<i32>,
    pub seconds: f64,
    /// Per endpoint, then `(all)` for every request.
    pub endpoints: Vec<Endpoint>,
    pub requests: f64,
    pub requests_per_second: f64,
    /// Requests outside 2xx/3xx (k6's `http_req_failed`), and their share.
    pub failed: f64,
    pub failed_rate: f64,
    pub checks_failed: f64,
    pub iterations: f64,
    pub dropped_iterations: f64,
    pub vus_max: f64,
    /// Every k6 threshold as `metric expression` with whether it held.
    pub thresholds: BTreeMap<String, bool>,
    /// Why there is no summary, when there is none.
    pub error: Option<String>,
}

/// Reads k6's `handleSummary` data (the JSON the scripts write to `SUMMARY_JSON`).
///
/// # Errors
/// Not JSON, or without `metrics`.
pub fn parse_summary(text: &str) -> anyhow::Result<K6Run> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    let metrics = v.get("metrics").and_then(|m| m.as_object()).context("no metrics in the k6 summary")?;
    let num = |metric: &str, field: &str| {
        metrics.get(metric).and_then(|m| m.pointer(&format!("/values/{field}"))).and_then(serde_json::Value::as_f64).unwrap_or(0.0)
    };
    let endpoint = |name: &str, m: &serde_json::Value| {
        let f = |k: &str| m.pointer(&format!("/values/{}", k.replace('/', "~1"))).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        Endpoint { name: name.to_owned(), count: f("count"), avg: f("avg"), p50: f("med"), p95: f("p(95)"), p99: f("p(99)"), max: f("max") }
    };
    let mut endpoints: Vec<Endpoint> =
        metrics.iter().filter_map(|(k, m)| Some(endpoint(k.strip_prefix(ENDPOINT_PREFIX)?.strip_suffix('}')?, m))).collect();
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(all) = metrics.get("http_req_duration") {
        endpoints.push(endpoint("(all)", all));
    }
    let mut thresholds = BTreeMap::new();
    for (name, m) in metrics {
        if let Some(t) = m.get("thresholds").and_then(|t| t.as_object()) {
            for (expr, r) in t {
                thresholds.insert(format!("{name} {expr}"), r.get("ok").and_then(serde_json::Value::as_bool).unwrap_or(false));
            }
        }
    }
    Ok(K6Run {
        endpoints,
        requests: num("http_reqs", "count"),
        requests_per_second: num("http_reqs", "rate"),
        failed: num("http_req_failed", "passes"),
        failed_rate: num("http_req_failed", "rate"),
        checks_failed: num("checks", "fails"),
        iterations: num("iterations", "count"),
        dropped_iterations: num("dropped_iterations", "count"),
        vus_max: num("vus_max", "max").max(num("vus_max", "value")),
        thresholds,
        ..K6Run::default()
    })
}

/// What a k6 run needs.
pub struct Settings<'a> {
    pub k6: &'a str,
    pub script: &'a Path,
    pub base_url: &'a str,
    pub token: &'a str,
    pub scale: f64,
    pub data_dir: &'a Path,
    pub report_year: i32,
    pub report_month: u32,
    /// Where the summary and k6's own output go.
    pub out_dir: &'a Path,
}

/// Runs one script to its end. A k6 that cannot start, or ends without a summary, is reported in `error`, not
/// returned as an error: the run goes on to the other scenarios and reports it.
pub async fn run(s: &Settings<'_>) -> K6Run {
    let stem = s.script.file_stem().and_then(|x| x.to_str()).unwrap_or("k6").to_owned();
    let summary: PathBuf = s.out_dir.join(format!("k6-{stem}.json"));
    let log = s.out_dir.join(format!("k6-{stem}.log"));
    let started = Instant::now();
    let result = async {
        let log_file = std::fs::File::create(&log)?;
        let status = tokio::process::Command::new(s.k6)
            .args(["run", "--quiet", "--no-color"])
            .arg(s.script)
            .env("BASE_URL", s.base_url)
            .env("API_TOKEN", s.token)
            .env("SCALE", s.scale.to_string())
            .env("DATA_DIR", std::path::absolute(s.data_dir)?)
            .env("SUMMARY_JSON", std::path::absolute(&summary)?)
            .env("REPORT_YEAR", s.report_year.to_string())
            .env("REPORT_MONTH", s.report_month.to_string())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .status()
            .await
            .with_context(|| format!("starting {} (is k6 installed? see perf/README.md)", s.k6))?;
        anyhow::Ok(status.code())
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let exit_code = match result {
        Ok(code) => code,
        Err(e) => return K6Run { script: stem, seconds, error: Some(format!("{e:#}")), ..K6Run::default() },
    };
    match std::fs::read_to_string(&summary).map_err(anyhow::Error::from).and_then(|t| parse_summary(&t)) {
        Ok(r) => K6Run { script: stem, exit_code, seconds, ..r },
        Err(e) => K6Run {
            script: stem,
            exit_code,
            seconds,
            error: Some(format!("no summary from k6 (exit {exit_code:?}; see {}): {e:#}", log.display())),
            ..K6Run::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_endpoints_counts_and_thresholds() {
        let text = r#"{"metrics": {
            "http_req_duration": {"type": "trend", "values": {"avg": 5, "med": 4, "p(95)": 9, "p(99)": 20, "max": 30, "count": 100},
                                  "thresholds": {"p(95)<200": {"ok": true}}},
            "http_req_duration{endpoint:vouchers_create}": {"values": {"avg": 6, "med": 5, "p(95)": 10, "p(99)": 21, "max": 31, "count": 40},
                                  "thresholds": {"p(99)<500": {"ok": false}}},
            "http_reqs": {"values": {"count": 100, "rate": 50}},
            "http_req_failed": {"values": {"rate": 0.02, "passes": 2, "fails": 98}},
            "checks": {"values": {"passes": 97, "fails": 3}},
            "vus_max": {"values": {"value": 25, "min": 25, "max": 25}}
        }}"#;
        let r = parse_summary(text).unwrap();
        assert_eq!(r.endpoints.len(), 2);
        assert_eq!(r.endpoints[0].name, "vouchers_create");
        assert_eq!((r.endpoints[0].p50, r.endpoints[0].p99, r.endpoints[0].count), (5.0, 21.0, 40.0));
        assert_eq!(r.endpoints[1].name, "(all)");
        assert_eq!((r.requests, r.failed, r.checks_failed, r.vus_max), (100.0, 2.0, 3.0, 25.0));
        assert!(!r.thresholds["http_req_duration{endpoint:vouchers_create} p(99)<500"]);
        assert!(r.thresholds["http_req_duration p(95)<200"]);
    }
}
