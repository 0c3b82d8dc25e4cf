//! `InsuranceEDIService` (`insurance_edi.proto`, no package: the existing Python clients' `insurance_edi_pb2`), on
//! its own listener (`GRPC_EDI_LISTEN`, 127.0.0.1:50052): a company's employees and their pay for one month and one
//! insurance come in; each employee's and the employer's contributions, the stored report's totals and its receipt id
//! go out.
//!
//! A call goes through these steps:
//! 1. the token (accountant or admin, as every write), then `company_id` against the token's company
//!    (PERMISSION_DENIED), then the whole request ([`validate`]: INVALID_ARGUMENT naming every offending field, such
//!    as `employees[3].resident_number`, at most [`FIELD_VIOLATIONS_MAX`] of them);
//! 2. the rates in force for the month from the committed rate table (`kerp_core::insurance`, data in
//!    `core/data/insurance_rates.csv`): a component the table lacks or holds as pending is FAILED_PRECONDITION naming
//!    it, such as the 2026 long-term care rate;
//! 3. the contributions ([`compute`]) by `kerp_core::insurance::Schedule`'s floor, cap and truncation rules;
//! 4. in one transaction: the optional payroll accrual voucher ([`accrual_voucher`], posted by
//!    `kerp_ingest::store::vouchers::post_voucher` exactly as REST posts one, outbox event included), then the report
//!    (status `prepared`) and its lines ([`store`]). Any failure rolls all of it back, so bad input writes nothing.
//!
//! Transmission to the EDI portal is the adapter contract of [`transmit`]; no adapter is built, and reports stay
//! `prepared`.
//!
//! Resident numbers are personal data under PIPA: they are parsed into `kerp_core::resident::ResidentNumber`, which
//! only ever formats masked (`900101-1******`); stored only as AES-256-GCM blobs ([`cipher`], key
//! `RESIDENT_NUMBER_KEY`) beside the masked form; answered masked. The request's `EmployeeData` has a hand-written
//! `Debug` that masks (`build.rs` skips the generated one), violations never repeat a value, and this module logs
//! only counts and ids.

pub mod cipher;
pub mod store;
pub mod transmit;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use kerp_core::auth::Claims;
use kerp_core::insurance::{
    self as rules, Contribution, EmployerSize, Insurance, Month, Params, Rate, RateTable, Schedule, EMPLOYEES_PER_REPORT_MAX,
    MONTHLY_SALARY_WON_MAX, RATE_PPM_MAX,
};
use kerp_core::resident::{self, ResidentNumber};
use kerp_core::telemetry::timed;
use kerp_core::voucher::{self, FieldError, LineInput, ValidVoucher, VoucherInput};
use kerp_ingest::store::vouchers::{self as vouchers_store, Posted};
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use self::cipher::{KeyText, ResidentCipher};
use self::store::{NewReport, StoredLine};
use crate::auth::{self, Access};
use crate::pb::root::insurance_edi_service_server::{InsuranceEdiService, InsuranceEdiServiceServer};
use crate::pb::root::{
    AppliedRates, EmployeeContribution, EmployeeData, EmployerSizeClass, ReportStatus, ReportType, SubmitReportRequest,
    SubmitReportResponse,
};
use crate::{AppState, Error, Failure, REQUEST_MESSAGE_BYTES_MAX, RESPONSE_MESSAGE_BYTES_MAX};

/// `InsuranceEDIService`.
pub const SERVICE_NAME: &str = crate::pb::root::insurance_edi_service_server::SERVICE_NAME;

/// Longest employee id, in characters.
pub const EMPLOYEE_ID_CHARS_MAX: usize = 64;
/// Longest employee name, in characters.
pub const EMPLOYEE_NAME_CHARS_MAX: usize = 100;
/// Most field violations one INVALID_ARGUMENT carries (its message counts the rest). They travel in a trailer, and a
/// report of ten thousand bad lines would otherwise make one of megabytes.
pub const FIELD_VIOLATIONS_MAX: usize = 100;

/// Settings of the insurance-EDI service, part of [`crate::Config`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EdiConfig {
    /// Key that encrypts resident registration numbers at rest (AES-256-GCM): 32 random bytes as 64 hex digits or as
    /// base64 (`head -c 32 /dev/urandom | base64`). Required: grpc-api refuses to start without a valid one, except on
    /// a dev stack (KERP_DEV_STACK), which may leave it unset or use the public sample of .env.sample.
    #[arg(long, env = "RESIDENT_NUMBER_KEY", hide_env_values = true)]
    pub resident_number_key: Option<KeyText>,
}

