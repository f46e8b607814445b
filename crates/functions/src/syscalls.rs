//! The syscalls of queries and mutations (protocol doc §4.6) over one [`Transaction`].
//!
//! Every answer is computed at once (the store is in memory or a local LSM), so async
//! syscalls always answer [`AsyncSyscallReply::Ready`].
//!
//! Errors are of two sorts:
//! - **Catchable**: a bad id, a missing document, a malformed query, a write in a query, an
//!   invalid value. They become a JS exception the function may catch; the transaction is
//!   unchanged by the failed call (each `Transaction` write either happens whole or not at all).
//! - **Fatal**: the store failed, a stored document is corrupt, or a transaction limit was
//!   exceeded. The handler records the first one; from then on every syscall fails with it, and
//!   the runner fails the function whatever the JS code did with the exception. A transaction
//!   that may have missed a read or a write is never committed or reported as a result.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use js::{AsyncSyscallReply, FunctionKind, NestedCall, NestedSettle, SyscallError, SyscallHandler};
use serde_json::{Value as Json, json};
use txn::{Catalog, Object, Patch, Savepoint, TableDef, Transaction, TxnError};
use udf::{PreparedQuery, Query, QueryError, QueryStream, Validator};
use value::{DocumentId, Value};

use crate::runner::{Analysis, parse_function_path};

/// Whether the function may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// A query: reads only; every write syscall fails.
    ReadOnly,
    /// A mutation: reads and writes.
    ReadWrite,
}

/// A syscall failure that ends the function whatever its code does (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatalSyscallError {
    pub message: String,
    /// `true`: the database failed (a system error); `false`: the function exceeded a limit
    /// (a developer error).
    pub system: bool,
}

/// Answers a query's or mutation's syscalls from one transaction. Install it in a
/// `js::CallRequest`; take the transaction back with [`DbSyscalls::into_parts`].
pub struct DbSyscalls {
    txn: Transaction,
    mode: AccessMode,
    identity: Option<Json>,
    streams: BTreeMap<u32, QueryStream>,
    next_query_id: u32,
    paginated: bool,
    fatal: Option<FatalSyscallError>,
    /// The functions of the running code version, for `1.0/runUdf` (`None`: not available).
    functions: Option<Arc<Analysis>>,
    /// Nested calls in progress (`ctx.runQuery`/`ctx.runMutation`), oldest first.
    nested: Vec<NestedFrame>,
    next_frame_id: u64,
}

/// One nested call in progress.
struct NestedFrame {
    id: u64,
    kind: FunctionKind,
    path: String,
    returns: Option<Validator>,
    /// The writes before a nested mutation started, restored if it fails.
    savepoint: Option<Savepoint>,
}

/// An error of one syscall: catchable, or fatal (recorded by the handler).
pub(crate) enum Failure {
    Catchable(String),
    Fatal(FatalSyscallError),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Catchable(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Catchable(message.to_owned())
    }
}

type Answer = Result<Json, Failure>;

/// Classifies a transaction error: the database's own failures and exceeded limits are
/// fatal, everything else is the function's mistake and catchable.
fn txn_failure(error: TxnError) -> Failure {
    match error {
        TxnError::Store(_)
        | TxnError::Corrupt(_)
        | TxnError::UnknownTable(_)
        | TxnError::UnknownIndex { .. } => Failure::Fatal(FatalSyscallError {
            message: format!("database error: {error}"),
            system: true,
        }),
        TxnError::Limit(_) => Failure::Fatal(FatalSyscallError {
            message: error.to_string(),
            system: false,
        }),
        TxnError::NotFound(_)
        | TxnError::InvalidDocument(_)
        | TxnError::SchemaViolation { .. }
        | TxnError::Key(_)
        | TxnError::Catalog(_)
        | TxnError::SystemField(_) => Failure::Catchable(error.to_string()),
    }
}

