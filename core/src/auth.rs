//! Bearer-token claims: what a JWT (HS256) must carry for a request to act inside one company.
//!
//! Tokens flow in from the `Authorization` header; out of here come verified [`Claims`] or an [`AuthError`].
//! Signing lives here too, so the CLI that mints dev tokens and the services that verify them cannot disagree, and so
//! does the check of the shared secret that both services run before they serve.
//!
//! A token is accepted only when it is signed with the secret, names [`TOKEN_ISSUER`] and [`TOKEN_AUDIENCE`], has not
//! expired, and lives at most [`TOKEN_TTL_SECONDS_MAX`] from its `iat`: a leaked token is then useful for a day at most.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a user may do inside their company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Role {
    /// Company administrator: everything an accountant can, plus master data, users, periods and settings.
    Admin,
    /// Posts vouchers and reads everything.
    Accountant,
    /// Reads only.
    Viewer,
}

impl Role {
    /// Whether this role may post vouchers and other accounting writes.
    #[must_use]
    pub fn can_write(self) -> bool {
        matches!(self, Role::Admin | Role::Accountant)
    }

    /// Whether this role may manage master data (accounts, partners, departments), users, periods and settings.
    #[must_use]
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Admin)
    }

    /// The lower-case name used in the API, the database and tokens.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Accountant => "accountant",
            Role::Viewer => "viewer",
        }
    }
}

/// The verified content of a bearer token. Every query and write is scoped to `company_id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The one company this token acts in.
    pub company_id: Uuid,
    /// What the user may do.
    pub role: Role,
    /// Who minted the token; always [`TOKEN_ISSUER`].
    pub iss: String,
    /// Whom the token is for; always [`TOKEN_AUDIENCE`], so a token minted with the same secret for another
    /// purpose is not accepted here.
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expiry, seconds since the Unix epoch; at most [`TOKEN_TTL_SECONDS_MAX`] after `iat`.
    pub exp: i64,
}

impl Claims {
    /// Claims for a user of a company, issued now by K-ERP for the K-ERP API and valid for `ttl_seconds`.
    #[must_use]
    pub fn new(sub: Uuid, company_id: Uuid, role: Role, ttl_seconds: i64) -> Self {
        let iat = chrono::Utc::now().timestamp();
        Self {
            sub,
            company_id,
            role,
            iss: TOKEN_ISSUER.to_owned(),
            aud: TOKEN_AUDIENCE.to_owned(),
            iat,
            exp: iat.saturating_add(ttl_seconds),
        }
    }

    /// Refuses a lifetime (`exp - iat`) that is not positive or longer than [`TOKEN_TTL_SECONDS_MAX`].
    fn check_lifetime(&self) -> Result<(), AuthError> {
        let ttl = self.exp.saturating_sub(self.iat);
        if (1..=TOKEN_TTL_SECONDS_MAX).contains(&ttl) {
            Ok(())
        } else {
            Err(AuthError::Lifetime(ttl))
        }
    }
}

/// Why a token was refused. The HTTP layer turns every variant into a 401 without saying which, on purpose.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token lifetime (exp - iat) is {0} s; it must be between 1 and {TOKEN_TTL_SECONDS_MAX} s")]
    Lifetime(i64),
    #[error("token issued {0} s in the future; at most {CLOCK_SKEW_SECONDS_MAX} s of clock skew is accepted")]
    IssuedInFuture(i64),
    #[error(
        "JWT_SECRET has {0} bytes; it must have at least {JWT_SECRET_BYTES_MIN}. Generate one with `head -c 32 /dev/urandom | base64`"
    )]
    SecretTooShort(usize),
    #[error(
        "JWT_SECRET is the public sample value of .env.sample, which only a dev stack accepts (KERP_DEV_STACK=1, as compose/dev \
         and compose/compose.yaml set); generate a secret of your own with `head -c 32 /dev/urandom | base64`"
    )]
    SampleSecret,
}

/// Lifetime of tokens minted by [`issue`] when the caller does not choose one: twelve hours, a working day.
pub const TOKEN_TTL_SECONDS_DEFAULT: i64 = 12 * 3600;

