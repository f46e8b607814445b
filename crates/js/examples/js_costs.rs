//! Prints what the context-reuse policy rests on: the cost of a new context, of evaluating a
//! ~100 KB module, and of a warm call of a trivial exported query.
//!
//! Run: `cargo run --release -p js --example js_costs [BUNDLE.js]`. With a bundle (an entry
//! module built the way the Convex CLI builds one, with a query export named `trivial`), it
//! also analyzes the bundle and times cold and warm calls of `trivial`.

use std::collections::BTreeMap;
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

struct NoSyscalls;

impl SyscallHandler for NoSyscalls {
    fn syscall(&mut self, op: &str, _args_json: &str) -> Result<String, SyscallError> {
        Err(SyscallError::new(format!("unexpected {op}")))
    }
    fn async_syscall(&mut self, op: &str, _args_json: &str) -> AsyncSyscallReply {
        AsyncSyscallReply::Ready(Err(SyscallError::new(format!("unexpected {op}"))))
    }
}

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

fn request(code: &Arc<ModuleSet>) -> CallRequest {
    CallRequest {
        code: code.clone(),
        module: "entry.js".into(),
        export: "trivial".into(),
        kind: FunctionKind::Query,
        args_json: "[{}]".into(),
        request_id: "bench".into(),
        seed: 1,
        now_ms: 0.0,
        env: Arc::new(BTreeMap::new()),
        handler: Box::new(NoSyscalls),
    }
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

    let pool = JsPool::new(JsPoolConfig {
        threads: 1,
        ..JsPoolConfig::default()
    })?;

    // Cold: a new code version per call, so each call creates a context (with the globals
    // installed) and imports the entry module.
    let mut cold_small = Vec::new();
    for version in 0..200 {
        let started = Instant::now();
        pool.run(request(&code(version, false, &big))).await?;
        cold_small.push(started.elapsed());
    }
    report(
        "pool: cold call, new context + tiny modules",
        &mut cold_small,
    );

    let mut cold_big = Vec::new();
    for version in 1_000..1_030 {
        let started = Instant::now();
        pool.run(request(&code(version, true, &big))).await?;
        cold_big.push(started.elapsed());
    }
    report(
        &format!(
            "pool: cold call, new context + {} KB module",
            big.len() / 1024
        ),
        &mut cold_big,
    );

    // Warm: the same version again and again.
    let warm_code = code(5_000, true, &big);
    pool.run(request(&warm_code)).await?;
    let mut warm = Vec::new();
    for _ in 0..5_000 {
        let started = Instant::now();
        pool.run(request(&warm_code)).await?;
        warm.push(started.elapsed());
    }
    report(
        "pool: warm call of a trivial query (cached context)",
        &mut warm,
    );

    if let Some(path) = std::env::args().nth(1) {
        real_bundle(&pool, &path).await?;
    }
    Ok(())
}

async fn real_bundle(pool: &JsPool, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let source: Arc<str> = Arc::from(std::fs::read_to_string(path)?);
    let bundle = |version: u64| {
        let mut modules = BTreeMap::new();
        modules.insert("entry.js".to_string(), source.clone());
        Arc::new(ModuleSet { version, modules })
    };
    println!("bundle {path}: {} KB", source.len() / 1024);
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
    let mut cold = Vec::new();
    for version in 10_000..10_030 {
        let started = Instant::now();
        pool.run(request(&bundle(version))).await?;
        cold.push(started.elapsed());
    }
    report(
        "pool: cold call of the bundle (new context + import)",
        &mut cold,
    );
    let warm_code = bundle(20_000);
    pool.run(request(&warm_code)).await?;
    let mut warm = Vec::new();
    for _ in 0..5_000 {
        let started = Instant::now();
        pool.run(request(&warm_code)).await?;
        warm.push(started.elapsed());
    }
    report("pool: warm call of the bundle's trivial query", &mut warm);
    Ok(())
}
