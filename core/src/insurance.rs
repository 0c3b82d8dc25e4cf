//! The four social insurances (4대보험): a month, an insurance and an employee's monthly pay come in; the contribution
//! base and the employee's and the employer's premiums come out, computed with the rates in force for that month. No
//! IO happens here.
//!
//! Rates are data: [`RATE_TABLE_CSV`] (`core/data/insurance_rates.csv`, embedded at build time) is a dated table with a
//! row per insurance, component and period, each citing its source. [`RateTable::schedule`] picks the rows in force for
//! a month; a component the table lacks for that month, or holds as `pending` (published in a notice the table does
//! not have yet), is a [`MissingRate`] naming it, never a guess.
//!
//! The arithmetic ([`Schedule::contribution`]) follows `shared/reference/korean-accounting.md`:
//! - the base is the monthly pay truncated to the insurance's base unit (1,000 won for the National Pension), then
//!   raised to its floor and lowered to its cap where the insurance has them (the National Pension does; the table
//!   has no floor or cap for the others, so their base is the pay itself);
//! - each share (employee, employer) is the base times its rate, truncated to 10 won (원 단위 절사);
//! - long-term care is charged on the health premium: each share's health premium times the long-term care rate,
//!   truncated to 10 won, so it is split exactly as the health premium is;
//! - a month without pay (0 won) owes nothing: no floor is applied to it, since a suspension of contributions is filed
//!   on its own, not as a report line. Who is covered at all (age limits, exemptions) is the caller's decision.

use std::fmt;

use chrono::{Datelike, NaiveDate};

/// The rate table, as committed in `core/data/insurance_rates.csv`.
pub const RATE_TABLE_CSV: &str = include_str!("../data/insurance_rates.csv");

/// The header line the table must have, so that a reordered column is refused instead of misread.
pub const RATE_TABLE_HEADER: &str = "insurance,component,effective_from,effective_to,value,source";

/// Parts per million in one whole (100%): a [`Rate`] of 45,000 ppm is 4.5%.
pub const PPM_PER_WHOLE: u32 = 1_000_000;

/// Largest rate, in parts per million: 100% of the base.
pub const RATE_PPM_MAX: u32 = PPM_PER_WHOLE;

/// Most decimals a percent in the table may have: 4 decimals of a percent are exactly whole parts per million.
pub const RATE_PERCENT_DECIMALS_MAX: usize = 4;

/// Largest monthly pay a report line may carry, in won (ten billion). Far above any real salary, and low enough that
/// a report of [`EMPLOYEES_PER_REPORT_MAX`] lines sums to well under a voucher line's limit
/// (`voucher::LINE_AMOUNT_WON_MAX`): 10¹⁰ × 10⁴ × 20% = 2 × 10¹³.
pub const MONTHLY_SALARY_WON_MAX: i64 = 10_000_000_000;

/// Most employees one report carries. A report is one company's month for one insurance; ten thousand lines is a
/// large employer, and the request message (at most 1 MiB) holds about that many.
pub const EMPLOYEES_PER_REPORT_MAX: usize = 10_000;

/// First and last month a report may be for. Only months the rate table covers are computed; this range only keeps a
/// month's dates inside what Postgres and the voucher dates accept.
pub const REPORT_YEAR_MIN: i32 = 2000;
pub const REPORT_YEAR_MAX: i32 = 2099;

/// The four insurances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Insurance {
    /// 국민연금.
    NationalPension,
    /// 건강보험, with long-term care (장기요양) charged on its premium.
    Health,
    /// 고용보험.
    Employment,
    /// 산재보험, employer only.
    IndustrialAccident,
}

impl Insurance {
    pub const ALL: [Insurance; 4] = [Insurance::NationalPension, Insurance::Health, Insurance::Employment, Insurance::IndustrialAccident];

    /// The name used in the rate table and the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Insurance::NationalPension => "national_pension",
            Insurance::Health => "health",
            Insurance::Employment => "employment",
            Insurance::IndustrialAccident => "industrial_accident",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == s)
    }

    /// The Korean name, for voucher descriptions.
    #[must_use]
    pub fn name_ko(self) -> &'static str {
        match self {
            Insurance::NationalPension => "국민연금",
            Insurance::Health => "건강보험(장기요양 포함)",
            Insurance::Employment => "고용보험",
            Insurance::IndustrialAccident => "산재보험",
        }
    }

    /// The SG&A account of the default chart that the employer's share is booked to, following common Korean
    /// practice: the pension as a public levy (5208 세금과공과), health and long-term care as a staff benefit (5203
    /// 복리후생비), employment and industrial accident insurance as insurance (5211 보험료). All three are seeded for
    /// every company (`chart::DEFAULT_CHART`).
    #[must_use]
    pub fn expense_account_code(self) -> &'static str {
        match self {
            Insurance::NationalPension => "5208",
            Insurance::Health => "5203",
            Insurance::Employment | Insurance::IndustrialAccident => "5211",
        }
    }
}

impl fmt::Display for Insurance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The account of the employee's share in a payroll accrual: the part of gross pay withheld for the insurance.
pub const SALARIES_ACCOUNT_CODE: &str = "5201";
/// Where the employee's share waits until it is paid over: withholdings payable (예수금).
pub const WITHHOLDINGS_ACCOUNT_CODE: &str = "2104";
/// Where the employer's share waits until it is paid: accrued expenses (미지급비용).
pub const ACCRUED_EMPLOYER_ACCOUNT_CODE: &str = "2107";

