//! One JS thread: its QuickJS runtime, its cache of evaluated code, and how a call runs on it.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::promise::PromiseState;
use rquickjs::{Context, Ctx, Function, Module, Object, Persistent, Promise, Runtime, Value};
use tokio::sync::oneshot;

use crate::host::{self, CallState, Host, PendingOp, SplitMix64, ThreadWaker};
use crate::log::LogBuffer;
use crate::modules::resolve_specifier;
use crate::{
    CallFailure, CallOutcome, CallRequest, CodeAnalysis, FunctionInfo, FunctionKind, JsError,
    JsPoolConfig, ModuleSet, Visibility,
};

/// Jobs between a leftover-job drain's checks of the clock (jobs are usually tiny; the
/// interrupt handler catches long ones).
const DRAIN_CLOCK_CHECK_JOBS: usize = 1_024;

pub(crate) enum Job {
    Run {
        request: CallRequest,
        reply: oneshot::Sender<Result<CallOutcome, CallFailure>>,
    },
    Analyze {
        code: Arc<ModuleSet>,
        env: Arc<BTreeMap<String, String>>,
        reply: oneshot::Sender<Result<CodeAnalysis, JsError>>,
    },
}

/// Body of a JS thread: take jobs from the shared queue until it closes.
pub(crate) fn thread_main(config: Arc<JsPoolConfig>, jobs: Arc<Mutex<Receiver<Job>>>) {
    let mut worker = Worker::new(config);
    loop {
        let next = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = next else {
            return;
        };
        // A panic here is a bug in this crate or in a syscall handler; the caller sees a lost
        // request, and the thread starts over with a new runtime rather than dying.
        if std::panic::catch_unwind(AssertUnwindSafe(|| worker.handle(job))).is_err() {
            worker.reset();
        }
    }
}

/// Per-call limits, for error reports.
#[derive(Clone, Copy)]
struct Limits {
    timeout_ms: u64,
    memory_bytes: usize,
}

/// The parts of a request that say what to invoke.
struct Invocation<'a> {
    module: &'a str,
    export: &'a str,
    kind: FunctionKind,
    request_id: &'a str,
    args_json: &'a str,
}

struct Worker {
    config: Arc<JsPoolConfig>,
    host: Rc<Host>,
    engine: Option<Engine>,
    /// Counts calls; orders cached contexts by last use.
    tick: u64,
}

/// A QuickJS runtime and the contexts evaluated on it. Field order matters: contexts (and the
/// JS values they keep) are dropped before the runtime.
struct Engine {
    contexts: Vec<CachedContext>,
    runtime: Runtime,
}

/// One code version evaluated with one environment: a context, the namespaces of the modules
/// imported so far, and the bootstrap's internals. Persistent values are declared before the
/// context so they are released first.
struct CachedContext {
    internals: Persistent<Object<'static>>,
    namespaces: HashMap<String, Persistent<Object<'static>>>,
    version: u64,
    env: Arc<BTreeMap<String, String>>,
    last_used: u64,
    context: Context,
}

impl Worker {
    fn new(config: Arc<JsPoolConfig>) -> Self {
        Worker {
            config,
            host: Host::new(),
            engine: None,
            tick: 0,
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Run { request, reply } => {
                if reply.is_closed() {
                    return;
                }
                let outcome = self.run(request);
                let _ = reply.send(outcome);
            }
            Job::Analyze { code, env, reply } => {
                if reply.is_closed() {
                    return;
                }
                let outcome = self.analyze(code, env);
                let _ = reply.send(outcome);
            }
        }
    }

    /// Forgets everything: the call state, then the runtime.
    fn reset(&mut self) {
        drop(self.host.end());
        self.host.interrupt.disarm();
        self.engine = None;
    }

    fn engine(&mut self) -> Result<&mut Engine, JsError> {
        if self.engine.is_none() {
            self.engine = Some(Engine::new(&self.config, &self.host)?);
        }
        self.engine.as_mut().ok_or_else(|| JsError::Internal {
            message: "JS runtime unavailable".into(),
        })
    }

