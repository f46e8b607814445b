//! What a node runs because it leads a group, started on election and stopped on demotion.
//!
//! Two loops follow the replicas' Raft metrics (polled every [`POLL`]; a change of leader is
//! noticed within that):
//!
//! - meta: while this node leads the meta range, a [`TsoServer`] for the current term; on
//!   first leadership the range catalog is written if absent.
//! - data: while this node leads the data range, a [`Serving`]: the committer (timestamps from
//!   [`RemoteTso`]), the database with its stored catalog, a function runner and the
//!   client-protocol server. It starts only after `catch_up` (the lead confirmed by a quorum
//!   and every entry committed before it applied), so the committer never starts on a store
//!   that lacks an acknowledged commit. Demotion stops the committer first.

use std::sync::Arc;
use std::time::Duration;

use functions::FunctionRunner;
use js::{JsPool, JsPoolConfig};
use openraft::ReadPolicy;
use openraft::ServerState;
use replication::raft::MetaOp;
use store::Timestamp;
use tokio::task::JoinHandle;
use txn::{Committer, Database};

use super::tso::{RemoteTso, TsoServer};
use super::{DATA_GROUP, META_GROUP, Node, RangeDescriptor, Serving, lock};
use crate::server::{ReadGuard, Server};

/// How often the loops look at the Raft metrics.
const POLL: Duration = Duration::from_millis(10);
/// Pause after a failed start before trying again.
const RETRY: Duration = Duration::from_millis(50);

pub(crate) fn spawn(node: Arc<Node>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(meta_loop(Arc::clone(&node))),
        tokio::spawn(data_loop(node)),
    ]
}

fn leads(node: &Node, group: u64) -> Option<u64> {
    let metrics = node.replica(group)?.metrics();
    (metrics.state == ServerState::Leader && metrics.current_leader == Some(node.config.node_id))
        .then_some(metrics.current_term)
}

async fn meta_loop(node: Arc<Node>) {
    loop {
        let leading = leads(&node, META_GROUP);
        let current = node.tso_server().map(|t| t.term);
        match leading {
            Some(term) if current != Some(term) => {
                lock(&node.tso).take();
                match TsoServer::open(Arc::clone(&node.meta), term).await {
                    Ok(tso) => {
                        tracing::info!(term, "leading the meta range: serving timestamps");
                        *lock(&node.tso) = Some(Arc::new(tso));
                        if let Err(e) = ensure_range_catalog(&node).await {
                            tracing::warn!(error = %e, "writing the range catalog");
                        }
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "starting the timestamp oracle failed; retrying");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
            None if current.is_some() => {
                tracing::info!("no longer leading the meta range");
                lock(&node.tso).take();
            }
            _ => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Writes the descriptors of the meta and data ranges if the catalog lacks them.
async fn ensure_range_catalog(node: &Node) -> Result<(), String> {
    let map = node.meta.meta().map_err(|e| e.to_string())?;
    let mut ops = Vec::new();
    for (id, name) in [(META_GROUP, "meta"), (DATA_GROUP, "data")] {
        let key = format!("range/{id}");
        if map.contains_key(&key) {
            continue;
        }
        let descriptor = RangeDescriptor {
            id,
            name: name.into(),
            start: String::new(),
            end: String::new(),
            generation: 1,
        };
        ops.push(MetaOp::Put {
            key,
            value: serde_json::to_vec(&descriptor).map_err(|e| e.to_string())?,
        });
    }
    if ops.is_empty() {
        return Ok(());
    }
    node.meta
        .write_meta(ops)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn data_loop(node: Arc<Node>) {
    loop {
        let leading = leads(&node, DATA_GROUP);
        let current = node.serving().map(|s| s.term);
        match leading {
            Some(term) if current != Some(term) => {
                stop_serving(&node, "a new term began");
                match start_serving(&node, term).await {
                    Ok(serving) => {
                        tracing::info!(term, "leading the data range: committing and serving");
                        *lock(&node.serving) = Some(Arc::new(serving));
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "starting to serve the data range failed; retrying");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
            None if current.is_some() => {
                tracing::info!("no longer leading the data range");
                stop_serving(&node, "this node no longer leads the range");
            }
            _ => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

fn stop_serving(node: &Node, reason: &str) {
    if let Some(serving) = lock(&node.serving).take() {
        serving.committer.stop(reason);
        serving.server.retire();
    }
}

async fn start_serving(node: &Arc<Node>, term: u64) -> Result<Serving, String> {
    node.data.catch_up().await.map_err(|e| e.to_string())?;
    let store = Arc::clone(node.data.store());
    let applied_ts = store.applied().map_or(Timestamp::MIN, |a| a.max_commit_ts);
    let committer = Committer::start_with_source(
        Arc::new(node.data.replicator()),
        Arc::new(RemoteTso {
            node: Arc::downgrade(node),
        }),
        applied_ts,
    );
    let db =
        Database::with_stored_catalog(store, committer.clone(), Some(Arc::clone(&node.compiler)));
    let pool = JsPool::new(JsPoolConfig::default()).map_err(|e| e.to_string())?;
    let runner = FunctionRunner::new(pool, db);
    let raft = node.data.raft().clone();
    let guard: ReadGuard = Arc::new(move || {
        let raft = raft.clone();
        Box::pin(async move {
            raft.ensure_linearizable(ReadPolicy::LeaseRead)
                .await
                .map(|_| ())
                .map_err(|e| format!("this node no longer leads the range: {e}"))
        })
    });
    let url = format!("http://{}", node.api_addr);
    let server = Server::start_guarded(runner, node.config.admin_key.clone(), url, Some(guard))
        .await
        .inspect_err(|_| committer.stop("starting the server failed"))?;
    let router = api::http::router(server.clone());
    Ok(Serving {
        term,
        server,
        router,
        committer,
    })
}
