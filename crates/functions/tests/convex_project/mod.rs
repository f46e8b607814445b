//! The fixture app `tests/convex-project` as the real Convex CLI bundles it, on a database whose
//! catalog matches its `convex/schema.ts`, run through [`FunctionRunner`] and the real
//! syscall layer ([`functions::DbSyscalls`]).
//!
//! Needs Node.js 20+ and npm: the bundle is made by `tests/convex-project/bundle.sh` exactly as
//! `crates/js/tests/real_bundles.rs` makes it — same output directory, lock and input stamp
//! under `CARGO_TARGET_TMPDIR` (shared by every crate of the workspace), so the two test
//! suites reuse one bundle and bundle at most once per change of the project's files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use functions::{FunctionError, FunctionRunner};
use js::{JsPool, JsPoolConfig, ModuleSet};
use replication::{BoxFuture, ReplicateError, Replicator};
use serde_json::{Value as Json, json};
use store::{ApplyBatch, Commit, Durability, LogPosition, MvccStore, Timestamp};
use txn::{Catalog, Clock, Committer, Database, LocalTso, TableDef, TimestampOracle};
use udf::{Query, QueryStream};
use value::{DocumentId, TableNumber, Value};

/// Upper bound on any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The bundle (same approach, paths and stamp as crates/js/tests/real_bundles.rs)

pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/convex-project")
}

/// The CLI's modules for the project, bundled at most once per change of the project's files.
pub fn bundle() -> Arc<ModuleSet> {
    static BUNDLE: OnceLock<Arc<ModuleSet>> = OnceLock::new();
    BUNDLE.get_or_init(build_bundle).clone()
}

fn build_bundle() -> Arc<ModuleSet> {
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            found,
            "`{tool}` is not available: the real-bundle tests need Node.js 20+ and npm to run the \
             Convex CLI (install them, e.g. `apt-get install -y nodejs npm`)"
        );
    }
    let project = project_dir();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = tmp.join("convex-project-bundle");
    let stamp_path = tmp.join("convex-project-bundle.stamp");
    let lock_path = tmp.join("convex-project-bundle.lock");
    std::fs::create_dir_all(tmp).expect("create CARGO_TARGET_TMPDIR");
    // One bundling at a time across test processes (and the js crate's tests); the others
    // wait and reuse the result.
    let lock = File::create(&lock_path).expect("create the bundle lock");
    lock.lock().expect("lock the bundle lock");
    let stamp = input_stamp(&project).to_string();
    let config_path = out.join("fullConfig.json");
    let fresh = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
    if !fresh || !config_path.exists() {
        let _ = std::fs::remove_file(&stamp_path);
        let script = project.join("bundle.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .expect("run bundle.sh");
        assert!(
            output.status.success(),
            "{} {} failed ({}):\n{}{}",
            script.display(),
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        std::fs::write(&stamp_path, &stamp).expect("write the bundle stamp");
    }
    let text = std::fs::read_to_string(&config_path).expect("read fullConfig.json");
    drop(lock);
    let config: Json = serde_json::from_str(&text).expect("fullConfig.json is JSON");
    let mut modules = BTreeMap::new();
    for module in config["modules"].as_array().into_iter().flatten() {
        let (Some(path), Some(source)) = (module["path"].as_str(), module["source"].as_str())
        else {
            panic!("module without path or source in fullConfig.json: {module}");
        };
        assert_eq!(module["environment"], "isolate", "{path}");
        modules.insert(path.to_string(), Arc::<str>::from(source));
    }
    Arc::new(ModuleSet {
        version: stamp.parse().unwrap_or(1),
        modules,
    })
}

/// A hash of every file the bundle depends on; must stay identical to the js crate's, which
/// shares the stamp file.
fn input_stamp(project: &Path) -> u64 {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "_generated" {
                    walk(&path, files);
                }
            } else {
                files.push(path);
            }
        }
    }
    let mut files: Vec<PathBuf> = ["package.json", "package-lock.json", ".npmrc", "bundle.sh"]
        .iter()
        .map(|name| project.join(name))
        .collect();
    walk(&project.join("convex"), &mut files);
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.strip_prefix(project)
            .unwrap_or(&file)
            .hash(&mut hasher);
        std::fs::read(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
            .hash(&mut hasher);
    }
    hasher.finish()
}

// ---------------------------------------------------------------------------------------------
// The database

pub const USERS: u32 = 10001;
pub const MESSAGES: u32 = 10002;
pub const COUNTERS: u32 = 10003;

pub fn table(number: u32) -> TableNumber {
    TableNumber::new(number).expect("valid table number")
}

/// The tables and indexes of `tests/convex-project/convex/schema.ts`, written by hand: the
/// CLI bundles the schema separately for the push, and the debug bundle (`fullConfig.json`)
/// does not contain it.
pub fn catalog() -> Catalog {
    Catalog::new([
        TableDef::new(table(USERS), "users").with_index("by_name", &["name"]),
        TableDef::new(table(MESSAGES), "messages")
            .with_index("by_author", &["author"])
            .with_index("by_channel_time", &["channel", "time"]),
        TableDef::new(table(COUNTERS), "counters").with_index("by_name", &["name"]),
    ])
}

/// A settable wall clock (ms), shared by the runner (`Date.now()`) and the timestamp oracle
/// (so that snapshots never run ahead of it).
#[derive(Clone)]
pub struct StepClock(pub Arc<AtomicU64>);

