//! Exactly-once across a crash: the worker binary is made to abort right after its ClickHouse write and before the
//! Kafka offset commit. Restarted, it is handed the same messages again, and every line must still count once. A third
//! run under a new consumer group re-reads the whole topic from the start (full redelivery) and must add nothing, and
//! an event published twice (as a relay crash would) counts once. Master data travels with the vouchers (company
//! settings, partners, departments, and lines charged to departments), and so do tax invoices through their life
//! (draft, issued with an approval number and a voucher, cancelled); after the crash and after the redelivery each
//! dimension and the invoices table hold the newest version of every row, also when an older change arrives last.
//!
//! Runs against the real Kafka and ClickHouse; it publishes its own events to a topic of its own.

mod common;

use std::time::{Duration, Instant};

use common::{
    balances, caught_up, event, expected_totals, invoices, ledger_line_count, line_departments, master_data, progress, publish, signal,
    wait_exit, worker, CompanySettings, Department, Invoice, Partner,
};
use kerp_schemas::{CompanyChanged, DepartmentState, DepartmentsChanged, InvoiceChanged, PartnerState, PartnersChanged, VoucherPosted};
use rand::SeedableRng;
use rdkafka::Offset;
use uuid::Uuid;

/// One company's master data, as events published before and after its vouchers, and what the dimensions must show.
struct MasterData {
    before: Vec<Vec<u8>>,
    after: Vec<Vec<u8>>,
    departments: [Uuid; 2],
    settings: Vec<CompanySettings>,
    partners: Vec<Partner>,
    department_rows: Vec<Department>,
    /// Ordered by invoice id, as [`invoices`] reads them.
    invoice_rows: Vec<Invoice>,
}