/// Longest lifetime a token may have from `iat` to `exp`, in seconds: one day. [`issue`] refuses to mint longer ones
/// and [`verify`] refuses them, so that a leaked token stops working within a day whoever minted it.
pub const TOKEN_TTL_SECONDS_MAX: i64 = 24 * 3600;

/// How far in the future a token's `iat` may lie, in seconds, to allow for clocks that disagree a little. Without this
/// bound a token dated ahead would stay valid longer than [`TOKEN_TTL_SECONDS_MAX`] from now.
pub const CLOCK_SKEW_SECONDS_MAX: i64 = 60;

/// The `iss` of every K-ERP token.
pub const TOKEN_ISSUER: &str = "kerp";

/// The `aud` of every K-ERP token: the ingest and query APIs.
pub const TOKEN_AUDIENCE: &str = "kerp-api";

/// Shortest accepted JWT secret, in bytes: an HS256 key shorter than the hash (32 bytes) is weaker than the hash, and an
/// empty one lets anybody sign.
pub const JWT_SECRET_BYTES_MIN: usize = 32;

/// The JWT secret written in `.env.sample` and `compose/compose.yaml`. Everyone can read it, so only a dev stack
/// (`KERP_DEV_STACK=1`) may run with it.
pub const JWT_SECRET_SAMPLE: &str = "kerp-dev-only-sample-secret-never-use-in-production";

/// Checks the shared secret before a service serves or a token is minted with it: at least [`JWT_SECRET_BYTES_MIN`]
/// bytes, and not [`JWT_SECRET_SAMPLE`] unless `dev_stack`.
///
/// # Errors
/// [`AuthError::SecretTooShort`] or [`AuthError::SampleSecret`], whose messages say what to do.
pub fn check_secret(secret: &[u8], dev_stack: bool) -> Result<(), AuthError> {
    if secret.len() < JWT_SECRET_BYTES_MIN {
        return Err(AuthError::SecretTooShort(secret.len()));
    }
    if secret == JWT_SECRET_SAMPLE.as_bytes() && !dev_stack {
        return Err(AuthError::SampleSecret);
    }
    Ok(())
}

/// Signs claims with the shared HS256 secret.
///
/// # Errors
/// [`AuthError::Lifetime`] when `exp - iat` is not positive or over [`TOKEN_TTL_SECONDS_MAX`]; otherwise fails only if
/// the claims cannot be serialised, which would be a bug.
pub fn issue(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    claims.check_lifetime()?;
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))?)
}

