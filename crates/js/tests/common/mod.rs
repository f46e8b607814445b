//! Shared fixtures: handwritten ES modules shaped like Convex CLI bundles, and a fake recording
//! syscall handler.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use js::{
    AsyncSyscallReply, CallFailure, CallOutcome, CallRequest, FunctionKind, JsPool, JsPoolConfig,
    ModuleSet, NestedCall, SyscallError, SyscallHandler,
};

/// Upper bound on any single test's wait for the pool.
pub const TEST_WAIT: Duration = Duration::from_secs(60);

/// A stand-in for the `convex/server` code esbuild inlines into `_deps/` chunks: registration
/// wrappers with `isQuery`/`isPublic`/`exportArgs()`/`invokeQuery(argsJson)`, `ConvexError`
/// marking, and `performAsyncSyscall` with the real library's error handling.
pub const CHUNK_JS: &str = r#"
const IDENTIFYING_FIELD = Symbol.for("ConvexError");
export class ConvexError extends Error {
  constructor(data) {
    super(typeof data === "string" ? data : JSON.stringify(data));
    this.name = "ConvexError";
    this.data = data;
    this[IDENTIFYING_FIELD] = true;
  }
}
export async function performAsyncSyscall(op, arg) {
  let resultStr;
  try {
    resultStr = await Convex.asyncSyscall(op, JSON.stringify(arg));
  } catch (e) {
    if (e.data !== undefined) {
      const rethrown = new ConvexError(e.message);
      rethrown.data = e.data;
      throw rethrown;
    }
    throw new Error(e.message);
  }
  return JSON.parse(resultStr);
}
export function performSyscall(op, arg) {
  return JSON.parse(Convex.syscall(op, JSON.stringify(arg)));
}
const db = {
  get: (id) => performAsyncSyscall("1.0/get", { id, isSystem: false, version: "test" }),
  insert: async (table, value) => (await performAsyncSyscall("1.0/insert", { table, value }))._id,
  patch: (id, value) => performAsyncSyscall("1.0/shallowMerge", { id, value }),
};
async function run(handler, ctx, argsJson) {
  const args = JSON.parse(argsJson);
  try {
    const result = await handler(ctx, ...args);
    return JSON.stringify(result === undefined ? null : result);
  } catch (e) {
    if (e && e[IDENTIFYING_FIELD]) {
      e.data = JSON.stringify(e.data === undefined ? null : e.data);
      e.ConvexErrorSymbol = IDENTIFYING_FIELD;
    }
    throw e;
  }
}
function register(kind, visibility, definition) {
  const handler = typeof definition === "function" ? definition : definition.handler;
  const func = (ctx, args) => handler(ctx, args);
  func["is" + kind] = true;
  if (visibility) func["is" + visibility] = true;
  const args = typeof definition === "object" && definition.args ? JSON.stringify(definition.args) : '{"type":"any"}';
  const returns = typeof definition === "object" && definition.returns ? JSON.stringify(definition.returns) : "null";
  func.exportArgs = () => args;
  func.exportReturns = () => returns;
  func._handler = handler;
  const ctx = { db, auth: { getUserIdentity: () => performAsyncSyscall("1.0/getUserIdentity", {}) } };
  if (kind === "Query") func.invokeQuery = (argsJson) => run(handler, ctx, argsJson);
  if (kind === "Mutation") func.invokeMutation = (argsJson) => run(handler, ctx, argsJson);
  if (kind === "Action") func.invokeAction = (requestId, argsJson) => run(handler, { ...ctx, requestId }, argsJson);
  return func;
}
export const query = (d) => register("Query", "Public", d);
export const internalQuery = (d) => register("Query", "Internal", d);
export const mutation = (d) => register("Mutation", "Public", d);
export const internalMutation = (d) => register("Mutation", "Internal", d);
export const action = (d) => register("Action", "Public", d);
export const legacyQuery = (d) => register("Query", null, d);
"#;

