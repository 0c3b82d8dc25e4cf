//! RSS and CPU of every service, sampled from `/proc` once a second while the scenarios run.
//!
//! Each tick reads every process once and assigns it to the first service whose rule matches: a pid file of the dev
//! stack (the apps; so a test's or another checkout's ingest-api is not counted), or a process name or command line
//! (the stores, nginx and k6). A service with several processes (Postgres' backends, nginx's workers, ClickHouse's
//! watchdog) is summed. The machine's total CPU is sampled too, so the summary can say how much of it went elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Milliseconds between two samples.
pub const SAMPLE_INTERVAL_MS: u64 = 1_000;

/// How a service's processes are found.
#[derive(Debug, Clone)]
pub enum Rule {
    /// The pids in these files (the dev stack's `.data/run/*.pid`), or, when none is readable, processes named so.
    PidFiles(Vec<PathBuf>, &'static str),
    /// Processes whose name (`/proc/<pid>/comm`, at most 15 bytes) starts with this.
    Comm(&'static str),
    /// Processes whose command line contains every one of these.
    Cmdline(Vec<&'static str>),
    /// This process (the runner: its probes, HTTP clients and in-process gRPC load).
    SelfProcess,
}

/// A service and the rule that finds it.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub rule: Rule,
}

/// The services of the dev stack, with the pid files under `run_dir` (`.data/run`).
#[must_use]
pub fn dev_stack_services(run_dir: &std::path::Path) -> Vec<Service> {
    let pids = |names: &[&str]| names.iter().map(|n| run_dir.join(format!("{n}.pid"))).collect::<Vec<_>>();
    vec![
        Service { name: "postgres".into(), rule: Rule::Comm("postgres") },
        Service { name: "kafka".into(), rule: Rule::Cmdline(vec!["java", "kafka.Kafka"]) },
        Service { name: "clickhouse".into(), rule: Rule::Comm("clickhouse") },
        Service { name: "ingest-api".into(), rule: Rule::PidFiles(pids(&["ingest", "ingest2"]), "ingest-api") },
        Service { name: "query-api".into(), rule: Rule::PidFiles(pids(&["query"]), "query-api") },
        // The live worker by its pid file; a `stream-workers rebuild` is a process of its own, listed apart.
        Service { name: "stream-workers".into(), rule: Rule::PidFiles(pids(&["worker", "worker2"]), "stream-workers") },
        Service { name: "stream-workers rebuild".into(), rule: Rule::Cmdline(vec!["stream-workers", "rebuild"]) },
        Service { name: "grpc-api".into(), rule: Rule::PidFiles(pids(&["grpc"]), "grpc-api") },
        Service { name: "nginx".into(), rule: Rule::Comm("nginx") },
        Service { name: "k6".into(), rule: Rule::Comm("k6") },
        Service { name: "kerp-perf (runner)".into(), rule: Rule::SelfProcess },
    ]
}

/// What was seen of one service over the whole sampling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Ticks at which at least one of its processes was alive.
    pub samples: usize,
    /// The most processes seen at one tick.
    pub processes_max: usize,
    /// RSS summed over the service's processes. For several processes this counts shared memory (Postgres' shared
    /// buffers) once per process that touched it, so [`Usage::peak_pss_mib`] is the honest sum there.
    pub peak_rss_mib: f64,
    pub mean_rss_mib: f64,
    /// PSS (shared pages divided among the processes sharing them) summed over the service's processes.
    pub peak_pss_mib: f64,
    /// Percent of one core, averaged over the ticks it was alive (200% = both cores of this machine).
    pub mean_cpu_pct: f64,
    pub peak_cpu_pct: f64,
    /// Mean CPU by phase (scenario), over the ticks of that phase it was alive.
    pub mean_cpu_pct_by_phase: BTreeMap<String, f64>,
    pub peak_rss_mib_by_phase: BTreeMap<String, f64>,
    /// As [`Usage::peak_pss_mib`], by phase.
    #[serde(default)]
    pub peak_pss_mib_by_phase: BTreeMap<String, f64>,
}

/// The phase of the baseline's index build (`baseline::create_indexes`).
pub const BASELINE_INDEXES_PHASE: &str = "baseline-indexes";

/// Phases the peaks and means of a [`Usage`] leave out (they are still in its `*_by_phase` maps): work done for the
/// baseline's sake, not by K-ERP's workload. The baseline's indexes are built over the company's whole books before
/// its queries run and dropped after; on `large` that build alone took one Postgres backend to 158 MiB (29 Nov), more
/// than anything K-ERP asks of Postgres.
pub const BASELINE_PHASES: [&str; 1] = [BASELINE_INDEXES_PHASE];

/// One tick of one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub t_seconds: f64,
    pub phase: String,
    pub service: String,
    pub rss_mib: f64,
    pub pss_mib: f64,
    pub cpu_pct: f64,
    pub processes: usize,
}

