//! Answers of the account ledger held in memory until the company's books change. A ledger request (company, role and
//! URI, as `crate::coalesce` keys it) comes in; if an answer to it is held, and the company's change signal has not
//! moved since that answer was read, the held answer goes out without a ClickHouse read. Otherwise the ledger is read
//! as always, and its answer is held under the signal seen before the read began.
//!
//! Why: a ledger page costs a round of three ClickHouse reads (the company's accounts, its balances, the page; two
//! rounds when the page cannot be guessed before the balances, see `crate::routes`), about 5 ms on this machine
//! whatever the account's size, while the direct-Postgres window query answers a light account (a few hundred lines in
//! the year) in about 1.5 ms.
//! No ClickHouse round trip is fast enough to beat that; an answer that needs none is.
//!
//! **The change signal.** Per company: its fold watermark (`fold_watermarks`, moved by every folded voucher) and its
//! count in `report_changes` (moved by everything else that changes a ledger: master data, a rewritten snapshot),
//! plus the count under the nil id, which a rebuild's swap moves for every company. stream-workers writes
//! each of them only after the rows it covers are durable. A poller here reads them for the companies whose ledgers
//! were asked for lately, every `poll_interval_ms`, and only then.
//!
//! **Why a held answer is never older than the signal says.** An answer is held under the signal of the latest poll
//! that finished before its read began. That poll saw every change counted before it, and every such change was durable
//! before it was counted, so the read saw them all. The answer is served only while the latest poll still shows that
//! same signal, and only while that poll is recent ([`SIGNALS_AGE_MAX_MS`]): a change durable before that poll began
//! moves the signal it read. So a held answer misses at most the changes of the last poll's age, about
//! `poll_interval_ms`, on top of the pipeline's own delay. When polls fail, nothing is served or held. As a last
//! guard against a change that was never counted (a swap whose count failed, a table edited by hand), no answer is
//! served past [`ANSWER_AGE_MAX_MS`].
//!
//! **A watermark that moved past an answer's account.** Most postings touch two accounts of the hundreds a company
//! has, so letting go of every held page of the company on each of them would hold almost nothing while it posts.
//! When a poll shows that only a company's watermark moved, it reads which accounts the events in between posted to,
//! and from which month (`period_balances` is sorted by company and sequence, so that is one short read for all the
//! companies that moved). A held page is read from one account's lines and balances dated up to its range's end,
//! and from that account's row of the chart of accounts ([`LedgerScope`], set by the route). If no event in between
//! posted to that account on or before that day, the page is what a read now would give, and it is held on under
//! the new signal. Anything else (the count moved, that read failed, the answer has no scope, the span is longer
//! than [`TOUCHED_SEQ_SPAN_MAX`]) lets go. Invoices count nothing (`sink::unsequenced_changes`): no ledger reads them.
//!
//! **Refreshed before it is asked for again.** A page let go because its account was posted to, and that a client was
//! served from memory within [`REFRESH_SERVED_WITHIN_MS`], is read again by the poller at once, through the same
//! route, with the token it was first asked with, and held under the new signal. So the first client to ask for it
//! after a posting finds it read already (or joins the read in flight, see `crate::coalesce`), instead of paying for
//! its ClickHouse reads itself. At most [`REFRESHES_PER_POLL_MAX`] pages are refreshed per poll, the most
//! recently served first, and at most [`REFRESHES_IN_FLIGHT_MAX`] at once; they take the same request slots as
//! clients' reads. A refresh does not keep its company watched: a page nobody reads stops being refreshed.
//!
//! What is held: 200 answers only, bounded by [`ANSWERS_HELD_BYTES_MAX`] and [`ANSWERS_HELD_MAX`], least recently used
//! let go first. A request with `Cache-Control: no-cache` is read afresh (and its answer held). A held answer carries
//! an `Age` header, as an HTTP cache's would.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::Instrument;
use uuid::Uuid;

use crate::coalesce::{Answer, Key};
use crate::store::{self, SignalRow};

/// Most bytes of answers held, all companies together. A ledger page of 200 lines is about 60 KiB of JSON, so this
/// holds a few hundred pages.
pub const ANSWERS_HELD_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Most answers held, whatever their size.
pub const ANSWERS_HELD_MAX: usize = 4096;

/// Longest an answer is served after its read, in milliseconds, even while the signal stands still: the bound on a
/// change that was never counted.
pub const ANSWER_AGE_MAX_MS: u64 = 30_000;

/// Longest a poll's signals are trusted after it began, in three poll intervals at least: one slow or failed poll
/// does not stop the serving, two more do.
pub const SIGNALS_AGE_MAX_MS: u64 = 300;

