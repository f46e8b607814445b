//! `chorus start`: one node of a cluster.
//!
//! Every node runs two Raft groups (`replication::RangeReplica` over the HTTP transport of
//! `replication::raft::http`):
//!
//! - **group 0, the meta range**: its replicated metadata map holds the timestamp oracle's
//!   window (`tso/window_end`), the node registry (`node/<id>` → API and peer addresses) and
//!   the range catalog (`range/<id>` → descriptor). Its leader serves timestamps ([`tso`]).
//! - **group 1, the data range**: the whole user keyspace (one range until ranges split), its
//!   documents, indexes, stored catalog and deployed code. Its leader runs the committer and
//!   executes functions ([`Node::serving`]); the committer takes its timestamps from the meta
//!   leader.
//!
//! Leadership lifecycle ([`leadership`]): a node that becomes the data leader confirms its
//! lead with a quorum and applies everything committed before it (`RangeReplica::catch_up`),
//! then starts a committer and a function runner; when it stops leading, the committer is
//! stopped (in-flight commits fail, retryably when they certainly did not commit). A node that
//! does not lead forwards client requests to the leader ([`gateway`]).
//!
//! The nodes named in `--peers` form both groups on first start; a node started with an id
//! not in `--peers` joins empty and waits to be added (`chorus admin add-learner`).

pub mod admin;
mod gateway;
mod leadership;
mod peer;
mod status;
mod tso;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::impls::BasicNode;
use replication::RangeReplica;
use replication::raft::ReplicaOptions;
use replication::raft::http::{HttpNetwork, PeerClient};
use serde::{Deserialize, Serialize};
use store::MvccStore;
use txn::{Committer, SchemaCompiler};

/// Group id of the meta range.
pub const META_GROUP: u64 = 0;
/// Group id of the (single) data range.
pub const DATA_GROUP: u64 = 1;
/// The groups every node replicates, in start order.
pub const GROUPS: [u64; 2] = [META_GROUP, DATA_GROUP];

/// The settings of one node (the command-line contract's `chorus start`).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    /// Client protocol address (HTTP, WebSocket, deploy, cluster status).
    pub listen: String,
    /// Node-to-node address (Raft, timestamps, forwarding).
    pub peer_listen: String,
    /// The initial members: node id → peer address.
    pub peers: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    pub admin_key: String,
}

/// Parses `1=HOST:PORT,2=HOST:PORT,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("--peers entry {part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("--peers entry {part:?}: {id:?} is not a node id"))?;
        if id == 0 {
            return Err("node id 0 is reserved; ids start at 1".into());
        }
        let addr = addr.trim();
        addr.parse::<SocketAddr>()
            .map_err(|e| format!("--peers entry {part:?}: {addr:?} is not HOST:PORT ({e})"))?;
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("--peers names node {id} twice"));
        }
    }
    if peers.is_empty() {
        return Err("--peers names no node".into());
    }
    Ok(peers)
}

/// A node's entry in the node registry (meta key `node/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    /// Client protocol address.
    pub api: String,
    /// Node-to-node address.
    pub peer: String,
}

/// A range descriptor in the range catalog (meta key `range/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDescriptor {
    pub id: u64,
    pub name: String,
    /// Span of the keyspace, hex-encoded bytes; `end` empty means "to the end".
    pub start: String,
    pub end: String,
    /// Bumped on every change of the span.
    pub generation: u64,
}

/// What the data leader runs while it leads (one term).
pub(crate) struct Serving {
    pub term: u64,
    pub server: Arc<crate::server::Server>,
    pub router: axum::Router,
    pub committer: Committer,
}

