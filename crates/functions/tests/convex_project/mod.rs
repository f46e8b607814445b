//! The fixture app `tests/convex-project` as the real Convex CLI bundles it, on a database whose
//! catalog matches its `convex/schema.ts`, run through [`FunctionRunner`] and the real
//! syscall layer ([`functions::DbSyscalls`]).
//!
//! Needs Node.js 20+ and npm: the bundle comes from `tests/convex-project/rust/bundle.rs`, the
//! one bundling helper every crate's tests include, so all suites share one bundle.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
// The bundle (one copy for every crate: tests/convex-project/rust/bundle.rs)

#[path = "../../../../tests/convex-project/rust/bundle.rs"]
mod fixture_bundle;

// Each test binary that includes this module uses a subset.
#[allow(unused_imports)]
pub use fixture_bundle::{bundle, project_dir};

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
        let db = Database::with_fixed_catalog(store, catalog(), committer);
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
        let mut stream = QueryStream::new(query, &*self.db().catalog()).expect("query of the app");
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
