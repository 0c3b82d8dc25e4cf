//! The event contracts of K-ERP and their codec.
//!
//! Events flow from ingest-api's outbox, through Kafka, into stream-workers. On the wire each message is Avro
//! *single-object encoding*: the two bytes `C3 01`, the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the
//! Parsing Canonical Form of the writer's schema, then the Avro binary datum. The fingerprint lets a consumer know
//! which schema wrote a message without a schema registry: [`decode`] picks the schema by it and refuses messages
//! written with one it does not know. The fingerprint is the spec's ([`parsing_canonical_form`], [`crc64_avro`]), so
//! any Avro reader recognises our messages; the different fingerprints that apache-avro gave before stay readable as
//! aliases. `docs/events.md` describes the topics, the wire format and the rules for changing a schema.

mod pcf;

use std::sync::OnceLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use pcf::{crc64_avro, parsing_canonical_form};

/// The Avro schema text of [`VoucherPosted`], revision 1: read (into the revision 2 type, new fields `None`), no
/// longer written.
pub const VOUCHER_POSTED_V1_AVSC: &str = include_str!("../avro/voucher_posted.avsc");
/// The Avro schema text of [`VoucherPosted`], revision 2: revision 1 with a line's `department_id` and the
/// voucher's `reversal_of` added at the end of their records. The revision [`encode_voucher_posted`] writes.
pub const VOUCHER_POSTED_V2_AVSC: &str = include_str!("../avro/voucher_posted_v2.avsc");
/// The Avro schema text of [`AccountsChanged`], version 1.
pub const ACCOUNTS_CHANGED_V1_AVSC: &str = include_str!("../avro/accounts_changed.avsc");
/// The Avro schema text of [`CompanyChanged`], version 1.
pub const COMPANY_CHANGED_V1_AVSC: &str = include_str!("../avro/company_changed.avsc");
/// The Avro schema text of [`PartnersChanged`], version 1.
pub const PARTNERS_CHANGED_V1_AVSC: &str = include_str!("../avro/partners_changed.avsc");
/// The Avro schema text of [`DepartmentsChanged`], version 1.
pub const DEPARTMENTS_CHANGED_V1_AVSC: &str = include_str!("../avro/departments_changed.avsc");
/// The Avro schema text of [`InvoiceChanged`], version 1.
pub const INVOICE_CHANGED_V1_AVSC: &str = include_str!("../avro/invoice_changed.avsc");
/// The Avro schema text of [`UsersChanged`], version 1.
pub const USERS_CHANGED_V1_AVSC: &str = include_str!("../avro/users_changed.avsc");

/// The two magic bytes that start every single-object encoded message.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// Magic plus fingerprint.
pub const SINGLE_OBJECT_HEADER_BYTES: usize = 10;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not an Avro single-object message (bad magic or too short)")]
    NotSingleObject,
    #[error("message written with an unknown schema (fingerprint {0:016x})")]
    UnknownSchema(u64),
    #[error("avro: {0}")]
    Avro(#[from] apache_avro::Error),
    #[error("not a valid Avro schema: {0}")]
    InvalidSchema(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A voucher was posted. See the `.avsc` for field documentation. Messages of either revision decode into this type;
/// a revision 1 message has `reversal_of` and every line's `department_id` `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherPosted {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "uuid_text")]
    pub company_id: Uuid,
    pub company_seq: i64,
    #[serde(with = "uuid_text")]
    pub voucher_id: Uuid,
    pub voucher_number: String,
    /// Days since 1970-01-01.
    pub voucher_date: i32,
    pub voucher_type: String,
    pub status: String,
    pub description: String,
    /// Microseconds since the Unix epoch.
    pub posted_at: i64,
    pub lines: Vec<VoucherLine>,
    /// Revision 2: the `voucher_id` of the voucher this one reverses, if it is a reversal.
    #[serde(with = "opt_uuid_text")]
    pub reversal_of: Option<Uuid>,
}

/// One line of a [`VoucherPosted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherLine {
    pub line_no: i32,
    #[serde(with = "uuid_text")]
    pub account_id: Uuid,
    pub account_code: String,
    pub account_name: String,
    pub account_type: String,
    #[serde(with = "opt_uuid_text")]
    pub partner_id: Option<Uuid>,
    pub debit: i64,
    pub credit: i64,
    pub description: String,
    /// Revision 2: the department the line is charged to, if any.
    #[serde(with = "opt_uuid_text")]
    pub department_id: Option<Uuid>,
}

/// Avro's serde serializer is not "human readable", so `Uuid` would default to 16 raw bytes; the schema says
/// `string` with logical type `uuid`, so ids are written as their text form.
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// [`uuid_text`] for optional ids, `["null", uuid]` unions.
mod opt_uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_some(&id.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
        Option::<String>::deserialize(d)?.map(|t| Uuid::parse_str(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Accounts of a company were created or changed. See the `.avsc` for field documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsChanged {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "uuid_text")]
    pub company_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub changed_at: i64,
    pub accounts: Vec<AccountState>,
}

/// One account of an [`AccountsChanged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    #[serde(with = "uuid_text")]
    pub account_id: Uuid,
    pub code: String,
    pub name: String,
    pub account_type: String,
    pub is_active: bool,
}

/// A company was created or its settings changed. See the `.avsc` for field documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyChanged {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "uuid_text")]
    pub company_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub changed_at: i64,
    pub name: String,
    /// 사업자등록번호, if the company has one.
    pub business_number: Option<String>,
    /// The month the fiscal year starts in, 1 = January.
    pub fiscal_start_month: i32,
}

/// Partners (거래처) of a company were created or changed. See the `.avsc` for field documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnersChanged {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "uuid_text")]
    pub company_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub changed_at: i64,
    pub partners: Vec<PartnerState>,
}

/// One partner of a [`PartnersChanged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerState {
    #[serde(with = "uuid_text")]
    pub partner_id: Uuid,
    pub code: String,
    pub name: String,
    /// 사업자등록번호, if the partner has one.
    pub business_number: Option<String>,
    /// `customer`, `supplier` or `both`.
    pub partner_type: String,
    pub representative: String,
    pub address: String,
    pub is_active: bool,
}

/// Departments of a company were created or changed. See the `.avsc` for field documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentsChanged {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "uuid_text")]
    pub company_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub changed_at: i64,
    pub departments: Vec<DepartmentState>,
}

