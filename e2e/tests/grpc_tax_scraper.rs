//! `TaxScraperService.ScrapeInvoices` against the real stack, through a tonic client, on the committed sample export
//! (`grpc-api/testdata/hometax`: an issued XLSX list and a received CP949 CSV list of (주)케이이알피, 134-86-72683,
//! for 2025 Q1; its README lists what becomes of each row).
//!
//! Scraping twice imports once: the seven good invoices arrive as drafts with their approval numbers (visible and
//! issuable through REST), a partner that already has the business number is matched and the others are created
//! once, the two malformed rows come back rejected with their reasons and are not imported, the rows of another
//! business and outside the quarter never appear; two scrapes at once import each invoice once; tokens, roles and the
//! company behind the business number are checked; a missing or broken inbox has its status code; and the
//! credentials of every call never reach the logs (captured in-process at debug level and finer), an answer or
//! Postgres.

mod common;
mod grpc_common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use common::{get, pg, send, stack, token_with_role, Svc};
use grpc_common::{authed, channel, config, spawn, violations, Grpc};
use kerp_core::auth::Role;
use kerp_grpc::pb::root::tax_scraper_service_client::TaxScraperServiceClient;
use kerp_grpc::pb::root::{ImportOutcome, InvoiceDirection, ScrapeInvoicesRequest, ScrapeInvoicesResponse, TaxInvoice};
use prost::Message;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;
use uuid::Uuid;

/// The business of the sample export.
const US: &str = "134-86-72683";

/// The credentials every call of this file sends; the test of the logs looks for them everywhere. They are unique to
/// the run, so no other test binary's output can hold them.
fn password() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| format!("hometax-pw-{}", Uuid::new_v4().simple()))
}

fn cert_path() -> &'static str {
    static C: OnceLock<String> = OnceLock::new();
    C.get_or_init(|| format!("/secure/npki/{}/signPri.key", Uuid::new_v4().simple()))
}

/// Everything every thread of this process logs, from the first test on: a global subscriber installed before the
/// stack's (whose `try_init` then leaves it be), at debug level and at trace for K-ERP and tonic.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let filter = tracing_subscriber::EnvFilter::new("debug,kerp_grpc=trace,kerp_ingest=trace,kerp_core=trace,tonic=trace");
        let installed =
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || writer.clone()).with_ansi(false).try_init().is_ok();
        assert!(installed, "the capturing subscriber must be the first one of the process");
        buffer
    })
}

/// A writer into the captured log.
#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sample_dir() -> PathBuf {
    common::repo_root().join("grpc-api/testdata/hometax")
}

/// The grpc-api instance of this file, whose inbox is the committed sample folder.
fn scraper_grpc() -> &'static Grpc {
    static GRPC: OnceLock<Grpc> = OnceLock::new();
    GRPC.get_or_init(|| {
        logs();
        let mut c = config();
        c.tax_scraper.inbox_dir = Some(sample_dir());
        spawn(c, CancellationToken::new()).0
    })
}

async fn client_at(g: &Grpc) -> TaxScraperServiceClient<Channel> {
    TaxScraperServiceClient::new(channel(g.addr).await).max_decoding_message_size(kerp_grpc::RESPONSE_MESSAGE_BYTES_MAX)
}

async fn client() -> TaxScraperServiceClient<Channel> {
    client_at(scraper_grpc()).await
}

fn request(business_number: &str) -> ScrapeInvoicesRequest {
    ScrapeInvoicesRequest {
        business_number: business_number.into(),
        user_id: "kerp-tax".into(),
        password: password().into(),
        cert_path: cert_path().into(),
        start_date: "2025-01-01".into(),
        end_date: "2025-03-31".into(),
    }
}

/// A fresh company with `business_number` on record, and an admin token.
async fn company_with(pool: &PgPool, business_number: Option<&str>) -> common::Company {
    logs();
    let name = format!("Scraper {}", Uuid::new_v4().simple());
    let c = kerp_ingest::company::create_company(pool, &name, business_number, &format!("{name}@example.test"), &stack().topic)
        .await
        .expect("create company");
    let token = kerp_ingest::company::token(common::SECRET, c.admin_user_id, c.company_id, Role::Admin, 3600).expect("token");
    common::Company { id: c.company_id, admin: c.admin_user_id, token }
}

