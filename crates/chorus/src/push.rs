//! `npx convex deploy` (protocol doc §5): the deploy endpoints over the stored catalog and the
//! stored modules.
//!
//! - `start_push` loads and analyzes the pushed modules (functions, `schema.js`), computes the
//!   catalog the schema asks for and commits it at once with every new index on an existing
//!   table `Backfilling` and the new document types enforced on writes; a background task then
//!   backfills those indexes and checks every existing document against the new schema.
//! - `wait_for_schema` long-polls that task.
//! - `finish_push` commits, in one transaction, the new modules as the active deployment, the
//!   indexes enabled, and the indexes the schema no longer has dropped; then every later call
//!   runs the new code and subscriptions re-run.
//!
//! A push lives in memory between its calls (its id travels in the responses the CLI echoes):
//! if the node restarts in between, the CLI's next call fails and the push is simply re-run;
//! a backfilling index left in the catalog is taken over by the next push of the same index.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use api::{ApiError, DeployOp, ErrorCode};
use js::{FunctionKind, ModuleSet, Visibility};
use serde_json::{Value as Json, json};
use store::{IndexNumber, KeyRange, Order};
use tokio::sync::watch;
use txn::{
    CREATION_TIME, Catalog, ID, IndexDef, IndexScan, IndexState, TableDef, TransactError,
    Transaction, TxnError,
};
use value::{DocumentId, TableNumber, Value};

use crate::deployment::{self, Deployment, Module};
use crate::server::Server;

/// Where a push's schema work stands.
#[derive(Clone, Debug, PartialEq)]
pub enum PushState {
    InProgress {
        indexes_done: usize,
        indexes_total: usize,
    },
    Complete,
    Failed {
        error: String,
        table: Option<String>,
    },
}

/// A push between `start_push` and `finish_push`.
pub struct Push {
    deployment: Arc<Deployment>,
    /// Indexes backfilled by this push, to enable at finish.
    backfilled: Vec<(TableNumber, IndexNumber)>,
    /// Indexes the schema no longer has, to drop at finish.
    dropped: Vec<(TableNumber, IndexNumber)>,
    state: watch::Sender<PushState>,
}

static NEXT_PUSH: AtomicU64 = AtomicU64::new(1);

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

fn unavailable(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, message.to_string())
}

/// One deploy endpoint.
pub async fn handle(server: &Server, op: DeployOp, body: Json) -> Result<Json, ApiError> {
    match op {
        DeployOp::GetConfigHashes => Ok(config_hashes(server)),
        // No pre-push warnings: an empty evaluation is what the CLI accepts for "nothing to
        // warn about" (protocol doc §5.4).
        DeployOp::EvaluateSchema => Ok(json!({
            "componentSchemaEvaluations": {},
            "newComponentDefinitions": [],
        })),
        DeployOp::EvaluatePush => Ok(json!({ "schemaChange": {} })),
        DeployOp::StartPush => start_push(server, &body).await,
        DeployOp::WaitForSchema => wait_for_schema(server, &body).await,
        DeployOp::FinishPush => finish_push(server, &body).await,
    }
}

fn config_hashes(server: &Server) -> Json {
    let deployment = server.deployment();
    let hashes: Vec<Json> = deployment
        .iter()
        .flat_map(|d| d.modules.values())
        .map(|m| json!({"path": m.path, "hash": m.hash, "environment": m.environment}))
        .collect();
    json!({
        "config": {"functions": "convex/"},
        "moduleHashes": hashes,
        "udfServerVersion": deployment.as_ref().and_then(|d| d.udf_server_version.clone()),
        "nodeVersion": null,
    })
}

fn str_field<'a>(obj: &'a Json, name: &str, what: &str) -> Result<&'a str, ApiError> {
    obj.get(name)
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("{what}: `{name}` must be a string")))
}

