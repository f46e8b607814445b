//! Filter expressions (`{"filter": Expr}` operators): parsing from query JSON and evaluation
//! on a document.
//!
//! Semantics (protocol doc §4.8): a missing field is `None` ("undefined"), which sorts below
//! every value; comparisons use Convex's total order ([`Value`]'s `Ord`), and `$eq`/`$neq`
//! compare whole values; arithmetic works on two Int64 (checked: overflow and division by zero
//! are errors) or two Float64 (IEEE), never on a mix; `$and`/`$or`/`$not` need booleans and
//! `$and`/`$or` short-circuit, so an operand after the deciding one is never evaluated.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value as Json;
use txn::Object;
use value::Value;

use crate::parse::{self, At, ParseError};

/// A dotted field path, as used by filters and index ranges (`"a.b"` is `["a", "b"]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Follows the path through nested objects; `None` when a step is missing or not an object.
    pub fn lookup<'d>(&self, doc: &'d Object) -> Option<&'d Value> {
        txn::lookup(doc, &self.0)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl ArithOp {
    pub fn name(self) -> &'static str {
        match self {
            ArithOp::Add => "$add",
            ArithOp::Sub => "$sub",
            ArithOp::Mul => "$mul",
            ArithOp::Div => "$div",
            ArithOp::Mod => "$mod",
        }
    }
}