/// One node: its two replicas and whatever its leaderships run.
pub struct Node {
    pub(crate) config: NodeConfig,
    /// The client protocol address actually bound.
    pub(crate) api_addr: String,
    pub(crate) client: PeerClient,
    pub(crate) meta: Arc<RangeReplica>,
    pub(crate) data: Arc<RangeReplica>,
    pub(crate) compiler: Arc<dyn SchemaCompiler>,
    /// The timestamp oracle, while this node leads the meta range.
    pub(crate) tso: Mutex<Option<Arc<tso::TsoServer>>>,
    /// The committer and function runner, while this node leads the data range.
    pub(crate) serving: Mutex<Option<Arc<Serving>>>,
    /// Leaders' API addresses learned from peers (node id → address).
    pub(crate) api_cache: Mutex<BTreeMap<u64, String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Node {
    pub(crate) fn replica(&self, group: u64) -> Option<&Arc<RangeReplica>> {
        match group {
            META_GROUP => Some(&self.meta),
            DATA_GROUP => Some(&self.data),
            _ => None,
        }
    }

    pub(crate) fn serving(&self) -> Option<Arc<Serving>> {
        lock(&self.serving).clone()
    }

    pub(crate) fn tso_server(&self) -> Option<Arc<tso::TsoServer>> {
        lock(&self.tso).clone()
    }

    /// Every node this one knows: the initial peers and both groups' members, id → peer address.
    pub(crate) fn known_peers(&self) -> BTreeMap<u64, String> {
        let mut peers = self.config.peers.clone();
        for replica in [&self.meta, &self.data] {
            let metrics = replica.metrics();
            for (id, node) in metrics.membership_config.nodes() {
                peers.insert(*id, node.addr.clone());
            }
        }
        peers.insert(self.config.node_id, self.config.peer_listen.clone());
        peers
    }

    /// The peer address of node `id`, if known.
    /// Same precedence as [`Self::known_peers`] (this node, then the groups' memberships, then
    /// `--peers`), without building the whole map: the committer's oracle calls land here once
    /// per commit group.
    pub(crate) fn peer_addr(&self, id: u64) -> Option<String> {
        if id == self.config.node_id {
            return Some(self.config.peer_listen.clone());
        }
        // The data range's membership wins over the meta range's, as in `known_peers`.
        for replica in [&self.data, &self.meta] {
            if let Some(node) = replica.metrics().membership_config.get_node(&id) {
                return Some(node.addr.clone());
            }
        }
        self.config.peers.get(&id).cloned()
    }

    /// The client protocol address of node `id`: from the node registry, from a cache, or by
    /// asking the node.
    pub(crate) async fn api_addr_of(&self, id: u64) -> Option<String> {
        if id == self.config.node_id {
            return Some(self.api_addr.clone());
        }
        if let Some(addr) = lock(&self.api_cache).get(&id) {
            return Some(addr.clone());
        }
        if let Ok(meta) = self.meta.meta()
            && let Some(raw) = meta.get(&format!("node/{id}"))
            && let Ok(info) = serde_json::from_slice::<NodeInfo>(raw)
        {
            lock(&self.api_cache).insert(id, info.api.clone());
            return Some(info.api);
        }
        let peer = self.peer_addr(id)?;
        let info: NodeInfo = self
            .client
            .call(&peer, "/node/info", &(), Duration::from_millis(500))
            .await
            .ok()?;
        lock(&self.api_cache).insert(id, info.api.clone());
        Some(info.api)
    }

    fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.config.node_id,
            api: self.api_addr.clone(),
            peer: self.config.peer_listen.clone(),
        }
    }
}

