//! The cost of a batch must not grow with the number of companies in it. The fold used to read the watermarks of a
//! batch's companies with one `IN (…)` list per batch, which broke ClickHouse's `max_query_size` at about 5,500
//! companies and stalled the fold for good. Now watermarks are kept in memory per owned partition and loaded once
//! on assignment: 6,000 companies in one batch fold like six.

mod common;

use std::time::Duration;

use common::{event, eventually, publish_events, signal, wait_exit, worker};
use rand::SeedableRng;
use uuid::Uuid;

#[tokio::test]
async fn a_batch_of_six_thousand_companies_folds() {
    const COMPANIES: usize = 6_000;
    let common::Setup { run, topic, ch } = common::setup("many", 2).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let accounts: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    let marker = format!("M-{run}");
    let events: Vec<_> = (0..COMPANIES)
        .map(|_| {
            let mut e = event(&mut rng, Uuid::new_v4(), 1, &accounts);
            e.voucher_number.clone_from(&marker);
            e
        })
        .collect();
    publish_events(&topic, &events).await;

    // Every event in one batch: the batch closes on lines (2 per event) only after all of them arrived.
    let mut w = worker(&topic, &format!("kerp-test-many-{run}"), &[("BATCH_ROWS_MAX", "100000"), ("FLUSH_INTERVAL_MS", "3000")]);
    let folded = format!(
        "SELECT count() FROM fold_watermarks WHERE seq = 1 AND company_id IN
           (SELECT company_id FROM ledger_lines WHERE voucher_number = '{marker}')"
    );
    eventually(Duration::from_secs(120), "every company folded", || async {
        let n: u64 = ch.query(&folded).fetch_one().await.ok()?;
        (n == COMPANIES as u64).then_some(())
    })
    .await;
    let lines: u64 =
        ch.query(&format!("SELECT count() FROM ledger_lines FINAL WHERE voucher_number = '{marker}'")).fetch_one().await.unwrap();
    assert_eq!(lines, 2 * COMPANIES as u64);
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w, Duration::from_secs(30)).success());
}
