//! A company's balances per account and month, as the trial balance, the income statement and the balance sheet read
//! them: its newest balance snapshot that query-api holds in memory, plus the `period_balances` rows above it read on
//! every report. Company ids go in; month rows and the fiscal start month come out.
//!
//! Why hold snapshots: on ClickHouse 18.16 most of a report's cost is the fixed cost of each table a statement reads
//! (parsing, analysis, pipeline set-up), not the rows. A trial balance read five tables (settings, snapshot heads,
//! accounts, the snapshot and the tail), about 12 ms of ClickHouse CPU each time, although the snapshot it re-read
//! changes only when the worker writes a new one.
//!
//! Why it is exact: a snapshot's rows never change once its head is written (`migrations/clickhouse/0004_snapshots.sql`),
//! and a report adds every `period_balances` row above the held snapshot's sequence, however old the snapshot is; a
//! newer snapshot only makes that tail shorter. The read of the tail also checks, in the same statement, that the held
//! snapshot's head is still in `snapshot_heads`. It is gone after a rebuild swapped in new tables (which may hold
//! corrected sums) or once retention dropped it; the snapshot is then read anew. Nothing else is cached: the fiscal
//! start month and the tail come with every report, and the accounts are read as before. Each company's last read of
//! accounts is kept only as a guess, which lets a ledger read its page alongside its accounts and balances and is
//! checked against them before the page is used ([`Reader::ledger_guess`]); no report shows a guessed account.
//!
//! Reports of one company that run at the same time share one read of its balances and one of its accounts
//! ([`Reader`]), whatever month each asks for: they need the same rows and bucket them each their own way. As with
//! query-api's coalescing of identical requests (`crate::coalesce`), nothing is kept once the read is done, so a
//! report's balances are at most one read's duration older than its request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDate;
use clickhouse::Client;
use uuid::Uuid;

use crate::coalesce::Flights;
use crate::report::{AccountInfo, BucketSums, MonthSums};
use crate::store::{self, SnapshotHead};
use crate::{Error, Result};

/// Most month rows held for all companies together, about 64 bytes each (so about 32 MiB). The `large` size's 100
/// companies hold a few thousand each. Past it, the least recently used companies' snapshots are let go.
pub const SNAPSHOT_CACHE_ROWS_MAX: usize = 500_000;

/// Most companies whose snapshots are held, whatever their size.
pub const SNAPSHOT_CACHE_COMPANIES_MAX: usize = 10_000;

/// Longest a held snapshot is used without checking the company's snapshot heads, in milliseconds. The check finds a
/// newer snapshot to read (so the tail stays short) and finds a held one gone because a rebuild swapped in new tables.
/// Between checks a report reads two tables instead of three (see `store::balance_tail`). A held snapshot stays exact
/// however old it is, since the tail above it is read in full; what the interval bounds is how long after a rebuild's
/// swap reports still add the pre-rebuild snapshot (equal to the rebuilt one unless the old tables were wrong).
pub const HEADS_CHECK_INTERVAL_MS: u64 = 1_000;

/// Most accounts remembered from the companies' last reads of their accounts, for all companies together (about 100
/// bytes each, so about 10 MiB; `large`'s 100 companies have a few hundred each). They are only a guess of which
/// account a ledger's `account_code` names, made before the accounts are read (see [`Reader::ledger_guess`]). Past the
/// bound all are let go, which costs each company's next ledger page one more round of reads.
pub const ACCOUNT_GUESSES_MAX: usize = 100_000;

/// Most times one report reads anew a snapshot that vanished under it (a rebuild's swap, retention) before it fails.
const SNAPSHOT_READS_MAX: usize = 3;

/// The counter of reports by how they found the company's snapshot (`outcome`: `hit` held, `miss` read,
/// `vanished` held but gone, read anew).
pub const CACHE_METRIC: &str = "report_snapshot_cache_total";

/// The counter of reads of a company's balances or accounts that joined a read of them already in flight.
pub const JOINED_METRIC: &str = "report_company_reads_joined_total";

