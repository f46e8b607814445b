//! Prints what the fresh-context policy rests on (`js` crate docs): the cost of a new context,
//! of evaluating a ~100 KB module from source, and of calls of a trivial exported query in a
//! new code version (compiled from source), in a context the call builds (modules from
//! bytecode), and in a context the thread prepared while idle.
//!
//! Run: `cargo run --release -p js --example js_costs [BUNDLE.js | BUNDLE_DIR]`. With a bundle
//! (an entry module built the way the Convex CLI builds one, with a query export named
//! `trivial`), it also analyzes the bundle and times the same calls of `trivial`; with a
//! `tests/convex-project/bundle.sh` output directory, the same calls of its `users:get`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use js::{
    AsyncSyscallReply, CallRequest, FunctionKind, JsPool, JsPoolConfig, ModuleSet, SyscallError,
    SyscallHandler,
};

const CHUNK_JS: &str = r#"
async function run(handler, argsJson) {
  const result = await handler({}, ...JSON.parse(argsJson));
  return JSON.stringify(result === undefined ? null : result);
}
export const query = (handler) => {
  const f = (ctx, args) => handler(ctx, args);
  f.isQuery = true;
  f.isPublic = true;
  f.invokeQuery = (argsJson) => run(handler, argsJson);
  return f;
};
"#;

/// About 100 KB of bundle-like code: functions, classes, object literals, closures.
fn big_module() -> String {
    let mut source = String::new();
    let mut i = 0;
    while source.len() < 100 * 1024 {
        source.push_str(&format!(
            "export function helper{i}(a, b) {{ const o = {{ kind: \"k{i}\", values: [a, b, {i}], \
             nested: {{ x: a + {i}, y: \"s{i}\" }} }}; if (a > b) {{ return o.values.map((v) => v * 2)\
             .filter(Boolean); }} return Object.keys(o).join(\",\") + String(b); }}\n\
             class Validator{i} {{ constructor(optional) {{ this.optional = optional; this.kind = \"v{i}\"; }} \
             check(v) {{ return typeof v === \"object\" && v !== null && \"{i}\" in v; }} \
             get json() {{ return JSON.stringify({{ type: this.kind, optional: !!this.optional }}); }} }}\n\
             export const v{i} = new Validator{i}({i} % 2 === 0);\n"
        ));
        i += 1;
    }
    source
}

/// Answers `1.0/get` with one fixed user document (what `users:get` of the real bundle reads)
/// and refuses everything else.
struct Syscalls;