/// A company's size class, which decides its employment-insurance employer rate. A report that does not say is
/// [`EmployerSize::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmployerSize {
    /// Fewer than 150 employees (the employer pays 0.25% on top of the 0.9% unemployment part).
    Under150,
    /// 150 or more, and a priority-support enterprise (우선지원대상기업): 0.45% on top.
    PrioritySupport,
    /// 150 to 999 employees: 0.65% on top.
    From150To999,
    /// 1,000 or more employees, or the state or a local government: 0.85% on top.
    From1000,
}

impl EmployerSize {
    /// The class of a report that names none: fewer than 150 employees, the class of nearly every Korean company and of
    /// the companies K-ERP is built for. A larger company must say so, or it under-reports its employer share.
    pub const DEFAULT: EmployerSize = EmployerSize::Under150;

    pub const ALL: [EmployerSize; 4] =
        [EmployerSize::Under150, EmployerSize::PrioritySupport, EmployerSize::From150To999, EmployerSize::From1000];

    /// The name stored with a report.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EmployerSize::Under150 => "under_150",
            EmployerSize::PrioritySupport => "priority_support",
            EmployerSize::From150To999 => "150_to_999",
            EmployerSize::From1000 => "1000_plus",
        }
    }

    /// The table component that holds this class's employer rate.
    #[must_use]
    pub fn employer_rate_component(self) -> Component {
        match self {
            EmployerSize::Under150 => Component::EmployerRateUnder150,
            EmployerSize::PrioritySupport => Component::EmployerRatePrioritySupport,
            EmployerSize::From150To999 => Component::EmployerRate150To999,
            EmployerSize::From1000 => Component::EmployerRate1000Plus,
        }
    }
}

/// What a row of the table gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    EmployeeRate,
    EmployerRate,
    EmployerRateUnder150,
    EmployerRatePrioritySupport,
    EmployerRate150To999,
    EmployerRate1000Plus,
    /// Industrial accident: the rate when a report does not give its industry's.
    EmployerRateDefault,
    /// Long-term care, as a share of the health premium.
    LongTermCareRate,
    BaseFloorWon,
    BaseCapWon,
    BaseUnitWon,
    PremiumUnitWon,
}

impl Component {
    pub const ALL: [Component; 12] = [
        Component::EmployeeRate,
        Component::EmployerRate,
        Component::EmployerRateUnder150,
        Component::EmployerRatePrioritySupport,
        Component::EmployerRate150To999,
        Component::EmployerRate1000Plus,
        Component::EmployerRateDefault,
        Component::LongTermCareRate,
        Component::BaseFloorWon,
        Component::BaseCapWon,
        Component::BaseUnitWon,
        Component::PremiumUnitWon,
    ];

