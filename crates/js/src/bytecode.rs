//! Modules compiled once to QuickJS bytecode and declared from it in every new context.
//!
//! Every call runs in a fresh context (crate docs, "Fresh contexts"), so the modules it uses
//! are declared and evaluated again and again. Parsing and compiling the source is most of
//! that cost (the real `convex/server` chunk: ~4 ms from source, ~1 ms from bytecode, of which
//! the evaluation of its top-level code is about 0.4–0.6 ms), so each module is compiled once
//! per code version and its bytecode shared by every thread of the pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rquickjs::module::{Declared, WriteOptions};
use rquickjs::{Ctx, Module};

/// QuickJS bytecode of one module. Only [`Bytecode::compile`] makes one, from a module this
/// process's QuickJS compiled, which is what makes [`Bytecode::declare`] sound.
#[derive(Clone)]
pub(crate) struct Bytecode(Arc<[u8]>);

impl Bytecode {
    /// Compiles `source` as module `name`; returns the declared module (ready to link and
    /// evaluate in `ctx`) and its bytecode for other contexts.
    pub(crate) fn compile<'js>(
        ctx: &Ctx<'js>,
        name: &str,
        source: &[u8],
    ) -> rquickjs::Result<(Module<'js, Declared>, Bytecode)> {
        let module = Module::declare(ctx.clone(), name, source)?;
        // Source and debug information stay: `Function.prototype.toString` and the line numbers
        // in stack traces must read as they do when the module is compiled from source.
        let bytes = module.write(WriteOptions::default())?;
        Ok((module, Bytecode(bytes.into())))
    }

    /// Declares the module in `ctx` (under the name it was compiled with), unevaluated.
    #[allow(unsafe_code)]
    pub(crate) fn declare<'js>(&self, ctx: &Ctx<'js>) -> rquickjs::Result<Module<'js, Declared>> {
        // SAFETY: `JS_ReadObject` trusts its input to be well-formed bytecode of this QuickJS
        // build. The bytes are exactly what `Module::write` (`JS_WriteObject` with
        // `JS_WRITE_OBJ_BYTECODE`) produced in this process, from the same statically linked
        // QuickJS, and are immutable behind the `Arc`; nothing outside this module can build a
        // `Bytecode`. QuickJS copies what it reads (`JS_READ_OBJ_ROM_DATA` is a no-op in
        // quickjs-ng), so the bytes need not outlive the module.
        unsafe { Module::load(ctx.clone(), &self.0) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The bytecode of every module the pool's threads have loaded, by code version and module
/// path; shared by the threads. At most `capacity` versions, least recently used evicted. A
/// version identifies its modules' content ([`crate::ModuleSet`]), so bytecode never goes stale.
pub(crate) struct BytecodeCache {
    capacity: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    tick: u64,
    /// version → (last use, module path → bytecode)
    versions: HashMap<u64, (u64, HashMap<String, Bytecode>)>,
}

impl BytecodeCache {
    pub(crate) fn new(capacity: usize) -> Self {
        BytecodeCache {
            capacity: capacity.max(1),
            state: Mutex::new(CacheState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The state is a plain map, valid after any panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, version: u64, path: &str) -> Option<Bytecode> {
        let mut state = self.lock();
        state.tick += 1;
        let tick = state.tick;
        let (last_used, modules) = state.versions.get_mut(&version)?;
        *last_used = tick;
        modules.get(path).cloned()
    }

    pub(crate) fn insert(&self, version: u64, path: &str, bytecode: Bytecode) {
        let mut state = self.lock();
        state.tick += 1;
        let tick = state.tick;
        if !state.versions.contains_key(&version) {
            while state.versions.len() >= self.capacity {
                let Some(oldest) = state
                    .versions
                    .iter()
                    .min_by_key(|(_, (last_used, _))| *last_used)
                    .map(|(v, _)| *v)
                else {
                    break;
                };
                state.versions.remove(&oldest);
            }
        }
        let entry = state.versions.entry(version).or_default();
        entry.0 = tick;
        entry.1.insert(path.to_string(), bytecode);
    }

    /// Code versions held and their total bytecode size, for tests and measurements.
    #[cfg(test)]
    fn stats(&self) -> (usize, usize) {
        let state = self.lock();
        let bytes = state
            .versions
            .values()
            .flat_map(|(_, modules)| modules.values())
            .map(Bytecode::len)
            .sum();
        (state.versions.len(), bytes)
    }
}

/// The bootstrap's bytecode, compiled by the first context that needs it.
static BOOTSTRAP: OnceLock<Bytecode> = OnceLock::new();

/// Declares the bootstrap module (`name`, `source`) in `ctx` from its bytecode, compiling it the
/// first time.
pub(crate) fn bootstrap<'js>(
    ctx: &Ctx<'js>,
    name: &str,
    source: &str,
) -> rquickjs::Result<Module<'js, Declared>> {
    if let Some(bytecode) = BOOTSTRAP.get() {
        return bytecode.declare(ctx);
    }
    let (module, bytecode) = Bytecode::compile(ctx, name, source.as_bytes())?;
    // Another thread may have compiled it meanwhile; either copy is the same.
    let _ = BOOTSTRAP.set(bytecode);
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytecode_round_trips_and_the_cache_evicts_old_versions() {
        let runtime = rquickjs::Runtime::new().expect("runtime");
        let compiled = rquickjs::Context::full(&runtime)
            .expect("context")
            .with(|ctx| {
                Bytecode::compile(&ctx, "m.js", b"export const f = (x) => x * 2;")
                    .map(|(_, bytecode)| bytecode)
            })
            .expect("compile");
        let doubled = rquickjs::Context::full(&runtime)
            .expect("context")
            .with(|ctx| {
                let (module, promise) = compiled.declare(&ctx)?.eval()?;
                promise.finish::<()>()?;
                let f: rquickjs::Function = module.get("f")?;
                let to_string: rquickjs::Function = ctx.eval("(f) => f.toString()")?;
                let source: String = to_string.call((f.clone(),))?;
                Ok::<_, rquickjs::Error>((f.call::<_, i32>((21,))?, source))
            })
            .expect("evaluate");
        // The source survives compilation, for `Function.prototype.toString`.
        assert_eq!(doubled, (42, "(x) => x * 2".to_string()));

        let cache = BytecodeCache::new(2);
        for version in 0..3 {
            cache.insert(version, "m.js", compiled.clone());
        }
        assert!(cache.get(0, "m.js").is_none());
        assert!(cache.get(1, "m.js").is_some() && cache.get(2, "m.js").is_some());
        assert!(cache.get(2, "other.js").is_none());
        assert_eq!(cache.stats(), (2, 2 * compiled.len()));
    }
}
