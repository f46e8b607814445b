//! Checkers for recorded histories of a database under test: the checking half of Chorus's
//! correctness harness. A harness runs clients against the database, records every request as
//! an [`Op`] (JSON lines, [`history::write_jsonl`]), and hands the history to a checker here,
//! now or later. This crate knows nothing of Chorus.
//!
//! # The history model
//! An op is one client request: which client (`process`) sent it, when it was sent and
//! answered (`invoke_ns`, `complete_ns`, monotonic nanoseconds on one clock), what the answer
//! said ([`Outcome`]), and a workload-specific payload. `Ok` means the request took effect
//! exactly once, at an instant inside its interval; `Fail` means it certainly did not take
//! effect; `Info` means nobody knows: it may take effect at any instant after invocation, even
//! after the client gave up, or never. Checkers treat `Info` ops as both possibilities, and
//! use no result an `Info` or `Fail` op carries.
//!
//! # What each checker proves, and what it does not
//! - [`bank`]: every committed read of all balances sums to the constant total, with no
//!   negative balance. Catches lost updates and torn transfers that change the sum; a bug that
//!   preserves the sum (a transfer applied to the wrong pair of accounts) goes unseen.
//! - [`elle`]: list-append transactions are serializable or strictly serializable. Each
//!   reported cycle is a proof that no (real-time respecting) serial order exists; aborted,
//!   intermediate and garbage reads are proofs of weaker isolation. Absence of anomalies is
//!   not a proof of serializability: appends no read observed cannot be ordered.
//! - [`linear`]: each register key is linearizable (a complete search, Wing–Gong with Lowe's
//!   memoization). A `NotLinearizable` verdict is a proof; the search may give up with
//!   `Unknown` past its budget. Keys are checked independently, so it says nothing about
//!   cross-key order.
//! - [`set`]: acknowledged adds are never lost, nothing appears that was not added, and a read
//!   never misses an element already known to be present (a stale read). It checks per
//!   element, not a single order of all reads.
//! - [`monotonic`]: each client's successive reads never go back in read timestamp or in the
//!   version of a key. It says nothing across clients.
//! - [`subscription`]: every result a subscriber was sent equals the query run fresh on the
//!   committed state at that result's timestamp, timestamps increase, and the last result
//!   reflects the last committed change. Coalescing intermediate results is allowed.
//!
//! Every report has `is_valid()`. Checkers fail (with [`HistoryError`]) only on a malformed
//! history, never on an anomalous one.

#![warn(missing_docs)]

pub mod bank;
pub mod elle;
mod graph;
pub mod history;
pub mod linear;
pub mod monotonic;
pub mod set;
pub mod subscription;

pub use history::{HistoryBuilder, Op, Outcome};

/// Why a history could not be read or checked. Anomalies are not errors: they are reported.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading or writing the history file failed.
    #[error("history i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A line of a JSON-lines history did not parse.
    #[error("history line {line}: {source}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Serializing an op failed.
    #[error("history encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// Op indices must strictly increase.
    #[error("op index {index} follows index {previous}; indices must strictly increase")]
    IndexOrder {
        /// The offending index.
        index: u64,
        /// The index before it.
        previous: u64,
    },
    /// An `Ok` or `Fail` op must say when it completed.
    #[error("op {index} is ok or fail but has no completion time")]
    MissingCompletion {
        /// The op.
        index: u64,
    },
    /// An op completed before it was invoked.
    #[error("op {index} completed at {complete_ns} ns, before it was invoked at {invoke_ns} ns")]
    CompletedBeforeInvoked {
        /// The op.
        index: u64,
        /// When it was invoked.
        invoke_ns: u64,
        /// When it completed.
        complete_ns: u64,
    },
}
