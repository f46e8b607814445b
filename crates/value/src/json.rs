//! Convex's JSON encoding of values ("convex_encoded_json"), exactly as clients send it.
//!
//! | Value   | JSON                                                                      |
//! |---------|---------------------------------------------------------------------------|
//! | Null    | `null`                                                                    |
//! | Float64 | a number, except NaN, ±Infinity and -0: `{"$float": base64(8 bytes LE)}`  |
//! | Int64   | `{"$integer": base64(8 bytes LE two's complement)}`                       |
//! | Boolean | `true` / `false`                                                          |
//! | String  | a string                                                                  |
//! | Bytes   | `{"$bytes": base64}`                                                      |
//! | Array   | an array                                                                  |
//! | Object  | an object (no key may start with `$`)                                     |
//!
//! Every JSON number decodes to a Float64, even `5`: clients send JS numbers that way, and only
//! `$integer` makes an Int64. A `$` tag is recognised only in an object with exactly one key;
//! any other `$` key (`$undefined`, the legacy `$set`/`$map`, a tag beside other keys) is an
//! error. Base64 is the standard alphabet; decoding accepts it padded or not, encoding pads.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use knobs::{JSON_MAX_BYTES, VALUE_MAX_BYTES, VALUE_MAX_NESTING};
use serde_json::{Map, Number};

use crate::value::{
    FieldPath, Segment, Value, ValueError, check_array_len, check_container_depth, check_field,
    check_object_len, truncate_for_message,
};

const INTEGER_TAG: &str = "$integer";
const FLOAT_TAG: &str = "$float";
const BYTES_TAG: &str = "$bytes";

/// Lenient on input, as JS `atob`-style decoders are: padding optional, unused trailing bits
/// ignored. The decoded bytes are what count; re-encoding always produces canonical text.
const BASE64_INPUT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A JSON text or JSON value is not a valid Convex value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("JSON text is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unknown type tag {tag:?} at {path}; only $integer, $float and $bytes exist")]
    UnknownTag { tag: String, path: FieldPath },
    #[error(
        "object at {path} has key {key:?} among other keys; keys starting with '$' are reserved"
    )]
    ReservedKey { key: String, path: FieldPath },
    #[error("{tag} at {path} must hold a base64 string, not {found}")]
    TagPayloadNotString {
        tag: &'static str,
        found: &'static str,
        path: FieldPath,
    },
    #[error("{tag} at {path} holds invalid base64: {reason}")]
    BadBase64 {
        tag: &'static str,
        reason: String,
        path: FieldPath,
    },
    #[error("{tag} at {path} must decode to exactly 8 bytes, not {len}")]
    WrongPayloadLength {
        tag: &'static str,
        len: usize,
        path: FieldPath,
    },
    #[error("$float at {path} holds {value}, which should be encoded as a number")]
    FloatShouldBeNumber { value: f64, path: FieldPath },
    /// The JSON is well formed but breaks a value rule (nesting, lengths, field names, size).
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl JsonError {
    fn within(self, segment: Segment<'_>) -> Self {
        match self {
            JsonError::Invalid(e) => JsonError::Invalid(e.within(segment)),
            mut other => {
                match &mut other {
                    JsonError::UnknownTag { path, .. }
                    | JsonError::ReservedKey { path, .. }
                    | JsonError::TagPayloadNotString { path, .. }
                    | JsonError::BadBase64 { path, .. }
                    | JsonError::WrongPayloadLength { path, .. }
                    | JsonError::FloatShouldBeNumber { path, .. } => {
                        path.push_front(segment);
                    }
                    JsonError::Syntax(_) | JsonError::TooLarge { .. } | JsonError::Invalid(_) => {}
                }
                other
            }
        }
    }
}

impl Value {
    /// Decodes Convex JSON, enforcing every rule of [`Value::validate`] on the way. Nesting is
    /// checked before descending, so a deep `serde_json::Value` cannot exhaust the stack.
    pub fn from_json(json: &serde_json::Value) -> Result<Value, JsonError> {
        let value = convert(json, 0)?;
        let size = value.size_bytes();
        if size > VALUE_MAX_BYTES {
            return Err(ValueError::TooLarge {
                size,
                max: VALUE_MAX_BYTES,
            }
            .into());
        }
        Ok(value)
    }

