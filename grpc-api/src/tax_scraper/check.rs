//! Checking one scraped e-tax invoice: a [`SourceInvoice`] (every field as the text Hometax shows) comes in; a typed
//! [`Scraped`] invoice ready to import, or every reason it cannot be, comes out, and so does the answer's message for
//! either ([`Scraped::message`], [`echo`]). No IO.
//!
//! The rules are the reference's (`shared/reference/korean-accounting.md`) and K-ERP's own:
//! - business numbers pass `kerp_core::master::business_number` (the check digit) and the approval number
//!   `kerp_core::invoice::approval_number` (24 digits starting with a date);
//! - 합계금액 = 공급가액 + 세액, and the items' 품목공급가액 and 품목세액 add up to them;
//! - a 세금계산서 of kind 일반 is taxable: 세액 is ⌊공급가액 × 10%⌋ ± 1 won; a zero-rated one (영세율) and a 계산서
//!   (VAT-exempt goods) carry no tax;
//! - the business is exactly one of the parties, which decides the [`Direction`];
//! - what K-ERP stores must pass `kerp_core::invoice::validate` (whole quantities, quantity × unit price = the item's
//!   supply, text lengths), so an invoice that passes here is refused at import only for a reason of the database
//!   (a partner switched off, a partner on the other side only).
//!
//! Messages name the export's column (`세액: …`), so that a person can find the cell.

use chrono::{Datelike, NaiveDate};
use kerp_core::invoice::{self as rules, InvoiceInput, InvoiceType, ItemInput, VatType};
use kerp_core::master::{self, NAME_CHARS_MAX, TEXT_CHARS_MAX};
use kerp_core::voucher::DESCRIPTION_CHARS_MAX;
use uuid::Uuid;

use super::source::{SourceInvoice, SourceItem, SourceParty};
use crate::pb::root as pb;

/// Longest text echoed back from a rejected invoice's cells, in characters: a cell may hold anything, and the answer
/// must stay small. A checked invoice's texts are bounded by the rules instead.
pub const ECHO_TEXT_CHARS_MAX: usize = 200;

/// The item K-ERP stores for an e-tax invoice listed without items (K-ERP invoices have at least one).
pub const NO_ITEMS_DESCRIPTION: &str = "(품목 미기재)";

/// 전자세금계산서분류: which of the two documents the NTS holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// 세금계산서: a taxable (or zero-rated) supply, with VAT.
    TaxInvoice,
    /// 계산서: a supply of VAT-exempt goods (면세), without VAT.
    Invoice,
}

impl Classification {
    /// Parses the NTS's words, with or without `전자` and spaces.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        match t.strip_prefix("전자").unwrap_or(&t) {
            "세금계산서" => Some(Classification::TaxInvoice),
            "계산서" => Some(Classification::Invoice),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::TaxInvoice => "세금계산서",
            Classification::Invoice => "계산서",
        }
    }
}

/// Which side of an invoice the scraping business is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// It is the supplier: a sales invoice, whose partner is the buyer.
    Sales,
    /// It is the buyer: a purchase invoice, whose partner is the supplier.
    Purchase,
}

impl Direction {
    #[must_use]
    pub fn invoice_type(self) -> InvoiceType {
        match self {
            Direction::Sales => InvoiceType::Sales,
            Direction::Purchase => InvoiceType::Purchase,
        }
    }

    #[must_use]
    pub fn message(self) -> pb::InvoiceDirection {
        match self {
            Direction::Sales => pb::InvoiceDirection::Sales,
            Direction::Purchase => pb::InvoiceDirection::Purchase,
        }
    }
}

/// The direction of an invoice for the business with `business` digits: sales when it is the supplier, purchase when
/// it is the buyer, `None` when it is neither or both (an invoice to oneself is not a trade).
#[must_use]
pub fn direction(business: &str, supplier: &str, buyer: &str) -> Option<Direction> {
    match (supplier == business, buyer == business) {
        (true, false) => Some(Direction::Sales),
        (false, true) => Some(Direction::Purchase),
        _ => None,
    }
}

/// The VAT treatment K-ERP books: a 계산서 is exempt, a 세금계산서 of a zero-rated kind (영세율, 위수탁영세율) is
/// zero-rated, any other 세금계산서 taxable.
#[must_use]
pub fn vat_type(classification: Classification, kind: &str) -> VatType {
    match classification {
        Classification::Invoice => VatType::Exempt,
        Classification::TaxInvoice if kind.contains("영세") => VatType::ZeroRated,
        Classification::TaxInvoice => VatType::Taxable,
    }
}

