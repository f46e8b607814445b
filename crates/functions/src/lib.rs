//! Running Convex queries and mutations against the database: the syscalls of
//! `research/convex-protocol.md` §4.6 over one `txn::Transaction` ([`DbSyscalls`]), and the
//! [`FunctionRunner`] that finds a function in deployed code, validates its arguments, runs it
//! in the `js` pool, validates its result and, for a mutation, commits (re-running the whole
//! function on a conflict).
//!
//! # Path of a mutation
//!
//! [`FunctionRunner::run_mutation`] → the code version's analysis (`JsPool::analyze`, cached
//! per version: kinds, visibility, validators) → `args` checked against `exportArgs()` →
//! `Database::begin` → `JsPool::run` with a [`DbSyscalls`] over the transaction →
//! `invokeMutation("[args]")`, whose `ctx.db` calls come back as syscalls → the result checked
//! against `exportReturns()` → `Transaction::finish` → `Committer::commit`. A retryable commit
//! error (conflict, stale read timestamp, leader change) runs the function again from the
//! start, on a fresh transaction with a new `Math.random` seed and `Date.now()`, at most
//! `knobs::TRANSACTION_MAX_ATTEMPTS` times with doubling backoff. Every other failure commits
//! nothing.
//!
//! A query runs the same way without the commit; its outcome carries the transaction's read
//! set (every document and index range it read) and its snapshot timestamp, which is what a
//! subscription needs to know when to re-run it.
//!
//! # Tables
//!
//! The tables a function can use are those of the `txn::Catalog` the `Database` was opened
//! with — declared up front, e.g. from the schema. A query of an unknown table reads nothing
//! (as a query of a table not yet created does in Convex); an insert into one fails with
//! "Table X does not exist". Convex creates a table on its first insert; doing that here needs
//! a replicated, transactional catalog (the table's creation must commit or abort with the
//! insert, and must be in the read set of queries that saw it missing), which is a later step.
//! `udf::TableResolver` is implemented for `Catalog` in `udf`.
//!
//! # Errors
//!
//! A syscall error that the function should see (a bad id, a write in a query, a missing
//! document) is thrown as a JS exception it may catch. A failure of the database itself or an
//! exceeded transaction limit is fatal: the handler records it, every later syscall fails with
//! it, and the run fails whatever the code did with the exception, so a transaction that missed
//! a read or a write is never committed. [`FunctionError`] separates a thrown `ConvexError`
//! (message and data), developer errors ([`DeveloperErrorKind`]) and system errors, and says
//! which are retryable.
//!
//! # Nested calls
//!
//! `ctx.runQuery`/`ctx.runMutation` (`1.0/runUdf`, by `name`) run the target export of the
//! same code version in the caller's call: same JS thread and context (the pool is not
//! re-entered), same [`DbSyscalls`] and transaction, so a nested query sees the caller's
//! writes. The handler checks the target (it exists; its kind; `runMutation` is refused in a
//! query), its arguments against `exportArgs()` and, when it returns, its result against
//! `exportReturns()`; internal targets are allowed. A nested mutation runs as a
//! sub-transaction: a `txn::Savepoint` is taken first and restored if it fails (throws, or
//! returns an invalid value), while the caller may catch the error and go on; reads stay
//! recorded. At most `knobs::FUNCTION_MAX_NESTING_DEPTH` nested calls may be open at once.
//! Overlapping nested mutations (started without awaiting the previous one) share the
//! transaction without isolation from each other; if one fails while a call started after it
//! is still running, the whole function fails rather than undo writes it cannot attribute.
//! Component `reference`s and `functionHandle`s are not supported.
//!
//! # Actions
//!
//! [`FunctionRunner::run_action`] runs an action outside any transaction. Its
//! `ctx.runQuery`/`ctx.runMutation`/`ctx.runAction` (`1.0/actions/query|mutation|action`) run
//! the target as an independent call nested in the action's JS context (no second pool thread,
//! so no deadlock): a query at a fresh snapshot, a mutation on its own transaction, committed
//! (retried on conflicts) before the action goes on. One nested query or mutation may run at a
//! time per action (overlapping ones fail with an error). Database syscalls made directly by an
//! action are refused; scheduling, storage, fetch and vector search are not supported.
//!
//! # Not yet
//!
//! Scheduling,
//! storage, text search, `maximumRowsRead`/`maximumBytesRead` and split cursors in
//! `1.0/queryPage` (pages are bounded by `pageSize` and the transaction's read limits), and
//! system tables (`_storage`, `_scheduled_functions`) do not exist yet.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod actions;
mod error;
mod runner;
mod syscalls;

pub use error::{DeveloperErrorKind, FunctionError};
pub use runner::{
    ActionOutcome, FunctionRunner, FunctionSpec, MutationOutcome, QueryOutcome, RunOptions,
    parse_function_path,
};
pub use syscalls::{AccessMode, DbSyscalls, FatalSyscallError};
