//! The catalog stored in the database itself, so that creating a table, adding an index or
//! deploying a schema commits (or aborts) with the transaction that does it, and every
//! transaction sees the catalog of its own snapshot.
//!
//! Layout: the system table `_catalog` (table number [`CATALOG_TABLE`]) holds a head document
//! (`{version}`) and a body document (`{tables: [...]}`) at fixed ids; `_modules`
//! ([`MODULES_TABLE`]) holds deployed code, written by the layer above. A transaction on a
//! database with a stored catalog reads the head first (so the head is in every read set: any
//! catalog change conflicts with, and invalidates, everything that ran on the old one), then
//! takes the catalog of that version from a [`CatalogCache`] or decodes the body.
//!
//! User tables are numbered from [`FIRST_USER_TABLE`]; a number is never reused.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use store::IndexNumber;
use value::{DocumentId, InternalId, TableNumber, Value};

use crate::catalog::{Catalog, DocumentValidator, IndexDef, IndexState, TableDef};
use crate::transaction::Object;

/// The system table of the stored catalog.
pub const CATALOG_TABLE: u32 = 1;
pub const CATALOG_TABLE_NAME: &str = "_catalog";
/// The system table of deployed modules.
pub const MODULES_TABLE: u32 = 2;
pub const MODULES_TABLE_NAME: &str = "_modules";
/// The first number a user table gets.
pub const FIRST_USER_TABLE: u32 = 10001;

/// Turns a table's stored `documentType` JSON into the check its documents must pass.
/// Implemented above this crate (`udf`), which knows Convex validators.
pub trait SchemaCompiler: Send + Sync + 'static {
    fn compile(&self, document_type_json: &str) -> Result<Arc<dyn DocumentValidator>, String>;
}

fn table_number(n: u32) -> TableNumber {
    match TableNumber::new(n) {
        Ok(t) => t,
        Err(_) => unreachable!("system table numbers are non-zero"),
    }
}

/// A document of a system table at a fixed id: `n` distinguishes documents of one table.
pub fn system_document_id(table: u32, n: u8) -> DocumentId {
    let mut internal = [0u8; 16];
    internal[15] = n;
    DocumentId::new(table_number(table), InternalId(internal))
}

/// The `_catalog` head document: `{version}`.
pub fn catalog_head_id() -> DocumentId {
    system_document_id(CATALOG_TABLE, 1)
}

/// The `_catalog` body document: `{tables}`.
pub fn catalog_body_id() -> DocumentId {
    system_document_id(CATALOG_TABLE, 2)
}

/// The system tables every stored catalog has.
pub fn system_tables() -> [TableDef; 2] {
    [
        TableDef::new(table_number(CATALOG_TABLE), CATALOG_TABLE_NAME),
        TableDef::new(table_number(MODULES_TABLE), MODULES_TABLE_NAME),
    ]
}

/// An empty stored catalog (version 0): the system tables only.
pub fn empty_stored_catalog() -> Catalog {
    Catalog::new(system_tables())
}

/// Whether `name` may name a user table: Convex's identifier rule (a letter first, then
/// letters, digits and underscores, at most 64 characters; never a leading underscore).
pub fn check_table_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || name.len() > 64 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "Invalid table name {name:?}: table names start with a letter and contain only letters, digits and underscores (at most 64 characters)"
        ));
    }
    Ok(())
}

/// The number for a new user table of `catalog`: above every table it has or had (numbers of
/// dropped tables are kept in the body's `nextTable`).
pub fn next_table_number(catalog: &Catalog) -> Result<TableNumber, String> {
    let highest = catalog
        .tables()
        .map(|t| t.number.get())
        .max()
        .unwrap_or(0)
        .max(FIRST_USER_TABLE - 1)
        .max(catalog.next_table.saturating_sub(1));
    highest
        .checked_add(1)
        .and_then(|n| TableNumber::new(n).ok())
        .ok_or_else(|| "no table numbers left".to_string())
}

/// The head document of `catalog`.
pub fn encode_head(catalog: &Catalog) -> Object {
    BTreeMap::from([("version".to_string(), Value::Int64(catalog.version as i64))])
}

/// The body document of `catalog` (system tables are implicit and not stored).
pub fn encode_body(catalog: &Catalog) -> Object {
    let tables = catalog
        .tables()
        .filter(|t| t.number.get() >= FIRST_USER_TABLE)
        .map(|t| {
            let indexes = t
                .indexes
                .iter()
                .filter(|i| i.number != IndexNumber(1))
                .map(|i| {
                    Value::Object(BTreeMap::from([
                        ("name".into(), Value::String(i.name.clone())),
                        ("number".into(), Value::Int64(i64::from(i.number.0))),
                        (
                            "fields".into(),
                            Value::Array(
                                i.fields
                                    .iter()
                                    .map(|path| Value::String(path.join(".")))
                                    .collect(),
                            ),
                        ),
                        (
                            "state".into(),
                            Value::String(
                                match i.state {
                                    IndexState::Enabled => "enabled",
                                    IndexState::Backfilling => "backfilling",
                                }
                                .into(),
                            ),
                        ),
                    ]))
                })
                .collect();
            Value::Object(BTreeMap::from([
                ("name".into(), Value::String(t.name.clone())),
                ("number".into(), Value::Int64(i64::from(t.number.get()))),
                ("indexes".into(), Value::Array(indexes)),
                (
                    "documentType".into(),
                    t.document_type
                        .as_ref()
                        .map_or(Value::Null, |d| Value::String(d.clone())),
                ),
            ]))
        })
        .collect();
    BTreeMap::from([
        ("tables".to_string(), Value::Array(tables)),
        (
            "nextTable".to_string(),
            Value::Int64(i64::from(catalog.next_table)),
        ),
        (
            "nextIndex".to_string(),
            Value::Int64(i64::from(catalog.next_index)),
        ),
    ])
}

