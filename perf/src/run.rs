//! `kerp-perf run`: the perf runner. It does the whole job against the dev stack and writes
//! `perf/results/<timestamp>/`:
//!
//! 1. brings the dev stack up unless its public URL answers `/health`, and generates the size's data unless it is there
//!    (or uses `--company`, or with `--no-generate` the demo company);
//! 2. runs the scenarios: `api` and `realistic` (k6, after `kerp-perf export`), `grpc` (the in-process gRPC load),
//!    `db` (query-api's trial balance and ledger against the original's SQL straight on Postgres, at the same
//!    concurrency for the same count, and single POSTs against `COPY` of 1,000 and the gRPC bulk stream) and
//!    `rebuild` (`compose/dev rebuild`, timed);
//! 3. scrapes every service's `/metrics` before and after, and diffs the key families;
//! 4. samples the RSS and CPU of every service from `/proc` each second;
//! 5. measures freshness (201 → visible in the trial balance) with a probe while the load scenarios run;
//! 6. checks the results against `perf/thresholds.yaml` and the goals, prints the table, and writes
//!    `summary.md`, `summary.json`, the samples, the raw metrics and PNG plots.
//!
//! Every error and failed request is reported and none is dropped; the run returns `false` (exit 1) on any error
//! unless `--allow-errors`, and on a threshold breach with `--fail-on-regression`.

mod after_posting;
mod baseline;
mod bench;
mod freshness;
mod goals;
mod k6;
mod metrics;
mod plot;
mod report;
mod resources;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{Datelike, NaiveDate};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::generate::{GenerateArgs, Size};
use crate::thresholds::Thresholds;
use report::{Comparison, Summary};

/// Seconds each gRPC mode runs at scale 1 (the runner's `--scale` shrinks it, to at least [`GRPC_SECONDS_MIN`]).
pub const GRPC_SECONDS_FULL: f64 = 60.0;
/// Seconds each gRPC mode runs at the least.
pub const GRPC_SECONDS_MIN: u64 = 2;
/// Vouchers per gRPC bulk stream at scale 1: the 1,000 that `COPY` and the thresholds' `bulk_insert_1000` use.
pub const GRPC_BATCH_FULL: f64 = 1_000.0;
/// Vouchers per gRPC bulk stream at the least: a smaller scale shrinks the stream, since a stream in flight is
/// finished however long it takes, and 8 streams of 1,000 take minutes on a debug build.
pub const GRPC_BATCH_MIN: usize = 100;
/// Seconds to wait for the public URL's `/health` after `compose/dev up`.
pub const STACK_READY_SECONDS_MAX: u64 = 120;
/// Lines of a child's output kept in the summary.
const OUTPUT_TAIL_LINES_MAX: usize = 15;
/// Hours Korea is ahead of UTC: "today" of the probe's vouchers is Korea's, as the services' is.
const SEOUL_UTC_OFFSET_HOURS: i64 = 9;

/// A scenario of the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// k6 `perf/k6/api_load_test.js`.
    Api,
    /// k6 `perf/k6/realistic_workload.js`.
    Realistic,
    /// The gRPC load (unary, bulk stream, reports).
    Grpc,
    /// query-api against the direct-Postgres baseline; POST against COPY and the bulk stream.
    Db,
    /// `compose/dev rebuild`, timed.
    Rebuild,
    /// Every scenario above; `rebuild` only for `medium` and bigger, or with `--rebuild`.
    All,
}

/// Arguments of `kerp-perf run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The data size (the thresholds file's `data_sizes`) generated unless present.
    #[arg(long, value_enum, default_value = "small")]
    pub size: Size,
    /// The scenarios, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub scenario: Vec<Scenario>,
    /// Include `rebuild` in `all` for `small` too (it is included from `medium` on).
    #[arg(long)]
    pub rebuild: bool,
    /// Exit 1 when a threshold of the thresholds file is breached (the goals are reported, never fatal).
    #[arg(long)]
    pub fail_on_regression: bool,
    /// Exit 0 even when requests failed, a service answered 5xx or a scenario could not run.
    #[arg(long)]
    pub allow_errors: bool,
    /// Stretches or shrinks every scenario: 1 is the full run, 0.05 about a minute of k6 per script.
    #[arg(long, env = "KERP_PERF_SCALE", default_value_t = 1.0)]
    pub scale: f64,
    /// Where `<timestamp>/` is written.
    #[arg(long, default_value = "perf/results")]
    pub out: PathBuf,
    /// The public URL (nginx) of the dev stack.
    #[arg(long, env = "KERP_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The base URL the report comparison reads query-api at: `--url` (through nginx, as clients do) when left out;
    /// `http://127.0.0.1:8082` reads it directly, or point it at another query-api (say a release build beside a
    /// debug stack).
    #[arg(long, env = "KERP_QUERY_URL")]
    pub query_url: Option<String>,
    /// grpc-api's URL.
    #[arg(long, env = "KERP_GRPC_URL", default_value = "http://127.0.0.1:50051")]
    pub grpc_url: String,
    /// Postgres (the baseline's queries, the data lookups).
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://kerp:kerp@127.0.0.1:5432/kerp")]
    pub database_url: String,
    /// The dev stack's folder (`kerp.env`, `run/*.pid`, `demo-company`); the probe's and scratch companies' ids are
    /// kept there too.
    #[arg(long, env = "KERP_DATA_DIR", default_value = ".data")]
    pub data_root: PathBuf,
    /// The folder of the ingest-api and stream-workers binaries; by default that of the profile `compose/dev up` built.
    #[arg(long, env = "KERP_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// The dev stack script (`up` when the stack does not answer, `rebuild`).
    #[arg(long, default_value = "compose/dev")]
    pub compose_dev: PathBuf,
    /// Do not generate: use `--company`, or the dev stack's demo company.
    #[arg(long)]
    pub no_generate: bool,
    /// The company whose books the reports read (default: the generated size's first company).
    #[arg(long)]
    pub company: Option<Uuid>,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The thresholds file.
    #[arg(long, env = "KERP_PERF_THRESHOLDS", default_value = "perf/thresholds.yaml")]
    pub thresholds: PathBuf,
    /// The k6 binary.
    #[arg(long, env = "K6", default_value = "k6")]
    pub k6: String,
    /// The folder of the k6 scripts.
    #[arg(long, default_value = "perf/k6")]
    pub k6_dir: PathBuf,
    /// Where `kerp-perf export` writes the k6 scripts' data and the generator its manifest.
    #[arg(long, default_value = "perf/data")]
    pub data_dir: PathBuf,
    /// Requests in flight on each side of the report comparison, and concurrent POSTs and gRPC workers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Requests per side of each comparison, and POSTs per way of posting.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// `COPY` batches of 1,000 vouchers.
    #[arg(long, default_value_t = 3)]
    pub copy_batches: usize,
    /// Vouchers per gRPC bulk stream; by default 1,000 × scale, at least GRPC_BATCH_MIN (100).
    #[arg(long)]
    pub grpc_batch: Option<usize>,
    /// Keep the baseline's `perf_baseline_*` indexes after the run (they are dropped by default: every posting pays
    /// for them).
    #[arg(long)]
    pub keep_baseline_indexes: bool,
    /// ingest-api's metrics listener.
    #[arg(long, env = "INGEST_METRICS_LISTEN", default_value = "127.0.0.1:9101")]
    pub ingest_metrics: String,
    /// stream-workers' metrics listener.
    #[arg(long, env = "WORKER_METRICS_LISTEN", default_value = "127.0.0.1:9102")]
    pub worker_metrics: String,
    /// query-api's metrics listener.
    #[arg(long, env = "QUERY_METRICS_LISTEN", default_value = "127.0.0.1:9103")]
    pub query_metrics: String,
    /// grpc-api's metrics listener.
    #[arg(long, env = "GRPC_METRICS_LISTEN", default_value = "127.0.0.1:9106")]
    pub grpc_metrics: String,
}