/// The tax rule: ⌊supply × 10%⌋ ± [`rules::TAX_TOLERANCE_WON_MAX`] won on a taxable invoice, nothing otherwise.
///
/// # Errors
/// What is wrong with `tax`, for the 세액 column.
pub fn tax_rule(vat: VatType, supply: i64, tax: i64) -> Result<(), String> {
    match vat {
        VatType::Taxable => {
            let expected = rules::standard_tax(supply);
            // `abs_diff`, as the REST check does, so that no amount can overflow the subtraction.
            if tax.abs_diff(expected) > rules::TAX_TOLERANCE_WON_MAX.unsigned_abs() {
                return Err(format!(
                    "{tax} is not 10% of 공급가액 {supply}, truncated to won: {expected} (±{})",
                    rules::TAX_TOLERANCE_WON_MAX
                ));
            }
            Ok(())
        }
        VatType::ZeroRated | VatType::Exempt if tax != 0 => Err(format!("{tax}: a 계산서 or a zero-rated (영세율) invoice carries no tax")),
        VatType::ZeroRated | VatType::Exempt => Ok(()),
    }
}

/// The ASCII digits of `text` (a business number with or without dashes compares by these).
#[must_use]
pub fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// A date as exports write it: `YYYY-MM-DD`, `YYYYMMDD`, `YYYY.MM.DD` (also `2025. 1. 15.`), `YYYY/MM/DD`, with a time
/// after it ignored; or `MMDD` in `year` (item dates are sometimes written so). `None` for anything else.
#[must_use]
pub fn date_text(text: &str, year: Option<i32>) -> Option<NaiveDate> {
    let t = text.trim();
    // A date cell read as text may carry a time: `2025-01-16 00:00:00`, `2025-01-16T00:00:00`.
    let t = match t.char_indices().nth(10) {
        Some((at, ' ' | 'T')) => &t[..at],
        _ => t,
    };
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() == 8 && compact.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::parse_from_str(&compact, "%Y%m%d").ok();
    }
    if compact.len() == 4 && compact.bytes().all(|b| b.is_ascii_digit()) {
        let (m, d) = (compact[..2].parse().ok()?, compact[2..].parse().ok()?);
        return NaiveDate::from_ymd_opt(year?, m, d);
    }
    let parts: Vec<&str> = compact.split(['-', '.', '/']).filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() <= 2 && d.len() <= 2 => {
            NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
        }
        _ => None,
    }
}

/// A cell that is not a whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotWhole;

/// A whole number as exports write it: thousands separators, spaces and a `원` are ignored, and so is a fraction
/// of zeros (`1000000.0`, as a spreadsheet may show a number). `Ok(None)` for an empty cell.
///
/// # Errors
/// [`NotWhole`] for anything else, which the caller words for its column.
pub fn whole(text: &str) -> Result<Option<i64>, NotWhole> {
    let t: String = text.chars().filter(|c| !c.is_whitespace() && *c != ',' && *c != '원').collect();
    if t.is_empty() {
        return Ok(None);
    }
    let int = match t.split_once('.') {
        Some((int, fraction)) if !fraction.is_empty() && fraction.bytes().all(|b| b == b'0') => int,
        Some(_) => return Err(NotWhole),
        None => &t,
    };
    let unsigned = int.strip_prefix('-').unwrap_or(int);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NotWhole);
    }
    int.parse().map(Some).map_err(|_| NotWhole)
}

/// `text` trimmed and cut to [`ECHO_TEXT_CHARS_MAX`] characters.
fn clip(text: &str) -> String {
    text.trim().chars().take(ECHO_TEXT_CHARS_MAX).collect()
}

/// The approval number's 24 digits shown as the NTS shows them, `YYYYMMDD-XXXXXXXX-XXXXXXXX`.
#[must_use]
pub fn dashed_approval(digits: &str) -> String {
    match (digits.get(..8), digits.get(8..16), digits.get(16..)) {
        (Some(a), Some(b), Some(c)) if digits.len() == 24 => format!("{a}-{b}-{c}"),
        _ => digits.to_owned(),
    }
}

/// A party of a checked invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Dashed, with a valid check digit.
    pub business_number: String,
    pub name: String,
    pub representative: String,
    pub address: String,
}

/// An item of a checked invoice, in whole won and whole units, quantity × unit price = supply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub date: NaiveDate,
    pub name: String,
    pub specification: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub supply_amount: i64,
    /// `None` when the export leaves it out.
    pub tax_amount: Option<i64>,
    pub remark: String,
}

