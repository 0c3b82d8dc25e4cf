//! The default Korean chart of accounts (계정과목표) seeded into every new company, and the account classes.
//!
//! Codes are four digits and the first digit is the class (see `shared/reference/korean-accounting.md`). The seed is data,
//! not IO: the ingest service writes it into Postgres when a company is created.

use serde::{Deserialize, Serialize};

/// The five account classes. The class decides the normal balance side and the statement an account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum AccountType {
    Asset,
    Liability,
    Equity,
    Revenue,
    Expense,
}

impl AccountType {
    /// The lower-case name used in the API, the database and the events.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Asset => "asset",
            AccountType::Liability => "liability",
            AccountType::Equity => "equity",
            AccountType::Revenue => "revenue",
            AccountType::Expense => "expense",
        }
    }

    /// Parses the lower-case name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "asset" => AccountType::Asset,
            "liability" => AccountType::Liability,
            "equity" => AccountType::Equity,
            "revenue" => AccountType::Revenue,
            "expense" => AccountType::Expense,
            _ => return None,
        })
    }

    /// Assets and expenses grow on the debit side; the others on the credit side.
    #[must_use]
    pub fn is_debit_normal(self) -> bool {
        matches!(self, AccountType::Asset | AccountType::Expense)
    }

    /// The class a four-digit code belongs to, from its first digit.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        if code.len() != 4 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(match code.as_bytes()[0] {
            b'1' => AccountType::Asset,
            b'2' => AccountType::Liability,
            b'3' => AccountType::Equity,
            b'4' => AccountType::Revenue,
            b'5'..=b'8' => AccountType::Expense,
            _ => return None,
        })
    }
}

/// One account of the default chart.
#[derive(Debug, Clone, Copy)]
pub struct SeedAccount {
    pub code: &'static str,
    pub name_ko: &'static str,
    pub name_en: &'static str,
}

impl SeedAccount {
    /// The class, derived from the code so the seed cannot contradict the code ranges.
    #[must_use]
    pub fn account_type(&self) -> AccountType {
        // The seed is checked by a unit test, so every code has a valid class.
        AccountType::from_code(self.code).unwrap_or(AccountType::Asset)
    }
}

