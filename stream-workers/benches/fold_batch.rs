//! Benchmarks of the fold of one batch, the worker's CPU cost per batch apart from ClickHouse: decoded messages in,
//! ledger, balance, account and watermark rows out (`fold::fold`), and the same from the raw Avro payloads, as the
//! worker receives them from Kafka. Run with `cargo bench -p kerp-stream`; numbers are in perf/README.md.

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use kerp_schemas::{Event, VoucherLine, VoucherPosted};
use kerp_stream::fold::{fold, FoldState, Message};
use uuid::Uuid;

/// Companies the batch interleaves, as on a busy topic.
const COMPANIES: u128 = 10;
/// Partitions of the topic in the dev stack.
const PARTITIONS: u128 = 6;

/// Voucher `seq` of `company`: two lines, 5212 debit and 1101 credit.
fn voucher(company: u128, seq: i64) -> VoucherPosted {
    let line = |no: i32, account: u128, code: &str, name: &str, kind: &str, debit: i64, credit: i64| VoucherLine {
        line_no: no,
        account_id: Uuid::from_u128(account),
        account_code: code.to_owned(),
        account_name: name.to_owned(),
        account_type: kind.to_owned(),
        partner_id: None,
        debit,
        credit,
        description: "office supplies".to_owned(),
        department_id: None,
    };
    VoucherPosted {
        event_id: Uuid::from_u128((company << 64) | u128::from(seq.unsigned_abs())),
        company_id: Uuid::from_u128(company),
        company_seq: seq,
        voucher_id: Uuid::from_u128((company << 64) | (1 << 63) | u128::from(seq.unsigned_abs())),
        voucher_number: format!("2025-03-{seq:06}"),
        voucher_date: 20_162,
        voucher_type: "general".to_owned(),
        status: "approved".to_owned(),
        description: "Office supplies".to_owned(),
        posted_at: 1_742_000_000_000_000,
        lines: vec![line(1, 5212, "5212", "소모품비", "expense", 110_000, 0), line(2, 1101, "1101", "현금", "asset", 0, 110_000)],
        reversal_of: None,
    }
}

/// A batch of `n` vouchers, round robin over the companies, each company's in sequence from 1 (so all are folded).
fn batch(n: usize) -> Vec<VoucherPosted> {
    (0..n as u128).map(|i| voucher(1 + i % COMPANIES, i64::try_from(1 + i / COMPANIES).expect("small batch"))).collect()
}

fn message(offset: usize, e: VoucherPosted) -> Message {
    let company = e.company_id;
    Message {
        partition: i32::try_from(company.as_u128() % PARTITIONS).expect("few partitions"),
        offset: i64::try_from(offset).expect("small batch"),
        key_company: Some(company),
        event: Ok(Event::VoucherPosted(e)),
    }
}

fn fold_batches(c: &mut Criterion) {
    let skips = HashSet::new();
    let mut group = c.benchmark_group("fold_batch");
    // 10,000 two-line vouchers fill a batch at the default BATCH_ROWS_MAX of 20,000 lines; 1,000 is a batch flushed
    // by the interval at about 1,000 posts/s.
    for n in [1_000usize, 10_000] {
        let messages: Vec<Message> = batch(n).into_iter().enumerate().map(|(i, e)| message(i, e)).collect();
        let out = fold(&messages, &mut FoldState::default(), &skips);
        assert_eq!(out.folded.len(), n, "every voucher of the benchmark batch must be folded");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("vouchers", n), &messages, |b, messages| {
            // A fresh state each time: the batch's sequences start above an empty watermark. LargeInput keeps few
            // outputs alive at once: with SmallInput, a tenth of the samples' outputs (megabytes each) pile up and
            // the page faults of that memory were timed too (a 10,000 batch took 47 times a 1,000 one, not 10).
            b.iter_batched(FoldState::default, |mut state| fold(black_box(messages), &mut state, &skips), BatchSize::LargeInput);
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode_and_fold_batch");
    let n = 1_000usize;
    {
        let payloads: Vec<Vec<u8>> =
            batch(n).iter().map(|e| kerp_schemas::encode_voucher_posted(e).expect("the benchmark event encodes")).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("vouchers", n), &payloads, |b, payloads| {
            b.iter_batched(
                FoldState::default,
                |mut state| {
                    let messages: Vec<Message> = payloads
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let Ok(Event::VoucherPosted(e)) = kerp_schemas::decode(black_box(p)) else { panic!("the payload decodes") };
                            message(i, e)
                        })
                        .collect();
                    fold(&messages, &mut state, &skips)
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, fold_batches);
criterion_main!(benches);
