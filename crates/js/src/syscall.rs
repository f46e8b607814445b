//! The seam between function code and the database: the caller's syscall handler.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use crate::{FunctionKind, SyscallError};

/// A syscall answer that is not ready yet. It is polled on the JS thread with a waker that
/// wakes that thread, so it must not depend on being polled inside a Tokio runtime: do the work
/// elsewhere (e.g. a spawned task) and hand back the receiving end of a channel.
pub type PendingSyscall = Pin<Box<dyn Future<Output = Result<String, SyscallError>> + Send>>;

/// The answer to `Convex.asyncSyscall`.
pub enum AsyncSyscallReply {
    /// Answered now; the JS promise settles in the same turn of the job queue.
    Ready(Result<String, SyscallError>),
    /// Answered later; the thread keeps running other JS jobs and polls the future until it
    /// completes or the call's time limit passes.
    Pending(PendingSyscall),
    /// Run another export of the same code (`ctx.runQuery`/`ctx.runMutation`, `1.0/runUdf`)
    /// in the caller's context, on the same thread, with this same handler answering its
    /// syscalls. When the nested function's promise settles, the pool calls
    /// [`SyscallHandler::finish_nested`] with `frame`, and settles the caller's promise as it
    /// answers.
    Invoke(NestedCall),
}

/// A nested function call asked for by [`AsyncSyscallReply::Invoke`].
pub struct NestedCall {
    /// Module path, e.g. `counters.js`.
    pub module: String,
    /// Export name, e.g. `increment`.
    pub export: String,
    /// What the export must be (checked again in JS before it is invoked).
    pub kind: FunctionKind,
    /// JSON text of the positional args array, `[argsObject]`, convex-encoded.
    pub args_json: String,
    /// The handler's own record of the call, handed back to `finish_nested`.
    pub frame: Box<dyn Any + Send>,
}

/// How the caller's promise settles once a nested call has.
#[derive(Debug)]
pub enum NestedSettle {
    /// Resolve with this JSON text (the nested function's result, as the bundle expects).
    Resolve(String),
    /// Reject with this error.
    Reject(SyscallError),
    /// Reject with what the nested function threw, unchanged (a `ConvexError` stays one).
    Rethrow,
    /// Run the same export again with the same arguments (e.g. a nested mutation whose commit
    /// hit a conflict); `finish_nested` is called again with this frame when that run settles.
    Retry(Box<dyn Any + Send>),
}

/// What a function's syscalls do: reads and writes in the caller's transaction, identity,
/// scheduling and the rest of `research/convex-protocol.md` §4.6. One handler serves one call;
/// the pool installs it for that call only and hands it back in the outcome (with the reads and
/// writes it recorded).
///
/// Contract for implementations:
/// - `syscall` and `async_syscall` run on the JS thread, between JS instructions: they must
///   not block for long (a blocking handler holds up the thread past the call's time limit,
///   which interrupts only JavaScript).
/// - `op` is the Convex op name (`1.0/get`, …) and `args_json` the JSON text the bundle sent;
///   an `Ok` answer must be JSON text, which the bundle parses.
/// - An `Err` becomes a JS exception the function can catch; it does not end the call by
///   itself.
/// - Calls arrive in the order the function made them.
pub trait SyscallHandler: Any + Send {
    /// `Convex.syscall(op, argsJson)`, synchronous.
    fn syscall(&mut self, op: &str, args_json: &str) -> Result<String, SyscallError>;

    /// `Convex.asyncSyscall(op, argsJson)`, whose JS result is a promise.
    fn async_syscall(&mut self, op: &str, args_json: &str) -> AsyncSyscallReply;

    /// A nested call this handler started with [`AsyncSyscallReply::Invoke`] has settled:
    /// `result` is its JSON result text, or `None` if it threw (or could not be started). The
    /// default passes the outcome through.
    fn finish_nested(
        &mut self,
        frame: Box<dyn Any + Send>,
        result: Option<String>,
    ) -> NestedSettle {
        let _ = frame;
        match result {
            Some(text) => NestedSettle::Resolve(text),
            None => NestedSettle::Rethrow,
        }
    }
}

impl dyn SyscallHandler {
    /// Recovers the caller's concrete handler (its transaction) from the one handed back in an
    /// outcome.
    pub fn downcast<T: SyscallHandler>(self: Box<Self>) -> Result<Box<T>, Box<dyn Any + Send>> {
        let any: Box<dyn Any + Send> = self;
        any.downcast::<T>()
    }
}
