//! An in-process Raft network: RPCs are direct calls on the target's [`Raft`] handle, found
//! through a shared [`InProcessRouter`]. Tests use it to run a group of replicas in one
//! process and to cut nodes off. A network across processes (tonic) implements the same
//! openraft traits beside this one, with the same [`SnapshotData`]: it streams the snapshot's
//! bytes and hands the receiver a file of them.
//!
//! Faults it can inject: [`InProcessRouter::isolate`] drops every RPC to or from a node
//! (including responses to calls already in flight, as a real partition would), and
//! [`InProcessRouter::unregister`] makes a node unreachable as if its process were gone.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::OptionalSend;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};

use super::{Raft, Snapshot, SnapshotData, TypeConfig, Vote};

/// Routes RPCs between the replicas of one process. Cheap to clone; clones share the routes.
#[derive(Clone, Default)]
pub struct InProcessRouter {
    state: Arc<Mutex<RouterState>>,
    snapshots_installed: Arc<AtomicU64>,
}

#[derive(Default)]
struct RouterState {
    nodes: HashMap<u64, Raft>,
    isolated: HashSet<u64>,
}

impl InProcessRouter {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Makes node `id` reachable at `raft` (replacing an earlier registration).
    pub fn register(&self, id: u64, raft: Raft) {
        self.lock().nodes.insert(id, raft);
    }

    /// Makes node `id` unreachable, as if its process had stopped.
    pub fn unregister(&self, id: u64) -> Option<Raft> {
        self.lock().nodes.remove(&id)
    }

    /// Drops every RPC to or from node `id` until [`InProcessRouter::heal`].
    pub fn isolate(&self, id: u64) {
        self.lock().isolated.insert(id);
    }

    /// Reconnects an isolated node.
    pub fn heal(&self, id: u64) {
        self.lock().isolated.remove(&id);
    }

    /// The network factory node `source` hands to openraft.
    pub fn network(&self, source: u64) -> InProcessNetwork {
        InProcessNetwork {
            router: self.clone(),
            source,
        }
    }

    /// How many snapshots were sent and installed over this router.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }

    fn route(&self, source: u64, target: u64) -> Result<Raft, String> {
        let state = self.lock();
        if state.isolated.contains(&source) || state.isolated.contains(&target) {
            return Err(format!("link {source} -> {target} is cut"));
        }
        state
            .nodes
            .get(&target)
            .cloned()
            .ok_or_else(|| format!("node {target} is not registered"))
    }
}

/// The [`RaftNetworkFactory`] of one node on an [`InProcessRouter`].
pub struct InProcessNetwork {
    router: InProcessRouter,
    source: u64,
}

impl RaftNetworkFactory<TypeConfig> for InProcessNetwork {
    type Network = InProcessClient;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> InProcessClient {
        InProcessClient {
            router: self.router.clone(),
            source: self.source,
            target,
        }
    }
}

/// RPCs from one node to one target over an [`InProcessRouter`].
pub struct InProcessClient {
    router: InProcessRouter,
    source: u64,
    target: u64,
}

fn unreachable(msg: impl ToString) -> Unreachable<TypeConfig> {
    Unreachable::from_string(msg)
}

impl InProcessClient {
    /// Calls `f` on the target, bounded by `ttl`. The route is checked again when the answer
    /// comes back, so cutting a link also loses answers to calls made before the cut.
    async fn call<T, E, Fut>(
        &self,
        ttl: Duration,
        f: impl FnOnce(Raft) -> Fut,
    ) -> Result<T, Unreachable<TypeConfig>>
    where
        E: std::fmt::Display,
        Fut: Future<Output = Result<T, E>>,
    {
        let raft = self
            .router
            .route(self.source, self.target)
            .map_err(unreachable)?;
        let answer = tokio::time::timeout(ttl, f(raft))
            .await
            .map_err(|_| {
                unreachable(format!(
                    "node {} did not answer within {ttl:?}",
                    self.target
                ))
            })?
            .map_err(|e| unreachable(format!("node {} failed: {e}", self.target)))?;
        self.router
            .route(self.source, self.target)
            .map_err(unreachable)?;
        Ok(answer)
    }
}

impl RaftNetworkV2<TypeConfig> for InProcessClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self
            .call(option.soft_ttl(), |raft| async move {
                raft.append_entries(rpc).await
            })
            .await?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self
            .call(
                option.soft_ttl(),
                |raft| async move { raft.vote(rpc).await },
            )
            .await?)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        // An unreachable peer must be an error here, never a synthesized grant: an isolated
        // node would otherwise win its pre-vote and disturb the group with a higher term.
        Ok(self
            .call(
                option.soft_ttl(),
                |raft| async move { raft.pre_vote(rpc).await },
            )
            .await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        // In one process the file handle itself travels; the receiver copies the stream into
        // its own snapshot directory before installing it.
        let install = self.call(option.hard_ttl(), |raft| async move {
            raft.install_full_snapshot(vote, snapshot).await
        });
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = install => answer?,
        };
        self.router
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        Ok(answer)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self
            .call(option.soft_ttl(), |raft| async move {
                raft.handle_transfer_leader(req).await
            })
            .await?)
    }
}
