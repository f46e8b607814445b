//! Runs the engine conformance suite against the in-memory engine and fjall, plus the checks
//! that need one particular engine (an injected fsync failure, a real reopen from disk).

use std::path::PathBuf;
use std::sync::Arc;

use store::conformance::{self, Harness};
use store::{
    ApplyBatch, Commit, DocumentWrite, Durability, FjallEngine, KvEngine, LogPosition, MemEngine,
    MvccStore, StoreError, Timestamp,
};
use value::{DocumentId, InternalId, TableNumber};

struct MemHarness;

impl Harness for MemHarness {
    fn fresh(&mut self) -> Arc<dyn KvEngine> {
        Arc::new(MemEngine::new())
    }

    fn reopen(&mut self, engine: Arc<dyn KvEngine>) -> Arc<dyn KvEngine> {
        // A process restart re-reads everything from the engine; the engine itself keeps it.
        engine
    }
}

struct FjallHarness {
    root: tempfile::TempDir,
    next: usize,
    paths: Vec<(usize, PathBuf)>,
}

impl FjallHarness {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("tempdir"),
            next: 0,
            paths: Vec::new(),
        }
    }
}

impl Harness for FjallHarness {
    fn fresh(&mut self) -> Arc<dyn KvEngine> {
        self.next += 1;
        let path = self.root.path().join(format!("engine-{}", self.next));
        let engine: Arc<dyn KvEngine> = Arc::new(FjallEngine::open(&path).expect("open fjall"));
        let addr = Arc::as_ptr(&engine) as *const () as usize;
        self.paths.push((addr, path));
        engine
    }

    fn reopen(&mut self, engine: Arc<dyn KvEngine>) -> Arc<dyn KvEngine> {
        let addr = Arc::as_ptr(&engine) as *const () as usize;
        let at = self
            .paths
            .iter()
            // Addresses of dropped engines get reused; the newest entry is the live one.
            .rposition(|(a, _)| *a == addr)
            .expect("engine made by this harness");
        let (_, path) = self.paths.remove(at);
        assert_eq!(
            Arc::strong_count(&engine),
            1,
            "caller must drop other handles"
        );
        drop(engine);
        let reopened: Arc<dyn KvEngine> = Arc::new(FjallEngine::open(&path).expect("reopen"));
        let addr = Arc::as_ptr(&reopened) as *const () as usize;
        self.paths.push((addr, path));
        reopened
    }
}

#[test]
fn mem_engine_passes_conformance() {
    conformance::run_all(&mut MemHarness);
}

#[test]
fn fjall_engine_passes_conformance() {
    conformance::run_all(&mut FjallHarness::new());
}

fn one_doc_batch(index: u64, ts: u64) -> ApplyBatch {
    let table = TableNumber::new(10001).expect("valid");
    ApplyBatch {
        position: LogPosition { term: 1, index },
        commits: vec![Commit {
            ts: Timestamp(ts),
            documents: vec![DocumentWrite {
                id: DocumentId::new(table, InternalId([index as u8; 16])),
                body: Some(b"doc".to_vec()),
            }],
            index_entries: vec![],
        }],
        state: vec![],
        durability: Durability::Sync,
    }
}

#[test]
fn failed_fsync_poisons_the_store() {
    let engine = Arc::new(MemEngine::new());
    let store = MvccStore::open(engine.clone()).expect("open");
    store.apply(&one_doc_batch(1, 10)).expect("apply");
    engine.fail_next_sync();
    assert!(matches!(
        store.apply(&one_doc_batch(2, 20)),
        Err(StoreError::Engine(_))
    ));
    // Every later write is refused, durable or not, and the position did not move.
    let mut buffered = one_doc_batch(3, 30);
    buffered.durability = Durability::Buffered;
    assert!(matches!(store.apply(&buffered), Err(StoreError::Poisoned)));
    assert_eq!(store.applied().expect("applied").position.index, 1);
}

#[test]
fn fjall_store_survives_reopen_with_data_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = MvccStore::open_fjall(dir.path()).expect("open");
        for i in 1..=50 {
            store.apply(&one_doc_batch(i, i * 10)).expect("apply");
        }
    }
    let store = MvccStore::open_fjall(dir.path()).expect("reopen");
    let applied = store.applied().expect("applied");
    assert_eq!(applied.position.index, 50);
    assert_eq!(applied.max_commit_ts, Timestamp(500));
    let table = TableNumber::new(10001).expect("valid");
    for i in 1..=50u64 {
        let id = DocumentId::new(table, InternalId([i as u8; 16]));
        assert_eq!(store.get(&id, Timestamp(i * 10 - 1)).expect("get"), None);
        assert!(store.get(&id, Timestamp(i * 10)).expect("get").is_some());
    }
}

#[test]
fn checkpoint_file_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = MvccStore::in_memory();
    for i in 1..=5 {
        source.apply(&one_doc_batch(i, i)).expect("apply");
    }
    let path = dir.path().join("range.ckpt");
    let info = source
        .checkpoint_to_file(&store::KeySpan::all(), &path)
        .expect("checkpoint");
    let target = MvccStore::open_fjall(dir.path().join("target")).expect("open");
    let restored = target.restore_from_file(&path).expect("restore");
    assert_eq!(restored.records, info.records);
    assert_eq!(target.applied(), source.applied());
}