/// A filter expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `{"$field": "a.b"}`: the field's value, `None` if missing.
    Field(FieldPath),
    /// `{"$literal": v}`; `{"$literal": {"$undefined": null}}` is `None`.
    Literal(Option<Value>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// Evaluating a filter failed; the query fails with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("{op} needs two Int64 or two Float64 operands, found {left} and {right}")]
    ArithmeticTypes {
        op: &'static str,
        left: &'static str,
        right: &'static str,
    },
    #[error("Int64 overflow in {op}")]
    Overflow { op: &'static str },
    #[error("Int64 division by zero in {op}")]
    DivisionByZero { op: &'static str },
    #[error("$neg needs an Int64 or Float64 operand, found {found}")]
    NegType { found: &'static str },
    #[error("{op} needs boolean operands, found {found}")]
    NotBoolean {
        op: &'static str,
        found: &'static str,
    },
}

/// Convex's name for the type of a possibly missing value.
pub(crate) fn type_name(value: Option<&Value>) -> &'static str {
    value.map_or("undefined", Value::type_name)
}

const BINARY_OPS: &str = "$eq, $neq, $lt, $lte, $gt, $gte, $add, $sub, $mul, $div, $mod";
const ALL_OPS: &str = "$field, $literal, $eq, $neq, $lt, $lte, $gt, $gte, $add, $sub, $mul, $div, $mod, $neg, \
     $not, $and or $or";

impl Expr {
    /// Parses an expression; `at` names its position for error messages.
    pub(crate) fn parse(json: &Json, at: &At<'_>) -> Result<Expr, ParseError> {
        parse_expr(json, at, 0)
    }

    /// Evaluates on `doc`; `None` is a missing value.
    pub fn eval<'a>(&'a self, doc: &'a Object) -> Result<Option<Cow<'a, Value>>, EvalError> {
        Ok(match self {
            Expr::Field(path) => path.lookup(doc).map(Cow::Borrowed),
            Expr::Literal(v) => v.as_ref().map(Cow::Borrowed),
            Expr::Compare(op, l, r) => {
                let (l, r) = (l.eval(doc)?, r.eval(doc)?);
                // `Option`'s order puts `None` (missing) below every value, as Convex does.
                let result = match op {
                    CmpOp::Eq => l == r,
                    CmpOp::Neq => l != r,
                    CmpOp::Lt => l < r,
                    CmpOp::Lte => l <= r,
                    CmpOp::Gt => l > r,
                    CmpOp::Gte => l >= r,
                };
                Some(Cow::Owned(Value::Boolean(result)))
            }
            Expr::Arith(op, l, r) => {
                let (l, r) = (l.eval(doc)?, r.eval(doc)?);
                Some(Cow::Owned(arith(*op, l.as_deref(), r.as_deref())?))
            }
            Expr::Neg(x) => {
                let v = x.eval(doc)?;
                Some(Cow::Owned(match v.as_deref() {
                    Some(Value::Int64(i)) => {
                        Value::Int64(i.checked_neg().ok_or(EvalError::Overflow { op: "$neg" })?)
                    }
                    Some(Value::Float64(f)) => Value::Float64(-f),
                    other => {
                        return Err(EvalError::NegType {
                            found: type_name(other),
                        });
                    }
                }))
            }
            Expr::Not(x) => {
                let b = boolean("$not", x.eval(doc)?.as_deref())?;
                Some(Cow::Owned(Value::Boolean(!b)))
            }
            Expr::And(xs) => {
                for x in xs {
                    if !boolean("$and", x.eval(doc)?.as_deref())? {
                        return Ok(Some(Cow::Owned(Value::Boolean(false))));
                    }
                }
                Some(Cow::Owned(Value::Boolean(true)))
            }
            Expr::Or(xs) => {
                for x in xs {
                    if boolean("$or", x.eval(doc)?.as_deref())? {
                        return Ok(Some(Cow::Owned(Value::Boolean(true))));
                    }
                }
                Some(Cow::Owned(Value::Boolean(false)))
            }
        })
    }

    /// Whether `doc` passes this expression as a filter: only a result of exactly `true` keeps
    /// the document (any other value, missing included, drops it).
    pub fn matches(&self, doc: &Object) -> Result<bool, EvalError> {
        Ok(matches!(
            self.eval(doc)?.as_deref(),
            Some(Value::Boolean(true))
        ))
    }
}

fn boolean(op: &'static str, v: Option<&Value>) -> Result<bool, EvalError> {
    match v {
        Some(Value::Boolean(b)) => Ok(*b),
        other => Err(EvalError::NotBoolean {
            op,
            found: type_name(other),
        }),
    }
}

fn arith(op: ArithOp, l: Option<&Value>, r: Option<&Value>) -> Result<Value, EvalError> {
    let name = op.name();
    match (l, r) {
        (Some(Value::Int64(a)), Some(Value::Int64(b))) => {
            let (a, b) = (*a, *b);
            if b == 0 && matches!(op, ArithOp::Div | ArithOp::Mod) {
                return Err(EvalError::DivisionByZero { op: name });
            }
            // Division truncates toward zero and the remainder takes the dividend's sign, as
            // JavaScript's BigInt `/` and `%` do. `i64::MIN / -1` overflows.
            let result = match op {
                ArithOp::Add => a.checked_add(b),
                ArithOp::Sub => a.checked_sub(b),
                ArithOp::Mul => a.checked_mul(b),
                ArithOp::Div => a.checked_div(b),
                ArithOp::Mod => a.checked_rem(b),
            };
            result
                .map(Value::Int64)
                .ok_or(EvalError::Overflow { op: name })
        }
        (Some(Value::Float64(a)), Some(Value::Float64(b))) => {
            // Rust's `%` on floats is C's fmod, which is JavaScript's `%`.
            Ok(Value::Float64(match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                ArithOp::Mul => a * b,
                ArithOp::Div => a / b,
                ArithOp::Mod => a % b,
            }))
        }
        _ => Err(EvalError::ArithmeticTypes {
            op: name,
            left: type_name(l),
            right: type_name(r),
        }),
    }
}

fn parse_expr(json: &Json, at: &At<'_>, depth: usize) -> Result<Expr, ParseError> {
    if depth >= knobs::QUERY_EXPR_MAX_NESTING {
        return Err(ParseError::TooDeep {
            at: at.render(),
            max: knobs::QUERY_EXPR_MAX_NESTING,
        });
    }
    let map = parse::object(json, at)?;
    let mut entries = map.iter();
    let (op, arg) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        _ => {
            return Err(at.invalid(format!(
                "an expression must be an object with exactly one key ({ALL_OPS}); found {} keys",
                map.len()
            )));
        }
    };
    let inner = at.field(op);
    let sub = |json: &Json, at: &At<'_>| parse_expr(json, at, depth + 1).map(Box::new);
    Ok(match op.as_str() {
        "$field" => Expr::Field(FieldPath(parse::field_path(
            parse::string(arg, &inner)?,
            &inner,
        )?)),
        "$literal" => Expr::Literal(parse::maybe_value(arg, &inner)?),
        "$eq" | "$neq" | "$lt" | "$lte" | "$gt" | "$gte" | "$add" | "$sub" | "$mul" | "$div"
        | "$mod" => {
            let items = parse::array(arg, &inner)?;
            let [l, r] = items.as_slice() else {
                return Err(inner.invalid(format!(
                    "{op} takes exactly 2 operands, found {}",
                    items.len()
                )));
            };
            let l = sub(l, &inner.index(0))?;
            let r = sub(r, &inner.index(1))?;
            match op.as_str() {
                "$eq" => Expr::Compare(CmpOp::Eq, l, r),
                "$neq" => Expr::Compare(CmpOp::Neq, l, r),
                "$lt" => Expr::Compare(CmpOp::Lt, l, r),
                "$lte" => Expr::Compare(CmpOp::Lte, l, r),
                "$gt" => Expr::Compare(CmpOp::Gt, l, r),
                "$gte" => Expr::Compare(CmpOp::Gte, l, r),
                "$add" => Expr::Arith(ArithOp::Add, l, r),
                "$sub" => Expr::Arith(ArithOp::Sub, l, r),
                "$mul" => Expr::Arith(ArithOp::Mul, l, r),
                "$div" => Expr::Arith(ArithOp::Div, l, r),
                "$mod" => Expr::Arith(ArithOp::Mod, l, r),
                _ => {
                    return Err(ParseError::UnknownVariant {
                        at: at.render(),
                        what: "binary operator",
                        found: op.clone(),
                        expected: BINARY_OPS,
                    });
                }
            }
        }
        "$neg" => Expr::Neg(sub(arg, &inner)?),
        "$not" => Expr::Not(sub(arg, &inner)?),
        "$and" | "$or" => {
            let items = parse::array(arg, &inner)?;
            let exprs = items
                .iter()
                .enumerate()
                .map(|(i, x)| parse_expr(x, &inner.index(i), depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            if op == "$and" {
                Expr::And(exprs)
            } else {
                Expr::Or(exprs)
            }
        }
        other => {
            return Err(ParseError::UnknownVariant {
                at: at.render(),
                what: "expression operator",
                found: other.to_owned(),
                expected: ALL_OPS,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(json: Json) -> Result<Expr, ParseError> {
        Expr::parse(&json, &At::root("filter"))
    }

    fn eval(json: Json, doc: &Object) -> Result<Option<Value>, EvalError> {
        let expr = parse(json).unwrap();
        expr.eval(doc).map(|v| v.map(Cow::into_owned))
    }

    fn doc(fields: &[(&str, Value)]) -> Object {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn int(i: i64) -> Json {
        json!({"$literal": Value::Int64(i).to_json()})
    }

    fn float(f: f64) -> Json {
        json!({"$literal": Value::Float64(f).to_json()})
    }

    #[test]
    fn observed_neq_filter() {
        // `.filter(q => q.neq(q.field("body"), ""))`
        let expr = parse(json!({"$neq":[{"$field":"body"},{"$literal":""}]})).unwrap();
        assert_eq!(
            expr,
            Expr::Compare(
                CmpOp::Neq,
                Box::new(Expr::Field(FieldPath(vec!["body".into()]))),
                Box::new(Expr::Literal(Some(Value::String(String::new()))))
            )
        );
        assert!(expr.matches(&doc(&[("body", "hi".into())])).unwrap());
        assert!(!expr.matches(&doc(&[("body", "".into())])).unwrap());
        // A missing body is undefined, which is not "".
        assert!(expr.matches(&doc(&[])).unwrap());
    }

    #[test]
    fn comparisons_use_the_total_order_with_missing_lowest() {
        let d = doc(&[
            ("i", Value::Int64(5)),
            ("f", Value::Float64(1.0)),
            ("o", doc(&[("x", Value::Null)]).into()),
        ]);
        let t = Some(Value::Boolean(true));
        let f = Some(Value::Boolean(false));
        // Int64 sorts below every Float64, whatever the numbers.
        assert_eq!(
            eval(json!({"$lt":[{"$field":"i"},{"$field":"f"}]}), &d),
            Ok(t.clone())
        );
        // Missing is below null.
        assert_eq!(
            eval(json!({"$lt":[{"$field":"nope"},{"$literal":null}]}), &d),
            Ok(t.clone())
        );
        assert_eq!(
            eval(
                json!({"$eq":[{"$field":"nope"},{"$literal":{"$undefined":null}}]}),
                &d
            ),
            Ok(t.clone())
        );
        // Int64 5 and Float64 5 are different values.
        assert_eq!(
            eval(json!({"$eq":[{"$field":"i"}, float(5.0)]}), &d),
            Ok(f.clone())
        );
        assert_eq!(
            eval(json!({"$eq":[{"$field":"i"}, int(5)]}), &d),
            Ok(t.clone())
        );
        assert_eq!(
            eval(json!({"$gte":[{"$field":"i"}, int(5)]}), &d),
            Ok(t.clone())
        );
        assert_eq!(
            eval(json!({"$gt":[{"$field":"i"}, int(5)]}), &d),
            Ok(f.clone())
        );
        assert_eq!(eval(json!({"$lte":[{"$field":"i"}, int(4)]}), &d), Ok(f));
        // Nested paths and whole-object equality.
        assert_eq!(
            eval(json!({"$eq":[{"$field":"o.x"},{"$literal":null}]}), &d),
            Ok(t.clone())
        );
        assert_eq!(
            eval(json!({"$eq":[{"$field":"o"},{"$literal":{"x":null}}]}), &d),
            Ok(t)
        );
    }

    #[test]
    fn int64_arithmetic_is_checked() {
        let d = doc(&[]);
        let add = |a: i64, b: i64| eval(json!({"$add":[int(a), int(b)]}), &d);
        assert_eq!(add(2, 3), Ok(Some(Value::Int64(5))));
        assert_eq!(add(i64::MAX, 1), Err(EvalError::Overflow { op: "$add" }));
        assert_eq!(
            eval(json!({"$sub":[int(i64::MIN), int(1)]}), &d),
            Err(EvalError::Overflow { op: "$sub" })
        );
        assert_eq!(
            eval(json!({"$mul":[int(i64::MAX), int(2)]}), &d),
            Err(EvalError::Overflow { op: "$mul" })
        );
        assert_eq!(
            eval(json!({"$div":[int(i64::MIN), int(-1)]}), &d),
            Err(EvalError::Overflow { op: "$div" })
        );
        assert_eq!(
            eval(json!({"$mod":[int(i64::MIN), int(-1)]}), &d),
            Err(EvalError::Overflow { op: "$mod" })
        );
        assert_eq!(
            eval(json!({"$div":[int(1), int(0)]}), &d),
            Err(EvalError::DivisionByZero { op: "$div" })
        );
        assert_eq!(
            eval(json!({"$mod":[int(1), int(0)]}), &d),
            Err(EvalError::DivisionByZero { op: "$mod" })
        );
        assert_eq!(
            eval(json!({"$div":[int(-7), int(2)]}), &d),
            Ok(Some(Value::Int64(-3)))
        );
        assert_eq!(
            eval(json!({"$mod":[int(-7), int(2)]}), &d),
            Ok(Some(Value::Int64(-1)))
        );
        assert_eq!(
            eval(json!({"$neg": int(i64::MIN)}), &d),
            Err(EvalError::Overflow { op: "$neg" })
        );
        assert_eq!(
            eval(json!({"$neg": int(3)}), &d),
            Ok(Some(Value::Int64(-3)))
        );
    }

    #[test]
    fn float64_arithmetic_is_ieee() {
        let d = doc(&[]);
        assert_eq!(
            eval(json!({"$div":[float(1.0), float(0.0)]}), &d),
            Ok(Some(Value::Float64(f64::INFINITY)))
        );
        assert_eq!(
            eval(json!({"$mod":[float(-7.5), float(2.0)]}), &d),
            Ok(Some(Value::Float64(-1.5)))
        );
        assert_eq!(
            eval(json!({"$add":[float(0.5), float(0.25)]}), &d),
            Ok(Some(Value::Float64(0.75)))
        );
        assert_eq!(
            eval(json!({"$neg": float(0.0)}), &d),
            Ok(Some(Value::Float64(-0.0)))
        );
    }

    #[test]
    fn arithmetic_type_errors() {
        let d = doc(&[("s", "x".into())]);
        assert_eq!(
            eval(json!({"$add":[int(1), float(1.0)]}), &d),
            Err(EvalError::ArithmeticTypes {
                op: "$add",
                left: "int64",
                right: "float64"
            })
        );
        assert_eq!(
            eval(json!({"$mul":[{"$field":"nope"}, float(1.0)]}), &d),
            Err(EvalError::ArithmeticTypes {
                op: "$mul",
                left: "undefined",
                right: "float64"
            })
        );
        assert_eq!(
            eval(json!({"$neg": {"$field":"s"}}), &d),
            Err(EvalError::NegType { found: "string" })
        );
        let err = eval(json!({"$sub":[{"$field":"s"}, int(1)]}), &d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$sub needs two Int64 or two Float64 operands, found string and int64"
        );
    }

    #[test]
    fn boolean_operators_need_booleans_and_short_circuit() {
        let d = doc(&[("b", true.into()), ("n", Value::Int64(1))]);
        let t = json!({"$literal": true});
        let f = json!({"$literal": false});
        let bad = json!({"$field": "n"});
        assert_eq!(
            eval(json!({"$and":[t.clone(), bad.clone()]}), &d),
            Err(EvalError::NotBoolean {
                op: "$and",
                found: "int64"
            })
        );
        // Short-circuit: the bad operand after the deciding one is never evaluated.
        assert_eq!(
            eval(json!({"$and":[f.clone(), bad.clone()]}), &d),
            Ok(Some(Value::Boolean(false)))
        );
        assert_eq!(
            eval(json!({"$or":[t.clone(), bad.clone()]}), &d),
            Ok(Some(Value::Boolean(true)))
        );
        assert_eq!(
            eval(json!({"$or":[f.clone(), {"$field":"missing"}]}), &d),
            Err(EvalError::NotBoolean {
                op: "$or",
                found: "undefined"
            })
        );
        assert_eq!(
            eval(json!({"$not": bad}), &d),
            Err(EvalError::NotBoolean {
                op: "$not",
                found: "int64"
            })
        );
        assert_eq!(
            eval(json!({"$not": {"$field": "b"}}), &d),
            Ok(Some(Value::Boolean(false)))
        );
        assert_eq!(
            eval(json!({"$and": []}), &d),
            Ok(Some(Value::Boolean(true)))
        );
        assert_eq!(
            eval(json!({"$or": []}), &d),
            Ok(Some(Value::Boolean(false)))
        );
    }

    #[test]
    fn only_true_keeps_a_document() {
        let d = doc(&[("n", Value::Int64(1))]);
        for (json, keep) in [
            (json!({"$literal": true}), true),
            (json!({"$literal": false}), false),
            (json!({"$field": "n"}), false),
            (json!({"$field": "missing"}), false),
        ] {
            assert_eq!(parse(json).unwrap().matches(&d), Ok(keep));
        }
    }

    #[test]
    fn malformed_expressions() {
        let cases = [
            (json!(5), "expected an object"),
            (json!({}), "exactly one key"),
            (json!({"$field": "a", "$literal": 1}), "exactly one key"),
            (json!({"$fields": "a"}), "unknown expression operator"),
            (json!({"$field": 5}), "expected a string"),
            (json!({"$field": "a..b"}), "empty segment"),
            (json!({"$eq": [{"$field": "a"}]}), "exactly 2 operands"),
            (json!({"$eq": {"$field": "a"}}), "expected an array"),
            (json!({"$and": {"$literal": true}}), "expected an array"),
            (json!({"$literal": {"$set": []}}), "invalid value"),
            (json!({"$literal": {"$undefined": 0}}), "must hold null"),
            (json!({"$not": [1]}), "expected an object"),
        ];
        for (json, want) in cases {
            let err = parse(json.clone()).unwrap_err();
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
        let err = parse(json!({"$and":[{"$literal":true},{"$neg":{"$nope":1}}]})).unwrap_err();
        assert!(err.to_string().starts_with("filter.$and[1].$neg:"), "{err}");
    }

    #[test]
    fn nesting_is_bounded() {
        let mut json = json!({"$literal": true});
        for _ in 0..knobs::QUERY_EXPR_MAX_NESTING {
            json = json!({ "$not": json });
        }
        let err = parse(json).unwrap_err();
        assert!(matches!(err, ParseError::TooDeep { .. }), "{err}");
        let mut json = json!({"$literal": true});
        for _ in 0..knobs::QUERY_EXPR_MAX_NESTING - 1 {
            json = json!({ "$not": json });
        }
        assert!(parse(json).is_ok());
    }
}