impl StepClock {
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for StepClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Applies every group to the in-memory store at once.
struct DirectReplicator {
    store: Arc<MvccStore>,
    index: AtomicU64,
}

impl Replicator for DirectReplicator {
    fn replicate(
        &self,
        commits: Vec<Commit>,
    ) -> BoxFuture<'_, Result<LogPosition, ReplicateError>> {
        Box::pin(async move {
            let position = LogPosition {
                term: 1,
                index: self.index.fetch_add(1, Ordering::SeqCst) + 1,
            };
            self.store.apply(&ApplyBatch {
                position,
                commits,
                state: vec![],
                durability: Durability::Buffered,
            })?;
            Ok(position)
        })
    }
}

pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(out) => out,
        Err(_) => panic!("no answer within {WAIT:?}"),
    }
}

/// Convex JSON → value (test input only).
pub fn v(json: Json) -> Value {
    Value::from_json(&json).expect("valid Convex JSON")
}

/// Convex JSON of an int64.
pub fn int64(n: i64) -> Json {
    Value::Int64(n).to_json()
}

/// The bundled app on a fresh in-memory database; must be created inside a Tokio runtime.
pub struct App {
    pub runner: FunctionRunner,
    pub clock: StepClock,
    pub code: Arc<ModuleSet>,
    _dir: tempfile::TempDir,
}

impl App {
    pub fn new(now_ms: u64) -> App {
        let code = bundle();
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = StepClock(Arc::new(AtomicU64::new(now_ms)));
        let store = Arc::new(MvccStore::in_memory());
        let replicator = Arc::new(DirectReplicator {
            store: store.clone(),
            index: AtomicU64::new(0),
        });
        let tso: Arc<dyn TimestampOracle> =
            Arc::new(LocalTso::with_clock(dir.path(), clock.clone(), 1_000).expect("tso"));
        let committer = Committer::start(replicator, tso, Timestamp::MIN).expect("committer");
        let db = Database {
            store,
            catalog: Arc::new(catalog()),
            committer,
        };
        let pool = JsPool::new(JsPoolConfig {
            threads: 1,
            ..JsPoolConfig::default()
        })
        .expect("JS pool");
        App {
            runner: FunctionRunner::new(pool, db)
                .with_seed(7)
                .with_clock(Arc::new(clock.clone())),
            clock,
            code,
            _dir: dir,
        }
    }

    pub fn db(&self) -> &Database {
        self.runner.database()
    }

    pub async fn try_query(&self, path: &str, args: Json) -> Result<Json, FunctionError> {
        bounded(self.runner.run_query(self.code.clone(), path, v(args)))
            .await
            .map(|outcome| outcome.value.to_json())
    }

    pub async fn try_mutation(&self, path: &str, args: Json) -> Result<Json, FunctionError> {
        bounded(self.runner.run_mutation(self.code.clone(), path, v(args)))
            .await
            .map(|outcome| outcome.value.to_json())
    }

    pub async fn query(&self, path: &str, args: Json) -> Json {
        self.try_query(path, args)
            .await
            .unwrap_or_else(|e| panic!("query {path} failed: {e:?}"))
    }

    pub async fn mutation(&self, path: &str, args: Json) -> Json {
        self.try_mutation(path, args)
            .await
            .unwrap_or_else(|e| panic!("mutation {path} failed: {e:?}"))
    }

    /// Every document of `table` (by name), in the order of a full table scan
    /// (`_creationTime`), read at the newest snapshot.
    pub fn dump(&self, table: &str) -> Vec<Json> {
        let mut txn = self.db().begin().expect("begin");
        self.scan(
            &mut txn,
            json!({ "type": "FullTableScan", "tableName": table, "order": null }),
        )
        .into_iter()
        .map(|doc| Value::Object(doc).to_json())
        .collect()
    }

    /// Runs a query source (the `source` JSON of the `1.0/queryStream` syscall) in `txn`.
    pub fn scan(&self, txn: &mut txn::Transaction, source: Json) -> Vec<txn::Object> {
        let query =
            Query::from_json(&json!({ "source": source, "operators": [] })).expect("valid query");
        let mut stream = QueryStream::new(query, &*self.db().catalog).expect("query of the app");
        let mut docs = Vec::new();
        while let Some(doc) = stream.next(txn).expect("scan") {
            docs.push(doc);
        }
        docs
    }

    /// Inserts documents directly through a transaction (no function), one commit; returns
    /// their ids. For data that only functions needing `1.0/runUdf` would write.
    pub async fn seed(&self, table_number: u32, docs: Vec<Json>) -> Vec<String> {
        let mut txn = self.db().begin().expect("begin");
        let mut ids = Vec::new();
        for doc in docs {
            let Value::Object(fields) = v(doc) else {
                panic!("a document must be an object");
            };
            ids.push(
                txn.insert(table(table_number), fields)
                    .expect("insert")
                    .encode(),
            );
        }
        self.commit(txn).await;
        ids
    }

    /// Deletes documents directly through a transaction, one commit.
    pub async fn delete(&self, ids: &[String]) {
        let mut txn = self.db().begin().expect("begin");
        for id in ids {
            let id = DocumentId::decode(id).expect("an id");
            txn.delete(&id).expect("delete");
        }
        self.commit(txn).await;
    }

    pub async fn commit(&self, txn: txn::Transaction) {
        let finished = txn.finish().expect("finish");
        bounded(self.db().committer.commit(finished))
            .await
            .expect("commit");
    }
}

/// The ConvexError data of a failed call.
pub fn error_data(e: &FunctionError) -> Option<Json> {
    match e {
        FunctionError::ConvexError { data, .. } => Some(data.to_json()),
        _ => None,
    }
}

/// The documents' fields other than `_id` and `_creationTime`.
pub fn without_system_fields(doc: &Json) -> Json {
    let mut doc = doc.clone();
    if let Some(fields) = doc.as_object_mut() {
        fields.remove("_id");
        fields.remove("_creationTime");
    }
    doc
}
