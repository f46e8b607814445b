//! The Raft state machine of one replica: the MVCC store ([`RaftStateMachine`]), with store
//! checkpoints as snapshots.
//!
//! Applying: every committed entry — normal, membership or blank — becomes one
//! [`ApplyBatch`] at `LogPosition { term, index }` of its log id, with
//! [`Durability::Buffered`]: the Raft log is the durable record, and after a restart openraft
//! re-applies from the log what the store lost. The batch's `state` carries this replica's
//! Raft state, so [`StateMachine::applied_state`] rebuilds it from `store.applied()` alone:
//!
//! ```text
//! state = 0x01 (version) | postcard((last applied LogId, last StoredMembership))
//! ```
//!
//! Re-applying a position the store already has is a no-op there (`AlreadyApplied`); any
//! store error is returned to openraft, which stops the replica — an entry is never skipped.
//!
//! Snapshots: a snapshot is one file, `current.snap`, in the replica's snapshot directory:
//!
//! ```text
//! store checkpoint stream (N bytes, docs/storage-format.md)
//! | postcard(SnapshotMeta) (M bytes)
//! | u64 BE N | u32 BE M | u32 BE CRC-32 of the meta | "CHSNAP01"
//! ```
//!
//! The meta comes from the applied state the checkpoint itself read (`CheckpointInfo.applied`),
//! so it always describes exactly the data in the stream. A snapshot file is written under a
//! temporary name, fsync'd and renamed over `current.snap` (then the directory is fsync'd), so
//! `current.snap` is always whole. Before a built snapshot is published the store is synced:
//! openraft purges the log up to a published snapshot, and the store must durably hold
//! everything the purged entries carried.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{Stream, StreamExt};
use openraft::storage::{ApplyResponder, EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use store::{AppliedState, ApplyBatch, Durability, KeySpan, LogPosition, MvccStore, StoreError};

use super::{
    APPLY_CHUNK_MAX_ENTRIES, Entry, LogId, MetaMap, MetaOp, Snapshot, SnapshotMeta,
    StoredMembership, TypeConfig, position_of, run_blocking,
};

const CURRENT_SNAPSHOT: &str = "current.snap";
const TEMP_SUFFIX: &str = ".tmp";
const SNAPSHOT_MAGIC: &[u8; 8] = b"CHSNAP01";
const TRAILER_LEN: u64 = 8 + 4 + 4 + 8;
/// Largest snapshot meta accepted when reading a trailer; a bigger announced length is
/// corruption and is refused before allocating.
const SNAPSHOT_META_MAX_BYTES: u32 = 16 << 20;
/// Version 2 added the replicated metadata map; version 1 records (no map) still decode.
const STATE_VERSION: u8 = 2;
const STATE_VERSION_WITHOUT_META: u8 = 1;

/// The checkpoint stream of a snapshot, being sent or received: a file positioned at the first
/// byte of a store checkpoint, limited to the stream's length. A network implementation
/// receiving a snapshot writes the stream to a file and hands it over with
/// [`SnapshotData::from_file`].
pub struct SnapshotData {
    reader: io::Take<File>,
    len: u64,
}

impl SnapshotData {
    /// `file` must be positioned at the first byte of a checkpoint stream of `len` bytes.
    pub fn from_file(file: File, len: u64) -> Self {
        Self {
            reader: file.take(len),
            len,
        }
    }

    /// Length of the checkpoint stream in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for SnapshotData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotData({} bytes)", self.len)
    }
}

/// The Raft state a replica keeps inside the store's applied state.
#[derive(Serialize, Deserialize)]
struct ReplicaState {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    meta: MetaMap,
}