    fn call_state(
        &self,
        seed: u64,
        now_ms: f64,
        clock_advances: bool,
        env: &Arc<BTreeMap<String, String>>,
    ) -> CallState {
        CallState {
            handler: None,
            log: LogBuffer::new(self.config.max_log_lines, self.config.max_log_line_bytes),
            rng: SplitMix64::new(seed),
            now_ms,
            started: Instant::now(),
            clock_advances,
            env: env.clone(),
            pending: Vec::new(),
        }
    }

    fn run(&mut self, request: CallRequest) -> Result<CallOutcome, CallFailure> {
        let CallRequest {
            code,
            module,
            export,
            kind,
            args_json,
            request_id,
            seed,
            now_ms,
            env,
            handler,
        } = request;
        let limits = Limits {
            timeout_ms: match kind {
                FunctionKind::Action => self.config.action_timeout_ms,
                FunctionKind::Query | FunctionKind::Mutation => self.config.function_timeout_ms,
            },
            memory_bytes: self.config.memory_limit_bytes,
        };
        let deadline = deadline_after(limits.timeout_ms);
        let mut state = self.call_state(seed, now_ms, kind == FunctionKind::Action, &env);
        state.handler = Some(handler);
        self.host.begin(state, code.clone());
        self.host.interrupt.arm(deadline);

        let invocation = Invocation {
            module: &module,
            export: &export,
            kind,
            request_id: &request_id,
            args_json: &args_json,
        };
        let result = self.run_in_engine(&code, &env, &invocation, deadline, limits);

        // Per-call state goes first, so leftover jobs run without it.
        let state = self.host.end();
        let drained = self.drain_leftover_jobs();
        self.host.interrupt.disarm();
        let (handler, log_lines) = match state {
            Some(CallState {
                handler,
                log,
                pending,
                ..
            }) => {
                drop(pending);
                (handler, log.into_lines())
            }
            None => (None, Vec::new()),
        };
        if result.as_ref().is_err_and(is_fatal) || !drained {
            self.engine = None;
        }
        match (result, handler) {
            (Ok(result_json), Some(handler)) => Ok(CallOutcome {
                result_json,
                log_lines,
                handler,
            }),
            (Ok(_), None) => Err(CallFailure {
                error: JsError::Internal {
                    message: "the syscall handler was lost".into(),
                },
                log_lines,
                handler: None,
            }),
            (Err(error), handler) => Err(CallFailure {
                error,
                log_lines,
                handler,
            }),
        }
    }

    fn run_in_engine(
        &mut self,
        code: &ModuleSet,
        env: &Arc<BTreeMap<String, String>>,
        invocation: &Invocation<'_>,
        deadline: Instant,
        limits: Limits,
    ) -> Result<String, JsError> {
        let host = self.host.clone();
        let config = self.config.clone();
        self.tick += 1;
        let tick = self.tick;
        if code.source(invocation.module).is_none() {
            return Err(JsError::ModuleNotFound {
                module: invocation.module.to_string(),
            });
        }
        let engine = self.engine()?;
        let index = engine.context_for(code.version, env, &host, &config, tick, limits)?;
        engine.ensure_imported(index, invocation.module, &host, &config, deadline, limits)?;
        let entry = &engine.contexts[index];
        entry
            .context
            .with(|ctx| invoke(&ctx, entry, &host, invocation, deadline, limits))
    }

    /// Runs the jobs a finished call left queued (callbacks of promises it did not await), with
    /// no call state installed, until the queue is empty. Returns `false` if the call's time
    /// limit ran out first; the runtime is then thrown away.
    fn drain_leftover_jobs(&mut self) -> bool {
        let Some(engine) = self.engine.as_ref() else {
            return true;
        };
        let Some(entry) = engine.contexts.first() else {
            return true;
        };
        entry.context.with(|ctx| drain_jobs(&ctx, &self.host))
    }