/// A module of the push, checked: a relative `.js` path, the isolate environment.
fn pushed_module(config: &Json) -> Result<Module, ApiError> {
    let path = str_field(config, "path", "module")?;
    if path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        || !path.ends_with(".js")
    {
        return Err(bad(format!("invalid module path {path:?}")));
    }
    let source = str_field(config, "source", "module")?;
    let source_map = config.get("sourceMap").and_then(Json::as_str);
    let environment = config
        .get("environment")
        .and_then(Json::as_str)
        .unwrap_or("isolate");
    if environment != "isolate" {
        return Err(bad(format!(
            "module {path} runs in the {environment:?} environment (\"use node\"), which Chorus does not support"
        )));
    }
    Ok(Module {
        path: path.to_string(),
        source: source.into(),
        hash: deployment::module_hash(source, source_map),
        environment: environment.to_string(),
    })
}

fn begin(server: &Server) -> Result<Transaction, ApiError> {
    server.db().begin().map_err(unavailable)
}

/// The modules of the push: changed ones from the body, unchanged ones from the store.
fn collect_modules(server: &Server, app: &Json) -> Result<BTreeMap<String, Module>, ApiError> {
    let mut modules = BTreeMap::new();
    for config in app
        .get("changedModules")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("appDefinition.changedModules must be an array"))?
    {
        let module = pushed_module(config)?;
        modules.insert(module.path.clone(), module);
    }
    let unchanged = app
        .get("unchangedModuleHashes")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if !unchanged.is_empty() {
        let mut txn = begin(server)?;
        for entry in unchanged {
            let path = str_field(&entry, "path", "unchanged module")?;
            let hash = str_field(&entry, "sha256", "unchanged module")?;
            let module = deployment::stored_module(&mut txn, path, hash)
                .map_err(unavailable)?
                .ok_or_else(|| {
                    bad(format!(
                        "module {path} was sent as unchanged ({hash}) but this deployment does not have it; push again"
                    ))
                })?;
            modules.insert(path.to_string(), module);
        }
    }
    Ok(modules)
}

/// What `schema.js` asks for, as tables keyed by name.
fn desired_tables(schema_json: Option<&str>) -> Result<Vec<TableDef>, ApiError> {
    let Some(json) = schema_json else {
        return Ok(Vec::new());
    };
    let catalog = udf::catalog_from_schema(json, txn::system::FIRST_USER_TABLE)
        .map_err(|e| bad(format!("schema.js: {e}")))?;
    Ok(catalog.tables().cloned().collect())
}

fn same_fields(a: &IndexDef, b: &IndexDef) -> bool {
    a.fields == b.fields
}

/// The catalog after the push's start: tables and indexes of the schema added (new indexes on
/// existing tables backfilling), document types replaced; indexes the schema dropped are kept
/// until the finish. Returns it with the indexes to backfill and to drop, and the index diff
/// the CLI prints.
struct Plan {
    catalog: Catalog,
    backfill: Vec<(TableNumber, IndexNumber)>,
    dropped: Vec<(TableNumber, IndexNumber)>,
    validate: Vec<TableNumber>,
    added_json: Vec<Json>,
    removed_json: Vec<Json>,
}