impl EdiConfig {
    /// The cipher of the configured key.
    ///
    /// # Errors
    /// [`Error::Other`] saying what is wrong with the key (never the key).
    pub fn cipher(&self, dev_stack: bool) -> crate::Result<ResidentCipher> {
        ResidentCipher::from_config(self.resident_number_key.as_ref(), dev_stack).map_err(|e| Error::Other(e.to_string()))
    }
}

/// The request's employee, masked: its `Debug` is written here because the generated one would print the resident
/// number (`build.rs` skips it).
impl fmt::Debug for EmployeeData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmployeeData")
            .field("employee_id", &self.employee_id)
            .field("name", &self.name)
            .field("resident_number", &resident::masked_text(&self.resident_number))
            .field("monthly_salary", &self.monthly_salary)
            .finish()
    }
}

/// The service, with the message limits.
///
/// # Errors
/// A resident-number key the service refuses (see [`EdiConfig`]), or a defect of the committed rate table.
pub fn server(state: AppState) -> crate::Result<InsuranceEdiServiceServer<InsuranceEdi>> {
    let cipher = state.config.insurance_edi.cipher(state.config.dev_stack)?;
    let table = RateTable::builtin().map_err(|e| Error::Other(e.to_string()))?;
    Ok(InsuranceEdiServiceServer::new(InsuranceEdi { state, cipher: Arc::new(cipher), table: Arc::new(table) })
        .max_decoding_message_size(REQUEST_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RESPONSE_MESSAGE_BYTES_MAX))
}

/// The implementation of `InsuranceEDIService`.
pub struct InsuranceEdi {
    state: AppState,
    cipher: Arc<ResidentCipher>,
    table: Arc<RateTable>,
}

// ---------------------------------------------------------------------------------------------------------------------
// Mapping between messages and the rules (no IO)
// ---------------------------------------------------------------------------------------------------------------------

/// The insurance a report type stands for; `None` for unspecified or unknown numbers.
#[must_use]
pub fn insurance_of(report_type: i32) -> Option<Insurance> {
    match ReportType::try_from(report_type).ok()? {
        ReportType::Unspecified => None,
        ReportType::NationalPension => Some(Insurance::NationalPension),
        ReportType::HealthInsurance => Some(Insurance::Health),
        ReportType::EmploymentInsurance => Some(Insurance::Employment),
        ReportType::IndustrialAccident => Some(Insurance::IndustrialAccident),
    }
}

#[must_use]
pub fn report_type_of(insurance: Insurance) -> ReportType {
    match insurance {
        Insurance::NationalPension => ReportType::NationalPension,
        Insurance::Health => ReportType::HealthInsurance,
        Insurance::Employment => ReportType::EmploymentInsurance,
        Insurance::IndustrialAccident => ReportType::IndustrialAccident,
    }
}

/// The size class a message's class stands for: [`EmployerSize::DEFAULT`] when unspecified, `None` for unknown
/// numbers.
#[must_use]
pub fn employer_size_of(class: i32) -> Option<EmployerSize> {
    Some(match EmployerSizeClass::try_from(class).ok()? {
        EmployerSizeClass::Unspecified => EmployerSize::DEFAULT,
        EmployerSizeClass::Under150 => EmployerSize::Under150,
        EmployerSizeClass::PrioritySupport => EmployerSize::PrioritySupport,
        EmployerSizeClass::From150To999 => EmployerSize::From150To999,
        EmployerSizeClass::From1000 => EmployerSize::From1000,
    })
}

#[must_use]
pub fn size_class_of(size: EmployerSize) -> EmployerSizeClass {
    match size {
        EmployerSize::Under150 => EmployerSizeClass::Under150,
        EmployerSize::PrioritySupport => EmployerSizeClass::PrioritySupport,
        EmployerSize::From150To999 => EmployerSizeClass::From150To999,
        EmployerSize::From1000 => EmployerSizeClass::From1000,
    }
}

