//! Consistent checkpoints of a key span as a byte stream, and restore from one.
//!
//! fjall has no checkpoint API, so a checkpoint is logical: every raw data key in the span,
//! read from one engine snapshot, together with the applied state read from the same
//! snapshot (so the data and its log position agree). This stream is what a Raft snapshot
//! carries to a lagging follower; `docs/storage-format.md` draws it byte by byte.
//!
//! ```text
//! "CHORUSCP" | u32 stream version | u32 store format | span | applied | u64 gc watermark
//! { 0x01 | u32 key len | key | u32 value len | value }*      (keys strictly ascending)
//! 0x00 | u64 record count | u32 CRC-32 of every byte before it
//! ```
//!
//! Restore replaces the span's contents and the applied state. It writes a "restoring"
//! marker first and removes it in the final, durable batch: if the stream turns out to be
//! corrupt half-way, or the process dies, the store refuses to serve until a restore
//! completes, rather than serving a mix of old and new data.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::Ordering as AtomicOrdering;

use crate::engine::{Direction, Durability, KvBatch, Space};
use crate::error::StoreError;
use crate::layout::{
    FORMAT_VERSION, KeySpan, Timestamp, VERSION_LIVE, VERSION_TOMBSTONE, parse_key,
};
use crate::mvcc::{
    AppliedState, META_APPLIED, META_GC_WATERMARK, META_RESTORING, MvccStore, read_state,
};

const MAGIC: &[u8; 8] = b"CHORUSCP";
const STREAM_VERSION: u32 = 1;
const RECORD: u8 = 0x01;
const END: u8 = 0x00;

/// What a checkpoint or restore covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub span: KeySpan,
    pub applied: Option<AppliedState>,
    pub gc_watermark: Timestamp,
    pub records: u64,
    pub bytes: u64,
}

struct CrcWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.inner.write_all(bytes)?;
        Ok(())
    }

    fn put_blob(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| StoreError::BadCheckpoint("record over 4 GiB".into()))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }
}

struct CrcReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl<R: Read> CrcReader<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::BadCheckpoint("stream ends early".into())
            } else {
                StoreError::CheckpointIo(e)
            }
        })?;
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        let mut b = [0u8; 1];
        self.take(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    fn blob(&mut self, what: &str) -> Result<Vec<u8>, StoreError> {
        let len = self.u32()? as usize;
        if len > knobs::CHECKPOINT_RECORD_MAX_BYTES {
            return Err(StoreError::BadCheckpoint(format!(
                "{what} announces {len} bytes, over the limit of {}",
                knobs::CHECKPOINT_RECORD_MAX_BYTES
            )));
        }
        let mut buf = vec![0u8; len];
        self.take(&mut buf)?;
        Ok(buf)
    }
}

fn bad(msg: impl Into<String>) -> StoreError {
    StoreError::BadCheckpoint(msg.into())
}

impl MvccStore {
    /// Writes a consistent checkpoint of `span` to `out`.
    pub fn checkpoint(
        &self,
        span: &KeySpan,
        out: &mut dyn Write,
    ) -> Result<CheckpointInfo, StoreError> {
        if self.read_state().restoring {
            return Err(StoreError::RestoreIncomplete);
        }
        let snap = self.engine.snapshot();
        let state = read_state(snap.as_ref())?;
        let mut w = CrcWriter {
            inner: out,
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
        };
        w.put(MAGIC)?;
        w.put(&STREAM_VERSION.to_be_bytes())?;
        w.put(&FORMAT_VERSION.to_be_bytes())?;
        w.put_blob(&span.start)?;
        match &span.end {
            Some(end) => {
                w.put(&[1])?;
                w.put_blob(end)?;
            }
            None => w.put(&[0])?,
        }
        match &state.applied {
            Some(applied) => {
                w.put(&[1])?;
                w.put_blob(&applied.encode())?;
            }
            None => w.put(&[0])?,
        }
        w.put(&state.gc_watermark.0.to_be_bytes())?;
        let end = span
            .end
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let mut records = 0u64;
        for item in snap.range(
            Space::Data,
            Bound::Included(&span.start),
            end,
            Direction::Forward,
        ) {
            let (key, value) = item?;
            w.put(&[RECORD])?;
            w.put_blob(&key)?;
            w.put_blob(&value)?;
            records += 1;
        }
        w.put(&[END])?;
        w.put(&records.to_be_bytes())?;
        let crc = w.hasher.clone().finalize();
        w.inner.write_all(&crc.to_be_bytes())?;
        w.inner.flush()?;
        Ok(CheckpointInfo {
            span: span.clone(),
            applied: state.applied,
            gc_watermark: state.gc_watermark,
            records,
            bytes: w.bytes + 4,
        })
    }

    /// Writes a checkpoint of `span` to the file `path` and makes it durable.
    pub fn checkpoint_to_file(
        &self,
        span: &KeySpan,
        path: &Path,
    ) -> Result<CheckpointInfo, StoreError> {
        let file = File::create(path)?;
        let mut out = BufWriter::new(file);
        let info = self.checkpoint(span, &mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| StoreError::CheckpointIo(e.into_error()))?;
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(info)
    }

