//! The parts of running Convex functions that are pure logic, independent of the JavaScript
//! engine and of how the catalog is stored:
//!
//! - [`query`]: the query JSON of `1.0/queryStream` / `1.0/queryPage` (protocol doc §4.7);
//! - [`expr`]: filter expressions, parsed and evaluated on documents (§4.8);
//! - [`range`]: index range expressions compiled to a `store::KeyRange` over entry keys (§4.8);
//! - [`stream`]: a query run over a `txn::Transaction`, one document at a time or page by page
//!   with opaque cursors, resolving table names through a caller-supplied [`TableResolver`];
//! - [`validator`]: argument and return validators (`exportArgs()` / `exportReturns()`, §4.3).
//!
//! Every malformed input is a typed error with a message that says where and what; nothing
//! here panics on user input. Limits (operators per query, expression and validator nesting,
//! scan batch sizes) are in `knobs`, under "Queries".

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod expr;
mod parse;
pub mod query;
pub mod range;
pub mod schema;
pub mod stream;
pub mod validator;

pub use expr::{ArithOp, CmpOp, EvalError, Expr, FieldPath};
pub use parse::ParseError;
pub use query::{IndexName, Operator, Query, RangeExpr, RangeOp, SearchFilter, Source};
pub use range::{IndexKind, RangeError, check_range, compile_range, is_empty_range};
pub use schema::{DocumentSchema, DocumentTypeCompiler, SchemaError, catalog_from_schema};
pub use stream::{
    BY_CREATION_TIME, BY_ID, Page, PreparedQuery, QueryError, QueryStream, TableResolver,
};
pub use validator::{FieldValidator, ValidationError, Validator, render_value};