    fn analyze(
        &mut self,
        code: Arc<ModuleSet>,
        env: Arc<BTreeMap<String, String>>,
    ) -> Result<CodeAnalysis, JsError> {
        let limits = Limits {
            timeout_ms: self.config.analyze_timeout_ms,
            memory_bytes: self.config.memory_limit_bytes,
        };
        let deadline = deadline_after(limits.timeout_ms);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1_000.0)
            .unwrap_or(0.0);
        let state = self.call_state(0, now_ms, false, &env);
        self.host.begin(state, code.clone());
        self.host.interrupt.arm(deadline);
        let result = self.analyze_in_engine(&code, &env, deadline, limits);
        drop(self.host.end());
        self.host.interrupt.disarm();
        if result.as_ref().is_err_and(is_fatal) {
            self.engine = None;
        }
        result
    }

    fn analyze_in_engine(
        &mut self,
        code: &ModuleSet,
        env: &Arc<BTreeMap<String, String>>,
        deadline: Instant,
        limits: Limits,
    ) -> Result<CodeAnalysis, JsError> {
        let host = self.host.clone();
        let config = self.config.clone();
        let engine = self.engine()?;
        engine.refresh_memory_limit(config.memory_limit_bytes);
        // A throwaway context: analysis must not leave evaluated modules behind.
        let scratch =
            CachedContext::new(&engine.runtime, &host, code.version, env.clone(), 0, limits)?;
        let result = scratch.context.with(|ctx| {
            let internals = restore(&ctx, &scratch.internals)?;
            let analyze: Function = internals
                .get("analyzeModule")
                .map_err(|e| js_error(&ctx, &internals, &host, e, limits))?;
            let mut found = Vec::new();
            let mut schema_json = None;
            for module in code.entry_modules() {
                let namespace =
                    import_namespace(&ctx, &internals, &host, module, deadline, limits)?;
                if module == "schema.js" {
                    let export: Function = internals
                        .get("schemaExport")
                        .map_err(|e| js_error(&ctx, &internals, &host, e, limits))?;
                    let json: String = export
                        .call((namespace,))
                        .map_err(|e| js_error(&ctx, &internals, &host, e, limits))?;
                    schema_json = Some(json);
                    continue;
                }
                let listing: String = analyze
                    .call((namespace,))
                    .map_err(|e| js_error(&ctx, &internals, &host, e, limits))?;
                parse_listing(module, &listing, &mut found)?;
            }
            if !drain_jobs(&ctx, &host) {
                return Err(JsError::Timeout {
                    limit_ms: limits.timeout_ms,
                });
            }
            Ok(CodeAnalysis {
                functions: found,
                schema_json,
            })
        });
        drop(scratch);
        result
    }
}

impl Engine {
    fn new(config: &JsPoolConfig, host: &Rc<Host>) -> Result<Self, JsError> {
        let runtime = Runtime::new().map_err(|e| JsError::Internal {
            message: format!("cannot create a QuickJS runtime: {e}"),
        })?;
        runtime.set_max_stack_size(config.max_stack_bytes);
        let interrupt = host.interrupt.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || interrupt.should_interrupt())));
        runtime.set_loader(CodeResolver, CodeLoader { host: host.clone() });
        let engine = Engine {
            contexts: Vec::new(),
            runtime,
        };
        engine.refresh_memory_limit(config.memory_limit_bytes);
        Ok(engine)
    }

    /// Lets the runtime grow by `budget_bytes` beyond what it holds now (the cached code), so
    /// every call gets the same allowance however much code the thread caches. Measured only
    /// when the cache changes: measuring walks the heap.
    fn refresh_memory_limit(&self, budget_bytes: usize) {
        let used = usize::try_from(self.runtime.memory_usage().malloc_size).unwrap_or(0);
        self.runtime
            .set_memory_limit(used.saturating_add(budget_bytes));
    }

    /// The cached context for this code version and environment, created (evicting the least
    /// recently used one if the cache is full) if there is none.
    fn context_for(
        &mut self,
        version: u64,
        env: &Arc<BTreeMap<String, String>>,
        host: &Rc<Host>,
        config: &JsPoolConfig,
        tick: u64,
        limits: Limits,
    ) -> Result<usize, JsError> {
        if let Some(index) = self
            .contexts
            .iter()
            .position(|c| c.version == version && (Arc::ptr_eq(&c.env, env) || c.env == *env))
        {
            self.contexts[index].last_used = tick;
            return Ok(index);
        }
        let mut evicted = false;
        while self.contexts.len() >= config.cached_contexts_per_thread.max(1) {
            let oldest = self
                .contexts
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(i, _)| i)
                .unwrap_or(0);
            drop(self.contexts.swap_remove(oldest));
            evicted = true;
        }
        if evicted {
            // Frees the evicted code's cycles before the memory baseline is measured.
            self.runtime.run_gc();
        }
        self.refresh_memory_limit(config.memory_limit_bytes);
        let context = CachedContext::new(&self.runtime, host, version, env.clone(), tick, limits)?;
        self.contexts.push(context);
        Ok(self.contexts.len() - 1)
    }

    /// Imports `module` into the cached context unless it already is.
    fn ensure_imported(
        &mut self,
        index: usize,
        module: &str,
        host: &Rc<Host>,
        config: &JsPoolConfig,
        deadline: Instant,
        limits: Limits,
    ) -> Result<(), JsError> {
        let entry = &mut self.contexts[index];
        if entry.namespaces.contains_key(module) {
            return Ok(());
        }
        let namespace = entry.context.with(|ctx| {
            let internals = restore(&ctx, &entry.internals)?;
            let namespace = import_namespace(&ctx, &internals, host, module, deadline, limits)?;
            Ok::<_, JsError>(Persistent::save(&ctx, namespace))
        })?;
        entry.namespaces.insert(module.to_string(), namespace);
        self.refresh_memory_limit(config.memory_limit_bytes);
        Ok(())
    }
}

