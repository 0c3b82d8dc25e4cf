//! Resident registration numbers at rest: a [`ResidentNumber`] and its company come in, an opaque blob for Postgres
//! comes out, and back. PIPA requires these numbers encrypted at rest; the key never leaves the process's config.
//!
//! The cipher is AES-256-GCM with the 32-byte key of `RESIDENT_NUMBER_KEY` (64 hex digits, or base64). Every value
//! gets a fresh random 96-bit nonce, stored with it, so two encryptions of one number differ and equal numbers cannot
//! be found by comparing blobs. A blob is [`FORMAT_V1`], the nonce, then the ciphertext and its 16-byte tag
//! ([`ENCRYPTED_BYTES`] in all). The associated data binds a blob to its company, so a blob copied into another
//! company's row does not decrypt.
//!
//! A deployment must set its own key. `.env.sample` publishes [`RESIDENT_NUMBER_KEY_SAMPLE`] for dev stacks; it is
//! refused unless `KERP_DEV_STACK` is set, and a dev stack without any key uses it (with a warning), so that
//! `compose/dev` and `compose/compose.yaml` start without one. Rotating the key needs a re-encryption of the stored
//! lines (decrypt with the old, encrypt with the new); the format byte leaves room for a key id when that is built.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use base64::Engine;
use kerp_core::resident::{ResidentNumber, RESIDENT_NUMBER_DIGITS};
use uuid::Uuid;

/// Bytes of an AES-256 key.
pub const RESIDENT_NUMBER_KEY_BYTES: usize = 32;
/// Bytes of a GCM nonce (96 bits).
pub const NONCE_BYTES: usize = 12;
/// Bytes of a GCM tag.
pub const TAG_BYTES: usize = 16;
/// The first byte of every blob: AES-256-GCM with a 96-bit nonce and the company in the associated data.
pub const FORMAT_V1: u8 = 1;
/// Bytes of a blob: the format byte, the nonce, the 13 encrypted digits and the tag (42).
pub const ENCRYPTED_BYTES: usize = 1 + NONCE_BYTES + RESIDENT_NUMBER_DIGITS + TAG_BYTES;

/// The public dev-stack key of `.env.sample`: base64 of the 32 ASCII bytes `kerp-dev-only-resident-key-32byt`.
/// Everything encrypted with it is readable by anyone, so it is refused outside a dev stack.
pub const RESIDENT_NUMBER_KEY_SAMPLE: &str = "a2VycC1kZXYtb25seS1yZXNpZGVudC1rZXktMzJieXQ=";

/// Put before the company id in the associated data, so that no other use of the key can produce a valid blob.
const AAD_DOMAIN: &[u8] = b"kerp:resident_number:v1:";

/// The key as configured: text that never formats (a derived `Debug` of the config would otherwise print it).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyText(String);

impl KeyText {
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for KeyText {
    fn from(s: &str) -> Self {
        KeyText(s.to_owned())
    }
}

impl FromStr for KeyText {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(KeyText(s.to_owned()))
    }
}

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyText([redacted])")
    }
}

/// Why grpc-api refuses to start with the configured key. The messages never show the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("RESIDENT_NUMBER_KEY is required: 32 random bytes as 64 hex digits or base64 (`head -c 32 /dev/urandom | base64`)")]
    Missing,
    #[error("RESIDENT_NUMBER_KEY must be 32 bytes written as 64 hex digits or as base64")]
    Malformed,
    #[error("RESIDENT_NUMBER_KEY is 32 zero bytes; set a random key")]
    Zero,
    #[error("RESIDENT_NUMBER_KEY is the public sample of .env.sample, which only a dev stack (KERP_DEV_STACK=1) may use")]
    Sample,
}

/// Why a value could not be encrypted or decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("the system random number generator failed")]
    Random,
    #[error("encryption failed")]
    Encrypt,
    #[error("the stored value is not a resident number blob of a known format")]
    Malformed,
    /// The wrong key, the wrong company, or a blob that was altered.
    #[error("the stored value does not decrypt with this key for this company")]
    Decrypt,
}

/// Reads a key written as 64 hex digits or as base64 (standard or URL-safe, padded or not).
///
/// # Errors
/// [`KeyError::Malformed`] unless it is exactly 32 bytes in one of those forms; [`KeyError::Zero`] for all zeros.
pub fn decode_key(text: &str) -> Result<[u8; RESIDENT_NUMBER_KEY_BYTES], KeyError> {
    let text = text.trim();
    let bytes = if text.len() == 2 * RESIDENT_NUMBER_KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex(text).ok_or(KeyError::Malformed)?
    } else {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(text).ok()).ok_or(KeyError::Malformed)?
    };
    let key: [u8; RESIDENT_NUMBER_KEY_BYTES] = bytes.try_into().map_err(|_| KeyError::Malformed)?;
    if key.iter().all(|b| *b == 0) {
        return Err(KeyError::Zero);
    }
    Ok(key)
}

