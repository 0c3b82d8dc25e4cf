//! The freshness probe: while the load runs, it posts a voucher to a company of its own every
//! [`POST_INTERVAL_MS`] and polls query-api's trial balance every [`POLL_INTERVAL_MS`] until the voucher shows; each
//! voucher's time from its 201 to the first trial balance that includes it is one sample.
//!
//! A voucher "shows" when the month's `period_debit` total reaches the sum Postgres held before the probe started
//! plus every probe voucher up to it. A company's events are folded in their order, so the total only grows through
//! those sums, and one poll settles every voucher it covers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::stats::Dist;

/// Milliseconds between two probe posts.
pub const POST_INTERVAL_MS: u64 = 200;
/// Milliseconds between two trial-balance polls while a posted voucher is not visible yet.
pub const POLL_INTERVAL_MS: u64 = 15;
/// Seconds a posted voucher may stay invisible before it is reported as never seen.
pub const VISIBLE_SECONDS_MAX: u64 = 30;
/// Won per probe voucher (debit 5212, credit 1101).
const PROBE_AMOUNT_WON: i64 = 1_000;

/// What the probe needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub base_url: String,
    pub token: String,
    /// The probe vouchers' date; the trial balance of its month is polled.
    pub date: NaiveDate,
    /// `period_debit` of that month in Postgres before the probe's first post.
    pub debit_before_won: i64,
}

/// The distribution of 201 → visible, and everything that went wrong.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Freshness {
    pub posted: usize,
    pub visible: usize,
    /// Posted (201) but not in the trial balance within [`VISIBLE_SECONDS_MAX`].
    pub never_visible: usize,
    /// Probe posts that did not get a 201, by status (or `error`).
    pub post_failures: BTreeMap<String, u64>,
    /// Polls that failed (non-200 or no answer).
    pub poll_failures: u64,
    pub polls: u64,
    pub dist: Dist,
    /// Every sample, milliseconds, in posting order.
    pub samples_ms: Vec<f64>,
}

struct Pending {
    index: usize,
    /// The month's debit total once this voucher is folded.
    total_won: i64,
    acknowledged: Instant,
}

#[derive(Default)]
struct Shared {
    pending: Vec<Pending>,
    samples: BTreeMap<usize, f64>,
    out: Freshness,
}

/// A running probe.
pub struct Probe {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Freshness>,
}

impl Probe {
    /// Starts posting and polling.
    #[must_use]
    pub fn start(client: reqwest::Client, config: Config) -> Probe {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run(client, config, stopped));
        Probe { stop, task }
    }

    /// Stops posting, waits for the vouchers in flight to show (at most [`VISIBLE_SECONDS_MAX`]), and returns the
    /// distribution.
    ///
    /// # Errors
    /// The probe task panicked.
    pub async fn stop(self) -> anyhow::Result<Freshness> {
        let _ = self.stop.send(true);
        Ok(self.task.await?)
    }
}

async fn run(client: reqwest::Client, c: Config, stopped: tokio::sync::watch::Receiver<bool>) -> Freshness {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let poster = post_loop(client.clone(), c.clone(), shared.clone(), stopped.clone());
    let poller = poll_loop(client, c, shared.clone(), stopped);
    tokio::join!(poster, poller);
    let mut s = shared.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default();
    s.out.never_visible = s.pending.len();
    s.out.samples_ms = s.samples.values().copied().collect();
    s.out.visible = s.out.samples_ms.len();
    s.out.dist = Dist::of(&s.out.samples_ms);
    s.out
}

fn body(date: NaiveDate) -> serde_json::Value {
    serde_json::json!({
        "voucher_date": date.to_string(),
        "voucher_type": "general",
        "description": "kerp-perf freshness probe",
        "lines": [
            {"account_code": "5212", "debit_amount": PROBE_AMOUNT_WON},
            {"account_code": "1101", "credit_amount": PROBE_AMOUNT_WON}
        ]
    })
}

async fn post_loop(client: reqwest::Client, c: Config, shared: Arc<Mutex<Shared>>, stopped: tokio::sync::watch::Receiver<bool>) {
    let url = format!("{}/api/v1/vouchers", c.base_url);
    let mut total = c.debit_before_won;
    let mut tick = tokio::time::interval(Duration::from_millis(POST_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for index in 0.. {
        tick.tick().await;
        if *stopped.borrow() {
            return;
        }
        let r = client.post(&url).bearer_auth(&c.token).json(&body(c.date)).timeout(Duration::from_secs(10)).send().await;
        let acknowledged = Instant::now();
        let Ok(mut s) = shared.lock() else { return };
        s.out.posted += 1;
        match r {
            Ok(resp) if resp.status().as_u16() == 201 => {
                total += PROBE_AMOUNT_WON;
                s.pending.push(Pending { index, total_won: total, acknowledged });
            }
            Ok(resp) => *s.out.post_failures.entry(resp.status().as_u16().to_string()).or_default() += 1,
            Err(_) => *s.out.post_failures.entry("error".to_owned()).or_default() += 1,
        }
    }
}

/// The month's `totals.period_debit` of a trial-balance answer.
fn period_debit(answer: &serde_json::Value) -> Option<i64> {
    let v = answer.pointer("/data/totals/period_debit")?;
    #[allow(clippy::cast_possible_truncation)]
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

async fn poll_loop(client: reqwest::Client, c: Config, shared: Arc<Mutex<Shared>>, stopped: tokio::sync::watch::Receiver<bool>) {
    let url = format!("{}/api/v1/reports/trial-balance?year={}&month={}", c.base_url, c.date.year(), c.date.month());
    let mut stop_seen: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        let idle = shared.lock().map(|s| s.pending.is_empty()).unwrap_or(true);
        if *stopped.borrow() {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if idle || since.elapsed() > Duration::from_secs(VISIBLE_SECONDS_MAX) {
                return;
            }
        }
        if idle {
            continue;
        }
        let r = async {
            client.get(&url).bearer_auth(&c.token).timeout(Duration::from_secs(10)).send().await?.error_for_status()?.json().await
        }
        .await;
        let seen_at = Instant::now();
        let Ok(mut s) = shared.lock() else { return };
        s.out.polls += 1;
        let total = match r.as_ref().ok().and_then(period_debit) {
            Some(t) => t,
            None => {
                s.out.poll_failures += 1;
                continue;
            }
        };
        let (shown, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut s.pending).into_iter().partition(|p| p.total_won <= total);
        s.pending = waiting;
        // A voucher older than the limit is given up: it stays in `pending` and is counted as never visible.
        for p in shown {
            let ms = seen_at.duration_since(p.acknowledged).as_secs_f64() * 1000.0;
            s.samples.insert(p.index, ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_month_debit_total() {
        let v = serde_json::json!({"data": {"totals": {"period_debit": 12_000, "period_credit": 12_000}}});
        assert_eq!(period_debit(&v), Some(12_000));
        assert_eq!(period_debit(&serde_json::json!({"data": {}})), None);
    }
}
