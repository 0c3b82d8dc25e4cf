//! Every service's Prometheus `/metrics`, scraped before and after the scenarios: the raw texts are kept, and the key
//! families are diffed (counters and histograms as the change over the run, gauges as their two values), with each
//! histogram's change read as a count, a mean and bucket-bound percentiles.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Seconds one scrape may take; a service that does not answer in time is reported as not scraped.
pub const SCRAPE_SECONDS_MAX: u64 = 5;

/// The families the summary diffs; everything else stays in the raw texts.
pub const KEY_FAMILIES: [&str; 9] = [
    "http_request_duration_seconds",
    "report_answers_total",
    "http_requests_total",
    "grpc_server_handling_seconds",
    "fold_event_freshness_seconds",
    "fold_events_total",
    "outbox_backlog_rows",
    "kafka_consumer_lag_messages",
    "db_query_duration_seconds",
];

/// Families that are gauges: their values before and after are reported, not a difference.
const GAUGES: [&str; 2] = ["outbox_backlog_rows", "kafka_consumer_lag_messages"];

/// One service's metrics endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub service: String,
    /// `http://host:port/metrics`.
    pub url: String,
}

/// One scrape of every target: the raw text by service, or the error that stopped it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scrape {
    pub texts: BTreeMap<String, String>,
    pub errors: BTreeMap<String, String>,
}

/// Scrapes every target once.
pub async fn scrape(client: &reqwest::Client, targets: &[Target]) -> Scrape {
    let mut out = Scrape::default();
    for t in targets {
        let r = async {
            let resp = client.get(&t.url).timeout(Duration::from_secs(SCRAPE_SECONDS_MAX)).send().await?;
            resp.error_for_status()?.text().await
        }
        .await;
        match r {
            Ok(text) => {
                out.texts.insert(t.service.clone(), text);
            }
            Err(e) => {
                out.errors.insert(t.service.clone(), e.to_string());
            }
        }
    }
    out
}

/// The samples of an exposition text: the series (`name{labels}` exactly as written) and its value.
#[must_use]
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        // The value follows the series; a label value may hold spaces, so split after the closing brace if any.
        let split_at = line.rfind('}').map_or_else(|| line.find(' '), |i| Some(i + 1));
        let Some(i) = split_at else { continue };
        let (series, rest) = line.split_at(i);
        let Some(value) = rest.split_whitespace().next() else { continue };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        out.insert(series.trim().to_owned(), value);
    }
    out
}

/// The family of a series: its name without labels and without a histogram suffix.
fn family(series: &str) -> &str {
    let name = series.split('{').next().unwrap_or(series);
    ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name)
}

/// The labels of a series without `le`, as written (`a="x",b="y"`).
fn labels_without_le(series: &str) -> String {
    let Some(start) = series.find('{') else { return String::new() };
    let inner = series[start + 1..].trim_end_matches('}');
    split_labels(inner).into_iter().filter(|l| !l.starts_with("le=")).collect::<Vec<_>>().join(",")
}

/// Splits `a="x",b="y, z"` at the commas between labels (not those inside quoted values).
fn split_labels(inner: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        out.push(&inner[start..]);
    }
    out
}

fn le_of(series: &str) -> Option<f64> {
    let start = series.find("le=\"")? + 4;
    let end = series[start..].find('"')? + start;
    match &series[start..end] {
        "+Inf" => Some(f64::INFINITY),
        v => v.parse().ok(),
    }
}

/// What one histogram series (one label set) did during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramDiff {
    pub family: String,
    pub labels: String,
    /// Observations during the run.
    pub count: f64,
    /// Their mean, in the family's unit (seconds).
    pub mean: f64,
    /// The upper bound of the bucket holding each percentile (a histogram knows no more precisely).
    pub p50_le: f64,
    pub p95_le: f64,
    pub p99_le: f64,
}

/// A counter's change or a gauge's two values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueDiff {
    pub series: String,
    pub before: Option<f64>,
    pub after: Option<f64>,
    /// `after - before` for counters; `None` for gauges.
    pub delta: Option<f64>,
}

/// The key families of one service, diffed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceDiff {
    pub histograms: Vec<HistogramDiff>,
    pub values: Vec<ValueDiff>,
}

