//! The per-thread host: the state of the call in progress and the native functions that
//! user code reaches through the globals (`Convex`, `console`, `process.env`, `Math.random`,
//! `Date`, `TextEncoder`/`TextDecoder`).
//!
//! Every native function reads the call in progress from [`Host::call`]; between calls it is
//! `None`, so nothing a call installed (handler, console lines, seed, time, environment) can be
//! seen by code running outside it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rquickjs::{Ctx, Exception, Function, Module, Object, Persistent, TypedArray, Value};

use crate::SyscallError;
use crate::log::LogBuffer;
use crate::modules::ModuleSet;
use crate::syscall::{AsyncSyscallReply, NestedCall, NestedSettle, PendingSyscall, SyscallHandler};

const BOOTSTRAP_JS: &str = include_str!("bootstrap.js");
/// The bootstrap module's name, in stack traces too (`describeError` trims its frames off the
/// bottom). [`crate::resolve_specifier`] never yields a name with a leading `/`, so no import
/// can reach the bootstrap, although it is a module loaded in every context.
const BOOTSTRAP_NAME: &str = "/chorus:runtime";

/// The time limit of the call in progress, checked by the runtime's interrupt handler (which
/// QuickJS calls every few thousand instructions). Shared with the handler, which the runtime
/// requires to be `Send`.
pub(crate) struct Interrupt {
    epoch: Instant,
    /// Microseconds after `epoch` at which to interrupt; 0 when no limit is armed.
    deadline_us: AtomicU64,
    fired: AtomicBool,
}

impl Interrupt {
    fn new() -> Self {
        Interrupt {
            epoch: Instant::now(),
            deadline_us: AtomicU64::new(0),
            fired: AtomicBool::new(false),
        }
    }

    pub(crate) fn arm(&self, deadline: Instant) {
        let us = deadline.saturating_duration_since(self.epoch).as_micros();
        let us = u64::try_from(us).unwrap_or(u64::MAX).max(1);
        self.fired.store(false, Ordering::Relaxed);
        self.deadline_us.store(us, Ordering::Relaxed);
    }

    pub(crate) fn disarm(&self) {
        self.deadline_us.store(0, Ordering::Relaxed);
        self.fired.store(false, Ordering::Relaxed);
    }

    /// Called by QuickJS; `true` raises an uncatchable "interrupted" error.
    pub(crate) fn should_interrupt(&self) -> bool {
        let deadline = self.deadline_us.load(Ordering::Relaxed);
        if deadline == 0 {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        if now >= deadline {
            self.fired.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Records that the limit passed while the thread waited outside JavaScript.
    pub(crate) fn mark_fired(&self) {
        self.fired.store(true, Ordering::Relaxed);
    }

    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Relaxed)
    }
}

/// An async syscall whose answer is not ready: the future and the promise's settle functions.
pub(crate) struct PendingOp {
    pub(crate) future: PendingSyscall,
    pub(crate) resolve: Persistent<Function<'static>>,
    pub(crate) reject: Persistent<Function<'static>>,
}

/// Everything installed for one call (or one analysis) and removed after it.
pub(crate) struct CallState {
    /// `None` during analysis and while a context is prepared ahead of a call: syscalls are
    /// refused.
    pub(crate) handler: Option<Box<dyn SyscallHandler>>,
    pub(crate) log: LogBuffer,
    pub(crate) rng: SplitMix64,
    /// What `Date.now()` returns at the start of the call.
    pub(crate) now_ms: f64,
    pub(crate) started: Instant,
    /// Queries and mutations see a fixed time; actions see it advance.
    pub(crate) clock_advances: bool,
    /// Copied on the first write, so writes stay within the call.
    pub(crate) env: Arc<BTreeMap<String, String>>,
    pub(crate) pending: Vec<PendingOp>,
}

impl CallState {
    fn now(&self) -> f64 {
        if self.clock_advances {
            self.now_ms + self.elapsed_ms()
        } else {
            self.now_ms
        }
    }

    fn elapsed_ms(&self) -> f64 {
        if self.clock_advances {
            self.started.elapsed().as_secs_f64() * 1_000.0
        } else {
            0.0
        }
    }
}

/// The per-thread host shared by every context of the thread's runtime.
pub(crate) struct Host {
    pub(crate) call: RefCell<Option<CallState>>,
    /// The code the call in progress runs; the module loader reads it.
    pub(crate) code: RefCell<Option<Arc<ModuleSet>>>,
    pub(crate) interrupt: Arc<Interrupt>,
    /// Serves `Math.random` outside any call (only leftover jobs run there).
    idle_rng: Cell<u64>,
}

impl Host {
    pub(crate) fn new() -> Rc<Self> {
        Rc::new(Host {
            call: RefCell::new(None),
            code: RefCell::new(None),
            interrupt: Arc::new(Interrupt::new()),
            idle_rng: Cell::new(0x5EED),
        })
    }

