//! Calls that succeed: syscalls, analysis, console lines, globals, determinism.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use js::{FunctionInfo, FunctionKind, TRUNCATED_LINE_SUFFIX, Visibility};
use serde_json::json;

#[tokio::test]
async fn query_returns_a_document_through_an_async_syscall() {
    let pool = pool(1);
    let code = project();
    let handler = FakeHandler::with_doc("m1", json!({ "_id": "m1", "body": "hi" }));
    let (value, outcome) = ok(
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
    assert_eq!(value, json!({ "_id": "m1", "body": "hi" }));
    let handler = fake(outcome.handler);
    assert_eq!(handler.ops(), vec!["1.0/get"]);
    let args: serde_json::Value = serde_json::from_str(&handler.calls[0].1).unwrap_or_default();
    assert_eq!(
        args,
        json!({ "id": "m1", "isSystem": false, "version": "test" })
    );
}

#[tokio::test]
async fn mutation_syscalls_are_recorded_in_order() {
    let pool = pool(1);
    let code = project();
    let (value, outcome) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "send",
            FunctionKind::Mutation,
            json!({ "body": "hello" }),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(value, json!("id1"));
    let handler = fake(outcome.handler);
    assert_eq!(
        handler.ops(),
        vec!["1.0/insert", "1.0/shallowMerge", "1.0/get"]
    );
    assert_eq!(
        handler.docs.get("id1"),
        Some(&json!({ "_id": "id1", "body": "hello", "seen": false }))
    );
}

#[tokio::test]
async fn action_gets_its_request_id_and_identity() {
    let pool = pool(1);
    let code = project();
    let handler = FakeHandler {
        identity: Some(json!({ "subject": "user|1" })),
        ..FakeHandler::default()
    };
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "whoami",
            FunctionKind::Action,
            json!({}),
            handler,
        ),
    )
    .await;
    assert_eq!(
        value,
        json!({ "requestId": "req-1", "identity": { "subject": "user|1" } })
    );
}