/// A request that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidReport {
    pub insurance: Insurance,
    pub month: Month,
    pub params: Params,
    pub employees: Vec<ValidEmployee>,
    pub post_accrual_voucher: bool,
}

/// One employee of a [`ValidReport`]. Its `Debug` shows the resident number masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEmployee {
    pub employee_id: String,
    pub name: String,
    pub resident_number: ResidentNumber,
    pub monthly_salary: i64,
}

/// The request's company: a UUID.
///
/// # Errors
/// INVALID_ARGUMENT on `company_id`.
pub fn company_id(raw: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(raw.trim()).map_err(|_| Failure::invalid(vec![FieldError::new("company_id", "must be the company's UUID")]))
}

/// INVALID_ARGUMENT with at most [`FIELD_VIOLATIONS_MAX`] of `violations`, its message counting the rest.
#[must_use]
pub fn invalid(mut violations: Vec<FieldError>) -> Failure {
    let total = violations.len();
    violations.truncate(FIELD_VIOLATIONS_MAX);
    let mut f = Failure::invalid(violations);
    if total > FIELD_VIOLATIONS_MAX {
        f.message.push_str(&format!(" (and {} more; {total} field violations in all)", total - FIELD_VIOLATIONS_MAX));
    }
    f
}

/// A free-text field of an employee, trimmed: present, at most `max` characters, no control characters (Postgres
/// text cannot hold NUL), and nothing shaped like a resident number, which would otherwise be stored in plain.
fn employee_text(errors: &mut Vec<FieldError>, field: String, value: &str, max: usize) -> String {
    let v = value.trim();
    let problem = if v.is_empty() {
        Some("required".to_owned())
    } else if v.chars().count() > max {
        Some(format!("at most {max} characters"))
    } else if v.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else if resident::contains_resident_number_shape(v) {
        Some("must not contain a resident registration number; send it in resident_number".to_owned())
    } else {
        None
    };
    if let Some(message) = problem {
        errors.push(FieldError::new(field, message));
    }
    v.to_owned()
}