/// The entry module most tests call.
pub const MESSAGES_JS: &str = r#"
import { query, mutation, internalMutation, action, ConvexError, performSyscall } from "./_deps/chunk.js";

export const get = query({
  args: { type: "object", value: { id: { fieldType: { type: "string" }, optional: false } } },
  handler: async (ctx, { id }) => await ctx.db.get(id),
});

export const send = mutation({
  args: { type: "object", value: { body: { fieldType: { type: "string" }, optional: false } } },
  returns: { type: "id", tableName: "messages" },
  handler: async (ctx, { body }) => {
    const id = await ctx.db.insert("messages", { body });
    await ctx.db.patch(id, { seen: false });
    const doc = await ctx.db.get(id);
    return doc._id;
  },
});

export const touch = internalMutation(async (ctx, { id }) => {
  await ctx.db.patch(id, { touched: true });
});

export const whoami = action(async (ctx) => ({ requestId: ctx.requestId, identity: await ctx.auth.getUserIdentity() }));

export const chatty = query(async () => {
  console.log("a", 1, { b: [1, "x"], "c-d": null }, undefined, true);
  console.info("info");
  console.warn("warn", -0, 10n);
  console.error(new Error("bad thing"));
  console.debug([], {}, "it's", Symbol("s"));
  return null;
});

export const fail = mutation(async () => {
  throw new ConvexError({ code: "nope", n: 1 });
});

export const typeError = query(async () => {
  const o = null;
  return o.x;
});

export const catchSyscall = query(async (ctx) => {
  let asyncMessage;
  try {
    await ctx.db.get("bad");
  } catch (e) {
    asyncMessage = e.message;
  }
  let syncMessage;
  try {
    performSyscall("1.0/nope", {});
  } catch (e) {
    syncMessage = e.message;
  }
  return [asyncMessage, syncMessage];
});

export const syscallConvexError = query(async (ctx) => {
  await ctx.db.get("data");
});

export const random = query(async () => [Math.random(), Math.random(), Math.random()]);

export const now = query(async () => {
  const first = Date.now();
  const start = new Date().getTime();
  let spin = 0;
  for (let i = 0; i < 200000; i++) spin += i;
  return [first, start, Date.now(), new Date().getTime(), performance.now(), new Date(0).getTime(), spin > 0];
});

export const actionNow = action(async () => {
  const first = Date.now();
  const until = first + 5;
  while (Date.now() < until) {}
  return Date.now() - first;
});

export const spin = query(async () => {
  while (true) {}
});

export const hog = query(async () => {
  const keep = [];
  while (true) keep.push(new Array(100000).fill(keep.length));
});

export const readEnv = query(async (_ctx, { name }) => process.env[name] ?? null);

export const writeEnv = mutation(async (_ctx, { name, value }) => {
  process.env[name] = value;
  return process.env[name];
});

export const logOne = query(async (_ctx, { text }) => {
  console.log(text);
  return text;
});

let counter = 0;
export const count = query(async () => ++counter);

export const echo = query(async (_ctx, args) => args);

export const busy = query(async (ctx, { n }) => {
  let x = 0;
  for (let i = 0; i < 20000; i++) x += i;
  const doc = await ctx.db.get("doc" + n);
  return [n, doc];
});

export const slow = query(async () => JSON.parse(await Convex.asyncSyscall("test/slow", "{}")));
export const never = query(async () => await Convex.asyncSyscall("test/never", "{}"));

export const sneaky = {
  isMutation: true,
  isPublic: true,
  invokeMutation(argsJson) {
    Promise.resolve().then(() => Convex.asyncSyscall("1.0/insert", '{"table":"late","value":{}}'));
    throw new Error("synchronous failure");
  },
};

export const notAFunction = 42;
export const twoKinds = Object.assign(() => {}, { isQuery: true, isMutation: true, invokeQuery: () => "1" });
export const twoVisibilities = Object.assign(() => {}, { isQuery: true, isPublic: true, isInternal: true });
export default query(async () => "default!");
"#;

