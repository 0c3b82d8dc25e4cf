//! The VAT summary (부가세 신고 기초): a year and a quarter come in with the caller's token; the company's issued tax
//! invoices dated in that quarter come out of ClickHouse's `invoices` table (never Postgres), counted and summed per
//! invoice type (sales, purchases) and VAT type (taxable, zero-rated, exempt), with output, input and payable VAT.
//!
//! The parameter checks and the arithmetic are pure functions ([`Quarter::parse`], [`summarize`]), unit-tested without
//! IO; the one ClickHouse query is in [`store`], at the end of this file. Money is integer won, summed as `i128`
//! because ClickHouse sums in Decimal128 (an `Int64` sum would wrap silently past 9.2 * 10^18 won).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{Datelike, NaiveDate};
use kerp_core::http::{Auth, Data, Problem};
use kerp_core::openapi::BadRequest;
use kerp_core::voucher::{FieldError, VOUCHER_DATE_MAX, VOUCHER_DATE_MIN};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{AppState, Result};

/// The VAT summary's routes with their OpenAPI operations, merged into query-api's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(vat_summary))
}

/// Months in a VAT quarter.
const QUARTER_MONTHS: u32 = 3;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct VatQuery {
    /// Required, 1970 to 2099. Read as text so that a malformed value gets this endpoint's 400 with the field named,
    /// not the extractor's.
    #[param(value_type = i32, required = true, minimum = 1970, maximum = 2099, example = 2025)]
    year: Option<String>,
    /// Required, 1 to 4.
    #[param(value_type = u32, required = true, minimum = 1, maximum = 4, example = 1)]
    quarter: Option<String>,
}

/// A checked VAT quarter: a year inside the supported dates and a quarter 1 to 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarter {
    year: i32,
    quarter: u32,
}

impl Quarter {
    /// Reads the query parameters. A missing, empty or malformed year, a year outside the supported dates, and a
    /// quarter other than 1 to 4 are all refused, each field named once.
    ///
    /// # Errors
    /// The offending fields, for a 400.
    pub fn parse(year: Option<&str>, quarter: Option<&str>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let (min, max) = (VOUCHER_DATE_MIN.year(), VOUCHER_DATE_MAX.year());
        let year = match present(year) {
            None => {
                errors.push(FieldError::new("year", "required"));
                None
            }
            Some(s) => match s.parse::<i32>().ok().filter(|_| s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())) {
                None => {
                    errors.push(FieldError::new("year", format!("'{s}' is not a year (YYYY)")));
                    None
                }
                Some(y) if !(min..=max).contains(&y) => {
                    errors.push(FieldError::new("year", format!("must be between {min} and {max}")));
                    None
                }
                Some(y) => Some(y),
            },
        };
        let quarter = match present(quarter) {
            None => {
                errors.push(FieldError::new("quarter", "required"));
                None
            }
            Some(s) => {
                let q = match s {
                    "1" => Some(1),
                    "2" => Some(2),
                    "3" => Some(3),
                    "4" => Some(4),
                    _ => None,
                };
                if q.is_none() {
                    errors.push(FieldError::new("quarter", format!("'{s}' is not a quarter (1, 2, 3 or 4)")));
                }
                q
            }
        };
        match (year, quarter) {
            (Some(year), Some(quarter)) if errors.is_empty() => Ok(Quarter { year, quarter }),
            _ => Err(errors),
        }
    }

    /// The quarter's first day.
    #[must_use]
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, (self.quarter - 1) * QUARTER_MONTHS + 1, 1).unwrap_or(VOUCHER_DATE_MIN)
    }

    /// The quarter's last day.
    #[must_use]
    pub fn last_day(self) -> NaiveDate {
        let next = if self.quarter == 4 {
            NaiveDate::from_ymd_opt(self.year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(self.year, self.quarter * QUARTER_MONTHS + 1, 1)
        };
        next.and_then(|d| d.pred_opt()).unwrap_or(VOUCHER_DATE_MAX)
    }

    /// `2025-Q1`.
    #[must_use]
    pub fn period(self) -> String {
        format!("{}-Q{}", self.year, self.quarter)
    }

    /// VAT is filed per half-year with a preliminary return for its first quarter: Q1 and Q3 are `preliminary`
    /// (예정신고), Q2 and Q4 `final` (확정신고).
    #[must_use]
    pub fn return_kind(self) -> &'static str {
        if self.quarter % 2 == 1 {
            "preliminary"
        } else {
            "final"
        }
    }
}

/// A parameter's value, trimmed, with an empty value taken as absent (as clients send `?year=`).
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|s| !s.is_empty())
}

