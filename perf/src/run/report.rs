//! The run's result as one [`Summary`]: written as `summary.json`, rendered as `summary.md` and printed as a table.
//! Nothing is left out of it: every failed request, error and breach is listed, and no sample is dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::baseline::Params;
use super::bench::Outcome;
use super::freshness::Freshness;
use super::k6::K6Run;
use super::metrics::ServiceDiff;
use super::resources;
use super::stats::{ratio, Dist};
use crate::grpc_load::GrpcLoadReport;

/// The machine and what else ran on it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub cpu_model: String,
    /// `/proc/loadavg` at the start and at the end.
    pub load_before: String,
    pub load_after: String,
    /// The busiest processes outside the stack at the start (`ps`: their lifetime CPU); the sampler's
    /// `resources.others` says what they used during the run.
    pub shared_with: Vec<String>,
}

/// Our report endpoint against the baseline's query, same parameters, same concurrency, same count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Comparison {
    pub name: String,
    /// What each side was asked (our URL; their query).
    pub ours_request: String,
    pub theirs_request: String,
    pub ours: Outcome,
    pub theirs: Outcome,
    /// `ours / theirs` at p50, p95 and p99 (below 1: we are faster).
    pub ratio_p50: Option<f64>,
    pub ratio_p95: Option<f64>,
    pub ratio_p99: Option<f64>,
}

impl Comparison {
    /// Fills the ratios from the two distributions.
    pub fn with_ratios(mut self) -> Comparison {
        self.ratio_p50 = ratio(self.ours.dist.p50, self.theirs.dist.p50);
        self.ratio_p95 = ratio(self.ours.dist.p95, self.theirs.dist.p95);
        self.ratio_p99 = ratio(self.ours.dist.p99, self.theirs.dist.p99);
        self
    }

    /// How many times faster we are at p50 (`theirs / ours`).
    #[must_use]
    pub fn speedup_p50(&self) -> Option<f64> {
        ratio(self.theirs.dist.p50, self.ours.dist.p50)
    }
}

/// Writing vouchers: one POST at a time, POSTs at a concurrency, `COPY` of 1,000, and the gRPC bulk stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Posting {
    pub sequential: Option<Outcome>,
    pub concurrent: Option<Outcome>,
    /// Milliseconds of each `COPY` batch of 1,000 vouchers (2,000 lines), committed.
    pub copy_batches_ms: Vec<f64>,
    pub copy: Dist,
    /// Scratch vouchers deleted after the copies (they bypassed the outbox, so they must not stay).
    pub copy_deleted: u64,
    /// Milliseconds per 1,000 vouchers, by way of writing.
    pub per_1000_ms: BTreeMap<String, f64>,
}

/// The rebuild's timing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rebuild {
    pub seconds: f64,
    /// Lines the rebuild said it folded (its last line), or the posted lines in Postgres when it did not say.
    pub lines: f64,
    pub lines_per_second: f64,
    pub exit_code: Option<i32>,
    pub output_tail: String,
}

/// One check against the thresholds file or the issue's goals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `threshold` (the floor of `perf/thresholds.yaml`; `--fail-on-regression` fails on these) or `goal`.
    pub kind: String,
    pub name: String,
    pub measured: Option<f64>,
    pub unit: String,
    /// The bound, e.g. `< 500` or `>= 20`.
    pub bound: String,
    /// `None`: not measured in this run (the scenario did not run, or the measure needs a bigger scale).
    pub pass: Option<bool>,
    pub note: String,
}

/// Everything the run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub started_at: String,
    pub finished_at: String,
    pub command: String,
    pub size: String,
    pub scale: f64,
    pub scenarios: Vec<String>,
    pub base_url: String,
    pub profile: String,
    pub machine: Machine,
    /// The company whose books the reports read, and how it came to be.
    pub company: String,
    pub data: String,
    pub params: Option<Params>,
    pub baseline_indexes: Vec<String>,
    pub explain_trial_balance: String,
    pub explain_ledger: String,
    pub reports: Vec<Comparison>,
    pub posting: Posting,
    pub k6: Vec<K6Run>,
    pub grpc: Option<GrpcLoadReport>,
    pub freshness: Option<Freshness>,
    pub rebuild: Option<Rebuild>,
    pub resources: resources::Report,
    pub metrics: BTreeMap<String, ServiceDiff>,
    /// 5xx answers the services counted during the run (`http_requests_total`), by service and series.
    pub server_errors: BTreeMap<String, f64>,
    pub checks: Vec<Check>,
    /// Every error and failure of the run, in the order met.
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

