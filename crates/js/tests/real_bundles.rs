//! Bundles built by the real Convex CLI (`convex` 1.48.0) from the test app in
//! `tests/convex-project`, analyzed and run the way Chorus will run them. The recording syscall
//! handler answers like the backend would, and each test pins the exact ops and argument JSON
//! the real `convex/server` library sends: the wire shapes Chorus's syscall layer must serve
//! (`research/convex-protocol.md` §4.6–§4.7).
//!
//! Needs Node.js 20+ and npm: the first run installs the pinned CLI with `npm ci` (from the npm
//! registry) and bundles with `tests/convex-project/bundle.sh` into `CARGO_TARGET_TMPDIR`. The
//! bundle is reused while the project's files are unchanged (one bundling per change, not per
//! test process); a missing `node` or `npm` fails every test.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use js::{
    AsyncSyscallReply, CallFailure, CallOutcome, CallRequest, FunctionKind, JsError, JsPool,
    JsPoolConfig, SyscallError, SyscallHandler, Visibility,
};
use serde_json::{Value, json};

/// Upper bound on any single wait for the pool.
const WAIT: Duration = Duration::from_secs(60);

/// `Date.now()` of every call.
const NOW_MS: f64 = 1_700_000_000_000.0;

// ---------------------------------------------------------------------------------------------
// The bundle

#[path = "../../../tests/convex-project/rust/bundle.rs"]
mod fixture_bundle;

use fixture_bundle::bundle;

// ---------------------------------------------------------------------------------------------
// A recording syscall handler that answers like the backend

/// Records every syscall as `(op, parsed args)` and answers from canned data.
#[derive(Default)]
struct Recorder {
    calls: Vec<(String, Value)>,
    /// Documents each `1.0/queryStream` yields, in the order the queries start (none left: an
    /// empty stream).
    streams: VecDeque<Vec<Value>>,
    open: BTreeMap<u64, VecDeque<Value>>,
    next_query_id: u64,
    /// Documents `1.0/get` finds, by id.
    docs: BTreeMap<String, Value>,
    /// Answers to `1.0/runUdf`, in order.
    udf_results: VecDeque<Value>,
    /// The answer to `1.0/queryPage`.
    page: Option<Value>,
    inserted: u32,
}

impl Recorder {
    fn ops(&self) -> Vec<&str> {
        self.calls.iter().map(|(op, _)| op.as_str()).collect()
    }
}

impl SyscallHandler for Recorder {
    fn syscall(&mut self, op: &str, args_json: &str) -> Result<String, SyscallError> {
        let args: Value = serde_json::from_str(args_json)
            .map_err(|e| SyscallError::new(format!("args of {op} are not JSON: {e}")))?;
        self.calls.push((op.to_string(), args.clone()));
        match op {
            "1.0/queryStream" => {
                self.next_query_id += 1;
                let docs = self.streams.pop_front().unwrap_or_default();
                self.open.insert(self.next_query_id, docs.into());
                Ok(json!({ "queryId": self.next_query_id }).to_string())
            }
            "1.0/queryCleanup" => {
                let id = args["queryId"].as_u64().unwrap_or_default();
                Ok(json!(self.open.remove(&id).is_some()).to_string())
            }
            _ => Err(SyscallError::new(format!("Unknown operation {op}"))),
        }
    }

