//! The Raft network between processes: each RPC is an HTTP/1.1 `POST` to the target node's
//! peer address, `/raft/<group>/<rpc>`, with a postcard body, over keep-alive connections
//! pooled per peer (one pool per node, shared by every group the node replicates).
//!
//! - Requests and answers are postcard encodings of openraft's own messages; an answer is
//!   `Result<T, String>` (the target's error as text). Any failure — connection refused, a
//!   timeout, a non-200 status, an undecodable body — is [`Unreachable`] to openraft, which then
//!   backs off (`Config::backoff`) before retrying that peer, so a dead peer costs no busy loop.
//! - A snapshot is streamed, never held in memory: the body is a 4-byte length, the postcard of
//!   `(vote, snapshot meta)`, then the checkpoint stream read from the sender's snapshot file in
//!   [`SNAPSHOT_CHUNK_BYTES`] chunks. The receiver writes the stream to a temporary file beside
//!   the replica and hands openraft a [`SnapshotData`] over it ([`serve_rpc`]).
//!
//! The receiving side is transport-agnostic: [`serve_rpc`] takes the RPC name and any HTTP body,
//! so the node mounts it in its own HTTP server.

use std::fmt::Display;
use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openraft::OptionalSend;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Raft, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};

/// Bytes per chunk of a streamed snapshot.
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;
/// Largest RPC body other than a snapshot's stream (an AppendEntries of many large commits).
pub const RPC_BODY_MAX_BYTES: usize = 256 << 20;
/// Largest `(vote, meta)` header of a snapshot RPC.
const SNAPSHOT_HEADER_MAX_BYTES: u32 = 16 << 20;
/// Shortest time an AppendEntries RPC (heartbeats included) may take before it counts as lost.
/// openraft offers `heartbeat_interval × 3/4` (37.5 ms), but a follower answers only after its
/// log fsync, which on a loaded machine sometimes takes longer; a lost answer makes openraft back
/// off from that follower and lets the leader lease lapse. A dead peer refuses the connection at
/// once, so the longer wait only matters for a slow or paused one, and each follower has its own
/// replication stream.
pub const APPEND_RPC_MIN_TIMEOUT_MS: u64 = 1_000;
/// How long an idle pooled connection to a peer is kept.
const POOL_IDLE_TIMEOUT_MS: u64 = 30_000;

/// The body type of outgoing requests: a whole message or a streamed snapshot.
pub type RequestBody = UnsyncBoxBody<Bytes, io::Error>;

/// An HTTP client for node-to-node calls: keep-alive connections pooled per peer. Cheap to
/// clone; clones share the pool. The node's other peer calls (the timestamp oracle, forwarded
/// requests) use the same pool.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<HttpConnector, RequestBody>,
    /// Addresses this client refuses to reach: fault injection (a network partition is the
    /// nodes on each side blocking the other side's addresses).
    blocked: std::sync::Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>,
}

impl Default for PeerClient {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(1_000)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
            .build(connector);
        Self {
            client,
            blocked: Default::default(),
        }
    }

    /// Makes every later call to one of `addrs` fail as if the network dropped it (and lifts
    /// any earlier block not in `addrs`).
    pub fn set_blocked(&self, addrs: std::collections::BTreeSet<String>) {
        match self.blocked.write() {
            Ok(mut guard) => *guard = addrs,
            Err(poisoned) => *poisoned.into_inner() = addrs,
        }
    }

    fn is_blocked(&self, addr: &str) -> bool {
        match self.blocked.read() {
            Ok(guard) => guard.contains(addr),
            Err(poisoned) => poisoned.into_inner().contains(addr),
        }
    }

    /// Sends `request` as is and returns the answer with its body unread (forwarding, upgrades).
    pub async fn send(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, SendError> {
        if let Some(authority) = request.uri().authority()
            && self.is_blocked(authority.as_str())
        {
            return Err(SendError {
                not_sent: true,
                message: format!("{authority}: blocked (injected partition)"),
            });
        }
        self.client.request(request).await.map_err(|e| SendError {
            not_sent: e.is_connect(),
            message: e.to_string(),
        })
    }

    /// `POST http://{addr}{path}` with `body`; the answer's status and whole body, within `ttl`.
    pub async fn post(
        &self,
        addr: &str,
        path: &str,
        body: RequestBody,
        ttl: Duration,
    ) -> Result<(http::StatusCode, Bytes), String> {
        if self.is_blocked(addr) {
            // Like a dropped packet: the caller times out rather than hearing a refusal.
            tokio::time::sleep(ttl).await;
            return Err(format!("{addr}{path}: blocked (injected partition)"));
        }
        let request = http::Request::post(format!("http://{addr}{path}"))
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .map_err(|e| format!("building a request to {addr}{path}: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{addr}{path}: {e}"))?;
            let status = response.status();
            let body = Limited::collect(response.into_body(), RPC_BODY_MAX_BYTES)
                .await
                .map_err(|e| format!("{addr}{path}: reading the answer: {e}"))?;
            Ok((status, body))
        };
        tokio::time::timeout(ttl, exchange)
            .await
            .map_err(|_| format!("{addr}{path}: no answer within {ttl:?}"))?
    }

    /// Posts the postcard of `request` and decodes a postcard `Result<Resp, String>` answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, String> {
        let body = postcard::to_stdvec(request).map_err(|e| format!("encoding: {e}"))?;
        let (status, bytes) = self.post(addr, path, full(body), ttl).await?;
        decode_answer(addr, path, status, &bytes)
    }
}

