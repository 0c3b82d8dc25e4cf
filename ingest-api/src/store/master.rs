//! Postgres reads and writes of master data: partners, departments, accounts beyond the seeded chart, users and the
//! company's settings. Every write queues, in the same transaction, the event that carries the row's new state
//! (`PartnersChanged`, `DepartmentsChanged`, `AccountsChanged`, `UsersChanged`, `CompanyChanged`), so the reports learn
//! current names from the topic and never read Postgres.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kerp_core::auth::Role;
use kerp_core::master::{PartnerType, ValidAccount, ValidAccountUpdate, ValidCompanyUpdate, ValidDepartment, ValidPartner, ValidUser};
use kerp_schemas::{
    AccountState, AccountsChanged, CompanyChanged, DepartmentState, DepartmentsChanged, PartnerState, PartnersChanged, UserState,
    UsersChanged,
};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::{enqueue, page_total, Account};
use crate::partner_cache::{self, CompanyPartners, PartnerCache, SearchablePartner, Selection, PARTNER_CACHE_COMPANY_ROWS_MAX};
use crate::Result;

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct Partner {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub business_number: Option<String>,
    pub partner_type: PartnerType,
    pub representative: String,
    pub address: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PARTNER_COLUMNS: &str = "id, code, name, business_number, partner_type, representative, address, is_active, created_at, updated_at";

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct Department {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct Company {
    pub id: Uuid,
    pub name: String,
    pub business_number: Option<String>,
    pub fiscal_start_month: i16,
    pub created_at: DateTime<Utc>,
}

/// Filters of the partner list, already checked.
#[derive(Debug, Clone, Default)]
pub struct PartnerFilter {
    /// The search term as the client typed it, trimmed: what [`crate::partner_cache`] matches.
    pub term: Option<String>,
    /// `term` as an `ILIKE` pattern matched against name and code, case-insensitively (see
    /// `kerp_core::master::like_pattern`): what the SQL matches.
    pub pattern: Option<String>,
    pub partner_type: Option<PartnerType>,
    pub is_active: Option<bool>,
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

async fn partner_changed(tx: &mut PgConnection, company_id: Uuid, topic: &str, p: &Partner) -> Result<()> {
    let event = PartnersChanged {
        event_id: Uuid::new_v4(),
        company_id,
        changed_at: now_micros(),
        partners: vec![PartnerState {
            partner_id: p.id,
            code: p.code.clone(),
            name: p.name.clone(),
            business_number: p.business_number.clone(),
            partner_type: p.partner_type.as_str().to_owned(),
            representative: p.representative.clone(),
            address: p.address.clone(),
            is_active: p.is_active,
        }],
    };
    enqueue(tx, company_id, topic, kerp_schemas::encode_partners_changed(&event)?).await
}

/// Creates a partner and queues its event, inside the caller's transaction.
///
/// # Errors
/// 409 for a code or business number the company already has (constraint mapping), database errors.
pub async fn create_partner(tx: &mut PgConnection, company_id: Uuid, topic: &str, p: &ValidPartner) -> Result<Partner> {
    let row: Partner = sqlx::query_as(&format!(
        "INSERT INTO partners (id, company_id, code, name, business_number, partner_type, representative, address, is_active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {PARTNER_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(company_id)
    .bind(&p.code)
    .bind(&p.name)
    .bind(&p.business_number)
    .bind(p.partner_type)
    .bind(&p.representative)
    .bind(&p.address)
    .bind(p.is_active)
    .fetch_one(&mut *tx)
    .await?;
    partner_changed(tx, company_id, topic, &row).await?;
    Ok(row)
}

/// Replaces a partner's fields and queues its event; `None` when the company has no such partner.
///
/// # Errors
/// 409 for a code or business number another partner has, database errors.
pub async fn update_partner(pool: &PgPool, company_id: Uuid, topic: &str, id: Uuid, p: &ValidPartner) -> Result<Option<Partner>> {
    let mut tx = pool.begin().await?;
    let row: Option<Partner> = sqlx::query_as(&format!(
        "UPDATE partners SET code = $3, name = $4, business_number = $5, partner_type = $6, representative = $7,
                             address = $8, is_active = $9, updated_at = now()
         WHERE company_id = $1 AND id = $2 RETURNING {PARTNER_COLUMNS}"
    ))
    .bind(company_id)
    .bind(id)
    .bind(&p.code)
    .bind(&p.name)
    .bind(&p.business_number)
    .bind(p.partner_type)
    .bind(&p.representative)
    .bind(&p.address)
    .bind(p.is_active)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &row {
        partner_changed(&mut tx, company_id, topic, row).await?;
        tx.commit().await?;
    }
    Ok(row)
}

/// Switches a partner on or off and queues its event; `None` when the company has no such partner. A deactivated
/// partner keeps its history but cannot be used on new lines or invoices.
///
/// # Errors
/// Database errors.
pub async fn set_partner_active(pool: &PgPool, company_id: Uuid, topic: &str, id: Uuid, active: bool) -> Result<Option<Partner>> {
    let mut tx = pool.begin().await?;
    let row: Option<Partner> = sqlx::query_as(&format!(
        "UPDATE partners SET is_active = $3, updated_at = now() WHERE company_id = $1 AND id = $2 RETURNING {PARTNER_COLUMNS}"
    ))
    .bind(company_id)
    .bind(id)
    .bind(active)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &row {
        partner_changed(&mut tx, company_id, topic, row).await?;
        tx.commit().await?;
    }
    Ok(row)
}

/// One partner of the company, or `None` (also for another company's partner).
///
/// # Errors
/// Database errors.
pub async fn partner(pool: &PgPool, company_id: Uuid, id: Uuid) -> Result<Option<Partner>> {
    Ok(sqlx::query_as(&format!("SELECT {PARTNER_COLUMNS} FROM partners WHERE company_id = $1 AND id = $2"))
        .bind(company_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The filter of the partner list and search: a company's partners, by a name or code pattern (`$2`, an ILIKE pattern
/// from `q`, matched case-insensitively as ILIKE would against the lowercase kept by migration 0011), type and state.
/// Public so that a test can read its plan at 10,000 partners.
pub const PARTNER_LIST_WHERE: &str =
    "WHERE company_id = $1 AND ($2::text IS NULL OR name_lower LIKE lower($2) OR code_lower LIKE lower($2))
                         AND ($3::text IS NULL OR partner_type = $3) AND ($4::bool IS NULL OR is_active = $4)";

/// The version of company `$1`'s partners (migration 0012), 0 if none has changed since that migration.
const PARTNER_VERSION: &str = "coalesce((SELECT version FROM partner_versions WHERE company_id = $1), 0)";

/// One page of the company's partners ordered by code, and how many match in all.
///
/// Served from `cache` while it holds the company's partners at the version Postgres has now (see
/// [`crate::partner_cache`]); otherwise the company's partners are loaded into it first. A company with more than
/// [`PARTNER_CACHE_COMPANY_ROWS_MAX`] partners is listed by SQL.
///
/// # Errors
/// Database errors.
pub async fn list_partners(
    pool: &PgPool,
    cache: &PartnerCache,
    company_id: Uuid,
    f: &PartnerFilter,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Partner>, u64)> {
    // The term is lowercased by Postgres's lower(), the function that made name_lower and code_lower, in the same
    // round trip as the version: Rust's to_lowercase() need not agree with the database's locale on every letter.
    let (version, term_lower): (i64, Option<String>) =
        sqlx::query_as(&format!("SELECT {PARTNER_VERSION}, lower($2::text)")).bind(company_id).bind(&f.term).fetch_one(pool).await?;
    let held = match cache.get(company_id, version) {
        Some(held) => {
            metrics::counter!("kerp_partner_cache_requests_total", "result" => "hit").increment(1);
            held
        }
        None => {
            metrics::counter!("kerp_partner_cache_requests_total", "result" => "miss").increment(1);
            let loaded = Arc::new(load_partners(pool, company_id).await?);
            cache.put(company_id, Arc::clone(&loaded));
            loaded
        }
    };
    match &held.rows {
        Some(rows) => {
            let selection = Selection { term_lower: term_lower.as_deref(), partner_type: f.partner_type, is_active: f.is_active };
            Ok(partner_cache::select(rows, selection, limit, offset))
        }
        None => list_partners_sql(pool, company_id, f, limit, offset).await,
    }
}

/// All of a company's partners in `ORDER BY code`, with their version, read in one snapshot so that the rows are
/// the ones of that version; `rows` is `None` past [`PARTNER_CACHE_COMPANY_ROWS_MAX`]. The version may be newer than
/// the one the caller read (a change committed in between); these rows are then the newer ones, and correct.
async fn load_partners(pool: &PgPool, company_id: Uuid) -> Result<CompanyPartners> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let version: i64 = sqlx::query_scalar(&format!("SELECT {PARTNER_VERSION}")).bind(company_id).fetch_one(&mut *tx).await?;
    let rows: Vec<HeldPartner> = sqlx::query_as(&format!(
        "SELECT {PARTNER_COLUMNS}, name_lower, code_lower FROM partners WHERE company_id = $1 ORDER BY code LIMIT $2"
    ))
    .bind(company_id)
    .bind(i64::try_from(PARTNER_CACHE_COMPANY_ROWS_MAX + 1).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = (rows.len() <= PARTNER_CACHE_COMPANY_ROWS_MAX).then(|| {
        rows.into_iter().map(|r| SearchablePartner { partner: r.partner, name_lower: r.name_lower, code_lower: r.code_lower }).collect()
    });
    Ok(CompanyPartners { version, rows })
}

#[derive(FromRow)]
struct HeldPartner {
    #[sqlx(flatten)]
    partner: Partner,
    name_lower: String,
    code_lower: String,
}

/// One page of the company's partners ordered by code, and the total count (see [`super::Counted`]), by SQL.
async fn list_partners_sql(pool: &PgPool, company_id: Uuid, f: &PartnerFilter, limit: u32, offset: u64) -> Result<(Vec<Partner>, u64)> {
    const WHERE: &str = PARTNER_LIST_WHERE;
    let kind = f.partner_type.map(PartnerType::as_str);
    let rows = sqlx::query_as(&format!(
        "SELECT {PARTNER_COLUMNS}, count(*) OVER () AS total FROM partners {WHERE} ORDER BY code LIMIT $5 OFFSET $6"
    ))
    .bind(company_id)
    .bind(&f.pattern)
    .bind(kind)
    .bind(f.is_active)
    .bind(i64::from(limit))
    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let count = format!("SELECT count(*) FROM partners {WHERE}");
    page_total(rows, offset, sqlx::query_scalar(&count).bind(company_id).bind(&f.pattern).bind(kind).bind(f.is_active).fetch_one(pool))
        .await
}

const DEPARTMENT_COLUMNS: &str = "id, code, name, is_active, created_at, updated_at";

async fn department_changed(tx: &mut PgConnection, company_id: Uuid, topic: &str, d: &Department) -> Result<()> {
    let event = DepartmentsChanged {
        event_id: Uuid::new_v4(),
        company_id,
        changed_at: now_micros(),
        departments: vec![DepartmentState { department_id: d.id, code: d.code.clone(), name: d.name.clone(), is_active: d.is_active }],
    };
    enqueue(tx, company_id, topic, kerp_schemas::encode_departments_changed(&event)?).await
}

/// Creates a department and queues its event, inside the caller's transaction.
///
/// # Errors
/// 409 for a code the company already has, database errors.
pub async fn create_department(tx: &mut PgConnection, company_id: Uuid, topic: &str, d: &ValidDepartment) -> Result<Department> {
    let row: Department = sqlx::query_as(&format!(
        "INSERT INTO departments (id, company_id, code, name, is_active) VALUES ($1, $2, $3, $4, $5) RETURNING {DEPARTMENT_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(company_id)
    .bind(&d.code)
    .bind(&d.name)
    .bind(d.is_active)
    .fetch_one(&mut *tx)
    .await?;
    department_changed(tx, company_id, topic, &row).await?;
    Ok(row)
}

/// Replaces a department's code, name and state and queues its event; `None` when the company has no such department.
///
/// # Errors
/// 409 for a code another department has, database errors.
pub async fn update_department(pool: &PgPool, company_id: Uuid, topic: &str, id: Uuid, d: &ValidDepartment) -> Result<Option<Department>> {
    let mut tx = pool.begin().await?;
    let row: Option<Department> = sqlx::query_as(&format!(
        "UPDATE departments SET code = $3, name = $4, is_active = $5, updated_at = now()
         WHERE company_id = $1 AND id = $2 RETURNING {DEPARTMENT_COLUMNS}"
    ))
    .bind(company_id)
    .bind(id)
    .bind(&d.code)
    .bind(&d.name)
    .bind(d.is_active)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &row {
        department_changed(&mut tx, company_id, topic, row).await?;
        tx.commit().await?;
    }
    Ok(row)
}

/// One department of the company, or `None`.
///
/// # Errors
/// Database errors.
pub async fn department(pool: &PgPool, company_id: Uuid, id: Uuid) -> Result<Option<Department>> {
    Ok(sqlx::query_as(&format!("SELECT {DEPARTMENT_COLUMNS} FROM departments WHERE company_id = $1 AND id = $2"))
        .bind(company_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// One page of the company's departments ordered by code, and the total count.
///
/// # Errors
/// Database errors.
pub async fn list_departments(pool: &PgPool, company_id: Uuid, limit: u32, offset: u64) -> Result<(Vec<Department>, u64)> {
    company_page(pool, DEPARTMENT_COLUMNS, "departments", "code", company_id, limit, offset).await
}

/// One page of a company's rows of `table` (its `columns`, ordered by `order_by`), and the total count (see
/// [`super::Counted`]). The names are the store's own constants, never input.
async fn company_page<T>(
    pool: &PgPool,
    columns: &str,
    table: &str,
    order_by: &str,
    company_id: Uuid,
    limit: u32,
    offset: u64,
) -> Result<(Vec<T>, u64)>
where
    T: for<'r> FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let rows = sqlx::query_as(&format!(
        "SELECT {columns}, count(*) OVER () AS total FROM {table} WHERE company_id = $1 ORDER BY {order_by} LIMIT $2 OFFSET $3"
    ))
    .bind(company_id)
    .bind(i64::from(limit))
    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let count = format!("SELECT count(*) FROM {table} WHERE company_id = $1");
    page_total(rows, offset, sqlx::query_scalar(&count).bind(company_id).fetch_one(pool)).await
}

async fn account_changed(tx: &mut PgConnection, company_id: Uuid, topic: &str, a: &Account) -> Result<()> {
    let event = AccountsChanged {
        event_id: Uuid::new_v4(),
        company_id,
        changed_at: now_micros(),
        accounts: vec![AccountState {
            account_id: a.id,
            code: a.code.clone(),
            name: a.name.clone(),
            account_type: a.account_type.as_str().to_owned(),
            is_active: a.is_active,
        }],
    };
    enqueue(tx, company_id, topic, kerp_schemas::encode_accounts_changed(&event)?).await
}

const ACCOUNT_COLUMNS: &str = "id, code, name, name_en, account_type, is_active";

/// Adds an account to the company's chart and queues its event, inside the caller's transaction.
///
/// # Errors
/// 409 for a code the chart already has, database errors.
pub async fn create_account(tx: &mut PgConnection, company_id: Uuid, topic: &str, a: &ValidAccount) -> Result<Account> {
    let row: Account = sqlx::query_as(&format!(
        "INSERT INTO accounts (id, company_id, code, name, name_en, account_type) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING {ACCOUNT_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(company_id)
    .bind(&a.code)
    .bind(&a.name)
    .bind(&a.name_en)
    .bind(a.account_type)
    .fetch_one(&mut *tx)
    .await?;
    account_changed(tx, company_id, topic, &row).await?;
    Ok(row)
}

/// Renames, deactivates or reactivates an account and queues its event; `None` when the company has no such account.
/// Its code and class never change, so history posted to it keeps its meaning.
///
/// # Errors
/// Database errors.
pub async fn update_account(pool: &PgPool, company_id: Uuid, topic: &str, id: Uuid, u: &ValidAccountUpdate) -> Result<Option<Account>> {
    let mut tx = pool.begin().await?;
    let row: Option<Account> = sqlx::query_as(&format!(
        "UPDATE accounts SET name = COALESCE($3, name), name_en = COALESCE($4, name_en), is_active = COALESCE($5, is_active),
                             updated_at = now()
         WHERE company_id = $1 AND id = $2 RETURNING {ACCOUNT_COLUMNS}"
    ))
    .bind(company_id)
    .bind(id)
    .bind(&u.name)
    .bind(&u.name_en)
    .bind(u.is_active)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &row {
        account_changed(&mut tx, company_id, topic, row).await?;
        tx.commit().await?;
    }
    Ok(row)
}

/// One account of the company, or `None`.
///
/// # Errors
/// Database errors.
pub async fn account(pool: &PgPool, company_id: Uuid, id: Uuid) -> Result<Option<Account>> {
    Ok(sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE company_id = $1 AND id = $2"))
        .bind(company_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

const USER_COLUMNS: &str = "id, email, name, role, is_active, created_at";

/// Queues a user's new state as an event, inside the caller's transaction. Only what says who the user is and what
/// they may do goes in: the users table holds no token or secret, and the event must not become a place that does.
async fn user_changed(tx: &mut PgConnection, company_id: Uuid, topic: &str, u: &User) -> Result<()> {
    let event = UsersChanged {
        event_id: Uuid::new_v4(),
        company_id,
        changed_at: now_micros(),
        users: vec![UserState {
            user_id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.as_str().to_owned(),
            is_active: u.is_active,
        }],
    };
    enqueue(tx, company_id, topic, kerp_schemas::encode_users_changed(&event)?).await
}

/// Creates a user of the company and queues its event, inside the caller's transaction.
///
/// # Errors
/// 409 for an e-mail address any company's user already has, database errors.
pub async fn create_user(tx: &mut PgConnection, company_id: Uuid, topic: &str, u: &ValidUser) -> Result<User> {
    let row: User = sqlx::query_as(&format!(
        "INSERT INTO users (id, company_id, email, name, role, is_active) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(company_id)
    .bind(&u.email)
    .bind(&u.name)
    .bind(u.role)
    .bind(u.is_active)
    .fetch_one(&mut *tx)
    .await?;
    user_changed(tx, company_id, topic, &row).await?;
    Ok(row)
}

/// Replaces a user's address, name, role and state (switching them off or on included) and queues its event; `None`
/// when the company has no such user.
///
/// # Errors
/// 409 for an address another user has, database errors.
pub async fn update_user(pool: &PgPool, company_id: Uuid, topic: &str, id: Uuid, u: &ValidUser) -> Result<Option<User>> {
    let mut tx = pool.begin().await?;
    let row: Option<User> = sqlx::query_as(&format!(
        "UPDATE users SET email = $3, name = $4, role = $5, is_active = $6 WHERE company_id = $1 AND id = $2 RETURNING {USER_COLUMNS}"
    ))
    .bind(company_id)
    .bind(id)
    .bind(&u.email)
    .bind(&u.name)
    .bind(u.role)
    .bind(u.is_active)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &row {
        user_changed(&mut tx, company_id, topic, row).await?;
        tx.commit().await?;
    }
    Ok(row)
}

/// One user of the company, or `None`.
///
/// # Errors
/// Database errors.
pub async fn user(pool: &PgPool, company_id: Uuid, id: Uuid) -> Result<Option<User>> {
    Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE company_id = $1 AND id = $2"))
        .bind(company_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// One page of the company's users ordered by e-mail, and the total count.
///
/// # Errors
/// Database errors.
pub async fn list_users(pool: &PgPool, company_id: Uuid, limit: u32, offset: u64) -> Result<(Vec<User>, u64)> {
    company_page(pool, USER_COLUMNS, "users", "email", company_id, limit, offset).await
}

const COMPANY_COLUMNS: &str = "id, name, business_number, fiscal_start_month, created_at";

/// Queues the company's settings as an event, inside the caller's transaction.
///
/// # Errors
/// Database errors.
pub async fn company_changed(tx: &mut PgConnection, topic: &str, c: &Company) -> Result<()> {
    let event = CompanyChanged {
        event_id: Uuid::new_v4(),
        company_id: c.id,
        changed_at: now_micros(),
        name: c.name.clone(),
        business_number: c.business_number.clone(),
        fiscal_start_month: i32::from(c.fiscal_start_month),
    };
    enqueue(tx, c.id, topic, kerp_schemas::encode_company_changed(&event)?).await
}

/// The company's settings, or `None` when it does not exist (any more).
///
/// # Errors
/// Database errors.
pub async fn company(pool: &PgPool, company_id: Uuid) -> Result<Option<Company>> {
    Ok(sqlx::query_as(&format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE id = $1")).bind(company_id).fetch_optional(pool).await?)
}

/// The company's settings, read inside the caller's transaction.
///
/// # Errors
/// Database errors.
pub async fn company_in(tx: &mut PgConnection, company_id: Uuid) -> Result<Option<Company>> {
    Ok(sqlx::query_as(&format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE id = $1")).bind(company_id).fetch_optional(tx).await?)
}

/// Changes the company's settings and queues its event; `None` when it does not exist.
///
/// # Errors
/// Database errors.
pub async fn update_company(pool: &PgPool, company_id: Uuid, topic: &str, u: &ValidCompanyUpdate) -> Result<Option<Company>> {
    let mut tx = pool.begin().await?;
    let row: Option<Company> = sqlx::query_as(&format!(
        "UPDATE companies SET name = COALESCE($2, name),
                              business_number = CASE WHEN $3 THEN $4 ELSE business_number END,
                              fiscal_start_month = COALESCE($5, fiscal_start_month)
         WHERE id = $1 RETURNING {COMPANY_COLUMNS}"
    ))
    .bind(company_id)
    .bind(&u.name)
    .bind(u.business_number.is_some())
    .bind(u.business_number.clone().flatten())
    .bind(u.fiscal_start_month)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &row {
        company_changed(&mut tx, topic, row).await?;
        tx.commit().await?;
    }
    Ok(row)
}
