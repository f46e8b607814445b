//! Argument and return validators: the JSON that `exportArgs()` / `exportReturns()` produce
//! (protocol doc §4.3, npm `ValidatorJSON`), and checking a value against it.
//!
//! ```text
//! {"type": "null" | "number" | "bigint" | "boolean" | "string" | "bytes" | "any"}
//! {"type": "literal", "value": <convex json: string, number, bigint or boolean>}
//! {"type": "id", "tableName": t}
//! {"type": "array", "value": V}
//! {"type": "record", "keys": K, "values": {"fieldType": V, "optional": false}}
//! {"type": "object", "value": {field: {"fieldType": V, "optional": bool}, …}}
//! {"type": "union", "value": [V, …]}
//! ```
//!
//! `"number"` is Float64 and `"bigint"` is Int64. Object validators reject missing required
//! fields and fields they do not list; `v.id(t)` needs a string that decodes as a document id
//! of table `t`. Error messages follow Convex's wording (`Value does not match validator.`,
//! `Object is missing the required field …`) with the path written the way Convex writes it:
//! `.field`, `[index]`, and `.keys()` / `.values()` inside records.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde_json::Value as Json;
use value::{DocumentId, Value};

use crate::parse::{self, At, ParseError};
use crate::stream::TableResolver;

/// A validator.
#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    Null,
    Float64,
    Int64,
    Boolean,
    String,
    Bytes,
    Any,
    /// Exactly this value (a string, Float64, Int64 or boolean).
    Literal(Value),
    /// A document id of the named table.
    Id {
        table: String,
    },
    Array(Box<Validator>),
    /// An object used as a map: every name must match `keys` (as a string), every value
    /// `values`.
    Record {
        keys: Box<Validator>,
        values: Box<Validator>,
    },
    Object(BTreeMap<String, FieldValidator>),
    /// Any of these; an empty union accepts nothing.
    Union(Vec<Validator>),
}

/// One field of an object validator.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldValidator {
    pub validator: Validator,
    pub optional: bool,
}

/// A value does not match a validator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "Value does not match validator.{}\nValue: {value}\nValidator: {validator}",
        path_line(path)
    )]
    NoMatch {
        path: String,
        value: String,
        validator: String,
    },
    #[error(
        "`{value}` does not match literal validator `v.literal({literal})`.{}",
        path_line(path)
    )]
    LiteralMismatch {
        path: String,
        value: String,
        literal: String,
    },
    #[error(
        "Object is missing the required field `{field}`. Consider wrapping the field validator \
         in `v.optional(...)` if this is expected.{}\nObject: {object}\nValidator: {validator}",
        path_line(path)
    )]
    MissingRequiredField {
        path: String,
        field: String,
        object: String,
        validator: String,
    },
    #[error(
        "Object contains extra field `{field}` that is not in the validator.{}\nObject: \
         {object}\nValidator: {validator}",
        path_line(path)
    )]
    ExtraField {
        path: String,
        field: String,
        object: String,
        validator: String,
    },
    #[error(
        "Found ID \"{id}\" from {}, which does not match the table name in validator \
         `v.id(\"{expected}\")`.{}",
        found_table.as_ref().map_or_else(|| "another table".to_owned(), |t| format!("table `{t}`")),
        path_line(path)
    )]
    IdTableMismatch {
        path: String,
        id: String,
        found_table: Option<String>,
        expected: String,
    },
}

impl ValidationError {
    /// Where in the value the mismatch is, in Convex's notation (`""` for the value itself).
    pub fn path(&self) -> &str {
        match self {
            ValidationError::NoMatch { path, .. }
            | ValidationError::LiteralMismatch { path, .. }
            | ValidationError::MissingRequiredField { path, .. }
            | ValidationError::ExtraField { path, .. }
            | ValidationError::IdTableMismatch { path, .. } => path,
        }
    }
}

fn path_line(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("\nPath: {path}")
    }
}

impl Validator {
    /// Parses the text `exportArgs()` / `exportReturns()` returned. The text `null` means the
    /// function declared no validator (`None`), which is not the same as `v.null()`.
    pub fn parse_exported(text: &str) -> Result<Option<Validator>, ParseError> {
        match parse::parse_text(text)? {
            Json::Null => Ok(None),
            json => Validator::from_json(&json).map(Some),
        }
    }

