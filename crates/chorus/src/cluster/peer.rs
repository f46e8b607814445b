//! The node-to-node server (`--peer-listen`) and the calls nodes make to each other's leaders.
//!
//! Routes (every body and answer is postcard; answers are `Result<T, String>`):
//!
//! | route | what |
//! |---|---|
//! | `POST /raft/<group>/<rpc>` | Raft RPCs of a group (`replication::raft::http`) |
//! | `POST /node/info` | this node's [`NodeInfo`] |
//! | `POST /tso/reserve` `n` | `n` timestamps from the meta leader's oracle |
//! | `POST /tso/fence` `ts` | fences the oracle past `ts` |
//! | `POST /meta/write` `[MetaOp]` | a write to the meta range's map, on its leader |
//! | `POST /status` | this node's view of its replicas (JSON text) |
//! | `POST /admin/membership/<group>` | a membership change, on the group's leader |
//! | `POST /checksum/<group>` | SHA-256 of this replica's whole store at its applied index |
//!
//! A call that reaches a node which does not lead answers `Err("not the leader ...")`; the
//! callers here retry at the leader their own replica names, a bounded number of times.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use replication::raft::MetaOp;
use replication::raft::http::{encode_answer, serve_rpc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{META_GROUP, Node, admin, status};

/// How long one peer call may take (snapshots excepted: they stream under openraft's limit).
pub(crate) const PEER_CALL_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a caller keeps looking for a leader before giving up.
const FIND_LEADER_TIMEOUT: Duration = Duration::from_millis(3_000);

pub(crate) fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/raft/{group}/{rpc}", post(raft_rpc))
        .route("/node/info", post(node_info))
        .route("/tso/reserve", post(tso_reserve))
        .route("/tso/fence", post(tso_fence))
        .route("/meta/write", post(meta_write_rpc))
        .route("/status", post(local_status))
        .route("/admin/membership/{group}", post(membership))
        .route("/checksum/{group}", post(checksum))
        .with_state(node)
}

fn octets(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response()
}

fn answer<T: Serialize>(result: Result<T, String>) -> Response {
    octets(encode_answer(&result))
}

/// Decodes a request body; the error is the 400 answer to give.
fn decode<T: DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    postcard::from_bytes(body).map_err(|e| {
        Box::new((StatusCode::BAD_REQUEST, format!("malformed request: {e}")).into_response())
    })
}

async fn raft_rpc(
    State(node): State<Arc<Node>>,
    Path((group, rpc)): Path<(u64, String)>,
    body: Body,
) -> Response {
    let Some(replica) = node.replica(group) else {
        return (StatusCode::NOT_FOUND, format!("no group {group} here")).into_response();
    };
    match serve_rpc(replica.raft(), replica.dir(), &rpc, body).await {
        Ok(bytes) => octets(bytes),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn node_info(State(node): State<Arc<Node>>) -> Response {
    answer(Ok(node.info()))
}

async fn tso_reserve(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let n: u64 = match decode(&body) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let result = match node.tso_server() {
        Some(tso) => tso.reserve(n).await,
        None => Err(not_leader(&node, META_GROUP)),
    };
    answer(result)
}

async fn tso_fence(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let ts: u64 = match decode(&body) {
        Ok(ts) => ts,
        Err(r) => return *r,
    };
    let result = match node.tso_server() {
        Some(tso) => tso.fence(ts).await,
        None => Err(not_leader(&node, META_GROUP)),
    };
    answer(result)
}

async fn meta_write_rpc(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let ops: Vec<MetaOp> = match decode(&body) {
        Ok(ops) => ops,
        Err(r) => return *r,
    };
    answer(local_meta_write(&node, ops).await)
}

async fn local_status(State(node): State<Arc<Node>>) -> Response {
    answer(Ok(status::local(&node).to_string()))
}

async fn membership(
    State(node): State<Arc<Node>>,
    Path(group): Path<u64>,
    body: Bytes,
) -> Response {
    // JSON inside the postcard envelope: the change is an internally tagged enum.
    let text: String = match decode(&body) {
        Ok(text) => text,
        Err(r) => return *r,
    };
    let change: admin::MembershipChange = match serde_json::from_str(&text) {
        Ok(change) => change,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("malformed change: {e}")).into_response();
        }
    };
    answer(admin::apply_local(&node, group, change).await)
}

