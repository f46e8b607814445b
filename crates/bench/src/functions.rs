//! `chorus-bench functions`: Convex functions from the real CLI bundle of
//! `tests/convex-project`, run through the function runner on a durable single-node range
//! (Raft), on a warm runtime. Measures a trivial query (`users:get`: one document by id), an
//! index query returning 100 documents (`messages:list`), and a one-document insert mutation
//! (`users:register`: a unique-name check on an index, then an insert).
//!
//! Every call runs in a fresh JS context (`js` crate docs); a JS thread prepares the next one
//! while it is idle. Closed loop (the default) leaves it no idle time when callers ≥ threads;
//! `--pause-ms P` makes each caller wait P ms between calls, as interactive clients do, which is
//! what a prepared context is for.
//!
//! Needs Node.js and npm: it runs `tests/convex-project/bundle.sh` unless `--bundle DIR` names
//! a directory that bundle.sh already filled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use functions::FunctionRunner;
use js::{JsPool, JsPoolConfig, ModuleSet};
use txn::{Catalog, LocalRange, Object, ReplicatorKind, TableDef};
use value::{TableNumber, Value};

use crate::{machine, ms, percentile};

const USERS: u32 = 10001;
const MESSAGES: u32 = 10002;
const COUNTERS: u32 = 10003;

