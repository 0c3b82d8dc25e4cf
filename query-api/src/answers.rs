//! Answers of the account ledger held in memory until the company's books change. A ledger request (company, role and
//! URI, as `crate::coalesce` keys it) comes in; if an answer to it is held, and the company's change signal has not
//! moved since that answer was read, the held answer goes out without a ClickHouse read. Otherwise the ledger is read
//! as always, and its answer is held under the signal seen before the read began.
//!
//! Why: a ledger page costs two rounds of ClickHouse reads, about 5 ms on this machine whatever the account's size,
//! while the direct-Postgres window query answers a light account (a few hundred lines in the year) in about 1 ms.
//! No ClickHouse round trip is fast enough to beat that; an answer that needs none is.
//!
//! **The change signal.** Per company: its fold watermark (`fold_watermarks`, moved by every folded voucher) and its
//! count in `report_changes` (moved by everything else that changes a report: master data, invoices, a rewritten
//! snapshot), plus the count under the nil id, which a rebuild's swap moves for every company. stream-workers writes
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
//! What is held: 200 answers only, bounded by [`ANSWERS_HELD_BYTES_MAX`] and [`ANSWERS_HELD_MAX`], least recently used
//! let go first. A request with `Cache-Control: no-cache` is read afresh (and its answer held). A held answer carries
//! an `Age` header, as an HTTP cache's would.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;
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

/// Most companies whose signals one poll reads; the least recently asked for are dropped past it.
pub const WATCHED_COMPANIES_MAX: usize = 1024;

/// How long a company's signal is still polled after its last ledger request, in milliseconds. Past it the company's
/// answers can no longer be served (their signal is not read), and an idle service polls nothing.
pub const WATCH_IDLE_MS: u64 = 10_000;

/// The counter of ledger requests by what the held answers did for them (`outcome`: `hit` served held; `miss` read,
/// and held; `unsignalled` read, not held, as the company's signal was not recently polled; `fresh` read as the
/// request asked with `Cache-Control: no-cache`).
pub const ANSWERS_METRIC: &str = "report_answers_total";

/// The gauge of bytes of answers held.
pub const HELD_BYTES_METRIC: &str = "report_answers_held_bytes";

/// The counter of polls of the change signals that failed.
pub const POLL_ERRORS_METRIC: &str = "report_signal_poll_errors_total";