/// Checks every field of a request (its `company_id` is checked before, by [`company_id`]) and gathers every
/// violation, named by its path (`employees[3].resident_number`). No message repeats a resident number.
///
/// # Errors
/// INVALID_ARGUMENT with the violations (see [`invalid`]).
pub fn validate(req: &SubmitReportRequest) -> Result<ValidReport, Failure> {
    let mut errors = Vec::new();
    let insurance = insurance_of(req.report_type);
    if insurance.is_none() {
        errors.push(FieldError::new(
            "report_type",
            "must be one of NATIONAL_PENSION, HEALTH_INSURANCE, EMPLOYMENT_INSURANCE, INDUSTRIAL_ACCIDENT",
        ));
    }
    let month = Month::parse(req.report_month.trim());
    if month.is_none() {
        errors.push(FieldError::new(
            "report_month",
            format!("must be a month YYYY-MM from {}-01 to {}-12", rules::REPORT_YEAR_MIN, rules::REPORT_YEAR_MAX),
        ));
    }
    let employer_size = employer_size_of(req.employer_size_class).unwrap_or_else(|| {
        errors.push(FieldError::new("employer_size_class", "unknown size class"));
        EmployerSize::DEFAULT
    });
    let industrial_rate = match req.industrial_accident_rate_ppm {
        0 => None,
        _ if insurance.is_some_and(|i| i != Insurance::IndustrialAccident) => {
            errors.push(FieldError::new("industrial_accident_rate_ppm", "only INDUSTRIAL_ACCIDENT reports take an industry rate"));
            None
        }
        ppm => {
            let rate = u32::try_from(ppm).ok().filter(|p| *p > 0).and_then(Rate::from_ppm);
            if rate.is_none() {
                errors.push(FieldError::new(
                    "industrial_accident_rate_ppm",
                    format!("must be 1 to {RATE_PPM_MAX} parts per million, or 0 for the table's default"),
                ));
            }
            rate
        }
    };

    let n = req.employees.len();
    let mut employees = Vec::with_capacity(n.min(EMPLOYEES_PER_REPORT_MAX));
    if n == 0 {
        errors.push(FieldError::new("employees", "at least one employee"));
    } else if n > EMPLOYEES_PER_REPORT_MAX {
        errors.push(FieldError::new(
            "employees",
            format!("at most {EMPLOYEES_PER_REPORT_MAX} employees per report (EMPLOYEES_PER_REPORT_MAX)"),
        ));
    } else {
        let mut ids: HashMap<String, usize> = HashMap::with_capacity(n);
        let mut numbers: HashMap<[u8; resident::RESIDENT_NUMBER_DIGITS], usize> = HashMap::with_capacity(n);
        for (i, e) in req.employees.iter().enumerate() {
            let at = |field: &str| format!("employees[{i}].{field}");
            let employee_id = employee_text(&mut errors, at("employee_id"), &e.employee_id, EMPLOYEE_ID_CHARS_MAX);
            if !employee_id.is_empty() {
                if let Some(first) = ids.get(&employee_id) {
                    errors.push(FieldError::new(at("employee_id"), format!("the same employee_id as employees[{first}]")));
                } else {
                    ids.insert(employee_id.clone(), i);
                }
            }
            let name = employee_text(&mut errors, at("name"), &e.name, EMPLOYEE_NAME_CHARS_MAX);
            let number = match ResidentNumber::parse(&e.resident_number) {
                Ok(number) => {
                    if let Some(first) = numbers.get(number.expose_digits()) {
                        errors.push(FieldError::new(at("resident_number"), format!("the same resident number as employees[{first}]")));
                    } else {
                        numbers.insert(*number.expose_digits(), i);
                    }
                    if month.is_some_and(|m| number.birth_date() > m.last_day()) {
                        errors.push(FieldError::new(at("resident_number"), "the birth date is after the report month"));
                    }
                    Some(number)
                }
                Err(e) => {
                    errors.push(FieldError::new(at("resident_number"), e.to_string()));
                    None
                }
            };
            if !(0..=MONTHLY_SALARY_WON_MAX).contains(&e.monthly_salary) {
                errors.push(FieldError::new(at("monthly_salary"), format!("must be 0 to {MONTHLY_SALARY_WON_MAX} won")));
            }
            if let Some(resident_number) = number {
                employees.push(ValidEmployee { employee_id, name, resident_number, monthly_salary: e.monthly_salary });
            }
        }
    }
    match (insurance, month) {
        (Some(insurance), Some(month)) if errors.is_empty() => Ok(ValidReport {
            insurance,
            month,
            params: Params { employer_size, industrial_rate },
            employees,
            post_accrual_voucher: req.post_accrual_voucher,
        }),
        _ => Err(invalid(errors)),
    }
}

/// Every employee's line and the report's totals (long-term care included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    pub lines: Vec<Contribution>,
    pub total_employee: i64,
    pub total_employer: i64,
}

/// The lines of `employees` under `schedule`. Sums cannot overflow: [`EMPLOYEES_PER_REPORT_MAX`] lines of at most
/// [`MONTHLY_SALARY_WON_MAX`] won at rates of at most 100% are below 10¹⁴.
#[must_use]
pub fn compute(schedule: &Schedule, employees: &[ValidEmployee]) -> Computed {
    let lines: Vec<Contribution> = employees.iter().map(|e| schedule.contribution(e.monthly_salary)).collect();
    let total_employee = lines.iter().map(Contribution::employee_total).sum();
    let total_employer = lines.iter().map(Contribution::employer_total).sum();
    Computed { lines, total_employee, total_employer }
}

