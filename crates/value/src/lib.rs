//! Convex values for Chorus: the value model and its total order ([`Value`]), validation
//! against the limits in `knobs`, Convex's JSON wire encoding ([`Value::from_json`],
//! [`Value::to_json`]), the order-preserving byte encoding used for index keys and stored
//! document bodies ([`key`]), and document ids ([`DocumentId`]).
//!
//! Everything here follows `shared/research/convex-protocol.md` §1; where Convex's behaviour
//! is a compatibility promise (JSON shapes, id strings, the order), tests pin it with vectors.

#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;
mod base32;
pub mod fuzz;
mod id;
mod json;
pub mod key;
mod value;

#[cfg(test)]
mod proptests;

pub use id::{
    DocumentId, ID_MAX_CHARS, ID_MIN_CHARS, INTERNAL_ID_LEN, IdError, InternalId, TableNumber,
};
pub use json::JsonError;
pub use key::{IndexKey, KeyError};
pub use value::{
    CREATION_TIME_FIELD, FieldNameError, FieldPath, ID_FIELD, Value, ValueError, check_field_name,
    validate_document,
};
