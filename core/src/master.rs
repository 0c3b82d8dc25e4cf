//! Master data rules (partners, departments, accounts, users, company settings): request bodies flow in, checked
//! values or a list of [`FieldError`]s flow out. No IO, so every rule is unit-tested here; ingest-api stores what
//! passes.

use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::chart::AccountType;
use crate::voucher::FieldError;

/// Longest partner, department or account code, in characters.
pub const CODE_CHARS_MAX: usize = 20;
/// Longest name of a partner, department, account or user, in characters.
pub const NAME_CHARS_MAX: usize = 200;
/// Longest free text (address, representative), in characters.
pub const TEXT_CHARS_MAX: usize = 500;
/// Longest e-mail address, in characters (RFC 5321's path limit).
pub const EMAIL_CHARS_MAX: usize = 254;
/// Longest partner search text (`q=`), in characters.
pub const SEARCH_CHARS_MAX: usize = 100;

/// Whom a partner is to the company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum PartnerType {
    Customer,
    Supplier,
    Both,
}

impl PartnerType {
    /// The lower-case name used in the API, the database and the events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerType::Customer => "customer",
            PartnerType::Supplier => "supplier",
            PartnerType::Both => "both",
        }
    }

    /// Parses the lower-case name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "customer" => PartnerType::Customer,
            "supplier" => PartnerType::Supplier,
            "both" => PartnerType::Both,
            _ => return None,
        })
    }
}

/// Checks a Korean business registration number (사업자등록번호), `XXX-XX-XXXXX` or ten bare digits, and returns it
/// in the dashed form.
///
/// The check digit: s = Σ dᵢ·wᵢ (i = 1..9, weights 1,3,7,1,3,7,1,3,5), s += ⌊d₉·5 / 10⌋, and d₁₀ must equal
/// (10 − s mod 10) mod 10. The final `mod 10` matters: it makes a check digit of 0 valid. Groups that are never issued
/// (a first group below 101, a middle group of 00, a serial of 0000) are refused as well.
///
/// # Errors
/// A message fit for the client.
pub fn business_number(s: &str) -> Result<String, String> {
    let digits: Vec<u32> = s.chars().filter(|c| *c != '-').map(|c| c.to_digit(10).unwrap_or(u32::MAX)).collect();
    let dashed_ok = !s.contains('-') || (s.len() == 12 && &s[3..4] == "-" && &s[6..7] == "-");
    if digits.len() != 10 || digits.iter().any(|d| *d > 9) || !dashed_ok {
        return Err(format!("'{s}' is not a business number (XXX-XX-XXXXX)"));
    }
    let first = digits[0] * 100 + digits[1] * 10 + digits[2];
    let middle = digits[3] * 10 + digits[4];
    let serial = digits[5..9].iter().fold(0, |n, d| n * 10 + d);
    if first < 101 || middle == 0 || serial == 0 {
        return Err(format!("'{s}' is not an issued business number"));
    }
    const WEIGHTS: [u32; 9] = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    let mut sum: u32 = digits.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
    sum += digits[8] * 5 / 10;
    if digits[9] != (10 - sum % 10) % 10 {
        return Err(format!("'{s}' fails the business number check digit"));
    }
    let d: String = digits.iter().map(|d| char::from_digit(*d, 10).unwrap_or('0')).collect();
    Ok(format!("{}-{}-{}", &d[..3], &d[3..5], &d[5..]))
}

/// Trims `text` and checks that it has between 1 and `max` characters, or pushes an error for `field`.
fn required(errors: &mut Vec<FieldError>, field: &str, text: Option<&str>, max: usize) -> String {
    let t = text.unwrap_or_default().trim().to_owned();
    if t.is_empty() {
        errors.push(FieldError::new(field, "is required"));
    } else if t.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
    }
    t
}

