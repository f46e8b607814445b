//! Shared fixtures: a handwritten project shaped like a Convex CLI bundle (an entry module
//! importing a `_deps/` chunk with `query`/`mutation` wrappers and a small `ctx.db` built on
//! the syscalls, the way `convex/server` builds it), and a database on an in-memory store
//! whose replication can be held to force interleavings.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use functions::{FunctionError, FunctionRunner, MutationOutcome, QueryOutcome};
use js::{JsPool, JsPoolConfig, ModuleSet};
use replication::{BoxFuture, ReplicateError, Replicator};
use store::{ApplyBatch, Commit, Durability, LogPosition, MvccStore, Timestamp};
use tokio::sync::Semaphore;
use txn::{Catalog, Clock, Committer, Database, LocalTso, SystemClock, TableDef, TimestampOracle};
use value::{TableNumber, Value};

/// Upper bound on any single wait in a test.
pub const TEST_WAIT: Duration = Duration::from_secs(60);

/// Stand-in for the `convex/server` code esbuild inlines into a chunk: registration wrappers
/// (`isQuery`, `exportArgs()`, `invokeQuery(argsJson)`, …), `ConvexError` marking, the
/// syscall helpers, and a minimal `ctx.db` with a query builder.
pub const CHUNK_JS: &str = r#"
const IDENTIFYING_FIELD = Symbol.for("ConvexError");
const VERSION = "1.48.0";
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
const undef = { $undefined: null };
function expr(x) {
  return x !== null && typeof x === "object" && x.__expr ? x.__expr : { $literal: x === undefined ? undef : x };
}
const binary = (op) => (l, r) => ({ __expr: { [op]: [expr(l), expr(r)] } });
const filterBuilder = {
  field: (path) => ({ __expr: { $field: path } }),
  eq: binary("$eq"), neq: binary("$neq"), lt: binary("$lt"), lte: binary("$lte"),
  gt: binary("$gt"), gte: binary("$gte"),
  and: (...xs) => ({ __expr: { $and: xs.map(expr) } }),
  or: (...xs) => ({ __expr: { $or: xs.map(expr) } }),
  not: (x) => ({ __expr: { $not: expr(x) } }),
};
class IndexRangeBuilder {
  constructor() { this.range = []; }
  add(type, fieldPath, value) {
    this.range.push({ type, fieldPath, value: value === undefined ? undef : value });
    return this;
  }
  eq(f, v) { return this.add("Eq", f, v); }
  gt(f, v) { return this.add("Gt", f, v); }
  gte(f, v) { return this.add("Gte", f, v); }
  lt(f, v) { return this.add("Lt", f, v); }
  lte(f, v) { return this.add("Lte", f, v); }
}
class QueryBuilder {
  constructor(table) {
    this.table = table;
    this.source = { type: "FullTableScan", tableName: table, order: null };
    this.operators = [];
  }
  withIndex(name, f) {
    const builder = new IndexRangeBuilder();
    if (f) f(builder);
    this.source = { type: "IndexRange", indexName: this.table + "." + name, range: builder.range, order: null };
    return this;
  }
  order(order) { this.source.order = order; return this; }
  filter(f) { this.operators.push({ filter: expr(f(filterBuilder)) }); return this; }
  limit(n) { this.operators.push({ limit: n }); return this; }
  json() { return { source: this.source, operators: this.operators }; }
  async collect() {
    const { queryId } = performSyscall("1.0/queryStream", { query: this.json(), version: VERSION });
    try {
      const out = [];
      for (;;) {
        const { value, done } = await performAsyncSyscall("1.0/queryStreamNext", { queryId });
        if (done) return out;
        out.push(value);
      }
    } finally {
      performSyscall("1.0/queryCleanup", { queryId });
    }
  }
  take(n) { return this.limit(n).collect(); }
  async first() { const [doc] = await this.take(1); return doc ?? null; }
  async paginate({ cursor, numItems }) {
    const r = await performAsyncSyscall("1.0/queryPage", {
      query: this.json(), cursor: cursor ?? null, endCursor: null, pageSize: numItems,
      maximumRowsRead: null, version: VERSION,
    });
    return { page: r.page, isDone: r.isDone, continueCursor: r.continueCursor };
  }
}
function patchValue(value) {
  const out = {};
  for (const [k, v] of Object.entries(value)) out[k] = v === undefined ? undef : v;
  return out;
}
const db = {
  get: (id) => performAsyncSyscall("1.0/get", { id, isSystem: false, version: VERSION }),
  insert: async (table, value) => (await performAsyncSyscall("1.0/insert", { table, value }))._id,
  patch: async (id, value) => { await performAsyncSyscall("1.0/shallowMerge", { id, value: patchValue(value) }); },
  replace: async (id, value) => { await performAsyncSyscall("1.0/replace", { id, value }); },
  delete: async (id) => { await performAsyncSyscall("1.0/remove", { id }); },
  query: (table) => new QueryBuilder(table),
  normalizeId: (table, idString) => performSyscall("1.0/db/normalizeId", { table, idString }).id,
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
  func["is" + visibility] = true;
  const args = typeof definition === "object" && definition.args ? JSON.stringify(definition.args) : '{"type":"any"}';
  const returns = typeof definition === "object" && definition.returns ? JSON.stringify(definition.returns) : "null";
  func.exportArgs = () => args;
  func.exportReturns = () => returns;
  func._handler = handler;
  const ctx = {
    db,
    auth: { getUserIdentity: () => performAsyncSyscall("1.0/getUserIdentity", {}) },
    runQuery: (name, args) => performAsyncSyscall("1.0/runUdf", { udfType: "query", name, args: args ?? {} }),
    runMutation: (name, args) => performAsyncSyscall("1.0/runUdf", { udfType: "mutation", name, args: args ?? {} }),
  };
  const actionCall = (op) => (name, args) =>
    performAsyncSyscall(op, { name, args: args ?? {}, version: VERSION, requestId: "" });
  const actionCtx = {
    auth: ctx.auth,
    runQuery: actionCall("1.0/actions/query"),
    runMutation: actionCall("1.0/actions/mutation"),
    runAction: actionCall("1.0/actions/action"),
  };
  if (kind === "Action") func.invokeAction = (requestId, argsJson) => run(handler, { ...actionCtx, requestId }, argsJson);
  if (kind === "Query") func.invokeQuery = (argsJson) => run(handler, ctx, argsJson);
  if (kind === "Mutation") func.invokeMutation = (argsJson) => run(handler, ctx, argsJson);
  return func;
}
export const query = (d) => register("Query", "Public", d);
export const internalQuery = (d) => register("Query", "Internal", d);
export const mutation = (d) => register("Mutation", "Public", d);
export const internalMutation = (d) => register("Mutation", "Internal", d);
export const action = (d) => register("Action", "Public", d);
export const internalAction = (d) => register("Action", "Internal", d);
"#;