fn query_failure(error: QueryError) -> Failure {
    match error {
        QueryError::Transaction(e) => txn_failure(e),
        other => Failure::Catchable(other.to_string()),
    }
}

/// The arguments of a syscall, as a JSON object.
pub(crate) struct Args<'a> {
    op: &'a str,
    fields: serde_json::Map<String, Json>,
}

impl<'a> Args<'a> {
    pub(crate) fn parse(op: &'a str, args_json: &str) -> Result<Self, Failure> {
        match serde_json::from_str::<Json>(args_json) {
            Ok(Json::Object(fields)) => Ok(Args { op, fields }),
            Ok(_) => Err(format!("Invalid arguments for {op}: expected a JSON object").into()),
            Err(e) => Err(format!("Invalid arguments for {op}: {e}").into()),
        }
    }

    fn get(&self, name: &str) -> Option<&Json> {
        self.fields.get(name).filter(|v| !v.is_null())
    }

    fn required(&self, name: &str) -> Result<&Json, Failure> {
        self.get(name).ok_or_else(|| {
            Failure::Catchable(format!(
                "Invalid arguments for {}: missing `{name}`",
                self.op
            ))
        })
    }

    pub(crate) fn str(&self, name: &str) -> Result<&str, Failure> {
        self.required(name)?.as_str().ok_or_else(|| {
            Failure::Catchable(format!(
                "Invalid arguments for {}: `{name}` must be a string",
                self.op
            ))
        })
    }

    fn optional_str(&self, name: &str) -> Result<Option<&str>, Failure> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!(
                "Invalid arguments for {}: `{name}` must be a string or null",
                self.op
            )
            .into()),
        }
    }

    fn bool(&self, name: &str) -> bool {
        self.get(name).and_then(Json::as_bool).unwrap_or(false)
    }

    fn query_id(&self) -> Result<u32, Failure> {
        self.required("queryId")?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                Failure::Catchable(format!(
                    "Invalid arguments for {}: `queryId` must be a query id",
                    self.op
                ))
            })
    }
}

fn document_json(doc: Object) -> Json {
    Value::Object(doc).to_json()
}

/// Decodes the fields of a document written by `insert` or `replace`.
fn object_value(op: &str, json: &Json) -> Result<Object, Failure> {
    match Value::from_json(json) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(format!(
            "Invalid arguments for {op}: the document must be an object, not {}",
            other.type_name()
        )
        .into()),
        Err(e) => Err(format!("Invalid arguments for {op}: {e}").into()),
    }
}

/// Decodes a `shallowMerge` value: a top-level `{"$undefined": null}` removes the field; every
/// other value (nested objects included) replaces the field whole.
fn patch_value(op: &str, json: &Json) -> Result<Patch, Failure> {
    let Json::Object(fields) = json else {
        return Err(format!("Invalid arguments for {op}: the patch must be an object").into());
    };
    let mut patch = Patch::new();
    for (name, field) in fields {
        let is_undefined = matches!(field, Json::Object(o) if o.len() == 1 && o.get("$undefined") == Some(&Json::Null));
        let value = if is_undefined {
            None
        } else {
            Some(
                Value::from_json(field)
                    .map_err(|e| format!("Invalid arguments for {op}: field `{name}`: {e}"))?,
            )
        };
        patch.insert(name.clone(), value);
    }
    Ok(patch)
}

impl DbSyscalls {
    /// A handler over `txn`; its tables are those of the transaction's catalog.
    pub fn new(txn: Transaction, mode: AccessMode) -> Self {
        DbSyscalls {
            txn,
            mode,
            identity: None,
            streams: BTreeMap::new(),
            next_query_id: 0,
            paginated: false,
            fatal: None,
            functions: None,
            nested: Vec::new(),
            next_frame_id: 0,
        }
    }

    /// Enables `1.0/runUdf` over the functions of the code version being run.
    pub(crate) fn with_functions(mut self, functions: Arc<Analysis>) -> Self {
        self.functions = Some(functions);
        self
    }