async fn scrape(token: &str, business_number: &str) -> Result<ScrapeInvoicesResponse, tonic::Status> {
    client().await.scrape_invoices(authed(request(business_number), token)).await.map(tonic::Response::into_inner)
}

async fn count(pool: &PgPool, table: &str, company: Uuid) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE company_id = $1")).bind(company).fetch_one(pool).await.unwrap()
}

/// The sample's invoices of 2025 Q1 for (주)케이이알피: approval number → (direction, imported).
fn expected() -> BTreeMap<&'static str, (InvoiceDirection, bool)> {
    use InvoiceDirection::{Purchase, Sales};
    BTreeMap::from([
        ("20250115-41000078-14582931", (Sales, true)),
        ("20250210-41000078-20394857", (Sales, true)),
        ("20250305-41000078-33019284", (Sales, true)),
        ("20250320-41000078-40918273", (Sales, false)),
        ("20250325-41000078-62839405", (Sales, true)),
        ("20250121-10000029-73645182", (Purchase, true)),
        ("20250228-10000087-84736291", (Purchase, true)),
        ("20250314-12000045-95847302", (Purchase, true)),
        ("20250318-1000009-10000123", (Purchase, false)),
    ])
}

fn by_number(r: &ScrapeInvoicesResponse) -> BTreeMap<String, TaxInvoice> {
    r.invoices.iter().map(|i| (i.approval_number.clone(), i.clone())).collect()
}

