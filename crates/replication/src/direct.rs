use std::sync::{Arc, Mutex};

use store::{ApplyBatch, Commit, Durability, LogPosition, MvccStore};

use crate::{BoxFuture, ReplicateError, Replicator};

/// Applies each batch to the local store with fsync, on a blocking thread. No consensus: a
/// "log" of one node whose positions are the store's applied index + 1.
pub struct DirectReplicator {
    store: Arc<MvccStore>,
    /// Serializes position assignment with the apply, so positions follow call order.
    order: Arc<Mutex<()>>,
}

impl DirectReplicator {
    pub fn new(store: Arc<MvccStore>) -> Self {
        Self {
            store,
            order: Arc::new(Mutex::new(())),
        }
    }
}

impl Replicator for DirectReplicator {
    fn replicate(
        &self,
        commits: Vec<Commit>,
    ) -> BoxFuture<'_, Result<LogPosition, ReplicateError>> {
        let store = Arc::clone(&self.store);
        let order = Arc::clone(&self.order);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let _ordered = match order.lock() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let index = store.applied().map_or(0, |a| a.position.index) + 1;
                let position = LogPosition { term: 1, index };
                store.apply(&ApplyBatch {
                    position,
                    commits,
                    state: Vec::new(),
                    durability: Durability::Sync,
                })?;
                Ok(position)
            })
            .await
            .map_err(|e| ReplicateError::Fatal(format!("apply task failed: {e}")))?
        })
    }
}