/// Most sequence numbers between a held answer's signal and a poll's that are looked through for the accounts they
/// posted to; the company's answers further behind are let go instead. It bounds the rows that read sums: at 1,000
/// vouchers a second, [`ANSWER_AGE_MAX_MS`] is 30,000 of them.
pub const TOUCHED_SEQ_SPAN_MAX: i64 = 100_000;

/// Most pages one poll refreshes (see the module documentation); the rest are read when next asked for.
pub const REFRESHES_PER_POLL_MAX: usize = 8;

/// Most refreshes in flight at once; a poll that finds none free refreshes nothing.
pub const REFRESHES_IN_FLIGHT_MAX: usize = 4;

/// A page let go is refreshed only if a client was served it from memory within this many milliseconds.
pub const REFRESH_SERVED_WITHIN_MS: u64 = WATCH_IDLE_MS;

/// Most companies whose signals one poll reads; the least recently asked for are dropped past it.
pub const WATCHED_COMPANIES_MAX: usize = 1024;

/// How long a company's signal is still polled after its last ledger request, in milliseconds. Past it the company's
/// answers can no longer be served (their signal is not read), and an idle service polls nothing.
pub const WATCH_IDLE_MS: u64 = 10_000;

/// The counter of ledger requests by what the held answers did for them (`outcome`: `hit` served held; `miss` read,
/// and held; `unsignalled` read, not held, as the company's signal was not recently polled; `fresh` read as the
/// request asked with `Cache-Control: no-cache`).
pub const ANSWERS_METRIC: &str = "report_answers_total";

/// The counter of pages refreshed after a posting let them go (`result`: `held`, read and held again; `failed`, the
/// read did not answer 200; `skipped`, no refresh slot was free).
pub const REFRESHES_METRIC: &str = "report_answer_refreshes_total";

/// The gauge of bytes of answers held.
pub const HELD_BYTES_METRIC: &str = "report_answers_held_bytes";

/// The counter of polls that failed (`read`: `signals`, the change signals, after which nothing is served; or
/// `touched`, the accounts posted to, after which the answers of the companies that moved are let go).
pub const POLL_ERRORS_METRIC: &str = "report_signal_poll_errors_total";

/// Registers the help text of this module's metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        ANSWERS_METRIC,
        "Account-ledger requests by what held answers did for them: hit (served from memory, the books unchanged since), miss (read and held), unsignalled (read; the company's change signal was not yet polled) or fresh (read because the request said Cache-Control: no-cache)."
    );
    metrics::describe_counter!(
        REFRESHES_METRIC,
        "Account-ledger pages read again in the background after a posting to their account let them go, by result: held (read and held again), failed (not a 200) or skipped (no refresh slot free)."
    );
    metrics::describe_gauge!(HELD_BYTES_METRIC, metrics::Unit::Bytes, "Bytes of account-ledger answers held in memory.");
    metrics::describe_counter!(
        POLL_ERRORS_METRIC,
        "Polls that failed, by what they read: signals (fold watermarks and report_changes; while they fail no held answer is served) or touched (the accounts posted to since a held answer; the answers of the companies that moved are let go)."
    );
}

/// A company's change signal with the count for every company, and the day in Korea the answer was read on (a ledger
/// without a range defaults to nothing, but the day keeps any answer that depends on "today" from outliving it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    seq: i64,
    changes: u64,
    every: u64,
    day: NaiveDate,
}

/// What a held ledger answer was read from: one account's lines and balances dated up to `through`, and that
/// account's row of the chart of accounts. The ledger route sets it as a response extension; it is never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerScope {
    pub account: Uuid,
    pub through: NaiveDate,
}

/// The signals one poll read: per company its watermark and count (a company missing has nothing folded or counted
/// yet: zeros), and the count for every company.
#[derive(Debug, Default)]
struct Signals {
    companies: HashMap<Uuid, (i64, u64)>,
    every: u64,
}

impl Signals {
    fn from_rows(rows: &[SignalRow]) -> Self {
        let mut s = Self::default();
        for r in rows {
            if r.company_id.is_nil() {
                s.every += r.changes;
                continue;
            }
            let c = s.companies.entry(r.company_id).or_default();
            c.0 = c.0.max(r.seq);
            c.1 += r.changes;
        }
        s
    }

    fn of(&self, company: Uuid) -> (i64, u64) {
        self.companies.get(&company).copied().unwrap_or_default()
    }
}

/// The accounts posted to in spans of the companies' sequences, as one poll read them.
#[derive(Debug, Default)]
struct Touched {
    /// Per company, the number above which its span begins (it ends at the poll's watermark).
    above: HashMap<Uuid, i64>,
    /// Per company and account, the first day of the earliest month posted into.
    first: HashMap<(Uuid, Uuid), NaiveDate>,
}

