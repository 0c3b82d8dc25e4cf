//! Voucher (전표) validation: a posted JSON body comes in, and out comes either a [`ValidVoucher`] ready to be stored
//! or the list of [`FieldError`]s naming every offending field. No IO happens here; whether an account exists in the
//! company is decided later by the ingest service, which resolves the [`AccountRef`]s this module checks for shape.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most lines one voucher may carry. Real vouchers have a handful; a payroll batch may reach a few hundred.
pub const LINES_MAX: usize = 1000;
/// Fewest lines: double entry needs a debit and a credit.
pub const LINES_MIN: usize = 2;
/// Largest amount on one line, in won (one quadrillion). It keeps sums of many lines far from `i64` overflow.
pub const LINE_AMOUNT_WON_MAX: i64 = 1_000_000_000_000_000;
/// Longest description, in characters (not bytes, since most are Korean).
pub const DESCRIPTION_CHARS_MAX: usize = 500;
/// Longest account code accepted in a reference; real codes are four digits.
pub const ACCOUNT_CODE_CHARS_MAX: usize = 16;
/// Earliest voucher date. ClickHouse `Date` starts at 1970-01-01, so earlier dates could not be reported.
pub const VOUCHER_DATE_MIN: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("valid constant"),
};
/// Latest voucher date. ClickHouse `Date` ends in 2105 (2149 on new servers); 2099 leaves headroom for both.
pub const VOUCHER_DATE_MAX: NaiveDate = match NaiveDate::from_ymd_opt(2099, 12, 31) {
    Some(d) => d,
    None => panic!("valid constant"),
};
/// The voucher types a client may send; `general` when absent.
pub const VOUCHER_TYPES: &[&str] = &["general", "sales", "purchase", "receipt", "payment", "transfer", "adjustment", "closing"];

/// What kind of transaction a voucher records (전표 유형). Invoices post `sales` and `purchase` vouchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum VoucherType {
    General,
    Sales,
    Purchase,
    Receipt,
    Payment,
    Transfer,
    Adjustment,
    Closing,
}

impl VoucherType {
    /// Every type, in the order of [`VOUCHER_TYPES`].
    pub const ALL: [VoucherType; 8] = [
        VoucherType::General,
        VoucherType::Sales,
        VoucherType::Purchase,
        VoucherType::Receipt,
        VoucherType::Payment,
        VoucherType::Transfer,
        VoucherType::Adjustment,
        VoucherType::Closing,
    ];

    /// The lower-case name used in the API, the database and the events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherType::General => "general",
            VoucherType::Sales => "sales",
            VoucherType::Purchase => "purchase",
            VoucherType::Receipt => "receipt",
            VoucherType::Payment => "payment",
            VoucherType::Transfer => "transfer",
            VoucherType::Adjustment => "adjustment",
            VoucherType::Closing => "closing",
        }
    }

    /// Parses the lower-case name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where a voucher is in its life. Only approved vouchers (reversals included) become events and reach the reports;
/// a reversed voucher stays in them, netted by its reversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum VoucherStatus {
    /// Editable and deletable; no number yet, not in the reports.
    Draft,
    /// Numbered, published and final: corrected only by a reversal.
    Approved,
    /// Approved, then reversed by a later voucher.
    Reversed,
}

impl VoucherStatus {
    /// The lower-case name used in the API, the database and the events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherStatus::Draft => "draft",
            VoucherStatus::Approved => "approved",
            VoucherStatus::Reversed => "reversed",
        }
    }

    /// Parses the lower-case name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => VoucherStatus::Draft,
            "approved" => VoucherStatus::Approved,
            "reversed" => VoucherStatus::Reversed,
            _ => return None,
        })
    }
}

/// The body of `POST /api/v1/vouchers`, as the contract's clients send it.
///
/// Dates and ids stay strings here so that a bad one is reported as a named field error rather than a parse failure.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"voucher_date": "2025-03-15", "voucher_type": "general", "description": "Office supplies",
    "lines": [{"account_code": "5212", "debit_amount": 110000, "description": "Supplies"},
              {"account_code": "1101", "credit_amount": 110000, "description": "Cash"}]}))]