    /// What `1.0/getUserIdentity` answers (`null` without one).
    pub fn with_identity(mut self, identity: Option<Json>) -> Self {
        self.identity = identity;
        self
    }

    pub fn transaction(&self) -> &Transaction {
        &self.txn
    }

    /// The first fatal error any syscall hit, if one did.
    pub fn fatal_error(&self) -> Option<&FatalSyscallError> {
        self.fatal.as_ref()
    }

    /// The transaction (with every write the function made) and the fatal error, if any.
    pub fn into_parts(self) -> (Transaction, Option<FatalSyscallError>) {
        (self.txn, self.fatal)
    }

    fn table(&self, name: &str) -> Option<&TableDef> {
        self.txn.catalog().table_named(name)
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.txn.catalog().clone()
    }

    /// Runs one syscall, turning its failure into the JS-visible error and recording fatal
    /// ones.
    fn answer(
        &mut self,
        op: &str,
        run: impl FnOnce(&mut Self) -> Answer,
    ) -> Result<String, SyscallError> {
        if let Some(fatal) = &self.fatal {
            return Err(SyscallError::new(fatal.message.clone()));
        }
        match run(self) {
            Ok(json) => Ok(json.to_string()),
            Err(Failure::Catchable(message)) => Err(SyscallError::new(message)),
            Err(Failure::Fatal(fatal)) => {
                let message = format!("{op} failed: {}", fatal.message);
                self.fatal = Some(FatalSyscallError {
                    message: message.clone(),
                    system: fatal.system,
                });
                Err(SyscallError::new(message))
            }
        }
    }

    /// Records a failure the way [`Self::answer`] does, for answers that are not JSON.
    fn failed(&mut self, op: &str, failure: Failure) -> SyscallError {
        match failure {
            Failure::Catchable(message) => SyscallError::new(message),
            Failure::Fatal(fatal) => {
                let message = format!("{op} failed: {}", fatal.message);
                self.fatal = Some(FatalSyscallError {
                    message: message.clone(),
                    system: fatal.system,
                });
                SyscallError::new(message)
            }
        }
    }

    /// `1.0/runUdf`: checks the target and its arguments, and asks the pool to run it in this
    /// call (same transaction). A nested mutation gets a savepoint, restored if it fails.
    fn run_udf(&mut self, args_json: &str) -> Result<NestedCall, Failure> {
        const OP: &str = "1.0/runUdf";
        let args = Args::parse(OP, args_json)?;
        let kind = match args.str("udfType")? {
            "query" | "snapshotQuery" => FunctionKind::Query,
            "mutation" => FunctionKind::Mutation,
            other => {
                return Err(
                    format!("Invalid arguments for {OP}: unknown udfType `{other}`").into(),
                );
            }
        };
        if kind == FunctionKind::Mutation
            && (self.mode == AccessMode::ReadOnly
                || self.nested.iter().any(|f| f.kind == FunctionKind::Query))
        {
            return Err(
                "ctx.runMutation cannot be called from a query: queries are read-only".into(),
            );
        }
        if self.nested.len() >= knobs::FUNCTION_MAX_NESTING_DEPTH {
            return Err(format!(
                "Function call depth exceeded: ctx.runQuery/ctx.runMutation may nest at most {} \
                 calls deep",
                knobs::FUNCTION_MAX_NESTING_DEPTH
            )
            .into());
        }
        if args.get("name").is_none()
            && (args.get("reference").is_some() || args.get("functionHandle").is_some())
        {
            return Err(format!(
                "{OP}: component references and function handles are not supported"
            )
            .into());
        }
        let functions = self
            .functions
            .clone()
            .ok_or_else(|| format!("{OP} is not available in this function execution"))?;
        let target = check_target(OP, &functions, &self.catalog(), &args, kind)?;
        let TargetCall {
            path,
            module,
            export,
            args_json: fn_args_json,
            returns,
        } = target;
        let id = self.next_frame_id;
        self.next_frame_id += 1;
        self.nested.push(NestedFrame {
            id,
            kind,
            path,
            returns,
            savepoint: (kind == FunctionKind::Mutation).then(|| self.txn.savepoint()),
        });
        Ok(NestedCall {
            module,
            export,
            kind,
            args_json: fn_args_json,
            frame: Box::new(id),
        })
    }

