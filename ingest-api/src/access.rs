//! What every handler checks before it does anything: the caller's role, and the id in the path. The token's claims
//! and the path's text flow in; a 403 or 404 problem flows out, worded the same on every route.

use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use kerp_core::auth::Claims;
use kerp_core::http::Problem;
use uuid::Uuid;

/// Accountants and admins write (vouchers, invoices); a viewer only reads.
pub fn require_writer(claims: &Claims) -> Result<(), Problem> {
    if claims.role.can_write() {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, "this role may only read"))
    }
}

/// Only an admin manages master data, users, periods and the company's settings.
pub fn require_admin(claims: &Claims) -> Result<(), Problem> {
    if claims.role.can_manage() {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, "only an admin may manage master data, users, periods and settings"))
    }
}

/// Parses a path id; anything that is not a UUID names no row, so it is the same 404 as an unknown id (or another
/// company's).
pub fn path_id(id: &str, what: &'static str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| not_found(what))
}

pub fn not_found(what: &'static str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, format!("{what} not found"))
}

/// A query string that cannot be read (`page=abc`) is a 400 naming what axum could not parse.
pub fn bad_query(e: &QueryRejection) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, e.body_text())
}