pub struct VoucherInput {
    /// `YYYY-MM-DD`, from `VOUCHER_DATE_MIN` to `VOUCHER_DATE_MAX` (1970-01-01 to 2099-12-31).
    #[schema(format = Date)]
    pub voucher_date: String,
    /// One of `VOUCHER_TYPES`; `general` when left out.
    #[serde(default)]
    #[schema(schema_with = voucher_type_schema)]
    pub voucher_type: Option<String>,
    /// At most `DESCRIPTION_CHARS_MAX` (500) characters.
    #[serde(default)]
    pub description: Option<String>,
    /// `draft` or `approved` (the default, as clients that do not know drafts expect).
    #[serde(default)]
    #[schema(schema_with = post_status_schema)]
    pub status: Option<String>,
    /// `LINES_MIN` (2) to `LINES_MAX` (1000) lines whose debits equal their credits.
    pub lines: Vec<LineInput>,
}

/// One line of [`VoucherInput`]: an account by `account_id` or `account_code` (both must then name the same one), and
/// exactly one of `debit_amount` and `credit_amount` above zero.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct LineInput {
    #[serde(default)]
    #[schema(format = Uuid)]
    pub account_id: Option<String>,
    #[serde(default)]
    #[schema(example = "5212")]
    pub account_code: Option<String>,
    #[serde(default)]
    #[schema(format = Uuid)]
    pub partner_id: Option<String>,
    /// Optional; the department the line's amount belongs to, for reports by department.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub department_id: Option<String>,
    /// In won, at most `LINE_AMOUNT_WON_MAX` (10¹⁵).
    #[serde(default)]
    pub debit_amount: Option<i64>,
    /// In won, at most `LINE_AMOUNT_WON_MAX` (10¹⁵).
    #[serde(default)]
    pub credit_amount: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
}

/// How a line names its account. Both forms are resolved inside the token's company only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRef {
    Id(Uuid),
    Code(String),
    /// The client sent both; they must name the same account.
    Both(Uuid, String),
}

/// A validated line: exactly one of `debit`/`credit` is positive and the other is zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidLine {
    pub account: AccountRef,
    pub partner_id: Option<Uuid>,
    pub department_id: Option<Uuid>,
    pub debit: i64,
    pub credit: i64,
    pub description: String,
}

/// A voucher whose shape and arithmetic are right. Account existence is checked against the database later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidVoucher {
    pub voucher_date: NaiveDate,
    pub voucher_type: VoucherType,
    pub description: String,
    pub lines: Vec<ValidLine>,
    /// Σdebit, equal to Σcredit.
    pub total: i64,
    /// Draft or approved; never reversed (only a reversal makes that).
    pub status: VoucherStatus,
}

/// The schema of [`VoucherInput::voucher_type`]: one of [`VOUCHER_TYPES`].
fn voucher_type_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(VOUCHER_TYPES.iter().copied()))
        .build()
}

/// The schema of [`VoucherInput::status`]: a voucher is posted as a draft or approved, never reversed.
fn post_status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some([VoucherStatus::Draft.as_str(), VoucherStatus::Approved.as_str()]))
        .build()
}

/// One problem with one field, reported to the client under `errors` in the problem+json body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `lines[1].debit_amount`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Parses a calendar date in `YYYY-MM-DD` form, inside the supported range.
///
/// # Errors
/// A message fit for the client.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    // chrono accepts "2025-1-5"; the contract says YYYY-MM-DD, so the length is checked too.
    let d = (s.len() == 10)
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("'{s}' is not a valid date (YYYY-MM-DD)"))?;
    if d < VOUCHER_DATE_MIN || d > VOUCHER_DATE_MAX {
        return Err(format!("date must be between {VOUCHER_DATE_MIN} and {VOUCHER_DATE_MAX}"));
    }
    Ok(d)
}

fn check_text(errors: &mut Vec<FieldError>, field: &str, text: Option<&String>) -> String {
    let text = text.map(|s| s.trim().to_owned()).unwrap_or_default();
    if text.chars().count() > DESCRIPTION_CHARS_MAX {
        errors.push(FieldError::new(field, format!("must be at most {DESCRIPTION_CHARS_MAX} characters")));
    }
    text
}