/// Actions (`ctx.runQuery`/`ctx.runMutation`/`ctx.runAction` via `1.0/actions/*`).
pub const ACTIONS_JS: &str = r#"
import { action, internalAction, ConvexError, performSyscall, performAsyncSyscall } from "./_deps/chunk.js";

const field = (t, optional = false) => ({ fieldType: { type: t }, optional });

export const sendAndList = action(async (ctx, { body }) => {
  const before = (await ctx.runQuery("messages:list", {})).length;
  const id = await ctx.runMutation("messages:send", { author: "action", body, n: 1 });
  const after = await ctx.runQuery("messages:list", {});
  return { before, after: after.map((d) => d.body), sent: typeof id };
});

export const sendThenThrow = action(async (ctx, { body }) => {
  await ctx.runMutation("messages:send", { author: "action", body, n: 2 });
  throw new ConvexError({ code: "after-commit" });
});

export const directDb = action(async (ctx) => {
  const errors = [];
  for (const f of [
    () => performAsyncSyscall("1.0/get", { id: "x", isSystem: false, version: "1" }),
    () => performAsyncSyscall("1.0/insert", { table: "messages", value: {} }),
    () => performSyscall("1.0/queryStream", { query: { source: { type: "FullTableScan", tableName: "messages", order: null }, operators: [] } }),
    () => performAsyncSyscall("1.0/actions/schedule", {}),
  ]) {
    try { await f(); errors.push(null); } catch (e) { errors.push(e.message); }
  }
  return errors;
});

