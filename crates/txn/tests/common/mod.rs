//! Test doubles shared by the txn integration tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use replication::{BoxFuture, ReplicateError, Replicator};
use store::{ApplyBatch, Commit, Durability, LogPosition, MvccStore};
use tokio::sync::{Semaphore, mpsc};

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Applies `commits` as the next entry of a one-node "log" numbered by `index`.
fn apply_next(
    store: &MvccStore,
    index: &AtomicU64,
    commits: Vec<Commit>,
) -> Result<LogPosition, ReplicateError> {
    let position = LogPosition {
        term: 1,
        index: index.fetch_add(1, Ordering::SeqCst) + 1,
    };
    store.apply(&ApplyBatch {
        position,
        commits,
        state: vec![],
        durability: Durability::Buffered,
    })?;
    Ok(position)
}

/// Applies each group to an in-memory store inside the future, after yielding a seeded
/// number of times (so other tasks interleave with replication).
pub struct YieldingReplicator {
    pub store: Arc<MvccStore>,
    pub seed: AtomicU64,
    index: AtomicU64,
}

impl YieldingReplicator {
    pub fn new(store: Arc<MvccStore>, seed: u64) -> Self {
        Self {
            store,
            seed: AtomicU64::new(seed),
            index: AtomicU64::new(0),
        }
    }
}

impl Replicator for YieldingReplicator {
    fn replicate(
        &self,
        commits: Vec<Commit>,
    ) -> BoxFuture<'_, Result<LogPosition, ReplicateError>> {
        Box::pin(async move {
            let mut rng = Rng(self.seed.fetch_add(1, Ordering::SeqCst));
            for _ in 0..rng.below(8) {
                tokio::task::yield_now().await;
            }
            apply_next(&self.store, &self.index, commits)
        })
    }
}

/// Holds every group until the test releases it; sends on `entered` when a group arrives.
pub struct GatedReplicator {
    pub store: Arc<MvccStore>,
    pub entered: mpsc::UnboundedSender<()>,
    pub gate: Semaphore,
    index: AtomicU64,
}

impl GatedReplicator {
    pub fn new(store: Arc<MvccStore>) -> (Self, mpsc::UnboundedReceiver<()>) {
        let (entered, rx) = mpsc::unbounded_channel();
        (
            Self {
                store,
                entered,
                gate: Semaphore::new(0),
                index: AtomicU64::new(0),
            },
            rx,
        )
    }
}

impl Replicator for GatedReplicator {
    fn replicate(
        &self,
        commits: Vec<Commit>,
    ) -> BoxFuture<'_, Result<LogPosition, ReplicateError>> {
        Box::pin(async move {
            let _ = self.entered.send(());
            let permit = self
                .gate
                .acquire()
                .await
                .map_err(|_| ReplicateError::ShuttingDown)?;
            permit.forget();
            apply_next(&self.store, &self.index, commits)
        })
    }
}
