//! `InsuranceEDIService.SubmitReport` against the real stack, through a tonic client on the EDI listener: a report
//! of each type gives the worked examples of `kerp_core::insurance` (computed by hand from
//! `core/data/insurance_rates.csv`, whose values are the reference's "Four social insurances" table) and is stored
//! `prepared` with a receipt; the accrual voucher lands through the REST path and shows in the trial balance from
//! Postgres and from ClickHouse; tokens, roles and companies are checked; bad input and refused months write nothing;
//! and no plain resident number is anywhere in Postgres (every text, bytea and json column of the report tables, the
//! voucher tables and the outbox), in the answers, in the published events or in the captured logs.

mod common;
mod grpc_common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{
    account_id, api_trial_balance, company, company_events, eventually, get, outbox_drained, pg, pg_trial_balance, send, stack,
    token_with_role, Svc,
};
use grpc_common::{authed, channel, footprint, grpc, violations};
use kerp_core::auth::Role;
use kerp_grpc::insurance_edi::cipher::{KeyText, ResidentCipher};
use kerp_grpc::insurance_edi::transmit::{self, EdiTransmitter, PreparedReport, Transmission, TransmitError};
use kerp_grpc::pb::root::insurance_edi_service_client::InsuranceEdiServiceClient;
use kerp_grpc::pb::root::{EmployeeData, EmployerSizeClass, ReportStatus, ReportType, SubmitReportRequest, SubmitReportResponse};
use prost::Message;
use rand::Rng;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::Code;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------------------------------------------------

/// Everything the process logs (grpc-api and the stack run in it), kept for the scan. Installed as the global
/// subscriber before the stack starts, so `kerp_core::telemetry::init_logging` finds one and leaves it.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        // Debug for this workspace's crates and sqlx (statements), info for the transport crates, whose debug lines
        // are frames and would only bury the rest.
        let filter = tracing_subscriber::EnvFilter::new("debug,h2=info,hyper=info,hyper_util=info,tower=info,rdkafka=info,reqwest=info");
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .try_init()
            .expect("the log capture is the process's first subscriber");
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> Vec<u8> {
    logs().lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

// ---------------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------------

/// A client of the EDI listener, with the log capture and the stack up first.
async fn edi() -> InsuranceEdiServiceClient<Channel> {
    logs();
    stack();
    InsuranceEdiServiceClient::new(channel(grpc().edi_addr).await).max_decoding_message_size(kerp_grpc::RESPONSE_MESSAGE_BYTES_MAX)
}

fn employee(id: &str, number: &str, salary: i64) -> EmployeeData {
    EmployeeData { employee_id: id.into(), name: format!("직원 {id}"), resident_number: number.into(), monthly_salary: salary }
}

fn report(company: Uuid, report_type: ReportType, month: &str, employees: Vec<EmployeeData>) -> SubmitReportRequest {
    SubmitReportRequest {
        company_id: company.to_string(),
        report_type: report_type.into(),
        report_month: month.into(),
        employees,
        ..Default::default()
    }
}

/// A resident number with a real birth date and random trailing digits, dashed: unique to the test that makes it.
fn random_number() -> String {
    let mut rng = rand::thread_rng();
    let (yy, mm, dd) = (rng.gen_range(60..=99), rng.gen_range(1..=12), rng.gen_range(1..=28));
    format!("{yy:02}{mm:02}{dd:02}-{}{:06}", rng.gen_range(1..=2), rng.gen_range(0..1_000_000))
}

/// The fixed resident numbers the tests of this file send (valid ones, which are stored), also scanned for.
const FIXED_NUMBERS: [&str; 7] =
    ["900101-1234567", "850315-2345678", "700707-1456789", "011231-3567890", "920202-2123123", "930303-1321321", "950505-2345678"];

/// Resident numbers in both written forms (with and without the dash), for the scans.
fn plain_forms(numbers: &[String]) -> Vec<String> {
    numbers.iter().flat_map(|n| [n.clone(), n.replace('-', "")]).collect()
}

/// The company's rows in every table a submission writes: reports, report lines, and the voucher footprint.
async fn edi_footprint(pool: &PgPool, company: Uuid) -> (i64, i64, (i64, i64, i64, i64, i64)) {
    let (reports, lines): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM insurance_reports WHERE company_id = $1),
                (SELECT count(*) FROM insurance_report_lines WHERE company_id = $1)",
    )
    .bind(company)
    .fetch_one(pool)
    .await
    .expect("edi footprint");
    (reports, lines, footprint(pool, company).await)
}