    /// Parses and decodes a Convex JSON text. Texts over `JSON_MAX_BYTES` are refused before
    /// parsing, and so are texts nested deeper than any valid value could be.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Value, JsonError> {
        if bytes.len() > JSON_MAX_BYTES {
            return Err(JsonError::TooLarge {
                len: bytes.len(),
                max: JSON_MAX_BYTES,
            });
        }
        // serde_json stops at 128 levels with a syntax error; anything over our limit should
        // be reported as too deep instead, and needn't be parsed at all.
        if json_bracket_depth(bytes) > VALUE_MAX_NESTING + 1 {
            return Err(ValueError::TooDeep {
                max: VALUE_MAX_NESTING,
                path: FieldPath::default(),
            }
            .into());
        }
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| JsonError::Syntax(e.to_string()))?;
        Value::from_json(&json)
    }

    /// Encodes as Convex JSON. Objects come out with sorted keys.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int64(v) => tagged(INTEGER_TAG, &v.to_le_bytes()),
            Value::Float64(v) => match Number::from_f64(*v) {
                Some(n) if !is_negative_zero(*v) => serde_json::Value::Number(n),
                // NaN, ±Infinity (no JSON number exists) and -0 (a number would lose the sign).
                _ => tagged(FLOAT_TAG, &v.to_le_bytes()),
            },
            Value::Boolean(v) => serde_json::Value::Bool(*v),
            Value::String(v) => serde_json::Value::String(v.clone()),
            Value::Bytes(v) => tagged(BYTES_TAG, v),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), value.to_json()))
                    .collect(),
            ),
        }
    }

    /// [`Value::to_json`] as compact JSON text. Floats use the shortest text that reads back
    /// to the same bits.
    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }
}

fn is_negative_zero(v: f64) -> bool {
    v == 0.0 && v.is_sign_negative()
}

fn tagged(tag: &str, payload: &[u8]) -> serde_json::Value {
    let mut map = Map::new();
    map.insert(
        tag.to_owned(),
        serde_json::Value::String(STANDARD.encode(payload)),
    );
    serde_json::Value::Object(map)
}

fn json_type_name(json: &serde_json::Value) -> &'static str {
    match json {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Converts `json`, which sits inside `depth` containers.
fn convert(json: &serde_json::Value, depth: usize) -> Result<Value, JsonError> {
    Ok(match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Float64(
            n.as_f64()
                .ok_or_else(|| JsonError::Syntax(format!("number {n} is not a 64-bit float")))?,
        ),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => {
            check_container_depth(depth, VALUE_MAX_NESTING)?;
            check_array_len(items.len())?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(convert(item, depth + 1).map_err(|e| e.within(Segment::Index(i)))?);
            }
            Value::Array(out)
        }
        serde_json::Value::Object(map) => {
            if map.len() == 1
                && let Some((key, payload)) = map.iter().next()
                && key.starts_with('$')
            {
                return convert_tagged(key, payload);
            }
            check_container_depth(depth, VALUE_MAX_NESTING)?;
            check_object_len(map.len())?;
            let mut out = std::collections::BTreeMap::new();
            for (name, item) in map {
                if name.starts_with('$') {
                    return Err(JsonError::ReservedKey {
                        key: truncate_for_message(name),
                        path: FieldPath::default(),
                    });
                }
                check_field(name)?;
                let value = convert(item, depth + 1).map_err(|e| e.within(Segment::Field(name)))?;
                out.insert(name.clone(), value);
            }
            Value::Object(out)
        }
    })
}

