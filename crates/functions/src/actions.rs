//! The syscalls of an action (protocol doc §4.6, "Actions"): no transaction of its own.
//!
//! `ctx.runQuery`/`ctx.runMutation`/`ctx.runAction` (`1.0/actions/query|mutation|action`) run
//! the target as a nested call in the action's own JS context and thread
//! ([`AsyncSyscallReply::Invoke`]), so an action never waits for another pool thread (no
//! deadlock however many actions run at once). A nested query or mutation gets a fresh
//! transaction and a [`DbSyscalls`] of its own, which answers its syscalls while it runs; when it
//! settles, a mutation is committed before the action's promise resolves (blocking the JS
//! thread for the commit only), and a retryable commit error runs it again on a fresh
//! transaction ([`NestedSettle::Retry`]), up to `knobs::TRANSACTION_MAX_ATTEMPTS` attempts.
//!
//! The syscalls of a nested query or mutation cannot be told apart from the action's own, so
//! one such call may run at a time: a `ctx.runQuery`/`ctx.runMutation` started while another
//! is still running fails (await them one at a time). Nested actions may overlap.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use js::{AsyncSyscallReply, FunctionKind, NestedCall, NestedSettle, SyscallError, SyscallHandler};
use serde_json::Value as Json;
use txn::Database;
use udf::Validator;

use crate::runner::Analysis;
use crate::syscalls::{AccessMode, Args, DbSyscalls, Failure, check_result, check_target};

/// The frame of a nested call the action started (distinct from the `u64` frames of the
/// `DbSyscalls` of a running nested query or mutation).
struct ActionFrame(u64);

/// The nested query or mutation in progress, with its own transaction.
struct ActiveCall {
    id: u64,
    kind: FunctionKind,
    path: String,
    returns: Option<Validator>,
    db: DbSyscalls,
    attempt: u32,
}

/// A nested action in progress.
struct NestedAction {
    id: u64,
    path: String,
    returns: Option<Validator>,
}

/// Answers an action's syscalls; see the module docs.
pub(crate) struct ActionSyscalls {
    db: Database,
    functions: Arc<Analysis>,
    identity: Option<Json>,
    active: Option<ActiveCall>,
    actions: Vec<NestedAction>,
    next_frame_id: u64,
}

const DB_OPS: &[&str] = &[
    "1.0/get",
    "1.0/insert",
    "1.0/shallowMerge",
    "1.0/replace",
    "1.0/remove",
    "1.0/queryStream",
    "1.0/queryStreamNext",
    "1.0/queryCleanup",
    "1.0/queryPage",
    "1.0/count",
    "1.0/db/normalizeId",
    "1.0/runUdf",
];

fn failure_error(failure: Failure) -> SyscallError {
    match failure {
        Failure::Catchable(message) => SyscallError::new(message),
        Failure::Fatal(fatal) => SyscallError::new(fatal.message),
    }
}

fn refused(op: &str) -> SyscallError {
    if DB_OPS.contains(&op) {
        SyscallError::new(format!(
            "{op}: the database is not available in an action (ctx.db does not exist in \
             actions); use ctx.runQuery or ctx.runMutation"
        ))
    } else {
        SyscallError::new(format!("{op} is not supported in actions yet"))
    }
}

impl ActionSyscalls {
    pub(crate) fn new(db: Database, functions: Arc<Analysis>, identity: Option<Json>) -> Self {
        ActionSyscalls {
            db,
            functions,
            identity,
            active: None,
            actions: Vec::new(),
            next_frame_id: 0,
        }
    }

    fn handler(&self, kind: FunctionKind) -> Result<DbSyscalls, SyscallError> {
        let txn = self
            .db
            .begin()
            .map_err(|e| SyscallError::new(format!("could not start a transaction: {e}")))?;
        let mode = match kind {
            FunctionKind::Mutation => AccessMode::ReadWrite,
            _ => AccessMode::ReadOnly,
        };
        Ok(DbSyscalls::new(txn, mode)
            .with_identity(self.identity.clone())
            .with_functions(self.functions.clone()))
    }

    fn start(&mut self, op: &str, args_json: &str) -> Result<NestedCall, SyscallError> {
        let kind = match op {
            "1.0/actions/query" => FunctionKind::Query,
            "1.0/actions/mutation" => FunctionKind::Mutation,
            _ => FunctionKind::Action,
        };
        if let Some(active) = &self.active {
            return Err(SyscallError::new(format!(
                "{op}: {} is still running; an action may run one ctx.runQuery/\
                 ctx.runMutation at a time (await each before starting the next)",
                active.path
            )));
        }
        if self.actions.len() >= knobs::FUNCTION_MAX_NESTING_DEPTH {
            return Err(SyscallError::new(format!(
                "Function call depth exceeded: ctx.runAction may nest at most {} calls deep",
                knobs::FUNCTION_MAX_NESTING_DEPTH
            )));
        }
        let args = Args::parse(op, args_json).map_err(failure_error)?;
        let target = check_target(op, &self.functions, &self.db.catalog(), &args, kind)
            .map_err(failure_error)?;
        let id = self.next_frame_id;
        self.next_frame_id += 1;
        if kind == FunctionKind::Action {
            self.actions.push(NestedAction {
                id,
                path: target.path,
                returns: target.returns,
            });
        } else {
            let db = self.handler(kind)?;
            self.active = Some(ActiveCall {
                id,
                kind,
                path: target.path,
                returns: target.returns,
                db,
                attempt: 1,
            });
        }
        Ok(NestedCall {
            module: target.module,
            export: target.export,
            kind,
            args_json: target.args_json,
            frame: Box::new(ActionFrame(id)),
        })
    }

