//! Two workers in one group, one of them frozen with a folded batch in hand. The frozen worker (SIGSTOP, through the
//! test-only `KERP_FAULT_STOP_BEFORE_WRITE` switch, so it stops exactly between fold and write) loses its partitions
//! after the session timeout; the other worker takes them over and folds everything. When the frozen one is resumed
//! past its poll interval it must give its batch up instead of writing it, and whatever either of them wrote, every
//! sum must stay exact: before per-event rows, the two would have added the same batch twice and the watermark would
//! have overshot.

mod common;

use std::time::Duration;

use common::{
    balances, event, eventually, expected_totals, free_addr, is_stopped, ledger_line_count, metric, publish_events, signal, wait_exit,
    worker,
};
use rand::SeedableRng;
use uuid::Uuid;

#[tokio::test]
async fn a_worker_frozen_with_a_batch_in_hand_never_double_counts() {
    let common::Setup { run, topic, ch } = common::setup("fence", 2).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let companies: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let accounts: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let events: Vec<_> = companies
        .iter()
        .flat_map(|c| (1..=30).map(|s| (*c, s)).collect::<Vec<_>>())
        .map(|(c, s)| event(&mut rng, c, s, &accounts))
        .collect();
    publish_events(&topic, &events).await;
    let expected = expected_totals(&events);

    let group = format!("kerp-test-fence-{run}");
    // Short timeouts so the test is quick: the session (heartbeats) ends after 6 s, the poll interval after 10 s.
    let timeouts = [("KAFKA_SESSION_TIMEOUT_MS", "6000"), ("KAFKA_MAX_POLL_INTERVAL_MS", "10000"), ("FLUSH_INTERVAL_MS", "300")];
    let frozen_metrics = free_addr();
    let mut frozen_env = timeouts.to_vec();
    frozen_env.extend([("KERP_FAULT_STOP_BEFORE_WRITE", "true"), ("WORKER_METRICS_LISTEN", frozen_metrics.as_str())]);
    let mut frozen = worker(&topic, &group, &frozen_env);
    eventually(Duration::from_secs(60), "the first worker to freeze with its batch", || async { is_stopped(&frozen).then_some(()) }).await;
    let (before, _) = balances(&ch, &companies).await;
    assert!(before.is_empty(), "the frozen worker wrote nothing yet");

    let mut other = worker(&topic, &group, &timeouts);
    eventually(Duration::from_secs(90), "the second worker to fold every event", || async {
        let (_, marks) = balances(&ch, &companies).await;
        (marks.len() == companies.len() && marks.values().all(|m| *m == 30)).then_some(())
    })
    .await;
    let (totals, _) = balances(&ch, &companies).await;
    assert_eq!(totals, expected, "the new owner folded everything once");

    // Resume the frozen worker well past its poll interval: it must give up its batch and rejoin.
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(&frozen, "-CONT");
    eventually(Duration::from_secs(30), "the resumed worker to give up its stale batch", || async {
        metric(&frozen_metrics, "fold_batches_abandoned_total").await.filter(|n| *n >= 1.0)
    })
    .await;
    // Give both workers time to rebalance and re-read whatever the group had not committed.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (totals, marks) = balances(&ch, &companies).await;
    assert_eq!(totals, expected, "every sum stays exact after both workers ran");
    assert!(marks.values().all(|m| *m == 30), "no watermark overshoots: {marks:?}");
    let lines: u64 = events.iter().map(|e| e.lines.len() as u64).sum();
    assert_eq!(ledger_line_count(&ch, &companies).await, lines);
    for w in [&mut frozen, &mut other] {
        signal(w, "-TERM");
        assert!(wait_exit(w, Duration::from_secs(30)).success(), "graceful shutdown");
    }
}
