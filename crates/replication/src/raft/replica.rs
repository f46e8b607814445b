//! [`RangeReplica`]: one node's member of a range's Raft group, and [`RaftReplicator`], the
//! [`Replicator`] the range's committer proposes through.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::errors::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::impls::BasicNode;
use openraft::metrics::WaitError;
use openraft::network::{NetSnapshot, RaftNetworkFactory};
use openraft::{Config, ConfigError, SnapshotPolicy};
use store::{Commit, LogPosition, MvccStore};

use super::{
    APPEND_ENTRIES_MAX_ENTRIES, ELECTION_TIMEOUT_MAX_MS, ELECTION_TIMEOUT_MIN_MS,
    HEARTBEAT_INTERVAL_MS, INSTALL_SNAPSHOT_TIMEOUT_MS, LogStore, MAX_IN_SNAPSHOT_LOG_TO_KEEP,
    PURGE_BATCH_ENTRIES, REPLICATION_LAG_THRESHOLD_ENTRIES, Raft, RaftMetrics, ReplicateRequest,
    SHUTDOWN_RELEASE_TIMEOUT_MS, SNAPSHOT_LOGS_SINCE_LAST, SnapshotData, StateMachine, TypeConfig,
    position_of, run_blocking,
};
use crate::{BoxFuture, ReplicateError, Replicator};

/// Errors of opening, initializing and stopping a replica.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The log store, the snapshot directory or the store could not be opened or used.
    #[error("replica storage: {0}")]
    Io(#[from] io::Error),
    /// [`ReplicaOptions`] do not make a valid openraft configuration.
    #[error("invalid raft configuration: {0}")]
    Config(#[from] ConfigError),
    /// openraft stopped (shut down, or a storage error stopped it).
    #[error("raft stopped: {0}")]
    Fatal(#[from] Fatal<TypeConfig>),
    /// The initial membership does not include this node.
    #[error("cannot initialize the group: {0}")]
    Initialize(String),
    /// A wait for a condition (a leader, openraft's tasks to stop) ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// This node could not confirm its leadership with a quorum.
    #[error("not the leader: {0}")]
    NotLeader(String),
}

impl From<WaitError> for ReplicaError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Timeout(..) => ReplicaError::Timeout(e.to_string()),
            WaitError::ShuttingDown => ReplicaError::Fatal(Fatal::Stopped),
        }
    }
}

/// Timing and log-size settings of a replica. [`Default`] takes the crate's knobs; tests shrink
/// the snapshot thresholds to exercise snapshot transfer.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// See [`SNAPSHOT_LOGS_SINCE_LAST`].
    pub snapshot_logs_since_last: u64,
    /// See [`MAX_IN_SNAPSHOT_LOG_TO_KEEP`].
    pub max_in_snapshot_log_to_keep: u64,
    /// See [`PURGE_BATCH_ENTRIES`].
    pub purge_batch_entries: u64,
    /// See [`REPLICATION_LAG_THRESHOLD_ENTRIES`].
    pub replication_lag_threshold_entries: u64,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS,
            snapshot_logs_since_last: SNAPSHOT_LOGS_SINCE_LAST,
            max_in_snapshot_log_to_keep: MAX_IN_SNAPSHOT_LOG_TO_KEEP,
            purge_batch_entries: PURGE_BATCH_ENTRIES,
            replication_lag_threshold_entries: REPLICATION_LAG_THRESHOLD_ENTRIES,
        }
    }
}

impl ReplicaOptions {
    /// The validated openraft configuration for these options.
    pub fn raft_config(&self) -> Result<Config, ConfigError> {
        Config {
            cluster_name: "chorus-range".to_string(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            max_payload_entries: APPEND_ENTRIES_MAX_ENTRIES,
            replication_lag_threshold: self.replication_lag_threshold_entries,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            purge_batch_size: self.purge_batch_entries,
            // A node that cannot win (partitioned, restarted with a stale log) must not bump
            // the term and depose a healthy leader when it comes back.
            enable_pre_vote: Some(true),
            // The state machine does not fsync before answering, so a restarted leader must
            // learn the commit index through an election rather than resume with a stale store.
            enable_leader_restore: Some(false),
            ..Config::default()
        }
        .validate()
    }
}

/// One node's replica of a range: its Raft log (fjall, `<dir>/raft-log`), its snapshots
/// (`<dir>/snapshots`) and openraft's tasks, applying committed entries to `store`.
///
/// Lifecycle: [`RangeReplica::open`] (reopens whatever `dir` holds) →
/// [`RangeReplica::initialize`] on the first start of a new group → serve through
/// [`RangeReplica::replicator`] → [`RangeReplica::shutdown`]. Dropping a replica without
/// `shutdown` leaves openraft's tasks running until the runtime stops.
pub struct RangeReplica {
    node_id: u64,
    dir: std::path::PathBuf,
    raft: Raft,
    store: Arc<MvccStore>,
    log: LogStore,
    state_machine: StateMachine,
}

impl RangeReplica {
    /// Opens the replica of node `node_id` in `dir` with default [`ReplicaOptions`].
    pub async fn open<N>(
        node_id: u64,
        dir: impl AsRef<Path>,
        store: Arc<MvccStore>,
        network: N,
    ) -> Result<Self, ReplicaError>
    where
        N: RaftNetworkFactory<TypeConfig>,
        N::Network: NetSnapshot<TypeConfig, SnapshotData = SnapshotData>,
    {
        Self::open_with(node_id, dir, store, network, &ReplicaOptions::default()).await
    }