fn convert_tagged(tag: &str, payload: &serde_json::Value) -> Result<Value, JsonError> {
    let tag: &'static str = match tag {
        INTEGER_TAG => INTEGER_TAG,
        FLOAT_TAG => FLOAT_TAG,
        BYTES_TAG => BYTES_TAG,
        _ => {
            return Err(JsonError::UnknownTag {
                tag: truncate_for_message(tag),
                path: FieldPath::default(),
            });
        }
    };
    let serde_json::Value::String(text) = payload else {
        return Err(JsonError::TagPayloadNotString {
            tag,
            found: json_type_name(payload),
            path: FieldPath::default(),
        });
    };
    let bytes = BASE64_INPUT
        .decode(text)
        .map_err(|e| JsonError::BadBase64 {
            tag,
            reason: e.to_string(),
            path: FieldPath::default(),
        })?;
    if tag == BYTES_TAG {
        return Ok(Value::Bytes(bytes));
    }
    let Ok(eight) = <[u8; 8]>::try_from(bytes.as_slice()) else {
        return Err(JsonError::WrongPayloadLength {
            tag,
            len: bytes.len(),
            path: FieldPath::default(),
        });
    };
    if tag == INTEGER_TAG {
        return Ok(Value::Int64(i64::from_le_bytes(eight)));
    }
    let v = f64::from_le_bytes(eight);
    if v.is_finite() && !is_negative_zero(v) {
        return Err(JsonError::FloatShouldBeNumber {
            value: v,
            path: FieldPath::default(),
        });
    }
    Ok(Value::Float64(v))
}

