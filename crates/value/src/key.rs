//! An order-preserving, self-delimiting byte encoding of values: index keys are built from it,
//! and document bodies are stored in it.
//!
//! Guarantees, for all values `a`, `b` (and tuples of them):
//!
//! 1. `a.cmp(b) == encode(a).cmp(encode(b))` under bytewise comparison;
//! 2. no encoding is a proper prefix of another, so a concatenation of encodings (a tuple)
//!    sorts exactly as the tuples do lexicographically, a shorter tuple before its extensions;
//! 3. the "missing" marker (a field that is absent, Convex's `undefined`) sorts below every
//!    value;
//! 4. each value has exactly one encoding: decoding rejects anything `encode` would not write.
//!
//! Layout (`docs/storage-format.md` draws the same; change both together):
//!
//! ```text
//! missing   01
//! null      02
//! int64     03  8 bytes big-endian of (v as u64 ^ 0x8000_0000_0000_0000)
//! float64   04  8 bytes big-endian of t(bits), where t(b) = !b if the sign bit is set,
//!               else b ^ 0x8000_0000_0000_0000 (IEEE total order as unsigned order)
//! false     05
//! true      06
//! string    07  escaped UTF-8 bytes, 00 00
//! bytes     08  escaped bytes, 00 00
//! array     09  element encodings, 00
//! object    0A  { 01, escaped name bytes, 00 00, value encoding } per field in name order, 00
//!
//! escaped: each 00 byte of the content becomes 00 FF; every other byte is itself.
//! ```
//!
//! Why it orders: tags follow the type order; 0x00 (end of a container or of escaped content)
//! is below every tag and every content byte, so a shorter string/array/object sorts first; an
//! escaped 00 (00 FF) sorts above the terminator (00 00) and below any other content byte, as
//! 00 sorts below every other byte. Byte 0x00 is never a tag, so it can end a container.
//!
//! Decoding is bounded: at most `VALUE_MAX_NESTING` levels of containers, UTF-8 checked, and
//! object names must be strictly increasing. It never panics on arbitrary input.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use knobs::{INDEX_KEY_MAX_BYTES, VALUE_MAX_NESTING};

use crate::value::Value;

const TAG_MISSING: u8 = 0x01;
const TAG_NULL: u8 = 0x02;
const TAG_INT64: u8 = 0x03;
const TAG_FLOAT64: u8 = 0x04;
const TAG_FALSE: u8 = 0x05;
const TAG_TRUE: u8 = 0x06;
const TAG_STRING: u8 = 0x07;
const TAG_BYTES: u8 = 0x08;
const TAG_ARRAY: u8 = 0x09;
const TAG_OBJECT: u8 = 0x0A;

/// Ends a container; also the first byte of the `00 00` that ends escaped content.
const END: u8 = 0x00;
/// Second byte of an escaped 0x00 inside content.
const ESCAPED_ZERO: u8 = 0xFF;
/// Starts each field of an object.
const FIELD: u8 = 0x01;

const SIGN_BIT: u64 = 0x8000_0000_0000_0000;

/// Appends the encoding of `value` to `out`.
///
/// Any value encodes, but only values nested at most `VALUE_MAX_NESTING` deep decode again;
/// validated values always are.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Int64(v) => {
            out.push(TAG_INT64);
            out.extend_from_slice(&((*v as u64) ^ SIGN_BIT).to_be_bytes());
        }
        Value::Float64(v) => {
            out.push(TAG_FLOAT64);
            out.extend_from_slice(&float_to_ordered(*v).to_be_bytes());
        }
        Value::Boolean(false) => out.push(TAG_FALSE),
        Value::Boolean(true) => out.push(TAG_TRUE),
        Value::String(s) => {
            out.push(TAG_STRING);
            encode_escaped(s.as_bytes(), out);
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            encode_escaped(b, out);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                encode(item, out);
            }
            out.push(END);
        }
        Value::Object(fields) => encode_object(fields, out),
    }
}

/// The encoding of `value` as a new vector.
pub fn encode_to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out);
    out
}

/// Appends the "missing" marker: an absent field, below every value.
pub fn encode_missing(out: &mut Vec<u8>) {
    out.push(TAG_MISSING);
}

/// Appends a document body: exactly `encode(&Value::Object(fields.clone()))`, without the clone.
pub fn encode_document(fields: &BTreeMap<String, Value>, out: &mut Vec<u8>) {
    encode_object(fields, out);
}

/// Decodes exactly one value filling all of `bytes`. The missing marker is an error here.
pub fn decode(bytes: &[u8]) -> Result<Value, KeyError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.value(0)?;
    reader.finish()?;
    Ok(value)
}