impl RunArgs {
    /// The scenarios to run, in the order they run.
    fn scenarios(&self) -> Vec<Scenario> {
        let mut out: Vec<Scenario> = if self.scenario.contains(&Scenario::All) {
            let mut all = vec![Scenario::Api, Scenario::Realistic, Scenario::Grpc, Scenario::Db];
            if self.rebuild || self.size != Size::Small {
                all.push(Scenario::Rebuild);
            }
            all
        } else {
            self.scenario.clone()
        };
        if self.rebuild && !out.contains(&Scenario::Rebuild) {
            out.push(Scenario::Rebuild);
        }
        out.sort();
        out.dedup();
        out
    }

    fn size_name(&self) -> String {
        self.size.to_possible_value().map_or_else(|| format!("{:?}", self.size), |v| v.get_name().to_owned())
    }
}

/// A company the runner uses, with a token of its admin.
#[derive(Debug, Clone)]
struct Company {
    id: Uuid,
    admin: Uuid,
    token: String,
}

/// Settings of the dev stack's env file (`.data/kerp.env`), for the child processes that need them (ingest-api reads
/// `DATABASE_URL` and `JWT_SECRET`); the runner's own environment wins.
fn dev_env(data_root: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(data_root.join("kerp.env")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.trim().is_empty() && !k.starts_with('#') && std::env::var_os(k.trim()).is_none())
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The dev stack's binaries: `--bin-dir`, or the profile `compose/dev up` recorded.
fn bin_dir(args: &RunArgs) -> (PathBuf, String) {
    let profile = std::env::var("KERP_PROFILE")
        .ok()
        .or_else(|| std::fs::read_to_string(args.data_root.join("run/profile")).ok().map(|p| p.trim().to_owned()))
        .unwrap_or_else(|| "release".to_owned());
    let dir = args.bin_dir.clone().unwrap_or_else(|| PathBuf::from("target").join(if profile == "dev" { "debug" } else { &profile }));
    (dir, profile)
}

/// Runs a command with the dev env and returns its stdout; a failure carries its stderr.
fn output(cmd: &mut std::process::Command, env: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let out = cmd.envs(env).stdin(Stdio::null()).output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn token(bin: &Path, env: &BTreeMap<String, String>, company: Uuid) -> anyhow::Result<String> {
    output(std::process::Command::new(bin.join("ingest-api")).args(["token", "--company", &company.to_string()]), env)
}

/// The company whose id is kept in `file`, or a new one made with `ingest-api create-company` (its id then kept there).
async fn ensure_company(bin: &Path, env: &BTreeMap<String, String>, pg: &PgPool, file: &Path, name: &str) -> anyhow::Result<Company> {
    if let Some(id) = std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse::<Uuid>().ok()) {
        if let (Ok(token), Ok(Some(admin))) = (token(bin, env, id), baseline::admin_of(pg, id).await) {
            return Ok(Company { id, admin, token });
        }
    }
    let stamp = chrono::Utc::now().timestamp_millis();
    let out = output(
        std::process::Command::new(bin.join("ingest-api")).args([
            "create-company",
            "--name",
            name,
            "--admin-email",
            &format!("perf+{stamp}@perf.kerp.local"),
        ]),
        env,
    )?;
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or_default()).context("create-company printed no JSON")?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).with_context(|| format!("create-company printed no {k}"));
    let company = Company { id: field("company_id")?.parse()?, admin: field("admin_user_id")?.parse()?, token: field("token")?.to_owned() };
    std::fs::write(file, company.id.to_string())?;
    Ok(company)
}