    /// Opens the replica of node `node_id` in `dir` (created if needed), recovering its log,
    /// re-applying committed entries the store lacks, and starting openraft's tasks.
    /// `dir` must always be opened with the same `node_id` and the same store.
    pub async fn open_with<N>(
        node_id: u64,
        dir: impl AsRef<Path>,
        store: Arc<MvccStore>,
        network: N,
        options: &ReplicaOptions,
    ) -> Result<Self, ReplicaError>
    where
        N: RaftNetworkFactory<TypeConfig>,
        N::Network: NetSnapshot<TypeConfig, SnapshotData = SnapshotData>,
    {
        let config = Arc::new(options.raft_config()?);
        let dir = dir.as_ref().to_path_buf();
        let replica_dir = dir.clone();
        let sm_store = Arc::clone(&store);
        let (log, state_machine) = run_blocking(move || {
            fs::create_dir_all(&dir)?;
            let log = LogStore::open(dir.join("raft-log"))?;
            log.bind_node_id(node_id)?;
            let state_machine = StateMachine::open(sm_store, dir.join("snapshots"))?;
            Ok((log, state_machine))
        })
        .await?;
        let raft = Raft::new(node_id, config, network, log.clone(), state_machine.clone()).await?;
        Ok(Self {
            node_id,
            dir: replica_dir,
            raft,
            store,
            log,
            state_machine,
        })
    }

    /// Opens (or on first start, forms) a group of one: node 1 in `dir`, which leads itself.
    /// This is the single-node path (`chorus dev`), the same code as a cluster's. Returns once
    /// the node accepts writes, or fails after `timeout`.
    pub async fn open_single_node(
        dir: impl AsRef<Path>,
        store: Arc<MvccStore>,
        timeout: Duration,
    ) -> Result<Self, ReplicaError> {
        const NODE: u64 = 1;
        // A group of one sends no RPCs; an empty router (which never holds this node, so no
        // reference cycle) stands in for the network.
        let router = super::InProcessRouter::new();
        let replica = Self::open(NODE, dir, store, router.network(NODE)).await?;
        replica
            .initialize(BTreeMap::from([(NODE, BasicNode::new("local"))]))
            .await?;
        replica.wait_until_writable(timeout).await?;
        replica.catch_up().await?;
        Ok(replica)
    }

    /// Forms a new group with `members` (which must include this node). Idempotent: on a node
    /// whose log already holds a membership (every restart) it does nothing. Call it on one
    /// node of a new group, or on all of them with identical `members`.
    pub async fn initialize(&self, members: BTreeMap<u64, BasicNode>) -> Result<(), ReplicaError> {
        if self.raft.is_initialized().await? {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Raced with another initialization or an incoming leader: already formed.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e @ InitializeError::NotInMembers(_))) => {
                Err(ReplicaError::Initialize(e.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => Err(fatal.into()),
        }
    }

    /// Waits until this node knows a leader of its group, and returns the leader's id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ReplicaError> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await?;
        metrics
            .current_leader
            .ok_or_else(|| ReplicaError::Timeout("leader vanished".into()))
    }

    /// Waits until this node is the leader and a quorum has acknowledged it, so it accepts
    /// writes. A freshly elected leader (or one that lost its quorum) refuses writes with
    /// [`ReplicateError::NotLeader`] without a hint until a quorum answers it: its leader
    /// lease must be valid before it may append (openraft's `ensure_writable_leader_handler`,
    /// src/core/raft_core.rs:617-625).
    pub async fn wait_until_writable(&self, timeout: Duration) -> Result<(), ReplicaError> {
        self.raft
            .wait(Some(timeout))
            .leader_with_quorum_acked(None, "this node leads with a quorum")
            .await?;
        Ok(())
    }

    /// Confirms this node's leadership with a quorum (read index) and waits until its store
    /// has applied every entry committed before that point — on a new leader, up to the blank
    /// entry of its term, so every earlier acknowledged write is applied locally. A committer
    /// may start on this node only after this returns: it takes the store's newest applied
    /// commit as the floor of its timestamps and the start of its write log, and a store that
    /// still had committed entries to apply would let a transaction miss them.
    /// Returns the applied position it waited for.
    pub async fn catch_up(&self) -> Result<LogPosition, ReplicaError> {
        match self
            .raft
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await
        {
            Ok(read) => Ok(super::position_of(read.log_id())),
            Err(RaftError::Fatal(fatal)) => Err(fatal.into()),
            Err(RaftError::APIError(e)) => Err(ReplicaError::NotLeader(e.to_string())),
        }
    }