impl SyscallHandler for Syscalls {
    fn syscall(&mut self, op: &str, _args_json: &str) -> Result<String, SyscallError> {
        Err(SyscallError::new(format!("unexpected {op}")))
    }
    fn async_syscall(&mut self, op: &str, _args_json: &str) -> AsyncSyscallReply {
        AsyncSyscallReply::Ready(match op {
            "1.0/get" => {
                Ok(r#"{"_id":"u1","_creationTime":1.0,"name":"ada","role":"admin"}"#.to_string())
            }
            _ => Err(SyscallError::new(format!("unexpected {op}"))),
        })
    }
}

/// The function the measured calls invoke.
struct Target {
    module: &'static str,
    export: &'static str,
    args_json: &'static str,
}

const TRIVIAL: Target = Target {
    module: "entry.js",
    export: "trivial",
    args_json: "[{}]",
};

fn code(version: u64, with_big: bool, big: &Arc<str>) -> Arc<ModuleSet> {
    let entry = if with_big {
        "import { query } from \"./_deps/chunk.js\";\nimport * as big from \"./_deps/big.js\";\n\
         export const trivial = query(async () => typeof big.helper0);\n"
    } else {
        "import { query } from \"./_deps/chunk.js\";\nexport const trivial = query(async () => 1);\n"
    };
    let mut modules = BTreeMap::new();
    modules.insert("entry.js".to_string(), Arc::<str>::from(entry));
    modules.insert("_deps/chunk.js".to_string(), Arc::<str>::from(CHUNK_JS));
    modules.insert("_deps/big.js".to_string(), big.clone());
    Arc::new(ModuleSet { version, modules })
}

fn request(code: &Arc<ModuleSet>, target: &Target) -> CallRequest {
    CallRequest {
        code: code.clone(),
        module: target.module.into(),
        export: target.export.into(),
        kind: FunctionKind::Query,
        args_json: target.args_json.into(),
        request_id: "bench".into(),
        seed: 1,
        now_ms: 0.0,
        env: Arc::new(BTreeMap::new()),
        handler: Box::new(Syscalls),
    }
}

/// The modules of a `tests/convex-project/bundle.sh` output directory.
fn bundle_dir(dir: &Path, version: u64) -> Result<Arc<ModuleSet>, Box<dyn std::error::Error>> {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fullConfig.json"))?)?;
    let mut modules = BTreeMap::new();
    for module in config["modules"].as_array().ok_or("no modules")? {
        let (Some(path), Some(source)) = (module["path"].as_str(), module["source"].as_str())
        else {
            return Err("a module without path or source".into());
        };
        modules.insert(path.to_string(), Arc::<str>::from(source));
    }
    Ok(Arc::new(ModuleSet { version, modules }))
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn report(name: &str, samples: &mut [Duration]) {
    let p50 = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    println!(
        "{name:<58} n={:<6} p50 {:>9.1} µs   p99 {:>9.1} µs",
        samples.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

/// Raw rquickjs costs, without the pool: a bare full context, and compiling + evaluating the
/// big module in one.
fn raw_quickjs(big: &str) -> Result<(), rquickjs::Error> {
    let runtime = rquickjs::Runtime::new()?;
    let mut contexts = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let context = rquickjs::Context::full(&runtime)?;
        contexts.push(started.elapsed());
        drop(context);
    }
    report(
        "rquickjs: Context::full on an existing runtime",
        &mut contexts,
    );
    let mut evals = Vec::new();
    for i in 0..30 {
        let context = rquickjs::Context::full(&runtime)?;
        let started = Instant::now();
        context.with(|ctx| -> Result<(), rquickjs::Error> {
            let module = rquickjs::Module::declare(ctx.clone(), format!("big{i}.js"), big)?;
            let (_module, promise) = module.eval()?;
            promise.finish::<()>()
        })?;
        evals.push(started.elapsed());
    }
    report(
        &format!(
            "rquickjs: declare + evaluate a {} KB module",
            big.len() / 1024
        ),
        &mut evals,
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let big: Arc<str> = Arc::from(big_module());
    println!(
        "conditions: release build, {} cores, one JS thread, current-thread tokio caller, \
         closed loop (one call at a time)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    raw_quickjs(&big)?;
    for (label, with_big) in [("tiny modules", false), ("100 KB module", true)] {
        calls(label, &|version| code(version, with_big, &big), &TRIVIAL).await?;
    }
    let Some(path) = std::env::args().nth(1) else {
        return Ok(());
    };
    let path = PathBuf::from(path);
    if path.is_dir() {
        let modules = bundle_dir(&path, 0)?;
        println!(
            "bundle.sh output {}: {} modules, {} KB; calling users.js:get",
            path.display(),
            modules.modules.len(),
            modules.modules.values().map(|s| s.len()).sum::<usize>() / 1024
        );
        let users_get = Target {
            module: "users.js",
            export: "get",
            args_json: r#"[{"id":"u1"}]"#,
        };
        let code = |version| {
            let mut code = (*modules).clone();
            code.version = version;
            Arc::new(code)
        };
        return calls("real bundle", &code, &users_get).await;
    }
    let source: Arc<str> = Arc::from(std::fs::read_to_string(&path)?);
    println!("bundle {}: {} KB", path.display(), source.len() / 1024);
    let bundle = |version: u64| {
        let mut modules = BTreeMap::new();
        modules.insert("entry.js".to_string(), source.clone());
        Arc::new(ModuleSet { version, modules })
    };
    let pool = JsPool::new(JsPoolConfig {
        threads: 1,
        ..JsPoolConfig::default()
    })?;
    for function in pool.analyze(bundle(0), Arc::new(BTreeMap::new())).await? {
        println!(
            "  {}:{} {} {:?} args {} returns {}",
            function.module,
            function.name,
            function.kind,
            function.visibility,
            function.args_json,
            function.returns_json
        );
    }
    calls("the bundle", &bundle, &TRIVIAL).await
}

/// Times calls of `target` in the code `code(version)` builds, on one JS thread.
async fn calls(
    label: &str,
    code: &dyn Fn(u64) -> Arc<ModuleSet>,
    target: &Target,
) -> Result<(), Box<dyn std::error::Error>> {
    let pool = |prepared| {
        JsPool::new(JsPoolConfig {
            threads: 1,
            prepared_contexts_per_thread: prepared,
            ..JsPoolConfig::default()
        })
    };
    let timed = |samples: &mut Vec<Duration>, started: Instant| samples.push(started.elapsed());

    // Cold: a new code version per call, compiled from source into a new context.
    let cold_pool = pool(0)?;
    let mut cold = Vec::new();
    for version in 1_000..1_030 {
        let started = Instant::now();
        cold_pool.run(request(&code(version), target)).await?;
        timed(&mut cold, started);
    }
    report(
        &format!("pool: cold call, new version ({label})"),
        &mut cold,
    );

    // Fresh context built by each call, its modules declared from bytecode.
    let built_pool = pool(0)?;
    let same = code(5_000);
    built_pool.run(request(&same, target)).await?;
    let mut built = Vec::new();
    for _ in 0..500 {
        let started = Instant::now();
        built_pool.run(request(&same, target)).await?;
        timed(&mut built, started);
    }
    report(
        &format!("pool: call building its context ({label})"),
        &mut built,
    );

    // A context the thread prepared while idle (a pause between calls gives it the time).
    let prepared_pool = pool(knobs::JS_THREAD_PREPARED_CONTEXTS)?;
    prepared_pool.run(request(&same, target)).await?;
    let mut prepared = Vec::new();
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        prepared_pool.run(request(&same, target)).await?;
        timed(&mut prepared, started);
    }
    report(
        &format!("pool: call on a prepared context ({label})"),
        &mut prepared,
    );

    // Back to back: the thread never idles, so each call builds its context.
    let mut back_to_back = Vec::new();
    for _ in 0..500 {
        let started = Instant::now();
        prepared_pool.run(request(&same, target)).await?;
        timed(&mut back_to_back, started);
    }
    report(
        &format!("pool: calls back to back ({label})"),
        &mut back_to_back,
    );
    Ok(())
}