/// Brings the dev stack up unless its public URL answers.
async fn ensure_stack(args: &RunArgs, client: &reqwest::Client) -> anyhow::Result<bool> {
    let health = format!("{}/health", args.url);
    let answers = |c: &reqwest::Client| {
        let (c, h) = (c.clone(), health.clone());
        async move { c.get(&h).timeout(Duration::from_secs(3)).send().await.is_ok_and(|r| r.status().is_success()) }
    };
    if answers(client).await {
        return Ok(false);
    }
    println!("[perf] {health} does not answer: running {} up", args.compose_dev.display());
    let status = tokio::process::Command::new(&args.compose_dev).arg("up").status().await?;
    if !status.success() {
        bail!("{} up failed ({status})", args.compose_dev.display());
    }
    let deadline = Instant::now() + Duration::from_secs(STACK_READY_SECONDS_MAX);
    while !answers(client).await {
        if Instant::now() > deadline {
            bail!("{health} does not answer after {} up", args.compose_dev.display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(true)
}

/// Parses another command's arguments with its own clap definition, so the runner passes only what it means to set
/// and every other field keeps its default or environment value.
fn parse_args<T: clap::Args>(name: &str, argv: &[String]) -> anyhow::Result<T> {
    #[derive(Parser)]
    struct Wrap<T: clap::Args> {
        #[command(flatten)]
        inner: T,
    }
    let argv = std::iter::once(name.to_owned()).chain(argv.iter().cloned());
    Ok(Wrap::<T>::try_parse_from(argv).with_context(|| format!("arguments of {name}"))?.inner)
}

/// The company whose books are measured, and a sentence on where it came from.
async fn main_company(args: &RunArgs, s: &mut Summary) -> anyhow::Result<Uuid> {
    if let Some(id) = args.company {
        s.data = "the books of the company given with --company".into();
        return Ok(id);
    }
    if !args.no_generate {
        let argv: Vec<String> = vec![
            "--size".into(),
            args.size_name(),
            "--seed".into(),
            args.seed.to_string(),
            "--thresholds".into(),
            args.thresholds.display().to_string(),
            "--database-url".into(),
            args.database_url.clone(),
            "--out-dir".into(),
            args.data_dir.display().to_string(),
        ];
        let generated = async {
            let g: GenerateArgs = parse_args("generate", &argv)?;
            let t = Instant::now();
            let m = crate::generate::ensure(&g).await?;
            anyhow::Ok((m, t.elapsed().as_secs_f64()))
        }
        .await;
        match generated {
            Ok((m, seconds)) if !m.companies.is_empty() => {
                let stages: Vec<String> =
                    m.stages.iter().map(|st| format!("{} {} rows in {:.1} s", st.name, st.rows, st.seconds)).collect();
                s.data = format!(
                    "generated `{}` seed {}: {} companies, {} vouchers, {} lines (ensure took {seconds:.1} s; stages: {})",
                    args.size_name(),
                    m.seed,
                    m.companies.len(),
                    m.vouchers,
                    m.lines,
                    if stages.is_empty() { "already there".to_owned() } else { stages.join(", ") }
                );
                return Ok(m.companies[0].company_id);
            }
            Ok(_) => s.errors.push("generate: the manifest lists no company; using the demo company".into()),
            Err(e) => s.errors.push(format!("generate failed, so the demo company's books were measured instead: {e:#}")),
        }
    }
    let demo = std::fs::read_to_string(args.data_root.join("demo-company")).context("no demo company (run compose/dev up)")?;
    s.data = if args.no_generate {
        "the dev stack's demo company (--no-generate)".into()
    } else {
        "the dev stack's demo company (generation failed)".into()
    };
    Ok(demo.trim().parse()?)
}

fn machine() -> report::Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let memory_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    report::Machine {
        nproc: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        memory_mib: memory_kib / 1024,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        cpu_model: read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        load_before: read("/proc/loadavg").trim().to_owned(),
        ..report::Machine::default()
    }
}

/// The busiest processes that are not the stack's, as `ps` shows them.
fn busiest_others() -> Vec<String> {
    const STACK: [&str; 12] = [
        "postgres",
        "java",
        "clickhouse",
        "ingest-api",
        "query-api",
        "stream-workers",
        "grpc-api",
        "nginx",
        "k6",
        "kerp-perf",
        "ps",
        "clickhouse-serv",
    ];
    let out = std::process::Command::new("ps").args(["-eo", "pcpu,rss,comm", "--sort=-pcpu", "--no-headers"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.lines()
        .filter(|l| l.split_whitespace().nth(2).is_some_and(|c| !STACK.iter().any(|s| c.starts_with(s))))
        .take(5)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let rss_mib = f.get(1).and_then(|r| r.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0;
            format!("{} {}% CPU (lifetime), {rss_mib:.0} MiB", f.get(2).unwrap_or(&""), f.first().unwrap_or(&""))
        })
        .collect()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES_MAX)..].join("\n")
}

/// `rebuild: N messages, L ledger lines folded in S s (R lines/s); …`: the lines and the rate.
fn parse_rebuild(output: &str) -> Option<(f64, f64)> {
    let line = output.lines().rev().find(|l| l.starts_with("rebuild: "))?;
    let lines = line.split(" messages, ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    let rate = line.split('(').nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some((lines, rate))
}

/// Korea's today.
fn today() -> NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(SEOUL_UTC_OFFSET_HOURS)).date_naive()
}

fn month_bounds(d: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = d.with_day(1).unwrap_or(d);
    let next =
        if d.month() == 12 { NaiveDate::from_ymd_opt(d.year() + 1, 1, 1) } else { NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1) };
    (first, next.and_then(|n| n.pred_opt()).unwrap_or(d))
}

fn voucher_body(date: NaiveDate, n: usize) -> serde_json::Value {
    let amount = 10_000 + (n % 997) * 1_000;
    serde_json::json!({
        "voucher_date": date.to_string(),
        "voucher_type": "general",
        "description": format!("kerp-perf POST timing {n}"),
        "lines": [{"account_code": "5212", "debit_amount": amount}, {"account_code": "1101", "credit_amount": amount}]
    })
}

/// Everything the scenarios share.
struct Ctx<'a> {
    args: &'a RunArgs,
    client: reqwest::Client,
    pg: PgPool,
    dir: PathBuf,
    main: Company,
    probe: Company,
    scratch: Company,
    params: Option<baseline::Params>,
    samples: BTreeMap<String, Vec<f64>>,
}

/// The k6 scenarios: `kerp-perf export` once, then each script.
async fn k6_scenarios(ctx: &mut Ctx<'_>, s: &mut Summary, which: &[Scenario], sampler: &resources::Sampler) {
    let argv = vec![
        "--base-url".to_owned(),
        ctx.args.url.clone(),
        "--token".to_owned(),
        ctx.main.token.clone(),
        "--out-dir".to_owned(),
        ctx.args.data_dir.display().to_string(),
    ];
    let exported = async { crate::export::export(&parse_args("export", &argv)?).await }.await;
    if let Err(e) = exported {
        s.errors.push(format!("kerp-perf export failed, so k6 did not run: {e:#}"));
        return;
    }
    // The reports read the measured books (the busiest year's last month); the scripts post dated today regardless.
    let (year, month) = ctx.params.as_ref().map_or_else(|| (today().year(), today().month()), |p| (p.year, p.month));
    for sc in which {
        let (script, phase) = match sc {
            Scenario::Api => ("api_load_test.js", "api"),
            _ => ("realistic_workload.js", "realistic"),
        };
        sampler.phase(phase);
        println!("[perf] k6 {script} (scale {})", ctx.args.scale);
        let path = ctx.args.k6_dir.join(script);
        let r = k6::run(&k6::Settings {
            k6: &ctx.args.k6,
            script: &path,
            base_url: &ctx.args.url,
            token: &ctx.main.token,
            scale: ctx.args.scale,
            data_dir: &ctx.args.data_dir,
            report_year: year,
            report_month: month,
            out_dir: &ctx.dir,
        })
        .await;
        if let Some(e) = &r.error {
            s.errors.push(format!("k6 {}: {e}", r.script));
        } else {
            // k6 exits 99 when a threshold is crossed, which the checks report; any other non-zero exit is an error.
            if !matches!(r.exit_code, Some(0 | 99)) {
                s.errors.push(format!("k6 {} exited {:?} (see k6-{}.log)", r.script, r.exit_code, r.script));
            }
            if r.failed > 0.0 || r.checks_failed > 0.0 {
                s.errors.push(format!(
                    "k6 {}: {} requests failed, {} checks failed (see k6-{}.log)",
                    r.script, r.failed, r.checks_failed, r.script
                ));
            }
        }
        s.k6.push(r);
    }
}

