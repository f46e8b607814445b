//! Query JSON: the `query` argument of the `1.0/queryStream` and `1.0/queryPage` syscalls
//! (protocol doc §4.7), parsed into typed structs.
//!
//! ```text
//! {"source": Source, "operators": [{"filter": Expr} | {"limit": n}, …]}
//! Source = {"type": "FullTableScan", "tableName": t, "order": "asc" | "desc" | null}
//!        | {"type": "IndexRange", "indexName": "t.i", "range": [R…], "order": …}
//!        | {"type": "Search", "indexName": "t.i", "filters": [F…]}
//! R = {"type": "Eq" | "Gt" | "Gte" | "Lt" | "Lte", "fieldPath": "a.b", "value": v}
//! F = {"type": "Search", "fieldPath": p, "value": string} | {"type": "Eq", "fieldPath": p, "value": v}
//! ```
//!
//! Range and filter values are convex-encoded JSON or `{"$undefined": null}` (a missing field).
//! Keys beyond the ones listed are ignored, as newer clients may add some.

use std::fmt;

use serde_json::Value as Json;
use store::Order;
use value::Value;

use crate::expr::{Expr, FieldPath};
use crate::parse::{self, At, ParseError};

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub source: Source,
    /// Applied in order to each row the source produces.
    pub operators: Vec<Operator>,
}

/// Where a query's rows come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Every document of the table, in `_creationTime` order.
    FullTableScan { table: String, order: Order },
    /// A range of an index.
    IndexRange {
        index: IndexName,
        range: Vec<RangeExpr>,
        order: Order,
    },
    /// A text search. Parsed so it can be reported precisely; running it is not supported.
    Search {
        index: IndexName,
        filters: Vec<SearchFilter>,
    },
}

impl Source {
    /// The table the source reads.
    pub fn table(&self) -> &str {
        match self {
            Source::FullTableScan { table, .. } => table,
            Source::IndexRange { index, .. } | Source::Search { index, .. } => &index.table,
        }
    }
}

/// `"<table>.<index>"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexName {
    pub table: String,
    pub index: String,
}

impl fmt::Display for IndexName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.table, self.index)
    }
}

/// One condition of an index range.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeExpr {
    pub op: RangeOp,
    pub field: FieldPath,
    /// `None` is `{"$undefined": null}`: the field is missing.
    pub value: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeOp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl RangeOp {
    /// The comparison as written in error messages.
    pub fn symbol(self) -> &'static str {
        match self {
            RangeOp::Eq => "==",
            RangeOp::Gt => ">",
            RangeOp::Gte => ">=",
            RangeOp::Lt => "<",
            RangeOp::Lte => "<=",
        }
    }
}

/// One filter of a text search.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchFilter {
    Search {
        field: FieldPath,
        text: String,
    },
    Eq {
        field: FieldPath,
        value: Option<Value>,
    },
}

/// A step applied to each row.
#[derive(Clone, Debug, PartialEq)]
pub enum Operator {
    /// Keep the row only if the expression is `true`.
    Filter(Expr),
    /// Let at most this many rows through; once they have passed, the query is done.
    Limit(usize),
}

impl Query {
    /// Parses query JSON text.
    pub fn from_json_str(text: &str) -> Result<Query, ParseError> {
        Query::from_json(&parse::parse_text(text)?)
    }

