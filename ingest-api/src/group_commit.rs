//! Group commit for postings: concurrent posts, of one company or of many, are written in batches, one Postgres
//! transaction and one commit per batch.
//!
//! What flows through it: a handler hands its validated voucher to [`Poster::post`] and awaits the answer. The voucher
//! goes to one of a few lanes, chosen by its company, so that a company's postings always queue in one lane, in
//! arrival order. A lane takes whatever has queued while its previous batch was being written (up to
//! [`BATCH_VOUCHERS_MAX`] vouchers and [`BATCH_LINES_MAX`] lines; it never waits to fill a batch, so a lone post is
//! written at once) and posts it with [`crate::store::vouchers::batch::post_batch`]. Each post gets its own answer:
//! its number, or the 4xx that refused it alone. A batch that fails as a whole before its commit was rolled back, and
//! its posts are then written one by one, each in a transaction of its own, as without group commit. A failed commit
//! is not retried, since Postgres may have kept it: every post of the batch gets the error, as a single posting would.
//!
//! Order and exactly-once are unchanged: a company's posts of a batch take consecutive sequences in arrival order
//! under its company row, exactly as consecutive single postings would. The one exception is a batch that finds a row
//! held by another transaction: its posts then go on alone, aside from the lane, so that one busy company does not
//! hold up the others, and they may commit after later posts of their company (numbers and sequences stay gapless,
//! in commit order).

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use kerp_core::http::Problem;
use kerp_core::voucher::ValidVoucher;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use uuid::Uuid;

use crate::store::vouchers::{self, batch, Posted};
use crate::{Error, Result};

/// Most vouchers in one batch: beyond this, a batch's statements grow past the point where the commit they share is
/// what they wait for.
pub const BATCH_VOUCHERS_MAX: usize = 256;
/// Most lines in one batch (a voucher has up to `LINES_MAX`), which bounds the arrays of its one insert statement.
pub const BATCH_LINES_MAX: usize = 4_096;
/// Posts queued per lane before a new post waits for room: back-pressure instead of unbounded memory.
pub const LANE_QUEUE_MAX: usize = 1_024;
/// Most lanes: each holds one pooled connection while it writes, and for `LANE_CONN_LINGER_MS` after.
pub const LANES_MAX: usize = 16;
/// Longest a batch waits for a row another transaction holds, in milliseconds (the pool's own wait is
/// `DB_LOCK_WAIT_MS_MAX`). Past it the batch's posts go on alone, aside from the lane.
pub const BATCH_LOCK_WAIT_MS_MAX: u64 = 50;
/// How long a lane keeps its connection after its queue ran empty, in milliseconds: long enough to span the gaps
/// between batches while posts arrive, short enough that an idle lane does not keep a connection from the pool.
pub const LANE_CONN_LINGER_MS: u64 = 100;

struct Job {
    company_id: Uuid,
    user_id: Uuid,
    voucher: ValidVoucher,
    reply: oneshot::Sender<Result<Posted>>,
    span: tracing::Span,
}

/// The handle handlers post through; cloning it is cheap. The lanes stop once every handle is dropped, after
/// writing what was queued.
#[derive(Clone)]
pub struct Poster {
    lanes: Vec<mpsc::Sender<Job>>,
}

impl Poster {
    /// Starts `lanes` lanes (1 to [`LANES_MAX`]) posting on `pool` to `topic`.
    #[must_use]
    pub fn start(pool: PgPool, topic: String, lanes: usize) -> Poster {
        let lanes = (0..lanes.clamp(1, LANES_MAX))
            .map(|lane_no| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE_MAX);
                tokio::spawn(lane(pool.clone(), topic.clone(), rx, lane_no));
                tx
            })
            .collect();
        Poster { lanes }
    }

    /// Posts one validated voucher for a company's user and returns its answer.
    ///
    /// # Errors
    /// As [`vouchers::post_voucher`]; a 503 when the lanes have stopped (the service is shutting down).
    pub async fn post(&self, company_id: Uuid, user_id: Uuid, voucher: ValidVoucher) -> Result<Posted> {
        self.submit(company_id, user_id, voucher).await?.await
    }

    /// Queues a voucher and returns the future of its answer. A caller that submits several vouchers one after the
    /// other (a gRPC stream) has them posted in that order, however it then awaits their answers.
    ///
    /// # Errors
    /// A 503 when the lanes have stopped (the service is shutting down).
    pub async fn submit(
        &self,
        company_id: Uuid,
        user_id: Uuid,
        voucher: ValidVoucher,
    ) -> Result<impl std::future::Future<Output = Result<Posted>> + Send + 'static> {
        let (reply, answer) = oneshot::channel();
        // The lane is a function of the company alone, so that a company's posts keep their order.
        let lane = usize::try_from(company_id.as_u128() % self.lanes.len() as u128).unwrap_or(0);
        let job = Job { company_id, user_id, voucher, reply, span: tracing::Span::current() };
        self.lanes[lane].send(job).await.map_err(|_| stopped())?;
        Ok(async move { answer.await.map_err(|_| stopped())? })
    }
}

