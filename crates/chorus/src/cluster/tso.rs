//! The timestamp oracle of a cluster: served from the meta leader's memory, its window
//! persisted through the meta range's Raft log (`tso/window_end` in the replicated map).
//!
//! Why a new meta leader never goes back: an oracle hands out a timestamp only below a window
//! end that is committed in the meta log. A new leader's `catch_up` applies everything
//! committed before its term, so it reads every window end its predecessors committed, and it
//! starts above the largest. Why a deposed leader cannot hand out a stale timestamp after its
//! successor began: every batch first checks the leader lease (openraft's `LeaseRead`: a
//! quorum acknowledged this leader within the lease, which is shorter than the election
//! timeout, so no other leader can exist yet), and the term the oracle was started in.
//!
//! The data leader's committer reaches the oracle through [`RemoteTso`]: one call per commit
//! group, locally when this node also leads the meta range.

use std::sync::{Arc, Weak};

use openraft::ReadPolicy;
use replication::RangeReplica;
use replication::raft::MetaOp;
use store::Timestamp;
use tokio::sync::Mutex;
use txn::{LOGICAL_PER_MS, SystemClock, TimestampSource, TsoError};

use super::peer::{self, not_leader};
use super::{META_GROUP, Node};

/// Meta key of the persisted window end.
pub(crate) const WINDOW_KEY: &str = "tso/window_end";
/// Most timestamps one call may reserve.
const RESERVE_MAX: u64 = 1 << 20;

struct Window {
    /// The last timestamp handed out (or the persisted end, at start).
    last: u64,
    /// Nothing at or above this is handed out before a larger end is committed.
    end: u64,
}

/// The oracle on the meta leader, for one term.
pub(crate) struct TsoServer {
    meta: Arc<RangeReplica>,
    pub(crate) term: u64,
    window: Mutex<Window>,
    window_len: u64,
}

impl TsoServer {
    /// Starts the oracle of `term`: confirms the lead, applies the committed log, and starts
    /// above every window end committed before.
    pub(crate) async fn open(meta: Arc<RangeReplica>, term: u64) -> Result<Self, String> {
        meta.catch_up().await.map_err(|e| e.to_string())?;
        let map = meta.meta().map_err(|e| e.to_string())?;
        let persisted = match map.get(WINDOW_KEY) {
            None => 0,
            Some(raw) => u64::from_be_bytes(
                raw.as_slice()
                    .try_into()
                    .map_err(|_| format!("{WINDOW_KEY} is not 8 bytes"))?,
            ),
        };
        Ok(Self {
            meta,
            term,
            window: Mutex::new(Window {
                last: persisted,
                end: persisted,
            }),
            window_len: knobs::TSO_WINDOW_MS * LOGICAL_PER_MS,
        })
    }

    async fn check_lease(&self) -> Result<(), String> {
        let metrics = self.meta.metrics();
        if metrics.current_term != self.term {
            return Err(format!(
                "the oracle of term {} ended (term is now {})",
                self.term, metrics.current_term
            ));
        }
        self.meta
            .raft()
            .ensure_linearizable(ReadPolicy::LeaseRead)
            .await
            .map(|_| ())
            .map_err(|e| format!("not the meta leader: {e}"))
    }

    /// Commits a new window end.
    async fn extend(&self, window: &mut Window, past: u64) -> Result<(), String> {
        let end = past
            .checked_add(self.window_len)
            .ok_or("timestamp space exhausted")?;
        self.meta
            .write_meta(vec![MetaOp::Put {
                key: WINDOW_KEY.into(),
                value: end.to_be_bytes().to_vec(),
            }])
            .await
            .map_err(|e| format!("persisting the oracle window: {e}"))?;
        window.end = end;
        Ok(())
    }

    /// `n` consecutive fresh timestamps: `(first, n)`.
    pub(crate) async fn reserve(&self, n: u64) -> Result<(u64, u64), String> {
        let n = n.clamp(1, RESERVE_MAX);
        self.check_lease().await?;
        let mut window = self.window.lock().await;
        let physical = txn::Clock::now_ms(&SystemClock).saturating_mul(LOGICAL_PER_MS);
        let first = window.last.saturating_add(1).max(physical);
        let end = first.checked_add(n).ok_or("timestamp space exhausted")?;
        // Extend while half a window is left, so callers rarely wait for the write.
        if end.saturating_add(self.window_len / 2) > window.end {
            self.extend(&mut window, end).await?;
        }
        window.last = end - 1;
        Ok((first, n))
    }