    fn require_write(&self, method: &str) -> Result<(), Failure> {
        match self.mode {
            AccessMode::ReadWrite => Ok(()),
            AccessMode::ReadOnly => Err(format!(
                "Cannot call db.{method}() in a query: queries are read-only (use a mutation)"
            )
            .into()),
        }
    }

    /// The id a write names, checked: it decodes, its table exists and is not a system table,
    /// and it is of `table` when the call names one.
    fn write_target(&self, args: &Args<'_>, method: &str) -> Result<DocumentId, Failure> {
        let text = args.str("id")?;
        let id = DocumentId::decode(text)
            .map_err(|e| format!("Invalid argument `id` for `db.{method}`: {e}"))?;
        let catalog = self.catalog();
        let table = catalog.table(id.table).ok_or_else(|| {
            format!("Invalid argument `id` for `db.{method}`: no table has id {text}")
        })?;
        if let Some(expected) = args.optional_str("table")?
            && expected != table.name
        {
            return Err(format!(
                "Invalid argument `id` for `db.{method}`: {text} is an id of table `{}`, not `{expected}`",
                table.name
            )
            .into());
        }
        if table.name.starts_with('_') {
            return Err(system_table_write(&table.name));
        }
        Ok(id)
    }

    /// After a write of an existing document: its new version (which exists: the write just
    /// succeeded, and reading one's own writes never touches the store's data).
    fn written_document(&mut self, id: &DocumentId) -> Answer {
        match self.txn.get(id).map_err(txn_failure)? {
            Some(doc) => Ok(document_json(doc)),
            None => Ok(Json::Null),
        }
    }

    fn get(&mut self, args: &Args<'_>) -> Answer {
        let Some(text) = args.get("id").and_then(Json::as_str) else {
            return Err("Invalid arguments for 1.0/get: `id` must be a string".into());
        };
        let Ok(id) = DocumentId::decode(text) else {
            return Ok(Json::Null);
        };
        let catalog = self.catalog();
        let Some(table) = catalog.table(id.table) else {
            return Ok(Json::Null);
        };
        if let Some(expected) = args.optional_str("table")?
            && expected != table.name
        {
            return Err(format!(
                "Invalid argument `id` for `db.get`: {text} is an id of table `{}`, not `{expected}`",
                table.name
            )
            .into());
        }
        let is_system_table = table.name.starts_with('_');
        if is_system_table != args.bool("isSystem") {
            return Err(if is_system_table {
                "System tables can only be read through `ctx.db.system`".into()
            } else {
                "User tables cannot be read through `ctx.db.system`".into()
            });
        }
        Ok(self
            .txn
            .get(&id)
            .map_err(txn_failure)?
            .map_or(Json::Null, document_json))
    }

    fn insert(&mut self, args: &Args<'_>) -> Answer {
        self.require_write("insert")?;
        let name = args.str("table")?;
        if name.starts_with('_') {
            return Err(system_table_write(name));
        }
        let table = match self.table(name) {
            Some(t) => t.number,
            // Convex creates a table on its first insert; the creation commits with it.
            None => self.txn.create_table(name).map_err(txn_failure)?,
        };
        let fields = object_value(args.op, args.required("value")?)?;
        let id = self.txn.insert(table, fields).map_err(txn_failure)?;
        Ok(json!({ "_id": id.encode() }))
    }

    fn shallow_merge(&mut self, args: &Args<'_>) -> Answer {
        self.require_write("patch")?;
        let id = self.write_target(args, "patch")?;
        let patch = patch_value(args.op, args.required("value")?)?;
        self.txn.patch(&id, patch).map_err(|e| match e {
            TxnError::NotFound(id) => format!("Update on nonexistent document ID {id}").into(),
            other => txn_failure(other),
        })?;
        self.written_document(&id)
    }

