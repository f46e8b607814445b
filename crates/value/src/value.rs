//! The Convex value model: the [`Value`] type, its total order, its size measure and the
//! validation rules a value (and a stored document) must satisfy.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use knobs::{
    ARRAY_MAX_LEN, DOCUMENT_MAX_BYTES, DOCUMENT_MAX_NESTING, FIELD_NAME_MAX_BYTES,
    OBJECT_MAX_FIELDS, VALUE_MAX_BYTES, VALUE_MAX_NESTING,
};

use crate::id::DocumentId;

/// Name of the system field holding a document's id (an encoded [`DocumentId`] string).
pub const ID_FIELD: &str = "_id";
/// Name of the system field holding a document's creation time (Float64 ms since the epoch).
pub const CREATION_TIME_FIELD: &str = "_creationTime";

/// A Convex value.
///
/// Equality and order are Convex's total order (see the [`Ord`] impl), not Rust's usual ones:
/// `Float64(NaN) == Float64(NaN)` when the bits agree, `Float64(-0.0) != Float64(0.0)`, and
/// `Int64(1) != Float64(1.0)`.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// Convex's name for this value's type (`"null"`, `"int64"`, `"float64"`, `"boolean"`,
    /// `"string"`, `"bytes"`, `"array"`, `"object"`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int64(_) => "int64",
            Value::Float64(_) => "float64",
            Value::Boolean(_) => "boolean",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Position of the type in the total order; types compare by this before content.
    fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Int64(_) => 1,
            Value::Float64(_) => 2,
            Value::Boolean(_) => 3,
            Value::String(_) => 4,
            Value::Bytes(_) => 5,
            Value::Array(_) => 6,
            Value::Object(_) => 7,
        }
    }

    /// A deterministic size measure, the one every byte limit (`VALUE_MAX_BYTES`,
    /// `DOCUMENT_MAX_BYTES`) is stated in:
    ///
    /// - `Null`, `Boolean`: 1
    /// - `Int64`, `Float64`: 9
    /// - `String`, `Bytes`: 2 + length in bytes
    /// - `Array`: 2 + the sum of the elements' sizes
    /// - `Object`: 2 + the sum over fields of (name length + 1 + value size)
    ///
    /// It depends only on the value, never on an encoding, so a limit means the same thing on
    /// every node and in every format. It is a lower bound of the [`crate::key`] encoding's length.
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Null | Value::Boolean(_) => 1,
            Value::Int64(_) | Value::Float64(_) => 9,
            Value::String(s) => 2 + s.len(),
            Value::Bytes(b) => 2 + b.len(),
            Value::Array(items) => 2 + items.iter().map(Value::size_bytes).sum::<usize>(),
            Value::Object(fields) => object_size(fields),
        }
    }

    /// How deeply arrays and objects nest: 0 for a scalar, 1 for `[]` or `[1]`, 2 for `[[1]]`.
    /// The nesting limits (`VALUE_MAX_NESTING`, `DOCUMENT_MAX_NESTING`) bound this number.
    pub fn nesting(&self) -> usize {
        match self {
            Value::Array(items) => 1 + items.iter().map(Value::nesting).max().unwrap_or(0),
            Value::Object(fields) => 1 + fields.values().map(Value::nesting).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Checks every rule a value must satisfy to be accepted from a client or stored:
    /// nesting ≤ `VALUE_MAX_NESTING`, arrays ≤ `ARRAY_MAX_LEN` elements, objects ≤
    /// `OBJECT_MAX_FIELDS` fields with valid names (see [`check_field_name`]), and
    /// [`Value::size_bytes`] ≤ `VALUE_MAX_BYTES`.
    ///
    /// The walk never descends more than one level past the nesting limit, so an arbitrarily
    /// deep value is rejected without exhausting the stack.
    pub fn validate(&self) -> Result<(), ValueError> {
        check_shape(self, 0, VALUE_MAX_NESTING)?;
        check_size(self.size_bytes(), VALUE_MAX_BYTES)
    }
}

/// Checks a stored document's fields: every rule of [`Value::validate`], plus
///
/// - top-level names starting with `_` are reserved: only [`ID_FIELD`] (which, if present, must
///   be a string holding a valid [`DocumentId`]) and [`CREATION_TIME_FIELD`] (which, if present,
///   must be a Float64) are allowed;
/// - nesting ≤ `DOCUMENT_MAX_NESTING`, counting the document object itself as one level (so
///   `{a: 1}` has nesting 1, as in Convex);
/// - the size of the document as an object ≤ `DOCUMENT_MAX_BYTES`.
pub fn validate_document(fields: &BTreeMap<String, Value>) -> Result<(), ValueError> {
    check_object(fields, 0, DOCUMENT_MAX_NESTING)?;
    for (name, value) in fields {
        if !name.starts_with('_') {
            continue;
        }
        match (name.as_str(), value) {
            (ID_FIELD, Value::String(s)) => {
                DocumentId::decode(s).map_err(ValueError::InvalidIdField)?;
            }
            (CREATION_TIME_FIELD, Value::Float64(_)) => {}
            (ID_FIELD, other) => {
                return Err(ValueError::SystemFieldType {
                    name: ID_FIELD,
                    expected: "string",
                    found: other.type_name(),
                });
            }
            (CREATION_TIME_FIELD, other) => {
                return Err(ValueError::SystemFieldType {
                    name: CREATION_TIME_FIELD,
                    expected: "float64",
                    found: other.type_name(),
                });
            }
            _ => {
                return Err(ValueError::SystemField {
                    name: truncate_for_message(name),
                });
            }
        }
    }
    check_size(object_size(fields), DOCUMENT_MAX_BYTES)
}

/// Checks a field name: at most `FIELD_NAME_MAX_BYTES` bytes, only printable ASCII
/// (0x20–0x7E), not starting with `$` (reserved for the JSON type tags).
///
/// The empty name is allowed, as it is in Convex (the backend's `check_valid_field_name` and
/// npm's `validateObjectField` both accept it).
pub fn check_field_name(name: &str) -> Result<(), FieldNameError> {
    if name.len() > FIELD_NAME_MAX_BYTES {
        return Err(FieldNameError::TooLong {
            len: name.len(),
            max: FIELD_NAME_MAX_BYTES,
        });
    }
    if name.starts_with('$') {
        return Err(FieldNameError::StartsWithDollar);
    }
    if let Some(ch) = name.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(FieldNameError::InvalidCharacter { ch });
    }
    Ok(())
}

