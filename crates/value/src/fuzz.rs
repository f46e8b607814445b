//! Fuzz entry points, shared by the cargo-fuzz targets in `fuzz/` and by this crate's
//! proptests. Each feeds arbitrary bytes to a decoder, and on success asserts that what was
//! decoded survives a re-encode and decode unchanged. A panic is a bug.

use crate::id::{DocumentId, InternalId, TableNumber};
use crate::key;
use crate::value::Value;

/// Decodes `data` as Convex JSON; a decoded value must be valid and round-trip through JSON
/// text and through the key encoding.
pub fn fuzz_json(data: &[u8]) {
    let Ok(value) = Value::from_json_bytes(data) else {
        return;
    };
    assert_eq!(
        value.validate(),
        Ok(()),
        "from_json accepted an invalid value"
    );
    let text = value.to_json_string();
    match Value::from_json_bytes(text.as_bytes()) {
        Ok(again) => assert_eq!(again, value, "JSON round trip changed the value: {text}"),
        Err(e) => panic!("re-encoded JSON does not decode: {e}: {text}"),
    }
    assert_eq!(Value::from_json(&value.to_json()).as_ref(), Ok(&value));
    assert_eq!(key::decode(&key::encode_to_vec(&value)), Ok(value));
}

/// Decodes `data` (if UTF-8) as an id string, which must then be the id's only spelling; also
/// builds an id from the first 20 bytes and checks it round-trips.
pub fn fuzz_id(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = DocumentId::decode(text)
    {
        assert_eq!(
            id.encode(),
            text,
            "an id decoded from a non-canonical spelling"
        );
    }
    if let Some((table, rest)) = data.split_first_chunk::<4>()
        && let Some((internal, _)) = rest.split_first_chunk::<16>()
        && let Ok(table) = TableNumber::new(u32::from_le_bytes(*table))
    {
        let id = DocumentId::new(table, InternalId(*internal));
        assert_eq!(DocumentId::decode(&id.encode()), Ok(id));
    }
}

/// Decodes `data` as a key; the encoding is canonical, so re-encoding what was decoded must
/// reproduce `data` exactly.
pub fn fuzz_key(data: &[u8]) {
    if let Ok(parts) = key::decode_parts(data) {
        let mut again = Vec::with_capacity(data.len());
        for part in &parts {
            match part {
                Some(value) => key::encode(value, &mut again),
                None => key::encode_missing(&mut again),
            }
        }
        assert_eq!(
            again, data,
            "decode_parts accepted a non-canonical encoding"
        );
    }
    if let Ok(value) = key::decode(data) {
        assert_eq!(
            key::encode_to_vec(&value),
            data,
            "decode accepted a non-canonical encoding"
        );
        // Whatever decodes also survives JSON, unless it breaks a value rule JSON enforces.
        if value.validate().is_ok() {
            assert_eq!(Value::from_json(&value.to_json()), Ok(value));
        }
    }
}