/// Checks a voucher body. It reports every problem it finds, not just the first, so a client can fix them in one go.
///
/// # Errors
/// The list of field errors; it is never empty when returned.
pub fn validate(input: &VoucherInput) -> Result<ValidVoucher, Vec<FieldError>> {
    let mut errors = Vec::new();

    let voucher_date = parse_date(&input.voucher_date).map_err(|m| errors.push(FieldError::new("voucher_date", m))).ok();

    let voucher_type = match input.voucher_type.as_deref() {
        None => VoucherType::General,
        Some(t) => VoucherType::parse(t).unwrap_or_else(|| {
            errors.push(FieldError::new("voucher_type", format!("must be one of {}", VOUCHER_TYPES.join(", "))));
            VoucherType::General
        }),
    };
    let description = check_text(&mut errors, "description", input.description.as_ref());

    let n = input.lines.len();
    if n < LINES_MIN {
        errors.push(FieldError::new("lines", format!("a voucher needs at least {LINES_MIN} lines, got {n}")));
    }
    if n > LINES_MAX {
        errors.push(FieldError::new("lines", format!("a voucher may have at most {LINES_MAX} lines, got {n}")));
        // Checking a huge body line by line would only bury this one useful message.
        return Err(errors);
    }

    let mut lines = Vec::with_capacity(n);
    let (mut total_debit, mut total_credit) = (Some(0i64), Some(0i64));
    for (i, line) in input.lines.iter().enumerate() {
        let at = |f: &str| format!("lines[{i}].{f}");
        let before = errors.len();

        let id = match line.account_id.as_deref().map(str::trim) {
            None | Some("") => None,
            // An unparsable id cannot name any account, so it gets the same words as an unknown one.
            Some(s) => Uuid::parse_str(s).map_err(|_| errors.push(FieldError::new(at("account_id"), "account not found"))).ok(),
        };
        let code = match line.account_code.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) if s.chars().count() > ACCOUNT_CODE_CHARS_MAX => {
                errors.push(FieldError::new(at("account_code"), "account not found"));
                None
            }
            Some(s) => Some(s.to_owned()),
        };
        let account = match (id, code) {
            (Some(id), Some(code)) => Some(AccountRef::Both(id, code)),
            (Some(id), None) => Some(AccountRef::Id(id)),
            (None, Some(code)) => Some(AccountRef::Code(code)),
            (None, None) => {
                if errors.len() == before {
                    errors.push(FieldError::new(at("account_id"), "account_id or account_code is required"));
                }
                None
            }
        };

        let partner_id = match line.partner_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Uuid::parse_str(s).map_err(|_| errors.push(FieldError::new(at("partner_id"), "partner not found"))).ok(),
        };
        let department_id = match line.department_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Uuid::parse_str(s).map_err(|_| errors.push(FieldError::new(at("department_id"), "department not found"))).ok(),
        };

        let debit = line.debit_amount.unwrap_or(0);
        let credit = line.credit_amount.unwrap_or(0);
        for (name, v) in [("debit_amount", debit), ("credit_amount", credit)] {
            if v < 0 {
                errors.push(FieldError::new(at(name), "must not be negative"));
            } else if v > LINE_AMOUNT_WON_MAX {
                errors.push(FieldError::new(at(name), format!("must be at most {LINE_AMOUNT_WON_MAX} won")));
            }
        }
        if debit > 0 && credit > 0 {
            errors.push(FieldError::new(at("debit_amount"), "a line has either a debit or a credit amount, not both"));
        } else if debit == 0 && credit == 0 {
            errors.push(FieldError::new(at("debit_amount"), "a line needs one positive debit_amount or credit_amount"));
        }
        total_debit = total_debit.and_then(|t| t.checked_add(debit.max(0)));
        total_credit = total_credit.and_then(|t| t.checked_add(credit.max(0)));

        let line_description = check_text(&mut errors, &at("description"), line.description.as_ref());
        if let (Some(account), true) = (account, errors.len() == before) {
            lines.push(ValidLine { account, partner_id, department_id, debit, credit, description: line_description });
        }
    }

    match (total_debit, total_credit) {
        (Some(d), Some(c)) if d != c => {
            errors.push(FieldError::new("lines", format!("debits ({d}) and credits ({c}) must balance")));
        }
        (Some(_), Some(_)) => {}
        _ => errors.push(FieldError::new("lines", "the total amount overflows")),
    }

    let status = match input.status.as_deref() {
        None | Some("approved") => VoucherStatus::Approved,
        Some("draft") => VoucherStatus::Draft,
        Some(s) => {
            errors.push(FieldError::new("status", format!("'{s}' is not a status a voucher can be posted with (draft, approved)")));
            VoucherStatus::Approved
        }
    };

    match (errors.is_empty(), voucher_date, total_debit) {
        (true, Some(voucher_date), Some(total)) => Ok(ValidVoucher { voucher_date, voucher_type, description, lines, total, status }),
        _ => Err(errors),
    }
}