async fn grpc_scenario(ctx: &Ctx<'_>, s: &mut Summary) {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let seconds = ((GRPC_SECONDS_FULL * ctx.args.scale).round() as u64).max(GRPC_SECONDS_MIN);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let batch = ctx.args.grpc_batch.unwrap_or(((GRPC_BATCH_FULL * ctx.args.scale).round() as usize).clamp(GRPC_BATCH_MIN, 1_000));
    let mut argv: Vec<String> = [
        "--url",
        &ctx.args.grpc_url,
        "--token",
        &ctx.main.token,
        "--mode",
        "all",
        "--workers",
        &ctx.args.concurrency.to_string(),
        "--seconds",
        &seconds.to_string(),
        "--batch",
        &batch.to_string(),
        "--out",
        &ctx.dir.join("grpc.json").display().to_string(),
    ]
    .iter()
    .map(|x| (*x).to_owned())
    .collect();
    if let Some(p) = &ctx.params {
        argv.extend([
            "--year".into(),
            p.year.to_string(),
            "--month".into(),
            p.month.to_string(),
            "--ledger-code".into(),
            p.account_code.clone(),
        ]);
    }
    println!("[perf] gRPC load: {seconds} s per mode, {} workers", ctx.args.concurrency);
    match async { crate::grpc_load::measure(&parse_args("grpc-load", &argv)?).await }.await {
        Ok(r) => {
            if r.failures() > 0 {
                s.errors.push(format!("gRPC load: {} failed calls or refused items (see the gRPC table)", r.failures()));
            }
            s.grpc = Some(r);
        }
        Err(e) => s.errors.push(format!("gRPC load failed: {e:#}")),
    }
}

/// One side of a comparison or a POST load, with its samples kept for the plots.
fn keep(ctx: &mut Ctx<'_>, s: &mut Summary, o: &bench::Outcome) {
    ctx.samples.insert(o.name.clone(), o.latencies_ms.clone());
    if o.failures > 0 {
        s.errors.push(format!(
            "{}: {} of {} requests failed {:?}: {:?}",
            o.name,
            o.failures,
            o.latencies_ms.len(),
            o.answers,
            o.error_examples
        ));
    }
}

/// The name of the ledger comparison whose pages are all read from ClickHouse (`Cache-Control: no-cache`).
pub const LEDGER_AFRESH: &str = "account ledger, read afresh";

/// The name of the ledger comparison whose page is read once after each posting to its account
/// (`run::after_posting`).
pub const LEDGER_AFTER_POSTING: &str = "account ledger, first read after a posting to it";