export const validated = action({
  args: { type: "object", value: { body: field("string") } },
  returns: { type: "string" },
  handler: async (ctx, { body }) => body,
});

export const badTargets = action(async (ctx) => {
  const errors = [];
  for (const f of [
    () => ctx.runMutation("messages:send", { author: 1, body: "x", n: 1 }),
    () => ctx.runQuery("messages:badReturn", {}),
    () => ctx.runQuery("messages:send", { author: "a", body: "x", n: 1 }),
    () => ctx.runAction("actions:validated", { body: 3 }),
    () => ctx.runQuery("actions:nope", {}),
  ]) {
    try { await f(); errors.push(null); } catch (e) { errors.push(e.message); }
  }
  return errors;
});

export const inner = internalAction(async (ctx, { body }) => {
  await ctx.runMutation("messages:send", { author: "inner", body, n: 3 });
  return (await ctx.runQuery("messages:list", {})).length;
});

export const outer = action(async (ctx, { body }) => {
  const n = await ctx.runAction("actions:inner", { body });
  const echoed = await ctx.runAction("actions:validated", { body });
  return { n, echoed, who: await ctx.auth.getUserIdentity() };
});

export const overlapping = action(async (ctx) => {
  const results = await Promise.allSettled([
    ctx.runQuery("messages:list", {}),
    ctx.runQuery("messages:list", {}),
  ]);
  return results.map((r) => (r.status === "fulfilled" ? null : r.reason.message));
});

export const whoami = action(async (ctx) => await ctx.auth.getUserIdentity());

export const bump = action(async (ctx, { id, times }) => {
  let last = 0;
  for (let i = 0; i < times; i++) last = await ctx.runMutation("messages:increment", { id });
  return last;
});
"#;

/// Functions that call other functions (`ctx.runQuery` / `ctx.runMutation`, `1.0/runUdf`).
pub const NESTED_JS: &str = r#"
import { query, internalQuery, mutation, internalMutation, ConvexError } from "./_deps/chunk.js";

export const writeThenList = mutation(async (ctx, { body }) => {
  await ctx.db.insert("messages", { author: "parent", body, n: 1 });
  const listed = await ctx.runQuery("messages:list", {});
  return listed.map((d) => d.body);
});

export const insertThenThrow = internalMutation(async (ctx, { body }) => {
  await ctx.db.insert("messages", { author: "child", body, n: 2 });
  throw new ConvexError({ code: "child", body });
});

export const insertOne = internalMutation(async (ctx, { body }) => {
  await ctx.db.insert("messages", { author: "child", body, n: 3 });
  return body;
});

export const catchFailingChild = mutation(async (ctx) => {
  await ctx.db.insert("messages", { author: "parent", body: "before", n: 1 });
  const kept = await ctx.runMutation("nested:insertOne", { body: "kept" });
  let caught = null;
  try {
    await ctx.runMutation("nested:insertThenThrow", { body: "lost" });
  } catch (e) {
    caught = { isConvexError: e instanceof ConvexError, data: e.data };
  }
  await ctx.db.insert("messages", { author: "parent", body: "after", n: 4 });
  const bodies = (await ctx.db.query("messages").collect()).map((d) => d.body);
  return { kept, caught, bodies };
});

export const queryCallsMutation = query(async (ctx) => {
  try {
    await ctx.runMutation("nested:insertOne", { body: "from a query" });
    return null;
  } catch (e) {
    return e.message;
  }
});

export const badNestedArgs = mutation(async (ctx) => {
  const errors = [];
  for (const f of [
    () => ctx.runMutation("messages:send", { author: 1, body: "x", n: 1 }),
    () => ctx.runQuery("nested:nope", {}),
    () => ctx.runQuery("messages:send", { author: "a", body: "x", n: 1 }),
    () => ctx.runQuery("messages:badReturn", {}),
  ]) {
    try { await f(); errors.push(null); } catch (e) { errors.push(e.message); }
  }
  return errors;
});

export const hiddenViaNested = query(async (ctx) => await ctx.runQuery("messages:hidden", {}));

export const deep = internalQuery(async (ctx, { n }) =>
  n === 0 ? 0 : 1 + (await ctx.runQuery("nested:deep", { n: n - 1 })));