fn plan(current: &Catalog, desired: &[TableDef]) -> Result<Plan, ApiError> {
    let mut next = current.clone();
    let mut plan_backfill = Vec::new();
    let mut dropped = Vec::new();
    let mut validate = Vec::new();
    let mut added_json = Vec::new();
    let mut removed_json = Vec::new();
    for want in desired {
        let existing = current.table_named(&want.name).cloned();
        let is_new_table = existing.is_none();
        let mut table = match existing {
            Some(t) => t,
            None => {
                let number = txn::system::next_table_number(&next).map_err(bad)?;
                next.next_table = number.get() + 1;
                TableDef::new(number, &want.name)
            }
        };
        let mut indexes = vec![table.indexes[0].clone()];
        for index in want.indexes.iter().filter(|i| i.number != IndexNumber(1)) {
            let kept = table
                .indexes
                .iter()
                .find(|i| i.name == index.name && same_fields(i, index));
            match kept {
                Some(kept) => {
                    if kept.state == IndexState::Backfilling {
                        plan_backfill.push((table.number, kept.number));
                    }
                    indexes.push(kept.clone());
                }
                None => {
                    let number = next.allocate_index_number();
                    let state = if is_new_table {
                        IndexState::Enabled
                    } else {
                        plan_backfill.push((table.number, number));
                        IndexState::Backfilling
                    };
                    added_json.push(json!({
                        "name": format!("{}.{}", want.name, index.name),
                        "type": "database",
                        "fields": index.fields.iter().map(|f| f.join(".")).collect::<Vec<_>>(),
                    }));
                    indexes.push(IndexDef {
                        number,
                        name: index.name.clone(),
                        fields: index.fields.clone(),
                        state,
                    });
                }
            }
        }
        for old in table.indexes.iter().skip(1) {
            let still = indexes.iter().any(|i| i.number == old.number);
            if !still {
                dropped.push((table.number, old.number));
                removed_json.push(json!({
                    "name": format!("{}.{}", table.name, old.name),
                    "type": "database",
                    "fields": old.fields.iter().map(|f| f.join(".")).collect::<Vec<_>>(),
                }));
                // Kept (and maintained) until the finish: the old code may still query it.
                indexes.push(old.clone());
            }
        }
        table.indexes = indexes;
        if want.document_type != table.document_type {
            if want.schema.is_some() && !is_new_table {
                validate.push(table.number);
            }
            table.schema = want.schema.clone();
            table.document_type = want.document_type.clone();
        }
        next.insert(table);
    }
    // Tables the schema does not mention keep their data and lose their schema check.
    let named: Vec<&str> = desired.iter().map(|t| t.name.as_str()).collect();
    for table in current.tables() {
        if table.number.get() >= txn::system::FIRST_USER_TABLE
            && !named.contains(&table.name.as_str())
        {
            let mut table = table.clone();
            if table.document_type.is_some() {
                table.schema = None;
                table.document_type = None;
                next.insert(table);
            }
        }
    }
    Ok(Plan {
        catalog: next,
        backfill: plan_backfill,
        dropped,
        validate,
        added_json,
        removed_json,
    })
}

/// Runs `change` in a fresh transaction and commits it, re-running it on conflicts
/// (`Database::transact`).
async fn transact<T, E>(
    db: &txn::Database,
    mut change: impl FnMut(&mut Transaction) -> Result<T, E>,
) -> Result<T, TransactError<E>> {
    db.transact(|mut txn| {
        let out = change(&mut txn).map(|value| (value, txn));
        std::future::ready(out)
    })
    .await
    .map(|(value, _)| value)
}

/// [`transact`] for the deploy endpoints: `change`'s own error as it is, a commit failure as
/// `Unavailable`.
async fn commit_with_retry(
    server: &Server,
    change: impl FnMut(&mut Transaction) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    transact(server.db(), change).await.map_err(|e| match e {
        TransactError::Body(e) => e,
        other => unavailable(other),
    })
}

fn kind_name(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Query => "Query",
        FunctionKind::Mutation => "Mutation",
        FunctionKind::Action => "Action",
    }
}