#[allow(clippy::too_many_lines)]
async fn db_scenario(ctx: &mut Ctx<'_>, s: &mut Summary, sampler: &resources::Sampler) -> anyhow::Result<()> {
    let Some(p) = ctx.params.clone() else { bail!("no report parameters: the company has no posted lines") };
    let (c, n) = (ctx.args.concurrency, ctx.args.requests);
    println!("[perf] baseline indexes (CREATE INDEX CONCURRENTLY IF NOT EXISTS perf_baseline_*)");
    // The build is the baseline's setup, not K-ERP's work: its samples are kept apart (`resources::BASELINE_PHASES`).
    sampler.phase(resources::BASELINE_INDEXES_PHASE);
    let built = baseline::create_indexes(&ctx.pg).await;
    sampler.phase("db");
    s.baseline_indexes = built?;
    let (tb_plan, ledger_plan) = baseline::explain(&ctx.pg, &p).await?;
    s.explain_trial_balance = tb_plan;
    s.explain_ledger = ledger_plan;
    let query_url = ctx.args.query_url.clone().unwrap_or_else(|| ctx.args.url.clone());
    if ctx.args.query_url.is_some() {
        s.notes.push(format!("The report comparison read query-api at {query_url} (--query-url), not through the stack's nginx."));
    }
    let tb_url = format!("{query_url}/api/v1/reports/trial-balance?year={}&month={}", p.year, p.month);
    let ledger_url = format!(
        "{query_url}/api/v1/reports/account-ledger?account_code={}&from_date={}&to_date={}&page=1&page_size=200",
        p.account_code, p.from, p.to
    );
    let get = |url: String, client: reqwest::Client, token: String| move |_| bench::http(client.get(&url).bearer_auth(&token));
    let tb_ours = get(tb_url.clone(), ctx.client.clone(), ctx.main.token.clone());
    let ledger_ours = get(ledger_url.clone(), ctx.client.clone(), ctx.main.token.clone());
    // The same page asked for with `Cache-Control: no-cache`: query-api reads it from ClickHouse every time instead of
    // serving the answer it holds while the books are unchanged (query-api/src/answers.rs). This is what the first
    // read after a change costs.
    let ledger_afresh = {
        let (url, client, token) = (ledger_url.clone(), ctx.client.clone(), ctx.main.token.clone());
        move |_| bench::http(client.get(&url).bearer_auth(&token).header("cache-control", "no-cache"))
    };
    let (pg, p1, p2) = (ctx.pg.clone(), p.clone(), p.clone());
    let pg2 = pg.clone();
    let tb_theirs = move |_| {
        let (pg, p) = (pg.clone(), p1.clone());
        async move { bench::from_result(baseline::trial_balance(&pg, &p).await) }
    };
    let ledger_theirs = move |_| {
        let (pg, p) = (pg2.clone(), p2.clone());
        async move { bench::from_result(baseline::ledger(&pg, &p).await) }
    };
    // A warm-up of one round per side, not counted, so that neither side pays for the other's cold caches.
    bench::fixed("warm-up", c, c, tb_ours.clone()).await;
    bench::fixed("warm-up", c, c, tb_theirs.clone()).await;
    bench::fixed("warm-up", c, c, ledger_ours.clone()).await;
    bench::fixed("warm-up", c, c, ledger_theirs.clone()).await;
    s.notes.push(format!("Before each side of each comparison, {c} requests warmed it up, uncounted."));
    println!("[perf] trial balance: query-api vs baseline, {n} requests at concurrency {c}");
    let ours = bench::fixed("trial balance (query-api)", c, n, tb_ours).await;
    let theirs = bench::fixed("trial balance (baseline SQL)", c, n, tb_theirs).await;
    keep(ctx, s, &ours);
    keep(ctx, s, &theirs);
    s.reports.push(
        Comparison {
            name: "trial balance".into(),
            ours_request: format!("GET {tb_url}"),
            theirs_request: format!("baseline::TRIAL_BALANCE_SQL over {}..{}", p.from, p.to),
            ours,
            theirs,
            ..Comparison::default()
        }
        .with_ratios(),
    );
    println!("[perf] account ledger: query-api (one page of 200) vs baseline (every row), {n} requests at concurrency {c}");
    let ours = bench::fixed("account ledger (query-api)", c, n, ledger_ours).await;
    let theirs = bench::fixed("account ledger (baseline SQL)", c, n, ledger_theirs.clone()).await;
    println!("[perf] account ledger read afresh (Cache-Control: no-cache), {n} requests at concurrency {c}");
    let afresh = bench::fixed("account ledger, read afresh (query-api)", c, n, ledger_afresh).await;
    keep(ctx, s, &ours);
    keep(ctx, s, &theirs);
    keep(ctx, s, &afresh);
    let theirs_request = format!("baseline::LEDGER_SQL, account {}, {}..{} (all {} rows)", p.account_code, p.from, p.to, p.account_lines);
    s.reports.push(
        Comparison {
            name: "account ledger".into(),
            ours_request: format!("GET {ledger_url}"),
            theirs_request: theirs_request.clone(),
            ours,
            theirs: theirs.clone(),
            ..Comparison::default()
        }
        .with_ratios(),
    );
    s.reports.push(
        Comparison {
            name: LEDGER_AFRESH.into(),
            ours_request: format!("GET {ledger_url} with Cache-Control: no-cache"),
            theirs_request,
            ours: afresh,
            theirs,
            ..Comparison::default()
        }
        .with_ratios(),
    );
    // Last, as it posts into the measured company (dated on the range's last day): the comparisons above read the
    // books as they were.
    let n_after = n.min(after_posting::SAMPLES_MAX);
    println!(
        "[perf] account ledger, first read after a posting to it: {n_after} vouchers to {} dated {}, one at a time",
        p.account_code, p.to
    );
    let post_url = format!("{}/api/v1/vouchers", ctx.args.url);
    let setup = after_posting::Setup {
        client: &ctx.client,
        token: &ctx.main.token,
        ledger_url: &ledger_url,
        trial_balance_url: &tb_url,
        post_url: &post_url,
        account_code: &p.account_code,
        date: p.to,
    };
    // The baseline's window query, the same request as in the comparison above, timed once per sample.
    let baseline_once = move || ledger_theirs(0);
    let (ours, theirs, found, wall) = after_posting::measure(&setup, n_after, baseline_once).await;
    let after = bench::outcome("account ledger, first read after a posting to it (query-api)", 1, ours, wall);
    let after_theirs = bench::outcome("account ledger, one read after the same pause (baseline SQL)", 1, theirs, wall);
    keep(ctx, s, &after);
    keep(ctx, s, &after_theirs);
    let taken = after.latencies_ms.len();
    if found.shown < taken {
        s.errors.push(format!(
            "{LEDGER_AFTER_POSTING}: {} of {taken} reads, {} ms after the trial balance showed the posting, did not show it",
            taken - found.shown,
            after_posting::READ_AFTER_MS
        ));
    }
    s.notes.push(format!(
        "\"{LEDGER_AFTER_POSTING}\": {taken} times, the page (read twice before, as a page in use is) was read once, {} ms \
         after the trial balance showed a voucher posted to its account and dated {}; {} of {taken} reads showed the \
         voucher, and {} of {taken} were answered from memory (the page had been read again after the posting, before \
         it was asked for). The baseline's query was timed once in each sample too, after the same pause: a read \
         after a pause costs more than one in a back-to-back series, on either side. These vouchers stay in the measured company's books: {} more lines on the account for the \
         next run.",
        after_posting::READ_AFTER_MS,
        p.to,
        found.shown,
        found.held,
        taken
    ));
    s.reports.push(
        Comparison {
            name: LEDGER_AFTER_POSTING.into(),
            ours_request: format!("GET {ledger_url}, once after each POST of a voucher to {}", p.account_code),
            theirs_request: format!(
                "baseline::LEDGER_SQL, account {}, {}..{} (all rows), once after the same pause in each sample",
                p.account_code, p.from, p.to
            ),
            ours: after,
            theirs: after_theirs,
            ..Comparison::default()
        }
        .with_ratios(),
    );
    s.notes.push(format!(
        "The account ledger is measured three ways. As clients ask for it, query-api serves a page it read before from \
         memory while no posting reaches the page's account (query-api/src/answers.rs); `report_answers_total` in \
         query-api's metrics below counts the hits. \"{LEDGER_AFRESH}\" sends Cache-Control: no-cache, so every page is \
         read from ClickHouse: what a page nobody read before costs. \"{LEDGER_AFTER_POSTING}\" reads the page once after \
         each posting to its account."
    ));

    // Writing: single POSTs to the probe company (the freshness probe is not running now), then COPY batches into
    // the scratch company.
    let date = today();
    let post = {
        let (client, url, token) = (ctx.client.clone(), format!("{}/api/v1/vouchers", ctx.args.url), ctx.probe.token.clone());
        move |i: usize| bench::http(client.post(&url).bearer_auth(&token).json(&voucher_body(date, i)))
    };
    println!("[perf] voucher POSTs: {n} one at a time, {} at concurrency {c}", n * 2);
    let sequential = bench::fixed("voucher POST, one at a time", 1, n, post.clone()).await;
    let concurrent = bench::fixed(&format!("voucher POST, {c} concurrent"), c, n * 2, post).await;
    keep(ctx, s, &sequential);
    keep(ctx, s, &concurrent);
    s.posting.per_1000_ms.insert("REST POST, one at a time (mean × 1,000)".into(), sequential.dist.mean * 1000.0);
    if concurrent.rate > 0.0 {
        s.posting.per_1000_ms.insert(format!("REST POST, {c} concurrent (1,000 / rate)"), 1000.0 / concurrent.rate * 1000.0);
    }
    s.posting.sequential = Some(sequential);
    s.posting.concurrent = Some(concurrent);

    println!("[perf] COPY of 1,000 vouchers × {}", ctx.args.copy_batches);
    let scratch = baseline::scratch(&ctx.pg, ctx.scratch.id, ctx.scratch.admin).await?;
    // Leftovers of an interrupted run would collide with this run's numbers.
    baseline::delete_scratch(&ctx.pg, scratch.company_id).await?;
    let mut copy_error = None;
    for b in 0..ctx.args.copy_batches {
        match baseline::copy_batch(&ctx.pg, &scratch, b).await {
            Ok(ms) => s.posting.copy_batches_ms.push(ms),
            Err(e) => {
                copy_error = Some(e);
                break;
            }
        }
    }
    s.posting.copy_deleted = baseline::delete_scratch(&ctx.pg, scratch.company_id).await?;
    if let Some(e) = copy_error {
        s.errors.push(format!("COPY of 1,000 vouchers failed: {e:#}"));
    }
    s.posting.copy = stats::Dist::of(&s.posting.copy_batches_ms);
    ctx.samples.insert("COPY of 1,000 vouchers".into(), s.posting.copy_batches_ms.clone());
    if s.posting.copy.count > 0 {
        s.posting.per_1000_ms.insert("COPY, one transaction (mean)".into(), s.posting.copy.mean);
    }
    s.notes.push(format!(
        "The COPY batches went into the scratch company {} and were deleted right after ({} vouchers): they bypass the outbox, \
         so ClickHouse never hears of them and reconcile would report them.",
        scratch.company_id, s.posting.copy_deleted
    ));
    if !ctx.args.keep_baseline_indexes {
        baseline::drop_indexes(&ctx.pg).await?;
        s.notes.push("The perf_baseline_* indexes were dropped at the end of the db scenario (--keep-baseline-indexes keeps them).".into());
    }
    Ok(())
}

