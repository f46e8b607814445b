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
//! # Fresh contexts
//!
//! Convex runs every function call in a fresh context, so nothing one request leaves in
//! module-level variables, on `globalThis` or on built-ins reaches another. Chorus does the
//! same: a context serves one call (with its nested `ctx.runQuery`/`ctx.runMutation`, and an
//! action's nested calls, which belong to the same request) and is then dropped
//! (`tests/isolation.rs::module_state_never_outlives_a_call`). Two things make that affordable:
//!
//! - **Bytecode** (`bytecode.rs`): each module is compiled once per code version to QuickJS
//!   bytecode, shared by the pool's threads (up to `knobs::JS_BYTECODE_CACHE_VERSIONS`
//!   versions), and every context declares it from there instead of parsing the source; the
//!   bootstrap too. Analysis imports every module of a new version, so it compiles them all
//!   before the first call.
//! - **Prepared contexts**: after a call, while no job waits, the thread builds the next
//!   context for the code version and environment it just ran: globals installed, the call's
//!   module and the chunks it imports evaluated. The next call of that code takes it and never
//!   runs in a context where a function already ran. One per (code version, environment), at
//!   most `knobs::JS_THREAD_PREPARED_CONTEXTS` per thread, least recently called dropped. A call
//!   that finds none (a new version, a burst, a thread that never idles) builds its own.
//!
//! Measured on the 2-core development VM (release build, one JS thread, one call at a time;
//! `cargo run --release -p js --example js_costs [bundle.js | bundle-dir]` prints these with its
//! conditions; runs vary by 20% or more, p50s):
//!
//! | step | p50 |
//! |---|---|
//! | `Context::full` alone | 0.11–0.17 ms |
//! | Chorus's globals: the ~20 KB bootstrap from bytecode, then run | ~0.2 ms (compiled from source: ~1.9 ms) |
//! | compile and evaluate a synthetic 100 KB module from source | 5.4–9.4 ms |
//! | call of a new code version of the real 79 KB `convex/server` 1.48 bundle (compile, context, import) | 4.6–6.6 ms (before bytecode: 8.7 ms) |
//! | call of the real bundle's trivial query that builds its context (modules from bytecode) | 1.25–1.8 ms |
//! | **the same call on a prepared context** | **0.19–0.21 ms** |
//! | the same call on a context reused across calls (before fresh contexts) | 0.04 ms |
//! | call of a trivial query (tiny or 100 KB modules) on a prepared context | 0.08 ms |
//!
//! Why both: bytecode alone leaves every call paying for its context (1.25–1.8 ms for the real
//! bundle, over the 0.5 ms target for a warm trivial query); prepared contexts alone would cost
//! a thread 4–7 ms of compiling per call, so it could prepare only a couple of hundred a second.
//! Together, a call on a prepared context costs 0.15 ms more than one on a reused context did
//! (the library's code runs for the first time in a new realm), and the thread builds the next
//! one in 1.2–1.5 ms of idle time. The price is paid when calls come back to back: the thread
//! has no idle time, each call builds its own context, and a saturated pool serves about a
//! thousand trivial queries a second where reusing contexts served four to seven thousand
//! (`docs/benchmarks.md`, functions). A thread waits `knobs::JS_PREPARE_DELAY_US` without a job
//! before it prepares, so the rest of the request it just answered (the caller's wake-up, a
//! mutation's commit) is not kept from a core.
//!
//! **Module-level code evaluated ahead of a call** runs as it would at the start of the call,
//! except that no call is in progress yet: `process.env` is the code's environment (contexts
//! are prepared per environment), `Math.random` draws from a fixed import seed (in a call too,
//! so the function's own values depend only on the call's seed), and console output is kept
//! and becomes the start of the call's log; but syscalls are refused and `Date.now()` reads the
//! wall clock rather than the call's time.
//!
//! **Garbage**: a used context is cyclic garbage that only QuickJS's collector frees (about as
//! costly as building it). The thread collects it while idle, before preparing, and lets the
//! heap grow `knobs::JS_GC_HEADROOM_BYTES` past what it holds before QuickJS collects on its
//! own, so a call rarely starts a collection.
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
//! while the module is evaluated, so a prepared context is keyed by the environment as well as
//! the code version: a call only ever takes a context whose modules saw its own variables.
//!
//! **After a fatal error** (time limit or memory limit) the thread drops its runtime, with all
//! its prepared contexts, and builds a new one: an interrupted module or a heap at its limit is
//! not trusted again.
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

mod bytecode;
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
