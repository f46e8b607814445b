//! Tables and their indexes, as the transaction layer needs them: which index entries a
//! document implies. (The deployed catalog — names, schema, versions — builds these.)

use std::collections::BTreeMap;
use std::sync::Arc;

use store::IndexNumber;
use value::{IndexKey, KeyError, TableNumber, Value};

use crate::transaction::Object;

/// The system field every document carries: its creation time in milliseconds (Float64).
pub const CREATION_TIME: &str = "_creationTime";
/// The system field every document carries: its id as a string.
pub const ID: &str = "_id";

/// Whether an index may be read. Writers maintain every index of a table whatever its state;
/// a new index on existing data is `Backfilling` until entries for the documents that existed
/// before it have been written, and only then `Enabled` for queries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IndexState {
    #[default]
    Enabled,
    Backfilling,
}

/// A secondary index: the document fields it orders by. Every index is implicitly suffixed by
/// `_creationTime` and then the document id (Convex's rule), so entries are unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub number: IndexNumber,
    pub name: String,
    /// Field paths; each is a list of nested field names (`"a.b"` is `["a", "b"]`).
    pub fields: Vec<Vec<String>>,
    pub state: IndexState,
}

impl IndexDef {
    /// The index key of `doc` in this index: the indexed fields' values (missing ones as the
    /// "missing" marker), then `_creationTime`.
    pub fn key_of(&self, doc: &Object) -> Result<IndexKey, KeyError> {
        let mut parts: Vec<Option<&Value>> =
            self.fields.iter().map(|path| lookup(doc, path)).collect();
        parts.push(doc.get(CREATION_TIME));
        IndexKey::from_parts(&parts)
    }
}

/// Follows a field path through nested objects; `None` if any step is missing or not an
/// object.
pub fn lookup<'a>(doc: &'a Object, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut current = doc.get(first)?;
    for name in rest {
        match current {
            Value::Object(fields) => current = fields.get(name)?,
            _ => return None,
        }
    }
    Some(current)
}

/// Checks documents written to a table against the table's schema (Convex's `documentType`).
/// The transaction layer calls it on every insert, replace and patch; implementations live
/// above it (`udf` implements it with Convex validators).
pub trait DocumentValidator: Send + Sync + 'static {
    /// `Err(message)` if `fields` — the document's user fields, system fields removed — do not
    /// match. `catalog` resolves table names (for `v.id("table")`).
    fn check(&self, fields: &Object, catalog: &Catalog) -> Result<(), String>;
}

/// A table's schema check, compared by identity.
#[derive(Clone)]
pub struct SchemaCheck(pub Arc<dyn DocumentValidator>);

impl std::fmt::Debug for SchemaCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchemaCheck(..)")
    }
}

impl PartialEq for SchemaCheck {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SchemaCheck {}

/// A table: its number, name, secondary indexes and, when a schema with validation is
/// deployed, the check its documents must pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    pub number: TableNumber,
    pub name: String,
    pub indexes: Vec<IndexDef>,
    pub schema: Option<SchemaCheck>,
    /// The schema's `documentType` as JSON text, which `schema` was compiled from: what a
    /// stored catalog keeps (`None` without schema validation).
    pub document_type: Option<String>,
}

impl TableDef {
    /// A table with only Convex's system index `by_creation_time` (index 1).
    pub fn new(number: TableNumber, name: &str) -> Self {
        Self {
            number,
            name: name.to_string(),
            indexes: vec![IndexDef {
                number: IndexNumber(1),
                name: "by_creation_time".into(),
                fields: vec![],
                state: IndexState::Enabled,
            }],
            schema: None,
            document_type: None,
        }
    }

    /// Documents written to this table must pass `validator`, compiled from the schema's
    /// `documentType` JSON `document_type`.
    pub fn with_schema(
        mut self,
        validator: Arc<dyn DocumentValidator>,
        document_type: &str,
    ) -> Self {
        self.schema = Some(SchemaCheck(validator));
        self.document_type = Some(document_type.to_string());
        self
    }

    /// Adds a secondary index on `fields` (dotted paths), numbered after the existing ones.
    pub fn with_index(mut self, name: &str, fields: &[&str]) -> Self {
        let number = IndexNumber(self.indexes.iter().map(|i| i.number.0).max().unwrap_or(0) + 1);
        self.indexes.push(IndexDef {
            number,
            name: name.to_string(),
            fields: fields
                .iter()
                .map(|f| f.split('.').map(str::to_string).collect())
                .collect(),
            state: IndexState::Enabled,
        });
        self
    }

    pub fn index(&self, number: IndexNumber) -> Option<&IndexDef> {
        self.indexes.iter().find(|i| i.number == number)
    }

    pub fn index_named(&self, name: &str) -> Option<&IndexDef> {
        self.indexes.iter().find(|i| i.name == name)
    }
}

/// The tables a transaction may touch. A stored catalog (`crate::system`) has a version,
/// bumped by every change; a catalog given to a database up front has version 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    tables: BTreeMap<TableNumber, TableDef>,
    pub version: u64,
    /// Stored catalogs: no new table gets a number below this (numbers are never reused).
    pub next_table: u32,
    /// Stored catalogs: the number the next new index gets, in any table (index numbers are
    /// never reused, so entries a dropped index left behind are never read as another's).
    pub next_index: u32,
}

impl Catalog {
    pub fn new(tables: impl IntoIterator<Item = TableDef>) -> Self {
        Self {
            tables: tables.into_iter().map(|t| (t.number, t)).collect(),
            version: 0,
            next_table: 0,
            next_index: 0,
        }
    }

    /// Adds (or replaces) `table`.
    pub fn insert(&mut self, table: TableDef) {
        self.tables.insert(table.number, table);
    }

    /// A number for a new index of any table: above every index number in use or used before.
    pub fn allocate_index_number(&mut self) -> IndexNumber {
        let in_use = self
            .tables
            .values()
            .flat_map(|t| t.indexes.iter().map(|i| i.number.0))
            .max()
            .unwrap_or(1);
        let number = self.next_index.max(in_use + 1).max(2);
        self.next_index = number + 1;
        IndexNumber(number)
    }

    /// Removes table `number`, returning it.
    pub fn remove(&mut self, number: TableNumber) -> Option<TableDef> {
        self.tables.remove(&number)
    }

    /// Every table, by number.
    pub fn tables(&self) -> impl Iterator<Item = &TableDef> {
        self.tables.values()
    }

    pub fn table(&self, number: TableNumber) -> Option<&TableDef> {
        self.tables.get(&number)
    }

    pub fn table_named(&self, name: &str) -> Option<&TableDef> {
        self.tables.values().find(|t| t.name == name)
    }
}
