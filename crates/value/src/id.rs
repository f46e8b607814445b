//! Document ids, in Convex's string format (its "id v6").
//!
//! ```text
//! bytes:  table number (LEB128, 1–5 bytes) | internal id (16 bytes) | footer (2 bytes)
//! string: base32 of those bytes (see `base32`), 31–37 characters
//! ```
//!
//! The table number is an unsigned LEB128 varint: 7 bits per byte, low group first, high bit
//! set on every byte but the last; minimal length only, and never 0. The footer is Fletcher-16
//! over the preceding bytes (`c0 = c0 + b`, `c1 = c1 + c0`, both mod 256), XOR the format
//! version 0, stored little-endian as `[c0, c1]`. A string decodes only if it is exactly what
//! encoding its id produces, so every id has one spelling.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use crate::base32;

/// Length of an [`InternalId`].
pub const INTERNAL_ID_LEN: usize = 16;
const FOOTER_LEN: usize = 2;
const VARINT_MAX_LEN: usize = 5;
/// Format version, XORed into the footer.
const ID_VERSION: u16 = 0;

/// Shortest id string (a 1-byte table number).
pub const ID_MIN_CHARS: usize = base32::encoded_len(1 + INTERNAL_ID_LEN + FOOTER_LEN);
/// Longest id string (a 5-byte table number).
pub const ID_MAX_CHARS: usize = base32::encoded_len(VARINT_MAX_LEN + INTERNAL_ID_LEN + FOOTER_LEN);

/// A table's number; never 0. User tables start at 10001 in Convex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableNumber(NonZeroU32);

impl TableNumber {
    /// Errors with [`IdError::ZeroTableNumber`] for 0.
    pub fn new(n: u32) -> Result<Self, IdError> {
        NonZeroU32::new(n)
            .map(TableNumber)
            .ok_or(IdError::ZeroTableNumber)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for TableNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The 16 bytes that identify a document within its table. Any 16 bytes are valid.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InternalId(pub [u8; INTERNAL_ID_LEN]);

impl fmt::Debug for InternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A document's id: its table and its internal id. Ordered by table, then internal id.
/// Serde (used by Chorus's internal binary formats) writes the parts, not the string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DocumentId {
    pub table: TableNumber,
    pub internal: InternalId,
}

impl DocumentId {
    pub fn new(table: TableNumber, internal: InternalId) -> Self {
        DocumentId { table, internal }
    }

    /// The id's string form, as clients see it in `_id`.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(VARINT_MAX_LEN + INTERNAL_ID_LEN + FOOTER_LEN);
        write_varint(self.table.get(), &mut bytes);
        bytes.extend_from_slice(&self.internal.0);
        let footer = fletcher16(&bytes) ^ ID_VERSION;
        bytes.extend_from_slice(&footer.to_le_bytes());
        base32::encode(&bytes)
    }

    /// Parses an id string, accepting only the exact text [`DocumentId::encode`] produces.
    pub fn decode(text: &str) -> Result<Self, IdError> {
        let len = text.len();
        let byte_len = (ID_MIN_CHARS..=ID_MAX_CHARS)
            .contains(&len)
            .then(|| len * 5 / 8)
            .filter(|&n| base32::encoded_len(n) == len)
            .ok_or(IdError::WrongLength { len })?;
        let bytes = base32::decode(text).map_err(|e| IdError::BadCharacter {
            ch: e.ch,
            position: e.position,
        })?;
        // All characters were ASCII (else BadCharacter), so the byte count is as computed.
        debug_assert_eq!(bytes.len(), byte_len);
        // Leftover low bits of the last character must be zero.
        if base32::encode(&bytes) != text {
            return Err(IdError::NonCanonical);
        }
        let (body, footer) = bytes.split_at(bytes.len() - FOOTER_LEN);
        let stored = u16::from_le_bytes([footer[0], footer[1]]);
        if fletcher16(body) ^ ID_VERSION != stored {
            return Err(IdError::BadChecksum);
        }
        let (varint, internal) = body.split_at(body.len() - INTERNAL_ID_LEN);
        let table = TableNumber::new(read_varint(varint)?)?;
        let mut id = [0u8; INTERNAL_ID_LEN];
        id.copy_from_slice(internal);
        Ok(DocumentId::new(table, InternalId(id)))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({}, table {})", self.encode(), self.table)
    }
}