/// The counter of reports whose accounts were read again because their balances named an account the first read lacked
/// ([`Reader::accounts_naming`]).
pub const ACCOUNTS_REREAD_METRIC: &str = "report_accounts_reread_total";

/// The counter of ledger pages read in the same round as their company's accounts and balances, by whether that read
/// was the page (`result`: `page`, or `missed` when the page was read again after them; see [`Reader::ledger_guess`]).
pub const LEDGER_GUESS_METRIC: &str = "report_ledger_page_guesses_total";

/// Registers the help text of this module's metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        LEDGER_GUESS_METRIC,
        "Account ledger pages read alongside their company's accounts and balances, by whether that read was the page (page) or the page had to be read again after them (missed)."
    );
    metrics::describe_counter!(
        JOINED_METRIC,
        "Reads of a company's balances or accounts, for a trial balance, income statement or balance sheet, that shared one already in flight for the same company."
    );
    metrics::describe_counter!(
        CACHE_METRIC,
        "Balance reports by how they found the company's balance snapshot: held in memory (hit), read (miss), or held but gone from ClickHouse and read anew (vanished)."
    );
    metrics::describe_counter!(
        ACCOUNTS_REREAD_METRIC,
        "Reports whose accounts were read again because their balances named an account that the read made alongside them lacked (a new account's first posting)."
    );
}

/// One company's snapshot as held.
#[derive(Debug)]
pub struct Snapshot {
    pub head: SnapshotHead,
    pub rows: Vec<MonthSums>,
}

struct Held {
    snapshot: Arc<Snapshot>,
    /// When the company's heads were last checked while this snapshot was held.
    heads_checked: std::time::Instant,
    /// The value of `Inner::clock` when it was last used: a counter, so that two uses never tie.
    used: u64,
}

#[derive(Default)]
struct Inner {
    held: HashMap<Uuid, Held>,
    rows: usize,
    clock: u64,
    /// Companies whose newer snapshot is being read in the background, so that one is read at a time.
    refreshing: std::collections::HashSet<Uuid>,
}

/// The snapshots held, per company, bounded by [`SNAPSHOT_CACHE_ROWS_MAX`] and [`SNAPSHOT_CACHE_COMPANIES_MAX`].
#[derive(Default)]
pub struct SnapshotCache {
    inner: Mutex<Inner>,
}