impl CachedContext {
    fn new(
        runtime: &Runtime,
        host: &Rc<Host>,
        version: u64,
        env: Arc<BTreeMap<String, String>>,
        tick: u64,
        limits: Limits,
    ) -> Result<Self, JsError> {
        let context = Context::full(runtime).map_err(|e| setup_error(host, &e, limits))?;
        let internals = context.with(|ctx| match host::install(&ctx, host) {
            Ok(internals) => Ok(Persistent::save(&ctx, internals)),
            Err(e) => {
                let detail = match e {
                    rquickjs::Error::Exception => format!("{:?}", ctx.catch()),
                    other => other.to_string(),
                };
                Err(setup_error(host, &detail, limits))
            }
        })?;
        Ok(CachedContext {
            internals,
            namespaces: HashMap::new(),
            version,
            env,
            last_used: tick,
            context,
        })
    }
}

/// An error while building a context: out of time, out of memory, or a bug.
fn setup_error(host: &Host, detail: &dyn std::fmt::Display, limits: Limits) -> JsError {
    if host.interrupt.fired() {
        return JsError::Timeout {
            limit_ms: limits.timeout_ms,
        };
    }
    let detail = detail.to_string();
    if detail.contains("out of memory") || detail.contains("Allocation") {
        return JsError::OutOfMemory {
            limit_bytes: limits.memory_bytes,
        };
    }
    JsError::Internal {
        message: format!("cannot set up a JS context: {detail}"),
    }
}

/// Now plus `limit_ms`, saturating (a limit too large to represent means a year).
fn deadline_after(limit_ms: u64) -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_millis(limit_ms))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn is_fatal(error: &JsError) -> bool {
    matches!(error, JsError::Timeout { .. } | JsError::OutOfMemory { .. })
}

fn restore<'js>(
    ctx: &Ctx<'js>,
    value: &Persistent<Object<'static>>,
) -> Result<Object<'js>, JsError> {
    value.clone().restore(ctx).map_err(|e| JsError::Internal {
        message: format!("cannot restore a JS value: {e}"),
    })
}

/// Imports `module` (and, through the loader, what it imports) and returns its namespace.
fn import_namespace<'js>(
    ctx: &Ctx<'js>,
    internals: &Object<'js>,
    host: &Host,
    module: &str,
    deadline: Instant,
    limits: Limits,
) -> Result<Object<'js>, JsError> {
    let as_import_failure = |error: JsError| match error {
        JsError::Timeout { .. } | JsError::OutOfMemory { .. } | JsError::ImportFailed { .. } => {
            error
        }
        JsError::Uncaught { message } => JsError::ImportFailed {
            module: module.to_string(),
            message,
        },
        other => JsError::ImportFailed {
            module: module.to_string(),
            message: other.to_string(),
        },
    };
    let promise = Module::import(ctx, module)
        .map_err(|e| as_import_failure(js_error(ctx, internals, host, e, limits)))?;
    drive(ctx, &promise, host, deadline, limits).map_err(as_import_failure)?;
    match promise.result::<Object>() {
        Some(Ok(namespace)) => Ok(namespace),
        Some(Err(e)) => Err(as_import_failure(js_error(ctx, internals, host, e, limits))),
        None => Err(as_import_failure(JsError::Internal {
            message: "import did not settle".into(),
        })),
    }
}

