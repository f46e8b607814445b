//! Versioned documents and index entries over any [`KvEngine`].
//!
//! Invariants:
//! - a read at timestamp T sees, for every entry key, the newest version with commit ts ≤ T
//!   (and nothing if that version is a deletion); the store does not decide which T is safe
//!   to read at — the committer's read rule does (DESIGN.md, Time);
//! - applying a log entry is atomic and idempotent: its writes and the new applied position
//!   go to the engine in one batch, and an entry at or below the applied position is a no-op;
//! - garbage collection never removes the version visible at any T ≥ the watermark, and the
//!   watermark is persisted before anything is removed, so reads below it fail instead of
//!   returning a partial history.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use value::{DocumentId, IndexKey, InternalId};

use crate::engine::{Direction, Durability, KvBatch, KvEngine, KvSnapshot, Space};
use crate::error::StoreError;
use crate::fjall_engine::FjallEngine;
use crate::layout::{
    FORMAT_VERSION, ID_LEN, IndexNumber, KeyRange, LogPosition, PREFIX_LEN, TS_LEN, Timestamp,
    VERSION_LIVE, VERSION_TOMBSTONE, document_key, index_entry, index_prefix, parse_key,
    prefix_successor, version_key,
};
use crate::mem::MemEngine;

pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_APPLIED: &[u8] = b"applied";
pub(crate) const META_GC_WATERMARK: &[u8] = b"gc_watermark";
pub(crate) const META_RESTORING: &[u8] = b"restoring";

/// A document write inside a commit: the new body, or `None` for a deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentWrite {
    pub id: DocumentId,
    pub body: Option<Vec<u8>>,
}

/// An index entry write inside a commit: from this commit on, the entry `(key, id)` of
/// `index` exists (`live`) or no longer exists. The transaction layer derives these from the
/// table's indexes and the old and new document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexWrite {
    pub index: IndexNumber,
    pub key: IndexKey,
    pub id: DocumentId,
    pub live: bool,
}

/// Every write of one transaction, at its commit timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub ts: Timestamp,
    pub documents: Vec<DocumentWrite>,
    pub index_entries: Vec<IndexWrite>,
}

/// One Raft log entry's worth of commits (group commit puts many in one entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyBatch {
    pub position: LogPosition,
    pub commits: Vec<Commit>,
    /// Opaque replicated state persisted atomically with the position (the Raft layer keeps
    /// its last applied membership here). Replaces the previous value.
    pub state: Vec<u8>,
    pub durability: Durability,
}

/// What [`MvccStore::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The position was already applied; nothing was written.
    AlreadyApplied,
}

/// The last applied log entry and what came with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedState {
    pub position: LogPosition,
    /// The largest commit timestamp ever applied.
    pub max_commit_ts: Timestamp,
    pub state: Vec<u8>,
}

impl AppliedState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.state.len());
        out.extend_from_slice(&self.position.term.to_be_bytes());
        out.extend_from_slice(&self.position.index.to_be_bytes());
        out.extend_from_slice(&self.max_commit_ts.0.to_be_bytes());
        out.extend_from_slice(&(self.state.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.state);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt("applied state record is malformed".into());
        let u64_at = |at: usize| -> Result<u64, StoreError> {
            let raw = bytes.get(at..at + 8).ok_or_else(corrupt)?;
            Ok(u64::from_be_bytes(raw.try_into().map_err(|_| corrupt())?))
        };
        let len_raw = bytes.get(24..28).ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(len_raw.try_into().map_err(|_| corrupt())?) as usize;
        let state = bytes.get(28..).ok_or_else(corrupt)?;
        if state.len() != len {
            return Err(corrupt());
        }
        Ok(Self {
            position: LogPosition {
                term: u64_at(0)?,
                index: u64_at(8)?,
            },
            max_commit_ts: Timestamp(u64_at(16)?),
            state: state.to_vec(),
        })
    }
}

/// A document version as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocVersion {
    /// The commit timestamp that wrote this version.
    pub ts: Timestamp,
    pub body: Vec<u8>,
}

