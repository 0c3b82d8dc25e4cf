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
    #[error("not a valid Avro schema: {0}")]
    InvalidSchema(String),
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

/// The fingerprint that `VoucherPosted` v1 messages carried before the codec followed the spec: apache-avro 0.21's
/// `Schema::fingerprint::<Rabin>()`, whose canonical form keeps `{"type":"string"}` for a logical type instead of
/// `"string"`. Topics written before then hold it, so [`decode`] accepts it as an alias of the spec's fingerprint.
/// It is history and never changes, whatever a newer apache-avro computes; nothing writes it any more.
const VOUCHER_POSTED_V1_LEGACY_FINGERPRINT: u64 = 0x4883_7d3c_977b_1179;
/// [`VOUCHER_POSTED_V1_LEGACY_FINGERPRINT`] for `AccountsChanged` v1.
const ACCOUNTS_CHANGED_V1_LEGACY_FINGERPRINT: u64 = 0x8168_7b99_d899_080c;

/// A schema this crate writes and reads, with the fingerprints its messages carry.
struct Known {
    schema: Schema,
    /// CRC-64-AVRO of the Parsing Canonical Form, as the spec and every other Avro implementation compute it. The
    /// only fingerprint written.
    fingerprint: u64,
    /// The fingerprint of messages written before the codec followed the spec; read, never written.
    legacy_fingerprint: u64,
}

impl Known {
    fn parse(avsc: &str, legacy_fingerprint: u64) -> Self {
        // Schemas are compiled in and covered by tests, so failing to parse one is a build defect.
        let schema = Schema::parse_str(avsc).expect("compiled-in .avsc is valid Avro");
        let pcf = parsing_canonical_form(avsc).expect("compiled-in .avsc has a canonical form");
        Known { schema, fingerprint: crc64_avro(pcf.as_bytes()), legacy_fingerprint }
    }

    fn recognises(&self, fingerprint: u64) -> bool {
        fingerprint == self.fingerprint || fingerprint == self.legacy_fingerprint
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

    fn decode<T: serde::de::DeserializeOwned>(&self, message: &[u8]) -> Result<T> {
        // The datum is the same under both fingerprints: they name one schema, computed two ways.
        let mut datum = &message[SINGLE_OBJECT_HEADER_BYTES..];
        let value = apache_avro::from_avro_datum(&self.schema, &mut datum, None)?;
        Ok(apache_avro::from_value(&value)?)
    }
}

fn voucher_posted_v1() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| Known::parse(VOUCHER_POSTED_V1_AVSC, VOUCHER_POSTED_V1_LEGACY_FINGERPRINT))
}

fn accounts_changed_v1() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| Known::parse(ACCOUNTS_CHANGED_V1_AVSC, ACCOUNTS_CHANGED_V1_LEGACY_FINGERPRINT))
}

