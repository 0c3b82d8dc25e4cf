//! The two yardsticks a run is held to: the floor of `perf/thresholds.yaml` (threshold checks; `--fail-on-regression`
//! fails on a breach) and the goals of issue 8, far above that floor (goal checks; reported, never failing the run,
//! since several are only reachable with a release build at full scale on a quiet machine).

use super::report::{Check, Summary};
use crate::thresholds::{Latency, Thresholds};

/// Goal: p99 of a REST voucher POST, milliseconds (the issue asks it at 1,000 req/s; the runner's rate is noted).
pub const GOAL_POST_P99_MS_MAX: f64 = 25.0;
/// Goal: sustained REST posting, vouchers per second.
pub const GOAL_REST_VOUCHERS_PER_S_MIN: f64 = 3_000.0;
/// Goal: the gRPC bulk stream, lines per second.
pub const GOAL_GRPC_BULK_LINES_PER_S_MIN: f64 = 20_000.0;
/// Goal: trial balance p99 on `large`, milliseconds.
pub const GOAL_TRIAL_BALANCE_P99_MS_MAX: f64 = 20.0;
/// Goal: trial balance against the direct-Postgres baseline, times faster (at p50).
pub const GOAL_TRIAL_BALANCE_SPEEDUP_MIN: f64 = 20.0;
/// Goal: one page of one account's ledger for one year, p99 milliseconds.
pub const GOAL_LEDGER_P99_MS_MAX: f64 = 50.0;
/// Goal: that page against the baseline's window query over the whole year, times faster (at p50).
pub const GOAL_LEDGER_SPEEDUP_MIN: f64 = 5.0;
/// Goal: 201 → visible in the trial balance, p99 milliseconds (the issue asks it at 1,000 vouchers/s).
pub const GOAL_FRESHNESS_P99_MS_MAX: f64 = 500.0;
/// Goal: rebuild, lines per second.
pub const GOAL_REBUILD_LINES_PER_S_MIN: f64 = 200_000.0;
/// Goal: the realistic workload's peak VUs, with every threshold passing and no error.
pub const GOAL_REALISTIC_VUS_MIN: f64 = 500.0;
/// Goal: every service's peak RSS, MiB.
pub const GOAL_SERVICE_RSS_MIB_MAX: f64 = 256.0;

/// The scale at and above which the capacity floors (`min_rps`, `min_concurrent_users`) apply: a smaller run offers
/// less load by design, so those two are reported as not applicable rather than failed.
pub const CAPACITY_SCALE_MIN: f64 = 1.0;

fn below(kind: &str, name: &str, measured: Option<f64>, unit: &str, max: f64, note: &str) -> Check {
    Check {
        kind: kind.into(),
        name: name.into(),
        measured,
        unit: unit.into(),
        bound: format!("< {max}"),
        pass: measured.map(|m| m < max),
        note: note.into(),
    }
}

fn above(kind: &str, name: &str, measured: Option<f64>, unit: &str, min: f64, note: &str) -> Check {
    Check {
        kind: kind.into(),
        name: name.into(),
        measured,
        unit: unit.into(),
        bound: format!(">= {min}"),
        pass: measured.map(|m| m >= min),
        note: note.into(),
    }
}

fn latency(out: &mut Vec<Check>, name: &str, p95: Option<f64>, p99: Option<f64>, bound: Latency, note: &str) {
    out.push(below("threshold", &format!("{name} p95"), p95, "ms", bound.p95, note));
    out.push(below("threshold", &format!("{name} p99"), p99, "ms", bound.p99, note));
}