    fn replace(&mut self, args: &Args<'_>) -> Answer {
        self.require_write("replace")?;
        let id = self.write_target(args, "replace")?;
        let fields = object_value(args.op, args.required("value")?)?;
        self.txn.replace(&id, fields).map_err(|e| match e {
            TxnError::NotFound(id) => format!("Replace on nonexistent document ID {id}").into(),
            other => txn_failure(other),
        })?;
        self.written_document(&id)
    }

    fn remove(&mut self, args: &Args<'_>) -> Answer {
        self.require_write("delete")?;
        let id = self.write_target(args, "delete")?;
        let old = self.txn.get(&id).map_err(txn_failure)?;
        let Some(old) = old else {
            return Err(format!("Delete on nonexistent document ID {id}").into());
        };
        self.txn.delete(&id).map_err(txn_failure)?;
        Ok(document_json(old))
    }

    fn parse_query(&self, args: &Args<'_>) -> Result<PreparedQuery, Failure> {
        let query = Query::from_json(args.required("query")?).map_err(|e| e.to_string())?;
        PreparedQuery::new(query, &*self.catalog()).map_err(query_failure)
    }

    fn query_stream(&mut self, args: &Args<'_>) -> Answer {
        if self.streams.len() >= knobs::FUNCTION_MAX_OPEN_QUERY_STREAMS {
            return Err(Failure::Fatal(FatalSyscallError {
                message: format!(
                    "more than {} queries open at once",
                    knobs::FUNCTION_MAX_OPEN_QUERY_STREAMS
                ),
                system: false,
            }));
        }
        let stream = self.parse_query(args)?.stream();
        let id = self.next_query_id;
        self.next_query_id = self
            .next_query_id
            .checked_add(1)
            .ok_or("too many queries in one function")?;
        self.streams.insert(id, stream);
        Ok(json!({ "queryId": id }))
    }

    fn query_stream_next(&mut self, args: &Args<'_>) -> Answer {
        let id = args.query_id()?;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Err(format!("Query {id} is not open (already finished or cleaned up)").into());
        };
        match stream.next(&mut self.txn) {
            Ok(Some(doc)) => Ok(json!({ "value": document_json(doc), "done": false })),
            Ok(None) => {
                self.streams.remove(&id);
                Ok(json!({ "value": null, "done": true }))
            }
            Err(e) => {
                self.streams.remove(&id);
                Err(query_failure(e))
            }
        }
    }

    fn query_cleanup(&mut self, args: &Args<'_>) -> Answer {
        let id = args.query_id()?;
        Ok(Json::Bool(self.streams.remove(&id).is_some()))
    }

    fn query_page(&mut self, args: &Args<'_>) -> Answer {
        if self.paginated {
            return Err(
                "This query or mutation function ran multiple paginated queries. Convex \
                        only supports a single paginated query in each function."
                    .into(),
            );
        }
        self.paginated = true;
        let prepared = self.parse_query(args)?;
        let cursor = args.optional_str("cursor")?;
        let end_cursor = args.optional_str("endCursor")?;
        let page_size = args
            .required("pageSize")?
            .as_f64()
            .filter(|n| *n >= 1.0)
            .ok_or("Invalid arguments for 1.0/queryPage: `pageSize` must be a number ≥ 1")?;
        // Saturating: the transaction's read limit bounds any page anyway.
        let page_size = (page_size as usize).min(knobs::TRANSACTION_MAX_READ_DOCUMENTS);
        let page = prepared
            .page(&mut self.txn, cursor, page_size, end_cursor)
            .map_err(query_failure)?;
        Ok(json!({
            "page": page.docs.into_iter().map(document_json).collect::<Vec<_>>(),
            "isDone": page.is_done,
            "continueCursor": page.continue_cursor,
            "splitCursor": null,
            "pageStatus": null,
        }))
    }

    fn count(&mut self, args: &Args<'_>) -> Answer {
        let name = args.str("table")?;
        let query = Query::from_json(&json!({
            "source": { "type": "FullTableScan", "tableName": name, "order": null },
            "operators": [],
        }))
        .map_err(|e| e.to_string())?;
        let mut stream = QueryStream::new(query, &*self.catalog()).map_err(query_failure)?;
        let mut n = 0u64;
        while stream.next(&mut self.txn).map_err(query_failure)?.is_some() {
            n += 1;
        }
        Ok(json!(n as f64))
    }

    fn normalize_id(&self, args: &Args<'_>) -> Answer {
        let name = args.str("table")?;
        let text = args.str("idString")?;
        let id = match (self.table(name), DocumentId::decode(text)) {
            (Some(table), Ok(id)) if id.table == table.number => Json::String(id.encode()),
            _ => Json::Null,
        };
        Ok(json!({ "id": id }))
    }
}

