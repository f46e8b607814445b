//! The pool: JS threads behind one bounded queue, answering through oneshot channels.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::bytecode::BytecodeCache;
use crate::worker::{self, Job};
use crate::{JsError, ModuleSet, SyscallHandler};

/// What kind of function an export registers, from the presence of `isQuery`, `isMutation`
/// or `isAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    Query,
    Mutation,
    Action,
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FunctionKind::Query => "query",
            FunctionKind::Mutation => "mutation",
            FunctionKind::Action => "action",
        })
    }
}

/// Who may call a function: `isPublic` (or neither marker, the legacy default) or `isInternal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    Public,
    Internal,
}

/// Everything analysis finds in a code version: its functions and, when it has a `schema.js`,
/// the JSON its default export's `export()` returns (protocol doc §4.9).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeAnalysis {
    pub functions: Vec<FunctionInfo>,
    pub schema_json: Option<String>,
}

/// One function found by [`JsPool::analyze`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Module path, e.g. `messages.js`.
    pub module: String,
    /// Export name, e.g. `list` or `default`.
    pub name: String,
    pub kind: FunctionKind,
    pub visibility: Visibility,
    /// JSON of the args validator (`{"type":"any"}` when the function declared none).
    pub args_json: String,
    /// JSON of the returns validator, or `null`.
    pub returns_json: String,
}

/// Settings of a pool; `Default` takes the limits from `knobs`.
#[derive(Debug, Clone)]
pub struct JsPoolConfig {
    /// JS threads, each with its own QuickJS runtime.
    pub threads: usize,
    /// Calls that may wait for a thread before `Overloaded` is returned.
    pub queue_capacity: usize,
    /// Time limit of a query or mutation, import of its modules included.
    pub function_timeout_ms: u64,
    /// Time limit of an action.
    pub action_timeout_ms: u64,
    /// Time limit of analyzing all modules of one code version.
    pub analyze_timeout_ms: u64,
    /// Memory one call may allocate beyond what its thread's runtime holds when it starts
    /// (prepared contexts).
    pub memory_limit_bytes: usize,
    /// Most JS stack one call may use.
    pub max_stack_bytes: usize,
    /// Stack of each JS thread (must exceed `max_stack_bytes` with room for native frames).
    pub thread_stack_bytes: usize,
    /// Fresh contexts each thread keeps ready, one per recently called (code version,
    /// environment); 0 prepares none, so every call builds its context when it starts.
    pub prepared_contexts_per_thread: usize,
    /// How long a thread that has a context to prepare first waits for a job, in
    /// microseconds.
    pub prepare_delay_us: u64,
    /// Code versions whose modules' bytecode the pool keeps (shared by its threads).
    pub bytecode_cache_versions: usize,
    /// Bytes a runtime may allocate beyond what it holds after its limits were last set (after
    /// preparing a context) before QuickJS collects garbage.
    pub gc_headroom_bytes: usize,
    /// Console lines kept per call (the last is spent on an overflow notice).
    pub max_log_lines: usize,
    /// Longest console message, in UTF-8 bytes, before it is cut.
    pub max_log_line_bytes: usize,
}

impl Default for JsPoolConfig {
    fn default() -> Self {
        JsPoolConfig {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            queue_capacity: knobs::JS_QUEUE_MAX_REQUESTS,
            function_timeout_ms: knobs::FUNCTION_TIMEOUT_MS,
            action_timeout_ms: knobs::ACTION_TIMEOUT_MS,
            analyze_timeout_ms: knobs::FUNCTION_ANALYZE_TIMEOUT_MS,
            memory_limit_bytes: knobs::FUNCTION_MEMORY_LIMIT_BYTES,
            max_stack_bytes: knobs::FUNCTION_STACK_LIMIT_BYTES,
            thread_stack_bytes: knobs::JS_THREAD_STACK_BYTES,
            prepared_contexts_per_thread: knobs::JS_THREAD_PREPARED_CONTEXTS,
            prepare_delay_us: knobs::JS_PREPARE_DELAY_US,
            bytecode_cache_versions: knobs::JS_BYTECODE_CACHE_VERSIONS,
            gc_headroom_bytes: knobs::JS_GC_HEADROOM_BYTES,
            max_log_lines: knobs::FUNCTION_MAX_LOG_LINES,
            max_log_line_bytes: knobs::FUNCTION_LOG_LINE_MAX_BYTES,
        }
    }
}

impl JsPoolConfig {
    fn validate(&self) -> Result<(), JsError> {
        let invalid = |message: &str| {
            Err(JsError::InvalidConfig {
                message: message.to_string(),
            })
        };
        if self.max_log_lines == 0 {
            return invalid("max_log_lines must be at least 1 (the overflow notice)");
        }
        if self.max_log_line_bytes <= crate::TRUNCATED_LINE_SUFFIX.len() {
            return invalid("max_log_line_bytes must exceed the truncation suffix");
        }
        if self.memory_limit_bytes == 0 {
            return invalid("memory_limit_bytes must be positive (0 would mean unlimited)");
        }
        if self.max_stack_bytes == 0 || self.thread_stack_bytes <= self.max_stack_bytes {
            return invalid("thread_stack_bytes must exceed a positive max_stack_bytes");
        }
        Ok(())
    }
}