/// The deepest nesting of `[`/`{` in a JSON text, ignoring brackets inside strings. Runs on
/// malformed text too (the parser reports that afterwards).
fn json_bracket_depth(bytes: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use knobs::{ARRAY_MAX_LEN, OBJECT_MAX_FIELDS};
    use serde_json::json;

    use super::*;
    use crate::value::FieldNameError;

    fn enc(v: &Value) -> String {
        v.to_json_string()
    }

    fn dec(text: &str) -> Result<Value, JsonError> {
        Value::from_json_bytes(text.as_bytes())
    }

    #[test]
    fn verified_vectors() {
        assert_eq!(enc(&Value::Int64(1)), r#"{"$integer":"AQAAAAAAAAA="}"#);
        assert_eq!(enc(&Value::Int64(-1)), r#"{"$integer":"//////////8="}"#);
        assert_eq!(
            enc(&Value::Float64(f64::NAN)),
            r#"{"$float":"AAAAAAAA+H8="}"#
        );
        assert_eq!(
            enc(&Value::Float64(f64::INFINITY)),
            r#"{"$float":"AAAAAAAA8H8="}"#
        );
        assert_eq!(
            enc(&Value::Float64(f64::NEG_INFINITY)),
            r#"{"$float":"AAAAAAAA8P8="}"#
        );
        assert_eq!(enc(&Value::Float64(-0.0)), r#"{"$float":"AAAAAAAAAIA="}"#);
        assert_eq!(enc(&Value::Bytes(vec![1, 2, 3])), r#"{"$bytes":"AQID"}"#);
        // And back.
        assert_eq!(dec(r#"{"$integer":"AQAAAAAAAAA="}"#), Ok(Value::Int64(1)));
        assert_eq!(dec(r#"{"$integer":"//////////8="}"#), Ok(Value::Int64(-1)));
        assert_eq!(
            dec(r#"{"$float":"AAAAAAAA+H8="}"#),
            Ok(Value::Float64(f64::NAN))
        );
        assert_eq!(
            dec(r#"{"$float":"AAAAAAAA8P8="}"#),
            Ok(Value::Float64(f64::NEG_INFINITY))
        );
        assert_eq!(
            dec(r#"{"$float":"AAAAAAAAAIA="}"#),
            Ok(Value::Float64(-0.0))
        );
        assert_eq!(dec(r#"{"$bytes":"AQID"}"#), Ok(Value::Bytes(vec![1, 2, 3])));
    }

    #[test]
    fn plain_values() {
        let v = dec(r#"{"a":[null,true,"s",1.5],"b":{}}"#).unwrap();
        let expected = Value::Object(BTreeMap::from([
            (
                "a".to_owned(),
                Value::Array(vec![
                    Value::Null,
                    Value::Boolean(true),
                    Value::from("s"),
                    Value::Float64(1.5),
                ]),
            ),
            ("b".to_owned(), Value::Object(BTreeMap::new())),
        ]));
        assert_eq!(v, expected);
        assert_eq!(enc(&v), r#"{"a":[null,true,"s",1.5],"b":{}}"#);
    }

    #[test]
    fn integral_numbers_are_floats() {
        assert_eq!(dec("5"), Ok(Value::Float64(5.0)));
        assert_eq!(dec("5.0"), Ok(Value::Float64(5.0)));
        assert_eq!(dec("-7"), Ok(Value::Float64(-7.0)));
        // As in JS `JSON.parse`, a literal -0 keeps its sign.
        assert_eq!(dec("-0"), Ok(Value::Float64(-0.0)));
        assert_eq!(
            dec("18446744073709551617"),
            Ok(Value::Float64(1.8446744073709552e19))
        );
        assert_eq!(enc(&Value::Float64(5.0)), "5.0");
        assert_eq!(enc(&Value::Float64(0.0)), "0.0");
    }

    #[test]
    fn floats_read_back_exactly() {
        for v in [
            0.1,
            1.0 / 3.0,
            2.2250738585072014e-308,
            5e-324,
            f64::MAX,
            1e23,
        ] {
            assert_eq!(dec(&enc(&Value::Float64(v))), Ok(Value::Float64(v)));
        }
    }

    #[test]
    fn base64_padding_is_optional() {
        assert_eq!(dec(r#"{"$integer":"AQAAAAAAAAA"}"#), Ok(Value::Int64(1)));
        assert_eq!(dec(r#"{"$bytes":"AQ"}"#), Ok(Value::Bytes(vec![1])));
        assert_eq!(dec(r#"{"$bytes":"AQ=="}"#), Ok(Value::Bytes(vec![1])));
        assert_eq!(dec(r#"{"$bytes":""}"#), Ok(Value::Bytes(vec![])));
    }

    #[test]
    fn syntax_errors() {
        assert!(matches!(dec("{"), Err(JsonError::Syntax(_))));
        assert!(matches!(dec("[1,]"), Err(JsonError::Syntax(_))));
        assert!(matches!(dec(""), Err(JsonError::Syntax(_))));
        assert!(matches!(dec("1 2"), Err(JsonError::Syntax(_))));
        assert!(matches!(dec("NaN"), Err(JsonError::Syntax(_))));
        assert!(matches!(dec("1e400"), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn integer_payload_must_be_8_bytes() {
        // 7 bytes.
        let err = dec(r#"{"$integer":"AQAAAAAAAA=="}"#).unwrap_err();
        assert!(
            matches!(
                err,
                JsonError::WrongPayloadLength {
                    tag: "$integer",
                    len: 7,
                    ..
                }
            ),
            "{err}"
        );
        let err = dec(r#"{"$float":"AAAAAAAA+H8A"}"#).unwrap_err();
        assert!(
            matches!(err, JsonError::WrongPayloadLength { len: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn finite_floats_must_be_numbers() {
        let one_and_a_half = STANDARD.encode(1.5f64.to_le_bytes());
        let err = dec(&format!(r#"{{"$float":"{one_and_a_half}"}}"#)).unwrap_err();
        assert!(matches!(err, JsonError::FloatShouldBeNumber { value, .. } if value == 1.5));
        assert!(err.to_string().contains("should be encoded as a number"));
        let zero = STANDARD.encode(0f64.to_le_bytes());
        let err = dec(&format!(r#"{{"$float":"{zero}"}}"#)).unwrap_err();
        assert!(matches!(err, JsonError::FloatShouldBeNumber { .. }));
    }

    #[test]
    fn unknown_and_reserved_tags() {
        for tag in ["$set", "$map", "$undefined", "$", "$Integer"] {
            let err = dec(&format!(r#"{{"{tag}":[]}}"#)).unwrap_err();
            assert!(
                matches!(err, JsonError::UnknownTag { tag: ref t, .. } if t == tag),
                "{err}"
            );
        }
        let err = dec(r#"{"$integer":"AQAAAAAAAAA=","a":1}"#).unwrap_err();
        assert!(
            matches!(err, JsonError::ReservedKey { ref key, .. } if key == "$integer"),
            "{err}"
        );
    }

    #[test]
    fn tag_payload_errors() {
        let err = dec(r#"{"$integer":1}"#).unwrap_err();
        assert!(matches!(
            err,
            JsonError::TagPayloadNotString {
                tag: "$integer",
                found: "a number",
                ..
            }
        ));
        let err = dec(r#"{"$bytes":"a*b="}"#).unwrap_err();
        assert!(
            matches!(err, JsonError::BadBase64 { tag: "$bytes", .. }),
            "{err}"
        );
        // URL-safe alphabet is not standard base64.
        let err = dec(r#"{"$bytes":"-_8="}"#).unwrap_err();
        assert!(matches!(err, JsonError::BadBase64 { .. }), "{err}");
    }

    #[test]
    fn errors_carry_paths() {
        let err = dec(r#"{"a":[1,{"b":{"$integer":"AA=="}}]}"#).unwrap_err();
        assert!(
            matches!(err, JsonError::WrongPayloadLength { ref path, .. } if path.as_str() == "a[1].b")
        );
        let err = dec(r#"{"a":{"b c":{"\u0001":1}}}"#).unwrap_err();
        match err {
            JsonError::Invalid(ValueError::InvalidFieldName { name, reason, path }) => {
                assert_eq!(name, "\u{1}");
                assert_eq!(reason, FieldNameError::InvalidCharacter { ch: '\u{1}' });
                assert_eq!(path.as_str(), "a.b c");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn nested_json(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn nesting() {
        assert!(dec(&nested_json(64)).is_ok());
        for levels in [65, 66, 127, 128, 129, 100_000] {
            let err = dec(&nested_json(levels)).unwrap_err();
            assert!(
                matches!(err, JsonError::Invalid(ValueError::TooDeep { max: 64, .. })),
                "{levels}: {err}"
            );
        }
        // A tag at the deepest level is a scalar, not another level.
        let deep_int = format!(
            "{}{{\"$integer\":\"AQAAAAAAAAA=\"}}{}",
            "[".repeat(64),
            "]".repeat(64)
        );
        assert!(dec(&deep_int).is_ok());
        // Brackets inside strings do not count.
        let s = format!("[\"{}\\\"{}\"]", "[".repeat(200), "{".repeat(200));
        assert!(dec(&s).is_ok());
    }

    #[test]
    fn deep_serde_values_are_rejected_without_recursing_through_them() {
        let mut json = json!(null);
        for _ in 0..100 {
            json = json!([json]);
        }
        let err = Value::from_json(&json).unwrap_err();
        assert!(matches!(
            err,
            JsonError::Invalid(ValueError::TooDeep { .. })
        ));
    }

    #[test]
    fn limits() {
        let long = serde_json::Value::Array(vec![json!(null); ARRAY_MAX_LEN + 1]);
        let err = Value::from_json(&long).unwrap_err();
        assert!(matches!(
            err,
            JsonError::Invalid(ValueError::ArrayTooLong { .. })
        ));
        let wide: Map<String, serde_json::Value> = (0..=OBJECT_MAX_FIELDS)
            .map(|i| (format!("f{i}"), json!(null)))
            .collect();
        let err = Value::from_json(&serde_json::Value::Object(wide)).unwrap_err();
        assert!(matches!(
            err,
            JsonError::Invalid(ValueError::TooManyFields { .. })
        ));

        let huge = vec![b' '; JSON_MAX_BYTES + 1];
        let err = Value::from_json_bytes(&huge).unwrap_err();
        assert_eq!(
            err,
            JsonError::TooLarge {
                len: JSON_MAX_BYTES + 1,
                max: JSON_MAX_BYTES
            }
        );
    }

    #[test]
    fn value_size_limit() {
        // Two 17 MiB strings: each fine, together over 32 MiB.
        let s = "x".repeat(17 << 20);
        let json = json!([s, s]);
        let err = Value::from_json(&json).unwrap_err();
        assert!(matches!(
            err,
            JsonError::Invalid(ValueError::TooLarge { .. })
        ));
    }

    #[test]
    fn dollar_keys_in_objects() {
        let err = dec(r#"{"a":1,"$b":2}"#).unwrap_err();
        assert!(matches!(err, JsonError::ReservedKey { .. }));
        // Not at the start: an ordinary name.
        assert!(dec(r#"{"a$":1}"#).is_ok());
        assert!(dec(r#"{"":1}"#).is_ok());
    }
}