/// Checks the export's kind, calls `invokeQuery`/`invokeMutation`/`invokeAction` with
/// `this` = the global object, and waits for its promise.
fn invoke<'js>(
    ctx: &Ctx<'js>,
    entry: &CachedContext,
    host: &Host,
    invocation: &Invocation<'_>,
    deadline: Instant,
    limits: Limits,
) -> Result<String, JsError> {
    let internals = restore(ctx, &entry.internals)?;
    let namespace = match entry.namespaces.get(invocation.module) {
        Some(namespace) => restore(ctx, namespace)?,
        None => {
            return Err(JsError::Internal {
                message: format!("module \"{}\" was not imported", invocation.module),
            });
        }
    };
    let fail = |e: rquickjs::Error| js_error(ctx, &internals, host, e, limits);
    let export_kind: Function = internals.get("exportKind").map_err(fail)?;
    let kind_name: String = export_kind
        .call((namespace.clone(), invocation.export))
        .map_err(fail)?;
    let actual = match kind_name.as_str() {
        "query" => FunctionKind::Query,
        "mutation" => FunctionKind::Mutation,
        "action" => FunctionKind::Action,
        _ => {
            return Err(JsError::ExportNotFound {
                module: invocation.module.to_string(),
                export: invocation.export.to_string(),
            });
        }
    };
    if actual != invocation.kind {
        return Err(JsError::WrongKind {
            module: invocation.module.to_string(),
            export: invocation.export.to_string(),
            expected: invocation.kind,
            actual,
        });
    }
    let call: Function = internals.get("invoke").map_err(fail)?;
    let returned: Value = call
        .call((
            namespace,
            invocation.export,
            kind_name,
            invocation.request_id,
            invocation.args_json,
        ))
        .map_err(fail)?;
    let value = match returned.as_promise() {
        Some(promise) => {
            drive(ctx, promise, host, deadline, limits)?;
            match promise.result::<Value>() {
                Some(Ok(value)) => value,
                Some(Err(e)) => return Err(fail(e)),
                None => {
                    return Err(JsError::Internal {
                        message: "the function's promise did not settle".into(),
                    });
                }
            }
        }
        None => returned,
    };
    match value.as_string() {
        Some(text) => text.to_string().map_err(fail),
        None => Err(JsError::InvalidResult {
            message: format!(
                "expected the function to return a JSON string, got {}",
                value.type_name()
            ),
        }),
    }
}