    /// The name in the table.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Component::EmployeeRate => "employee_rate",
            Component::EmployerRate => "employer_rate",
            Component::EmployerRateUnder150 => "employer_rate_under_150",
            Component::EmployerRatePrioritySupport => "employer_rate_priority_support",
            Component::EmployerRate150To999 => "employer_rate_150_to_999",
            Component::EmployerRate1000Plus => "employer_rate_1000_plus",
            Component::EmployerRateDefault => "employer_rate_default",
            Component::LongTermCareRate => "long_term_care_rate",
            Component::BaseFloorWon => "base_floor_won",
            Component::BaseCapWon => "base_cap_won",
            Component::BaseUnitWon => "base_unit_won",
            Component::PremiumUnitWon => "premium_unit_won",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the value is an amount in won (else a percent).
    #[must_use]
    pub fn is_won(self) -> bool {
        matches!(self, Component::BaseFloorWon | Component::BaseCapWon | Component::BaseUnitWon | Component::PremiumUnitWon)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rate in parts per million, exact for every rate with at most four decimals of a percent (3.545% is 35,450).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(u32);

impl Rate {
    pub const ZERO: Rate = Rate(0);

    /// A rate of `ppm` parts per million, if it is at most [`RATE_PPM_MAX`].
    #[must_use]
    pub fn from_ppm(ppm: u32) -> Option<Self> {
        (ppm <= RATE_PPM_MAX).then_some(Rate(ppm))
    }

    #[must_use]
    pub fn ppm(self) -> u32 {
        self.0
    }

    /// Parses a percent as the table writes it: `4.5%`, `12.95%`, `0%`, at most [`RATE_PERCENT_DECIMALS_MAX`] decimals.
    #[must_use]
    pub fn parse_percent(s: &str) -> Option<Self> {
        let number = s.strip_suffix('%')?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 3 || !digits(whole) || !digits(fraction) || fraction.len() > RATE_PERCENT_DECIMALS_MAX {
            return None;
        }
        if number.contains('.') && fraction.is_empty() {
            return None;
        }
        let whole: u32 = whole.parse().ok()?;
        let padded = format!("{fraction:0<width$}", width = RATE_PERCENT_DECIMALS_MAX);
        let fraction: u32 = padded.parse().ok()?;
        // A percent is 10,000 ppm; each of the four decimals is a tenth of the one before.
        Self::from_ppm(whole.checked_mul(10_000)?.checked_add(fraction)?)
    }

    /// This rate of `won`, truncated to whole won. Negative amounts do not occur (pay is checked to be at least 0).
    #[must_use]
    pub fn of(self, won: i64) -> i64 {
        let exact = i128::from(won) * i128::from(self.0) / i128::from(PPM_PER_WHOLE);
        // |won| ≤ i64::MAX and the rate ≤ 100%, so the product divided back fits.
        i64::try_from(exact).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Rate {
    /// The percent with trailing zeros removed: `4.5%`, `12.95%`, `0%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 10_000;
        let fraction = self.0 % 10_000;
        if fraction == 0 {
            write!(f, "{whole}%")
        } else {
            let decimals = format!("{fraction:04}");
            write!(f, "{whole}.{}%", decimals.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `won` truncated down to a multiple of `unit` (원 단위 절사 with `unit` = 10). A unit below 1 leaves it as it is.
#[must_use]
pub fn truncate_to(won: i64, unit: i64) -> i64 {
    if unit <= 1 {
        won
    } else {
        won - won.rem_euclid(unit)
    }
}

/// A calendar month, as reports are dated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// The month, if `month` is 1 to 12 and `year` in [`REPORT_YEAR_MIN`]..=[`REPORT_YEAR_MAX`].
    #[must_use]
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((REPORT_YEAR_MIN..=REPORT_YEAR_MAX).contains(&year) && (1..=12).contains(&month)).then_some(Month { year, month })
    }

    /// Parses `YYYY-MM`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        Self::new(y.parse().ok()?, m.parse().ok()?)
    }

    /// The month of a date.
    #[must_use]
    pub fn of(date: NaiveDate) -> Option<Self> {
        Self::new(date.year(), date.month())
    }

    #[must_use]
    pub fn year(self) -> i32 {
        self.year
    }

    #[must_use]
    pub fn month(self) -> u32 {
        self.month
    }

    #[must_use]
    pub fn first_day(self) -> NaiveDate {
        // `new` admits only real months of years chrono represents.
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    #[must_use]
    pub fn last_day(self) -> NaiveDate {
        let next = if self.month == 12 {
            NaiveDate::from_ymd_opt(self.year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(self.year, self.month + 1, 1)
        };
        next.and_then(|d| d.pred_opt()).unwrap_or(NaiveDate::MAX)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The value of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Rate(Rate),
    Won(i64),
    /// Published in a notice the table does not have yet.
    Pending,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRow {
    pub insurance: Insurance,
    pub component: Component,
    pub effective_from: NaiveDate,
    /// Inclusive; `None` while no later row replaces it.
    pub effective_to: Option<NaiveDate>,
    pub value: Value,
    pub source: String,
    /// The line of the table file, for error messages.
    pub line: usize,
}

impl RateRow {
    /// Whether the row is in force on `day`.
    #[must_use]
    pub fn covers(&self, day: NaiveDate) -> bool {
        self.effective_from <= day && self.effective_to.is_none_or(|to| day <= to)
    }

    fn overlaps(&self, other: &RateRow) -> bool {
        let ends_before = |a: &RateRow, b: &RateRow| a.effective_to.is_some_and(|to| to < b.effective_from);
        !ends_before(self, other) && !ends_before(other, self)
    }
}

/// A defect of the table: its line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("insurance rate table, line {line}: {message}")]
pub struct TableError {
    pub line: usize,
    pub message: String,
}

/// A component the table does not give for a month: either no row covers the month, or the row that does is
/// `pending`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingRate {
    pub insurance: Insurance,
    pub component: Component,
    pub month: Month,
    /// The source note of a `pending` row; `None` when no row covers the month.
    pub pending: Option<String>,
}

impl fmt::Display for MissingRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, c, m) = (self.insurance, self.component, self.month);
        match &self.pending {
            Some(note) => write!(f, "the rate table has no {i} {c} for {m} yet; it is pending ({note})"),
            None => write!(f, "the rate table has no {i} {c} in force for {m}"),
        }
    }
}

/// What a report may choose: the employer's size class (employment insurance) and its industry's rate (industrial
/// accident). The default is [`EmployerSize::DEFAULT`] and the table's `employer_rate_default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub employer_size: EmployerSize,
    pub industrial_rate: Option<Rate>,
}

impl Default for Params {
    fn default() -> Self {
        Params { employer_size: EmployerSize::DEFAULT, industrial_rate: None }
    }
}

/// The dated table of rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTable {
    rows: Vec<RateRow>,
}

fn table_error(line: usize, message: impl Into<String>) -> TableError {
    TableError { line, message: message.into() }
}

fn parse_date(line: usize, what: &str, s: &str) -> Result<NaiveDate, TableError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| table_error(line, format!("{what} {s:?} is not a date (YYYY-MM-DD)")))
}

impl RateTable {
    /// The committed table, [`RATE_TABLE_CSV`].
    ///
    /// # Errors
    /// A defect of the committed file (its unit test fails first).
    pub fn builtin() -> Result<Self, TableError> {
        Self::parse(RATE_TABLE_CSV)
    }