impl FromStr for DocumentId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        DocumentId::decode(s)
    }
}

/// A string is not a document id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("a document id has 31, 32, 34, 36 or 37 characters, not {len}")]
    WrongLength { len: usize },
    #[error("a document id cannot contain {ch:?} (at byte {position})")]
    BadCharacter { ch: char, position: usize },
    #[error("document id is not in canonical form")]
    NonCanonical,
    #[error("document id checksum does not match (the id is mistyped or truncated)")]
    BadChecksum,
    #[error("document id has a malformed table number")]
    BadTableNumber,
    #[error("table number 0 is not valid")]
    ZeroTableNumber,
}

fn write_varint(mut n: u32, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint that must fill `bytes` exactly, in its minimal form.
fn read_varint(bytes: &[u8]) -> Result<u32, IdError> {
    let Some((&last, init)) = bytes.split_last() else {
        return Err(IdError::BadTableNumber);
    };
    let continues = |b: &u8| b & 0x80 != 0;
    let minimal = bytes.len() == 1 || last != 0;
    if bytes.len() > VARINT_MAX_LEN || !init.iter().all(continues) || continues(&last) || !minimal {
        return Err(IdError::BadTableNumber);
    }
    let mut n: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        n |= u64::from(b & 0x7F) << (7 * i);
    }
    u32::try_from(n).map_err(|_| IdError::BadTableNumber)
}