    /// A nested query or mutation settled: check its result, commit a mutation.
    fn settle_active(&mut self, active: ActiveCall, result: Option<String>) -> NestedSettle {
        let ActiveCall {
            id,
            kind,
            path,
            returns,
            db,
            attempt,
        } = active;
        let (txn, fatal) = db.into_parts();
        if let Some(fatal) = fatal {
            return NestedSettle::Reject(SyscallError::new(fatal.message));
        }
        let Some(text) = result else {
            return NestedSettle::Rethrow;
        };
        if let Err(error) = check_result(&path, &text, returns.as_ref(), &self.db.catalog()) {
            return NestedSettle::Reject(error);
        }
        if kind != FunctionKind::Mutation {
            return NestedSettle::Resolve(text);
        }
        let finished = match txn.finish() {
            Ok(finished) => finished,
            Err(e) => return NestedSettle::Reject(SyscallError::new(format!("{path}: {e}"))),
        };
        match block_on(self.db.committer.commit(finished)) {
            Ok(_) => NestedSettle::Resolve(text),
            Err(e) if e.is_retryable() && attempt < knobs::TRANSACTION_MAX_ATTEMPTS => {
                std::thread::sleep(txn::retry_backoff(attempt));
                let db = match self.handler(kind) {
                    Ok(db) => db,
                    Err(error) => return NestedSettle::Reject(error),
                };
                self.active = Some(ActiveCall {
                    id,
                    kind,
                    path,
                    returns,
                    db,
                    attempt: attempt + 1,
                });
                NestedSettle::Retry(Box::new(ActionFrame(id)))
            }
            Err(e) => NestedSettle::Reject(SyscallError::new(format!(
                "mutation {path} did not commit after {attempt} attempts: {e}"
            ))),
        }
    }
}

impl SyscallHandler for ActionSyscalls {
    fn syscall(&mut self, op: &str, args_json: &str) -> Result<String, SyscallError> {
        match &mut self.active {
            Some(active) => active.db.syscall(op, args_json),
            None => Err(refused(op)),
        }
    }

    fn async_syscall(&mut self, op: &str, args_json: &str) -> AsyncSyscallReply {
        match op {
            "1.0/actions/query" | "1.0/actions/mutation" | "1.0/actions/action" => {
                return match self.start(op, args_json) {
                    Ok(call) => AsyncSyscallReply::Invoke(call),
                    Err(error) => AsyncSyscallReply::Ready(Err(error)),
                };
            }
            "1.0/getUserIdentity" => {
                return AsyncSyscallReply::Ready(Ok(self
                    .identity
                    .clone()
                    .unwrap_or(Json::Null)
                    .to_string()));
            }
            _ => {}
        }
        match &mut self.active {
            Some(active) => active.db.async_syscall(op, args_json),
            None => AsyncSyscallReply::Ready(Err(refused(op))),
        }
    }

    fn finish_nested(
        &mut self,
        frame: Box<dyn Any + Send>,
        result: Option<String>,
    ) -> NestedSettle {
        let frame = match frame.downcast::<ActionFrame>() {
            Ok(frame) => frame,
            Err(frame) => {
                // A `ctx.runQuery`/`ctx.runMutation` inside the running nested call.
                return match &mut self.active {
                    Some(active) => active.db.finish_nested(frame, result),
                    None => NestedSettle::Reject(SyscallError::new("unknown nested function call")),
                };
            }
        };
        if self.active.as_ref().is_some_and(|a| a.id == frame.0) {
            let Some(active) = self.active.take() else {
                return NestedSettle::Reject(SyscallError::new("unknown nested function call"));
            };
            return self.settle_active(active, result);
        }
        let Some(position) = self.actions.iter().position(|a| a.id == frame.0) else {
            return NestedSettle::Reject(SyscallError::new("unknown nested function call"));
        };
        let action = self.actions.remove(position);
        match result {
            None => NestedSettle::Rethrow,
            Some(text) => {
                match check_result(
                    &action.path,
                    &text,
                    action.returns.as_ref(),
                    &self.db.catalog(),
                ) {
                    Ok(()) => NestedSettle::Resolve(text),
                    Err(error) => NestedSettle::Reject(error),
                }
            }
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread (a JS pool thread, outside any Tokio runtime).
/// The commit it waits for is done by the committer's own task, never by a JS thread.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