fn stopped() -> Error {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the service is shutting down; retry shortly").into()
}

/// Each post's copy of a failed commit's error. A database that was busy or out of reach (a lost connection, or the
/// server shutting down: `57P01` in the fault suite's Postgres restart) gives a 503, as a single posting whose commit
/// was cut off does; anything else is a 500.
fn commit_failed(e: &sqlx::Error) -> Error {
    match crate::error::unavailable(e) {
        Some(detail) => Error::Unavailable(detail),
        None => Error::Other(format!("a batch's commit failed: {e}")),
    }
}

async fn lane(pool: PgPool, topic: String, mut rx: mpsc::Receiver<Job>, lane_no: usize) {
    // The connection this lane keeps between batches while posts keep coming. Taking a connection from the pool and
    // giving it back costs a round trip each (sqlx pings a connection it hands out and one it takes back), which was a
    // fifth of a batch's round trips; the lane gives it back once its queue has been empty for `LANE_CONN_LINGER_MS`.
    let mut held: Option<PoolConnection<Postgres>> = None;
    loop {
        let first = match rx.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) if held.is_some() => {
                match tokio::time::timeout(Duration::from_millis(LANE_CONN_LINGER_MS), rx.recv()).await {
                    Ok(Some(job)) => job,
                    Ok(None) => break,
                    Err(_) => {
                        held = None;
                        let Some(job) = rx.recv().await else { break };
                        job
                    }
                }
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                let Some(job) = rx.recv().await else { break };
                job
            }
        };
        let mut lines = first.voucher.lines.len();
        let mut jobs = vec![first];
        while jobs.len() < BATCH_VOUCHERS_MAX && lines < BATCH_LINES_MAX {
            match rx.try_recv() {
                Ok(job) => {
                    lines += job.voucher.lines.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let span = tracing::info_span!("group_commit", lane = lane_no, vouchers = jobs.len(), lines);
        held = write(&pool, held, &topic, jobs).instrument(span).await;
    }
}

/// How one batch's transaction ended.
enum Outcome {
    /// Committed: each post's answer, in order.
    Committed(Vec<Result<Posted>>),
    /// Failed before its commit and rolled back: nothing of the batch is kept.
    RolledBack(Error),
    /// The commit itself failed: Postgres may have kept the batch.
    CommitFailed(sqlx::Error),
}

/// Writes a batch in one transaction on `conn`. The transaction's `BEGIN` also sets its lock wait, in the same
/// round trip.
async fn transact(conn: &mut PgConnection, topic: &str, items: &[batch::Item<'_>]) -> Outcome {
    // A batch waits only briefly for a row another transaction holds (a company's long posting elsewhere, a month
    // being closed): the lane must not keep every other company it serves waiting behind that lock.
    let begin = format!("BEGIN; SET LOCAL lock_timeout = '{BATCH_LOCK_WAIT_MS_MAX}ms'");
    let mut tx = match conn.begin_with(begin).await {
        Ok(tx) => tx,
        Err(e) => return Outcome::RolledBack(e.into()),
    };
    let answers = match batch::post_batch(&mut tx, topic, items).await {
        Ok(answers) => answers,
        // Dropping the transaction rolls it back.
        Err(e) => return Outcome::RolledBack(e),
    };
    match tx.commit().await {
        Ok(()) => Outcome::Committed(answers),
        Err(e) => Outcome::CommitFailed(e),
    }
}

/// Writes one batch and answers each of its posts. It writes on `held` when the lane kept a connection, else on one
/// from the pool, and returns the connection for the next batch; after any failure the connection goes back to the
/// pool instead (which tests it and closes it if it is broken).
async fn write(pool: &PgPool, held: Option<PoolConnection<Postgres>>, topic: &str, jobs: Vec<Job>) -> Option<PoolConnection<Postgres>> {
    let started = Instant::now();
    metrics::histogram!("group_commit_batch_vouchers").record(jobs.len() as f64);
    let items: Vec<batch::Item<'_>> =
        jobs.iter().map(|j| batch::Item { company_id: j.company_id, user_id: j.user_id, voucher: &j.voucher }).collect();
    let acquired = match held {
        Some(conn) => Ok(conn),
        None => pool.acquire().await,
    };
    let (mut conn, outcome) = match acquired {
        Ok(mut c) => {
            let outcome = transact(&mut c, topic, &items).await;
            (Some(c), outcome)
        }
        // As a failed batch: each post then tries alone, and gets the pool's error if it persists.
        Err(e) => (None, Outcome::RolledBack(e.into())),
    };
    let answers = match outcome {
        Outcome::Committed(answers) => answers,
        Outcome::CommitFailed(e) => {
            // Postgres may have kept the commit: posting again could count the vouchers twice.
            tracing::error!(error = %e, "a batch's commit failed; its posts get the error");
            metrics::counter!("group_commit_failures_total", "stage" => "commit").increment(1);
            conn = None;
            jobs.iter().map(|_| Err(commit_failed(&e))).collect()
        }
        Outcome::RolledBack(e) if is_lock_wait(&e) => {
            // Rolled back: nothing of the batch is kept. Its posts go alone, each in a task of its own with the pool's
            // full lock wait, and the lane moves on: the posts of the busy company wait (or get their 503) without
            // holding up the other companies of this lane. Those posts may then commit after later posts of the same
            // company; each still gets its own gapless number and sequence, in commit order, as the fold needs.
            tracing::info!(error = %e, vouchers = jobs.len(), "a batch waited for a row held elsewhere; posting its vouchers one by one, aside");
            metrics::counter!("group_commit_failures_total", "stage" => "lock").increment(1);
            drop(items);
            for job in jobs {
                let (pool, topic) = (pool.clone(), topic.to_owned());
                tokio::spawn(async move {
                    let span = job.span.clone();
                    let answer = single(&pool, &topic, &job).instrument(span).await;
                    let _ = job.reply.send(answer);
                });
            }
            return None;
        }
        Outcome::RolledBack(e) => {
            // Nothing of the batch is kept. Each post goes alone now.
            tracing::info!(error = %e, vouchers = jobs.len(), "a batch could not be posted as one; posting its vouchers one by one");
            metrics::counter!("group_commit_failures_total", "stage" => "batch").increment(1);
            drop(items);
            conn = None;
            let mut answers = Vec::with_capacity(jobs.len());
            for j in &jobs {
                answers.push(single(pool, topic, j).instrument(j.span.clone()).await);
            }
            answers
        }
    };
    metrics::histogram!("db_query_duration_seconds", "query" => "post_voucher_batch").record(started.elapsed().as_secs_f64());
    for (job, answer) in jobs.into_iter().zip(answers) {
        // A caller that went away no longer waits for its answer; its voucher is posted all the same, as it would be
        // had it gone away just after the commit.
        let _ = job.reply.send(answer);
    }
    conn
}

/// Whether a batch failed because a row it needed was held by another transaction past [`BATCH_LOCK_WAIT_MS_MAX`].
fn is_lock_wait(e: &Error) -> bool {
    matches!(e, Error::Db(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03"))
}

/// The single path: one voucher in a transaction of its own.
async fn single(pool: &PgPool, topic: &str, j: &Job) -> Result<Posted> {
    let mut tx = pool.begin().await?;
    let posted = vouchers::post_voucher(&mut tx, j.company_id, j.user_id, topic, &j.voucher).await?;
    tx.commit().await?;
    Ok(posted)
}

#[cfg(test)]
mod tests {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;

    /// The fault suite's Postgres restart cut a batch's COMMIT off and its post got a 500; a database out of reach is
    /// a 503 with Retry-After for every post of the batch, whatever form the error takes.
    #[test]
    fn a_commit_cut_off_by_an_unreachable_database_is_a_503_for_every_post() {
        for e in [sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()), sqlx::Error::PoolClosed, sqlx::Error::PoolTimedOut] {
            for _post in 0..2 {
                let res = super::commit_failed(&e).into_response();
                assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{e}");
                assert!(res.headers().contains_key(header::RETRY_AFTER));
            }
        }
        assert_eq!(super::commit_failed(&sqlx::Error::RowNotFound).into_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
