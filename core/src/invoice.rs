//! Tax invoice (세금계산서) rules: an invoice body flows in and a checked [`ValidInvoice`] or the list of
//! [`FieldError`]s flows out; an issued invoice flows into its voucher's postings ([`postings`]). No IO.
//!
//! The rules are those of `shared/reference/korean-accounting.md`: tax on a taxable invoice is 10% of supply,
//! truncated to whole won, and a client's `tax_amount` may differ from it by at most 1 won; zero-rated and exempt
//! invoices carry no tax. The items' quantities times unit prices add up to the supply amount.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::voucher::{parse_date, FieldError, DESCRIPTION_CHARS_MAX, LINE_AMOUNT_WON_MAX};

/// Most items one invoice carries.
pub const ITEMS_MAX: usize = 100;
/// Largest quantity of one item.
pub const QUANTITY_MAX: i64 = 1_000_000_000;
/// How far a client's tax may be from ⌊supply × 10%⌋, in won.
pub const TAX_TOLERANCE_WON_MAX: i64 = 1;
/// Longest item name or specification, in characters.
pub const ITEM_TEXT_CHARS_MAX: usize = 200;

/// Account codes the postings use (see the reference's fixed codes).
pub const ACCOUNTS_RECEIVABLE: &str = "1103";
pub const VAT_RECEIVABLE: &str = "1105";
pub const MERCHANDISE: &str = "1201";
pub const ACCOUNTS_PAYABLE: &str = "2101";
pub const VAT_PAYABLE: &str = "2105";
pub const SALES: &str = "4101";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum InvoiceType {
    /// 매출: the company supplied; the partner is the buyer.
    Sales,
    /// 매입: the company bought; the partner is the supplier.
    Purchase,
}

impl InvoiceType {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceType::Sales => "sales",
            InvoiceType::Purchase => "purchase",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sales" => Some(InvoiceType::Sales),
            "purchase" => Some(InvoiceType::Purchase),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum VatType {
    /// 과세: 10%.
    Taxable,
    /// 영세율: 0%, exports.
    ZeroRated,
    /// 면세: no VAT (issued as 계산서).
    Exempt,
}

impl VatType {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            VatType::Taxable => "taxable",
            VatType::ZeroRated => "zero_rated",
            VatType::Exempt => "exempt",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "taxable" => Some(VatType::Taxable),
            "zero_rated" => Some(VatType::ZeroRated),
            "exempt" => Some(VatType::Exempt),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Issued,
    Cancelled,
}

impl InvoiceStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Issued => "issued",
            InvoiceStatus::Cancelled => "cancelled",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(InvoiceStatus::Draft),
            "issued" => Some(InvoiceStatus::Issued),
            "cancelled" => Some(InvoiceStatus::Cancelled),
            _ => None,
        }
    }
}

/// The body of `POST /api/v1/invoices`, as the contract's clients send it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct InvoiceInput {
    /// Required.
    #[schema(value_type = Option<InvoiceType>)]
    pub invoice_type: Option<String>,
    /// Required: an active partner of the company.
    #[schema(format = Uuid)]
    pub partner_id: Option<String>,
    /// Required, `YYYY-MM-DD`.
    #[schema(format = Date, example = "2025-03-15")]
    pub invoice_date: Option<String>,
    /// `taxable` when left out.
    #[schema(value_type = Option<VatType>)]
    pub vat_type: Option<String>,
    /// Required, in won; the items' quantity × unit price add up to it.
    #[schema(example = 1_000_000)]
    pub supply_amount: Option<i64>,
    /// Computed when left out.
    pub tax_amount: Option<i64>,
    #[serde(default)]
    pub items: Vec<ItemInput>,
    pub description: Option<String>,
    /// The account the supply is booked to instead of 4101 (sales) or 1201 (purchases), e.g. an expense account
    /// for a purchased service.
    pub account_code: Option<String>,
}

