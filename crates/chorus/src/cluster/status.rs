//! Observability of replication: `GET /api/cluster/status` (JSON) and `GET /metrics`
//! (Prometheus text).
//!
//! The cluster status is assembled from every known node's own view (`POST /status` on its
//! peer address, answered from its Raft metrics): per range its leader and term, and per
//! replica its role, last log index, applied index and — from the leader's replication
//! progress — the index the leader knows it has (`matched_index`), the lag in entries
//! (leader's last log index − matched) and in milliseconds (since the leader last heard an
//! acknowledgement from it), the way `pg_stat_replication` shows sent, flushed and replayed
//! positions and their lag.

use std::time::Duration;

use futures_util::future::join_all;
use openraft::ServerState;
use serde_json::{Value, json};

use super::{DATA_GROUP, GROUPS, META_GROUP, Node};

/// How long the status waits for each node's answer.
const NODE_STATUS_TIMEOUT: Duration = Duration::from_millis(500);

fn group_name(group: u64) -> &'static str {
    match group {
        META_GROUP => "meta",
        DATA_GROUP => "data",
        _ => "range",
    }
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// This node's view of its replicas.
pub(crate) fn local(node: &Node) -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .filter_map(|group| {
            let replica = node.replica(*group)?;
            let m = replica.metrics();
            let membership = m.membership_config.membership();
            let voters: Vec<u64> = membership.voter_ids().collect();
            let learners: Vec<u64> = membership.learner_ids().collect();
            let matched: serde_json::Map<String, Value> = m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(id, log)| (id.to_string(), json!(log.map(|l| l.index()))))
                        .collect()
                })
                .unwrap_or_default();
            let acked_ms_ago: serde_json::Map<String, Value> = m
                .heartbeat
                .as_ref()
                .map(|h| {
                    h.iter()
                        .map(|(id, at)| {
                            let ago = at.as_ref().map(|at| {
                                use openraft::Instant as _;
                                at.elapsed().as_millis() as u64
                            });
                            (id.to_string(), json!(ago))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(json!({
                "range": group,
                "name": group_name(*group),
                "role": role(m.state),
                "term": m.current_term,
                "leader": m.current_leader,
                "lastLogIndex": m.last_log_index,
                "appliedIndex": m.last_applied.map(|l| l.index()),
                "snapshotIndex": m.snapshot.map(|l| l.index()),
                "purgedIndex": m.purged.map(|l| l.index()),
                "voters": voters,
                "learners": learners,
                "matchedIndex": matched,
                "ackedMsAgo": acked_ms_ago,
            }))
        })
        .collect();
    let serving = node.serving();
    json!({
        "node": node.config.node_id,
        "api": node.api_addr,
        "peer": node.config.peer_listen,
        "servesData": serving.is_some(),
        "servesTimestamps": node.tso_server().is_some(),
        "commits": serving.as_ref().map(|s| s.committer.stats().commits),
        "groups": groups,
    })
}

/// Every known node's view, merged per range.
pub(crate) async fn cluster(node: &Node) -> Value {
    let peers = node.known_peers();
    let views = join_all(peers.iter().map(|(id, addr)| async move {
        let view = if *id == node.config.node_id {
            Some(local(node))
        } else {
            node.client
                .call::<(), String>(addr, "/status", &(), NODE_STATUS_TIMEOUT)
                .await
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        };
        (*id, addr.clone(), view)
    }))
    .await;

    let nodes: Vec<Value> = views
        .iter()
        .map(|(id, peer, view)| {
            json!({
                "id": id,
                "peer": peer,
                "api": view.as_ref().map(|v| v["api"].clone()),
                "reachable": view.is_some(),
                "servesData": view.as_ref().map(|v| v["servesData"].clone()),
                "servesTimestamps": view.as_ref().map(|v| v["servesTimestamps"].clone()),
            })
        })
        .collect();

    let mut ranges = Vec::new();
    for group in GROUPS {
        let group_views: Vec<(u64, &Value)> = views
            .iter()
            .filter_map(|(id, _, view)| {
                let view = view.as_ref()?;
                let g = view["groups"]
                    .as_array()?
                    .iter()
                    .find(|g| g["range"] == json!(group))?;
                Some((*id, g))
            })
            .collect();
        // The leader's own view is authoritative for progress; without one, the highest term.
        let leader_view = group_views
            .iter()
            .filter(|(_, g)| g["role"] == "leader")
            .max_by_key(|(_, g)| g["term"].as_u64().unwrap_or(0))
            .map(|(id, g)| (*id, *g));
        let term = group_views
            .iter()
            .filter_map(|(_, g)| g["term"].as_u64())
            .max();
        let (voters, learners) = match leader_view.or_else(|| group_views.first().copied()) {
            Some((_, g)) => (g["voters"].clone(), g["learners"].clone()),
            None => (json!([]), json!([])),
        };
        let members: Vec<u64> = voters
            .as_array()
            .into_iter()
            .chain(learners.as_array())
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        let leader_last = leader_view.and_then(|(_, g)| g["lastLogIndex"].as_u64());
        let leader_purged = leader_view.and_then(|(_, g)| g["purgedIndex"].as_u64());
        let replicas: Vec<Value> = members
            .iter()
            .map(|member| {
                let own = group_views
                    .iter()
                    .find(|(id, _)| id == member)
                    .map(|(_, g)| *g);
                let matched =
                    leader_view.and_then(|(_, g)| g["matchedIndex"][member.to_string()].as_u64());
                let acked =
                    leader_view.and_then(|(_, g)| g["ackedMsAgo"][member.to_string()].as_u64());
                let is_voter = voters
                    .as_array()
                    .is_some_and(|v| v.contains(&json!(member)));
                json!({
                    "node": member,
                    "voter": is_voter,
                    "role": own.map(|g| g["role"].clone()),
                    "reachable": own.is_some(),
                    "lastLogIndex": own.map(|g| g["lastLogIndex"].clone()),
                    "appliedIndex": own.map(|g| g["appliedIndex"].clone()),
                    "snapshotIndex": own.map(|g| g["snapshotIndex"].clone()),
                    "matchedIndex": matched,
                    "lagEntries": leader_last.zip(matched).map(|(l, m)| l.saturating_sub(m)),
                    "lagMs": acked,
                })
            })
            .collect();
        ranges.push(json!({
            "id": group,
            "name": group_name(group),
            "leader": leader_view.map(|(id, _)| id),
            "term": term,
            "lastLogIndex": leader_last,
            "purgedIndex": leader_purged,
            "replicas": replicas,
        }));
    }
    json!({
        "node": node.config.node_id,
        "nodes": nodes,
        "ranges": ranges,
    })
}

/// Prometheus text exposition of this node's replicas and committer.
pub(crate) fn prometheus(node: &Node) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, u64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    };
    let id = node.config.node_id;
    let per_group = |f: &dyn Fn(&replication::raft::RaftMetrics) -> u64| -> Vec<(String, u64)> {
        GROUPS
            .iter()
            .filter_map(|g| {
                let m = node.replica(*g)?.metrics();
                Some((format!("node=\"{id}\",range=\"{}\"", group_name(*g)), f(&m)))
            })
            .collect()
    };
    gauge(
        "chorus_raft_term",
        "Current Raft term of the range on this node.",
        per_group(&|m| m.current_term),
    );
    gauge(
        "chorus_raft_is_leader",
        "1 when this node leads the range.",
        per_group(&|m| u64::from(m.state == ServerState::Leader)),
    );
    gauge(
        "chorus_raft_last_log_index",
        "Index of the last entry in this replica's log.",
        per_group(&|m| m.last_log_index.unwrap_or(0)),
    );
    gauge(
        "chorus_raft_applied_index",
        "Index of the last entry applied to this replica's store.",
        per_group(&|m| m.last_applied.map_or(0, |l| l.index())),
    );
    let mut lag = Vec::new();
    for g in GROUPS {
        let Some(replica) = node.replica(g) else {
            continue;
        };
        let m = replica.metrics();
        let last = m.last_log_index.unwrap_or(0);
        if let Some(replication) = &m.replication {
            for (peer, matched) in replication {
                lag.push((
                    format!(
                        "node=\"{id}\",range=\"{}\",replica=\"{peer}\"",
                        group_name(g)
                    ),
                    last.saturating_sub(matched.map_or(0, |l| l.index())),
                ));
            }
        }
    }
    gauge(
        "chorus_raft_replica_lag_entries",
        "On a leader: entries each replica is behind the leader's log.",
        lag,
    );
    let stats = node
        .serving()
        .map(|s| s.committer.stats())
        .unwrap_or_default();
    gauge(
        "chorus_committer_commits",
        "Transactions committed by this node's committer in its current term.",
        vec![(format!("node=\"{id}\""), stats.commits)],
    );
    gauge(
        "chorus_committer_groups",
        "Log entries (commit groups) replicated by this node's committer in its current term.",
        vec![(format!("node=\"{id}\""), stats.groups)],
    );
    gauge(
        "chorus_committer_conflicts",
        "Transactions rejected by validation in this node's current term.",
        vec![(format!("node=\"{id}\""), stats.conflicts)],
    );
    out
}