export const deepFrom = query(async (ctx, { n }) => await ctx.runQuery("nested:deep", { n }));
"#;

/// The functions the tests call.
pub const MESSAGES_JS: &str = r#"
import { query, internalQuery, mutation, ConvexError, performSyscall, performAsyncSyscall } from "./_deps/chunk.js";

const field = (t, optional = false) => ({ fieldType: { type: t }, optional });

export const insert = mutation(async (ctx, { table, doc }) => await ctx.db.insert(table, doc));

export const send = mutation({
  args: { type: "object", value: { author: field("string"), body: field("string"), n: field("number") } },
  returns: { type: "id", tableName: "messages" },
  handler: async (ctx, args) => await ctx.db.insert("messages", args),
});

export const get = query({
  args: { type: "object", value: { id: field("string") } },
  handler: async (ctx, { id }) => await ctx.db.get(id),
});

export const list = query(async (ctx) => await ctx.db.query("messages").collect());

export const byAuthor = query(async (ctx, { author, gt, lt, order }) =>
  await ctx.db.query("messages").withIndex("by_author_n", (q) => {
    q.eq("author", author);
    if (gt !== undefined) q.gt("n", gt);
    if (lt !== undefined) q.lt("n", lt);
    return q;
  }).order(order ?? "asc").collect());

export const nonEmpty = query(async (ctx) =>
  await ctx.db.query("messages").withIndex("by_author_n").filter((q) => q.and(q.neq(q.field("body"), ""), q.gte(q.field("n"), 2))).collect());

export const takeFirst = query(async (ctx, { n }) => ({
  take: (await ctx.db.query("messages").withIndex("by_author_n").order("desc").take(n)).map((d) => d.n),
  first: (await ctx.db.query("messages").withIndex("by_author_n", (q) => q.eq("author", "b")).first())?.n ?? null,
  none: await ctx.db.query("messages").withIndex("by_author_n", (q) => q.eq("author", "zzz")).first(),
  all: (await ctx.db.query("messages").collect()).length,
}));

export const page = query(async (ctx, { cursor, numItems }) =>
  await ctx.db.query("messages").withIndex("by_author_n", (q) => q.eq("author", "a")).paginate({ cursor, numItems }));

export const twoPages = query(async (ctx) => {
  await ctx.db.query("messages").paginate({ cursor: null, numItems: 1 });
  return await ctx.db.query("messages").paginate({ cursor: null, numItems: 1 });
});

export const clearBody = mutation(async (ctx, { id }) => {
  await ctx.db.patch(id, { body: undefined, meta: { b: 2 } });
  return await ctx.db.get(id);
});

export const replace = mutation(async (ctx, { id, doc }) => {
  await ctx.db.replace(id, doc);
  return await ctx.db.get(id);
});

export const remove = mutation(async (ctx, { id }) => {
  await ctx.db.delete(id);
  const afterDelete = await ctx.db.get(id);
  let again;
  try { await ctx.db.delete(id); } catch (e) { again = e.message; }
  return { afterDelete, again };
});

export const normalize = query(async (ctx, { table, idString }) => ctx.db.normalizeId(table, idString));

export const failAfterInsert = mutation(async (ctx, { body }) => {
  await ctx.db.insert("messages", { author: "x", body, n: 0 });
  throw new ConvexError({ code: "nope", body });
});

export const throwAfterInsert = mutation(async (ctx) => {
  await ctx.db.insert("messages", { author: "x", body: "", n: 0 });
  throw new Error("boom");
});

export const increment = mutation(async (ctx, { id }) => {
  const counter = await ctx.db.get(id);
  await ctx.db.patch(id, { value: counter.value + 1 });
  return counter.value + 1;
});

export const writeInQuery = query(async (ctx, { id }) => {
  const messages = [];
  for (const f of [
    () => ctx.db.insert("messages", { author: "q", body: "", n: 0 }),
    () => ctx.db.patch(id, { body: "q" }),
    () => ctx.db.delete(id),
  ]) {
    try { await f(); messages.push(null); } catch (e) { messages.push(e.message); }
  }
  return messages;
});

