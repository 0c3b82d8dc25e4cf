//! Shared harness of the gRPC tests: grpc-api started in-process on port 0 next to the pipeline stack of
//! [`crate::common`] (whose ingest-api migrates Postgres and whose relay publishes the outbox to the stack's topic, so
//! vouchers posted over gRPC reach ClickHouse), tonic clients with a bearer token, and what the tests compare.
//!
//! The servers run on a thread with a runtime of their own, as the stack's services do, because each
//! `#[tokio::test]` has a runtime that ends with the test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use kerp_grpc::pb::kerp::v1 as pb;
use kerp_grpc::pb::kerp::v1::report_service_client::ReportServiceClient;
use kerp_grpc::pb::kerp::v1::voucher_service_client::VoucherServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::common::{self, stack};

/// Where one grpc-api instance listens.
#[derive(Debug, Clone)]
pub struct Grpc {
    pub addr: SocketAddr,
    pub edi_addr: SocketAddr,
    /// Base URL of its internal `/metrics` and `/health` listener.
    pub metrics_url: String,
}

/// grpc-api's settings for the test stack: its Postgres, its ClickHouse database and reader, its topic.
pub fn config() -> kerp_grpc::Config {
    kerp_grpc::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        edi_listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: String::new(),
        database_url: common::database_url(),
        db_pool_max: 10,
        jwt_secret: common::SECRET.into(),
        dev_stack: false,
        clickhouse: common::clickhouse_reader(),
        voucher_topic: stack().topic.clone(),
        create_vouchers_items_max: kerp_grpc::CREATE_VOUCHERS_ITEMS_MAX,
        group_commit_lanes: 4,
        tax_scraper: kerp_grpc::tax_scraper::ScraperConfig::default(),
        insurance_edi: kerp_grpc::insurance_edi::EdiConfig { resident_number_key: Some(RESIDENT_NUMBER_KEY.into()) },
    }
}

/// The resident-number key of the test instances: base64 of the 32 bytes `e2e-test-resident-number-key-32b`. It is not
/// the public sample, so the instances start without `KERP_DEV_STACK`, and the tests decrypt stored lines with it.
pub const RESIDENT_NUMBER_KEY: &str = "ZTJlLXRlc3QtcmVzaWRlbnQtbnVtYmVyLWtleS0zMmI=";

/// Starts an instance with `config` on a thread of its own, serving until `shutdown` is cancelled. The receiver gets
/// `serve`'s result when it returns.
pub fn spawn(config: kerp_grpc::Config, shutdown: CancellationToken) -> (Grpc, std::sync::mpsc::Receiver<Result<(), String>>) {
    // The stack first: it migrates Postgres and creates the ClickHouse tables the servers read.
    stack();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
            let (main, edi, metrics) = (bind().await.expect("bind"), bind().await.expect("bind"), bind().await.expect("bind"));
            let grpc = Grpc {
                addr: main.local_addr().expect("addr"),
                edi_addr: edi.local_addr().expect("addr"),
                metrics_url: format!("http://{}", metrics.local_addr().expect("addr")),
            };
            tx.send(grpc).expect("send");
            let listeners = kerp_grpc::Listeners { main, edi, metrics: Some(metrics) };
            let result = kerp_grpc::serve(config, listeners, shutdown).await.map_err(|e| e.to_string());
            let _ = done_tx.send(result);
        });
    });
    (rx.recv().expect("grpc-api started"), done_rx)
}

/// The instance the tests share, never stopped.
pub fn grpc() -> &'static Grpc {
    static GRPC: OnceLock<Grpc> = OnceLock::new();
    GRPC.get_or_init(|| spawn(config(), CancellationToken::new()).0)
}

/// A channel to `addr`, retried while the server starts.
pub async fn channel(addr: SocketAddr) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
    for _ in 0..100 {
        if let Ok(c) = endpoint.connect().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("grpc-api at {addr} does not accept connections");
}

pub async fn vouchers_at(addr: SocketAddr) -> VoucherServiceClient<Channel> {
    VoucherServiceClient::new(channel(addr).await).max_decoding_message_size(kerp_grpc::RESPONSE_MESSAGE_BYTES_MAX)
}

pub async fn vouchers() -> VoucherServiceClient<Channel> {
    vouchers_at(grpc().addr).await
}

