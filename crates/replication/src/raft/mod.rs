//! One range's Raft group on openraft 0.10: the type configuration, the log store on fjall
//! ([`LogStore`]), the state machine over the MVCC store ([`StateMachine`]), an in-process
//! network for tests ([`InProcessRouter`]) and the replica that ties them together
//! ([`RangeReplica`], with [`RaftReplicator`] as its [`crate::Replicator`]).
//!
//! Durability split (DESIGN.md, Storage): the Raft log is the durable record. An entry is
//! fsync'd into the log before openraft learns it is flushed, and the state machine applies
//! entries to the store with [`store::Durability::Buffered`]. After a crash the store may lag
//! the log; openraft re-applies `(store applied, saved committed]` from the log on restart
//! (the store makes re-application idempotent by log position). The log is only purged below a
//! snapshot, and a snapshot is only published after the store has been synced, so the log
//! always covers everything the durable store may be missing.
//!
//! Layout of a replica directory:
//!
//! ```text
//! <dir>/raft-log/     fjall database: log entries, vote, committed and purged log ids
//! <dir>/snapshots/    current.snap (checkpoint + snapshot meta), temp files while writing
//! ```
//!
//! The MVCC store itself lives wherever its owner opened it; the replica only holds an
//! `Arc<MvccStore>`.

pub mod http;
mod log_store;
mod network;
mod replica;
mod state_machine;

use std::fmt;
use std::io;

use openraft::impls::BasicNode;
use serde::{Deserialize, Serialize};
use store::{Commit, LogPosition};

pub use log_store::LogStore;
pub use network::{InProcessClient, InProcessNetwork, InProcessRouter};
pub use replica::{RaftReplicator, RangeReplica, ReplicaError, ReplicaOptions};
pub use state_machine::{SnapshotBuilder, SnapshotData, StateMachine};

// ---- Knobs: every limit and timing of a range's Raft group, with units in the names. ----

/// How often a leader sends heartbeats, in milliseconds.
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
/// Shortest election timeout, in milliseconds. A follower that hears nothing from a leader for
/// a random time in `[min, max)` starts an election; three heartbeats fit in the minimum.
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 150;
/// Longest election timeout, in milliseconds. Failover takes about this long plus one election
/// round, well inside the 2 s promise of DESIGN.md's fault model.
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 300;
/// A snapshot (store checkpoint) is built once this many log entries were applied since the
/// previous one. Together with [`MAX_IN_SNAPSHOT_LOG_TO_KEEP`] it bounds the log to about
/// `SNAPSHOT_LOGS_SINCE_LAST + MAX_IN_SNAPSHOT_LOG_TO_KEEP` entries.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 5_000;
/// Log entries already covered by a snapshot that are kept anyway, so a follower that lags a
/// little catches up from the log instead of a full snapshot transfer.
pub const MAX_IN_SNAPSHOT_LOG_TO_KEEP: u64 = 1_000;
/// Fewest purgeable entries that trigger a purge (fewer, larger deletions).
pub const PURGE_BATCH_ENTRIES: u64 = 64;
/// A follower further behind than this many entries is sent a snapshot rather than the log.
/// Larger than [`SNAPSHOT_LOGS_SINCE_LAST`], as openraft requires, so a snapshot fixes the lag.
pub const REPLICATION_LAG_THRESHOLD_ENTRIES: u64 = 2 * SNAPSHOT_LOGS_SINCE_LAST;
/// Most log entries sent in one AppendEntries RPC.
pub const APPEND_ENTRIES_MAX_ENTRIES: u64 = 300;
/// How long sending and installing a whole snapshot may take, in milliseconds.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 60_000;
/// Most log entries the state machine applies in one blocking store call before it answers
/// their clients; bounds the latency a large apply backlog adds to the first client in it.
pub const APPLY_CHUNK_MAX_ENTRIES: usize = 64;
/// Most log entries deleted in one fjall batch when purging the log.
pub const PURGE_DELETE_BATCH_ENTRIES: usize = 10_000;
/// How long [`RangeReplica::shutdown`] waits for openraft's tasks to release the log store and
/// the state machine after the core task stopped, in milliseconds.
pub const SHUTDOWN_RELEASE_TIMEOUT_MS: u64 = 10_000;

openraft::declare_raft_types!(
    /// The types of one range's Raft group: node ids are `u64`, a node is addressed by a
    /// string (`BasicNode`), an entry carries a batch of commits and answers with the log
    /// position it was applied at. Standard Raft leader ids (one leader per term), so a log id
    /// is exactly `(term, index)` — the store's [`LogPosition`].
    pub TypeConfig:
        D = ReplicateRequest,
        R = LogPosition,
        NodeId = u64,
        Node = BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = openraft_rt_tokio::TokioRuntime,
);

/// The payload of a normal log entry: the commits of one group-commit batch, applied to the
/// store atomically as one [`store::ApplyBatch`], and changes to the group's replicated
/// metadata map (the meta range keeps the timestamp oracle's window, the node registry and
/// the range catalog there; data ranges leave it empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateRequest {
    pub commits: Vec<Commit>,
    pub meta: Vec<MetaOp>,
}

/// A change to a group's replicated metadata map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOp {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// A group's replicated metadata: small, rewritten with every applied entry's state record
/// (so it is exactly as durable and as snapshotted as the applied position).
pub type MetaMap = std::collections::BTreeMap<String, Vec<u8>>;

impl fmt::Display for ReplicateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.commits.first(), self.commits.last()) {
            (Some(first), Some(last)) => write!(
                f,
                "ReplicateRequest({} commits, ts {}..={}, {} meta ops)",
                self.commits.len(),
                first.ts,
                last.ts,
                self.meta.len()
            ),
            _ => write!(f, "ReplicateRequest({} meta ops)", self.meta.len()),
        }
    }
}

/// A log id of this group: `(term, index)`.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A log entry of this group.
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
/// A vote of this group.
pub type Vote = <TypeConfig as openraft::RaftTypeConfig>::Vote;
/// A membership with the log id that introduced it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata of this group.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot of this group: its meta and a reader of its checkpoint stream.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;
/// The openraft handle of one replica.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;
/// Metrics of one replica, as openraft reports them.
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

/// The store position of a log id. With standard leader ids a committed leader id is just
/// the term, so this mapping is one-to-one.
pub fn position_of(log_id: &LogId) -> LogPosition {
    LogPosition {
        term: log_id.committed_leader_id().term,
        index: log_id.index(),
    }
}

/// Runs blocking disk work on tokio's blocking pool, so it never stalls an async worker.
pub(crate) async fn run_blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking storage task failed: {e}")))?
}