/// Trims optional `text` and checks that it has at most `max` characters.
fn optional(errors: &mut Vec<FieldError>, field: &str, text: Option<&str>, max: usize) -> String {
    let t = text.unwrap_or_default().trim().to_owned();
    if t.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
    }
    t
}

/// A code: 1 to [`CODE_CHARS_MAX`] letters, digits, `-` or `_`, so that it reads well in lists and URLs.
fn code(errors: &mut Vec<FieldError>, field: &str, text: Option<&str>) -> String {
    let c = required(errors, field, text, CODE_CHARS_MAX);
    if !c.is_empty() && !c.chars().all(|ch| ch.is_alphanumeric() || ch == '-' || ch == '_') {
        errors.push(FieldError::new(field, "may hold only letters, digits, '-' and '_'"));
    }
    c
}

fn done<T>(errors: Vec<FieldError>, value: T) -> Result<T, Vec<FieldError>> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}

/// A partner as a client sends it, to create (every required field) or to update (a full replacement).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct PartnerInput {
    /// Required: letters, digits, `-` and `_`, at most `CODE_CHARS_MAX` (20) characters, unique in the company.
    #[schema(example = "C100")]
    pub code: Option<String>,
    /// Required, at most `NAME_CHARS_MAX` (200) characters.
    #[schema(example = "(주)한빛전자")]
    pub name: Option<String>,
    /// 사업자등록번호, `XXX-XX-XXXXX` or ten digits with a valid check digit; unique in the company.
    #[schema(example = "124-81-00998")]
    pub business_number: Option<String>,
    /// `both` when left out.
    #[schema(value_type = Option<PartnerType>)]
    pub partner_type: Option<String>,
    pub representative: Option<String>,
    pub address: Option<String>,
    /// `true` when left out.
    pub is_active: Option<bool>,
}

/// A partner that passed [`validate_partner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPartner {
    pub code: String,
    pub name: String,
    /// Dashed form, or `None` (individuals and foreign partners have none).
    pub business_number: Option<String>,
    pub partner_type: PartnerType,
    pub representative: String,
    pub address: String,
    pub is_active: bool,
}

/// Checks a partner body.
///
/// # Errors
/// Every problem found, never an empty list.
pub fn validate_partner(p: &PartnerInput) -> Result<ValidPartner, Vec<FieldError>> {
    let mut errors = Vec::new();
    let code = code(&mut errors, "code", p.code.as_deref());
    let name = required(&mut errors, "name", p.name.as_deref(), NAME_CHARS_MAX);
    let business_number = match p.business_number.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(b) => match business_number(b) {
            Ok(b) => Some(b),
            Err(m) => {
                errors.push(FieldError::new("business_number", m));
                None
            }
        },
    };
    let partner_type = match p.partner_type.as_deref() {
        None => PartnerType::Both,
        Some(t) => PartnerType::parse(t).unwrap_or_else(|| {
            errors.push(FieldError::new("partner_type", format!("'{t}' is not a partner type (customer, supplier, both)")));
            PartnerType::Both
        }),
    };
    let representative = optional(&mut errors, "representative", p.representative.as_deref(), TEXT_CHARS_MAX);
    let address = optional(&mut errors, "address", p.address.as_deref(), TEXT_CHARS_MAX);
    let v = ValidPartner { code, name, business_number, partner_type, representative, address, is_active: p.is_active.unwrap_or(true) };
    done(errors, v)
}

/// A department as a client sends it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct DepartmentInput {
    /// Required: letters, digits, `-` and `_`, unique in the company.
    #[schema(example = "RND")]
    pub code: Option<String>,
    /// Required.
    #[schema(example = "연구소")]
    pub name: Option<String>,
    /// `true` when left out.
    pub is_active: Option<bool>,
}

/// A department that passed [`validate_department`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidDepartment {
    pub code: String,
    pub name: String,
    pub is_active: bool,
}