    /// Parses validator JSON.
    pub fn from_json(json: &Json) -> Result<Validator, ParseError> {
        parse_validator(json, &At::root("validator"), 0)
    }

    /// Checks `value`; `tables` resolves the table names of `v.id` validators.
    pub fn check<R: TableResolver + ?Sized>(
        &self,
        value: &Value,
        tables: &R,
    ) -> Result<(), ValidationError> {
        let mut path = String::new();
        self.check_at(value, tables, &mut path)
    }

    /// `path` is the position of `value`; it is restored before returning `Ok`.
    fn check_at<R: TableResolver + ?Sized>(
        &self,
        value: &Value,
        tables: &R,
        path: &mut String,
    ) -> Result<(), ValidationError> {
        let no_match = |path: &str| ValidationError::NoMatch {
            path: path.to_owned(),
            value: render_value(value),
            validator: self.to_string(),
        };
        match (self, value) {
            (Validator::Any, _)
            | (Validator::Null, Value::Null)
            | (Validator::Float64, Value::Float64(_))
            | (Validator::Int64, Value::Int64(_))
            | (Validator::Boolean, Value::Boolean(_))
            | (Validator::String, Value::String(_))
            | (Validator::Bytes, Value::Bytes(_)) => Ok(()),
            (Validator::Literal(literal), _) => {
                if value == literal {
                    Ok(())
                } else {
                    Err(ValidationError::LiteralMismatch {
                        path: path.clone(),
                        value: render_value(value),
                        literal: render_value(literal),
                    })
                }
            }
            (Validator::Id { table }, Value::String(s)) => {
                let Ok(id) = DocumentId::decode(s) else {
                    return Err(no_match(path));
                };
                let Some(expected) = tables.table_number_by_name(table) else {
                    // No table of that name exists, so no id can belong to it.
                    return Err(no_match(path));
                };
                if id.table == expected {
                    return Ok(());
                }
                Err(ValidationError::IdTableMismatch {
                    path: path.clone(),
                    id: s.clone(),
                    found_table: tables.table_name_by_number(id.table),
                    expected: table.clone(),
                })
            }
            (Validator::Array(item), Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "[{i}]");
                    item.check_at(v, tables, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            (Validator::Record { keys, values }, Value::Object(fields)) => {
                for (name, v) in fields {
                    let len = path.len();
                    path.push_str(".keys()");
                    keys.check_at(&Value::String(name.clone()), tables, path)?;
                    path.truncate(len);
                    path.push_str(".values()");
                    values.check_at(v, tables, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            (Validator::Object(validators), Value::Object(fields)) => {
                for (name, field) in validators {
                    match fields.get(name) {
                        Some(v) => {
                            let len = path.len();
                            path.push('.');
                            path.push_str(name);
                            field.validator.check_at(v, tables, path)?;
                            path.truncate(len);
                        }
                        None if !field.optional => {
                            return Err(ValidationError::MissingRequiredField {
                                path: path.clone(),
                                field: name.clone(),
                                object: render_value(value),
                                validator: self.to_string(),
                            });
                        }
                        None => {}
                    }
                }
                if let Some(extra) = fields.keys().find(|name| !validators.contains_key(*name)) {
                    return Err(ValidationError::ExtraField {
                        path: path.clone(),
                        field: extra.clone(),
                        object: render_value(value),
                        validator: self.to_string(),
                    });
                }
                Ok(())
            }
            // A one-member union reports its member's own, more precise error.
            (Validator::Union(members), _) if members.len() == 1 => {
                members[0].check_at(value, tables, path)
            }
            (Validator::Union(members), _) => {
                let len = path.len();
                for member in members {
                    if member.check_at(value, tables, path).is_ok() {
                        return Ok(());
                    }
                    path.truncate(len);
                }
                Err(no_match(path))
            }
            _ => Err(no_match(path)),
        }
    }
}

/// Longest rendering of a value or validator inside an error message.
const MESSAGE_RENDER_MAX_CHARS: usize = 256;

/// Writes into a string, failing (which stops the rendering) once it is long enough.
struct Capped(String);

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push_str(s);
        if self.0.len() > MESSAGE_RENDER_MAX_CHARS {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl Capped {
    fn finish(self, complete: bool) -> String {
        let mut s = self.0;
        if !complete || s.len() > MESSAGE_RENDER_MAX_CHARS {
            let cut = s
                .char_indices()
                .map(|(i, _)| i)
                .take_while(|&i| i <= MESSAGE_RENDER_MAX_CHARS)
                .last()
                .unwrap_or(0);
            s.truncate(cut);
            s.push('…');
        }
        s
    }
}

/// A value the way JavaScript developers write it: `null`, `1.5`, `5n`, `"text"`, `[1, 2]`,
/// `{a: 1}`; long renderings are cut short with `…`.
pub fn render_value(value: &Value) -> String {
    let mut out = Capped(String::new());
    let complete = write_value(&mut out, value).is_ok();
    out.finish(complete)
}

fn write_value(out: &mut Capped, value: &Value) -> fmt::Result {
    match value {
        Value::Null => out.write_str("null"),
        Value::Int64(i) => write!(out, "{i}n"),
        Value::Float64(f) if f.is_nan() => out.write_str("NaN"),
        Value::Float64(f) if f.is_infinite() => {
            out.write_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Value::Float64(f) => write!(out, "{f}"),
        Value::Boolean(b) => write!(out, "{b}"),
        Value::String(s) => write_quoted(out, s),
        Value::Bytes(b) => write!(out, "ArrayBuffer({} bytes)", b.len()),
        Value::Array(items) => {
            out.write_str("[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_value(out, item)?;
            }
            out.write_str("]")
        }
        Value::Object(fields) => {
            out.write_str("{")?;
            for (i, (name, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_key(out, name)?;
                out.write_str(": ")?;
                write_value(out, v)?;
            }
            out.write_str("}")
        }
    }
}

fn write_quoted(out: &mut Capped, s: &str) -> fmt::Result {
    out.write_str(&Json::String(s.to_owned()).to_string())
}

/// An object key bare when it is an identifier, quoted otherwise.
fn write_key(out: &mut Capped, name: &str) -> fmt::Result {
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        out.write_str(name)
    } else {
        write_quoted(out, name)
    }
}

/// Renders as the `v.…` builder call that makes the validator, e.g. `v.array(v.string())`.
impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Capped(String::new());
        let complete = write_validator(&mut out, self).is_ok();
        f.write_str(&out.finish(complete))
    }
}

fn write_validator(out: &mut Capped, v: &Validator) -> fmt::Result {
    match v {
        Validator::Null => out.write_str("v.null()"),
        Validator::Float64 => out.write_str("v.float64()"),
        Validator::Int64 => out.write_str("v.int64()"),
        Validator::Boolean => out.write_str("v.boolean()"),
        Validator::String => out.write_str("v.string()"),
        Validator::Bytes => out.write_str("v.bytes()"),
        Validator::Any => out.write_str("v.any()"),
        Validator::Literal(value) => {
            out.write_str("v.literal(")?;
            write_value(out, value)?;
            out.write_str(")")
        }
        Validator::Id { table } => {
            out.write_str("v.id(")?;
            write_quoted(out, table)?;
            out.write_str(")")
        }
        Validator::Array(item) => {
            out.write_str("v.array(")?;
            write_validator(out, item)?;
            out.write_str(")")
        }
        Validator::Record { keys, values } => {
            out.write_str("v.record(")?;
            write_validator(out, keys)?;
            out.write_str(", ")?;
            write_validator(out, values)?;
            out.write_str(")")
        }
        Validator::Object(fields) => {
            out.write_str("v.object({")?;
            for (i, (name, field)) in fields.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_key(out, name)?;
                out.write_str(": ")?;
                if field.optional {
                    out.write_str("v.optional(")?;
                    write_validator(out, &field.validator)?;
                    out.write_str(")")?;
                } else {
                    write_validator(out, &field.validator)?;
                }
            }
            out.write_str("})")
        }
        Validator::Union(members) => {
            out.write_str("v.union(")?;
            for (i, member) in members.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_validator(out, member)?;
            }
            out.write_str(")")
        }
    }
}

const VALIDATOR_TYPES: &str = "null, number, bigint, boolean, string, bytes, any, literal, id, array, record, object or union";

fn parse_validator(json: &Json, at: &At<'_>, depth: usize) -> Result<Validator, ParseError> {
    if depth >= knobs::VALIDATOR_MAX_NESTING {
        return Err(ParseError::TooDeep {
            at: at.render(),
            max: knobs::VALIDATOR_MAX_NESTING,
        });
    }
    let map = parse::object(json, at)?;
    let type_at = at.field("type");
    let kind = parse::string(parse::required(map, "type", at)?, &type_at)?;
    let value_at = at.field("value");
    let inner = |json: &Json, at: &At<'_>| parse_validator(json, at, depth + 1);
    Ok(match kind {
        "null" => Validator::Null,
        "number" => Validator::Float64,
        "bigint" => Validator::Int64,
        "boolean" => Validator::Boolean,
        "string" => Validator::String,
        "bytes" => Validator::Bytes,
        "any" => Validator::Any,
        "literal" => {
            let literal = parse::convex_value(parse::required(map, "value", at)?, &value_at)?;
            match literal {
                Value::String(_) | Value::Float64(_) | Value::Int64(_) | Value::Boolean(_) => {
                    Validator::Literal(literal)
                }
                other => {
                    return Err(value_at.invalid(format!(
                        "a literal must be a string, number, bigint or boolean, not {}",
                        other.type_name()
                    )));
                }
            }
        }
        "id" => {
            let table_at = at.field("tableName");
            let table = parse::string(parse::required(map, "tableName", at)?, &table_at)?;
            if table.is_empty() {
                return Err(table_at.invalid("the table name is empty"));
            }
            Validator::Id {
                table: table.to_owned(),
            }
        }
        "array" => Validator::Array(Box::new(inner(
            parse::required(map, "value", at)?,
            &value_at,
        )?)),
        "record" => {
            let keys_at = at.field("keys");
            let keys = inner(parse::required(map, "keys", at)?, &keys_at)?;
            if !is_record_key(&keys) {
                return Err(keys_at.invalid(format!(
                    "record keys must be v.string(), v.id(...) or a union of them, not {keys}"
                )));
            }
            let values_at = at.field("values");
            let values = parse_field(parse::required(map, "values", at)?, &values_at, depth)?;
            if values.optional {
                return Err(values_at.invalid("record values cannot be optional"));
            }
            Validator::Record {
                keys: Box::new(keys),
                values: Box::new(values.validator),
            }
        }
        "object" => {
            let fields = parse::object(parse::required(map, "value", at)?, &value_at)?;
            let mut out = BTreeMap::new();
            for (name, field) in fields {
                let field_at = value_at.field(name);
                value::check_field_name(name).map_err(|reason| {
                    field_at.invalid(format!("invalid field name {name:?}: {reason}"))
                })?;
                out.insert(name.clone(), parse_field(field, &field_at, depth)?);
            }
            Validator::Object(out)
        }
        "union" => {
            let members = parse::array(parse::required(map, "value", at)?, &value_at)?;
            Validator::Union(
                members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| inner(m, &value_at.index(i)))
                    .collect::<Result<_, _>>()?,
            )
        }
        "commitTs" => {
            return Err(type_at.invalid("commitTs validators are not supported"));
        }
        other => {
            return Err(ParseError::UnknownVariant {
                at: type_at.render(),
                what: "validator type",
                found: other.to_owned(),
                expected: VALIDATOR_TYPES,
            });
        }
    })
}

/// `{"fieldType": V, "optional": bool}`.
fn parse_field(json: &Json, at: &At<'_>, depth: usize) -> Result<FieldValidator, ParseError> {
    let map = parse::object(json, at)?;
    let type_at = at.field("fieldType");
    let validator = parse_validator(parse::required(map, "fieldType", at)?, &type_at, depth + 1)?;
    let optional_at = at.field("optional");
    let optional = parse::boolean(parse::required(map, "optional", at)?, &optional_at)?;
    Ok(FieldValidator {
        validator,
        optional,
    })
}

/// Record keys are field names, so only string-like validators make sense (Convex's rule).
fn is_record_key(v: &Validator) -> bool {
    match v {
        Validator::String | Validator::Id { .. } => true,
        Validator::Union(members) => !members.is_empty() && members.iter().all(is_record_key),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use txn::{Catalog, TableDef};
    use value::{InternalId, TableNumber};

    fn catalog() -> Catalog {
        Catalog::new([
            TableDef::new(TableNumber::new(10001).unwrap(), "messages"),
            TableDef::new(TableNumber::new(10002).unwrap(), "users"),
        ])
    }

    fn id(table: u32) -> String {
        DocumentId::new(TableNumber::new(table).unwrap(), InternalId([3; 16])).encode()
    }

    fn v(json: Json) -> Validator {
        Validator::from_json(&json).unwrap()
    }

    fn val(json: Json) -> Value {
        Value::from_json(&json).unwrap()
    }

    fn check(validator: &Validator, value: Json) -> Result<(), ValidationError> {
        validator.check(&val(value), &catalog())
    }

    fn field(t: Json, optional: bool) -> Json {
        json!({"fieldType": t, "optional": optional})
    }

    #[test]
    fn observed_exports() {
        // `list`'s args and `send`'s returns from the sample project.
        let args = Validator::parse_exported(
            r#"{"type":"object","value":{"author":{"fieldType":{"type":"string"},"optional":true}}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            args.to_string(),
            "v.object({author: v.optional(v.string())})"
        );
        assert_eq!(check(&args, json!({})), Ok(()));
        assert_eq!(check(&args, json!({"author": "a"})), Ok(()));
        let returns = Validator::parse_exported(r#"{"type":"id","tableName":"messages"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(check(&returns, json!(id(10001))), Ok(()));
        assert_eq!(Validator::parse_exported("null"), Ok(None));
        assert_eq!(
            Validator::parse_exported(r#"{"type":"null"}"#),
            Ok(Some(Validator::Null))
        );
    }

    #[test]
    fn scalars() {
        let cases = [
            ("null", json!(null), json!(1)),
            ("number", json!(1.5), json!({"$integer": "AQAAAAAAAAA="})),
            ("bigint", json!({"$integer": "AQAAAAAAAAA="}), json!(1)),
            ("boolean", json!(false), json!("false")),
            ("string", json!(""), json!(null)),
            ("bytes", json!({"$bytes": "AQID"}), json!("AQID")),
        ];
        for (kind, good, bad) in cases {
            let validator = v(json!({ "type": kind }));
            assert_eq!(check(&validator, good), Ok(()), "{kind}");
            let err = check(&validator, bad).unwrap_err();
            assert!(
                matches!(err, ValidationError::NoMatch { .. }),
                "{kind}: {err}"
            );
        }
        let any = v(json!({"type": "any"}));
        for value in [json!(null), json!([1, {"a": "b"}]), json!({"$bytes": ""})] {
            assert_eq!(check(&any, value), Ok(()));
        }
    }

    #[test]
    fn mismatch_messages_carry_paths() {
        let validator = v(json!({"type": "object", "value": {
            "author": field(json!({"type": "string"}), false),
            "tags": field(json!({"type": "array", "value": {"type": "string"}}), true),
        }}));
        let err = check(&validator, json!({"author": 5})).unwrap_err();
        assert_eq!(err.path(), ".author");
        assert_eq!(
            err.to_string(),
            "Value does not match validator.\nPath: .author\nValue: 5\nValidator: v.string()"
        );
        let err = check(&validator, json!({"author": "a", "tags": ["x", 1]})).unwrap_err();
        assert_eq!(err.path(), ".tags[1]");

        let err = check(&validator, json!({"tags": []})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Object is missing the required field `author`. Consider wrapping the field \
             validator in `v.optional(...)` if this is expected.\nObject: {tags: []}\n\
             Validator: v.object({author: v.string(), tags: v.optional(v.array(v.string()))})"
        );

        let err = check(&validator, json!({"author": "a", "extra": true})).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "Object contains extra field `extra` that is not in the validator.\nObject:"
            ),
            "{err}"
        );

        let nested = v(json!({"type": "object", "value": {
            "inner": field(json!({"type": "object", "value": {
                "x": field(json!({"type": "bigint"}), false)}}), false)
        }}));
        let err = check(&nested, json!({"inner": {}})).unwrap_err();
        assert!(
            matches!(&err, ValidationError::MissingRequiredField { path, field, .. } if path == ".inner" && field == "x"),
            "{err}"
        );
        assert!(err.to_string().contains("\nPath: .inner\n"), "{err}");
        let err = check(&nested, json!([])).unwrap_err();
        assert_eq!(err.path(), "");
        assert!(
            err.to_string()
                .starts_with("Value does not match validator.\nValue: []")
        );
    }

    #[test]
    fn literals() {
        let validator = v(json!({"type": "literal", "value": "a"}));
        assert_eq!(check(&validator, json!("a")), Ok(()));
        let err = check(&validator, json!("b")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`\"b\"` does not match literal validator `v.literal(\"a\")`."
        );
        // Int64 1 is not Float64 1.
        let one = v(json!({"type": "literal", "value": {"$integer": "AQAAAAAAAAA="}}));
        assert_eq!(check(&one, json!({"$integer": "AQAAAAAAAAA="})), Ok(()));
        assert!(check(&one, json!(1)).is_err());
        let arr = v(json!({"type": "array", "value": {"type": "literal", "value": true}}));
        let err = check(&arr, json!([true, false])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`false` does not match literal validator `v.literal(true)`.\nPath: [1]"
        );
    }

    #[test]
    fn ids() {
        let validator = v(json!({"type": "id", "tableName": "messages"}));
        assert_eq!(check(&validator, json!(id(10001))), Ok(()));
        let err = check(&validator, json!(id(10002))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Found ID \"{}\" from table `users`, which does not match the table name in \
                 validator `v.id(\"messages\")`.",
                id(10002)
            )
        );
        // Without a reverse mapping the other table is not named.
        let resolver = |name: &str| catalog().table_named(name).cloned();
        let err = validator
            .check(&val(json!(id(10002))), &resolver)
            .unwrap_err();
        assert!(err.to_string().contains("from another table"), "{err}");
        for bad in [json!("not an id"), json!(5), json!(null)] {
            let err = check(&validator, bad.clone()).unwrap_err();
            assert!(
                matches!(err, ValidationError::NoMatch { .. }),
                "{bad}: {err}"
            );
        }
        // An id validator of a table that does not exist accepts nothing.
        let ghost = v(json!({"type": "id", "tableName": "ghosts"}));
        assert!(matches!(
            check(&ghost, json!(id(10001))),
            Err(ValidationError::NoMatch { .. })
        ));
    }

    #[test]
    fn records() {
        let validator = v(json!({"type": "record",
            "keys": {"type": "id", "tableName": "users"},
            "values": {"fieldType": {"type": "number"}, "optional": false}}));
        assert_eq!(
            validator.to_string(),
            "v.record(v.id(\"users\"), v.float64())"
        );
        assert_eq!(check(&validator, json!({ id(10002): 1.0 })), Ok(()));
        let err = check(&validator, json!({"hello": 1.0})).unwrap_err();
        assert_eq!(err.path(), ".keys()");
        let err = check(&validator, json!({ id(10002): "x" })).unwrap_err();
        assert_eq!(err.path(), ".values()");
        assert!(check(&validator, json!([])).is_err());
        let strings = v(json!({"type": "record", "keys": {"type": "string"},
            "values": {"fieldType": {"type": "any"}, "optional": false}}));
        assert_eq!(check(&strings, json!({"a": 1, "b": [null]})), Ok(()));
    }

    #[test]
    fn unions() {
        let validator = v(json!({"type": "union", "value": [
            {"type": "string"}, {"type": "null"}]}));
        assert_eq!(check(&validator, json!("x")), Ok(()));
        assert_eq!(check(&validator, json!(null)), Ok(()));
        let err = check(&validator, json!(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Value does not match validator.\nValue: 1\nValidator: v.union(v.string(), v.null())"
        );
        // A one-member union reports the member's error.
        let single = v(json!({"type": "union", "value": [{"type": "object", "value": {}}]}));
        let err = check(&single, json!({"a": 1})).unwrap_err();
        assert!(matches!(err, ValidationError::ExtraField { .. }), "{err}");
        let empty = v(json!({"type": "union", "value": []}));
        assert!(check(&empty, json!(null)).is_err());
        // A failed member leaves no trace in the path of the union's error.
        let nested = v(
            json!({"type": "object", "value": {"a": field(json!({"type": "union", "value": [
            {"type": "array", "value": {"type": "string"}}, {"type": "null"}]}), false)}}),
        );
        let err = check(&nested, json!({"a": [1]})).unwrap_err();
        assert_eq!(err.path(), ".a");
    }

    #[test]
    fn malformed_validators() {
        let cases = [
            (json!("string"), "validator: expected an object"),
            (json!({}), "missing the required field `type`"),
            (json!({"type": "float"}), "unknown validator type \"float\""),
            (json!({"type": 5}), "validator.type: expected a string"),
            (json!({"type": "commitTs"}), "not supported"),
            (
                json!({"type": "literal"}),
                "missing the required field `value`",
            ),
            (
                json!({"type": "literal", "value": null}),
                "a literal must be",
            ),
            (
                json!({"type": "literal", "value": {"$set": 1}}),
                "invalid value",
            ),
            (
                json!({"type": "id"}),
                "missing the required field `tableName`",
            ),
            (
                json!({"type": "id", "tableName": ""}),
                "table name is empty",
            ),
            (
                json!({"type": "array"}),
                "missing the required field `value`",
            ),
            (
                json!({"type": "array", "value": {"type": "nope"}}),
                "validator.value.type",
            ),
            (
                json!({"type": "record", "keys": {"type": "number"},
                    "values": {"fieldType": {"type": "any"}, "optional": false}}),
                "record keys must be",
            ),
            (
                json!({"type": "record", "keys": {"type": "union", "value": [
                    {"type": "string"}, {"type": "literal", "value": "a"}]},
                    "values": {"fieldType": {"type": "any"}, "optional": false}}),
                "record keys must be",
            ),
            (
                json!({"type": "record", "keys": {"type": "string"},
                    "values": {"fieldType": {"type": "any"}, "optional": true}}),
                "cannot be optional",
            ),
            (
                json!({"type": "record", "keys": {"type": "string"}, "values": {"type": "any"}}),
                "validator.values: missing the required field `fieldType`",
            ),
            (
                json!({"type": "object", "value": []}),
                "validator.value: expected an object",
            ),
            (
                json!({"type": "object", "value": {"a": {"type": "string"}}}),
                "validator.value.a: missing the required field `fieldType`",
            ),
            (
                json!({"type": "object", "value": {"a": {"fieldType": {"type": "string"}}}}),
                "missing the required field `optional`",
            ),
            (
                json!({"type": "object", "value": {"a": {"fieldType": {"type": "string"}, "optional": "no"}}}),
                "validator.value.a.optional: expected a boolean",
            ),
            (
                json!({"type": "object", "value": {"$a": {"fieldType": {"type": "string"}, "optional": false}}}),
                "invalid field name",
            ),
            (
                json!({"type": "union", "value": {}}),
                "validator.value: expected an array",
            ),
            (
                json!({"type": "union", "value": [{"type": "string"}, 3]}),
                "validator.value[1]: expected an object",
            ),
        ];
        for (json, want) in cases {
            let err = Validator::from_json(&json).unwrap_err();
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
        assert!(matches!(
            Validator::parse_exported("{"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut json = json!({"type": "string"});
        for _ in 0..knobs::VALIDATOR_MAX_NESTING {
            json = json!({"type": "array", "value": json});
        }
        assert!(matches!(
            Validator::from_json(&json),
            Err(ParseError::TooDeep { .. })
        ));
    }

    #[test]
    fn renderings_are_bounded_and_readable() {
        assert_eq!(
            render_value(&Value::Float64(f64::NEG_INFINITY)),
            "-Infinity"
        );
        assert_eq!(render_value(&Value::Float64(-0.0)), "-0");
        assert_eq!(render_value(&Value::Float64(1.0)), "1");
        assert_eq!(render_value(&Value::Int64(-2)), "-2n");
        assert_eq!(
            render_value(&Value::Bytes(vec![1, 2])),
            "ArrayBuffer(2 bytes)"
        );
        assert_eq!(
            render_value(&val(json!({"a b": "x\"y", "c": [true, null]}))),
            r#"{"a b": "x\"y", c: [true, null]}"#
        );
        let long = Value::String("é".repeat(10_000));
        let shown = render_value(&long);
        assert!(shown.len() <= MESSAGE_RENDER_MAX_CHARS + '…'.len_utf8());
        assert!(shown.ends_with('…'));
        let wide = Validator::Union(vec![Validator::String; 1000]);
        assert!(wide.to_string().ends_with('…'));
    }
}