/// The gRPC figures per 1,000 vouchers, once both the gRPC load and the db scenario ran.
fn grpc_per_1000(s: &mut Summary) {
    let Some(g) = &s.grpc else { return };
    for m in &g.methods {
        if let Some(v) = m.vouchers_per_second.filter(|v| *v > 0.0) {
            let how = if m.method == "CreateVouchers" {
                format!("gRPC bulk stream, {} per stream, {} workers", g.batch, g.workers)
            } else {
                format!("gRPC {}, {} workers", m.method, g.workers)
            };
            s.posting.per_1000_ms.insert(format!("{how} (1,000 / rate)"), 1000.0 / v * 1000.0);
        }
    }
}

async fn rebuild_scenario(ctx: &Ctx<'_>, s: &mut Summary) {
    println!("[perf] rebuild: {} rebuild --grace-seconds 0", ctx.args.compose_dev.display());
    let t = Instant::now();
    let out =
        tokio::process::Command::new(&ctx.args.compose_dev).args(["rebuild", "--grace-seconds", "0"]).stdin(Stdio::null()).output().await;
    let seconds = t.elapsed().as_secs_f64();
    match out {
        Ok(o) => {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            // Postgres counts the posted lines only when the rebuild did not print its own figure: the count is a join
            // over every company's lines, which took Postgres past 256 MiB (two parallel workers) when it ran while the
            // resources were sampled.
            #[allow(clippy::cast_precision_loss)]
            let (lines, rate) = match parse_rebuild(&text) {
                Some(figures) => figures,
                None => {
                    let l = baseline::posted_lines(&ctx.pg).await.unwrap_or(0) as f64;
                    (l, l / seconds)
                }
            };
            if !o.status.success() {
                s.errors.push(format!("rebuild exited {:?}", o.status.code()));
            }
            s.notes.push(format!(
                "The rebuild took {seconds:.1} s of wall time (fold, reconcile and swap); lines/s is the fold's own figure."
            ));
            s.rebuild =
                Some(report::Rebuild { seconds, lines, lines_per_second: rate, exit_code: o.status.code(), output_tail: tail(&text) });
        }
        Err(e) => s.errors.push(format!("rebuild could not start: {e}")),
    }
}

