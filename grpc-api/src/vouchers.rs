//! `kerp.v1.VoucherService`: voucher messages come in, are mapped onto the REST body ([`voucher_input`]), checked by
//! `kerp_core::voucher::validate` and posted exactly as `POST /api/v1/vouchers` posts: without a `request_id` through
//! group commit (`kerp_ingest::group_commit`, in batches with whatever else is being posted), with one by
//! `kerp_ingest::store::vouchers::post_voucher` inside one Postgres transaction together with the idempotency key and
//! the outbox event. A CreateVouchers stream starts its items in order and keeps up to [`STREAM_IN_FLIGHT_MAX`] of them
//! waiting for their answers, so its items fill group commit's batches; posted vouchers (or each item's error) go out
//! in item order. Reads come from Postgres through the same store.
//!
//! Idempotency: a `request_id` is an idempotency key in REST's table. The request hash is SHA-256 over a domain string
//! and the canonical protobuf encoding of the item's voucher, so a retry of the same voucher replays the stored
//! answer whether it comes through CreateVoucher or inside a CreateVouchers stream, and a REST request never
//! matches (its hash covers the HTTP method, path and JSON body).

use std::future::Future;
use std::pin::Pin;

use chrono::SecondsFormat;
use futures::stream::{FuturesOrdered, StreamExt};
use kerp_core::auth::Claims;
use kerp_core::telemetry::timed;
use kerp_core::voucher::{self, FieldError, LineInput, ValidVoucher, VoucherInput, VoucherStatus};
use kerp_ingest::idempotency::KEY_CHARS_MAX;
use kerp_ingest::store::idempotency::{self as keys, Stored};
use kerp_ingest::store::vouchers::{self as store, LineRow, Posted, VoucherRow};
use prost::Message;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::auth::{self, Access};
use crate::pb::kerp::v1 as pb;
use crate::pb::kerp::v1::voucher_service_server::{VoucherService, VoucherServiceServer};
use crate::{AppState, Error, Failure, ITEM_FIELD_VIOLATIONS_MAX, REQUEST_MESSAGE_BYTES_MAX, RESPONSE_MESSAGE_BYTES_MAX};

/// `kerp.v1.VoucherService`.
pub const SERVICE_NAME: &str = crate::pb::kerp::v1::voucher_service_server::SERVICE_NAME;

/// Set before the voucher's encoding in a request hash, so that no other kind of request hashes alike.
const HASH_DOMAIN: &[u8] = b"grpc:kerp.v1.VoucherService/CreateVoucher";

/// The status an answer is stored under with its key, as REST stores a 201.
const STORED_STATUS: u16 = 201;

/// The service, with the message limits.
pub fn server(state: AppState) -> VoucherServiceServer<Vouchers> {
    VoucherServiceServer::new(Vouchers { state })
        .max_decoding_message_size(REQUEST_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RESPONSE_MESSAGE_BYTES_MAX)
}

/// The implementation of `kerp.v1.VoucherService`.
pub struct Vouchers {
    state: AppState,
}

// ---------------------------------------------------------------------------------------------------------------------
// Mapping between messages and the REST types (no IO)
// ---------------------------------------------------------------------------------------------------------------------

/// The REST voucher type a message's type stands for; `None` (posted as `general`) when unspecified. A number the
/// contract does not know reaches validation as a name it refuses, so the client hears about `voucher_type`.
#[must_use]
pub fn voucher_type_name(value: i32) -> Option<String> {
    let name = match pb::VoucherType::try_from(value) {
        Ok(pb::VoucherType::Unspecified) => return None,
        Ok(pb::VoucherType::General) => "general",
        Ok(pb::VoucherType::Sales) => "sales",
        Ok(pb::VoucherType::Purchase) => "purchase",
        Ok(pb::VoucherType::Receipt) => "receipt",
        Ok(pb::VoucherType::Payment) => "payment",
        Ok(pb::VoucherType::Transfer) => "transfer",
        Ok(pb::VoucherType::Adjustment) => "adjustment",
        Ok(pb::VoucherType::Closing) => "closing",
        Err(_) => return Some(format!("voucher type number {value}")),
    };
    Some(name.to_owned())
}