#[tokio::test]
async fn default_export_and_nested_module_are_callable() {
    let pool = pool(1);
    let code = project();
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "default",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(value, json!("default!"));
    let (value, _) = ok(
        &pool,
        request(
            &code,
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

#[tokio::test]
async fn pending_syscall_answers_are_awaited() {
    let pool = pool(1);
    let code = project();
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "slow",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(value, json!("slow answer"));
}

#[tokio::test]
async fn analyze_lists_registered_functions() {
    let pool = pool(1);
    let functions = match tokio::time::timeout(
        TEST_WAIT,
        pool.analyze(project(), Arc::new(BTreeMap::new())),
    )
    .await
    {
        Ok(Ok(functions)) => functions,
        Ok(Err(e)) => panic!("analysis failed: {e}"),
        Err(_) => panic!("analysis did not finish"),
    };
    let info =
        |module: &str, name: &str, kind, visibility, args: &str, returns: &str| FunctionInfo {
            module: module.into(),
            name: name.into(),
            kind,
            visibility,
            args_json: args.into(),
            returns_json: returns.into(),
        };
    use FunctionKind::*;
    use Visibility::*;
    let any = r#"{"type":"any"}"#;
    let expected = vec![
        info("dir/other.js", "hidden", Query, Internal, any, "null"),
        info("dir/other.js", "legacy", Query, Public, any, "null"),
        info("messages.js", "actionNow", Action, Public, any, "null"),
        info("messages.js", "busy", Query, Public, any, "null"),
        info("messages.js", "catchSyscall", Query, Public, any, "null"),
        info("messages.js", "chatty", Query, Public, any, "null"),
        info("messages.js", "count", Query, Public, any, "null"),
        info("messages.js", "default", Query, Public, any, "null"),
        info("messages.js", "echo", Query, Public, any, "null"),
        info("messages.js", "fail", Mutation, Public, any, "null"),
        info(
            "messages.js",
            "get",
            Query,
            Public,
            r#"{"type":"object","value":{"id":{"fieldType":{"type":"string"},"optional":false}}}"#,
            "null",
        ),
        info("messages.js", "hog", Query, Public, any, "null"),
        info("messages.js", "logOne", Query, Public, any, "null"),
        info("messages.js", "never", Query, Public, any, "null"),
        info("messages.js", "now", Query, Public, any, "null"),
        info("messages.js", "random", Query, Public, any, "null"),
        info("messages.js", "readEnv", Query, Public, any, "null"),
        info(
            "messages.js",
            "send",
            Mutation,
            Public,
            r#"{"type":"object","value":{"body":{"fieldType":{"type":"string"},"optional":false}}}"#,
            r#"{"type":"id","tableName":"messages"}"#,
        ),
        info("messages.js", "slow", Query, Public, any, "null"),
        info("messages.js", "sneaky", Mutation, Public, any, "null"),
        info("messages.js", "spin", Query, Public, any, "null"),
        info(
            "messages.js",
            "syscallConvexError",
            Query,
            Public,
            any,
            "null",
        ),
        info("messages.js", "touch", Mutation, Internal, any, "null"),
        info("messages.js", "typeError", Query, Public, any, "null"),
        info("messages.js", "whoami", Action, Public, any, "null"),
        info("messages.js", "writeEnv", Mutation, Public, any, "null"),
    ];
    assert_eq!(functions, expected);
}

#[tokio::test]
async fn console_lines_are_formatted_like_convex() {
    let pool = pool(1);
    let code = project();
    let (_, outcome) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "chatty",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(
        outcome.log_lines,
        vec![
            "[LOG] 'a' 1 { b: [ 1, 'x' ], 'c-d': null } undefined true",
            "[INFO] 'info'",
            "[WARN] 'warn' -0 10n",
            "[ERROR] [Error: bad thing]",
            "[DEBUG] [] {} 'it\\'s' Symbol(s)",
        ]
    );
}

#[tokio::test]
async fn long_console_lines_are_truncated() {
    let pool = pool(1);
    let code = project();
    let text = "x".repeat(40_000);
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
    assert_eq!(outcome.log_lines.len(), 1);
    let line = &outcome.log_lines[0];
    assert!(line.starts_with("[LOG] 'xxx"), "{}", &line[..20]);
    assert!(line.ends_with(TRUNCATED_LINE_SUFFIX));
    assert!(
        line.len() <= "[LOG] ".len() + knobs::FUNCTION_LOG_LINE_MAX_BYTES,
        "{}",
        line.len()
    );
}

#[tokio::test]
async fn globals_bundles_rely_on_exist() {
    const GLOBALS_JS: &str = r#"
import { query } from "./_deps/chunk.js";
export const check = query(async () => {
  const bytes = new TextEncoder().encode("héllo €𝄞");
  const back = new TextDecoder().decode(bytes);
  const lossy = new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0x62]));
  let fatal = "no error";
  try { new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])); } catch (e) { fatal = e.name; }
  const order = [];
  queueMicrotask(() => order.push("microtask"));
  order.push("sync");
  await null;
  let js = "no error";
  try { Convex.jsSyscall("storage/getBlob", {}); } catch (e) { js = e.message; }
  return {
    length: bytes.length,
    back,
    lossy,
    fatal,
    b64: btoa("hello"),
    unb64: atob("aGVsbG8="),
    order,
    js,
    instance: new Date() instanceof Date,
    envType: typeof process.env,
  };
});
"#;
    let pool = pool(1);
    let code = module_set(
        9,
        &[("globals.js", GLOBALS_JS), ("_deps/chunk.js", CHUNK_JS)],
    );
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "globals.js",
            "check",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(
        value,
        json!({
            "length": 14,
            "back": "héllo €𝄞",
            "lossy": "a\u{FFFD}b",
            "fatal": "TypeError",
            "b64": "aGVsbG8=",
            "unb64": "hello",
            "order": ["sync", "microtask"],
            "js": "Convex.jsSyscall(\"storage/getBlob\") is not supported",
            "instance": true,
            "envType": "object",
        })
    );
}

#[tokio::test]
async fn math_random_is_reproducible_per_seed() {
    let pool = pool(2);
    let code = project();
    let mut results = Vec::new();
    for seed in [1u64, 1, 2] {
        let mut req = request(
            &code,
            "messages.js",
            "random",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        );
        req.seed = seed;
        let (value, _) = ok(&pool, req).await;
        results.push(value);
    }
    assert_eq!(results[0], results[1]);
    assert_ne!(results[0], results[2]);
    let first = results[0].as_array().cloned().unwrap_or_default();
    assert_eq!(first.len(), 3);
    assert!(
        first
            .iter()
            .all(|x| x.as_f64().is_some_and(|f| (0.0..1.0).contains(&f)))
    );
    assert_ne!(first[0], first[1]);
}