/// Decodes an even number of hex digits.
fn hex(text: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(*pair.get(1)?)?)).collect()
}

/// Encrypts and decrypts resident numbers with the configured key. It never formats its key.
#[derive(Clone)]
pub struct ResidentCipher {
    cipher: Aes256Gcm,
}

impl fmt::Debug for ResidentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResidentCipher([key redacted])")
    }
}

impl ResidentCipher {
    #[must_use]
    pub fn new(key: &[u8; RESIDENT_NUMBER_KEY_BYTES]) -> Self {
        ResidentCipher { cipher: Aes256Gcm::new(key.into()) }
    }

    /// The cipher of the configured key. Without a key, a dev stack uses [`RESIDENT_NUMBER_KEY_SAMPLE`]; anywhere
    /// else the key is required and the sample is refused.
    ///
    /// # Errors
    /// [`KeyError`] saying what to set.
    pub fn from_config(key: Option<&KeyText>, dev_stack: bool) -> Result<Self, KeyError> {
        let text = match key {
            Some(k) if !k.expose().trim().is_empty() => k.expose(),
            _ if dev_stack => {
                tracing::warn!("RESIDENT_NUMBER_KEY is not set: this dev stack encrypts resident numbers with the public sample key");
                RESIDENT_NUMBER_KEY_SAMPLE
            }
            _ => return Err(KeyError::Missing),
        };
        let bytes = decode_key(text)?;
        let sample = decode_key(RESIDENT_NUMBER_KEY_SAMPLE)?;
        if bytes == sample && !dev_stack {
            return Err(KeyError::Sample);
        }
        Ok(Self::new(&bytes))
    }

    fn aad(company: Uuid) -> Vec<u8> {
        [AAD_DOMAIN, company.as_bytes()].concat()
    }

