//! One JS thread: its QuickJS runtime, the fresh contexts it prepares, and how a call runs on it.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::promise::PromiseState;
use rquickjs::{Context, Ctx, Function, Module, Object, Persistent, Promise, Runtime, Value};
use tokio::sync::oneshot;

use crate::bytecode::{Bytecode, BytecodeCache};
use crate::host::{self, CallState, Host, PendingOp, SplitMix64, ThreadWaker};
use crate::log::LogBuffer;
use crate::modules::resolve_specifier;
use crate::{
    CallFailure, CallOutcome, CallRequest, CodeAnalysis, FunctionInfo, FunctionKind, JsError,
    JsPoolConfig, ModuleSet, Visibility,
};

/// Seeds `Math.random` while the modules a call starts with are evaluated, in the call or ahead
/// of it.
const IMPORT_SEED: u64 = 0;

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

/// Body of a JS thread: take jobs from the shared queue until it closes, and while none is
/// waiting, prepare fresh contexts for the code the thread served last.
pub(crate) fn thread_main(
    config: Arc<JsPoolConfig>,
    bytecode: Arc<BytecodeCache>,
    jobs: Arc<Mutex<Receiver<Job>>>,
) {
    let mut worker = Worker::new(config, bytecode);
    loop {
        let job = if worker.wants_preparation() {
            // Preparing keeps a core busy for about a millisecond, so the thread first leaves
            // the rest of the request it just answered (the caller's wake-up, a mutation's
            // commit) a moment to run, and takes a job if one comes meanwhile.
            let delay = Duration::from_micros(worker.config.prepare_delay_us);
            let next = match jobs.try_lock() {
                Ok(receiver) => receiver.recv_timeout(delay),
                // Another thread holds the queue, waiting for the next job: it takes that one.
                Err(TryLockError::WouldBlock) => {
                    std::thread::sleep(delay);
                    Err(RecvTimeoutError::Timeout)
                }
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().recv_timeout(delay),
            };
            match next {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    // A panic is a bug here as below; forget what to prepare, so it is not
                    // retried forever.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| worker.prepare_next())).is_err()
                    {
                        worker.reset();
                        worker.wanted.clear();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            let next = match jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(poisoned) => poisoned.into_inner().recv(),
            };
            let Ok(job) = next else {
                return;
            };
            job
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
    bytecode: Arc<BytecodeCache>,
    engine: Option<Engine>,
    /// Counts calls; orders `wanted` by last use.
    tick: u64,
    /// The code recent calls ran, for which the thread keeps a fresh context ready: at most one
    /// entry per (code version, environment), `prepared_contexts_per_thread` in all.
    wanted: Vec<Wanted>,
}

/// Code to keep a fresh context ready for: a version, an environment, and the module its last
/// call used.
struct Wanted {
    code: Arc<ModuleSet>,
    env: Arc<BTreeMap<String, String>>,
    module: String,
    last_used: u64,
}

impl Wanted {
    fn is_for(&self, version: u64, env: &Arc<BTreeMap<String, String>>) -> bool {
        self.code.version == version && same_env(&self.env, env)
    }
}

fn same_env(a: &Arc<BTreeMap<String, String>>, b: &Arc<BTreeMap<String, String>>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// A QuickJS runtime and the fresh contexts prepared on it. Field order matters: contexts (and
/// the JS values they keep) are dropped before the runtime.
struct Engine {
    /// Contexts no function has run in yet, at most one per entry of `Worker::wanted`.
    prepared: Vec<FreshContext>,
    /// What the runtime held when last measured (`measure_limits`).
    held_bytes: usize,
    runtime: Runtime,
}

/// A context for one code version and environment: Chorus's globals, the namespaces of the
/// modules imported so far, and the bootstrap's internals. One call (with its nested calls)
/// runs in it, and then it is dropped. Persistent values are declared before the context so
/// they are released first.
struct FreshContext {
    internals: Persistent<Object<'static>>,
    namespaces: HashMap<String, Persistent<Object<'static>>>,
    version: u64,
    env: Arc<BTreeMap<String, String>>,
    /// What the modules printed while a prepared context imported them; the call that takes
    /// the context starts its console output with it, as if it had imported them itself.
    import_log: Option<LogBuffer>,
    context: Context,
}

/// What running a call in the engine left: its result, the context it ran in (to drain and
/// drop), and whether the called module was imported.
struct Ran {
    result: Result<String, JsError>,
    context: Option<FreshContext>,
    imported: bool,
}

impl Ran {
    fn failed(error: JsError) -> Self {
        Ran {
            result: Err(error),
            context: None,
            imported: false,
        }
    }
}

impl Worker {
    fn new(config: Arc<JsPoolConfig>, bytecode: Arc<BytecodeCache>) -> Self {
        Worker {
            config,
            host: Host::new(),
            bytecode,
            engine: None,
            tick: 0,
            wanted: Vec::new(),
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
            self.engine = Some(Engine::new(&self.config, &self.host, &self.bytecode)?);
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
        let Ran {
            result,
            context,
            imported,
        } = self.run_in_engine(&code, &env, &invocation, deadline, limits);

        // Per-call state goes first, so leftover jobs run without it.
        let state = self.host.end();
        let drained = match &context {
            Some(context) => context.context.with(|ctx| drain_jobs(&ctx, &self.host)),
            None => true,
        };
        // The context has run user code: it is never used again.
        drop(context);
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
        if imported {
            self.want(code, env, module);
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

    /// Runs the call in a prepared context for its code and environment if there is one, else
    /// in a new one; imports the called module if the context does not have it yet.
    fn run_in_engine(
        &mut self,
        code: &ModuleSet,
        env: &Arc<BTreeMap<String, String>>,
        invocation: &Invocation<'_>,
        deadline: Instant,
        limits: Limits,
    ) -> Ran {
        let host = self.host.clone();
        let config = self.config.clone();
        if code.source(invocation.module).is_none() {
            return Ran::failed(JsError::ModuleNotFound {
                module: invocation.module.to_string(),
            });
        }
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(error) => return Ran::failed(error),
        };
        let mut context = match engine.take_prepared(code.version, env) {
            Some(mut context) => {
                if let Some(log) = context.import_log.take() {
                    host.replace_log(log);
                }
                context
            }
            None => {
                engine.apply_limits(&config);
                match FreshContext::new(&engine.runtime, &host, code.version, env.clone(), limits) {
                    Ok(context) => context,
                    Err(error) => return Ran::failed(error),
                }
            }
        };
        // Module-level code draws `Math.random` from the import seed, as in a prepared context,
        // so the function's own values depend only on the call's seed either way.
        let call_rng = host.replace_rng(SplitMix64::new(IMPORT_SEED));
        let imported = context.ensure_imported(invocation.module, &host, deadline, limits);
        if let Some(rng) = call_rng {
            host.replace_rng(rng);
        }
        if let Err(error) = imported {
            return Ran {
                result: Err(error),
                context: Some(context),
                imported: false,
            };
        }
        let result = context
            .context
            .with(|ctx| invoke(&ctx, &context, &host, invocation, deadline, limits));
        Ran {
            result,
            context: Some(context),
            imported: true,
        }
    }

    /// Records that a call of `module` in `code` with `env` ran, so the thread keeps a fresh
    /// context ready for the next one.
    fn want(&mut self, code: Arc<ModuleSet>, env: Arc<BTreeMap<String, String>>, module: String) {
        let capacity = self.config.prepared_contexts_per_thread;
        if capacity == 0 {
            return;
        }
        self.tick += 1;
        if let Some(wanted) = self
            .wanted
            .iter_mut()
            .find(|w| w.is_for(code.version, &env))
        {
            wanted.code = code;
            wanted.module = module;
            wanted.last_used = self.tick;
            return;
        }
        while self.wanted.len() >= capacity {
            let Some(oldest) = self
                .wanted
                .iter()
                .enumerate()
                .min_by_key(|(_, w)| w.last_used)
                .map(|(i, _)| i)
            else {
                break;
            };
            let old = self.wanted.swap_remove(oldest);
            if let Some(engine) = &mut self.engine {
                engine.prepared.retain(|c| !old.is_for(c.version, &c.env));
            }
        }
        self.wanted.push(Wanted {
            code,
            env,
            module,
            last_used: self.tick,
        });
    }

    /// Whether some recently run code has no fresh context ready.
    fn wants_preparation(&self) -> bool {
        self.wanted.iter().any(|w| {
            !self
                .engine
                .as_ref()
                .is_some_and(|e| e.has_prepared(w.code.version, &w.env))
        })
    }

    /// Prepares a fresh context for the most recently run code that has none ready: the
    /// globals, then its last call's module (and so the chunks that imports) evaluated as at
    /// the start of a call, except that no call is in progress: `process.env` is that code's
    /// environment, `Math.random` draws from `IMPORT_SEED` as in a call, console output is kept
    /// for the call that takes the context, syscalls are refused and `Date.now()` is the wall
    /// clock. If that fails, the thread stops preparing for that code, and the next call
    /// imports the module itself and reports why.
    fn prepare_next(&mut self) {
        let engine = self.engine.as_ref();
        let Some(wanted) = self
            .wanted
            .iter()
            .filter(|w| !engine.is_some_and(|e| e.has_prepared(w.code.version, &w.env)))
            .max_by_key(|w| w.last_used)
        else {
            return;
        };
        let (code, env, module) = (
            wanted.code.clone(),
            wanted.env.clone(),
            wanted.module.clone(),
        );
        let limits = Limits {
            timeout_ms: self.config.function_timeout_ms,
            memory_bytes: self.config.memory_limit_bytes,
        };
        let deadline = deadline_after(limits.timeout_ms);
        let state = self.call_state(IMPORT_SEED, wall_clock_ms(), false, &env);
        self.host.begin(state, code.clone());
        self.host.interrupt.arm(deadline);
        let prepared = self.prepare_in_engine(&code, &env, &module, deadline, limits);
        drop(self.host.end());
        self.host.interrupt.disarm();
        if let Err(error) = prepared {
            self.wanted.retain(|w| !w.is_for(code.version, &env));
            if is_fatal(&error) {
                self.engine = None;
            }
        }
    }

    fn prepare_in_engine(
        &mut self,
        code: &ModuleSet,
        env: &Arc<BTreeMap<String, String>>,
        module: &str,
        deadline: Instant,
        limits: Limits,
    ) -> Result<(), JsError> {
        let host = self.host.clone();
        let config = self.config.clone();
        let engine = self.engine()?;
        // Frees the contexts earlier calls left (their objects form cycles, which only the
        // collector frees), here rather than in some later call. The memory limit set after the
        // last measurement still holds; it now has that much more room.
        engine.runtime.run_gc();
        let mut context =
            FreshContext::new(&engine.runtime, &host, code.version, env.clone(), limits)?;
        let imported = context.ensure_imported(module, &host, deadline, limits);
        let drained = context.context.with(|ctx| drain_jobs(&ctx, &host));
        imported?;
        if !drained {
            return Err(JsError::Timeout {
                limit_ms: limits.timeout_ms,
            });
        }
        let empty = LogBuffer::new(config.max_log_lines, config.max_log_line_bytes);
        context.import_log = host.replace_log(empty);
        engine.prepared.push(context);
        // The next call may allocate its whole budget beyond what is prepared now.
        engine.measure_limits(&config);
        Ok(())
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
        let state = self.call_state(0, wall_clock_ms(), false, &env);
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
        engine.measure_limits(&config);
        // A throwaway context, like every call's. Importing every module here also compiles
        // them all to bytecode, so the first calls of a new version find it.
        let scratch = FreshContext::new(&engine.runtime, &host, code.version, env.clone(), limits)?;
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
    fn new(
        config: &JsPoolConfig,
        host: &Rc<Host>,
        bytecode: &Arc<BytecodeCache>,
    ) -> Result<Self, JsError> {
        let runtime = Runtime::new().map_err(|e| JsError::Internal {
            message: format!("cannot create a QuickJS runtime: {e}"),
        })?;
        runtime.set_max_stack_size(config.max_stack_bytes);
        let interrupt = host.interrupt.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || interrupt.should_interrupt())));
        runtime.set_loader(
            CodeResolver,
            CodeLoader {
                host: host.clone(),
                bytecode: bytecode.clone(),
            },
        );
        let mut engine = Engine {
            prepared: Vec::new(),
            held_bytes: 0,
            runtime,
        };
        engine.measure_limits(config);
        Ok(engine)
    }

    /// Measures what the runtime holds (walking the heap: ~50 µs with a few contexts, so it is
    /// done after preparing a context, not in a call) and sets its limits from it.
    fn measure_limits(&mut self, config: &JsPoolConfig) {
        self.held_bytes = usize::try_from(self.runtime.memory_usage().malloc_size).unwrap_or(0);
        self.apply_limits(config);
    }

    /// Sets the runtime's limits from the last measurement: QuickJS collects garbage once the
    /// heap grows `gc_headroom_bytes` past it, so neither building a context nor a call that
    /// allocates little starts a collection (QuickJS's own threshold, 1.5× the heap after the
    /// last collection, starts one in nearly every call, each walking every live object); and
    /// allocation fails `memory_limit_bytes` past that, so a call has at least its budget
    /// beyond whatever garbage the runtime holds.
    fn apply_limits(&self, config: &JsPoolConfig) {
        let gc_at = self.held_bytes.saturating_add(config.gc_headroom_bytes);
        self.runtime
            .set_memory_limit(gc_at.saturating_add(config.memory_limit_bytes));
        self.runtime.set_gc_threshold(gc_at);
    }

    fn has_prepared(&self, version: u64, env: &Arc<BTreeMap<String, String>>) -> bool {
        self.prepared
            .iter()
            .any(|c| c.version == version && same_env(&c.env, env))
    }

    /// Takes the prepared context for this code version and environment, if there is one.
    fn take_prepared(
        &mut self,
        version: u64,
        env: &Arc<BTreeMap<String, String>>,
    ) -> Option<FreshContext> {
        let index = self
            .prepared
            .iter()
            .position(|c| c.version == version && same_env(&c.env, env))?;
        Some(self.prepared.swap_remove(index))
    }
}

impl FreshContext {
    fn new(
        runtime: &Runtime,
        host: &Rc<Host>,
        version: u64,
        env: Arc<BTreeMap<String, String>>,
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
        Ok(FreshContext {
            internals,
            namespaces: HashMap::new(),
            version,
            env,
            import_log: None,
            context,
        })
    }

    /// Imports `module` into this context unless it already is.
    fn ensure_imported(
        &mut self,
        module: &str,
        host: &Rc<Host>,
        deadline: Instant,
        limits: Limits,
    ) -> Result<(), JsError> {
        if self.namespaces.contains_key(module) {
            return Ok(());
        }
        let namespace = self.context.with(|ctx| {
            let internals = restore(&ctx, &self.internals)?;
            let namespace = import_namespace(&ctx, &internals, host, module, deadline, limits)?;
            Ok::<_, JsError>(Persistent::save(&ctx, namespace))
        })?;
        self.namespaces.insert(module.to_string(), namespace);
        Ok(())
    }
}

fn wall_clock_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1_000.0)
        .unwrap_or(0.0)
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
    entry: &FreshContext,
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

/// Loads modules from the code of the call in progress, from their bytecode once any thread
/// has compiled them.
struct CodeLoader {
    host: Rc<Host>,
    bytecode: Arc<BytecodeCache>,
}

impl Loader for CodeLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let code = self.host.code.borrow().clone();
        let Some(source) = code.as_ref().and_then(|code| code.source(name)) else {
            return Err(rquickjs::Error::new_loading_message(
                name,
                "the deployed code has no such module",
            ));
        };
        let version = code.as_ref().map_or(0, |code| code.version);
        if let Some(bytecode) = self.bytecode.get(version, name) {
            return bytecode.declare(ctx);
        }
        let (module, bytecode) = Bytecode::compile(ctx, name, source.as_bytes())?;
        self.bytecode.insert(version, name, bytecode);
        Ok(module)
    }
}
