//! Tables and their indexes, as the transaction layer needs them: which index entries a
//! document implies. (The deployed catalog — names, schema, versions — builds these.)

use std::collections::BTreeMap;

use store::IndexNumber;
use value::{IndexKey, KeyError, TableNumber, Value};

use crate::transaction::Object;

/// The system field every document carries: its creation time in milliseconds (Float64).
pub const CREATION_TIME: &str = "_creationTime";
/// The system field every document carries: its id as a string.
pub const ID: &str = "_id";

/// A secondary index: the document fields it orders by. Every index is implicitly suffixed by
/// `_creationTime` and then the document id (Convex's rule), so entries are unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub number: IndexNumber,
    pub name: String,
    /// Field paths; each is a list of nested field names (`"a.b"` is `["a", "b"]`).
    pub fields: Vec<Vec<String>>,
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

/// A table: its number, name and secondary indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    pub number: TableNumber,
    pub name: String,
    pub indexes: Vec<IndexDef>,
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
            }],
        }
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

/// The tables a transaction may touch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    tables: BTreeMap<TableNumber, TableDef>,
}

impl Catalog {
    pub fn new(tables: impl IntoIterator<Item = TableDef>) -> Self {
        Self {
            tables: tables.into_iter().map(|t| (t.number, t)).collect(),
        }
    }

    pub fn table(&self, number: TableNumber) -> Option<&TableDef> {
        self.tables.get(&number)
    }

    pub fn table_named(&self, name: &str) -> Option<&TableDef> {
        self.tables.values().find(|t| t.name == name)
    }
}