impl Touched {
    fn new(spans: &[store::SeqSpan], rows: &[store::TouchedRow]) -> Option<Self> {
        let mut first = HashMap::new();
        for r in rows {
            // An unreadable month cannot be placed, so nothing of its company can be kept: the poll counts as failed.
            let day: NaiveDate = r.first_period.parse().ok()?;
            first.insert((r.company_id, r.account_id), day);
        }
        Some(Self { above: spans.iter().map(|(c, above, _)| (*c, *above)).collect(), first })
    }

    /// Whether an answer of `company` read from `scope` at watermark `seq` is still what a read at `now_seq` gives.
    fn leaves(&self, company: Uuid, seq: i64, now_seq: i64, scope: Option<LedgerScope>) -> bool {
        let Some(scope) = scope else { return false };
        let covered = self.above.get(&company).is_some_and(|above| *above <= seq && seq < now_seq);
        covered && self.first.get(&(company, scope.account)).is_none_or(|day| *day > scope.through)
    }
}

/// One poll's result.
struct Polled {
    /// When the poll was sent: every change counted before this is in `signals`.
    began: Instant,
    /// The companies asked for.
    asked: HashSet<Uuid>,
    signals: Signals,
}

struct Held {
    tag: Tag,
    read_at: Instant,
    answer: Arc<Answer>,
    used: u64,
    /// The `Authorization` the page was asked with, to refresh it with; `None`: not refreshed.
    authorization: Option<HeaderValue>,
    /// When a client was last served it from memory.
    served_at: Option<Instant>,
}

/// A page to read again, with the token it was asked with.
pub struct Refresh {
    pub key: Key,
    pub authorization: HeaderValue,
}

/// Who asks for a ledger page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A client, who may be served a held answer.
    Client,
    /// A client who asked for a fresh read (`Cache-Control: no-cache`).
    ClientFresh,
    /// The poller, refreshing a page (read afresh, and not counted as the company being asked for).
    Refresh,
}

/// A request extension that marks the poller's own refresh of a page (clients cannot set it).
#[derive(Debug, Clone, Copy)]
pub struct Refreshing;

#[derive(Default)]
struct Inner {
    polled: Option<Polled>,
    /// Companies whose ledgers were asked for, with when last.
    watched: HashMap<Uuid, Instant>,
    held: HashMap<Key, Held>,
    bytes: usize,
    clock: u64,
}

/// The held answers and the latest poll of the signals.
pub struct Answers {
    inner: Mutex<Inner>,
    poll_interval: Duration,
    signals_age_max: Duration,
    /// Wakes the poller when a company is asked for that is not watched, so that its answers can be held after one
    /// poll's time rather than after up to a whole interval.
    newly_watched: tokio::sync::Notify,
    /// The refresh slots ([`REFRESHES_IN_FLIGHT_MAX`]).
    refreshing: Arc<tokio::sync::Semaphore>,
}

/// How a lookup went.
pub enum Lookup {
    /// A held answer, with its age.
    Hit(Arc<Answer>, Duration),
    /// Read it; hold the answer under this tag.
    Read(Tag),
    /// Read it and do not hold it: the company's signal is not known well enough.
    ReadUnheld,
}

