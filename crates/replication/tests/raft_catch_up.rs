//! Regression: a restarted single-node group must have applied every acknowledged write by the
//! time `open_single_node` returns.
//!
//! The state machine applies without fsync (the Raft log is the durable record), so after a
//! crash the store can be behind the log. Found by the txn crash test: the node reported
//! itself writable before re-applying the committed tail, a reader saw a stale store, and a
//! committer started there would have taken a stale timestamp floor. This test forces that
//! state: the store is rolled back to an old checkpoint while the log keeps every entry.

mod common;

use std::sync::Arc;

use common::{History, NodeDirs, WAIT};
use replication::RangeReplica;
use store::{KeySpan, MvccStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_single_node_applies_the_committed_tail_before_returning() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = NodeDirs::new(root.path(), 1);
    let mut history = History::default();

    let store = Arc::new(MvccStore::open_fjall(&dirs.store).expect("store"));
    let replica = RangeReplica::open_single_node(&dirs.replica, store.clone(), WAIT)
        .await
        .expect("open");
    let replicator = replica.replicator();
    for _ in 0..5 {
        history.write(&replicator, 2, 2).await.expect("replicate");
    }
    // The store as it was after five batches; everything later lives only in the log.
    let old = root.path().join("old.ckpt");
    store
        .checkpoint_to_file(&KeySpan::all(), &old)
        .expect("checkpoint");
    for _ in 0..20 {
        history.write(&replicator, 2, 2).await.expect("replicate");
    }
    let last = history.last_position.expect("wrote");
    drop(replicator);
    replica.shutdown().await.expect("shutdown");
    drop(replica);

    // Roll the store back behind the log, as a crash before the buffered applies reached disk
    // would leave it.
    store.restore_from_file(&old).expect("restore");
    assert!(store.applied().expect("applied").position.index < last.index);
    drop(store);

    let store = Arc::new(MvccStore::open_fjall(&dirs.store).expect("store"));
    let replica = RangeReplica::open_single_node(&dirs.replica, store.clone(), WAIT)
        .await
        .expect("reopen");
    // No waiting here: open_single_node itself must have caught up.
    let applied = store.applied().expect("applied").position;
    assert!(
        applied.index > last.index,
        "applied {applied:?}, but {last:?} was acknowledged (and a new term's entry follows it)"
    );
    history.check_store(&store, "right after open_single_node");
    replica.shutdown().await.expect("shutdown");
}