/// The threshold checks of a run.
#[must_use]
pub fn threshold_checks(t: &Thresholds, s: &Summary) -> Vec<Check> {
    let mut out = Vec::new();
    for run in &s.k6 {
        for (name, bound) in t.api.endpoints() {
            if let Some(e) = run.endpoints.iter().find(|e| e.name == name) {
                latency(&mut out, &format!("k6 {} {name}", run.script), Some(e.p95), Some(e.p99), bound, "");
            }
        }
        if let Some(all) = run.endpoints.iter().find(|e| e.name == "(all)") {
            out.push(below("threshold", &format!("k6 {} overall p50", run.script), Some(all.p50), "ms", t.overall.p50, ""));
            latency(
                &mut out,
                &format!("k6 {} overall", run.script),
                Some(all.p95),
                Some(all.p99),
                Latency { p95: t.overall.p95, p99: t.overall.p99 },
                "",
            );
        }
        if run.error.is_none() {
            out.push(below(
                "threshold",
                &format!("k6 {} error rate", run.script),
                Some(run.failed_rate),
                "",
                t.overall.max_error_rate.max(f64::MIN_POSITIVE),
                "",
            ));
            let capacity = s.scale >= CAPACITY_SCALE_MIN;
            let note = if capacity { "" } else { "a smaller scale offers less load by design" };
            let mut rps = above(
                "threshold",
                &format!("k6 {} requests/s", run.script),
                Some(run.requests_per_second),
                "req/s",
                t.overall.min_rps,
                note,
            );
            let mut vus = above(
                "threshold",
                &format!("k6 {} peak VUs", run.script),
                Some(run.vus_max),
                "VUs",
                f64::from(t.overall.min_concurrent_users),
                note,
            );
            if !capacity {
                rps.pass = None;
                vus.pass = None;
            }
            out.extend([rps, vus]);
        }
    }
    for c in &s.reports {
        let (ours, theirs) = match c.name.as_str() {
            "trial balance" => (t.api.reports.trial_balance, t.database.aggregation),
            _ => (t.api.reports.account_ledger, t.database.join_query),
        };
        latency(&mut out, &format!("{} (query-api)", c.name), Some(c.ours.dist.p95), Some(c.ours.dist.p99), ours, "");
        latency(
            &mut out,
            &format!("{} (baseline SQL)", c.name),
            Some(c.theirs.dist.p95),
            Some(c.theirs.dist.p99),
            theirs,
            "the original's query on our Postgres",
        );
    }
    for o in [&s.posting.sequential, &s.posting.concurrent].into_iter().flatten() {
        latency(&mut out, &o.name, Some(o.dist.p95), Some(o.dist.p99), t.api.vouchers.create, "");
    }
    if !s.posting.copy_batches_ms.is_empty() {
        latency(&mut out, "COPY of 1,000 vouchers", Some(s.posting.copy.p95), Some(s.posting.copy.p99), t.database.bulk_insert_1000, "");
    }
    if let Some(g) = &s.grpc {
        for m in &g.methods {
            if let Some(bound) = t.grpc.get(&m.method) {
                latency(&mut out, &format!("gRPC {}", m.method), Some(m.latency_ms.p95), Some(m.latency_ms.p99), *bound, "");
            }
        }
    }
    let cores = f64::from(u32::try_from(s.machine.nproc.max(1)).unwrap_or(1));
    for (name, u) in &s.resources.services {
        let limit = match name.as_str() {
            "ingest-api" | "query-api" | "grpc-api" => Some(t.resources.api_memory_mb),
            "stream-workers" => Some(t.resources.worker_memory_mb),
            _ => None,
        };
        if let Some(limit) = limit {
            out.push(below("threshold", &format!("{name} peak RSS"), Some(u.peak_rss_mib), "MiB", limit, ""));
        }
        if !matches!(name.as_str(), "k6" | "kerp-perf (runner)" | "stream-workers rebuild") {
            out.push(below(
                "threshold",
                &format!("{name} mean CPU"),
                Some(u.mean_cpu_pct / cores),
                "% mach",
                t.resources.cpu_utilization_pct,
                "",
            ));
        }
    }
    out
}