/// The state before the metadata map existed.
#[derive(Deserialize)]
struct ReplicaStateV1 {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

fn encode_state(
    last_applied: Option<LogId>,
    last_membership: &StoredMembership,
    meta: &MetaMap,
) -> io::Result<Vec<u8>> {
    // Borrowing twin of `ReplicaState`: same fields in the same order, so postcard encodes
    // both identically, without cloning the membership for every applied entry.
    #[derive(Serialize)]
    struct ReplicaStateRef<'a> {
        last_applied: Option<LogId>,
        last_membership: &'a StoredMembership,
        meta: &'a MetaMap,
    }
    let body = postcard::to_stdvec(&ReplicaStateRef {
        last_applied,
        last_membership,
        meta,
    })
    .map_err(|e| io::Error::other(format!("encoding replica state: {e}")))?;
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(STATE_VERSION);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The Raft state recorded with `applied`, checked against the position it was applied at.
fn decode_state(applied: Option<&AppliedState>) -> io::Result<(Option<LogId>, StoredMembership)> {
    decode_full_state(applied).map(|(log_id, membership, _)| (log_id, membership))
}

/// The replicated metadata map recorded in `applied` (empty for a new store).
pub(crate) fn decode_meta(applied: Option<&AppliedState>) -> io::Result<MetaMap> {
    decode_full_state(applied).map(|(_, _, meta)| meta)
}

fn decode_full_state(
    applied: Option<&AppliedState>,
) -> io::Result<(Option<LogId>, StoredMembership, MetaMap)> {
    let Some(applied) = applied else {
        return Ok((None, StoredMembership::default(), MetaMap::new()));
    };
    let bad = |msg: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "store applied state at {:?} is not a Raft replica state: {msg}",
                applied.position
            ),
        )
    };
    let (version, body) = applied
        .state
        .split_first()
        .ok_or_else(|| bad("empty (was the store written without Raft?)".into()))?;
    let state: ReplicaState = match *version {
        STATE_VERSION => postcard::from_bytes(body).map_err(|e| bad(e.to_string()))?,
        STATE_VERSION_WITHOUT_META => {
            let old: ReplicaStateV1 = postcard::from_bytes(body).map_err(|e| bad(e.to_string()))?;
            ReplicaState {
                last_applied: old.last_applied,
                last_membership: old.last_membership,
                meta: MetaMap::new(),
            }
        }
        other => return Err(bad(format!("unknown version {other}"))),
    };
    let recorded = state.last_applied.as_ref().map(position_of);
    if recorded != Some(applied.position) {
        return Err(bad(format!("it names log id {:?}", state.last_applied)));
    }
    Ok((state.last_applied, state.last_membership, state.meta))
}

fn store_err(e: StoreError) -> io::Error {
    io::Error::other(e)
}

/// The state machine of one replica. Cheap to clone; clones share the store and the snapshot
/// directory.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<SmShared>,
}

/// Builds a snapshot from a consistent checkpoint of the store.
pub struct SnapshotBuilder {
    shared: Arc<SmShared>,
}

struct SmShared {
    store: Arc<MvccStore>,
    dir: PathBuf,
    next_temp: AtomicU64,
    /// The published snapshot. Replacing `current.snap` happens under this lock, so the meta
    /// here always describes the file on disk, and a file opened under it is that snapshot.
    current: Mutex<Option<CurrentSnapshot>>,
    /// Held for a whole build or install. openraft builds snapshots in a task of their own,
    /// concurrently with the state machine worker that installs them; a checkpoint started
    /// while a restore is rewriting the store would fail (`RestoreIncomplete`) and stop the
    /// replica.
    snapshot_io: Mutex<()>,
}

#[derive(Clone)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    len: u64,
}

impl StateMachine {
    /// Opens the state machine over `store`, keeping snapshots in `snapshot_dir` (created if
    /// needed). Blocking. Fails if the store holds applied state that is not a Raft replica's
    /// (for example one written by [`crate::DirectReplicator`]).
    pub fn open(store: Arc<MvccStore>, snapshot_dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = snapshot_dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        for item in fs::read_dir(&dir)? {
            let path = item?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
            {
                // A snapshot that was being written or received when the process stopped.
                fs::remove_file(&path)?;
            }
        }
        let current_path = dir.join(CURRENT_SNAPSHOT);
        let current = if current_path.exists() {
            let mut file = File::open(&current_path)?;
            let (meta, len) = read_trailer(&mut file)?;
            Some(CurrentSnapshot { meta, len })
        } else {
            None
        };
        decode_state(store.applied().as_ref())?;
        Ok(Self {
            shared: Arc::new(SmShared {
                store,
                dir,
                next_temp: AtomicU64::new(0),
                current: Mutex::new(current),
                snapshot_io: Mutex::new(()),
            }),
        })
    }

    /// The store this state machine applies to.
    pub fn store(&self) -> &Arc<MvccStore> {
        &self.shared.store
    }

    /// True when no other handle (openraft task, snapshot builder) holds this state machine.
    pub(crate) fn is_sole_owner(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    async fn apply_chunk(&self, chunk: Vec<EntryResponder<TypeConfig>>) -> io::Result<()> {
        let (entries, responders): (Vec<Entry>, Vec<Option<ApplyResponder<TypeConfig>>>) =
            chunk.into_iter().unzip();
        let shared = Arc::clone(&self.shared);
        let positions = run_blocking(move || shared.apply_entries(entries)).await?;
        assert_eq!(
            positions.len(),
            responders.len(),
            "one position per applied entry"
        );
        // Answer only after the store holds the entries: a client that gets its position can
        // read its commits at their timestamps on this replica.
        for (position, responder) in positions.into_iter().zip(responders) {
            if let Some(responder) = responder {
                responder.send(position);
            }
        }
        Ok(())
    }
}

impl SmShared {
    fn lock_current(&self) -> MutexGuard<'_, Option<CurrentSnapshot>> {
        match self.current.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn lock_snapshot_io(&self) -> MutexGuard<'_, ()> {
        match self.snapshot_io.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn temp_path(&self, purpose: &str) -> PathBuf {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{purpose}-{n}{TEMP_SUFFIX}"))
    }

