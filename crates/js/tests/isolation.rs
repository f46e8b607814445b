//! What one call leaves behind for the next, code versions, and many calls at once.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use js::{FunctionKind, JsError, JsPoolConfig};
use serde_json::json;

#[tokio::test]
async fn env_writes_stay_within_their_call() {
    let pool = pool(1);
    let code = project();
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "writeEnv",
            FunctionKind::Mutation,
            json!({ "name": "LEAK", "value": "x" }),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(value, json!("x"));
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "readEnv",
            FunctionKind::Query,
            json!({ "name": "LEAK" }),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(value, json!(null));
}

#[tokio::test]
async fn console_lines_belong_to_their_call() {
    let pool = pool(1);
    let code = project();
    for text in ["one", "two"] {
        let (_, outcome) = ok(
            &pool,
            request(
                &code,
                "messages.js",
                "logOne",
                FunctionKind::Query,
                json!({ "text": text }),
                FakeHandler::default(),
            ),
        )
        .await;
        assert_eq!(outcome.log_lines, vec![format!("[LOG] '{text}'")]);
    }
}

#[tokio::test]
async fn leftover_jobs_never_reach_a_handler() {
    let pool = pool(1);
    let code = project();
    // `sneaky` queues a syscall in a microtask and then throws synchronously, so the microtask
    // is still queued when the call ends.
    let failure = err(
        &pool,
        request(
            &code,
            "messages.js",
            "sneaky",
            FunctionKind::Mutation,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    match &failure.error {
        JsError::Uncaught { message } => assert!(
            message.starts_with("Uncaught Error: synchronous failure"),
            "{message}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    let first = match failure.handler {
        Some(handler) => fake(handler),
        None => panic!("handler not returned"),
    };
    assert!(first.calls.is_empty(), "{:?}", first.calls);

    let handler = FakeHandler::with_doc("m1", json!({ "_id": "m1" }));
    let (_, outcome) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "get",
            FunctionKind::Query,
            json!({ "id": "m1" }),
            handler,
        ),
    )
    .await;
    assert_eq!(fake(outcome.handler).ops(), vec!["1.0/get"]);
}

/// Module-level state, globals and built-ins a function changes, and a nested call that shares
/// them within its request.
const STATE_JS: &str = r#"
import { query, performAsyncSyscall } from "./_deps/chunk.js";
let n = 0;
export const bump = query(async () => ++n);
export const leak = query(async () => {
  globalThis.leaked = (globalThis.leaked ?? 0) + 1;
  Array.prototype.extra = (Array.prototype.extra ?? 0) + 1;
  return [++n, globalThis.leaked, [].extra];
});
export const bumpTwice = query(async () => {
  const mine = ++n;
  const nested = await performAsyncSyscall("test/invoke",
    { module: "state.js", export: "bump", kind: "query", args: {} });
  return [mine, nested, n];
});
"#;

async fn call_state(
    pool: &js::JsPool,
    code: &Arc<js::ModuleSet>,
    export: &str,
) -> serde_json::Value {
    let (value, _) = ok(
        pool,
        request(
            code,
            "state.js",
            export,
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    value
}

#[tokio::test]
async fn module_state_never_outlives_a_call() {
    // Every call gets a fresh context, as in Convex: what one call left in module variables,
    // on `globalThis` or on built-ins is gone in the next, on the same thread, whether the
    // thread prepared the context ahead (the default) or builds it when the call starts.
    for prepared in [knobs::JS_THREAD_PREPARED_CONTEXTS, 0] {
        let pool = pool_with(JsPoolConfig {
            threads: 1,
            prepared_contexts_per_thread: prepared,
            ..JsPoolConfig::default()
        });
        let code = module_set(40, &[("state.js", STATE_JS), ("_deps/chunk.js", CHUNK_JS)]);
        for _ in 0..25 {
            assert_eq!(call_state(&pool, &code, "bump").await, json!(1));
            assert_eq!(call_state(&pool, &code, "leak").await, json!([1, 1, 1]));
            // A nested call is part of its caller's request: same context, same module state.
            assert_eq!(
                call_state(&pool, &code, "bumpTwice").await,
                json!([1, 2, 2])
            );
        }
        // The standard project's `count` too, interleaved with other modules of its version.
        let project = project();
        for _ in 0..25 {
            let (value, _) = ok(
                &pool,
                request(
                    &project,
                    "messages.js",
                    "count",
                    FunctionKind::Query,
                    json!({}),
                    FakeHandler::default(),
                ),
            )
            .await;
            assert_eq!(value, json!(1));
            let (value, _) = ok(
                &pool,
                request(
                    &project,
                    "dir/other.js",
                    "hidden",
                    FunctionKind::Query,
                    json!({}),
                    FakeHandler::default(),
                ),
            )
            .await;
            assert_eq!(value, json!("hidden"));
        }
    }
}

#[tokio::test]
async fn each_code_version_runs_its_own_code() {
    let pool = pool_with(JsPoolConfig {
        threads: 1,
        prepared_contexts_per_thread: 2,
        ..JsPoolConfig::default()
    });
    let versions: Vec<_> = (0..5u64)
        .map(|v| {
            let source = format!(
                "import {{ query }} from \"./_deps/chunk.js\";\nexport const which = query(async () => {v});\n"
            );
            module_set(100 + v, &[("v.js", source.as_str()), ("_deps/chunk.js", CHUNK_JS)])
        })
        .collect();
    // Twice around, more versions than the thread caches: evicted versions come back right.
    for _ in 0..2 {
        for (v, code) in versions.iter().enumerate() {
            let (value, _) = ok(
                &pool,
                request(
                    code,
                    "v.js",
                    "which",
                    FunctionKind::Query,
                    json!({}),
                    FakeHandler::default(),
                ),
            )
            .await;
            assert_eq!(value, json!(v));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_across_threads() {
    const CALLS: usize = 200;
    let pool = Arc::new(pool(4));
    let code = project();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..CALLS {
        let pool = pool.clone();
        let handler = FakeHandler::with_doc(&format!("doc{n}"), json!({ "n": n }));
        let request = request(
            &code,
            "messages.js",
            "busy",
            FunctionKind::Query,
            json!({ "n": n }),
            handler,
        );
        tasks.spawn(async move {
            let (value, outcome) = ok(&pool, request).await;
            (n, value, fake(outcome.handler).threads.clone())
        });
    }
    let mut threads = BTreeSet::new();
    let mut answered = BTreeSet::new();
    let all = tokio::time::timeout(TEST_WAIT, async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((n, value, used)) => {
                    assert_eq!(value, json!([n, { "n": n }]));
                    threads.extend(used);
                    answered.insert(n);
                }
                Err(e) => panic!("task failed: {e}"),
            }
        }
    })
    .await;
    assert!(all.is_ok(), "calls did not finish");
    assert_eq!(answered.len(), CALLS);
    assert!(threads.len() >= 2, "only {threads:?} served calls");
    assert!(threads.iter().all(|t| t.starts_with("js-")), "{threads:?}");
}

#[tokio::test]
async fn idle_threads_prepare_the_next_context() {
    // Module-level code evaluated in the call sees the call's fixed time; evaluated ahead, in a
    // context the idle thread prepared, it sees the wall clock. Either way the call starts
    // from fresh module state, the module's import-time console output is the call's, and
    // `Math.random` gives the same values at import and in the function (same seed).
    const LOUD_JS: &str = r#"
import { query } from "./_deps/chunk.js";
let n = 0;
const importedAt = Date.now();
const atImport = Math.random();
console.log("evaluated");
export const bump = query(async () => [++n, importedAt === Date.now(), atImport, Math.random()]);
"#;
    let pool = pool(1);
    let code = module_set(41, &[("loud.js", LOUD_JS), ("_deps/chunk.js", CHUNK_JS)]);
    let call = || {
        request(
            &code,
            "loud.js",
            "bump",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        )
    };
    let (value, first) = ok(&pool, call()).await;
    assert_eq!((&value[0], &value[1]), (&json!(1), &json!(true)));
    let randoms = (value[2].clone(), value[3].clone());
    assert_eq!(first.log_lines, vec!["[LOG] 'evaluated'".to_string()]);
    let mut prepared = false;
    for _ in 0..500 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let (value, outcome) = ok(&pool, call()).await;
        assert_eq!(value[0], json!(1));
        assert_eq!((value[2].clone(), value[3].clone()), randoms);
        assert_eq!(outcome.log_lines, vec!["[LOG] 'evaluated'".to_string()]);
        if value[1] == json!(false) {
            prepared = true;
            break;
        }
    }
    assert!(prepared, "no call found a prepared context");
}