    /// Parses and checks a table: the header, each row's fields, month-boundary dates, values of the component's kind,
    /// and no two rows of one insurance and component in force on the same day.
    ///
    /// # Errors
    /// The first defect found, with its line.
    pub fn parse(text: &str) -> Result<Self, TableError> {
        let mut rows: Vec<RateRow> = Vec::new();
        let mut header_seen = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.trim();
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            if !header_seen {
                if raw != RATE_TABLE_HEADER {
                    return Err(table_error(line, format!("the header must be {RATE_TABLE_HEADER:?}")));
                }
                header_seen = true;
                continue;
            }
            let row = Self::parse_row(line, raw)?;
            if let Some(other) = rows.iter().find(|o| o.insurance == row.insurance && o.component == row.component && o.overlaps(&row)) {
                return Err(table_error(line, format!("overlaps line {} ({} {})", other.line, row.insurance, row.component)));
            }
            rows.push(row);
        }
        if !header_seen {
            return Err(table_error(0, "the table has no header"));
        }
        Ok(RateTable { rows })
    }

    fn parse_row(line: usize, raw: &str) -> Result<RateRow, TableError> {
        let fields: Vec<&str> = raw.splitn(6, ',').map(str::trim).collect();
        let [insurance, component, from, to, value, source] = fields[..] else {
            return Err(table_error(line, "a row has six fields"));
        };
        let insurance = Insurance::parse(insurance).ok_or_else(|| table_error(line, format!("unknown insurance {insurance:?}")))?;
        let component = Component::parse(component).ok_or_else(|| table_error(line, format!("unknown component {component:?}")))?;
        let effective_from = parse_date(line, "effective_from", from)?;
        if effective_from.day() != 1 {
            return Err(table_error(line, "effective_from must be the first day of a month"));
        }
        let effective_to = if to.is_empty() { None } else { Some(parse_date(line, "effective_to", to)?) };
        if let Some(to) = effective_to {
            if to.succ_opt().is_none_or(|next| next.day() != 1) {
                return Err(table_error(line, "effective_to must be the last day of a month"));
            }
            if to < effective_from {
                return Err(table_error(line, "effective_to is before effective_from"));
            }
        }
        let value = if value == "pending" {
            Value::Pending
        } else if component.is_won() {
            let won: i64 = value.parse().map_err(|_| table_error(line, format!("{component} must be whole won, got {value:?}")))?;
            let least = if matches!(component, Component::BaseUnitWon | Component::PremiumUnitWon) { 1 } else { 0 };
            if won < least {
                return Err(table_error(line, format!("{component} must be at least {least}")));
            }
            Value::Won(won)
        } else {
            Value::Rate(
                Rate::parse_percent(value)
                    .ok_or_else(|| table_error(line, format!("{component} must be a percent such as 4.5%, got {value:?}")))?,
            )
        };
        if source.is_empty() {
            return Err(table_error(line, "every row names its source"));
        }
        Ok(RateRow { insurance, component, effective_from, effective_to, value, source: source.to_owned(), line })
    }

    #[must_use]
    pub fn rows(&self) -> &[RateRow] {
        &self.rows
    }

    /// The row of `insurance`'s `component` in force in `month`, whatever its value.
    #[must_use]
    pub fn row(&self, insurance: Insurance, component: Component, month: Month) -> Option<&RateRow> {
        let day = month.first_day();
        self.rows.iter().find(|r| r.insurance == insurance && r.component == component && r.covers(day))
    }

    /// The value of `insurance`'s `component` in force in `month`.
    ///
    /// # Errors
    /// [`MissingRate`] when no row covers the month or the row is pending.
    pub fn value(&self, insurance: Insurance, component: Component, month: Month) -> Result<Value, MissingRate> {
        let missing = |pending: Option<String>| MissingRate { insurance, component, month, pending };
        match self.row(insurance, component, month) {
            None => Err(missing(None)),
            Some(RateRow { value: Value::Pending, source, .. }) => Err(missing(Some(source.clone()))),
            Some(r) => Ok(r.value),
        }
    }

    fn rate(&self, insurance: Insurance, component: Component, month: Month) -> Result<Rate, MissingRate> {
        match self.value(insurance, component, month)? {
            Value::Rate(r) => Ok(r),
            // `parse` gives rate components rate values; this is unreachable with a parsed table.
            _ => Err(MissingRate { insurance, component, month, pending: None }),
        }
    }

    fn won(&self, insurance: Insurance, component: Component, month: Month) -> Result<i64, MissingRate> {
        match self.value(insurance, component, month)? {
            Value::Won(w) => Ok(w),
            _ => Err(MissingRate { insurance, component, month, pending: None }),
        }
    }

    /// Everything needed to compute `insurance`'s contributions for `month` with `params`.
    ///
    /// # Errors
    /// The first component the table lacks for the month (in the order the arithmetic needs them).
    pub fn schedule(&self, insurance: Insurance, month: Month, params: &Params) -> Result<Schedule, MissingRate> {
        let employee_rate = self.rate(insurance, Component::EmployeeRate, month)?;
        let employer_rate = match insurance {
            Insurance::NationalPension | Insurance::Health => self.rate(insurance, Component::EmployerRate, month)?,
            Insurance::Employment => self.rate(insurance, params.employer_size.employer_rate_component(), month)?,
            Insurance::IndustrialAccident => match params.industrial_rate {
                Some(r) => r,
                None => self.rate(insurance, Component::EmployerRateDefault, month)?,
            },
        };
        let long_term_care_rate =
            if insurance == Insurance::Health { Some(self.rate(insurance, Component::LongTermCareRate, month)?) } else { None };
        let (base_floor_won, base_cap_won, base_unit_won) = if insurance == Insurance::NationalPension {
            (
                Some(self.won(insurance, Component::BaseFloorWon, month)?),
                Some(self.won(insurance, Component::BaseCapWon, month)?),
                self.won(insurance, Component::BaseUnitWon, month)?,
            )
        } else {
            (None, None, 1)
        };
        let premium_unit_won = self.won(insurance, Component::PremiumUnitWon, month)?;
        Ok(Schedule {
            insurance,
            month,
            employee_rate,
            employer_rate,
            long_term_care_rate,
            base_floor_won,
            base_cap_won,
            base_unit_won,
            premium_unit_won,
        })
    }
}

/// The rates and base rules of one insurance in one month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub insurance: Insurance,
    pub month: Month,
    pub employee_rate: Rate,
    pub employer_rate: Rate,
    /// Health only: long-term care as a share of each health premium.
    pub long_term_care_rate: Option<Rate>,
    pub base_floor_won: Option<i64>,
    pub base_cap_won: Option<i64>,
    /// The base is truncated to a multiple of this (1 when the insurance does not truncate it).
    pub base_unit_won: i64,
    /// Each premium is truncated to a multiple of this.
    pub premium_unit_won: i64,
}

/// One employee's line: the base and each share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Contribution {
    pub base: i64,
    pub employee: i64,
    pub employer: i64,
    pub long_term_care_employee: i64,
    pub long_term_care_employer: i64,
}

impl Contribution {
    /// What the employee pays, long-term care included.
    #[must_use]
    pub fn employee_total(&self) -> i64 {
        self.employee + self.long_term_care_employee
    }

