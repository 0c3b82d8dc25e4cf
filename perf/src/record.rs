//! What flows from the load generator to the checker: the companies a run posts for, and one record per request
//! (when it started, what kind of body it sent, how it was answered and how long that took).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A company the suite created for one scenario, with a bearer token of its admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Company {
    pub company_id: Uuid,
    pub token: String,
}

/// What a request's body was. Only `Good` may be answered 201; every other kind must get a 4xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Good,
    Unbalanced,
    UnknownAccount,
    MalformedJson,
}

impl Kind {
    pub fn is_bad(self) -> bool {
        self != Self::Good
    }
}

/// One request as the client saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// When the request was sent, in Unix milliseconds.
    pub start_ms: i64,
    pub latency_ms: f64,
    /// The HTTP status, or 0 when there was no answer (connection refused or reset, or the client's timeout).
    pub status: u16,
    pub kind: Kind,
    /// Index into the load's companies.
    pub company: usize,
    /// The voucher id of a 201.
    pub id: Option<Uuid>,
}

/// A whole load run, as `load` writes it and `check` reads it.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadResult {
    pub url: String,
    pub rate_per_second: u32,
    pub concurrency: usize,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub companies: Vec<Company>,
    pub requests: Vec<Request>,
}