/// The test instance's cipher (its key is `grpc_common::RESIDENT_NUMBER_KEY`).
fn cipher() -> ResidentCipher {
    ResidentCipher::from_config(Some(&KeyText::from(grpc_common::RESIDENT_NUMBER_KEY)), false).expect("test key")
}

/// (contribution base, employee share, employer share, long-term care employee, long-term care employer) per line.
fn lines_of(r: &SubmitReportResponse) -> Vec<(i64, i64, i64, i64, i64)> {
    r.contributions
        .iter()
        .map(|c| {
            (c.contribution_base, c.employee_contribution, c.employer_contribution, c.long_term_care_employee, c.long_term_care_employer)
        })
        .collect()
}

/// The closing debit and credit of the account `id` in a trial balance from [`pg_trial_balance`].
fn closing(tb: &std::collections::BTreeMap<Uuid, [i64; 6]>, id: &str) -> (i64, i64) {
    tb.get(&Uuid::parse_str(id).expect("uuid")).map_or((0, 0), |c| (c[4], c[5]))
}

// ---------------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn national_pension_gives_the_worked_examples_and_its_accrual_lands_in_the_trial_balance() {
    // First, so that the log capture is installed before the stack logs anything.
    let mut client = edi().await;
    let pool = pg().await;
    let c = company(&pool).await;
    let numbers = ["900101-1234567", "850315-2345678", "700707-1456789", "011231-3567890"];
    // table: national_pension 2025 = 4.5% + 4.5%; from 2025-07 the base floor is 400,000 and the cap 6,370,000
    // ([ref]); the base is truncated to 1,000 won and premiums to 10 won.
    let mut req = report(
        c.id,
        ReportType::NationalPension,
        "2025-07",
        vec![
            // Floor: 350,000 → base 400,000; × 4.5% = 18,000.
            employee("E1", numbers[0], 350_000),
            // 3,456,789 → base 3,456,000 (1,000-won truncation); × 4.5% = 155,520.
            employee("E2", numbers[1], 3_456_789),
            // Cap: 7,000,000 → base 6,370,000; × 4.5% = 286,650.
            employee("E3", numbers[2], 7_000_000),
            // 1,001,999 → base 1,001,000; × 4.5% = 45,045 → 45,040 (10-won truncation).
            employee("E4", numbers[3], 1_001_999),
        ],
    );
    req.post_accrual_voucher = true;
    let r = client.submit_report(authed(req, &c.token)).await.expect("submit").into_inner();
    assert_eq!(
        (r.status(), r.report_type(), r.report_month.as_str(), r.employee_count),
        (ReportStatus::Prepared, ReportType::NationalPension, "2025-07", 4)
    );
    assert_eq!(
        lines_of(&r),
        [
            (400_000, 18_000, 18_000, 0, 0),
            (3_456_000, 155_520, 155_520, 0, 0),
            (6_370_000, 286_650, 286_650, 0, 0),
            (1_001_000, 45_040, 45_040, 0, 0)
        ]
    );
    // 18,000 + 155,520 + 286,650 + 45,040 = 505,210 a side.
    assert_eq!((r.total_employee_contribution, r.total_employer_contribution, r.total_contribution), (505_210, 505_210, 1_010_420));
    let masked: Vec<&str> = r.contributions.iter().map(|l| l.resident_number_masked.as_str()).collect();
    assert_eq!(masked, ["900101-1******", "850315-2******", "700707-1******", "011231-3******"]);
    let rates = r.rates.expect("rates");
    assert_eq!((rates.employee_rate_ppm, rates.employer_rate_ppm, rates.base_floor, rates.base_cap), (45_000, 45_000, 400_000, 6_370_000));
    let receipt = Uuid::parse_str(&r.receipt_id).expect("the receipt is a UUID");

    // Stored prepared, with the same lines, and the numbers decrypt with the configured key for this company only.
    let (status, total_employee, voucher): (String, i64, Option<Uuid>) =
        sqlx::query_as("SELECT status, total_employee_contribution, voucher_id FROM insurance_reports WHERE company_id = $1 AND id = $2")
            .bind(c.id)
            .bind(receipt)
            .fetch_one(&pool)
            .await
            .expect("stored report");
    assert_eq!((status.as_str(), total_employee), ("prepared", 505_210));
    let prepared = kerp_grpc::insurance_edi::store::load_prepared(&pool, &cipher(), c.id, receipt).await.unwrap().expect("report");
    let decrypted: Vec<String> = prepared.lines.iter().map(|l| l.resident_number.masked()).collect();
    assert_eq!(decrypted, masked);
    for (line, number) in prepared.lines.iter().zip(numbers) {
        assert_eq!(line.resident_number, kerp_core::resident::ResidentNumber::parse(number).unwrap());
    }
    assert_eq!(prepared.lines[2].contribution.employer, 286_650);
    assert!(kerp_grpc::insurance_edi::store::load_prepared(&pool, &cipher(), Uuid::new_v4(), receipt).await.unwrap().is_none());

    // The accrual voucher: Dr 5201 (employee share) and 5208 (employer share) / Cr 2104 and 2107, on 2025-07-31.
    let voucher = voucher.expect("the accrual voucher was posted");
    assert_eq!(r.voucher_id, voucher.to_string());
    let (status, body) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{voucher}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["voucher_date"].as_str(), body["data"]["status"].as_str()), (Some("2025-07-31"), Some("approved")));
    let lines: Vec<(String, i64, i64)> = body["data"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (l["account_code"].as_str().unwrap().to_owned(), l["debit_amount"].as_i64().unwrap(), l["credit_amount"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(lines, [("5201".into(), 505_210, 0), ("5208".into(), 505_210, 0), ("2104".into(), 0, 505_210), ("2107".into(), 0, 505_210)]);

    // The trial balance of July 2025 from Postgres shows it, and the one from ClickHouse (REST) agrees once folded.
    let tb = pg_trial_balance(&pool, c.id, 2025, 7).await;
    for (code, expected) in [("5201", (505_210, 0)), ("5208", (505_210, 0)), ("2104", (0, 505_210)), ("2107", (0, 505_210))] {
        assert_eq!(closing(&tb, &account_id(&c.token, code).await), expected, "{code}");
    }
    outbox_drained(&pool, c.id).await;
    let (api, totals) = eventually(Duration::from_secs(60), "the accrual voucher in ClickHouse's trial balance", || async {
        let (api, totals) = api_trial_balance(&c.token, 2025, 7).await;
        (api == tb).then_some((api, totals))
    })
    .await;
    assert_eq!(api.len(), 4);
    assert_eq!(totals["closing_debit"].as_i64(), Some(1_010_420));
    assert_eq!(totals["closing_debit"], totals["closing_credit"]);

    // A transmission adapter (a recorder standing in for a live one) gets the decrypted report once.
    let recorder = Recorder::default();
    let t = transmit::transmit(&pool, &cipher(), &recorder, c.id, receipt).await.expect("transmitted");
    assert_eq!(t.portal_receipt, format!("TEST-{receipt}"));
    assert_eq!(recorder.0.lock().unwrap()[0].lines[0].resident_number.masked(), "900101-1******");
    assert_eq!(transmit::transmit(&pool, &cipher(), &recorder, c.id, receipt).await, Err(TransmitError::NotPrepared(receipt)));
    let status: String =
        sqlx::query_scalar("SELECT status FROM insurance_reports WHERE id = $1").bind(receipt).fetch_one(&pool).await.unwrap();
    assert_eq!(status, "transmitted");
}

/// Records what it is handed and accepts it: the test's stand-in for a live EDI adapter, which this machine cannot
/// reach (see `kerp_grpc::insurance_edi::transmit`).
#[derive(Default)]
struct Recorder(Mutex<Vec<PreparedReport>>);

impl EdiTransmitter for Recorder {
    fn transmit(&self, report: &PreparedReport) -> impl std::future::Future<Output = Result<Transmission, TransmitError>> + Send {
        self.0.lock().unwrap().push(report.clone());
        let portal_receipt = format!("TEST-{}", report.receipt_id);
        async move { Ok(Transmission { portal_receipt }) }
    }
}

#[tokio::test]
async fn national_pension_june_and_july_2025_use_their_own_base() {
    // First, so that the log capture is installed before the stack logs anything.
    let mut client = edi().await;
    let pool = pg().await;
    let c = company(&pool).await;
    // table: base floor/cap 390,000 / 6,170,000 until June 2025 (NPS), 400,000 / 6,370,000 from July 2025 ([ref]).
    // 395,500 → 395,000: June 395,000 × 4.5% = 17,775 → 17,770; July raised to 400,000 → 18,000.
    // 7,000,000: June 6,170,000 × 4.5% = 277,650; July 6,370,000 × 4.5% = 286,650.
    let people = || vec![employee("E1", "920202-2123123", 395_500), employee("E2", "930303-1321321", 7_000_000)];
    let june =
        client.submit_report(authed(report(c.id, ReportType::NationalPension, "2025-06", people()), &c.token)).await.unwrap().into_inner();
    let july =
        client.submit_report(authed(report(c.id, ReportType::NationalPension, "2025-07", people()), &c.token)).await.unwrap().into_inner();
    assert_eq!(lines_of(&june), [(395_000, 17_770, 17_770, 0, 0), (6_170_000, 277_650, 277_650, 0, 0)]);
    assert_eq!(lines_of(&july), [(400_000, 18_000, 18_000, 0, 0), (6_370_000, 286_650, 286_650, 0, 0)]);
    assert_eq!((june.total_employee_contribution, july.total_employee_contribution), (295_420, 304_650));
    assert_eq!(june.voucher_id, "", "no accrual voucher unless asked for");
    // January 2026: 4.75% ([ref] 2026). 6,370,000 × 4.75% = 302,575 → 302,570.
    let jan =
        client.submit_report(authed(report(c.id, ReportType::NationalPension, "2026-01", people()), &c.token)).await.unwrap().into_inner();
    assert_eq!(jan.contributions[1].employee_contribution, 302_570);
    assert_eq!(edi_footprint(&pool, c.id).await.0, 3);
}

#[tokio::test]
async fn health_insurance_adds_long_term_care_in_2025_and_2026_and_a_month_outside_the_table_is_refused() {
    // First, so that the log capture is installed before the stack logs anything.
    let mut client = edi().await;
    let pool = pg().await;
    let c = company(&pool).await;
    // table: health 2025 = 3.545% + 3.545%; long-term care 12.95% of the health premium ([ref]); no floor or cap.
    // 3,456,789 × 3.545% = 122,543.17 → 122,540; × 12.95% = 15,868.93 → 15,860.
    // 2,500,000 × 3.545% = 88,625 → 88,620; × 12.95% = 11,476.29 → 11,470.
    let people = vec![employee("E1", "900101-1234567", 3_456_789), employee("E2", "950505-2345678", 2_500_000)];
    let mut req = report(c.id, ReportType::HealthInsurance, "2025-05", people.clone());
    req.post_accrual_voucher = true;
    let r = client.submit_report(authed(req, &c.token)).await.unwrap().into_inner();
    assert_eq!(lines_of(&r), [(3_456_789, 122_540, 122_540, 15_860, 15_860), (2_500_000, 88_620, 88_620, 11_470, 11_470)]);
    // (122,540 + 15,860) + (88,620 + 11,470) = 238,490 a side.
    assert_eq!((r.total_employee_contribution, r.total_employer_contribution, r.total_contribution), (238_490, 238_490, 476_980));
    let rates = r.rates.expect("rates");
    assert_eq!((rates.employee_rate_ppm, rates.long_term_care_rate_ppm, rates.base_floor, rates.base_cap), (35_450, 129_500, 0, 0));
    // Health and long-term care are a staff benefit: 5203.
    let tb = pg_trial_balance(&pool, c.id, 2025, 5).await;
    assert_eq!(closing(&tb, &account_id(&c.token, "5203").await), (238_490, 0));

    // table: health 2026 = 3.595% + 3.595% ([ref]); long-term care 13.14% of the health premium (the 2026 notice).
    // 3,456,789 × 3.595% = 124,271.56 → 124,270; × 13.14% = 16,329.08 → 16,320.
    // 2,500,000 × 3.595% = 89,875 → 89,870; × 13.14% = 11,808.92 → 11,800.
    let r = client
        .submit_report(authed(report(c.id, ReportType::HealthInsurance, "2026-01", people.clone()), &c.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lines_of(&r), [(3_456_789, 124_270, 124_270, 16_320, 16_320), (2_500_000, 89_870, 89_870, 11_800, 11_800)]);
    // (124,270 + 16,320) + (89,870 + 11,800) = 242,260 a side.
    assert_eq!((r.total_employee_contribution, r.total_employer_contribution), (242_260, 242_260));
    assert_eq!(r.rates.expect("rates").long_term_care_rate_ppm, 131_400);

    // 2027: no health rate in the table yet, so the report is refused, naming what is missing, and writes nothing.
    let before = edi_footprint(&pool, c.id).await;
    let mut req = report(c.id, ReportType::HealthInsurance, "2027-01", people);
    req.post_accrual_voucher = true;
    let e = client.submit_report(authed(req, &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("health employee_rate") && e.message().contains("2027-01"), "{}", e.message());
    assert_eq!(edi_footprint(&pool, c.id).await, before, "a refused month writes nothing");
}

#[tokio::test]
async fn employment_insurance_charges_the_employer_by_size_class() {
    // First, so that the log capture is installed before the stack logs anything.
    let mut client = edi().await;
    let pool = pg().await;
    let c = company(&pool).await;
    // table: employment 0.9% employee; employer 1.15% under 150 employees (the default) … 1.75% from 1,000 ([ref]).
    // 3,456,789 × 0.9% = 31,111.10 → 31,110; × 1.15% = 39,753.07 → 39,750; × 1.75% = 60,493.81 → 60,490.
    let people = || vec![employee("E1", "900101-1234567", 3_456_789)];
    let mut req = report(c.id, ReportType::EmploymentInsurance, "2025-09", people());
    req.post_accrual_voucher = true;
    let small = client.submit_report(authed(req, &c.token)).await.unwrap().into_inner();
    assert_eq!(lines_of(&small), [(3_456_789, 31_110, 39_750, 0, 0)]);
    assert_eq!(small.rates.expect("rates").employer_size_class(), EmployerSizeClass::Under150, "the documented default");
    let mut req = report(c.id, ReportType::EmploymentInsurance, "2025-09", people());
    req.employer_size_class = EmployerSizeClass::From1000.into();
    let large = client.submit_report(authed(req, &c.token)).await.unwrap().into_inner();
    assert_eq!(lines_of(&large), [(3_456_789, 31_110, 60_490, 0, 0)]);
    let (reports, lines, _) = edi_footprint(&pool, c.id).await;
    assert_eq!((reports, lines), (2, 2));
    let size: String = sqlx::query_scalar("SELECT employer_size_class FROM insurance_reports WHERE id = $1")
        .bind(Uuid::parse_str(&large.receipt_id).unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(size, "1000_plus");
    // Employment insurance is booked to 5211 보험료; the employee share to 5201 and 2104.
    let tb = pg_trial_balance(&pool, c.id, 2025, 9).await;
    assert_eq!(closing(&tb, &account_id(&c.token, "5211").await), (39_750, 0));
    assert_eq!(closing(&tb, &account_id(&c.token, "2104").await), (0, 31_110));
}

#[tokio::test]
async fn industrial_accident_is_employer_only_at_the_industry_rate_or_the_default() {
    // First, so that the log capture is installed before the stack logs anything.
    let mut client = edi().await;
    let pool = pg().await;
    let c = company(&pool).await;
    // table: industrial_accident employer only; default 2025 = 1.47% (MoEL's average of all industries).
    // 3,456,789 × 1.47% = 50,814.80 → 50,810; with the industry's 0.86%: 29,728.39 → 29,720.
    let people = || vec![employee("E1", "900101-1234567", 3_456_789)];
    let mut req = report(c.id, ReportType::IndustrialAccident, "2025-04", people());
    req.post_accrual_voucher = true;
    let r = client.submit_report(authed(req, &c.token)).await.unwrap().into_inner();
    assert_eq!(lines_of(&r), [(3_456_789, 0, 50_810, 0, 0)]);
    assert_eq!((r.total_employee_contribution, r.total_employer_contribution), (0, 50_810));
    let (status, body) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{}", r.voucher_id)).await;
    assert_eq!(status, 200, "{body}");
    let codes: Vec<&str> = body["data"]["lines"].as_array().unwrap().iter().map(|l| l["account_code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["5211", "2107"], "no employee share, no employee lines");

    let mut req = report(c.id, ReportType::IndustrialAccident, "2025-04", people());
    req.industrial_accident_rate_ppm = 8_600;
    let r = client.submit_report(authed(req, &c.token)).await.unwrap().into_inner();
    assert_eq!(lines_of(&r), [(3_456_789, 0, 29_720, 0, 0)]);

    // 2026: the average was kept at 1.47% (MoEL notice of 2025-12-31): 3,456,789 × 1.47% = 50,814.79 → 50,810.
    let r = client
        .submit_report(authed(report(c.id, ReportType::IndustrialAccident, "2026-02", people()), &c.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lines_of(&r), [(3_456_789, 0, 50_810, 0, 0)]);
    // 2027: no default in the table; refused without the industry's rate, computed with it.
    let e = client.submit_report(authed(report(c.id, ReportType::IndustrialAccident, "2027-02", people()), &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("employer_rate_default"), "{}", e.message());
    let mut req = report(c.id, ReportType::IndustrialAccident, "2027-02", people());
    req.industrial_accident_rate_ppm = 8_600;
    client.submit_report(authed(req, &c.token)).await.expect("with the industry's rate");
}

#[tokio::test]
async fn tokens_roles_and_companies_are_checked() {
    // First, so that the log capture is installed before the stack logs anything.
    let mut client = edi().await;
    let pool = pg().await;
    let c = company(&pool).await;
    let other = company(&pool).await;
    let req = || report(c.id, ReportType::NationalPension, "2025-07", vec![employee("E1", "900101-1234567", 3_000_000)]);
    let before = edi_footprint(&pool, c.id).await;

    let forged =
        kerp_core::auth::issue(b"a-different-secret-of-at-least-32-bytes", &kerp_core::auth::Claims::new(c.admin, c.id, Role::Admin, 600))
            .unwrap();
    let e = client.submit_report(tonic::Request::new(req())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    for token in ["not.a.jwt", forged.as_str()] {
        assert_eq!(client.submit_report(authed(req(), token)).await.unwrap_err().code(), Code::Unauthenticated);
    }
    let viewer = token_with_role(&pool, c.id, Role::Viewer).await;
    assert_eq!(client.submit_report(authed(req(), &viewer)).await.unwrap_err().code(), Code::PermissionDenied);
    // Another company's id, with a good token of this one, and this company's id with the other's token.
    let mut theirs = req();
    theirs.company_id = other.id.to_string();
    assert_eq!(client.submit_report(authed(theirs, &c.token)).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(client.submit_report(authed(req(), &other.token)).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(edi_footprint(&pool, c.id).await, before);
    assert_eq!(edi_footprint(&pool, other.id).await.0, 0);

    // An accountant submits.
    let accountant = token_with_role(&pool, c.id, Role::Accountant).await;
    client.submit_report(authed(req(), &accountant)).await.expect("an accountant submits");
    assert_eq!(edi_footprint(&pool, c.id).await.0, before.0 + 1);
}

#[tokio::test]
async fn bad_input_and_refused_postings_write_nothing() {
    // First, so that the log capture is installed before the stack logs anything.
    let mut client = edi().await;
    let pool = pg().await;
    let c = company(&pool).await;
    let before = edi_footprint(&pool, c.id).await;

    let mut bad = report(
        c.id,
        ReportType::NationalPension,
        "2025-07",
        vec![
            employee("E0", "900101-1234567", 3_000_000),
            employee("E1", "900101-1234567", 3_000_000),
            employee("E2", "000229-1234567", 3_000_000),
            employee("E3", "9001011234", -5),
        ],
    );
    bad.post_accrual_voucher = true;
    let e = client.submit_report(authed(bad, &c.token)).await.unwrap_err();
    assert_eq!(
        violations(&e),
        ["employees[1].resident_number", "employees[2].resident_number", "employees[3].resident_number", "employees[3].monthly_salary"]
    );
    assert!(!e.message().contains("1234567") && !e.message().contains("9001011234"), "{}", e.message());
    let mut unknown = report(c.id, ReportType::Unspecified, "July", Vec::new());
    unknown.company_id = "not-a-uuid".into();
    assert_eq!(violations(&client.submit_report(authed(unknown, &c.token)).await.unwrap_err()), ["company_id"]);
    let unknown = report(c.id, ReportType::Unspecified, "July", Vec::new());
    assert_eq!(
        violations(&client.submit_report(authed(unknown, &c.token)).await.unwrap_err()),
        ["report_type", "report_month", "employees"]
    );

    // No rate before the table starts.
    let e = client
        .submit_report(authed(report(c.id, ReportType::NationalPension, "2024-12", vec![employee("E0", "900101-1234567", 1)]), &c.token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "the rate table has no national_pension employee_rate in force for 2024-12");

    // A closed month refuses the accrual voucher, and the report is not stored either.
    let (status, body) = send(reqwest::Method::POST, Svc::Ingest, &c.token, "/api/v1/periods/2025-08/close", None).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    let mut closed = report(c.id, ReportType::NationalPension, "2025-08", vec![employee("E0", "900101-1234567", 3_000_000)]);
    closed.post_accrual_voucher = true;
    let e = client.submit_report(authed(closed.clone(), &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("closed"), "{}", e.message());

    // An accrual account switched off: refused, naming it.
    let id = account_id(&c.token, "2107").await;
    let (status, body) = send(
        reqwest::Method::PATCH,
        Svc::Ingest,
        &c.token,
        &format!("/api/v1/accounts/{id}"),
        Some(&serde_json::json!({"is_active": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    closed.report_month = "2025-09".into();
    let e = client.submit_report(authed(closed.clone(), &c.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("2107"), "{}", e.message());
    assert_eq!(edi_footprint(&pool, c.id).await, before, "nothing of any refused submission stays");

    // Without the voucher the same report is stored.
    closed.post_accrual_voucher = false;
    client.submit_report(authed(closed, &c.token)).await.expect("no voucher, no accounts needed");
    assert_eq!(edi_footprint(&pool, c.id).await.0, before.0 + 1);
}

/// The text, json and bytea columns of every table of the schema, as the catalogue lists them now: a table added
/// later is scanned too, without anyone remembering to list it here.
async fn scanned_columns(pool: &PgPool) -> Vec<(String, String, String)> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text
         FROM information_schema.columns c
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("catalogue");
    let tables: std::collections::BTreeSet<&str> = columns.iter().map(|(t, _, _)| t.as_str()).collect();
    for t in ["insurance_reports", "insurance_report_lines", "vouchers", "voucher_lines", "outbox", "idempotency_keys", "partners", "users"]
    {
        assert!(tables.contains(t), "{t} has scannable columns");
    }
    assert!(columns.iter().any(|(t, c, _)| t == "insurance_report_lines" && c == "resident_number_encrypted"));
    columns
}

/// Rows of `table` whose bytea `column` holds any of `needles`.
async fn bytea_rows_holding(pool: &PgPool, table: &str, column: &str, needles: &[Vec<u8>]) -> i64 {
    let sql = format!("SELECT count(*) FROM {table} WHERE EXISTS (SELECT 1 FROM unnest($1::bytea[]) n WHERE position(n IN {column}) > 0)");
    sqlx::query_scalar(&sql).bind(needles).fetch_one(pool).await.unwrap_or_else(|e| panic!("{table}.{column}: {e}"))
}

/// Rows of `table` whose `column` holds any of `needles`: as bytes in a bytea column, in its text form otherwise.
async fn rows_holding(pool: &PgPool, table: &str, column: &str, data_type: &str, needles: &[String]) -> i64 {
    if data_type == "bytea" {
        let bytes: Vec<Vec<u8>> = needles.iter().map(|n| n.as_bytes().to_vec()).collect();
        return bytea_rows_holding(pool, table, column, &bytes).await;
    }
    let sql = format!("SELECT count(*) FROM {table} WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) n WHERE strpos({column}::text, n) > 0)");
    sqlx::query_scalar(&sql).bind(needles).fetch_one(pool).await.unwrap_or_else(|e| panic!("{table}.{column}: {e}"))
}

#[tokio::test]
async fn no_plain_resident_number_is_in_postgres_the_answers_the_events_or_the_logs() {
    // First, so that the log capture is installed before the stack logs anything.
    let mut client = edi().await;
    let pool = pg().await;
    let c = company(&pool).await;
    let numbers: Vec<String> = (0..6).map(|_| random_number()).collect();
    let mut answers = Vec::new();
    for (i, t) in
        [ReportType::NationalPension, ReportType::HealthInsurance, ReportType::EmploymentInsurance, ReportType::IndustrialAccident]
            .into_iter()
            .enumerate()
    {
        let people =
            numbers.iter().enumerate().map(|(j, n)| employee(&format!("E{j}"), n, 2_000_000 + 1_000 * i64::try_from(j).unwrap())).collect();
        let mut req = report(c.id, t, "2025-10", people);
        req.post_accrual_voucher = true;
        let r = client.submit_report(authed(req, &c.token)).await.expect("submit").into_inner();
        assert!(!r.voucher_id.is_empty(), "report {i} posted its accrual");
        answers.push(r);
    }
    // A refused submission with the numbers in it as well, both malformed and good.
    let mut bad = report(c.id, ReportType::NationalPension, "2025-10", numbers.iter().map(|n| employee("E", n, -1)).collect());
    bad.employees.push(employee("X", &numbers[0][..10], 1));
    let refused = client.submit_report(authed(bad, &c.token)).await.unwrap_err();

    let mut needles = plain_forms(&numbers);
    // The fixed numbers of the other tests in this file, which may run alongside.
    needles.extend(plain_forms(&FIXED_NUMBERS.map(String::from)));

    // The scan finds what is there: the masked form in its text column, a stored blob's bytes in its bytea column.
    let blob: Vec<u8> = sqlx::query_scalar("SELECT resident_number_encrypted FROM insurance_report_lines WHERE company_id = $1 LIMIT 1")
        .bind(c.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let masked_one = answers[0].contributions[0].resident_number_masked.clone();
    assert!(rows_holding(&pool, "insurance_report_lines", "resident_number_masked", "text", &[masked_one]).await > 0);
    assert_eq!(bytea_rows_holding(&pool, "insurance_report_lines", "resident_number_encrypted", &[blob[5..25].to_vec()]).await, 1);
    // Postgres: every text, json and bytea column of every table, every row (not only this company's).
    for (table, column, data_type) in scanned_columns(&pool).await {
        assert_eq!(rows_holding(&pool, &table, &column, &data_type, &needles).await, 0, "a plain resident number in {table}.{column}");
    }
    // The masked forms are what is stored beside the blobs.
    let masked: Vec<String> =
        sqlx::query_scalar("SELECT resident_number_masked FROM insurance_report_lines WHERE company_id = $1 ORDER BY report_id, line_no")
            .bind(c.id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(masked.len(), 4 * numbers.len());
    assert!(masked.iter().all(|m| m.ends_with("******") && numbers.iter().any(|n| n.starts_with(&m[..8]))));

    // The answers, as the client decodes them and on the wire, and the refusal.
    for r in &answers {
        let (shown, wire) = (format!("{r:?}"), r.encode_to_vec());
        for n in &needles {
            assert!(!shown.contains(n.as_str()) && !wire.windows(n.len()).any(|w| w == n.as_bytes()), "a plain number in an answer");
        }
    }
    let refusal = format!("{refused:?}");
    assert!(refusal.contains("employees[0].monthly_salary"), "{refusal}");
    assert!(needles.iter().all(|n| !refusal.contains(n.as_str())), "a plain number in a refusal: {refusal}");

    // The events the outbox published for the accrual vouchers.
    outbox_drained(&pool, c.id).await;
    let events = format!("{:?}", company_events(&stack().topic, c.id).await);
    assert!(events.contains(&answers[0].voucher_id), "the events were read");
    assert!(needles.iter().all(|n| !events.contains(n.as_str())), "a plain number in an event");

    // The logs of the whole process: grpc-api, ingest-api's store, the relay, sqlx's statements.
    let logs = captured_logs();
    let text = String::from_utf8_lossy(&logs);
    assert!(text.contains("insurance report prepared") && text.contains(&answers[3].receipt_id), "the capture holds grpc-api's lines");
    for n in &needles {
        assert!(!text.contains(n.as_str()), "a plain resident number in the logs");
    }
}