/// Runs the job queue, and polls pending syscall futures, until `promise` settles.
fn drive<'js>(
    ctx: &Ctx<'js>,
    promise: &Promise<'js>,
    host: &Host,
    deadline: Instant,
    limits: Limits,
) -> Result<(), JsError> {
    let timeout = JsError::Timeout {
        limit_ms: limits.timeout_ms,
    };
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut task = std::task::Context::from_waker(&waker);
    loop {
        if !drain_jobs(ctx, host) {
            return Err(timeout);
        }
        if promise.state() != PromiseState::Pending {
            return Ok(());
        }
        let pending = host.take_pending();
        if pending.is_empty() {
            return Err(JsError::InvalidResult {
                message: "the function's promise never settled: it awaits something nothing \
                          will resolve"
                    .into(),
            });
        }
        let mut progressed = false;
        let mut waiting = Vec::new();
        for mut op in pending {
            match op.future.as_mut().poll(&mut task) {
                Poll::Ready(answer) => {
                    progressed = true;
                    settle(ctx, op, answer).map_err(|e| JsError::Internal {
                        message: format!("cannot settle a syscall promise: {e}"),
                    })?;
                }
                Poll::Pending => waiting.push(op),
            }
        }
        drop(host.restore_pending(waiting));
        if !progressed {
            let now = Instant::now();
            if now >= deadline {
                host.interrupt.mark_fired();
                return Err(timeout);
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}

fn settle<'js>(
    ctx: &Ctx<'js>,
    op: PendingOp,
    answer: Result<String, crate::SyscallError>,
) -> rquickjs::Result<()> {
    match answer {
        Ok(text) => op.resolve.restore(ctx)?.call((text,)),
        Err(error) => {
            let value = host::syscall_error_value(ctx, &error)?;
            op.reject.restore(ctx)?.call((value,))
        }
    }
}

/// Runs queued jobs until none is left. `false` if the time limit ran out.
fn drain_jobs(ctx: &Ctx<'_>, host: &Host) -> bool {
    let mut ran = 0usize;
    loop {
        if host.interrupt.fired() {
            return false;
        }
        if !ctx.execute_pending_job() {
            return true;
        }
        ran += 1;
        if ran.is_multiple_of(DRAIN_CLOCK_CHECK_JOBS) && host.interrupt.should_interrupt() {
            return false;
        }
    }
}

/// Turns an rquickjs error into a [`JsError`]; a JS exception is described by the bootstrap's
/// `describeError`.
fn js_error<'js>(
    ctx: &Ctx<'js>,
    internals: &Object<'js>,
    host: &Host,
    error: rquickjs::Error,
    limits: Limits,
) -> JsError {
    let timeout = JsError::Timeout {
        limit_ms: limits.timeout_ms,
    };
    let out_of_memory = JsError::OutOfMemory {
        limit_bytes: limits.memory_bytes,
    };
    if host.interrupt.fired() {
        return timeout;
    }
    let exception = match error {
        rquickjs::Error::Exception => ctx.catch(),
        rquickjs::Error::Allocation => return out_of_memory,
        other => {
            return JsError::Internal {
                message: other.to_string(),
            };
        }
    };
    let described = internals
        .get::<_, Function>("describeError")
        .and_then(|describe| describe.call::<_, Object>((exception,)));
    let described = match described {
        Ok(described) => described,
        Err(_) => {
            // `describeError` catches everything itself; failing means no memory or no time.
            let _ = ctx.catch();
            return if host.interrupt.fired() {
                timeout
            } else {
                out_of_memory
            };
        }
    };
    let field = |name: &str| described.get::<_, String>(name).unwrap_or_default();
    if described.get::<_, bool>("convex").unwrap_or(false) {
        return JsError::ConvexError {
            message: field("message"),
            data_json: field("data"),
        };
    }
    let message = field("message");
    if message == "InternalError: out of memory" {
        return out_of_memory;
    }
    let stack = field("stack");
    if stack.is_empty() {
        JsError::Uncaught {
            message: format!("Uncaught {message}"),
        }
    } else {
        JsError::Uncaught {
            message: format!("Uncaught {message}\n{stack}"),
        }
    }
}

fn parse_listing(
    module: &str,
    listing: &str,
    found: &mut Vec<FunctionInfo>,
) -> Result<(), JsError> {
    let bad = |what: &str| JsError::Internal {
        message: format!("bad export analysis of \"{module}\": {what}"),
    };
    let items: serde_json::Value =
        serde_json::from_str(listing).map_err(|e| bad(&e.to_string()))?;
    let items = items.as_array().ok_or_else(|| bad("not an array"))?;
    for item in items {
        let text = |name: &str| {
            item.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(name))
        };
        let kind = match text("kind")?.as_str() {
            "query" => FunctionKind::Query,
            "mutation" => FunctionKind::Mutation,
            "action" => FunctionKind::Action,
            _ => return Err(bad("kind")),
        };
        let visibility = match text("visibility")?.as_str() {
            "internal" => Visibility::Internal,
            _ => Visibility::Public,
        };
        found.push(FunctionInfo {
            module: module.to_string(),
            name: text("name")?,
            kind,
            visibility,
            args_json: text("args")?,
            returns_json: text("returns")?,
        });
    }
    Ok(())
}

/// Resolves import specifiers like URLs under `convex:/` ([`resolve_specifier`]).
struct CodeResolver;

impl Resolver for CodeResolver {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        resolve_specifier(base, name)
            .map_err(|reason| rquickjs::Error::new_resolving_message(base, name, reason))
    }
}

/// Loads modules from the code of the call in progress.
struct CodeLoader {
    host: Rc<Host>,
}

impl Loader for CodeLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let source = self
            .host
            .code
            .borrow()
            .as_ref()
            .and_then(|code| code.source(name).cloned());
        match source {
            Some(source) => Module::declare(ctx.clone(), name, source.as_bytes()),
            None => Err(rquickjs::Error::new_loading_message(
                name,
                "the deployed code has no such module",
            )),
        }
    }
}