/// Diffs the key families of one service's two scrapes.
#[must_use]
pub fn diff(before: &str, after: &str) -> ServiceDiff {
    let (b, a) = (parse(before), parse(after));
    let key = |s: &str| KEY_FAMILIES.contains(&family(s));
    let mut out = ServiceDiff::default();
    // Histograms: grouped by family and label set; the buckets' change gives the percentiles.
    let mut groups: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut sums: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for (series, after_v) in a.iter().filter(|(s, _)| key(s)) {
        let before_v = b.get(series).copied().unwrap_or(0.0);
        let name = series.split('{').next().unwrap_or(series);
        let group = (family(series).to_owned(), labels_without_le(series));
        if name.ends_with("_bucket") {
            if let Some(le) = le_of(series) {
                groups.entry(group).or_default().push((le, after_v - before_v));
            }
        } else if name.ends_with("_sum") {
            sums.entry(group).or_default().0 = after_v - before_v;
        } else if name.ends_with("_count") {
            sums.entry(group).or_default().1 = after_v - before_v;
        } else if GAUGES.contains(&name) {
            out.values.push(ValueDiff { series: series.clone(), before: b.get(series).copied(), after: Some(*after_v), delta: None });
        } else {
            out.values.push(ValueDiff {
                series: series.clone(),
                before: b.get(series).copied(),
                after: Some(*after_v),
                delta: Some(after_v - before_v),
            });
        }
    }
    for ((family, labels), mut buckets) in groups {
        buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
        let (sum, count) = sums.get(&(family.clone(), labels.clone())).copied().unwrap_or_default();
        if count <= 0.0 {
            continue;
        }
        let at = |q: f64| buckets.iter().find(|(_, c)| *c >= q * count).map_or(f64::INFINITY, |(le, _)| *le);
        out.histograms.push(HistogramDiff {
            family,
            labels,
            count,
            mean: sum / count,
            p50_le: at(0.50),
            p95_le: at(0.95),
            p99_le: at(0.99),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP http_request_duration_seconds Latency
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="/a",method="GET",status="200",le="0.001"} 1
http_request_duration_seconds_bucket{handler="/a",method="GET",status="200",le="0.01"} 2
http_request_duration_seconds_bucket{handler="/a",method="GET",status="200",le="+Inf"} 2
http_request_duration_seconds_sum{handler="/a",method="GET",status="200"} 0.005
http_request_duration_seconds_count{handler="/a",method="GET",status="200"} 2
fold_events_total 10
outbox_backlog_rows 3
something_else 1
"#;

    const AFTER: &str = r#"http_request_duration_seconds_bucket{handler="/a",method="GET",status="200",le="0.001"} 51
http_request_duration_seconds_bucket{handler="/a",method="GET",status="200",le="0.01"} 99
http_request_duration_seconds_bucket{handler="/a",method="GET",status="200",le="+Inf"} 102
http_request_duration_seconds_sum{handler="/a",method="GET",status="200"} 1.005
http_request_duration_seconds_count{handler="/a",method="GET",status="200"} 102
fold_events_total 110
outbox_backlog_rows 0
kafka_consumer_lag_messages{partition="0"} 7
"#;

    #[test]
    fn parses_series_with_spaces_in_labels_and_special_values() {
        let m = parse("a{x=\"b c\",le=\"+Inf\"} 3\nb +Inf\n# c 1\nd NaN 1700000000\n");
        assert_eq!(m["a{x=\"b c\",le=\"+Inf\"}"], 3.0);
        assert_eq!(m["b"], f64::INFINITY);
        assert!(m["d"].is_nan());
        assert_eq!(labels_without_le("a{x=\"b, c\",le=\"1\"}"), "x=\"b, c\"");
    }

    #[test]
    fn diffs_histograms_counters_and_gauges() {
        let d = diff(BEFORE, AFTER);
        assert_eq!(d.histograms.len(), 1);
        let h = &d.histograms[0];
        assert_eq!(h.family, "http_request_duration_seconds");
        assert_eq!(h.labels, "handler=\"/a\",method=\"GET\",status=\"200\"");
        assert_eq!(h.count, 100.0);
        assert!((h.mean - 0.01).abs() < 1e-12);
        // 50 of the 100 new observations are under 1 ms, 97 under 10 ms, all under +Inf.
        assert_eq!((h.p50_le, h.p95_le, h.p99_le), (0.001, 0.01, f64::INFINITY));
        let v = |s: &str| d.values.iter().find(|v| v.series == s).cloned().unwrap();
        assert_eq!(v("fold_events_total").delta, Some(100.0));
        assert_eq!((v("outbox_backlog_rows").before, v("outbox_backlog_rows").after), (Some(3.0), Some(0.0)));
        assert_eq!(v("outbox_backlog_rows").delta, None);
        assert_eq!(v("kafka_consumer_lag_messages{partition=\"0\"}").before, None);
        assert!(d.values.iter().all(|v| v.series != "something_else"));
    }
}