/// Why [`PeerClient::send`] failed.
#[derive(Debug)]
pub struct SendError {
    /// The connection could not be made: the request certainly did not reach the peer, so it
    /// may be sent again (elsewhere) without risk.
    pub not_sent: bool,
    pub message: String,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The postcard answer of a peer call: `Result<Resp, String>` on 200, the text otherwise.
pub fn decode_answer<Resp: DeserializeOwned>(
    addr: &str,
    path: &str,
    status: http::StatusCode,
    bytes: &[u8],
) -> Result<Resp, String> {
    if status != http::StatusCode::OK {
        return Err(format!(
            "{addr}{path}: {status}: {}",
            String::from_utf8_lossy(bytes)
        ));
    }
    let answer: Result<Resp, String> =
        postcard::from_bytes(bytes).map_err(|e| format!("{addr}{path}: bad answer: {e}"))?;
    answer
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> RequestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Encodes an answer the way [`PeerClient::call`] decodes it.
pub fn encode_answer<T: Serialize>(answer: &Result<T, String>) -> Vec<u8> {
    postcard::to_stdvec(answer).unwrap_or_else(|e| {
        postcard::to_stdvec(&Result::<(), String>::Err(format!(
            "encoding the answer: {e}"
        )))
        .unwrap_or_default()
    })
}

/// Collects a body up to a size limit.
struct Limited;

impl Limited {
    async fn collect<B>(mut body: B, max: usize) -> Result<Bytes, String>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Display,
    {
        let mut out = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max {
                    return Err(format!("body larger than {max} bytes"));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out.freeze())
    }
}

/// The [`RaftNetworkFactory`] of one group on one node: peers are addressed by their
/// `BasicNode::addr` (the node's peer listen address).
#[derive(Clone)]
pub struct HttpNetwork {
    client: PeerClient,
    group: u64,
}

impl HttpNetwork {
    pub fn new(client: PeerClient, group: u64) -> Self {
        Self { client, group }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpRaftClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> HttpRaftClient {
        HttpRaftClient {
            client: self.client.clone(),
            group: self.group,
            target,
            addr: node.addr.clone(),
        }
    }
}

/// RPCs of one group to one target node.
pub struct HttpRaftClient {
    client: PeerClient,
    group: u64,
    target: u64,
    addr: String,
}

fn unreachable(msg: impl ToString) -> Unreachable<TypeConfig> {
    Unreachable::from_string(msg)
}

impl HttpRaftClient {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: &str,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, Unreachable<TypeConfig>> {
        let path = format!("/raft/{}/{rpc}", self.group);
        self.client
            .call(&self.addr, &path, request, ttl)
            .await
            .map_err(|e| unreachable(format!("node {}: {e}", self.target)))
    }
}

impl RaftNetworkV2<TypeConfig> for HttpRaftClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option
            .soft_ttl()
            .max(Duration::from_millis(APPEND_RPC_MIN_TIMEOUT_MS));
        Ok(self.rpc("append", &rpc, ttl).await?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.rpc("vote", &rpc, option.soft_ttl()).await?)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        // An unreachable peer is an error, never a synthesized grant.
        Ok(self.rpc("pre_vote", &rpc, option.soft_ttl()).await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = postcard::to_stdvec(&(&vote, &snapshot.meta))
            .map_err(|e| unreachable(format!("encoding the snapshot header: {e}")))?;
        let body = snapshot_body(header, snapshot.snapshot);
        let path = format!("/raft/{}/snapshot", self.group);
        let send = self.client.post(&self.addr, &path, body, option.hard_ttl());
        let (status, bytes) = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = send => answer.map_err(|e| unreachable(format!("node {}: {e}", self.target)))?,
        };
        Ok(decode_answer(&self.addr, &path, status, &bytes)
            .map_err(|e| unreachable(format!("node {}: {e}", self.target)))?)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.rpc("transfer_leader", &req, option.soft_ttl()).await?)
    }
}