/// One department of a [`DepartmentsChanged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentState {
    #[serde(with = "uuid_text")]
    pub department_id: Uuid,
    pub code: String,
    pub name: String,
    pub is_active: bool,
}

/// Users of a company were created or changed. See the `.avsc` for field documentation. Carries no token or other
/// secret: a token is issued on request and never stored, so there is none to carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersChanged {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "uuid_text")]
    pub company_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub changed_at: i64,
    pub users: Vec<UserState>,
}

/// One user of a [`UsersChanged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    /// Lower-cased, as stored.
    pub email: String,
    pub name: String,
    /// `admin`, `accountant` or `viewer`.
    pub role: String,
    pub is_active: bool,
}

/// A tax invoice (세금계산서) of a company was created, updated, issued, cancelled or given its approval number. It
/// carries the invoice's whole new state; see the `.avsc` for field documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceChanged {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "uuid_text")]
    pub company_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub changed_at: i64,
    #[serde(with = "uuid_text")]
    pub invoice_id: Uuid,
    /// `sales` or `purchase`.
    pub invoice_type: String,
    /// `taxable`, `zero_rated` or `exempt`.
    pub vat_type: String,
    #[serde(with = "uuid_text")]
    pub partner_id: Uuid,
    /// Days since 1970-01-01.
    pub invoice_date: i32,
    /// Won.
    pub supply_amount: i64,
    /// Won.
    pub tax_amount: i64,
    /// `draft`, `issued` or `cancelled`.
    pub status: String,
    /// The 24-digit NTS approval number, once transmitted.
    pub approval_number: Option<String>,
    /// The voucher that issuing the invoice posted.
    #[serde(with = "opt_uuid_text")]
    pub voucher_id: Option<Uuid>,
}

/// Any event this crate can decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    VoucherPosted(VoucherPosted),
    AccountsChanged(AccountsChanged),
    CompanyChanged(CompanyChanged),
    PartnersChanged(PartnersChanged),
    DepartmentsChanged(DepartmentsChanged),
    InvoiceChanged(InvoiceChanged),
    UsersChanged(UsersChanged),
}

impl Event {
    /// The company the event belongs to (every event names one, and is keyed by it on the topic).
    #[must_use]
    pub fn company_id(&self) -> Uuid {
        match self {
            Event::VoucherPosted(e) => e.company_id,
            Event::AccountsChanged(e) => e.company_id,
            Event::CompanyChanged(e) => e.company_id,
            Event::PartnersChanged(e) => e.company_id,
            Event::DepartmentsChanged(e) => e.company_id,
            Event::InvoiceChanged(e) => e.company_id,
            Event::UsersChanged(e) => e.company_id,
        }
    }
}

/// The fingerprint that `VoucherPosted` v1 messages carried before the codec followed the spec: apache-avro 0.21's
/// `Schema::fingerprint::<Rabin>()`, whose canonical form keeps `{"type":"string"}` for a logical type instead of
/// `"string"`. Topics written before then hold it, so [`decode`] accepts it as an alias of the spec's fingerprint.
/// It is history and never changes, whatever a newer apache-avro computes; nothing writes it any more.
const VOUCHER_POSTED_V1_LEGACY_FINGERPRINT: u64 = 0x4883_7d3c_977b_1179;
/// [`VOUCHER_POSTED_V1_LEGACY_FINGERPRINT`] for `AccountsChanged` v1.
const ACCOUNTS_CHANGED_V1_LEGACY_FINGERPRINT: u64 = 0x8168_7b99_d899_080c;

/// A schema this crate writes or reads, with the fingerprints its messages carry.
struct Known {
    schema: Schema,
    /// CRC-64-AVRO of the Parsing Canonical Form, as the spec and every other Avro implementation compute it. The
    /// only fingerprint written.
    fingerprint: u64,
    /// The fingerprint of messages written before the codec followed the spec; read, never written. Schemas added
    /// after that never had one.
    legacy_fingerprint: Option<u64>,
}

impl Known {
    fn parse(avsc: &str, legacy_fingerprint: Option<u64>) -> Self {
        // Schemas are compiled in and covered by tests, so failing to parse one is a build defect.
        let schema = Schema::parse_str(avsc).expect("compiled-in .avsc is valid Avro");
        let pcf = parsing_canonical_form(avsc).expect("compiled-in .avsc has a canonical form");
        Known { schema, fingerprint: crc64_avro(pcf.as_bytes()), legacy_fingerprint }
    }

    fn recognises(&self, fingerprint: u64) -> bool {
        fingerprint == self.fingerprint || Some(fingerprint) == self.legacy_fingerprint
    }

    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        // `resolve` turns plain strings and ints into the schema's logical types (uuid, date, timestamp).
        let value = apache_avro::to_value(value)?.resolve(&self.schema)?;
        let datum = apache_avro::to_avro_datum(&self.schema, value)?;
        let mut out = Vec::with_capacity(SINGLE_OBJECT_HEADER_BYTES + datum.len());
        out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Reads a message written with this schema. With a `reader` schema (a later revision) the datum goes through
    /// Avro schema resolution: fields the writer did not have get the reader's defaults.
    fn decode<T: serde::de::DeserializeOwned>(&self, message: &[u8], reader: Option<&Schema>) -> Result<T> {
        // The datum is the same under both fingerprints: they name one schema, computed two ways.
        let mut datum = Strict(&message[SINGLE_OBJECT_HEADER_BYTES..]);
        let value = apache_avro::from_avro_datum(&self.schema, &mut datum, reader)?;
        Ok(apache_avro::from_value(&value)?)
    }
}

/// A datum reader that calls running out of bytes an error apache-avro passes on. apache-avro 0.21 reads an
/// end of input inside a string as `null` and one where a union's index should be as the union's first branch
/// (`null` in ours), so a message cut short inside or just before a trailing optional field (`approval_number`,
/// `voucher_id`, `reversal_of`) would decode as if the field were absent. It only treats
/// [`std::io::ErrorKind::UnexpectedEof`] that way, so this reader reports the end as `InvalidData`. A whole datum is
/// never read past its end: the schema says how many bytes each value has.
struct Strict<'a>(&'a [u8]);

impl std::io::Read for Strict<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() && !buf.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the datum ends before its schema does"));
        }
        self.0.read(buf)
    }
}