    /// What the employer pays, long-term care included.
    #[must_use]
    pub fn employer_total(&self) -> i64 {
        self.employer + self.long_term_care_employer
    }
}

impl Schedule {
    /// The contribution base of a month's pay: truncated to the base unit, then held between the floor and the cap.
    /// A month without pay has no base.
    #[must_use]
    pub fn base(&self, monthly_salary: i64) -> i64 {
        if monthly_salary <= 0 {
            return 0;
        }
        let mut base = truncate_to(monthly_salary, self.base_unit_won);
        if let Some(floor) = self.base_floor_won {
            base = base.max(floor);
        }
        if let Some(cap) = self.base_cap_won {
            base = base.min(cap);
        }
        base
    }

    /// The line of an employee paid `monthly_salary` won (0 to [`MONTHLY_SALARY_WON_MAX`]).
    #[must_use]
    pub fn contribution(&self, monthly_salary: i64) -> Contribution {
        let base = self.base(monthly_salary);
        let premium = |rate: Rate, on: i64| truncate_to(rate.of(on), self.premium_unit_won);
        let employee = premium(self.employee_rate, base);
        let employer = premium(self.employer_rate, base);
        let (long_term_care_employee, long_term_care_employer) = match self.long_term_care_rate {
            Some(ltc) => (premium(ltc, employee), premium(ltc, employer)),
            None => (0, 0),
        };
        Contribution { base, employee, employer, long_term_care_employee, long_term_care_employer }
    }
}

#[cfg(test)]
mod tests {
    //! Worked examples computed by hand from `core/data/insurance_rates.csv` (cited as "table: <insurance>
    //! <component> <period>"), whose values are those of `shared/reference/korean-accounting.md` ("[ref]").
    //! Multiplication is exact; "→" is a truncation.

    use super::*;

    fn table() -> RateTable {
        RateTable::builtin().expect("the committed table parses")
    }

    fn month(s: &str) -> Month {
        Month::parse(s).expect(s)
    }

    fn schedule(insurance: Insurance, m: &str) -> Schedule {
        table().schedule(insurance, month(m), &Params::default()).expect("rates in force")
    }

    fn rate(s: &str) -> Rate {
        Rate::parse_percent(s).expect(s)
    }

    #[test]
    fn the_committed_table_parses_and_cites_a_source_on_every_row() {
        let t = table();
        assert!(t.rows().len() >= 25, "{} rows", t.rows().len());
        assert!(t.rows().iter().all(|r| !r.source.is_empty()));
        // [ref]'s published values are in it as written.
        let m = month("2025-03");
        assert_eq!(t.value(Insurance::NationalPension, Component::EmployeeRate, m), Ok(Value::Rate(rate("4.5%"))));
        assert_eq!(t.value(Insurance::Health, Component::EmployerRate, m), Ok(Value::Rate(rate("3.545%"))));
        assert_eq!(t.value(Insurance::Health, Component::LongTermCareRate, m), Ok(Value::Rate(rate("12.95%"))));
        assert_eq!(t.value(Insurance::Employment, Component::EmployeeRate, m), Ok(Value::Rate(rate("0.9%"))));
        let m = month("2026-01");
        assert_eq!(t.value(Insurance::NationalPension, Component::EmployerRate, m), Ok(Value::Rate(rate("4.75%"))));
        assert_eq!(t.value(Insurance::Health, Component::EmployeeRate, m), Ok(Value::Rate(rate("3.595%"))));
        assert_eq!(t.value(Insurance::NationalPension, Component::BaseFloorWon, m), Ok(Value::Won(400_000)));
        assert_eq!(t.value(Insurance::NationalPension, Component::BaseCapWon, m), Ok(Value::Won(6_370_000)));
    }

    #[test]
    fn percents_parse_exactly_and_print_back() {
        assert_eq!(rate("4.5%").ppm(), 45_000);
        assert_eq!(rate("3.545%").ppm(), 35_450);
        assert_eq!(rate("12.95%").ppm(), 129_500);
        assert_eq!(rate("0.9%").ppm(), 9_000);
        assert_eq!(rate("0%").ppm(), 0);
        assert_eq!(rate("100%").ppm(), RATE_PPM_MAX);
        assert_eq!(rate("0.0001%").ppm(), 1);
        for bad in ["4.5", "%", ".5%", "4.%", "4.12345%", "100.01%", "-1%", "1,5%", "1e2%", " 4.5%"] {
            assert_eq!(Rate::parse_percent(bad), None, "{bad}");
        }
        for s in ["4.5%", "3.545%", "12.95%", "0%", "1.75%", "0.0001%"] {
            assert_eq!(rate(s).to_string(), s);
        }
        // 1% of 999 won is 9.99 won → 9.
        assert_eq!(rate("1%").of(999), 9);
        assert_eq!(Rate::from_ppm(RATE_PPM_MAX + 1), None);
    }

    #[test]
    fn truncation_goes_down_to_the_unit() {
        assert_eq!(truncate_to(155_529, 10), 155_520);
        assert_eq!(truncate_to(155_520, 10), 155_520);
        assert_eq!(truncate_to(3_456_789, 1_000), 3_456_000);
        assert_eq!(truncate_to(9, 10), 0);
        assert_eq!(truncate_to(1_234, 1), 1_234);
    }