fn master_data_of(company: Uuid) -> MasterData {
    let t0 = chrono::Utc::now().timestamp_micros();
    let t1 = t0 + 1_000_000;
    let company_event = |changed_at, name: &str, fiscal_start_month| {
        kerp_schemas::encode_company_changed(&CompanyChanged {
            event_id: Uuid::new_v4(),
            company_id: company,
            changed_at,
            name: name.into(),
            business_number: Some("220-81-62517".into()),
            fiscal_start_month,
        })
        .unwrap()
    };
    let (p1, p2, d10, d20) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let partner = |partner_id, code: &str, name: &str, business_number: Option<&str>| PartnerState {
        partner_id,
        code: code.into(),
        name: name.into(),
        business_number: business_number.map(str::to_owned),
        partner_type: "customer".into(),
        representative: "김철수".into(),
        address: "서울특별시 중구 세종대로 110".into(),
        is_active: true,
    };
    let partners_event = |changed_at, partners| {
        kerp_schemas::encode_partners_changed(&PartnersChanged { event_id: Uuid::new_v4(), company_id: company, changed_at, partners })
            .unwrap()
    };
    let department = |department_id, code: &str, name: &str, is_active| DepartmentState {
        department_id,
        code: code.into(),
        name: name.into(),
        is_active,
    };
    let departments_event = |changed_at, departments| {
        kerp_schemas::encode_departments_changed(&DepartmentsChanged {
            event_id: Uuid::new_v4(),
            company_id: company,
            changed_at,
            departments,
        })
        .unwrap()
    };
    // Two invoices through their life: one drafted and then issued (with its voucher and approval number), one issued
    // and then cancelled; an outdated copy of the first one's draft arrives last.
    let (sale, purchase, voucher) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let approval = "202501108000000012345678";
    let sale_state = |changed_at, status: &str, approval_number: Option<&str>, voucher_id| InvoiceChanged {
        event_id: Uuid::new_v4(),
        company_id: company,
        changed_at,
        invoice_id: sale,
        invoice_type: "sales".into(),
        vat_type: "taxable".into(),
        partner_id: p1,
        // 2025-01-10.
        invoice_date: 20_098,
        supply_amount: 1_000_000,
        tax_amount: 100_000,
        status: status.into(),
        approval_number: approval_number.map(str::to_owned),
        voucher_id,
    };
    let purchase_state = |changed_at, status: &str| InvoiceChanged {
        invoice_id: purchase,
        invoice_type: "purchase".into(),
        vat_type: "exempt".into(),
        partner_id: p2,
        supply_amount: 330_000,
        tax_amount: 0,
        ..sale_state(changed_at, status, None, None)
    };
    let invoice_event = |e: InvoiceChanged| kerp_schemas::encode_invoice_changed(&e).unwrap();
    let invoice_row = |e: InvoiceChanged| Invoice {
        invoice_id: e.invoice_id,
        invoice_type: e.invoice_type,
        vat_type: e.vat_type,
        partner_id: e.partner_id,
        invoice_date: u16::try_from(e.invoice_date).unwrap(),
        supply_amount: e.supply_amount,
        tax_amount: e.tax_amount,
        status: e.status,
        approval_number: e.approval_number.unwrap_or_default(),
        voucher_id: e.voucher_id.unwrap_or_default(),
        version: e.changed_at as u64,
    };
    let mut invoice_rows =
        vec![invoice_row(sale_state(t1, "issued", Some(approval), Some(voucher))), invoice_row(purchase_state(t1, "cancelled"))];
    invoice_rows.sort_by_key(|r| r.invoice_id);
    MasterData {
        before: vec![
            company_event(t0, "한빛상사", 1),
            partners_event(t0, vec![partner(p1, "P001", "대한물산", Some("123-45-67890")), partner(p2, "P002", "개인 거래처", None)]),
            departments_event(t0, vec![department(d10, "D10", "영업부", true), department(d20, "D20", "관리부", true)]),
            invoice_event(sale_state(t0, "draft", None, None)),
            invoice_event(purchase_state(t0, "issued")),
        ],
        after: vec![
            company_event(t1, "한빛상사 주식회사", 4),
            departments_event(t1, vec![department(d20, "D20", "경영지원부", false)]),
            // Arrives last but is older: the dimension keeps the newer name.
            partners_event(t0 - 1, vec![partner(p1, "P001", "옛 이름", None)]),
            invoice_event(sale_state(t1, "issued", Some(approval), Some(voucher))),
            invoice_event(purchase_state(t1, "cancelled")),
            // Arrives last but is older: the invoice stays issued.
            invoice_event(sale_state(t0 - 1, "draft", None, None)),
        ],
        departments: [d10, d20],
        settings: vec![CompanySettings {
            company_id: company,
            name: "한빛상사 주식회사".into(),
            fiscal_start_month: 4,
            version: t1 as u64,
        }],
        partners: vec![
            Partner {
                partner_id: p1,
                code: "P001".into(),
                name: "대한물산".into(),
                business_number: "123-45-67890".into(),
                partner_type: "customer".into(),
                is_active: 1,
                version: t0 as u64,
            },
            Partner {
                partner_id: p2,
                code: "P002".into(),
                name: "개인 거래처".into(),
                business_number: String::new(),
                partner_type: "customer".into(),
                is_active: 1,
                version: t0 as u64,
            },
        ],
        department_rows: vec![
            Department { department_id: d10, code: "D10".into(), name: "영업부".into(), is_active: 1, version: t0 as u64 },
            Department { department_id: d20, code: "D20".into(), name: "경영지원부".into(), is_active: 0, version: t1 as u64 },
        ],
        invoice_rows,
    }
}

/// Checks the company's dimensions and the departments of its ledger lines against what was published.
async fn assert_master_data(ch: &clickhouse::Client, company: Uuid, m: &MasterData, events: &[VoucherPosted], when: &str) {
    let (settings, partners, departments) = master_data(ch, company).await;
    assert_eq!(settings, m.settings, "company settings {when}");
    assert_eq!(partners, m.partners, "partners {when}");
    assert_eq!(departments, m.department_rows, "departments {when}");
    assert_eq!(invoices(ch, company).await, m.invoice_rows, "invoices {when}");
    let expected: std::collections::BTreeMap<(String, u32), Uuid> = events
        .iter()
        .filter(|e| e.company_id == company)
        .flat_map(|e| e.lines.iter().map(|l| ((e.voucher_number.clone(), l.line_no as u32), l.department_id.unwrap_or_default())))
        .collect();
    assert!(expected.values().any(|d| !d.is_nil()) && expected.values().any(Uuid::is_nil));
    assert_eq!(line_departments(ch, company).await, expected, "the ledger lines' departments {when}");
}