    /// Parses a query JSON value.
    pub fn from_json(json: &Json) -> Result<Query, ParseError> {
        let at = At::root("query");
        let map = parse::object(json, &at)?;
        let source_at = at.field("source");
        let source = parse_source(parse::required(map, "source", &at)?, &source_at)?;
        let ops_at = at.field("operators");
        let ops = parse::array(parse::required(map, "operators", &at)?, &ops_at)?;
        if ops.len() > knobs::QUERY_MAX_OPERATORS {
            return Err(ParseError::TooMany {
                at: ops_at.render(),
                what: "operators",
                count: ops.len(),
                max: knobs::QUERY_MAX_OPERATORS,
            });
        }
        let operators = ops
            .iter()
            .enumerate()
            .map(|(i, op)| parse_operator(op, &ops_at.index(i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Query { source, operators })
    }
}

fn parse_source(json: &Json, at: &At<'_>) -> Result<Source, ParseError> {
    let map = parse::object(json, at)?;
    let type_at = at.field("type");
    let kind = parse::string(parse::required(map, "type", at)?, &type_at)?;
    match kind {
        "FullTableScan" => {
            let table_at = at.field("tableName");
            let table = parse::string(parse::required(map, "tableName", at)?, &table_at)?;
            if table.is_empty() {
                return Err(table_at.invalid("the table name is empty"));
            }
            Ok(Source::FullTableScan {
                table: table.to_owned(),
                order: parse_order(map.get("order"), &at.field("order"))?,
            })
        }
        "IndexRange" => {
            let index = parse_index_name(map, at)?;
            let range_at = at.field("range");
            let items = parse::array(parse::required(map, "range", at)?, &range_at)?;
            let range = items
                .iter()
                .enumerate()
                .map(|(i, r)| parse_range_expr(r, &range_at.index(i)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Source::IndexRange {
                index,
                range,
                order: parse_order(map.get("order"), &at.field("order"))?,
            })
        }
        "Search" => {
            let index = parse_index_name(map, at)?;
            let filters_at = at.field("filters");
            let items = parse::array(parse::required(map, "filters", at)?, &filters_at)?;
            let filters = items
                .iter()
                .enumerate()
                .map(|(i, f)| parse_search_filter(f, &filters_at.index(i)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Source::Search { index, filters })
        }
        other => Err(ParseError::UnknownVariant {
            at: type_at.render(),
            what: "source type",
            found: other.to_owned(),
            expected: "FullTableScan, IndexRange or Search",
        }),
    }
}

/// `"asc"`, `"desc"`, `null` or absent (ascending).
fn parse_order(json: Option<&Json>, at: &At<'_>) -> Result<Order, ParseError> {
    match json {
        None | Some(Json::Null) => Ok(Order::Asc),
        Some(Json::String(s)) if s == "asc" => Ok(Order::Asc),
        Some(Json::String(s)) if s == "desc" => Ok(Order::Desc),
        Some(Json::String(s)) => Err(ParseError::UnknownVariant {
            at: at.render(),
            what: "order",
            found: s.clone(),
            expected: "\"asc\", \"desc\" or null",
        }),
        Some(other) => Err(at.wrong_type("\"asc\", \"desc\" or null", other)),
    }
}

fn parse_index_name(
    map: &serde_json::Map<String, Json>,
    at: &At<'_>,
) -> Result<IndexName, ParseError> {
    let name_at = at.field("indexName");
    let name = parse::string(parse::required(map, "indexName", at)?, &name_at)?;
    match name.split_once('.') {
        Some((table, index)) if !table.is_empty() && !index.is_empty() && !index.contains('.') => {
            Ok(IndexName {
                table: table.to_owned(),
                index: index.to_owned(),
            })
        }
        _ => Err(name_at.invalid(format!(
            "index name {name:?} is not of the form \"<table>.<index>\""
        ))),
    }
}

fn parse_field_path(
    map: &serde_json::Map<String, Json>,
    at: &At<'_>,
) -> Result<FieldPath, ParseError> {
    let path_at = at.field("fieldPath");
    let text = parse::string(parse::required(map, "fieldPath", at)?, &path_at)?;
    parse::field_path(text, &path_at).map(FieldPath)
}

fn parse_range_expr(json: &Json, at: &At<'_>) -> Result<RangeExpr, ParseError> {
    let map = parse::object(json, at)?;
    let type_at = at.field("type");
    let op = match parse::string(parse::required(map, "type", at)?, &type_at)? {
        "Eq" => RangeOp::Eq,
        "Gt" => RangeOp::Gt,
        "Gte" => RangeOp::Gte,
        "Lt" => RangeOp::Lt,
        "Lte" => RangeOp::Lte,
        other => {
            return Err(ParseError::UnknownVariant {
                at: type_at.render(),
                what: "range expression type",
                found: other.to_owned(),
                expected: "Eq, Gt, Gte, Lt or Lte",
            });
        }
    };
    let field = parse_field_path(map, at)?;
    let value = parse::maybe_value(parse::required(map, "value", at)?, &at.field("value"))?;
    Ok(RangeExpr { op, field, value })
}

fn parse_search_filter(json: &Json, at: &At<'_>) -> Result<SearchFilter, ParseError> {
    let map = parse::object(json, at)?;
    let type_at = at.field("type");
    let kind = parse::string(parse::required(map, "type", at)?, &type_at)?;
    let field = parse_field_path(map, at)?;
    let value_at = at.field("value");
    let value = parse::required(map, "value", at)?;
    match kind {
        "Search" => Ok(SearchFilter::Search {
            field,
            text: parse::string(value, &value_at)?.to_owned(),
        }),
        "Eq" => Ok(SearchFilter::Eq {
            field,
            value: parse::maybe_value(value, &value_at)?,
        }),
        other => Err(ParseError::UnknownVariant {
            at: type_at.render(),
            what: "search filter type",
            found: other.to_owned(),
            expected: "Search or Eq",
        }),
    }
}

fn parse_operator(json: &Json, at: &At<'_>) -> Result<Operator, ParseError> {
    let map = parse::object(json, at)?;
    let mut entries = map.iter();
    let (name, arg) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        _ => {
            return Err(at.invalid(format!(
                "an operator must be an object with exactly one key (filter or limit); found {} keys",
                map.len()
            )));
        }
    };
    let inner = at.field(name);
    match name.as_str() {
        "filter" => Ok(Operator::Filter(Expr::parse(arg, &inner)?)),
        "limit" => parse_limit(arg, &inner).map(Operator::Limit),
        other => Err(ParseError::UnknownVariant {
            at: at.render(),
            what: "operator",
            found: other.to_owned(),
            expected: "filter or limit",
        }),
    }
}

/// A limit is a non-negative integer. JavaScript sends numbers, so `10.0` is accepted; values
/// past `usize::MAX` saturate, which means "no limit" in practice.
fn parse_limit(json: &Json, at: &At<'_>) -> Result<usize, ParseError> {
    let Json::Number(n) = json else {
        return Err(at.wrong_type("a non-negative integer", json));
    };
    if let Some(u) = n.as_u64() {
        return Ok(usize::try_from(u).unwrap_or(usize::MAX));
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f.is_finite() => Ok(f as usize),
        _ => Err(at.invalid(format!("limit must be a non-negative integer, not {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(json: Json) -> Result<Query, ParseError> {
        Query::from_json(&json)
    }

    #[test]
    fn observed_index_range_query() {
        // `.withIndex("by_author", q => q.eq("author","a")).order("desc").take(10)`
        let q = Query::from_json_str(
            r#"{"source":{"type":"IndexRange","indexName":"messages.by_author","range":[{"type":"Eq","fieldPath":"author","value":"a"}],"order":"desc"},"operators":[{"limit":10}]}"#,
        )
        .unwrap();
        assert_eq!(
            q,
            Query {
                source: Source::IndexRange {
                    index: IndexName {
                        table: "messages".into(),
                        index: "by_author".into()
                    },
                    range: vec![RangeExpr {
                        op: RangeOp::Eq,
                        field: FieldPath(vec!["author".into()]),
                        value: Some(Value::String("a".into())),
                    }],
                    order: Order::Desc,
                },
                operators: vec![Operator::Limit(10)],
            }
        );
        assert_eq!(q.source.table(), "messages");
    }

    #[test]
    fn observed_filter_query() {
        let q = parse(json!({
            "source": {"type": "FullTableScan", "tableName": "messages", "order": null},
            "operators": [{"filter": {"$neq": [{"$field": "body"}, {"$literal": ""}]}}]
        }))
        .unwrap();
        assert_eq!(
            q.source,
            Source::FullTableScan {
                table: "messages".into(),
                order: Order::Asc
            }
        );
        assert!(matches!(q.operators.as_slice(), [Operator::Filter(_)]));
    }

    #[test]
    fn range_values_may_be_undefined_or_tagged() {
        let q = parse(json!({
            "source": {"type": "IndexRange", "indexName": "t.by_x", "range": [
                {"type": "Eq", "fieldPath": "a.b", "value": {"$undefined": null}},
                {"type": "Gte", "fieldPath": "x", "value": {"$integer": "AQAAAAAAAAA="}},
                {"type": "Lt", "fieldPath": "x", "value": 5},
            ]},
            "operators": []
        }))
        .unwrap();
        let Source::IndexRange { range, order, .. } = q.source else {
            panic!("not an index range");
        };
        assert_eq!(order, Order::Asc);
        assert_eq!(range[0].value, None);
        assert_eq!(range[0].field.to_string(), "a.b");
        assert_eq!(range[1].value, Some(Value::Int64(1)));
        assert_eq!(range[2].value, Some(Value::Float64(5.0)));
    }

    #[test]
    fn search_sources_parse() {
        let q = parse(json!({
            "source": {"type": "Search", "indexName": "messages.search_body", "filters": [
                {"type": "Search", "fieldPath": "body", "value": "hello"},
                {"type": "Eq", "fieldPath": "author", "value": {"$undefined": null}},
            ]},
            "operators": [{"limit": 5}]
        }))
        .unwrap();
        assert_eq!(
            q.source,
            Source::Search {
                index: IndexName {
                    table: "messages".into(),
                    index: "search_body".into()
                },
                filters: vec![
                    SearchFilter::Search {
                        field: FieldPath(vec!["body".into()]),
                        text: "hello".into()
                    },
                    SearchFilter::Eq {
                        field: FieldPath(vec!["author".into()]),
                        value: None
                    },
                ],
            }
        );
    }

    #[test]
    fn limits() {
        let limit = |n: Json| {
            parse(json!({
                "source": {"type": "FullTableScan", "tableName": "t"},
                "operators": [{"limit": n}]
            }))
        };
        assert_eq!(limit(json!(0)).unwrap().operators, vec![Operator::Limit(0)]);
        assert_eq!(
            limit(json!(10.0)).unwrap().operators,
            vec![Operator::Limit(10)]
        );
        for bad in [json!(-1), json!(1.5), json!("3"), json!(null), json!(-0.5)] {
            let err = limit(bad.clone()).unwrap_err();
            assert!(
                err.to_string().contains("query.operators[0].limit"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn operator_count_is_bounded() {
        let ops = vec![json!({"limit": 1}); knobs::QUERY_MAX_OPERATORS + 1];
        let err = parse(json!({
            "source": {"type": "FullTableScan", "tableName": "t"},
            "operators": ops
        }))
        .unwrap_err();
        assert!(
            matches!(err, ParseError::TooMany { count: 257, .. }),
            "{err}"
        );
        let ops = vec![json!({"limit": 1}); knobs::QUERY_MAX_OPERATORS];
        assert!(
            parse(json!({
                "source": {"type": "FullTableScan", "tableName": "t"},
                "operators": ops
            }))
            .is_ok()
        );
    }

    #[test]
    fn malformed_queries() {
        let scan = json!({"type": "FullTableScan", "tableName": "t"});
        let cases = [
            (json!([]), "query: expected an object, found an array"),
            (
                json!({"operators": []}),
                "query: missing the required field `source`",
            ),
            (
                json!({"source": scan}),
                "missing the required field `operators`",
            ),
            (
                json!({"source": scan, "operators": {}}),
                "query.operators: expected an array",
            ),
            (
                json!({"source": 1, "operators": []}),
                "query.source: expected an object",
            ),
            (
                json!({"source": {"tableName": "t"}, "operators": []}),
                "query.source: missing the required field `type`",
            ),
            (
                json!({"source": {"type": "Scan", "tableName": "t"}, "operators": []}),
                "unknown source type \"Scan\"",
            ),
            (
                json!({"source": {"type": "FullTableScan"}, "operators": []}),
                "missing the required field `tableName`",
            ),
            (
                json!({"source": {"type": "FullTableScan", "tableName": ""}, "operators": []}),
                "table name is empty",
            ),
            (
                json!({"source": {"type": "FullTableScan", "tableName": "t", "order": "up"}, "operators": []}),
                "unknown order \"up\"",
            ),
            (
                json!({"source": {"type": "FullTableScan", "tableName": "t", "order": 1}, "operators": []}),
                "query.source.order: expected \"asc\", \"desc\" or null, found a number",
            ),
            (
                json!({"source": {"type": "IndexRange", "indexName": "by_x", "range": []}, "operators": []}),
                "not of the form",
            ),
            (
                json!({"source": {"type": "IndexRange", "indexName": "t.a.b", "range": []}, "operators": []}),
                "not of the form",
            ),
            (
                json!({"source": {"type": "IndexRange", "indexName": "t.by_x"}, "operators": []}),
                "missing the required field `range`",
            ),
            (
                json!({"source": {"type": "IndexRange", "indexName": "t.by_x", "range": [
                    {"type": "Ne", "fieldPath": "x", "value": 1}]}, "operators": []}),
                "query.source.range[0].type: unknown range expression type \"Ne\"",
            ),
            (
                json!({"source": {"type": "IndexRange", "indexName": "t.by_x", "range": [
                    {"type": "Eq", "value": 1}]}, "operators": []}),
                "query.source.range[0]: missing the required field `fieldPath`",
            ),
            (
                json!({"source": {"type": "IndexRange", "indexName": "t.by_x", "range": [
                    {"type": "Eq", "fieldPath": "x"}]}, "operators": []}),
                "missing the required field `value`",
            ),
            (
                json!({"source": {"type": "IndexRange", "indexName": "t.by_x", "range": [
                    {"type": "Eq", "fieldPath": "x", "value": {"$bytes": 5}}]}, "operators": []}),
                "query.source.range[0].value: invalid value",
            ),
            (
                json!({"source": {"type": "Search", "indexName": "t.s", "filters": [
                    {"type": "Search", "fieldPath": "body", "value": 5}]}, "operators": []}),
                "query.source.filters[0].value: expected a string",
            ),
            (
                json!({"source": {"type": "Search", "indexName": "t.s", "filters": [
                    {"type": "Lt", "fieldPath": "body", "value": 5}]}, "operators": []}),
                "unknown search filter type \"Lt\"",
            ),
            (
                json!({"source": scan, "operators": [{"take": 1}]}),
                "unknown operator \"take\"",
            ),
            (
                json!({"source": scan, "operators": [{"limit": 1, "filter": {"$literal": true}}]}),
                "exactly one key",
            ),
            (
                json!({"source": scan, "operators": [{"filter": {"$eq": []}}]}),
                "query.operators[0].filter.$eq: $eq takes exactly 2 operands",
            ),
        ];
        for (json, want) in cases {
            let err = parse(json.clone()).unwrap_err();
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
        assert!(matches!(
            Query::from_json_str("{\"source\""),
            Err(ParseError::Syntax(_))
        ));
    }
}
