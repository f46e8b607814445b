//! proptest strategies for values and ids, for this crate's tests and (with the `arbitrary`
//! feature) for other crates'.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;

use crate::id::{DocumentId, InternalId, TableNumber};
use crate::value::Value;

/// Valid field names: mostly identifiers, sometimes any printable ASCII not starting with
/// `$` (including the empty name).
pub fn any_field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_][a-zA-Z0-9_]{0,8}",
        1 => "([ -#%-~][ -~]{0,12})?",
    ]
}

/// Every kind of float: arbitrary bit patterns (all NaN payloads, subnormals) and the edges.
pub fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        select(vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
            0.1,
        ]),
    ]
}

fn any_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Int64),
        select(vec![i64::MIN, -1, 0, 1, i64::MAX]).prop_map(Value::Int64),
        any_f64().prop_map(Value::Float64),
        any::<bool>().prop_map(Value::Boolean),
        any::<String>().prop_map(Value::String),
        // NUL and its neighbours exercise the key encoding's escapes.
        "[\\x00\\x01a\u{ff}\u{10000}]{0,6}".prop_map(Value::String),
        vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        vec(select(vec![0u8, 1, 0xFF]), 0..6).prop_map(Value::Bytes),
    ]
    .boxed()
}

/// Any valid value: all types, nested up to 4 levels, small containers, valid field names.
pub fn any_value() -> impl Strategy<Value = Value> {
    any_scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(any_field_name(), inner, 0..6).prop_map(Value::Object),
        ]
    })
}

/// Values from a tiny domain, so that two draws are often equal or share a prefix: order
/// properties then test more than the type tag.
pub fn small_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        (-2i64..=2).prop_map(Value::Int64),
        select(vec![f64::NEG_INFINITY, -1.0, -0.0, 0.0, 1.0, f64::NAN]).prop_map(Value::Float64),
        any::<bool>().prop_map(Value::Boolean),
        "[\\x00a]{0,3}".prop_map(Value::String),
        vec(select(vec![0u8, 0xFF]), 0..3).prop_map(Value::Bytes),
    ];
    scalar.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            btree_map("[ab]?", inner, 0..3).prop_map(Value::Object),
        ]
    })
}

/// A document body: an object of valid values with no reserved top-level names.
pub fn any_document() -> impl Strategy<Value = BTreeMap<String, Value>> {
    btree_map("[a-z][a-zA-Z0-9_]{0,8}", any_value(), 0..6)
}

pub fn any_table_number() -> impl Strategy<Value = TableNumber> {
    prop_oneof![
        (1u32..=u32::MAX),
        (1u32..200),
        select(vec![
            127u32,
            128,
            16383,
            16384,
            10001,
            (1 << 21) - 1,
            1 << 21,
            (1 << 28) - 1,
            1 << 28,
            u32::MAX
        ]),
    ]
    .prop_filter_map("nonzero", |n| TableNumber::new(n).ok())
}

pub fn any_document_id() -> impl Strategy<Value = DocumentId> {
    (any_table_number(), any::<[u8; 16]>())
        .prop_map(|(table, bytes)| DocumentId::new(table, InternalId(bytes)))
}