/// One call of an exported function.
pub struct CallRequest {
    pub code: Arc<ModuleSet>,
    /// Module path, e.g. `messages.js`.
    pub module: String,
    /// Export name, e.g. `list`.
    pub export: String,
    pub kind: FunctionKind,
    /// JSON text of the positional args array, `[argsObject]`, convex-encoded.
    pub args_json: String,
    /// Passed to `invokeAction(requestId, argsJson)`; unused by queries and mutations.
    pub request_id: String,
    /// Seeds `Math.random` for this call.
    pub seed: u64,
    /// `Date.now()` for this call: fixed for queries and mutations, the start of the clock for
    /// actions.
    pub now_ms: f64,
    /// `process.env` for this call (and for module evaluation, see the crate docs).
    pub env: Arc<BTreeMap<String, String>>,
    /// Answers the call's syscalls; handed back in the outcome.
    pub handler: Box<dyn SyscallHandler>,
}

/// A call that returned.
pub struct CallOutcome {
    /// JSON text of the convex-encoded return value (`null` for `undefined`).
    pub result_json: String,
    /// Console output, `"[LOG] 'a' 1"`-style.
    pub log_lines: Vec<String>,
    /// The request's handler, with whatever it recorded.
    pub handler: Box<dyn SyscallHandler>,
}

impl fmt::Debug for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallOutcome")
            .field("result_json", &self.result_json)
            .field("log_lines", &self.log_lines)
            .finish_non_exhaustive()
    }
}

/// A call that failed. A failed query still has a read set and log lines, so the handler and
/// the lines come back with the error. `handler` is `None` only if the pool lost the request
/// (shut down, or the thread failed).
#[derive(thiserror::Error)]
#[error("{error}")]
pub struct CallFailure {
    pub error: JsError,
    pub log_lines: Vec<String>,
    pub handler: Option<Box<dyn SyscallHandler>>,
}

impl fmt::Debug for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallFailure")
            .field("error", &self.error)
            .field("log_lines", &self.log_lines)
            .finish_non_exhaustive()
    }
}

impl From<CallFailure> for JsError {
    fn from(failure: CallFailure) -> Self {
        failure.error
    }
}

/// A pool of QuickJS runtimes, one per dedicated thread. Cheap to share (`&JsPool` is `Sync`);
/// its futures never block the async caller.
///
/// Dropping the pool closes its queue and joins the threads, which first finish the call each
/// is running (bounded by the time limits).
pub struct JsPool {
    sender: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    queue_capacity: usize,
}

impl JsPool {
    pub fn new(config: JsPoolConfig) -> Result<Self, JsError> {
        config.validate()?;
        let config = Arc::new(config);
        let queue_capacity = config.queue_capacity.max(1);
        let (sender, receiver) = mpsc::sync_channel(queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let bytecode = Arc::new(BytecodeCache::new(config.bytecode_cache_versions));
        let mut pool = JsPool {
            sender: Some(sender),
            threads: Vec::new(),
            queue_capacity,
        };
        for index in 0..config.threads.max(1) {
            let config = config.clone();
            let receiver = receiver.clone();
            let bytecode = bytecode.clone();
            let thread = std::thread::Builder::new()
                .name(format!("js-{index}"))
                .stack_size(config.thread_stack_bytes)
                .spawn(move || worker::thread_main(config, bytecode, receiver))
                .map_err(|e| JsError::Internal {
                    message: format!("cannot start JS thread: {e}"),
                })?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Number of JS threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Runs one exported function. Cancel safety: dropping the future does not stop the call,
    /// which runs to completion (or its time limit) on its thread; its outcome is discarded.
    pub async fn run(&self, request: CallRequest) -> Result<CallOutcome, CallFailure> {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.submit(Job::Run { request, reply }) {
            let (handler, error) = match *refused {
                (Job::Run { request, .. }, error) => (Some(request.handler), error),
                (_, error) => (None, error),
            };
            return Err(CallFailure {
                error,
                log_lines: Vec::new(),
                handler,
            });
        }
        match answer.await {
            Ok(outcome) => outcome,
            Err(_) => Err(CallFailure {
                error: lost_request(),
                log_lines: Vec::new(),
                handler: None,
            }),
        }
    }

    /// Imports every entry module (all but `_deps/` chunks) in a fresh context and lists the
    /// functions they export (`research/convex-protocol.md` §4.3). Exports with zero or several
    /// kinds, or with both visibilities, are skipped. `env` is `process.env` during import.
    pub async fn analyze(
        &self,
        code: Arc<ModuleSet>,
        env: Arc<BTreeMap<String, String>>,
    ) -> Result<Vec<FunctionInfo>, JsError> {
        Ok(self.analyze_code(code, env).await?.functions)
    }

    /// Analyzes every entry module of `code` (see [`CodeAnalysis`]); `schema.js`, when
    /// present, is evaluated for its schema JSON.
    pub async fn analyze_code(
        &self,
        code: Arc<ModuleSet>,
        env: Arc<BTreeMap<String, String>>,
    ) -> Result<CodeAnalysis, JsError> {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.submit(Job::Analyze { code, env, reply }) {
            return Err(refused.1);
        }
        answer.await.unwrap_or_else(|_| Err(lost_request()))
    }

    /// Queues a job; a refused job comes back with the reason.
    fn submit(&self, job: Job) -> Result<(), Box<(Job, JsError)>> {
        let Some(sender) = &self.sender else {
            return Err(Box::new((job, lost_request())));
        };
        match sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(Box::new((
                job,
                JsError::Overloaded {
                    capacity: self.queue_capacity,
                },
            ))),
            Err(TrySendError::Disconnected(job)) => Err(Box::new((job, lost_request()))),
        }
    }
}

fn lost_request() -> JsError {
    JsError::Internal {
        message: "the JS pool dropped the request (shut down, or its thread failed)".into(),
    }
}

impl Drop for JsPool {
    fn drop(&mut self) {
        // Closing the queue ends each thread's receive loop once the queue is drained.
        self.sender = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