/// Scan direction over entry keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// An index range read at a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    pub table: value::TableNumber,
    pub index: IndexNumber,
    pub range: KeyRange,
    pub ts: Timestamp,
    pub order: Order,
    /// Most rows to return; clamped to `knobs::SCAN_MAX_ROWS`. Must be at least 1.
    pub limit: usize,
    /// Resume after this entry key (the `cursor` of the previous page).
    pub cursor: Option<Vec<u8>>,
}

/// One row of a scan: the index entry and the document it points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRow {
    /// The entry key within the index (for the documents index, the 16-byte internal id).
    pub entry: Vec<u8>,
    pub id: DocumentId,
    pub doc: DocVersion,
}

/// A page of scan results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub rows: Vec<ScanRow>,
    /// `Some(last entry key)` when the page stopped at its limit (there may be more); `None`
    /// when the range is exhausted. The range covered by this page is from the request's start
    /// (or cursor) through the cursor, inclusive.
    pub cursor: Option<Vec<u8>>,
}

/// What one garbage collection pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub watermark: Timestamp,
    pub groups_scanned: u64,
    pub versions_scanned: u64,
    pub versions_removed: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct StoreState {
    pub(crate) applied: Option<AppliedState>,
    pub(crate) gc_watermark: Timestamp,
    pub(crate) restoring: bool,
}

/// The MVCC store of one range replica. Safe to share between threads: reads run in
/// parallel; `apply`, `restore` and the write phases of `gc` are serialized.
pub struct MvccStore {
    pub(crate) engine: Arc<dyn KvEngine>,
    /// Serializes every writer, so applied-position checks and writes cannot interleave.
    pub(crate) write_lock: Mutex<()>,
    pub(crate) state: RwLock<StoreState>,
    /// Bumped by every restore, so a long garbage collection notices it was overtaken.
    pub(crate) restore_generation: AtomicU64,
}