/// One item of [`InvoiceInput`].
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct ItemInput {
    pub description: Option<String>,
    pub spec: Option<String>,
    pub quantity: Option<i64>,
    pub unit_price: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidItem {
    pub description: String,
    pub spec: String,
    pub quantity: i64,
    pub unit_price: i64,
    /// quantity × unit_price.
    pub supply_amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidInvoice {
    pub invoice_type: InvoiceType,
    pub vat_type: VatType,
    pub partner_id: Uuid,
    pub invoice_date: NaiveDate,
    pub supply_amount: i64,
    pub tax_amount: i64,
    pub items: Vec<ValidItem>,
    pub description: String,
    pub account_code: Option<String>,
}

/// The tax a taxable supply carries: 10%, truncated to whole won.
#[must_use]
pub fn standard_tax(supply: i64) -> i64 {
    supply / 10
}

fn text(errors: &mut Vec<FieldError>, field: &str, t: Option<&str>, max: usize) -> String {
    let t = t.unwrap_or_default().trim().to_owned();
    if t.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
    }
    t
}

/// Checks an invoice body, reporting every problem it finds.
///
/// # Errors
/// The list of field errors; never empty when returned.
pub fn validate(input: &InvoiceInput) -> Result<ValidInvoice, Vec<FieldError>> {
    let mut errors = Vec::new();
    let invoice_type = match input.invoice_type.as_deref() {
        Some(t) => InvoiceType::parse(t).or_else(|| {
            errors.push(FieldError::new("invoice_type", format!("'{t}' is not an invoice type (sales, purchase)")));
            None
        }),
        None => {
            errors.push(FieldError::new("invoice_type", "is required (sales, purchase)"));
            None
        }
    };
    let vat_type = match input.vat_type.as_deref() {
        None => Some(VatType::Taxable),
        Some(t) => VatType::parse(t).or_else(|| {
            errors.push(FieldError::new("vat_type", format!("'{t}' is not a VAT type (taxable, zero_rated, exempt)")));
            None
        }),
    };
    let partner_id = match input.partner_id.as_deref().map(str::trim) {
        None | Some("") => {
            errors.push(FieldError::new("partner_id", "is required"));
            None
        }
        Some(p) => Uuid::parse_str(p).map_err(|_| errors.push(FieldError::new("partner_id", "partner not found"))).ok(),
    };
    let invoice_date = match input.invoice_date.as_deref() {
        None => {
            errors.push(FieldError::new("invoice_date", "is required (YYYY-MM-DD)"));
            None
        }
        Some(d) => parse_date(d).map_err(|m| errors.push(FieldError::new("invoice_date", m))).ok(),
    };
    let supply = input.supply_amount.unwrap_or(0);
    if input.supply_amount.is_none() {
        errors.push(FieldError::new("supply_amount", "is required"));
    } else if supply <= 0 {
        errors.push(FieldError::new("supply_amount", "must be positive"));
    } else if supply > LINE_AMOUNT_WON_MAX {
        errors.push(FieldError::new("supply_amount", format!("must be at most {LINE_AMOUNT_WON_MAX} won")));
    }
    let expected_tax = match vat_type {
        Some(VatType::Taxable) => standard_tax(supply.max(0)),
        _ => 0,
    };
    let tax = input.tax_amount.unwrap_or(expected_tax);
    match vat_type {
        // `abs_diff`, not `(tax - expected_tax).abs()`: a client's tax near i64::MIN overflowed the subtraction
        // (a panic that dropped the connection in debug builds; schemathesis found it).
        Some(VatType::Taxable) if tax.abs_diff(expected_tax) > TAX_TOLERANCE_WON_MAX.unsigned_abs() => errors.push(FieldError::new(
            "tax_amount",
            format!("must be 10% of supply_amount, truncated to won: {expected_tax} (±{TAX_TOLERANCE_WON_MAX})"),
        )),
        Some(VatType::ZeroRated | VatType::Exempt) if tax != 0 => {
            errors.push(FieldError::new("tax_amount", "must be 0 on a zero-rated or exempt invoice"));
        }
        _ => {}
    }
    if tax < 0 {
        errors.push(FieldError::new("tax_amount", "must not be negative"));
    }

    if input.items.is_empty() {
        errors.push(FieldError::new("items", "at least one item is required"));
    } else if input.items.len() > ITEMS_MAX {
        errors.push(FieldError::new("items", format!("at most {ITEMS_MAX} items")));
    }
    let mut items = Vec::with_capacity(input.items.len().min(ITEMS_MAX));
    let mut items_total: Option<i64> = Some(0);
    for (i, it) in input.items.iter().take(ITEMS_MAX).enumerate() {
        let at = |f: &str| format!("items[{i}].{f}");
        let description = text(&mut errors, &at("description"), it.description.as_deref(), ITEM_TEXT_CHARS_MAX);
        if description.is_empty() {
            errors.push(FieldError::new(at("description"), "is required"));
        }
        let spec = text(&mut errors, &at("spec"), it.spec.as_deref(), ITEM_TEXT_CHARS_MAX);
        let quantity = it.quantity.unwrap_or(0);
        if !(1..=QUANTITY_MAX).contains(&quantity) {
            errors.push(FieldError::new(at("quantity"), format!("must be between 1 and {QUANTITY_MAX}")));
        }
        let unit_price = it.unit_price.unwrap_or(-1);
        if !(0..=LINE_AMOUNT_WON_MAX).contains(&unit_price) {
            errors.push(FieldError::new(at("unit_price"), format!("must be between 0 and {LINE_AMOUNT_WON_MAX} won")));
        }
        let amount = quantity.checked_mul(unit_price).filter(|a| *a <= LINE_AMOUNT_WON_MAX);
        if amount.is_none() {
            errors.push(FieldError::new(at("unit_price"), "quantity × unit_price is too large"));
        }
        items_total = items_total.zip(amount).and_then(|(t, a)| t.checked_add(a));
        items.push(ValidItem { description, spec, quantity, unit_price, supply_amount: amount.unwrap_or(0) });
    }
    if let Some(total) = items_total {
        if !input.items.is_empty() && input.supply_amount.is_some() && total != supply {
            errors.push(FieldError::new("items", format!("the items add up to {total}, not supply_amount {supply}")));
        }
    }
    let description = text(&mut errors, "description", input.description.as_deref(), DESCRIPTION_CHARS_MAX);
    let account_code = input.account_code.as_deref().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);

    match (errors.is_empty(), invoice_type, vat_type, partner_id, invoice_date) {
        (true, Some(invoice_type), Some(vat_type), Some(partner_id), Some(invoice_date)) => Ok(ValidInvoice {
            invoice_type,
            vat_type,
            partner_id,
            invoice_date,
            supply_amount: supply,
            tax_amount: tax,
            items,
            description,
            account_code,
        }),
        _ => Err(errors),
    }
}