async fn start_push(server: &Server, body: &Json) -> Result<Json, ApiError> {
    let dry_run = body.get("dryRun").and_then(Json::as_bool).unwrap_or(false);
    if body
        .get("componentDefinitions")
        .and_then(Json::as_array)
        .is_some_and(|c| !c.is_empty())
    {
        return Err(bad("components are not supported by Chorus yet"));
    }
    let app = body
        .get("appDefinition")
        .ok_or_else(|| bad("start_push: `appDefinition` is missing"))?;
    let modules = collect_modules(server, app)?;
    let udf_server_version = app
        .get("udfServerVersion")
        .and_then(Json::as_str)
        .map(str::to_string);
    let deployment = Arc::new(Deployment::new(modules, udf_server_version.clone()));

    // Analyze the code with its schema module.
    let mut analyzed = deployment.code.modules.clone();
    if let Some(schema) = app.get("schema").filter(|s| !s.is_null()) {
        let schema = pushed_module(schema)?;
        analyzed.insert("schema.js".into(), schema.source);
    }
    let analysis_set = Arc::new(ModuleSet {
        version: deployment.code.version ^ 0x5c4e_3a00_0000_0001,
        modules: analyzed,
    });
    let analysis = server
        .runner
        .pool()
        .analyze_code(analysis_set, Arc::new(BTreeMap::new()))
        .await
        .map_err(|e| bad(format!("Loading the pushed modules failed: {e}")))?;
    let desired = desired_tables(analysis.schema_json.as_deref())?;

    let txn = begin(server)?;
    let current = txn.catalog().clone();
    drop(txn);
    let plan = plan(&current, &desired)?;

    let mut functions: BTreeMap<String, Vec<Json>> = deployment
        .modules
        .keys()
        .filter(|p| !p.starts_with("_deps/"))
        .map(|p| (p.clone(), Vec::new()))
        .collect();
    for f in &analysis.functions {
        functions.entry(f.module.clone()).or_default().push(json!({
            "name": f.name,
            "pos": null,
            "udfType": kind_name(f.kind),
            "visibility": {"kind": match f.visibility { Visibility::Public => "public", Visibility::Internal => "internal" }},
            "args": f.args_json,
            "returns": f.returns_json,
        }));
    }
    let functions: serde_json::Map<String, Json> = functions
        .into_iter()
        .map(|(path, list)| {
            (
                path,
                json!({"functions": list, "httpRoutes": null, "cronSpecs": null, "sourceMapped": null}),
            )
        })
        .collect();

    let push_id = NEXT_PUSH.fetch_add(1, Ordering::Relaxed);
    let schema_change = json!({
        "allocatedComponentIds": {},
        "schemaIds": {},
        "indexDiffs": {"": {"added_indexes": plan.added_json, "removed_indexes": plan.removed_json}},
        "chorusPushId": push_id,
    });
    let response = json!({
        "environmentVariables": {},
        "externalDepsId": null,
        "componentDefinitionPackages": {},
        "appAuth": [],
        "analysis": {
            "": {
                "definition": {"path": "", "definitionType": {"type": "app"}, "childComponents": [],
                               "httpMounts": {}, "exports": {"type": "branch", "branch": []}},
                "schema": null,
                "functions": functions,
                "udfConfig": {"serverVersion": udf_server_version, "importPhaseRngSeed": null, "importPhaseUnixTimestamp": null},
            }
        },
        "app": {"definitionPath": "", "componentPath": "", "args": {}, "childComponents": {},
                "httpRoutes": {"httpModuleRoutes": null, "mounts": []}, "exports": {}},
        "schemaChange": schema_change,
        "chorusPushId": push_id,
    });
    if dry_run {
        return Ok(response);
    }

    let next_catalog = plan.catalog.clone();
    commit_with_retry(server, |txn| {
        // The catalog may have moved since it was read (a table created by an insert): keep
        // what the plan did not decide.
        let mut next = (**txn.catalog()).clone();
        for table in next_catalog.tables() {
            next.insert(table.clone());
        }
        next.next_index = next.next_index.max(next_catalog.next_index);
        next.next_table = next.next_table.max(next_catalog.next_table);
        txn.set_catalog(next).map_err(|e| bad(e.to_string()))
    })
    .await?;

    let total = plan.backfill.len();
    let (state, _) = watch::channel(if total == 0 && plan.validate.is_empty() {
        PushState::Complete
    } else {
        PushState::InProgress {
            indexes_done: 0,
            indexes_total: total,
        }
    });
    let push = Arc::new(Push {
        deployment,
        backfilled: plan.backfill.clone(),
        dropped: plan.dropped,
        state,
    });
    {
        let mut pushes = server.pushes();
        // Bounded: a CLI that gives up mid-push leaves its entry; keep the newest few.
        while pushes.len() >= 8 {
            let Some(oldest) = pushes.keys().min().copied() else {
                break;
            };
            pushes.remove(&oldest);
        }
        pushes.insert(push_id, push.clone());
    }
    if total > 0 || !plan.validate.is_empty() {
        let db = server.db().clone();
        let previous_types: BTreeMap<TableNumber, TableDef> =
            current.tables().map(|t| (t.number, t.clone())).collect();
        tokio::spawn(schema_work(
            db,
            push,
            plan.backfill,
            plan.validate,
            previous_types,
        ));
    }
    Ok(response)
}

