//! Deployed code, stored in the database so it is durable and replicated like data, and
//! activated in the same transaction as the catalog it goes with.
//!
//! - `_modules` (system table `txn::system::MODULES_TABLE`): one document per module version,
//!   `{path, source, hash, environment}`, at an id derived from path and hash, so a push can
//!   store new modules before they are active without disturbing the active ones.
//! - `_catalog` document 3: the active deployment, `{modules: [{path, hash, environment}],
//!   udfServerVersion}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use js::ModuleSet;
use sha2::{Digest, Sha256};
use txn::system::{CATALOG_TABLE, MODULES_TABLE};
use txn::{Object, Transaction, TxnError};
use value::{DocumentId, InternalId, TableNumber, Value};

/// One module of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub source: Arc<str>,
    /// Lowercase hex SHA-256 of the source followed by the source map, as the CLI computes it
    /// (`get_config_hashes` answers with it so unchanged modules are not uploaded again).
    pub hash: String,
    /// `isolate` (the only one Chorus runs).
    pub environment: String,
}

/// The code a deployment runs.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub modules: BTreeMap<String, Module>,
    pub code: Arc<ModuleSet>,
    pub udf_server_version: Option<String>,
}

impl Deployment {
    pub fn new(modules: BTreeMap<String, Module>, udf_server_version: Option<String>) -> Self {
        let code = Arc::new(ModuleSet {
            version: code_version(&modules),
            modules: modules
                .iter()
                .map(|(path, m)| (path.clone(), m.source.clone()))
                .collect(),
        });
        Self {
            modules,
            code,
            udf_server_version,
        }
    }
}

/// The hash the CLI gives a module: SHA-256 of `source` then `source_map`, lowercase hex.
pub fn module_hash(source: &str, source_map: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    if let Some(map) = source_map {
        hasher.update(map.as_bytes());
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A code version: a function of the modules' paths and hashes, so equal code has one version
/// (and one cached analysis).
pub fn code_version(modules: &BTreeMap<String, Module>) -> u64 {
    let mut hasher = Sha256::new();
    for (path, module) in modules {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(module.hash.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn deployment_id() -> DocumentId {
    txn::system::system_document_id(CATALOG_TABLE, 3)
}

fn module_id(path: &str, hash: &str) -> DocumentId {
    let mut hasher = Sha256::new();
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(hash.as_bytes());
    let digest = hasher.finalize();
    let mut internal = [0u8; 16];
    internal.copy_from_slice(&digest[..16]);
    let table = match TableNumber::new(MODULES_TABLE) {
        Ok(t) => t,
        Err(_) => unreachable!("the modules table number is non-zero"),
    };
    DocumentId::new(table, InternalId(internal))
}

fn string_field(doc: &Object, name: &str) -> Result<String, String> {
    match doc.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(format!("stored deployment: `{name}` is {other:?}")),
    }
}

/// The active deployment at `txn`'s snapshot, if code was ever deployed.
pub fn load(txn: &mut Transaction) -> Result<Option<Deployment>, String> {
    let Some(record) = txn.get(&deployment_id()).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let Some(Value::Array(entries)) = record.get("modules") else {
        return Err("stored deployment has no module list".into());
    };
    let mut modules = BTreeMap::new();
    for entry in entries {
        let Value::Object(entry) = entry else {
            return Err("stored deployment: a module entry is not an object".into());
        };
        let path = string_field(entry, "path")?;
        let hash = string_field(entry, "hash")?;
        let doc = txn
            .get(&module_id(&path, &hash))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("stored deployment: module {path} ({hash}) is missing"))?;
        let source = string_field(&doc, "source")?;
        modules.insert(
            path.clone(),
            Module {
                path,
                source: source.into(),
                hash,
                environment: string_field(entry, "environment")?,
            },
        );
    }
    let udf_server_version = match record.get("udfServerVersion") {
        Some(Value::String(v)) => Some(v.clone()),
        _ => None,
    };
    Ok(Some(Deployment::new(modules, udf_server_version)))
}

/// The stored source of module `path` with `hash`, if any version of the store has it.
pub fn stored_module(
    txn: &mut Transaction,
    path: &str,
    hash: &str,
) -> Result<Option<Module>, TxnError> {
    let Some(doc) = txn.get(&module_id(path, hash))? else {
        return Ok(None);
    };
    Ok(match (doc.get("source"), doc.get("environment")) {
        (Some(Value::String(source)), Some(Value::String(environment))) => Some(Module {
            path: path.to_string(),
            source: source.as_str().into(),
            hash: hash.to_string(),
            environment: environment.clone(),
        }),
        _ => None,
    })
}

/// Writes `next` as the active deployment in `txn`: its module documents, the deployment
/// record, and the removal of module documents only `previous` used.
pub fn activate(
    txn: &mut Transaction,
    next: &Deployment,
    previous: Option<&Deployment>,
) -> Result<(), TxnError> {
    for module in next.modules.values() {
        let id = module_id(&module.path, &module.hash);
        if txn.get(&id)?.is_none() {
            txn.put_system(
                id,
                Object::from([
                    ("path".into(), Value::String(module.path.clone())),
                    ("source".into(), Value::String(module.source.to_string())),
                    ("hash".into(), Value::String(module.hash.clone())),
                    (
                        "environment".into(),
                        Value::String(module.environment.clone()),
                    ),
                ]),
            )?;
        }
    }
    if let Some(previous) = previous {
        for module in previous.modules.values() {
            let still_used = next
                .modules
                .get(&module.path)
                .is_some_and(|m| m.hash == module.hash);
            if !still_used {
                txn.delete_system(module_id(&module.path, &module.hash))?;
            }
        }
    }
    let entries = next
        .modules
        .values()
        .map(|m| {
            Value::Object(Object::from([
                ("path".into(), Value::String(m.path.clone())),
                ("hash".into(), Value::String(m.hash.clone())),
                ("environment".into(), Value::String(m.environment.clone())),
            ]))
        })
        .collect();
    let mut record = Object::from([("modules".into(), Value::Array(entries))]);
    if let Some(version) = &next.udf_server_version {
        record.insert("udfServerVersion".into(), Value::String(version.clone()));
    }
    txn.put_system(deployment_id(), record)
}