/// One compiled-in schema, parsed once.
macro_rules! known {
    ($name:ident, $avsc:expr, $legacy:expr) => {
        fn $name() -> &'static Known {
            static KNOWN: OnceLock<Known> = OnceLock::new();
            KNOWN.get_or_init(|| Known::parse($avsc, $legacy))
        }
    };
}

known!(voucher_posted_v1, VOUCHER_POSTED_V1_AVSC, Some(VOUCHER_POSTED_V1_LEGACY_FINGERPRINT));
known!(voucher_posted_v2, VOUCHER_POSTED_V2_AVSC, None);
known!(accounts_changed_v1, ACCOUNTS_CHANGED_V1_AVSC, Some(ACCOUNTS_CHANGED_V1_LEGACY_FINGERPRINT));
known!(company_changed_v1, COMPANY_CHANGED_V1_AVSC, None);
known!(partners_changed_v1, PARTNERS_CHANGED_V1_AVSC, None);
known!(departments_changed_v1, DEPARTMENTS_CHANGED_V1_AVSC, None);
known!(invoice_changed_v1, INVOICE_CHANGED_V1_AVSC, None);
known!(users_changed_v1, USERS_CHANGED_V1_AVSC, None);

/// The fingerprint of the current `VoucherPosted` schema (revision 2) as [`encode_voucher_posted`] writes it:
/// CRC-64-AVRO of the Parsing Canonical Form, which the header carries little-endian.
#[must_use]
pub fn voucher_posted_fingerprint() -> u64 {
    voucher_posted_v2().fingerprint
}

/// Encodes a voucher event as an Avro single-object message, with revision 2 of the schema.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_voucher_posted(event: &VoucherPosted) -> Result<Vec<u8>> {
    Ok(binary::voucher_posted(voucher_posted_v2().fingerprint, event))
}

/// The Avro binary encoding of [`VoucherPosted`] (revision 2), written field by field.
///
/// Every approved voucher is encoded once, in its posting's transaction. The generic path (`to_value`, `resolve`
/// against the schema, `to_avro_datum`) builds and checks a tree of values first, and was a tenth of ingest-api's CPU
/// at 1,000 postings/s (28 Nov, `perf record`). The types here already hold only what the schema allows, so the
/// fields are written directly, in the schema's order. A unit test checks that this gives the generic encoder's bytes,
/// byte for byte, for vouchers that exercise every field and both branches of every union.
mod binary {
    use uuid::Uuid;

    use super::{VoucherLine, VoucherPosted, SINGLE_OBJECT_HEADER_BYTES, SINGLE_OBJECT_MAGIC};

    /// A single-object message: magic, the schema's fingerprint, the datum.
    pub(super) fn voucher_posted(fingerprint: u64, v: &VoucherPosted) -> Vec<u8> {
        // Roughly what a two-line voucher takes, so that most messages are written without growing the buffer.
        let mut out = Vec::with_capacity(SINGLE_OBJECT_HEADER_BYTES + 256 + 192 * v.lines.len());
        out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
        out.extend_from_slice(&fingerprint.to_le_bytes());
        uuid(&mut out, &v.event_id);
        uuid(&mut out, &v.company_id);
        long(&mut out, v.company_seq);
        uuid(&mut out, &v.voucher_id);
        string(&mut out, &v.voucher_number);
        long(&mut out, i64::from(v.voucher_date));
        string(&mut out, &v.voucher_type);
        string(&mut out, &v.status);
        string(&mut out, &v.description);
        long(&mut out, v.posted_at);
        // An array is written as blocks: one block of every item, then the empty block that ends it (an empty array
        // is that end alone), as apache-avro writes it.
        if !v.lines.is_empty() {
            len(&mut out, v.lines.len());
            for l in &v.lines {
                line(&mut out, l);
            }
        }
        long(&mut out, 0);
        optional_uuid(&mut out, v.reversal_of.as_ref());
        out
    }

    fn line(out: &mut Vec<u8>, l: &VoucherLine) {
        long(out, i64::from(l.line_no));
        uuid(out, &l.account_id);
        string(out, &l.account_code);
        string(out, &l.account_name);
        string(out, &l.account_type);
        optional_uuid(out, l.partner_id.as_ref());
        long(out, l.debit);
        long(out, l.credit);
        string(out, &l.description);
        optional_uuid(out, l.department_id.as_ref());
    }

    /// `int` and `long` alike: zig-zag, then 7 bits a byte, low bits first.
    fn long(out: &mut Vec<u8>, v: i64) {
        let zigzag = (v << 1) ^ (v >> 63);
        // Read as unsigned from here on: shifting right as an i64 would drag the sign bit in.
        let mut n = u64::from_ne_bytes(zigzag.to_ne_bytes());
        while n >= 0x80 {
            // The low 7 bits, with the bit that says more bytes follow; the truncation is the point.
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A length or a count, which Avro writes as a `long`.
    fn len(out: &mut Vec<u8>, n: usize) {
        long(out, i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        len(out, s.len());
        out.extend_from_slice(s.as_bytes());
    }

    /// The `uuid` logical type over `string`: the id's hyphenated lower-case text.
    fn uuid(out: &mut Vec<u8>, id: &Uuid) {
        let mut text = Uuid::encode_buffer();
        string(out, id.hyphenated().encode_lower(&mut text));
    }

    /// `["null", uuid]`: the branch's index, then the id if there is one.
    fn optional_uuid(out: &mut Vec<u8>, id: Option<&Uuid>) {
        match id {
            None => long(out, 0),
            Some(id) => {
                long(out, 1);
                uuid(out, id);
            }
        }
    }
}

/// Encodes an accounts event as an Avro single-object message.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_accounts_changed(event: &AccountsChanged) -> Result<Vec<u8>> {
    accounts_changed_v1().encode(event)
}

/// Encodes a company event as an Avro single-object message.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_company_changed(event: &CompanyChanged) -> Result<Vec<u8>> {
    company_changed_v1().encode(event)
}

/// Encodes a partners event as an Avro single-object message.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_partners_changed(event: &PartnersChanged) -> Result<Vec<u8>> {
    partners_changed_v1().encode(event)
}

/// Encodes a departments event as an Avro single-object message.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_departments_changed(event: &DepartmentsChanged) -> Result<Vec<u8>> {
    departments_changed_v1().encode(event)
}