/// The target of a nested call (`1.0/runUdf`, `1.0/actions/*`), checked.
pub(crate) struct TargetCall {
    pub(crate) path: String,
    pub(crate) module: String,
    pub(crate) export: String,
    /// JSON text of the positional args array.
    pub(crate) args_json: String,
    pub(crate) returns: Option<Validator>,
}

/// Checks the target named by `args.name` (it exists and is of `kind`) and validates
/// `args.args` against its `exportArgs()`.
pub(crate) fn check_target(
    op: &str,
    functions: &Analysis,
    catalog: &Catalog,
    args: &Args<'_>,
    kind: FunctionKind,
) -> Result<TargetCall, Failure> {
    let path = args.str("name")?.to_owned();
    let (module, export) = parse_function_path(&path).map_err(|e| e.to_string())?;
    let spec = functions
        .get(&(module.clone(), export.clone()))
        .ok_or_else(|| format!("Could not find function for '{path}'"))?;
    if spec.kind != kind {
        return Err(format!(
            "Trying to execute {path} as a {kind}, but it is defined as a {}",
            spec.kind
        )
        .into());
    }
    let fn_args = match args.get("args") {
        None => Value::Object(Default::default()),
        Some(json) => Value::from_json(json)
            .map_err(|e| format!("Invalid arguments for {op}: `args`: {e}"))?,
    };
    if !matches!(fn_args, Value::Object(_)) {
        return Err(format!(
            "ArgumentValidationError: the arguments of {path} must be an object, not {}",
            fn_args.type_name()
        )
        .into());
    }
    if let Some(validator) = &spec.args {
        validator
            .check(&fn_args, catalog)
            .map_err(|e| format!("ArgumentValidationError: {e}"))?;
    }
    Ok(TargetCall {
        path,
        module,
        export,
        args_json: Json::Array(vec![fn_args.to_json()]).to_string(),
        returns: spec.returns.clone(),
    })
}

/// Checks a nested call's result text: a Convex value, valid for `returns`.
pub(crate) fn check_result(
    path: &str,
    text: &str,
    returns: Option<&Validator>,
    catalog: &Catalog,
) -> Result<(), SyscallError> {
    let value = Value::from_json_bytes(text.as_bytes())
        .map_err(|e| SyscallError::new(format!("{path} returned an invalid Convex value: {e}")))?;
    if let Some(validator) = returns {
        validator
            .check(&value, catalog)
            .map_err(|e| SyscallError::new(format!("ReturnsValidationError: {e}")))?;
    }
    Ok(())
}

fn system_table_write(name: &str) -> Failure {
    format!("System tables (prefixed with `_`) are read-only; cannot write to table `{name}`")
        .into()
}

