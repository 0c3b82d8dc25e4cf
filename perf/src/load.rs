//! The load: fresh companies in, voucher posts out. `companies` runs `ingest-api create-company` once per company and
//! writes their ids and tokens; `run` posts vouchers for them through nginx at a fixed rate with bounded concurrency,
//! mixes in bad requests that must be refused with a 4xx, and on SIGTERM (or after its longest duration) waits for
//! what is in flight and writes every request's record as JSON.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::record::{Company, Kind, LoadResult, Request};

/// A request that has no answer after this long counts as failed (status 0). It is well above any healthy latency
/// and short enough that a hang during an outage shows up as one.
const REQUEST_TIMEOUT_MS_MAX: u64 = 10_000;
/// A load stops by itself after this long even if nobody sends SIGTERM, so a broken script cannot leave it running.
const DURATION_SECONDS_MAX: u64 = 1_800;
/// Accounts of the default chart (core/src/chart.rs) that good vouchers post to.
const ACCOUNT_CODES: &[&str] = &["1101", "1102", "1103", "1201", "2101", "4101", "5101", "5201", "5212", "5213"];

#[derive(clap::Args)]
pub struct CompaniesArgs {
    /// How many companies to create.
    #[arg(long, default_value_t = 6)]
    pub count: usize,
    /// The ingest-api binary whose `create-company` makes them (it reads DATABASE_URL and JWT_SECRET from the env).
    #[arg(long)]
    pub ingest_bin: PathBuf,
    /// A label in the companies' names, e.g. the scenario.
    #[arg(long, default_value = "faults")]
    pub label: String,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The public base URL (nginx).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The companies file `companies` wrote.
    #[arg(long)]
    pub companies: PathBuf,
    /// Requests per second, good and bad together.
    #[arg(long, default_value_t = 230)]
    pub rate: u32,
    /// Most requests in flight at once. When all are taken (the service is slow or down) ticks are skipped rather
    /// than queued, so the achieved rate shows the service's capacity and there is no burst after an outage.
    #[arg(long, default_value_t = 24)]
    pub concurrency: usize,
    /// Percent of requests with a bad body (unbalanced, unknown account, malformed JSON).
    #[arg(long, default_value_t = 5)]
    pub bad_percent: u32,
    /// Stop after this many seconds even without SIGTERM (at most `DURATION_SECONDS_MAX`).
    #[arg(long, default_value_t = DURATION_SECONDS_MAX)]
    pub duration_seconds: u64,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn companies(args: &CompaniesArgs) -> anyhow::Result<()> {
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let mut out = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let output = Command::new(&args.ingest_bin)
            .args(["create-company", "--name", &format!("Fault suite {} {stamp} #{i}", args.label)])
            .args(["--admin-email", &format!("faults+{}@perf.kerp.local", Uuid::new_v4())])
            .output()
            .with_context(|| format!("running {}", args.ingest_bin.display()))?;
        if !output.status.success() {
            bail!("create-company failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let v: Value = serde_json::from_slice(&output.stdout).context("create-company printed no JSON")?;
        let company_id = v["company_id"].as_str().context("no company_id")?.parse()?;
        let token = v["token"].as_str().context("no token")?.to_owned();
        out.push(Company { company_id, token });
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&out)?)?;
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A body of the given kind. Good ones are balanced, on 2025 dates spread over the year, with two or three lines.
fn body(kind: Kind, rng: &mut impl Rng) -> String {
    let date = format!("2025-{:02}-{:02}", rng.gen_range(1..=12), rng.gen_range(1..=28));
    let code = |rng: &mut dyn rand::RngCore| ACCOUNT_CODES[rng.gen_range(0..ACCOUNT_CODES.len())];
    let a: i64 = rng.gen_range(1_000..10_000_000);
    let b: i64 = rng.gen_range(1_000..1_000_000);
    let line = |code: &str, side: &str, amount: i64| json!({"account_code": code, side: amount, "description": "fault suite"});
    let lines = match kind {
        Kind::Good if rng.gen_bool(0.5) => {
            vec![line(code(rng), "debit_amount", a), line(code(rng), "debit_amount", b), line(code(rng), "credit_amount", a + b)]
        }
        Kind::Good => vec![line(code(rng), "debit_amount", a), line(code(rng), "credit_amount", a)],
        Kind::Unbalanced => vec![line(code(rng), "debit_amount", a), line(code(rng), "credit_amount", a - 1)],
        Kind::UnknownAccount => vec![line("9999", "debit_amount", a), line(code(rng), "credit_amount", a)],
        Kind::MalformedJson => return format!(r#"{{"voucher_date":"{date}","lines":[{{"account_code":"1101","#),
    };
    json!({"voucher_date": date, "voucher_type": "general", "description": "fault suite", "lines": lines}).to_string()
}

fn pick_kind(bad_percent: u32, rng: &mut impl Rng) -> Kind {
    if rng.gen_range(0..100) >= bad_percent {
        return Kind::Good;
    }
    match rng.gen_range(0..3) {
        0 => Kind::Unbalanced,
        1 => Kind::UnknownAccount,
        _ => Kind::MalformedJson,
    }
}

async fn post(client: &reqwest::Client, url: &str, company: &Company, body: String) -> (u16, Option<Uuid>) {
    let sent =
        client.post(url).bearer_auth(&company.token).header(reqwest::header::CONTENT_TYPE, "application/json").body(body).send().await;
    let Ok(res) = sent else { return (0, None) };
    let status = res.status().as_u16();
    // A 201 whose body cannot be read is not an acknowledgement the client could rely on, so it counts as no answer.
    match res.text().await {
        Ok(text) if status == 201 => {
            let id = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["data"]["id"].as_str().and_then(|s| s.parse().ok()));
            if id.is_some() {
                (status, id)
            } else {
                (0, None)
            }
        }
        Ok(_) => (status, None),
        Err(_) => (0, None),
    }
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let companies: Vec<Company> = serde_json::from_slice(&std::fs::read(&args.companies)?).context("reading the companies file")?;
    if companies.is_empty() || args.rate == 0 || args.concurrency == 0 {
        bail!("need at least one company, a rate and a concurrency");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS_MAX))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("{}/api/v1/vouchers", args.url.trim_end_matches('/'));
    let records = Arc::new(Mutex::new(Vec::<Request>::new()));
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = tokio::time::sleep(Duration::from_secs(args.duration_seconds.min(DURATION_SECONDS_MAX)));
    tokio::pin!(deadline);
    let started_ms = now_ms();
    let mut n: usize = 0;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            () = &mut deadline => break,
            _ = tick.tick() => {}
        }
        // Waiting for a slot here (not in the task) is what turns a saturated service into skipped ticks.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s?,
            _ = term.recv() => break,
        };
        let (kind, company, text) = {
            let mut rng = rand::thread_rng();
            let kind = pick_kind(args.bad_percent, &mut rng);
            (kind, n % companies.len(), body(kind, &mut rng))
        };
        n += 1;
        let (client, url, records, c) = (client.clone(), url.clone(), records.clone(), companies[company].clone());
        tokio::spawn(async move {
            let start_ms = now_ms();
            let t0 = Instant::now();
            let (status, id) = post(&client, &url, &c, text).await;
            let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
            records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Request {
                start_ms,
                latency_ms,
                status,
                kind,
                company,
                id,
            });
            drop(slot);
        });
    }
    // Every slot back means every request has its answer (or its timeout) recorded.
    let all = u32::try_from(args.concurrency)?;
    let _drained = slots.acquire_many(all).await?;
    let ended_ms = now_ms();
    let mut requests = std::mem::take(&mut *records.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    requests.sort_by_key(|r| r.start_ms);
    let secs = ((ended_ms - started_ms) as f64 / 1000.0).max(0.001);
    eprintln!("[load] {} requests in {secs:.1} s ({:.0}/s)", requests.len(), requests.len() as f64 / secs);
    let result = LoadResult {
        url: args.url.clone(),
        rate_per_second: args.rate,
        concurrency: args.concurrency,
        started_ms,
        ended_ms,
        companies,
        requests,
    };
    std::fs::write(&args.out, serde_json::to_vec(&result)?)?;
    Ok(())
}