/// The invoices of one group: how many, and their supply and tax totals in won.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub count: u64,
    pub supply_amount: i128,
    pub tax_amount: i128,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, other: Self) {
        self.count += other.count;
        self.supply_amount += other.supply_amount;
        self.tax_amount += other.tax_amount;
    }
}

/// One side of the return (sales or purchases) by VAT type, and its total.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Side {
    pub taxable: Totals,
    pub zero_rated: Totals,
    pub exempt: Totals,
    pub total: Totals,
}

/// The response's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VatSummary {
    pub year: i32,
    pub quarter: u32,
    pub period: String,
    pub return_kind: &'static str,
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
    pub sales: Side,
    pub purchases: Side,
    /// Tax on sales (매출세액, 2105 VAT payable).
    pub output_vat: i128,
    /// Tax on purchases (매입세액, 1105 VAT receivable).
    pub input_vat: i128,
    /// Output minus input; negative is a refund.
    pub payable_vat: i128,
}

/// Issued invoices of one invoice type and VAT type, as the store sums them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub invoice_type: String,
    pub vat_type: String,
    pub totals: Totals,
}

/// Shapes the store's groups into the summary. Every group must be a known invoice type and VAT type: the fold holds
/// back an invoice with any other (see `stream-workers`' `fold::invoice_row`), so one here is a defect, reported
/// rather than left out of the sums.
///
/// # Errors
/// A group with an unknown invoice type or VAT type.
pub fn summarize(quarter: Quarter, groups: &[Group]) -> Result<VatSummary, String> {
    let (mut sales, mut purchases) = (Side::default(), Side::default());
    for g in groups {
        let side = match g.invoice_type.as_str() {
            "sales" => &mut sales,
            "purchase" => &mut purchases,
            other => return Err(format!("invoices hold an unknown invoice_type {other:?}")),
        };
        let slot = match g.vat_type.as_str() {
            "taxable" => &mut side.taxable,
            "zero_rated" => &mut side.zero_rated,
            "exempt" => &mut side.exempt,
            other => return Err(format!("invoices hold an unknown vat_type {other:?}")),
        };
        *slot += g.totals;
        side.total += g.totals;
    }
    let (output_vat, input_vat) = (sales.total.tax_amount, purchases.total.tax_amount);
    Ok(VatSummary {
        year: quarter.year,
        quarter: quarter.quarter,
        period: quarter.period(),
        return_kind: quarter.return_kind(),
        from_date: quarter.first_day(),
        to_date: quarter.last_day(),
        sales,
        purchases,
        output_vat,
        input_vat,
        payable_vat: output_vat - input_vat,
    })
}

/// A 400 naming each offending field.
fn bad_request(errors: Vec<FieldError>) -> Problem {
    let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
    Problem { errors, ..Problem::new(StatusCode::BAD_REQUEST, detail) }
}

/// `GET /api/v1/reports/vat-summary?year=&quarter=`: the caller's company's issued invoices of the quarter, by type and
/// VAT type (see [`summarize`]). Every role may read it.
#[utoipa::path(get, path = "/api/v1/reports/vat-summary", tag = "reports", summary = "The VAT summary (부가세 신고 기초) of a quarter", params(VatQuery),
    responses((status = 200, description = "The quarter's VAT summary (부가세 신고 기초)", body = Data<VatSummary>),
              (status = 400, response = BadRequest)))]
async fn vat_summary(
    State(state): State<AppState>,
    Auth(claims): Auth,
    q: Result<Query<VatQuery>, QueryRejection>,
) -> Result<impl IntoResponse> {
    let Query(q) = q.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let quarter = Quarter::parse(q.year.as_deref(), q.quarter.as_deref()).map_err(bad_request)?;
    let groups = store::issued_invoice_groups(&state.ch, claims.company_id, quarter.first_day(), quarter.last_day()).await?;
    let summary = summarize(quarter, &groups).map_err(crate::Error::Other)?;
    Ok(Json(Data { data: summary }))
}

/// The VAT summary's ClickHouse query. Nothing above this module holds SQL.
mod store {
    use chrono::NaiveDate;
    use clickhouse::{Client, Row};
    use kerp_core::clickhouse::uuid_literal;
    use kerp_core::telemetry::timed;
    use serde::Deserialize;
    use uuid::Uuid;

    use super::{Group, Totals};
    use crate::{Error, Result};

    /// Read positionally (validation is off for 18.16), so the field names need not match the aliases.
    #[derive(Debug, Row, Deserialize)]
    struct GroupRow {
        invoice_type: String,
        vat_type: String,
        count: u64,
        /// Decimal128 sums sent as text.
        supply: String,
        tax: String,
    }

