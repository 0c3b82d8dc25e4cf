//! The account ledger's first read after a posting to it. A voucher to the measured page's account, dated on the
//! range's last day, goes in through the REST API; once the trial balance (which holds no answers) shows it and the
//! held answers' staleness bound has passed, the page is read once, as a client would ask for it, and timed.
//!
//! Why: query-api holds ledger pages until a posting reaches their account (query-api/src/answers.rs), so a page
//! asked for again while nothing changed says nothing about the read that follows a change. This one does: whether
//! it costs its ClickHouse reads or finds the page read again already, and whether it shows the posting.
//!
//! The baseline's query is timed the same way in each sample, once, after the same idle wait. A read after an idle
//! pause costs more than one of a back-to-back series on this machine (measured: a held page 0.14 ms back to back,
//! 0.6 ms at three a second, through nginx), so timing only our side after the pause would not be a fair comparison.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::NaiveDate;

use super::bench::Answer;

/// Most vouchers one run posts for this measurement (one sample each). Each stays in the measured company's books,
/// so the count is kept small.
pub const SAMPLES_MAX: usize = 50;

/// How long after the trial balance shows a posting the page is read, in milliseconds: query-api's bound on how long
/// a held page may trail the other reports (`SIGNALS_AGE_MAX_MS`, three poll intervals), so the read must show it.
pub const READ_AFTER_MS: u64 = 300;

/// Longest wait for the trial balance to show a posting, in seconds.
const SHOWN_WITHIN_S: u64 = 30;

/// What the reads found besides their latency.
#[derive(Debug, Default, Clone, Copy)]
pub struct Found {
    /// Reads whose page counted the posting.
    pub shown: usize,
    /// Reads answered from memory (an `Age` header): the page had been read again before it was asked for.
    pub held: usize,
}

/// What one measurement needs: the page's and the trial balance's URLs, where to post, with whose token, and the
/// voucher's account and date.
pub struct Setup<'a> {
    pub client: &'a reqwest::Client,
    pub token: &'a str,
    pub ledger_url: &'a str,
    pub trial_balance_url: &'a str,
    pub post_url: &'a str,
    pub account_code: &'a str,
    pub date: NaiveDate,
}

async fn text(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<(String, bool)> {
    let r = client.get(url).bearer_auth(token).send().await?;
    let held = r.headers().contains_key("age");
    let status = r.status();
    let body = r.text().await?;
    if !status.is_success() {
        bail!("{url}: {status}: {}", &body[..body.len().min(300)]);
    }
    Ok((body, held))
}

fn total(page: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = serde_json::from_str(page)?;
    v["pagination"]["total"].as_u64().context("no pagination.total in the ledger page")
}

/// One sample: the page read twice (held, then served from memory, as a page in use is), a voucher posted, the trial
/// balance waited for, [`READ_AFTER_MS`], and the timed read; then [`READ_AFTER_MS`] again and the baseline's query,
/// timed. Returns our read's milliseconds and answer, what it found, and the baseline's milliseconds and answer.
async fn sample<B, Fut>(s: &Setup<'_>, i: usize, baseline: &B) -> anyhow::Result<((f64, Answer), Found, (f64, Answer))>
where
    B: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let before = total(&text(s.client, s.ledger_url, s.token).await?.0)?;
    text(s.client, s.ledger_url, s.token).await?;
    let (tb_before, _) = text(s.client, s.trial_balance_url, s.token).await?;
    // The other side of the voucher: 1101 (cash) is in every company's chart, 1102 when the page is cash's own.
    let other = if s.account_code == "1101" { "1102" } else { "1101" };
    let body = serde_json::json!({
        "voucher_date": s.date.to_string(),
        "voucher_type": "general",
        "description": format!("kerp-perf: the ledger's first read after a posting ({i})"),
        "lines": [{"account_code": s.account_code, "debit_amount": 10_000}, {"account_code": other, "credit_amount": 10_000}]
    });
    let r = s.client.post(s.post_url).bearer_auth(s.token).json(&body).send().await?;
    if r.status().as_u16() != 201 {
        let status = r.status();
        bail!("POST {}: {status}: {}", s.post_url, r.text().await.unwrap_or_default());
    }
    let deadline = Instant::now() + Duration::from_secs(SHOWN_WITHIN_S);
    while text(s.client, s.trial_balance_url, s.token).await?.0 == tb_before {
        if Instant::now() > deadline {
            bail!("the trial balance did not show the posting within {SHOWN_WITHIN_S} s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(READ_AFTER_MS)).await;
    let t = Instant::now();
    let answer = text(s.client, s.ledger_url, s.token).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let (page, held) = answer?;
    let found = Found { shown: usize::from(total(&page)? == before + 1), held: usize::from(held) };
    tokio::time::sleep(Duration::from_millis(READ_AFTER_MS)).await;
    let t = Instant::now();
    let theirs = baseline().await;
    Ok(((ms, Ok("200".to_owned())), found, (t.elapsed().as_secs_f64() * 1000.0, theirs)))
}

/// Our reads' samples, the baseline's, what our reads found, and the wall time in seconds.
pub type Samples = (Vec<(f64, Answer)>, Vec<(f64, Answer)>, Found, f64);

/// Takes `count` samples (at most [`SAMPLES_MAX`]) one after the other, timing `baseline` in each too. A sample
/// that fails is kept as a failed request of ours with its error (and counts as not showing the posting).
pub async fn measure<B, Fut>(s: &Setup<'_>, count: usize, baseline: B) -> Samples
where
    B: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let started = Instant::now();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut found = Found::default();
    for i in 0..count.min(SAMPLES_MAX) {
        let t = Instant::now();
        match sample(s, i, &baseline).await {
            Ok((o, f, b)) => {
                ours.push(o);
                theirs.push(b);
                found.shown += f.shown;
                found.held += f.held;
            }
            Err(e) => ours.push((t.elapsed().as_secs_f64() * 1000.0, Err(("error".to_owned(), format!("{e:#}"))))),
        }
    }
    (ours, theirs, found, started.elapsed().as_secs_f64())
}
