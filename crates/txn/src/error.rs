use store::{StoreError, Timestamp};
use value::{DocumentId, KeyError, TableNumber, ValueError};

use crate::tso::TsoError;

/// Errors of running a transaction (reads and buffered writes).
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("document {0} does not exist")]
    NotFound(DocumentId),
    #[error("table {0} does not exist")]
    UnknownTable(TableNumber),
    #[error("index {index} of table {table} does not exist")]
    UnknownIndex { table: TableNumber, index: u32 },
    #[error("invalid document: {0}")]
    InvalidDocument(#[from] ValueError),
    #[error("invalid index key: {0}")]
    Key(#[from] KeyError),
    /// A written document does not match its table's schema; nothing was written.
    #[error(
        "Failed to insert or update a document in table \"{table}\" because it does not match the schema: {message}"
    )]
    SchemaViolation { table: String, message: String },
    #[error("field {0} is a system field and cannot be written")]
    SystemField(String),
    /// A transaction limit (documents or bytes read or written, ranges read) was exceeded.
    #[error("transaction limit exceeded: {0}")]
    Limit(String),
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
    /// The catalog cannot be loaded or changed as asked (a corrupt stored catalog, a bad table
    /// name, a table creation on a database whose catalog is fixed).
    #[error("{0}")]
    Catalog(String),
}

/// Errors of committing a transaction.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A commit after this transaction's read timestamp wrote `key` (an entry key of `index` of
    /// `table`) inside the transaction's read set. Retry the transaction.
    #[error(
        "conflict: commit at {ts} wrote table {table} index {index} key {key:02x?}, which this transaction read"
    )]
    Conflict {
        table: u32,
        index: u32,
        key: Vec<u8>,
        ts: Timestamp,
    },
    /// The transaction read at a timestamp older than the write log keeps. Retry it.
    #[error(
        "read timestamp {read_ts} is older than the write log's oldest validatable commit {oldest}"
    )]
    ReadTsTooOld {
        read_ts: Timestamp,
        oldest: Timestamp,
    },
    /// This node does not lead the range. Retry (at the leader).
    #[error("not the leader of this range (leader hint: {hint:?})")]
    NotLeader { hint: Option<u64> },
    /// The committer is not running (stopped after a failure or on shutdown).
    #[error("committer unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Tso(#[from] TsoError),
    /// The catalog could not be loaded at the transaction's snapshot.
    #[error("loading the catalog: {0}")]
    Catalog(String),
    /// Replication failed after the commit was proposed: it may or may not be committed.
    #[error("commit outcome unknown: {0}")]
    OutcomeUnknown(String),
}

impl CommitError {
    /// Whether running the transaction again (from the start, at a new read timestamp) is safe
    /// and may succeed: only when this attempt certainly did not commit.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CommitError::Conflict { .. }
                | CommitError::ReadTsTooOld { .. }
                | CommitError::NotLeader { .. }
                | CommitError::Tso(TsoError::Unavailable(_))
        )
    }
}