fn object_size(fields: &BTreeMap<String, Value>) -> usize {
    2 + fields
        .iter()
        .map(|(name, value)| name.len() + 1 + value.size_bytes())
        .sum::<usize>()
}

fn check_size(size: usize, max: usize) -> Result<(), ValueError> {
    if size > max {
        return Err(ValueError::TooLarge { size, max });
    }
    Ok(())
}

/// Checks nesting, lengths and field names of `value`, which sits inside `depth` containers.
fn check_shape(value: &Value, depth: usize, max_nesting: usize) -> Result<(), ValueError> {
    match value {
        Value::Array(items) => check_array(items, depth, max_nesting),
        Value::Object(fields) => check_object(fields, depth, max_nesting),
        _ => Ok(()),
    }
}

/// Errors unless a container inside `depth` others stays within `max_nesting`.
pub(crate) fn check_container_depth(depth: usize, max_nesting: usize) -> Result<(), ValueError> {
    if depth + 1 > max_nesting {
        return Err(ValueError::TooDeep {
            max: max_nesting,
            path: FieldPath::default(),
        });
    }
    Ok(())
}

pub(crate) fn check_array_len(len: usize) -> Result<(), ValueError> {
    if len > ARRAY_MAX_LEN {
        return Err(ValueError::ArrayTooLong {
            len,
            max: ARRAY_MAX_LEN,
            path: FieldPath::default(),
        });
    }
    Ok(())
}