/// The message type of a stored voucher type; unspecified for one the contract does not know.
#[must_use]
pub fn voucher_type_of(name: &str) -> pb::VoucherType {
    match name {
        "general" => pb::VoucherType::General,
        "sales" => pb::VoucherType::Sales,
        "purchase" => pb::VoucherType::Purchase,
        "receipt" => pb::VoucherType::Receipt,
        "payment" => pb::VoucherType::Payment,
        "transfer" => pb::VoucherType::Transfer,
        "adjustment" => pb::VoucherType::Adjustment,
        "closing" => pb::VoucherType::Closing,
        _ => pb::VoucherType::Unspecified,
    }
}

/// The REST `status` a message's status stands for: `None` (approved) when unspecified. `reversed` and unknown numbers
/// are passed on for validation to refuse.
fn post_status_name(value: i32) -> Option<String> {
    match pb::VoucherStatus::try_from(value) {
        Ok(pb::VoucherStatus::Unspecified) => None,
        Ok(pb::VoucherStatus::Draft) => Some(VoucherStatus::Draft.as_str().to_owned()),
        Ok(pb::VoucherStatus::Approved) => Some(VoucherStatus::Approved.as_str().to_owned()),
        Ok(pb::VoucherStatus::Reversed) => Some(VoucherStatus::Reversed.as_str().to_owned()),
        Err(_) => Some(format!("status number {value}")),
    }
}

/// The message status of a stored status.
#[must_use]
pub fn status_of(s: VoucherStatus) -> pb::VoucherStatus {
    match s {
        VoucherStatus::Draft => pb::VoucherStatus::Draft,
        VoucherStatus::Approved => pb::VoucherStatus::Approved,
        VoucherStatus::Reversed => pb::VoucherStatus::Reversed,
    }
}

/// An empty string is a field left out, as REST treats `""`.
fn present(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The REST body a voucher message stands for: the same fields under the same names, so validation and its field
/// paths are REST's.
#[must_use]
pub fn voucher_input(v: &pb::VoucherInput) -> VoucherInput {
    VoucherInput {
        voucher_date: v.voucher_date.clone(),
        voucher_type: voucher_type_name(v.voucher_type),
        description: present(&v.description),
        status: post_status_name(v.status),
        lines: v
            .lines
            .iter()
            .map(|l| LineInput {
                account_id: present(&l.account_id),
                account_code: present(&l.account_code),
                partner_id: present(&l.partner_id),
                department_id: present(&l.department_id),
                // Zero is "no amount on this side", as an absent REST field is.
                debit_amount: Some(l.debit_amount),
                credit_amount: Some(l.credit_amount),
                description: present(&l.description),
            })
            .collect(),
    }
}

/// The request's idempotency key: `None` when empty, else 1 to `KEY_CHARS_MAX` visible ASCII characters, as REST
/// takes an `Idempotency-Key`.
///
/// # Errors
/// The field error of `request_id`.
pub fn request_id(raw: &str) -> Result<Option<&str>, FieldError> {
    let key = raw.trim();
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() <= KEY_CHARS_MAX && key.chars().all(|c| c.is_ascii_graphic()) {
        Ok(Some(key))
    } else {
        Err(FieldError::new("request_id", format!("must be 1 to {KEY_CHARS_MAX} visible ASCII characters")))
    }
}

/// The hash an idempotency key is stored with: the same voucher gives the same hash through either call.
#[must_use]
pub fn request_hash(v: &pb::VoucherInput) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(HASH_DOMAIN);
    hasher.update([0]);
    hasher.update(v.encode_to_vec());
    hasher.finalize().to_vec()
}

/// The message of a posted voucher.
#[must_use]
pub fn posted(p: &Posted) -> pb::PostedVoucher {
    pb::PostedVoucher {
        id: p.id.to_string(),
        voucher_number: p.voucher_number.clone().unwrap_or_default(),
        voucher_date: p.voucher_date.to_string(),
        status: status_of(p.status).into(),
        total_debit: p.total_debit,
        total_credit: p.total_credit,
    }
}