/// Backfills the push's new indexes, then checks existing documents against the new schema.
async fn schema_work(
    db: txn::Database,
    push: Arc<Push>,
    backfill: Vec<(TableNumber, IndexNumber)>,
    validate: Vec<TableNumber>,
    previous: BTreeMap<TableNumber, TableDef>,
) {
    let total = backfill.len();
    for (done, (table, index)) in backfill.iter().enumerate() {
        if let Err(e) = backfill_index(&db, *table, *index).await {
            push.state.send_replace(PushState::Failed {
                error: format!("backfilling an index failed: {e}"),
                table: None,
            });
            return;
        }
        push.state.send_replace(PushState::InProgress {
            indexes_done: done + 1,
            indexes_total: total,
        });
    }
    for table in validate {
        match validate_table(&db, table).await {
            Ok(None) => {}
            Ok(Some((name, error))) => {
                // Put the old document types back: the push failed.
                let revert = revert_schema(&db, &previous).await;
                let error = match revert {
                    Ok(()) => error,
                    Err(e) => format!("{error} (and restoring the previous schema failed: {e})"),
                };
                push.state.send_replace(PushState::Failed {
                    error,
                    table: Some(name),
                });
                return;
            }
            Err(e) => {
                push.state.send_replace(PushState::Failed {
                    error: format!("validating existing documents failed: {e}"),
                    table: None,
                });
                return;
            }
        }
    }
    push.state.send_replace(PushState::Complete);
}

const BACKFILL_PAGE_DOCUMENTS: usize = 256;

fn page(table: TableNumber, cursor: Option<Vec<u8>>) -> IndexScan {
    IndexScan {
        table,
        index: IndexNumber(1),
        range: KeyRange::all(),
        order: Order::Asc,
        limit: BACKFILL_PAGE_DOCUMENTS,
        cursor,
    }
}

fn id_of(doc: &txn::Object) -> Result<DocumentId, String> {
    match doc.get(ID) {
        Some(Value::String(s)) => DocumentId::decode(s).map_err(|e| e.to_string()),
        _ => Err("a stored document has no _id".into()),
    }
}

/// Writes entries of `index` for every document of `table`, a page per transaction.
async fn backfill_index(
    db: &txn::Database,
    table: TableNumber,
    index: IndexNumber,
) -> Result<(), String> {
    let mut cursor = None;
    loop {
        let next = transact(db, |txn| {
            let scan = txn
                .scan(&page(table, cursor.clone()))
                .map_err(|e| e.to_string())?;
            for (_, doc) in &scan.rows {
                txn.backfill_index_entry(&id_of(doc)?, index)
                    .map_err(|e: TxnError| e.to_string())?;
            }
            Ok::<_, String>(scan.cursor)
        })
        .await
        .map_err(|e| e.to_string())?;
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(()),
        }
    }
}

/// The first document of `table` its schema refuses: (table name, message).
async fn validate_table(
    db: &txn::Database,
    table: TableNumber,
) -> Result<Option<(String, String)>, String> {
    let mut cursor = None;
    loop {
        let mut txn = db.begin().map_err(|e| e.to_string())?;
        let catalog = txn.catalog().clone();
        let Some(def) = catalog.table(table) else {
            return Ok(None);
        };
        let Some(schema) = &def.schema else {
            return Ok(None);
        };
        let scan = txn.scan(&page(table, cursor)).map_err(|e| e.to_string())?;
        for (_, doc) in &scan.rows {
            let mut fields = doc.clone();
            fields.remove(ID);
            fields.remove(CREATION_TIME);
            if let Err(message) = schema.0.check(&fields, &catalog) {
                let id = doc.get(ID).map(|v| format!("{v:?}")).unwrap_or_default();
                return Ok(Some((
                    def.name.clone(),
                    format!(
                        "Document with ID {id} in table \"{}\" does not match the schema: {message}",
                        def.name
                    ),
                )));
            }
        }
        match scan.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(None),
        }
    }
}

