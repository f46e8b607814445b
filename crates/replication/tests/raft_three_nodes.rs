//! A three-node group in one process: writes go through the leader and every store converges;
//! a follower answers `NotLeader` with the leader as hint; when the leader is cut off a new
//! one is elected and accepts writes, and no acknowledged write is lost, on any replica.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    History, NodeDirs, WAIT, assert_same_image, node, start_node, stop_node, store_image,
    wait_applied,
};
use openraft::ServerState;
use replication::raft::{InProcessRouter, RangeReplica, ReplicaOptions};
use replication::{ReplicateError, Replicator};

/// Waits until every replica applied the same last entry, at least `index`, and checks that
/// their stores are identical and hold every acknowledged write.
async fn assert_converged(replicas: &[&RangeReplica], index: u64, history: &History, when: &str) {
    for replica in replicas {
        wait_applied(replica, index).await;
    }
    // A leader may append its blank entry after `index`: wait until all agree on the end.
    let deadline = Instant::now() + WAIT;
    loop {
        let positions: Vec<_> = replicas
            .iter()
            .map(|r| r.store().applied().expect("applied").position)
            .collect();
        if positions.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: replicas stay apart at {positions:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = store_image(replicas[0].store());
    for replica in replicas {
        let who = format!("{when}, node {}", replica.node_id());
        history.check_store(replica.store(), &who);
        assert_same_image(&store_image(replica.store()), &first, &who);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_and_survive_leader_loss() {
    let root = tempfile::tempdir().expect("tempdir");
    let router = InProcessRouter::new();
    let options = ReplicaOptions::default();
    let mut replicas = BTreeMap::new();
    for id in 1..=3 {
        let replica = start_node(id, &NodeDirs::new(root.path(), id), &router, &options).await;
        replicas.insert(id, replica);
    }
    let members: BTreeMap<u64, _> = (1..=3).map(|id| (id, node(id))).collect();
    replicas[&1].initialize(members).await.expect("initialize");
    let leader = replicas[&1]
        .wait_for_leader(WAIT)
        .await
        .expect("leader elected");
    for replica in replicas.values() {
        let seen = replica.wait_for_leader(WAIT).await.expect("leader known");
        assert_eq!(
            seen,
            leader,
            "node {} follows the leader",
            replica.node_id()
        );
    }

    // Writes through the leader.
    replicas[&leader]
        .wait_until_writable(WAIT)
        .await
        .expect("leader accepts writes");
    let mut history = History::default();
    let leader_replicator = replicas[&leader].replicator();
    for _ in 0..50 {
        history
            .write(&leader_replicator, 2, 3)
            .await
            .expect("replicate on leader");
    }

    // A follower refuses and names the leader; nothing was proposed, so it is retryable.
    let follower = *replicas
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    let (batch, _) = history.next_batch(1, 1);
    match replicas[&follower].replicator().replicate(batch).await {
        Err(e @ ReplicateError::NotLeader { hint }) => {
            assert_eq!(hint, Some(leader));
            assert!(e.is_retryable());
        }
        other => panic!("a follower must answer NotLeader, got {other:?}"),
    }

    let all: Vec<&RangeReplica> = replicas.values().collect();
    let last = history.last_position.expect("wrote").index;
    assert_converged(&all, last, &history, "before the failover").await;

    // Cut the leader off. The other two elect a new leader, which accepts writes.
    let old_term = replicas[&leader].metrics().current_term;
    let cut_at = Instant::now();
    router.isolate(leader);
    let survivors: Vec<&RangeReplica> = replicas
        .values()
        .filter(|r| r.node_id() != leader)
        .collect();
    let new_leader = {
        let metrics = survivors[0]
            .raft()
            .wait(Some(WAIT))
            .metrics(
                |m| m.current_term > old_term && m.current_leader.is_some_and(|l| l != leader),
                "a new leader among the survivors",
            )
            .await
            .expect("new leader elected");
        metrics.current_leader.expect("leader")
    };
    let new_replica = &replicas[&new_leader];
    // A new leader accepts writes once a quorum acknowledged it; until then it answers
    // NotLeader without a hint (retryable).
    new_replica
        .wait_until_writable(WAIT)
        .await
        .expect("new leader accepts writes");
    let failover = cut_at.elapsed();
    println!("leader {leader} cut off; node {new_leader} accepts writes after {failover:?}");
    assert!(
        failover < Duration::from_secs(2),
        "failover took {failover:?}"
    );

    // The cut-off leader cannot commit: its write is never acknowledged.
    let (stranded, stranded_docs) = history.next_batch(1, 1);
    let old_replicator = replicas[&leader].replicator();
    let outcome = tokio::time::timeout(
        Duration::from_millis(500),
        old_replicator.replicate(stranded),
    )
    .await;
    assert!(
        !matches!(outcome, Ok(Ok(_))),
        "an isolated leader acknowledged a write: {outcome:?}"
    );

    let new_replicator = new_replica.replicator();
    for _ in 0..50 {
        history
            .write(&new_replicator, 2, 3)
            .await
            .expect("replicate on new leader");
    }
    let last = history.last_position.expect("wrote").index;
    assert_converged(&survivors, last, &history, "with the old leader cut off").await;

    // Reconnect the old leader: it steps down, drops its uncommitted entry and catches up.
    router.heal(leader);
    replicas[&leader]
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.current_leader == Some(new_leader) && m.state != ServerState::Leader,
            "old leader follows the new one",
        )
        .await
        .expect("old leader rejoins");
    history
        .write(&new_replicator, 1, 1)
        .await
        .expect("replicate after heal");
    let last = history.last_position.expect("wrote").index;
    assert_converged(&all, last, &history, "after the old leader rejoined").await;
    for (n, _) in stranded_docs {
        for replica in &all {
            assert!(
                replica
                    .store()
                    .get(&common::doc_id(n), store::Timestamp::MAX)
                    .expect("read")
                    .is_none(),
                "node {}: the unacknowledged write of the cut-off leader was applied",
                replica.node_id()
            );
        }
    }

    drop((leader_replicator, old_replicator, new_replicator));
    for (_, replica) in replicas {
        stop_node(replica, &router).await;
    }
}
