//! Value formats of HTTP replies, the arguments rule, and the function-result body shape
//! (protocol doc §1.1, §2.2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number};
use value::Value;

use super::error::bad_request;
use crate::{ApiError, FunctionResult};

/// How values in a reply are written (`format` in the request body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueFormat {
    /// `convex_encoded_json` / `convex_json`: the lossless encoding of §1.1.
    Encoded,
    /// `json` / `convex_clean_json`: lossy, human-readable (see [`clean_json`]).
    Clean,
}

impl ValueFormat {
    /// Reads the `format` field; absent or `null` means `default`.
    pub(super) fn parse(
        field: Option<&serde_json::Value>,
        default: ValueFormat,
    ) -> Result<ValueFormat, ApiError> {
        match field {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(serde_json::Value::String(name)) => match name.as_str() {
                "convex_encoded_json" | "convex_json" => Ok(ValueFormat::Encoded),
                "json" | "convex_clean_json" => Ok(ValueFormat::Clean),
                other => Err(bad_request(format!(
                    "unsupported format {other:?}; use \"convex_encoded_json\" or \"json\""
                ))),
            },
            Some(other) => Err(bad_request(format!(
                "format must be a string, not {}",
                json_type(other)
            ))),
        }
    }

    pub fn encode(self, value: &Value) -> serde_json::Value {
        match self {
            ValueFormat::Encoded => value.to_json(),
            ValueFormat::Clean => clean_json(value),
        }
    }
}

/// Convex's "clean" JSON export (`format: "json"`), as the real backend writes it: Int64 as its
/// decimal string, bytes as a standard padded base64 string, NaN and ±Infinity as the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"`, every other float (-0 included) as a JSON number, and
/// everything else as itself. Distinct values may export alike (`1n` and `"1"`).
pub fn clean_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Int64(v) => serde_json::Value::String(v.to_string()),
        Value::Float64(v) => match Number::from_f64(*v) {
            Some(number) => serde_json::Value::Number(number),
            None if v.is_nan() => serde_json::Value::String("NaN".to_owned()),
            None if *v > 0.0 => serde_json::Value::String("Infinity".to_owned()),
            None => serde_json::Value::String("-Infinity".to_owned()),
        },
        Value::Boolean(v) => serde_json::Value::Bool(*v),
        Value::String(v) => serde_json::Value::String(v.clone()),
        Value::Bytes(v) => serde_json::Value::String(STANDARD.encode(v)),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(clean_json).collect()),
        Value::Object(fields) => serde_json::Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), clean_json(value)))
                .collect(),
        ),
    }
}

/// The `args` field: an object, npm's one-element array holding the object, or absent (no
/// arguments). Anything else is refused before any function runs.
pub(super) fn parse_args(field: Option<&serde_json::Value>) -> Result<Value, ApiError> {
    let object = match field {
        None => return Ok(Value::Object(Default::default())),
        Some(serde_json::Value::Array(items)) => match items.as_slice() {
            [only @ serde_json::Value::Object(_)] => only,
            [only] => {
                return Err(bad_request(format!(
                    "args must be an object or an array holding one object, not an array holding {}",
                    json_type(only)
                )));
            }
            _ => {
                return Err(bad_request(format!(
                    "args as an array must hold exactly one object, not {} elements",
                    items.len()
                )));
            }
        },
        Some(object @ serde_json::Value::Object(_)) => object,
        Some(other) => {
            return Err(bad_request(format!(
                "args must be an object or an array holding one object, not {}",
                json_type(other)
            )));
        }
    };
    Value::from_json(object).map_err(|e| bad_request(format!("invalid args: {e}")))
}

/// The reply body for a function that ran: `status`, `value` or `errorMessage` (+ `errorData`
/// for a `ConvexError`), and `logLines` (always present).
pub(super) fn function_result_json(
    result: &FunctionResult,
    format: ValueFormat,
) -> serde_json::Value {
    let mut body = Map::new();
    let log_lines = match result {
        Ok(success) => {
            body.insert("status".into(), "success".into());
            body.insert("value".into(), format.encode(&success.value));
            &success.log_lines
        }
        Err(failure) => {
            body.insert("status".into(), "error".into());
            body.insert("errorMessage".into(), failure.message.clone().into());
            if let Some(data) = &failure.data {
                body.insert("errorData".into(), format.encode(data));
            }
            &failure.log_lines
        }
    };
    body.insert(
        "logLines".into(),
        serde_json::Value::Array(log_lines.iter().map(|l| l.clone().into()).collect()),
    );
    serde_json::Value::Object(body)
}

