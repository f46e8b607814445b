//! The byte layout of the MVCC keyspace. `docs/storage-format.md` draws the same layout; change
//! both together (and bump [`FORMAT_VERSION`]).
//!
//! Data space, one key per version:
//!
//! ```text
//! table number u32 BE | index number u32 BE | entry key | !commit_ts u64 BE
//! ```
//!
//! - index number 0 is the table's documents; its entry key is the 16-byte internal id and the
//!   value is `0x01 ++ body` (a live document) or `0x00` (a deletion);
//! - index numbers ≥ 1 are secondary indexes; the entry key is the encoded index key
//!   (`value::IndexKey`, prefix-free) followed by the 16-byte internal id, and the value is
//!   `0x01` (the entry exists from this version on) or `0x00` (it stops existing).
//!
//! The timestamp is stored inverted, so for one entry key the newest version sorts first: a
//! read at T seeks to `prefix ++ entry ++ !T` and the first key found within the entry is the
//! version visible at T. All versions of an entry key ("a group") are contiguous, a whole
//! table is one contiguous span, and an index range is one contiguous scan.

use std::fmt;

use serde::{Deserialize, Serialize};

use value::{DocumentId, InternalId, TableNumber};

/// On-disk format version, stored in the meta space; a store refuses to open another version.
pub const FORMAT_VERSION: u32 = 1;

/// Length of the (table, index) prefix of every data key.
pub const PREFIX_LEN: usize = 8;
/// Length of the inverted timestamp suffix of every data key.
pub const TS_LEN: usize = 8;
/// Length of an internal document id.
pub const ID_LEN: usize = 16;

pub(crate) const VERSION_TOMBSTONE: u8 = 0x00;
pub(crate) const VERSION_LIVE: u8 = 0x01;

/// A commit timestamp: the identity of a commit on every replica. Chorus timestamps are
/// Convex-compatible (nanoseconds since the Unix epoch on the wire), strictly increasing per
/// commit; the store itself only needs their order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(0);
    pub const MAX: Timestamp = Timestamp(u64::MAX);
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which index of a table an entry belongs to. 0 is the documents themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndexNumber(pub u32);

impl IndexNumber {
    /// The documents of a table, ordered by internal id.
    pub const DOCUMENTS: IndexNumber = IndexNumber(0);

    pub fn is_documents(self) -> bool {
        self == Self::DOCUMENTS
    }
}

/// The position of an entry in the Raft log that produced it: `(term, index)`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    pub term: u64,
    pub index: u64,
}

/// `table ++ index`, the prefix shared by every version of every entry of one index.
pub fn index_prefix(table: TableNumber, index: IndexNumber) -> [u8; PREFIX_LEN] {
    let mut out = [0u8; PREFIX_LEN];
    out[..4].copy_from_slice(&table.get().to_be_bytes());
    out[4..].copy_from_slice(&index.0.to_be_bytes());
    out
}

/// The data key of one version of an entry.
pub fn version_key(prefix: &[u8; PREFIX_LEN], entry: &[u8], ts: Timestamp) -> Vec<u8> {
    let mut key = Vec::with_capacity(PREFIX_LEN + entry.len() + TS_LEN);
    key.extend_from_slice(prefix);
    key.extend_from_slice(entry);
    key.extend_from_slice(&(!ts.0).to_be_bytes());
    key
}

/// The data key of one version of a document.
pub fn document_key(id: &DocumentId, ts: Timestamp) -> Vec<u8> {
    version_key(
        &index_prefix(id.table, IndexNumber::DOCUMENTS),
        &id.internal.0,
        ts,
    )
}

/// The entry key of a secondary index entry: the encoded index key, then the internal id.
pub fn index_entry(index_key: &[u8], id: &InternalId) -> Vec<u8> {
    let mut entry = Vec::with_capacity(index_key.len() + ID_LEN);
    entry.extend_from_slice(index_key);
    entry.extend_from_slice(&id.0);
    entry
}

/// A data key split into its parts. Only keys written by this crate parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub table: u32,
    pub index: IndexNumber,
    pub entry: &'a [u8],
    pub ts: Timestamp,
}

/// Splits a data key; `None` if it is too short to be one.
pub fn parse_key(key: &[u8]) -> Option<ParsedKey<'_>> {
    if key.len() < PREFIX_LEN + TS_LEN {
        return None;
    }
    let (head, ts) = key.split_at(key.len() - TS_LEN);
    let table = u32::from_be_bytes(head[..4].try_into().ok()?);
    let index = IndexNumber(u32::from_be_bytes(head[4..8].try_into().ok()?));
    let inverted = u64::from_be_bytes(ts.try_into().ok()?);
    Some(ParsedKey {
        table,
        index,
        entry: &head[PREFIX_LEN..],
        ts: Timestamp(!inverted),
    })
}