/// A checked e-tax invoice of the business, ready to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scraped {
    pub origin: String,
    /// The 24 digits.
    pub approval_number: String,
    pub write_date: NaiveDate,
    pub issue_date: Option<NaiveDate>,
    pub transmit_date: Option<NaiveDate>,
    pub supplier: Party,
    pub buyer: Party,
    pub supply_amount: i64,
    pub tax_amount: i64,
    pub total_amount: i64,
    pub classification: Classification,
    /// 전자세금계산서종류 as the NTS words it (일반 when the export leaves it out).
    pub kind: String,
    pub vat_type: VatType,
    pub remark: String,
    pub items: Vec<Item>,
    pub direction: Direction,
}

impl Scraped {
    /// The other party: the buyer of a sale, the supplier of a purchase.
    #[must_use]
    pub fn counterparty(&self) -> &Party {
        match self.direction {
            Direction::Sales => &self.buyer,
            Direction::Purchase => &self.supplier,
        }
    }

    /// What the K-ERP invoice's description says: the remark, or the first item's name with the count of the others
    /// (`노트북 외 1건`, as Korean invoices summarise), cut to K-ERP's length.
    #[must_use]
    pub fn description(&self) -> String {
        let text = match (self.remark.is_empty(), self.items.as_slice()) {
            (false, _) => self.remark.clone(),
            (true, []) => String::new(),
            (true, [only]) => only.name.clone(),
            (true, [first, rest @ ..]) => format!("{} 외 {}건", first.name, rest.len()),
        };
        text.chars().take(DESCRIPTION_CHARS_MAX).collect()
    }

    /// The REST invoice body it is imported as, with `partner_id` as its partner.
    #[must_use]
    pub fn invoice_input(&self, partner_id: Uuid) -> InvoiceInput {
        let items = if self.items.is_empty() {
            vec![ItemInput {
                description: Some(NO_ITEMS_DESCRIPTION.into()),
                spec: None,
                quantity: Some(1),
                unit_price: Some(self.supply_amount),
            }]
        } else {
            self.items
                .iter()
                .map(|i| ItemInput {
                    description: Some(i.name.clone()),
                    spec: Some(i.specification.clone()),
                    quantity: Some(i.quantity),
                    unit_price: Some(i.unit_price),
                })
                .collect()
        };
        InvoiceInput {
            invoice_type: Some(self.direction.invoice_type().as_str().into()),
            partner_id: Some(partner_id.to_string()),
            invoice_date: Some(self.write_date.to_string()),
            vat_type: Some(self.vat_type.as_str().into()),
            supply_amount: Some(self.supply_amount),
            tax_amount: Some(self.tax_amount),
            items,
            description: Some(self.description()),
            account_code: None,
        }
    }

    /// The answer's message for it, before its import outcome is known.
    #[must_use]
    pub fn message(&self) -> pb::TaxInvoice {
        let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        pb::TaxInvoice {
            approval_number: dashed_approval(&self.approval_number),
            write_date: self.write_date.to_string(),
            issue_date: date(self.issue_date),
            transmit_date: date(self.transmit_date),
            supplier_business_number: self.supplier.business_number.clone(),
            supplier_name: self.supplier.name.clone(),
            supplier_representative: self.supplier.representative.clone(),
            buyer_business_number: self.buyer.business_number.clone(),
            buyer_name: self.buyer.name.clone(),
            buyer_representative: self.buyer.representative.clone(),
            supply_amount: self.supply_amount,
            tax_amount: self.tax_amount,
            total_amount: self.total_amount,
            classification: self.classification.as_str().into(),
            kind: self.kind.clone(),
            remark: self.remark.clone(),
            items: self
                .items
                .iter()
                .map(|i| pb::TaxInvoiceItem {
                    item_date: i.date.to_string(),
                    name: i.name.clone(),
                    specification: i.specification.clone(),
                    quantity: i.quantity,
                    unit_price: i.unit_price,
                    supply_amount: i.supply_amount,
                    tax_amount: i.tax_amount.unwrap_or_default(),
                    remark: i.remark.clone(),
                })
                .collect(),
            direction: self.direction.message().into(),
            origin: self.origin.clone(),
            ..Default::default()
        }
    }
}

/// The reasons an invoice is refused, each `column: what is wrong`.
#[derive(Debug, Default)]
struct Reasons(Vec<String>);

impl Reasons {
    fn add(&mut self, column: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{column}: {message}"));
    }

    /// A text cell that must not be longer than `max` characters (and not empty when `required`).
    fn text(&mut self, column: &str, value: &str, max: usize, required: bool) -> String {
        let t = value.trim();
        if required && t.is_empty() {
            self.add(column, "is required");
        } else if t.chars().count() > max {
            self.add(column, format!("must be at most {max} characters"));
        }
        t.to_owned()
    }