impl SnapshotCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent after every statement that changes it, so a panic elsewhere cannot leave it torn.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The company's held snapshot, marked as just used, and whether its heads are due for a check (see
    /// [`HEADS_CHECK_INTERVAL_MS`]); a due check is marked done, so that concurrent reports do not all make it.
    pub fn get(&self, company: Uuid) -> Option<(Arc<Snapshot>, bool)> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let held = inner.held.get_mut(&company)?;
        held.used = now;
        let due = held.heads_checked.elapsed() >= std::time::Duration::from_millis(HEADS_CHECK_INTERVAL_MS);
        if due {
            held.heads_checked = std::time::Instant::now();
        }
        Some((held.snapshot.clone(), due))
    }

    /// Holds `snapshot` for the company unless a newer one is held already; lets the least recently used go while the
    /// bounds are passed. A snapshot larger than all of [`SNAPSHOT_CACHE_ROWS_MAX`] is not held.
    pub fn put(&self, company: Uuid, snapshot: Arc<Snapshot>) {
        if snapshot.rows.len() > SNAPSHOT_CACHE_ROWS_MAX {
            return;
        }
        let mut inner = self.lock();
        if inner
            .held
            .get(&company)
            .is_some_and(|h| (h.snapshot.head.seq, h.snapshot.head.created_at) > (snapshot.head.seq, snapshot.head.created_at))
        {
            return;
        }
        if let Some(old) = inner.held.remove(&company) {
            inner.rows -= old.snapshot.rows.len();
        }
        while !inner.held.is_empty()
            && (inner.rows + snapshot.rows.len() > SNAPSHOT_CACHE_ROWS_MAX || inner.held.len() >= SNAPSHOT_CACHE_COMPANIES_MAX)
        {
            // A linear scan: it runs only when the bounds are reached, over at most SNAPSHOT_CACHE_COMPANIES_MAX entries.
            let Some(oldest) = inner.held.iter().min_by_key(|(_, h)| h.used).map(|(c, _)| *c) else { break };
            if let Some(old) = inner.held.remove(&oldest) {
                inner.rows -= old.snapshot.rows.len();
            }
        }
        inner.rows += snapshot.rows.len();
        inner.clock += 1;
        let used = inner.clock;
        inner.held.insert(company, Held { snapshot, used, heads_checked: std::time::Instant::now() });
    }

    /// Lets the company's snapshot go if it is still `head` (it vanished from ClickHouse).
    pub fn forget(&self, company: Uuid, head: SnapshotHead) {
        let mut inner = self.lock();
        if inner.held.get(&company).is_some_and(|h| h.snapshot.head == head) {
            if let Some(old) = inner.held.remove(&company) {
                inner.rows -= old.snapshot.rows.len();
            }
        }
    }

    /// The company's held snapshot, if one is held, without marking it used or its heads checked: for guesses only.
    pub fn peek(&self, company: Uuid) -> Option<Arc<Snapshot>> {
        self.lock().held.get(&company).map(|h| h.snapshot.clone())
    }

    /// Month rows held, for all companies.
    pub fn rows(&self) -> usize {
        self.lock().rows
    }

    /// Marks the company's snapshot as being read anew; false when it already is.
    fn start_refresh(&self, company: Uuid) -> bool {
        self.lock().refreshing.insert(company)
    }

    fn end_refresh(&self, company: Uuid) {
        self.lock().refreshing.remove(&company);
    }
}

/// A company's balances: the held snapshot's rows and the rows above it, with its fiscal start month.
#[derive(Debug)]
pub struct CompanyBalances {
    pub fiscal_start_month: Option<u8>,
    pub snapshot: Arc<Snapshot>,
    pub tail: Vec<MonthSums>,
}

impl CompanyBalances {
    /// Per account and bucket, as [`crate::report::bucket_months`] over the snapshot and the tail together.
    #[must_use]
    pub fn buckets(&self, from: Option<NaiveDate>, cuts: &[NaiveDate], through: NaiveDate) -> Vec<BucketSums> {
        crate::report::bucket_months(self.snapshot.rows.iter().chain(&self.tail), from, cuts, through)
    }
}

/// The company's balances through `cache`: with a snapshot held, one statement (the tail and the fiscal start month,
/// and at most every [`HEADS_CHECK_INTERVAL_MS`] the newest head and whether the held one is still there); without
/// one, the newest snapshot is read first and held. When a check finds a newer snapshot than the one held, it is read in
/// the background for the next reports, so the tail stays short.
///
/// # Errors
/// ClickHouse errors; [`Error::Other`] when the snapshot vanished [`SNAPSHOT_READS_MAX`] times in a row.
pub async fn company_balances(ch: &Client, cache: &Arc<SnapshotCache>, company: Uuid) -> Result<CompanyBalances> {
    for _ in 0..SNAPSHOT_READS_MAX {
        let (snapshot, check_heads, outcome) = match cache.get(company) {
            Some((s, due)) => (s, due, "hit"),
            None => {
                let head = store::newest_head(ch, company).await?;
                let Some(rows) = store::snapshot_months(ch, company, head).await? else {
                    metrics::counter!(CACHE_METRIC, "outcome" => "vanished").increment(1);
                    continue;
                };
                let snapshot = Arc::new(Snapshot { head, rows });
                cache.put(company, snapshot.clone());
                // Its head was just read with the rows.
                (snapshot, false, "miss")
            }
        };
        let tail = store::balance_tail(ch, company, snapshot.head, check_heads).await?;
        if !tail.head_exists {
            metrics::counter!(CACHE_METRIC, "outcome" => "vanished").increment(1);
            cache.forget(company, snapshot.head);
            continue;
        }
        metrics::counter!(CACHE_METRIC, "outcome" => outcome).increment(1);
        // Newer by sequence, or a later copy at the same sequence: the worker's repair of a wrong snapshot (and its
        // half-hourly refresh) writes one, and readers take the newest copy of each row.
        if let Some(newest) = tail.newest.filter(|n| (n.seq, n.created_at) > (snapshot.head.seq, snapshot.head.created_at)) {
            refresh_in_background(ch.clone(), cache.clone(), company, newest);
        }
        return Ok(CompanyBalances { fiscal_start_month: tail.fiscal_start_month, snapshot, tail: tail.rows });
    }
    Err(Error::Other(format!("company {company}'s balance snapshot vanished {SNAPSHOT_READS_MAX} times while it was read")))
}

