//! `kerp.v1.ReportService` and the server around every service, against the real stack through tonic clients: the
//! trial balance equals REST's and one computed from Postgres (filters included); a ledger of several years streams
//! in bounded chunks with a running balance that equals REST's page by page and ends at Postgres's balance; tokens,
//! companies and parameters are checked; deadlines are honoured; reflection lists every service on both listeners,
//! health answers, the tax scraper and EDI services check tokens, roles and companies first; shutdown is graceful.

mod common;
mod grpc_common;

use std::time::Duration;

use common::{api_trial_balance, company, eventually, get, outbox_drained, pg, pg_trial_balance, send, token_with_role, Svc};
use grpc_common::{
    authed, channel, grpc, grpc_trial_balance, item, reports, server_deadline, trial_balance_of, violations, voucher, vouchers, won,
};
use kerp_core::auth::Role;
use kerp_grpc::pb::kerp::v1 as pb;
use kerp_grpc::pb::kerp::v1::account_ledger_response::Part;
use kerp_grpc::pb::kerp::v1::report_service_client::ReportServiceClient;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use uuid::Uuid;

/// How long the pipeline may take to show what was posted.
const VISIBLE_WAIT_SECONDS_MAX: u64 = 120;

/// Posts `items` in one stream and checks that every one was posted.
async fn post_all(token: &str, items: Vec<pb::CreateVoucherRequest>) {
    let n = items.len();
    let res = vouchers().await.create_vouchers(authed(tokio_stream::iter(items), token)).await.unwrap().into_inner();
    assert_eq!(
        (res.created as usize, res.failed, res.end()),
        (n, 0, pb::StreamEnd::Complete),
        "{:?}",
        res.results.iter().find(|r| matches!(r.outcome, Some(pb::create_vouchers_result::Outcome::Error(_))))
    );
}

/// Every message of a ledger stream, or the status it ended with.
async fn ledger(token: &str, req: pb::AccountLedgerRequest) -> Result<Vec<Part>, tonic::Status> {
    let mut stream = reports().await.account_ledger(authed(req, token)).await?.into_inner();
    let mut parts = Vec::new();
    while let Some(msg) = stream.message().await? {
        parts.push(msg.part.expect("a part"));
    }
    Ok(parts)
}

/// A ledger stream split into its header, its chunks and its footer, checking that it has that shape.
fn shape(parts: Vec<Part>) -> (pb::LedgerHeader, Vec<Vec<pb::LedgerEntry>>, pb::LedgerFooter) {
    let mut parts = parts.into_iter();
    let Some(Part::Header(header)) = parts.next() else { panic!("a ledger starts with its header") };
    let mut chunks = Vec::new();
    let mut footer = None;
    for p in parts {
        assert!(footer.is_none(), "nothing follows the footer");
        match p {
            Part::Entries(e) => chunks.push(e.entries),
            Part::Footer(f) => footer = Some(f),
            Part::Header(_) => panic!("a second header"),
        }
    }
    (header, chunks, footer.expect("a ledger ends with its footer"))
}

