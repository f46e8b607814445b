//! Snapshot catch-up: with small snapshot and purge thresholds the leader checkpoints its
//! store and purges its log; a node added afterwards as a learner can only catch up by
//! installing the checkpoint, and ends with a store identical to the leader's. It then
//! follows the log. A restarted leader reopens from its snapshot and log, even when its store
//! was lost.

mod common;

use std::collections::BTreeMap;

use common::{
    History, NodeDirs, WAIT, assert_same_image, node, start_node, stop_node, store_image,
    wait_applied,
};
use replication::raft::{InProcessRouter, RangeReplica, ReplicaOptions};

async fn assert_same_store(a: &RangeReplica, b: &RangeReplica, history: &History, when: &str) {
    let index = a.store().applied().expect("applied").position.index;
    wait_applied(b, index).await;
    assert_eq!(
        a.store().applied().expect("applied").position,
        b.store().applied().expect("applied").position,
        "{when}: applied positions"
    );
    history.check_store(a.store(), &format!("{when}, node {}", a.node_id()));
    history.check_store(b.store(), &format!("{when}, node {}", b.node_id()));
    assert_same_image(&store_image(a.store()), &store_image(b.store()), when);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_catches_up_from_a_snapshot() {
    let root = tempfile::tempdir().expect("tempdir");
    let router = InProcessRouter::new();
    let options = ReplicaOptions {
        snapshot_logs_since_last: 20,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_entries: 1,
        replication_lag_threshold_entries: 40,
        ..ReplicaOptions::default()
    };
    let mut history = History::default();

    let leader_dirs = NodeDirs::new(root.path(), 1);
    let leader = start_node(1, &leader_dirs, &router, &options).await;
    leader
        .initialize(BTreeMap::from([(1, node(1))]))
        .await
        .expect("initialize");
    leader.wait_for_leader(WAIT).await.expect("leader");
    let replicator = leader.replicator();
    for _ in 0..100 {
        history.write(&replicator, 2, 2).await.expect("replicate");
    }
    // The leader snapshots every 20 entries and purges what the snapshot covers.
    let metrics = leader
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index() >= 60) && m.snapshot.is_some(),
            "leader purged its log below a snapshot",
        )
        .await
        .expect("leader snapshot and purge");
    let purged = metrics.purged.expect("purged").index();
    println!(
        "leader snapshot at {:?}, log purged through {purged}",
        metrics.snapshot
    );

    // A new, empty node joins as a learner. The entries it lacks are gone from the leader's
    // log, so it must be sent the snapshot.
    let learner = start_node(2, &NodeDirs::new(root.path(), 2), &router, &options).await;
    assert!(
        learner.store().applied().is_none(),
        "the learner starts empty"
    );
    leader
        .raft()
        .add_learner(2, node(2), true)
        .await
        .expect("add learner");
    assert!(router.snapshots_installed() >= 1, "no snapshot was sent");
    // The learner's metrics are published after the install completes, so they may trail
    // the leader's acknowledgement a little: wait for them rather than read them once.
    let learner_metrics = learner
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some(), "learner installed a snapshot")
        .await
        .expect("learner has a snapshot");
    let installed = learner_metrics.snapshot.expect("learner has a snapshot");
    assert!(
        installed.index() >= purged,
        "learner's snapshot at {installed} does not cover the leader's purged log ({purged})"
    );
    assert_same_store(&leader, &learner, &history, "after the snapshot install").await;

    // After the snapshot the learner follows the log.
    for _ in 0..10 {
        history.write(&replicator, 1, 1).await.expect("replicate");
    }
    assert_same_store(&leader, &learner, &history, "following the log").await;

    // The leader's log stays bounded: whatever was snapshotted is purged.
    let log_entries = {
        let m = leader.metrics();
        m.last_log_index.unwrap_or(0) - m.purged.map_or(0, |p| p.index())
    };
    assert!(
        log_entries <= 2 * 20,
        "leader keeps {log_entries} log entries"
    );

    // A restart of the leader reopens from its published snapshot and the log after it.
    drop(replicator);
    stop_node(leader, &router).await;
    let leader = start_node(1, &leader_dirs, &router, &options).await;
    leader
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some(), "snapshot found on restart")
        .await
        .expect("leader reopened with its snapshot");
    history.check_store(leader.store(), "leader after restart");

    // Lose the leader's store: on open it is restored from the snapshot file, and the log
    // after the snapshot is re-applied on top.
    stop_node(leader, &router).await;
    std::fs::remove_dir_all(&leader_dirs.store).expect("remove store");
    let leader = start_node(1, &leader_dirs, &router, &options).await;
    history.check_store(leader.store(), "leader rebuilt from snapshot and log");
    leader.wait_for_leader(WAIT).await.expect("leader");
    history
        .write(&leader.replicator(), 1, 1)
        .await
        .expect("replicate after rebuild");
    assert_same_store(&leader, &learner, &history, "after the leader's rebuild").await;

    stop_node(learner, &router).await;
    stop_node(leader, &router).await;
}