/// Decodes a document body written by [`encode_document`] (an encoded object).
pub fn decode_document(bytes: &[u8]) -> Result<BTreeMap<String, Value>, KeyError> {
    match bytes.first() {
        Some(&TAG_OBJECT) => match decode(bytes)? {
            Value::Object(fields) => Ok(fields),
            _ => Err(KeyError::NotAnObject),
        },
        Some(_) => Err(KeyError::NotAnObject),
        None => Err(KeyError::UnexpectedEnd),
    }
}

/// Decodes a concatenation of encodings (a tuple); `None` is a missing marker. An empty input
/// is the empty tuple.
pub fn decode_parts(bytes: &[u8]) -> Result<Vec<Option<Value>>, KeyError> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut parts = Vec::new();
    while reader.pos < bytes.len() {
        if reader.peek() == Some(TAG_MISSING) {
            reader.pos += 1;
            parts.push(None);
        } else {
            parts.push(Some(reader.value(0)?));
        }
    }
    Ok(parts)
}

/// An encoded tuple of index parts, at most `INDEX_KEY_MAX_BYTES` long. Its bytewise order
/// (the derived `Ord`) is the tuple order: lexicographic, missing below every value, a proper
/// prefix first.
/// Serde (internal binary formats only) carries the bytes as they are: the writer built them
/// with `from_parts`, and the reader trusts its own log.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndexKey(Vec<u8>);

impl IndexKey {
    /// Encodes the parts (`None` = missing field) in order.
    pub fn from_parts(parts: &[Option<&Value>]) -> Result<IndexKey, KeyError> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                None => encode_missing(&mut out),
                Some(value) => {
                    // A deeper value would encode but never decode.
                    if nests_deeper_than(value, VALUE_MAX_NESTING) {
                        return Err(KeyError::TooDeep {
                            max: VALUE_MAX_NESTING,
                        });
                    }
                    encode(value, &mut out);
                }
            }
            check_key_len(out.len())?;
        }
        Ok(IndexKey(out))
    }

    /// Adopts bytes read back from storage, checking they are a valid key.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<IndexKey, KeyError> {
        check_key_len(bytes.len())?;
        decode_parts(&bytes)?;
        Ok(IndexKey(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Length of the encoding in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the empty tuple.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parts again (`None` = missing).
    pub fn parts(&self) -> Result<Vec<Option<Value>>, KeyError> {
        decode_parts(&self.0)
    }
}

fn check_key_len(len: usize) -> Result<(), KeyError> {
    if len > INDEX_KEY_MAX_BYTES {
        return Err(KeyError::TooLarge {
            len,
            max: INDEX_KEY_MAX_BYTES,
        });
    }
    Ok(())
}

/// Whether `value`'s nesting exceeds `max`, looking no deeper than `max + 1` levels.
fn nests_deeper_than(value: &Value, max: usize) -> bool {
    match value {
        Value::Array(items) => max == 0 || items.iter().any(|v| nests_deeper_than(v, max - 1)),
        Value::Object(fields) => max == 0 || fields.values().any(|v| nests_deeper_than(v, max - 1)),
        _ => false,
    }
}

/// Bytes that are not a valid encoding (or a key that breaks a limit).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("encoded key is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("encoded value ends early")]
    UnexpectedEnd,
    #[error("unknown type tag 0x{tag:02x} at byte {offset}")]
    UnknownTag { tag: u8, offset: usize },
    #[error("a missing-field marker at byte {offset} where a value is required")]
    UnexpectedMissing { offset: usize },
    #[error("invalid escape 0x00 0x{byte:02x} at byte {offset}")]
    BadEscape { byte: u8, offset: usize },
    #[error("string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("expected a field marker or the end of an object at byte {offset}, found 0x{byte:02x}")]
    BadFieldMarker { byte: u8, offset: usize },
    #[error("object field names at byte {offset} are not in strictly increasing order")]
    UnsortedFields { offset: usize },
    #[error("value nests more than {max} levels of arrays and objects")]
    TooDeep { max: usize },
    #[error("{count} bytes follow the encoded value at byte {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("encoded document is not an object")]
    NotAnObject,
}

/// Maps the IEEE total order of floats onto the unsigned order of u64.
fn float_to_ordered(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits & SIGN_BIT != 0 {
        !bits
    } else {
        bits ^ SIGN_BIT
    }
}

