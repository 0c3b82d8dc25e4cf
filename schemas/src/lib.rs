//! The event contracts of K-ERP and their codec.
//!
//! Events flow from ingest-api's outbox, through Kafka, into stream-workers. On the wire each message is Avro
//! *single-object encoding*: the two bytes `C3 01`, the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the
//! writer's schema, then the Avro binary datum. The fingerprint lets a consumer know which schema wrote a message
//! without a schema registry: [`decode`] picks the schema by it and refuses messages written with one it does not know.

use std::sync::OnceLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The Avro schema text of [`VoucherPosted`], version 1.
pub const VOUCHER_POSTED_V1_AVSC: &str = include_str!("../avro/voucher_posted.avsc");
/// The Avro schema text of [`AccountsChanged`], version 1.
pub const ACCOUNTS_CHANGED_V1_AVSC: &str = include_str!("../avro/accounts_changed.avsc");

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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A voucher was posted. See the `.avsc` for field documentation.
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

/// [`uuid_text`] for the optional partner id, a `["null", uuid]` union.
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

/// Any event this crate can decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    VoucherPosted(VoucherPosted),
    AccountsChanged(AccountsChanged),
}

/// A schema this crate writes and reads, with its fingerprint as the header carries it.
struct Known {
    schema: Schema,
    fingerprint: [u8; 8],
}

impl Known {
    fn parse(avsc: &str) -> Self {
        // Schemas are compiled in and covered by tests, so failing to parse one is a build defect.
        let schema = Schema::parse_str(avsc).expect("compiled-in .avsc is valid Avro");
        let bytes = schema.fingerprint::<Rabin>().bytes;
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&bytes[..8]);
        Known { schema, fingerprint }
    }

    fn fingerprint(&self) -> u64 {
        u64::from_le_bytes(self.fingerprint)
    }

    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        // `resolve` turns plain strings and ints into the schema's logical types (uuid, date, timestamp).
        let value = apache_avro::to_value(value)?.resolve(&self.schema)?;
        let datum = apache_avro::to_avro_datum(&self.schema, value)?;
        let mut out = Vec::with_capacity(SINGLE_OBJECT_HEADER_BYTES + datum.len());
        out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&datum);
        Ok(out)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, message: &[u8]) -> Result<T> {
        let mut datum = &message[SINGLE_OBJECT_HEADER_BYTES..];
        let value = apache_avro::from_avro_datum(&self.schema, &mut datum, None)?;
        Ok(apache_avro::from_value(&value)?)
    }
}

fn voucher_posted_v1() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| Known::parse(VOUCHER_POSTED_V1_AVSC))
}

fn accounts_changed_v1() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| Known::parse(ACCOUNTS_CHANGED_V1_AVSC))
}

/// The Rabin fingerprint of the current `VoucherPosted` schema, as the header carries it (little-endian).
#[must_use]
pub fn voucher_posted_fingerprint() -> u64 {
    voucher_posted_v1().fingerprint()
}

/// Encodes a voucher event as an Avro single-object message.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_voucher_posted(event: &VoucherPosted) -> Result<Vec<u8>> {
    voucher_posted_v1().encode(event)
}

/// Encodes an accounts event as an Avro single-object message.
///
/// # Errors
/// Only if the value does not fit the schema, which the types prevent.
pub fn encode_accounts_changed(event: &AccountsChanged) -> Result<Vec<u8>> {
    accounts_changed_v1().encode(event)
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

/// Decodes a single-object message, choosing the schema by the fingerprint in its header.
///
/// # Errors
/// A bad header, an unknown writer schema, or a datum that does not decode.
pub fn decode(message: &[u8]) -> Result<Event> {
    let fp = fingerprint_of(message)?;
    if fp == voucher_posted_v1().fingerprint() {
        Ok(Event::VoucherPosted(voucher_posted_v1().decode(message)?))
    } else if fp == accounts_changed_v1().fingerprint() {
        Ok(Event::AccountsChanged(accounts_changed_v1().decode(message)?))
    } else {
        Err(Error::UnknownSchema(fp))
    }
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
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        let bytes = encode_voucher_posted(&e).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(decode(&bytes).unwrap(), Event::VoucherPosted(e));
    }

    #[test]
    fn header_matches_the_reference_single_object_writer() {
        // apache-avro's own single-object writer is an independent implementation of the spec's framing.
        let known = voucher_posted_v1();
        let e = sample();
        let value = apache_avro::to_value(&e).unwrap().resolve(&known.schema).unwrap();
        let mut reference = Vec::new();
        apache_avro::GenericSingleObjectWriter::new_with_capacity(&known.schema, 1024).unwrap().write_value(value, &mut reference).unwrap();
        assert_eq!(encode_voucher_posted(&e).unwrap(), reference);
        assert_eq!(fingerprint_of(&reference).unwrap(), voucher_posted_fingerprint());
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
    }

    #[test]
    fn the_fingerprint_picks_the_schema() {
        let e = AccountsChanged {
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
        };
        let bytes = encode_accounts_changed(&e).unwrap();
        assert_ne!(fingerprint_of(&bytes).unwrap(), voucher_posted_fingerprint());
        assert_eq!(decode(&bytes).unwrap(), Event::AccountsChanged(e));
    }
}