impl MvccStore {
    /// Opens a store on `engine`, initialising an empty one.
    pub fn open(engine: Arc<dyn KvEngine>) -> Result<Self, StoreError> {
        let snap = engine.snapshot();
        match snap.get(Space::Meta, META_FORMAT)? {
            Some(raw) => {
                let found = u32::from_be_bytes(
                    raw.as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("format record is malformed".into()))?,
                );
                if found != FORMAT_VERSION {
                    return Err(StoreError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None => {
                let mut batch = KvBatch::new();
                batch.put(
                    Space::Meta,
                    META_FORMAT.to_vec(),
                    FORMAT_VERSION.to_be_bytes().to_vec(),
                );
                engine.write(batch, Durability::Sync)?;
            }
        }
        let state = read_state(snap.as_ref())?;
        drop(snap);
        Ok(Self {
            engine,
            write_lock: Mutex::new(()),
            state: RwLock::new(state),
            restore_generation: AtomicU64::new(0),
        })
    }

    /// A store on fjall in directory `path`.
    pub fn open_fjall(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open(Arc::new(FjallEngine::open(path)?))
    }

    /// A store in memory.
    pub fn in_memory() -> Self {
        match Self::open(Arc::new(MemEngine::new())) {
            Ok(store) => store,
            // Opening an empty in-memory engine has no failure path.
            Err(e) => unreachable!("opening an in-memory store failed: {e}"),
        }
    }

    pub fn engine(&self) -> &Arc<dyn KvEngine> {
        &self.engine
    }

    /// The last applied log position and its state; `None` before the first apply.
    pub fn applied(&self) -> Option<AppliedState> {
        self.read_state().applied.clone()
    }

    /// Reads below this timestamp fail with [`StoreError::SnapshotTooOld`].
    pub fn gc_watermark(&self) -> Timestamp {
        self.read_state().gc_watermark
    }

    pub(crate) fn read_state(&self) -> std::sync::RwLockReadGuard<'_, StoreState> {
        match self.state.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, StoreState> {
        match self.state.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn lock_writes(&self) -> MutexGuard<'_, ()> {
        match self.write_lock.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn check_readable(&self, ts: Timestamp) -> Result<(), StoreError> {
        let state = self.read_state();
        if state.restoring {
            return Err(StoreError::RestoreIncomplete);
        }
        if ts < state.gc_watermark {
            return Err(StoreError::SnapshotTooOld {
                ts,
                watermark: state.gc_watermark,
            });
        }
        Ok(())
    }

    /// The version of document `id` visible at `ts`, or `None` if it did not exist then.
    pub fn get(&self, id: &DocumentId, ts: Timestamp) -> Result<Option<DocVersion>, StoreError> {
        self.check_readable(ts)?;
        let snap = self.engine.snapshot();
        get_in(snap.as_ref(), id, ts)
    }

    /// Reads one page of an index range at `req.ts`.
    pub fn scan(&self, req: &ScanRequest) -> Result<ScanPage, StoreError> {
        if req.limit == 0 {
            return Err(StoreError::InvalidScan("limit must be at least 1".into()));
        }
        self.check_readable(req.ts)?;
        let limit = req.limit.min(knobs::SCAN_MAX_ROWS);
        let snap = self.engine.snapshot();
        let prefix = index_prefix(req.table, req.index);
        let mut rows = Vec::new();
        let mut scan_err = None;
        visible_entries(
            snap.as_ref(),
            &prefix,
            &req.range,
            req.cursor.as_deref(),
            req.order,
            req.ts,
            |entry, version_ts, payload| {
                match row_for(snap.as_ref(), req, entry, version_ts, payload) {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        scan_err = Some(e);
                        return false;
                    }
                }
                rows.len() < limit
            },
        )?;
        if let Some(e) = scan_err {
            return Err(e);
        }
        let cursor = if rows.len() == limit {
            rows.last().map(|row| row.entry.clone())
        } else {
            None
        };
        Ok(ScanPage { rows, cursor })
    }

    /// Applies one log entry atomically, or does nothing if its position is already applied.
    pub fn apply(&self, batch: &ApplyBatch) -> Result<ApplyOutcome, StoreError> {
        let _writer = self.lock_writes();
        let current = {
            let state = self.read_state();
            if state.restoring {
                return Err(StoreError::RestoreIncomplete);
            }
            state.applied.clone()
        };
        if let Some(applied) = &current
            && batch.position.index <= applied.position.index
        {
            if batch.position.index == applied.position.index
                && batch.position.term != applied.position.term
            {
                return Err(StoreError::PositionConflict {
                    applied: applied.position,
                    got: batch.position,
                });
            }
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        let bytes = validate_commits(&batch.commits)?;
        let mut max_ts = current
            .as_ref()
            .map_or(Timestamp::MIN, |applied| applied.max_commit_ts);
        let mut kv = KvBatch::new();
        for commit in &batch.commits {
            encode_commit(commit, &mut kv);
            max_ts = max_ts.max(commit.ts);
        }
        // The validation's byte count is exact; a mismatch means the two drifted apart.
        assert_eq!(
            kv.bytes(),
            bytes,
            "validate_commits must count what encode_commit writes"
        );
        let applied = AppliedState {
            position: batch.position,
            max_commit_ts: max_ts,
            state: batch.state.clone(),
        };
        kv.put(Space::Meta, META_APPLIED.to_vec(), applied.encode());
        self.engine.write(kv, batch.durability)?;
        self.write_state().applied = Some(applied);
        Ok(ApplyOutcome::Applied)
    }

    /// Removes versions no read at or after `cutoff` can see, and raises the watermark to
    /// `cutoff` (it never goes down). `progress` is called after each deletion batch.
    pub fn gc(
        &self,
        cutoff: Timestamp,
        mut progress: impl FnMut(&GcStats),
    ) -> Result<GcStats, StoreError> {
        let generation = self.restore_generation.load(AtomicOrdering::SeqCst);
        let watermark = {
            let _writer = self.lock_writes();
            let state = self.read_state().clone();
            if state.restoring {
                return Err(StoreError::RestoreIncomplete);
            }
            let watermark = state.gc_watermark.max(cutoff);
            let mut kv = KvBatch::new();
            kv.put(
                Space::Meta,
                META_GC_WATERMARK.to_vec(),
                watermark.0.to_be_bytes().to_vec(),
            );
            // Durable before any removal: after a crash, reads below it must keep failing.
            self.engine.write(kv, Durability::Sync)?;
            self.write_state().gc_watermark = watermark;
            watermark
        };
        let mut stats = GcStats {
            watermark,
            ..GcStats::default()
        };
        let snap = self.engine.snapshot();
        let mut pending = KvBatch::new();
        let mut group: Vec<u8> = Vec::new();
        // Within a group versions come newest first; once the newest version ≤ watermark is
        // found ("kept"), every older one is invisible to all permitted reads.
        let mut kept = false;
        for item in snap.range(
            Space::Data,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
        ) {
            let (key, val) = item?;
            let parsed = parse_key(&key)
                .ok_or_else(|| StoreError::Corrupt(format!("data key too short: {key:02x?}")))?;
            let head = &key[..key.len() - TS_LEN];
            if head != group.as_slice() {
                group.clear();
                group.extend_from_slice(head);
                kept = false;
                stats.groups_scanned += 1;
            }
            stats.versions_scanned += 1;
            if parsed.ts > watermark {
                continue;
            }
            let remove = if kept {
                true
            } else {
                kept = true;
                // A deletion visible at the watermark hides nothing anyone may still read.
                val.first() == Some(&VERSION_TOMBSTONE)
            };
            if remove {
                pending.delete(Space::Data, key);
                stats.versions_removed += 1;
                if pending.len() >= knobs::GC_DELETE_BATCH_ROWS {
                    self.write_gc_batch(std::mem::take(&mut pending), generation)?;
                    progress(&stats);
                }
            }
        }
        if !pending.is_empty() {
            self.write_gc_batch(pending, generation)?;
        }
        progress(&stats);
        Ok(stats)
    }

    fn write_gc_batch(&self, batch: KvBatch, generation: u64) -> Result<(), StoreError> {
        let _writer = self.lock_writes();
        if self.restore_generation.load(AtomicOrdering::SeqCst) != generation {
            return Err(StoreError::GcInterrupted);
        }
        // Losing GC deletions in a crash only leaves garbage behind, so no fsync.
        self.engine.write(batch, Durability::Buffered)?;
        Ok(())
    }
}

pub(crate) fn read_state(snap: &dyn KvSnapshot) -> Result<StoreState, StoreError> {
    let applied = snap
        .get(Space::Meta, META_APPLIED)?
        .map(|raw| AppliedState::decode(&raw))
        .transpose()?;
    let gc_watermark = match snap.get(Space::Meta, META_GC_WATERMARK)? {
        Some(raw) => {
            Timestamp(u64::from_be_bytes(raw.as_slice().try_into().map_err(
                |_| StoreError::Corrupt("gc watermark record is malformed".into()),
            )?))
        }
        None => Timestamp::MIN,
    };
    let restoring = snap.get(Space::Meta, META_RESTORING)?.is_some();
    Ok(StoreState {
        applied,
        gc_watermark,
        restoring,
    })
}

/// Checks `commits` against every rule [`MvccStore::apply`] enforces on a batch, without
/// touching the store, and returns the bytes of keys and values the batch will write. A
/// replicated log calls this before proposing, because an entry the store refuses would stop
/// every replica.
pub fn validate_commits(commits: &[Commit]) -> Result<usize, StoreError> {
    let mut bytes = 0usize;
    for commit in commits {
        if commit.documents.len() > knobs::COMMIT_MAX_DOCUMENTS {
            return Err(StoreError::InvalidBatch(format!(
                "commit at {} writes {} documents, over the limit of {}",
                commit.ts,
                commit.documents.len(),
                knobs::COMMIT_MAX_DOCUMENTS
            )));
        }
        for write in &commit.documents {
            bytes += PREFIX_LEN + ID_LEN + TS_LEN + 1 + write.body.as_ref().map_or(0, Vec::len);
        }
        for write in &commit.index_entries {
            if write.index.is_documents() {
                return Err(StoreError::InvalidBatch(format!(
                    "index entry for document {} names index 0, which holds the documents",
                    write.id
                )));
            }
            if write.key.len() > knobs::INDEX_KEY_MAX_BYTES {
                return Err(StoreError::InvalidBatch(format!(
                    "index key of {} bytes for document {} is over the limit of {}",
                    write.key.len(),
                    write.id,
                    knobs::INDEX_KEY_MAX_BYTES
                )));
            }
            bytes += PREFIX_LEN + write.key.len() + ID_LEN + TS_LEN + 1;
        }
    }
    if bytes > knobs::APPLY_BATCH_MAX_BYTES {
        return Err(StoreError::InvalidBatch(format!(
            "batch carries {bytes} bytes, over the limit of {}",
            knobs::APPLY_BATCH_MAX_BYTES
        )));
    }
    Ok(bytes)
}

/// Adds the versions `commit` writes to `kv`. The commit must have passed
/// [`validate_commits`].
fn encode_commit(commit: &Commit, kv: &mut KvBatch) {
    for write in &commit.documents {
        let value = match &write.body {
            Some(body) => {
                let mut v = Vec::with_capacity(1 + body.len());
                v.push(VERSION_LIVE);
                v.extend_from_slice(body);
                v
            }
            None => vec![VERSION_TOMBSTONE],
        };
        kv.put(Space::Data, document_key(&write.id, commit.ts), value);
    }
    for write in &commit.index_entries {
        let prefix = index_prefix(write.id.table, write.index);
        let entry = index_entry(write.key.as_bytes(), &write.id.internal);
        let marker = if write.live {
            VERSION_LIVE
        } else {
            VERSION_TOMBSTONE
        };
        kv.put(
            Space::Data,
            version_key(&prefix, &entry, commit.ts),
            vec![marker],
        );
    }
}

pub(crate) fn get_in(
    snap: &dyn KvSnapshot,
    id: &DocumentId,
    ts: Timestamp,
) -> Result<Option<DocVersion>, StoreError> {
    let start = document_key(id, ts);
    let end = document_key(id, Timestamp::MIN);
    let mut iter = snap.range(
        Space::Data,
        Bound::Included(&start),
        Bound::Included(&end),
        Direction::Forward,
    );
    let Some(item) = iter.next() else {
        return Ok(None);
    };
    let (key, value) = item?;
    let parsed = parse_key(&key)
        .ok_or_else(|| StoreError::Corrupt(format!("document key too short: {key:02x?}")))?;
    decode_document(parsed.ts, &value)
}

fn decode_document(ts: Timestamp, value: &[u8]) -> Result<Option<DocVersion>, StoreError> {
    match value.split_first() {
        Some((&VERSION_LIVE, body)) => Ok(Some(DocVersion {
            ts,
            body: body.to_vec(),
        })),
        Some((&VERSION_TOMBSTONE, [])) => Ok(None),
        _ => Err(StoreError::Corrupt(format!(
            "document version at {ts} has a malformed value"
        ))),
    }
}

fn row_for(
    snap: &dyn KvSnapshot,
    req: &ScanRequest,
    entry: &[u8],
    version_ts: Timestamp,
    payload: &[u8],
) -> Result<ScanRow, StoreError> {
    if req.index.is_documents() {
        let internal: [u8; ID_LEN] = entry
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("document entry key {entry:02x?}")))?;
        let id = DocumentId::new(req.table, InternalId(internal));
        return Ok(ScanRow {
            entry: entry.to_vec(),
            id,
            doc: DocVersion {
                ts: version_ts,
                body: payload.to_vec(),
            },
        });
    }
    let internal: [u8; ID_LEN] = entry
        .len()
        .checked_sub(ID_LEN)
        .and_then(|at| entry[at..].try_into().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("index entry key {entry:02x?}")))?;
    let id = DocumentId::new(req.table, InternalId(internal));
    let doc = get_in(snap, &id, req.ts)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "index {} entry points to document {id}, which does not exist at {}",
            req.index.0, req.ts
        ))
    })?;
    Ok(ScanRow {
        entry: entry.to_vec(),
        id,
        doc,
    })
}