pub async fn reports() -> ReportServiceClient<Channel> {
    ReportServiceClient::new(channel(grpc().addr).await)
}

/// `msg` with `authorization: Bearer <token>` metadata.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
    req
}

/// Sets a deadline as a client sends it, `grpc-timeout` (`500m` is 500 ms). Send it through a [`Bare`] client: a
/// tonic channel arms its own timer from the same header, cancels the call first (as CANCELLED) and so hides whether
/// the server honours the deadline.
pub fn server_deadline<T>(req: &mut tonic::Request<T>, timeout: &str) {
    req.metadata_mut().insert("grpc-timeout", timeout.parse().expect("metadata"));
}

/// A plain HTTP/2 client with no deadline timer of its own, for the generated clients' `with_origin`.
pub type Bare = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, tonic::body::Body>;

/// A [`Bare`] client and the origin of the server at `addr`.
pub fn bare(addr: SocketAddr) -> (Bare, http::Uri) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).http2_only(true).build_http();
    (client, format!("http://{addr}").parse().expect("uri"))
}

/// A balanced two-line voucher by account codes.
pub fn voucher(date: &str, debit_code: &str, credit_code: &str, amount: i64) -> pb::VoucherInput {
    let line = |code: &str, debit: i64, credit: i64| pb::LineInput {
        account_code: code.into(),
        debit_amount: debit,
        credit_amount: credit,
        description: if debit > 0 { "차변" } else { "대변" }.into(),
        ..Default::default()
    };
    pb::VoucherInput {
        voucher_date: date.into(),
        voucher_type: pb::VoucherType::General.into(),
        description: "gRPC test".into(),
        status: pb::VoucherStatus::Unspecified.into(),
        lines: vec![line(debit_code, amount, 0), line(credit_code, 0, amount)],
    }
}

/// A stream item: `voucher` under `request_id` (empty for none).
pub fn item(request_id: &str, voucher: pb::VoucherInput) -> pb::CreateVoucherRequest {
    pb::CreateVoucherRequest { request_id: request_id.into(), voucher: Some(voucher) }
}

/// Rows a company owns in every table a posting writes: vouchers, lines, numbered months, its event sequence, and
/// idempotency keys.
pub async fn footprint(pool: &sqlx::PgPool, company: Uuid) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM vouchers WHERE company_id = $1),
                (SELECT count(*) FROM voucher_lines WHERE company_id = $1),
                (SELECT count(*) FROM voucher_counters WHERE company_id = $1 AND last_no > 0),
                (SELECT event_seq FROM companies WHERE id = $1),
                (SELECT count(*) FROM idempotency_keys WHERE company_id = $1)",
    )
    .bind(company)
    .fetch_one(pool)
    .await
    .expect("footprint")
}

/// A decimal string of won, as the report messages carry sums, read into an `i64` (the tests' sums are small).
pub fn won(s: &str) -> i64 {
    s.parse().unwrap_or_else(|_| panic!("{s:?} is not a decimal integer"))
}

/// The gRPC trial balance in the shape of `common::pg_trial_balance`, and its totals.
/// The answer of one `TrialBalance` call, which must succeed.
pub async fn trial_balance_of(token: &str, request: pb::TrialBalanceRequest) -> pb::TrialBalanceResponse {
    reports().await.trial_balance(authed(request, token)).await.expect("trial balance").into_inner()
}

pub async fn grpc_trial_balance(token: &str, year: i32, month: i32) -> (BTreeMap<Uuid, [i64; 6]>, pb::Columns) {
    let tb = trial_balance_of(token, pb::TrialBalanceRequest { year, month, ..Default::default() }).await;
    let mut m = BTreeMap::new();
    for a in &tb.accounts {
        let c = a.columns.as_ref().expect("columns");
        let cols = [&c.opening_debit, &c.opening_credit, &c.period_debit, &c.period_credit, &c.closing_debit, &c.closing_credit];
        m.insert(Uuid::parse_str(&a.account_id).expect("uuid"), cols.map(|s| won(s)));
    }
    (m, tb.totals.expect("totals"))
}

/// The field paths of an INVALID_ARGUMENT status's `google.rpc.BadRequest`.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status.get_error_details().bad_request().map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect()).unwrap_or_default()
}