    pub(crate) fn begin(&self, state: CallState, code: Arc<ModuleSet>) {
        *self.call.borrow_mut() = Some(state);
        *self.code.borrow_mut() = Some(code);
    }

    pub(crate) fn end(&self) -> Option<CallState> {
        *self.code.borrow_mut() = None;
        self.call.borrow_mut().take()
    }

    /// Puts `log` in place of the call's console buffer; returns the one it replaces.
    pub(crate) fn replace_log(&self, log: LogBuffer) -> Option<LogBuffer> {
        let mut call = self.call.borrow_mut();
        call.as_mut()
            .map(|call| std::mem::replace(&mut call.log, log))
    }

    /// Puts `rng` in place of the call's `Math.random` state; returns the one it replaces.
    pub(crate) fn replace_rng(&self, rng: SplitMix64) -> Option<SplitMix64> {
        let mut call = self.call.borrow_mut();
        call.as_mut()
            .map(|call| std::mem::replace(&mut call.rng, rng))
    }

    pub(crate) fn take_pending(&self) -> Vec<PendingOp> {
        match self.call.borrow_mut().as_mut() {
            Some(call) => std::mem::take(&mut call.pending),
            None => Vec::new(),
        }
    }

    /// Puts back the operations still pending; returns those it could not (no call).
    pub(crate) fn restore_pending(&self, ops: Vec<PendingOp>) -> Vec<PendingOp> {
        match self.call.borrow_mut().as_mut() {
            Some(call) => {
                call.pending.extend(ops);
                Vec::new()
            }
            None => ops,
        }
    }
}

/// Seeded generator behind `Math.random` (SplitMix64: tiny state, full period, good enough
/// for user-visible randomness that must replay identically on retry).
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Builds the JS `Error` a failed syscall throws or rejects with.
pub(crate) fn syscall_error_value<'js>(
    ctx: &Ctx<'js>,
    error: &SyscallError,
) -> rquickjs::Result<Value<'js>> {
    let exception = Exception::from_message(ctx.clone(), &error.message)?;
    if let Some(data_json) = &error.data_json {
        let data = ctx.json_parse(data_json.as_str())?;
        exception.set("data", data)?;
    }
    Ok(exception.into_value())
}

fn not_in_call(op: &str) -> SyscallError {
    SyscallError::new(format!(
        "syscall \"{op}\" made outside of a function execution"
    ))
}

fn no_handler(op: &str) -> SyscallError {
    SyscallError::new(format!(
        "syscall \"{op}\" is not available while modules are imported outside a function call"
    ))
}

fn wall_clock_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1_000.0)
        .unwrap_or(0.0)
}