/// The version a head document names (0 when there is none yet).
pub fn decode_head(head: Option<&Object>) -> Result<u64, String> {
    match head {
        None => Ok(0),
        Some(doc) => match doc.get("version") {
            Some(Value::Int64(v)) if *v >= 0 => Ok(*v as u64),
            other => Err(format!("catalog head has a bad version: {other:?}")),
        },
    }
}

fn field<'a>(obj: &'a Object, name: &str, what: &str) -> Result<&'a Value, String> {
    obj.get(name)
        .ok_or_else(|| format!("catalog {what} lacks `{name}`"))
}

fn int(v: &Value, what: &str) -> Result<u32, String> {
    match v {
        Value::Int64(n) => u32::try_from(*n).map_err(|_| format!("catalog {what} out of range")),
        _ => Err(format!("catalog {what} is not an int64")),
    }
}

fn string<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(format!("catalog {what} is not a string")),
    }
}

/// The catalog a body document describes, at `version`, with schema checks compiled by
/// `compiler`.
pub fn decode_body(
    body: Option<&Object>,
    version: u64,
    compiler: Option<&dyn SchemaCompiler>,
) -> Result<Catalog, String> {
    let mut catalog = empty_stored_catalog();
    catalog.version = version;
    let Some(body) = body else {
        return Ok(catalog);
    };
    if let Some(next) = body.get("nextTable") {
        catalog.next_table = int(next, "nextTable")?;
    }
    if let Some(next) = body.get("nextIndex") {
        catalog.next_index = int(next, "nextIndex")?;
    }
    let Value::Array(tables) = field(body, "tables", "body")? else {
        return Err("catalog tables is not an array".into());
    };
    for table in tables {
        let Value::Object(table) = table else {
            return Err("catalog table is not an object".into());
        };
        let name = string(field(table, "name", "table")?, "table name")?;
        let number = TableNumber::new(int(field(table, "number", "table")?, "table number")?)
            .map_err(|e| format!("table {name}: {e}"))?;
        let mut def = TableDef::new(number, name);
        let Value::Array(indexes) = field(table, "indexes", "table")? else {
            return Err(format!("table {name}: indexes is not an array"));
        };
        for index in indexes {
            let Value::Object(index) = index else {
                return Err(format!("table {name}: an index is not an object"));
            };
            let index_name = string(field(index, "name", "index")?, "index name")?;
            let Value::Array(fields) = field(index, "fields", "index")? else {
                return Err(format!("index {name}.{index_name}: fields is not an array"));
            };
            let fields = fields
                .iter()
                .map(|f| {
                    string(f, "index field").map(|f| f.split('.').map(str::to_string).collect())
                })
                .collect::<Result<Vec<Vec<String>>, String>>()?;
            let state = match string(field(index, "state", "index")?, "index state")? {
                "enabled" => IndexState::Enabled,
                "backfilling" => IndexState::Backfilling,
                other => return Err(format!("index {name}.{index_name}: unknown state {other}")),
            };
            def.indexes.push(IndexDef {
                number: IndexNumber(int(field(index, "number", "index")?, "index number")?),
                name: index_name.to_string(),
                fields,
                state,
            });
        }
        match field(table, "documentType", "table")? {
            Value::Null => {}
            Value::String(json) => {
                let compiler = compiler.ok_or_else(|| {
                    format!("table {name} has a schema but this database has no schema compiler")
                })?;
                let check = compiler
                    .compile(json)
                    .map_err(|e| format!("table {name}: stored schema: {e}"))?;
                def = def.with_schema(check, json);
            }
            _ => return Err(format!("table {name}: documentType is not a string")),
        }
        catalog.insert(def);
    }
    Ok(catalog)
}

/// Decoded catalogs by version, so a transaction decodes the body only when the catalog
/// changed. Bounded: the oldest versions are forgotten first.
pub struct CatalogCache {
    compiler: Option<Arc<dyn SchemaCompiler>>,
    inner: Mutex<CacheInner>,
}

struct CacheInner {
    by_version: HashMap<u64, Arc<Catalog>>,
    order: VecDeque<u64>,
    latest: Arc<Catalog>,
}

/// How many catalog versions a cache keeps decoded.
const CACHED_VERSIONS: usize = 8;

impl CatalogCache {
    pub fn new(compiler: Option<Arc<dyn SchemaCompiler>>) -> Self {
        Self {
            compiler,
            inner: Mutex::new(CacheInner {
                by_version: HashMap::new(),
                order: VecDeque::new(),
                latest: Arc::new(empty_stored_catalog()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn compiler(&self) -> Option<&dyn SchemaCompiler> {
        self.compiler.as_deref()
    }

    pub fn get(&self, version: u64) -> Option<Arc<Catalog>> {
        self.lock().by_version.get(&version).cloned()
    }

    pub fn insert(&self, catalog: Arc<Catalog>) {
        let mut inner = self.lock();
        if catalog.version >= inner.latest.version {
            inner.latest = catalog.clone();
        }
        if inner
            .by_version
            .insert(catalog.version, catalog.clone())
            .is_none()
        {
            inner.order.push_back(catalog.version);
        }
        while inner.order.len() > CACHED_VERSIONS {
            if let Some(old) = inner.order.pop_front() {
                inner.by_version.remove(&old);
            }
        }
    }

    /// The newest catalog any transaction has loaded.
    pub fn latest(&self) -> Arc<Catalog> {
        self.lock().latest.clone()
    }
}
