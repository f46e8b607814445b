//! Calls that fail, and the pool staying usable after each kind of failure.

mod common;

use std::time::{Duration, Instant};

use common::*;
use js::{FunctionKind, JsError, JsPool, JsPoolConfig};
use serde_json::json;

/// A call that must work after a failure, on the same (single) thread.
async fn still_works(pool: &JsPool) {
    let code = project();
    let handler = FakeHandler::with_doc("m1", json!({ "_id": "m1" }));
    let (value, _) = ok(
        pool,
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
    assert_eq!(value, json!({ "_id": "m1" }));
}

#[tokio::test]
async fn convex_error_carries_its_data() {
    let pool = pool(1);
    let code = project();
    let failure = err(
        &pool,
        request(
            &code,
            "messages.js",
            "fail",
            FunctionKind::Mutation,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    match &failure.error {
        JsError::ConvexError { message, data_json } => {
            assert_eq!(message, r#"{"code":"nope","n":1}"#);
            let data: serde_json::Value = serde_json::from_str(data_json).unwrap_or_default();
            assert_eq!(data, json!({ "code": "nope", "n": 1 }));
        }
        other => panic!("expected a ConvexError, got {other:?}"),
    }
    assert!(
        failure.handler.is_some(),
        "the handler comes back with the error"
    );
    still_works(&pool).await;
}

#[tokio::test]
async fn syscall_error_with_data_becomes_a_convex_error() {
    let pool = pool(1);
    let code = project();
    let failure = err(
        &pool,
        request(
            &code,
            "messages.js",
            "syscallConvexError",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    match &failure.error {
        JsError::ConvexError { message, data_json } => {
            assert_eq!(message, "rejected with data");
            let data: serde_json::Value = serde_json::from_str(data_json).unwrap_or_default();
            assert_eq!(data, json!({ "reason": "quota" }));
        }
        other => panic!("expected a ConvexError, got {other:?}"),
    }
}

#[tokio::test]
async fn uncaught_type_error_is_reported_with_its_stack() {
    let pool = pool(1);
    let code = project();
    let failure = err(
        &pool,
        request(
            &code,
            "messages.js",
            "typeError",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    match &failure.error {
        JsError::Uncaught { message } => {
            assert!(message.starts_with("Uncaught TypeError: "), "{message}");
            assert!(message.contains("messages.js"), "no stack in {message}");
        }
        other => panic!("expected Uncaught, got {other:?}"),
    }
    still_works(&pool).await;
}

#[tokio::test]
async fn deep_recursion_is_an_uncaught_range_error() {
    const DEEP_JS: &str = r#"
import { query } from "./_deps/chunk.js";
export const deep = query(async () => {
  const f = (n) => f(n + 1) + 1;
  return f(0);
});
"#;
    let pool = pool(1);
    let code = module_set(4, &[("deep.js", DEEP_JS), ("_deps/chunk.js", CHUNK_JS)]);
    let failure = err(
        &pool,
        request(
            &code,
            "deep.js",
            "deep",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    match &failure.error {
        JsError::Uncaught { message } => assert!(
            message.starts_with("Uncaught RangeError: Maximum call stack size exceeded"),
            "{message}"
        ),
        other => panic!("expected Uncaught, got {other:?}"),
    }
    still_works(&pool).await;
}

#[tokio::test]
async fn syscall_errors_are_catchable_exceptions() {
    let pool = pool(1);
    let code = project();
    let (value, outcome) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "catchSyscall",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(
        value,
        json!(["Invalid id: bad", "Unknown operation 1.0/nope"])
    );
    assert_eq!(fake(outcome.handler).ops(), vec!["1.0/get", "1.0/nope"]);
}

#[tokio::test]
async fn module_that_throws_at_import_fails_the_import() {
    const BROKEN_JS: &str = r#"
import { query } from "./_deps/chunk.js";
export const f = query(async () => 1);
throw new Error("boom at import");
"#;
    const MISSING_JS: &str = r#"
import { nothing } from "./_deps/missing.js";
export const f = nothing;
"#;
    let pool = pool(1);
    let code = module_set(
        5,
        &[
            ("broken.js", BROKEN_JS),
            ("missing.js", MISSING_JS),
            ("_deps/chunk.js", CHUNK_JS),
        ],
    );
    for _ in 0..2 {
        let failure = err(
            &pool,
            request(
                &code,
                "broken.js",
                "f",
                FunctionKind::Query,
                json!({}),
                FakeHandler::default(),
            ),
        )
        .await;
        match &failure.error {
            JsError::ImportFailed { module, message } => {
                assert_eq!(module, "broken.js");
                assert!(
                    message.contains("Uncaught Error: boom at import"),
                    "{message}"
                );
            }
            other => panic!("expected ImportFailed, got {other:?}"),
        }
    }
    let failure = err(
        &pool,
        request(
            &code,
            "missing.js",
            "f",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    match &failure.error {
        JsError::ImportFailed { module, message } => {
            assert_eq!(module, "missing.js");
            assert!(message.contains("_deps/missing.js"), "{message}");
        }
        other => panic!("expected ImportFailed, got {other:?}"),
    }
    let analysis = tokio::time::timeout(TEST_WAIT, pool.analyze(code, Default::default())).await;
    assert!(
        matches!(analysis, Ok(Err(JsError::ImportFailed { .. }))),
        "{analysis:?}"
    );
    still_works(&pool).await;
}

#[tokio::test]
async fn missing_module_export_and_wrong_kind_are_reported() {
    let pool = pool(1);
    let code = project();
    let cases = [
        ("nope.js", "get", FunctionKind::Query),
        ("messages.js", "nope", FunctionKind::Query),
        ("messages.js", "notAFunction", FunctionKind::Query),
        ("messages.js", "twoKinds", FunctionKind::Query),
        ("messages.js", "send", FunctionKind::Query),
    ];
    let mut errors = Vec::new();
    for (module, export, kind) in cases {
        let failure = err(
            &pool,
            request(
                &code,
                module,
                export,
                kind,
                json!({}),
                FakeHandler::default(),
            ),
        )
        .await;
        errors.push(failure.error);
    }
    assert_eq!(
        errors,
        vec![
            JsError::ModuleNotFound {
                module: "nope.js".into()
            },
            JsError::ExportNotFound {
                module: "messages.js".into(),
                export: "nope".into()
            },
            JsError::ExportNotFound {
                module: "messages.js".into(),
                export: "notAFunction".into()
            },
            JsError::ExportNotFound {
                module: "messages.js".into(),
                export: "twoKinds".into()
            },
            JsError::WrongKind {
                module: "messages.js".into(),
                export: "send".into(),
                expected: FunctionKind::Query,
                actual: FunctionKind::Mutation,
            },
        ]
    );
    still_works(&pool).await;
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_time_limit() {
    let pool = pool_with(JsPoolConfig {
        threads: 1,
        function_timeout_ms: 200,
        ..JsPoolConfig::default()
    });
    let code = project();
    // Warm the thread so the measured time is the loop's, not the import's.
    still_works(&pool).await;
    let started = Instant::now();
    let failure = err(
        &pool,
        request(
            &code,
            "messages.js",
            "spin",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(failure.error, JsError::Timeout { limit_ms: 200 });
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(failure.handler.is_some());
    still_works(&pool).await;
}

#[tokio::test]
async fn syscall_that_never_answers_hits_the_time_limit() {
    let pool = pool_with(JsPoolConfig {
        threads: 1,
        function_timeout_ms: 200,
        ..JsPoolConfig::default()
    });
    let code = project();
    let failure = err(
        &pool,
        request(
            &code,
            "messages.js",
            "never",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(failure.error, JsError::Timeout { limit_ms: 200 });
    still_works(&pool).await;
}

#[tokio::test]
async fn memory_hog_is_stopped_by_the_memory_limit() {
    let limit = 16 << 20;
    let pool = pool_with(JsPoolConfig {
        threads: 1,
        memory_limit_bytes: limit,
        function_timeout_ms: 20_000,
        ..JsPoolConfig::default()
    });
    let code = project();
    for _ in 0..2 {
        let failure = err(
            &pool,
            request(
                &code,
                "messages.js",
                "hog",
                FunctionKind::Query,
                json!({}),
                FakeHandler::default(),
            ),
        )
        .await;
        assert_eq!(failure.error, JsError::OutOfMemory { limit_bytes: limit });
        still_works(&pool).await;
    }
}

/// Tells the test that the function started (its first syscall), then answers `null`.
struct Signal(tokio::sync::mpsc::UnboundedSender<()>);

impl js::SyscallHandler for Signal {
    fn syscall(&mut self, _op: &str, _args_json: &str) -> Result<String, js::SyscallError> {
        Ok("null".into())
    }

    fn async_syscall(&mut self, _op: &str, _args_json: &str) -> js::AsyncSyscallReply {
        let _ = self.0.send(());
        js::AsyncSyscallReply::Ready(Ok("null".into()))
    }
}

#[tokio::test]
async fn full_queue_pushes_back_and_returns_the_handler() {
    const BUSY_JS: &str = r#"
import { query } from "./_deps/chunk.js";
export const busy = query(async (ctx) => {
  await ctx.db.get("started");
  while (true) {}
});
"#;
    let pool = pool_with(JsPoolConfig {
        threads: 1,
        queue_capacity: 1,
        function_timeout_ms: 1_000,
        ..JsPoolConfig::default()
    });
    let code = module_set(6, &[("busy.js", BUSY_JS), ("_deps/chunk.js", CHUNK_JS)]);
    let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let busy = |handler: Box<dyn js::SyscallHandler>| {
        let mut request = request(
            &code,
            "busy.js",
            "busy",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        );
        request.handler = handler;
        request
    };
    // The first call occupies the thread (it has started once it made its syscall)…
    let mut running = Box::pin(pool.run(busy(Box::new(Signal(started.clone())))));
    let _ = tokio::time::timeout(Duration::from_millis(1), &mut running).await;
    let signalled = tokio::time::timeout(TEST_WAIT, started_rx.recv()).await;
    assert!(
        matches!(signalled, Ok(Some(()))),
        "the first call never started"
    );
    // …the second waits in the queue (polling its future once submits it)…
    let mut queued = Box::pin(pool.run(busy(Box::new(Signal(started)))));
    let _ = tokio::time::timeout(Duration::from_millis(1), &mut queued).await;
    // …so the third is refused, and gets its handler back.
    let refused = err(&pool, busy(Box::<FakeHandler>::default())).await;
    assert_eq!(refused.error, JsError::Overloaded { capacity: 1 });
    assert!(refused.error.is_retryable());
    assert!(refused.handler.is_some());
    for call in [running, queued] {
        let result = tokio::time::timeout(TEST_WAIT, call).await;
        match result {
            Ok(Err(failure)) => assert_eq!(failure.error, JsError::Timeout { limit_ms: 1_000 }),
            Ok(Ok(outcome)) => panic!("unexpected result {}", outcome.result_json),
            Err(_) => panic!("no answer"),
        }
    }
}

#[test]
fn unworkable_configuration_is_refused() {
    for config in [
        JsPoolConfig {
            max_log_lines: 0,
            ..JsPoolConfig::default()
        },
        JsPoolConfig {
            memory_limit_bytes: 0,
            ..JsPoolConfig::default()
        },
        JsPoolConfig {
            thread_stack_bytes: 1 << 20,
            max_stack_bytes: 1 << 20,
            ..JsPoolConfig::default()
        },
    ] {
        assert!(matches!(
            JsPool::new(config),
            Err(JsError::InvalidConfig { .. })
        ));
    }
}
