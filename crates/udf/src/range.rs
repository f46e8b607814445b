//! Index range compilation: a query's range expressions become one [`KeyRange`] over the entry
//! keys of an index (protocol doc §4.8).
//!
//! Entry keys (see `store::layout`):
//! - secondary index (including `by_creation_time`, which has no fields): the indexed fields'
//!   encodings (`value::key`, a missing field as the missing marker), then `_creationTime`'s,
//!   then the 16-byte internal id;
//! - `by_id` (the documents index): the 16-byte internal id alone.
//!
//! So the key's components are the index fields followed by `_creationTime` and `_id` (only
//! `_id` for `by_id`). A range is valid when its equality fields (each at most once) followed by
//! its inequality field (at most one lower and one upper bound, both on that one field) are
//! exactly the first components, in any order in the JSON. Bounds then translate bytewise:
//! with `p` the concatenated equality encodings and `e = p ++ enc(v)`, `> v` starts at
//! `succ(e)`, `>= v` at `e`, `< v` ends at `e`, `<= v` ends at `succ(e)`, and a missing bound
//! is `p`'s own range (`succ` is [`prefix_successor`]). This is sound because encodings are
//! order-preserving and prefix-free: all keys whose component equals `v` share the prefix `e`.
//!
//! `_id` values compare as strings in Convex, and the ids of one table are equal-length base32
//! strings whose order is the order of their internal ids; so a bound that is an id of the
//! table becomes its 16 internal-id bytes, a value whose type sorts below strings (missing,
//! null, numbers, booleans) is below every id, and bytes, arrays and objects are above every
//! id. An equality with anything else (another table's id, a non-id string) matches nothing;
//! an inequality with a string that is not an id of the table is refused, because where it
//! falls among the ids is not cheaply known.

use std::fmt;

use store::KeyRange;
use store::layout::prefix_successor;
use value::{DocumentId, IndexKey, KeyError, TableNumber, Value};

use crate::expr::FieldPath;
use crate::query::{RangeExpr, RangeOp};

/// The shape of the index a range is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind<'a> {
    /// `by_id`: the documents index, keyed by internal id alone.
    ById,
    /// A secondary index on these field paths (none for `by_creation_time`); its keys continue
    /// with `_creationTime` and the internal id.
    Fields(&'a [Vec<String>]),
}

const CREATION_TIME: &str = txn::CREATION_TIME;
const ID: &str = txn::ID;

impl IndexKind<'_> {
    /// Every component of the index's entry keys, in order, as field paths.
    fn components(&self) -> Vec<Vec<String>> {
        match self {
            IndexKind::ById => vec![vec![ID.to_owned()]],
            IndexKind::Fields(fields) => fields
                .iter()
                .cloned()
                .chain([vec![CREATION_TIME.to_owned()], vec![ID.to_owned()]])
                .collect(),
        }
    }
}

/// Why a range cannot be used on an index. Convex reports these as developer errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("the index range has more than one equality on `{field}`")]
    DuplicateEq { field: String },
    #[error("the index range already has a {which} bound; cannot add `{field}` {op} …")]
    DuplicateBound {
        which: &'static str,
        field: String,
        op: &'static str,
    },
    #[error(
        "upper and lower bounds in an index range can only be applied to a single field, but \
         this range bounds both `{first}` and `{second}`; consider using `filter` instead"
    )]
    BoundsOnMultipleFields { first: String, second: String },
    #[error("`{field}` has both an equality and a bound in the index range")]
    EqAndBound { field: String },
    #[error(
        "the index range compares `{field}`, but the index does not have this field \
         (index fields: {index_fields})"
    )]
    FieldNotInIndex { field: String, index_fields: String },
    #[error(
        "the index range does not use the index fields in order. Index fields: {index_fields}; \
         query fields: {query_fields}; first incorrect field: `{first_incorrect}`"
    )]
    NotAPrefix {
        index_fields: String,
        query_fields: String,
        first_incorrect: String,
    },
    #[error("a bound on `_id` must be an id of this table: {reason}")]
    InvalidIdBound { reason: String },
    #[error("an index range value is too large for an index key: {0}")]
    Key(#[from] KeyError),
}

/// One bound of the inequality.
#[derive(Clone, Copy, Debug)]
struct Bound<'r> {
    value: Option<&'r Value>,
    inclusive: bool,
}

/// A range checked against an index: equalities in key order, then the inequality.
#[derive(Debug)]
struct Plan<'r> {
    /// Equality values for components `0..eqs.len()`.
    eqs: Vec<Option<&'r Value>>,
    lower: Option<Bound<'r>>,
    upper: Option<Bound<'r>>,
}