#[tokio::test]
async fn the_trial_balance_equals_rest_and_postgres_with_and_without_filters() {
    let pool = pg().await;
    let c = company(&pool).await;
    let (status, dept) =
        send(reqwest::Method::POST, Svc::Ingest, &c.token, "/api/v1/departments", Some(&json!({"code": "RND", "name": "연구소"}))).await;
    assert_eq!(status, 201, "{dept}");
    let dept = dept["data"]["id"].as_str().unwrap().to_owned();
    let mut with_dept = voucher("2025-03-20", "5213", "1102", 30_000);
    for l in &mut with_dept.lines {
        l.department_id = dept.clone();
    }
    post_all(
        &c.token,
        vec![
            item("", voucher("2024-11-05", "1102", "3101", 1_000_000)),
            item("", voucher("2024-12-10", "5212", "1102", 40_000)),
            item("", voucher("2025-02-03", "1103", "4101", 500_000)),
            item("", voucher("2025-03-15", "5212", "1101", 110_000)),
            item("", with_dept),
        ],
    )
    .await;
    outbox_drained(&pool, c.id).await;
    let expected = pg_trial_balance(&pool, c.id, 2025, 3).await;
    eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), "the vouchers in the trial balance", || async {
        (grpc_trial_balance(&c.token, 2025, 3).await.0 == expected).then_some(())
    })
    .await;
    let (tb, totals) = grpc_trial_balance(&c.token, 2025, 3).await;
    let (rest, rest_totals) = api_trial_balance(&c.token, 2025, 3).await;
    assert_eq!(tb, rest);
    assert_eq!(won(&totals.closing_debit), rest_totals["closing_debit"].as_i64().unwrap());
    assert_eq!(
        (totals.closing_debit.as_str(), totals.opening_debit.as_str()),
        (totals.closing_credit.as_str(), totals.opening_credit.as_str())
    );
    // 2024's net income (-40,000) opens retained earnings in 2025.
    let retained = common::account_id(&c.token, "3201").await;
    assert_eq!(tb[&Uuid::parse_str(&retained).unwrap()][0], 40_000, "a net loss opens retained earnings on the debit side");
    assert_eq!(expected.len(), tb.len());

    let march = pb::TrialBalanceRequest { year: 2025, month: 3, ..Default::default() };
    let full = trial_balance_of(&c.token, march.clone()).await;
    let codes: Vec<&str> = full.accounts.iter().map(|a| a.account_code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted, "ordered by code");
    let cash = full.accounts.iter().find(|a| a.account_code == "1101").unwrap();
    assert_eq!((cash.account_name.as_str(), cash.account_type()), ("현금", pb::AccountType::Asset));

    // A code range and a department, as REST filters them.
    let expenses = pb::TrialBalanceRequest { account_code_from: "5000".into(), account_code_to: "5999".into(), ..march.clone() };
    let narrowed = trial_balance_of(&c.token, expenses.clone()).await;
    let (status, rest) =
        get(Svc::Query, &c.token, "/api/v1/reports/trial-balance?year=2025&month=3&account_code_from=5000&account_code_to=5999").await;
    assert_eq!(status, 200, "{rest}");
    let rest_codes: Vec<&str> = rest["data"]["accounts"].as_array().unwrap().iter().map(|a| a["account_code"].as_str().unwrap()).collect();
    assert_eq!(narrowed.accounts.iter().map(|a| a.account_code.as_str()).collect::<Vec<_>>(), rest_codes);
    assert_eq!(narrowed.totals.as_ref().unwrap().period_debit, rest["data"]["totals"]["period_debit"].to_string());
    let by_dept = reports()
        .await
        .trial_balance(authed(
            pb::TrialBalanceRequest { year: 2025, month: 3, department_id: dept.clone(), ..Default::default() },
            &c.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let moved: Vec<(&str, &str, &str)> = by_dept
        .accounts
        .iter()
        .map(|a| {
            let cols = a.columns.as_ref().unwrap();
            (a.account_code.as_str(), cols.period_debit.as_str(), cols.period_credit.as_str())
        })
        .collect();
    assert_eq!(moved, [("1102", "0", "30000"), ("5213", "30000", "0")], "only the department's lines");

    // Identical calls at once share one read (crate::coalesce in grpc-api); each still gets the whole, right answer,
    // and a shared answer never crosses requests or companies: another company asks the same at the same moment.
    let other = company(&pool).await;
    post_all(&other.token, vec![item("", voucher("2025-03-02", "1101", "4101", 7_000))]).await;
    outbox_drained(&pool, other.id).await;
    let other_expected = pg_trial_balance(&pool, other.id, 2025, 3).await;
    eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), "the other company's voucher in its trial balance", || async {
        (grpc_trial_balance(&other.token, 2025, 3).await.0 == other_expected).then_some(())
    })
    .await;
    let other_full = trial_balance_of(&other.token, march.clone()).await;
    assert_ne!(other_full, full);
    let calls = (0..24).map(|i| {
        let (token, req) = match i % 3 {
            0 => (c.token.clone(), march.clone()),
            1 => (other.token.clone(), march.clone()),
            _ => (c.token.clone(), expenses.clone()),
        };
        async move { (i % 3, trial_balance_of(&token, req).await) }
    });
    for (kind, answer) in futures::future::join_all(calls).await {
        let expected = [&full, &other_full, &narrowed][kind];
        assert_eq!(&answer, expected, "concurrent call of kind {kind}");
    }
}