/// The fingerprint of the current `VoucherPosted` schema as [`encode_voucher_posted`] writes it: CRC-64-AVRO of the
/// Parsing Canonical Form, which the header carries little-endian.
#[must_use]
pub fn voucher_posted_fingerprint() -> u64 {
    voucher_posted_v1().fingerprint
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

/// Decodes a single-object message, choosing the schema by the fingerprint in its header. Both the spec's fingerprint
/// and the legacy one that messages written before it carry pick the same schema.
///
/// # Errors
/// A bad header, an unknown writer schema, or a datum that does not decode.
pub fn decode(message: &[u8]) -> Result<Event> {
    let fp = fingerprint_of(message)?;
    if voucher_posted_v1().recognises(fp) {
        Ok(Event::VoucherPosted(voucher_posted_v1().decode(message)?))
    } else if accounts_changed_v1().recognises(fp) {
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
        // The values of test-vectors.json, so a change to either side shows here by name.
        let vp = encode_voucher_posted(&sample()).unwrap();
        assert_eq!(le_hex(fingerprint_of(&vp).unwrap()), "e5308ff00b02208a");
        assert_eq!(fingerprint_of(&vp).unwrap(), voucher_posted_fingerprint());
        let ac = encode_accounts_changed(&sample_accounts()).unwrap();
        assert_eq!(le_hex(fingerprint_of(&ac).unwrap()), "16358e684895a928");
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
        let e = sample();
        let legacy = with_fingerprint(&encode_voucher_posted(&e).unwrap(), VOUCHER_POSTED_V1_LEGACY_FINGERPRINT);
        assert_eq!(decode(&legacy).unwrap(), Event::VoucherPosted(e.clone()));
        let a = sample_accounts();
        let legacy = with_fingerprint(&encode_accounts_changed(&a).unwrap(), ACCOUNTS_CHANGED_V1_LEGACY_FINGERPRINT);
        assert_eq!(decode(&legacy).unwrap(), Event::AccountsChanged(a));

        // What the codec wrote before is what apache-avro's own single-object writer still writes: same framing and
        // datum, under the legacy fingerprint. It decodes too.
        let known = voucher_posted_v1();
        let value = apache_avro::to_value(&e).unwrap().resolve(&known.schema).unwrap();
        let mut reference = Vec::new();
        apache_avro::GenericSingleObjectWriter::new_with_capacity(&known.schema, 1024).unwrap().write_value(value, &mut reference).unwrap();
        assert_eq!(fingerprint_of(&reference).unwrap(), VOUCHER_POSTED_V1_LEGACY_FINGERPRINT);
        assert_eq!(with_fingerprint(&reference, voucher_posted_fingerprint()), encode_voucher_posted(&e).unwrap());
        assert_eq!(decode(&reference).unwrap(), Event::VoucherPosted(e));
    }

    const VOUCHER_POSTED_V2_AVSC: &str = include_str!("../avro/test/voucher_posted_v2.avsc");

    fn v1_record(e: &VoucherPosted) -> Vec<(String, apache_avro::types::Value)> {
        match apache_avro::to_value(e).unwrap().resolve(&voucher_posted_v1().schema).unwrap() {
            apache_avro::types::Value::Record(fields) => fields,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn written_with_v1_read_with_v2_gets_the_default() {
        use apache_avro::types::Value;
        let v2 = Schema::parse_str(VOUCHER_POSTED_V2_AVSC).unwrap();
        let e = sample();
        let message = encode_voucher_posted(&e).unwrap();
        let mut datum = &message[SINGLE_OBJECT_HEADER_BYTES..];
        let read = apache_avro::from_avro_datum(&voucher_posted_v1().schema, &mut datum, Some(&v2)).unwrap();
        assert!(datum.is_empty(), "the whole datum was read");
        let Value::Record(fields) = read else { panic!("not a record: {read:?}") };
        let (source, v1_fields) = fields.split_last().unwrap();
        assert_eq!(source, &("source".to_owned(), Value::String("api".into())));
        assert_eq!(v1_fields, &v1_record(&e)[..]);
    }

    #[test]
    fn written_with_v2_read_with_v1_skips_the_new_field() {
        use apache_avro::types::Value;
        let v2 = Schema::parse_str(VOUCHER_POSTED_V2_AVSC).unwrap();
        let e = sample();
        let mut fields = v1_record(&e);
        fields.push(("source".into(), Value::String("import".into())));
        let datum = apache_avro::to_avro_datum(&v2, Value::Record(fields)).unwrap();
        let mut rest = &datum[..];
        let read = apache_avro::from_avro_datum(&v2, &mut rest, Some(&voucher_posted_v1().schema)).unwrap();
        assert!(rest.is_empty(), "the whole datum was read");
        assert_eq!(apache_avro::from_value::<VoucherPosted>(&read).unwrap(), e);

        // Our codec has no v2, so it refuses such a message by its fingerprint rather than guess at it.
        let v2_fingerprint = crc64_avro(parsing_canonical_form(VOUCHER_POSTED_V2_AVSC).unwrap().as_bytes());
        let mut message = Vec::from(SINGLE_OBJECT_MAGIC);
        message.extend_from_slice(&v2_fingerprint.to_le_bytes());
        message.extend_from_slice(&datum);
        assert!(matches!(decode(&message), Err(Error::UnknownSchema(fp)) if fp == v2_fingerprint));
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
        let e = sample_accounts();
        let bytes = encode_accounts_changed(&e).unwrap();
        assert_ne!(fingerprint_of(&bytes).unwrap(), voucher_posted_fingerprint());
        assert_eq!(decode(&bytes).unwrap(), Event::AccountsChanged(e));
        // A legacy fingerprint of one schema never picks the other.
        let crossed = with_fingerprint(&bytes, VOUCHER_POSTED_V1_LEGACY_FINGERPRINT);
        assert!(decode(&crossed).is_err());
    }
}