async fn revert_schema(
    db: &txn::Database,
    previous: &BTreeMap<TableNumber, TableDef>,
) -> Result<(), String> {
    transact(db, |txn| {
        let mut next = (**txn.catalog()).clone();
        let tables: Vec<TableDef> = next.tables().cloned().collect();
        for mut table in tables {
            let old = previous.get(&table.number);
            table.schema = old.and_then(|t| t.schema.clone());
            table.document_type = old.and_then(|t| t.document_type.clone());
            next.insert(table);
        }
        txn.set_catalog(next).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
}

fn push_id(value: Option<&Json>) -> Result<u64, ApiError> {
    value
        .and_then(|v| v.get("chorusPushId"))
        .and_then(Json::as_u64)
        .ok_or_else(|| {
            bad("this push was not started on this server (no chorusPushId); push again")
        })
}

fn find_push(server: &Server, id: u64) -> Result<Arc<Push>, ApiError> {
    server.pushes().get(&id).cloned().ok_or_else(|| {
        bad(format!(
            "push {id} is unknown here (the server restarted?); push again"
        ))
    })
}

fn state_json(state: &PushState) -> Json {
    match state {
        PushState::InProgress {
            indexes_done,
            indexes_total,
        } => json!({
            "type": "inProgress",
            "components": {"": {
                "schemaValidationComplete": false,
                "indexesComplete": indexes_done,
                "indexesTotal": indexes_total,
            }},
        }),
        PushState::Complete => json!({"type": "complete"}),
        PushState::Failed { error, table } => json!({
            "type": "failed",
            "error": error,
            "componentPath": "",
            "tableName": table,
        }),
    }
}

async fn wait_for_schema(server: &Server, body: &Json) -> Result<Json, ApiError> {
    let push = find_push(server, push_id(body.get("schemaChange"))?)?;
    let timeout_ms = body
        .get("timeoutMs")
        .and_then(Json::as_u64)
        .unwrap_or(10_000)
        .min(30_000);
    let mut state = push.state.subscribe();
    let _ = tokio::time::timeout(
        Duration::from_millis(timeout_ms),
        state.wait_for(|s| !matches!(s, PushState::InProgress { .. })),
    )
    .await;
    let current = state.borrow().clone();
    Ok(state_json(&current))
}

async fn finish_push(server: &Server, body: &Json) -> Result<Json, ApiError> {
    let id = push_id(body.get("startPush"))?;
    let push = find_push(server, id)?;
    let state = push.state.borrow().clone();
    match state {
        PushState::Complete => {}
        PushState::Failed { error, .. } => return Err(bad(format!("the push failed: {error}"))),
        PushState::InProgress { .. } => {
            return Err(bad(
                "the push's indexes are not backfilled yet (call wait_for_schema)",
            ));
        }
    }
    let dry_run = body.get("dryRun").and_then(Json::as_bool).unwrap_or(false);
    let response = json!({"authDiff": {"added": [], "removed": []}, "definitionDiffs": {}, "componentDiffs": {}});
    if dry_run {
        return Ok(response);
    }
    let previous = server.deployment();
    commit_with_retry(server, |txn| {
        let mut next = (**txn.catalog()).clone();
        let tables: Vec<TableDef> = next.tables().cloned().collect();
        for mut table in tables {
            table
                .indexes
                .retain(|i| !push.dropped.contains(&(table.number, i.number)));
            for index in &mut table.indexes {
                if push.backfilled.contains(&(table.number, index.number)) {
                    index.state = IndexState::Enabled;
                }
            }
            next.insert(table);
        }
        txn.set_catalog(next).map_err(|e| bad(e.to_string()))?;
        deployment::activate(txn, &push.deployment, previous.as_deref()).map_err(|e| match e {
            TxnError::Limit(m) => ApiError::new(ErrorCode::PayloadTooLarge, m),
            other => bad(other.to_string()),
        })
    })
    .await?;
    server.set_deployment(push.deployment.clone());
    server.pushes().remove(&id);
    Ok(response)
}