/// Formats a voucher number: `YYYY-MM-NNNNNN`, numbered per company per month.
#[must_use]
pub fn voucher_number(date: NaiveDate, seq: u32) -> String {
    use chrono::Datelike;
    format!("{:04}-{:02}-{seq:06}", date.year(), date.month())
}

/// Highest sequence number a month can hold in the six-digit voucher number.
pub const VOUCHERS_PER_MONTH_MAX: u32 = 999_999;

#[cfg(test)]
mod tests {
    use super::*;

    fn line(debit: Option<i64>, credit: Option<i64>) -> LineInput {
        LineInput {
            account_id: None,
            account_code: Some("1101".into()),
            partner_id: None,
            department_id: None,
            debit_amount: debit,
            credit_amount: credit,
            description: None,
        }
    }

    fn voucher(lines: Vec<LineInput>) -> VoucherInput {
        VoucherInput { voucher_date: "2025-01-15".into(), voucher_type: None, description: Some("x".into()), status: None, lines }
    }

    fn fields(r: Result<ValidVoucher, Vec<FieldError>>) -> Vec<String> {
        r.expect_err("should be invalid").into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_balanced_voucher_passes() {
        let v = validate(&voucher(vec![line(Some(100), None), line(None, Some(60)), line(None, Some(40))])).unwrap();
        assert_eq!(v.total, 100);
        assert_eq!(v.voucher_type, VoucherType::General);
        assert_eq!(v.lines.len(), 3);
        assert_eq!(v.lines[1].credit, 60);
        assert_eq!(v.lines[1].debit, 0);
    }

    #[test]
    fn a_zero_on_the_other_side_is_the_same_as_absent() {
        assert!(validate(&voucher(vec![line(Some(5), Some(0)), line(Some(0), Some(5))])).is_ok());
    }

    #[test]
    fn unbalanced_is_refused() {
        assert_eq!(fields(validate(&voucher(vec![line(Some(100), None), line(None, Some(99))]))), ["lines"]);
    }

    #[test]
    fn one_line_is_refused() {
        assert_eq!(fields(validate(&voucher(vec![line(Some(100), None)]))), ["lines", "lines"]);
    }

    #[test]
    fn too_many_lines_are_refused() {
        let mut lines = vec![line(Some(1), None); LINES_MAX];
        lines.push(line(None, Some(LINES_MAX as i64)));
        assert_eq!(fields(validate(&voucher(lines))), ["lines"]);
        // Exactly the maximum is fine.
        let mut lines = vec![line(Some(1), None); LINES_MAX - 1];
        lines.push(line(None, Some(LINES_MAX as i64 - 1)));
        assert!(validate(&voucher(lines)).is_ok());
    }

    #[test]
    fn zero_amounts_are_refused() {
        assert_eq!(
            fields(validate(&voucher(vec![line(Some(0), None), line(None, Some(0))]))),
            ["lines[0].debit_amount", "lines[1].debit_amount"]
        );
        assert_eq!(
            fields(validate(&voucher(vec![line(None, None), line(None, None)]))),
            ["lines[0].debit_amount", "lines[1].debit_amount"]
        );
    }

    #[test]
    fn negative_amounts_are_refused() {
        let f = fields(validate(&voucher(vec![line(Some(-100), None), line(None, Some(-100))])));
        assert!(f.contains(&"lines[0].debit_amount".to_owned()), "{f:?}");
        assert!(f.contains(&"lines[1].credit_amount".to_owned()), "{f:?}");
    }

    #[test]
    fn both_sides_on_a_line_are_refused() {
        let f = fields(validate(&voucher(vec![line(Some(100), Some(100)), line(None, Some(100)), line(Some(100), None)])));
        assert_eq!(f, ["lines[0].debit_amount"]);
    }

    #[test]
    fn overflow_is_caught_not_wrapped() {
        let f = fields(validate(&voucher(vec![line(Some(i64::MAX), None), line(Some(i64::MAX), None), line(None, Some(1))])));
        assert!(f.contains(&"lines".to_owned()), "{f:?}");
        // Amounts at the cap still sum safely.
        let v = validate(&voucher(vec![
            line(Some(LINE_AMOUNT_WON_MAX), None),
            line(Some(LINE_AMOUNT_WON_MAX), None),
            line(None, Some(LINE_AMOUNT_WON_MAX)),
            line(None, Some(LINE_AMOUNT_WON_MAX)),
        ]));
        assert_eq!(v.unwrap().total, 2 * LINE_AMOUNT_WON_MAX);
    }

    #[test]
    fn a_line_needs_an_account_reference() {
        let mut l = line(Some(100), None);
        l.account_code = None;
        assert_eq!(fields(validate(&voucher(vec![l, line(None, Some(100))]))), ["lines[0].account_id"]);
    }

    #[test]
    fn a_malformed_account_id_reads_as_not_found() {
        let mut l = line(Some(100), None);
        l.account_code = None;
        l.account_id = Some("nope".into());
        let e = validate(&voucher(vec![l, line(None, Some(100))])).unwrap_err();
        assert_eq!(e, [FieldError::new("lines[0].account_id", "account not found")]);
    }

    #[test]
    fn account_id_and_code_together_are_kept_for_cross_checking() {
        let id = Uuid::new_v4();
        let mut l = line(Some(100), None);
        l.account_id = Some(id.to_string());
        let v = validate(&voucher(vec![l, line(None, Some(100))])).unwrap();
        assert_eq!(v.lines[0].account, AccountRef::Both(id, "1101".into()));
    }

    #[test]
    fn a_malformed_partner_id_is_refused() {
        let mut l = line(Some(100), None);
        l.partner_id = Some("p-7".into());
        assert_eq!(fields(validate(&voucher(vec![l, line(None, Some(100))]))), ["lines[0].partner_id"]);
    }

    #[test]
    fn bad_dates_are_refused() {
        for d in ["2025-02-30", "2025-13-01", "2025-1-5", "15/01/2025", "", "1969-12-31", "2100-01-01", "2025-01-15T00:00:00"] {
            let mut v = voucher(vec![line(Some(1), None), line(None, Some(1))]);
            v.voucher_date = d.into();
            assert_eq!(fields(validate(&v)), ["voucher_date"], "{d}");
        }
        assert!(parse_date("2024-02-29").is_ok());
        assert!(parse_date("1970-01-01").is_ok());
    }

    #[test]
    fn voucher_types_are_the_listed_names() {
        assert_eq!(VoucherType::ALL.map(VoucherType::as_str), VOUCHER_TYPES);
        for t in VoucherType::ALL {
            assert_eq!(VoucherType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn unknown_voucher_type_is_refused() {
        let mut v = voucher(vec![line(Some(1), None), line(None, Some(1))]);
        v.voucher_type = Some("bribe".into());
        assert_eq!(fields(validate(&v)), ["voucher_type"]);
    }

    #[test]
    fn a_voucher_is_posted_approved_unless_it_asks_to_be_a_draft() {
        let mut v = voucher(vec![line(Some(1), None), line(None, Some(1))]);
        assert_eq!(validate(&v).unwrap().status, VoucherStatus::Approved);
        v.status = Some("draft".into());
        assert_eq!(validate(&v).unwrap().status, VoucherStatus::Draft);
        v.status = Some("reversed".into());
        assert_eq!(fields(validate(&v)), ["status"], "only a reversal makes a reversed voucher");
        for s in [VoucherStatus::Draft, VoucherStatus::Approved, VoucherStatus::Reversed] {
            assert_eq!(VoucherStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn long_descriptions_are_refused() {
        let mut v = voucher(vec![line(Some(1), None), line(None, Some(1))]);
        v.description = Some("가".repeat(DESCRIPTION_CHARS_MAX + 1));
        assert_eq!(fields(validate(&v)), ["description"]);
        v.description = Some("가".repeat(DESCRIPTION_CHARS_MAX));
        assert!(validate(&v).is_ok());
    }

    #[test]
    fn voucher_numbers_are_zero_padded() {
        let d = NaiveDate::from_ymd_opt(2025, 1, 15).unwrap();
        assert_eq!(voucher_number(d, 123), "2025-01-000123");
        assert_eq!(voucher_number(d, VOUCHERS_PER_MONTH_MAX), "2025-01-999999");
    }
}