/// The payroll accrual voucher of a report: this insurance's slice of the month's payroll accrual (see
/// `shared/reference/korean-accounting.md`, "Payroll accrual"), dated the month's last day:
/// - Dr 5201 급여 with the employees' share, the part of gross pay withheld for the insurance;
/// - Dr the insurance's employer expense account (`Insurance::expense_account_code`: 5208 세금과공과 for the
///   pension, 5203 복리후생비 for health and long-term care, 5211 보험료 for employment and industrial accident) with the
///   employer's share;
/// - Cr 2104 예수금 (withholdings payable) with the employees' share;
/// - Cr 2107 미지급비용 (accrued expenses) with the employer's share, the accrued employer insurance.
///
/// The rest of the month's payroll (net pay to the bank, income tax withheld) is the payroll voucher's, which debits
/// 5201 with the rest of gross pay. A side whose share is zero has no lines (industrial accident has no employee
/// share); a report whose shares are both zero has no voucher. No line carries a name or a resident number.
#[must_use]
pub fn accrual_voucher(
    insurance: Insurance,
    month: Month,
    receipt: Uuid,
    total_employee: i64,
    total_employer: i64,
) -> Option<VoucherInput> {
    let line = |code: &str, debit: i64, credit: i64, description: &str| LineInput {
        account_code: Some(code.to_owned()),
        debit_amount: Some(debit),
        credit_amount: Some(credit),
        description: Some(description.to_owned()),
        account_id: None,
        partner_id: None,
        department_id: None,
    };
    let mut lines = Vec::new();
    if total_employee > 0 {
        lines.push(line(rules::SALARIES_ACCOUNT_CODE, total_employee, 0, "근로자 부담분 (급여 공제)"));
    }
    if total_employer > 0 {
        lines.push(line(insurance.expense_account_code(), total_employer, 0, "사업주 부담분"));
    }
    if total_employee > 0 {
        lines.push(line(rules::WITHHOLDINGS_ACCOUNT_CODE, 0, total_employee, "근로자 부담분 예수금"));
    }
    if total_employer > 0 {
        lines.push(line(rules::ACCRUED_EMPLOYER_ACCOUNT_CODE, 0, total_employer, "사업주 부담분 미지급"));
    }
    if lines.is_empty() {
        return None;
    }
    Some(VoucherInput {
        voucher_date: month.last_day().to_string(),
        voucher_type: Some("general".to_owned()),
        description: Some(format!("{} {month} 보험료 발생 (EDI 접수 {receipt})", insurance.name_ko())),
        status: None,
        lines,
    })
}

/// The accounts an accrual voucher of `insurance` posts to.
#[must_use]
pub fn accrual_account_codes(insurance: Insurance) -> [&'static str; 4] {
    [rules::SALARIES_ACCOUNT_CODE, insurance.expense_account_code(), rules::WITHHOLDINGS_ACCOUNT_CODE, rules::ACCRUED_EMPLOYER_ACCOUNT_CODE]
}

