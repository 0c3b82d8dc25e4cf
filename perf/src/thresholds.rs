//! The performance floor users hold K-ERP to: `perf/thresholds.yaml` (a copy of the shared reference file) read into
//! typed structs. The perf runner checks its measurements against them, `generate` reads the data sizes from them,
//! and the k6 scripts carry the same numbers in `perf/k6/lib/thresholds.js` (a test here keeps the two equal).
//!
//! Latencies are milliseconds, as in the file. Every struct refuses unknown fields, so a field added to the file
//! without a home here fails the load instead of being silently ignored.

// The perf runner and the generator are this module's callers and are being written beside it; until they call
// every accessor, the binary leaves some unused.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The thresholds file of this checkout, `perf/thresholds.yaml`, found from the crate's own directory so that it
/// does not depend on the working directory.
#[must_use]
pub fn repo_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("thresholds.yaml")
}

/// The whole thresholds file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub api: Api,
    pub database: Database,
    /// Per gRPC method, when the file names any (it names none yet: our own gRPC goals are in the issues).
    #[serde(default)]
    pub grpc: BTreeMap<String, Latency>,
    pub resources: Resources,
    pub overall: Overall,
    pub data_sizes: DataSizes,
}

impl Thresholds {
    /// Reads and parses a thresholds file.
    ///
    /// # Errors
    /// The file cannot be read, is not YAML, or does not have the fields of [`Thresholds`] (and no others).
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Thresholds> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses the text of a thresholds file.
    ///
    /// # Errors
    /// Not YAML, or not the fields of [`Thresholds`].
    pub fn parse(text: &str) -> anyhow::Result<Thresholds> {
        Ok(yaml_serde::from_str(text)?)
    }
}

/// A latency bound at two percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Milliseconds that 95% of requests must beat.
    pub p95: f64,
    /// Milliseconds that 99% of requests must beat.
    pub p99: f64,
}

/// REST endpoints, by resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub vouchers: VoucherEndpoints,
    pub partners: PartnerEndpoints,
    pub reports: ReportEndpoints,
}

impl Api {
    /// Every endpoint with its bound, named as the k6 scripts tag their requests (`endpoint:<name>`), so a runner
    /// can match k6's `http_req_duration{endpoint:<name>}` sub-metrics to these bounds.
    #[must_use]
    pub fn endpoints(&self) -> [(&'static str, Latency); 8] {
        [
            ("vouchers_create", self.vouchers.create),
            ("vouchers_list", self.vouchers.list),
            ("vouchers_get", self.vouchers.get),
            ("partners_list", self.partners.list),
            ("partners_search", self.partners.search),
            ("reports_trial_balance", self.reports.trial_balance),
            ("reports_income_statement", self.reports.income_statement),
            ("reports_account_ledger", self.reports.account_ledger),
        ]
    }
}

/// `POST /api/v1/vouchers`, `GET /api/v1/vouchers` and `GET /api/v1/vouchers/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherEndpoints {
    pub create: Latency,
    pub list: Latency,
    pub get: Latency,
}

/// `GET /api/v1/partners` without and with `q=`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerEndpoints {
    pub list: Latency,
    pub search: Latency,
}

/// The query-api reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportEndpoints {
    pub trial_balance: Latency,
    pub income_statement: Latency,
    pub account_ledger: Latency,
}

/// Database statements by kind, as the original K-ERP measured them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub simple_select: Latency,
    pub join_query: Latency,
    pub aggregation: Latency,
    /// One bulk insert of 1,000 rows.
    pub bulk_insert_1000: Latency,
}

/// Resource ceilings of the services.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// RSS of an API service, MiB.
    pub api_memory_mb: f64,
    /// RSS of a stream worker, MiB.
    pub worker_memory_mb: f64,
    /// CPU use, percent of the machine.
    pub cpu_utilization_pct: f64,
}

/// Bounds over all requests of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overall {
    /// Milliseconds.
    pub p50: f64,
    /// Milliseconds.
    pub p95: f64,
    /// Milliseconds.
    pub p99: f64,
    /// Requests per second the system must sustain.
    pub min_rps: f64,
    /// Concurrent users (k6 VUs) it must serve.
    pub min_concurrent_users: u32,
    /// Failed requests over all requests, a fraction (0.001 is 0.1%).
    pub max_error_rate: f64,
}

/// The data sizes `kerp-perf generate --size` loads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSizes {
    pub small: DataSize,
    pub medium: DataSize,
    pub large: DataSize,
    pub xlarge: DataSize,
}

impl DataSizes {
    /// The size named `small`, `medium`, `large` or `xlarge`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<DataSize> {
        match name {
            "small" => Some(self.small),
            "medium" => Some(self.medium),
            "large" => Some(self.large),
            "xlarge" => Some(self.xlarge),
            _ => None,
        }
    }
}

/// One data size: companies, and per company its users, partners, accounts and vouchers (two lines each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSize {
    pub companies: u32,
    pub users: u32,
    pub partners: u32,
    pub accounts: u32,
    pub vouchers_per_month: u32,
    pub months: u32,
}

impl DataSize {
    /// Vouchers over all companies and months.
    #[must_use]
    pub fn vouchers_total(&self) -> u64 {
        u64::from(self.companies) * u64::from(self.vouchers_per_month) * u64::from(self.months)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON object between these markers in `perf/k6/lib/thresholds.js` is the whole thresholds file.
    const JS_BEGIN: &str = "/* BEGIN THRESHOLDS */";
    const JS_END: &str = "/* END THRESHOLDS */";

    fn repo_thresholds() -> Thresholds {
        Thresholds::load(repo_path()).expect("perf/thresholds.yaml loads")
    }

    #[test]
    fn the_repository_file_loads_with_the_reference_values() {
        let t = repo_thresholds();
        assert_eq!(t.api.vouchers.create, Latency { p95: 200.0, p99: 500.0 });
        assert_eq!(t.api.reports.trial_balance, Latency { p95: 1000.0, p99: 2000.0 });
        assert_eq!(t.overall.max_error_rate, 0.001);
        assert_eq!(t.overall.min_concurrent_users, 500);
        assert_eq!(t.data_sizes.large.vouchers_total(), 4_800_000);
        assert_eq!(t.data_sizes.get("small"), Some(t.data_sizes.small));
        assert_eq!(t.data_sizes.get("huge"), None);
        assert!(t.grpc.is_empty());
    }

    /// The k6 scripts cannot read YAML without a library fetched at run time, so they carry a copy; it must not drift.
    #[test]
    fn the_k6_copy_carries_the_same_numbers() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("k6/lib/thresholds.js");
        let js = std::fs::read_to_string(&path).expect("perf/k6/lib/thresholds.js");
        let start = js.find(JS_BEGIN).expect("begin marker") + JS_BEGIN.len();
        let end = js.find(JS_END).expect("end marker");
        let copy: Thresholds = serde_json::from_str(&js[start..end]).expect("the k6 copy is JSON with the file's fields");
        assert_eq!(copy, repo_thresholds(), "perf/k6/lib/thresholds.js differs from perf/thresholds.yaml");
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let text = std::fs::read_to_string(repo_path()).expect("read").replace("overall: {", "overall: {p75: 1, ");
        assert!(Thresholds::parse(&text).is_err());
    }
}
