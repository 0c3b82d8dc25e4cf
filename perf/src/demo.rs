//! `kerp-perf demo`: fills a fresh company with two fiscal years of believable books through the public API, so that
//! every report of the dev stack has something to show. An admin token flows in; out go departments, partners, users,
//! tax invoices (issued, one cancelled), two years of vouchers (sales, purchases, collections, payments, salaries by
//! department, expenses, cost of sales, a draft and a reversal), and the first year's months closed.
//!
//! Everything goes through the API a client would use, with an `Idempotency-Key` per request derived from the company
//! and the request's position, so a rerun after an interruption creates nothing twice. The data is deterministic.

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The public base URL (nginx).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin token of the company to fill.
    #[arg(long, env = "KERP_DEMO_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The first of the two fiscal years.
    #[arg(long, default_value_t = 2024)]
    pub first_year: i32,
}

/// A client that numbers its requests for their idempotency keys.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
    key_prefix: String,
    n: u64,
}

impl Api {
    async fn send(&mut self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        self.n += 1;
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", format!("{}-{}", self.key_prefix, self.n));
        req = match body {
            Some(b) => req.json(b),
            // The contract's clients send `…/issue` with this header and no body.
            None => req.header("content-type", "application/json"),
        };
        let res = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&mut self, path: &str, body: &Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn post_empty(&mut self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::POST, path, None).await
    }

    async fn id(&mut self, path: &str, body: &Value) -> Result<String> {
        let v = self.post(path, body).await?;
        v["data"]["id"].as_str().map(str::to_owned).with_context(|| format!("no id from {path}: {v}"))
    }
}

/// A valid business registration number built from nine digits, with its check digit.
pub(crate) fn business_number(nine: u64) -> String {
    let d: Vec<u32> = format!("{nine:09}").chars().filter_map(|c| c.to_digit(10)).collect();
    const WEIGHTS: [u32; 9] = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    let mut sum: u32 = d.iter().zip(WEIGHTS).map(|(a, w)| a * w).sum();
    sum += d[8] * 5 / 10;
    let check = (10 - sum % 10) % 10;
    let s: String = d.iter().map(|x| char::from_digit(*x, 10).unwrap_or('0')).collect();
    format!("{}-{}-{}{check}", &s[..3], &s[3..5], &s[5..9])
}

/// A voucher line: account code, debit, credit, partner id, department id.
type Line<'a> = (&'a str, i64, i64, Option<&'a str>, Option<&'a str>);

fn voucher(date: &str, description: &str, lines: &[Line<'_>]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(code, debit, credit, partner, department)| {
            let mut l = json!({"account_code": code, "description": description});
            if *debit > 0 {
                l["debit_amount"] = json!(debit);
            } else {
                l["credit_amount"] = json!(credit);
            }
            if let Some(p) = partner {
                l["partner_id"] = json!(p);
            }
            if let Some(d) = department {
                l["department_id"] = json!(d);
            }
            l
        })
        .collect();
    json!({"voucher_date": date, "voucher_type": "general", "description": description, "lines": lines})
}

/// Rounds to a thousand won, as real prices are.
fn round(n: i64) -> i64 {
    n / 1000 * 1000
}