impl Answers {
    /// No answers held; signals polled every `poll_interval_ms` (at least 1).
    #[must_use]
    pub fn new(poll_interval_ms: u64) -> Self {
        let poll_interval = Duration::from_millis(poll_interval_ms.max(1));
        let signals_age_max = Duration::from_millis(SIGNALS_AGE_MAX_MS).max(3 * poll_interval);
        Self {
            inner: Mutex::default(),
            poll_interval,
            signals_age_max,
            newly_watched: tokio::sync::Notify::new(),
            refreshing: Arc::new(tokio::sync::Semaphore::new(REFRESHES_IN_FLIGHT_MAX)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every statement that changes the maps leaves them consistent, so a panic elsewhere cannot tear them.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The company's tag now, if its signal was polled recently enough to trust; with `watch`, marks the company as
    /// asked for.
    fn tag(&self, inner: &mut Inner, company: Uuid, now: Instant, day: NaiveDate, watch: bool) -> Option<Tag> {
        if watch {
            if inner.watched.len() >= WATCHED_COMPANIES_MAX && !inner.watched.contains_key(&company) {
                if let Some(oldest) = inner.watched.iter().min_by_key(|(_, at)| **at).map(|(c, _)| *c) {
                    inner.watched.remove(&oldest);
                }
            }
            if inner.watched.insert(company, now).is_none() {
                self.newly_watched.notify_one();
            }
        }
        let polled = inner.polled.as_ref()?;
        if now.saturating_duration_since(polled.began) > self.signals_age_max || !polled.asked.contains(&company) {
            return None;
        }
        let (seq, changes) = polled.signals.of(company);
        Some(Tag { seq, changes, every: polled.signals.every, day })
    }

    /// What to do for a client's ledger request of `key` at `now` (on Korea's `day`); `fresh` when the request asked
    /// not to be served a held answer (tests; the middleware says who asks with [`Answers::lookup_as`]).
    #[cfg(test)]
    pub fn lookup(&self, key: &Key, fresh: bool, now: Instant, day: NaiveDate) -> Lookup {
        self.lookup_as(key, if fresh { Asked::ClientFresh } else { Asked::Client }, now, day)
    }

    /// What to do for a ledger request of `key` asked for as `asked` at `now` (on Korea's `day`).
    pub fn lookup_as(&self, key: &Key, asked: Asked, now: Instant, day: NaiveDate) -> Lookup {
        let mut inner = self.lock();
        let Some(tag) = self.tag(&mut inner, key.company, now, day, asked != Asked::Refresh) else {
            // A refresh is only started for a company just polled, so it is not counted among clients' requests.
            if asked != Asked::Refresh {
                metrics::counter!(ANSWERS_METRIC, "outcome" => if asked == Asked::ClientFresh { "fresh" } else { "unsignalled" })
                    .increment(1);
            }
            return Lookup::ReadUnheld;
        };
        match asked {
            Asked::ClientFresh => {
                metrics::counter!(ANSWERS_METRIC, "outcome" => "fresh").increment(1);
                return Lookup::Read(tag);
            }
            Asked::Refresh => return Lookup::Read(tag),
            Asked::Client => {}
        }
        inner.clock += 1;
        let clock = inner.clock;
        let age_max = Duration::from_millis(ANSWER_AGE_MAX_MS);
        match inner.held.get_mut(key) {
            Some(held) if held.tag == tag && now.saturating_duration_since(held.read_at) <= age_max => {
                held.used = clock;
                held.served_at = Some(now);
                metrics::counter!(ANSWERS_METRIC, "outcome" => "hit").increment(1);
                Lookup::Hit(Arc::clone(&held.answer), now.saturating_duration_since(held.read_at))
            }
            _ => {
                metrics::counter!(ANSWERS_METRIC, "outcome" => "miss").increment(1);
                Lookup::Read(tag)
            }
        }
    }

    /// Holds `answer`, whose read began at `read_at` after `tag` was taken, if it is a 200 of bounded size, not to be
    /// refreshed (tests; the middleware holds with [`Answers::hold_refreshable`]).
    #[cfg(test)]
    pub fn hold(&self, key: Key, tag: Tag, read_at: Instant, answer: &Arc<Answer>) {
        self.hold_refreshable(key, tag, read_at, answer, None);
    }

    /// Holds `answer`, whose read began at `read_at` after `tag` was taken, if it is a 200 of bounded size, with the
    /// `Authorization` it was asked with (to refresh it with; `None`: it is not refreshed). Least recently used
    /// answers are let go until the bounds hold.
    pub fn hold_refreshable(&self, key: Key, tag: Tag, read_at: Instant, answer: &Arc<Answer>, authorization: Option<HeaderValue>) {
        let size = answer.size();
        if !answer.is_ok() || size > ANSWERS_HELD_BYTES_MAX / 4 {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        // A page read afresh while held keeps the record of its being served, which decides whether it is refreshed.
        let served_at = inner.held.get(&key).and_then(|h| h.served_at);
        let held = Held { tag, read_at, answer: Arc::clone(answer), used, authorization, served_at };
        if let Some(old) = inner.held.insert(key, held) {
            inner.bytes -= old.answer.size();
        }
        inner.bytes += size;
        while inner.bytes > ANSWERS_HELD_BYTES_MAX || inner.held.len() > ANSWERS_HELD_MAX {
            let Some(oldest) = inner.held.iter().min_by_key(|(_, h)| h.used).map(|(k, _)| k.clone()) else { break };
            if let Some(gone) = inner.held.remove(&oldest) {
                inner.bytes -= gone.answer.size();
            }
        }
        metrics::gauge!(HELD_BYTES_METRIC).set(inner.bytes as f64);
    }

    /// The companies to poll at `now`: those asked for within [`WATCH_IDLE_MS`]; the others are forgotten.
    fn to_poll(&self, now: Instant) -> Vec<Uuid> {
        let mut inner = self.lock();
        let idle = Duration::from_millis(WATCH_IDLE_MS);
        inner.watched.retain(|_, at| now.saturating_duration_since(*at) <= idle);
        inner.watched.keys().copied().collect()
    }

    /// The spans of sequence to look through for the accounts posted to: per company asked for, from its oldest held
    /// answer that only its watermark has passed up to the watermark `signals` show.
    fn spans(&self, asked: &[Uuid], signals: &Signals) -> Vec<store::SeqSpan> {
        let asked: HashSet<&Uuid> = asked.iter().collect();
        let mut above: HashMap<Uuid, i64> = HashMap::new();
        let inner = self.lock();
        for (k, h) in &inner.held {
            let (seq, changes) = signals.of(k.company);
            let behind = (h.tag.changes, h.tag.every) == (changes, signals.every) && h.tag.seq < seq;
            if asked.contains(&k.company) && behind && seq - h.tag.seq <= TOUCHED_SEQ_SPAN_MAX && h.answer.scope().is_some() {
                let a = above.entry(k.company).or_insert(h.tag.seq);
                *a = (*a).min(h.tag.seq);
            }
        }
        above.into_iter().map(|(company, a)| (company, a, signals.of(company).0)).collect()
    }

    /// Takes a poll's signals, read for `asked` by a poll sent at `began`, with the accounts posted to in the spans
    /// it looked through (`None`: that read failed). Lets go of the answers it shows stale and holds on to those whose
    /// account nothing in between posted to, under the new signal. Returns the pages to refresh: of those let go for a
    /// posting to their account, the ones a client was served lately, most recently served first.
    fn polled(&self, began: Instant, asked: Vec<Uuid>, signals: Signals, touched: Option<&Touched>) -> Vec<Refresh> {
        let asked: HashSet<Uuid> = asked.into_iter().collect();
        let served_within = Duration::from_millis(REFRESH_SERVED_WITHIN_MS);
        let mut refresh: Vec<(Instant, Refresh)> = Vec::new();
        let mut inner = self.lock();
        inner.held.retain(|k, h| {
            // Answers of companies not asked for in this poll are kept; they are served only once polled again.
            if !asked.contains(&k.company) {
                return true;
            }
            let (seq, changes) = signals.of(k.company);
            if (h.tag.changes, h.tag.every) != (changes, signals.every) {
                return false;
            }
            if h.tag.seq == seq {
                return true;
            }
            let kept = touched.is_some_and(|t| t.leaves(k.company, h.tag.seq, seq, h.answer.scope()));
            if kept {
                h.tag.seq = seq;
            } else if let (Some(_), Some(served), Some(authorization)) = (touched, h.served_at, &h.authorization) {
                if began.saturating_duration_since(served) <= served_within {
                    refresh.push((served, Refresh { key: k.clone(), authorization: authorization.clone() }));
                }
            }
            kept
        });
        inner.bytes = inner.held.values().map(|h| h.answer.size()).sum();
        metrics::gauge!(HELD_BYTES_METRIC).set(inner.bytes as f64);
        inner.polled = Some(Polled { began, asked, signals });
        refresh.sort_by_key(|(served, _)| std::cmp::Reverse(*served));
        refresh.into_iter().take(REFRESHES_PER_POLL_MAX).map(|(_, r)| r).collect()
    }

    /// Reads each of `pages` again through `app` (the routes with the coalescing middleware), each in a task of its
    /// own while a refresh slot is free; the middleware holds the answers.
    fn refresh(&self, app: &axum::Router, pages: Vec<Refresh>) {
        for page in pages {
            let Ok(slot) = Arc::clone(&self.refreshing).try_acquire_owned() else {
                metrics::counter!(REFRESHES_METRIC, "result" => "skipped").increment(1);
                continue;
            };
            let mut req = axum::http::Request::get(page.key.uri.as_str()).body(axum::body::Body::empty());
            if let Ok(r) = &mut req {
                r.headers_mut().insert(axum::http::header::AUTHORIZATION, page.authorization);
                r.extensions_mut().insert(Refreshing);
            }
            let app = app.clone();
            tokio::spawn(
                async move {
                    let ok = match req {
                        Ok(req) => app.oneshot(req).await.is_ok_and(|r| r.status().is_success()),
                        Err(_) => false,
                    };
                    metrics::counter!(REFRESHES_METRIC, "result" => if ok { "held" } else { "failed" }).increment(1);
                    drop(slot);
                }
                .instrument(tracing::info_span!("ledger_refresh")),
            );
        }
    }

    /// Polls the signals of the companies asked for, every poll interval, until `shutdown`, and refreshes through
    /// `app` (the routes with the coalescing middleware) the pages a posting let go.
    pub async fn poll(self: Arc<Self>, ch: clickhouse::Client, app: axum::Router, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.poll_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
                () = self.newly_watched.notified() => {}
            }
            let began = Instant::now();
            let asked = self.to_poll(began);
            if asked.is_empty() {
                continue;
            }
            let signals = match store::report_signals(&ch, &asked).await {
                Ok(rows) => Signals::from_rows(&rows),
                Err(e) => {
                    metrics::counter!(POLL_ERRORS_METRIC, "read" => "signals").increment(1);
                    tracing::warn!(error = %e, "could not poll the change signals; held ledger answers are not served meanwhile");
                    continue;
                }
            };
            // Read after the signals, so every event up to the watermarks they show is durable and in the read.
            let spans = self.spans(&asked, &signals);
            let touched = match store::touched_accounts(&ch, &spans).await {
                Ok(rows) => Touched::new(&spans, &rows),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the accounts posted to");
                    None
                }
            };
            if touched.is_none() {
                metrics::counter!(POLL_ERRORS_METRIC, "read" => "touched").increment(1);
                tracing::warn!("the held ledger answers of the companies whose watermark moved are let go");
            }
            let pages = self.polled(began, asked, signals, touched.as_ref());
            self.refresh(&app, pages);
        }
    }

    /// How many answers are held (tests).
    #[cfg(test)]
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().held.len()
    }