export const errors = mutation(async (ctx, { id }) => {
  const messages = [];
  for (const f of [
    () => ctx.db.insert("_secret", {}),
    () => ctx.db.insert("nope", {}),
    () => ctx.db.insert("messages", { _id: "x" }),
    () => ctx.db.patch("not an id", {}),
    () => performAsyncSyscall("1.0/get", { id, isSystem: false, version: "x", table: "counters" }),
    () => performAsyncSyscall("1.0/bogus", {}),
    () => performSyscall("1.0/bogus", {}),
    () => performAsyncSyscall("1.0/queryStreamNext", { queryId: 99 }),
    () => performSyscall("1.0/queryStream", { query: { source: { type: "IndexRange", indexName: "messages.nope", range: [] }, operators: [] } }),
  ]) {
    try { await f(); messages.push(null); } catch (e) { messages.push(e.message); }
  }
  // The failed calls left the transaction usable: this write commits.
  await ctx.db.insert("messages", { author: "after", body: "", n: 0 });
  return messages;
});

export const readTooMuch = mutation(async (ctx, { id }) => {
  await ctx.db.insert("messages", { author: "greedy", body: "", n: 0 });
  for (let i = 0; i < 10000; i++) {
    try { await ctx.db.get(id); } catch (e) { return "caught: " + e.message; }
  }
  return "never failed";
});

export const getLoose = query(async (ctx, { id }) => await ctx.db.get(id));

export const count = query(async (_ctx, { table }) => await performAsyncSyscall("1.0/count", { table }));

export const whoami = query(async (ctx) => await ctx.auth.getUserIdentity());

export const readSome = query(async (ctx, { id }) => ({
  doc: await ctx.db.get(id),
  b: (await ctx.db.query("messages").withIndex("by_author_n", (q) => q.eq("author", "b")).collect()).length,
}));

export const badReturn = query({ returns: { type: "string" }, handler: async () => 42 });

export const logs = query(async () => { console.log("hello", 1); return null; });

export const hidden = internalQuery(async () => "hidden");

export default query(async () => "default!");
"#;

pub fn messages_table() -> TableNumber {
    TableNumber::new(10001).expect("valid table number")
}

pub fn counters_table() -> TableNumber {
    TableNumber::new(10002).expect("valid table number")
}

pub fn catalog() -> Catalog {
    Catalog::new([
        TableDef::new(messages_table(), "messages").with_index("by_author_n", &["author", "n"]),
        TableDef::new(counters_table(), "counters"),
    ])
}

pub fn project() -> Arc<ModuleSet> {
    Arc::new(ModuleSet {
        version: 1,
        modules: [
            ("messages.js", MESSAGES_JS),
            ("nested.js", NESTED_JS),
            ("actions.js", ACTIONS_JS),
            ("_deps/chunk.js", CHUNK_JS),
        ]
        .into_iter()
        .map(|(path, source)| (path.to_owned(), Arc::<str>::from(source)))
        .collect::<BTreeMap<_, _>>(),
    })
}

/// Applies each group to the store at once, unless held: then it waits until released.
pub struct HoldableReplicator {
    store: Arc<MvccStore>,
    index: AtomicU64,
    held: AtomicBool,
    release: Semaphore,
    /// Groups that reached the replicator.
    pub entered: AtomicUsize,
}

impl HoldableReplicator {
    /// From now on, groups wait in the replicator until [`HoldableReplicator::release_all`].
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    pub fn release_all(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.release.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

impl Replicator for HoldableReplicator {
    fn replicate(
        &self,
        commits: Vec<Commit>,
    ) -> BoxFuture<'_, Result<LogPosition, ReplicateError>> {
        Box::pin(async move {
            self.entered.fetch_add(1, Ordering::SeqCst);
            if self.held.load(Ordering::SeqCst) {
                let _permit = self
                    .release
                    .acquire()
                    .await
                    .map_err(|_| ReplicateError::ShuttingDown)?;
            }
            let position = LogPosition {
                term: 1,
                index: self.index.fetch_add(1, Ordering::SeqCst) + 1,
            };
            self.store.apply(&ApplyBatch {
                position,
                commits,
                state: vec![],
                durability: Durability::Buffered,
            })?;
            Ok(position)
        })
    }
}

/// The system clock, counting reads: the runner reads it once per attempt, right after the
/// attempt's transaction took its snapshot.
#[derive(Default)]
pub struct CountingClock {
    pub reads: AtomicUsize,
}

impl Clock for CountingClock {
    fn now_ms(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::SeqCst);
        SystemClock.now_ms()
    }
}