pub(crate) fn check_object_len(len: usize) -> Result<(), ValueError> {
    if len > OBJECT_MAX_FIELDS {
        return Err(ValueError::TooManyFields {
            len,
            max: OBJECT_MAX_FIELDS,
            path: FieldPath::default(),
        });
    }
    Ok(())
}

/// [`check_field_name`] as a [`ValueError`] (path filled in by the caller's `within`).
pub(crate) fn check_field(name: &str) -> Result<(), ValueError> {
    check_field_name(name).map_err(|reason| ValueError::InvalidFieldName {
        name: truncate_for_message(name),
        reason,
        path: FieldPath::default(),
    })
}

fn check_array(items: &[Value], depth: usize, max_nesting: usize) -> Result<(), ValueError> {
    check_container_depth(depth, max_nesting)?;
    check_array_len(items.len())?;
    for (i, item) in items.iter().enumerate() {
        check_shape(item, depth + 1, max_nesting).map_err(|e| e.within(Segment::Index(i)))?;
    }
    Ok(())
}

fn check_object(
    fields: &BTreeMap<String, Value>,
    depth: usize,
    max_nesting: usize,
) -> Result<(), ValueError> {
    check_container_depth(depth, max_nesting)?;
    check_object_len(fields.len())?;
    for (name, value) in fields {
        check_field(name)?;
        check_shape(value, depth + 1, max_nesting).map_err(|e| e.within(Segment::Field(name)))?;
    }
    Ok(())
}

/// Longest piece of user text quoted in an error message; names can be megabytes long.
const MESSAGE_QUOTE_MAX_CHARS: usize = 64;

pub(crate) fn truncate_for_message(s: &str) -> String {
    match s.char_indices().nth(MESSAGE_QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// One step from a container to a child, used to build a [`FieldPath`] as an error unwinds.
pub(crate) enum Segment<'a> {
    Field(&'a str),
    Index(usize),
}

/// Where in a value an error was found, written `a.b[3].c`; empty means the value itself.
///
/// Built only when an error unwinds out of a container, so validating a good value allocates
/// nothing for paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path as text, `""` for the value itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn push_front(&mut self, segment: Segment<'_>) {
        let rest = std::mem::take(&mut self.0);
        self.0 = match segment {
            Segment::Field(name) if rest.is_empty() || rest.starts_with('[') => {
                format!("{name}{rest}")
            }
            Segment::Field(name) => format!("{name}.{rest}"),
            Segment::Index(i) => {
                if rest.is_empty() || rest.starts_with('[') {
                    format!("[{i}]{rest}")
                } else {
                    format!("[{i}].{rest}")
                }
            }
        };
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("the top level")
        } else {
            write!(f, "`{}`", self.0)
        }
    }
}

/// Why a field name is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldNameError {
    #[error("it is {len} bytes long, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("it starts with '$', which is reserved")]
    StartsWithDollar,
    #[error("it contains {ch:?}; field names may only contain printable ASCII (0x20 to 0x7E)")]
    InvalidCharacter { ch: char },
}

/// A value (or document) breaks one of the value rules.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("value nests more than {max} levels of arrays and objects (at {path})")]
    TooDeep { max: usize, path: FieldPath },
    #[error("array at {path} has {len} elements, more than the limit of {max}")]
    ArrayTooLong {
        len: usize,
        max: usize,
        path: FieldPath,
    },
    #[error("object at {path} has {len} fields, more than the limit of {max}")]
    TooManyFields {
        len: usize,
        max: usize,
        path: FieldPath,
    },
    #[error("invalid field name {name:?} in the object at {path}: {reason}")]
    InvalidFieldName {
        /// The name, shortened for the message if it is very long.
        name: String,
        reason: FieldNameError,
        path: FieldPath,
    },
    #[error("value is {size} bytes, more than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error(
        "top-level field {name:?} starts with '_', which is reserved for system fields \
         (only `_id` and `_creationTime` exist)"
    )]
    SystemField { name: String },
    #[error("system field `{name}` must be a {expected}, not a {found}")]
    SystemFieldType {
        name: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("system field `_id` is not a valid document id: {0}")]
    InvalidIdField(#[source] crate::id::IdError),
}