    /// A date cell: `None` when empty (and an error when `required`) or unreadable.
    fn date(&mut self, column: &str, value: &str, year: Option<i32>, required: bool) -> Option<NaiveDate> {
        if value.trim().is_empty() {
            if required {
                self.add(column, "is required");
            }
            return None;
        }
        let d = date_text(value, year);
        if d.is_none() {
            self.add(column, format!("'{}' is not a date (YYYY-MM-DD)", clip(value)));
        }
        d
    }

    /// A whole-number cell: `None` when empty or unreadable (the latter with an error).
    fn whole(&mut self, column: &str, value: &str, what: &str) -> Option<i64> {
        whole(value).unwrap_or_else(|NotWhole| {
            self.add(column, format!("'{}' is not {what}", clip(value)));
            None
        })
    }

    fn party(&mut self, prefix: &str, p: &SourceParty) -> Party {
        let column = |c: &str| format!("{prefix}{c}");
        let business_number = match p.business_number.trim() {
            "" => {
                self.add(&column("사업자등록번호"), "is required");
                String::new()
            }
            b => master::business_number(b).unwrap_or_else(|m| {
                self.add(&column("사업자등록번호"), m);
                String::new()
            }),
        };
        Party {
            business_number,
            name: self.text(&column("상호"), &p.name, NAME_CHARS_MAX, true),
            representative: self.text(&column("대표자명"), &p.representative, TEXT_CHARS_MAX, false),
            address: self.text(&column("주소"), &p.address, TEXT_CHARS_MAX, false),
        }
    }

    fn item(&mut self, n: usize, it: &SourceItem, write_date: Option<NaiveDate>) -> Option<Item> {
        let at = |c: &str| format!("{c}(품목 {n})");
        let before = self.0.len();
        let date = match it.date.trim() {
            "" => write_date,
            _ => self.date(&at("품목일자"), &it.date, write_date.map(|d| d.year()), true),
        };
        let name = self.text(&at("품목명"), &it.name, rules::ITEM_TEXT_CHARS_MAX, true);
        let specification = self.text(&at("품목규격"), &it.specification, rules::ITEM_TEXT_CHARS_MAX, false);
        let remark = clip(&it.remark);
        let quantity = self.whole(&at("품목수량"), &it.quantity, "a whole number (K-ERP items take whole quantities)");
        let unit_price = self.whole(&at("품목단가"), &it.unit_price, "a whole number of won");
        let supply = self.whole(&at("품목공급가액"), &it.supply_amount, "an amount in won");
        let tax_amount = self.whole(&at("품목세액"), &it.tax_amount, "an amount in won");
        // A blank quantity is one unit; a blank unit price or supply follows from the other two.
        let quantity = quantity.unwrap_or(1);
        if !(1..=rules::QUANTITY_MAX).contains(&quantity) {
            self.add(&at("품목수량"), format!("must be between 1 and {}", rules::QUANTITY_MAX));
        }
        let (unit_price, supply) = match (unit_price, supply) {
            (Some(p), Some(s)) => (p, s),
            (Some(p), None) => (p, quantity.checked_mul(p).unwrap_or(-1)),
            (None, Some(s)) if quantity > 0 && s % quantity == 0 => (s / quantity, s),
            (None, Some(s)) => {
                self.add(&at("품목단가"), format!("is required: 품목공급가액 {s} is not a whole multiple of 품목수량 {quantity}"));
                (0, s)
            }
            (None, None) => {
                self.add(&at("품목공급가액"), "is required");
                (0, 0)
            }
        };
        if unit_price < 0 || supply < 0 {
            self.add(&at("품목공급가액"), "must not be negative");
        } else if quantity.checked_mul(unit_price) != Some(supply) {
            self.add(&at("품목공급가액"), format!("{supply} is not 품목수량 {quantity} × 품목단가 {unit_price}"));
        }
        if tax_amount.is_some_and(|t| t < 0) {
            self.add(&at("품목세액"), "must not be negative");
        }
        match date {
            Some(date) if self.0.len() == before => {
                Some(Item { date, name, specification, quantity, unit_price, supply_amount: supply, tax_amount, remark })
            }
            _ => None,
        }
    }
}