/// The sampler's result: per-service usage, the machine's CPU and every sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub services: BTreeMap<String, Usage>,
    /// The whole machine's busy CPU, percent of one core, mean over the sampling (from `/proc/stat`).
    pub machine_mean_cpu_pct: f64,
    /// The part of it no listed service used: builds, tests and tools of the people sharing the machine.
    pub other_mean_cpu_pct: f64,
    /// The busiest processes outside the stack over the sampling, by name: mean percent of one core.
    pub others: Vec<(String, f64)>,
    pub samples: Vec<Sample>,
}

/// A running sampler; [`Sampler::stop`] ends it and returns what it saw.
pub struct Sampler {
    phase: Arc<Mutex<String>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Report>,
}

impl Sampler {
    /// Starts sampling `services` every [`SAMPLE_INTERVAL_MS`].
    #[must_use]
    pub fn start(services: Vec<Service>) -> Sampler {
        let phase = Arc::new(Mutex::new("setup".to_owned()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let phase_of_task = phase.clone();
        let task = tokio::task::spawn_blocking(move || {
            let handle = tokio::runtime::Handle::current();
            let mut state = State::new(services);
            loop {
                let label = phase_of_task.lock().map(|p| p.clone()).unwrap_or_default();
                state.tick(&label);
                let done = handle.block_on(async {
                    tokio::select! {
                        _ = stopped.changed() => true,
                        () = tokio::time::sleep(Duration::from_millis(SAMPLE_INTERVAL_MS)) => false,
                    }
                });
                if done {
                    return state.report();
                }
            }
        });
        Sampler { phase, stop, task }
    }

    /// Labels the samples from now on with this phase.
    pub fn phase(&self, name: &str) {
        if let Ok(mut p) = self.phase.lock() {
            name.clone_into(&mut p);
        }
    }

    /// Stops sampling.
    ///
    /// # Errors
    /// The sampling task panicked.
    pub async fn stop(self) -> anyhow::Result<Report> {
        let _ = self.stop.send(true);
        Ok(self.task.await?)
    }
}

/// A process as read from `/proc` at one tick.
struct Proc {
    pid: u32,
    comm: String,
    cmdline: String,
    /// utime + stime, clock ticks.
    cpu_ticks: u64,
    rss_kib: u64,
}

/// Processes outside the stack listed in [`Report::others`].
const OTHERS_MAX: usize = 8;

/// PSS of a process, KiB (`/proc/<pid>/smaps_rollup`); 0 when unreadable.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0)
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces; the fields after the last ')' are fixed.
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: state (index 0), …, utime is field 14 of stat, so index 11 here; stime index 12.
    let cpu_ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default();
    Some(Proc { pid, comm, cmdline, cpu_ticks, rss_kib })
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc").map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default()
}

/// The machine's (busy, total) CPU jiffies from the first line of `/proc/stat`.
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Clock ticks per second (`getconf CLK_TCK`); Linux uses 100 everywhere that matters, which is the fallback.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

struct State {
    services: Vec<Service>,
    started: Instant,
    ticks_per_second: f64,
    cores: f64,
    last: Option<Instant>,
    /// CPU ticks of every pid at the last tick.
    last_ticks: HashMap<u32, u64>,
    last_machine: Option<(u64, u64)>,
    machine_pct: Vec<f64>,
    service_pct: Vec<f64>,
    samples: Vec<Sample>,
    /// CPU ticks of processes outside the stack since the first tick, by name.
    other_ticks: HashMap<String, u64>,
    /// Seconds from the first tick to the last.
    span_seconds: f64,
}

impl State {
    fn new(services: Vec<Service>) -> State {
        let cores = std::thread::available_parallelism().map_or(1.0, |n| f64::from(u32::try_from(n.get()).unwrap_or(1)));
        State {
            services,
            started: Instant::now(),
            ticks_per_second: clock_ticks(),
            cores,
            last: None,
            last_ticks: HashMap::new(),
            last_machine: None,
            machine_pct: Vec::new(),
            service_pct: Vec::new(),
            samples: Vec::new(),
            other_ticks: HashMap::new(),
            span_seconds: 0.0,
        }
    }

