//! Every limit Chorus enforces, in one place, with its unit in its name.
//!
//! A limit protects the system from one request (or one peer) taking more than its share:
//! memory, disk, CPU time. Each constant says what it bounds and where the number comes from.
//! Values that mirror Convex's own limits are marked so; changing them changes what apps can
//! store, so they move only together with the docs (`docs/storage-format.md`).

// ---- Values and documents (mirror Convex; see shared/research/convex-protocol.md §1.2) ----

/// Deepest nesting of arrays/objects inside any value (Convex `MAX_NESTING`).
pub const VALUE_MAX_NESTING: usize = 64;
/// Deepest nesting inside a stored document (Convex document limit).
pub const DOCUMENT_MAX_NESTING: usize = 16;
/// Largest stored document, as measured by `value::Value::size_bytes` (Convex: 1 MiB).
pub const DOCUMENT_MAX_BYTES: usize = 1 << 20;
/// Largest value of any kind (arguments, return values), as measured by `size_bytes`.
pub const VALUE_MAX_BYTES: usize = 32 << 20;
/// Most elements in one array (Convex).
pub const ARRAY_MAX_LEN: usize = 8192;
/// Most fields in one object (Convex).
pub const OBJECT_MAX_FIELDS: usize = 1024;
/// Longest object field name, in bytes (Convex; names are printable ASCII).
pub const FIELD_NAME_MAX_BYTES: usize = 1024;
/// Largest JSON text accepted for one value before parsing (bounds parser memory).
pub const JSON_MAX_BYTES: usize = 64 << 20;

// ---- Keys ----

/// Longest encoded index key (the order-preserving encoding of the indexed values, without
/// the document id and timestamp the store appends). Bounds every key the LSM holds.
pub const INDEX_KEY_MAX_BYTES: usize = 4096;

// ---- Store ----

/// Most documents written by one commit (Convex's per-transaction write limit).
pub const COMMIT_MAX_DOCUMENTS: usize = 16_000;
/// Most bytes of keys and values one applied log entry may carry.
pub const APPLY_BATCH_MAX_BYTES: usize = 64 << 20;
/// Most rows one scan call returns; callers page with the resume cursor beyond it.
pub const SCAN_MAX_ROWS: usize = 16_384;
/// Deletions garbage collection buffers before writing them as one batch.
pub const GC_DELETE_BATCH_ROWS: usize = 10_000;
/// Records restore buffers before writing them as one batch.
pub const RESTORE_BATCH_ROWS: usize = 10_000;
/// Largest single record (key or value) a checkpoint stream may announce; anything larger
/// is corruption and is refused before allocating.
pub const CHECKPOINT_RECORD_MAX_BYTES: usize = 64 << 20;

// ---- Timestamps and commits ----

/// How far ahead of the wall clock the timestamp oracle persists its window, in milliseconds;
/// one fsync buys this much time of timestamps, and a restart skips at most this much.
pub const TSO_WINDOW_MS: u64 = 3_000;
/// Most transactions the committer puts in one log entry (one replication round, one fsync).
pub const COMMIT_GROUP_MAX_TRANSACTIONS: usize = 1_024;
/// Commit requests that may wait for the committer before callers are pushed back.
pub const COMMIT_QUEUE_MAX_REQUESTS: usize = 4_096;
/// Commits kept in the write log for validation (and later, subscriptions).
pub const WRITE_LOG_MAX_COMMITS: usize = 100_000;
/// How long, in milliseconds of commit time, a commit stays in the write log. A transaction
/// whose read timestamp is older than the oldest retained commit cannot be validated and is
/// retried.
pub const WRITE_LOG_MAX_AGE_MS: u64 = 60_000;
/// Most documents one transaction may read.
pub const TRANSACTION_MAX_READ_DOCUMENTS: usize = 32_000;
/// Most index ranges one transaction may read (its read set's size).
pub const TRANSACTION_MAX_READ_RANGES: usize = 4_096;
/// Most documents one transaction may write (same as a commit's limit in the store).
pub const TRANSACTION_MAX_WRITE_DOCUMENTS: usize = COMMIT_MAX_DOCUMENTS;
/// Most bytes of documents one transaction may write.
pub const TRANSACTION_MAX_WRITE_BYTES: usize = 16 << 20;
/// Attempts at a mutation before giving up on repeated conflicts.
pub const TRANSACTION_MAX_ATTEMPTS: u32 = 16;
/// First retry backoff after a conflict, in microseconds; doubles per attempt (up to 2^8×).
pub const TRANSACTION_RETRY_BACKOFF_US: u64 = 100;