/// Writes the plots; returns their file names.
fn plots(dir: &Path, s: &Summary, samples: &BTreeMap<String, Vec<f64>>) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    let mut draw = |path: PathBuf, ok: bool| {
        if ok {
            written.push(path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
        }
    };
    let series = |names: &[&str]| -> Vec<plot::Series<'_>> {
        names.iter().filter_map(|n| samples.get(*n).map(|v| plot::Series { label: (*n).to_owned(), samples_ms: v })).collect()
    };
    for c in &s.reports {
        let path = plot::file_name(dir, "latency", &c.name);
        let names = [format!("{} (query-api)", c.name), format!("{} (baseline SQL)", c.name)];
        let ok = plot::histogram(
            &path,
            &format!("{}: query-api vs direct Postgres (concurrency {})", c.name, c.ours.concurrency),
            &series(&[&names[0], &names[1]]),
        )?;
        draw(path, ok);
    }
    let posts: Vec<String> = [&s.posting.sequential, &s.posting.concurrent].into_iter().flatten().map(|o| o.name.clone()).collect();
    if !posts.is_empty() {
        let path = plot::file_name(dir, "latency", "voucher POST");
        let ok = plot::histogram(&path, "voucher POST latency", &series(&posts.iter().map(String::as_str).collect::<Vec<_>>()))?;
        draw(path, ok);
    }
    if let Some(f) = &s.freshness {
        let path = plot::file_name(dir, "latency", "freshness");
        let ok = plot::histogram(
            &path,
            "freshness: 201 -> visible in the trial balance",
            &[plot::Series { label: "probe vouchers".into(), samples_ms: &f.samples_ms }],
        )?;
        draw(path, ok);
    }
    let mut bars = Vec::new();
    for r in &s.k6 {
        bars.extend(r.endpoints.iter().map(|e| plot::Bar { name: format!("k6 {} {}", r.script, e.name), p95_ms: e.p95, p99_ms: e.p99 }));
    }
    for c in &s.reports {
        bars.push(plot::Bar { name: format!("{} (query-api)", c.name), p95_ms: c.ours.dist.p95, p99_ms: c.ours.dist.p99 });
        bars.push(plot::Bar { name: format!("{} (baseline)", c.name), p95_ms: c.theirs.dist.p95, p99_ms: c.theirs.dist.p99 });
    }
    for o in [&s.posting.sequential, &s.posting.concurrent].into_iter().flatten() {
        bars.push(plot::Bar { name: o.name.clone(), p95_ms: o.dist.p95, p99_ms: o.dist.p99 });
    }
    if s.posting.copy.count > 0 {
        bars.push(plot::Bar { name: "COPY of 1,000 vouchers".into(), p95_ms: s.posting.copy.p95, p99_ms: s.posting.copy.p99 });
    }
    if let Some(g) = &s.grpc {
        bars.extend(g.methods.iter().map(|m| plot::Bar {
            name: format!("gRPC {}", m.method),
            p95_ms: m.latency_ms.p95,
            p99_ms: m.latency_ms.p99,
        }));
    }
    if let Some(f) = &s.freshness {
        bars.push(plot::Bar { name: "freshness".into(), p95_ms: f.dist.p95, p99_ms: f.dist.p99 });
    }
    let path = dir.join("p95-p99.png");
    let ok = plot::p95_p99(&path, "p95 (blue) and p99 (red) per endpoint, ms", &bars)?;
    draw(path, ok);
    Ok(written)
}