    /// Applies `entries` in order, each as one atomic store batch.
    fn apply_entries(&self, entries: Vec<Entry>) -> io::Result<Vec<LogPosition>> {
        let (mut last_applied, mut membership, mut meta) =
            decode_full_state(self.store.applied().as_ref())?;
        let mut positions = Vec::with_capacity(entries.len());
        for entry in entries {
            let log_id = entry.log_id;
            let position = position_of(&log_id);
            // An entry at or below the applied index is already in the store (the store checks
            // that its term matches); it must not move the recorded membership backwards.
            let fresh = last_applied
                .as_ref()
                .is_none_or(|applied| log_id.index() > applied.index());
            let commits = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(request) => {
                    if fresh {
                        for op in request.meta {
                            match op {
                                MetaOp::Put { key, value } => {
                                    meta.insert(key, value);
                                }
                                MetaOp::Delete { key } => {
                                    meta.remove(&key);
                                }
                            }
                        }
                    }
                    request.commits
                }
                EntryPayload::Membership(m) => {
                    if fresh {
                        membership = StoredMembership::new(Some(log_id), m);
                    }
                    Vec::new()
                }
            };
            if fresh {
                last_applied = Some(log_id);
            }
            let state = encode_state(last_applied, &membership, &meta)?;
            self.store
                .apply(&ApplyBatch {
                    position,
                    commits,
                    state,
                    durability: Durability::Buffered,
                })
                .map_err(store_err)?;
            positions.push(position);
        }
        Ok(positions)
    }

    /// Checkpoints the store into a new snapshot file and publishes it if it is newer than
    /// the current one. Returns the published snapshot.
    fn build(&self) -> io::Result<Snapshot> {
        let _exclusive = self.lock_snapshot_io();
        let temp = self.temp_path("build");
        let result = self.build_into(&temp);
        if result.is_err() {
            fs::remove_file(&temp).ok();
        }
        result
    }

    fn build_into(&self, temp: &Path) -> io::Result<Snapshot> {
        let mut out = CountingWriter {
            inner: BufWriter::new(File::create(temp)?),
            bytes: 0,
        };
        let info = self
            .store
            .checkpoint(&KeySpan::all(), &mut out)
            .map_err(store_err)?;
        let len = out.bytes;
        let (last_log_id, last_membership) = decode_state(info.applied.as_ref())?;
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        // The checkpoint may include applies that are still only in the store's journal
        // buffer. Once this snapshot is published openraft may purge the log below it, so
        // the store must hold them durably first.
        self.store
            .engine()
            .sync()
            .map_err(|e| store_err(e.into()))?;
        write_trailer(&mut out, &meta, len)?;
        let file = out.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);

        let mut current = self.lock_current();
        let newer = current
            .as_ref()
            .is_none_or(|c| meta.last_log_id > c.meta.last_log_id);
        if newer {
            self.publish(temp, &mut current, CurrentSnapshot { meta, len })?;
        } else {
            // A newer snapshot was installed meanwhile; it supersedes this one.
            fs::remove_file(temp)?;
        }
        self.open_current(&current)?
            .ok_or_else(|| io::Error::other("no current snapshot after building one"))
    }

    /// Renames `temp` over `current.snap` and records it; the caller holds the lock.
    fn publish(
        &self,
        temp: &Path,
        current: &mut Option<CurrentSnapshot>,
        snapshot: CurrentSnapshot,
    ) -> io::Result<()> {
        fs::rename(temp, self.dir.join(CURRENT_SNAPSHOT))?;
        File::open(&self.dir)?.sync_all()?;
        *current = Some(snapshot);
        Ok(())
    }

    fn open_current(&self, current: &Option<CurrentSnapshot>) -> io::Result<Option<Snapshot>> {
        let Some(cur) = current else {
            return Ok(None);
        };
        let file = File::open(self.dir.join(CURRENT_SNAPSHOT))?;
        Ok(Some(Snapshot {
            meta: cur.meta.clone(),
            snapshot: SnapshotData::from_file(file, cur.len),
        }))
    }

    /// Replaces the store's contents with the snapshot's, and makes it the current snapshot.
    fn install(&self, meta: SnapshotMeta, mut data: SnapshotData) -> io::Result<()> {
        let _exclusive = self.lock_snapshot_io();
        let temp = self.temp_path("install");
        let result = self.install_from(&temp, meta, &mut data);
        if result.is_err() {
            fs::remove_file(&temp).ok();
        }
        result
    }

    fn install_from(
        &self,
        temp: &Path,
        meta: SnapshotMeta,
        data: &mut SnapshotData,
    ) -> io::Result<()> {
        // Keep a durable copy first: it becomes this replica's current snapshot, which it
        // serves to others and which openraft may reinstall after a restart.
        let mut out = BufWriter::new(File::create(temp)?);
        let len = io::copy(data, &mut out)?;
        if len != data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("snapshot stream ended after {len} of {} bytes", data.len()),
            ));
        }
        write_trailer(&mut out, &meta, len)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);

        let mut input = BufReader::new(File::open(temp)?.take(len));
        let info = self.store.restore(&mut input).map_err(store_err)?;
        let (last_log_id, last_membership) = decode_state(info.applied.as_ref())?;
        if last_log_id != meta.last_log_id || last_membership != meta.last_membership {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot data is at {last_log_id:?} but its meta claims {:?}",
                    meta.last_log_id
                ),
            ));
        }
        let mut current = self.lock_current();
        self.publish(temp, &mut current, CurrentSnapshot { meta, len })
    }
}