/// A second entry module in a subdirectory, importing the chunk with `../`.
pub const DIR_OTHER_JS: &str = r#"
import { internalQuery, legacyQuery } from "../_deps/chunk.js";
export const hidden = internalQuery(async () => "hidden");
export const legacy = legacyQuery(async () => "legacy");
"#;

pub fn module_set(version: u64, modules: &[(&str, &str)]) -> Arc<ModuleSet> {
    Arc::new(ModuleSet {
        version,
        modules: modules
            .iter()
            .map(|(path, source)| (path.to_string(), Arc::<str>::from(*source)))
            .collect(),
    })
}

/// The standard project: `messages.js`, `dir/other.js`, `_deps/chunk.js`.
pub fn project() -> Arc<ModuleSet> {
    module_set(
        1,
        &[
            ("messages.js", MESSAGES_JS),
            ("dir/other.js", DIR_OTHER_JS),
            ("_deps/chunk.js", CHUNK_JS),
        ],
    )
}

/// Records every syscall and serves a tiny in-memory table.
#[derive(Default)]
pub struct FakeHandler {
    pub calls: Vec<(String, String)>,
    pub docs: BTreeMap<String, serde_json::Value>,
    pub identity: Option<serde_json::Value>,
    pub threads: Vec<String>,
    pub next_id: u32,
}

impl FakeHandler {
    pub fn with_doc(id: &str, doc: serde_json::Value) -> Self {
        let mut handler = FakeHandler::default();
        handler.docs.insert(id.to_string(), doc);
        handler
    }

    pub fn ops(&self) -> Vec<&str> {
        self.calls.iter().map(|(op, _)| op.as_str()).collect()
    }

    fn record(&mut self, op: &str, args_json: &str) {
        self.calls.push((op.to_string(), args_json.to_string()));
        self.threads
            .push(std::thread::current().name().unwrap_or("?").to_string());
    }
}

fn field(args_json: &str, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(args_json)
        .ok()
        .and_then(|v| v.get(name).cloned())
        .unwrap_or(serde_json::Value::Null)
}

impl SyscallHandler for FakeHandler {
    fn syscall(&mut self, op: &str, args_json: &str) -> Result<String, SyscallError> {
        self.record(op, args_json);
        Err(SyscallError::new(format!("Unknown operation {op}")))
    }