    /// Whether no answer is held (tests).
    #[cfg(test)]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn key(company: Uuid, uri: &str) -> Key {
        Key::new(company, "accountant", uri.to_owned())
    }

    fn ok(body: &str) -> Arc<Answer> {
        Arc::new(Answer::new(StatusCode::OK, body))
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
    }

    fn row(company: Uuid, seq: i64, changes: u64) -> SignalRow {
        SignalRow { company_id: company, seq, changes }
    }

    /// Polls the watched companies at `at` with the given rows, as if the read of the accounts posted to failed.
    fn poll(a: &Answers, at: Instant, rows: &[SignalRow]) {
        let asked = a.to_poll(at);
        assert!(a.polled(at, asked, Signals::from_rows(rows), None).is_empty(), "nothing refreshed without the accounts");
    }

    /// Polls the watched companies at `at` with the given rows, and the accounts posted to as `touched` gives them for
    /// the spans the poll asks about.
    fn poll_touched(a: &Answers, at: Instant, rows: &[SignalRow], touched: &[(Uuid, Uuid, &str)]) -> Vec<store::SeqSpan> {
        poll_refreshing(a, at, rows, touched).0
    }

    /// [`poll_touched`], also giving the URIs of the pages to refresh.
    fn poll_refreshing(a: &Answers, at: Instant, rows: &[SignalRow], touched: &[(Uuid, Uuid, &str)]) -> (Vec<store::SeqSpan>, Vec<String>) {
        let asked = a.to_poll(at);
        let signals = Signals::from_rows(rows);
        let spans = a.spans(&asked, &signals);
        let rows: Vec<store::TouchedRow> = touched
            .iter()
            .map(|(c, account, day)| store::TouchedRow { company_id: *c, account_id: *account, first_period: (*day).to_owned() })
            .collect();
        let t = Touched::new(&spans, &rows);
        let refresh = a.polled(at, asked, signals, t.as_ref());
        (spans, refresh.into_iter().map(|r| r.key.uri).collect())
    }

    /// Of the pages let go for a posting to their account, those asked with a token and served from memory lately are
    /// refreshed, the most recently served first and at most [`REFRESHES_PER_POLL_MAX`]; pages nobody was served, or
    /// let go for anything else, are not.
    #[test]
    fn pages_let_go_for_a_posting_and_served_lately_are_refreshed() {
        let a = Answers::new(100);
        let c = Uuid::from_u128(1);
        let cash = Uuid::from_u128(11);
        let token = HeaderValue::from_static("Bearer t");
        let mut now = Instant::now();
        a.lookup(&key(c, "/p0"), false, now, day());
        poll(&a, now, &[row(c, 5, 0)]);
        let tag = read_tag(a.lookup(&key(c, "/p0"), false, now, day()));
        let pages = REFRESHES_PER_POLL_MAX + 2;
        for i in 0..pages {
            a.hold_refreshable(key(c, &format!("/p{i}")), tag, now, &scoped(cash, "2025-12-31", "page"), Some(token.clone()));
        }
        a.hold(key(c, "/no-token"), tag, now, &scoped(cash, "2025-12-31", "page"));
        // Every page but the last is served, one after the other, as is the page held without a token.
        for i in 0..pages - 1 {
            now += Duration::from_millis(1);
            assert!(hit(&a.lookup(&key(c, &format!("/p{i}")), false, now, day())));
        }
        assert!(hit(&a.lookup(&key(c, "/no-token"), false, now, day())));

        now += Duration::from_millis(100);
        let (_, refreshed) = poll_refreshing(&a, now, &[row(c, 6, 0)], &[(c, cash, "2025-01-01")]);
        let expected: Vec<String> = (0..pages - 1).rev().take(REFRESHES_PER_POLL_MAX).map(|i| format!("/p{i}")).collect();
        assert_eq!(refreshed, expected, "the most recently served first, as many as allowed; not the page never served");

        // Held again (as a refresh does), served, then let go by a failed read of the accounts: not refreshed.
        let tag = read_tag(a.lookup_as(&key(c, "/p0"), Asked::Refresh, now, day()));
        a.hold_refreshable(key(c, "/p0"), tag, now, &scoped(cash, "2025-12-31", "page"), Some(token));
        assert!(hit(&a.lookup(&key(c, "/p0"), false, now, day())));
        now += Duration::from_millis(100);
        poll(&a, now, &[row(c, 7, 0)]);
    }

    fn scoped(account: Uuid, through: &str, body: &str) -> Arc<Answer> {
        Arc::new(Answer::scoped(StatusCode::OK, body, LedgerScope { account, through: through.parse().unwrap() }))
    }

    /// When only a company's watermark moved, a held page stays held (and served) unless the events in between posted
    /// to its account on or before its range's end; anything else that moved, a failed read of the accounts, or an
    /// answer without a scope lets go as before.
    #[test]
    fn a_page_outlives_postings_to_other_accounts_and_to_later_days() {
        let a = Answers::new(100);
        let c = Uuid::from_u128(1);
        let (cash, sales, rent) = (Uuid::from_u128(11), Uuid::from_u128(12), Uuid::from_u128(13));
        let page = |account: u128| key(c, &format!("/ledger?account={account}"));
        let mut now = Instant::now();
        a.lookup(&page(11), false, now, day());
        poll(&a, now, &[row(c, 5, 0)]);
        let tag = read_tag(a.lookup(&page(11), false, now, day()));
        a.hold(page(11), tag, now, &scoped(cash, "2025-12-31", "cash"));
        a.hold(page(12), tag, now, &scoped(sales, "2025-12-31", "sales"));
        a.hold(page(13), tag, now, &scoped(rent, "2025-06-30", "rent"));
        a.hold(page(14), tag, now, &ok("no scope"));

        // Events 6..=8 posted to sales in March 2025 and to rent in July 2025, after the rent page's range.
        now += Duration::from_millis(100);
        let spans = poll_touched(&a, now, &[row(c, 8, 0)], &[(c, sales, "2025-03-01"), (c, rent, "2025-07-01")]);
        assert_eq!(spans, [(c, 5, 8)], "one span, from the held answers' watermark to the new one");
        assert!(hit(&a.lookup(&page(11), false, now, day())), "nothing posted to cash: held on");
        assert!(!hit(&a.lookup(&page(12), false, now, day())), "sales was posted to within the range: let go");
        assert!(hit(&a.lookup(&page(13), false, now, day())), "rent was posted to after the range's end: held on");
        assert!(!hit(&a.lookup(&page(14), false, now, day())), "no scope: let go");

        // A read that failed lets go of what the watermark passed; an unmoved company keeps its answers.
        now += Duration::from_millis(100);
        poll(&a, now, &[row(c, 8, 0)]);
        assert!(hit(&a.lookup(&page(11), false, now, day())), "nothing moved");
        now += Duration::from_millis(100);
        poll(&a, now, &[row(c, 9, 0)]);
        assert!(!hit(&a.lookup(&page(11), false, now, day())), "the read of the accounts failed: let go");

        // A count (an account renamed) lets go of every page, touched or not.
        let tag = read_tag(a.lookup(&page(11), false, now, day()));
        a.hold(page(11), tag, now, &scoped(cash, "2025-12-31", "cash"));
        now += Duration::from_millis(100);
        poll_touched(&a, now, &[row(c, 10, 0), row(c, 0, 1)], &[]);
        assert!(!hit(&a.lookup(&page(11), false, now, day())), "the company's count moved: let go");

        // A span longer than TOUCHED_SEQ_SPAN_MAX is not looked through.
        let tag = read_tag(a.lookup(&page(11), false, now, day()));
        a.hold(page(11), tag, now, &scoped(cash, "2025-12-31", "cash"));
        now += Duration::from_millis(100);
        let far = 10 + TOUCHED_SEQ_SPAN_MAX + 1;
        let spans = poll_touched(&a, now, &[row(c, far, 0), row(c, 0, 1)], &[]);
        assert!(spans.is_empty());
        assert!(!hit(&a.lookup(&page(11), false, now, day())), "too far behind: let go");
    }

    fn read_tag(l: Lookup) -> Tag {
        match l {
            Lookup::Read(tag) => tag,
            Lookup::Hit(..) => panic!("a hit where a read was due"),
            Lookup::ReadUnheld => panic!("unheld where a read was due"),
        }
    }

    fn hit(l: &Lookup) -> bool {
        matches!(l, Lookup::Hit(..))
    }

    /// Nothing is held or served before the company's signal is polled; after, an answer is served until its
    /// company's watermark or count moves, or the count for every company does.
    #[test]
    fn an_answer_is_served_until_its_companys_signal_moves() {
        let a = Answers::new(100);
        let (c, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let k = key(c, "/api/v1/reports/account-ledger?account_code=1101&year=2026");
        let t0 = Instant::now();
        assert!(matches!(a.lookup(&k, false, t0, day()), Lookup::ReadUnheld), "not polled yet");
        a.lookup(&key(other, "/x"), false, t0, day());

        let rounds: [&[SignalRow]; 5] = [
            &[row(c, 5, 0), row(other, 7, 0)],
            &[row(c, 6, 0), row(other, 7, 0)],                                       // a voucher folded
            &[row(c, 6, 0), row(c, 0, 1), row(other, 7, 0)],                         // an account renamed
            &[row(c, 6, 0), row(c, 0, 1), row(Uuid::nil(), 0, 1)],                   // a rebuild swapped in
            &[row(c, 6, 0), row(c, 0, 1), row(Uuid::nil(), 0, 1), row(other, 9, 0)], // another company moved
        ];
        let mut now = t0;
        let mut answers_read = 0;
        for (i, rows) in rounds.iter().enumerate() {
            now += Duration::from_millis(100);
            poll(&a, now, rows);
            let l = a.lookup(&k, false, now, day());
            if i < 4 {
                let tag = read_tag(l);
                a.hold(k.clone(), tag, now, &ok(&i.to_string()));
                answers_read += 1;
                let again = a.lookup(&k, false, now + Duration::from_millis(10), day());
                assert!(hit(&again), "round {i}: the held answer is served while nothing moved");
            } else {
                assert!(hit(&l), "another company's change leaves this one's answer held");
            }
        }
        assert_eq!(answers_read, 4);
    }

    /// A held answer is not served once the latest poll is too old (polls failing), after its age limit, on another
    /// day, or to a request asking for a fresh read.
    #[test]
    fn stale_polls_old_answers_other_days_and_no_cache_read_afresh() {
        let a = Answers::new(100);
        let c = Uuid::from_u128(1);
        let k = key(c, "/l");
        let t0 = Instant::now();
        a.lookup(&k, false, t0, day());
        poll(&a, t0, &[row(c, 1, 0)]);
        let tag = read_tag(a.lookup(&k, false, t0, day()));
        a.hold(k.clone(), tag, t0, &ok("a"));
        assert!(hit(&a.lookup(&k, false, t0 + Duration::from_millis(299), day())));
        assert!(
            matches!(a.lookup(&k, false, t0 + Duration::from_millis(301), day()), Lookup::ReadUnheld),
            "no poll for over 300 ms: nothing served"
        );
        let late = t0 + Duration::from_millis(ANSWER_AGE_MAX_MS + 1);
        poll(&a, late, &[row(c, 1, 0)]);
        assert!(matches!(a.lookup(&k, false, late, day()), Lookup::ReadUnheld), "idle for longer than WATCH_IDLE_MS: not polled");
        poll(&a, late, &[row(c, 1, 0)]);
        assert!(matches!(a.lookup(&k, false, late, day()), Lookup::Read(_)), "past the age limit");
        a.hold(k.clone(), tag, late, &ok("b"));
        assert!(hit(&a.lookup(&k, false, late, day())));
        assert!(matches!(a.lookup(&k, false, late, day().succ_opt().unwrap()), Lookup::Read(_)), "another day");
        assert!(matches!(a.lookup(&k, true, late, day()), Lookup::Read(_)), "Cache-Control: no-cache");
    }

    /// Only 200 answers are held; the least recently used go first past the bounds; a poll lets go of what it shows
    /// stale; a company not asked for within the idle time is no longer polled.
    #[test]
    fn bounds_errors_and_idle_companies() {
        let a = Answers::new(100);
        let c = Uuid::from_u128(1);
        let t0 = Instant::now();
        a.lookup(&key(c, "/0"), false, t0, day());
        poll(&a, t0, &[]);
        let tag = read_tag(a.lookup(&key(c, "/0"), false, t0, day()));
        a.hold(key(c, "/404"), tag, t0, &Arc::new(Answer::new(StatusCode::NOT_FOUND, "gone")));
        assert!(a.is_empty(), "only 200 answers are held");

        let big = "x".repeat(ANSWERS_HELD_BYTES_MAX / 5);
        for i in 0..5 {
            a.hold(key(c, &format!("/{i}")), tag, t0, &ok(&big));
            if i == 3 {
                assert!(hit(&a.lookup(&key(c, "/0"), false, t0, day())), "used again, so no longer the least recent");
            }
        }
        assert_eq!(a.len(), 4, "four fifths of the bytes fit, plus headers: one let go");
        assert!(hit(&a.lookup(&key(c, "/0"), false, t0, day())), "the answer used again stayed");
        assert!(!hit(&a.lookup(&key(c, "/1"), false, t0, day())), "the least recently used went");

        poll(&a, t0 + Duration::from_millis(100), &[row(c, 2, 0)]);
        assert!(a.is_empty(), "a poll that shows the company moved lets go of its answers");

        let later = t0 + Duration::from_millis(WATCH_IDLE_MS + 200);
        assert!(a.to_poll(later).is_empty(), "not asked for within the idle time: not polled");
    }
}
