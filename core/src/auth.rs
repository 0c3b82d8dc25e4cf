//! Bearer-token claims: what a JWT (HS256) must carry for a request to act inside one company.
//!
//! Tokens flow in from the `Authorization` header; out of here come verified [`Claims`] or an [`AuthError`].
//! Signing lives here too, so the CLI that mints dev tokens and the services that verify them cannot disagree.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a user may do inside their company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Company administrator: everything an accountant can, plus master data later on.
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
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
}

/// Why a token was refused. The HTTP layer turns every variant into a 401 without saying which, on purpose.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// Lifetime of tokens minted by [`issue`] when the caller does not choose one: twelve hours, a working day.
pub const TOKEN_TTL_SECONDS_DEFAULT: i64 = 12 * 3600;

/// Signs claims with the shared HS256 secret.
///
/// # Errors
/// Fails only if the claims cannot be serialised, which would be a bug.
pub fn issue(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))?)
}

/// Verifies signature, algorithm and expiry (with no leeway) and returns the claims.
///
/// # Errors
/// [`AuthError::Invalid`] for a bad signature, another algorithm, a malformed token or an expired one.
pub fn verify(secret: &[u8], token: &str) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    Ok(jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)?.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims { sub: Uuid::new_v4(), company_id: Uuid::new_v4(), role: Role::Accountant, exp }
    }

    #[test]
    fn round_trip() {
        let c = claims(chrono::Utc::now().timestamp() + 60);
        let t = issue(b"secret", &c).unwrap();
        assert_eq!(verify(b"secret", &t).unwrap(), c);
    }

    #[test]
    fn wrong_secret_is_refused() {
        let t = issue(b"secret", &claims(chrono::Utc::now().timestamp() + 60)).unwrap();
        assert!(verify(b"other", &t).is_err());
    }

    #[test]
    fn expired_is_refused() {
        let t = issue(b"secret", &claims(chrono::Utc::now().timestamp() - 1)).unwrap();
        assert!(verify(b"secret", &t).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(verify(b"secret", "not.a.jwt").is_err());
    }

    #[test]
    fn viewer_cannot_write() {
        assert!(!Role::Viewer.can_write());
        assert!(Role::Accountant.can_write());
        assert!(Role::Admin.can_write());
    }
}