#[tokio::test]
async fn a_ledger_of_several_years_streams_in_chunks_with_the_running_balance() {
    const SPREAD: usize = 1_400;
    const ONE_MONTH: usize = 1_200;
    let pool = pg().await;
    let c = company(&pool).await;
    // 1,400 vouchers on the bank account over five years, and 1,200 more in June 2023 alone, so that one month takes
    // more than one ClickHouse page.
    let mut items = Vec::new();
    for i in 0..SPREAD {
        let date = format!("{}-{:02}-{:02}", 2021 + i % 5, i % 12 + 1, i % 28 + 1);
        let amount = 10_000 + i64::try_from(i).unwrap();
        items.push(item("", if i % 3 == 0 { voucher(&date, "5212", "1102", amount) } else { voucher(&date, "1102", "4101", amount) }));
    }
    for i in 0..ONE_MONTH {
        items.push(item("", voucher(&format!("2023-06-{:02}", i % 30 + 1), "1102", "3101", 7)));
    }
    post_all(&c.token, items).await;
    outbox_drained(&pool, c.id).await;
    let total = SPREAD + ONE_MONTH;
    // Every voucher folded before the ledger is read: a stream read while the fold still writes can match the count
    // by chance while missing lines folded behind its place.
    let last_seq: i64 =
        sqlx::query_scalar("SELECT max(company_seq) FROM vouchers WHERE company_id = $1").bind(c.id).fetch_one(&pool).await.unwrap();
    let ch = common::clickhouse().client();
    eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), "every voucher folded", || async {
        let sql = format!("SELECT max(seq) FROM fold_watermarks WHERE company_id = {}", kerp_core::clickhouse::uuid_literal(&c.id));
        (ch.query(&sql).fetch_one::<i64>().await.ok()? >= last_seq).then_some(())
    })
    .await;
    let range = pb::AccountLedgerRequest {
        account_code: "1102".into(),
        from_date: "2021-01-01".into(),
        to_date: "2025-12-31".into(),
        ..Default::default()
    };
    let parts = eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), "every voucher in the ledger", || async {
        // NOT_FOUND until the company's chart is folded: it may come after the vouchers are published.
        let parts = ledger(&c.token, range.clone()).await.ok()?;
        match parts.last() {
            Some(Part::Footer(f)) if f.entry_count as usize == total => Some(parts),
            _ => None,
        }
    })
    .await;
    let (header, chunks, footer) = shape(parts);
    let account = header.account.unwrap();
    assert_eq!((account.account_code.as_str(), account.normal_side()), ("1102", pb::NormalSide::Debit));
    assert_eq!((header.from_date.as_str(), header.to_date.as_str(), header.opening_balance.as_str()), ("2021-01-01", "2025-12-31", "0"));
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= kerp_grpc::LEDGER_CHUNK_ENTRIES_MAX as usize));
    let entries: Vec<pb::LedgerEntry> = chunks.into_iter().flatten().collect();
    assert_eq!(entries.len(), total);

    // Ledger order, and a balance that runs from the opening through every entry to the footer.
    let mut balance = 0i64;
    let (mut debit, mut credit) = (0i64, 0i64);
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            let p = &entries[i - 1];
            assert!((&p.voucher_date, &p.voucher_number, p.line_no) < (&e.voucher_date, &e.voucher_number, e.line_no), "order at {i}");
        }
        balance += e.debit - e.credit;
        debit += e.debit;
        credit += e.credit;
        assert_eq!(won(&e.balance), balance, "entry {i}");
    }
    assert_eq!((won(&footer.period_debit), won(&footer.period_credit), won(&footer.closing_balance)), (debit, credit, balance));
    let pg_balance: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(l.debit - l.credit), 0)::bigint FROM voucher_lines l JOIN accounts a ON a.id = l.account_id
         WHERE l.company_id = $1 AND a.code = '1102'",
    )
    .bind(c.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(balance, pg_balance);

    // REST's pages carry the same balances.
    for page in 1..=total.div_ceil(1000) {
        let (status, body) = get(
            Svc::Query,
            &c.token,
            &format!("/api/v1/reports/account-ledger?account_code=1102&from_date=2021-01-01&to_date=2025-12-31&page={page}&page_size=1000"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        for (j, e) in body["data"]["entries"].as_array().unwrap().iter().enumerate() {
            let g = &entries[(page - 1) * 1000 + j];
            assert_eq!(
                (e["voucher_number"].as_str().unwrap(), e["balance"].as_i64().unwrap()),
                (g.voucher_number.as_str(), won(&g.balance))
            );
        }
        if page == 1 {
            assert_eq!(body["data"]["closing_balance"].as_i64().unwrap(), balance);
        }
    }

    // One year: it opens with everything before it.
    let (header, chunks, footer) = shape(
        ledger(&c.token, pb::AccountLedgerRequest { account_id: account.account_id.clone(), year: 2024, ..Default::default() })
            .await
            .unwrap(),
    );
    let before: i64 = entries.iter().filter(|e| e.voucher_date.as_str() < "2024-01-01").map(|e| e.debit - e.credit).sum();
    let in_year = entries.iter().filter(|e| e.voucher_date.starts_with("2024-")).count();
    assert_eq!(won(&header.opening_balance), before);
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), in_year);
    let (status, body) = get(Svc::Query, &c.token, "/api/v1/reports/account-ledger?account_code=1102&year=2024").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(won(&footer.closing_balance), body["data"]["closing_balance"].as_i64().unwrap());
}