/// Checks a record of the business with `business` digits (see the module's rules).
///
/// # Errors
/// Every reason it cannot be imported, never an empty list.
pub fn check(src: &SourceInvoice, business: &str) -> Result<Scraped, Vec<String>> {
    let mut r = Reasons(src.problems.clone());
    let approval_number = rules::approval_number(&src.approval_number).map_err(|m| r.add("승인번호", m)).ok();
    let write_date = r.date("작성일자", &src.write_date, None, true);
    let issue_date = r.date("발급일자", &src.issue_date, None, false);
    let transmit_date = r.date("전송일자", &src.transmit_date, None, false);
    let supplier = r.party("공급자", &src.supplier);
    let buyer = r.party("공급받는자", &src.buyer);
    let direction = direction(business, &digits(&src.supplier.business_number), &digits(&src.buyer.business_number));
    if direction.is_none() {
        r.add("공급자사업자등록번호", "this business must be either the supplier or the buyer, not both or neither");
    }

    let supply = r.whole("공급가액", &src.supply_amount, "an amount in won");
    let tax = r.whole("세액", &src.tax_amount, "an amount in won").unwrap_or(0);
    let total = r.whole("합계금액", &src.total_amount, "an amount in won");
    let supply = match supply {
        Some(s) if s <= 0 => {
            // Negative supplies are amending (수정) invoices that reduce an earlier one; K-ERP records those by
            // cancelling or amending the original, not as a new draft.
            r.add("공급가액", format!("{s} must be positive (an amending invoice that reduces an earlier one is not imported)"));
            None
        }
        Some(s) => Some(s),
        None => {
            if src.supply_amount.trim().is_empty() {
                r.add("공급가액", "is required");
            }
            None
        }
    };
    if tax < 0 {
        r.add("세액", format!("{tax} must not be negative"));
    }
    let sum = supply.and_then(|s| s.checked_add(tax));
    if let (Some(total), Some(sum)) = (total, sum) {
        if total != sum {
            r.add("합계금액", format!("{total} is not 공급가액 + 세액 = {sum}"));
        }
    }
    let classification = Classification::parse(&src.classification);
    if classification.is_none() {
        r.add("전자세금계산서분류", format!("'{}' is neither 세금계산서 nor 계산서", clip(&src.classification)));
    }
    let kind = match src.kind.trim() {
        "" => "일반".to_owned(),
        k => r.text("전자세금계산서종류", k, ECHO_TEXT_CHARS_MAX, false),
    };
    let vat = classification.map(|c| vat_type(c, &kind));
    if let (Some(vat), Some(supply)) = (vat, supply) {
        if let Err(m) = tax_rule(vat, supply, tax) {
            r.add("세액", m);
        }
    }

    if src.items.len() > rules::ITEMS_MAX {
        r.add("품목", format!("{} items; K-ERP takes at most {}", src.items.len(), rules::ITEMS_MAX));
    }
    let items: Vec<Option<Item>> =
        src.items.iter().take(rules::ITEMS_MAX).enumerate().map(|(i, it)| r.item(i + 1, it, write_date)).collect();
    let items: Option<Vec<Item>> = items.into_iter().collect();
    if let (Some(items), Some(supply)) = (&items, supply) {
        let item_supply = items.iter().try_fold(0i64, |t, i| t.checked_add(i.supply_amount));
        if !items.is_empty() && item_supply != Some(supply) {
            r.add(
                "품목공급가액",
                format!("the items add up to {}, not 공급가액 {supply}", item_supply.map_or("too much".into(), |s| s.to_string())),
            );
        }
        // Item taxes are checked only when every item states one; some exports leave them out.
        let item_tax: Option<i64> = items.iter().map(|i| i.tax_amount).try_fold(0i64, |t, x| x.and_then(|x| t.checked_add(x)));
        if let Some(item_tax) = item_tax.filter(|_| !items.is_empty()) {
            if item_tax != tax {
                r.add("품목세액", format!("the items add up to {item_tax}, not 세액 {tax}"));
            }
        }
    }
    let remark = r.text("비고", &src.remark, DESCRIPTION_CHARS_MAX, false);

    let (Some(approval_number), Some(write_date), Some(direction), Some(supply), Some(classification), Some(vat_type), Some(items), true) =
        (approval_number, write_date, direction, supply, classification, vat, items, r.0.is_empty())
    else {
        return Err(r.0);
    };
    let scraped = Scraped {
        origin: src.origin.clone(),
        approval_number,
        write_date,
        issue_date,
        transmit_date,
        supplier,
        buyer,
        supply_amount: supply,
        tax_amount: tax,
        total_amount: supply + tax,
        classification,
        kind,
        vat_type,
        remark,
        items,
        direction,
    };
    // K-ERP's own invoice rules, with a stand-in partner: what passes here is what the import stores.
    if let Err(errors) = rules::validate(&scraped.invoice_input(Uuid::nil())) {
        return Err(errors.into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect());
    }
    Ok(scraped)
}

