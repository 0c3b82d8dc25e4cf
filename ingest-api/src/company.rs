//! Companies and users: creating a company seeds the default Korean chart of accounts and its first admin user. Used by
//! the `create-company` CLI subcommand, the dev stack's demo data and the tests.

use kerp_core::auth::{self, Claims, Role};
use kerp_core::chart::DEFAULT_CHART;
use kerp_schemas::{AccountState, AccountsChanged};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// What [`create_company`] made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewCompany {
    pub company_id: Uuid,
    pub admin_user_id: Uuid,
}

/// Creates a company with the default chart of accounts and an admin user, in one transaction that also queues the
/// admin's `UsersChanged`, the chart's `AccountsChanged` and the settings' `CompanyChanged` events on `topic`, so the
/// reports know the chart before the first posting and every user is an event.
///
/// # Errors
/// Database errors, including a duplicate admin email (409 through the constraint mapping).
pub async fn create_company(
    pool: &PgPool,
    name: &str,
    business_number: Option<&str>,
    admin_email: &str,
    topic: &str,
) -> Result<NewCompany> {
    let company_id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO companies (id, name, business_number) VALUES ($1, $2, $3)")
        .bind(company_id)
        .bind(name)
        .bind(business_number)
        .execute(&mut *tx)
        .await?;
    // Through the same store function as a user the API creates, so the first admin is a `UsersChanged` event too.
    let admin = kerp_core::master::ValidUser {
        email: admin_email.to_owned(),
        name: "Administrator".to_owned(),
        role: Role::Admin,
        is_active: true,
    };
    let admin_user_id = crate::store::master::create_user(&mut tx, company_id, topic, &admin).await?.id;
    let ids: Vec<Uuid> = DEFAULT_CHART.iter().map(|_| Uuid::new_v4()).collect();
    let codes: Vec<&str> = DEFAULT_CHART.iter().map(|a| a.code).collect();
    let names: Vec<&str> = DEFAULT_CHART.iter().map(|a| a.name_ko).collect();
    let names_en: Vec<&str> = DEFAULT_CHART.iter().map(|a| a.name_en).collect();
    let types: Vec<&str> = DEFAULT_CHART.iter().map(|a| a.account_type().as_str()).collect();
    sqlx::query(
        "INSERT INTO accounts (id, company_id, code, name, name_en, account_type)
         SELECT id, $2, code, name, name_en, account_type
         FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::text[], $6::text[]) AS t(id, code, name, name_en, account_type)",
    )
    .bind(&ids)
    .bind(company_id)
    .bind(&codes)
    .bind(&names)
    .bind(&names_en)
    .bind(&types)
    .execute(&mut *tx)
    .await?;
    let event = AccountsChanged {
        event_id: Uuid::new_v4(),
        company_id,
        changed_at: chrono::Utc::now().timestamp_micros(),
        accounts: DEFAULT_CHART
            .iter()
            .zip(&ids)
            .map(|(a, id)| AccountState {
                account_id: *id,
                code: a.code.to_owned(),
                name: a.name_ko.to_owned(),
                account_type: a.account_type().as_str().to_owned(),
                is_active: true,
            })
            .collect(),
    };
    crate::store::enqueue(&mut tx, company_id, topic, kerp_schemas::encode_accounts_changed(&event)?).await?;
    // The settings the reports need (the fiscal year's first month) reach ClickHouse the same way.
    if let Some(company) = crate::store::master::company_in(&mut tx, company_id).await? {
        crate::store::master::company_changed(&mut tx, topic, &company).await?;
    }
    tx.commit().await?;
    Ok(NewCompany { company_id, admin_user_id })
}

/// Adds a user to a company.
///
/// # Errors
/// Database errors.
pub async fn create_user(pool: &PgPool, company_id: Uuid, email: &str, role: Role) -> Result<Uuid> {
    let id = Uuid::new_v4();
    let role = serde_json::to_value(role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    sqlx::query("INSERT INTO users (id, company_id, email, name, role) VALUES ($1, $2, $3, $3, $4)")
        .bind(id)
        .bind(company_id)
        .bind(email)
        .bind(role)
        .execute(pool)
        .await?;
    Ok(id)
}

/// Adds a partner (거래처) of both kinds, with no business number, to a company and returns its id; its event goes to
/// `topic` like any partner change.
///
/// # Errors
/// Database errors, including a duplicate code.
pub async fn create_partner(pool: &PgPool, company_id: Uuid, topic: &str, code: &str, name: &str) -> Result<Uuid> {
    let p = kerp_core::master::ValidPartner {
        code: code.to_owned(),
        name: name.to_owned(),
        business_number: None,
        partner_type: kerp_core::master::PartnerType::Both,
        representative: String::new(),
        address: String::new(),
        is_active: true,
    };
    let mut tx = pool.begin().await?;
    let id = crate::store::master::create_partner(&mut tx, company_id, topic, &p).await?.id;
    tx.commit().await?;
    Ok(id)
}

/// Mints a token for a user of a company, valid for `ttl_seconds`.
///
/// # Errors
/// [`crate::Error::Auth`] when `ttl_seconds` is not between 1 and [`auth::TOKEN_TTL_SECONDS_MAX`].
pub fn token(secret: &str, user_id: Uuid, company_id: Uuid, role: Role, ttl_seconds: i64) -> Result<String> {
    Ok(auth::issue(secret.as_bytes(), &Claims::new(user_id, company_id, role, ttl_seconds))?)
}

/// Finds a company's admin user, for minting a dev token for an existing company.
///
/// # Errors
/// Database errors; `Ok(None)` when the company has no admin.
pub async fn admin_of(pool: &PgPool, company_id: Uuid) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar("SELECT id FROM users WHERE company_id = $1 AND role = 'admin' ORDER BY created_at LIMIT 1")
        .bind(company_id)
        .fetch_optional(pool)
        .await?)
}
