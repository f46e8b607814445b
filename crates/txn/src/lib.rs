//! Transactions over a range: snapshot reads with read sets, buffered writes with the index
//! entries they imply, the timestamp oracle, the write log, and the committer that validates
//! (optimistic concurrency control) and group-commits through the range's replicator.
//!
//! Path of a mutation: [`Database::begin`] (read timestamp from the committer's read rule) →
//! [`Transaction`] reads and writes → [`Transaction::finish`] (read set + writes + index
//! entries) → [`Committer::commit`] (validate against the write log, take a commit timestamp,
//! group with others into one log entry) → `replication::Replicator::replicate` (durable on a
//! quorum, applied to the store) → the caller hears the commit timestamp.

mod catalog;
mod committer;
mod error;
mod local;
mod readset;
pub mod system;
mod transaction;
mod tso;
mod writelog;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use catalog::{
    CREATION_TIME, Catalog, DocumentValidator, ID, IndexDef, IndexState, SchemaCheck, TableDef,
    lookup,
};
pub use committer::{Committer, CommitterStats};
pub use error::{CommitError, TxnError};
pub use local::{LocalRange, OpenError, ReplicatorKind};
pub use readset::{IndexRef, ReadSet, WrittenKeys, document_range};
pub use system::{CatalogCache, SchemaCompiler};
pub use transaction::{
    CreationClock, FinalTransaction, IdGenerator, IndexScan, Object, Patch, Savepoint, ScanResult,
    Transaction,
};
pub use tso::{
    Clock, LOGICAL_PER_MS, LocalTso, SystemClock, TimestampOracle, TimestampSource, TsoError,
};
pub use writelog::{WriteLog, WriteLogEntry};

use store::{MvccStore, Timestamp};

/// How long to wait before attempt `attempt + 1` of a transaction whose attempt `attempt`
/// (1-based) hit a retryable commit error: `knobs::TRANSACTION_RETRY_BACKOFF_US`, doubling per
/// attempt up to 2^8 times.
pub fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_micros(knobs::TRANSACTION_RETRY_BACKOFF_US << attempt.min(8))
}

/// Why a transaction run through [`Database::transact`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TransactError<E> {
    /// The transaction body returned an error; nothing was committed.
    #[error("transaction failed: {0}")]
    Body(E),
    #[error(transparent)]
    Commit(CommitError),
    #[error("gave up after {attempts} attempts; last error: {last}")]
    TooManyRetries { attempts: u32, last: CommitError },
}

/// Where a database's tables come from.
#[derive(Clone)]
pub enum CatalogSource {
    /// Given up front and never changed (tests, benchmarks): no table is created on insert.
    Fixed(Arc<Catalog>),
    /// Stored in the database's `_catalog` table (`system`): every transaction reads the
    /// catalog of its snapshot; tables are created on first insert; deploys change it.
    Stored(Arc<CatalogCache>),
}

/// One range's store, catalog and committer: what a gateway runs transactions against.
#[derive(Clone)]
pub struct Database {
    pub store: Arc<MvccStore>,
    pub catalog: CatalogSource,
    pub committer: Committer,
}

impl Database {
    /// A database whose tables are `catalog`, fixed.
    pub fn with_fixed_catalog(
        store: Arc<MvccStore>,
        catalog: Catalog,
        committer: Committer,
    ) -> Self {
        Self {
            store,
            catalog: CatalogSource::Fixed(Arc::new(catalog)),
            committer,
        }
    }

    /// A database whose catalog is stored in it; `compiler` turns stored schemas into checks.
    pub fn with_stored_catalog(
        store: Arc<MvccStore>,
        committer: Committer,
        compiler: Option<Arc<dyn SchemaCompiler>>,
    ) -> Self {
        Self {
            store,
            catalog: CatalogSource::Stored(Arc::new(CatalogCache::new(compiler))),
            committer,
        }
    }

    /// The newest catalog known here: for checks made outside a transaction (argument
    /// validators naming tables). A transaction uses [`Transaction::catalog`], its snapshot's.
    pub fn catalog(&self) -> Arc<Catalog> {
        match &self.catalog {
            CatalogSource::Fixed(catalog) => catalog.clone(),
            CatalogSource::Stored(cache) => cache.latest(),
        }
    }

    /// A transaction at the newest safe read timestamp.
    pub fn begin(&self) -> Result<Transaction, CommitError> {
        let ts = self.committer.begin()?;
        self.transaction_at(ts)
    }

    /// A transaction at `ts`, once a read at `ts` is safe (see the committer's read rule).
    pub async fn begin_at(&self, ts: Timestamp) -> Result<Transaction, CommitError> {
        let ts = self.committer.begin_at(ts).await?;
        self.transaction_at(ts)
    }

    fn transaction_at(&self, ts: Timestamp) -> Result<Transaction, CommitError> {
        let (catalog, cache) = match &self.catalog {
            CatalogSource::Fixed(catalog) => (catalog.clone(), None),
            CatalogSource::Stored(cache) => (cache.latest(), Some(cache.clone())),
        };
        let mut txn = Transaction::new(
            Arc::clone(&self.store),
            catalog,
            ts,
            IdGenerator::random(),
            self.committer.creation_clock(),
        );
        if let Some(cache) = cache {
            txn.load_catalog(cache)
                .map_err(|e| CommitError::Catalog(e.to_string()))?;
        }
        Ok(txn)
    }

    /// Runs `body` in a transaction and commits it, re-running it from a fresh snapshot on a
    /// retryable commit error (conflict), at most `knobs::TRANSACTION_MAX_ATTEMPTS` times with
    /// growing backoff. `body` must be deterministic given what it reads.
    pub async fn transact<T, E, F, Fut>(
        &self,
        mut body: F,
    ) -> Result<(T, Timestamp), TransactError<E>>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<(T, Transaction), E>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let txn = self.begin().map_err(TransactError::Commit)?;
            let (out, txn) = body(txn).await.map_err(TransactError::Body)?;
            let finished = match txn.finish() {
                Ok(f) => f,
                Err(e) => {
                    return Err(TransactError::Commit(CommitError::Unavailable(format!(
                        "could not finish transaction: {e}"
                    ))));
                }
            };
            match self.committer.commit(finished).await {
                Ok(ts) => return Ok((out, ts)),
                Err(e) if e.is_retryable() && attempt < knobs::TRANSACTION_MAX_ATTEMPTS => {
                    tokio::time::sleep(retry_backoff(attempt)).await;
                }
                Err(e) if e.is_retryable() => {
                    return Err(TransactError::TooManyRetries {
                        attempts: attempt,
                        last: e,
                    });
                }
                Err(e) => return Err(TransactError::Commit(e)),
            }
        }
    }
}