#[tokio::test]
async fn reports_check_tokens_companies_and_parameters() {
    let pool = pg().await;
    let a = company(&pool).await;
    let b = company(&pool).await;
    let mut client = reports().await;
    let tb = pb::TrialBalanceRequest { year: 2025, month: 1, ..Default::default() };
    assert_eq!(client.trial_balance(tonic::Request::new(tb.clone())).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(client.trial_balance(authed(tb.clone(), "not.a.jwt")).await.unwrap_err().code(), Code::Unauthenticated);
    let by_code = pb::AccountLedgerRequest { account_code: "1101".into(), year: 2025, ..Default::default() };
    assert_eq!(client.account_ledger(tonic::Request::new(by_code.clone())).await.unwrap_err().code(), Code::Unauthenticated);

    // Every role reads; an account without postings has an empty ledger once the chart has reached ClickHouse.
    let viewer = token_with_role(&pool, a.id, Role::Viewer).await;
    client.trial_balance(authed(tb.clone(), &viewer)).await.unwrap();
    let parts = eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), "the chart in ClickHouse", || async {
        ledger(&viewer, by_code.clone()).await.ok()
    })
    .await;
    let (header, chunks, footer) = shape(parts);
    assert_eq!((header.opening_balance.as_str(), chunks.len(), footer.entry_count, footer.closing_balance.as_str()), ("0", 0, 0, "0"));

    // Only its own company: A's voucher is not in B's reports, and A's account is not B's.
    post_all(&a.token, vec![item("", voucher("2025-01-05", "5212", "1101", 5_000))]).await;
    outbox_drained(&pool, a.id).await;
    eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), "A's voucher in A's trial balance", || async {
        (!grpc_trial_balance(&a.token, 2025, 1).await.0.is_empty()).then_some(())
    })
    .await;
    assert!(grpc_trial_balance(&b.token, 2025, 1).await.0.is_empty());
    let a_cash = common::account_id(&a.token, "1101").await;
    let foreign = pb::AccountLedgerRequest { account_id: a_cash, year: 2025, ..Default::default() };
    let e = client.account_ledger(authed(foreign, &b.token)).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "account not found"));
    let missing = pb::AccountLedgerRequest { account_code: "9999".into(), year: 2025, ..Default::default() };
    assert_eq!(client.account_ledger(authed(missing, &a.token)).await.unwrap_err().code(), Code::NotFound);

    // Parameters: every offending field named.
    let e = client.trial_balance(authed(pb::TrialBalanceRequest::default(), &a.token)).await.unwrap_err();
    assert_eq!(violations(&e), ["year", "month"]);
    let e = client
        .trial_balance(authed(pb::TrialBalanceRequest { year: 2025, month: 13, department_id: "x".into(), ..Default::default() }, &a.token))
        .await
        .unwrap_err();
    assert_eq!(violations(&e), ["month", "department_id"]);
    let e = client
        .account_ledger(authed(pb::AccountLedgerRequest { year: 2025, from_date: "2025-01-01".into(), ..Default::default() }, &a.token))
        .await
        .unwrap_err();
    assert_eq!(violations(&e), ["account_id", "year"]);
}

