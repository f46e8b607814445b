//! An in-memory [`KvEngine`] for tests and simulation.
//!
//! Snapshots share the maps through an `Arc`; a write copies the maps only while a snapshot
//! is still alive (`Arc::make_mut`), so short-lived snapshots cost nothing. It can be told to
//! fail its next durable write, to exercise the poisoned path.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::engine::{
    Direction, Durability, EngineError, KvBatch, KvEngine, KvIter, KvOp, KvSnapshot, Space,
};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Default)]
struct Maps {
    data: Map,
    meta: Map,
}

impl Maps {
    fn space(&self, space: Space) -> &Map {
        match space {
            Space::Data => &self.data,
            Space::Meta => &self.meta,
        }
    }

    fn space_mut(&mut self, space: Space) -> &mut Map {
        match space {
            Space::Data => &mut self.data,
            Space::Meta => &mut self.meta,
        }
    }
}

/// See the module docs.
#[derive(Default)]
pub struct MemEngine {
    maps: RwLock<Arc<Maps>>,
    poisoned: AtomicBool,
    fail_next_sync: AtomicBool,
}

impl MemEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `Durability::Sync` write fails as if fsync had failed, and poisons the engine.
    pub fn fail_next_sync(&self) {
        self.fail_next_sync.store(true, Ordering::SeqCst);
    }

    fn current(&self) -> Arc<Maps> {
        match self.maps.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl KvEngine for MemEngine {
    fn snapshot(&self) -> Box<dyn KvSnapshot + '_> {
        Box::new(MemSnapshot {
            maps: self.current(),
        })
    }

    fn write(&self, batch: KvBatch, durability: Durability) -> Result<(), EngineError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(EngineError::Poisoned);
        }
        if durability == Durability::Sync && self.fail_next_sync.swap(false, Ordering::SeqCst) {
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(EngineError::Io("injected fsync failure".into()));
        }
        let mut guard = match self.maps.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let maps = Arc::make_mut(&mut guard);
        for op in batch.into_ops() {
            match op {
                KvOp::Put { space, key, value } => {
                    maps.space_mut(space).insert(key, value);
                }
                KvOp::Delete { space, key } => {
                    maps.space_mut(space).remove(&key);
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), EngineError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(EngineError::Poisoned);
        }
        Ok(())
    }
}

struct MemSnapshot {
    maps: Arc<Maps>,
}

impl KvSnapshot for MemSnapshot {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.maps.space(space).get(key).cloned())
    }

    fn range<'a>(
        &'a self,
        space: Space,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
    ) -> KvIter<'a> {
        if bounds_empty(start, end) {
            return Box::new(std::iter::empty());
        }
        let range = self
            .maps
            .space(space)
            .range::<[u8], _>((start, end))
            .map(|(k, v)| Ok((k.clone(), v.clone())));
        match direction {
            Direction::Forward => Box::new(range),
            Direction::Reverse => Box::new(range.rev()),
        }
    }
}

/// `BTreeMap::range` panics on inverted bounds; an inverted range is simply empty.
pub(crate) fn bounds_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}
