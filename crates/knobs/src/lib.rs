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
