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

#[tokio::test]
async fn module_state_persists_within_a_thread_by_design() {
    // Documented policy: a context is reused across calls of one code version, so module-level
    // variables persist (per-call state does not; see the tests above).
    let pool = pool(1);
    let code = project();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (value, _) = ok(
            &pool,
            request(
                &code,
                "messages.js",
                "count",
                FunctionKind::Query,
                json!({}),
                FakeHandler::default(),
            ),
        )
        .await;
        seen.push(value);
    }
    assert_eq!(seen, vec![json!(1), json!(2)]);
}

#[tokio::test]
async fn each_code_version_runs_its_own_code() {
    let pool = pool_with(JsPoolConfig {
        threads: 1,
        cached_contexts_per_thread: 2,
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