#[tokio::test]
async fn a_crash_between_insert_and_commit_counts_every_line_once() {
    let partitions = 2;
    let common::Setup { run, topic, ch } = common::setup("kill", partitions).await;

    // Three companies, 40 vouchers each, and one event published twice.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let companies: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let accounts: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let mut events = Vec::new();
    for c in &companies {
        for seq in 1..=40 {
            events.push(event(&mut rng, *c, seq, &accounts));
        }
    }
    // The first company has master data, and charges some lines to its departments (revision 2 of VoucherPosted).
    let master = master_data_of(companies[0]);
    for e in events.iter_mut().filter(|e| e.company_id == companies[0]) {
        match e.company_seq % 3 {
            0 => e.lines[0].department_id = Some(master.departments[0]),
            1 => e.lines[1].department_id = Some(master.departments[1]),
            _ => {}
        }
    }
    let expected = expected_totals(&events);
    let expected_lines = events.iter().map(|e| e.lines.len() as u64).sum::<u64>();
    let voucher = |e: &VoucherPosted| (e.company_id, kerp_schemas::encode_voucher_posted(e).unwrap());
    let mut published: Vec<(Uuid, Vec<u8>)> = master.before.iter().map(|m| (companies[0], m.clone())).collect();
    published.extend(events.iter().map(voucher));
    published.push(voucher(&events[5]));
    published.extend(master.after.iter().map(|m| (companies[0], m.clone())));

    publish(&topic, &published).await;

    let group = format!("kerp-test-kill-{run}");
    // 1. Crash after the ClickHouse write, before the commit.
    let mut w = worker(&topic, &group, &[("KERP_FAULT_ABORT_AFTER_INSERT", "true")]);
    let status = wait_exit(&mut w, Duration::from_secs(90));
    assert!(!status.success(), "the worker must have aborted: {status:?}");
    let (after_crash, _) = balances(&ch, &companies).await;
    assert!(!after_crash.is_empty(), "the crashed batch reached ClickHouse");
    assert!(progress(&topic, &group, partitions).iter().all(|(o, _)| !matches!(o, Offset::Offset(_))), "no offset was committed");

    // 2. Restart: the same messages come again and must not be counted again.
    let mut w = worker(&topic, &group, &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (totals, marks) = balances(&ch, &companies).await;
        if marks.len() == companies.len() && marks.values().all(|m| *m == 40) && caught_up(&topic, &group, partitions) {
            assert_eq!(totals, expected, "every line counted exactly once after the crash");
            assert_master_data(&ch, companies[0], &master, &events, "after the crash").await;
            break;
        }
        assert!(Instant::now() < deadline, "the restarted worker did not catch up: {marks:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Graceful stop: SIGTERM, the worker finishes its batch and exits 0.
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w, Duration::from_secs(30)).success(), "graceful shutdown exits 0");

    // 3. Full redelivery under a new group: nothing changes.
    let mut w = worker(&topic, &format!("{group}-again"), &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !caught_up(&topic, &format!("{group}-again"), partitions) {
        assert!(Instant::now() < deadline, "the second group did not get through the topic");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    signal(&w, "-TERM");
    assert!(wait_exit(&mut w, Duration::from_secs(30)).success());
    let (totals, marks) = balances(&ch, &companies).await;
    assert_eq!(totals, expected, "a full redelivery adds nothing");
    assert!(marks.values().all(|m| *m == 40));
    assert_eq!(ledger_line_count(&ch, &companies).await, expected_lines, "each ledger line appears once");
    assert_master_data(&ch, companies[0], &master, &events, "after a full redelivery").await;
}
