//! The timestamp oracle: strictly increasing commit and read timestamps.
//!
//! A timestamp is `physical_ms * 1_000_000 + logical`, so on the wire it reads as nanoseconds
//! since the Unix epoch, which is what Convex clients expect of a timestamp, and up to a
//! million timestamps can be handed out per millisecond. Timestamps come from memory; only
//! the end of a high-water window is persisted, before any timestamp inside a new window is
//! handed out, so a restart (which starts above the persisted end) never goes back.
//!
//! Single-node the oracle is local ([`LocalTso`]); in a cluster it lives in the meta range and
//! persists its window through Raft instead of a file — the trait is the seam.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use replication::BoxFuture;
use store::Timestamp;

/// Logical timestamps per physical millisecond.
pub const LOGICAL_PER_MS: u64 = 1_000_000;

/// A source of wall-clock time. Tests inject their own.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch. May go backwards; the oracle never does.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TsoError {
    /// Persisting a new window failed; no timestamp beyond the old window is handed out.
    #[error("timestamp oracle could not persist its window: {0}")]
    Persist(#[from] std::io::Error),
    #[error("timestamp oracle window file is corrupt: {0}")]
    Corrupt(String),
    #[error("timestamp space exhausted")]
    Exhausted,
    /// A remote oracle could not be reached or is not led right now; nothing was handed out.
    #[error("timestamp oracle unavailable: {0}")]
    Unavailable(String),
}

/// Hands out strictly increasing timestamps.
///
/// Contract: every timestamp returned by `next` (by any caller, across restarts of the
/// process) is greater than every timestamp returned before it and greater than every
/// timestamp passed to `fence` before it.
pub trait TimestampOracle: Send + Sync + 'static {
    fn next(&self) -> Result<Timestamp, TsoError>;

    /// Ensures every later `next` returns a timestamp above `ts`.
    fn fence(&self, ts: Timestamp) -> Result<(), TsoError>;
}

/// An oracle a committer can wait on: a local one, or the meta range's, reached over the
/// network. The committer reserves one batch per commit group, so a remote oracle costs one
/// round trip per group, never one per transaction.
///
/// Contract: every timestamp returned by `reserve` is greater than every timestamp handed out
/// (by any caller) and every timestamp passed to `fence` before the call began, and the
/// returned timestamps increase.
pub trait TimestampSource: Send + Sync + 'static {
    /// `n` (at least one) fresh timestamps, increasing.
    fn reserve(&self, n: usize) -> BoxFuture<'_, Result<Vec<Timestamp>, TsoError>>;

    /// Ensures every later `reserve` returns timestamps above `ts`.
    fn fence(&self, ts: Timestamp) -> BoxFuture<'_, Result<(), TsoError>>;
}

/// Every synchronous oracle is a source.
impl<T: TimestampOracle + ?Sized> TimestampSource for T {
    fn reserve(&self, n: usize) -> BoxFuture<'_, Result<Vec<Timestamp>, TsoError>> {
        let stamps = (0..n.max(1)).map(|_| self.next()).collect();
        Box::pin(std::future::ready(stamps))
    }

    fn fence(&self, ts: Timestamp) -> BoxFuture<'_, Result<(), TsoError>> {
        Box::pin(std::future::ready(TimestampOracle::fence(self, ts)))
    }
}

struct TsoState {
    last: u64,
    /// No timestamp at or above this is handed out until a larger end is persisted.
    window_end: u64,
}

/// An oracle for one node, persisting its window end in a file.
pub struct LocalTso<C: Clock = SystemClock> {
    clock: C,
    path: PathBuf,
    window: u64,
    state: Mutex<TsoState>,
}

impl LocalTso<SystemClock> {
    /// Opens the oracle whose window lives in `dir/tso_window`.
    pub fn open(dir: &Path) -> Result<Self, TsoError> {
        Self::with_clock(dir, SystemClock, knobs::TSO_WINDOW_MS)
    }
}

impl<C: Clock> LocalTso<C> {
    /// `window_ms`: how far ahead of the clock each persisted window reaches.
    pub fn with_clock(dir: &Path, clock: C, window_ms: u64) -> Result<Self, TsoError> {
        let path = dir.join("tso_window");
        let persisted = match fs::read(&path) {
            Ok(bytes) => {
                let raw: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| TsoError::Corrupt(format!("{} is not 8 bytes", path.display())))?;
                u64::from_be_bytes(raw)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            clock,
            path,
            window: window_ms.max(1) * LOGICAL_PER_MS,
            // Everything below the persisted end may have been handed out before a crash.
            state: Mutex::new(TsoState {
                last: persisted,
                window_end: persisted,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TsoState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Makes `end` the durable window end: write a temporary file, fsync, rename, fsync dir.
    fn persist(&self, end: u64) -> Result<(), TsoError> {
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&end.to_be_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn issue(&self, state: &mut TsoState, floor: u64) -> Result<u64, TsoError> {
        let physical = self.clock.now_ms().saturating_mul(LOGICAL_PER_MS);
        let ts = state
            .last
            .checked_add(1)
            .ok_or(TsoError::Exhausted)?
            .max(physical)
            .max(floor);
        if ts >= state.window_end {
            let end = ts.checked_add(self.window).ok_or(TsoError::Exhausted)?;
            // Held under the lock: nobody gets a timestamp in the new window before it is
            // durable. This is one fsync per window (seconds of timestamps), not per call.
            self.persist(end)?;
            state.window_end = end;
        }
        state.last = ts;
        Ok(ts)
    }
}

impl<C: Clock> TimestampOracle for LocalTso<C> {
    fn next(&self) -> Result<Timestamp, TsoError> {
        let mut state = self.lock();
        self.issue(&mut state, 0).map(Timestamp)
    }

    fn fence(&self, ts: Timestamp) -> Result<(), TsoError> {
        let mut state = self.lock();
        if state.last < ts.0 {
            self.issue(&mut state, ts.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Clone)]
    struct FakeClock(Arc<AtomicU64>);

    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn strictly_increasing_even_when_the_clock_goes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = FakeClock(Arc::new(AtomicU64::new(1_000)));
        let tso = LocalTso::with_clock(dir.path(), clock.clone(), 100).expect("open");
        let a = tso.next().expect("ts");
        assert_eq!(a.0, 1_000 * LOGICAL_PER_MS);
        let b = tso.next().expect("ts");
        assert_eq!(b.0, a.0 + 1);
        clock.0.store(500, Ordering::SeqCst);
        let c = tso.next().expect("ts");
        assert!(c > b);
        clock.0.store(2_000, Ordering::SeqCst);
        let d = tso.next().expect("ts");
        assert_eq!(d.0, 2_000 * LOGICAL_PER_MS);
        TimestampOracle::fence(&tso, Timestamp(d.0 + 50)).expect("fence");
        assert!(tso.next().expect("ts").0 > d.0 + 50);
    }

    #[test]
    fn restart_never_goes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = FakeClock(Arc::new(AtomicU64::new(10_000)));
        let mut last = Timestamp::MIN;
        for _ in 0..3 {
            let tso = LocalTso::with_clock(dir.path(), clock.clone(), 100).expect("open");
            for _ in 0..1_000 {
                let ts = tso.next().expect("ts");
                assert!(ts > last, "{ts} after {last}");
                last = ts;
            }
            // The clock stands still (or went back) across the restart.
            clock.0.store(9_000, Ordering::SeqCst);
        }
    }
}