#[tokio::test]
async fn the_sample_export_imports_once_matching_or_creating_partners() {
    let pool = pg().await;
    let c = company_with(&pool, Some(US)).await;
    // 대한물산 is a supplier the company already has: its purchase is booked to it, not to a new partner.
    let (status, daehan) = send(
        Method::POST,
        Svc::Ingest,
        &c.token,
        "/api/v1/partners",
        Some(&json!({"code": "S-DH", "name": "대한물산", "business_number": "2148830213", "partner_type": "supplier"})),
    )
    .await;
    assert_eq!(status, 201, "{daehan}");
    let daehan_id = daehan["data"]["id"].as_str().unwrap().to_owned();

    let first = scrape(&c.token, US).await.expect("first scrape");
    let got = by_number(&first);
    assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), expected().keys().copied().collect::<Vec<_>>());
    assert_eq!((first.imported_count, first.duplicate_count, first.rejected_count, first.partners_created), (7, 0, 2, 5));
    for (number, (direction, imported)) in expected() {
        let i = &got[number];
        assert_eq!(i.direction(), direction, "{number}");
        let outcome = if imported { ImportOutcome::Imported } else { ImportOutcome::Rejected };
        assert_eq!(i.import_outcome(), outcome, "{number}: {}", i.import_error);
        assert_eq!(i.invoice_id.is_empty(), !imported, "{number}");
    }
    let dates: Vec<&str> = first.invoices.iter().map(|i| i.write_date.as_str()).collect();
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "ordered by write date: {dates:?}");

    // The two malformed rows: why, and where to find them.
    let tax = &got["20250320-41000078-40918273"];
    assert!(tax.import_error.starts_with("세액: 150000 is not 10% of 공급가액 1000000"), "{}", tax.import_error);
    assert_eq!(tax.origin, "issued-2025q1.xlsx:10");
    let broken = &got["20250318-1000009-10000123"];
    assert!(broken.import_error.contains("승인번호:") && broken.import_error.contains("공급자사업자등록번호:"), "{}", broken.import_error);
    assert_eq!((broken.origin.as_str(), broken.supplier_business_number.as_str()), ("received-2025q1.csv:7", "305-81-77770"));

    // What the answer carries of a good one.
    let laptop = &got["20250228-10000087-84736291"];
    assert_eq!((laptop.supplier_business_number.as_str(), laptop.supplier_name.as_str()), ("129-81-23453", "(주)오피스테크"));
    assert_eq!((laptop.buyer_business_number.as_str(), laptop.buyer_name.as_str()), (US, "(주)케이이알피"));
    assert_eq!((laptop.supply_amount, laptop.tax_amount, laptop.total_amount), (2_750_000, 275_000, 3_025_000));
    assert_eq!(
        (laptop.write_date.as_str(), laptop.issue_date.as_str(), laptop.transmit_date.as_str()),
        ("2025-02-28", "2025-02-28", "2025-03-01")
    );
    assert_eq!((laptop.classification.as_str(), laptop.kind.as_str()), ("세금계산서", "일반"));
    let items: Vec<(&str, i64, i64, i64, i64)> =
        laptop.items.iter().map(|i| (i.name.as_str(), i.quantity, i.unit_price, i.supply_amount, i.tax_amount)).collect();
    assert_eq!(items, [("노트북", 2, 1_350_000, 2_700_000, 270_000), ("무선 마우스", 2, 25_000, 50_000, 5_000)]);

    // The drafts through REST, with their approval numbers, types and partners.
    let (status, drafts) = get(Svc::Ingest, &c.token, "/api/v1/invoices?status=draft&page_size=100").await;
    assert_eq!(status, 200, "{drafts}");
    assert_eq!(drafts["pagination"]["total"], 7, "{drafts}");
    let rest: BTreeMap<String, Value> =
        drafts["data"].as_array().unwrap().iter().map(|i| (i["approval_number"].as_str().unwrap().to_owned(), i.clone())).collect();
    for (number, (direction, imported)) in expected() {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let Some(i) = rest.get(&digits) else {
            assert!(!imported, "{number} is not among the drafts");
            continue;
        };
        assert_eq!(i["id"], got[number].invoice_id.as_str());
        assert_eq!(i["invoice_type"], if direction == InvoiceDirection::Sales { "sales" } else { "purchase" });
        assert_eq!(i["invoice_date"], got[number].write_date.as_str());
        assert_eq!(i["supply_amount"], got[number].supply_amount);
    }
    assert_eq!(rest["202501211000002973645182"]["partner_id"], daehan_id.as_str(), "matched by business number");
    assert_eq!(rest["202503054100007833019284"]["vat_type"], "zero_rated");
    assert_eq!(rest["202503141200004595847302"]["vat_type"], "exempt");
    assert_eq!(rest["202502281000008784736291"]["description"], "사무기기");
    let (_, detail) = get(Svc::Ingest, &c.token, &format!("/api/v1/invoices/{}", laptop.invoice_id)).await;
    let names: Vec<&str> = detail["data"]["items"].as_array().unwrap().iter().map(|i| i["description"].as_str().unwrap()).collect();
    assert_eq!(names, ["노트북", "무선 마우스"]);

    // Partners: the existing one, and five created once each as `both`, with their names and representatives.
    let (_, partners) = get(Svc::Ingest, &c.token, "/api/v1/partners?page_size=100").await;
    let partners = partners["data"].as_array().unwrap();
    assert_eq!(partners.len(), 6, "{partners:?}");
    let hanbit = partners.iter().find(|p| p["business_number"] == "124-81-00998").expect("한빛전자 created");
    assert_eq!(
        (&hanbit["code"], &hanbit["name"], &hanbit["partner_type"]),
        (&json!("HT1248100998"), &json!("(주)한빛전자"), &json!("both"))
    );
    assert_eq!(hanbit["representative"], "이한빛");

    // Again: nothing new, the same ids.
    let second = scrape(&c.token, US).await.expect("second scrape");
    assert_eq!((second.imported_count, second.duplicate_count, second.rejected_count, second.partners_created), (0, 7, 2, 0));
    for (number, i) in by_number(&second) {
        assert_eq!(i.invoice_id, got[&number].invoice_id, "{number}");
    }
    assert_eq!(count(&pool, "invoices", c.id).await, 7);
    assert_eq!(count(&pool, "partners", c.id).await, 6);

    // An imported draft issues as any draft: its voucher posts the reference lines.
    let sale = &got["20250115-41000078-14582931"].invoice_id;
    let (status, issued) = send(Method::POST, Svc::Ingest, &c.token, &format!("/api/v1/invoices/{sale}/issue"), Some(&json!({}))).await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["data"]["status"], "issued");
    let voucher = issued["data"]["voucher_id"].as_str().unwrap().to_owned();
    let (status, v) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{voucher}")).await;
    assert_eq!(status, 200, "{v}");
    let lines: Vec<(&str, i64, i64)> = v["data"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["account_code"].as_str().unwrap(), l["debit_amount"].as_i64().unwrap(), l["credit_amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(lines, [("1103", 1_100_000, 0), ("4101", 0, 1_000_000), ("2105", 0, 100_000)]);
    // An issued invoice is still the same invoice to a later scrape.
    let third = scrape(&c.token, US).await.expect("third scrape");
    assert_eq!((third.imported_count, third.duplicate_count), (0, 7));
    // Every import queued its events, and the relay publishes them.
    common::outbox_drained(&pool, c.id).await;
}

#[tokio::test]
async fn two_scrapes_at_once_import_each_invoice_and_partner_once() {
    let pool = pg().await;
    let c = company_with(&pool, Some(US)).await;
    let accountant = token_with_role(&pool, c.id, Role::Accountant).await;
    let (a, b) = tokio::join!(scrape(&c.token, US), scrape(&accountant, US));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.imported_count + b.imported_count, 7, "{a:?} {b:?}");
    assert_eq!(a.duplicate_count + b.duplicate_count, 7);
    assert_eq!(a.partners_created + b.partners_created, 6, "each partner once");
    assert_eq!((a.rejected_count, b.rejected_count), (2, 2));
    assert_eq!(
        by_number(&a).into_iter().map(|(n, i)| (n, i.invoice_id)).collect::<Vec<_>>(),
        by_number(&b).into_iter().map(|(n, i)| (n, i.invoice_id)).collect::<Vec<_>>(),
        "both answers name the same invoices"
    );
    assert_eq!(count(&pool, "invoices", c.id).await, 7);
    assert_eq!(count(&pool, "partners", c.id).await, 6);
}

