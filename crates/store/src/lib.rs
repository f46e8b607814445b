//! The MVCC document store of a range replica: versioned documents and index entries in one
//! ordered keyspace on an embedded LSM engine (fjall), with snapshot reads at a timestamp,
//! idempotent application of Raft log entries, consistent checkpoints and garbage collection.
//!
//! Layers, bottom up: [`engine`] (the seam: an ordered key-value engine, with [`FjallEngine`]
//! and [`MemEngine`]), [`layout`] (the bytes of every key), [`MvccStore`] (versions and
//! visibility), checkpoints (streams of a key span). [`conformance`] is the suite every engine
//! passes. The byte format is drawn in `docs/storage-format.md`.

mod checkpoint;
pub mod conformance;
pub mod engine;
mod error;
mod fjall_engine;
pub mod layout;
mod mem;
mod mvcc;

pub use checkpoint::CheckpointInfo;
pub use engine::{Direction, Durability, EngineError, KvBatch, KvEngine, KvSnapshot, Space};
pub use error::StoreError;
pub use fjall_engine::FjallEngine;
pub use layout::{IndexNumber, KeyRange, KeySpan, LogPosition, Timestamp};
pub use mem::MemEngine;
pub use mvcc::{
    AppliedState, ApplyBatch, ApplyOutcome, Commit, DocVersion, DocumentWrite, GcStats, IndexWrite,
    MvccStore, Order, ScanPage, ScanRequest, ScanRow, validate_commits,
};
