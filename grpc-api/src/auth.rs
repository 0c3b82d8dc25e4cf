//! Bearer tokens on gRPC calls: the `authorization` metadata of a request comes in, verified [`Claims`] come out, or
//! UNAUTHENTICATED (no token, or one that [`kerp_core::auth::verify`] refuses, without saying why, as REST answers
//! 401) or PERMISSION_DENIED (the role may not do this, or the call names another company).
//!
//! The claims and roles are REST's: `viewer` reads, `accountant` and `admin` also write, `admin` also manages.

use kerp_core::auth::Claims;
use tonic::{Request, Status};
use uuid::Uuid;

/// What a call needs of the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every role: reports and reads.
    Read,
    /// `accountant` and `admin`: postings and other accounting writes.
    Write,
    /// `admin` only: master data, users, periods and settings.
    Manage,
}

/// The metadata key of the bearer token (gRPC metadata keys are lower case).
pub const AUTHORIZATION: &str = "authorization";

/// The message of every UNAUTHENTICATED answer; which check failed is not said, so a caller cannot probe tokens.
const UNAUTHENTICATED: &str = "a valid bearer token is required in the authorization metadata";

/// The token of `authorization: Bearer <token>`, if the metadata has one.
fn bearer<T>(req: &Request<T>) -> Option<&str> {
    let value = req.metadata().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Verifies the request's bearer token with `secret` and checks that its role allows `access`.
///
/// # Errors
/// UNAUTHENTICATED without a valid token, PERMISSION_DENIED when the role does not allow `access`.
pub fn authorize<T>(req: &Request<T>, secret: &[u8], access: Access) -> Result<Claims, Status> {
    let token = bearer(req).ok_or_else(|| Status::unauthenticated(UNAUTHENTICATED))?;
    let claims = kerp_core::auth::verify(secret, token).map_err(|_| Status::unauthenticated(UNAUTHENTICATED))?;
    allow(&claims, access)?;
    Ok(claims)
}

/// Whether `claims`' role allows `access`.
///
/// # Errors
/// PERMISSION_DENIED naming what the role may do.
pub fn allow(claims: &Claims, access: Access) -> Result<(), Status> {
    let allowed = match access {
        Access::Read => true,
        Access::Write => claims.role.can_write(),
        Access::Manage => claims.role.can_manage(),
    };
    if allowed {
        Ok(())
    } else {
        let words = match access {
            Access::Manage => "only an admin may do this",
            Access::Read | Access::Write => "this role may only read",
        };
        Err(Status::permission_denied(words))
    }
}

/// Refuses a call that names a company other than the token's (a `company_id` field, or the company behind a
/// business number).
///
/// # Errors
/// PERMISSION_DENIED.
pub fn same_company(claims: &Claims, company: Uuid) -> Result<(), Status> {
    if claims.company_id == company {
        Ok(())
    } else {
        Err(Status::permission_denied("the token's company may not act for another company"))
    }
}

#[cfg(test)]
mod tests {
    use kerp_core::auth::Role;
    use tonic::Code;

    use super::*;

    const SECRET: &[u8] = b"unit-test-secret-of-at-least-32-bytes";

    fn request(auth: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(a) = auth {
            req.metadata_mut().insert(AUTHORIZATION, a.parse().unwrap());
        }
        req
    }

    fn token(role: Role) -> (Claims, String) {
        let claims = Claims::new(Uuid::new_v4(), Uuid::new_v4(), role, 60);
        let t = kerp_core::auth::issue(SECRET, &claims).unwrap();
        (claims, t)
    }

    #[test]
    fn a_valid_token_gives_its_claims_whatever_the_scheme_case() {
        let (claims, t) = token(Role::Accountant);
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let got = authorize(&request(Some(&format!("{scheme} {t}"))), SECRET, Access::Write).unwrap();
            assert_eq!(got, claims);
        }
    }

    #[test]
    fn no_token_or_a_bad_one_is_unauthenticated_with_the_same_words() {
        let (_, t) = token(Role::Admin);
        let cases = [None, Some("Bearer"), Some("Basic abc"), Some("Bearer not.a.jwt"), Some(&*format!("Bearer {t}x"))];
        for auth in cases {
            let e = authorize(&request(auth), SECRET, Access::Read).unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{auth:?}");
            assert_eq!(e.message(), UNAUTHENTICATED);
        }
        let e = authorize(&request(Some(&format!("Bearer {t}"))), b"another-secret-of-at-least-32-bytes!", Access::Read).unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }

    #[test]
    fn roles_allow_what_they_allow_over_rest() {
        let (viewer, _) = token(Role::Viewer);
        let (accountant, _) = token(Role::Accountant);
        let (admin, _) = token(Role::Admin);
        assert!(allow(&viewer, Access::Read).is_ok());
        assert_eq!(allow(&viewer, Access::Write).unwrap_err().code(), Code::PermissionDenied);
        assert!(allow(&accountant, Access::Write).is_ok());
        assert_eq!(allow(&accountant, Access::Manage).unwrap_err().code(), Code::PermissionDenied);
        assert!(allow(&admin, Access::Manage).is_ok());
    }

    #[test]
    fn another_company_is_permission_denied() {
        let (c, _) = token(Role::Admin);
        assert!(same_company(&c, c.company_id).is_ok());
        assert_eq!(same_company(&c, Uuid::new_v4()).unwrap_err().code(), Code::PermissionDenied);
    }
}