/// The goal checks of a run.
#[must_use]
pub fn goal_checks(s: &Summary) -> Vec<Check> {
    let mut out = Vec::new();
    let post = s.posting.concurrent.as_ref().or(s.posting.sequential.as_ref());
    out.push(below(
        "goal",
        "voucher POST p99",
        post.map(|o| o.dist.p99),
        "ms",
        GOAL_POST_P99_MS_MAX,
        &post.map_or_else(String::new, |o| format!("at {:.0} req/s (goal: at 1,000 req/s)", o.rate)),
    ));
    let rest_peak =
        s.k6.iter()
            .filter_map(|r| r.endpoints.iter().find(|e| e.name == "vouchers_create").map(|e| e.count / r.seconds.max(1.0)))
            .chain(post.map(|o| o.rate))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    out.push(above(
        "goal",
        "REST posting",
        rest_peak,
        "v/s",
        GOAL_REST_VOUCHERS_PER_S_MIN,
        "the best rate this run offered, not a saturation test",
    ));
    let bulk = s.grpc.as_ref().and_then(|g| g.methods.iter().find(|m| m.method == "CreateVouchers")).and_then(|m| m.lines_per_second);
    out.push(above("goal", "gRPC bulk stream", bulk, "l/s", GOAL_GRPC_BULK_LINES_PER_S_MIN, ""));
    let size_note = if s.size == "large" { String::new() } else { format!("measured on `{}`; the goal is for `large`", s.size) };
    for c in &s.reports {
        let (p99_max, speedup_min) = match c.name.as_str() {
            "trial balance" => (GOAL_TRIAL_BALANCE_P99_MS_MAX, GOAL_TRIAL_BALANCE_SPEEDUP_MIN),
            _ => (GOAL_LEDGER_P99_MS_MAX, GOAL_LEDGER_SPEEDUP_MIN),
        };
        out.push(below("goal", &format!("{} p99", c.name), Some(c.ours.dist.p99), "ms", p99_max, &size_note));
        out.push(above("goal", &format!("{} speed-up vs baseline", c.name), c.speedup_p50(), "x", speedup_min, "baseline p50 / ours p50"));
    }
    if let Some(f) = &s.freshness {
        out.push(below(
            "goal",
            "freshness p99",
            (f.dist.count > 0).then_some(f.dist.p99),
            "ms",
            GOAL_FRESHNESS_P99_MS_MAX,
            "under this run's load (goal: at 1,000 vouchers/s)",
        ));
    }
    if let Some(r) = &s.rebuild {
        out.push(above("goal", "rebuild", Some(r.lines_per_second), "l/s", GOAL_REBUILD_LINES_PER_S_MIN, ""));
    }
    if let Some(r) = s.k6.iter().find(|r| r.script == "realistic_workload") {
        let clean = r.error.is_none() && r.failed == 0.0 && r.thresholds.values().all(|ok| *ok);
        let mut c = above("goal", "realistic workload VUs, all thresholds, 0 errors", Some(r.vus_max), "VUs", GOAL_REALISTIC_VUS_MIN, "");
        c.pass = c.pass.map(|p| p && clean);
        if !clean {
            c.note = "thresholds breached or errors".into();
        }
        out.push(c);
    }
    for (name, u) in &s.resources.services {
        if matches!(
            name.as_str(),
            "ingest-api"
                | "query-api"
                | "grpc-api"
                | "stream-workers"
                | "stream-workers rebuild"
                | "postgres"
                | "kafka"
                | "clickhouse"
                | "nginx"
        ) {
            // A service of several processes (Postgres' backends) is held to its PSS: their RSS counts the shared
            // buffers once per backend.
            let (what, mib, note) = if u.processes_max > 1 {
                ("PSS", u.peak_pss_mib, format!("summed over up to {} processes", u.processes_max))
            } else {
                ("RSS", u.peak_rss_mib, String::new())
            };
            out.push(below("goal", &format!("{name} peak {what}"), Some(mib), "MiB", GOAL_SERVICE_RSS_MIB_MAX, &note));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::bench::Outcome;
    use super::super::k6::{Endpoint, K6Run};
    use super::super::report::Comparison;
    use super::super::stats::Dist;
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds::load(crate::thresholds::repo_path()).unwrap()
    }

    fn outcome(samples: &[f64]) -> Outcome {
        Outcome { dist: Dist::of(samples), concurrency: 4, ..Outcome::default() }
    }

    #[test]
    fn a_slow_endpoint_breaches_and_a_fast_one_passes() {
        let run = K6Run {
            script: "api_load_test".into(),
            endpoints: vec![
                Endpoint { name: "vouchers_create".into(), p95: 150.0, p99: 600.0, ..Endpoint::default() },
                Endpoint { name: "(all)".into(), p50: 5.0, p95: 20.0, p99: 40.0, ..Endpoint::default() },
            ],
            requests_per_second: 10.0,
            vus_max: 5.0,
            ..K6Run::default()
        };
        let s = Summary { k6: vec![run], scale: 0.05, ..Summary::default() };
        let checks = threshold_checks(&thresholds(), &s);
        let get = |n: &str| checks.iter().find(|c| c.name == n).unwrap_or_else(|| panic!("{n}")).pass;
        assert_eq!(get("k6 api_load_test vouchers_create p95"), Some(true));
        assert_eq!(get("k6 api_load_test vouchers_create p99"), Some(false));
        assert_eq!(get("k6 api_load_test overall p99"), Some(true));
        assert_eq!(get("k6 api_load_test error rate"), Some(true));
        // A smoke's load is small by design: the capacity floors are not applicable.
        assert_eq!(get("k6 api_load_test requests/s"), None);
        assert_eq!(get("k6 api_load_test peak VUs"), None);
    }

    #[test]
    fn report_comparisons_are_checked_on_both_sides_and_as_goals() {
        let s = Summary {
            size: "small".into(),
            reports: vec![Comparison {
                name: "trial balance".into(),
                ours: outcome(&[2.0, 3.0]),
                theirs: outcome(&[60.0, 700.0]),
                ..Comparison::default()
            }
            .with_ratios()],
            ..Summary::default()
        };
        let t = threshold_checks(&thresholds(), &s);
        let get = |c: &[Check], n: &str| c.iter().find(|c| c.name == n).unwrap().clone();
        assert_eq!(get(&t, "trial balance (query-api) p99").pass, Some(true));
        // The baseline's p99 (700 ms) is over the floor's aggregation p99 (500 ms).
        assert_eq!(get(&t, "trial balance (baseline SQL) p99").pass, Some(false));
        let g = goal_checks(&s);
        assert_eq!(get(&g, "trial balance p99").pass, Some(true));
        let speedup = get(&g, "trial balance speed-up vs baseline");
        assert_eq!(speedup.measured, Some(30.0));
        assert_eq!(speedup.pass, Some(true));
        // Not measured: not passed, not failed.
        assert_eq!(get(&g, "voucher POST p99").pass, None);
    }
}