/// Counts the bytes written through it, so the snapshot file knows its stream length.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_trailer(out: &mut impl Write, meta: &SnapshotMeta, stream_len: u64) -> io::Result<()> {
    let encoded = postcard::to_stdvec(meta)
        .map_err(|e| io::Error::other(format!("encoding snapshot meta: {e}")))?;
    let meta_len = u32::try_from(encoded.len())
        .ok()
        .filter(|len| *len <= SNAPSHOT_META_MAX_BYTES)
        .ok_or_else(|| io::Error::other("snapshot meta is too large"))?;
    out.write_all(&encoded)?;
    out.write_all(&stream_len.to_be_bytes())?;
    out.write_all(&meta_len.to_be_bytes())?;
    out.write_all(&crc32fast::hash(&encoded).to_be_bytes())?;
    out.write_all(SNAPSHOT_MAGIC)?;
    out.flush()
}

/// Reads the meta and the stream length of a snapshot file.
fn read_trailer(file: &mut File) -> io::Result<(SnapshotMeta, u64)> {
    let bad = |msg: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad snapshot file: {msg}"),
        )
    };
    let file_len = file.seek(SeekFrom::End(0))?;
    if file_len < TRAILER_LEN {
        return Err(bad("shorter than its trailer"));
    }
    file.seek(SeekFrom::Start(file_len - TRAILER_LEN))?;
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact(&mut trailer)?;
    let (len_raw, rest) = trailer.split_at(8);
    let (meta_len_raw, rest) = rest.split_at(4);
    let (crc_raw, magic) = rest.split_at(4);
    if magic != SNAPSHOT_MAGIC {
        return Err(bad("missing magic"));
    }
    let to_u32 = |raw: &[u8]| {
        raw.try_into()
            .map(u32::from_be_bytes)
            .map_err(|_| bad("trailer"))
    };
    let stream_len = u64::from_be_bytes(len_raw.try_into().map_err(|_| bad("trailer"))?);
    let meta_len = to_u32(meta_len_raw)?;
    let crc = to_u32(crc_raw)?;
    if meta_len > SNAPSHOT_META_MAX_BYTES
        || stream_len.checked_add(u64::from(meta_len) + TRAILER_LEN) != Some(file_len)
    {
        return Err(bad("lengths do not add up"));
    }
    file.seek(SeekFrom::Start(stream_len))?;
    let mut encoded = vec![0u8; meta_len as usize];
    file.read_exact(&mut encoded)?;
    if crc32fast::hash(&encoded) != crc {
        return Err(bad("meta checksum mismatch"));
    }
    let meta = postcard::from_bytes(&encoded).map_err(|_| bad("meta does not decode"))?;
    Ok((meta, stream_len))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let shared = Arc::clone(&self.shared);
        run_blocking(move || shared.build()).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        decode_state(self.shared.store.applied().as_ref())
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut chunk = Vec::new();
        while let Some(item) = entries.next().await {
            chunk.push(item?);
            if chunk.len() >= APPLY_CHUNK_MAX_ENTRIES {
                self.apply_chunk(std::mem::take(&mut chunk)).await?;
            }
        }
        if !chunk.is_empty() {
            self.apply_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<SnapshotBuilder> {
        // Never deferred: a checkpoint reads one engine snapshot and does not block applies.
        Some(SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        })
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let shared = Arc::clone(&self.shared);
        let meta = meta.clone();
        run_blocking(move || shared.install(meta, snapshot)).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let shared = Arc::clone(&self.shared);
        run_blocking(move || {
            let current = shared.lock_current();
            shared.open_current(&current)
        })
        .await
    }
}