impl ValueError {
    /// The path of the offending container, for the variants that have one.
    pub fn path(&self) -> Option<&FieldPath> {
        match self {
            ValueError::TooDeep { path, .. }
            | ValueError::ArrayTooLong { path, .. }
            | ValueError::TooManyFields { path, .. }
            | ValueError::InvalidFieldName { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Re-roots the error's path one level up, under `segment`.
    pub(crate) fn within(mut self, segment: Segment<'_>) -> Self {
        match &mut self {
            ValueError::TooDeep { path, .. }
            | ValueError::ArrayTooLong { path, .. }
            | ValueError::TooManyFields { path, .. }
            | ValueError::InvalidFieldName { path, .. } => path.push_front(segment),
            _ => {}
        }
        self
    }
}

/// Convex's total order: Null < Int64 < Float64 < Boolean < String < Bytes < Array < Object.
///
/// Within a type: integers numerically; floats by IEEE total order (`f64::total_cmp`: negative
/// NaNs < -inf < … < -0 < +0 < … < +inf < positive NaNs); false < true; strings by UTF-8 bytes;
/// bytes bytewise; arrays lexicographically; objects lexicographically over their (name, value)
/// pairs in name order, a proper prefix first. Int64 and Float64 never compare numerically.
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Int64(a), Value::Int64(b)) => a.cmp(b),
            (Value::Float64(a), Value::Float64(b)) => a.total_cmp(b),
            (Value::Boolean(a), Value::Boolean(b)) => a.cmp(b),
            // `str`'s order is its UTF-8 bytes' order.
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => a.cmp(b),
            // A BTreeMap iterates in name order; tuples compare name first, then value.
            (Value::Object(a), Value::Object(b)) => a.iter().cmp(b.iter()),
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Agrees with [`Ord`]: floats are equal exactly when their bits are.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

/// Agrees with [`Eq`]: floats hash their bits.
impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.type_rank());
        match self {
            Value::Null => {}
            Value::Int64(v) => v.hash(state),
            Value::Float64(v) => v.to_bits().hash(state),
            Value::Boolean(v) => v.hash(state),
            Value::String(v) => v.hash(state),
            Value::Bytes(v) => v.hash(state),
            Value::Array(v) => v.hash(state),
            Value::Object(v) => v.hash(state),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int64(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float64(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}

impl From<BTreeMap<String, Value>> for Value {
    fn from(v: BTreeMap<String, Value>) -> Self {
        Value::Object(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{DocumentId, InternalId, TableNumber};

    fn obj(fields: &[(&str, Value)]) -> Value {
        Value::Object(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn nested_arrays(levels: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn type_order() {
        let ascending = [
            Value::Null,
            Value::Int64(i64::MAX),
            Value::Float64(f64::NEG_INFINITY),
            Value::Boolean(false),
            Value::Boolean(true),
            Value::String(String::new()),
            Value::Bytes(vec![]),
            Value::Array(vec![]),
            Value::Object(BTreeMap::new()),
        ];
        for pair in ascending.windows(2) {
            assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn numbers_never_compare_across_types() {
        assert_ne!(Value::Int64(1), Value::Float64(1.0));
        assert!(Value::Int64(i64::MAX) < Value::Float64(-1e300));
    }

    #[test]
    fn float_total_order() {
        let neg_nan = Value::Float64(-f64::NAN);
        let ascending = [
            neg_nan,
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(-1.0),
            Value::Float64(-0.0),
            Value::Float64(0.0),
            Value::Float64(5e-324),
            Value::Float64(f64::INFINITY),
            Value::Float64(f64::NAN),
        ];
        for pair in ascending.windows(2) {
            assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
        }
        assert_eq!(Value::Float64(f64::NAN), Value::Float64(f64::NAN));
        assert_ne!(Value::Float64(0.0), Value::Float64(-0.0));
    }

    #[test]
    fn strings_compare_by_utf8_bytes() {
        // U+FF61 (EF BD A1) sorts after U+10000 (F0 90 80 80) in UTF-16 but before in UTF-8.
        assert!(Value::from("\u{FF61}") < Value::from("\u{10000}"));
        assert!(Value::from("a") < Value::from("ab"));
    }

    #[test]
    fn containers_compare_lexicographically() {
        let a = Value::Array(vec![Value::Int64(1)]);
        let b = Value::Array(vec![Value::Int64(1), Value::Null]);
        let c = Value::Array(vec![Value::Int64(2)]);
        assert!(a < b && b < c);
        let x = obj(&[("a", Value::Int64(1))]);
        let y = obj(&[("a", Value::Int64(1)), ("b", Value::Null)]);
        let z = obj(&[("a", Value::Int64(2))]);
        let w = obj(&[("b", Value::Null)]);
        assert!(x < y && y < z && z < w);
    }

    #[test]
    fn size_bytes_follows_its_definition() {
        let v = obj(&[
            ("ab", Value::Array(vec![Value::Int64(1), Value::Null])),
            ("c", Value::from("xyz")),
            ("d", Value::Bytes(vec![1, 2])),
            ("e", Value::Boolean(true)),
            ("f", Value::Float64(1.5)),
        ]);
        // 2 + (2+1+(2+9+1)) + (1+1+5) + (1+1+4) + (1+1+1) + (1+1+9)
        assert_eq!(v.size_bytes(), 2 + 15 + 7 + 6 + 3 + 11);
    }

    #[test]
    fn nesting_limit() {
        assert_eq!(nested_arrays(64).nesting(), 64);
        assert!(nested_arrays(64).validate().is_ok());
        let err = nested_arrays(65).validate().unwrap_err();
        assert!(matches!(err, ValueError::TooDeep { max: 64, .. }), "{err}");
        // A scalar needs no container depth at all.
        assert!(Value::Null.validate().is_ok());
    }

    #[test]
    fn array_and_object_limits() {
        let long = Value::Array(vec![Value::Null; ARRAY_MAX_LEN + 1]);
        let err = long.validate().unwrap_err();
        assert!(matches!(err, ValueError::ArrayTooLong { len, .. } if len == ARRAY_MAX_LEN + 1));
        assert!(
            Value::Array(vec![Value::Null; ARRAY_MAX_LEN])
                .validate()
                .is_ok()
        );

        let wide: BTreeMap<String, Value> = (0..=OBJECT_MAX_FIELDS)
            .map(|i| (format!("f{i}"), Value::Null))
            .collect();
        let err = Value::Object(wide).validate().unwrap_err();
        assert!(matches!(err, ValueError::TooManyFields { .. }), "{err}");
    }

    #[test]
    fn field_names() {
        assert_eq!(check_field_name(""), Ok(()));
        assert_eq!(check_field_name("_id"), Ok(()));
        assert_eq!(check_field_name(" ~a"), Ok(()));
        assert_eq!(
            check_field_name("$x"),
            Err(FieldNameError::StartsWithDollar)
        );
        assert_eq!(
            check_field_name("a\nb"),
            Err(FieldNameError::InvalidCharacter { ch: '\n' })
        );
        assert_eq!(
            check_field_name("é"),
            Err(FieldNameError::InvalidCharacter { ch: 'é' })
        );
        assert_eq!(
            check_field_name("a\u{7f}"),
            Err(FieldNameError::InvalidCharacter { ch: '\u{7f}' })
        );
        assert!(check_field_name(&"a".repeat(FIELD_NAME_MAX_BYTES)).is_ok());
        assert_eq!(
            check_field_name(&"a".repeat(FIELD_NAME_MAX_BYTES + 1)),
            Err(FieldNameError::TooLong {
                len: FIELD_NAME_MAX_BYTES + 1,
                max: FIELD_NAME_MAX_BYTES
            })
        );
    }

    #[test]
    fn error_paths_name_the_offending_container() {
        let v = obj(&[(
            "a",
            Value::Array(vec![
                Value::Null,
                obj(&[("b", obj(&[("$bad", Value::Null)]))]),
            ]),
        )]);
        let err = v.validate().unwrap_err();
        assert_eq!(err.path().map(FieldPath::as_str), Some("a[1].b"));
        assert!(err.to_string().contains("`a[1].b`"), "{err}");
        assert!(err.to_string().contains("$bad"), "{err}");

        let v = Value::Array(vec![Value::Array(vec![obj(&[("\u{1}", Value::Null)])])]);
        let err = v.validate().unwrap_err();
        assert_eq!(err.path().map(FieldPath::as_str), Some("[0][0]"));
    }

    #[test]
    fn value_size_limit() {
        let big = Value::Bytes(vec![0; VALUE_MAX_BYTES - 1]);
        let err = big.validate().unwrap_err();
        assert_eq!(
            err,
            ValueError::TooLarge {
                size: VALUE_MAX_BYTES + 1,
                max: VALUE_MAX_BYTES
            }
        );
        assert!(
            Value::Bytes(vec![0; VALUE_MAX_BYTES - 2])
                .validate()
                .is_ok()
        );
    }

    fn doc(fields: &[(&str, Value)]) -> BTreeMap<String, Value> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn documents() {
        let id = DocumentId::new(TableNumber::new(10001).unwrap(), InternalId([7; 16]));
        let good = doc(&[
            ("_id", Value::String(id.encode())),
            ("_creationTime", Value::Float64(1.7e12)),
            ("name", Value::from("x")),
            ("nested", obj(&[("_private", Value::Null)])),
        ]);
        assert_eq!(validate_document(&good), Ok(()));

        let err = validate_document(&doc(&[("_secret", Value::Null)])).unwrap_err();
        assert!(matches!(err, ValueError::SystemField { ref name } if name == "_secret"));

        let err = validate_document(&doc(&[("_id", Value::Int64(1))])).unwrap_err();
        assert!(matches!(
            err,
            ValueError::SystemFieldType { name: "_id", .. }
        ));
        let err = validate_document(&doc(&[("_id", Value::from("nope"))])).unwrap_err();
        assert!(matches!(err, ValueError::InvalidIdField(_)));
        let err = validate_document(&doc(&[("_creationTime", Value::Int64(1))])).unwrap_err();
        assert!(matches!(
            err,
            ValueError::SystemFieldType {
                name: "_creationTime",
                found: "int64",
                ..
            }
        ));
    }

    #[test]
    fn document_nesting_counts_the_document() {
        // The document is level 1, so a field may hold 15 more levels.
        assert!(validate_document(&doc(&[("a", nested_arrays(15))])).is_ok());
        let err = validate_document(&doc(&[("a", nested_arrays(16))])).unwrap_err();
        assert!(matches!(err, ValueError::TooDeep { max: 16, .. }), "{err}");
        // The same value is fine as a plain value.
        assert!(nested_arrays(17).validate().is_ok());
    }

    #[test]
    fn document_size_limit() {
        // 2 + (1 + 1 + (2 + n)) = n + 6
        let n = DOCUMENT_MAX_BYTES - 6;
        assert!(validate_document(&doc(&[("a", Value::Bytes(vec![0; n]))])).is_ok());
        let err = validate_document(&doc(&[("a", Value::Bytes(vec![0; n + 1]))])).unwrap_err();
        assert!(matches!(err, ValueError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn long_names_are_truncated_in_messages() {
        let name = format!("${}", "x".repeat(10_000));
        let err = Value::Object(doc(&[(&name, Value::Null)]))
            .validate()
            .unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
    }
}