/// Installs the globals in a fresh context and returns the internals object (error
/// description, export analysis) the bootstrap hands back.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, host: &Rc<Host>) -> rquickjs::Result<Object<'js>> {
    let natives = Object::new(ctx.clone())?;

    let h = host.clone();
    natives.set(
        "syscall",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, op: String, args_json: String| -> rquickjs::Result<String> {
                let result = {
                    let mut call = h.call.borrow_mut();
                    match call.as_mut() {
                        None => Err(not_in_call(&op)),
                        Some(call) => match call.handler.as_mut() {
                            None => Err(no_handler(&op)),
                            Some(handler) => handler.syscall(&op, &args_json),
                        },
                    }
                };
                match result {
                    Ok(answer) => Ok(answer),
                    Err(error) => {
                        let value = syscall_error_value(&ctx, &error)?;
                        Err(ctx.throw(value))
                    }
                }
            },
        )?
        .with_name("syscall")?,
    )?;

    let h = host.clone();
    natives.set(
        "asyncSyscall",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  op: String,
                  args_json: String,
                  nested: Function<'js>|
                  -> rquickjs::Result<rquickjs::Promise<'js>> {
                let reply = {
                    let mut call = h.call.borrow_mut();
                    match call.as_mut() {
                        None => AsyncSyscallReply::Ready(Err(not_in_call(&op))),
                        Some(call) => match call.handler.as_mut() {
                            None => AsyncSyscallReply::Ready(Err(no_handler(&op))),
                            Some(handler) => handler.async_syscall(&op, &args_json),
                        },
                    }
                };
                if let AsyncSyscallReply::Invoke(call) = reply {
                    return start_nested(&ctx, &h, nested, call);
                }
                let (promise, resolve, reject) = ctx.promise()?;
                match reply {
                    AsyncSyscallReply::Ready(Ok(answer)) => resolve.call::<_, ()>((answer,))?,
                    AsyncSyscallReply::Ready(Err(error)) => {
                        let value = syscall_error_value(&ctx, &error)?;
                        reject.call::<_, ()>((value,))?;
                    }
                    AsyncSyscallReply::Pending(future) => {
                        let op = PendingOp {
                            future,
                            resolve: Persistent::save(&ctx, resolve),
                            reject: Persistent::save(&ctx, reject.clone()),
                        };
                        let orphan = h.restore_pending(vec![op]);
                        if !orphan.is_empty() {
                            drop(orphan);
                            let value = syscall_error_value(&ctx, &not_in_call("async"))?;
                            reject.call::<_, ()>((value,))?;
                        }
                    }
                    AsyncSyscallReply::Invoke(_) => {}
                }
                Ok(promise)
            },
        )?
        .with_name("asyncSyscall")?,
    )?;

    let h = host.clone();
    natives.set(
        "log",
        Function::new(ctx.clone(), move |level: String, message: String| {
            if let Some(call) = h.call.borrow_mut().as_mut() {
                call.log.push(&level, &message);
            }
        })?,
    )?;

    let h = host.clone();
    natives.set(
        "random",
        Function::new(ctx.clone(), move || -> f64 {
            match h.call.borrow_mut().as_mut() {
                Some(call) => call.rng.next_f64(),
                None => {
                    let mut rng = SplitMix64::new(h.idle_rng.get());
                    let value = rng.next_f64();
                    h.idle_rng.set(rng.0);
                    value
                }
            }
        })?
        .with_name("random")?,
    )?;

    let h = host.clone();
    natives.set(
        "now",
        Function::new(ctx.clone(), move || -> f64 {
            match h.call.borrow().as_ref() {
                Some(call) => call.now(),
                None => wall_clock_ms(),
            }
        })?,
    )?;

    let h = host.clone();
    natives.set(
        "elapsed",
        Function::new(ctx.clone(), move || -> f64 {
            match h.call.borrow().as_ref() {
                Some(call) => call.elapsed_ms(),
                None => 0.0,
            }
        })?,
    )?;

    let h = host.clone();
    natives.set(
        "envGet",
        Function::new(ctx.clone(), move |name: String| -> Option<String> {
            h.call
                .borrow()
                .as_ref()
                .and_then(|call| call.env.get(&name).cloned())
        })?,
    )?;

    let h = host.clone();
    natives.set(
        "envKeys",
        Function::new(ctx.clone(), move || -> Vec<String> {
            h.call
                .borrow()
                .as_ref()
                .map(|call| call.env.keys().cloned().collect())
                .unwrap_or_default()
        })?,
    )?;

    let h = host.clone();
    natives.set(
        "envSet",
        Function::new(ctx.clone(), move |name: String, value: String| {
            if let Some(call) = h.call.borrow_mut().as_mut() {
                Arc::make_mut(&mut call.env).insert(name, value);
            }
        })?,
    )?;

    let h = host.clone();
    natives.set(
        "envDelete",
        Function::new(ctx.clone(), move |name: String| {
            if let Some(call) = h.call.borrow_mut().as_mut() {
                Arc::make_mut(&mut call.env).remove(&name);
            }
        })?,
    )?;

    natives.set(
        "utf8Encode",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, text: String| -> rquickjs::Result<TypedArray<'js, u8>> {
                TypedArray::new(ctx, text.into_bytes())
            },
        )?,
    )?;

    natives.set(
        "utf8Decode",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             latin1: String,
             fatal: bool,
             ignore_bom: bool|
             -> rquickjs::Result<String> {
                // One char per byte, each below 256 by construction in the bootstrap.
                let bytes: Vec<u8> = latin1
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).unwrap_or(0xFF))
                    .collect();
                let body = match bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
                    Some(rest) if !ignore_bom => rest,
                    _ => &bytes[..],
                };
                if fatal {
                    match std::str::from_utf8(body) {
                        Ok(text) => Ok(text.to_owned()),
                        Err(_) => Err(Exception::throw_type(
                            &ctx,
                            "The encoded data was not valid for encoding utf-8",
                        )),
                    }
                } else {
                    Ok(String::from_utf8_lossy(body).into_owned())
                }
            },
        )?,
    )?;

    let (module, evaluated) =
        crate::bytecode::bootstrap(ctx, BOOTSTRAP_NAME, BOOTSTRAP_JS)?.eval()?;
    // The bootstrap awaits nothing: its evaluation has settled (or failed) already.
    match evaluated.result::<Value>() {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(e),
        None => {
            return Err(rquickjs::Error::new_loading_message(
                BOOTSTRAP_NAME,
                "did not settle",
            ));
        }
    }
    let bootstrap: Function<'js> = module.get("default")?;
    bootstrap.call((natives,))
}