/// `kerp-perf run`: returns whether the run passed (see the module documentation).
///
/// # Errors
/// The stack cannot be brought up or reached, the thresholds file does not load, or the results cannot be written.
/// A scenario that fails is reported in the summary instead.
#[allow(clippy::too_many_lines)]
pub async fn run(args: &RunArgs) -> anyhow::Result<bool> {
    let started = chrono::Utc::now();
    let dir = args.out.join(started.format("%Y%m%dT%H%M%SZ").to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let thresholds = Thresholds::load(&args.thresholds)?;
    let scenarios = args.scenarios();
    let (bin, profile) = bin_dir(args);
    let env = dev_env(&args.data_root);
    let mut s = Summary {
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        size: args.size_name(),
        scale: args.scale,
        scenarios: scenarios.iter().map(|x| format!("{x:?}").to_lowercase()).collect(),
        base_url: args.url.clone(),
        profile: profile.clone(),
        machine: machine(),
        ..Summary::default()
    };
    s.machine.shared_with = busiest_others();
    println!("[perf] results in {}; scenarios {:?}; size {}; scale {}", dir.display(), s.scenarios, s.size, s.scale);

    let client = reqwest::Client::builder().pool_max_idle_per_host(bench::CONCURRENCY_MAX).build()?;
    if ensure_stack(args, &client).await? {
        s.notes.push("The dev stack did not answer; the runner ran `compose/dev up`.".into());
    }
    let pool_size = u32::try_from(args.concurrency.clamp(1, bench::CONCURRENCY_MAX) + 2).unwrap_or(16);
    let pg = PgPoolOptions::new().max_connections(pool_size).connect(&args.database_url).await.context("connecting to Postgres")?;
    let company = main_company(args, &mut s).await?;
    let main =
        Company { id: company, admin: baseline::admin_of(&pg, company).await?.unwrap_or_default(), token: token(&bin, &env, company)? };
    s.company = company.to_string();
    let probe =
        ensure_company(&bin, &env, &pg, &args.data_root.join("perf-probe-company"), "kerp-perf probe (freshness, POST timing)").await?;
    let scratch = ensure_company(&bin, &env, &pg, &args.data_root.join("perf-scratch-company"), "kerp-perf scratch (bulk COPY)").await?;
    let params = match baseline::pick_params(&pg, company, month_bounds(today()).0).await {
        Ok(p) => Some(p),
        Err(e) => {
            s.errors.push(format!("report parameters: {e:#}"));
            None
        }
    };
    s.params.clone_from(&params);
    let mut ctx =
        Ctx { args, client: client.clone(), pg: pg.clone(), dir: dir.clone(), main, probe, scratch, params, samples: BTreeMap::new() };

    let targets: Vec<metrics::Target> = [
        ("ingest-api", &args.ingest_metrics),
        ("stream-workers", &args.worker_metrics),
        ("query-api", &args.query_metrics),
        ("grpc-api", &args.grpc_metrics),
    ]
    .iter()
    .map(|(n, a)| metrics::Target { service: (*n).to_owned(), url: format!("http://{a}/metrics") })
    .collect();
    let before = metrics::scrape(&client, &targets).await;
    let sampler = resources::Sampler::start(resources::dev_stack_services(&args.data_root.join("run")));

    let load: Vec<Scenario> =
        scenarios.iter().copied().filter(|x| matches!(x, Scenario::Api | Scenario::Realistic | Scenario::Grpc)).collect();
    if !load.is_empty() {
        let date = today();
        let (from, to) = month_bounds(date);
        let probe = match baseline::posted_debits(&pg, ctx.probe.id, from, to).await {
            Ok(debit_before_won) => Some(freshness::Probe::start(
                client.clone(),
                freshness::Config { base_url: args.url.clone(), token: ctx.probe.token.clone(), date, debit_before_won },
            )),
            Err(e) => {
                s.errors.push(format!("freshness probe could not start: {e:#}"));
                None
            }
        };
        let k6_which: Vec<Scenario> = load.iter().copied().filter(|x| *x != Scenario::Grpc).collect();
        if !k6_which.is_empty() {
            k6_scenarios(&mut ctx, &mut s, &k6_which, &sampler).await;
        }
        if load.contains(&Scenario::Grpc) {
            sampler.phase("grpc");
            grpc_scenario(&ctx, &mut s).await;
        }
        sampler.phase("freshness-drain");
        if let Some(p) = probe {
            let f = p.stop().await?;
            if f.never_visible > 0 || !f.post_failures.is_empty() || f.poll_failures > 0 {
                s.errors.push(format!(
                    "freshness probe: {} of {} posted vouchers never showed within {} s, post failures {:?}, {} failed polls",
                    f.never_visible,
                    f.posted,
                    freshness::VISIBLE_SECONDS_MAX,
                    f.post_failures,
                    f.poll_failures
                ));
            }
            s.freshness = Some(f);
        }
    }
    if scenarios.contains(&Scenario::Db) {
        sampler.phase("db");
        if let Err(e) = db_scenario(&mut ctx, &mut s, &sampler).await {
            s.errors.push(format!("db scenario: {e:#}"));
        }
    }
    grpc_per_1000(&mut s);
    if scenarios.contains(&Scenario::Rebuild) {
        sampler.phase("rebuild");
        rebuild_scenario(&ctx, &mut s).await;
    }
    sampler.phase("end");
    let after = metrics::scrape(&client, &targets).await;
    s.resources = sampler.stop().await?;
    for (name, u) in &s.resources.services {
        let build = u.peak_pss_mib_by_phase.get(resources::BASELINE_INDEXES_PHASE).copied().unwrap_or(0.0);
        if build > u.peak_pss_mib {
            s.notes.push(format!(
                "{name} peaked at {build:.1} MiB PSS while the baseline's indexes were built (more than its {:.1} MiB otherwise). \
                 The build is left out of the peaks: it is the baseline's setup, not K-ERP's workload.",
                u.peak_pss_mib
            ));
        }
    }
    s.machine.load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned();

    let mdir = dir.join("metrics");
    std::fs::create_dir_all(&mdir)?;
    for (svc, e) in before.errors.iter().chain(&after.errors) {
        s.errors.push(format!("metrics of {svc} not scraped: {e}"));
    }
    for (svc, text) in &after.texts {
        std::fs::write(mdir.join(format!("{svc}.after.txt")), text)?;
        if let Some(b) = before.texts.get(svc) {
            std::fs::write(mdir.join(format!("{svc}.before.txt")), b)?;
            let d = metrics::diff(b, text);
            for v in d.values.iter().filter(|v| v.series.starts_with("http_requests_total") && v.series.contains("status=\"5")) {
                if v.delta.unwrap_or(0.0) > 0.0 {
                    s.server_errors.insert(format!("{svc} {}", v.series), v.delta.unwrap_or(0.0));
                }
            }
            s.metrics.insert(svc.clone(), d);
        }
    }
    if !s.server_errors.is_empty() {
        s.errors.push(format!("the services answered 5xx during the run: {:?}", s.server_errors));
    }

    s.checks = goals::threshold_checks(&thresholds, &s);
    s.checks.extend(goals::goal_checks(&s));
    s.finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match plots(&dir, &s, &ctx.samples) {
        Ok(files) => s.notes.push(format!("Plots: {}.", files.join(", "))),
        Err(e) => s.errors.push(format!("plots: {e:#}")),
    }
    let mut samples = ctx.samples.clone();
    if let Some(f) = &s.freshness {
        samples.insert("freshness".into(), f.samples_ms.clone());
    }
    std::fs::write(dir.join("samples.json"), serde_json::to_string(&samples)?)?;
    std::fs::write(dir.join("resources.json"), serde_json::to_string_pretty(&s.resources)?)?;
    let mut json = serde_json::to_value(&s)?;
    // Every per-second sample is in resources.json; the summary keeps the aggregates.
    if let Some(r) = json.pointer_mut("/resources/samples") {
        *r = serde_json::Value::Array(Vec::new());
    }
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(dir.join("summary.md"), report::markdown(&s))?;

    println!("\n{}", report::checks_table(&s.checks));
    for c in &s.reports {
        println!(
            "{:<15} ours p50/p95/p99 {:.2}/{:.2}/{:.2} ms, baseline {:.2}/{:.2}/{:.2} ms, ours/baseline at p99 {}",
            c.name,
            c.ours.dist.p50,
            c.ours.dist.p95,
            c.ours.dist.p99,
            c.theirs.dist.p50,
            c.theirs.dist.p95,
            c.theirs.dist.p99,
            c.ratio_p99.map_or_else(|| "-".into(), |r| format!("{r:.3}"))
        );
    }
    for (k, v) in &s.posting.per_1000_ms {
        println!("per 1,000 vouchers: {k}: {v:.0} ms");
    }
    if let Some(f) = &s.freshness {
        println!(
            "freshness: {} samples, p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            f.dist.count, f.dist.p50, f.dist.p95, f.dist.p99, f.dist.max
        );
    }
    for e in &s.errors {
        println!("ERROR: {e}");
    }
    let breaches = s.breaches().len();
    println!("[perf] {} errors, {breaches} threshold breaches; {}", s.errors.len(), dir.join("summary.md").display());
    let ok = (s.errors.is_empty() || args.allow_errors) && (breaches == 0 || !args.fail_on_regression);
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rebuild_line() {
        let out = "[dev] …\nrebuild: 1200 messages, 2400 ledger lines folded in 1.5 s (1600 lines/s); reconciled exact; swapped in\n";
        assert_eq!(parse_rebuild(out), Some((2400.0, 1600.0)));
        assert_eq!(parse_rebuild("nothing"), None);
    }

    #[test]
    fn all_expands_and_rebuild_waits_for_medium() {
        let args = |size: &str, scenario: &str, rebuild: bool| {
            let mut argv = vec!["run", "--size", size, "--scenario", scenario];
            if rebuild {
                argv.push("--rebuild");
            }
            parse_args::<RunArgs>("run", &argv[1..].iter().map(|x| (*x).to_owned()).collect::<Vec<_>>()).unwrap()
        };
        use Scenario::{Api, Db, Grpc, Realistic, Rebuild};
        assert_eq!(args("small", "all", false).scenarios(), vec![Api, Realistic, Grpc, Db]);
        assert_eq!(args("medium", "all", false).scenarios(), vec![Api, Realistic, Grpc, Db, Rebuild]);
        assert_eq!(args("small", "db,api", true).scenarios(), vec![Api, Db, Rebuild]);
    }

    #[test]
    fn month_bounds_cover_the_month() {
        let d = NaiveDate::from_ymd_opt(2024, 2, 10).unwrap();
        assert_eq!(month_bounds(d), (NaiveDate::from_ymd_opt(2024, 2, 1).unwrap(), NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()));
        let d = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
        assert_eq!(month_bounds(d).1, d);
    }
}