/// Verifies signature, algorithm, issuer, audience and expiry (with no leeway), and the lifetime cap, and returns the
/// claims.
///
/// # Errors
/// [`AuthError::Invalid`] for a bad signature, another algorithm, a malformed token, a wrong `iss` or `aud`, a missing
/// claim or an expired token; [`AuthError::Lifetime`] and [`AuthError::IssuedInFuture`] for tokens that would live
/// longer than the cap.
pub fn verify(secret: &[u8], token: &str) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation.set_issuer(&[TOKEN_ISSUER]);
    validation.set_audience(&[TOKEN_AUDIENCE]);
    // `iat` is not a spec claim the library can require; `Claims` has it as a required field, so a token without it
    // does not deserialise and is refused as invalid.
    let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)?.claims;
    claims.check_lifetime()?;
    let ahead = claims.iat - chrono::Utc::now().timestamp();
    if ahead > CLOCK_SKEW_SECONDS_MAX {
        return Err(AuthError::IssuedInFuture(ahead));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"unit-test-secret-of-at-least-32-bytes";

    fn claims(ttl_seconds: i64) -> Claims {
        Claims::new(Uuid::new_v4(), Uuid::new_v4(), Role::Accountant, ttl_seconds)
    }

    /// Signs any claims, bypassing [`issue`]'s checks, the way a forger holding the secret could.
    fn sign(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn round_trip() {
        let c = claims(60);
        assert_eq!((c.iss.as_str(), c.aud.as_str()), (TOKEN_ISSUER, TOKEN_AUDIENCE));
        let t = issue(SECRET, &c).unwrap();
        assert_eq!(verify(SECRET, &t).unwrap(), c);
    }

    #[test]
    fn wrong_secret_is_refused() {
        let t = issue(SECRET, &claims(60)).unwrap();
        assert!(verify(b"other-secret-of-at-least-32-bytes-too", &t).is_err());
    }

    #[test]
    fn expired_is_refused() {
        let now = chrono::Utc::now().timestamp();
        let t = issue(SECRET, &Claims { iat: now - 61, exp: now - 1, ..claims(60) }).unwrap();
        assert!(matches!(verify(SECRET, &t), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(verify(SECRET, "not.a.jwt").is_err());
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let t = issue(SECRET, &Claims { iss: "someone-else".into(), ..claims(60) }).unwrap();
        assert!(matches!(verify(SECRET, &t), Err(AuthError::Invalid(_))));
        let t = issue(SECRET, &Claims { aud: "another-api".into(), ..claims(60) }).unwrap();
        assert!(matches!(verify(SECRET, &t), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn missing_iss_aud_or_iat_is_refused() {
        let c = serde_json::to_value(claims(60)).unwrap();
        for claim in ["iss", "aud", "iat"] {
            let mut without = c.clone();
            without.as_object_mut().unwrap().remove(claim);
            assert!(matches!(verify(SECRET, &sign(&without)), Err(AuthError::Invalid(_))), "a token without {claim} was accepted");
        }
        assert!(verify(SECRET, &sign(&c)).is_ok());
    }

    #[test]
    fn lifetime_over_the_cap_is_neither_issued_nor_accepted() {
        assert!(issue(SECRET, &claims(TOKEN_TTL_SECONDS_MAX)).is_ok());
        assert!(matches!(issue(SECRET, &claims(TOKEN_TTL_SECONDS_MAX + 1)), Err(AuthError::Lifetime(_))));
        assert!(matches!(issue(SECRET, &claims(0)), Err(AuthError::Lifetime(0))));
        let mut long = serde_json::to_value(claims(60)).unwrap();
        long["exp"] = (long["iat"].as_i64().unwrap() + TOKEN_TTL_SECONDS_MAX + 1).into();
        assert!(matches!(verify(SECRET, &sign(&long)), Err(AuthError::Lifetime(_))));
    }

    #[test]
    fn issued_in_the_future_is_refused() {
        let now = chrono::Utc::now().timestamp();
        let ahead = Claims { iat: now + 3600, exp: now + 7200, ..claims(60) };
        assert!(matches!(verify(SECRET, &issue(SECRET, &ahead).unwrap()), Err(AuthError::IssuedInFuture(_))));
        let skewed = Claims { iat: now + 5, exp: now + 65, ..claims(60) };
        assert!(verify(SECRET, &issue(SECRET, &skewed).unwrap()).is_ok());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(check_secret(b"", true), Err(AuthError::SecretTooShort(0))));
        assert!(matches!(check_secret(&[b'x'; JWT_SECRET_BYTES_MIN - 1], false), Err(AuthError::SecretTooShort(_))));
        assert!(check_secret(&[b'x'; JWT_SECRET_BYTES_MIN], false).is_ok());
    }

    #[test]
    fn the_sample_secret_is_refused_outside_a_dev_stack() {
        assert!(matches!(check_secret(JWT_SECRET_SAMPLE.as_bytes(), false), Err(AuthError::SampleSecret)));
        assert!(check_secret(JWT_SECRET_SAMPLE.as_bytes(), true).is_ok());
        // The constant is what the sample files hand out; if they drift apart, the sample would pass as a real secret.
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let sample = std::fs::read_to_string(format!("{root}/.env.sample")).unwrap();
        assert!(sample.lines().any(|l| l == format!("JWT_SECRET={JWT_SECRET_SAMPLE}")), ".env.sample has another JWT_SECRET");
        let compose = std::fs::read_to_string(format!("{root}/compose/compose.yaml")).unwrap();
        assert!(compose.contains(&format!("${{JWT_SECRET:-{JWT_SECRET_SAMPLE}}}")), "compose.yaml has another default JWT_SECRET");
    }

    #[test]
    fn viewer_cannot_write() {
        assert!(!Role::Viewer.can_write());
        assert!(Role::Accountant.can_write());
        assert!(Role::Admin.can_write());
    }
}