    /// Whether this node currently believes it is the leader. A hint for routing: only a
    /// write's outcome (or a linearizable read) proves leadership.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The current openraft metrics of this node (term, leader, log and applied positions,
    /// snapshot, membership, replication progress).
    pub fn metrics(&self) -> RaftMetrics {
        use openraft::async_runtime::watch::WatchReceiver;
        self.raft.metrics().borrow_watched().clone()
    }

    /// The openraft handle, for membership changes (`add_learner`, `change_membership`),
    /// leader transfer and waits on metrics.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The replica's directory (its log and snapshots; incoming snapshots land here first).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store this replica applies to.
    pub fn store(&self) -> &Arc<MvccStore> {
        &self.store
    }

    /// The group's replicated metadata map as applied on this replica (a follower's may lag;
    /// read it on a leader after [`Self::catch_up`] for the committed state).
    pub fn meta(&self) -> io::Result<super::MetaMap> {
        super::state_machine::decode_meta(self.store.applied().as_ref())
    }

    /// Replicates changes to the metadata map as one log entry; resolves once it is committed
    /// and applied here. Errors as [`Replicator::replicate`].
    pub async fn write_meta(&self, ops: Vec<super::MetaOp>) -> Result<LogPosition, ReplicateError> {
        match self
            .raft
            .client_write(ReplicateRequest {
                commits: Vec::new(),
                meta: ops,
            })
            .await
        {
            Ok(response) => Ok(response.data),
            Err(e) => Err(map_write_error(e)),
        }
    }

    /// A [`Replicator`] that proposes through this replica.
    pub fn replicator(&self) -> RaftReplicator {
        RaftReplicator {
            raft: self.raft.clone(),
        }
    }

    /// Stops openraft's tasks, then waits until they released the log and the state machine,
    /// so the replica's directories and the store can be reopened as soon as this returns and
    /// the replica is dropped. Pending `replicate` calls end with
    /// [`ReplicateError::ShuttingDown`].
    pub async fn shutdown(&self) -> Result<(), ReplicaError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| ReplicaError::Io(io::Error::other(format!("raft core task: {e}"))))?;
        // openraft joins its core task but not the state machine worker, the replication
        // tasks or a snapshot build; they stop once they notice the core is gone.
        let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_RELEASE_TIMEOUT_MS);
        while !(self.log.is_sole_owner() && self.state_machine.is_sole_owner()) {
            if Instant::now() >= deadline {
                return Err(ReplicaError::Timeout(format!(
                    "openraft tasks of node {} still hold the log or state machine after {SHUTDOWN_RELEASE_TIMEOUT_MS} ms",
                    self.node_id
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Proposes write batches through a replica's Raft group: each `replicate` call is one log
/// entry.
///
/// `replicate` resolves only after the entry is committed and applied on this node:
/// `Raft::client_write` (openraft-0.10.0-alpha.37 src/raft/mod.rs:1316) waits on a responder
/// (src/raft/api/app.rs:58-74) that only the state machine completes, through
/// `ApplyResponder::send` after `apply` stored the entry (state_machine.rs). Entries reach the
/// state machine only up to the committed index, which is saved first
/// (src/core/raft_core.rs:2511-2525). The leader commits an index of its own term once a
/// quorum has it on disk (src/engine/handler/replication_handler/mod.rs:203-266): its own copy
/// counts only after the log store's flush callback (src/core/raft_core.rs:2091-2113), and a
/// follower answers AppendEntries only once its log IO is flushed
/// (src/engine/engine_impl.rs:633-656).
#[derive(Clone)]
pub struct RaftReplicator {
    raft: Raft,
}

impl RaftReplicator {
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

impl Replicator for RaftReplicator {
    fn replicate(
        &self,
        commits: Vec<Commit>,
    ) -> BoxFuture<'_, Result<LogPosition, ReplicateError>> {
        Box::pin(async move {
            // A batch the store would refuse must never enter the log: every replica would
            // fail to apply it and the whole range would stop.
            store::validate_commits(&commits)?;
            match self
                .raft
                .client_write(ReplicateRequest {
                    commits,
                    meta: Vec::new(),
                })
                .await
            {
                Ok(response) => {
                    let position = response.data;
                    if position != position_of(&response.log_id) {
                        return Err(ReplicateError::Fatal(format!(
                            "entry {} was applied as {position:?}",
                            response.log_id
                        )));
                    }
                    Ok(position)
                }
                Err(e) => Err(map_write_error(e)),
            }
        })
    }
}

fn map_write_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ReplicateError {
    match e {
        // Refused before its entry was appended (openraft's errors/mod.rs:104): certainly not
        // applied, safe to send to the leader.
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ReplicateError::NotLeader {
                hint: forward.leader_id,
            }
        }
        // Appended here, then overwritten or purged when this node followed another leader's
        // log: another leader may still commit it, so the outcome is unknown.
        RaftError::APIError(other) => ReplicateError::Fatal(other.to_string()),
        RaftError::Fatal(Fatal::Stopped) => ReplicateError::ShuttingDown,
        RaftError::Fatal(fatal) => ReplicateError::Fatal(fatal.to_string()),
    }
}
