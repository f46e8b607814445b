//! One range on one node, assembled: the store on fjall, its replicator, the timestamp
//! oracle and the committer. `chorus dev`, the crash test's writer and the benchmarks open a
//! range this way.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use replication::raft::ReplicaError;
use replication::{DirectReplicator, RangeReplica, Replicator};
use store::{MvccStore, StoreError, Timestamp};

use crate::{
    Catalog, CommitError, Committer, Database, LocalTso, SchemaCompiler, TimestampOracle, TsoError,
};

/// How a local range makes its writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicatorKind {
    /// A single-node Raft group: the log is fsync'd, the store is rebuilt from it. The real path.
    Raft,
    /// No consensus: each group is applied to the store with fsync. A baseline for benchmarks.
    Direct,
}

impl std::str::FromStr for ReplicatorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raft" => Ok(Self::Raft),
            "direct" => Ok(Self::Direct),
            other => Err(format!("unknown replicator {other:?} (raft, direct)")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("opening the raft replica: {0}")]
    Replica(#[from] ReplicaError),
    #[error("opening the timestamp oracle: {0}")]
    Tso(#[from] TsoError),
    #[error("starting the committer: {0}")]
    Commit(#[from] CommitError),
}

/// A range served by this process. Keep it alive while `db` is used; `shutdown` stops it.
pub struct LocalRange {
    pub db: Database,
    pub replica: Option<RangeReplica>,
}

/// Upper bound on waiting for a restarted single-node group to lead and catch up.
const LEADER_WAIT: Duration = Duration::from_secs(30);

impl LocalRange {
    /// Opens (creating if needed) the range stored under `dir`: `dir/store`, `dir/raft`, and
    /// the oracle's window file in `dir`. Recovers everything acknowledged before.
    pub async fn open(
        dir: &Path,
        kind: ReplicatorKind,
        catalog: Catalog,
    ) -> Result<Self, OpenError> {
        let (store, committer, replica) = Self::open_parts(dir, kind).await?;
        Ok(Self {
            db: Database::with_fixed_catalog(store, catalog, committer),
            replica,
        })
    }

    /// Like [`Self::open`], with the catalog stored in the range (`crate::system`): tables are
    /// created on first insert and deploys change the catalog transactionally.
    pub async fn open_stored(
        dir: &Path,
        kind: ReplicatorKind,
        compiler: Option<Arc<dyn SchemaCompiler>>,
    ) -> Result<Self, OpenError> {
        let (store, committer, replica) = Self::open_parts(dir, kind).await?;
        Ok(Self {
            db: Database::with_stored_catalog(store, committer, compiler),
            replica,
        })
    }

    async fn open_parts(
        dir: &Path,
        kind: ReplicatorKind,
    ) -> Result<(Arc<MvccStore>, Committer, Option<RangeReplica>), OpenError> {
        let store = Arc::new(MvccStore::open_fjall(dir.join("store"))?);
        let (replicator, replica): (Arc<dyn Replicator>, Option<RangeReplica>) = match kind {
            ReplicatorKind::Direct => (Arc::new(DirectReplicator::new(store.clone())), None),
            ReplicatorKind::Raft => {
                // Returns caught up: every committed entry is applied to the store.
                let replica =
                    RangeReplica::open_single_node(dir.join("raft"), store.clone(), LEADER_WAIT)
                        .await?;
                (Arc::new(replica.replicator()), Some(replica))
            }
        };
        let applied_ts = store.applied().map_or(Timestamp::MIN, |a| a.max_commit_ts);
        let tso: Arc<dyn TimestampOracle> = Arc::new(LocalTso::open(dir)?);
        let committer = Committer::start(replicator, tso, applied_ts)?;
        Ok((store, committer, replica))
    }

    /// Stops the replica's tasks (and releases its files).
    pub async fn shutdown(self) -> Result<(), OpenError> {
        if let Some(replica) = self.replica {
            replica.shutdown().await?;
        }
        Ok(())
    }
}