    fn owner(&self, p: &Proc, pid_files: &[Vec<u32>]) -> Option<usize> {
        let me = std::process::id();
        self.services.iter().enumerate().position(|(i, s)| match &s.rule {
            Rule::PidFiles(_, comm) => {
                if pid_files[i].is_empty() {
                    p.comm.starts_with(comm) && !p.cmdline.contains(" rebuild")
                } else {
                    pid_files[i].contains(&p.pid)
                }
            }
            Rule::Comm(c) => p.comm.starts_with(c),
            Rule::Cmdline(parts) => parts.iter().all(|x| p.cmdline.contains(x)),
            Rule::SelfProcess => p.pid == me,
        })
    }

    fn tick(&mut self, phase: &str) {
        let now = Instant::now();
        let elapsed = self.last.map(|l| now.duration_since(l).as_secs_f64());
        let pid_files: Vec<Vec<u32>> = self
            .services
            .iter()
            .map(|s| match &s.rule {
                Rule::PidFiles(files, _) => files
                    .iter()
                    .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
                    .filter(|pid: &u32| std::path::Path::new(&format!("/proc/{pid}")).exists())
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let mut rss = vec![0_u64; self.services.len()];
        let mut pss = vec![0_u64; self.services.len()];
        let mut ticks = vec![0_u64; self.services.len()];
        let mut count = vec![0_usize; self.services.len()];
        let mut seen = HashMap::new();
        for p in all_pids().into_iter().filter_map(read_proc) {
            seen.insert(p.pid, p.cpu_ticks);
            // A process first seen after the first tick started since the last one: all its ticks are new.
            let before = self.last_ticks.get(&p.pid).copied().unwrap_or(if self.last.is_some() { 0 } else { p.cpu_ticks });
            let Some(i) = self.owner(&p, &pid_files) else {
                *self.other_ticks.entry(p.comm.clone()).or_default() += p.cpu_ticks.saturating_sub(before);
                continue;
            };
            rss[i] += p.rss_kib;
            pss[i] += pss_kib(p.pid);
            count[i] += 1;
            ticks[i] += p.cpu_ticks.saturating_sub(before);
        }
        self.last_ticks = seen;
        let machine = machine_jiffies();
        if let Some(dt) = elapsed {
            self.span_seconds += dt;
        }
        if let (Some(dt), Some((busy, total)), Some((busy0, total0))) = (elapsed, machine, self.last_machine) {
            if total > total0 {
                #[allow(clippy::cast_precision_loss)]
                self.machine_pct.push((busy - busy0) as f64 / (total - total0) as f64 * 100.0 * self.cores);
            }
            let mut sum = 0.0;
            for (i, s) in self.services.iter().enumerate() {
                if count[i] == 0 {
                    continue;
                }
                #[allow(clippy::cast_precision_loss)]
                let cpu = ticks[i] as f64 / self.ticks_per_second / dt * 100.0;
                sum += cpu;
                #[allow(clippy::cast_precision_loss)]
                self.samples.push(Sample {
                    t_seconds: now.duration_since(self.started).as_secs_f64(),
                    phase: phase.to_owned(),
                    service: s.name.clone(),
                    rss_mib: rss[i] as f64 / 1024.0,
                    pss_mib: pss[i] as f64 / 1024.0,
                    cpu_pct: cpu,
                    processes: count[i],
                });
            }
            self.service_pct.push(sum);
        }
        self.last_machine = machine;
        self.last = Some(now);
    }

    fn report(self) -> Report {
        let mean =
            |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / f64::from(u32::try_from(v.len()).unwrap_or(u32::MAX)) };
        let mut services = BTreeMap::new();
        for s in &self.services {
            let all: Vec<&Sample> = self.samples.iter().filter(|x| x.service == s.name).collect();
            if all.is_empty() {
                continue;
            }
            let measured: Vec<&Sample> = all.iter().copied().filter(|x| !BASELINE_PHASES.contains(&x.phase.as_str())).collect();
            let mine = if measured.is_empty() { all.clone() } else { measured };
            let rss: Vec<f64> = mine.iter().map(|x| x.rss_mib).collect();
            let cpu: Vec<f64> = mine.iter().map(|x| x.cpu_pct).collect();
            let mut by_phase: BTreeMap<String, Vec<&Sample>> = BTreeMap::new();
            for x in &all {
                by_phase.entry(x.phase.clone()).or_default().push(x);
            }
            services.insert(
                s.name.clone(),
                Usage {
                    samples: mine.len(),
                    processes_max: mine.iter().map(|x| x.processes).max().unwrap_or(0),
                    peak_rss_mib: rss.iter().copied().fold(0.0, f64::max),
                    mean_rss_mib: mean(&rss),
                    peak_pss_mib: mine.iter().map(|x| x.pss_mib).fold(0.0, f64::max),
                    mean_cpu_pct: mean(&cpu),
                    peak_cpu_pct: cpu.iter().copied().fold(0.0, f64::max),
                    mean_cpu_pct_by_phase: by_phase
                        .iter()
                        .map(|(p, v)| (p.clone(), mean(&v.iter().map(|x| x.cpu_pct).collect::<Vec<_>>())))
                        .collect(),
                    peak_rss_mib_by_phase: by_phase
                        .iter()
                        .map(|(p, v)| (p.clone(), v.iter().map(|x| x.rss_mib).fold(0.0, f64::max)))
                        .collect(),
                    peak_pss_mib_by_phase: by_phase
                        .iter()
                        .map(|(p, v)| (p.clone(), v.iter().map(|x| x.pss_mib).fold(0.0, f64::max)))
                        .collect(),
                },
            );
        }
        let machine = mean(&self.machine_pct);
        let mut others: Vec<(String, u64)> = self.other_ticks.into_iter().filter(|(_, t)| *t > 0).collect();
        others.sort_by_key(|o| std::cmp::Reverse(o.1));
        #[allow(clippy::cast_precision_loss)]
        let others = others
            .into_iter()
            .take(OTHERS_MAX)
            .map(|(name, t)| (name, t as f64 / self.ticks_per_second / self.span_seconds.max(f64::MIN_POSITIVE) * 100.0))
            .collect();
        Report {
            services,
            machine_mean_cpu_pct: machine,
            other_mean_cpu_pct: (machine - mean(&self.service_pct)).max(0.0),
            others,
            samples: self.samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let p = read_proc(std::process::id()).expect("own /proc entry");
        assert!(p.rss_kib > 0);
        assert!(!p.comm.is_empty());
    }

    #[test]
    fn the_runner_is_found_by_its_own_pid() {
        let services = vec![Service { name: "me".into(), rule: Rule::SelfProcess }];
        let mut state = State::new(services);
        state.tick("a");
        state.tick("b");
        let r = state.report();
        let me = &r.services["me"];
        assert_eq!(me.samples, 1);
        assert!(me.peak_rss_mib > 0.0);
        assert!(me.mean_cpu_pct_by_phase.contains_key("b"));
    }

    /// The baseline's index build is left out of a service's peak and mean, and reported by phase.
    #[test]
    fn peaks_leave_the_baseline_phases_out() {
        let mut state = State::new(vec![Service { name: "postgres".into(), rule: Rule::SelfProcess }]);
        let sample = |phase: &str, mib: f64| Sample {
            t_seconds: 0.0,
            phase: phase.into(),
            service: "postgres".into(),
            rss_mib: mib,
            pss_mib: mib / 2.0,
            cpu_pct: 10.0,
            processes: 3,
        };
        state.samples = vec![sample("setup", 100.0), sample(BASELINE_INDEXES_PHASE, 400.0), sample("db", 120.0)];
        let r = state.report();
        let pg = &r.services["postgres"];
        assert_eq!((pg.samples, pg.peak_rss_mib, pg.peak_pss_mib, pg.mean_rss_mib), (2, 120.0, 60.0, 110.0));
        assert_eq!(pg.peak_rss_mib_by_phase[BASELINE_INDEXES_PHASE], 400.0);
        assert_eq!(pg.peak_pss_mib_by_phase[BASELINE_INDEXES_PHASE], 200.0);
        assert_eq!(pg.peak_pss_mib_by_phase["db"], 60.0);

        let mut only = State::new(vec![Service { name: "postgres".into(), rule: Rule::SelfProcess }]);
        only.samples = vec![sample(BASELINE_INDEXES_PHASE, 400.0)];
        assert_eq!(only.report().services["postgres"].peak_rss_mib, 400.0, "with nothing else sampled, the baseline's samples count");
    }
}
