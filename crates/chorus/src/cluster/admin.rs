//! Membership changes: add a node as a learner, promote it to voter once it caught up, remove a
//! voter. One request changes every group the same way (a node joins the cluster by joining
//! both the meta and the data range), each through its own leader.
//!
//! HTTP: `POST /api/cluster/membership` (admin key) with
//! `{"op": "addLearner", "node": 4, "peer": "127.0.0.1:7004"}`, `{"op": "promote", "node": 4}`
//! or `{"op": "remove", "node": 1}`; `chorus admin` is a command-line client of it.
//!
//! A learner is promoted only when its log is within [`PROMOTE_MAX_LAG_ENTRIES`] of the
//! leader's (lesson 12 of the seed systems: learners caught up before promotion), so a
//! promotion never leaves the group waiting on a replica that cannot yet acknowledge.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openraft::ChangeMembers;
use openraft::impls::BasicNode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::gateway::{error, require_admin};
use super::peer::{call_leader, not_leader};
use super::{GROUPS, Node};

/// Largest lag (in log entries) at which a learner may be promoted.
pub const PROMOTE_MAX_LAG_ENTRIES: u64 = 64;

/// One membership change, applied to every group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum MembershipChange {
    /// Adds `node` (reachable at `peer`) as a learner; it catches up from a snapshot and the log.
    AddLearner { node: u64, peer: String },
    /// Makes the learner `node` a voter.
    Promote { node: u64 },
    /// Removes `node` from the group.
    Remove { node: u64 },
}

/// Applies `change` to `group`, on this node if it leads the group.
pub(crate) async fn apply_local(
    node: &Node,
    group: u64,
    change: MembershipChange,
) -> Result<String, String> {
    let replica = node
        .replica(group)
        .ok_or_else(|| format!("no group {group}"))?;
    if !replica.is_leader() {
        return Err(not_leader(node, group));
    }
    let raft = replica.raft();
    let metrics = replica.metrics();
    let membership = metrics.membership_config.membership().clone();
    match change {
        MembershipChange::AddLearner { node: id, peer } => {
            if membership.voter_ids().any(|v| v == id) {
                return Ok(format!("node {id} is already a voter of group {group}"));
            }
            raft.add_learner(id, BasicNode::new(peer), false)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("node {id} added to group {group} as a learner"))
        }
        MembershipChange::Promote { node: id } => {
            if membership.voter_ids().any(|v| v == id) {
                return Ok(format!("node {id} is already a voter of group {group}"));
            }
            if !membership.learner_ids().any(|v| v == id) {
                return Err(format!("node {id} is not a learner of group {group}"));
            }
            let last = metrics.last_log_index.unwrap_or(0);
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map_or(0, |l| l.index());
            let lag = last.saturating_sub(matched);
            if lag > PROMOTE_MAX_LAG_ENTRIES {
                return Err(format!(
                    "node {id} is {lag} entries behind in group {group}; promote it once it caught up"
                ));
            }
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("node {id} is a voter of group {group}"))
        }
        MembershipChange::Remove { node: id } => {
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            if voters.contains(&id) {
                if voters.len() <= 1 {
                    return Err(format!("node {id} is the last voter of group {group}"));
                }
                raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
                    .map_err(|e| e.to_string())?;
            } else if membership.learner_ids().any(|v| v == id) {
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                return Ok(format!("node {id} is not a member of group {group}"));
            }
            Ok(format!("node {id} removed from group {group}"))
        }
    }
}

/// `POST /api/cluster/membership`.
pub(crate) async fn http_membership(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = require_admin(&node, &headers, "membership changes") {
        return *refused;
    }
    let change: MembershipChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("malformed membership change: {e}"),
            );
        }
    };
    let mut results = Vec::new();
    let text = String::from_utf8_lossy(&body).into_owned();
    for group in GROUPS {
        let path = format!("/admin/membership/{group}");
        let change = &change;
        let outcome: Result<String, String> =
            call_leader(&node, group, &path, &text, |node| async move {
                apply_local(node, group, change.clone()).await
            })
            .await;
        match outcome {
            Ok(message) => results.push(json!({ "range": group, "ok": message })),
            Err(e) => {
                results.push(json!({ "range": group, "error": e }));
                return (
                    StatusCode::CONFLICT,
                    axum::Json(json!({
                        "code": "MembershipChangeFailed",
                        "message": format!("range {group}: {e}"),
                        "results": results,
                    })),
                )
                    .into_response();
            }
        }
    }
    axum::Json(json!({ "results": results })).into_response()
}

/// `chorus admin`: sends one admin request to a node and prints the answer.
pub async fn run_cli(url: &str, admin_key: &str, request: AdminRequest) -> Result<(), String> {
    let client = replication::raft::http::PeerClient::new();
    let base = url.trim_end_matches('/');
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must be http://HOST:PORT, not {url:?}"))?;
    let (method, path, body) = match request {
        AdminRequest::Status => (http::Method::GET, "/api/cluster/status", Vec::new()),
        AdminRequest::Change(change) => (
            http::Method::POST,
            "/api/cluster/membership",
            serde_json::to_vec(&change).map_err(|e| e.to_string())?,
        ),
    };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"))
        .header(http::header::AUTHORIZATION, format!("Convex {admin_key}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(replication::raft::http::full(body))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.send(request))
        .await
        .map_err(|_| format!("{url} did not answer within 30 s"))?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    println!("{text}");
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}"))
    }
}

/// What `chorus admin` asks.
pub enum AdminRequest {
    Status,
    Change(MembershipChange),
}
