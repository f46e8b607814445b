//! A single-node Raft group: writes are acknowledged with increasing positions and readable;
//! after a restart the log and the store come back, and a store that lost everything is
//! rebuilt from the log.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{History, NodeDirs, WAIT, node, start_node, stop_node};
use replication::raft::{InProcessRouter, ReplicaOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_replicates_and_recovers() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = NodeDirs::new(root.path(), 1);
    let router = InProcessRouter::new();
    let options = ReplicaOptions::default();
    let mut history = History::default();

    // First start: form the group, write 200 batches.
    let replica = start_node(1, &dirs, &router, &options).await;
    replica
        .initialize(BTreeMap::from([(1, node(1))]))
        .await
        .expect("initialize");
    assert_eq!(replica.wait_for_leader(WAIT).await.expect("leader"), 1);
    assert!(replica.is_leader());
    let replicator = replica.replicator();
    let started = Instant::now();
    for _ in 0..200 {
        history.write(&replicator, 3, 2).await.expect("replicate");
    }
    println!("200 batches replicated in {:?}", started.elapsed());
    let last = history.last_position.expect("wrote something");
    // `replicate` answers after the apply: the store is already there.
    assert_eq!(replica.store().applied().expect("applied").position, last);
    history.check_store(replica.store(), "first start");
    // Initializing again is a no-op, not an error.
    replica
        .initialize(BTreeMap::from([(1, node(1))]))
        .await
        .expect("initialize is idempotent");
    drop(replicator);
    stop_node(replica, &router).await;

    // Restart on the same directories: everything is back and writing continues after the
    // previous entries (the new term's leader first appends its blank entry).
    let replica = start_node(1, &dirs, &router, &options).await;
    replica
        .initialize(BTreeMap::from([(1, node(1))]))
        .await
        .expect("initialize after restart does nothing");
    assert_eq!(replica.wait_for_leader(WAIT).await.expect("leader"), 1);
    assert!(replica.store().applied().expect("applied").position.index >= last.index);
    history.check_store(replica.store(), "after restart");
    let next = history
        .write(&replica.replicator(), 1, 1)
        .await
        .expect("replicate after restart");
    assert!(
        next.term > last.term,
        "a restart starts a new term: {last:?} then {next:?}"
    );
    assert_eq!(
        next.index,
        last.index + 2,
        "new leader's blank entry, then this write"
    );
    stop_node(replica, &router).await;

    // Lose the store entirely (its writes are buffered; the log is the durable record): the
    // replica rebuilds it from the log on open.
    std::fs::remove_dir_all(&dirs.store).expect("remove store");
    let replica = start_node(1, &dirs, &router, &options).await;
    // `open` re-applies before returning; the new term's blank entry may follow at once.
    let applied = replica.store().applied().expect("re-applied on open");
    assert!(
        applied.position >= next,
        "re-applied up to the saved committed index"
    );
    history.check_store(replica.store(), "rebuilt from the log");
    stop_node(replica, &router).await;
}
