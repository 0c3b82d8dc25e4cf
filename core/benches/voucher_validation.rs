//! Benchmarks of voucher validation, the first thing every post goes through: a parsed `VoucherInput` in, a
//! `ValidVoucher` (or the list of field errors) out. Run with `cargo bench -p kerp-core`; numbers are in
//! perf/README.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kerp_core::http::parse_json;
use kerp_core::voucher::{validate, LineInput, VoucherInput, LINES_MAX};

/// A balanced voucher of `n` lines (`n` even): debits on 5212 by code, credits on 1101 by id, as clients send them.
fn voucher(n: usize) -> VoucherInput {
    let lines = (0..n)
        .map(|i| {
            let debit = i % 2 == 0;
            LineInput {
                account_id: (!debit).then(|| "0192f3a4-5b6c-7d8e-9f00-112233445566".to_owned()),
                account_code: debit.then(|| "5212".to_owned()),
                partner_id: None,
                department_id: None,
                debit_amount: debit.then_some(110_000),
                credit_amount: (!debit).then_some(110_000),
                description: Some(format!("line {i}: office supplies (사무용품)")),
            }
        })
        .collect();
    VoucherInput {
        voucher_date: "2025-03-15".to_owned(),
        voucher_type: Some("general".to_owned()),
        description: Some("Office supplies".to_owned()),
        status: None,
        lines,
    }
}

/// The body a REST post carries, as JSON text: what the handler parses (with [`parse_json`]) before it validates.
fn voucher_json(n: usize) -> String {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                format!(r#"{{"account_code":"5212","debit_amount":110000,"description":"line {i}"}}"#)
            } else {
                format!(r#"{{"account_code":"1101","credit_amount":110000,"description":"line {i}"}}"#)
            }
        })
        .collect();
    format!(r#"{{"voucher_date":"2025-03-15","voucher_type":"general","description":"Office supplies","lines":[{}]}}"#, lines.join(","))
}

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("voucher_validate");
    // Two lines is the typical post; 100 a large one; LINES_MAX the largest accepted.
    for n in [2, 100, LINES_MAX] {
        let input = voucher(n);
        assert!(validate(&input).is_ok(), "the benchmark voucher must be valid");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| b.iter(|| validate(black_box(input))));
    }
    group.finish();

    let mut group = c.benchmark_group("voucher_parse_and_validate");
    for n in [2, 100] {
        let body = voucher_json(n);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &body, |b, body| {
            b.iter(|| {
                let input: VoucherInput = parse_json(black_box(body.as_bytes())).expect("the body parses");
                validate(&input)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, validation);
criterion_main!(benches);