/// The streamed body of a snapshot RPC: header length, header, then the checkpoint stream read
/// from the snapshot file on the blocking pool, at most a few chunks ahead of the socket.
fn snapshot_body(header: Vec<u8>, mut data: SnapshotData) -> RequestBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let mut first = Vec::with_capacity(4 + header.len());
    first.extend_from_slice(&(header.len() as u32).to_be_bytes());
    first.extend_from_slice(&header);
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(Ok(Bytes::from(first))).is_err() {
            return;
        }
        loop {
            let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            match data.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    StreamBody::new(stream).boxed_unsync()
}

static INCOMING: AtomicU64 = AtomicU64::new(0);

/// Answers one incoming Raft RPC for `raft` (`rpc` is the last path segment) and returns the
/// postcard answer. An incoming snapshot is written to a temporary file in `tmp_dir` first.
/// `Err` is a malformed request (answer 400 with the text).
pub async fn serve_rpc<B>(
    raft: &Raft,
    tmp_dir: &Path,
    rpc: &str,
    body: B,
) -> Result<Vec<u8>, String>
where
    B: Body<Data = Bytes> + Unpin + Send,
    B::Error: Display,
{
    fn answer<T: Serialize, E: Display>(result: Result<T, E>) -> Vec<u8> {
        encode_answer(&result.map_err(|e| e.to_string()))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("malformed request: {e}"))
    }
    if rpc == "snapshot" {
        return serve_snapshot(raft, tmp_dir, body).await;
    }
    let bytes = Limited::collect(body, RPC_BODY_MAX_BYTES).await?;
    Ok(match rpc {
        "append" => answer(raft.append_entries(decode(&bytes)?).await),
        "vote" => answer(raft.vote(decode(&bytes)?).await),
        "pre_vote" => answer(raft.pre_vote(decode(&bytes)?).await),
        "transfer_leader" => answer(raft.handle_transfer_leader(decode(&bytes)?).await),
        other => return Err(format!("unknown raft rpc {other:?}")),
    })
}

async fn serve_snapshot<B>(raft: &Raft, tmp_dir: &Path, mut body: B) -> Result<Vec<u8>, String>
where
    B: Body<Data = Bytes> + Unpin + Send,
    B::Error: Display,
{
    let path = tmp_dir.join(format!(
        "incoming-snapshot-{}-{}.tmp",
        std::process::id(),
        INCOMING.fetch_add(1, Ordering::Relaxed)
    ));
    let _cleanup = RemoveOnDrop(path.clone());
    fs::create_dir_all(tmp_dir).map_err(|e| format!("creating {}: {e}", tmp_dir.display()))?;
    let mut file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    // Header: length, then (vote, meta); everything after it is the checkpoint stream.
    let mut pending = BytesMut::new();
    let mut header: Option<(Vote, SnapshotMeta)> = None;
    let mut stream_len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("receiving the snapshot: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if header.is_some() {
            file.write_all(&data)
                .map_err(|e| format!("writing the snapshot: {e}"))?;
            stream_len += data.len() as u64;
            continue;
        }
        pending.extend_from_slice(&data);
        if pending.len() < 4 {
            continue;
        }
        let len = u32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
        if len > SNAPSHOT_HEADER_MAX_BYTES {
            return Err(format!("snapshot header of {len} bytes is too large"));
        }
        let end = 4 + len as usize;
        if pending.len() < end {
            continue;
        }
        header = Some(
            postcard::from_bytes(&pending[4..end])
                .map_err(|e| format!("malformed snapshot header: {e}"))?,
        );
        let rest = &pending[end..];
        file.write_all(rest)
            .map_err(|e| format!("writing the snapshot: {e}"))?;
        stream_len += rest.len() as u64;
    }
    let Some((vote, meta)) = header else {
        return Err("snapshot request ended before its header".into());
    };
    file.flush().map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let snapshot = Snapshot {
        meta,
        snapshot: SnapshotData::from_file(file, stream_len),
    };
    Ok(encode_answer(
        &raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| e.to_string()),
    ))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