/// The group of a data key: everything but the timestamp (prefix and entry key).
pub fn group_of(key: &[u8]) -> &[u8] {
    &key[..key.len().saturating_sub(TS_LEN)]
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// when no such string exists (`prefix` is empty or all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// A range of entry keys within one index: `start` inclusive, `end` exclusive (`None`: to the
/// end of the index). Bounds are compared bytewise with entry keys, the way Convex's index
/// intervals are: "field = v" is `[enc(v), succ(enc(v)))`, "field > v" starts at
/// `succ(enc(v))`. Bounds are expected to be built from whole encoded values, and so to be
/// no longer than the entry keys they bound (an entry key is never a proper prefix of a bound).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every entry of the index.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every entry key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        Self {
            start: prefix.to_vec(),
            end: prefix_successor(prefix),
        }
    }

    pub fn contains(&self, entry: &[u8]) -> bool {
        entry >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| entry < end)
    }
}

/// A span of raw data keys, `[start, end)`; `end: None` means to the end of the keyspace.
/// A range replica owns one span; checkpoints are taken of a span.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeySpan {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeySpan {
    /// The whole keyspace.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every version of every document and index entry of one table.
    pub fn table(table: TableNumber) -> Self {
        let start = table.get().to_be_bytes().to_vec();
        let end = prefix_successor(&start);
        Self { start, end }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_sorts_first() {
        let table = TableNumber::new(10001).expect("valid table number");
        let id = DocumentId::new(table, InternalId([7; 16]));
        let old = document_key(&id, Timestamp(5));
        let new = document_key(&id, Timestamp(9));
        assert!(new < old);
        let parsed = parse_key(&new).expect("parses");
        assert_eq!(parsed.ts, Timestamp(9));
        assert_eq!(parsed.table, 10001);
        assert_eq!(parsed.entry, &[7u8; 16]);
        assert_eq!(group_of(&new), group_of(&old));
    }

    #[test]
    fn prefix_successor_cases() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[]), None);
    }

    #[test]
    fn table_span_covers_all_its_indexes_only() {
        let t = TableNumber::new(10001).expect("valid");
        let u = TableNumber::new(10002).expect("valid");
        let span = KeySpan::table(t);
        let id = DocumentId::new(t, InternalId([0xFF; 16]));
        assert!(span.contains(&document_key(&id, Timestamp::MIN)));
        assert!(span.contains(&version_key(
            &index_prefix(t, IndexNumber(u32::MAX)),
            &[0xFF; 40],
            Timestamp::MIN
        )));
        let other = DocumentId::new(u, InternalId([0; 16]));
        assert!(!span.contains(&document_key(&other, Timestamp::MAX)));
    }

    /// The examples in docs/storage-format.md, byte for byte.
    #[test]
    fn storage_format_examples_match_docs() {
        use value::{IndexKey, Value, key};
        let hex = |bytes: &[u8]| {
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let table = TableNumber::new(10001).expect("valid");
        let internal: [u8; 16] = std::array::from_fn(|i| i as u8);
        let id = DocumentId::new(table, InternalId(internal));
        assert_eq!(id.encode(), "j57000820c20a1g7104gm2rc1m70ynr8");
        assert_eq!(
            hex(&document_key(&id, Timestamp(5))),
            "00 00 27 11 00 00 00 00 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f \
             ff ff ff ff ff ff ff fa"
        );
        let k = IndexKey::from_parts(&[Some(&Value::Int64(5))]).expect("small");
        let entry = index_entry(k.as_bytes(), &id.internal);
        let raw = version_key(&index_prefix(table, IndexNumber(1)), &entry, Timestamp(5));
        assert_eq!(
            hex(&raw[..17]),
            "00 00 27 11 00 00 00 01 03 80 00 00 00 00 00 00 05"
        );
        let enc = |v: &Value| {
            let mut out = Vec::new();
            key::encode(v, &mut out);
            hex(&out)
        };
        assert_eq!(enc(&Value::Null), "02");
        assert_eq!(enc(&Value::Int64(-1)), "03 7f ff ff ff ff ff ff ff");
        assert_eq!(enc(&Value::Float64(1.0)), "04 bf f0 00 00 00 00 00 00");
        assert_eq!(enc(&Value::String("a\0b".into())), "07 61 00 ff 62 00 00");
        assert_eq!(enc(&Value::Array(vec![Value::Boolean(true)])), "09 06 00");
        let obj = Value::Object([("x".to_string(), Value::Null)].into_iter().collect());
        assert_eq!(enc(&obj), "0a 01 78 00 00 02 00");
    }
}
