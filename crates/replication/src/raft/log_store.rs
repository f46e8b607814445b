//! The Raft log of one replica on fjall: [`RaftLogStorage`] and [`RaftLogReader`].
//!
//! One fjall `Database` of its own (`<dir>/raft-log`), so the log's fsyncs never wait behind
//! the store's writes, with two keyspaces:
//!
//! ```text
//! entries:  u64 BE log index                 -> postcard(Entry)
//! meta:     "vote"                           -> postcard(Vote)
//!           "committed"                      -> postcard(LogId)   (absent: None)
//!           "last_purged"                    -> postcard(LogId)   (absent: None)
//!           "node_id"                        -> u64 BE            (the id this log belongs to)
//! ```
//!
//! Big-endian indexes make the keyspace order the log order, so the last entry is the last
//! key and a range of indexes is one range scan.
//!
//! Durability, write by write:
//! - `append`: all entries in one fjall batch committed with `PersistMode::SyncAll`; the
//!   openraft callback is signalled only after that commit returned, i.e. after fsync. fjall
//!   inserts a batch into its memtables only after the journal write and fsync succeeded
//!   (fjall-3.1.13/src/batch/mod.rs:115-131, inserts from :149), so an entry is never readable
//!   before it is durable, and a failed fsync poisons the database (`:121`, `:129`): every
//!   later write fails and the replica stops, as DESIGN.md asks.
//! - `save_vote`, `truncate_after`: fsync'd before returning.
//! - `save_committed`: journal-buffered, no fsync of its own. It is a hint for re-applying
//!   after a restart; the next `append` or `save_vote` fsync covers it (one journal, written in
//!   order). Losing it only means openraft re-applies from the store's durable position once
//!   a leader tells it the commit index again.
//! - `purge`: journal-buffered. `last_purged` is written before the deletions it announces, so
//!   a crash in between leaves stale entries at or below `last_purged` (ignored by readers and
//!   removed on the next open), never a hole above it.
//!
//! Torn tails. fjall's journal is a sequence of batches `Start{count, seqno} Item* End{xxh3
//! checksum, magic trailer}` (fjall-3.1.13/src/journal/entry.rs; the trailer exists "so we
//! know the end marker is fully written", :146). On open, fjall replays the active journal:
//! - an entry that fails to decode at the tail (short read, or bad tag/trailer) ends the
//!   replay and the file is truncated to the end of the last whole entry
//!   (src/journal/reader.rs:56-77);
//! - a last batch without its `End` marker is discarded whole and the file truncated to the
//!   end of the last complete batch ("missing terminator ... discarding to keep atomicity",
//!   src/journal/batch_reader.rs:64-70); a `Start` inside a batch likewise truncates (:95);
//! - a batch that has its `End` marker but fails its checksum or item count is not a torn
//!   write: recovery returns `JournalRecovery(ChecksumMismatch | InsufficientLength)`
//!   (batch_reader.rs:111, :129), `Database::recover` propagates it (src/db.rs:707) and
//!   [`LogStore::open`] fails rather than serve a log with a silently missing middle;
//! - after replay the active journal is fsync'd (src/db.rs:598), so the truncation is durable.
//!
//! Because a batch is acknowledged only after its fsync and the journal is append-only, a torn
//! region can only follow every acknowledged batch: recovery drops at most the unacknowledged
//! last append, which openraft never counted as flushed.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Entry, LogId, PURGE_DELETE_BATCH_ENTRIES, TypeConfig, Vote, run_blocking};

const ENTRIES_KEYSPACE: &str = "entries";
const META_KEYSPACE: &str = "meta";
const META_VOTE: &[u8] = b"vote";
const META_COMMITTED: &[u8] = b"committed";
const META_LAST_PURGED: &[u8] = b"last_purged";
const META_NODE_ID: &[u8] = b"node_id";

/// The Raft log of one replica, durable in its own fjall database. Cheap to clone: clones
/// share the database, and a clone is also the log reader openraft's replication tasks use.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<LogInner>,
}

struct LogInner {
    db: Database,
    entries: Keyspace,
    meta: Keyspace,
}

fn fjall_err(e: fjall::Error) -> io::Error {
    io::Error::other(format!("raft log storage: {e}"))
}

fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt raft log: {}", msg.into()),
    )
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value)
        .map_err(|e| io::Error::other(format!("encoding raft log record: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(format!("{what} does not decode: {e}")))
}

fn entry_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> io::Result<u64> {
    let raw: [u8; 8] = key
        .try_into()
        .map_err(|_| corrupt(format!("entry key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(raw))
}

impl LogStore {
    /// Opens (creating if needed) the log in directory `path`. Blocking: fjall replays its
    /// journal here (see the module docs for how a torn tail is handled).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let db = Database::builder(path.as_ref()).open().map_err(fjall_err)?;
        let entries = db
            .keyspace(ENTRIES_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(fjall_err)?;
        let meta = db
            .keyspace(META_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(fjall_err)?;
        let inner = LogInner { db, entries, meta };
        inner.remove_stale_purged()?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Binds this log to Raft node `node_id`, or checks that it already belongs to it: a log
    /// reopened under another id would let one node vote twice in a term. Blocking.
    pub fn bind_node_id(&self, node_id: u64) -> io::Result<()> {
        let inner = &self.inner;
        match inner.meta.get(META_NODE_ID).map_err(fjall_err)? {
            Some(raw) => {
                let found = key_index(&raw)?;
                if found != node_id {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("raft log belongs to node {found}, not to node {node_id}"),
                    ));
                }
                Ok(())
            }
            None => {
                let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
                batch.insert(&inner.meta, META_NODE_ID, node_id.to_be_bytes());
                batch.commit().map_err(fjall_err)
            }
        }
    }

    /// True when no other handle (openraft task, reader clone) holds this log any more.
    pub(crate) fn is_sole_owner(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }
}

impl LogInner {
    fn read_meta<T: DeserializeOwned>(
        &self,
        snap: &fjall::Snapshot,
        key: &[u8],
    ) -> io::Result<Option<T>> {
        match snap.get(&self.meta, key).map_err(fjall_err)? {
            Some(raw) => Ok(Some(decode(&raw, "log meta record")?)),
            None => Ok(None),
        }
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: Option<&T>,
        durability: Option<PersistMode>,
    ) -> io::Result<()> {
        let mut batch = self.db.batch().durability(durability);
        match value {
            Some(v) => batch.insert(&self.meta, key, encode(v)?),
            None => batch.remove(&self.meta, key),
        }
        batch.commit().map_err(fjall_err)
    }

    /// Deletes entries at or below `last_purged` that a crash in the middle of a purge left.
    fn remove_stale_purged(&self) -> io::Result<()> {
        let snap = self.db.snapshot();
        if let Some(purged) = self.read_meta::<LogId>(&snap, META_LAST_PURGED)? {
            self.delete_through(&snap, purged.index(), None)?;
        }
        Ok(())
    }

    /// Deletes every entry with index `<= upto` present in `snap`, in bounded batches.
    fn delete_through(
        &self,
        snap: &fjall::Snapshot,
        upto: u64,
        durability: Option<PersistMode>,
    ) -> io::Result<()> {
        let mut keys = Vec::new();
        for guard in snap.range(&self.entries, ..=entry_key(upto)) {
            keys.push(guard.key().map_err(fjall_err)?);
            if keys.len() >= PURGE_DELETE_BATCH_ENTRIES {
                self.delete_keys(std::mem::take(&mut keys), durability)?;
            }
        }
        if !keys.is_empty() {
            self.delete_keys(keys, durability)?;
        }
        Ok(())
    }

    fn delete_keys(
        &self,
        keys: Vec<fjall::UserKey>,
        durability: Option<PersistMode>,
    ) -> io::Result<()> {
        let mut batch = self.db.batch().durability(durability);
        for key in keys {
            batch.remove(&self.entries, key);
        }
        batch.commit().map_err(fjall_err)
    }

    fn log_state(&self) -> io::Result<(Option<LogId>, Option<LogId>)> {
        let snap = self.db.snapshot();
        let purged: Option<LogId> = self.read_meta(&snap, META_LAST_PURGED)?;
        let last_entry = match snap.last_key_value(&self.entries) {
            Some(guard) => {
                let (key, value) = guard.into_inner().map_err(fjall_err)?;
                let entry: Entry = decode(&value, "log entry")?;
                if entry.log_id.index() != key_index(&key)? {
                    return Err(corrupt(format!(
                        "entry under key {} has log id {}",
                        key_index(&key)?,
                        entry.log_id
                    )));
                }
                Some(entry.log_id)
            }
            None => None,
        };
        // Stale entries below `last_purged` (an interrupted purge) must not hide it.
        let last = std::cmp::max(last_entry, purged);
        Ok((purged, last))
    }

    /// Entries with index in `[start, end]` (`end` None: to the last), from one consistent
    /// snapshot. Entries at or below `last_purged` are never returned.
    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> io::Result<Vec<Entry>> {
        let snap = self.db.snapshot();
        let purged: Option<LogId> = self.read_meta(&snap, META_LAST_PURGED)?;
        let first_kept = purged.map_or(0, |p| p.index().saturating_add(1));
        let start = match start {
            Bound::Included(s) => s,
            Bound::Excluded(s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        }
        .max(first_kept);
        let end = match end {
            Bound::Included(e) => Some(e),
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(e) => Some(e - 1),
            Bound::Unbounded => None,
        };
        let iter = match end {
            Some(e) if e < start => return Ok(Vec::new()),
            Some(e) => snap.range(&self.entries, entry_key(start)..=entry_key(e)),
            None => snap.range(&self.entries, entry_key(start)..),
        };
        let mut out: Vec<Entry> = Vec::new();
        for guard in iter {
            let (key, value) = guard.into_inner().map_err(fjall_err)?;
            let index = key_index(&key)?;
            let entry: Entry = decode(&value, "log entry")?;
            if entry.log_id.index() != index {
                return Err(corrupt(format!(
                    "entry under key {index} has log id {}",
                    entry.log_id
                )));
            }
            // Holes inside the returned range are never allowed (openraft's reader contract).
            if let Some(prev) = out.last()
                && prev.log_id.index() + 1 != index
            {
                return Err(corrupt(format!(
                    "hole in the log between {} and {index}",
                    prev.log_id.index()
                )));
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn append(&self, entries: Vec<Entry>) -> io::Result<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        let mut prev: Option<u64> = None;
        for entry in &entries {
            let index = entry.log_id.index();
            if let Some(p) = prev
                && p + 1 != index
            {
                return Err(io::Error::other(format!(
                    "append of non-consecutive entries: {p} then {index}"
                )));
            }
            prev = Some(index);
            batch.insert(&self.entries, entry_key(index), encode(entry)?);
        }
        batch.commit().map_err(fjall_err)
    }

    fn truncate_after(&self, last_kept: Option<LogId>) -> io::Result<()> {
        let snap = self.db.snapshot();
        let from = match last_kept {
            Some(log_id) => match log_id.index().checked_add(1) {
                Some(from) => from,
                None => return Ok(()),
            },
            None => 0,
        };
        // One batch: the truncated suffix is uncommitted, so it is bounded by what a leader
        // had in flight, and an atomic removal can never leave a hole.
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for guard in snap.range(&self.entries, entry_key(from)..) {
            batch.remove(&self.entries, guard.key().map_err(fjall_err)?);
        }
        batch.commit().map_err(fjall_err)
    }

    fn purge(&self, upto: LogId) -> io::Result<()> {
        let snap = self.db.snapshot();
        let current: Option<LogId> = self.read_meta(&snap, META_LAST_PURGED)?;
        if current.as_ref().is_some_and(|c| c >= &upto) {
            return Ok(());
        }
        // Announce first, delete after: an interrupted purge leaves stale entries below
        // `last_purged` (harmless, cleaned on open), never a hole above it.
        self.write_meta(META_LAST_PURGED, Some(&upto), None)?;
        self.delete_through(&snap, upto.index(), None)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.read_range(start, end)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let snap = inner.db.snapshot();
            inner.read_meta(&snap, META_VOTE)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = Arc::clone(&self.inner);
        let (last_purged_log_id, last_log_id) = run_blocking(move || inner.log_state()).await?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let inner = Arc::clone(&self.inner);
        let vote = *vote;
        // A vote must be on disk before it is acted on: a node that forgets its vote could
        // vote twice in one term.
        run_blocking(move || inner.write_meta(META_VOTE, Some(&vote), Some(PersistMode::SyncAll)))
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let inner = Arc::clone(&self.inner);
        // Buffered on purpose; see the module docs.
        run_blocking(move || inner.write_meta(META_COMMITTED, committed.as_ref(), None)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let snap = inner.db.snapshot();
            inner.read_meta(&snap, META_COMMITTED)
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let inner = Arc::clone(&self.inner);
        // The batch is fsync'd before `append` returns, so the entries are readable when it
        // returns and durable when the callback fires. On error the callback is dropped
        // unsignalled: the returned error stops the replica.
        run_blocking(move || inner.append(entries)).await?;
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.truncate_after(last_log_id)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.purge(log_id)).await
    }
}