struct List<'a>(&'a [Vec<String>]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, path) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&path.join("."))?;
        }
        f.write_str("]")
    }
}

/// Checks `range` against the index without encoding anything (for example when the table
/// does not exist yet, so ids cannot be interpreted).
pub fn check_range(index: IndexKind<'_>, range: &[RangeExpr]) -> Result<(), RangeError> {
    plan(&index.components(), range).map(|_| ())
}

/// Compiles `range` into the entry-key range of an index of `table` (see the module docs).
/// The result may be empty (`end <= start`); see [`is_empty_range`].
pub fn compile_range(
    table: TableNumber,
    index: IndexKind<'_>,
    range: &[RangeExpr],
) -> Result<KeyRange, RangeError> {
    let components = index.components();
    let plan = plan(&components, range)?;
    // Components before `id_at` are value-encoded; the one at `id_at` is the raw internal id.
    let id_at = components.len() - 1;

    let value_eqs = plan.eqs.len().min(id_at);
    let mut prefix = IndexKey::from_parts(&plan.eqs[..value_eqs])?.into_bytes();
    if plan.eqs.len() > id_at {
        match id_position(table, plan.eqs[id_at]) {
            IdPosition::Exact(internal) => prefix.extend_from_slice(&internal),
            // No document's `_id` equals the value.
            _ => return Ok(empty_at(prefix)),
        }
    }
    if plan.lower.is_none() && plan.upper.is_none() {
        return Ok(KeyRange::prefix(&prefix));
    }

    let ineq_at = plan.eqs.len();
    // The key bytes of "component `ineq_at` = bound value", or where the bound falls among ids.
    let bound_key = |b: Bound<'_>| -> Result<BoundKey, RangeError> {
        if ineq_at < id_at {
            let mut parts = plan.eqs.clone();
            parts.push(b.value);
            Ok(BoundKey::Key(IndexKey::from_parts(&parts)?.into_bytes()))
        } else {
            match id_position(table, b.value) {
                IdPosition::Exact(internal) => {
                    let mut key = prefix.clone();
                    key.extend_from_slice(&internal);
                    Ok(BoundKey::Key(key))
                }
                IdPosition::BelowAll => Ok(BoundKey::BelowAll),
                IdPosition::AboveAll => Ok(BoundKey::AboveAll),
                IdPosition::Unmatchable(reason) => Err(RangeError::InvalidIdBound { reason }),
            }
        }
    };

    let start = match plan.lower {
        None => Some(prefix.clone()),
        Some(b) => match bound_key(b)? {
            BoundKey::Key(key) if b.inclusive => Some(key),
            BoundKey::Key(key) => prefix_successor(&key),
            BoundKey::BelowAll => Some(prefix.clone()),
            BoundKey::AboveAll => None,
        },
    };
    // `None` start: nothing can be above the lower bound.
    let Some(start) = start else {
        return Ok(empty_at(prefix.clone()));
    };
    let end = match plan.upper {
        None => prefix_successor(&prefix),
        Some(b) => match bound_key(b)? {
            BoundKey::Key(key) if b.inclusive => prefix_successor(&key),
            BoundKey::Key(key) => Some(key),
            BoundKey::BelowAll => return Ok(empty_at(prefix.clone())),
            BoundKey::AboveAll => prefix_successor(&prefix),
        },
    };
    Ok(KeyRange { start, end })
}

/// Whether no entry key can fall in `range`.
pub fn is_empty_range(range: &KeyRange) -> bool {
    range
        .end
        .as_deref()
        .is_some_and(|end| end <= range.start.as_slice())
}

/// An empty range (start = end), placed at `at` so that it still reads as "this index, here".
fn empty_at(at: Vec<u8>) -> KeyRange {
    KeyRange {
        end: Some(at.clone()),
        start: at,
    }
}

enum BoundKey {
    Key(Vec<u8>),
    BelowAll,
    AboveAll,
}

/// Where a value falls among the `_id`s of `table`'s documents.
enum IdPosition {
    /// It is the id with these internal-id bytes.
    Exact([u8; 16]),
    BelowAll,
    AboveAll,
    /// Not an id of the table; the reason says what it is.
    Unmatchable(String),
}