/// A replica's content fingerprint: the SHA-256 of a checkpoint of its whole keyspace (every
/// version of every key, the applied position and replicated state), read from one engine
/// snapshot. Replicas that applied the same log prefix have equal checksums.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Checksum {
    pub term: u64,
    pub index: u64,
    pub sha256: String,
    pub records: u64,
}

pub(crate) async fn local_checksum(node: &Node, group: u64) -> Result<Checksum, String> {
    let replica = node
        .replica(group)
        .ok_or_else(|| format!("no group {group}"))?;
    let store = Arc::clone(replica.store());
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        struct HashWriter(sha2::Sha256);
        impl std::io::Write for HashWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut out = HashWriter(sha2::Sha256::new());
        let info = store
            .checkpoint(&store::KeySpan::all(), &mut out)
            .map_err(|e| e.to_string())?;
        let digest = out.0.finalize();
        let position = info.applied.map(|a| a.position).unwrap_or_default();
        Ok(Checksum {
            term: position.term,
            index: position.index,
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            records: info.records,
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn checksum(State(node): State<Arc<Node>>, Path(group): Path<u64>) -> Response {
    answer(local_checksum(&node, group).await)
}

/// The error a non-leader answers with, naming the leader it knows.
pub(crate) fn not_leader(node: &Node, group: u64) -> String {
    let leader = node.replica(group).and_then(|r| r.metrics().current_leader);
    format!(
        "not the leader of group {group} (node {}; leader hint: {leader:?})",
        node.config.node_id
    )
}

async fn local_meta_write(node: &Node, ops: Vec<MetaOp>) -> Result<(), String> {
    if !node.meta.is_leader() {
        return Err(not_leader(node, META_GROUP));
    }
    node.meta
        .write_meta(ops)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Writes to the meta range's map through its leader (this node or a peer), retrying while
/// the leader is unknown or changing.
pub(crate) async fn meta_write(node: &Node, ops: Vec<MetaOp>) -> Result<(), String> {
    let ops = &ops;
    call_leader(node, META_GROUP, "/meta/write", ops, |node| async move {
        local_meta_write(node, ops.clone()).await
    })
    .await
}

/// Calls `path` on the current leader of `group` — `local` when that is this node — and
/// retries on errors (the leader moved, was unknown, did not answer) for a bounded time.
pub(crate) async fn call_leader<'a, Req, Resp, F, Fut>(
    node: &'a Node,
    group: u64,
    path: &str,
    request: &Req,
    local: F,
) -> Result<Resp, String>
where
    Req: Serialize,
    Resp: DeserializeOwned,
    F: Fn(&'a Node) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, String>>,
{
    let Some(replica) = node.replica(group) else {
        return Err(format!("no group {group}"));
    };
    let deadline = tokio::time::Instant::now() + FIND_LEADER_TIMEOUT;
    let mut last;
    let mut round = 0usize;
    loop {
        let leader = replica.metrics().current_leader;
        let outcome = match leader {
            Some(id) if id == node.config.node_id => Some(local(node).await),
            Some(id) => match node.peer_addr(id) {
                Some(addr) => Some(
                    node.client
                        .call(&addr, path, request, PEER_CALL_TIMEOUT)
                        .await,
                ),
                None => None,
            },
            None => {
                // A node that is not (yet) a member learns nothing from its own replica: ask
                // the initial peers in turn.
                let peers: Vec<String> = node.known_peers().into_values().collect();
                let addr = &peers[round % peers.len().max(1)];
                round += 1;
                Some(
                    node.client
                        .call(addr, path, request, PEER_CALL_TIMEOUT)
                        .await,
                )
            }
        };
        match outcome {
            Some(Ok(value)) => return Ok(value),
            Some(Err(e)) => last = e,
            None => last = format!("leader {leader:?} of group {group} has no known address"),
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(group, path, error = %last, "gave up looking for the leader");
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