// ---- Functions ----

/// Longest a query or mutation may run, in milliseconds: JavaScript, syscalls and the import
/// of its modules on a cold thread.
pub const FUNCTION_TIMEOUT_MS: u64 = 1_000;
/// Longest an action may run, in milliseconds.
pub const ACTION_TIMEOUT_MS: u64 = 600_000;
/// Longest the push-time analysis of one code version (importing every module) may run, in
/// milliseconds.
pub const FUNCTION_ANALYZE_TIMEOUT_MS: u64 = 10_000;
/// Memory one function call may allocate in its JS runtime beyond what the thread already holds
/// (its shared bytecode and prepared contexts).
pub const FUNCTION_MEMORY_LIMIT_BYTES: usize = 64 << 20;
/// JavaScript stack one call may use.
pub const FUNCTION_STACK_LIMIT_BYTES: usize = 1 << 20;
/// Stack of each JS thread: the JS stack limit plus room for native frames.
pub const JS_THREAD_STACK_BYTES: usize = 8 << 20;
/// Fresh JS contexts each JS thread keeps ready for its next calls, one per recently called
/// (code version, environment); each holds that code's evaluated modules (a few hundred KB for
/// a `convex/server` app). A context serves one call and is dropped.
pub const JS_THREAD_PREPARED_CONTEXTS: usize = 4;
/// How long a JS thread waits for another job after a call before it prepares a context, in
/// microseconds. Preparing keeps a core busy for over a millisecond; started at once, it
/// competes with the rest of the request on a 2-core machine (measured with a 5 ms pause
/// between calls: a trivial query took 2.1 ms at p50 with no wait, 0.3 ms with 200 µs; an insert
/// mutation, whose commit follows the call, 3.0 ms with 200 µs, 1.2 ms with 1 ms).
pub const JS_PREPARE_DELAY_US: u64 = 1_000;
/// Code versions whose modules' QuickJS bytecode a JS pool keeps for building contexts
/// (about 1–3× the source size per version).
pub const JS_BYTECODE_CACHE_VERSIONS: usize = 8;
/// Bytes a JS runtime may allocate beyond what it holds once a context is prepared before
/// QuickJS collects garbage (a used context is a few hundred KB to a few MB of cyclic garbage;
/// the thread collects it while idle, so calls rarely do).
pub const JS_GC_HEADROOM_BYTES: usize = 4 << 20;
/// Function calls that may wait for a JS thread before callers are pushed back.
pub const JS_QUEUE_MAX_REQUESTS: usize = 1_024;
/// Console lines kept per function call; the last is spent on an overflow notice (as Convex).
pub const FUNCTION_MAX_LOG_LINES: usize = 256;
/// Longest console message, in UTF-8 bytes, truncation suffix included (as Convex).
pub const FUNCTION_LOG_LINE_MAX_BYTES: usize = 32_768;

// ---- Queries ----

/// Most operators (`filter`, `limit`) one query may carry (Convex: 256).
pub const QUERY_MAX_OPERATORS: usize = 256;
/// Deepest nesting of a filter expression. JSON text parsed by serde_json cannot nest more than
/// 128 levels and every expression level is at least one JSON level, so no expression a client
/// can send is refused; the bound protects the recursive parser and evaluator from values
/// built in memory.
pub const QUERY_EXPR_MAX_NESTING: usize = 128;
/// Rows a query stream asks the first `Transaction::scan` for when nothing bounds how many it
/// will consume (filters before any limit); later scans double this up to the maximum. Small
/// first reads keep the read set close to what `first()`-style queries actually consume.
pub const QUERY_SCAN_BATCH_MIN_ROWS: usize = 16;
/// Most rows a query stream asks one `Transaction::scan` for.
pub const QUERY_SCAN_BATCH_MAX_ROWS: usize = 1_024;
/// Deepest nesting of an argument/return validator (`exportArgs()`/`exportReturns()` JSON);
/// bounds the recursive parser and checker the same way `QUERY_EXPR_MAX_NESTING` does.
pub const VALIDATOR_MAX_NESTING: usize = 128;

// ---- Function execution ----

