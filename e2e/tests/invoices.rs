//! Tax invoices against the real stack: the contract's create body, issue with an empty JSON body, the voucher it
//! posts (in Postgres and, once folded, in the trial balance, the partner ledger and the VAT summary), cancellation by
//! reversal, the server's tax check, approval numbers, roles and tenancy.

mod common;

use std::time::Duration;

use common::{company, eventually, get, pg, send, stack, token_with_role, Svc};
use kerp_core::auth::Role;
use reqwest::Method;
use serde_json::{json, Value};

async fn post(token: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    send(Method::POST, Svc::Ingest, token, path, body).await
}

/// `POST …/issue` as the contract's clients send it: `Content-Type: application/json` and no body at all.
async fn issue(token: &str, id: &str) -> (u16, Value) {
    let r = common::http()
        .post(format!("{}/api/v1/invoices/{id}/issue", stack().ingest_url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn partner(token: &str, code: &str, kind: &str) -> String {
    let (status, p) =
        post(token, "/api/v1/partners", Some(&json!({"code": code, "name": format!("{code} 상사"), "partner_type": kind}))).await;
    assert_eq!(status, 201, "{p}");
    p["data"]["id"].as_str().unwrap().to_owned()
}

fn sales_invoice(partner: &str, date: &str, supply: i64, tax: i64) -> Value {
    json!({"invoice_type": "sales", "partner_id": partner, "invoice_date": date,
           "supply_amount": supply, "tax_amount": tax,
           "items": [{"description": "Service fee", "quantity": 1, "unit_price": supply}]})
}

async fn invoices_of(pool: &sqlx::PgPool, company: uuid::Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM invoices WHERE company_id = $1").bind(company).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_sales_invoice_round_trip_reaches_every_report() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let customer = partner(&c.token, "C001", "customer").await;

    let (status, created) = post(&c.token, "/api/v1/invoices", Some(&sales_invoice(&customer, "2025-01-15", 1_000_000, 100_000))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["data"]["status"], "draft");
    let (_, drafts) = get(Svc::Ingest, &c.token, "/api/v1/invoices?status=draft").await;
    assert_eq!(drafts["pagination"]["total"], 1, "{drafts}");

    let (status, issued) = issue(&c.token, &id).await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["data"]["status"], "issued");
    let voucher_id = issued["data"]["voucher_id"].as_str().unwrap().to_owned();
    assert_eq!(issued["data"]["voucher"]["id"], voucher_id.as_str());
    assert_eq!(issue(&c.token, &id).await.0, 409, "issued once only");

    // The voucher is in Postgres with the reference postings, each line naming the partner.
    let (status, v) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{voucher_id}")).await;
    assert_eq!(status, 200, "{v}");
    let lines: Vec<(String, i64, i64)> = v["data"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (l["account_code"].as_str().unwrap().to_owned(), l["debit_amount"].as_i64().unwrap(), l["credit_amount"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(lines, [("1103".into(), 1_100_000, 0), ("4101".into(), 0, 1_000_000), ("2105".into(), 0, 100_000)]);
    assert!(v["data"]["lines"].as_array().unwrap().iter().all(|l| l["partner_id"] == customer.as_str()));

    // Once folded: the trial balance shows AR, sales and VAT payable.
    let tb = eventually(Duration::from_secs(60), "the invoice's voucher in the trial balance", || async {
        let (status, tb) = get(Svc::Query, &c.token, "/api/v1/reports/trial-balance?year=2025&month=1").await;
        (status == 200 && tb["data"]["totals"]["period_debit"] == 1_100_000).then_some(tb)
    })
    .await;
    let row = |code: &str| tb["data"]["accounts"].as_array().unwrap().iter().find(|r| r["account_code"] == code).cloned().unwrap();
    assert_eq!(row("1103")["closing_debit"], 1_100_000);
    assert_eq!(row("4101")["closing_credit"], 1_000_000);
    assert_eq!(row("2105")["closing_credit"], 100_000);

    // The partner ledger shows the receivable on the customer.
    let (status, ledger) =
        get(Svc::Query, &c.token, &format!("/api/v1/reports/partner-ledger?partner_id={customer}&from_date=2025-01-01&to_date=2025-12-31"))
            .await;
    assert_eq!(status, 200, "{ledger}");
    let d = &ledger["data"];
    assert_eq!(
        (&d["opening_receivable"], &d["closing_receivable"], &d["closing_payable"]),
        (&json!(0), &json!(1_100_000), &json!(0)),
        "{ledger}"
    );
    let entries = d["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "the invoice's receivable line only: {ledger}");
    assert_eq!(
        (&entries[0]["voucher_id"], &entries[0]["account_code"], &entries[0]["debit"], &entries[0]["balance"]),
        (&json!(voucher_id), &json!("1103"), &json!(1_100_000), &json!(1_100_000)),
        "{ledger}"
    );

    // The VAT summary of the quarter shows the output VAT.
    eventually(Duration::from_secs(60), "the invoice in the VAT summary", || async {
        let (status, vat) = get(Svc::Query, &c.token, "/api/v1/reports/vat-summary?year=2025&quarter=1").await;
        (status == 200 && vat["data"]["output_vat"] == 100_000 && vat["data"]["sales"]["taxable"]["supply_amount"] == 1_000_000)
            .then_some(())
    })
    .await;

    // Cancelling posts the reversal: the books net to zero and the summary drops the invoice.
    let (status, cancelled) = post(&c.token, &format!("/api/v1/invoices/{id}/cancel"), Some(&json!({"reason": "발행 취소"}))).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["data"]["status"], "cancelled");
    assert_eq!(cancelled["data"]["reversal"]["reversal_of"], voucher_id.as_str());
    assert_eq!(post(&c.token, &format!("/api/v1/invoices/{id}/cancel"), None).await.0, 409);
    eventually(Duration::from_secs(60), "the cancellation in the reports", || async {
        let (_, tb) = get(Svc::Query, &c.token, "/api/v1/reports/trial-balance?year=2025&month=1").await;
        let ar = tb["data"]["accounts"].as_array()?.iter().find(|r| r["account_code"] == "1103")?.clone();
        let (_, vat) = get(Svc::Query, &c.token, "/api/v1/reports/vat-summary?year=2025&quarter=1").await;
        (ar["closing_debit"] == 0 && ar["closing_credit"] == 0 && vat["data"]["output_vat"] == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_purchase_invoice_books_its_supply_input_vat_and_payable() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let supplier = partner(&c.token, "S001", "supplier").await;
    let body = json!({"invoice_type": "purchase", "partner_id": supplier, "invoice_date": "2025-04-03",
                      "supply_amount": 300_000, "tax_amount": 30_000, "account_code": "5213",
                      "items": [{"description": "수수료", "quantity": 3, "unit_price": 100_000}]});
    let (status, created) = post(&c.token, "/api/v1/invoices", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap();
    let (status, issued) = issue(&c.token, id).await;
    assert_eq!(status, 200, "{issued}");
    let (_, v) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{}", issued["data"]["voucher_id"].as_str().unwrap())).await;
    let lines: Vec<(&str, i64, i64)> = v["data"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["account_code"].as_str().unwrap(), l["debit_amount"].as_i64().unwrap(), l["credit_amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(lines, [("5213", 300_000, 0), ("1105", 30_000, 0), ("2101", 0, 330_000)]);
    let (_, got) = get(Svc::Ingest, &c.token, &format!("/api/v1/invoices/{id}")).await;
    assert_eq!(got["data"]["items"][0]["supply_amount"], 300_000);
    assert_eq!(got["data"]["total_amount"], 330_000);

    // A zero-rated sale carries no VAT line; an exempt purchase neither.
    let customer = partner(&c.token, "C009", "both").await;
    let mut export = sales_invoice(&customer, "2025-04-04", 500_000, 0);
    export["vat_type"] = json!("zero_rated");
    let (_, e) = post(&c.token, "/api/v1/invoices", Some(&export)).await;
    let (status, issued) = issue(&c.token, e["data"]["id"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{issued}");
    let (_, v) = get(Svc::Ingest, &c.token, &format!("/api/v1/vouchers/{}", issued["data"]["voucher_id"].as_str().unwrap())).await;
    assert_eq!(v["data"]["lines"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_invoices_are_refused_and_write_nothing() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let other = company(&pool).await;
    let customer = partner(&c.token, "C001", "customer").await;
    let supplier = partner(&c.token, "S001", "supplier").await;
    let foreign = partner(&other.token, "C001", "customer").await;
    let before = invoices_of(&pool, c.id).await;
    for (body, why) in [
        (sales_invoice(&customer, "2025-01-15", 1_000_000, 100_002), "tax off by 2 won"),
        (sales_invoice(&customer, "2025-01-15", 1_000_000, 0), "taxable with no tax"),
        (
            json!({"invoice_type": "sales", "partner_id": customer, "invoice_date": "2025-01-15", "supply_amount": 1000, "tax_amount": 100,
                "items": [{"description": "x", "quantity": 2, "unit_price": 400}]}),
            "items that do not add up",
        ),
        (sales_invoice(&foreign, "2025-01-15", 1000, 100), "another company's partner"),
        (sales_invoice(&supplier, "2025-01-15", 1000, 100), "a supplier-only partner on a sale"),
        (json!({"invoice_type": "refund"}), "an unknown type"),
    ] {
        let (status, problem) = post(&c.token, "/api/v1/invoices", Some(&body)).await;
        assert_eq!(status, 422, "{why}: {problem}");
        assert!(problem["errors"].as_array().is_some_and(|e| !e.is_empty()), "{why}: names the field: {problem}");
    }
    // A deactivated partner cannot go on a new invoice.
    let retired = partner(&c.token, "C077", "customer").await;
    assert_eq!(post(&c.token, &format!("/api/v1/partners/{retired}/deactivate"), None).await.0, 200);
    let (status, problem) = post(&c.token, "/api/v1/invoices", Some(&sales_invoice(&retired, "2025-01-15", 1000, 100))).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "partner_id");
    // Tax within a won of 10% is accepted.
    assert_eq!(post(&c.token, "/api/v1/invoices", Some(&sales_invoice(&customer, "2025-01-15", 1_234_567, 123_457))).await.0, 201);
    assert_eq!(invoices_of(&pool, c.id).await, before + 1);

    // Roles and tenancy.
    let viewer = token_with_role(&pool, c.id, Role::Viewer).await;
    let (_, inv) = post(&c.token, "/api/v1/invoices", Some(&sales_invoice(&customer, "2025-01-16", 1000, 100))).await;
    let id = inv["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(post(&viewer, "/api/v1/invoices", Some(&sales_invoice(&customer, "2025-01-15", 1000, 100))).await.0, 403);
    assert_eq!(issue(&viewer, &id).await.0, 403);
    assert_eq!(get(Svc::Ingest, &viewer, &format!("/api/v1/invoices/{id}")).await.0, 200);
    assert_eq!(send(Method::GET, Svc::Ingest, "nope", "/api/v1/invoices", None).await.0, 401);
    assert_eq!(get(Svc::Ingest, &other.token, &format!("/api/v1/invoices/{id}")).await.0, 404);
    assert_eq!(issue(&other.token, &id).await.0, 404);
    assert_eq!(get(Svc::Ingest, &other.token, "/api/v1/invoices").await.1["pagination"]["total"], 0);
    assert_eq!(get(Svc::Ingest, &c.token, "/api/v1/invoices?status=paid").await.0, 400);
    assert_eq!(get(Svc::Ingest, &c.token, "/api/v1/invoices?partner_id=x").await.0, 400);
    assert_eq!(
        get(Svc::Ingest, &c.token, &format!("/api/v1/invoices?partner_id={customer}&invoice_type=sales&from_date=2025-01-16")).await.1
            ["pagination"]["total"],
        1
    );

    // A closed period refuses the issue; the invoice stays a draft with no voucher.
    assert_eq!(post(&c.token, "/api/v1/periods/2025-01/close", None).await.0, 200);
    assert_eq!(issue(&c.token, &id).await.0, 409);
    let (_, still) = get(Svc::Ingest, &c.token, &format!("/api/v1/invoices/{id}")).await;
    assert_eq!((still["data"]["status"].as_str(), still["data"]["voucher_id"].is_null()), (Some("draft"), true));
    assert_eq!(post(&c.token, "/api/v1/periods/2025-01/reopen", None).await.0, 200);

    // A draft is edited; a cancelled draft posts nothing.
    let (status, edited) = send(
        Method::PUT,
        Svc::Ingest,
        &c.token,
        &format!("/api/v1/invoices/{id}"),
        Some(&sales_invoice(&customer, "2025-01-17", 2000, 200)),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    let (status, cancelled) = post(&c.token, &format!("/api/v1/invoices/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert!(cancelled["data"]["reversal"].is_null());
    assert_eq!(
        send(
            Method::PUT,
            Svc::Ingest,
            &c.token,
            &format!("/api/v1/invoices/{id}"),
            Some(&sales_invoice(&customer, "2025-01-17", 2000, 200))
        )
        .await
        .0,
        409
    );
}

#[tokio::test]
async fn approval_numbers_are_checked_and_unique_per_company() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let customer = partner(&c.token, "C001", "customer").await;
    let (_, a) = post(&c.token, "/api/v1/invoices", Some(&sales_invoice(&customer, "2025-01-15", 1000, 100))).await;
    let (_, b) = post(&c.token, "/api/v1/invoices", Some(&sales_invoice(&customer, "2025-01-15", 1000, 100))).await;
    let (a, b) = (a["data"]["id"].as_str().unwrap().to_owned(), b["data"]["id"].as_str().unwrap().to_owned());
    let number = json!({"approval_number": "20250115-41000012-00000001"});
    let (status, set) = send(Method::PUT, Svc::Ingest, &c.token, &format!("/api/v1/invoices/{a}/approval-number"), Some(&number)).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["data"]["approval_number"], "202501154100001200000001");
    assert_eq!(send(Method::PUT, Svc::Ingest, &c.token, &format!("/api/v1/invoices/{b}/approval-number"), Some(&number)).await.0, 409);
    let bad = json!({"approval_number": "2025-13"});
    assert_eq!(send(Method::PUT, Svc::Ingest, &c.token, &format!("/api/v1/invoices/{b}/approval-number"), Some(&bad)).await.0, 422);
}

/// The VAT summary equals the one computed straight from Postgres's invoices, to the won and the count, for every
/// quarter the invoices fall in: sales and purchases of each VAT type, issued ones only (drafts, cancelled drafts and
/// issued-then-cancelled invoices left out), a draft edited into another quarter before its issue, and invoices on a
/// quarter's first and last days. The summaries are read once, after a sentinel invoice of 2030 shows: a company's
/// events fold in order, so every earlier change is in ClickHouse by then.
#[tokio::test]
async fn the_vat_summary_equals_the_one_from_postgres() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let customer = partner(&c.token, "C001", "customer").await;
    let supplier = partner(&c.token, "S001", "supplier").await;
    let both = partner(&c.token, "B001", "both").await;
    let invoice = |invoice_type: &str, vat_type: &str, partner: &str, date: &str, supply: i64| {
        let tax = if vat_type == "taxable" { supply / 10 } else { 0 };
        json!({"invoice_type": invoice_type, "vat_type": vat_type, "partner_id": partner, "invoice_date": date,
               "supply_amount": supply, "tax_amount": tax, "items": [{"description": "x", "quantity": 1, "unit_price": supply}]})
    };
    let create = |body: Value| {
        let token = c.token.clone();
        async move {
            let (status, created) = post(&token, "/api/v1/invoices", Some(&body)).await;
            assert_eq!(status, 201, "{created}");
            created["data"]["id"].as_str().unwrap().to_owned()
        }
    };
    let issued = |body: Value| {
        let token = c.token.clone();
        async move {
            let id = create(body).await;
            let (status, issued) = issue(&token, &id).await;
            assert_eq!(status, 200, "{issued}");
            id
        }
    };
    // 2025-Q1 and Q2, each VAT type on both sides.
    issued(invoice("sales", "taxable", &customer, "2025-01-01", 1_234_567)).await;
    issued(invoice("sales", "taxable", &both, "2025-03-31", 2_000_000)).await;
    issued(invoice("sales", "zero_rated", &customer, "2025-02-14", 5_000_000)).await;
    issued(invoice("sales", "exempt", &both, "2025-02-20", 300_000)).await;
    issued(invoice("purchase", "taxable", &supplier, "2025-01-15", 800_000)).await;
    issued(invoice("purchase", "zero_rated", &both, "2025-03-02", 400_000)).await;
    issued(invoice("purchase", "exempt", &supplier, "2025-03-15", 150_000)).await;
    issued(invoice("sales", "taxable", &customer, "2025-04-01", 700_000)).await;
    issued(invoice("purchase", "taxable", &both, "2025-06-30", 2_500_000)).await;
    // Left out: drafts, a cancelled draft, and an issued invoice cancelled by its reversal.
    create(invoice("sales", "taxable", &customer, "2025-02-02", 9_000_000)).await;
    let cancelled_draft = create(invoice("purchase", "taxable", &supplier, "2025-02-03", 8_000_000)).await;
    assert_eq!(post(&c.token, &format!("/api/v1/invoices/{cancelled_draft}/cancel"), None).await.0, 200);
    let cancelled = issued(invoice("sales", "zero_rated", &both, "2025-01-20", 7_000_000)).await;
    assert_eq!(post(&c.token, &format!("/api/v1/invoices/{cancelled}/cancel"), Some(&json!({"reason": "취소"}))).await.0, 200);
    // A draft of Q1 edited into Q2, then issued.
    let moved = create(invoice("sales", "taxable", &customer, "2025-03-10", 600_000)).await;
    let path = format!("/api/v1/invoices/{moved}");
    let (status, edited) =
        send(Method::PUT, Svc::Ingest, &c.token, &path, Some(&invoice("sales", "taxable", &customer, "2025-05-10", 610_000))).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(issue(&c.token, &moved).await.0, 200);

    issued(invoice("sales", "exempt", &customer, "2030-01-15", 1)).await;
    eventually(Duration::from_secs(60), "the sentinel invoice of 2030", || async {
        let (status, vat) = get(Svc::Query, &c.token, "/api/v1/reports/vat-summary?year=2030&quarter=1").await;
        (status == 200 && vat["data"]["sales"]["exempt"]["count"] == 1).then_some(())
    })
    .await;
    for (year, quarter) in [(2024, 4), (2025, 1), (2025, 2), (2025, 3)] {
        let (status, vat) = get(Svc::Query, &c.token, &format!("/api/v1/reports/vat-summary?year={year}&quarter={quarter}")).await;
        assert_eq!(status, 200, "{vat}");
        let want = common::pg_reports::pg_vat_figures(&pool, c.id, year, quarter).await;
        assert_eq!(common::pg_reports::api_vat_figures(&vat["data"]), want, "{year}-Q{quarter} against Postgres");
    }
    let q1 = common::pg_reports::pg_vat_figures(&pool, c.id, 2025, 1).await;
    assert_eq!(q1["sales"]["total"]["count"], 4, "the quarter's issued sales, the cancelled ones left out: {q1}");
}