/// Fills the company; prints what it made.
///
/// # Errors
/// The first request the API refuses, with its answer.
pub async fn run(args: &DemoArgs) -> Result<()> {
    let http = reqwest::Client::new();
    let company =
        http.get(format!("{}/api/v1/company", args.url)).bearer_auth(&args.token).send().await?.error_for_status()?.json::<Value>().await?;
    let company_id = company["data"]["id"].as_str().context("company id")?.to_owned();
    let mut api = Api { http, url: args.url.clone(), token: args.token.clone(), key_prefix: format!("demo-{company_id}"), n: 0 };
    let mut rng = StdRng::seed_from_u64(0x6465_6d6f);
    let (y1, y2) = (args.first_year, args.first_year + 1);

    let mut departments = Vec::new();
    for (code, name) in [("SALES", "영업부"), ("ADMIN", "관리부"), ("LOGIS", "물류부")] {
        departments.push(api.id("/api/v1/departments", &json!({"code": code, "name": name})).await?);
    }
    let customers_named = ["한빛전자", "미래유통", "청솔식품", "다온테크", "새봄상사", "하늘물산"];
    let suppliers_named = ["대한제지", "우리물류", "세종부품", "가람화학"];
    let mut customers = Vec::new();
    for (i, name) in customers_named.iter().enumerate() {
        let bn = business_number(106_810_123 + 37 * i as u64);
        let body = json!({"code": format!("C{:03}", i + 1), "name": format!("(주){name}"), "partner_type": "customer",
                          "business_number": bn, "representative": "김대표", "address": "서울특별시 강남구 테헤란로 1"});
        customers.push(api.id("/api/v1/partners", &body).await?);
    }
    let mut suppliers = Vec::new();
    for (i, name) in suppliers_named.iter().enumerate() {
        let bn = business_number(220_860_456 + 53 * i as u64);
        let body = json!({"code": format!("S{:03}", i + 1), "name": format!("(주){name}"), "partner_type": "supplier",
                          "business_number": bn, "representative": "이대표", "address": "경기도 성남시 분당구 판교로 2"});
        suppliers.push(api.id("/api/v1/partners", &body).await?);
    }
    let both = api.id("/api/v1/partners", &json!({"code": "B001", "name": "(주)동행무역", "partner_type": "both"})).await?;
    for (email, name, role) in [("accountant", "박회계", "accountant"), ("viewer", "최열람", "viewer")] {
        let body = json!({"email": format!("{email}+{company_id}@demo.kerp.local"), "name": name, "role": role});
        api.post("/api/v1/users", &body).await?;
    }

    let mut vouchers = 0;
    let mut invoices = 0;
    api.post(
        "/api/v1/vouchers",
        &voucher(&format!("{y1}-01-02"), "자본금 납입", &[("1102", 500_000_000, 0, None, None), ("3101", 0, 500_000_000, None, None)]),
    )
    .await?;
    vouchers += 1;
    let mut cancelled = false;
    for year in [y1, y2] {
        for month in 1..=12u32 {
            let d = |day: u32| format!("{year}-{month:02}-{day:02}");
            // This month's sales, planned first so that the merchandise bought covers what they cost.
            let sales: Vec<(String, i64, i64)> = (0..rng.gen_range(2..=3usize))
                .map(|k| {
                    let customer = if k == 2 { both.clone() } else { customers[rng.gen_range(0..customers.len())].clone() };
                    (customer, rng.gen_range(50..300), round(rng.gen_range(150_000..500_000)))
                })
                .collect();
            let cogs: Vec<i64> = sales.iter().map(|(_, qty, price)| round(qty * price * 6 / 10)).collect();
            // Merchandise bought on a purchase invoice, a little more than the month sells, and paid on the 25th.
            let supplier = suppliers[rng.gen_range(0..suppliers.len())].clone();
            let cost = round(cogs.iter().sum::<i64>() * rng.gen_range(100..110) / 100 / 100) * 100;
            let body = json!({"invoice_type": "purchase", "partner_id": supplier, "invoice_date": d(3), "supply_amount": cost,
                              "tax_amount": cost / 10, "items": [{"description": "상품 매입", "quantity": 100, "unit_price": cost / 100}]});
            let inv = api.id("/api/v1/invoices", &body).await?;
            api.post_empty(&format!("/api/v1/invoices/{inv}/issue")).await?;
            invoices += 1;
            // The sales invoices; most are collected the same month.
            for (k, ((customer, qty, price), cogs)) in sales.iter().zip(&cogs).enumerate() {
                let k = u32::try_from(k).unwrap_or(0);
                let supply = qty * price;
                let body = json!({"invoice_type": "sales", "partner_id": customer, "invoice_date": d(10 + k), "supply_amount": supply,
                                  "tax_amount": supply / 10, "items": [{"description": "상품 판매", "spec": "EA", "quantity": qty, "unit_price": price}]});
                let inv = api.id("/api/v1/invoices", &body).await?;
                api.post_empty(&format!("/api/v1/invoices/{inv}/issue")).await?;
                invoices += 1;
                if year == y2 && month == 3 && !cancelled {
                    // A sale that fell through: the invoice is cancelled and its voucher reversed.
                    api.post(&format!("/api/v1/invoices/{inv}/cancel"), &json!({"reason": "거래 취소"})).await?;
                    cancelled = true;
                    continue;
                }
                if rng.gen_bool(0.85) {
                    let total = supply + supply / 10;
                    api.post(
                        "/api/v1/vouchers",
                        &voucher(
                            &d(20 + k),
                            "외상매출금 회수",
                            &[("1102", total, 0, None, None), ("1103", 0, total, Some(customer), None)],
                        ),
                    )
                    .await?;
                    vouchers += 1;
                }
                api.post(
                    "/api/v1/vouchers",
                    &voucher(&d(10 + k), "상품매출원가", &[("5101", *cogs, 0, None, None), ("1201", 0, *cogs, None, None)]),
                )
                .await?;
                vouchers += 1;
            }
            // Petty cash for the month's supplies.
            api.post(
                "/api/v1/vouchers",
                &voucher(&d(1), "소액현금 보충", &[("1101", 1_000_000, 0, None, None), ("1102", 0, 1_000_000, None, None)]),
            )
            .await?;
            vouchers += 1;
            let pay = cost + cost / 10;
            api.post(
                "/api/v1/vouchers",
                &voucher(&d(25), "외상매입금 지급", &[("2101", pay, 0, Some(&supplier), None), ("1102", 0, pay, None, None)]),
            )
            .await?;
            vouchers += 1;
            // Salaries by department, supplies and fees.
            let mut lines: Vec<Line<'_>> = Vec::new();
            let mut total = 0;
            for dept in &departments {
                let s = round(rng.gen_range(8_000_000..15_000_000));
                total += s;
                lines.push(("5201", s, 0, None, Some(dept.as_str())));
            }
            lines.push(("1102", 0, total, None, None));
            api.post("/api/v1/vouchers", &voucher(&d(25), "급여 지급", &lines)).await?;
            let supplies = round(rng.gen_range(100_000..900_000));
            api.post(
                "/api/v1/vouchers",
                &voucher(
                    &d(15),
                    "소모품 구입",
                    &[("5212", supplies, 0, None, Some(departments[1].as_str())), ("1101", 0, supplies, None, None)],
                ),
            )
            .await?;
            let fees = round(rng.gen_range(200_000..1_500_000));
            api.post("/api/v1/vouchers", &voucher(&d(28), "지급수수료", &[("5213", fees, 0, None, None), ("1102", 0, fees, None, None)]))
                .await?;
            vouchers += 3;
        }
    }
    // A mistaken entry, reversed; and a draft waiting for approval.
    let wrong = api
        .id(
            "/api/v1/vouchers",
            &voucher(&format!("{y2}-11-05"), "잘못된 전표", &[("5212", 777_000, 0, None, None), ("1101", 0, 777_000, None, None)]),
        )
        .await?;
    api.post(&format!("/api/v1/vouchers/{wrong}/reverse"), &json!({"reason": "계정 오류"})).await?;
    let mut draft =
        voucher(&format!("{y2}-12-30"), "연말 소모품 (승인 대기)", &[("5212", 250_000, 0, None, None), ("1101", 0, 250_000, None, None)]);
    draft["status"] = json!("draft");
    api.post("/api/v1/vouchers", &draft).await?;
    vouchers += 3;
    // The first year is closed.
    for month in 1..=12 {
        api.post_empty(&format!("/api/v1/periods/{y1}-{month:02}/close")).await?;
    }
    println!(
        "demo: {} departments, {} partners, 2 users, {invoices} invoices, {vouchers} vouchers over {y1}-{y2}; {y1} closed",
        departments.len(),
        customers.len() + suppliers.len() + 1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_business_numbers_pass_the_check() {
        for n in (0..6).map(|i| 106_810_123 + 37 * i).chain((0..4).map(|i| 220_860_456 + 53 * i)) {
            let b = super::business_number(n);
            assert_eq!(kerp_core::master::business_number(&b).as_deref(), Ok(b.as_str()));
        }
        assert_eq!(super::business_number(116_820_027), "116-82-00276");
    }
}
