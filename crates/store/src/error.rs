use crate::engine::EngineError;
use crate::layout::{LogPosition, Timestamp};

/// Errors of the MVCC store. Nothing is written when an operation returns an error, except
/// where a variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine refuses writes after a failed fsync (see [`EngineError::Poisoned`]).
    #[error("storage is read-only after a failed fsync; restart the node")]
    Poisoned,
    #[error("storage I/O error: {0}")]
    Engine(String),
    /// A read asked for a timestamp whose versions garbage collection may have removed.
    #[error("snapshot at {ts} is older than the retention watermark {watermark}")]
    SnapshotTooOld { ts: Timestamp, watermark: Timestamp },
    /// A log entry at an already-applied index arrived with a different term: two different
    /// entries claim one log position, which Raft forbids. The replica must stop.
    #[error("log position {got:?} conflicts with applied position {applied:?}")]
    PositionConflict {
        applied: LogPosition,
        got: LogPosition,
    },
    /// The batch breaks a rule of the store (a limit, a malformed write); nothing was written.
    #[error("invalid write batch: {0}")]
    InvalidBatch(String),
    /// A scan request is malformed.
    #[error("invalid scan request: {0}")]
    InvalidScan(String),
    /// A restore was interrupted; the store serves nothing until a restore completes.
    #[error("a checkpoint restore did not complete; restore again before using this store")]
    RestoreIncomplete,
    /// A checkpoint stream is malformed, truncated or fails its checksum.
    #[error("bad checkpoint stream: {0}")]
    BadCheckpoint(String),
    /// Reading or writing a checkpoint stream failed.
    #[error("checkpoint stream I/O error: {0}")]
    CheckpointIo(#[from] std::io::Error),
    /// Stored bytes do not parse: a bug or disk corruption.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The store on disk was written by another format version.
    #[error("store format version {found} is not supported (this build reads {supported})")]
    UnsupportedFormat { found: u32, supported: u32 },
    /// Garbage collection stopped because a restore replaced the store's contents under it.
    #[error("garbage collection interrupted by a concurrent restore")]
    GcInterrupted,
}

impl From<EngineError> for StoreError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Poisoned => StoreError::Poisoned,
            EngineError::Io(msg) => StoreError::Engine(msg),
        }
    }
}