    fn wide(text: &str) -> Result<i128> {
        text.parse().map_err(|e| Error::Other(format!("ClickHouse sum {text:?} is not an integer: {e}")))
    }

    /// The company's invoices whose newest state is issued and dated `from` to `to` (inclusive), counted and summed
    /// per invoice type and VAT type.
    ///
    /// Status and date change between an invoice's versions (an issued invoice is cancelled; a draft is redated), so
    /// they are tested on the newest version only: `argMax(.., version)` per invoice, then `HAVING`, which no
    /// optimiser moves below the aggregation. A `WHERE status = 'issued'` next to `FINAL` is also right on 18.16 and
    /// on current servers with default settings, but a server that moves it to `PREWHERE`
    /// (`optimize_move_to_prewhere_if_final`) would filter before the collapse and count an invoice issued and later
    /// cancelled. Only `company_id`, which every version of an invoice shares, is filtered before. Aliases never reuse
    /// a column's name: ClickHouse lets an alias shadow the column elsewhere in the query.
    pub async fn issued_invoice_groups(ch: &Client, company: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<Group>> {
        let sql = format!(
            "SELECT kind, vat, count() AS invoice_count,
                    toString(sum(toDecimal128(supply, 0))) AS supply_sum, toString(sum(toDecimal128(tax, 0))) AS tax_sum
             FROM (
                 SELECT invoice_id,
                        argMax(invoice_type, version) AS kind, argMax(vat_type, version) AS vat,
                        argMax(status, version) AS newest_status, argMax(invoice_date, version) AS newest_date,
                        argMax(supply_amount, version) AS supply, argMax(tax_amount, version) AS tax
                 FROM invoices FINAL
                 WHERE company_id = {}
                 GROUP BY invoice_id
                 HAVING newest_status = 'issued' AND newest_date >= toDate('{from}') AND newest_date <= toDate('{to}')
             )
             GROUP BY kind, vat",
            uuid_literal(&company),
        );
        let rows: Vec<GroupRow> = timed("vat_summary", ch.query(&sql).fetch_all()).await?;
        rows.into_iter()
            .map(|r| {
                Ok(Group {
                    invoice_type: r.invoice_type,
                    vat_type: r.vat_type,
                    totals: Totals { count: r.count, supply_amount: wide(&r.supply)?, tax_amount: wide(&r.tax)? },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarter(year: &str, quarter: &str) -> Quarter {
        Quarter::parse(Some(year), Some(quarter)).unwrap()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn quarters_have_their_months_period_and_return_kind() {
        let cases = [
            ("1", "2025-01-01", "2025-03-31", "preliminary"),
            ("2", "2025-04-01", "2025-06-30", "final"),
            ("3", "2025-07-01", "2025-09-30", "preliminary"),
            ("4", "2025-10-01", "2025-12-31", "final"),
        ];
        for (q, from, to, kind) in cases {
            let q = quarter("2025", q);
            assert_eq!((q.first_day().to_string(), q.last_day().to_string(), q.return_kind()), (from.into(), to.into(), kind));
        }
        assert_eq!(quarter("2025", "1").period(), "2025-Q1");
        // The first and last supported years, and surrounding whitespace, which clients send.
        assert_eq!(quarter("1970", "1").first_day(), VOUCHER_DATE_MIN);
        assert_eq!(quarter(" 2099 ", " 4 ").last_day(), VOUCHER_DATE_MAX);
    }

    #[test]
    fn a_missing_or_malformed_year_or_quarter_is_refused_with_each_field_named() {
        let refused = |year: Option<&str>, quarter: Option<&str>| Quarter::parse(year, quarter).unwrap_err();
        assert_eq!(fields(&refused(None, None)), ["year", "quarter"]);
        assert_eq!(fields(&refused(Some(""), Some("1"))), ["year"]);
        for year in ["twenty", "2025.0", "+2025", "20250", "-2025", "1969", "2100", "0000"] {
            assert_eq!(fields(&refused(Some(year), Some("1"))), ["year"], "year {year:?}");
        }
        for q in ["0", "5", "Q1", "1.0", "01", "-1", "+1", "99999999999999999999"] {
            assert_eq!(fields(&refused(Some("2025"), Some(q))), ["quarter"], "quarter {q:?}");
        }
        assert_eq!(fields(&refused(Some("abc"), Some("9"))), ["year", "quarter"]);
        let problem = bad_request(refused(Some("2025"), None));
        assert_eq!((problem.status, problem.detail.as_str()), (400, "quarter: required"));
    }

    fn group(invoice_type: &str, vat_type: &str, count: u64, supply_amount: i128, tax_amount: i128) -> Group {
        Group { invoice_type: invoice_type.into(), vat_type: vat_type.into(), totals: Totals { count, supply_amount, tax_amount } }
    }

    #[test]
    fn groups_sum_into_sides_and_vat() {
        let groups = [
            group("sales", "taxable", 2, 3_000_000, 300_000),
            group("sales", "zero_rated", 1, 5_000_000, 0),
            group("sales", "exempt", 1, 200_000, 0),
            group("purchase", "taxable", 3, 1_500_000, 150_000),
            group("purchase", "exempt", 1, 330_000, 0),
        ];
        let s = summarize(quarter("2025", "3"), &groups).unwrap();
        assert_eq!((s.year, s.quarter, s.period.as_str(), s.return_kind), (2025, 3, "2025-Q3", "preliminary"));
        assert_eq!(s.sales.taxable, Totals { count: 2, supply_amount: 3_000_000, tax_amount: 300_000 });
        assert_eq!(s.sales.total, Totals { count: 4, supply_amount: 8_200_000, tax_amount: 300_000 });
        assert_eq!(s.purchases.zero_rated, Totals::default());
        assert_eq!(s.purchases.total, Totals { count: 4, supply_amount: 1_830_000, tax_amount: 150_000 });
        assert_eq!((s.output_vat, s.input_vat, s.payable_vat), (300_000, 150_000, 150_000));
    }

    #[test]
    fn more_input_than_output_vat_is_a_negative_payable_a_refund() {
        let groups = [group("sales", "zero_rated", 1, 9_000_000, 0), group("purchase", "taxable", 1, 2_000_000, 200_000)];
        let s = summarize(quarter("2025", "2"), &groups).unwrap();
        assert_eq!((s.output_vat, s.input_vat, s.payable_vat, s.return_kind), (0, 200_000, -200_000, "final"));
    }

    #[test]
    fn no_invoices_is_all_zeros() {
        let s = summarize(quarter("2025", "1"), &[]).unwrap();
        assert_eq!((s.sales, s.purchases), (Side::default(), Side::default()));
        assert_eq!((s.output_vat, s.input_vat, s.payable_vat), (0, 0, 0));
    }

    /// ClickHouse sums in Decimal128, so totals past `i64::MAX` arrive exact and stay exact.
    #[test]
    fn totals_past_i64_stay_exact() {
        let big = i128::from(i64::MAX) + 1;
        let groups = [group("sales", "taxable", 10, big, big / 10), group("sales", "exempt", 1, big, 0)];
        let s = summarize(quarter("2025", "1"), &groups).unwrap();
        assert_eq!(s.sales.total.supply_amount, 2 * big);
        assert_eq!(s.payable_vat, big / 10);
    }

    #[test]
    fn an_unknown_type_is_a_defect_not_a_silent_omission() {
        assert!(summarize(quarter("2025", "1"), &[group("refund", "taxable", 1, 1, 0)]).is_err());
        assert!(summarize(quarter("2025", "1"), &[group("sales", "reduced", 1, 1, 0)]).is_err());
    }

    #[test]
    fn the_response_has_the_contract_shape() {
        let s = summarize(quarter("2025", "1"), &[group("sales", "taxable", 1, 1_000_000, 100_000)]).unwrap();
        let v = serde_json::to_value(Data { data: s }).unwrap();
        let d = &v["data"];
        assert_eq!(
            (&d["year"], &d["quarter"], &d["period"], &d["return_kind"], &d["from_date"], &d["to_date"]),
            (
                &serde_json::json!(2025),
                &serde_json::json!(1),
                &serde_json::json!("2025-Q1"),
                &serde_json::json!("preliminary"),
                &serde_json::json!("2025-01-01"),
                &serde_json::json!("2025-03-31")
            )
        );
        assert_eq!(d["sales"]["taxable"], serde_json::json!({"count": 1, "supply_amount": 1_000_000, "tax_amount": 100_000}));
        for side in ["sales", "purchases"] {
            let keys: Vec<&str> = d[side].as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 4, "{side}: {keys:?}");
            for k in ["taxable", "zero_rated", "exempt", "total"] {
                assert!(keys.contains(&k), "{side} has {k}");
            }
        }
        assert_eq!(
            (&d["output_vat"], &d["input_vat"], &d["payable_vat"]),
            (&serde_json::json!(100_000), &serde_json::json!(0), &serde_json::json!(100_000))
        );
    }
}
