//! The VAT summary against the real stack: `InvoiceChanged` events go into the Postgres outbox as ingest-api queues
//! them, the relay publishes them, stream-workers folds them into ClickHouse's `invoices`, and query-api sums the
//! quarter's issued invoices from there. Checked: sales and purchases of each VAT type, cancelled and draft invoices
//! left out, a later version of an invoice winning (also one that moves it out of the quarter, and over an older
//! version that arrives last), invoices outside the quarter left out, tenancy, 401 and the 400s.

mod common;

use std::time::Duration;

use chrono::NaiveDate;
use common::{company, eventually, get, pg, stack, token_with_role, Svc};
use kerp_core::auth::Role;
use kerp_schemas::InvoiceChanged;
use serde_json::{json, Value};
use uuid::Uuid;

/// How long the pipeline may take to show an event in the summary.
const VISIBLE_WAIT_SECONDS_MAX: u64 = 60;

/// Queues an event in the outbox, in its own transaction, as ingest-api does with an invoice change.
async fn enqueue(pool: &sqlx::PgPool, e: &InvoiceChanged) {
    sqlx::query("INSERT INTO outbox (company_id, topic, payload) VALUES ($1, $2, $3)")
        .bind(e.company_id)
        .bind(&stack().topic)
        .bind(kerp_schemas::encode_invoice_changed(e).expect("encode"))
        .execute(pool)
        .await
        .expect("enqueue");
}

/// Days since 1970-01-01, as the event carries a date.
fn day(date: &str) -> i32 {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("date");
    i32::try_from(d.signed_duration_since(NaiveDate::default()).num_days()).expect("days")
}

/// One invoice, as its changes are published: each call to [`Invoice::state`] is the invoice's whole new state.
struct Invoice {
    company: Uuid,
    id: Uuid,
    partner: Uuid,
    invoice_type: &'static str,
    vat_type: &'static str,
}

impl Invoice {
    fn new(company: Uuid, invoice_type: &'static str, vat_type: &'static str) -> Self {
        Invoice { company, id: Uuid::new_v4(), partner: Uuid::new_v4(), invoice_type, vat_type }
    }

    fn state(&self, changed_at: i64, date: &str, supply: i64, tax: i64, status: &str) -> InvoiceChanged {
        InvoiceChanged {
            event_id: Uuid::new_v4(),
            company_id: self.company,
            changed_at,
            invoice_id: self.id,
            invoice_type: self.invoice_type.into(),
            vat_type: self.vat_type.into(),
            partner_id: self.partner,
            invoice_date: day(date),
            supply_amount: supply,
            tax_amount: tax,
            status: status.into(),
            approval_number: (status != "draft").then(|| format!("{}80000000{:08}", date.replace('-', ""), supply % 100_000_000)),
            voucher_id: (status != "draft").then(Uuid::new_v4),
        }
    }
}