/// Checks a department body.
///
/// # Errors
/// Every problem found.
pub fn validate_department(d: &DepartmentInput) -> Result<ValidDepartment, Vec<FieldError>> {
    let mut errors = Vec::new();
    let code = code(&mut errors, "code", d.code.as_deref());
    let name = required(&mut errors, "name", d.name.as_deref(), NAME_CHARS_MAX);
    done(errors, ValidDepartment { code, name, is_active: d.is_active.unwrap_or(true) })
}

/// A new account as a client sends it. The class comes from the code's first digit; a client that also sends
/// `account_type` must send the same class.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct AccountInput {
    /// Required: four digits whose first (1 to 8) names the class.
    #[schema(example = "5299")]
    pub code: Option<String>,
    /// Required.
    #[schema(example = "잡비")]
    pub name: Option<String>,
    pub name_en: Option<String>,
    /// Optional; must be the class of the code.
    #[schema(value_type = Option<crate::chart::AccountType>)]
    pub account_type: Option<String>,
}

/// An account that passed [`validate_account`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAccount {
    pub code: String,
    pub name: String,
    pub name_en: String,
    pub account_type: AccountType,
}

/// Checks a new account: a four-digit code whose first digit names the class (1 asset … 5–8 expense).
///
/// # Errors
/// Every problem found.
pub fn validate_account(a: &AccountInput) -> Result<ValidAccount, Vec<FieldError>> {
    let mut errors = Vec::new();
    let code = a.code.as_deref().unwrap_or_default().trim().to_owned();
    let class = AccountType::from_code(&code);
    if class.is_none() {
        errors.push(FieldError::new("code", "must be four digits starting with 1 to 8 (the account class)"));
    }
    if let (Some(sent), Some(class)) = (a.account_type.as_deref(), class) {
        match AccountType::parse(sent) {
            None => errors.push(FieldError::new("account_type", format!("'{sent}' is not an account type"))),
            Some(t) if t != class => {
                errors.push(FieldError::new("account_type", format!("code {code} is in the {} class, not {sent}", class.as_str())))
            }
            Some(_) => {}
        }
    }
    let name = required(&mut errors, "name", a.name.as_deref(), NAME_CHARS_MAX);
    let name_en = optional(&mut errors, "name_en", a.name_en.as_deref(), NAME_CHARS_MAX);
    match class {
        Some(account_type) => done(errors, ValidAccount { code, name, name_en, account_type }),
        None => Err(errors),
    }
}

/// An account rename or (de)activation; fields left out stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct AccountUpdate {
    pub name: Option<String>,
    pub name_en: Option<String>,
    pub is_active: Option<bool>,
}

/// The checked parts of an [`AccountUpdate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidAccountUpdate {
    pub name: Option<String>,
    pub name_en: Option<String>,
    pub is_active: Option<bool>,
}

/// Checks an account update.
///
/// # Errors
/// Every problem found.
pub fn validate_account_update(u: &AccountUpdate) -> Result<ValidAccountUpdate, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = u.name.as_deref().map(|n| required(&mut errors, "name", Some(n), NAME_CHARS_MAX));
    let name_en = u.name_en.as_deref().map(|n| optional(&mut errors, "name_en", Some(n), NAME_CHARS_MAX));
    if name.is_none() && name_en.is_none() && u.is_active.is_none() {
        errors.push(FieldError::new("name", "send at least one of name, name_en, is_active"));
    }
    done(errors, ValidAccountUpdate { name, name_en, is_active: u.is_active })
}

/// A user as an admin sends it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct UserInput {
    /// Required; unique across companies, kept in lower case.
    #[schema(example = "kim@example.kr")]
    pub email: Option<String>,
    /// Required.
    #[schema(example = "김회계")]
    pub name: Option<String>,
    /// Required.
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    /// `true` when left out.
    pub is_active: Option<bool>,
}

/// A user that passed [`validate_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidUser {
    /// Lower-cased, so that one address cannot be registered twice in different cases.
    pub email: String,
    pub name: String,
    pub role: Role,
    pub is_active: bool,
}