const SYNC_OPS: &[&str] = &["1.0/queryStream", "1.0/queryCleanup", "1.0/db/normalizeId"];
const ASYNC_OPS: &[&str] = &[
    "1.0/get",
    "1.0/insert",
    "1.0/shallowMerge",
    "1.0/replace",
    "1.0/remove",
    "1.0/queryStreamNext",
    "1.0/queryPage",
    "1.0/count",
    "1.0/getUserIdentity",
];

impl SyscallHandler for DbSyscalls {
    fn syscall(&mut self, op: &str, args_json: &str) -> Result<String, SyscallError> {
        self.answer(op, |this| {
            if !SYNC_OPS.contains(&op) {
                return Err(format!("Unknown operation {op}").into());
            }
            let args = Args::parse(op, args_json)?;
            match op {
                "1.0/queryStream" => this.query_stream(&args),
                "1.0/queryCleanup" => this.query_cleanup(&args),
                "1.0/db/normalizeId" => this.normalize_id(&args),
                _ => Err(format!("Unknown operation {op}").into()),
            }
        })
    }

    fn async_syscall(&mut self, op: &str, args_json: &str) -> AsyncSyscallReply {
        if op == "1.0/runUdf" {
            if let Some(fatal) = &self.fatal {
                return AsyncSyscallReply::Ready(Err(SyscallError::new(fatal.message.clone())));
            }
            return match self.run_udf(args_json) {
                Ok(call) => AsyncSyscallReply::Invoke(call),
                Err(failure) => AsyncSyscallReply::Ready(Err(self.failed(op, failure))),
            };
        }
        AsyncSyscallReply::Ready(self.answer(op, |this| {
            if !ASYNC_OPS.contains(&op) {
                return Err(format!("Unknown async operation {op}").into());
            }
            let args = Args::parse(op, args_json)?;
            match op {
                "1.0/get" => this.get(&args),
                "1.0/insert" => this.insert(&args),
                "1.0/shallowMerge" => this.shallow_merge(&args),
                "1.0/replace" => this.replace(&args),
                "1.0/remove" => this.remove(&args),
                "1.0/queryStreamNext" => this.query_stream_next(&args),
                "1.0/queryPage" => this.query_page(&args),
                "1.0/count" => this.count(&args),
                "1.0/getUserIdentity" => Ok(this.identity.clone().unwrap_or(Json::Null)),
                _ => Err(format!("Unknown async operation {op}").into()),
            }
        }))
    }

    fn finish_nested(
        &mut self,
        frame: Box<dyn Any + Send>,
        result: Option<String>,
    ) -> NestedSettle {
        let Some(position) = frame
            .downcast_ref::<u64>()
            .and_then(|id| self.nested.iter().position(|f| f.id == *id))
        else {
            return NestedSettle::Reject(SyscallError::new("unknown nested function call"));
        };
        let innermost = position + 1 == self.nested.len();
        let frame = self.nested.remove(position);
        if let Some(fatal) = &self.fatal {
            return NestedSettle::Reject(SyscallError::new(fatal.message.clone()));
        }
        let failure = match result {
            None => None,
            Some(text) => {
                match check_result(&frame.path, &text, frame.returns.as_ref(), &self.catalog()) {
                    Ok(()) => return NestedSettle::Resolve(text),
                    Err(error) => Some(error),
                }
            }
        };
        // The nested call failed: its writes are undone, the caller goes on.
        if let Some(savepoint) = frame.savepoint {
            if !innermost {
                // Another nested call started after this one and is still running: its writes
                // cannot be told apart from this one's, so the whole function fails.
                let message = format!(
                    "1.0/runUdf failed: {} failed while another ctx.runQuery/ctx.runMutation \
                     started after it was still running; await nested calls one at a time",
                    frame.path
                );
                self.fatal = Some(FatalSyscallError {
                    message: message.clone(),
                    system: false,
                });
                return NestedSettle::Reject(SyscallError::new(message));
            }
            self.txn.rollback_to(savepoint);
        }
        match failure {
            Some(error) => NestedSettle::Reject(error),
            None => NestedSettle::Rethrow,
        }
    }
}