/// The summary of a quarter, or the status and body when it is not 200.
async fn summary(token: &str, year: i32, quarter: u32) -> Value {
    let (status, body) = get(Svc::Query, token, &format!("/api/v1/reports/vat-summary?year={year}&quarter={quarter}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// `{"count", "supply_amount", "tax_amount"}`.
fn totals(count: u64, supply: i64, tax: i64) -> Value {
    json!({"count": count, "supply_amount": supply, "tax_amount": tax})
}

/// One side of the summary from its three VAT types, (count, supply, tax) each, with their total.
fn side(taxable: (u64, i64, i64), zero_rated: (u64, i64, i64), exempt: (u64, i64, i64)) -> Value {
    let parts = [taxable, zero_rated, exempt];
    let total = parts.iter().fold((0, 0, 0), |a, p| (a.0 + p.0, a.1 + p.1, a.2 + p.2));
    json!({
        "taxable": totals(taxable.0, taxable.1, taxable.2),
        "zero_rated": totals(zero_rated.0, zero_rated.1, zero_rated.2),
        "exempt": totals(exempt.0, exempt.1, exempt.2),
        "total": totals(total.0, total.1, total.2),
    })
}

/// The parts of a summary that depend on the invoices.
fn figures(data: &Value) -> Value {
    json!({
        "sales": data["sales"], "purchases": data["purchases"],
        "output_vat": data["output_vat"], "input_vat": data["input_vat"], "payable_vat": data["payable_vat"],
    })
}

fn expected(sales: Value, purchases: Value) -> Value {
    let (output, input) = (sales["total"]["tax_amount"].as_i64().expect("tax"), purchases["total"]["tax_amount"].as_i64().expect("tax"));
    json!({"sales": sales, "purchases": purchases, "output_vat": output, "input_vat": input, "payable_vat": output - input})
}

/// Waits until the quarter's figures are `want`, and returns the whole summary.
async fn summary_becomes(token: &str, year: i32, quarter: u32, want: &Value) -> Value {
    let what = format!("the {year}-Q{quarter} VAT summary to become {want}");
    eventually(Duration::from_secs(VISIBLE_WAIT_SECONDS_MAX), &what, || async move {
        let data = summary(token, year, quarter).await;
        (figures(&data) == *want).then_some(data)
    })
    .await
}

#[tokio::test]
async fn issued_invoices_of_the_quarter_are_summed_by_type_and_vat_type() {
    stack();
    let pool = pg().await;
    let (a, b) = (company(&pool).await, company(&pool).await);
    let t = chrono::Utc::now().timestamp_micros();
    let new = |invoice_type, vat_type| Invoice::new(a.id, invoice_type, vat_type);

    // Counted in 2025-Q1, the first and the last day of the quarter included.
    let s_taxable_1 = new("sales", "taxable");
    let s_taxable_2 = new("sales", "taxable");
    let s_zero = new("sales", "zero_rated");
    let s_exempt = new("sales", "exempt");
    let p_taxable = new("purchase", "taxable");
    let p_zero = new("purchase", "zero_rated");
    let p_exempt = new("purchase", "exempt");
    // Changed later: cancelled, moved into the next quarter, amended.
    let s_cancelled_later = new("sales", "taxable");
    let s_moved = new("sales", "taxable");
    let p_amended = new("purchase", "taxable");
    // Never counted in 2025-Q1: a draft, one cancelled from the start, one a day before and one a day after.
    let s_draft = new("sales", "taxable");
    let s_cancelled = new("sales", "zero_rated");
    let s_before = new("sales", "taxable");
    let p_after = new("purchase", "taxable");

    let first = [
        s_taxable_1.state(t, "2025-01-01", 1_000_000, 100_000, "issued"),
        s_taxable_2.state(t, "2025-03-31", 2_500_000, 250_000, "issued"),
        s_zero.state(t, "2025-02-10", 5_000_000, 0, "issued"),
        s_exempt.state(t, "2025-01-20", 300_000, 0, "issued"),
        p_taxable.state(t, "2025-02-20", 800_000, 80_000, "issued"),
        p_zero.state(t, "2025-03-02", 400_000, 0, "issued"),
        p_exempt.state(t, "2025-03-15", 150_000, 0, "issued"),
        s_cancelled_later.state(t, "2025-02-01", 700_000, 70_000, "issued"),
        s_moved.state(t, "2025-03-30", 600_000, 60_000, "issued"),
        p_amended.state(t, "2025-01-10", 1_000_000, 100_000, "issued"),
        s_draft.state(t, "2025-02-14", 900_000, 90_000, "draft"),
        s_cancelled.state(t, "2025-02-15", 4_000_000, 0, "cancelled"),
        s_before.state(t, "2024-12-31", 10_000_000, 1_000_000, "issued"),
        p_after.state(t, "2025-04-01", 2_000_000, 200_000, "issued"),
    ];
    for e in &first {
        enqueue(&pool, e).await;
    }
    let q1_first = expected(
        side((4, 1_000_000 + 2_500_000 + 700_000 + 600_000, 100_000 + 250_000 + 70_000 + 60_000), (1, 5_000_000, 0), (1, 300_000, 0)),
        side((2, 800_000 + 1_000_000, 80_000 + 100_000), (1, 400_000, 0), (1, 150_000, 0)),
    );
    let data = summary_becomes(&a.token, 2025, 1, &q1_first).await;
    assert_eq!(
        (&data["year"], &data["quarter"], &data["period"], &data["return_kind"], &data["from_date"], &data["to_date"]),
        (&json!(2025), &json!(1), &json!("2025-Q1"), &json!("preliminary"), &json!("2025-01-01"), &json!("2025-03-31"))
    );

    // The later versions, folded after the first ones and so written by a later INSERT into a part of their own: one
    // cancelled, one moved into April, one amended, and an older draft of a counted invoice that arrives last and must
    // change nothing. Then a sentinel in 2030: a company's events are folded in order, so once it shows, every
    // change before it is in ClickHouse. The quarter is read once at that moment, not polled: a summary that filtered
    // the versions before collapsing them (say by status in a PREWHERE) would count the cancelled invoice until a
    // background merge happened to collapse the parts, and polling would wait for that merge and hide the defect.
    let later = [
        s_cancelled_later.state(t + 10, "2025-02-01", 700_000, 70_000, "cancelled"),
        s_moved.state(t + 10, "2025-04-02", 600_000, 60_000, "issued"),
        p_amended.state(t + 10, "2025-01-10", 1_200_000, 120_000, "issued"),
        s_taxable_1.state(t - 10, "2025-01-01", 9_999_999, 999_999, "draft"),
        new("sales", "exempt").state(t, "2030-01-15", 1, 0, "issued"),
    ];
    for e in &later {
        enqueue(&pool, e).await;
    }
    let none = (0, 0, 0);
    summary_becomes(&a.token, 2030, 1, &expected(side(none, none, (1, 1, 0)), side(none, none, none))).await;
    let q1 = expected(
        side((2, 1_000_000 + 2_500_000, 100_000 + 250_000), (1, 5_000_000, 0), (1, 300_000, 0)),
        side((2, 800_000 + 1_200_000, 80_000 + 120_000), (1, 400_000, 0), (1, 150_000, 0)),
    );
    assert_eq!(figures(&summary(&a.token, 2025, 1).await), q1, "the newest version of each invoice decides");
    assert_eq!(q1["payable_vat"], json!(350_000 - 200_000));

    // The invoices outside 2025-Q1 are in their own quarters: a final return for Q2 (which pays back more than it owes)
    // and for 2024-Q4.
    let q2 = summary(&a.token, 2025, 2).await;
    assert_eq!(
        figures(&q2),
        expected(side((1, 600_000, 60_000), (0, 0, 0), (0, 0, 0)), side((1, 2_000_000, 200_000), (0, 0, 0), (0, 0, 0)))
    );
    assert_eq!((&q2["return_kind"], &q2["payable_vat"], &q2["to_date"]), (&json!("final"), &json!(-140_000), &json!("2025-06-30")));
    let q4 = summary(&a.token, 2024, 4).await;
    assert_eq!(figures(&q4), expected(side((1, 10_000_000, 1_000_000), (0, 0, 0), (0, 0, 0)), side((0, 0, 0), (0, 0, 0), (0, 0, 0))));
    assert_eq!((&q4["period"], &q4["return_kind"]), (&json!("2024-Q4"), &json!("final")));

    // Company B sees none of A's invoices, and every role reads its own.
    let zeros = expected(side((0, 0, 0), (0, 0, 0), (0, 0, 0)), side((0, 0, 0), (0, 0, 0), (0, 0, 0)));
    assert_eq!(figures(&summary(&b.token, 2025, 1).await), zeros, "another company's invoices");
    for role in [Role::Viewer, Role::Accountant, Role::Admin] {
        let token = token_with_role(&pool, a.id, role).await;
        assert_eq!(figures(&summary(&token, 2025, 1).await), q1, "{role:?} reads the summary");
    }
}

#[tokio::test]
async fn an_empty_company_gets_zeros() {
    stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let data = summary(&c.token, 2025, 3).await;
    let zero_side = side((0, 0, 0), (0, 0, 0), (0, 0, 0));
    assert_eq!(figures(&data), expected(zero_side.clone(), zero_side));
    assert_eq!(
        (&data["period"], &data["return_kind"], &data["from_date"]),
        (&json!("2025-Q3"), &json!("preliminary"), &json!("2025-07-01"))
    );
}

#[tokio::test]
async fn the_summary_needs_a_token_and_a_year_and_a_quarter() {
    let s = stack();
    let pool = pg().await;
    let c = company(&pool).await;
    let url = |query: &str| format!("{}/api/v1/reports/vat-summary{query}", s.query_url);

    // No token, a token that is not one: 401 problem+json.
    for r in [
        common::http().get(url("?year=2025&quarter=1")).send().await.expect("get"),
        common::http().get(url("?year=2025&quarter=1")).bearer_auth("not-a-token").send().await.expect("get"),
    ] {
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }

    // Each malformed, missing or out-of-range parameter: 400 problem+json naming the field.
    let cases: [(&str, &[&str]); 12] = [
        ("", &["year", "quarter"]),
        ("?quarter=1", &["year"]),
        ("?year=&quarter=1", &["year"]),
        ("?year=20x5&quarter=1", &["year"]),
        ("?year=1969&quarter=1", &["year"]),
        ("?year=2100&quarter=1", &["year"]),
        ("?year=2025", &["quarter"]),
        ("?year=2025&quarter=0", &["quarter"]),
        ("?year=2025&quarter=5", &["quarter"]),
        ("?year=2025&quarter=Q1", &["quarter"]),
        ("?year=2025&quarter=-1", &["quarter"]),
        ("?year=abc&quarter=9", &["year", "quarter"]),
    ];
    for (query, fields) in cases {
        let r = common::http().get(url(query)).bearer_auth(&c.token).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 400, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{query}");
        let body: Value = r.json().await.expect("json");
        let named: Vec<&str> = body["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().expect("field")).collect();
        assert_eq!(named, fields, "{query}: {body}");
    }

    // Parameters the endpoint does not know are ignored.
    let (status, body) = get(Svc::Query, &c.token, "/api/v1/reports/vat-summary?year=2025&quarter=2&month=13&format=xml").await;
    assert_eq!((status, &body["data"]["period"]), (200, &json!("2025-Q2")), "{body}");
}