/// A shared read's answer: `None` when it failed or did not finish, and each caller then reads on its own, so that its
/// error is its own (the error types are not `Clone`).
type SharedRead<T> = Option<Arc<T>>;

/// Each company's accounts as last read, bounded by [`ACCOUNT_GUESSES_MAX`].
#[derive(Default)]
struct Guesses {
    companies: HashMap<Uuid, Arc<Vec<AccountInfo>>>,
    accounts: usize,
}

/// The last accounts read per company, kept to guess an account before its company's accounts are read again.
#[derive(Default)]
struct AccountGuesses {
    inner: Mutex<Guesses>,
}

impl AccountGuesses {
    fn lock(&self) -> std::sync::MutexGuard<'_, Guesses> {
        // Each statement that changes the map leaves it consistent, so a panic elsewhere cannot leave it torn.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `accounts` as the company's newest read of them.
    fn remember(&self, company: Uuid, accounts: &Arc<Vec<AccountInfo>>) {
        let mut g = self.lock();
        if let Some(old) = g.companies.remove(&company) {
            g.accounts -= old.len();
        }
        if g.accounts + accounts.len() > ACCOUNT_GUESSES_MAX {
            g.companies.clear();
            g.accounts = 0;
        }
        if accounts.len() <= ACCOUNT_GUESSES_MAX {
            g.accounts += accounts.len();
            g.companies.insert(company, accounts.clone());
        }
    }

    /// The company's account of `code`, as its last read of accounts had it.
    fn account(&self, company: Uuid, code: &str) -> Option<Uuid> {
        let g = self.lock();
        crate::report::find_account(g.companies.get(&company)?, None, Some(code)).map(|i| i.account_id)
    }
}

/// The balances and accounts reads of the reports: the held snapshots, and the reads in flight per company that
/// reports of the same company join.
#[derive(Clone)]
pub struct Reader {
    snapshots: Arc<SnapshotCache>,
    balances: Arc<Flights<Uuid, SharedRead<CompanyBalances>>>,
    accounts: Arc<Flights<Uuid, SharedRead<Vec<AccountInfo>>>>,
    guesses: Arc<AccountGuesses>,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            snapshots: Arc::default(),
            balances: Arc::new(Flights::new(JOINED_METRIC)),
            accounts: Arc::new(Flights::new(JOINED_METRIC)),
            guesses: Arc::default(),
        }
    }
}

/// What a ledger page can be read with before its company's accounts and balances are: the account it likely names,
/// and the held balance snapshot that guesses how far its page reaches ([`crate::report::early_page_end`]).
pub struct LedgerGuess {
    pub account: Uuid,
    pub snapshot: Option<Arc<Snapshot>>,
}

/// Reads the company's accounts and remembers them as its newest guess.
async fn read_accounts(ch: &Client, guesses: &AccountGuesses, company: Uuid) -> Result<Arc<Vec<AccountInfo>>> {
    let accounts = Arc::new(store::account_infos(ch, company, None, None).await?);
    guesses.remember(company, &accounts);
    Ok(accounts)
}