struct Opts {
    bundle: Option<PathBuf>,
    seconds: u64,
    callers: Vec<usize>,
    pause_ms: u64,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        bundle: None,
        seconds: 3,
        callers: vec![1, 4],
        pause_ms: 0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bundle" => opts.bundle = Some(PathBuf::from(value)),
            "--seconds" => {
                opts.seconds = value
                    .parse()
                    .map_err(|_| format!("--seconds: {value:?} is not a number"))?
            }
            "--pause-ms" => {
                opts.pause_ms = value
                    .parse()
                    .map_err(|_| format!("--pause-ms: {value:?} is not a number"))?
            }
            "--callers" => {
                opts.callers = value
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| format!("--callers: bad number {c:?}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(opts)
}

fn table(n: u32) -> Result<TableNumber, String> {
    TableNumber::new(n).map_err(|e| e.to_string())
}

/// The tables and indexes of tests/convex-project/convex/schema.ts (the CLI's debug bundle
/// does not include the schema module, so they are written out here).
fn catalog() -> Result<Catalog, String> {
    Ok(Catalog::new([
        TableDef::new(table(USERS)?, "users").with_index("by_name", &["name"]),
        TableDef::new(table(MESSAGES)?, "messages")
            .with_index("by_author", &["author"])
            .with_index("by_channel_time", &["channel", "time"]),
        TableDef::new(table(COUNTERS)?, "counters").with_index("by_name", &["name"]),
    ]))
}

fn bundle(dir: &Path) -> Result<Arc<ModuleSet>, String> {
    let config = dir.join("fullConfig.json");
    let text =
        std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut modules = BTreeMap::new();
    for module in json["modules"]
        .as_array()
        .ok_or("fullConfig.json has no modules")?
    {
        let (Some(path), Some(source)) = (module["path"].as_str(), module["source"].as_str())
        else {
            return Err("a module without path or source".into());
        };
        modules.insert(path.to_string(), Arc::<str>::from(source));
    }
    Ok(Arc::new(ModuleSet {
        version: 1,
        modules,
    }))
}

fn run_bundle_sh(out: &Path) -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/convex-project/bundle.sh");
    let status = std::process::Command::new(&script)
        .arg(out)
        .status()
        .map_err(|e| format!("running {}: {e} (needs Node.js and npm)", script.display()))?;
    if !status.success() {
        return Err(format!("{} failed: {status}", script.display()));
    }
    Ok(())
}

fn obj(fields: &[(&str, Value)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// Runs `call` from `callers` concurrent tasks for `seconds`, each pausing `pause_ms` between
/// calls; prints calls/s and latency (of the calls alone).
async fn measure<F, Fut>(
    label: &str,
    callers: usize,
    seconds: u64,
    pause_ms: u64,
    call: F,
) -> Result<(), String>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let call = Arc::new(call);
    // Warm up: every JS thread has loaded the code version (its bytecode is compiled) and run
    // the function before timing starts.
    for i in 0..8 {
        call(u64::MAX - i).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let call = Arc::clone(&call);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                call((c as u64) << 32 | n).await?;
                latencies.push(t0.elapsed());
                n += 1;
                if pause_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                }
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{label:<44} {callers} callers: {:>7.0} calls/s, p50 {:.3} ms, p99 {:.3} ms [{} calls]",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        latencies.len()
    );
    Ok(())
}

async fn bench(opts: &Opts, code: Arc<ModuleSet>, callers: usize) -> Result<(), String> {
    let dir = tempfile::tempdir_in(".").map_err(|e| e.to_string())?;
    let range = LocalRange::open(dir.path(), ReplicatorKind::Raft, catalog()?)
        .await
        .map_err(|e| e.to_string())?;
    let pool = JsPool::new(JsPoolConfig::default()).map_err(|e| e.to_string())?;
    let runner = Arc::new(FunctionRunner::new(pool, range.db.clone()));

    // Seed: one user, and 150 messages in one channel (written directly: `messages:send`
    // needs ctx.runMutation, which the runtime does not have yet).
    let user = runner
        .run_mutation(
            code.clone(),
            "users:register",
            obj(&[
                ("name", Value::String("seed".into())),
                ("role", Value::String("member".into())),
            ]),
        )
        .await
        .map_err(|e| e.to_string())?
        .value;
    let user_id = match &user {
        Value::String(id) => id.clone(),
        other => return Err(format!("register returned {other:?}")),
    };
    let mut t = range.db.begin().map_err(|e| e.to_string())?;
    for i in 0..150 {
        let doc: Object = [
            ("author".to_string(), Value::String(user_id.clone())),
            ("channel".to_string(), Value::String("general".into())),
            ("body".to_string(), Value::String(format!("message {i}"))),
            ("time".to_string(), Value::Float64(1_000.0 + f64::from(i))),
        ]
        .into_iter()
        .collect();
        t.insert(table(MESSAGES)?, doc).map_err(|e| e.to_string())?;
    }
    range
        .db
        .committer
        .commit(t.finish().map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;

    let (r, c, u) = (runner.clone(), code.clone(), user_id.clone());
    measure(
        "trivial query (users:get)",
        callers,
        opts.seconds,
        opts.pause_ms,
        move |_| {
            let (r, c, u) = (r.clone(), c.clone(), u.clone());
            async move {
                let out = r
                    .run_query(c, "users:get", obj(&[("id", Value::String(u))]))
                    .await
                    .map_err(|e| e.to_string())?;
                if matches!(out.value, Value::Null) {
                    return Err("users:get found nothing".into());
                }
                Ok(())
            }
        },
    )
    .await?;

    let (r, c) = (runner.clone(), code.clone());
    measure(
        "index query, 100 documents (messages:list)",
        callers,
        opts.seconds,
        opts.pause_ms,
        move |_| {
            let (r, c) = (r.clone(), c.clone());
            async move {
                let out = r
                    .run_query(
                        c,
                        "messages:list",
                        obj(&[
                            ("channel", Value::String("general".into())),
                            ("limit", Value::Float64(100.0)),
                        ]),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                match out.value {
                    Value::Array(rows) if rows.len() == 100 => Ok(()),
                    other => Err(format!(
                        "messages:list returned {} rows",
                        match other {
                            Value::Array(rows) => rows.len(),
                            _ => 0,
                        }
                    )),
                }
            }
        },
    )
    .await?;

    let (r, c) = (runner.clone(), code.clone());
    measure(
        "insert mutation (users:register)",
        callers,
        opts.seconds,
        opts.pause_ms,
        move |n| {
            let (r, c) = (r.clone(), c.clone());
            async move {
                r.run_mutation(
                    c,
                    "users:register",
                    obj(&[
                        ("name", Value::String(format!("user-{n}"))),
                        ("role", Value::String("member".into())),
                    ]),
                )
                .await
                .map_err(|e| e.to_string())?;
                Ok(())
            }
        },
    )
    .await?;
    drop(runner);
    range.shutdown().await.map_err(|e| e.to_string())
}

pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    let tmp;
    let bundle_dir = match &opts.bundle {
        Some(dir) => dir.clone(),
        None => {
            tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let out = tmp.path().join("bundle");
            run_bundle_sh(&out)?;
            out
        }
    };
    let code = bundle(&bundle_dir)?;
    println!("chorus-bench functions");
    println!("machine:  {}", machine());
    println!(
        "settings: real CLI bundle of tests/convex-project ({} modules), JS pool with default \
         threads (a fresh context per call, prepared while idle), single-node Raft range on \
         fjall (durable), warm runtime, {} s per measure, {}",
        code.modules.len(),
        opts.seconds,
        if opts.pause_ms == 0 {
            "closed loop".to_string()
        } else {
            format!("each caller pausing {} ms between calls", opts.pause_ms)
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    for &callers in &opts.callers {
        runtime.block_on(bench(&opts, code.clone(), callers))?;
    }
    Ok(())
}