/// Starts a nested call ([`AsyncSyscallReply::Invoke`]): imports the target module in this
/// context (already evaluated modules are reused), and hands the namespace to the bootstrap's
/// `nestedCall`, which invokes the export and reports its outcome to a `settle` callback. The
/// callback gives the outcome to the handler (`finish_nested`) and turns its answer into the
/// caller's result. The nested function runs as part of the current call: same handler, same
/// time limit, same job queue.
fn start_nested<'js>(
    ctx: &Ctx<'js>,
    host: &Rc<Host>,
    nested: Function<'js>,
    call: NestedCall,
) -> rquickjs::Result<rquickjs::Promise<'js>> {
    let NestedCall {
        module,
        export,
        kind,
        args_json,
        frame,
    } = call;
    let frame = Rc::new(RefCell::new(Some(frame)));
    let h = host.clone();
    let frame_for_settle = frame.clone();
    let settle = Function::new(
        ctx.clone(),
        move |ctx: Ctx<'js>,
              ok: bool,
              value: Value<'js>,
              convex_data: Option<String>,
              message: Option<String>|
              -> rquickjs::Result<Value<'js>> {
            let Some(frame) = frame_for_settle.borrow_mut().take() else {
                let error = SyscallError::new("a nested function call settled twice");
                let value = syscall_error_value(&ctx, &error)?;
                return Err(ctx.throw(value));
            };
            let text = if ok {
                value
                    .as_string()
                    .map(rquickjs::String::to_string)
                    .transpose()?
            } else {
                None
            };
            let answer = {
                let mut call = h.call.borrow_mut();
                match call.as_mut().and_then(|call| call.handler.as_mut()) {
                    None => NestedSettle::Reject(not_in_call("1.0/runUdf")),
                    Some(handler) => handler.finish_nested(frame, text.clone()),
                }
            };
            match answer {
                NestedSettle::Resolve(text) => {
                    Ok(rquickjs::String::from_str(ctx.clone(), &text)?.into_value())
                }
                NestedSettle::Retry(frame) => {
                    // `undefined` tells the bootstrap's `nestedCall` to invoke the export again.
                    *frame_for_settle.borrow_mut() = Some(frame);
                    Ok(Value::new_undefined(ctx.clone()))
                }
                NestedSettle::Reject(error) => {
                    let value = syscall_error_value(&ctx, &error)?;
                    Err(ctx.throw(value))
                }
                NestedSettle::Rethrow if ok => {
                    // Returned something other than a JSON string.
                    let error = SyscallError::new(format!(
                        "invalid result of the nested function: expected a JSON string, got {}",
                        value.type_name()
                    ));
                    let value = syscall_error_value(&ctx, &error)?;
                    Err(ctx.throw(value))
                }
                NestedSettle::Rethrow => match convex_data {
                    Some(data_json) => {
                        let error = SyscallError {
                            message: message.unwrap_or_default(),
                            data_json: Some(data_json),
                        };
                        let value = syscall_error_value(&ctx, &error)?;
                        Err(ctx.throw(value))
                    }
                    None => Err(ctx.throw(value)),
                },
            }
        },
    )?;
    // From the root: a relative import would resolve against the calling module.
    let namespace = match Module::import(ctx, format!("/{module}")) {
        Ok(promise) => promise,
        Err(e) => {
            // Could not even start: the handler forgets the frame; the caller sees the error.
            let thrown = match e {
                rquickjs::Error::Exception => ctx.catch(),
                other => syscall_error_value(ctx, &SyscallError::new(other.to_string()))?,
            };
            let (promise, _resolve, reject) = ctx.promise()?;
            let none: Option<String> = None;
            let _ = settle.call::<_, Value>((false, thrown.clone(), none.clone(), none));
            let _ = ctx.catch();
            reject.call::<_, ()>((thrown,))?;
            return Ok(promise);
        }
    };
    drop(frame);
    nested.call((namespace, export, kind.to_string(), args_json, settle))
}

/// Wakes the JS thread parked while it waits for pending syscall futures.
pub(crate) struct ThreadWaker(pub(crate) std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