    #[test]
    fn months_parse_and_bound_their_days() {
        let m = month("2024-02");
        assert_eq!((m.first_day().to_string(), m.last_day().to_string()), ("2024-02-01".into(), "2024-02-29".into()));
        assert_eq!(month("2025-12").last_day().to_string(), "2025-12-31");
        assert_eq!(m.to_string(), "2024-02");
        for bad in ["2025-13", "2025-00", "2025-1", "25-01", "2025/01", "2025-01-01", "1999-12", "2100-01", "", "２０２５-01"] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn national_pension_july_2025_floor_cap_and_truncation() {
        // table: national_pension employee_rate/employer_rate 2025 = 4.5% each ([ref] 2025 column); base_floor_won and
        // base_cap_won from 2025-07 = 400,000 and 6,370,000 ([ref]); base_unit_won = 1,000; premium_unit_won = 10.
        let s = schedule(Insurance::NationalPension, "2025-07");
        // Middle of the range: pay 3,456,789 → base 3,456,000 (1,000-won truncation); 3,456,000 × 4.5% = 155,520.
        let c = s.contribution(3_456_789);
        assert_eq!((c.base, c.employee, c.employer), (3_456_000, 155_520, 155_520));
        // The 10-won truncation: pay 1,001,999 → base 1,001,000; × 4.5% = 45,045 → 45,040.
        let c = s.contribution(1_001_999);
        assert_eq!((c.base, c.employee, c.employer), (1_001_000, 45_040, 45_040));
        // Floor: pay 350,000 → base raised to 400,000; × 4.5% = 18,000.
        let c = s.contribution(350_000);
        assert_eq!((c.base, c.employee, c.employer), (400_000, 18_000, 18_000));
        // Pay 399,999 → truncated to 399,000, then raised to the floor 400,000.
        assert_eq!(s.base(399_999), 400_000);
        // Cap: pay 7,000,000 → base lowered to 6,370,000; × 4.5% = 286,650.
        let c = s.contribution(7_000_000);
        assert_eq!((c.base, c.employee, c.employer), (6_370_000, 286_650, 286_650));
        // Just under the cap: 6,369,999 → 6,369,000; × 4.5% = 286,605 → 286,600.
        assert_eq!(s.contribution(6_369_999).employee, 286_600);
        // No pay, no contribution (no floor applied to a month without pay).
        assert_eq!(s.contribution(0), Contribution::default());
        assert_eq!((c.long_term_care_employee, c.long_term_care_employer), (0, 0));
    }

    #[test]
    fn national_pension_june_versus_july_2025_the_base_change() {
        // table: base_floor_won/base_cap_won 2025-01..2025-06 = 390,000 / 6,170,000 (NPS, July 2024–June 2025);
        // 2025-07.. = 400,000 / 6,370,000 ([ref]). The rate is 4.5% in both months.
        let june = schedule(Insurance::NationalPension, "2025-06");
        let july = schedule(Insurance::NationalPension, "2025-07");
        assert_eq!((june.base_floor_won, june.base_cap_won), (Some(390_000), Some(6_170_000)));
        assert_eq!((july.base_floor_won, july.base_cap_won), (Some(400_000), Some(6_370_000)));
        // Pay 395,500: June base 395,000 (above the 390,000 floor); × 4.5% = 17,775 → 17,770.
        // July base 400,000 (the new floor); × 4.5% = 18,000.
        assert_eq!((june.contribution(395_500).base, june.contribution(395_500).employee), (395_000, 17_770));
        assert_eq!((july.contribution(395_500).base, july.contribution(395_500).employee), (400_000, 18_000));
        // Pay 7,000,000: June base 6,170,000; × 4.5% = 277,650. July base 6,370,000; × 4.5% = 286,650.
        assert_eq!(june.contribution(7_000_000).employer, 277_650);
        assert_eq!(july.contribution(7_000_000).employer, 286_650);
    }

    #[test]
    fn national_pension_december_2025_versus_january_2026_the_rate_change() {
        // table: rate 4.5% in 2025, 4.75% in 2026 ([ref]); the July 2025 floor and cap hold until June 2026.
        // Pay 3,456,789 → base 3,456,000. December: × 4.5% = 155,520. January: × 4.75% = 164,160.
        assert_eq!(schedule(Insurance::NationalPension, "2025-12").contribution(3_456_789).employee, 155_520);
        let jan = schedule(Insurance::NationalPension, "2026-01").contribution(3_456_789);
        assert_eq!((jan.employee, jan.employer), (164_160, 164_160));
        // The cap in January 2026: 6,370,000 × 4.75% = 302,575 → 302,570.
        assert_eq!(schedule(Insurance::NationalPension, "2026-01").contribution(9_999_999).employee, 302_570);
    }

    #[test]
    fn national_pension_june_versus_july_2026_the_base_change() {
        // table: 4.75% in 2026 ([ref]); floor and cap 400,000 / 6,370,000 until June 2026 ([ref]), 410,000 / 6,590,000
        // from July 2026 (NPS).
        let june = schedule(Insurance::NationalPension, "2026-06");
        let july = schedule(Insurance::NationalPension, "2026-07");
        assert_eq!((july.base_floor_won, july.base_cap_won), (Some(410_000), Some(6_590_000)));
        // Pay 405,500: June base 405,000; × 4.75% = 19,237.5 → 19,230. July base 410,000 (the floor); × 4.75% = 19,475
        // → 19,470.
        assert_eq!((june.contribution(405_500).base, june.contribution(405_500).employee), (405_000, 19_230));
        assert_eq!((july.contribution(405_500).base, july.contribution(405_500).employee), (410_000, 19_470));
        // Pay 7,000,000: June 6,370,000 × 4.75% = 302,575 → 302,570; July 6,590,000 × 4.75% = 313,025 → 313,020.
        assert_eq!(june.contribution(7_000_000).employer, 302_570);
        assert_eq!(july.contribution(7_000_000).employer, 313_020);
    }

    #[test]
    fn health_2025_with_long_term_care() {
        // table: health employee_rate/employer_rate 2025 = 3.545% each; long_term_care_rate 2025 = 12.95% of the
        // health premium ([ref]); no base floor, cap or truncation; premium_unit_won = 10.
        let s = schedule(Insurance::Health, "2025-05");
        // Pay 3,456,789: 3,456,789 × 3.545% = 122,543.17 → 122,540 (each share).
        // Long-term care: 122,540 × 12.95% = 15,868.93 → 15,860 (each share).
        let c = s.contribution(3_456_789);
        assert_eq!(
            c,
            Contribution {
                base: 3_456_789,
                employee: 122_540,
                employer: 122_540,
                long_term_care_employee: 15_860,
                long_term_care_employer: 15_860
            }
        );
        assert_eq!((c.employee_total(), c.employer_total()), (138_400, 138_400));
        // Pay 2,500,000: × 3.545% = 88,625 → 88,620; 88,620 × 12.95% = 11,476.29 → 11,470.
        let c = s.contribution(2_500_000);
        assert_eq!((c.employee, c.long_term_care_employee), (88_620, 11_470));
        // No cap in the table: pay 100,000,000 × 3.545% = 3,545,000; × 12.95% = 459,077.5 → 459,070.
        let c = s.contribution(100_000_000);
        assert_eq!((c.base, c.employer, c.long_term_care_employer), (100_000_000, 3_545_000, 459_070));
    }

    #[test]
    fn health_2026_with_the_long_term_care_rate_of_the_2026_notice() {
        // table: health 2026 = 3.595% each ([ref]); long_term_care_rate 2026 = 13.14% of the health premium (the 2026
        // notice [ref] names without its number: 0.9448% of income).
        let s = schedule(Insurance::Health, "2026-01");
        // Pay 3,456,789: × 3.595% = 124,271.56 → 124,270; 124,270 × 13.14% = 16,329.08 → 16,320.
        let c = s.contribution(3_456_789);
        assert_eq!((c.employee, c.employer, c.long_term_care_employee, c.long_term_care_employer), (124_270, 124_270, 16_320, 16_320));
        // Pay 2,500,000: × 3.595% = 89,875 → 89,870; 89,870 × 13.14% = 11,808.92 → 11,800.
        let c = s.contribution(2_500_000);
        assert_eq!((c.employee, c.long_term_care_employee), (89_870, 11_800));
        // December 2025 still charges 2025's rates on the same pay: 122,540 and 15,860 (see health_2025_with_long_term_care).
        let dec = schedule(Insurance::Health, "2025-12").contribution(3_456_789);
        assert_eq!((dec.employee, dec.long_term_care_employee), (122_540, 15_860));
    }

    #[test]
    fn a_pending_row_refuses_its_months_naming_the_notice() {
        // A notice announced but not yet in the table: the month it covers is refused, never computed with a guess.
        let text = format!(
            "{RATE_TABLE_HEADER}\n\
             health,employee_rate,2025-01-01,,3.545%,s\n\
             health,employer_rate,2025-01-01,,3.545%,s\n\
             health,premium_unit_won,2025-01-01,,10,s\n\
             health,long_term_care_rate,2025-01-01,2025-12-31,12.95%,s\n\
             health,long_term_care_rate,2026-01-01,,pending,per the 2026 notice\n"
        );
        let t = RateTable::parse(&text).expect("parses");
        assert!(t.schedule(Insurance::Health, month("2025-12"), &Params::default()).is_ok());
        let e = t.schedule(Insurance::Health, month("2026-01"), &Params::default()).unwrap_err();
        assert_eq!((e.insurance, e.component, e.month), (Insurance::Health, Component::LongTermCareRate, month("2026-01")));
        assert!(e.pending.as_deref().is_some_and(|n| n.contains("per the 2026 notice")), "{e}");
        assert!(e.to_string().contains("health long_term_care_rate for 2026-01"), "{e}");
        assert_eq!(t.value(Insurance::Health, Component::EmployeeRate, month("2026-01")), Ok(Value::Rate(rate("3.545%"))));
    }

    #[test]
    fn employment_by_size_class() {
        // table: employment employee_rate = 0.9% ([ref]); employer_rate_under_150 = 1.15% ([ref], the lower end),
        // priority_support 1.35%, 150_to_999 1.55% (시행령 제12조), 1000_plus 1.75% ([ref], the upper end).
        let t = table();
        let m = month("2025-09");
        let with = |size| t.schedule(Insurance::Employment, m, &Params { employer_size: size, industrial_rate: None }).unwrap();
        // Pay 3,456,789: employee × 0.9% = 31,111.10 → 31,110.
        // Employer: × 1.15% = 39,753.07 → 39,750; × 1.35% = 46,666.65 → 46,660; × 1.55% = 53,580.23 → 53,580;
        // × 1.75% = 60,493.81 → 60,490.
        let expected = [
            (EmployerSize::Under150, 39_750),
            (EmployerSize::PrioritySupport, 46_660),
            (EmployerSize::From150To999, 53_580),
            (EmployerSize::From1000, 60_490),
        ];
        for (size, employer) in expected {
            let c = with(size).contribution(3_456_789);
            assert_eq!((c.base, c.employee, c.employer), (3_456_789, 31_110, employer), "{size:?}");
        }
        // The default class is under 150.
        assert_eq!(t.schedule(Insurance::Employment, m, &Params::default()).unwrap().employer_rate, rate("1.15%"));
        // No base rules: pay 1,001 × 0.9% = 9.009 → 9 → 0 won after the 10-won truncation.
        assert_eq!(with(EmployerSize::Under150).contribution(1_001).employee, 0);
        // The 2026 column is empty in [ref]: the 2025 rows stay in force.
        assert_eq!(t.schedule(Insurance::Employment, month("2026-03"), &Params::default()).unwrap().employee_rate, rate("0.9%"));
    }

    #[test]
    fn industrial_accident_is_employer_only_at_the_industry_rate_or_the_default() {
        // table: industrial_accident employee_rate = 0% ([ref]: employer only); employer_rate_default 2025 = 1.47%.
        let t = table();
        let s = t.schedule(Insurance::IndustrialAccident, month("2025-04"), &Params::default()).unwrap();
        // Pay 3,456,789 × 1.47% = 50,814.79 → 50,810.
        let c = s.contribution(3_456_789);
        assert_eq!((c.base, c.employee, c.employer), (3_456_789, 0, 50_810));
        // An industry's own rate: 0.86% (8,600 ppm): 3,456,789 × 0.86% = 29,728.38 → 29,720.
        let own = Params { industrial_rate: Rate::from_ppm(8_600), ..Params::default() };
        let c = t.schedule(Insurance::IndustrialAccident, month("2025-04"), &own).unwrap().contribution(3_456_789);
        assert_eq!((c.employee, c.employer), (0, 29_720));
        // 2026: the Ministry kept the average at 1.47%, so the default gives the same 50,810; the industry's own rate
        // still wins.
        let c = t.schedule(Insurance::IndustrialAccident, month("2026-02"), &Params::default()).unwrap().contribution(3_456_789);
        assert_eq!((c.employee, c.employer), (0, 50_810));
        assert_eq!(t.schedule(Insurance::IndustrialAccident, month("2026-02"), &own).unwrap().contribution(3_456_789).employer, 29_720);
        // 2027 has no default in the table: refused without the industry's rate.
        let e = t.schedule(Insurance::IndustrialAccident, month("2027-01"), &Params::default()).unwrap_err();
        assert_eq!(e.component, Component::EmployerRateDefault);
    }

    #[test]
    fn months_outside_the_table_are_refused_naming_the_component() {
        let t = table();
        // Before the table starts.
        let e = t.schedule(Insurance::NationalPension, month("2024-12"), &Params::default()).unwrap_err();
        assert_eq!((e.component, e.pending.clone()), (Component::EmployeeRate, None));
        assert_eq!(e.to_string(), "the rate table has no national_pension employee_rate in force for 2024-12");
        // 2027: no National Pension rate at all.
        let e = t.schedule(Insurance::NationalPension, month("2027-01"), &Params::default()).unwrap_err();
        assert_eq!(e.component, Component::EmployeeRate);
    }

    #[test]
    fn malformed_tables_are_refused_with_their_line() {
        let header = RATE_TABLE_HEADER;
        let cases = [
            ("insurance,component\nx", 1, "header"),
            (&*format!("{header}\nhealth,employee_rate,2025-01-01,,3.5%"), 2, "six fields"),
            (&*format!("{header}\ndental,employee_rate,2025-01-01,,3.5%,s"), 2, "unknown insurance"),
            (&*format!("{header}\nhealth,employee_rate,2025-01-02,,3.5%,s"), 2, "first day"),
            (&*format!("{header}\nhealth,employee_rate,2025-01-01,2025-06-29,3.5%,s"), 2, "last day"),
            (&*format!("{header}\nhealth,employee_rate,2025-07-01,2025-06-30,3.5%,s"), 2, "before"),
            (&*format!("{header}\nhealth,employee_rate,2025-01-01,,35000,s"), 2, "percent"),
            (&*format!("{header}\nhealth,premium_unit_won,2025-01-01,,1%,s"), 2, "whole won"),
            (&*format!("{header}\nhealth,premium_unit_won,2025-01-01,,0,s"), 2, "at least 1"),
            (&*format!("{header}\nhealth,employee_rate,2025-01-01,,3.5%,"), 2, "source"),
            (
                &*format!("{header}\nhealth,employee_rate,2025-01-01,2025-12-31,3.5%,s\n# c\nhealth,employee_rate,2025-12-01,,3.6%,s"),
                4,
                "overlaps line 2",
            ),
        ];
        for (text, line, words) in cases {
            let e = RateTable::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.message.contains(words), "{e}");
        }
        // Adjacent periods do not overlap, and a source may hold commas.
        let ok = format!("{header}\nhealth,employee_rate,2025-01-01,2025-06-30,3.5%,a, b\nhealth,employee_rate,2025-07-01,,3.6%,c");
        let t = RateTable::parse(&ok).unwrap();
        assert_eq!(t.rows()[0].source, "a, b");
        assert_eq!(t.value(Insurance::Health, Component::EmployeeRate, month("2025-07")), Ok(Value::Rate(rate("3.6%"))));
    }

    #[test]
    fn the_accrual_accounts_are_in_the_default_chart() {
        let codes: Vec<&str> = crate::chart::DEFAULT_CHART.iter().map(|a| a.code).collect();
        for i in Insurance::ALL {
            let code = i.expense_account_code();
            assert!(code.starts_with("52") && codes.contains(&code), "{i}: {code}");
        }
        for code in [SALARIES_ACCOUNT_CODE, WITHHOLDINGS_ACCOUNT_CODE, ACCRUED_EMPLOYER_ACCOUNT_CODE] {
            assert!(codes.contains(&code), "{code}");
        }
        assert!(WITHHOLDINGS_ACCOUNT_CODE.starts_with("21") && ACCRUED_EMPLOYER_ACCOUNT_CODE.starts_with("21"));
    }

    #[test]
    fn names_round_trip() {
        for i in Insurance::ALL {
            assert_eq!(Insurance::parse(i.as_str()), Some(i));
        }
        for c in Component::ALL {
            assert_eq!(Component::parse(c.as_str()), Some(c));
        }
        assert_eq!(EmployerSize::DEFAULT, EmployerSize::Under150);
    }
}
