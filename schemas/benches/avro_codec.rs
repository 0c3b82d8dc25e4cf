//! Benchmarks of the Avro codec on the hot path: `VoucherPosted` encoded by the outbox writer (one per approved
//! voucher) and decoded by stream-workers (one per message). Run with `cargo bench -p kerp-schemas`; numbers are in
//! perf/README.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kerp_schemas::{decode, encode_voucher_posted, Event, VoucherLine, VoucherPosted};
use uuid::Uuid;

/// A voucher of `n` lines as ingest-api publishes it: Korean account names, a partner on every other line.
fn voucher(n: usize) -> VoucherPosted {
    let lines = (0..n)
        .map(|i| {
            let debit = i % 2 == 0;
            VoucherLine {
                line_no: i32::try_from(i + 1).expect("few lines"),
                account_id: Uuid::from_u128(0x0192_f3a4_0000_7000_8000_0000_0000_0000 + i as u128),
                account_code: if debit { "5212" } else { "1101" }.to_owned(),
                account_name: if debit { "소모품비" } else { "현금" }.to_owned(),
                account_type: if debit { "expense" } else { "asset" }.to_owned(),
                partner_id: debit.then(|| Uuid::from_u128(0x0192_f3a4_1111_7000_8000_0000_0000_0001)),
                debit: if debit { 110_000 } else { 0 },
                credit: if debit { 0 } else { 110_000 },
                description: format!("line {i}: office supplies"),
                department_id: None,
            }
        })
        .collect();
    VoucherPosted {
        event_id: Uuid::from_u128(1),
        company_id: Uuid::from_u128(2),
        company_seq: 123_456,
        voucher_id: Uuid::from_u128(3),
        voucher_number: "2025-03-000123".to_owned(),
        voucher_date: 20_162,
        voucher_type: "general".to_owned(),
        status: "approved".to_owned(),
        description: "Office supplies".to_owned(),
        posted_at: 1_742_000_000_000_000,
        lines,
        reversal_of: None,
    }
}

fn codec(c: &mut Criterion) {
    // Two lines is the typical voucher; 100 a large one.
    let sizes = [2usize, 100];
    let mut group = c.benchmark_group("voucher_posted_encode");
    for n in sizes {
        let event = voucher(n);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(n), &event, |b, e| b.iter(|| encode_voucher_posted(black_box(e))));
    }
    group.finish();

    let mut group = c.benchmark_group("voucher_posted_decode");
    for n in sizes {
        let event = voucher(n);
        let bytes = encode_voucher_posted(&event).expect("the benchmark event encodes");
        assert!(matches!(decode(&bytes), Ok(Event::VoucherPosted(ref d)) if *d == event), "the round trip must be exact");
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(n), &bytes, |b, bytes| b.iter(|| decode(black_box(bytes))));
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