/// Encodes an invoice event as an Avro single-object message.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_invoice_changed(event: &InvoiceChanged) -> Result<Vec<u8>> {
    invoice_changed_v1().encode(event)
}

/// Encodes a users event as an Avro single-object message.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_users_changed(event: &UsersChanged) -> Result<Vec<u8>> {
    users_changed_v1().encode(event)
}

/// Reads the writer-schema fingerprint from a single-object message's header.
///
/// # Errors
/// [`Error::NotSingleObject`] when the header is missing.
pub fn fingerprint_of(message: &[u8]) -> Result<u64> {
    if message.len() < SINGLE_OBJECT_HEADER_BYTES || message[..2] != SINGLE_OBJECT_MAGIC {
        return Err(Error::NotSingleObject);
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&message[2..SINGLE_OBJECT_HEADER_BYTES]);
    Ok(u64::from_le_bytes(fp))
}

/// Decodes a single-object message, choosing the schema by the fingerprint in its header. Both the spec's fingerprint
/// and the legacy one that messages written before it carry pick the same schema. A `VoucherPosted` revision 1
/// message is read through revision 2 (Avro schema resolution), so its new fields are `None`.
///
/// # Errors
/// A bad header, an unknown writer schema, or a datum that does not decode.
pub fn decode(message: &[u8]) -> Result<Event> {
    let fp = fingerprint_of(message)?;
    let event = if voucher_posted_v2().recognises(fp) {
        Event::VoucherPosted(voucher_posted_v2().decode(message, None)?)
    } else if voucher_posted_v1().recognises(fp) {
        Event::VoucherPosted(voucher_posted_v1().decode(message, Some(&voucher_posted_v2().schema))?)
    } else if accounts_changed_v1().recognises(fp) {
        Event::AccountsChanged(accounts_changed_v1().decode(message, None)?)
    } else if company_changed_v1().recognises(fp) {
        Event::CompanyChanged(company_changed_v1().decode(message, None)?)
    } else if partners_changed_v1().recognises(fp) {
        Event::PartnersChanged(partners_changed_v1().decode(message, None)?)
    } else if departments_changed_v1().recognises(fp) {
        Event::DepartmentsChanged(departments_changed_v1().decode(message, None)?)
    } else if invoice_changed_v1().recognises(fp) {
        Event::InvoiceChanged(invoice_changed_v1().decode(message, None)?)
    } else if users_changed_v1().recognises(fp) {
        Event::UsersChanged(users_changed_v1().decode(message, None)?)
    } else {
        return Err(Error::UnknownSchema(fp));
    };
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VoucherPosted {
        VoucherPosted {
            event_id: Uuid::new_v4(),
            company_id: Uuid::new_v4(),
            company_seq: 42,
            voucher_id: Uuid::new_v4(),
            voucher_number: "2025-01-000001".into(),
            voucher_date: 20_103,
            voucher_type: "general".into(),
            status: "approved".into(),
            description: "사무용품 구입".into(),
            posted_at: 1_736_899_200_000_000,
            lines: vec![
                VoucherLine {
                    line_no: 1,
                    account_id: Uuid::new_v4(),
                    account_code: "5212".into(),
                    account_name: "소모품비".into(),
                    account_type: "expense".into(),
                    partner_id: Some(Uuid::new_v4()),
                    debit: 110_000,
                    credit: 0,
                    description: "".into(),
                    department_id: Some(Uuid::new_v4()),
                },
                VoucherLine {
                    line_no: 2,
                    account_id: Uuid::new_v4(),
                    account_code: "1101".into(),
                    account_name: "현금".into(),
                    account_type: "asset".into(),
                    partner_id: None,
                    debit: 0,
                    credit: 110_000,
                    description: "cash".into(),
                    department_id: None,
                },
            ],
            reversal_of: Some(Uuid::new_v4()),
        }
    }

    /// `e` as a revision 1 message carries it: without the fields revision 2 added.
    fn as_v1(e: &VoucherPosted) -> VoucherPosted {
        let mut e = e.clone();
        e.reversal_of = None;
        for l in &mut e.lines {
            l.department_id = None;
        }
        e
    }

    /// The field-by-field encoder writes exactly what the generic one (values resolved against the schema) writes:
    /// the unions' both branches, strings whose length takes one byte and several, Korean text, an empty line list,
    /// a hundred lines (a count of two bytes) and the extremes of every number.
    #[test]
    fn the_voucher_encoder_writes_the_generic_encoders_bytes() {
        let mut cases = vec![sample(), as_v1(&sample())];
        let mut empty = sample();
        empty.lines.clear();
        cases.push(empty);
        let mut extremes = sample();
        extremes.company_seq = i64::MAX;
        extremes.posted_at = i64::MIN;
        extremes.voucher_date = i32::MIN;
        extremes.description = "가".repeat(400);
        extremes.lines[0].debit = i64::MIN;
        extremes.lines[0].credit = -1;
        extremes.lines[0].line_no = i32::MAX;
        extremes.lines[1].description = "x".repeat(64);
        cases.push(extremes);
        let mut many = sample();
        many.lines = (0..100)
            .map(|i| VoucherLine { line_no: i + 1, description: format!("line {i}"), ..sample().lines[usize::from(i % 2 == 1)].clone() })
            .collect();
        cases.push(many);
        let known = voucher_posted_v2();
        for (i, e) in cases.iter().enumerate() {
            assert_eq!(binary::voucher_posted(known.fingerprint, e), known.encode(e).unwrap(), "case {i}");
            assert_eq!(decode(&encode_voucher_posted(e).unwrap()).unwrap(), Event::VoucherPosted(e.clone()), "case {i}");
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        let bytes = encode_voucher_posted(&e).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(decode(&bytes).unwrap(), Event::VoucherPosted(e.clone()));
        // And with every optional field absent.
        let none = as_v1(&e);
        assert_eq!(decode(&encode_voucher_posted(&none).unwrap()).unwrap(), Event::VoucherPosted(none));
    }

    fn sample_accounts() -> AccountsChanged {
        AccountsChanged {
            event_id: Uuid::new_v4(),
            company_id: Uuid::new_v4(),
            changed_at: 1_736_899_200_000_000,
            accounts: vec![AccountState {
                account_id: Uuid::new_v4(),
                code: "1101".into(),
                name: "현금".into(),
                account_type: "asset".into(),
                is_active: true,
            }],
        }
    }

    fn sample_company(business_number: Option<&str>) -> CompanyChanged {
        CompanyChanged {
            event_id: Uuid::new_v4(),
            company_id: Uuid::new_v4(),
            changed_at: 1_736_899_200_000_000,
            name: "주식회사 케이이알피".into(),
            business_number: business_number.map(str::to_owned),
            fiscal_start_month: 4,
        }
    }

    fn sample_partners() -> PartnersChanged {
        PartnersChanged {
            event_id: Uuid::new_v4(),
            company_id: Uuid::new_v4(),
            changed_at: 1_736_899_200_000_000,
            partners: vec![
                PartnerState {
                    partner_id: Uuid::new_v4(),
                    code: "P001".into(),
                    name: "한빛상사".into(),
                    business_number: Some("123-45-67890".into()),
                    partner_type: "customer".into(),
                    representative: "김철수".into(),
                    address: "서울특별시 중구 세종대로 110".into(),
                    is_active: true,
                },
                PartnerState {
                    partner_id: Uuid::new_v4(),
                    code: "P002".into(),
                    name: "개인 거래처".into(),
                    business_number: None,
                    partner_type: "both".into(),
                    representative: String::new(),
                    address: String::new(),
                    is_active: false,
                },
            ],
        }
    }

    fn sample_departments() -> DepartmentsChanged {
        DepartmentsChanged {
            event_id: Uuid::new_v4(),
            company_id: Uuid::new_v4(),
            changed_at: 1_736_899_200_000_000,
            departments: vec![
                DepartmentState { department_id: Uuid::new_v4(), code: "D10".into(), name: "영업부".into(), is_active: true },
                DepartmentState { department_id: Uuid::new_v4(), code: "D20".into(), name: "관리부".into(), is_active: false },
            ],
        }
    }

    fn sample_users() -> UsersChanged {
        let user = |email: &str, name: &str, role: &str, is_active| UserState {
            user_id: Uuid::new_v4(),
            email: email.into(),
            name: name.into(),
            role: role.into(),
            is_active,
        };
        UsersChanged {
            event_id: Uuid::new_v4(),
            company_id: Uuid::new_v4(),
            changed_at: 1_736_899_200_000_000,
            users: vec![
                user("kim@example.test", "김회계", "accountant", true),
                user("lee@example.test", "이뷰어", "viewer", false),
                user("admin@example.test", "관리자", "admin", true),
            ],
        }
    }

    fn sample_invoice(approval_number: Option<&str>, voucher_id: Option<Uuid>) -> InvoiceChanged {
        InvoiceChanged {
            event_id: Uuid::new_v4(),
            company_id: Uuid::new_v4(),
            changed_at: 1_736_899_200_000_000,
            invoice_id: Uuid::new_v4(),
            invoice_type: "sales".into(),
            vat_type: "taxable".into(),
            partner_id: Uuid::new_v4(),
            invoice_date: 20_103,
            supply_amount: 1_000_000,
            tax_amount: 100_000,
            status: "issued".into(),
            approval_number: approval_number.map(str::to_owned),
            voucher_id,
        }
    }

    #[test]
    fn invoice_events_round_trip() {
        // Both optional fields present (issued and transmitted) and absent (a draft).
        for i in [sample_invoice(Some("202501158000000012345678"), Some(Uuid::new_v4())), sample_invoice(None, None)] {
            assert_eq!(decode(&encode_invoice_changed(&i).unwrap()).unwrap(), Event::InvoiceChanged(i));
        }
        // Amounts at the ends of the range, and a date before 1970, survive the trip.
        let extreme = InvoiceChanged { supply_amount: i64::MAX, tax_amount: i64::MIN, invoice_date: -1, ..sample_invoice(None, None) };
        assert_eq!(decode(&encode_invoice_changed(&extreme).unwrap()).unwrap(), Event::InvoiceChanged(extreme));
    }

    #[test]
    fn dimension_events_round_trip() {
        for c in [sample_company(Some("220-81-62517")), sample_company(None)] {
            assert_eq!(decode(&encode_company_changed(&c).unwrap()).unwrap(), Event::CompanyChanged(c));
        }
        let p = sample_partners();
        assert_eq!(decode(&encode_partners_changed(&p).unwrap()).unwrap(), Event::PartnersChanged(p));
        let d = sample_departments();
        assert_eq!(decode(&encode_departments_changed(&d).unwrap()).unwrap(), Event::DepartmentsChanged(d));
        // An empty list is a valid event (nothing changed), not an error.
        let empty = DepartmentsChanged { departments: Vec::new(), ..sample_departments() };
        assert_eq!(decode(&encode_departments_changed(&empty).unwrap()).unwrap(), Event::DepartmentsChanged(empty));
    }

    #[test]
    fn users_events_round_trip() {
        let u = sample_users();
        let bytes = encode_users_changed(&u).unwrap();
        assert_eq!(&bytes[..2], &SINGLE_OBJECT_MAGIC);
        assert_eq!(decode(&bytes).unwrap(), Event::UsersChanged(u.clone()));
        let empty = UsersChanged { users: Vec::new(), ..sample_users() };
        assert_eq!(decode(&encode_users_changed(&empty).unwrap()).unwrap(), Event::UsersChanged(empty));
        // A message cut short is an error, not a shorter list of users.
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }

    /// The users event is a contract for any reader of the topic, so it must say who a user is and nothing that
    /// lets anyone act as them: the schema has exactly these fields, and none of them is a token or a secret.
    #[test]
    fn users_events_carry_no_secret() {
        let json = serde_json::from_str::<serde_json::Value>(USERS_CHANGED_V1_AVSC).unwrap();
        let names = |fields: &serde_json::Value| -> Vec<String> {
            fields.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(names(&json["fields"]), ["event_id", "company_id", "changed_at", "users"]);
        assert_eq!(names(&json["fields"][3]["type"]["items"]["fields"]), ["user_id", "email", "name", "role", "is_active"]);
    }

    #[test]
    fn every_event_names_its_company() {
        let v = sample();
        assert_eq!(Event::VoucherPosted(v.clone()).company_id(), v.company_id);
        let c = sample_company(None);
        assert_eq!(Event::CompanyChanged(c.clone()).company_id(), c.company_id);
        let p = sample_partners();
        assert_eq!(Event::PartnersChanged(p.clone()).company_id(), p.company_id);
        let i = sample_invoice(None, None);
        assert_eq!(Event::InvoiceChanged(i.clone()).company_id(), i.company_id);
        let u = sample_users();
        assert_eq!(Event::UsersChanged(u.clone()).company_id(), u.company_id);
    }

    /// The fingerprint as the 8 header bytes in hex, the way fastavro prints it.
    fn le_hex(fingerprint: u64) -> String {
        fingerprint.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `message` with its header's fingerprint replaced.
    fn with_fingerprint(message: &[u8], fingerprint: u64) -> Vec<u8> {
        let mut out = message.to_vec();
        out[2..SINGLE_OBJECT_HEADER_BYTES].copy_from_slice(&fingerprint.to_le_bytes());
        out
    }

    #[test]
    fn canonical_forms_and_fingerprints_match_the_reference_vectors() {
        // Generated by fastavro (schemas/tools/pcf_vectors.py), an implementation other than apache-avro.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
        let vectors = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(dir.join("test-vectors.json")).unwrap()).unwrap();
        let field = |v: &serde_json::Value, key: &str| v.get(key).and_then(serde_json::Value::as_str).unwrap().to_owned();
        let mut covered = Vec::new();
        for file in vectors.get("files").and_then(serde_json::Value::as_array).unwrap() {
            let path = field(file, "path");
            let avsc = std::fs::read_to_string(dir.join(&path)).unwrap();
            let pcf = parsing_canonical_form(&avsc).unwrap();
            assert_eq!(pcf, field(file, "pcf"), "canonical form of {path}");
            assert_eq!(le_hex(crc64_avro(pcf.as_bytes())), field(file, "fingerprint_le_hex"), "fingerprint of {path}");
            covered.push(path);
        }
        for case in vectors.get("cases").and_then(serde_json::Value::as_array).unwrap() {
            let name = field(case, "name");
            let pcf = parsing_canonical_form(&field(case, "schema")).unwrap();
            assert_eq!(pcf, field(case, "pcf"), "canonical form of case {name}");
            assert_eq!(le_hex(crc64_avro(pcf.as_bytes())), field(case, "fingerprint_le_hex"), "fingerprint of case {name}");
        }
        // Every schema in the tree has its vector, so a schema added without regenerating them fails here.
        let mut on_disk = Vec::new();
        let mut dirs = vec![dir.clone()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "avsc") {
                    on_disk.push(path.strip_prefix(&dir).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        covered.sort();
        on_disk.sort();
        assert_eq!(covered, on_disk, "run schemas/tools/pcf_vectors.py");
    }

    #[test]
    fn headers_carry_the_spec_fingerprint() {
        // The values of test-vectors.json (and of docs/events.md), so a change to either side shows here by name.
        let vp = encode_voucher_posted(&sample()).unwrap();
        assert_eq!(le_hex(fingerprint_of(&vp).unwrap()), "413760da995e71ff");
        assert_eq!(fingerprint_of(&vp).unwrap(), voucher_posted_fingerprint());
        assert_eq!(fingerprint_of(&vp).unwrap(), 0xff71_5e99_da60_3741);
        assert_eq!(le_hex(voucher_posted_v1().fingerprint), "e5308ff00b02208a");
        let ac = encode_accounts_changed(&sample_accounts()).unwrap();
        assert_eq!(le_hex(fingerprint_of(&ac).unwrap()), "16358e684895a928");
        let cc = encode_company_changed(&sample_company(None)).unwrap();
        assert_eq!(le_hex(fingerprint_of(&cc).unwrap()), "2dc51e062e658f47");
        let pc = encode_partners_changed(&sample_partners()).unwrap();
        assert_eq!(le_hex(fingerprint_of(&pc).unwrap()), "19102add4a999c86");
        let dc = encode_departments_changed(&sample_departments()).unwrap();
        assert_eq!(le_hex(fingerprint_of(&dc).unwrap()), "5bfe396f5be5d231");
        let ic = encode_invoice_changed(&sample_invoice(None, None)).unwrap();
        assert_eq!(le_hex(fingerprint_of(&ic).unwrap()), "3326905de00c2f5b");
        assert_eq!(fingerprint_of(&ic).unwrap(), 0x5b2f_0ce0_5d90_2633);
        let uc = encode_users_changed(&sample_users()).unwrap();
        assert_eq!(le_hex(fingerprint_of(&uc).unwrap()), "27909ed3fd7c88ea");
        assert_eq!(fingerprint_of(&uc).unwrap(), 0xea88_7cfd_d39e_9027);
    }

    #[test]
    fn legacy_fingerprints_are_what_apache_avro_computed() {
        use apache_avro::rabin::Rabin;
        // Pins the aliases to their source: apache-avro 0.21's fingerprint of its own canonical form. Should a newer
        // apache-avro compute something else (say, once it follows the spec), the constants stay as they are,
        // because they name what existing topics hold; only this test's use of apache-avro changes.
        for (avsc, legacy) in [
            (VOUCHER_POSTED_V1_AVSC, VOUCHER_POSTED_V1_LEGACY_FINGERPRINT),
            (ACCOUNTS_CHANGED_V1_AVSC, ACCOUNTS_CHANGED_V1_LEGACY_FINGERPRINT),
        ] {
            let schema = Schema::parse_str(avsc).unwrap();
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&schema.fingerprint::<Rabin>().bytes[..8]);
            assert_eq!(u64::from_le_bytes(bytes), legacy);
            // The same Rabin function over a different text: our CRC-64-AVRO agrees with apache-avro's.
            assert_eq!(crc64_avro(schema.canonical_form().as_bytes()), legacy);
            assert_ne!(crc64_avro(parsing_canonical_form(avsc).unwrap().as_bytes()), legacy);
        }
    }

    #[test]
    fn a_message_with_the_legacy_header_decodes() {
        // Legacy headers only ever framed revision 1 datums, which decode through revision 2.
        let e = sample();
        let v1 = voucher_posted_v1();
        let legacy = with_fingerprint(&v1.encode(&e).unwrap(), VOUCHER_POSTED_V1_LEGACY_FINGERPRINT);
        assert_eq!(decode(&legacy).unwrap(), Event::VoucherPosted(as_v1(&e)));
        let a = sample_accounts();
        let legacy = with_fingerprint(&encode_accounts_changed(&a).unwrap(), ACCOUNTS_CHANGED_V1_LEGACY_FINGERPRINT);
        assert_eq!(decode(&legacy).unwrap(), Event::AccountsChanged(a));

        // What the codec wrote before is what apache-avro's own single-object writer still writes: same framing and
        // datum, under the legacy fingerprint. It decodes too.
        let value = apache_avro::to_value(&e).unwrap().resolve(&v1.schema).unwrap();
        let mut reference = Vec::new();
        apache_avro::GenericSingleObjectWriter::new_with_capacity(&v1.schema, 1024).unwrap().write_value(value, &mut reference).unwrap();
        assert_eq!(fingerprint_of(&reference).unwrap(), VOUCHER_POSTED_V1_LEGACY_FINGERPRINT);
        assert_eq!(with_fingerprint(&reference, v1.fingerprint), v1.encode(&e).unwrap());
        assert_eq!(decode(&reference).unwrap(), Event::VoucherPosted(as_v1(&e)));
    }

    /// The messages on existing topics: revision 1 under the spec's and under the legacy fingerprint. Both decode into
    /// today's type, through Avro schema resolution with revision 2 as the reader, with the new fields `None`.
    #[test]
    fn revision_1_messages_decode_with_the_new_fields_none() {
        let e = sample();
        let v1 = voucher_posted_v1();
        // Written with revision 1: `resolve` against it leaves the fields revision 1 does not have out of the datum.
        let message = v1.encode(&e).unwrap();
        assert_eq!(le_hex(fingerprint_of(&message).unwrap()), "e5308ff00b02208a");
        assert!(message.len() < encode_voucher_posted(&e).unwrap().len(), "the revision 1 datum lacks the new fields");
        let Event::VoucherPosted(read) = decode(&message).unwrap() else { panic!("not a voucher") };
        assert_eq!(read.reversal_of, None);
        assert!(read.lines.iter().all(|l| l.department_id.is_none()));
        assert_eq!(read, as_v1(&e));
        let legacy = with_fingerprint(&message, VOUCHER_POSTED_V1_LEGACY_FINGERPRINT);
        assert_eq!(decode(&legacy).unwrap(), Event::VoucherPosted(as_v1(&e)));
        // A revision 1 message read as if it were revision 2 would misread its datum; the fingerprint prevents that.
        assert_ne!(v1.fingerprint, voucher_posted_fingerprint());
    }

    /// The rule of docs/events.md, checked on the JSON of two revisions: every field of `old` is in `new`, in the
    /// same place, with the same type (records compared the same way, recursively), and every field `new` adds comes
    /// after them and has a default. `doc` is free to change.
    fn only_adds_fields_with_defaults(old: &serde_json::Value, new: &serde_json::Value, at: &str) {
        use serde_json::Value;
        let strip_doc = |v: &Value| {
            let mut v = v.clone();
            if let Value::Object(m) = &mut v {
                m.remove("doc");
            }
            v
        };
        match (old, new) {
            (Value::Object(o), Value::Object(n)) if o.get("type") == Some(&Value::from("record")) => {
                assert_eq!((o.get("name"), o.get("namespace")), (n.get("name"), n.get("namespace")), "{at}: record renamed");
                let (of, nf) = (o["fields"].as_array().unwrap(), n["fields"].as_array().unwrap());
                assert!(nf.len() >= of.len(), "{at}: fields removed");
                for (f, g) in of.iter().zip(nf) {
                    let at = format!("{at}.{}", f["name"].as_str().unwrap());
                    assert_eq!(f["name"], g["name"], "{at}: field renamed or moved");
                    assert_eq!(f.get("default"), g.get("default"), "{at}: default changed");
                    only_adds_fields_with_defaults(&f["type"], &g["type"], &at);
                }
                for g in &nf[of.len()..] {
                    assert!(g.get("default").is_some(), "{at}.{}: added without a default", g["name"]);
                }
            }
            (Value::Object(o), Value::Object(n)) if o.get("type") == Some(&Value::from("array")) => {
                assert_eq!(n.get("type"), Some(&Value::from("array")), "{at}: retyped");
                only_adds_fields_with_defaults(&o["items"], &n["items"], &format!("{at}[]"));
            }
            _ => assert_eq!(strip_doc(old), strip_doc(new), "{at}: retyped"),
        }
    }

    #[test]
    fn revision_2_only_adds_fields_with_defaults_and_reads_both_ways() {
        let json = |avsc: &str| serde_json::from_str::<serde_json::Value>(avsc).unwrap();
        only_adds_fields_with_defaults(&json(VOUCHER_POSTED_V1_AVSC), &json(VOUCHER_POSTED_V2_AVSC), "VoucherPosted");
        only_adds_fields_with_defaults(
            &json(VOUCHER_POSTED_V2_AVSC),
            &json(VOUCHER_POSTED_TEST_REVISION_AVSC),
            "VoucherPosted (test revision)",
        );
        // apache-avro's own check of Avro schema resolution: each revision reads the other's messages.
        let (v1, v2) = (&voucher_posted_v1().schema, &voucher_posted_v2().schema);
        apache_avro::schema_compatibility::SchemaCompatibility::mutual_read(v1, v2).unwrap();
        // And the other way round from decode: a consumer still on revision 1 reads a revision 2 message, skipping
        // the new fields.
        let e = sample();
        let message = encode_voucher_posted(&e).unwrap();
        let mut datum = &message[SINGLE_OBJECT_HEADER_BYTES..];
        let read = apache_avro::from_avro_datum(v2, &mut datum, Some(v1)).unwrap();
        assert!(datum.is_empty(), "the whole datum was read");
        let v1_message = voucher_posted_v1().encode(&e).unwrap();
        let expected = apache_avro::from_avro_datum(v1, &mut &v1_message[SINGLE_OBJECT_HEADER_BYTES..], None).unwrap();
        assert_eq!(read, expected, "a revision 1 reader sees what a revision 1 message of the same voucher holds");
    }

    #[test]
    #[should_panic(expected = "added without a default")]
    fn the_rule_check_catches_a_field_added_without_a_default() {
        let old = serde_json::json!({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]});
        let new =
            serde_json::json!({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}]});
        only_adds_fields_with_defaults(&old, &new, "R");
    }

    #[test]
    #[should_panic(expected = "renamed or moved")]
    fn the_rule_check_catches_a_field_added_in_the_middle() {
        let old = serde_json::json!({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]});
        let new = serde_json::json!({"type": "record", "name": "R",
            "fields": [{"name": "b", "type": "int", "default": 0}, {"name": "a", "type": "int"}]});
        only_adds_fields_with_defaults(&old, &new, "R");
    }

    /// A revision after revision 2 (test-only: an added `source`, default "api"), to show that the current writer's
    /// messages stay readable by the next reader and the other way round, and that the codec refuses a revision it
    /// does not know instead of guessing at it.
    const VOUCHER_POSTED_TEST_REVISION_AVSC: &str = include_str!("../avro/test/voucher_posted_test_revision.avsc");

    fn v2_record(e: &VoucherPosted) -> Vec<(String, apache_avro::types::Value)> {
        match apache_avro::to_value(e).unwrap().resolve(&voucher_posted_v2().schema).unwrap() {
            apache_avro::types::Value::Record(fields) => fields,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn written_with_v2_read_with_the_next_revision_gets_the_default() {
        use apache_avro::types::Value;
        let next = Schema::parse_str(VOUCHER_POSTED_TEST_REVISION_AVSC).unwrap();
        let e = sample();
        let message = encode_voucher_posted(&e).unwrap();
        let mut datum = &message[SINGLE_OBJECT_HEADER_BYTES..];
        let read = apache_avro::from_avro_datum(&voucher_posted_v2().schema, &mut datum, Some(&next)).unwrap();
        assert!(datum.is_empty(), "the whole datum was read");
        let Value::Record(fields) = read else { panic!("not a record: {read:?}") };
        let (source, v2_fields) = fields.split_last().unwrap();
        assert_eq!(source, &("source".to_owned(), Value::String("api".into())));
        assert_eq!(v2_fields, &v2_record(&e)[..]);
    }

    #[test]
    fn written_with_the_next_revision_read_with_v2_skips_the_new_field() {
        use apache_avro::types::Value;
        let next = Schema::parse_str(VOUCHER_POSTED_TEST_REVISION_AVSC).unwrap();
        let e = sample();
        let mut fields = v2_record(&e);
        fields.push(("source".into(), Value::String("import".into())));
        let datum = apache_avro::to_avro_datum(&next, Value::Record(fields)).unwrap();
        let mut rest = &datum[..];
        let read = apache_avro::from_avro_datum(&next, &mut rest, Some(&voucher_posted_v2().schema)).unwrap();
        assert!(rest.is_empty(), "the whole datum was read");
        assert_eq!(apache_avro::from_value::<VoucherPosted>(&read).unwrap(), e);

        // Our codec does not know that revision, so it refuses such a message by its fingerprint rather than guess.
        let next_fingerprint = crc64_avro(parsing_canonical_form(VOUCHER_POSTED_TEST_REVISION_AVSC).unwrap().as_bytes());
        let mut message = Vec::from(SINGLE_OBJECT_MAGIC);
        message.extend_from_slice(&next_fingerprint.to_le_bytes());
        message.extend_from_slice(&datum);
        assert!(matches!(decode(&message), Err(Error::UnknownSchema(fp)) if fp == next_fingerprint));
    }

    #[test]
    fn unknown_schema_and_garbage_are_refused() {
        let mut bytes = encode_voucher_posted(&sample()).unwrap();
        bytes[5] ^= 0xFF;
        assert!(matches!(decode(&bytes), Err(Error::UnknownSchema(_))));
        assert!(matches!(decode(b"{\"json\":1}"), Err(Error::NotSingleObject)));
        assert!(matches!(decode(&[0xC3]), Err(Error::NotSingleObject)));
    }

    #[test]
    fn truncated_datum_is_an_error_not_a_panic() {
        let bytes = encode_voucher_posted(&sample()).unwrap();
        assert!(decode(&bytes[..bytes.len() - 5]).is_err());
        let bytes = encode_partners_changed(&sample_partners()).unwrap();
        assert!(decode(&bytes[..bytes.len() - 5]).is_err());
        let bytes = encode_invoice_changed(&sample_invoice(Some("202501158000000012345678"), None)).unwrap();
        assert!(decode(&bytes[..bytes.len() - 5]).is_err());
    }

    /// apache-avro alone reads a datum that ends inside a string as `null` and one that ends where a union's index
    /// should be as the union's first branch, so these cuts decoded, as if the optional fields at the end were absent.
    #[test]
    fn a_datum_cut_inside_or_before_a_trailing_optional_field_is_an_error() {
        // Every cut of an invoice with both optional fields, from one byte short to the header alone.
        let bytes = encode_invoice_changed(&sample_invoice(Some("202501158000000012345678"), Some(Uuid::new_v4()))).unwrap();
        for len in SINGLE_OBJECT_HEADER_BYTES..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "invoice cut to {len} of {} bytes", bytes.len());
        }
        // Without them, the last byte is `voucher_id`'s union index: one byte short used to decode as the same event.
        let bytes = encode_invoice_changed(&sample_invoice(None, None)).unwrap();
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        // The same for a voucher whose `reversal_of` is null, the last byte of its datum.
        let bytes = encode_voucher_posted(&as_v1(&sample())).unwrap();
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        // And every message still decodes whole.
        assert!(decode(&bytes).is_ok());
    }

    #[test]
    fn the_fingerprint_picks_the_schema() {
        let e = sample_accounts();
        let bytes = encode_accounts_changed(&e).unwrap();
        assert_ne!(fingerprint_of(&bytes).unwrap(), voucher_posted_fingerprint());
        assert_eq!(decode(&bytes).unwrap(), Event::AccountsChanged(e));
        // A legacy fingerprint of one schema never picks the other.
        let crossed = with_fingerprint(&bytes, VOUCHER_POSTED_V1_LEGACY_FINGERPRINT);
        assert!(decode(&crossed).is_err());
        // Every schema the codec knows has a fingerprint of its own, legacy aliases included.
        let mut all = Vec::new();
        for k in [
            voucher_posted_v1(),
            voucher_posted_v2(),
            accounts_changed_v1(),
            company_changed_v1(),
            partners_changed_v1(),
            departments_changed_v1(),
            invoice_changed_v1(),
            users_changed_v1(),
        ] {
            all.push(k.fingerprint);
            all.extend(k.legacy_fingerprint);
        }
        let distinct: std::collections::HashSet<u64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
    }
}
