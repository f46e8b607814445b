//! Runs Convex function bundles in QuickJS, on a pool of dedicated threads.
//!
//! The crate knows nothing of the database: everything a function does to data goes through
//! the [`SyscallHandler`] the caller supplies with each call. The bundles are the ES modules
//! the Convex CLI uploads (`convex/server` inlined); they run unchanged against the globals
//! they expect (`research/convex-protocol.md` §4): `Convex.syscall`/`asyncSyscall`/`jsSyscall`,
//! `console`, `process.env`, `TextEncoder`/`TextDecoder`, `atob`/`btoa`, `queueMicrotask`
//! (QuickJS's own), and a seeded `Math.random` with a fixed `Date` per call.
//!
//! # Threads
//!
//! [`JsPool`] owns N threads (default: one per core), each with its own QuickJS runtime. Calls
//! wait in one bounded queue (full queue: [`JsError::Overloaded`]); the caller awaits a oneshot
//! reply, so async code never blocks. A call's time limit is enforced by the runtime's
//! interrupt handler (and by the thread's own clock while it waits for pending syscalls), its
//! memory by the runtime's allocation limit.
//!
//! # Context reuse
//!
//! Evaluating a bundle is far more expensive than calling one of its functions, so each
//! thread keeps a QuickJS context per (code version, environment), with the namespaces of the
//! modules it imported, and reuses it across calls; up to `knobs::JS_THREAD_CACHED_CONTEXTS`
//! per thread, least recently used evicted. Measured on the 2-core development VM (release
//! build, one JS thread, one call at a time; `cargo run --release -p js --example js_costs
//! [bundle.js]` prints these with its conditions; runs vary by about 20%):
//!
//! | step | p50 |
//! |---|---|
//! | `Context::full` alone | 0.12–0.19 ms |
//! | a context with Chorus's globals (compiling the ~14 KB bootstrap) | ~1.9 ms |
//! | compile and evaluate a synthetic 100 KB module | 7.4–10.6 ms |
//! | cold call of a real 66 KB `convex/server` 1.48 bundle (context + import) | 8.7 ms |
//! | warm call of a trivial query through the pool | 0.014–0.12 ms (p99 < 0.2 ms) |
//! | warm call of the real bundle's trivial query | 0.04 ms |
//!
//! A fresh context per call would cost milliseconds before the function even starts; the
//! target for a warm query is 0.5 ms at p50. The warm figure is mostly the two thread hand-offs
//! (caller → JS thread → caller).
//!
//! **What persists between calls of one context**: module-level JavaScript state (variables,
//! caches, anything a module put on `globalThis`), and changes a function made to built-ins.
//! Convex gives each call a fresh context; Chorus does not, for speed, so a function that
//! mutates module-level state sees it again in a later call on the same thread (pinned by
//! `tests/isolation.rs::module_state_persists_within_a_thread_by_design`).
//!
//! **What never persists**: everything per call lives in Rust, in the thread's host, for the
//! duration of the call only, and the globals read it from there: the syscall handler (and
//! with it the transaction and the identity, which is a syscall), the console buffer, the
//! seeded `Math.random` state, the time `Date` reports, and `process.env` (writes to it are
//! copy-on-write per call). Between calls these read as "no call in progress": syscalls
//! throw. As in Node, microtasks a call queues run within the call (the job queue is drained
//! before the call's promise is looked at), so only a call that fails with jobs still queued
//! leaves any: they run after its state is removed and before the next call starts, and if
//! they outlast the call's time limit the runtime is discarded. Pending syscall futures still
//! open when a call ends are dropped.
//!
//! **Environment at import time**: the generated `_generated/server.js` reads `process.env`
//! while the module is evaluated, so a cached context is keyed by the environment as well as
//! the code version: a module sees, at import and in every later call on that context, the
//! same variables. Changing a variable makes the next calls build new contexts.
//!
//! **After a fatal error** (time limit or memory limit) the thread drops its runtime, with all
//! its contexts, and builds a new one for the next request: an interrupted module or a heap at
//! its limit is not trusted again. Other errors (exceptions, `ConvexError`) keep the context.
//!
//! # Nested calls
//!
//! A handler may answer an async syscall with [`AsyncSyscallReply::Invoke`] (how
//! `ctx.runQuery`/`ctx.runMutation` work): the thread imports the target module into the
//! current context and invokes the export there, as part of the current call — same handler,
//! time limit, console, seed and job queue; the pool's queue is never re-entered, so nested
//! calls cannot deadlock waiting for a free thread. When the nested promise settles,
//! [`SyscallHandler::finish_nested`] decides how the caller's promise settles; a `ConvexError`
//! the nested function threw reaches the caller as a syscall error carrying its data.
//!
//! # Time and randomness
//!
//! Queries and mutations see `Date.now()` (and `new Date()`, `performance.now()` = 0) fixed at
//! the request's `now_ms`; actions see the clock advance from `now_ms`. `Math.random` is
//! SplitMix64 seeded with the request's `seed`, so a retried mutation replays the same values.

mod error;
mod host;
mod log;
mod modules;
mod pool;
mod syscall;
mod worker;

pub use error::{JsError, SyscallError};
pub use log::TRUNCATED_LINE_SUFFIX;
pub use modules::{ModuleSet, resolve_specifier};
pub use pool::{
    CallFailure, CallOutcome, CallRequest, CodeAnalysis, FunctionInfo, FunctionKind, JsPool,
    JsPoolConfig, Visibility,
};
pub use syscall::{AsyncSyscallReply, NestedCall, NestedSettle, PendingSyscall, SyscallHandler};
