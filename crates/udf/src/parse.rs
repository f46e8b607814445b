//! Reading JSON shapes (query JSON, validator JSON) with errors that say where the problem is.
//!
//! Positions are tracked as a chain of [`At`] frames on the stack and rendered only when an
//! error is built, so parsing well-formed input allocates nothing for them.

use serde_json::{Map, Value as Json};
use value::Value;

/// JSON that does not have the shape a query or validator must have.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("JSON text is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("{at}: expected {expected}, found {found}")]
    WrongType {
        at: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{at}: missing the required field `{field}`")]
    MissingField { at: String, field: &'static str },
    #[error("{at}: unknown {what} {found:?}; expected {expected}")]
    UnknownVariant {
        at: String,
        what: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("{at}: invalid value: {source}")]
    Value {
        at: String,
        #[source]
        source: value::JsonError,
    },
    #[error("{at}: nests more than {max} levels")]
    TooDeep { at: String, max: usize },
    #[error("{at}: {count} {what}, more than the limit of {max}")]
    TooMany {
        at: String,
        what: &'static str,
        count: usize,
        max: usize,
    },
}

/// One step of the position of a JSON node, linked to its parent's frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At<'a> {
    parent: Option<&'a At<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Seg<'a> {
    Root(&'a str),
    Field(&'a str),
    Index(usize),
}

impl<'a> At<'a> {
    pub(crate) fn root(name: &'a str) -> Self {
        At {
            parent: None,
            seg: Seg::Root(name),
        }
    }

    pub(crate) fn field<'b>(&'b self, name: &'b str) -> At<'b> {
        At {
            parent: Some(self),
            seg: Seg::Field(name),
        }
    }

    pub(crate) fn index<'b>(&'b self, i: usize) -> At<'b> {
        At {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    /// The position as text, e.g. `query.source.range[1].value`.
    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(frame) = cur {
            segs.push(frame.seg);
            cur = frame.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Root(name) => out.push_str(name),
                Seg::Field(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    pub(crate) fn wrong_type(&self, expected: &'static str, found: &Json) -> ParseError {
        ParseError::WrongType {
            at: self.render(),
            expected,
            found: json_kind(found),
        }
    }

    pub(crate) fn invalid(&self, message: impl Into<String>) -> ParseError {
        ParseError::Invalid {
            at: self.render(),
            message: message.into(),
        }
    }
}

pub(crate) fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Parses JSON text, refusing texts over `knobs::JSON_MAX_BYTES` before parsing.
pub(crate) fn parse_text(text: &str) -> Result<Json, ParseError> {
    if text.len() > knobs::JSON_MAX_BYTES {
        return Err(ParseError::TooLarge {
            len: text.len(),
            max: knobs::JSON_MAX_BYTES,
        });
    }
    serde_json::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))
}

pub(crate) fn object<'j>(json: &'j Json, at: &At<'_>) -> Result<&'j Map<String, Json>, ParseError> {
    json.as_object()
        .ok_or_else(|| at.wrong_type("an object", json))
}

pub(crate) fn array<'j>(json: &'j Json, at: &At<'_>) -> Result<&'j Vec<Json>, ParseError> {
    json.as_array()
        .ok_or_else(|| at.wrong_type("an array", json))
}

pub(crate) fn string<'j>(json: &'j Json, at: &At<'_>) -> Result<&'j str, ParseError> {
    json.as_str().ok_or_else(|| at.wrong_type("a string", json))
}

pub(crate) fn boolean(json: &Json, at: &At<'_>) -> Result<bool, ParseError> {
    json.as_bool()
        .ok_or_else(|| at.wrong_type("a boolean", json))
}

/// The member `name` of `map`, which is at `at`.
pub(crate) fn required<'j>(
    map: &'j Map<String, Json>,
    name: &'static str,
    at: &At<'_>,
) -> Result<&'j Json, ParseError> {
    map.get(name).ok_or_else(|| ParseError::MissingField {
        at: at.render(),
        field: name,
    })
}

/// A convex-encoded value.
pub(crate) fn convex_value(json: &Json, at: &At<'_>) -> Result<Value, ParseError> {
    Value::from_json(json).map_err(|source| ParseError::Value {
        at: at.render(),
        source,
    })
}

/// A convex-encoded value, or `{"$undefined": null}` for "missing" (`None`). `$undefined` is
/// not a value; it is accepted only where Convex allows it (filter literals, range bounds).
pub(crate) fn maybe_value(json: &Json, at: &At<'_>) -> Result<Option<Value>, ParseError> {
    if let Json::Object(map) = json
        && map.len() == 1
        && let Some(payload) = map.get("$undefined")
    {
        return match payload {
            Json::Null => Ok(None),
            other => Err(at.invalid(format!(
                "`$undefined` must hold null, not {}",
                json_kind(other)
            ))),
        };
    }
    convex_value(json, at).map(Some)
}

/// A dotted field path (`"a.b"` is `["a", "b"]`). Every segment must be a valid field name;
/// the empty path and empty segments are rejected.
pub(crate) fn field_path(text: &str, at: &At<'_>) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    for segment in text.split('.') {
        if segment.is_empty() {
            return Err(at.invalid(format!("field path {text:?} has an empty segment")));
        }
        value::check_field_name(segment).map_err(|reason| {
            at.invalid(format!(
                "field path {text:?} has an invalid field name {segment:?}: {reason}"
            ))
        })?;
        out.push(segment.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positions_render_as_paths() {
        let root = At::root("query");
        let source = root.field("source");
        let range = source.field("range");
        let first = range.index(1);
        let value = first.field("value");
        assert_eq!(value.render(), "query.source.range[1].value");
    }

    #[test]
    fn undefined_is_missing_only_in_its_exact_shape() {
        let at = At::root("x");
        assert_eq!(maybe_value(&json!({"$undefined": null}), &at), Ok(None));
        assert_eq!(
            maybe_value(&json!("a"), &at),
            Ok(Some(Value::String("a".into())))
        );
        let err = maybe_value(&json!({"$undefined": 1}), &at).unwrap_err();
        assert!(err.to_string().contains("must hold null"), "{err}");
        // Beside another key it is a reserved key, not the marker.
        let err = maybe_value(&json!({"$undefined": null, "a": 1}), &at).unwrap_err();
        assert!(matches!(err, ParseError::Value { .. }), "{err}");
        // A plain value may not smuggle it in.
        let err = convex_value(&json!({"$undefined": null}), &at).unwrap_err();
        assert!(matches!(err, ParseError::Value { .. }), "{err}");
    }

    #[test]
    fn field_paths() {
        let at = At::root("f");
        assert_eq!(field_path("a.b", &at), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(field_path("_id", &at), Ok(vec!["_id".into()]));
        for bad in ["", "a..b", ".a", "a.", "$x", "a.\n"] {
            assert!(field_path(bad, &at).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn oversized_text_is_refused_before_parsing() {
        let text = " ".repeat(knobs::JSON_MAX_BYTES + 1);
        assert!(matches!(
            parse_text(&text),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(parse_text("{"), Err(ParseError::Syntax(_))));
    }
}