#[tokio::test]
async fn date_is_fixed_for_queries_and_advances_for_actions() {
    let pool = pool(1);
    let code = project();
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "now",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    let t = 1_700_000_000_123u64;
    assert_eq!(value, json!([t, t, t, t, 0, 0, true]));

    let (elapsed, _) = ok(
        &pool,
        request(
            &code,
            "messages.js",
            "actionNow",
            FunctionKind::Action,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    assert!(elapsed.as_f64().is_some_and(|ms| ms >= 5.0), "{elapsed}");
}

#[tokio::test]
async fn env_is_readable_at_import_time_and_in_calls() {
    const ENV_JS: &str = r#"
import { query } from "./_deps/chunk.js";
const atImport = process.env.SITE_URL ?? null;
export const site = query(async () => [atImport, process.env.SITE_URL ?? null, Object.keys(process.env)]);
"#;
    let pool = pool(1);
    let code = module_set(3, &[("env.js", ENV_JS), ("_deps/chunk.js", CHUNK_JS)]);
    for url in ["https://a.example", "https://b.example"] {
        let mut req = request(
            &code,
            "env.js",
            "site",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        );
        req.env = Arc::new(BTreeMap::from([("SITE_URL".to_string(), url.to_string())]));
        let (value, _) = ok(&pool, req).await;
        assert_eq!(value, json!([url, url, ["SITE_URL"]]));
    }
}

/// Calls other exports through a handler that answers `test/invoke` with a nested call.
const CALLER_JS: &str = r#"
import { query, mutation, performAsyncSyscall } from "./_deps/chunk.js";
const invoke = (module, exportName, kind, args) =>
  performAsyncSyscall("test/invoke", { module, export: exportName, kind, args });
export const viaGet = query(async (_ctx, { id }) => await invoke("messages.js", "get", "query", { id }));
export const viaSend = mutation(async (_ctx, args) => {
  const id = await invoke("messages.js", "send", "mutation", args);
  const again = await invoke("dir/other.js", "hidden", "query", {});
  return { id, again };
});
export const wrongKind = query(async () => {
  try { await invoke("messages.js", "send", "query", {}); return null; } catch (e) { return e.message; }
});
export const nestedThrows = mutation(async () => {
  try { await invoke("messages.js", "fail", "mutation", {}); return null; }
  catch (e) { return { message: e.message, data: e.data ?? null }; }
});
"#;

fn caller_project() -> Arc<js::ModuleSet> {
    module_set(
        2,
        &[
            ("messages.js", MESSAGES_JS),
            ("dir/other.js", DIR_OTHER_JS),
            ("caller.js", CALLER_JS),
            ("_deps/chunk.js", CHUNK_JS),
        ],
    )
}

#[tokio::test]
async fn nested_calls_run_in_the_same_call_with_the_same_handler() {
    let pool = pool(1);
    let code = caller_project();
    let handler = FakeHandler::with_doc("m1", json!({ "_id": "m1", "body": "hi" }));
    let (value, outcome) = ok(
        &pool,
        request(
            &code,
            "caller.js",
            "viaGet",
            FunctionKind::Query,
            json!({ "id": "m1" }),
            handler,
        ),
    )
    .await;
    assert_eq!(value, json!({ "_id": "m1", "body": "hi" }));
    assert_eq!(fake(outcome.handler).ops(), ["test/invoke", "1.0/get"]);

    let (value, outcome) = ok(
        &pool,
        request(
            &code,
            "caller.js",
            "viaSend",
            FunctionKind::Mutation,
            json!({ "author": "a", "body": "b" }),
            FakeHandler::default(),
        ),
    )
    .await;
    assert_eq!(value["again"], json!("hidden"));
    let handler = fake(outcome.handler);
    assert_eq!(handler.ops()[0], "test/invoke");
    assert!(handler.ops().contains(&"1.0/insert"), "{:?}", handler.ops());
}

#[tokio::test]
async fn nested_call_errors_reach_the_caller() {
    let pool = pool(1);
    let code = caller_project();
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "caller.js",
            "wrongKind",
            FunctionKind::Query,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    assert!(
        value
            .as_str()
            .is_some_and(|m| m.contains("not a registered query")),
        "{value}"
    );
    let (value, _) = ok(
        &pool,
        request(
            &code,
            "caller.js",
            "nestedThrows",
            FunctionKind::Mutation,
            json!({}),
            FakeHandler::default(),
        ),
    )
    .await;
    // A ConvexError crosses over with its data, as a syscall error carrying data.
    assert_eq!(value["data"], json!({ "code": "nope", "n": 1 }), "{value}");
}