/// One line of an invoice's voucher: an account code and its debit or credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account_code: String,
    pub debit: i64,
    pub credit: i64,
}

/// The voucher lines an issued invoice posts:
/// - sales: Dr 1103 AR (supply + tax) / Cr 4101 sales or `account` (supply) / Cr 2105 VAT payable (tax);
/// - purchase: Dr 1201 merchandise or `account` (supply) / Dr 1105 VAT receivable (tax) / Cr 2101 AP (supply + tax).
///
/// A zero tax (zero-rated, exempt) gets no VAT line.
#[must_use]
pub fn postings(kind: InvoiceType, supply: i64, tax: i64, account: Option<&str>) -> Vec<Posting> {
    let p = |code: &str, debit: i64, credit: i64| Posting { account_code: code.to_owned(), debit, credit };
    let total = supply + tax;
    let mut out = Vec::with_capacity(3);
    match kind {
        InvoiceType::Sales => {
            out.push(p(ACCOUNTS_RECEIVABLE, total, 0));
            out.push(p(account.unwrap_or(SALES), 0, supply));
            if tax > 0 {
                out.push(p(VAT_PAYABLE, 0, tax));
            }
        }
        InvoiceType::Purchase => {
            out.push(p(account.unwrap_or(MERCHANDISE), supply, 0));
            if tax > 0 {
                out.push(p(VAT_RECEIVABLE, tax, 0));
            }
            out.push(p(ACCOUNTS_PAYABLE, 0, total));
        }
    }
    out
}