#[tokio::test]
async fn a_deadline_shorter_than_the_report_is_deadline_exceeded() {
    let pool = pg().await;
    let c = company(&pool).await;
    let ledger_1101 = pb::AccountLedgerRequest {
        account_code: "1101".into(),
        from_date: "1970-01-01".into(),
        to_date: "2099-12-31".into(),
        ..Default::default()
    };
    // The company's chart reaches ClickHouse shortly after it is created; until then the ledger is NOT_FOUND, which a
    // fast enough server answers before the deadline runs out.
    eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), "the company's chart in the reports", || async {
        ledger(&c.token, ledger_1101.clone()).await.ok()
    })
    .await;
    let (bare, origin) = grpc_common::bare(grpc().addr);
    let mut client = ReportServiceClient::with_origin(bare, origin);
    let mut req = authed(
        pb::AccountLedgerRequest {
            account_code: "1101".into(),
            from_date: "1970-01-01".into(),
            to_date: "2099-12-31".into(),
            ..Default::default()
        },
        &c.token,
    );
    server_deadline(&mut req, "1m");
    let e = client.account_ledger(req).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    let mut req = authed(pb::TrialBalanceRequest { year: 2025, month: 12, ..Default::default() }, &c.token);
    server_deadline(&mut req, "1m");
    assert_eq!(client.trial_balance(req).await.unwrap_err().code(), Code::DeadlineExceeded);
    // With time enough the same calls answer.
    let mut req = authed(pb::TrialBalanceRequest { year: 2025, month: 12, ..Default::default() }, &c.token);
    server_deadline(&mut req, "30S");
    client.trial_balance(req).await.unwrap();
}

