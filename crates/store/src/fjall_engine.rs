//! [`KvEngine`] on fjall, an LSM-tree engine: one fjall `Database` (one journal, so one fsync
//! covers a batch that spans both spaces) with a keyspace per [`Space`].
//!
//! fjall poisons its database when a journal write or fsync fails and then refuses every
//! write; that maps to [`EngineError::Poisoned`], which is what DESIGN.md asks for ("a failed
//! fsync stops the node from accepting writes until restart").

use std::ops::Bound;
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::engine::{
    Direction, Durability, EngineError, KvBatch, KvEngine, KvIter, KvOp, KvSnapshot, Space,
};
use crate::mem::bounds_empty;

const DATA_KEYSPACE: &str = "mvcc";
const META_KEYSPACE: &str = "meta";

/// See the module docs.
pub struct FjallEngine {
    db: Database,
    data: Keyspace,
    meta: Keyspace,
}

impl FjallEngine {
    /// Opens (creating if needed) the engine in directory `path`, recovering its journal.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EngineError> {
        let db = Database::builder(path.as_ref()).open().map_err(map_err)?;
        let data = db
            .keyspace(DATA_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(map_err)?;
        let meta = db
            .keyspace(META_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(map_err)?;
        Ok(Self { db, data, meta })
    }

    fn keyspace(&self, space: Space) -> &Keyspace {
        match space {
            Space::Data => &self.data,
            Space::Meta => &self.meta,
        }
    }

    /// Bytes the database occupies on disk (journal and tables).
    pub fn disk_space(&self) -> Result<u64, EngineError> {
        self.db.disk_space().map_err(map_err)
    }
}

fn map_err(e: fjall::Error) -> EngineError {
    match e {
        fjall::Error::Poisoned => EngineError::Poisoned,
        other => EngineError::Io(other.to_string()),
    }
}

impl KvEngine for FjallEngine {
    fn snapshot(&self) -> Box<dyn KvSnapshot + '_> {
        Box::new(FjallSnapshot {
            engine: self,
            snapshot: self.db.snapshot(),
        })
    }

    fn write(&self, batch: KvBatch, durability: Durability) -> Result<(), EngineError> {
        let mut fb = self.db.batch().durability(match durability {
            Durability::Sync => Some(PersistMode::SyncAll),
            Durability::Buffered => None,
        });
        for op in batch.into_ops() {
            match op {
                KvOp::Put { space, key, value } => fb.insert(self.keyspace(space), key, value),
                KvOp::Delete { space, key } => fb.remove(self.keyspace(space), key),
            }
        }
        fb.commit().map_err(map_err)
    }

    fn sync(&self) -> Result<(), EngineError> {
        self.db.persist(PersistMode::SyncAll).map_err(map_err)
    }
}

struct FjallSnapshot<'e> {
    engine: &'e FjallEngine,
    snapshot: fjall::Snapshot,
}

impl KvSnapshot for FjallSnapshot<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.snapshot
            .get(self.engine.keyspace(space), key)
            .map(|v| v.map(|slice| slice.to_vec()))
            .map_err(map_err)
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
        let iter = self
            .snapshot
            .range::<&[u8], _>(self.engine.keyspace(space), (start, end))
            .map(|guard| {
                guard
                    .into_inner()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(map_err)
            });
        match direction {
            Direction::Forward => Box::new(iter),
            Direction::Reverse => Box::new(iter.rev()),
        }
    }
}