/// Registers the help text of this module's metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        ANSWERS_METRIC,
        "Account-ledger requests by what held answers did for them: hit (served from memory, the books unchanged since), miss (read and held), unsignalled (read; the company's change signal was not yet polled) or fresh (read because the request said Cache-Control: no-cache)."
    );
    metrics::describe_gauge!(HELD_BYTES_METRIC, metrics::Unit::Bytes, "Bytes of account-ledger answers held in memory.");
    metrics::describe_counter!(
        POLL_ERRORS_METRIC,
        "Polls of the companies' change signals (fold watermarks and report_changes) that failed; while they fail no held answer is served."
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

/// One poll's result.
struct Polled {
    /// When the poll was sent: every change counted before this is in `signals`.
    began: Instant,
    /// The companies asked for; one missing from `signals` has nothing folded or counted yet (zeros).
    asked: HashSet<Uuid>,
    signals: HashMap<Uuid, (i64, u64)>,
    every: u64,
}

struct Held {
    tag: Tag,
    read_at: Instant,
    answer: Arc<Answer>,
    used: u64,
}

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
        Self { inner: Mutex::default(), poll_interval, signals_age_max, newly_watched: tokio::sync::Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every statement that changes the maps leaves them consistent, so a panic elsewhere cannot tear them.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The company's tag now, if its signal was polled recently enough to trust; marks the company as asked for.
    fn tag(&self, inner: &mut Inner, company: Uuid, now: Instant, day: NaiveDate) -> Option<Tag> {
        if inner.watched.len() >= WATCHED_COMPANIES_MAX && !inner.watched.contains_key(&company) {
            if let Some(oldest) = inner.watched.iter().min_by_key(|(_, at)| **at).map(|(c, _)| *c) {
                inner.watched.remove(&oldest);
            }
        }
        if inner.watched.insert(company, now).is_none() {
            self.newly_watched.notify_one();
        }
        let polled = inner.polled.as_ref()?;
        if now.saturating_duration_since(polled.began) > self.signals_age_max || !polled.asked.contains(&company) {
            return None;
        }
        let (seq, changes) = polled.signals.get(&company).copied().unwrap_or_default();
        Some(Tag { seq, changes, every: polled.every, day })
    }

    /// What to do for a ledger request of `key` at `now` (on Korea's `day`); `fresh` when the request asked not to be
    /// served a held answer.
    pub fn lookup(&self, key: &Key, fresh: bool, now: Instant, day: NaiveDate) -> Lookup {
        let mut inner = self.lock();
        let Some(tag) = self.tag(&mut inner, key.company, now, day) else {
            metrics::counter!(ANSWERS_METRIC, "outcome" => if fresh { "fresh" } else { "unsignalled" }).increment(1);
            return Lookup::ReadUnheld;
        };
        if fresh {
            metrics::counter!(ANSWERS_METRIC, "outcome" => "fresh").increment(1);
            return Lookup::Read(tag);
        }
        inner.clock += 1;
        let clock = inner.clock;
        let age_max = Duration::from_millis(ANSWER_AGE_MAX_MS);
        match inner.held.get_mut(key) {
            Some(held) if held.tag == tag && now.saturating_duration_since(held.read_at) <= age_max => {
                held.used = clock;
                metrics::counter!(ANSWERS_METRIC, "outcome" => "hit").increment(1);
                Lookup::Hit(Arc::clone(&held.answer), now.saturating_duration_since(held.read_at))
            }
            _ => {
                metrics::counter!(ANSWERS_METRIC, "outcome" => "miss").increment(1);
                Lookup::Read(tag)
            }
        }
    }

    /// Holds `answer`, whose read began at `read_at` after `tag` was taken, if it is a 200 of bounded size. Least recently used
    /// answers are let go until the bounds hold.
    pub fn hold(&self, key: Key, tag: Tag, read_at: Instant, answer: &Arc<Answer>) {
        let size = answer.size();
        if !answer.is_ok() || size > ANSWERS_HELD_BYTES_MAX / 4 {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.held.insert(key, Held { tag, read_at, answer: Arc::clone(answer), used }) {
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

    /// Takes a poll's rows, read for `asked` by a poll sent at `began`, and lets go of the answers it shows stale.
    fn polled(&self, began: Instant, asked: Vec<Uuid>, rows: &[SignalRow]) {
        let mut signals: HashMap<Uuid, (i64, u64)> = HashMap::new();
        let mut every = 0;
        for r in rows {
            if r.company_id.is_nil() {
                every += r.changes;
                continue;
            }
            let s = signals.entry(r.company_id).or_default();
            s.0 = s.0.max(r.seq);
            s.1 += r.changes;
        }
        let asked: HashSet<Uuid> = asked.into_iter().collect();
        let mut inner = self.lock();
        inner.held.retain(|k, h| {
            let (seq, changes) = signals.get(&k.company).copied().unwrap_or_default();
            // Answers of companies not asked for in this poll are kept; they are served only once polled again.
            !asked.contains(&k.company) || (h.tag.seq, h.tag.changes, h.tag.every) == (seq, changes, every)
        });
        inner.bytes = inner.held.values().map(|h| h.answer.size()).sum();
        metrics::gauge!(HELD_BYTES_METRIC).set(inner.bytes as f64);
        inner.polled = Some(Polled { began, asked, signals, every });
    }

    /// Polls the signals of the companies asked for, every poll interval, until `shutdown`.
    pub async fn poll(self: Arc<Self>, ch: clickhouse::Client, shutdown: CancellationToken) {
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
            match store::report_signals(&ch, &asked).await {
                Ok(rows) => self.polled(began, asked, &rows),
                Err(e) => {
                    metrics::counter!(POLL_ERRORS_METRIC).increment(1);
                    tracing::warn!(error = %e, "could not poll the change signals; held ledger answers are not served meanwhile");
                }
            }
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

    /// Polls `company` at `at` with the given rows.
    fn poll(a: &Answers, at: Instant, rows: &[SignalRow]) {
        let asked = a.to_poll(at);
        a.polled(at, asked, rows);
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