/// The rates a report applied, as answered.
#[must_use]
pub fn applied_rates(s: &Schedule, size: EmployerSize) -> AppliedRates {
    let ppm = |r: Rate| i32::try_from(r.ppm()).unwrap_or(i32::MAX);
    AppliedRates {
        employee_rate_ppm: ppm(s.employee_rate),
        employer_rate_ppm: ppm(s.employer_rate),
        long_term_care_rate_ppm: s.long_term_care_rate.map(ppm).unwrap_or_default(),
        base_floor: s.base_floor_won.unwrap_or_default(),
        base_cap: s.base_cap_won.unwrap_or_default(),
        employer_size_class: size_class_of(size).into(),
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The call
// ---------------------------------------------------------------------------------------------------------------------

/// The failure an error of the store answers with (see [`Error::into_failure`]).
async fn failure(e: impl Into<Error>) -> Failure {
    e.into().into_failure().await
}

impl InsuranceEdi {
    /// The transaction of a submission: the accrual voucher when asked for (its accounts checked first), then the
    /// report and its lines. Returns the posted voucher. On any failure the transaction is dropped, which rolls it
    /// back, so nothing of the submission stays.
    async fn write(&self, claims: &Claims, report: NewReport<'_>, voucher: Option<&ValidVoucher>) -> Result<Option<Posted>, Failure> {
        let company = claims.company_id;
        let mut tx = match self.state.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return Err(failure(e).await),
        };
        let posted = match voucher {
            None => None,
            Some(v) => {
                let codes = accrual_account_codes(report.schedule.insurance);
                let missing = match store::missing_accounts(&mut tx, company, &codes).await {
                    Ok(missing) => missing,
                    Err(e) => return Err(failure(e).await),
                };
                if !missing.is_empty() {
                    return Err(Failure::new(
                        Code::FailedPrecondition,
                        format!(
                            "the accrual voucher posts to accounts {} that the company does not have active; add or reactivate \
                             them (POST /api/v1/accounts with the default chart's code and name), or submit without \
                             post_accrual_voucher",
                            missing.join(", ")
                        ),
                    ));
                }
                let topic = &self.state.config.voucher_topic;
                match timed("post_voucher", vouchers_store::post_voucher(&mut tx, company, claims.sub, topic, v)).await {
                    Ok(posted) => Some(posted),
                    Err(e) => return Err(failure(e).await.under("accrual_voucher")),
                }
            }
        };
        let report = NewReport { voucher_id: posted.as_ref().map(|p| p.id), ..report };
        if let Err(e) = timed("insert_insurance_report", store::insert_report(&mut tx, &report)).await {
            return Err(failure(e).await);
        }
        match tx.commit().await {
            Ok(()) => Ok(posted),
            Err(e) => Err(failure(e).await),
        }
    }
}

#[tonic::async_trait]
impl InsuranceEdiService for InsuranceEdi {
    async fn submit_report(&self, request: Request<SubmitReportRequest>) -> Result<Response<SubmitReportResponse>, Status> {
        let claims = auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Write)?;
        let req = request.into_inner();
        let company = company_id(&req.company_id)?;
        auth::same_company(&claims, company)?;
        let valid = validate(&req)?;
        drop(req);
        let schedule = self
            .table
            .schedule(valid.insurance, valid.month, &valid.params)
            .map_err(|missing| Status::failed_precondition(missing.to_string()))?;
        let computed = compute(&schedule, &valid.employees);

        let receipt = Uuid::new_v4();
        let mut lines = Vec::with_capacity(valid.employees.len());
        for (e, contribution) in valid.employees.iter().zip(&computed.lines) {
            let resident_number_encrypted = self.cipher.encrypt(company, &e.resident_number).map_err(|err| {
                tracing::error!(error = %err, "a resident number could not be encrypted");
                Status::from(Failure::internal())
            })?;
            lines.push(StoredLine {
                employee_id: e.employee_id.clone(),
                name: e.name.clone(),
                resident_number_encrypted,
                resident_number_masked: e.resident_number.masked(),
                monthly_salary: e.monthly_salary,
                contribution: *contribution,
            });
        }
        let voucher = if valid.post_accrual_voucher {
            accrual_voucher(valid.insurance, valid.month, receipt, computed.total_employee, computed.total_employer)
        } else {
            None
        };
        let voucher = match voucher.map(|v| voucher::validate(&v)) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(errors)) => {
                // The voucher is built here from checked totals; a refusal is a defect of this module.
                tracing::error!(?errors, "the accrual voucher does not validate");
                return Err(Failure::internal().into());
            }
        };
        let report = NewReport {
            id: receipt,
            company_id: company,
            created_by: claims.sub,
            schedule: &schedule,
            employer_size: valid.params.employer_size,
            lines: &lines,
            total_employee: computed.total_employee,
            total_employer: computed.total_employer,
            voucher_id: None,
        };
        let posted = self.write(&claims, report, voucher.as_ref()).await?;
        tracing::info!(
            company = %company,
            receipt = %receipt,
            report_type = valid.insurance.as_str(),
            month = %valid.month,
            employees = lines.len(),
            voucher = ?posted.as_ref().map(|p| p.id),
            "insurance report prepared"
        );

        let contributions = valid
            .employees
            .iter()
            .zip(&computed.lines)
            .map(|(e, c)| EmployeeContribution {
                employee_id: e.employee_id.clone(),
                name: e.name.clone(),
                resident_number_masked: e.resident_number.masked(),
                monthly_salary: e.monthly_salary,
                contribution_base: c.base,
                employee_contribution: c.employee,
                employer_contribution: c.employer,
                long_term_care_employee: c.long_term_care_employee,
                long_term_care_employer: c.long_term_care_employer,
            })
            .collect();
        Ok(Response::new(SubmitReportResponse {
            receipt_id: receipt.to_string(),
            status: ReportStatus::Prepared.into(),
            report_type: report_type_of(valid.insurance).into(),
            report_month: valid.month.to_string(),
            employee_count: i32::try_from(lines.len()).unwrap_or(i32::MAX),
            total_employee_contribution: computed.total_employee,
            total_employer_contribution: computed.total_employer,
            total_contribution: computed.total_employee + computed.total_employer,
            contributions,
            voucher_id: posted.map(|p| p.id.to_string()).unwrap_or_default(),
            rates: Some(applied_rates(&schedule, valid.params.employer_size)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn employee(id: &str, number: &str, salary: i64) -> EmployeeData {
        EmployeeData { employee_id: id.into(), name: format!("직원 {id}"), resident_number: number.into(), monthly_salary: salary }
    }

    fn request(report_type: ReportType, month: &str, employees: Vec<EmployeeData>) -> SubmitReportRequest {
        SubmitReportRequest {
            company_id: Uuid::new_v4().to_string(),
            report_type: report_type.into(),
            report_month: month.into(),
            employees,
            ..Default::default()
        }
    }

    fn fields(f: &Failure) -> Vec<&str> {
        f.violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn a_good_request_validates() {
        let r = request(ReportType::NationalPension, "2025-07", vec![employee("E1", "900101-1234567", 3_000_000)]);
        let v = validate(&r).unwrap();
        assert_eq!((v.insurance, v.month.to_string()), (Insurance::NationalPension, "2025-07".into()));
        assert_eq!(v.params, Params::default());
        assert_eq!(v.employees[0].resident_number.masked(), "900101-1******");
        assert!(!format!("{v:?}").contains("234567"), "the valid report's Debug is masked");
    }

    #[test]
    fn every_bad_field_is_named_and_no_value_is_repeated() {
        let mut r = request(
            ReportType::Unspecified,
            "2025-13",
            vec![
                employee("E1", "900101-1234567", 1),
                employee("E1", "900101-1234567", -1),
                employee("", "000229-1987654", 1),
                employee("E4", "9001011234", MONTHLY_SALARY_WON_MAX + 1),
                EmployeeData { employee_id: "E5".into(), name: "a\0b".into(), resident_number: "250101-3123456".into(), monthly_salary: 1 },
                EmployeeData {
                    employee_id: "850505-1231231".into(),
                    name: " ".into(),
                    resident_number: "850505-2231231".into(),
                    monthly_salary: 1,
                },
            ],
        );
        r.employer_size_class = 99;
        r.industrial_accident_rate_ppm = -5;
        let f = validate(&r).unwrap_err();
        assert_eq!(f.code, Code::InvalidArgument);
        assert_eq!(
            fields(&f),
            [
                "report_type",
                "report_month",
                "employer_size_class",
                "industrial_accident_rate_ppm",
                "employees[1].employee_id",
                "employees[1].resident_number",
                "employees[1].monthly_salary",
                "employees[2].employee_id",
                "employees[2].resident_number",
                "employees[3].resident_number",
                "employees[3].monthly_salary",
                "employees[4].name",
                "employees[5].employee_id",
                "employees[5].name",
            ]
        );
        for plain in ["1234567", "987654", "9001011234", "1231231", "2231231"] {
            assert!(!f.message.contains(plain), "{plain} in {}", f.message);
        }
        let msg = |field: &str| f.violations.iter().find(|v| v.field == field).map(|v| v.message.clone()).unwrap();
        assert_eq!(msg("employees[1].resident_number"), "the same resident number as employees[0]");
        assert!(msg("employees[2].resident_number").contains("1900s"));
        assert!(msg("employees[5].employee_id").contains("resident registration number"));
        // The report month is invalid, so the 2025 birth date of employees[4] is not compared with it.
        let mut r = request(ReportType::NationalPension, "2024-12", vec![employee("E1", "250101-3123456", 1)]);
        assert_eq!(fields(&validate(&r).unwrap_err()), ["employees[0].resident_number"]);
        r.report_month = "2025-01".into();
        assert!(validate(&r).is_ok(), "born in the report month");
    }

    #[test]
    fn an_industry_rate_belongs_to_industrial_accident_reports() {
        let mut r = request(ReportType::IndustrialAccident, "2025-07", vec![employee("E1", "900101-1234567", 1)]);
        r.industrial_accident_rate_ppm = 8_600;
        assert_eq!(validate(&r).unwrap().params.industrial_rate, Rate::from_ppm(8_600));
        r.industrial_accident_rate_ppm = i32::try_from(RATE_PPM_MAX).unwrap() + 1;
        assert_eq!(fields(&validate(&r).unwrap_err()), ["industrial_accident_rate_ppm"]);
        r.report_type = ReportType::HealthInsurance.into();
        r.industrial_accident_rate_ppm = 8_600;
        assert_eq!(fields(&validate(&r).unwrap_err()), ["industrial_accident_rate_ppm"]);
        r.report_type = ReportType::EmploymentInsurance.into();
        r.industrial_accident_rate_ppm = 0;
        r.employer_size_class = EmployerSizeClass::From1000.into();
        assert_eq!(validate(&r).unwrap().params.employer_size, EmployerSize::From1000);
    }

    #[test]
    fn employee_counts_are_bounded_and_violations_capped() {
        let r = request(ReportType::NationalPension, "2025-07", Vec::new());
        assert_eq!(fields(&validate(&r).unwrap_err()), ["employees"]);
        let many = (0..=EMPLOYEES_PER_REPORT_MAX).map(|i| employee(&format!("E{i}"), "900101-1234567", 1)).collect();
        assert_eq!(fields(&validate(&request(ReportType::NationalPension, "2025-07", many)).unwrap_err()), ["employees"]);
        let bad: Vec<EmployeeData> = (0..300).map(|i| employee(&format!("E{i}"), "bad", 1)).collect();
        let f = validate(&request(ReportType::NationalPension, "2025-07", bad)).unwrap_err();
        assert_eq!(f.violations.len(), FIELD_VIOLATIONS_MAX);
        assert!(f.message.ends_with("(and 200 more; 300 field violations in all)"), "{}", f.message);
    }

    #[test]
    fn the_request_debug_is_masked() {
        let r = request(ReportType::NationalPension, "2025-07", vec![employee("E1", "900101-1234567", 1), employee("E2", "9001", 1)]);
        let shown = format!("{r:?}");
        assert!(shown.contains("900101-1******") && shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("1234567"), "{shown}");
    }

    #[test]
    fn enums_map_both_ways() {
        for i in Insurance::ALL {
            assert_eq!(insurance_of(report_type_of(i).into()), Some(i));
        }
        assert_eq!(insurance_of(0), None);
        assert_eq!(insurance_of(42), None);
        for s in EmployerSize::ALL {
            assert_eq!(employer_size_of(size_class_of(s).into()), Some(s));
        }
        assert_eq!(employer_size_of(0), Some(EmployerSize::DEFAULT));
        assert_eq!(employer_size_of(9), None);
        assert!(company_id("not-a-uuid").is_err());
    }

    #[test]
    fn totals_and_the_accrual_voucher_balance() {
        // Health, May 2025 (table: health 3.545% + 3.545%, long-term care 12.95%): pay 3,456,789 gives 122,540 +
        // 15,860 a side; pay 2,500,000 gives 88,620 + 11,470 a side (see kerp_core::insurance's worked examples).
        let table = RateTable::builtin().unwrap();
        let month = Month::parse("2025-05").unwrap();
        let s = table.schedule(Insurance::Health, month, &Params::default()).unwrap();
        let r = request(
            ReportType::HealthInsurance,
            "2025-05",
            vec![employee("E1", "900101-1234567", 3_456_789), employee("E2", "950505-2345678", 2_500_000)],
        );
        let c = compute(&s, &validate(&r).unwrap().employees);
        // 138,400 + 100,090 = 238,490 a side.
        assert_eq!((c.total_employee, c.total_employer), (238_490, 238_490));
        let receipt = Uuid::new_v4();
        let v =
            voucher::validate(&accrual_voucher(Insurance::Health, month, receipt, c.total_employee, c.total_employer).unwrap()).unwrap();
        assert_eq!(v.voucher_date.to_string(), "2025-05-31");
        assert_eq!(v.total, 476_980);
        let sides: Vec<(String, i64, i64)> = v.lines.iter().map(|l| (format!("{:?}", l.account), l.debit, l.credit)).collect();
        assert_eq!(
            sides,
            [
                ("Code(\"5201\")".to_owned(), 238_490, 0),
                ("Code(\"5203\")".to_owned(), 238_490, 0),
                ("Code(\"2104\")".to_owned(), 0, 238_490),
                ("Code(\"2107\")".to_owned(), 0, 238_490),
            ]
        );
        assert!(v.description.contains(&receipt.to_string()));
        // Industrial accident has no employee share: two lines. Nothing at all: no voucher.
        let v = accrual_voucher(Insurance::IndustrialAccident, month, receipt, 0, 50_810).unwrap();
        assert_eq!(v.lines.len(), 2);
        assert_eq!(v.lines[0].account_code.as_deref(), Some("5211"));
        assert!(accrual_voucher(Insurance::NationalPension, month, receipt, 0, 0).is_none());
    }
}