/// Runs one node until SIGTERM or Ctrl-C.
pub async fn start(config: NodeConfig) -> Result<(), String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
    // Bind both listeners first: a port in use is reported before any recovery work.
    let api_listener = bind(&config.listen).await?;
    let peer_listener = bind(&config.peer_listen).await?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?
        .to_string();
    let client = PeerClient::new();

    let meta = open_replica(&config, META_GROUP, &client).await?;
    let data = open_replica(&config, DATA_GROUP, &client).await?;
    let node = Arc::new(Node {
        api_addr: api_addr.clone(),
        client,
        meta: Arc::new(meta),
        data: Arc::new(data),
        compiler: Arc::new(udf::DocumentTypeCompiler),
        tso: Mutex::new(None),
        serving: Mutex::new(None),
        api_cache: Mutex::new(BTreeMap::new()),
        config,
    });

    // Peers must reach this node's Raft before the groups can elect.
    let peer_app = peer::router(Arc::clone(&node));
    let peer_server = tokio::spawn(async move {
        if let Err(e) = axum::serve(peer_listener, peer_app).await {
            tracing::error!(error = %e, "peer server stopped");
        }
    });

    if node.config.peers.contains_key(&node.config.node_id) {
        let members: BTreeMap<u64, BasicNode> = node
            .config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        for replica in [&node.meta, &node.data] {
            replica
                .initialize(members.clone())
                .await
                .map_err(|e| format!("forming the groups: {e}"))?;
        }
    } else {
        tracing::info!(
            node = node.config.node_id,
            "not among --peers: waiting to be added to the cluster (chorus admin add-learner)"
        );
    }

    let tasks = leadership::spawn(Arc::clone(&node));
    let register = tokio::spawn(register_loop(Arc::clone(&node)));

    let app = gateway::router(Arc::clone(&node));
    let url = format!("http://{api_addr}");
    println!("Chorus node {} is serving at {url}", node.config.node_id);
    println!("  peers at {}", node.config.peer_listen);
    tracing::info!(node = node.config.node_id, %url, peer = %node.config.peer_listen, "node started");
    let serve = axum::serve(api_listener, app).with_graceful_shutdown(crate::shutdown_signal());
    let result = serve.await;
    tracing::info!("shutting down");
    register.abort();
    for task in tasks {
        task.abort();
    }
    if let Some(serving) = lock(&node.serving).take() {
        serving.committer.stop("node shutting down");
        serving.server.retire();
    }
    lock(&node.tso).take();
    peer_server.abort();
    for replica in [&node.meta, &node.data] {
        if let Err(e) = replica.shutdown().await {
            tracing::warn!(error = %e, "stopping a replica");
        }
    }
    result.map_err(|e| format!("serving: {e}"))
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, String> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad listen address {addr}: {e}"))?;
    tokio::net::TcpListener::bind(parsed)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

async fn open_replica(
    config: &NodeConfig,
    group: u64,
    client: &PeerClient,
) -> Result<RangeReplica, String> {
    let dir = group_dir(&config.data_dir, group);
    let store = MvccStore::open_fjall(dir.join("store"))
        .map_err(|e| format!("opening {}: {e}", dir.display()))?;
    RangeReplica::open_with(
        config.node_id,
        dir.join("raft"),
        Arc::new(store),
        HttpNetwork::new(client.clone(), group),
        &replica_options()?,
    )
    .await
    .map_err(|e| format!("opening the replica of group {group}: {e}"))
}

/// The replicas' Raft settings. `CHORUS_RAFT_SNAPSHOT_ENTRIES=N` builds a snapshot every N
/// applied entries (and keeps N/5 of the log behind it) instead of the default
/// (`replication::raft::SNAPSHOT_LOGS_SINCE_LAST`): tests use a small N so that a restarted
/// node must catch up from a snapshot.
fn replica_options() -> Result<ReplicaOptions, String> {
    let mut options = ReplicaOptions::default();
    if let Ok(raw) = std::env::var("CHORUS_RAFT_SNAPSHOT_ENTRIES") {
        let n: u64 = raw
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 10)
            .ok_or_else(|| {
                format!("CHORUS_RAFT_SNAPSHOT_ENTRIES={raw:?}: need an integer >= 10")
            })?;
        options.snapshot_logs_since_last = n;
        options.max_in_snapshot_log_to_keep = n / 5;
        options.purge_batch_entries = (n / 10).max(1);
        options.replication_lag_threshold_entries = 2 * n;
    }
    Ok(options)
}

fn group_dir(data_dir: &Path, group: u64) -> PathBuf {
    match group {
        META_GROUP => data_dir.join("meta"),
        _ => data_dir.join(format!("range-{group}")),
    }
}

/// Puts this node into the node registry (through the meta leader), retrying until it is
/// there; repeats when the entry is missing or stale (addresses changed on restart).
async fn register_loop(node: Arc<Node>) {
    let key = format!("node/{}", node.config.node_id);
    let info = node.info();
    let want = match serde_json::to_vec(&info) {
        Ok(bytes) => bytes,
        Err(_) => return,
    };
    loop {
        let registered = node
            .meta
            .meta()
            .ok()
            .and_then(|m| m.get(&key).cloned())
            .is_some_and(|have| have == want);
        if !registered {
            let op = replication::raft::MetaOp::Put {
                key: key.clone(),
                value: want.clone(),
            };
            if let Err(e) = peer::meta_write(&node, vec![op]).await {
                tracing::debug!(error = %e, "registering this node (will retry)");
            }
        }
        tokio::time::sleep(Duration::from_millis(if registered { 5_000 } else { 500 })).await;
    }
}