/// Query streams (`1.0/queryStream`) one function execution may have open at once.
pub const FUNCTION_MAX_OPEN_QUERY_STREAMS: usize = 256;
/// Code versions whose analysis (functions, kinds, validators) a function runner keeps.
pub const FUNCTION_ANALYSIS_CACHE_VERSIONS: usize = 16;
/// Deepest chain of `ctx.runQuery`/`ctx.runMutation` calls (`1.0/runUdf`) open at once inside
/// one query or mutation; a call beyond it fails with an error the caller may catch.
pub const FUNCTION_MAX_NESTING_DEPTH: usize = 8;

// ---- HTTP API ----

/// Largest request body of a function call (`/api/query`, `/api/mutation`, `/api/action`,
/// `/api/function`, `/api/run/…`, `/api/query_at_ts`, `/api/query_batch`), in bytes, both as
/// sent and after a `Content-Encoding` is undone. Convex allows 16 MiB of arguments; their JSON
/// text (base64 for bytes, `$integer` tags, escapes) can be larger, so the body may be twice that.
pub const HTTP_FUNCTION_BODY_MAX_BYTES: usize = 32 << 20;
/// Largest deploy request body (`/api/get_config_hashes`, `/api/deploy2/…`), in bytes, both as
/// sent and after brotli is undone. A push stores its modules in one commit, which
/// `APPLY_BATCH_MAX_BYTES` bounds anyway; a brotli body inflating past this is refused while
/// decompressing, so a decompression bomb costs at most this much memory.
pub const HTTP_DEPLOY_BODY_MAX_BYTES: usize = 64 << 20;
/// Most queries one `/api/query_batch` request may carry.
pub const HTTP_QUERY_BATCH_MAX_QUERIES: usize = 256;
/// How long `GET /api/stream_function_logs` holds a poll before answering with no entries, in
/// milliseconds: `convex dev` polls it in a loop, so an immediate answer would be a busy loop.
pub const HTTP_LOG_STREAM_POLL_MS: u64 = 2_000;
/// Largest WebSocket message a sync client may send, in bytes: a `Mutation` or `Action` message
/// carries arguments, bounded like an HTTP function call's body.
pub const HTTP_WEBSOCKET_MESSAGE_MAX_BYTES: usize = HTTP_FUNCTION_BODY_MAX_BYTES;

// ---- Sync sessions ----

/// Outbound silence after which a sync session sends `{"type":"Ping"}`, in milliseconds
/// (Convex: 15 s; the Rust client reconnects after 30 s without a message, npm after 60 s).
pub const SYNC_HEARTBEAT_INTERVAL_MS: u64 = 15_000;
/// Interval between WebSocket-level Ping frames on a sync socket, in milliseconds (Convex).
pub const SYNC_WS_PING_INTERVAL_MS: u64 = 5_000;
/// Inbound silence (no message, no Pong) after which a sync socket is closed, in milliseconds
/// (Convex: 120 s).
pub const SYNC_CLIENT_IDLE_TIMEOUT_MS: u64 = 120_000;
/// Most queries one sync session may subscribe to at once.
pub const SYNC_MAX_QUERIES: usize = 1_024;
/// Most mutations and actions one sync session may have queued or running at once.
pub const SYNC_MAX_INFLIGHT_REQUESTS: usize = 1_024;
/// Queries one sync session runs concurrently while computing a transition.
pub const SYNC_QUERY_CONCURRENCY: usize = 16;
/// Largest client message accepted on a sync socket, in bytes of JSON text (Convex's 16 MiB
/// argument limit plus room for the envelope).
pub const SYNC_MESSAGE_MAX_BYTES: usize = HTTP_WEBSOCKET_MESSAGE_MAX_BYTES;
/// Server messages one sync socket may have waiting to be written; a client that does not
/// read until this fills is disconnected.
pub const SYNC_OUTBOUND_MAX_MESSAGES: usize = 1_024;
/// Bytes of server messages one sync socket may have waiting to be written (a single larger
/// message is still sent when nothing else waits).
pub const SYNC_OUTBOUND_MAX_BYTES: usize = 64 << 20;
/// Successful mutations remembered by (sessionId, requestId), so one re-sent after a
/// reconnect is answered without running again; the oldest are forgotten first.
pub const SYNC_MUTATION_MEMORY_MAX_ENTRIES: usize = 100_000;
/// Bytes of remembered mutation results (values and log lines) across all sessions.
pub const SYNC_MUTATION_MEMORY_MAX_BYTES: usize = 64 << 20;
/// How long a closing sync socket waits for the client's close handshake, in milliseconds.
pub const SYNC_CLOSE_TIMEOUT_MS: u64 = 2_000;