/// The services reflection lists at `addr`.
async fn listed(addr: std::net::SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut answers = client.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

#[tokio::test]
async fn reflection_lists_every_service_and_health_answers_on_both_listeners() {
    let g = grpc();
    assert_eq!(
        listed(g.addr).await,
        [
            "TaxScraperService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "kerp.v1.ReportService",
            "kerp.v1.VoucherService"
        ]
    );
    assert_eq!(listed(g.edi_addr).await, ["InsuranceEDIService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]);

    // The contracts are described in full, under the file names the Python clients compile.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(channel(g.addr).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("TaxScraperService".into())),
    };
    let answer = client.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner().message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else { panic!("{answer:?}") };
    let file: prost_types::FileDescriptorProto = prost::Message::decode(files.file_descriptor_proto[0].as_slice()).unwrap();
    assert_eq!((file.name(), file.package()), ("tax_scraper.proto", ""), "no package: the Python clients import tax_scraper_pb2");
    let method = &file.service[0].method[0];
    assert_eq!((method.name(), method.input_type()), ("ScrapeInvoices", ".ScrapeInvoicesRequest"));

    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    for (addr, service) in
        [(g.addr, ""), (g.addr, "kerp.v1.VoucherService"), (g.addr, "kerp.v1.ReportService"), (g.edi_addr, "InsuranceEDIService")]
    {
        let mut health = HealthClient::new(channel(addr).await);
        let status = eventually(Duration::from_secs(15), "SERVING", || {
            let mut health = health.clone();
            async move {
                let s = health.check(HealthCheckRequest { service: service.into() }).await.ok()?.into_inner().status();
                (s == ServingStatus::Serving).then_some(s)
            }
        })
        .await;
        assert_eq!(status, ServingStatus::Serving, "{service}");
        health.check(HealthCheckRequest { service: service.into() }).await.unwrap();
    }
}

#[tokio::test]
async fn the_tax_scraper_and_edi_services_check_tokens_roles_and_companies_first() {
    use kerp_grpc::pb::root::insurance_edi_service_client::InsuranceEdiServiceClient;
    use kerp_grpc::pb::root::tax_scraper_service_client::TaxScraperServiceClient;
    use kerp_grpc::pb::root::{ReportType, ScrapeInvoicesRequest, SubmitReportRequest};
    let pool = pg().await;
    let c = company(&pool).await;
    let viewer = token_with_role(&pool, c.id, Role::Viewer).await;
    let mut scraper = TaxScraperServiceClient::new(channel(grpc().addr).await);
    let scrape = ScrapeInvoicesRequest {
        business_number: "116-82-00276".into(),
        start_date: "2025-01-01".into(),
        end_date: "2025-01-31".into(),
        ..Default::default()
    };
    assert_eq!(scraper.scrape_invoices(tonic::Request::new(scrape.clone())).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(scraper.scrape_invoices(authed(scrape.clone(), &viewer)).await.unwrap_err().code(), Code::PermissionDenied);
    // TaxScraperService is implemented (e2e/tests/grpc_tax_scraper.rs): a business number that is not the company's
    // (this company has none on record) is refused before any source is read.
    assert_eq!(scraper.scrape_invoices(authed(scrape, &c.token)).await.unwrap_err().code(), Code::PermissionDenied);
    let mut edi = InsuranceEdiServiceClient::new(channel(grpc().edi_addr).await);
    let report = SubmitReportRequest {
        company_id: c.id.to_string(),
        report_type: ReportType::NationalPension.into(),
        report_month: "2025-07".into(),
        ..Default::default()
    };
    assert_eq!(edi.submit_report(tonic::Request::new(report.clone())).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(edi.submit_report(authed(report.clone(), &viewer)).await.unwrap_err().code(), Code::PermissionDenied);
    // InsuranceEDIService is implemented (e2e/tests/grpc_insurance_edi.rs): a report without employees is refused.
    assert_eq!(violations(&edi.submit_report(authed(report, &c.token)).await.unwrap_err()), ["employees"]);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let pool = pg().await;
    let c = company(&pool).await;
    let shutdown = CancellationToken::new();
    let (own, done) = grpc_common::spawn(grpc_common::config(), shutdown.clone());
    let mut client = ReportServiceClient::new(channel(own.addr).await);
    client.trial_balance(authed(pb::TrialBalanceRequest { year: 2025, month: 1, ..Default::default() }, &c.token)).await.unwrap();
    drop(client);
    shutdown.cancel();
    let result = tokio::task::spawn_blocking(move || done.recv_timeout(Duration::from_secs(20))).await.unwrap();
    assert_eq!(result, Ok(Ok(())), "serve returns once shutdown is asked for");
    assert!(tokio::net::TcpStream::connect(own.addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn shutdown_lets_a_stream_in_flight_end_with_an_answer_and_health_says_not_serving_first() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let pool = pg().await;
    let c = company(&pool).await;
    let shutdown = CancellationToken::new();
    let (own, done) = grpc_common::spawn(grpc_common::config(), shutdown.clone());
    let ch = channel(own.addr).await;
    // A health watch opened before the shutdown: a balancer's view of the instance. NOT_FOUND until the server has
    // registered the service's first status.
    let health = HealthClient::new(ch.clone());
    let mut watch = eventually(Duration::from_secs(10), "a health watch", || async {
        let req = HealthCheckRequest { service: "kerp.v1.ReportService".into() };
        Some(health.clone().watch(req).await.ok()?.into_inner())
    })
    .await;
    let mut status = watch.message().await.unwrap().expect("a first status").status();
    while status != ServingStatus::Serving {
        status = watch.message().await.unwrap().expect("the watch stays open").status();
    }
    // Thirty years of month windows: 360 ClickHouse reads, so the stream is still being read when the shutdown comes.
    let range = pb::AccountLedgerRequest {
        account_code: "1102".into(),
        from_date: "1996-01-01".into(),
        to_date: "2025-12-31".into(),
        ..Default::default()
    };
    let client = ReportServiceClient::new(ch.clone());
    let mut stream = eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), "the ledger's header", || async {
        // NOT_FOUND until the company's chart is folded.
        let mut s = client.clone().account_ledger(authed(range.clone(), &c.token)).await.ok()?.into_inner();
        matches!(s.message().await.ok()??.part, Some(Part::Header(_))).then_some(s)
    })
    .await;
    shutdown.cancel();

    // Health turns NOT_SERVING on the watch that was open, so a balancer stops sending new calls.
    let not_serving = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(m)) = watch.message().await {
            if m.status() == ServingStatus::NotServing {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(not_serving, Ok(true), "the open health watch saw NOT_SERVING");
    // The stream in flight ends with an answer, never a broken connection: the whole ledger with its footer, or
    // UNAVAILABLE asking the client to read it again.
    let end = loop {
        match stream.message().await {
            Ok(Some(pb::AccountLedgerResponse { part: Some(Part::Footer(f)) })) => break Ok(f),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended with neither a footer nor a status"),
            Err(s) => break Err(s),
        }
    };
    eprintln!("the stream in flight ended with {:?}", end.as_ref().map(|f| f.entry_count).map_err(Status::code));
    if let Err(s) = &end {
        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
        assert!(s.message().contains("shutting down"), "{s:?}");
    }
    drop((stream, watch, health, client, ch));
    let result = tokio::task::spawn_blocking(move || done.recv_timeout(Duration::from_secs(20))).await.unwrap();
    assert_eq!(result, Ok(Ok(())), "serve returns once its calls have ended");
    assert!(tokio::net::TcpStream::connect(own.addr).await.is_err(), "the listener is closed");
}