    fn async_syscall(&mut self, op: &str, args_json: &str) -> AsyncSyscallReply {
        let args: Value = match serde_json::from_str(args_json) {
            Ok(args) => args,
            Err(e) => {
                return AsyncSyscallReply::Ready(Err(SyscallError::new(format!(
                    "args of {op} are not JSON: {e}"
                ))));
            }
        };
        self.calls.push((op.to_string(), args.clone()));
        let answer = match op {
            "1.0/get" => {
                let id = args["id"].as_str().unwrap_or_default();
                Ok(self.docs.get(id).cloned().unwrap_or(Value::Null))
            }
            "1.0/queryStreamNext" => {
                let id = args["queryId"].as_u64().unwrap_or_default();
                match self.open.get_mut(&id) {
                    Some(docs) => Ok(match docs.pop_front() {
                        Some(doc) => json!({ "value": doc, "done": false }),
                        None => json!({ "value": null, "done": true }),
                    }),
                    None => Err(SyscallError::new(format!("no open query {id}"))),
                }
            }
            "1.0/queryPage" => self
                .page
                .take()
                .ok_or_else(|| SyscallError::new("no page prepared")),
            "1.0/insert" => {
                self.inserted += 1;
                let table = args["table"].as_str().unwrap_or_default();
                Ok(json!({ "_id": format!("{table}{}", self.inserted) }))
            }
            // The backend answers with the new document, which the library ignores.
            "1.0/shallowMerge" | "1.0/replace" | "1.0/remove" => Ok(json!({})),
            "1.0/runUdf" => self
                .udf_results
                .pop_front()
                .ok_or_else(|| SyscallError::new("no runUdf answer prepared")),
            _ => Err(SyscallError::new(format!("Unknown async operation {op}"))),
        };
        AsyncSyscallReply::Ready(answer.map(|value| value.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Running functions

fn pool() -> JsPool {
    match JsPool::new(JsPoolConfig {
        threads: 1,
        ..JsPoolConfig::default()
    }) {
        Ok(pool) => pool,
        Err(e) => panic!("cannot start the pool: {e}"),
    }
}

/// Calls `path` (`module:export`, or `module` for its default export) of the bundle with
/// `args`, and returns the decoded result or the error, with the recorder.
async fn call(
    pool: &JsPool,
    path: &str,
    kind: FunctionKind,
    args: Value,
    recorder: Recorder,
) -> (Result<Value, JsError>, Recorder) {
    let (module, export) = path.split_once(':').unwrap_or((path, "default"));
    let request = CallRequest {
        code: bundle(),
        module: format!("{module}.js"),
        export: export.to_string(),
        kind,
        args_json: json!([args]).to_string(),
        request_id: "req-1".to_string(),
        seed: 7,
        now_ms: NOW_MS,
        env: Arc::new(BTreeMap::new()),
        handler: Box::new(recorder),
    };
    let result = match tokio::time::timeout(WAIT, pool.run(request)).await {
        Ok(result) => result,
        Err(_) => panic!("the pool did not answer within {WAIT:?}"),
    };
    let (value, handler) = match result {
        Ok(CallOutcome {
            result_json,
            handler,
            ..
        }) => match serde_json::from_str(&result_json) {
            Ok(value) => (Ok(value), handler),
            Err(e) => panic!("result of {path} is not JSON ({e}): {result_json}"),
        },
        Err(CallFailure {
            error,
            handler: Some(handler),
            ..
        }) => (Err(error), handler),
        Err(failure) => panic!("{path} lost its handler: {failure}"),
    };
    match handler.downcast::<Recorder>() {
        Ok(recorder) => (value, *recorder),
        Err(_) => panic!("the handler came back as another type"),
    }
}

/// Asserts the exact syscalls a call made: op names and argument JSON, in order.
#[track_caller]
fn assert_calls(recorder: &Recorder, expected: &[(&str, Value)]) {
    let expected: Vec<(String, Value)> = expected
        .iter()
        .map(|(op, args)| (op.to_string(), args.clone()))
        .collect();
    assert_eq!(
        recorder.calls,
        expected,
        "syscalls differ; ops were {:?}",
        recorder.ops()
    );
}

/// A `messages` document as the backend returns it (system fields included).
fn message(id: &str, author: &str, channel: &str, body: &str, time: u64) -> Value {
    json!({
        "_id": id,
        "_creationTime": time as f64 + 0.5,
        "author": author,
        "channel": channel,
        "body": body,
        "time": time,
    })
}

/// Convex JSON of an int64 (`{"$integer": base64 of 8 little-endian bytes}`).
fn int64(n: i64) -> Value {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = n.to_le_bytes();
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let triple = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[((triple >> shift) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    json!({ "$integer": text })
}

// ---------------------------------------------------------------------------------------------
// Analysis

#[tokio::test]
async fn bundle_has_the_expected_modules() {
    let code = bundle();
    let entries: Vec<&str> = code.entry_modules().collect();
    assert_eq!(
        entries,
        vec![
            "admin/stats.js",
            "clients.js",
            "cluster.js",
            "counters.js",
            "messages.js",
            "torture.js",
            "users.js"
        ]
    );
    // Everything else is a shared chunk (`convex/server` is inlined in one of them); the schema
    // is bundled separately by the CLI and is not among the function modules.
    let chunks: Vec<&String> = code
        .modules
        .keys()
        .filter(|path| path.starts_with("_deps/"))
        .collect();
    assert!(!chunks.is_empty(), "{:?}", code.modules.keys());
    assert_eq!(code.modules.len(), entries.len() + chunks.len());
    assert!(
        code.modules["messages.js"].contains("from \"./_deps/"),
        "entry modules import their chunks relatively"
    );
}

#[tokio::test]
async fn analysis_finds_every_function_with_its_validators() {
    let pool = pool();
    let functions = match tokio::time::timeout(WAIT, pool.analyze(bundle(), Arc::default())).await {
        Ok(Ok(functions)) => functions,
        Ok(Err(e)) => panic!("analysis failed: {e}"),
        Err(_) => panic!("analysis did not finish within {WAIT:?}"),
    };
    use FunctionKind::{Action, Mutation, Query};
    use Visibility::{Internal, Public};
    let found: Vec<(String, FunctionKind, Visibility)> = functions
        .iter()
        .map(|f| (format!("{}:{}", f.module, f.name), f.kind, f.visibility))
        .collect();
    let expected = [
        ("admin/stats.js:default", Query, Public),
        ("admin/stats.js:purgeChannel", Mutation, Internal),
        ("clients.js:registerAndFetch", Action, Public),
        ("cluster.js:write", Mutation, Public),
        ("cluster.js:writes", Query, Public),
        ("counters.js:get", Query, Internal),
        ("counters.js:increment", Mutation, Internal),
        ("counters.js:read", Query, Public),
        ("messages.js:byAuthor", Query, Public),
        ("messages.js:edit", Mutation, Public),
        ("messages.js:latest", Query, Public),
        ("messages.js:list", Query, Public),
        ("messages.js:page", Query, Public),
        ("messages.js:remove", Mutation, Public),
        ("messages.js:rewrite", Mutation, Public),
        ("messages.js:send", Mutation, Public),
        ("torture.js:balances", Query, Public),
        ("torture.js:bankInit", Mutation, Public),
        ("torture.js:monoIncrement", Mutation, Public),
        ("torture.js:monoRead", Query, Public),
        ("torture.js:readLists", Query, Public),
        ("torture.js:regCas", Mutation, Public),
        ("torture.js:regRead", Query, Public),
        ("torture.js:regWrite", Mutation, Public),
        ("torture.js:setAdd", Mutation, Public),
        ("torture.js:setRead", Query, Public),
        ("torture.js:transfer", Mutation, Public),
        ("torture.js:txn", Mutation, Public),
        ("users.js:get", Query, Public),
        ("users.js:register", Mutation, Public),
    ];
    let expected: Vec<(String, FunctionKind, Visibility)> = expected
        .iter()
        .map(|(name, kind, visibility)| (name.to_string(), *kind, *visibility))
        .collect();
    assert_eq!(found, expected);

    // Every validator is JSON; functions with `args` export an object validator.
    let validators: BTreeMap<String, (Value, Value)> = functions
        .iter()
        .map(|f| {
            let parse = |text: &str| match serde_json::from_str::<Value>(text) {
                Ok(value) => value,
                Err(e) => panic!(
                    "{}:{} exported invalid JSON ({e}): {text}",
                    f.module, f.name
                ),
            };
            (
                format!("{}:{}", f.module, f.name),
                (parse(&f.args_json), parse(&f.returns_json)),
            )
        })
        .collect();
    for (name, (args, _)) in &validators {
        assert_eq!(args["type"], "object", "{name}: {args}");
    }

    let string = json!({ "type": "string" });
    let field =
        |validator: &Value, optional: bool| json!({ "fieldType": validator, "optional": optional });
    let pinned = [
        (
            "messages.js:send",
            json!({ "type": "object", "value": {
                "author": field(&json!({ "type": "id", "tableName": "users" }), false),
                "channel": field(&string, false),
                "body": field(&string, false),
                "tags": field(&json!({ "type": "array", "value": string }), true),
            }}),
            json!({ "type": "id", "tableName": "messages" }),
        ),
        (
            "messages.js:list",
            json!({ "type": "object", "value": {
                "channel": field(&string, false),
                "after": field(&json!({ "type": "number" }), true),
                "before": field(&json!({ "type": "number" }), true),
                "limit": field(&json!({ "type": "number" }), true),
            }}),
            Value::Null,
        ),
        (
            "messages.js:rewrite",
            json!({ "type": "object", "value": {
                "id": field(&json!({ "type": "id", "tableName": "messages" }), false),
                "update": field(&json!({ "type": "object", "value": {
                    "body": field(&string, false),
                    "author": field(&json!({ "type": "id", "tableName": "users" }), false),
                }}), false),
            }}),
            Value::Null,
        ),
        (
            "messages.js:edit",
            json!({ "type": "object", "value": {
                "id": field(&json!({ "type": "id", "tableName": "messages" }), false),
                "body": field(&string, false),
            }}),
            json!({ "type": "null" }),
        ),
        (
            "messages.js:page",
            json!({ "type": "object", "value": {
                "channel": field(&string, false),
                "paginationOpts": field(&json!({ "type": "object", "value": {
                    "numItems": field(&json!({ "type": "number" }), false),
                    "cursor": field(&json!({ "type": "union", "value": [string, { "type": "null" }] }), false),
                    "endCursor": field(&json!({ "type": "union", "value": [string, { "type": "null" }] }), true),
                    "id": field(&json!({ "type": "number" }), true),
                    "maximumRowsRead": field(&json!({ "type": "number" }), true),
                    "maximumBytesRead": field(&json!({ "type": "number" }), true),
                }}), false),
            }}),
            Value::Null,
        ),
        (
            "users.js:register",
            json!({ "type": "object", "value": {
                "name": field(&string, false),
                "role": field(&json!({ "type": "union", "value": [
                    { "type": "literal", "value": "admin" },
                    { "type": "literal", "value": "member" },
                ]}), false),
                "email": field(&string, true),
            }}),
            json!({ "type": "id", "tableName": "users" }),
        ),
        (
            "counters.js:increment",
            json!({ "type": "object", "value": {
                "name": field(&string, false),
                "by": field(&json!({ "type": "bigint" }), false),
            }}),
            json!({ "type": "bigint" }),
        ),
        (
            "counters.js:get",
            json!({ "type": "object", "value": { "name": field(&string, false) } }),
            json!({ "type": "union", "value": [{ "type": "bigint" }, { "type": "null" }] }),
        ),
        (
            "admin/stats.js:default",
            json!({ "type": "object", "value": {} }),
            json!({ "type": "object", "value": {
                "users": field(&json!({ "type": "number" }), false),
                "messages": field(&json!({ "type": "number" }), false),
                "counted": field(&json!({ "type": "bigint" }), false),
            }}),
        ),
    ];
    for (name, args, returns) in pinned {
        assert_eq!(validators[name], (args, returns), "validators of {name}");
    }
    // The exported text itself: what Chorus stores and later parses.
    let send = functions
        .iter()
        .find(|f| f.module == "messages.js" && f.name == "send");
    assert_eq!(
        send.map(|f| f.returns_json.as_str()),
        Some(r#"{"type":"id","tableName":"messages"}"#)
    );
}

// ---------------------------------------------------------------------------------------------
// Queries

#[tokio::test]
async fn index_range_query_in_descending_order_with_a_limit() {
    let pool = pool();
    let docs = vec![
        message("m2", "u1", "general", "second", 180),
        message("m1", "u1", "general", "first", 150),
    ];
    let recorder = Recorder {
        streams: VecDeque::from([docs.clone()]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "messages:list",
        FunctionKind::Query,
        json!({ "channel": "general", "after": 100, "before": 200, "limit": 2 }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(Value::Array(docs)));
    // `withIndex(..., q => q.eq("channel", c).gt("time", 100).lt("time", 200)).order("desc")
    // .take(2)`: the stream is read until the backend says `done`, then cleaned up.
    assert_calls(
        &recorder,
        &[
            (
                "1.0/queryStream",
                json!({
                    "query": {
                        "source": {
                            "type": "IndexRange",
                            "indexName": "messages.by_channel_time",
                            "range": [
                                { "type": "Eq", "fieldPath": "channel", "value": "general" },
                                { "type": "Gt", "fieldPath": "time", "value": 100 },
                                { "type": "Lt", "fieldPath": "time", "value": 200 },
                            ],
                            "order": "desc",
                        },
                        "operators": [{ "limit": 2 }],
                    },
                    "version": "1.48.0",
                }),
            ),
            ("1.0/queryStreamNext", json!({ "queryId": 1 })),
            ("1.0/queryStreamNext", json!({ "queryId": 1 })),
            ("1.0/queryStreamNext", json!({ "queryId": 1 })),
            ("1.0/queryCleanup", json!({ "queryId": 1 })),
        ],
    );
}

#[tokio::test]
async fn first_filter_and_one_argument_get() {
    let pool = pool();

    // `.first()` is `take(1)`: a limit of 1.
    let doc = message("m1", "u1", "general", "hi", 150);
    let recorder = Recorder {
        streams: VecDeque::from([vec![doc.clone()]]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "messages:latest",
        FunctionKind::Query,
        json!({ "channel": "general" }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(doc.clone()));
    assert_eq!(
        recorder.calls[0].1["query"],
        json!({
            "source": {
                "type": "IndexRange",
                "indexName": "messages.by_channel_time",
                "range": [{ "type": "Eq", "fieldPath": "channel", "value": "general" }],
                "order": "desc",
            },
            "operators": [{ "limit": 1 }],
        })
    );

    // `.filter(q => q.or(q.eq(q.field("edited"), true), q.gt(q.field("time"), 0)))`, then
    // `.collect()`: no limit, order left to the index (null).
    let mut tagged = message("m3", "u1", "general", "tagged", 170);
    tagged["tags"] = json!(["news"]);
    let recorder = Recorder {
        streams: VecDeque::from([vec![doc, tagged.clone()]]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "messages:byAuthor",
        FunctionKind::Query,
        json!({ "author": "u1", "tag": "news" }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(json!([tagged])));
    assert_calls(
        &recorder,
        &[
            (
                "1.0/queryStream",
                json!({
                    "query": {
                        "source": {
                            "type": "IndexRange",
                            "indexName": "messages.by_author",
                            "range": [{ "type": "Eq", "fieldPath": "author", "value": "u1" }],
                            "order": null,
                        },
                        "operators": [{ "filter": { "$or": [
                            { "$eq": [{ "$field": "edited" }, { "$literal": true }] },
                            { "$gt": [{ "$field": "time" }, { "$literal": 0 }] },
                        ]}}],
                    },
                    "version": "1.48.0",
                }),
            ),
            ("1.0/queryStreamNext", json!({ "queryId": 1 })),
            ("1.0/queryStreamNext", json!({ "queryId": 1 })),
            ("1.0/queryStreamNext", json!({ "queryId": 1 })),
            ("1.0/queryCleanup", json!({ "queryId": 1 })),
        ],
    );

    // `db.get(id)` without a table name sends no `table`.
    let user = json!({ "_id": "u1", "_creationTime": 1.5, "name": "ada", "role": "admin" });
    let recorder = Recorder {
        docs: BTreeMap::from([("u1".to_string(), user.clone())]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "users:get",
        FunctionKind::Query,
        json!({ "id": "u1" }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(user));
    assert_calls(
        &recorder,
        &[(
            "1.0/get",
            json!({ "id": "u1", "isSystem": false, "version": "1.48.0" }),
        )],
    );
}

#[tokio::test]
async fn paginate_sends_one_query_page() {
    let pool = pool();
    let doc = message("m1", "u1", "general", "hi", 150);
    let page = json!({
        "page": [doc],
        "isDone": false,
        "continueCursor": "cursor-1",
        "splitCursor": null,
        "pageStatus": null,
    });
    let recorder = Recorder {
        page: Some(page.clone()),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "messages:page",
        FunctionKind::Query,
        json!({ "channel": "general", "paginationOpts": { "numItems": 2, "cursor": null } }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(page));
    // `maximumBytesRead` is sent only when given (undefined is dropped by JSON.stringify).
    assert_calls(
        &recorder,
        &[(
            "1.0/queryPage",
            json!({
                "query": {
                    "source": {
                        "type": "IndexRange",
                        "indexName": "messages.by_channel_time",
                        "range": [{ "type": "Eq", "fieldPath": "channel", "value": "general" }],
                        "order": "desc",
                    },
                    "operators": [],
                },
                "cursor": null,
                "endCursor": null,
                "pageSize": 2,
                "maximumRowsRead": null,
                "version": "1.48.0",
            }),
        )],
    );
}

#[tokio::test]
async fn run_query_from_a_query_and_full_table_scans() {
    let pool = pool();

    // `ctx.runQuery(internal.counters.get, { name })` from a public query.
    let recorder = Recorder {
        udf_results: VecDeque::from([int64(5)]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "counters:read",
        FunctionKind::Query,
        json!({ "name": "messages" }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(int64(5)));
    assert_calls(
        &recorder,
        &[(
            "1.0/runUdf",
            json!({ "udfType": "query", "args": { "name": "messages" }, "name": "counters:get" }),
        )],
    );

    // The default export of a module in a subdirectory: two full table scans and a runQuery
    // that answers null.
    let user = json!({ "_id": "u1", "_creationTime": 1.5, "name": "ada", "role": "admin" });
    let recorder = Recorder {
        streams: VecDeque::from([vec![user], vec![]]),
        udf_results: VecDeque::from([Value::Null]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "admin/stats",
        FunctionKind::Query,
        json!({}),
        recorder,
    )
    .await;
    assert_eq!(
        value,
        Ok(json!({ "users": 1, "messages": 0, "counted": int64(0) }))
    );
    let scan = |table: &str, id: u64| {
        [
            (
                "1.0/queryStream",
                json!({
                    "query": {
                        "source": { "type": "FullTableScan", "tableName": table, "order": null },
                        "operators": [],
                    },
                    "version": "1.48.0",
                }),
            ),
            ("1.0/queryStreamNext", json!({ "queryId": id })),
        ]
    };
    let mut expected = Vec::new();
    expected.extend(scan("users", 1));
    expected.push(("1.0/queryStreamNext", json!({ "queryId": 1 })));
    expected.push(("1.0/queryCleanup", json!({ "queryId": 1 })));
    expected.extend(scan("messages", 2));
    expected.push(("1.0/queryCleanup", json!({ "queryId": 2 })));
    expected.push((
        "1.0/runUdf",
        json!({ "udfType": "query", "args": { "name": "messages" }, "name": "counters:get" }),
    ));
    assert_calls(&recorder, &expected);
}

// ---------------------------------------------------------------------------------------------
// Mutations

#[tokio::test]
async fn send_reads_inserts_and_runs_an_internal_mutation() {
    let pool = pool();
    let user = json!({ "_id": "users7", "_creationTime": 1.5, "name": "ada", "role": "admin" });
    let recorder = Recorder {
        docs: BTreeMap::from([("users7".to_string(), user)]),
        udf_results: VecDeque::from([int64(1)]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "messages:send",
        FunctionKind::Mutation,
        json!({ "author": "users7", "channel": "general", "body": "hello", "tags": ["a"] }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(json!("messages1")));
    assert_calls(
        &recorder,
        &[
            (
                "1.0/get",
                json!({ "id": "users7", "isSystem": false, "version": "1.48.0", "table": "users" }),
            ),
            (
                "1.0/insert",
                json!({
                    "table": "messages",
                    "value": {
                        "author": "users7",
                        "channel": "general",
                        "body": "hello",
                        "tags": ["a"],
                        "time": 1_700_000_000_000u64,
                    },
                }),
            ),
            (
                "1.0/runUdf",
                json!({
                    "udfType": "mutation",
                    "args": { "name": "messages", "by": { "$integer": "AQAAAAAAAAA=" } },
                    "name": "counters:increment",
                }),
            ),
        ],
    );
}

#[tokio::test]
async fn convex_error_data_reaches_the_caller() {
    let pool = pool();
    let (value, recorder) = call(
        &pool,
        "messages:send",
        FunctionKind::Mutation,
        json!({ "author": "users9", "channel": "general", "body": "hello" }),
        Recorder::default(),
    )
    .await;
    let Err(JsError::ConvexError { message, data_json }) = value else {
        panic!("expected a ConvexError, got {value:?}");
    };
    assert_eq!(
        serde_json::from_str::<Value>(&data_json).ok(),
        Some(json!({ "code": "UNKNOWN_USER", "author": "users9" }))
    );
    assert_eq!(message, r#"{"code":"UNKNOWN_USER","author":"users9"}"#);
    assert_eq!(recorder.ops(), vec!["1.0/get"]);

    // `unique()` reads two at most; a duplicate name is a ConvexError too.
    let existing = json!({ "_id": "users1", "_creationTime": 1.5, "name": "ada", "role": "admin" });
    let recorder = Recorder {
        streams: VecDeque::from([vec![existing]]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "users:register",
        FunctionKind::Mutation,
        json!({ "name": "ada", "role": "member" }),
        recorder,
    )
    .await;
    assert!(
        matches!(&value, Err(JsError::ConvexError { data_json, .. })
            if serde_json::from_str::<Value>(data_json).ok()
                == Some(json!({ "code": "NAME_TAKEN", "name": "ada" }))),
        "{value:?}"
    );
    assert_eq!(
        recorder.calls[0].1["query"]["operators"],
        json!([{ "limit": 2 }])
    );
}

#[tokio::test]
async fn patch_replace_and_delete_shapes() {
    let pool = pool();

    // A patch that sets `undefined` removes the field: `{"$undefined": null}` on the wire.
    let (value, recorder) = call(
        &pool,
        "messages:edit",
        FunctionKind::Mutation,
        json!({ "id": "m1", "body": "changed" }),
        Recorder::default(),
    )
    .await;
    assert_eq!(value, Ok(Value::Null));
    assert_calls(
        &recorder,
        &[(
            "1.0/shallowMerge",
            json!({
                "id": "m1",
                "value": { "body": "changed", "edited": true, "tags": { "$undefined": null } },
                "table": "messages",
            }),
        )],
    );

    let old = message("m1", "u1", "general", "old", 150);
    let recorder = Recorder {
        docs: BTreeMap::from([("m1".to_string(), old)]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "messages:rewrite",
        FunctionKind::Mutation,
        json!({ "id": "m1", "update": { "body": "new", "author": "u2" } }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(Value::Null));
    assert_calls(
        &recorder,
        &[
            (
                "1.0/get",
                json!({ "id": "m1", "isSystem": false, "version": "1.48.0", "table": "messages" }),
            ),
            (
                "1.0/replace",
                json!({
                    "id": "m1",
                    "value": { "body": "new", "author": "u2", "channel": "general", "time": 150 },
                    "table": "messages",
                }),
            ),
        ],
    );

    let recorder = Recorder {
        udf_results: VecDeque::from([int64(0)]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "messages:remove",
        FunctionKind::Mutation,
        json!({ "id": "m1" }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(Value::Null));
    assert_calls(
        &recorder,
        &[
            ("1.0/remove", json!({ "id": "m1", "table": "messages" })),
            (
                "1.0/runUdf",
                json!({
                    "udfType": "mutation",
                    "args": { "name": "messages", "by": { "$integer": "//////////8=" } },
                    "name": "counters:increment",
                }),
            ),
        ],
    );

    // An internal mutation iterating with `for await`, deleting with the one-argument form.
    let recorder = Recorder {
        streams: VecDeque::from([vec![
            message("m1", "u1", "old", "a", 1),
            message("m2", "u1", "old", "b", 2),
        ]]),
        udf_results: VecDeque::from([int64(-2)]),
        ..Recorder::default()
    };
    let (value, recorder) = call(
        &pool,
        "admin/stats:purgeChannel",
        FunctionKind::Mutation,
        json!({ "channel": "old" }),
        recorder,
    )
    .await;
    assert_eq!(value, Ok(json!(2)));
    assert_eq!(
        recorder.ops(),
        vec![
            "1.0/queryStream",
            "1.0/queryStreamNext",
            "1.0/remove",
            "1.0/queryStreamNext",
            "1.0/remove",
            "1.0/queryStreamNext",
            "1.0/queryCleanup",
            "1.0/runUdf",
        ]
    );
    assert_eq!(recorder.calls[2].1, json!({ "id": "m1" }));
    assert_eq!(
        recorder.calls[7].1["args"]["by"],
        json!({ "$integer": "/v////////8=" })
    );
}

#[test]
fn int64_encoding_matches_convex_json() {
    assert_eq!(int64(1), json!({ "$integer": "AQAAAAAAAAA=" }));
    assert_eq!(int64(-1), json!({ "$integer": "//////////8=" }));
    assert_eq!(int64(0), json!({ "$integer": "AAAAAAAAAAA=" }));
}
