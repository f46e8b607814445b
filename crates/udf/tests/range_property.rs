//! Property: for random small documents and random valid index ranges, the documents whose
//! entry keys fall in the compiled `KeyRange` are exactly those a direct evaluation of the
//! range conditions selects (Convex's total order, a missing field below every value).

#![allow(clippy::unwrap_used)]

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use store::IndexNumber;
use txn::{IndexDef, Object};
use value::arbitrary::small_value;
use value::{DocumentId, InternalId, TableNumber, Value};

use udf::{FieldPath, IndexKind, RangeExpr, RangeOp, compile_range, is_empty_range};

fn table() -> TableNumber {
    TableNumber::new(10001).unwrap()
}

fn other_table() -> TableNumber {
    TableNumber::new(10002).unwrap()
}

/// The index shapes exercised: two fields, a nested field, `by_creation_time`, `by_id`.
fn shape(i: usize) -> Option<Vec<Vec<String>>> {
    let path = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
    match i {
        0 => Some(vec![path("a"), path("b")]),
        1 => Some(vec![path("x.y")]),
        2 => Some(vec![]),
        _ => None,
    }
}

/// Every key component of a shape, as field paths.
fn components(fields: &Option<Vec<Vec<String>>>) -> Vec<Vec<String>> {
    match fields {
        Some(fields) => fields
            .iter()
            .cloned()
            .chain([vec!["_creationTime".to_owned()], vec!["_id".to_owned()]])
            .collect(),
        None => vec![vec!["_id".to_owned()]],
    }
}

fn doc_strategy() -> impl Strategy<Value = Object> {
    let x = prop_oneof![
        option::of(small_value()).prop_map(|y| {
            let mut inner = Object::new();
            if let Some(y) = y {
                inner.insert("y".into(), y);
            }
            Value::Object(inner)
        }),
        small_value(),
    ];
    (
        option::of(small_value()),
        option::of(small_value()),
        option::of(x),
        prop::sample::select(vec![1.0, 2.0, 2.5, 3.0, -1.0]),
        any::<[u8; 16]>(),
        prop::sample::select(vec![0u8, 0x7F, 0xFF]),
    )
        .prop_map(|(a, b, x, ct, mut id, first)| {
            // Share leading bytes often, so id comparisons go past the first byte.
            id[0] = first;
            let mut doc = Object::new();
            for (name, v) in [("a", a), ("b", b), ("x", x)] {
                if let Some(v) = v {
                    doc.insert(name.into(), v);
                }
            }
            doc.insert("_creationTime".into(), Value::Float64(ct));
            let id = DocumentId::new(table(), InternalId(id));
            doc.insert("_id".into(), Value::String(id.encode()));
            doc
        })
}

/// How to pick one value for a range condition; resolved against the component and docs.
#[derive(Clone, Debug)]
struct Choice {
    from_doc: Option<Index>,
    small: Option<Value>,
    id_kind: u8,
    id_bytes: [u8; 16],
}

fn choice() -> impl Strategy<Value = Choice> {
    (
        option::of(any::<Index>()),
        option::of(small_value()),
        0u8..8,
        any::<[u8; 16]>(),
    )
        .prop_map(|(from_doc, small, id_kind, id_bytes)| Choice {
            from_doc,
            small,
            id_kind,
            id_bytes,
        })
}

#[derive(Clone, Debug)]
struct RangePlan {
    eq_count: Index,
    eqs: Vec<Choice>,
    lower: Option<(bool, Choice)>,
    upper: Option<(bool, Choice)>,
    shuffle_seed: u64,
}

fn range_plan() -> impl Strategy<Value = RangePlan> {
    (
        any::<Index>(),
        vec(choice(), 4),
        option::of((any::<bool>(), choice())),
        option::of((any::<bool>(), choice())),
        any::<u64>(),
    )
        .prop_map(|(eq_count, eqs, lower, upper, shuffle_seed)| RangePlan {
            eq_count,
            eqs,
            lower,
            upper,
            shuffle_seed,
        })
}

fn component_value<'d>(doc: &'d Object, component: &[String]) -> Option<&'d Value> {
    txn::lookup(doc, component)
}