fn fletcher16(bytes: &[u8]) -> u16 {
    let (mut c0, mut c1) = (0u8, 0u8);
    for &b in bytes {
        c0 = c0.wrapping_add(b);
        c1 = c1.wrapping_add(c0);
    }
    (u16::from(c1) << 8) | u16::from(c0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting() -> InternalId {
        let mut b = [0u8; 16];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        InternalId(b)
    }

    fn id(table: u32) -> DocumentId {
        DocumentId::new(TableNumber::new(table).unwrap(), counting())
    }

    /// Encodes raw id bytes with a correct footer, to build ids `encode` never would.
    fn raw(varint: &[u8]) -> String {
        let mut bytes = varint.to_vec();
        bytes.extend_from_slice(&counting().0);
        let footer = fletcher16(&bytes);
        bytes.extend_from_slice(&footer.to_le_bytes());
        base32::encode(&bytes)
    }

    #[test]
    fn known_vectors() {
        assert_eq!(id(10001).encode(), "j57000820c20a1g7104gm2rc1m70ynr8");
        assert_eq!(id(5).encode(), "0m0020g30g2gc1r81450p30d1r7qvz8");
        assert_eq!(
            DocumentId::decode("j57000820c20a1g7104gm2rc1m70ynr8"),
            Ok(id(10001))
        );
        assert_eq!(
            "0m0020g30g2gc1r81450p30d1r7qvz8".parse::<DocumentId>(),
            Ok(id(5))
        );
        assert_eq!(id(10001).to_string(), "j57000820c20a1g7104gm2rc1m70ynr8");
    }

    #[test]
    fn lengths_by_table_number() {
        for (table, len) in [
            (1, 31),
            (127, 31),
            (128, 32),
            (16383, 32),
            (16384, 34),
            ((1 << 21) - 1, 34),
            (1 << 21, 36),
            ((1 << 28) - 1, 36),
            (1 << 28, 37),
            (u32::MAX, 37),
        ] {
            let text = id(table).encode();
            assert_eq!(text.len(), len, "table {table}");
            assert_eq!(DocumentId::decode(&text), Ok(id(table)));
        }
        assert_eq!(ID_MIN_CHARS, 31);
        assert_eq!(ID_MAX_CHARS, 37);
    }

    #[test]
    fn wrong_length() {
        // 31 characters is the shortest id: one character short is 30.
        let short_id = id(5).encode();
        assert_eq!(
            DocumentId::decode(&short_id[..30]),
            Err(IdError::WrongLength { len: 30 })
        );
        // 32 characters minus one is a valid length for a shorter id, but not this one.
        let good = id(10001).encode();
        assert!(DocumentId::decode(&good[..31]).is_err());
        let long = format!("{good}0");
        assert_eq!(
            DocumentId::decode(&long),
            Err(IdError::WrongLength { len: 33 })
        );
        for len in [0, 1, 30, 33, 35, 38, 100] {
            assert_eq!(
                DocumentId::decode(&"0".repeat(len)),
                Err(IdError::WrongLength { len })
            );
        }
    }

    #[test]
    fn bad_characters() {
        let good = id(10001).encode();
        for bad in ['u', 'I', 'J', 'o', '-', ' '] {
            let mut text = good.clone();
            text.replace_range(3..4, &bad.to_string());
            assert_eq!(
                DocumentId::decode(&text),
                Err(IdError::BadCharacter {
                    ch: bad,
                    position: 3
                })
            );
        }
        let upper = good.to_uppercase();
        assert!(matches!(
            DocumentId::decode(&upper),
            Err(IdError::BadCharacter { position: 0, .. })
        ));
        // A multi-byte character with the right byte length.
        let mut text = good.clone();
        text.replace_range(0..2, "é");
        assert_eq!(
            DocumentId::decode(&text),
            Err(IdError::BadCharacter {
                ch: 'é',
                position: 0
            })
        );
    }

    #[test]
    fn non_canonical_trailing_bits() {
        // 31 characters carry 155 bits for 152: the last character's low 3 bits must be 0.
        let good = id(5).encode();
        assert!(good.ends_with('8'));
        let text = format!("{}9", &good[..good.len() - 1]);
        assert_eq!(DocumentId::decode(&text), Err(IdError::NonCanonical));
    }

    #[test]
    fn bad_checksum() {
        let good = id(10001).encode();
        // 32 characters hold exactly 20 bytes; the last one is all footer bits.
        let flipped = format!("{}9", &good[..good.len() - 1]);
        assert_eq!(DocumentId::decode(&flipped), Err(IdError::BadChecksum));
        let mut swapped = good.clone().into_bytes();
        swapped.swap(10, 11);
        let swapped = String::from_utf8(swapped).unwrap();
        assert_ne!(swapped, good);
        assert_eq!(DocumentId::decode(&swapped), Err(IdError::BadChecksum));
    }

    #[test]
    fn bad_table_numbers() {
        assert_eq!(DocumentId::decode(&raw(&[0x05])), Ok(id(5)));
        assert_eq!(
            DocumentId::decode(&raw(&[0x00])),
            Err(IdError::ZeroTableNumber)
        );
        // Non-minimal: 5 spelled in two bytes.
        assert_eq!(
            DocumentId::decode(&raw(&[0x85, 0x00])),
            Err(IdError::BadTableNumber)
        );
        // The varint ends before the bytes set aside for it do.
        assert_eq!(
            DocumentId::decode(&raw(&[0x05, 0x05])),
            Err(IdError::BadTableNumber)
        );
        // Still continuing at its last byte.
        assert_eq!(
            DocumentId::decode(&raw(&[0x85, 0x85])),
            Err(IdError::BadTableNumber)
        );
        // Five bytes, but more than 32 bits.
        assert_eq!(
            DocumentId::decode(&raw(&[0xFF, 0xFF, 0xFF, 0xFF, 0x10])),
            Err(IdError::BadTableNumber)
        );
        assert_eq!(
            DocumentId::decode(&raw(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F])),
            Ok(id(u32::MAX))
        );
        assert_eq!(TableNumber::new(0), Err(IdError::ZeroTableNumber));
    }

    #[test]
    fn fletcher_matches_definition() {
        assert_eq!(fletcher16(&[]), 0);
        assert_eq!(fletcher16(&[1, 2]), (4 << 8) | 3);
        // Sums wrap at 256 (not 255, as textbook Fletcher does).
        assert_eq!(fletcher16(&[255, 1]), (255 << 8));
    }

    #[test]
    fn debug_shows_the_string() {
        let s = format!("{:?}", id(10001));
        assert!(s.contains("j57000820c20a1g7104gm2rc1m70ynr8"), "{s}");
        assert_eq!(
            format!("{:?}", counting()),
            "InternalId(000102030405060708090a0b0c0d0e0f)"
        );
    }
}