    fn async_syscall(&mut self, op: &str, args_json: &str) -> AsyncSyscallReply {
        self.record(op, args_json);
        let answer = match op {
            "1.0/get" => {
                let id = field(args_json, "id");
                let id = id.as_str().unwrap_or_default().to_string();
                if id == "bad" {
                    Err(SyscallError::new("Invalid id: bad"))
                } else if id == "data" {
                    Err(SyscallError {
                        message: "rejected with data".into(),
                        data_json: Some(r#"{"reason":"quota"}"#.into()),
                    })
                } else {
                    Ok(self
                        .docs
                        .get(&id)
                        .cloned()
                        .unwrap_or(serde_json::Value::Null)
                        .to_string())
                }
            }
            "1.0/insert" => {
                self.next_id += 1;
                let id = format!("id{}", self.next_id);
                let mut doc = field(args_json, "value");
                if let Some(object) = doc.as_object_mut() {
                    object.insert("_id".into(), id.clone().into());
                }
                self.docs.insert(id.clone(), doc);
                Ok(serde_json::json!({ "_id": id }).to_string())
            }
            "1.0/shallowMerge" => {
                let id = field(args_json, "id");
                let id = id.as_str().unwrap_or_default().to_string();
                let patch = field(args_json, "value");
                match (self.docs.get_mut(&id), patch.as_object()) {
                    (Some(serde_json::Value::Object(doc)), Some(patch)) => {
                        for (k, v) in patch {
                            doc.insert(k.clone(), v.clone());
                        }
                        Ok(serde_json::Value::Object(doc.clone()).to_string())
                    }
                    _ => Err(SyscallError::new(format!("no document {id}"))),
                }
            }
            "1.0/getUserIdentity" => Ok(self
                .identity
                .clone()
                .unwrap_or(serde_json::Value::Null)
                .to_string()),
            "test/slow" => {
                let (sender, receiver) = tokio::sync::oneshot::channel::<String>();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = sender.send("\"slow answer\"".to_string());
                });
                return AsyncSyscallReply::Pending(Box::pin(async move {
                    receiver
                        .await
                        .map_err(|_| SyscallError::new("sender dropped"))
                }));
            }
            "test/invoke" => {
                // `{module, export, kind, args}`: run another export in this call.
                let text = |name: &str| {
                    field(args_json, name)
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                };
                let kind = match text("kind").as_str() {
                    "mutation" => FunctionKind::Mutation,
                    _ => FunctionKind::Query,
                };
                return AsyncSyscallReply::Invoke(NestedCall {
                    module: text("module"),
                    export: text("export"),
                    kind,
                    args_json: serde_json::json!([field(args_json, "args")]).to_string(),
                    frame: Box::new(()),
                });
            }
            "test/never" => {
                return AsyncSyscallReply::Pending(Box::pin(std::future::pending()));
            }
            _ => Err(SyscallError::new(format!("Unknown async operation {op}"))),
        };
        AsyncSyscallReply::Ready(answer)
    }
}

pub fn pool(threads: usize) -> JsPool {
    pool_with(JsPoolConfig {
        threads,
        ..JsPoolConfig::default()
    })
}

pub fn pool_with(config: JsPoolConfig) -> JsPool {
    match JsPool::new(config) {
        Ok(pool) => pool,
        Err(e) => panic!("cannot start the pool: {e}"),
    }
}

pub fn request(
    code: &Arc<ModuleSet>,
    module: &str,
    export: &str,
    kind: FunctionKind,
    args: serde_json::Value,
    handler: FakeHandler,
) -> CallRequest {
    CallRequest {
        code: code.clone(),
        module: module.to_string(),
        export: export.to_string(),
        kind,
        args_json: serde_json::json!([args]).to_string(),
        request_id: "req-1".to_string(),
        seed: 7,
        now_ms: 1_700_000_000_123.0,
        env: Arc::new(BTreeMap::new()),
        handler: Box::new(handler),
    }
}

pub async fn run(pool: &JsPool, request: CallRequest) -> Result<CallOutcome, CallFailure> {
    match tokio::time::timeout(TEST_WAIT, pool.run(request)).await {
        Ok(result) => result,
        Err(_) => panic!("the pool did not answer within {TEST_WAIT:?}"),
    }
}

/// Runs a call that must succeed; returns the parsed result and the outcome.
pub async fn ok(pool: &JsPool, request: CallRequest) -> (serde_json::Value, CallOutcome) {
    match run(pool, request).await {
        Ok(outcome) => {
            let value = serde_json::from_str(&outcome.result_json)
                .unwrap_or_else(|e| panic!("result is not JSON ({e}): {}", outcome.result_json));
            (value, outcome)
        }
        Err(failure) => panic!("call failed: {failure} (logs {:?})", failure.log_lines),
    }
}

/// Runs a call that must fail.
pub async fn err(pool: &JsPool, request: CallRequest) -> CallFailure {
    match run(pool, request).await {
        Ok(outcome) => panic!("call unexpectedly returned {}", outcome.result_json),
        Err(failure) => failure,
    }
}

pub fn fake(handler: Box<dyn SyscallHandler>) -> Box<FakeHandler> {
    match handler.downcast::<FakeHandler>() {
        Ok(handler) => handler,
        Err(_) => panic!("the handler came back as another type"),
    }
}
