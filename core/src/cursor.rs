//! Opaque keyset cursors for list endpoints: a small serde value (the sort key of the last row a page returned, and
//! whatever else the next page needs) travels to the client as a string and comes back as the `cursor` query
//! parameter.
//!
//! The string is the value's JSON in lowercase hex. Clients must treat it as opaque: hex keeps it URL-safe without
//! percent-encoding and needs no extra dependency, and JSON lets a field be added later while old cursors still
//! decode. A cursor is not signed; it only ever selects rows of the caller's own company, so a forged one can at worst
//! mislead the client that forged it.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Longest cursor accepted, in characters. Real cursors are a few hundred; anything longer is refused before it is
/// decoded, so a client cannot make the server parse an arbitrarily large value.
pub const CURSOR_CHARS_MAX: usize = 2048;

/// The opaque text of a cursor value.
///
/// # Panics
/// Never in practice: serialising a plain struct of strings, numbers and dates to JSON cannot fail.
#[must_use]
pub fn encode<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("a cursor value serialises to JSON");
    let mut out = String::with_capacity(json.len() * 2);
    for b in json {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The value a cursor encodes, or an explanation fit for a 422 field error when the text is not one of ours.
///
/// # Errors
/// The text is too long, not hex, or not the JSON of a `T`.
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    const NOT_OURS: &str = "is not a cursor this endpoint returned";
    if text.len() > CURSOR_CHARS_MAX {
        return Err(format!("must be at most {CURSOR_CHARS_MAX} characters"));
    }
    if text.len() % 2 != 0 {
        return Err(NOT_OURS.to_owned());
    }
    let bytes = text
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| NOT_OURS.to_owned())?;
    serde_json::from_slice(&bytes).map_err(|_| NOT_OURS.to_owned())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Key {
        d: String,
        n: Option<String>,
        i: u64,
    }

    #[test]
    fn round_trips_and_refuses_strangers() {
        let key = Key { d: "2025-03-01".into(), n: None, i: 7 };
        let text = encode(&key);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(decode::<Key>(&text).unwrap(), key);
        for bad in ["", "abc", "zz", "7b7d", &"0".repeat(CURSOR_CHARS_MAX + 2)] {
            assert!(decode::<Key>(bad).is_err(), "{bad:?}");
        }
    }
}