/// What a stored answer holds: the `data` of REST's `{"data": Posted}`.
#[derive(Debug, Deserialize)]
struct StoredBody {
    data: StoredPosted,
}

#[derive(Debug, Deserialize)]
struct StoredPosted {
    id: Uuid,
    voucher_number: Option<String>,
    voucher_date: chrono::NaiveDate,
    status: VoucherStatus,
    total_debit: i64,
    total_credit: i64,
}

/// The posted voucher of a stored answer, or `None` when it is not one of this service's (a defect).
fn stored_posted(body: &serde_json::Value) -> Option<pb::PostedVoucher> {
    let s: StoredBody = serde_json::from_value(body.clone()).ok()?;
    let p = s.data;
    Some(posted(&Posted {
        id: p.id,
        voucher_number: p.voucher_number,
        voucher_date: p.voucher_date,
        status: p.status,
        total_debit: p.total_debit,
        total_credit: p.total_credit,
        reversal_of: None,
    }))
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn id_text(id: Option<Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

/// The message of a stored voucher with its lines.
#[must_use]
pub fn voucher(v: &VoucherRow, lines: &[LineRow]) -> pb::Voucher {
    pb::Voucher {
        id: v.id.to_string(),
        voucher_number: v.voucher_number.clone().unwrap_or_default(),
        voucher_date: v.voucher_date.to_string(),
        voucher_type: voucher_type_of(v.voucher_type.as_str()).into(),
        description: v.description.clone(),
        status: status_of(v.status).into(),
        total_debit: v.total_debit,
        total_credit: v.total_credit,
        reversal_of: id_text(v.reversal_of),
        reversed_by: id_text(v.reversed_by),
        reason: v.reason.clone(),
        approved_at: v.approved_at.map(rfc3339).unwrap_or_default(),
        created_at: rfc3339(v.created_at),
        lines: lines
            .iter()
            .map(|l| pb::VoucherLine {
                line_no: l.line_no,
                account_id: l.account_id.to_string(),
                account_code: l.account_code.clone(),
                account_name: l.account_name.clone(),
                partner_id: id_text(l.partner_id),
                department_id: id_text(l.department_id),
                debit_amount: l.debit_amount,
                credit_amount: l.credit_amount,
                description: l.description.clone(),
            })
            .collect(),
    }
}

/// An item's error in a CreateVouchers answer: its code and at most [`ITEM_FIELD_VIOLATIONS_MAX`] violations, with a
/// message that lists those and counts the rest.
#[must_use]
pub fn item_error(f: Failure) -> pb::ItemError {
    let total = f.violations.len();
    if total == 0 {
        return pb::ItemError { code: f.code.into(), message: f.message, field_violations: Vec::new() };
    }
    let shown: Vec<pb::FieldViolation> = f
        .violations
        .into_iter()
        .take(ITEM_FIELD_VIOLATIONS_MAX)
        .map(|v| pb::FieldViolation { field: v.field, description: v.message })
        .collect();
    let mut message = shown.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
    if total > shown.len() {
        message.push_str(&format!(" (and {} more; {total} field violations in all)", total - shown.len()));
    }
    pb::ItemError { code: f.code.into(), message, field_violations: shown }
}

// ---------------------------------------------------------------------------------------------------------------------
// Posting
// ---------------------------------------------------------------------------------------------------------------------

/// A posted item: the voucher, and whether it is the stored answer of an earlier request.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub voucher: pb::PostedVoucher,
    pub replayed: bool,
}

/// What the transaction found or did.
enum Step {
    Stored(Stored),
    Posted(Posted),
}

impl Vouchers {
    /// Posts one item, as `POST /api/v1/vouchers` posts a body; see [`Vouchers::start`].
    async fn post_one(&self, claims: &Claims, item: &pb::CreateVoucherRequest) -> Result<Outcome, Failure> {
        self.start(claims, item).await.await
    }

    /// Starts posting one item and returns the future of its answer. The item is validated first (a bad one never
    /// reaches the database). Without a request_id it is queued for group commit, which writes it in a batch with
    /// whatever else is being posted; items started one after the other are posted in that order. With a request_id,
    /// the key, the voucher, its event and the stored answer are written here, in one transaction of their own; any
    /// failure rolls all of it back.
    async fn start(&self, claims: &Claims, item: &pb::CreateVoucherRequest) -> Pending {
        let key = match request_id(&item.request_id) {
            Ok(key) => key,
            Err(e) => return answered(Err(Failure::invalid(vec![e]))),
        };
        let Some(input) = &item.voucher else {
            return answered(Err(Failure::invalid(vec![FieldError::new("voucher", "required")])));
        };
        let valid = match voucher::validate(&voucher_input(input)) {
            Ok(valid) => valid,
            Err(e) => return answered(Err(Failure::invalid(e).under("voucher"))),
        };
        if key.is_none() {
            return match self.state.poster.submit(claims.company_id, claims.sub, valid).await {
                Ok(answer) => Box::pin(async move {
                    match timed("post_voucher", answer).await {
                        Ok(p) => Ok(Outcome { voucher: posted(&p), replayed: false }),
                        Err(e) => Err(Error::from(e).into_failure().await.under("voucher")),
                    }
                }),
                Err(e) => Box::pin(async move { Err(Error::from(e).into_failure().await.under("voucher")) }),
            };
        }
        let hash = request_hash(input);
        let answer = match self.write(claims, key, &hash, &valid).await {
            Ok(Step::Posted(p)) => Ok(Outcome { voucher: posted(&p), replayed: false }),
            Ok(Step::Stored(stored)) => {
                if stored.request_hash != hash {
                    return answered(Err(Failure::invalid(vec![FieldError::new(
                        "request_id",
                        "this request_id was already used for a different request; send a new one for a new voucher",
                    )])));
                }
                match stored_posted(&stored.body) {
                    Some(voucher) => Ok(Outcome { voucher, replayed: true }),
                    None => {
                        tracing::error!(company = %claims.company_id, "a stored idempotent answer is not a posted voucher");
                        Err(Failure::internal())
                    }
                }
            }
            Err(e) => Err(e.into_failure().await.under("voucher")),
        };
        answered(answer)
    }

    /// The transaction of [`Vouchers::post_one`].
    async fn write(&self, claims: &Claims, key: Option<&str>, hash: &[u8], valid: &ValidVoucher) -> Result<Step, Error> {
        let (company, topic) = (claims.company_id, &self.state.config.voucher_topic);
        let mut tx = self.state.pool.begin().await?;
        if let Some(key) = key {
            if let Some(stored) = keys::claim(&mut tx, company, key, hash).await? {
                // Nothing was written: the transaction rolls back as it is dropped.
                return Ok(Step::Stored(stored));
            }
        }
        let p = timed("post_voucher", store::post_voucher(&mut tx, company, claims.sub, topic, valid)).await?;
        if let Some(key) = key {
            let body = serde_json::json!({ "data": &p });
            keys::record(&mut tx, company, key, STORED_STATUS, &body, None).await?;
        }
        tx.commit().await?;
        Ok(Step::Posted(p))
    }
}

/// Most items of one CreateVouchers stream started and not yet answered: enough for group commit to fill its batches,
/// few enough that a stream cannot take a lane's whole queue.
pub const STREAM_IN_FLIGHT_MAX: usize = 256;

/// The answer of an item being posted.
type Pending = Pin<Box<dyn Future<Output = Result<Outcome, Failure>> + Send>>;

/// An item's index, its request_id and its answer, as a stream collects them.
type Answered = Pin<Box<dyn Future<Output = (u32, String, Result<Outcome, Failure>)> + Send>>;

fn answered(answer: Result<Outcome, Failure>) -> Pending {
    Box::pin(std::future::ready(answer))
}

/// Adds an item's result to a stream's answer. An UNAVAILABLE item ends the stream (every later item would wait for
/// the same database only to fail alike; the client retries them), once the items already started are answered.
fn record(
    results: &mut Vec<pb::CreateVouchersResult>,
    (index, request_id, answer): (u32, String, Result<Outcome, Failure>),
    end: &mut Option<(pb::StreamEnd, String)>,
) {
    let (outcome, replayed) = match answer {
        Ok(o) => (pb::create_vouchers_result::Outcome::Voucher(o.voucher), o.replayed),
        Err(f) => {
            if f.code == Code::Unavailable && end.is_none() {
                *end = Some((
                    pb::StreamEnd::Unavailable,
                    "the database is unavailable; send again the items that failed with UNAVAILABLE and those after the last result"
                        .to_owned(),
                ));
            }
            (pb::create_vouchers_result::Outcome::Error(item_error(f)), false)
        }
    };
    results.push(pb::CreateVouchersResult { index, request_id, outcome: Some(outcome), replayed });
}

/// Counts of a CreateVouchers stream and why it ended.
fn finish_stream(results: Vec<pb::CreateVouchersResult>, end: pb::StreamEnd, end_message: String) -> pb::CreateVouchersResponse {
    let count = |f: &dyn Fn(&pb::CreateVouchersResult) -> bool| u32::try_from(results.iter().filter(|r| f(r)).count()).unwrap_or(u32::MAX);
    let failed = count(&|r| matches!(r.outcome, Some(pb::create_vouchers_result::Outcome::Error(_))));
    let replayed = count(&|r| r.replayed);
    let created = u32::try_from(results.len()).unwrap_or(u32::MAX) - failed - replayed;
    pb::CreateVouchersResponse { results, created, replayed, failed, end: end.into(), end_message }
}

#[tonic::async_trait]
impl VoucherService for Vouchers {
    async fn create_voucher(&self, request: Request<pb::CreateVoucherRequest>) -> Result<Response<pb::CreateVoucherResponse>, Status> {
        let claims = auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Write)?;
        let outcome = self.post_one(&claims, request.get_ref()).await?;
        Ok(Response::new(pb::CreateVoucherResponse { voucher: Some(outcome.voucher), replayed: outcome.replayed }))
    }

    async fn create_vouchers(
        &self,
        request: Request<Streaming<pb::CreateVoucherRequest>>,
    ) -> Result<Response<pb::CreateVouchersResponse>, Status> {
        let claims = auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Write)?;
        let items_max = self.state.config.create_vouchers_items_max;
        let mut stream = request.into_inner();
        let mut results: Vec<pb::CreateVouchersResult> = Vec::new();
        // Items are started in stream order and their answers collected in that order; up to STREAM_IN_FLIGHT_MAX
        // wait at once, which is what lets group commit write a stream's items in batches.
        let mut in_flight: FuturesOrdered<Answered> = FuturesOrdered::new();
        let mut read = 0_usize;
        let mut end: Option<(pb::StreamEnd, String)> = None;
        loop {
            if end.is_some() || in_flight.len() >= STREAM_IN_FLIGHT_MAX {
                // Stopped reading (or full): the answers of the items already started still go out, every one.
                match in_flight.next().await {
                    Some(answer) => record(&mut results, answer, &mut end),
                    None => break,
                }
                continue;
            }
            let next = tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => {
                    end = Some((pb::StreamEnd::Unavailable, "the server is shutting down; send the items after the last result again".to_owned()));
                    continue;
                }
                Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                    record(&mut results, answer, &mut end);
                    continue;
                }
                next = stream.message() => next,
            };
            let item = match next {
                Ok(Some(item)) => item,
                Ok(None) => {
                    end = Some((pb::StreamEnd::Complete, String::new()));
                    continue;
                }
                Err(status) => {
                    end = Some((pb::StreamEnd::Unreadable, format!("item {read} could not be read: {}", status.message())));
                    continue;
                }
            };
            if read >= items_max {
                end = Some((
                    pb::StreamEnd::ItemsMax,
                    format!("a stream posts at most {items_max} items (CREATE_VOUCHERS_ITEMS_MAX); send the rest in another stream"),
                ));
                continue;
            }
            if !item.request_id.is_empty() {
                // A keyed item is written in its own transaction as it starts: the items before it are answered first,
                // so that the stream's items are still posted in order.
                while let Some(answer) = in_flight.next().await {
                    record(&mut results, answer, &mut end);
                }
                if end.is_some() {
                    continue;
                }
            }
            let index = u32::try_from(read).unwrap_or(u32::MAX);
            read += 1;
            let pending = self.start(&claims, &item).await;
            let request_id = item.request_id;
            in_flight.push_back(Box::pin(async move { (index, request_id, pending.await) }));
        }
        let (end, end_message) = end.unwrap_or((pb::StreamEnd::Complete, String::new()));
        let answer = finish_stream(results, end, end_message);
        tracing::info!(
            company = %claims.company_id,
            created = answer.created,
            replayed = answer.replayed,
            failed = answer.failed,
            end = answer.end().as_str_name(),
            "voucher stream done"
        );
        Ok(Response::new(answer))
    }

    async fn get_voucher(&self, request: Request<pb::GetVoucherRequest>) -> Result<Response<pb::GetVoucherResponse>, Status> {
        let claims = auth::authorize(&request, self.state.config.jwt_secret.as_bytes(), Access::Read)?;
        let not_found = || Status::not_found("voucher not found");
        // A malformed id names no voucher, as REST answers 404 for it.
        let id = Uuid::parse_str(request.get_ref().id.trim()).map_err(|_| not_found())?;
        let found = timed("get_voucher", store::get_voucher(&self.state.pool, claims.company_id, id)).await;
        let (row, lines) = match found {
            Ok(found) => found.ok_or_else(not_found)?,
            Err(e) => return Err(Error::from(e).into_status().await),
        };
        Ok(Response::new(pb::GetVoucherResponse { voucher: Some(voucher(&row, &lines)) }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn line(code: &str, debit: i64, credit: i64) -> pb::LineInput {
        pb::LineInput { account_code: code.into(), debit_amount: debit, credit_amount: credit, ..Default::default() }
    }

    fn input() -> pb::VoucherInput {
        pb::VoucherInput {
            voucher_date: "2025-03-15".into(),
            voucher_type: pb::VoucherType::Purchase.into(),
            description: "Office supplies".into(),
            status: pb::VoucherStatus::Unspecified.into(),
            lines: vec![line("5212", 110_000, 0), line("1101", 0, 110_000)],
        }
    }

    #[test]
    fn a_message_validates_as_the_same_rest_body() {
        let v = voucher::validate(&voucher_input(&input())).unwrap();
        assert_eq!(v.voucher_type, voucher::VoucherType::Purchase);
        assert_eq!(v.status, VoucherStatus::Approved, "unspecified posts approved, as REST without status");
        assert_eq!(v.total, 110_000);
        assert_eq!(v.lines[0].account, voucher::AccountRef::Code("5212".into()));
        assert_eq!((v.lines[1].debit, v.lines[1].credit), (0, 110_000));
        assert_eq!(v.lines[0].partner_id, None, "an empty id is no id");
    }

    #[test]
    fn bad_fields_keep_rest_paths() {
        let mut v = input();
        v.voucher_date = "2025-02-30".into();
        v.lines[1].credit_amount = 1;
        v.lines[0].partner_id = "p-7".into();
        let fields: Vec<String> = voucher::validate(&voucher_input(&v)).unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["voucher_date", "lines[0].partner_id", "lines"]);
    }

    #[test]
    fn enums_map_to_rest_names_both_ways() {
        for name in voucher::VOUCHER_TYPES {
            let t = voucher_type_of(name);
            assert_ne!(t, pb::VoucherType::Unspecified, "{name} has no message type");
            assert_eq!(voucher_type_name(t.into()).as_deref(), Some(*name));
        }
        assert_eq!(voucher_type_name(0), None);
        assert!(voucher_type_name(99).is_some_and(|n| !voucher::VOUCHER_TYPES.contains(&n.as_str())));
        let mut v = input();
        v.status = pb::VoucherStatus::Draft.into();
        assert_eq!(voucher::validate(&voucher_input(&v)).unwrap().status, VoucherStatus::Draft);
        for refused in [i32::from(pb::VoucherStatus::Reversed), 42] {
            v.status = refused;
            let e = voucher::validate(&voucher_input(&v)).unwrap_err();
            assert_eq!(e[0].field, "status");
        }
        v.status = 0;
        v.voucher_type = 77;
        assert_eq!(voucher::validate(&voucher_input(&v)).unwrap_err()[0].field, "voucher_type");
        for s in [VoucherStatus::Draft, VoucherStatus::Approved, VoucherStatus::Reversed] {
            assert_eq!(post_status_name(status_of(s).into()).as_deref(), Some(s.as_str()));
        }
    }

    #[test]
    fn request_ids_are_rest_idempotency_keys() {
        assert_eq!(request_id(""), Ok(None));
        assert_eq!(request_id("  "), Ok(None));
        assert_eq!(request_id(" abc-1 "), Ok(Some("abc-1")));
        assert!(request_id(&"k".repeat(KEY_CHARS_MAX)).is_ok());
        for bad in ["k".repeat(KEY_CHARS_MAX + 1), "a b".into(), "키".into()] {
            assert_eq!(request_id(&bad).unwrap_err().field, "request_id");
        }
    }

    #[test]
    fn the_hash_depends_on_the_voucher_only() {
        let a = request_hash(&input());
        assert_eq!(a, request_hash(&input()));
        assert_eq!(a.len(), 32);
        let mut other = input();
        other.lines[0].debit_amount += 1;
        assert_ne!(a, request_hash(&other));
    }

    #[test]
    fn a_stored_answer_replays_as_the_posted_voucher() {
        let p = Posted {
            id: Uuid::new_v4(),
            voucher_number: Some("2025-03-000007".into()),
            voucher_date: NaiveDate::from_ymd_opt(2025, 3, 15).unwrap(),
            status: VoucherStatus::Approved,
            total_debit: 110_000,
            total_credit: 110_000,
            reversal_of: None,
        };
        let body = serde_json::json!({ "data": &p });
        assert_eq!(stored_posted(&body), Some(posted(&p)));
        assert_eq!(posted(&p).voucher_number, "2025-03-000007");
        assert_eq!(stored_posted(&serde_json::json!({"data": {"id": "x"}})), None);
        let draft = Posted { voucher_number: None, status: VoucherStatus::Draft, ..p };
        assert_eq!(posted(&draft).voucher_number, "");
        assert_eq!(posted(&draft).status(), pb::VoucherStatus::Draft);
    }

    #[test]
    fn item_errors_list_a_bounded_number_of_violations() {
        let many: Vec<FieldError> =
            (0..25).map(|i| FieldError::new(format!("voucher.lines[{i}].debit_amount"), "must not be negative")).collect();
        let e = item_error(Failure::invalid(many));
        assert_eq!(e.code, i32::from(Code::InvalidArgument));
        assert_eq!(e.field_violations.len(), ITEM_FIELD_VIOLATIONS_MAX);
        assert!(e.message.ends_with("(and 15 more; 25 field violations in all)"), "{}", e.message);
        let e = item_error(Failure::new(Code::FailedPrecondition, "the period 2025-03 is closed"));
        assert_eq!((e.code, e.message.as_str()), (i32::from(Code::FailedPrecondition), "the period 2025-03 is closed"));
    }

    #[test]
    fn stream_counts_add_up() {
        let ok = |i: u32, replayed: bool| pb::CreateVouchersResult {
            index: i,
            outcome: Some(pb::create_vouchers_result::Outcome::Voucher(pb::PostedVoucher::default())),
            replayed,
            ..Default::default()
        };
        let bad = pb::CreateVouchersResult {
            index: 2,
            outcome: Some(pb::create_vouchers_result::Outcome::Error(pb::ItemError::default())),
            ..Default::default()
        };
        let r = finish_stream(vec![ok(0, false), ok(1, true), bad, ok(3, false)], pb::StreamEnd::Complete, String::new());
        assert_eq!((r.created, r.replayed, r.failed), (2, 1, 1));
        assert_eq!(r.end(), pb::StreamEnd::Complete);
    }
}
