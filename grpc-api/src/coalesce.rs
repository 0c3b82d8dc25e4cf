//! Coalescing of identical unary report calls, as query-api's `coalesce` does for REST. A `TrialBalance` call comes in
//! with a verified token; if a call with the same company, role and request message is being answered at this moment,
//! this one waits for that answer and gets a copy of it instead of running the same ClickHouse queries again. Nothing
//! is kept once an answer is out: the next call after it reads afresh.
//!
//! Why: many report users of one company mostly ask for the same month's trial balance, and each read costs ClickHouse
//! the same scan; the REST side measured the machine spending its CPU on identical answers side by side. A shared
//! answer is no staler than the slowest of those reads would have been, and the pipeline's own delay (an event reaches
//! the reports within about half a second of its 201) is larger than that.
//!
//! What a shared answer never crosses: companies and roles. They are the key, taken from the verified token (the
//! caller authorizes first), so one company never sees another's answer. The streamed `AccountLedger` is not
//! coalesced: its answer is sent as it is read, in bounded memory, and holding a whole ledger for several waiters
//! would undo that.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::{BoxFuture, FutureExt, Shared};
use tracing::Instrument;

/// Most distinct reads in flight that others may join. Past it, a call is answered on its own, as without
/// coalescing, so the map stays small whatever the traffic.
pub const FLIGHTS_MAX: usize = 1024;

type Flight<V> = Shared<BoxFuture<'static, V>>;

/// The reads in flight, by key. Each entry is removed by its own read as it finishes.
pub struct Flights<K, V> {
    inner: Mutex<HashMap<K, (u64, Flight<V>)>>,
    next_id: AtomicU64,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self { inner: Mutex::new(HashMap::new()), next_id: AtomicU64::new(0) }
    }
}

impl<K, V> Flights<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn lock(&self) -> MutexGuard<'_, HashMap<K, (u64, Flight<V>)>> {
        // The map holds no invariant a panic could break halfway, so a poisoned lock is taken over.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many reads are in flight (tests).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no read is in flight (tests).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer of `read` for `key`: a copy of the answer of the read in flight for `key` if there is one, else
    /// `read`'s own, shared with the calls that come while it runs. `lost` answers when the read did not finish (it
    /// panicked, or the runtime is shutting down).
    pub async fn run<F>(self: &Arc<Self>, key: K, read: F, lost: fn() -> V) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        match self.join_or_start(key, read, lost) {
            Ok(flight) => flight.await,
            Err(alone) => alone.await,
        }
    }

    /// The read in flight for `key`, joined or started; `read` back when [`FLIGHTS_MAX`] reads are in flight. Not
    /// async, so the lock is never held across an await.
    fn join_or_start<F>(self: &Arc<Self>, key: K, read: F, lost: fn() -> V) -> Result<Flight<V>, F>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let mut flights = self.lock();
        if let Some((_, flight)) = flights.get(&key) {
            metrics::counter!("grpc_requests_coalesced_total").increment(1);
            return Ok(flight.clone());
        }
        if flights.len() >= FLIGHTS_MAX {
            return Err(read);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Inserted under the same lock the read takes to remove itself, so it cannot finish before it is in the map.
        let flight = self.start(key.clone(), id, read, lost);
        flights.insert(key, (id, flight.clone()));
        Ok(flight)
    }

    /// The read of `key`, shareable. It runs as a task of its own, so it finishes (and takes itself out of the map)
    /// even when every call waiting for it has gone away: a read left half done in the map would be resumed, long
    /// after, by the next call with its key.
    fn start<F>(self: &Arc<Self>, key: K, id: u64, read: F, lost: fn() -> V) -> Flight<V>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let flights = Arc::clone(self);
        let task = tokio::spawn(
            async move {
                let answer = read.await;
                let mut map = flights.lock();
                if map.get(&key).is_some_and(|(current, _)| *current == id) {
                    map.remove(&key);
                }
                answer
            }
            .in_current_span(),
        );
        async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "a shared report read did not finish");
                lost()
            })
        }
        .boxed()
        .shared()
    }
}

/// Describes this module's metric for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "grpc_requests_coalesced_total",
        "Unary report calls answered with a copy of an identical read already in flight (same company, role and request) instead of a read of their own."
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::Flights;

    type TestFlights = Flights<(u32, &'static str), Result<u32, String>>;

    fn lost() -> Result<u32, String> {
        Err("lost".into())
    }

    /// A read that counts its runs and takes `ms` milliseconds.
    fn read(runs: &Arc<AtomicUsize>, ms: u64, answer: u32) -> impl std::future::Future<Output = Result<u32, String>> + Send + 'static {
        let runs = Arc::clone(runs);
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(answer)
        }
    }

    #[tokio::test]
    async fn identical_calls_in_flight_share_one_read_and_distinct_keys_do_not() {
        let flights = Arc::new(TestFlights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let same = (0..8).map(|_| {
            let (f, r) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move { f.run((1, "accountant"), read(&r, 100, 7), lost).await })
        });
        let other_company = {
            let (f, r) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move { f.run((2, "accountant"), read(&r, 100, 8), lost).await })
        };
        let other_role = {
            let (f, r) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move { f.run((1, "viewer"), read(&r, 100, 9), lost).await })
        };
        for call in same.collect::<Vec<_>>() {
            assert_eq!(call.await.unwrap(), Ok(7));
        }
        assert_eq!(other_company.await.unwrap(), Ok(8));
        assert_eq!(other_role.await.unwrap(), Ok(9));
        assert_eq!(runs.load(Ordering::SeqCst), 3, "one read per key");
        assert!(flights.is_empty(), "finished reads leave the map");
        // After an answer, the next call reads afresh.
        assert_eq!(flights.run((1, "accountant"), read(&runs, 1, 10), lost).await, Ok(10));
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_read_whose_callers_all_went_away_still_finishes_and_leaves_the_map() {
        let flights = Arc::new(TestFlights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let call = {
            let (f, r) = (Arc::clone(&flights), Arc::clone(&runs));
            tokio::spawn(async move { f.run((1, "accountant"), read(&r, 50, 7), lost).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        call.abort();
        assert_eq!(flights.len(), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(flights.is_empty());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_are_shared_too_and_a_panicking_read_answers_lost() {
        let flights = Arc::new(TestFlights::default());
        let failing = flights.run((1, "accountant"), async { Err::<u32, _>("unavailable".to_owned()) }, lost).await;
        assert_eq!(failing, Err("unavailable".into()));
        let panicking = flights.run((1, "accountant"), async { panic!("a bug") }, lost).await;
        assert_eq!(panicking, Err("lost".into()));
    }
}