/// Checks a user body. The e-mail check is deliberately loose (one `@`, something on both sides, no spaces): the
/// address is an identifier here, not something the system sends mail to.
///
/// # Errors
/// Every problem found.
pub fn validate_user(u: &UserInput) -> Result<ValidUser, Vec<FieldError>> {
    let mut errors = Vec::new();
    let email = required(&mut errors, "email", u.email.as_deref(), EMAIL_CHARS_MAX).to_lowercase();
    if !email.is_empty() {
        let ok = email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
            && !email.chars().any(char::is_whitespace);
        if !ok {
            errors.push(FieldError::new("email", format!("'{email}' is not an e-mail address")));
        }
    }
    let name = required(&mut errors, "name", u.name.as_deref(), NAME_CHARS_MAX);
    let role = match u.role.as_deref() {
        Some("admin") => Role::Admin,
        Some("accountant") => Role::Accountant,
        Some("viewer") => Role::Viewer,
        Some(r) => {
            errors.push(FieldError::new("role", format!("'{r}' is not a role (admin, accountant, viewer)")));
            Role::Viewer
        }
        None => {
            errors.push(FieldError::new("role", "is required (admin, accountant, viewer)"));
            Role::Viewer
        }
    };
    done(errors, ValidUser { email, name, role, is_active: u.is_active.unwrap_or(true) })
}

/// Company settings as an admin sends them; fields left out stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct CompanyUpdate {
    pub name: Option<String>,
    /// An empty string clears it.
    pub business_number: Option<String>,
    /// The month the fiscal year starts in, 1 to 12.
    #[schema(example = 4)]
    pub fiscal_start_month: Option<i64>,
}

/// The checked parts of a [`CompanyUpdate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidCompanyUpdate {
    pub name: Option<String>,
    /// `Some(None)` clears the number.
    pub business_number: Option<Option<String>>,
    pub fiscal_start_month: Option<i16>,
}

/// Checks a company settings update.
///
/// # Errors
/// Every problem found.
pub fn validate_company_update(c: &CompanyUpdate) -> Result<ValidCompanyUpdate, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = c.name.as_deref().map(|n| required(&mut errors, "name", Some(n), NAME_CHARS_MAX));
    let business_number = c.business_number.as_deref().map(|b| {
        let b = b.trim();
        if b.is_empty() {
            return None;
        }
        business_number(b).map_err(|m| errors.push(FieldError::new("business_number", m))).ok()
    });
    let fiscal_start_month = c.fiscal_start_month.map(|m| {
        if (1..=12).contains(&m) {
            i16::try_from(m).unwrap_or(1)
        } else {
            errors.push(FieldError::new("fiscal_start_month", "must be a month, 1 to 12"));
            1
        }
    });
    done(errors, ValidCompanyUpdate { name, business_number, fiscal_start_month })
}