/// Names a JSON value's type for error messages.
pub(super) fn json_type(json: &serde_json::Value) -> &'static str {
    match json {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::{FunctionFailure, FunctionSuccess};

    #[test]
    fn clean_scalars() {
        assert_eq!(clean_json(&Value::Null), json!(null));
        assert_eq!(clean_json(&Value::Boolean(true)), json!(true));
        assert_eq!(clean_json(&Value::String("hi".into())), json!("hi"));
        assert_eq!(clean_json(&Value::Int64(7)), json!("7"));
        assert_eq!(clean_json(&Value::Int64(-1)), json!("-1"));
        assert_eq!(
            clean_json(&Value::Int64(i64::MIN)),
            json!("-9223372036854775808")
        );
        assert_eq!(clean_json(&Value::Float64(1.5)), json!(1.5));
        assert_eq!(clean_json(&Value::Bytes(vec![1, 2, 3])), json!("AQID"));
        assert_eq!(clean_json(&Value::Bytes(vec![0xff])), json!("/w=="));
        assert_eq!(clean_json(&Value::Bytes(vec![])), json!(""));
    }

    #[test]
    fn clean_special_floats_are_strings() {
        assert_eq!(clean_json(&Value::Float64(f64::NAN)), json!("NaN"));
        assert_eq!(
            clean_json(&Value::Float64(f64::INFINITY)),
            json!("Infinity")
        );
        assert_eq!(
            clean_json(&Value::Float64(f64::NEG_INFINITY)),
            json!("-Infinity")
        );
    }

    #[test]
    fn clean_floats_keep_their_decimal_point_and_sign() {
        // Python clients reject an integer where a float is expected (protocol addendum).
        assert_eq!(clean_json(&Value::Float64(5.0)).to_string(), "5.0");
        assert_eq!(clean_json(&Value::Float64(-0.0)).to_string(), "-0.0");
        assert_eq!(clean_json(&Value::Float64(0.1)).to_string(), "0.1");
    }

    #[test]
    fn clean_containers_recurse() {
        let value = Value::Object(BTreeMap::from([
            (
                "list".to_owned(),
                Value::Array(vec![Value::Int64(1), Value::Bytes(vec![1, 2, 3])]),
            ),
            (
                "nested".to_owned(),
                Value::Object(BTreeMap::from([(
                    "f".to_owned(),
                    Value::Float64(f64::NEG_INFINITY),
                )])),
            ),
        ]));
        assert_eq!(
            clean_json(&value),
            json!({"list": ["1", "AQID"], "nested": {"f": "-Infinity"}})
        );
    }

    #[test]
    fn encoded_format_is_the_wire_encoding() {
        let value = Value::Int64(1);
        assert_eq!(
            ValueFormat::Encoded.encode(&value),
            json!({"$integer": "AQAAAAAAAAA="})
        );
        assert_eq!(ValueFormat::Clean.encode(&value), json!("1"));
    }

    #[test]
    fn format_names() {
        let parse = |j: serde_json::Value| ValueFormat::parse(Some(&j), ValueFormat::Clean);
        assert_eq!(
            parse(json!("convex_encoded_json")),
            Ok(ValueFormat::Encoded)
        );
        assert_eq!(parse(json!("convex_json")), Ok(ValueFormat::Encoded));
        assert_eq!(parse(json!("json")), Ok(ValueFormat::Clean));
        assert_eq!(parse(json!("convex_clean_json")), Ok(ValueFormat::Clean));
        assert_eq!(parse(json!(null)), Ok(ValueFormat::Clean));
        assert_eq!(
            ValueFormat::parse(None, ValueFormat::Encoded),
            Ok(ValueFormat::Encoded)
        );
        assert!(parse(json!("xml")).is_err());
        assert!(parse(json!(3)).is_err());
    }

    #[test]
    fn args_rule() {
        let empty = Value::Object(BTreeMap::new());
        assert_eq!(parse_args(None), Ok(empty.clone()));
        assert_eq!(parse_args(Some(&json!({}))), Ok(empty.clone()));
        assert_eq!(parse_args(Some(&json!([{}]))), Ok(empty));
        let one = Value::Object(BTreeMap::from([("a".to_owned(), Value::Float64(1.0))]));
        assert_eq!(parse_args(Some(&json!([{"a": 1}]))), Ok(one.clone()));
        assert_eq!(parse_args(Some(&json!({"a": 1}))), Ok(one));
        for bad in [
            json!(null),
            json!(1),
            json!("x"),
            json!([]),
            json!([{}, {}]),
            json!([1]),
            json!({"$bad": 1}),
        ] {
            let err = parse_args(Some(&bad)).expect_err("must be refused");
            assert_eq!(err.code, crate::ErrorCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn result_shapes() {
        let ok: FunctionResult = Ok(FunctionSuccess {
            value: Value::Int64(2),
            log_lines: vec![],
        });
        assert_eq!(
            function_result_json(&ok, ValueFormat::Clean),
            json!({"status": "success", "value": "2", "logLines": []})
        );
        let plain: FunctionResult = Err(FunctionFailure {
            message: "boom".into(),
            data: None,
            log_lines: vec!["[LOG] 'x'".into()],
        });
        assert_eq!(
            function_result_json(&plain, ValueFormat::Encoded),
            json!({"status": "error", "errorMessage": "boom", "logLines": ["[LOG] 'x'"]})
        );
        let convex_error: FunctionResult = Err(FunctionFailure {
            message: "ConvexError".into(),
            data: Some(Value::Int64(1)),
            log_lines: vec![],
        });
        assert_eq!(
            function_result_json(&convex_error, ValueFormat::Encoded)["errorData"],
            json!({"$integer": "AQAAAAAAAAA="})
        );
        assert_eq!(
            function_result_json(&convex_error, ValueFormat::Clean)["errorData"],
            json!("1")
        );
    }
}