impl Reader {
    /// The company's balances ([`company_balances`]), from the read in flight for the company if there is one.
    ///
    /// # Errors
    /// As [`company_balances`].
    pub async fn balances(&self, ch: &Client, company: Uuid) -> Result<Arc<CompanyBalances>> {
        let (shared_ch, snapshots) = (ch.clone(), self.snapshots.clone());
        let read = async move { company_balances(&shared_ch, &snapshots, company).await.ok().map(Arc::new) };
        match self.balances.run(company, read, || None).await {
            Some(b) => Ok(b),
            None => Ok(Arc::new(company_balances(ch, &self.snapshots, company).await?)),
        }
    }

    /// The company's accounts (`store::account_infos`), from the read in flight for the company if there is one.
    ///
    /// # Errors
    /// ClickHouse errors.
    pub async fn accounts(&self, ch: &Client, company: Uuid) -> Result<Arc<Vec<AccountInfo>>> {
        let (shared_ch, guesses) = (ch.clone(), self.guesses.clone());
        let read = async move { read_accounts(&shared_ch, &guesses, company).await.ok() };
        match self.accounts.run(company, read, || None).await {
            Some(a) => Ok(a),
            None => read_accounts(ch, &self.guesses, company).await,
        }
    }

    /// The account a ledger names (by `id`, or else by `code` in the company's accounts as last read) and the
    /// company's held balance snapshot, known before anything is read; `None` when the account cannot be guessed.
    /// The guess lets a ledger read its page in the same round as its accounts and balances, and is checked against
    /// them before the page is used.
    #[must_use]
    pub fn ledger_guess(&self, company: Uuid, id: Option<Uuid>, code: Option<&str>) -> Option<LedgerGuess> {
        let account = id.or_else(|| self.guesses.account(company, code?))?;
        Some(LedgerGuess { account, snapshot: self.snapshots.peek(company) })
    }

    /// What `read` gives (a report's balances, which name accounts by `ids`) together with the company's accounts:
    /// read alongside it (shared with the company's reads in flight, [`Reader::accounts`]), and read again if they lack
    /// an account it names ([`Reader::accounts_naming`]). Every report that names its balances' accounts reads them
    /// this way.
    ///
    /// # Errors
    /// `read`'s, and ClickHouse errors.
    pub async fn with_accounts<T>(
        &self,
        ch: &Client,
        company: Uuid,
        read: impl std::future::Future<Output = Result<T>>,
        ids: impl FnOnce(&T) -> Vec<Uuid>,
    ) -> Result<(T, Arc<Vec<AccountInfo>>)> {
        let (rows, accounts) = tokio::try_join!(read, self.accounts(ch, company))?;
        let accounts = self.accounts_naming(ch, company, accounts, ids(&rows)).await?;
        Ok((rows, accounts))
    }

