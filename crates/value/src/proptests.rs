//! Property tests across modules: round trips, order preservation, and decoders that never
//! panic on arbitrary input.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use crate::arbitrary::{any_document, any_document_id, any_value, small_value};
use crate::fuzz::{fuzz_id, fuzz_json, fuzz_key};
use crate::key::{self, IndexKey};
use crate::{DocumentId, Value, validate_document};

fn enc(v: &Value) -> Vec<u8> {
    key::encode_to_vec(v)
}

fn hash_of(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn tuple_key(parts: &[Option<Value>]) -> IndexKey {
    let refs: Vec<Option<&Value>> = parts.iter().map(Option::as_ref).collect();
    IndexKey::from_parts(&refs).unwrap()
}

/// Replaces, inserts or deletes a few bytes: turns valid encodings into near-valid ones, which
/// reach deeper into a decoder than random bytes do.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, byte, kind) in edits {
        let at = if bytes.is_empty() {
            0
        } else {
            at % (bytes.len() + 1)
        };
        match kind % 3 {
            0 if at < bytes.len() => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.push(byte),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_values_are_valid(v in any_value()) {
        prop_assert_eq!(v.validate(), Ok(()));
    }

    #[test]
    fn json_round_trip(v in any_value()) {
        prop_assert_eq!(Value::from_json(&v.to_json()), Ok(v.clone()));
        let text = v.to_json_string();
        prop_assert_eq!(Value::from_json_bytes(text.as_bytes()), Ok(v));
    }

    #[test]
    fn key_round_trip(v in any_value()) {
        let bytes = enc(&v);
        prop_assert!(bytes.len() >= v.size_bytes());
        prop_assert_eq!(key::decode(&bytes), Ok(v));
    }

    #[test]
    fn key_order_matches_value_order(a in any_value(), b in any_value()) {
        prop_assert_eq!(a.cmp(&b), enc(&a).cmp(&enc(&b)));
    }

    #[test]
    fn key_order_matches_value_order_on_close_values(a in small_value(), b in small_value()) {
        prop_assert_eq!(a.cmp(&b), enc(&a).cmp(&enc(&b)), "{:?} vs {:?}", a, b);
        prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
        prop_assert_eq!(b.cmp(&a), a.cmp(&b).reverse());
        if a == b {
            prop_assert_eq!(hash_of(&a), hash_of(&b));
        }
    }

    #[test]
    fn sorting_by_value_and_by_key_agree(mut values in vec(small_value(), 0..24)) {
        let mut by_key = values.clone();
        by_key.sort_by_key(enc);
        values.sort();
        prop_assert_eq!(values, by_key);
    }

    #[test]
    fn tuple_order(
        a in vec(option::of(small_value()), 0..4),
        b in vec(option::of(small_value()), 0..4),
    ) {
        // `Option`'s order puts `None` (missing) first; `Vec`'s is lexicographic.
        prop_assert_eq!(a.cmp(&b), tuple_key(&a).cmp(&tuple_key(&b)));
        prop_assert_eq!(key::decode_parts(tuple_key(&a).as_bytes()), Ok(a.clone()));
        prop_assert_eq!(tuple_key(&a).parts(), Ok(a));
    }

    #[test]
    fn documents_validate_and_round_trip(fields in any_document()) {
        prop_assert_eq!(validate_document(&fields), Ok(()));
        let mut body = Vec::new();
        key::encode_document(&fields, &mut body);
        prop_assert_eq!(key::decode_document(&body), Ok(fields));
    }

    #[test]
    fn id_round_trip(id in any_document_id()) {
        let text = id.encode();
        prop_assert!((31..=37).contains(&text.len()));
        prop_assert_eq!(DocumentId::decode(&text), Ok(id));
        prop_assert_eq!(text.parse::<DocumentId>(), Ok(id));
    }

    #[test]
    fn id_one_character_changed(
        id in any_document_id(),
        at in any::<usize>(),
        ch in select("0123456789abcdefghjkmnpqrstvwxyzABiloau_-".chars().collect::<Vec<_>>()),
    ) {
        let text = id.encode();
        let at = at % text.len();
        let mut changed = text.clone();
        changed.replace_range(at..=at, &ch.to_string());
        prop_assume!(changed != text);
        if let Ok(other) = DocumentId::decode(&changed) {
            prop_assert_ne!(other, id);
            prop_assert_eq!(other.encode(), changed);
        }
    }

    #[test]
    fn id_order_is_table_then_internal(a in any_document_id(), b in any_document_id()) {
        prop_assert_eq!(a.cmp(&b), (a.table.get(), a.internal.0).cmp(&(b.table.get(), b.internal.0)));
    }

    #[test]
    fn decoders_never_panic_on_bytes(data in vec(any::<u8>(), 0..256)) {
        let _ = Value::from_json_bytes(&data);
        let _ = key::decode(&data);
        let _ = key::decode_parts(&data);
        let _ = IndexKey::from_bytes(data.clone());
        fuzz_json(&data);
        fuzz_id(&data);
        fuzz_key(&data);
    }

    #[test]
    fn id_decoder_never_panics(text in any::<String>(), base32 in "[0-9a-z]{29,39}") {
        let _ = DocumentId::decode(&text);
        let _ = DocumentId::decode(&base32);
        fuzz_id(text.as_bytes());
        fuzz_id(base32.as_bytes());
    }

    #[test]
    fn fuzz_key_on_mutated_encodings(parts in vec(option::of(any_value()), 0..3), edits in edits()) {
        let bytes = tuple_key(&parts).into_bytes();
        fuzz_key(&bytes);
        fuzz_key(&mutate(bytes, &edits));
    }

    #[test]
    fn fuzz_json_on_mutated_text(v in any_value(), edits in edits()) {
        let text = v.to_json_string().into_bytes();
        fuzz_json(&text);
        fuzz_json(&mutate(text, &edits));
    }

    #[test]
    fn fuzz_id_on_mutated_ids(id in any_document_id(), edits in edits()) {
        let text = id.encode().into_bytes();
        fuzz_id(&text);
        fuzz_id(&mutate(text, &edits));
    }
}