    /// The blob of `number` for `company`'s rows, under a fresh random nonce.
    ///
    /// # Errors
    /// [`CipherError::Random`] if the system cannot give random bytes; nothing is encrypted without a fresh nonce.
    pub fn encrypt(&self, company: Uuid, number: &ResidentNumber) -> Result<Vec<u8>, CipherError> {
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::try_generate().map_err(|_| CipherError::Random)?;
        let aad = Self::aad(company);
        let sealed = self.cipher.encrypt(&nonce, Payload { msg: number.expose_digits(), aad: &aad }).map_err(|_| CipherError::Encrypt)?;
        let mut blob = Vec::with_capacity(ENCRYPTED_BYTES);
        blob.push(FORMAT_V1);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// The number in a blob that [`ResidentCipher::encrypt`] made for `company`.
    ///
    /// # Errors
    /// [`CipherError::Malformed`] for a blob of another length or format, [`CipherError::Decrypt`] for another key,
    /// another company or an altered blob.
    pub fn decrypt(&self, company: Uuid, blob: &[u8]) -> Result<ResidentNumber, CipherError> {
        if blob.len() != ENCRYPTED_BYTES || blob[0] != FORMAT_V1 {
            return Err(CipherError::Malformed);
        }
        let (nonce, sealed) = blob[1..].split_at(NONCE_BYTES);
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| CipherError::Malformed)?;
        let aad = Self::aad(company);
        let plain = self.cipher.decrypt(&nonce, Payload { msg: sealed, aad: &aad }).map_err(|_| CipherError::Decrypt)?;
        let text = std::str::from_utf8(&plain).map_err(|_| CipherError::Malformed)?;
        ResidentNumber::parse(text).map_err(|_| CipherError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn number() -> ResidentNumber {
        ResidentNumber::parse("900101-1234567").unwrap()
    }

    fn cipher() -> ResidentCipher {
        ResidentCipher::new(&decode_key(HEX_KEY).unwrap())
    }

    #[test]
    fn a_value_round_trips_for_its_company_only() {
        let (c, company) = (cipher(), Uuid::new_v4());
        let blob = c.encrypt(company, &number()).unwrap();
        assert_eq!(blob.len(), ENCRYPTED_BYTES);
        assert_eq!(blob[0], FORMAT_V1);
        assert_eq!(c.decrypt(company, &blob).unwrap(), number());
        assert_eq!(c.decrypt(Uuid::new_v4(), &blob), Err(CipherError::Decrypt), "another company's associated data");
        let other = ResidentCipher::new(&[7; RESIDENT_NUMBER_KEY_BYTES]);
        assert_eq!(other.decrypt(company, &blob), Err(CipherError::Decrypt), "another key");
        let mut altered = blob.clone();
        altered[20] ^= 1;
        assert_eq!(c.decrypt(company, &altered), Err(CipherError::Decrypt));
        assert_eq!(c.decrypt(company, &blob[..41]), Err(CipherError::Malformed));
        let mut v2 = blob;
        v2[0] = 2;
        assert_eq!(c.decrypt(company, &v2), Err(CipherError::Malformed));
    }

    #[test]
    fn every_encryption_has_its_own_nonce_and_no_plain_digits() {
        let (c, company) = (cipher(), Uuid::new_v4());
        let blobs: Vec<Vec<u8>> = (0..64).map(|_| c.encrypt(company, &number()).unwrap()).collect();
        let nonces: std::collections::HashSet<&[u8]> = blobs.iter().map(|b| &b[1..=NONCE_BYTES]).collect();
        assert_eq!(nonces.len(), blobs.len(), "a fresh nonce per value");
        let distinct: std::collections::HashSet<&Vec<u8>> = blobs.iter().collect();
        assert_eq!(distinct.len(), blobs.len(), "equal numbers give different ciphertexts");
        for b in &blobs {
            assert!(!b.windows(6).any(|w| w == b"234567" || w == b"900101"), "no run of the plain digits");
            assert_eq!(c.decrypt(company, b).unwrap(), number());
        }
    }

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes() {
        let raw = decode_key(HEX_KEY).unwrap();
        assert_eq!(raw[31], 0x1f);
        assert_eq!(decode_key(&HEX_KEY.to_uppercase()).unwrap(), raw);
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        assert_eq!(decode_key(&STANDARD.encode(raw)).unwrap(), raw);
        assert_eq!(decode_key(&format!(" {} ", URL_SAFE_NO_PAD.encode(raw))).unwrap(), raw);
        assert_eq!(decode_key(RESIDENT_NUMBER_KEY_SAMPLE).unwrap(), *b"kerp-dev-only-resident-key-32byt");
        for bad in ["", "abc", &HEX_KEY[..62], &STANDARD.encode([1u8; 31]), &STANDARD.encode([1u8; 33]), "not base64 at all!"] {
            assert_eq!(decode_key(bad), Err(KeyError::Malformed), "{bad:?}");
        }
        assert_eq!(decode_key(&"0".repeat(64)), Err(KeyError::Zero));
    }

    #[test]
    fn the_sample_key_is_for_dev_stacks_and_a_key_is_required_elsewhere() {
        let sample = KeyText::from(RESIDENT_NUMBER_KEY_SAMPLE);
        assert_eq!(ResidentCipher::from_config(Some(&sample), false).unwrap_err(), KeyError::Sample);
        assert!(ResidentCipher::from_config(Some(&sample), true).is_ok());
        assert_eq!(ResidentCipher::from_config(None, false).unwrap_err(), KeyError::Missing);
        assert_eq!(ResidentCipher::from_config(Some(&KeyText::from("  ")), false).unwrap_err(), KeyError::Missing);
        assert_eq!(ResidentCipher::from_config(Some(&KeyText::from("short")), true).unwrap_err(), KeyError::Malformed);
        // A dev stack without a key uses the sample, so its blobs decrypt with the sample key.
        let company = Uuid::new_v4();
        let blob = ResidentCipher::from_config(None, true).unwrap().encrypt(company, &number()).unwrap();
        let with_sample = ResidentCipher::from_config(Some(&sample), true).unwrap();
        assert_eq!(with_sample.decrypt(company, &blob).unwrap(), number());
        assert!(ResidentCipher::from_config(Some(&KeyText::from(HEX_KEY)), false).is_ok());
    }

    #[test]
    fn nothing_formats_a_key_or_a_number() {
        let key = KeyText::from(HEX_KEY);
        assert_eq!(format!("{key:?}"), "KeyText([redacted])");
        assert_eq!(format!("{:?}", cipher()), "ResidentCipher([key redacted])");
        for e in [KeyError::Missing, KeyError::Malformed, KeyError::Zero, KeyError::Sample] {
            assert!(!e.to_string().contains(RESIDENT_NUMBER_KEY_SAMPLE));
        }
    }
}