fn id_position(table: TableNumber, value: Option<&Value>) -> IdPosition {
    match value {
        None | Some(Value::Null | Value::Int64(_) | Value::Float64(_) | Value::Boolean(_)) => {
            IdPosition::BelowAll
        }
        Some(Value::Bytes(_) | Value::Array(_) | Value::Object(_)) => IdPosition::AboveAll,
        Some(Value::String(s)) => match DocumentId::decode(s) {
            Ok(id) if id.table == table => IdPosition::Exact(id.internal.0),
            Ok(id) => IdPosition::Unmatchable(format!(
                "{s:?} is an id of table number {}, not {table}",
                id.table
            )),
            Err(e) => IdPosition::Unmatchable(format!("{s:?} is not a document id: {e}")),
        },
    }
}

/// Validates `range` against the key components and orders its equalities by position.
fn plan<'r>(components: &[Vec<String>], range: &'r [RangeExpr]) -> Result<Plan<'r>, RangeError> {
    // Split into equalities and one inequality field, rejecting duplicates.
    let mut eqs: Vec<(&FieldPath, Option<&Value>)> = Vec::new();
    let mut ineq_field: Option<&FieldPath> = None;
    let mut lower: Option<Bound<'_>> = None;
    let mut upper: Option<Bound<'_>> = None;
    for expr in range {
        let (slot, which, inclusive) = match expr.op {
            RangeOp::Eq => {
                if eqs.iter().any(|(f, _)| *f == &expr.field) {
                    return Err(RangeError::DuplicateEq {
                        field: expr.field.to_string(),
                    });
                }
                eqs.push((&expr.field, expr.value.as_ref()));
                continue;
            }
            RangeOp::Gt => (&mut lower, "lower", false),
            RangeOp::Gte => (&mut lower, "lower", true),
            RangeOp::Lt => (&mut upper, "upper", false),
            RangeOp::Lte => (&mut upper, "upper", true),
        };
        if slot.is_some() {
            return Err(RangeError::DuplicateBound {
                which,
                field: expr.field.to_string(),
                op: expr.op.symbol(),
            });
        }
        if let Some(first) = ineq_field
            && first != &expr.field
        {
            return Err(RangeError::BoundsOnMultipleFields {
                first: first.to_string(),
                second: expr.field.to_string(),
            });
        }
        ineq_field = Some(&expr.field);
        *slot = Some(Bound {
            value: expr.value.as_ref(),
            inclusive,
        });
    }
    if let Some(field) = ineq_field
        && eqs.iter().any(|(f, _)| *f == field)
    {
        return Err(RangeError::EqAndBound {
            field: field.to_string(),
        });
    }

    // Position of each used field among the components (its first occurrence).
    let position = |field: &FieldPath| {
        components
            .iter()
            .position(|c| c.as_slice() == field.segments())
            .ok_or_else(|| RangeError::FieldNotInIndex {
                field: field.to_string(),
                index_fields: List(components).to_string(),
            })
    };
    let mut ranked = eqs
        .into_iter()
        .map(|(field, value)| Ok((position(field)?, field, value)))
        .collect::<Result<Vec<_>, RangeError>>()?;
    ranked.sort_by_key(|(rank, _, _)| *rank);
    let ineq_rank = ineq_field.map(position).transpose()?;

    // The used fields, equalities first, must be exactly the first components.
    let used: Vec<(usize, &FieldPath)> = ranked
        .iter()
        .map(|(rank, field, _)| (*rank, *field))
        .chain(ineq_field.zip(ineq_rank).map(|(f, r)| (r, f)))
        .collect();
    for (i, (rank, field)) in used.iter().enumerate() {
        if *rank != i {
            let query_fields: Vec<Vec<String>> =
                used.iter().map(|(_, f)| f.segments().to_vec()).collect();
            return Err(RangeError::NotAPrefix {
                index_fields: List(components).to_string(),
                query_fields: List(&query_fields).to_string(),
                first_incorrect: field.to_string(),
            });
        }
    }

    Ok(Plan {
        eqs: ranked.into_iter().map(|(_, _, v)| v).collect(),
        lower,
        upper,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use value::InternalId;

    fn table() -> TableNumber {
        TableNumber::new(10001).unwrap()
    }

    fn expr(op: RangeOp, field: &str, value: Option<Value>) -> RangeExpr {
        RangeExpr {
            op,
            field: FieldPath(field.split('.').map(str::to_owned).collect()),
            value,
        }
    }

    fn eq(field: &str, v: impl Into<Value>) -> RangeExpr {
        expr(RangeOp::Eq, field, Some(v.into()))
    }

    fn fields(names: &[&str]) -> Vec<Vec<String>> {
        names
            .iter()
            .map(|n| n.split('.').map(str::to_owned).collect())
            .collect()
    }

    fn enc(values: &[Option<Value>]) -> Vec<u8> {
        let parts: Vec<Option<&Value>> = values.iter().map(Option::as_ref).collect();
        IndexKey::from_parts(&parts).unwrap().into_bytes()
    }

    #[test]
    fn observed_eq_on_author() {
        let f = fields(&["author"]);
        let r = compile_range(table(), IndexKind::Fields(&f), &[eq("author", "a")]).unwrap();
        assert_eq!(r, KeyRange::prefix(&enc(&[Some("a".into())])));
    }

    #[test]
    fn bounds_translate_bytewise() {
        let f = fields(&["a", "b"]);
        let kind = IndexKind::Fields(&f);
        let one = Value::Int64(1);
        let five = Value::Int64(5);
        let p = enc(&[Some(one.clone())]);
        let p5 = enc(&[Some(one.clone()), Some(five.clone())]);
        let compile = |range: &[RangeExpr]| compile_range(table(), kind, range).unwrap();
        let b = |op| expr(op, "b", Some(five.clone()));
        assert_eq!(
            compile(&[eq("a", one.clone()), b(RangeOp::Gt)]),
            KeyRange {
                start: prefix_successor(&p5).unwrap(),
                end: prefix_successor(&p)
            }
        );
        assert_eq!(
            compile(&[b(RangeOp::Gte), eq("a", one.clone())]),
            KeyRange {
                start: p5.clone(),
                end: prefix_successor(&p)
            }
        );
        assert_eq!(
            compile(&[eq("a", one.clone()), b(RangeOp::Lt)]),
            KeyRange {
                start: p.clone(),
                end: Some(p5.clone())
            }
        );
        assert_eq!(
            compile(&[eq("a", one.clone()), b(RangeOp::Lte)]),
            KeyRange {
                start: p.clone(),
                end: prefix_successor(&p5)
            }
        );
        // No range at all: the whole index.
        assert_eq!(compile(&[]), KeyRange::all());
        // A missing marker as a value.
        let missing = expr(RangeOp::Eq, "a", None);
        assert_eq!(compile(&[missing]), KeyRange::prefix(&enc(&[None])));
    }

    #[test]
    fn creation_time_and_id_are_implicit_components() {
        let f = fields(&["a"]);
        let id = DocumentId::new(table(), InternalId([7; 16]));
        let range = [
            eq("a", "x"),
            eq("_creationTime", 5.0),
            eq("_id", id.encode()),
        ];
        let r = compile_range(table(), IndexKind::Fields(&f), &range).unwrap();
        let mut entry = enc(&[Some("x".into()), Some(Value::Float64(5.0))]);
        entry.extend_from_slice(&[7; 16]);
        assert_eq!(r, KeyRange::prefix(&entry));
        assert!(r.contains(&entry));

        // by_creation_time has no fields of its own.
        let none: Vec<Vec<String>> = vec![];
        let r = compile_range(
            table(),
            IndexKind::Fields(&none),
            &[expr(
                RangeOp::Gt,
                "_creationTime",
                Some(Value::Float64(5.0)),
            )],
        )
        .unwrap();
        assert_eq!(
            r.start,
            prefix_successor(&enc(&[Some(Value::Float64(5.0))])).unwrap()
        );
        assert_eq!(r.end, None);

        // by_id: only `_id`.
        let r = compile_range(table(), IndexKind::ById, &[eq("_id", id.encode())]).unwrap();
        assert_eq!(r, KeyRange::prefix(&[7; 16]));
        let err = compile_range(table(), IndexKind::ById, &[eq("_creationTime", 1.0)]).unwrap_err();
        assert!(matches!(err, RangeError::FieldNotInIndex { .. }), "{err}");
    }

    #[test]
    fn id_values_that_are_not_ids_of_the_table() {
        let other = DocumentId::new(TableNumber::new(10002).unwrap(), InternalId([7; 16]));
        // Equality with a non-id matches nothing.
        for v in [
            Value::from("nope"),
            Value::from(other.encode()),
            Value::Null,
        ] {
            let r = compile_range(table(), IndexKind::ById, &[eq("_id", v)]).unwrap();
            assert!(is_empty_range(&r), "{r:?}");
        }
        // Bounds below or above every id.
        let gt_null = expr(RangeOp::Gt, "_id", Some(Value::Null));
        let r = compile_range(table(), IndexKind::ById, &[gt_null]).unwrap();
        assert_eq!(r, KeyRange::all());
        let lt_null = expr(RangeOp::Lt, "_id", Some(Value::Null));
        assert!(is_empty_range(
            &compile_range(table(), IndexKind::ById, &[lt_null]).unwrap()
        ));
        let gt_bytes = expr(RangeOp::Gt, "_id", Some(Value::Bytes(vec![])));
        assert!(is_empty_range(
            &compile_range(table(), IndexKind::ById, &[gt_bytes]).unwrap()
        ));
        let lt_bytes = expr(RangeOp::Lte, "_id", Some(Value::Bytes(vec![])));
        assert_eq!(
            compile_range(table(), IndexKind::ById, &[lt_bytes]).unwrap(),
            KeyRange::all()
        );
        // A bound with a string that is not an id of the table is refused.
        for v in [Value::from("nope"), Value::from(other.encode())] {
            let err = compile_range(
                table(),
                IndexKind::ById,
                &[expr(RangeOp::Gte, "_id", Some(v))],
            )
            .unwrap_err();
            assert!(matches!(err, RangeError::InvalidIdBound { .. }), "{err}");
        }
    }

    #[test]
    fn invalid_combinations() {
        let f = fields(&["a", "b", "c"]);
        let kind = IndexKind::Fields(&f);
        let v = || Some(Value::Int64(1));
        let cases: Vec<(Vec<RangeExpr>, &str)> = vec![
            (
                vec![eq("a", 1i64), eq("a", 2i64)],
                "more than one equality on `a`",
            ),
            (
                vec![expr(RangeOp::Gt, "a", v()), expr(RangeOp::Gte, "a", v())],
                "already has a lower bound; cannot add `a` >=",
            ),
            (
                vec![expr(RangeOp::Lt, "a", v()), expr(RangeOp::Lte, "a", v())],
                "already has a upper bound; cannot add `a` <=",
            ),
            (
                vec![expr(RangeOp::Gt, "a", v()), expr(RangeOp::Lt, "b", v())],
                "bounds both `a` and `b`",
            ),
            (
                vec![eq("a", 1i64), expr(RangeOp::Lt, "a", v())],
                "`a` has both an equality and a bound",
            ),
            (
                vec![eq("z", 1i64)],
                "compares `z`, but the index does not have this field (index fields: [a, b, c, _creationTime, _id])",
            ),
            (
                vec![eq("b", 1i64)],
                "Index fields: [a, b, c, _creationTime, _id]; query fields: [b]; first incorrect field: `b`",
            ),
            (
                vec![eq("a", 1i64), eq("c", 1i64)],
                "first incorrect field: `c`",
            ),
            (
                vec![eq("a", 1i64), expr(RangeOp::Gt, "c", v())],
                "first incorrect field: `c`",
            ),
            (
                vec![expr(RangeOp::Gt, "b", v())],
                "first incorrect field: `b`",
            ),
            (
                vec![eq("a", 1i64), eq("b", 1i64), eq("c", 1i64), eq("_id", "x")],
                "first incorrect field: `_id`",
            ),
        ];
        for (range, want) in cases {
            let err = compile_range(table(), kind, &range).unwrap_err();
            assert!(err.to_string().contains(want), "{range:?}: {err}");
            // The check without encoding agrees.
            assert_eq!(check_range(kind, &range), Err(err));
        }
        // Eq fields may come in any order in the JSON.
        assert!(compile_range(table(), kind, &[eq("b", 1i64), eq("a", 1i64)]).is_ok());
        assert!(
            compile_range(
                table(),
                kind,
                &[expr(RangeOp::Lt, "c", v()), eq("b", 1i64), eq("a", 1i64)]
            )
            .is_ok()
        );
    }

    #[test]
    fn oversized_bounds_are_errors() {
        let f = fields(&["a"]);
        let big = Value::Bytes(vec![1; knobs::INDEX_KEY_MAX_BYTES]);
        let err =
            compile_range(table(), IndexKind::Fields(&f), &[eq("a", big.clone())]).unwrap_err();
        assert!(matches!(err, RangeError::Key(_)), "{err}");
        let err = compile_range(
            table(),
            IndexKind::Fields(&f),
            &[expr(RangeOp::Lt, "a", Some(big))],
        )
        .unwrap_err();
        assert!(matches!(err, RangeError::Key(_)), "{err}");
    }

    #[test]
    fn inverted_ranges_are_empty() {
        let f = fields(&["a"]);
        let r = compile_range(
            table(),
            IndexKind::Fields(&f),
            &[
                expr(RangeOp::Gt, "a", Some(Value::Int64(5))),
                expr(RangeOp::Lt, "a", Some(Value::Int64(3))),
            ],
        )
        .unwrap();
        assert!(is_empty_range(&r));
        assert!(!is_empty_range(&KeyRange::all()));
    }
}
