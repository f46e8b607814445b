//! openraft's own storage conformance suite (`openraft::testing::log::Suite`), run against the
//! fjall log store and the MVCC-store state machine.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use replication::raft::{LogStore, StateMachine, TypeConfig};
use store::MvccStore;
use tempfile::TempDir;

struct FjallBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for FjallBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(dir.path().join("raft-log")).expect("open log store");
        let store = Arc::new(MvccStore::open_fjall(dir.path().join("store")).expect("open store"));
        let sm =
            StateMachine::open(store, dir.path().join("snapshots")).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(FjallBuilder).await
}