fn resolve(choice: &Choice, component: &[String], docs: &[Object], is_eq: bool) -> Option<Value> {
    let picked = choice
        .from_doc
        .as_ref()
        .filter(|_| !docs.is_empty())
        .map(|ix| &docs[ix.index(docs.len())]);
    if component == ["_id"] {
        let id_of =
            |table, bytes| Value::String(DocumentId::new(table, InternalId(bytes)).encode());
        return match choice.id_kind {
            0 | 1 => match picked {
                Some(doc) => doc.get("_id").cloned(),
                None => Some(id_of(table(), choice.id_bytes)),
            },
            2 => Some(id_of(table(), choice.id_bytes)),
            3 => None,
            4 => Some(Value::Null),
            5 => Some(Value::Bytes(vec![])),
            6 => Some(Value::Float64(1.0)),
            // Not ids of the table: only meaningful (and accepted) in an equality.
            _ if is_eq => Some(id_of(other_table(), choice.id_bytes)),
            _ => Some(Value::Array(vec![])),
        };
    }
    match picked {
        Some(doc) => component_value(doc, component).cloned(),
        None => choice.small.clone(),
    }
}

fn build_range(plan: &RangePlan, comps: &[Vec<String>], docs: &[Object]) -> Vec<RangeExpr> {
    let k = plan.eq_count.index(comps.len() + 1);
    let mut range = Vec::new();
    for (component, c) in comps.iter().zip(&plan.eqs).take(k) {
        range.push(RangeExpr {
            op: RangeOp::Eq,
            field: FieldPath(component.clone()),
            value: resolve(c, component, docs, true),
        });
    }
    if let Some(component) = comps.get(k) {
        for (bound, ops) in [
            (&plan.lower, [RangeOp::Gt, RangeOp::Gte]),
            (&plan.upper, [RangeOp::Lt, RangeOp::Lte]),
        ] {
            if let Some((inclusive, c)) = bound {
                range.push(RangeExpr {
                    op: ops[usize::from(*inclusive)],
                    field: FieldPath(component.clone()),
                    value: resolve(c, component, docs, false),
                });
            }
        }
    }
    // The JSON may list the conditions in any order.
    let mut state = plan.shuffle_seed;
    for i in (1..range.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (state >> 33) as usize % (i + 1);
        range.swap(i, j);
    }
    range
}

fn entry_key(fields: &Option<Vec<Vec<String>>>, doc: &Object) -> Vec<u8> {
    let Some(Value::String(id)) = doc.get("_id") else {
        panic!("doc without _id");
    };
    let id = DocumentId::decode(id).unwrap();
    match fields {
        None => id.internal.0.to_vec(),
        Some(fields) => {
            let def = IndexDef {
                number: IndexNumber(2),
                name: "i".into(),
                fields: fields.clone(),
                state: txn::IndexState::Enabled,
            };
            let key = def.key_of(doc).unwrap();
            store::layout::index_entry(key.as_bytes(), &id.internal)
        }
    }
}

/// The range conditions evaluated directly on the document.
fn selects(range: &[RangeExpr], doc: &Object) -> bool {
    range.iter().all(|expr| {
        let have = component_value(doc, expr.field.segments());
        let want = expr.value.as_ref();
        match expr.op {
            RangeOp::Eq => have == want,
            RangeOp::Gt => have > want,
            RangeOp::Gte => have >= want,
            RangeOp::Lt => have < want,
            RangeOp::Lte => have <= want,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn compiled_ranges_select_exactly_the_matching_documents(
        docs in vec(doc_strategy(), 0..12),
        shape_index in 0usize..4,
        plan in range_plan(),
    ) {
        let fields = shape(shape_index);
        let comps = components(&fields);
        let range = build_range(&plan, &comps, &docs);
        let kind = match &fields {
            Some(f) => IndexKind::Fields(f),
            None => IndexKind::ById,
        };
        let compiled = compile_range(table(), kind, &range)
            .unwrap_or_else(|e| panic!("valid range {range:?} refused: {e}"));
        for doc in &docs {
            let entry = entry_key(&fields, doc);
            prop_assert_eq!(
                compiled.contains(&entry),
                selects(&range, doc),
                "range {:?} compiled to {:?}; doc {:?}",
                range,
                compiled,
                doc
            );
            if is_empty_range(&compiled) {
                prop_assert!(!compiled.contains(&entry));
            }
        }
    }
}
