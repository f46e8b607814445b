//! A deployed schema (the JSON `schema.js`'s default export returns from `export()`,
//! `research/convex-protocol.md` §4.9) as the catalog the transaction layer uses: tables,
//! their indexes, and — when `schemaValidation` is on — a check of every written document
//! against the table's `documentType`.

use std::sync::Arc;

use serde_json::Value as Json;
use txn::{Catalog, DocumentValidator, Object, TableDef};
use value::{TableNumber, Value};

use crate::validator::Validator;

/// A schema that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid schema: {0}")]
pub struct SchemaError(pub String);

/// A table's `documentType` as a [`DocumentValidator`]: the user fields of a written document,
/// as an object, must match it.
pub struct DocumentSchema(pub Validator);

impl DocumentValidator for DocumentSchema {
    fn check(&self, fields: &Object, catalog: &Catalog) -> Result<(), String> {
        self.0
            .check(&Value::Object(fields.clone()), catalog)
            .map_err(|e| e.to_string())
    }
}

/// The catalog `schema_json` describes. Tables are numbered from `first_table` in the order the
/// schema lists them; keeping numbers stable across deploys is the deployed catalog's job.
pub fn catalog_from_schema(schema_json: &str, first_table: u32) -> Result<Catalog, SchemaError> {
    let bad = |msg: String| SchemaError(msg);
    let json: Json = serde_json::from_str(schema_json).map_err(|e| bad(e.to_string()))?;
    let validate = match json.get("schemaValidation") {
        None => true,
        Some(Json::Bool(b)) => *b,
        Some(other) => return Err(bad(format!("schemaValidation is {other}, not a boolean"))),
    };
    let tables = json
        .get("tables")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("no tables array".into()))?;
    let mut defs = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let name = table
            .get("tableName")
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("tables[{i}] has no tableName")))?;
        let number = u32::try_from(i)
            .ok()
            .and_then(|i| first_table.checked_add(i))
            .and_then(|n| TableNumber::new(n).ok())
            .ok_or_else(|| bad("too many tables".into()))?;
        let mut def = TableDef::new(number, name);
        for (j, index) in table
            .get("indexes")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let index_name = index
                .get("indexDescriptor")
                .and_then(Json::as_str)
                .ok_or_else(|| bad(format!("{name}.indexes[{j}] has no indexDescriptor")))?;
            let fields: Vec<&str> = index
                .get("fields")
                .and_then(Json::as_array)
                .ok_or_else(|| bad(format!("index {name}.{index_name} has no fields")))?
                .iter()
                .map(|f| {
                    f.as_str().ok_or_else(|| {
                        bad(format!(
                            "index {name}.{index_name}: a field is not a string"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            def = def.with_index(index_name, &fields);
        }
        if validate && let Some(document_type) = table.get("documentType") {
            let validator = Validator::from_json(document_type)
                .map_err(|e| bad(format!("{name}.documentType: {e}")))?;
            if !matches!(validator, Validator::Any) {
                def = def.with_schema(
                    Arc::new(DocumentSchema(validator)),
                    &document_type.to_string(),
                );
            }
        }
        defs.push(def);
    }
    Ok(Catalog::new(defs))
}

/// Compiles the `documentType` JSON a stored catalog keeps into the check of written
/// documents: what a database with a stored catalog needs (`txn::SchemaCompiler`).
pub struct DocumentTypeCompiler;

impl txn::SchemaCompiler for DocumentTypeCompiler {
    fn compile(&self, document_type_json: &str) -> Result<Arc<dyn DocumentValidator>, String> {
        let json: Json = serde_json::from_str(document_type_json).map_err(|e| e.to_string())?;
        let validator = Validator::from_json(&json).map_err(|e| e.to_string())?;
        Ok(Arc::new(DocumentSchema(validator)))
    }
}