    /// Ensures every later reservation is above `ts`.
    pub(crate) async fn fence(&self, ts: u64) -> Result<(), String> {
        self.check_lease().await?;
        let mut window = self.window.lock().await;
        if window.last < ts {
            if ts >= window.end {
                self.extend(&mut window, ts).await?;
            }
            window.last = ts;
        }
        Ok(())
    }
}

/// The committer's view of the cluster oracle: the meta leader, wherever it is.
pub(crate) struct RemoteTso {
    pub(crate) node: Weak<Node>,
}

impl RemoteTso {
    fn node(&self) -> Result<Arc<Node>, TsoError> {
        self.node
            .upgrade()
            .ok_or_else(|| TsoError::Unavailable("the node is stopping".into()))
    }
}

impl TimestampSource for RemoteTso {
    fn reserve(&self, n: usize) -> replication::BoxFuture<'_, Result<Vec<Timestamp>, TsoError>> {
        Box::pin(async move {
            let node = self.node()?;
            let n = n.max(1) as u64;
            let (first, count): (u64, u64) =
                peer::call_leader(&node, META_GROUP, "/tso/reserve", &n, |node| async move {
                    match node.tso_server() {
                        Some(tso) => tso.reserve(n).await,
                        None => Err(not_leader(node, META_GROUP)),
                    }
                })
                .await
                .map_err(TsoError::Unavailable)?;
            Ok((first..first + count).map(Timestamp).collect())
        })
    }

    fn fence(&self, ts: Timestamp) -> replication::BoxFuture<'_, Result<(), TsoError>> {
        Box::pin(async move {
            let node = self.node()?;
            peer::call_leader(&node, META_GROUP, "/tso/fence", &ts.0, |node| async move {
                match node.tso_server() {
                    Some(tso) => tso.fence(ts.0).await,
                    None => Err(not_leader(node, META_GROUP)),
                }
            })
            .await
            .map_err(TsoError::Unavailable)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use openraft::impls::BasicNode;
    use replication::raft::{InProcessRouter, ReplicaOptions};
    use store::MvccStore;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    async fn open(id: u64, root: &std::path::Path, router: &InProcessRouter) -> Arc<RangeReplica> {
        let store =
            Arc::new(MvccStore::open_fjall(root.join(format!("n{id}/store"))).expect("open store"));
        let replica = RangeReplica::open_with(
            id,
            root.join(format!("n{id}/raft")),
            store,
            router.network(id),
            &ReplicaOptions::default(),
        )
        .await
        .expect("open replica");
        router.register(id, replica.raft().clone());
        Arc::new(replica)
    }

    async fn leader_of(replicas: &BTreeMap<u64, Arc<RangeReplica>>, not: Option<u64>) -> u64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for (id, r) in replicas {
                if Some(*id) != not && r.is_leader() && r.wait_until_writable(WAIT).await.is_ok() {
                    return *id;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The oracle of a new meta leader starts above every timestamp its deposed predecessor
    /// handed out, and the deposed one refuses to hand out more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_meta_leader_never_hands_out_a_smaller_timestamp() {
        let root = tempfile::tempdir().expect("tempdir");
        let router = InProcessRouter::new();
        let mut replicas = BTreeMap::new();
        for id in 1..=3 {
            replicas.insert(id, open(id, root.path(), &router).await);
        }
        let members: BTreeMap<u64, BasicNode> = (1..=3)
            .map(|id| (id, BasicNode::new(format!("in-process-{id}"))))
            .collect();
        replicas[&1].initialize(members).await.expect("initialize");

        let first = leader_of(&replicas, None).await;
        let term = replicas[&first].metrics().current_term;
        let old = TsoServer::open(Arc::clone(&replicas[&first]), term)
            .await
            .expect("oracle");
        let mut handed_out = 0u64;
        for n in [1u64, 10, 1_000] {
            let (start, count) = old.reserve(n).await.expect("reserve");
            assert!(start > handed_out, "{start} after {handed_out}");
            handed_out = start + count - 1;
        }

        // Cut the old leader off; the others elect a new one.
        router.isolate(first);
        let second = leader_of(&replicas, Some(first)).await;
        assert_ne!(first, second);
        let new_term = replicas[&second].metrics().current_term;
        let new = TsoServer::open(Arc::clone(&replicas[&second]), new_term)
            .await
            .expect("new oracle");
        let (start, _) = new.reserve(1).await.expect("reserve");
        assert!(
            start > handed_out,
            "new leader gave {start} after {handed_out}"
        );

        // The deposed leader's lease runs out: it hands out nothing more.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(
            old.reserve(1).await.is_err(),
            "a deposed oracle must refuse"
        );
        router.heal(first);
        for replica in replicas.values() {
            replica.shutdown().await.expect("shutdown");
        }
    }
}