/// Turns a search text into an `ILIKE` pattern that matches it anywhere, with `%`, `_` and `\` taken literally.
///
/// # Errors
/// A text longer than [`SEARCH_CHARS_MAX`].
pub fn like_pattern(q: &str) -> Result<String, String> {
    let q = q.trim();
    if q.chars().count() > SEARCH_CHARS_MAX {
        return Err(format!("must be at most {SEARCH_CHARS_MAX} characters"));
    }
    // Postgres text cannot hold U+0000: the pattern would fail its query with a 500.
    if q.contains('\0') {
        return Err("must not contain the NUL character (U+0000)".to_owned());
    }
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_numbers_from_the_reference() {
        assert_eq!(business_number("116-82-00276").as_deref(), Ok("116-82-00276"));
        assert_eq!(business_number("134-86-72683").as_deref(), Ok("134-86-72683"));
        assert!(business_number("116-82-00278").is_err());
        // A check digit of 0: the final mod 10 that a common bug forgets.
        assert_eq!(business_number("116-82-00150").as_deref(), Ok("116-82-00150"));
        assert_eq!(business_number("1168200276").as_deref(), Ok("116-82-00276"), "bare digits are dashed");
    }

    #[test]
    fn business_numbers_that_are_never_issued_or_malformed() {
        for bad in [
            "100-82-00276",
            "116-00-00276",
            "116-82-00000",
            "116-82-0027",
            "116-82-002760",
            "11-682-00276",
            "abc-de-fghij",
            "",
            "116 82 00276",
        ] {
            assert!(business_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_partner_needs_code_and_name_and_a_valid_number() {
        let e = validate_partner(&PartnerInput {
            business_number: Some("116-82-00278".into()),
            partner_type: Some("vendor".into()),
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["code", "name", "business_number", "partner_type"]);
        let ok = validate_partner(&PartnerInput {
            code: Some(" P001 ".into()),
            name: Some("삼성전자".into()),
            business_number: Some("1248100998".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((ok.code.as_str(), ok.partner_type, ok.is_active), ("P001", PartnerType::Both, true));
        assert_eq!(ok.business_number.as_deref(), Some("124-81-00998"));
    }

    #[test]
    fn an_account_class_must_match_its_first_digit() {
        let ok = validate_account(&AccountInput { code: Some("5299".into()), name: Some("잡비".into()), ..Default::default() }).unwrap();
        assert_eq!(ok.account_type, AccountType::Expense);
        let e = validate_account(&AccountInput {
            code: Some("5299".into()),
            name: Some("잡비".into()),
            account_type: Some("revenue".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e[0].field, "account_type");
        for bad in ["9001", "0101", "12345", "12a4", ""] {
            assert!(
                validate_account(&AccountInput { code: Some(bad.into()), name: Some("x".into()), ..Default::default() }).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_account_update_must_change_something() {
        assert!(validate_account_update(&AccountUpdate::default()).is_err());
        assert!(validate_account_update(&AccountUpdate { name: Some("  ".into()), ..Default::default() }).is_err());
        assert_eq!(
            validate_account_update(&AccountUpdate { is_active: Some(false), ..Default::default() }).unwrap().is_active,
            Some(false)
        );
    }

    #[test]
    fn users_need_an_address_a_name_and_a_known_role() {
        let u = validate_user(&UserInput {
            email: Some("Kim@Example.KR".into()),
            name: Some("김".into()),
            role: Some("viewer".into()),
            is_active: None,
        })
        .unwrap();
        assert_eq!((u.email.as_str(), u.role), ("kim@example.kr", Role::Viewer));
        for (email, role) in [("kim", "viewer"), ("a@b", "viewer"), ("a b@c.kr", "viewer"), ("a@c.kr", "owner")] {
            assert!(validate_user(&UserInput {
                email: Some(email.into()),
                name: Some("n".into()),
                role: Some(role.into()),
                is_active: None
            })
            .is_err());
        }
    }

    #[test]
    fn company_settings_take_a_month_and_a_valid_number() {
        assert!(validate_company_update(&CompanyUpdate { fiscal_start_month: Some(13), ..Default::default() }).is_err());
        assert!(validate_company_update(&CompanyUpdate { business_number: Some("116-82-00278".into()), ..Default::default() }).is_err());
        let v = validate_company_update(&CompanyUpdate { fiscal_start_month: Some(4), business_number: Some(String::new()), name: None })
            .unwrap();
        assert_eq!((v.fiscal_start_month, v.business_number), (Some(4), Some(None)));
    }

    #[test]
    fn search_text_is_taken_literally() {
        assert_eq!(like_pattern(" 삼성 ").unwrap(), "%삼성%");
        assert_eq!(like_pattern("50%_off\\").unwrap(), "%50\\%\\_off\\\\%");
        assert!(like_pattern(&"가".repeat(SEARCH_CHARS_MAX + 1)).is_err());
        assert!(like_pattern("a\0b").is_err(), "Postgres text cannot hold NUL");
    }
}