/// Walks the entries of one index inside `range` (and after/before `cursor`) in `order`,
/// calling `f(entry, version_ts, payload)` for each entry whose version visible at `ts` is
/// live, where `payload` is the version's value after its marker byte. Stops when `f`
/// returns false.
fn visible_entries(
    snap: &dyn KvSnapshot,
    prefix: &[u8; PREFIX_LEN],
    range: &KeyRange,
    cursor: Option<&[u8]>,
    order: Order,
    ts: Timestamp,
    mut f: impl FnMut(&[u8], Timestamp, &[u8]) -> bool,
) -> Result<(), StoreError> {
    // Entry-level bounds, narrowed by the cursor.
    let mut lo: &[u8] = &range.start;
    let mut hi: Option<&[u8]> = range.end.as_deref();
    match (order, cursor) {
        (Order::Asc, Some(c)) if c > lo => lo = c,
        (Order::Desc, Some(c)) if hi.is_none_or(|h| c < h) => hi = Some(c),
        _ => {}
    }
    let raw_start = [prefix.as_slice(), lo].concat();
    let raw_end = match hi {
        Some(h) => Some([prefix.as_slice(), h].concat()),
        None => prefix_successor(prefix),
    };
    let end_bound = raw_end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let wanted = |entry: &[u8]| -> bool {
        entry >= range.start.as_slice()
            && range.end.as_deref().is_none_or(|end| entry < end)
            && match (order, cursor) {
                (_, None) => true,
                (Order::Asc, Some(c)) => entry > c,
                (Order::Desc, Some(c)) => entry < c,
            }
    };
    let direction = match order {
        Order::Asc => Direction::Forward,
        Order::Desc => Direction::Reverse,
    };
    let iter = snap.range(
        Space::Data,
        Bound::Included(&raw_start),
        end_bound,
        direction,
    );
    let mut group: Vec<u8> = Vec::new();
    let mut group_started = false;
    // Ascending: versions of a group come newest first, so the first one ≤ ts is visible and
    // the rest of the group is skipped. Descending: they come oldest first, so the last one
    // ≤ ts seen before the group ends is visible.
    let mut done_with_group = false;
    let mut pending: Option<(Timestamp, Vec<u8>)> = None;
    let mut pending_entry: Vec<u8> = Vec::new();
    for item in iter {
        let (key, value) = item?;
        let parsed = parse_key(&key)
            .ok_or_else(|| StoreError::Corrupt(format!("data key too short: {key:02x?}")))?;
        let entry = parsed.entry;
        if !group_started || entry != group.as_slice() {
            if order == Order::Desc
                && let Some((vts, val)) = pending.take()
                && !emit(&pending_entry, vts, &val, &mut f)?
            {
                return Ok(());
            }
            group.clear();
            group.extend_from_slice(entry);
            group_started = true;
            done_with_group = false;
        }
        if done_with_group || parsed.ts > ts || !wanted(entry) {
            continue;
        }
        match order {
            Order::Asc => {
                done_with_group = true;
                if !emit(entry, parsed.ts, &value, &mut f)? {
                    return Ok(());
                }
            }
            Order::Desc => {
                pending_entry.clear();
                pending_entry.extend_from_slice(entry);
                pending = Some((parsed.ts, value));
            }
        }
    }
    if let Some((vts, val)) = pending.take() {
        emit(&pending_entry, vts, &val, &mut f)?;
    }
    Ok(())
}

/// Calls `f` for a live version; returns whether to continue.
fn emit(
    entry: &[u8],
    ts: Timestamp,
    value: &[u8],
    f: &mut impl FnMut(&[u8], Timestamp, &[u8]) -> bool,
) -> Result<bool, StoreError> {
    match value.split_first() {
        Some((&VERSION_LIVE, payload)) => Ok(f(entry, ts, payload)),
        Some((&VERSION_TOMBSTONE, [])) => Ok(true),
        _ => Err(StoreError::Corrupt(format!(
            "version at {ts} of entry {entry:02x?} has a malformed value"
        ))),
    }
}