    /// `accounts`, read alongside the balances that name the accounts `ids`, or a fresh read of the company's accounts
    /// if they lack one of those. Why: the worker writes an account into the dimension before any balance on it, but a
    /// report reads the two side by side, so its accounts may be read a moment before its balances; a new account's
    /// first balance would then be shown under an empty code. A read started after the balances were read holds every
    /// account they name. It is not shared with a read in flight, which may have started before.
    ///
    /// # Errors
    /// ClickHouse errors.
    pub async fn accounts_naming(
        &self,
        ch: &Client,
        company: Uuid,
        accounts: Arc<Vec<AccountInfo>>,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<Arc<Vec<AccountInfo>>> {
        if names_all(&accounts, ids) {
            return Ok(accounts);
        }
        metrics::counter!(ACCOUNTS_REREAD_METRIC).increment(1);
        read_accounts(ch, &self.guesses, company).await
    }

    /// The account of `id` and `code` ([`crate::report::find_account`]) in `accounts`, read alongside the balances, or
    /// else in a fresh read of the company's accounts: as in [`Reader::accounts_naming`], an account read a moment
    /// before its first balance is missing from `accounts`, so an account is taken as unknown only once a read made
    /// after the balances lacks it too.
    ///
    /// # Errors
    /// ClickHouse errors.
    pub async fn find_account(
        &self,
        ch: &Client,
        company: Uuid,
        accounts: &[AccountInfo],
        id: Option<Uuid>,
        code: Option<&str>,
    ) -> Result<Option<AccountInfo>> {
        if let Some(info) = crate::report::find_account(accounts, id, code) {
            return Ok(Some(info));
        }
        metrics::counter!(ACCOUNTS_REREAD_METRIC).increment(1);
        Ok(crate::report::find_account(&read_accounts(ch, &self.guesses, company).await?, id, code))
    }
}

/// Whether `accounts` hold every account of `ids`.
fn names_all(accounts: &[AccountInfo], ids: impl IntoIterator<Item = Uuid>) -> bool {
    let known: std::collections::HashSet<Uuid> = accounts.iter().map(|a| a.account_id).collect();
    ids.into_iter().all(|id| known.contains(&id))
}

/// Reads the snapshot `head` names and holds it, on a task of its own, unless one is being read for the company.
fn refresh_in_background(ch: Client, cache: Arc<SnapshotCache>, company: Uuid, head: SnapshotHead) {
    if !cache.start_refresh(company) {
        return;
    }
    tokio::spawn(async move {
        match store::snapshot_months(&ch, company, head).await {
            Ok(Some(rows)) => cache.put(company, Arc::new(Snapshot { head, rows })),
            // Gone already (a still newer one replaced it, or a rebuild): the next report finds the newest.
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, %company, "could not read a newer balance snapshot; the held one serves"),
        }
        cache.end_refresh(company);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Movement;

    fn snapshot(seq: i64, rows: usize) -> Arc<Snapshot> {
        let row = MonthSums {
            account_id: Uuid::nil(),
            period: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            movement: Movement::new(1, 0),
            lines: 1,
            uncounted: false,
        };
        Arc::new(Snapshot { head: SnapshotHead { seq, created_at: 1 }, rows: vec![row; rows] })
    }

    #[test]
    fn account_guesses_name_the_newest_read_and_stay_bounded() {
        let info =
            |code: &str| AccountInfo { account_id: Uuid::new_v4(), code: code.into(), name: "현금".into(), account_type: "asset".into() };
        let guesses = AccountGuesses::default();
        let (c1, c2) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(guesses.account(c1, "1101"), None);
        let first = Arc::new(vec![info("1101"), info("2101")]);
        guesses.remember(c1, &first);
        assert_eq!(guesses.account(c1, "2101"), Some(first[1].account_id));
        assert_eq!(guesses.account(c2, "2101"), None, "another company's accounts are not a guess");
        // A newer read replaces the company's guess and its count.
        let newer = Arc::new(vec![info("1101")]);
        guesses.remember(c1, &newer);
        assert_eq!(guesses.account(c1, "1101"), Some(newer[0].account_id));
        assert_eq!(guesses.account(c1, "2101"), None);
        assert_eq!(guesses.lock().accounts, 1);
        // Past the bound, all are let go before the newest is kept.
        let many = Arc::new((0..ACCOUNT_GUESSES_MAX).map(|i| info(&i.to_string())).collect::<Vec<_>>());
        guesses.remember(c2, &many);
        assert_eq!(guesses.account(c1, "1101"), None);
        assert_eq!(guesses.lock().accounts, ACCOUNT_GUESSES_MAX);
        assert!(guesses.account(c2, "7").is_some());
    }

    #[test]
    fn accounts_name_all_only_when_none_of_the_ids_is_missing() {
        let info = |id: Uuid| AccountInfo { account_id: id, code: "1101".into(), name: "현금".into(), account_type: "asset".into() };
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(names_all(&[info(a), info(b)], [a, b, a]));
        assert!(names_all(&[info(a)], []));
        assert!(!names_all(&[info(a)], [a, b]));
        assert!(!names_all(&[], [b]));
    }

    #[test]
    fn a_newer_snapshot_replaces_an_older_one_and_never_the_reverse() {
        let cache = SnapshotCache::default();
        let c = Uuid::new_v4();
        cache.put(c, snapshot(10, 3));
        cache.put(c, snapshot(20, 5));
        assert_eq!(cache.get(c).unwrap().0.head.seq, 20);
        cache.put(c, snapshot(15, 7));
        assert_eq!(cache.get(c).unwrap().0.head.seq, 20, "an older snapshot read late does not replace a newer one");
        assert_eq!(cache.rows(), 5);
    }

    /// A repair writes a later copy of a snapshot at the same sequence; it replaces the held one, and an earlier copy
    /// read late does not.
    #[test]
    fn a_later_copy_at_the_same_sequence_replaces_the_held_one() {
        let cache = SnapshotCache::default();
        let c = Uuid::new_v4();
        let copy = |created_at, rows| {
            let rows = snapshot(10, rows).rows.clone();
            Arc::new(Snapshot { head: SnapshotHead { seq: 10, created_at }, rows })
        };
        cache.put(c, copy(100, 3));
        cache.put(c, copy(160, 4));
        assert_eq!(cache.get(c).unwrap().0.head, SnapshotHead { seq: 10, created_at: 160 });
        cache.put(c, copy(100, 3));
        assert_eq!(cache.get(c).unwrap().0.head.created_at, 160, "an earlier copy read late does not replace a later one");
    }

    #[test]
    fn forget_lets_go_only_of_the_head_that_vanished() {
        let cache = SnapshotCache::default();
        let c = Uuid::new_v4();
        cache.put(c, snapshot(10, 3));
        cache.forget(c, SnapshotHead { seq: 9, created_at: 1 });
        assert!(cache.get(c).is_some());
        cache.forget(c, SnapshotHead { seq: 10, created_at: 1 });
        assert!(cache.get(c).is_none());
        assert_eq!(cache.rows(), 0);
    }

    #[test]
    fn the_least_recently_used_go_first_once_the_rows_bound_is_passed() {
        let cache = SnapshotCache::default();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let third = SNAPSHOT_CACHE_ROWS_MAX / 3;
        cache.put(a, snapshot(1, third));
        cache.put(b, snapshot(1, third));
        // Used after b, so b is the least recently used.
        assert!(cache.get(a).is_some());
        cache.put(c, snapshot(1, third + 10));
        assert!(cache.get(b).is_none(), "b was the least recently used");
        assert!(cache.get(a).is_some() && cache.get(c).is_some());
        assert_eq!(cache.rows(), 2 * third + 10);
        assert!(cache.rows() <= SNAPSHOT_CACHE_ROWS_MAX);
        // Too large to hold at all.
        cache.put(Uuid::new_v4(), snapshot(1, SNAPSHOT_CACHE_ROWS_MAX + 1));
        assert_eq!(cache.rows(), 2 * third + 10);
    }

    #[test]
    fn heads_are_due_for_a_check_once_per_interval() {
        let cache = SnapshotCache::default();
        let c = Uuid::new_v4();
        cache.put(c, snapshot(10, 1));
        assert!(!cache.get(c).unwrap().1, "just read with its head");
        std::thread::sleep(std::time::Duration::from_millis(HEADS_CHECK_INTERVAL_MS + 10));
        assert!(cache.get(c).unwrap().1, "due after the interval");
        assert!(!cache.get(c).unwrap().1, "one report makes the check, the next ones do not");
    }

    #[test]
    fn a_refresh_runs_once_per_company_at_a_time() {
        let cache = SnapshotCache::default();
        let c = Uuid::new_v4();
        assert!(cache.start_refresh(c));
        assert!(!cache.start_refresh(c));
        cache.end_refresh(c);
        assert!(cache.start_refresh(c));
    }
}