/// Checks an NTS approval number (승인번호): 24 digits, dashes allowed (`YYYYMMDD-XXXXXXXX-XXXXXXXX`), the first 8
/// a real date. Returns the bare digits.
///
/// # Errors
/// A message fit for the client.
pub fn approval_number(s: &str) -> Result<String, String> {
    let digits: String = s.trim().chars().filter(|c| *c != '-').collect();
    if digits.len() != 24 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not an NTS approval number (24 digits, YYYYMMDD-XXXXXXXX-XXXXXXXX)"));
    }
    if NaiveDate::parse_from_str(&digits[..8], "%Y%m%d").is_err() {
        return Err(format!("'{s}' does not start with an issue date (YYYYMMDD)"));
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> InvoiceInput {
        InvoiceInput {
            invoice_type: Some("sales".into()),
            partner_id: Some(Uuid::nil().to_string()),
            invoice_date: Some("2025-01-15".into()),
            vat_type: None,
            supply_amount: Some(1_000_000),
            tax_amount: Some(100_000),
            items: vec![ItemInput { description: Some("Service fee".into()), spec: None, quantity: Some(1), unit_price: Some(1_000_000) }],
            description: None,
            account_code: None,
        }
    }

    #[test]
    fn the_contract_example_is_valid() {
        let v = validate(&input()).unwrap();
        assert_eq!((v.invoice_type, v.vat_type, v.tax_amount), (InvoiceType::Sales, VatType::Taxable, 100_000));
    }

    #[test]
    fn tax_is_ten_percent_truncated_within_one_won() {
        assert_eq!(standard_tax(1_234_567), 123_456);
        let mut i = input();
        i.supply_amount = Some(1_234_567);
        i.items[0].unit_price = Some(1_234_567);
        for (tax, ok) in [(123_456, true), (123_457, true), (123_455, true), (123_458, false), (0, false)] {
            i.tax_amount = Some(tax);
            assert_eq!(validate(&i).is_ok(), ok, "tax {tax}");
        }
        i.tax_amount = None;
        assert_eq!(validate(&i).unwrap().tax_amount, 123_456, "computed when left out");
    }

    #[test]
    fn extreme_amounts_are_refused_without_overflow() {
        for tax in [i64::MIN, i64::MIN + 1, -9_223_372_036_854_775_807, i64::MAX] {
            let mut i = input();
            i.tax_amount = Some(tax);
            let errors = validate(&i).unwrap_err();
            assert!(errors.iter().any(|e| e.field == "tax_amount"), "tax {tax}: {errors:?}");
        }
        let mut i = input();
        (i.supply_amount, i.tax_amount) = (Some(i64::MAX), Some(i64::MIN));
        assert!(validate(&i).is_err());
    }

    #[test]
    fn zero_rated_and_exempt_carry_no_tax() {
        for vat in ["zero_rated", "exempt"] {
            let mut i = input();
            i.vat_type = Some(vat.into());
            assert!(validate(&i).is_err(), "{vat} with tax");
            i.tax_amount = Some(0);
            assert_eq!(validate(&i).unwrap().tax_amount, 0);
            i.tax_amount = None;
            assert_eq!(validate(&i).unwrap().tax_amount, 0);
        }
    }

    #[test]
    fn items_must_add_up_to_the_supply() {
        let mut i = input();
        i.items = vec![
            ItemInput { description: Some("a".into()), spec: None, quantity: Some(3), unit_price: Some(200_000) },
            ItemInput { description: Some("b".into()), spec: Some("box".into()), quantity: Some(4), unit_price: Some(100_000) },
        ];
        assert_eq!(validate(&i).unwrap().items[0].supply_amount, 600_000);
        i.items[1].quantity = Some(3);
        let e = validate(&i).unwrap_err();
        assert!(e.iter().any(|e| e.field == "items"), "{e:?}");
        i.items.clear();
        assert!(validate(&i).is_err());
    }

    #[test]
    fn every_problem_is_named() {
        let e = validate(&InvoiceInput {
            invoice_type: Some("refund".into()),
            vat_type: Some("luxury".into()),
            invoice_date: Some("2025-02-30".into()),
            supply_amount: Some(-5),
            items: vec![ItemInput { quantity: Some(0), unit_price: Some(-1), ..Default::default() }],
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "invoice_type",
            "vat_type",
            "partner_id",
            "invoice_date",
            "supply_amount",
            "items[0].description",
            "items[0].quantity",
            "items[0].unit_price",
        ] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
    }

    #[test]
    fn postings_follow_the_reference_and_balance() {
        let sales = postings(InvoiceType::Sales, 1_000_000, 100_000, None);
        assert_eq!(
            sales,
            [
                Posting { account_code: "1103".into(), debit: 1_100_000, credit: 0 },
                Posting { account_code: "4101".into(), debit: 0, credit: 1_000_000 },
                Posting { account_code: "2105".into(), debit: 0, credit: 100_000 },
            ]
        );
        let purchase = postings(InvoiceType::Purchase, 500_000, 50_000, Some("5213"));
        assert_eq!(purchase.iter().map(|p| p.account_code.as_str()).collect::<Vec<_>>(), ["5213", "1105", "2101"]);
        assert_eq!(postings(InvoiceType::Sales, 700, 0, None).len(), 2, "no VAT line without tax");
        for p in [sales, purchase] {
            assert_eq!(p.iter().map(|l| l.debit).sum::<i64>(), p.iter().map(|l| l.credit).sum::<i64>());
        }
    }

    #[test]
    fn approval_numbers_are_24_digits_starting_with_a_date() {
        assert_eq!(approval_number("20250115-41000012-00000001").unwrap(), "202501154100001200000001");
        for bad in ["20251315-41000012-00000001", "2025011541000012", "x0250115-41000012-00000001"] {
            assert!(approval_number(bad).is_err(), "{bad}");
        }
    }
}