/// Inverse of [`float_to_ordered`]: after it, the top bit is set exactly for non-negative floats.
fn float_from_ordered(ordered: u64) -> f64 {
    let bits = if ordered & SIGN_BIT != 0 {
        ordered ^ SIGN_BIT
    } else {
        !ordered
    };
    f64::from_bits(bits)
}

fn encode_escaped(content: &[u8], out: &mut Vec<u8>) {
    for chunk in content.split(|&b| b == 0).enumerate() {
        let (i, piece) = chunk;
        if i > 0 {
            out.extend_from_slice(&[0x00, ESCAPED_ZERO]);
        }
        out.extend_from_slice(piece);
    }
    out.extend_from_slice(&[END, END]);
}

fn encode_object(fields: &BTreeMap<String, Value>, out: &mut Vec<u8>) {
    out.push(TAG_OBJECT);
    for (name, value) in fields {
        out.push(FIELD);
        encode_escaped(name.as_bytes(), out);
        encode(value, out);
    }
    out.push(END);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn byte(&mut self) -> Result<u8, KeyError> {
        let b = self.peek().ok_or(KeyError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    fn eight(&mut self) -> Result<u64, KeyError> {
        let end = self.pos.checked_add(8).ok_or(KeyError::UnexpectedEnd)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(KeyError::UnexpectedEnd)?;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(slice);
        self.pos = end;
        Ok(u64::from_be_bytes(buf))
    }

    fn finish(&self) -> Result<(), KeyError> {
        if self.pos < self.bytes.len() {
            return Err(KeyError::TrailingBytes {
                offset: self.pos,
                count: self.bytes.len() - self.pos,
            });
        }
        Ok(())
    }

    /// Escaped content up to and including its `00 00` terminator, unescaped.
    fn escaped(&mut self) -> Result<Vec<u8>, KeyError> {
        let mut out = Vec::new();
        loop {
            let rest = &self.bytes[self.pos..];
            let zero = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(KeyError::UnexpectedEnd)?;
            out.extend_from_slice(&rest[..zero]);
            self.pos += zero + 1;
            match self.byte()? {
                END => return Ok(out),
                ESCAPED_ZERO => out.push(0),
                byte => {
                    return Err(KeyError::BadEscape {
                        byte,
                        offset: self.pos - 2,
                    });
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, KeyError> {
        let offset = self.pos;
        String::from_utf8(self.escaped()?).map_err(|_| KeyError::InvalidUtf8 { offset })
    }

    /// A value (not a missing marker) inside `depth` containers.
    fn value(&mut self, depth: usize) -> Result<Value, KeyError> {
        let offset = self.pos;
        Ok(match self.byte()? {
            TAG_NULL => Value::Null,
            TAG_INT64 => Value::Int64((self.eight()? ^ SIGN_BIT) as i64),
            TAG_FLOAT64 => Value::Float64(float_from_ordered(self.eight()?)),
            TAG_FALSE => Value::Boolean(false),
            TAG_TRUE => Value::Boolean(true),
            TAG_STRING => Value::String(self.string()?),
            TAG_BYTES => Value::Bytes(self.escaped()?),
            TAG_ARRAY => {
                self.enter(depth)?;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(END) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            TAG_OBJECT => {
                self.enter(depth)?;
                let mut fields = BTreeMap::new();
                let mut last: Option<String> = None;
                loop {
                    let at = self.pos;
                    match self.byte()? {
                        END => break,
                        FIELD => {}
                        byte => return Err(KeyError::BadFieldMarker { byte, offset: at }),
                    }
                    let name = self.string()?;
                    if last.as_ref().is_some_and(|prev| *prev >= name) {
                        return Err(KeyError::UnsortedFields { offset: at });
                    }
                    let value = self.value(depth + 1)?;
                    last = Some(name.clone());
                    fields.insert(name, value);
                }
                Value::Object(fields)
            }
            TAG_MISSING => return Err(KeyError::UnexpectedMissing { offset }),
            tag => return Err(KeyError::UnknownTag { tag, offset }),
        })
    }

    fn enter(&self, depth: usize) -> Result<(), KeyError> {
        if depth + 1 > VALUE_MAX_NESTING {
            return Err(KeyError::TooDeep {
                max: VALUE_MAX_NESTING,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        encode_to_vec(v)
    }

    fn nested_arrays(levels: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn layout() {
        assert_eq!(enc(&Value::Null), [0x02]);
        assert_eq!(enc(&Value::Int64(0)), [0x03, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            enc(&Value::Int64(-1)),
            [0x03, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(enc(&Value::Float64(0.0)), [0x04, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            enc(&Value::Float64(-0.0)),
            [0x04, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(enc(&Value::Boolean(false)), [0x05]);
        assert_eq!(enc(&Value::Boolean(true)), [0x06]);
        assert_eq!(enc(&Value::from("a\0b")), [0x07, b'a', 0, 0xFF, b'b', 0, 0]);
        assert_eq!(
            enc(&Value::Bytes(vec![0, 0])),
            [0x08, 0, 0xFF, 0, 0xFF, 0, 0]
        );
        assert_eq!(
            enc(&Value::Array(vec![Value::Null, Value::Boolean(true)])),
            [0x09, 0x02, 0x06, 0x00]
        );
        let obj = Value::Object(BTreeMap::from([
            ("a".to_owned(), Value::Null),
            ("b".to_owned(), Value::Boolean(false)),
        ]));
        assert_eq!(
            enc(&obj),
            [0x0A, 0x01, b'a', 0, 0, 0x02, 0x01, b'b', 0, 0, 0x05, 0x00]
        );
        let mut missing = Vec::new();
        encode_missing(&mut missing);
        assert_eq!(missing, [0x01]);
    }

    #[test]
    fn order_edge_cases() {
        let ascending = [
            Value::Int64(i64::MIN),
            Value::Int64(-1),
            Value::Int64(0),
            Value::Int64(i64::MAX),
            Value::Float64(-f64::NAN),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(-0.0),
            Value::Float64(0.0),
            Value::Float64(f64::INFINITY),
            Value::Float64(f64::NAN),
            Value::from(""),
            Value::from("\0"),
            Value::from("\0\0"),
            Value::from("\0\u{1}"),
            Value::from("\u{1}"),
            Value::Bytes(vec![]),
            Value::Bytes(vec![0]),
            Value::Bytes(vec![0, 0xFF]),
            Value::Bytes(vec![0xFF]),
            Value::Array(vec![]),
            Value::Array(vec![Value::Null]),
            Value::Array(vec![Value::Null, Value::Null]),
            Value::Array(vec![Value::Int64(0)]),
        ];
        for pair in ascending.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(
                enc(&pair[0]) < enc(&pair[1]),
                "{:?} < {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn round_trips() {
        let v = Value::Object(BTreeMap::from([
            ("".to_owned(), Value::from("x\0y")),
            (
                "k".to_owned(),
                Value::Array(vec![
                    Value::Float64(f64::NAN),
                    Value::Bytes(vec![0, 1, 0xFF]),
                ]),
            ),
        ]));
        assert_eq!(decode(&enc(&v)), Ok(v.clone()));
        let mut doc = Vec::new();
        let Value::Object(fields) = &v else {
            unreachable!()
        };
        encode_document(fields, &mut doc);
        assert_eq!(doc, enc(&v));
        assert_eq!(decode_document(&doc).as_ref(), Ok(fields));
        assert_eq!(
            decode_document(&enc(&Value::Null)),
            Err(KeyError::NotAnObject)
        );
    }

    #[test]
    fn decode_rejects_malformed_input() {
        assert_eq!(decode(&[]), Err(KeyError::UnexpectedEnd));
        assert_eq!(
            decode(&[0x01]),
            Err(KeyError::UnexpectedMissing { offset: 0 })
        );
        assert_eq!(
            decode(&[0x00]),
            Err(KeyError::UnknownTag { tag: 0, offset: 0 })
        );
        assert_eq!(
            decode(&[0x0B]),
            Err(KeyError::UnknownTag {
                tag: 0x0B,
                offset: 0
            })
        );
        assert_eq!(decode(&[0x03, 1, 2]), Err(KeyError::UnexpectedEnd));
        assert_eq!(
            decode(&[0x07, b'a', 0x00, 0x01, 0, 0]),
            Err(KeyError::BadEscape { byte: 1, offset: 2 })
        );
        assert_eq!(decode(&[0x07, b'a', 0x00]), Err(KeyError::UnexpectedEnd));
        assert_eq!(decode(&[0x07, b'a']), Err(KeyError::UnexpectedEnd));
        assert_eq!(
            decode(&[0x07, 0xC3, 0x28, 0, 0]),
            Err(KeyError::InvalidUtf8 { offset: 1 })
        );
        assert_eq!(
            decode(&[0x02, 0x02]),
            Err(KeyError::TrailingBytes {
                offset: 1,
                count: 1
            })
        );
        assert_eq!(decode(&[0x09, 0x02]), Err(KeyError::UnexpectedEnd));
        assert_eq!(
            decode(&[0x09, 0x01, 0x00]),
            Err(KeyError::UnexpectedMissing { offset: 1 })
        );
        // Object: bad field marker, duplicate and unsorted names.
        assert_eq!(
            decode(&[0x0A, 0x02, 0x00]),
            Err(KeyError::BadFieldMarker { byte: 2, offset: 1 })
        );
        let dup = [0x0A, 1, b'a', 0, 0, 2, 1, b'a', 0, 0, 2, 0];
        assert_eq!(decode(&dup), Err(KeyError::UnsortedFields { offset: 6 }));
        let unsorted = [0x0A, 1, b'b', 0, 0, 2, 1, b'a', 0, 0, 2, 0];
        assert_eq!(
            decode(&unsorted),
            Err(KeyError::UnsortedFields { offset: 6 })
        );
        let invalid_name = [0x0A, 1, 0xFF, 0, 0, 2, 0];
        assert_eq!(
            decode(&invalid_name),
            Err(KeyError::InvalidUtf8 { offset: 2 })
        );
    }

    #[test]
    fn decode_depth_is_bounded() {
        assert_eq!(decode(&enc(&nested_arrays(64))), Ok(nested_arrays(64)));
        assert_eq!(
            decode(&enc(&nested_arrays(65))),
            Err(KeyError::TooDeep { max: 64 })
        );
        // Far deeper than the stack would allow, were decoding unbounded.
        let deep = vec![0x09; 1_000_000];
        assert_eq!(decode(&deep), Err(KeyError::TooDeep { max: 64 }));
    }

    #[test]
    fn parts() {
        let mut bytes = Vec::new();
        encode_missing(&mut bytes);
        encode(&Value::Int64(3), &mut bytes);
        encode_missing(&mut bytes);
        assert_eq!(
            decode_parts(&bytes),
            Ok(vec![None, Some(Value::Int64(3)), None])
        );
        assert_eq!(decode_parts(&[]), Ok(vec![]));
        assert_eq!(
            decode_parts(&[0x02, 0x00]),
            Err(KeyError::UnknownTag { tag: 0, offset: 1 })
        );
    }

    #[test]
    fn index_keys() {
        let three = Value::Int64(3);
        let key = IndexKey::from_parts(&[None, Some(&three)]).unwrap();
        assert_eq!(key.len(), 10);
        assert_eq!(key.parts(), Ok(vec![None, Some(three.clone())]));
        assert_eq!(
            IndexKey::from_bytes(key.as_bytes().to_vec()),
            Ok(key.clone())
        );
        assert_eq!(key.clone().into_bytes(), key.as_bytes());
        assert!(IndexKey::from_parts(&[]).unwrap().is_empty());

        let missing = IndexKey::from_parts(&[None]).unwrap();
        let null = IndexKey::from_parts(&[Some(&Value::Null)]).unwrap();
        assert!(missing < null);
        let short = IndexKey::from_parts(&[Some(&three)]).unwrap();
        let long = IndexKey::from_parts(&[Some(&three), None]).unwrap();
        assert!(short < long);

        assert_eq!(
            IndexKey::from_bytes(vec![0x02, 0xEE]),
            Err(KeyError::UnknownTag {
                tag: 0xEE,
                offset: 1
            })
        );
    }

    #[test]
    fn index_key_size_limit() {
        // 1 tag + content + 2 terminator bytes.
        let fits = Value::from("x".repeat(INDEX_KEY_MAX_BYTES - 3));
        assert_eq!(
            IndexKey::from_parts(&[Some(&fits)]).unwrap().len(),
            INDEX_KEY_MAX_BYTES
        );
        let over = Value::from("x".repeat(INDEX_KEY_MAX_BYTES - 2));
        assert_eq!(
            IndexKey::from_parts(&[Some(&over)]),
            Err(KeyError::TooLarge {
                len: INDEX_KEY_MAX_BYTES + 1,
                max: INDEX_KEY_MAX_BYTES
            })
        );
        let mut big = Vec::new();
        encode(&over, &mut big);
        assert_eq!(
            IndexKey::from_bytes(big),
            Err(KeyError::TooLarge {
                len: INDEX_KEY_MAX_BYTES + 1,
                max: INDEX_KEY_MAX_BYTES
            })
        );
    }

    #[test]
    fn index_key_depth_limit() {
        assert!(IndexKey::from_parts(&[Some(&nested_arrays(64))]).is_ok());
        assert_eq!(
            IndexKey::from_parts(&[Some(&nested_arrays(65))]),
            Err(KeyError::TooDeep { max: 64 })
        );
    }
}
