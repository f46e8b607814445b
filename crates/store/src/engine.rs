//! The seam between Chorus's MVCC layer and the ordered key-value engine under it.
//!
//! [`KvEngine`] is deliberately small: two key spaces, consistent snapshots, ordered range
//! iteration in both directions, and atomic multi-key batches with a chosen durability. The
//! MVCC logic (versions, visibility, garbage collection, checkpoints) is written once, in
//! [`crate::MvccStore`], on top of any engine. Two engines exist: [`crate::FjallEngine`] (the
//! LSM on disk) and [`crate::MemEngine`] (tests). `crate::conformance` is the suite both pass.

use std::ops::Bound;

/// The two key spaces of a store. `Data` holds versioned documents and index entries;
/// `Meta` holds the store's own bookkeeping (format version, applied log position, GC
/// watermark, restore marker). A batch may touch both atomically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    Data,
    Meta,
}

/// Iteration direction of a range read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// How durable a write must be before [`KvEngine::write`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The batch is on stable storage (fsync) when `write` returns.
    Sync,
    /// The batch is in the engine's journal buffer; a crash may lose it (never half of it).
    Buffered,
}

/// One mutation inside a [`KvBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Put {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        space: Space,
        key: Vec<u8>,
    },
}

/// A set of mutations applied atomically: after a crash either all are visible or none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvBatch {
    ops: Vec<KvOp>,
    bytes: usize,
}

impl KvBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.ops.push(KvOp::Put { space, key, value });
    }

    pub fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.bytes += key.len();
        self.ops.push(KvOp::Delete { space, key });
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values in the batch.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn into_ops(self) -> Vec<KvOp> {
        self.ops
    }
}

/// An owned key-value pair read from an engine.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// Iterator over a range of one space of a snapshot.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KvPair, EngineError>> + 'a>;

/// Errors of the engine layer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An earlier durable write failed; the engine refuses all writes until it is reopened,
    /// because it can no longer tell what reached the disk.
    #[error("storage engine refuses writes after an earlier failed fsync; restart the node")]
    Poisoned,
    #[error("storage engine I/O error: {0}")]
    Io(String),
}

/// An ordered key-value engine.
///
/// Contract every implementation must keep (checked by `crate::conformance`):
/// - keys in a space are ordered bytewise; `range` yields exactly the keys inside its bounds,
///   ascending for `Forward` and descending for `Reverse`;
/// - a [`KvSnapshot`] is a consistent view: writes that complete after it was taken are
///   invisible to it, and a batch is visible to it either whole or not at all;
/// - [`KvEngine::write`] is atomic: after any crash, a batch is applied whole or not at all;
///   with [`Durability::Sync`] it survives a crash once `write` has returned `Ok`;
/// - after a failed durable write the engine returns [`EngineError::Poisoned`] for every later
///   write (it never silently continues past a possibly lost write).
pub trait KvEngine: Send + Sync {
    /// A consistent read view as of now.
    fn snapshot(&self) -> Box<dyn KvSnapshot + '_>;

    /// Applies `batch` atomically.
    fn write(&self, batch: KvBatch, durability: Durability) -> Result<(), EngineError>;

    /// Makes every completed write durable.
    fn sync(&self) -> Result<(), EngineError>;
}

/// A consistent read view of a [`KvEngine`].
pub trait KvSnapshot: Send + Sync {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    fn range<'a>(
        &'a self,
        space: Space,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
    ) -> KvIter<'a>;
}