    /// Replaces the contents of the checkpoint's span and the applied state with the
    /// checkpoint read from `input`. A malformed header changes nothing; a stream that fails
    /// later leaves the store refusing service ([`StoreError::RestoreIncomplete`]) until a
    /// restore completes.
    pub fn restore(&self, input: &mut dyn Read) -> Result<CheckpointInfo, StoreError> {
        let _writer = self.lock_writes();
        self.restore_generation.fetch_add(1, AtomicOrdering::SeqCst);
        let mut r = CrcReader {
            inner: input,
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a Chorus checkpoint (bad magic)"));
        }
        let version = r.u32()?;
        if version != STREAM_VERSION {
            return Err(bad(format!(
                "unsupported checkpoint stream version {version}"
            )));
        }
        let format = r.u32()?;
        if format != FORMAT_VERSION {
            return Err(StoreError::UnsupportedFormat {
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        let start = r.blob("span start")?;
        let end = match r.u8()? {
            0 => None,
            1 => Some(r.blob("span end")?),
            other => return Err(bad(format!("bad span end flag {other}"))),
        };
        let span = KeySpan { start, end };
        let applied = match r.u8()? {
            0 => None,
            1 => Some(
                AppliedState::decode(&r.blob("applied state")?)
                    .map_err(|_| bad("malformed applied state"))?,
            ),
            other => return Err(bad(format!("bad applied flag {other}"))),
        };
        let gc_watermark = Timestamp(r.u64()?);

        // From here on the store's contents change; mark it so a failure is never served.
        let mut marker = KvBatch::new();
        marker.put(Space::Meta, META_RESTORING.to_vec(), vec![1]);
        self.engine.write(marker, Durability::Sync)?;
        self.write_state().restoring = true;

        self.clear_span(&span)?;

        let mut batch = KvBatch::new();
        let mut records = 0u64;
        let mut last_key: Option<Vec<u8>> = None;
        loop {
            match r.u8()? {
                RECORD => {}
                END => break,
                other => return Err(bad(format!("bad record tag {other}"))),
            }
            let key = r.blob("key")?;
            let value = r.blob("value")?;
            if !span.contains(&key) {
                return Err(bad(format!(
                    "key {key:02x?} lies outside the checkpoint's span"
                )));
            }
            if last_key.as_ref().is_some_and(|last| &key <= last) {
                return Err(bad("keys are not strictly ascending"));
            }
            if parse_key(&key).is_none()
                || !matches!(
                    value.first(),
                    Some(&VERSION_LIVE) | Some(&VERSION_TOMBSTONE)
                )
            {
                return Err(bad(format!("record {records} is not a valid data version")));
            }
            last_key = Some(key.clone());
            batch.put(Space::Data, key, value);
            records += 1;
            if batch.len() >= knobs::RESTORE_BATCH_ROWS {
                self.engine
                    .write(std::mem::take(&mut batch), Durability::Buffered)?;
            }
        }
        let count = r.u64()?;
        let expected_crc = r.hasher.clone().finalize();
        let mut crc = [0u8; 4];
        r.inner
            .read_exact(&mut crc)
            .map_err(|_| bad("stream ends before its checksum"))?;
        if u32::from_be_bytes(crc) != expected_crc {
            return Err(bad("checksum mismatch"));
        }
        if count != records {
            return Err(bad(format!(
                "trailer counts {count} records, stream had {records}"
            )));
        }
        let watermark = gc_watermark.max(self.read_state().gc_watermark);
        match &applied {
            Some(a) => batch.put(Space::Meta, META_APPLIED.to_vec(), a.encode()),
            None => batch.delete(Space::Meta, META_APPLIED.to_vec()),
        }
        batch.put(
            Space::Meta,
            META_GC_WATERMARK.to_vec(),
            watermark.0.to_be_bytes().to_vec(),
        );
        batch.delete(Space::Meta, META_RESTORING.to_vec());
        self.engine.write(batch, Durability::Sync)?;
        {
            let mut state = self.write_state();
            state.applied = applied.clone();
            state.gc_watermark = watermark;
            state.restoring = false;
        }
        Ok(CheckpointInfo {
            span,
            applied,
            gc_watermark: watermark,
            records,
            bytes: r.bytes + 4,
        })
    }

    /// Restores from a checkpoint file written by [`MvccStore::checkpoint_to_file`].
    pub fn restore_from_file(&self, path: &Path) -> Result<CheckpointInfo, StoreError> {
        let mut input = BufReader::new(File::open(path)?);
        self.restore(&mut input)
    }

    /// Deletes every data key in `span`, in bounded batches.
    fn clear_span(&self, span: &KeySpan) -> Result<(), StoreError> {
        let snap = self.engine.snapshot();
        let end = span
            .end
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let mut batch = KvBatch::new();
        for item in snap.range(
            Space::Data,
            Bound::Included(&span.start),
            end,
            Direction::Forward,
        ) {
            let (key, _) = item?;
            batch.delete(Space::Data, key);
            if batch.len() >= knobs::RESTORE_BATCH_ROWS {
                self.engine
                    .write(std::mem::take(&mut batch), Durability::Buffered)?;
            }
        }
        if !batch.is_empty() {
            self.engine.write(batch, Durability::Buffered)?;
        }
        Ok(())
    }
}