/// The answer's message for a record that failed [`check`]: every field as far as it could be read (normalised when
/// it is valid, else the cell's text cut to [`ECHO_TEXT_CHARS_MAX`]), so that a person can recognise the row.
#[must_use]
pub fn echo(src: &SourceInvoice, business: &str) -> pb::TaxInvoice {
    let date = |t: &str| date_text(t, None).map_or_else(|| clip(t), |d| d.to_string());
    // Ten digits are shown dashed even when the check digit fails, so that every number reads alike.
    let number = |t: &str| match digits(t) {
        d if d.len() == 10 && t.trim().chars().all(|c| c.is_ascii_digit() || c == '-') => format!("{}-{}-{}", &d[..3], &d[3..5], &d[5..]),
        _ => clip(t),
    };
    let won = |t: &str| whole(t).ok().flatten().unwrap_or(0);
    let direction = direction(business, &digits(&src.supplier.business_number), &digits(&src.buyer.business_number));
    pb::TaxInvoice {
        approval_number: rules::approval_number(&src.approval_number).map_or_else(|_| clip(&src.approval_number), |d| dashed_approval(&d)),
        write_date: date(&src.write_date),
        issue_date: date(&src.issue_date),
        transmit_date: date(&src.transmit_date),
        supplier_business_number: number(&src.supplier.business_number),
        supplier_name: clip(&src.supplier.name),
        supplier_representative: clip(&src.supplier.representative),
        buyer_business_number: number(&src.buyer.business_number),
        buyer_name: clip(&src.buyer.name),
        buyer_representative: clip(&src.buyer.representative),
        supply_amount: won(&src.supply_amount),
        tax_amount: won(&src.tax_amount),
        total_amount: won(&src.total_amount),
        classification: clip(&src.classification),
        kind: clip(&src.kind),
        remark: clip(&src.remark),
        items: src
            .items
            .iter()
            .take(rules::ITEMS_MAX)
            .map(|i| pb::TaxInvoiceItem {
                item_date: date(&i.date),
                name: clip(&i.name),
                specification: clip(&i.specification),
                quantity: won(&i.quantity),
                unit_price: won(&i.unit_price),
                supply_amount: won(&i.supply_amount),
                tax_amount: won(&i.tax_amount),
                remark: clip(&i.remark),
            })
            .collect(),
        direction: direction.map_or(pb::InvoiceDirection::Unspecified, Direction::message).into(),
        origin: clip(&src.origin),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: &str = "1348672683";

    fn party(number: &str, name: &str) -> SourceParty {
        SourceParty { business_number: number.into(), name: name.into(), representative: "대표".into(), ..Default::default() }
    }

    fn item(name: &str, quantity: &str, price: &str, supply: &str, tax: &str) -> SourceItem {
        SourceItem {
            date: "2025-01-15".into(),
            name: name.into(),
            quantity: quantity.into(),
            unit_price: price.into(),
            supply_amount: supply.into(),
            tax_amount: tax.into(),
            ..Default::default()
        }
    }

    /// A good taxable sale of (주)케이이알피 to (주)한빛전자.
    fn sale() -> SourceInvoice {
        SourceInvoice {
            origin: "issued.xlsx:6".into(),
            approval_number: "20250115-41000078-14582931".into(),
            write_date: "2025-01-15".into(),
            issue_date: "2025-01-15".into(),
            transmit_date: "2025-01-16".into(),
            supplier: party("134-86-72683", "(주)케이이알피"),
            buyer: party("124-81-00998", "(주)한빛전자"),
            total_amount: "1,100,000".into(),
            supply_amount: "1,000,000".into(),
            tax_amount: "100,000".into(),
            classification: "세금계산서".into(),
            kind: "일반".into(),
            items: vec![item("ERP 유지보수", "1", "1,000,000", "1,000,000", "100,000")],
            ..Default::default()
        }
    }

    fn reasons(src: &SourceInvoice) -> Vec<String> {
        check(src, US).expect_err("refused")
    }

    #[test]
    fn a_good_sale_is_checked_into_types() {
        let s = check(&sale(), US).unwrap();
        assert_eq!(s.approval_number, "202501154100007814582931");
        assert_eq!((s.direction, s.vat_type, s.classification), (Direction::Sales, VatType::Taxable, Classification::TaxInvoice));
        assert_eq!((s.supply_amount, s.tax_amount, s.total_amount), (1_000_000, 100_000, 1_100_000));
        assert_eq!(s.counterparty().business_number, "124-81-00998");
        assert_eq!(s.transmit_date, NaiveDate::from_ymd_opt(2025, 1, 16));
        let m = s.message();
        assert_eq!(m.approval_number, "20250115-41000078-14582931");
        assert_eq!((m.direction(), m.items.len(), m.items[0].tax_amount), (pb::InvoiceDirection::Sales, 1, 100_000));
        let input = s.invoice_input(Uuid::nil());
        assert_eq!((input.invoice_type.as_deref(), input.vat_type.as_deref()), (Some("sales"), Some("taxable")));
        assert_eq!(input.description.as_deref(), Some("ERP 유지보수"));
    }

    #[test]
    fn the_side_of_the_business_decides_sales_or_purchase() {
        let (us, them) = ("1348672683", "1248100998");
        assert_eq!(direction(us, us, them), Some(Direction::Sales));
        assert_eq!(direction(us, them, us), Some(Direction::Purchase));
        assert_eq!(direction(us, them, them), None, "neither");
        assert_eq!(direction(us, us, us), None, "an invoice to oneself");
        let mut p = sale();
        std::mem::swap(&mut p.supplier, &mut p.buyer);
        let s = check(&p, US).unwrap();
        assert_eq!((s.direction, s.counterparty().name.as_str()), (Direction::Purchase, "(주)한빛전자"));
        assert_eq!(s.invoice_input(Uuid::nil()).invoice_type.as_deref(), Some("purchase"));
        assert_eq!(Direction::Purchase.invoice_type(), InvoiceType::Purchase);
    }

    #[test]
    fn tax_is_ten_percent_within_a_won_and_nothing_on_exempt_or_zero_rated() {
        assert!(tax_rule(VatType::Taxable, 333_335, 33_333).is_ok());
        assert!(tax_rule(VatType::Taxable, 333_335, 33_334).is_ok(), "rounded up by the issuer");
        assert!(tax_rule(VatType::Taxable, 333_335, 33_332).is_ok());
        assert!(tax_rule(VatType::Taxable, 333_335, 33_335).is_err());
        assert!(tax_rule(VatType::Taxable, 1_000_000, 150_000).is_err());
        assert!(tax_rule(VatType::Taxable, 1, i64::MIN).is_err(), "no overflow");
        assert!(tax_rule(VatType::Exempt, 150_000, 0).is_ok());
        assert!(tax_rule(VatType::Exempt, 150_000, 1).is_err());
        assert!(tax_rule(VatType::ZeroRated, 3_000_000, 0).is_ok());
        assert_eq!(vat_type(Classification::Invoice, "일반"), VatType::Exempt);
        assert_eq!(vat_type(Classification::TaxInvoice, "영세율"), VatType::ZeroRated);
        assert_eq!(vat_type(Classification::TaxInvoice, "위수탁영세율"), VatType::ZeroRated);
        assert_eq!(vat_type(Classification::TaxInvoice, "수정(일반)"), VatType::Taxable);
        assert_eq!(Classification::parse("전자 세금계산서"), Some(Classification::TaxInvoice));
        assert_eq!(Classification::parse("계산서"), Some(Classification::Invoice));
        assert_eq!(Classification::parse("영수증"), None);

        let mut s = sale();
        s.tax_amount = "150,000".into();
        s.total_amount = "1,150,000".into();
        s.items[0].tax_amount = "150,000".into();
        let r = reasons(&s);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].starts_with("세액: 150000 is not 10% of 공급가액 1000000"), "{r:?}");

        let mut exempt = sale();
        exempt.classification = "계산서".into();
        assert!(reasons(&exempt).iter().any(|m| m.starts_with("세액: 100000: a 계산서")));
        exempt.tax_amount = String::new();
        exempt.total_amount = "1000000".into();
        exempt.items[0].tax_amount = "0".into();
        assert_eq!(check(&exempt, US).unwrap().vat_type, VatType::Exempt);
    }

    #[test]
    fn bad_numbers_dates_and_sums_are_each_named() {
        let mut s = sale();
        s.approval_number = "20250318-1000009-10000123".into();
        s.buyer.business_number = "305-81-77770".into();
        s.write_date = "2025-02-30".into();
        s.total_amount = "1,100,001".into();
        s.items[0].quantity = "1.5".into();
        let r = reasons(&s);
        let columns: Vec<&str> = r.iter().map(|m| m.split(':').next().unwrap()).collect();
        assert_eq!(columns, ["승인번호", "작성일자", "공급받는자사업자등록번호", "합계금액", "품목수량(품목 1)"], "{r:?}");
        assert!(r[2].contains("check digit"), "{r:?}");

        let mut s = sale();
        s.items.push(item("추가", "2", "10", "20", "2"));
        assert!(reasons(&s).iter().any(|m| m == "품목공급가액: the items add up to 1000020, not 공급가액 1000000"));
        let mut s = sale();
        s.items[0].supply_amount = "999,999".into();
        assert!(reasons(&s).iter().any(|m| m.starts_with("품목공급가액(품목 1): 999999 is not 품목수량 1 × 품목단가 1000000")));
        let mut s = sale();
        s.supply_amount = "-1,000,000".into();
        assert!(reasons(&s)[0].starts_with("공급가액: -1000000 must be positive"));
        let mut s = sale();
        s.buyer = s.supplier.clone();
        assert!(reasons(&s).iter().any(|m| m.contains("either the supplier or the buyer")));
        let mut s = sale();
        s.buyer.name = " ".into();
        assert_eq!(reasons(&s), ["공급받는자상호: is required"]);
        let mut s = sale();
        s.problems.push("rows 6 and 9 disagree on 공급가액".into());
        assert_eq!(reasons(&s), ["rows 6 and 9 disagree on 공급가액"]);
    }

    #[test]
    fn blank_item_cells_follow_from_the_others() {
        let mut s = sale();
        s.items = vec![item("용역", "", "", "1,000,000", "")];
        let c = check(&s, US).unwrap();
        assert_eq!((c.items[0].quantity, c.items[0].unit_price, c.items[0].tax_amount), (1, 1_000_000, None));
        s.items = vec![item("용지", "50", "", "1,000,000", "100,000")];
        assert_eq!(check(&s, US).unwrap().items[0].unit_price, 20_000);
        s.items = vec![item("용지", "3", "", "1,000,000", "")];
        assert!(reasons(&s)[0].starts_with("품목단가(품목 1): is required"));
        s.items = vec![];
        let c = check(&s, US).unwrap();
        let input = c.invoice_input(Uuid::nil());
        assert_eq!(input.items[0].description.as_deref(), Some(NO_ITEMS_DESCRIPTION));
        assert_eq!((input.items[0].quantity, input.items[0].unit_price), (Some(1), Some(1_000_000)));
        assert!(rules::validate(&input).is_ok());
    }

    #[test]
    fn descriptions_summarise_the_items() {
        let mut s = sale();
        s.items = vec![item("노트북", "2", "1,350,000", "2,700,000", "270,000"), item("무선 마우스", "2", "25,000", "50,000", "5,000")];
        s.supply_amount = "2,750,000".into();
        s.tax_amount = "275,000".into();
        s.total_amount = "3,025,000".into();
        assert_eq!(check(&s, US).unwrap().description(), "노트북 외 1건");
        s.remark = "사무기기".into();
        assert_eq!(check(&s, US).unwrap().description(), "사무기기");
    }

    #[test]
    fn cells_read_as_exports_write_them() {
        let d = NaiveDate::from_ymd_opt(2025, 1, 15);
        for t in ["2025-01-15", "20250115", "2025.01.15", "2025. 1. 15.", "2025/1/15", " 2025-01-15 00:00:00", "2025-01-15T00:00:00"] {
            assert_eq!(date_text(t, None), d, "{t}");
        }
        assert_eq!(date_text("0115", Some(2025)), d);
        for t in ["0115", "2025-02-30", "15", "", "2025-01", "25-01-15"] {
            assert_eq!(date_text(t, None), None, "{t}");
        }
        assert_eq!(whole("1,000,000"), Ok(Some(1_000_000)));
        assert_eq!(whole(" 1000000.0 "), Ok(Some(1_000_000)));
        assert_eq!(whole("-5,000원"), Ok(Some(-5_000)));
        assert_eq!(whole(""), Ok(None));
        for bad in ["1.5", "abc", "-", "1e6", "99999999999999999999", "."] {
            assert_eq!(whole(bad), Err(NotWhole), "{bad}");
        }
        assert_eq!(digits("134-86-72683"), "1348672683");
        assert_eq!(dashed_approval("202501154100007814582931"), "20250115-41000078-14582931");
    }

    #[test]
    fn a_rejected_row_is_echoed_as_far_as_it_reads() {
        let mut s = sale();
        s.approval_number = "2025031810000091000012".into();
        s.supplier.business_number = "1348672683".into();
        s.buyer.business_number = "3058177770".into();
        s.supplier.name = "가".repeat(1000);
        let e = echo(&s, US);
        assert_eq!(e.approval_number, "2025031810000091000012");
        assert_eq!(e.supplier_business_number, "134-86-72683", "valid numbers are dashed");
        assert_eq!(e.buyer_business_number, "305-81-77770", "dashed though its check digit fails");
        assert_eq!(e.supplier_name.chars().count(), ECHO_TEXT_CHARS_MAX);
        assert_eq!((e.supply_amount, e.direction()), (1_000_000, pb::InvoiceDirection::Sales));
        assert_eq!(e.origin, "issued.xlsx:6");
    }
}