pub struct Fixture {
    pub runner: FunctionRunner,
    pub clock: Arc<CountingClock>,
    pub replicator: Arc<HoldableReplicator>,
    pub code: Arc<ModuleSet>,
    _dir: tempfile::TempDir,
}

pub fn fixture(js_threads: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(MvccStore::in_memory());
    let replicator = Arc::new(HoldableReplicator {
        store: store.clone(),
        index: AtomicU64::new(0),
        held: AtomicBool::new(false),
        release: Semaphore::new(0),
        entered: AtomicUsize::new(0),
    });
    let tso: Arc<dyn TimestampOracle> = Arc::new(LocalTso::open(dir.path()).expect("tso"));
    let committer = Committer::start(replicator.clone(), tso, Timestamp::MIN).expect("committer");
    let db = Database::with_fixed_catalog(store, catalog(), committer);
    let pool = JsPool::new(JsPoolConfig {
        threads: js_threads,
        ..JsPoolConfig::default()
    })
    .expect("JS pool");
    let clock = Arc::new(CountingClock::default());
    Fixture {
        runner: FunctionRunner::new(pool, db)
            .with_seed(7)
            .with_clock(clock.clone()),
        clock,
        replicator,
        code: project(),
        _dir: dir,
    }
}

/// Convex JSON → value (test input only).
pub fn v(json: serde_json::Value) -> Value {
    Value::from_json(&json).expect("valid Convex JSON")
}

pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TEST_WAIT, future).await {
        Ok(out) => out,
        Err(_) => panic!("no answer within {TEST_WAIT:?}"),
    }
}

impl Fixture {
    pub async fn query(&self, path: &str, args: serde_json::Value) -> QueryOutcome {
        match self.try_query(path, args).await {
            Ok(outcome) => outcome,
            Err(e) => panic!("query {path} failed: {e:?}"),
        }
    }

    pub async fn try_query(
        &self,
        path: &str,
        args: serde_json::Value,
    ) -> Result<QueryOutcome, FunctionError> {
        bounded(self.runner.run_query(self.code.clone(), path, v(args))).await
    }

    /// Runs a query that must succeed and returns its value as Convex JSON.
    pub async fn query_json(&self, path: &str, args: serde_json::Value) -> serde_json::Value {
        self.query(path, args).await.value.to_json()
    }

    pub async fn mutation(&self, path: &str, args: serde_json::Value) -> MutationOutcome {
        match self.try_mutation(path, args).await {
            Ok(outcome) => outcome,
            Err(e) => panic!("mutation {path} failed: {e:?}"),
        }
    }

    pub async fn try_mutation(
        &self,
        path: &str,
        args: serde_json::Value,
    ) -> Result<MutationOutcome, FunctionError> {
        bounded(self.runner.run_mutation(self.code.clone(), path, v(args))).await
    }

    pub async fn mutation_json(&self, path: &str, args: serde_json::Value) -> serde_json::Value {
        self.mutation(path, args).await.value.to_json()
    }

    /// Inserts a document through the `insert` mutation; returns its id.
    pub async fn insert(&self, table: &str, doc: serde_json::Value) -> String {
        let id = self
            .mutation_json(
                "messages:insert",
                serde_json::json!({ "table": table, "doc": doc }),
            )
            .await;
        match id {
            serde_json::Value::String(id) => id,
            other => panic!("insert returned {other}"),
        }
    }

    /// Inserts a message.
    pub async fn message(&self, author: &str, n: f64, body: &str) -> String {
        self.insert(
            "messages",
            serde_json::json!({ "author": author, "n": n, "body": body }),
        )
        .await
    }

    pub async fn count(&self, table: &str) -> f64 {
        match self
            .query_json("messages:count", serde_json::json!({ "table": table }))
            .await
        {
            serde_json::Value::Number(n) => n.as_f64().unwrap(),
            other => panic!("count returned {other}"),
        }
    }
}