impl Summary {
    /// Threshold checks that failed.
    #[must_use]
    pub fn breaches(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.kind == "threshold" && c.pass == Some(false)).collect()
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "n/a",
    }
}

/// The checks as a fixed-width table (what the runner prints).
#[must_use]
pub fn checks_table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(10).max(10);
    let mut s = format!("{:<9} {:<width$} {:>12} {:<6} {:<12} {:<6} note\n", "kind", "check", "measured", "unit", "bound", "result");
    for c in checks {
        let _ = writeln!(
            s,
            "{:<9} {:<width$} {:>12} {:<6} {:<12} {:<6} {}",
            c.kind,
            c.name,
            opt(c.measured, 2),
            c.unit,
            c.bound,
            verdict(c.pass),
            c.note
        );
    }
    s
}

fn dist_row(name: &str, d: &Dist, failures: u64, extra: &str) -> String {
    format!("| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {failures} | {extra} |\n", d.count, d.p50, d.p95, d.p99, d.max, d.mean)
}

/// `summary.md`.
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn markdown(s: &Summary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# kerp-perf run, {}\n", s.started_at);
    let _ = writeln!(md, "`{}`\n", s.command);
    let _ = writeln!(
        md,
        "Size `{}`, scale {}, scenarios {}; {} ({} build); finished {}.\n",
        s.size,
        s.scale,
        s.scenarios.join(", "),
        s.base_url,
        s.profile,
        s.finished_at
    );
    md.push_str("## Machine\n\n");
    let m = &s.machine;
    let _ = writeln!(md, "- {} cores (`nproc`), {} MiB of memory, {}; kernel {}", m.nproc, m.memory_mib, m.cpu_model, m.kernel);
    let _ = writeln!(md, "- load average before: {}; after: {}", m.load_before, m.load_after);
    let _ = writeln!(
        md,
        "- Everything ran on this machine: Postgres, Kafka, ClickHouse, the four services, nginx, k6 and this runner. The machine's \
         busy CPU averaged {:.0}% of one core over the sampling, of which {:.0}% went to processes outside the stack (other people's \
         builds and tests). Busiest processes outside the stack during the run (mean % of one core): {}. At the start (`ps`, \
         lifetime CPU): {}.",
        s.resources.machine_mean_cpu_pct,
        s.resources.other_mean_cpu_pct,
        s.resources.others.iter().map(|(n, c)| format!("`{n}` {c:.0}%")).collect::<Vec<_>>().join(", "),
        m.shared_with.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(md, "\nData: {}. Company: {}.\n", s.data, s.company);

    md.push_str("## Checks\n\n| kind | check | measured | unit | bound | result | note |\n|---|---|---:|---|---|---|---|\n");
    for c in &s.checks {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.kind,
            c.name,
            opt(c.measured, 2),
            c.unit,
            c.bound,
            verdict(c.pass),
            c.note
        );
    }

    md.push_str("\n## Errors and failures\n\n");
    if s.errors.is_empty() {
        md.push_str("None.\n");
    }
    for e in &s.errors {
        let _ = writeln!(md, "- {e}");
    }

    if !s.reports.is_empty() {
        md.push_str("\n## Reports: query-api against the direct-Postgres baseline\n\n");
        if let Some(p) = &s.params {
            let _ = writeln!(
                md,
                "Company {}, account {} ({} posted lines from {} to {}; the ledger covers that range), trial balance of {}-{:02} (the \
                 baseline sums the same range). Postings of the current month (the load scenarios') are left out of the choice.\n",
                p.company_id, p.account_code, p.account_lines, p.from, p.to, p.year, p.month
            );
        }
        md.push_str("| measure | requests | p50 ms | p95 ms | p99 ms | max ms | mean ms | failures | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for c in &s.reports {
            md.push_str(&dist_row(&format!("{} (ours)", c.name), &c.ours.dist, c.ours.failures, &c.ours_request));
            md.push_str(&dist_row(&format!("{} (baseline)", c.name), &c.theirs.dist, c.theirs.failures, &c.theirs_request));
            let _ = writeln!(
                md,
                "| {} ours/baseline | | {} | {} | {} | | | | concurrency {}; speed-up at p50 {}× |",
                c.name,
                opt(c.ratio_p50, 3),
                opt(c.ratio_p95, 3),
                opt(c.ratio_p99, 3),
                c.ours.concurrency,
                opt(c.speedup_p50(), 1)
            );
        }
        if !s.baseline_indexes.is_empty() {
            md.push_str("\nThe baseline's indexes (created for it, `perf_baseline_*`):\n\n");
            for i in &s.baseline_indexes {
                let _ = writeln!(md, "- {i}");
            }
        }
        let _ = writeln!(
            md,
            "\n<details><summary>EXPLAIN ANALYZE: trial balance</summary>\n\n```\n{}\n```\n</details>\n",
            s.explain_trial_balance
        );
        let _ = writeln!(md, "<details><summary>EXPLAIN ANALYZE: account ledger</summary>\n\n```\n{}\n```\n</details>", s.explain_ledger);
    }

    let p = &s.posting;
    if p.sequential.is_some() || !p.copy_batches_ms.is_empty() || !p.per_1000_ms.is_empty() {
        md.push_str("\n## Writing vouchers\n\n| measure | count | p50 ms | p95 ms | p99 ms | max ms | mean ms | failures | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for o in [&p.sequential, &p.concurrent].into_iter().flatten() {
            md.push_str(&dist_row(&o.name, &o.dist, o.failures, &format!("concurrency {}, {:.0} vouchers/s", o.concurrency, o.rate)));
        }
        if !p.copy_batches_ms.is_empty() {
            md.push_str(&dist_row(
                "COPY of 1,000 vouchers (per batch)",
                &p.copy,
                0,
                &format!("{} scratch vouchers deleted after", p.copy_deleted),
            ));
        }
        md.push_str("\nMilliseconds per 1,000 vouchers:\n\n");
        for (k, v) in &p.per_1000_ms {
            let _ = writeln!(md, "- {k}: {v:.0} ms");
        }
    }

    for r in &s.k6 {
        let _ = writeln!(
            md,
            "\n## k6 `{}`\n\n{:.0} s, exit {:?}; {} requests ({:.1}/s), {} failed ({:.3}%), {} checks failed, {} iterations, {} dropped, peak {} VUs.\n",
            r.script,
            r.seconds,
            r.exit_code,
            r.requests,
            r.requests_per_second,
            r.failed,
            r.failed_rate * 100.0,
            r.checks_failed,
            r.iterations,
            r.dropped_iterations,
            r.vus_max
        );
        if let Some(e) = &r.error {
            let _ = writeln!(md, "**Error:** {e}\n");
        }
        md.push_str("| endpoint | count | p50 ms | p95 ms | p99 ms | max ms | avg ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for e in &r.endpoints {
            let _ = writeln!(md, "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |", e.name, e.count, e.p50, e.p95, e.p99, e.max, e.avg);
        }
        let breached: Vec<&String> = r.thresholds.iter().filter(|(_, ok)| !**ok).map(|(k, _)| k).collect();
        let _ = writeln!(
            md,
            "\nk6 thresholds: {} held, breached: {}",
            r.thresholds.len() - breached.len(),
            if breached.is_empty() { "none".to_owned() } else { format!("{breached:?}") }
        );
    }

    if let Some(g) = &s.grpc {
        let _ = writeln!(md, "\n## gRPC\n\n```\n{}```", g.table());
    }

    if let Some(f) = &s.freshness {
        let _ = writeln!(
            md,
            "\n## Freshness (201 → visible in the trial balance, under load)\n\n{} posted, {} seen, {} never seen within the limit, post failures {:?}, {} polls ({} failed).\n",
            f.posted, f.visible, f.never_visible, f.post_failures, f.polls, f.poll_failures
        );
        md.push_str("| samples | p50 ms | p95 ms | p99 ms | max ms | mean ms |\n|---:|---:|---:|---:|---:|---:|\n");
        let d = &f.dist;
        let _ = writeln!(md, "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |", d.count, d.p50, d.p95, d.p99, d.max, d.mean);
    }

    if let Some(r) = &s.rebuild {
        let _ = writeln!(
            md,
            "\n## Rebuild\n\n{:.1} s, {} lines, {:.0} lines/s (exit {:?}).\n\n```\n{}\n```",
            r.seconds, r.lines, r.lines_per_second, r.exit_code, r.output_tail
        );
    }

    md.push_str(
        "\n## Resources (sampled from /proc every second)\n\n\
         | service | samples | processes | peak RSS MiB | mean RSS MiB | peak PSS MiB | mean CPU % | peak CPU % |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, u) in &s.resources.services {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            u.samples, u.processes_max, u.peak_rss_mib, u.mean_rss_mib, u.peak_pss_mib, u.mean_cpu_pct, u.peak_cpu_pct
        );
    }
    md.push_str("\nRSS of a service of several processes counts their shared memory once per process; PSS divides it among them.\n");
    md.push_str("\nCPU is percent of one core (this machine has ");
    let _ = write!(md, "{} cores, so 100% = half the machine). Mean CPU by phase:\n\n", s.machine.nproc);
    for (name, u) in &s.resources.services {
        let phases: Vec<String> = u.mean_cpu_pct_by_phase.iter().map(|(p, v)| format!("{p} {v:.0}%")).collect();
        let _ = writeln!(md, "- {name}: {}", phases.join(", "));
    }

    md.push_str("\n## Metrics (change over the run)\n\n");
    if !s.server_errors.is_empty() {
        md.push_str("5xx answers counted by the services:\n\n");
        for (k, v) in &s.server_errors {
            let _ = writeln!(md, "- {k}: {v}");
        }
        md.push('\n');
    }
    md.push_str(
        "| service | histogram | labels | count | mean ms | p50 ≤ ms | p95 ≤ ms | p99 ≤ ms |\n|---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for (svc, d) in &s.metrics {
        for h in &d.histograms {
            let _ = writeln!(
                md,
                "| {svc} | {} | `{}` | {} | {:.2} | {} | {} | {} |",
                h.family,
                h.labels,
                h.count,
                h.mean * 1000.0,
                h.p50_le * 1000.0,
                h.p95_le * 1000.0,
                h.p99_le * 1000.0
            );
        }
    }
    md.push_str("\n| service | series | before | after | change |\n|---|---|---:|---:|---:|\n");
    for (svc, d) in &s.metrics {
        for v in &d.values {
            let _ = writeln!(md, "| {svc} | `{}` | {} | {} | {} |", v.series, opt(v.before, 0), opt(v.after, 0), opt(v.delta, 0));
        }
    }
    if !s.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for n in &s.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, pass: Option<bool>) -> Check {
        Check {
            kind: kind.into(),
            name: "x".into(),
            measured: Some(1.0),
            unit: "ms".into(),
            bound: "< 2".into(),
            pass,
            note: String::new(),
        }
    }

    #[test]
    fn only_failed_thresholds_are_breaches() {
        let s = Summary {
            checks: vec![
                check("threshold", Some(true)),
                check("threshold", Some(false)),
                check("goal", Some(false)),
                check("threshold", None),
            ],
            ..Summary::default()
        };
        assert_eq!(s.breaches().len(), 1);
    }

    #[test]
    fn the_markdown_lists_checks_errors_and_comparisons() {
        let mut ours = Outcome { name: "tb".into(), concurrency: 4, ..Outcome::default() };
        ours.dist = Dist::of(&[1.0, 2.0]);
        let mut theirs = ours.clone();
        theirs.dist = Dist::of(&[10.0, 40.0]);
        let s = Summary {
            started_at: "2026-01-01T00:00:00Z".into(),
            checks: vec![check("threshold", Some(false))],
            errors: vec!["k6 api_load_test: not installed".into()],
            reports: vec![Comparison { name: "trial balance".into(), ours, theirs, ..Comparison::default() }.with_ratios()],
            ..Summary::default()
        };
        let md = markdown(&s);
        assert!(md.contains("| threshold | x | 1.00 | ms | < 2 | FAIL |"));
        assert!(md.contains("- k6 api_load_test: not installed"));
        assert!(md.contains("| trial balance ours/baseline | | 0.100 | 0.050 | 0.050 |"));
        assert!(md.contains("speed-up at p50 10.0×"));
        let table = checks_table(&s.checks);
        assert!(table.lines().nth(1).unwrap().contains("FAIL"));
    }
}
