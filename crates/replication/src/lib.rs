//! Replication of a range's write batches: the [`Replicator`] seam the committer proposes
//! through, and its implementations.
//!
//! - [`DirectReplicator`] applies each batch straight to the local store with fsync: no
//!   consensus, one node. Tests and baselines use it.
//! - [`RaftReplicator`] (module [`raft`]: openraft, a log on fjall) is the real one: a batch
//!   is one Raft log entry, answered after it is durable on a quorum and applied locally.

mod direct;
pub mod raft;

use std::future::Future;
use std::pin::Pin;

pub use direct::DirectReplicator;
pub use raft::{RaftReplicator, RangeReplica};
use store::{Commit, LogPosition, StoreError};

/// Errors of replication. `is_retryable` says whether the caller may try the same batch again
/// (on this or another node) without risk: only when the batch was certainly not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// This node is not the leader of the range; `hint` names the leader if known.
    #[error("not the leader of this range (leader hint: {hint:?})")]
    NotLeader { hint: Option<u64> },
    /// The replica is shutting down; the batch's outcome is unknown.
    #[error("replica is shutting down")]
    ShuttingDown,
    /// Applying to the local store failed; the replica stops rather than skip the entry.
    #[error("applying to the store failed: {0}")]
    Store(#[from] StoreError),
    /// Consensus failed in a way that leaves the batch's outcome unknown.
    #[error("replication failed: {0}")]
    Fatal(String),
}

impl ReplicateError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ReplicateError::NotLeader { .. })
    }
}

/// A boxed future, so [`Replicator`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Replicates write batches of one range.
///
/// Contract: `replicate` makes `commits` one entry of the range's log and resolves with its
/// position only once the entry is durable (on a quorum, for a replicated log) and applied to
/// the local store, so a read at any of its commit timestamps sees it. Entries are applied in
/// the order their `replicate` calls were made by one caller. On error the entry may or may not
/// have been applied unless [`ReplicateError::is_retryable`] says it certainly was not.
pub trait Replicator: Send + Sync + 'static {
    fn replicate(&self, commits: Vec<Commit>)
    -> BoxFuture<'_, Result<LogPosition, ReplicateError>>;
}