#[tokio::test]
async fn tokens_roles_and_the_business_number_are_checked_and_bad_requests_write_nothing() {
    let pool = pg().await;
    let c = company_with(&pool, Some(US)).await;
    let mut grpc = client().await;

    let e = grpc.scrape_invoices(request(US)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = grpc.scrape_invoices(authed(request(US), "not.a.token")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let viewer = token_with_role(&pool, c.id, Role::Viewer).await;
    assert_eq!(scrape(&viewer, US).await.unwrap_err().code(), Code::PermissionDenied);
    // Another company's business number (one that is in the sample), and a company with none on record.
    let e = scrape(&c.token, "124-81-00998").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let other = company_with(&pool, Some("124-81-00998")).await;
    assert_eq!(scrape(&other.token, US).await.unwrap_err().code(), Code::PermissionDenied);
    let none = company_with(&pool, None).await;
    assert_eq!(scrape(&none.token, US).await.unwrap_err().code(), Code::PermissionDenied);
    // Creating a company queues its chart and settings; let the relay publish them, so that the outbox check below
    // sees only what the refused requests would have written.
    for company in [c.id, other.id, none.id] {
        common::outbox_drained(&pool, company).await;
    }

    let mut bad = request("134-86-72684");
    bad.start_date = "2025-04-01".into();
    bad.end_date = "2025-02-30".into();
    let e = grpc.scrape_invoices(authed(bad, &c.token)).await.unwrap_err();
    assert_eq!(violations(&e), ["business_number", "end_date"]);
    let mut backwards = request(US);
    backwards.start_date = "2025-04-01".into();
    assert_eq!(violations(&grpc.scrape_invoices(authed(backwards, &c.token)).await.unwrap_err()), ["end_date"]);

    for company in [c.id, other.id, none.id] {
        assert_eq!(count(&pool, "invoices", company).await, 0);
        assert_eq!(count(&pool, "partners", company).await, 0);
        assert_eq!(common::outbox_rows(&pool, company).await, 0);
    }
    // The other company scrapes its own business: its one invoice with (주)케이이알피 in the sample is a purchase.
    let mine = scrape(&other.token, "1248100998").await.expect("its own");
    assert_eq!(mine.invoices.len(), 3, "the three sales of (주)케이이알피 to it: {mine:?}");
    assert!(mine.invoices.iter().all(|i| i.direction() == InvoiceDirection::Purchase));
    assert_eq!((mine.imported_count, mine.rejected_count), (2, 1));
}

#[tokio::test]
async fn a_missing_inbox_is_unavailable_a_broken_file_a_failed_precondition_and_none_configured_too() {
    let pool = pg().await;
    let c = company_with(&pool, Some(US)).await;
    // The shared instance has no inbox configured.
    let mut unconfigured = client_at(grpc_common::grpc()).await;
    let e = unconfigured.scrape_invoices(authed(request(US), &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    let dir = std::env::temp_dir().join(format!("kerp-e2e-inbox-{}", Uuid::new_v4().simple()));
    let mut cfg = config();
    cfg.tax_scraper.inbox_dir = Some(dir.clone());
    let (g, _) = spawn(cfg, CancellationToken::new());
    let mut grpc = client_at(&g).await;
    let e = grpc.scrape_invoices(authed(request(US), &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(!e.message().contains(&dir.display().to_string()), "the server's path is not told: {}", e.message());

    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("truncated.xlsx"), b"PK\x03\x04").unwrap();
    let e = grpc.scrape_invoices(authed(request(US), &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().starts_with("truncated.xlsx "), "{}", e.message());

    // Each call reads the folder anew: once the operator replaces the file, the invoices come.
    std::fs::remove_file(dir.join("truncated.xlsx")).unwrap();
    std::fs::copy(sample_dir().join("received-2025q1.csv"), dir.join("received.csv")).unwrap();
    let r = grpc.scrape_invoices(authed(request(US), &c.token)).await.expect("scrape").into_inner();
    assert_eq!((r.imported_count, r.rejected_count), (3, 1));
    assert_eq!(count(&pool, "invoices", c.id).await, 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Rows of the company's in any table that hold `needle`, as text or as the hex of its bytes (bytea columns such as
/// the outbox's payload print as hex).
async fn rows_holding(pool: &PgPool, company: Uuid, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT table_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_name = 'company_id' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "outbox") && tables.iter().any(|t| t == "invoices"), "{tables:?}");
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let mut found = Vec::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {t} x WHERE x.company_id = $1 AND (strpos(x::text, $2) > 0 OR strpos(x::text, $3) > 0)"
        ))
        .bind(company)
        .bind(needle)
        .bind(&hex)
        .fetch_one(pool)
        .await
        .unwrap();
        if n > 0 {
            found.push(t);
        }
    }
    let items: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM invoice_items i JOIN invoices v ON v.id = i.invoice_id WHERE v.company_id = $1 AND strpos(i::text, $2) > 0",
    )
    .bind(company)
    .bind(needle)
    .fetch_one(pool)
    .await
    .unwrap();
    if items > 0 {
        found.push("invoice_items".into());
    }
    found
}

#[tokio::test]
async fn credentials_never_reach_the_logs_an_answer_or_postgres() {
    let pool = pg().await;
    let c = company_with(&pool, Some(US)).await;
    let mut grpc = client().await;
    let answer = scrape(&c.token, US).await.expect("scrape");
    // The failures too: a refused business number, bad fields, another company's number, no token.
    let mut failures = vec![
        grpc.scrape_invoices(authed(request("134-86-72684"), &c.token)).await.unwrap_err(),
        grpc.scrape_invoices(authed(request("124-81-00998"), &c.token)).await.unwrap_err(),
        grpc.scrape_invoices(request(US)).await.unwrap_err(),
    ];
    let mut long = request(US);
    long.password = format!("{}{}", password(), "x".repeat(2000));
    failures.push(grpc.scrape_invoices(authed(long, &c.token)).await.unwrap_err());
    assert_eq!(failures[3].code(), Code::InvalidArgument);

    let secrets = [password(), cert_path()];
    for s in secrets {
        assert!(!format!("{answer:?}").contains(s), "the answer echoes a credential");
        let bytes = answer.encode_to_vec();
        assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "the encoded answer holds a credential");
        for f in &failures {
            assert!(!format!("{f:?}").contains(s) && !String::from_utf8_lossy(f.details()).contains(s), "{f:?}");
        }
        assert_eq!(rows_holding(&pool, c.id, s).await, Vec::<String>::new(), "Postgres holds a credential");
    }
    assert!(!format!("{:?}", request(US)).contains(password()), "the request's Debug redacts");

    // The captured logs hold the call (so the capture works) and none of its credentials.
    let text = String::from_utf8_lossy(&logs().lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned();
    assert!(text.contains("e-tax invoices scraped"), "the scraper's log line was captured");
    assert!(text.contains("a malformed e-tax invoice was not imported"));
    for s in secrets {
        assert!(!text.contains(s), "a credential reached the logs");
    }
}