/// The default chart. It holds every account the invoice postings need, with their fixed codes, plus the common ones a
/// small Korean company posts to.
pub const DEFAULT_CHART: &[SeedAccount] = &[
    SeedAccount { code: "1101", name_ko: "현금", name_en: "Cash" },
    SeedAccount { code: "1102", name_ko: "보통예금", name_en: "Bank deposits" },
    SeedAccount { code: "1103", name_ko: "외상매출금", name_en: "Accounts receivable" },
    SeedAccount { code: "1104", name_ko: "받을어음", name_en: "Notes receivable" },
    SeedAccount { code: "1105", name_ko: "부가세대급금", name_en: "VAT receivable (input VAT)" },
    SeedAccount { code: "1106", name_ko: "미수금", name_en: "Other receivables" },
    SeedAccount { code: "1107", name_ko: "선급금", name_en: "Advance payments" },
    SeedAccount { code: "1108", name_ko: "선급비용", name_en: "Prepaid expenses" },
    SeedAccount { code: "1201", name_ko: "상품", name_en: "Merchandise" },
    SeedAccount { code: "1202", name_ko: "원재료", name_en: "Raw materials" },
    SeedAccount { code: "1301", name_ko: "토지", name_en: "Land" },
    SeedAccount { code: "1302", name_ko: "건물", name_en: "Buildings" },
    SeedAccount { code: "1303", name_ko: "비품", name_en: "Furniture and equipment" },
    SeedAccount { code: "1304", name_ko: "감가상각누계액", name_en: "Accumulated depreciation" },
    SeedAccount { code: "1401", name_ko: "임차보증금", name_en: "Lease deposits" },
    SeedAccount { code: "2101", name_ko: "외상매입금", name_en: "Accounts payable" },
    SeedAccount { code: "2102", name_ko: "지급어음", name_en: "Notes payable" },
    SeedAccount { code: "2103", name_ko: "미지급금", name_en: "Other payables" },
    SeedAccount { code: "2104", name_ko: "예수금", name_en: "Withholdings" },
    SeedAccount { code: "2105", name_ko: "부가세예수금", name_en: "VAT payable (output VAT)" },
    SeedAccount { code: "2106", name_ko: "단기차입금", name_en: "Short-term borrowings" },
    SeedAccount { code: "2107", name_ko: "미지급비용", name_en: "Accrued expenses" },
    SeedAccount { code: "2108", name_ko: "선수금", name_en: "Advances received" },
    SeedAccount { code: "2201", name_ko: "장기차입금", name_en: "Long-term borrowings" },
    SeedAccount { code: "2202", name_ko: "퇴직급여충당부채", name_en: "Retirement benefit provision" },
    SeedAccount { code: "3101", name_ko: "자본금", name_en: "Capital stock" },
    SeedAccount { code: "3201", name_ko: "이익잉여금", name_en: "Retained earnings" },
    SeedAccount { code: "4101", name_ko: "상품매출", name_en: "Sales" },
    SeedAccount { code: "4102", name_ko: "용역매출", name_en: "Service revenue" },
    SeedAccount { code: "4201", name_ko: "이자수익", name_en: "Interest income" },
    SeedAccount { code: "4202", name_ko: "잡이익", name_en: "Miscellaneous income" },
    SeedAccount { code: "5101", name_ko: "상품매출원가", name_en: "Cost of sales" },
    SeedAccount { code: "5201", name_ko: "급여", name_en: "Salaries" },
    SeedAccount { code: "5202", name_ko: "퇴직급여", name_en: "Retirement benefits" },
    SeedAccount { code: "5203", name_ko: "복리후생비", name_en: "Employee benefits" },
    SeedAccount { code: "5204", name_ko: "여비교통비", name_en: "Travel and transport" },
    SeedAccount { code: "5205", name_ko: "접대비", name_en: "Entertainment" },
    SeedAccount { code: "5206", name_ko: "통신비", name_en: "Communication" },
    SeedAccount { code: "5207", name_ko: "수도광열비", name_en: "Utilities" },
    SeedAccount { code: "5208", name_ko: "세금과공과", name_en: "Taxes and dues" },
    SeedAccount { code: "5209", name_ko: "감가상각비", name_en: "Depreciation" },
    SeedAccount { code: "5210", name_ko: "임차료", name_en: "Rent" },
    SeedAccount { code: "5211", name_ko: "보험료", name_en: "Insurance" },
    SeedAccount { code: "5212", name_ko: "소모품비", name_en: "Supplies" },
    SeedAccount { code: "5213", name_ko: "지급수수료", name_en: "Fees" },
    SeedAccount { code: "5214", name_ko: "광고선전비", name_en: "Advertising" },
    SeedAccount { code: "6101", name_ko: "이자비용", name_en: "Interest expense" },
    SeedAccount { code: "6102", name_ko: "잡손실", name_en: "Miscellaneous losses" },
    SeedAccount { code: "8101", name_ko: "법인세비용", name_en: "Income tax expense" },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn seed_codes_are_valid_unique_and_cover_the_invoice_accounts() {
        let mut seen = HashSet::new();
        for a in DEFAULT_CHART {
            assert!(AccountType::from_code(a.code).is_some(), "bad code {}", a.code);
            assert!(seen.insert(a.code), "duplicate code {}", a.code);
        }
        for code in ["1101", "1102", "1103", "1105", "1201", "2101", "2105", "3101", "3201", "4101", "5101", "5201", "5212", "5213"] {
            assert!(seen.contains(code), "missing {code}");
        }
    }

    #[test]
    fn classes_follow_the_first_digit() {
        assert_eq!(AccountType::from_code("1103"), Some(AccountType::Asset));
        assert_eq!(AccountType::from_code("2105"), Some(AccountType::Liability));
        assert_eq!(AccountType::from_code("3201"), Some(AccountType::Equity));
        assert_eq!(AccountType::from_code("4101"), Some(AccountType::Revenue));
        assert_eq!(AccountType::from_code("8101"), Some(AccountType::Expense));
        assert_eq!(AccountType::from_code("9101"), None);
        assert_eq!(AccountType::from_code("110"), None);
        assert!(AccountType::Expense.is_debit_normal());
        assert!(!AccountType::Revenue.is_debit_normal());
    }
}
