//! The committer of one range: validates transactions, assigns commit timestamps, and commits
//! them in groups through the range's [`Replicator`] (one log entry, one fsync, many commits).
//! It runs only where the range is led; one task owns all commit decisions.
//!
//! Invariants:
//! - **Validation is complete.** A transaction is checked against every commit with a
//!   timestamp after its read timestamp: applied ones, ones proposed but not yet applied, and
//!   ones earlier in the same group — all are in the write log from the moment their timestamp
//!   is assigned.
//! - **Timestamps follow log order.** Commit timestamps are assigned in increasing order, and
//!   groups are replicated one after another, so the log applies commits in timestamp order.
//! - **The read rule.** A read at T is served only when every commit with timestamp ≤ T is
//!   applied. Timestamp assignment and the in-flight set change together under one lock;
//!   [`Committer::begin`] returns the highest such T without waiting, and
//!   [`Committer::begin_at`] fences the oracle past T (so no later commit gets a timestamp ≤
//!   T) and waits for the in-flight commits ≤ T.
//! - **An acknowledged commit is applied.** A caller hears `Ok` only after the replicator says
//!   the entry is durable (on a quorum) and applied locally.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use replication::{ReplicateError, Replicator};
use store::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::error::CommitError;
use crate::readset::{ReadSet, WrittenKeys};
use crate::transaction::{CreationClock, FinalTransaction};
use crate::tso::{SystemClock, TimestampOracle, TimestampSource};
use crate::writelog::WriteLog;

struct CommitRequest {
    txn: FinalTransaction,
    respond: oneshot::Sender<Result<Timestamp, CommitError>>,
}

#[derive(Default)]
struct State {
    write_log: WriteLog,
    /// Commit timestamps assigned but not yet applied.
    in_flight: BTreeSet<Timestamp>,
    /// The largest commit timestamp ever assigned.
    max_assigned: Timestamp,
    /// The largest timestamp a reader was promised no commit at or below ([`Committer::begin_at`]).
    fenced: Timestamp,
    /// Set when the committer stopped; every later request fails with it.
    failed: Option<String>,
    /// Set by [`Committer::stop`]: this node lost the lead, so requests never proposed are
    /// refused with the retryable [`CommitError::NotLeader`].
    demoted: bool,
}

impl State {
    /// The error for a request this committer will never propose.
    fn refusal(&self, reason: &str) -> CommitError {
        if self.demoted {
            CommitError::NotLeader { hint: None }
        } else {
            CommitError::Unavailable(reason.to_string())
        }
    }
}

impl State {
    /// Every commit at or below this timestamp is applied.
    fn safe_ts(&self) -> Timestamp {
        match self.in_flight.first() {
            Some(first) => Timestamp(first.0 - 1),
            None => self.max_assigned,
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// `_creationTime`s for every transaction begun through this committer.
    creation: Arc<CreationClock>,
    /// Signalled whenever commits finish applying (or the committer fails).
    applied: Notify,
    /// The newest timestamp at which every commit is applied, published after each group.
    safe: watch::Sender<Timestamp>,
    tso: Arc<dyn TimestampSource>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Statistics since start, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitterStats {
    /// Log entries (groups) replicated.
    pub groups: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Transactions rejected by validation.
    pub conflicts: u64,
}

/// A handle to a running committer; cheap to clone.
#[derive(Clone)]
pub struct Committer {
    requests: mpsc::Sender<CommitRequest>,
    shared: Arc<Shared>,
    stats: Arc<Mutex<CommitterStats>>,
}

impl Committer {
    /// Starts the committer task on the current tokio runtime. `applied_ts` is the largest
    /// commit timestamp already applied to the range's store (0 for a new store).
    pub fn start(
        replicator: Arc<dyn Replicator>,
        tso: Arc<dyn TimestampOracle>,
        applied_ts: Timestamp,
    ) -> Result<Self, CommitError> {
        // Every timestamp handed out from now on must be above what is already committed.
        tso.fence(applied_ts)?;
        let source: Arc<dyn TimestampSource> = Arc::new(SyncOracle(tso));
        Ok(Self::start_with_source(replicator, source, applied_ts))
    }

    /// Like [`Self::start`] with an oracle that may be remote (the meta range's, in a
    /// cluster). The committer keeps its timestamps above `applied_ts` itself, so the oracle
    /// need not be fenced first.
    pub fn start_with_source(
        replicator: Arc<dyn Replicator>,
        tso: Arc<dyn TimestampSource>,
        applied_ts: Timestamp,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                max_assigned: applied_ts,
                ..State::default()
            }),
            applied: Notify::new(),
            safe: watch::channel(applied_ts).0,
            tso,
            creation: Arc::new(CreationClock::new(Arc::new(SystemClock))),
        });
        let (requests, rx) = mpsc::channel(knobs::COMMIT_QUEUE_MAX_REQUESTS);
        let stats = Arc::new(Mutex::new(CommitterStats::default()));
        tokio::spawn(run(rx, Arc::clone(&shared), replicator, Arc::clone(&stats)));
        Self {
            requests,
            shared,
            stats,
        }
    }

    /// Stops the committer: every later request fails with the retryable
    /// [`CommitError::NotLeader`] (it was never proposed), readers waiting in [`Self::begin_at`] are woken. A group already being
    /// replicated still finishes (or fails) on its own. Called when this node loses the lead.
    pub fn stop(&self, reason: &str) {
        {
            let mut state = self.shared.lock();
            state.demoted = true;
            if state.failed.is_none() {
                state.failed = Some(reason.to_string());
            }
        }
        self.shared.applied.notify_waiters();
    }

    /// Whether the committer stopped (after a failure or [`Self::stop`]).
    pub fn is_stopped(&self) -> bool {
        self.shared.lock().failed.is_some()
    }

    /// A read timestamp at which every commit is applied: the newest one, without waiting.
    pub fn begin(&self) -> Result<Timestamp, CommitError> {
        let state = self.shared.lock();
        if let Some(reason) = &state.failed {
            return Err(CommitError::Unavailable(reason.clone()));
        }
        Ok(state.safe_ts())
    }

    /// Waits until a read at `ts` is safe: no commit at or below `ts` is still in flight, and
    /// none will be assigned later.
    pub async fn begin_at(&self, ts: Timestamp) -> Result<Timestamp, CommitError> {
        // The oracle first, so the committer does not have to skip batches below `ts`.
        self.shared.tso.fence(ts).await?;
        loop {
            let notified = self.shared.applied.notified();
            {
                let mut state = self.shared.lock();
                if let Some(reason) = &state.failed {
                    return Err(CommitError::Unavailable(reason.clone()));
                }
                // Under the lock that also guards timestamp assignment: after this, every new
                // commit timestamp is above `ts` (the committer skips stamps at or below it).
                state.fenced = state.fenced.max(ts);
                if state.in_flight.range(..=ts).next().is_none() {
                    return Ok(ts);
                }
            }
            notified.await;
        }
    }

    /// Validates and commits `txn`; returns its commit timestamp once it is applied. A
    /// read-only transaction commits at its read timestamp without validation: its reads came
    /// from one consistent snapshot.
    pub async fn commit(&self, txn: FinalTransaction) -> Result<Timestamp, CommitError> {
        if txn.is_read_only() {
            return Ok(txn.read_ts);
        }
        let (respond, response) = oneshot::channel();
        self.requests
            .send(CommitRequest { txn, respond })
            .await
            .map_err(|_| CommitError::Unavailable("committer stopped".into()))?;
        response
            .await
            .map_err(|_| CommitError::OutcomeUnknown("committer stopped mid-commit".into()))?
    }

    /// The clock that gives documents their `_creationTime`.
    pub fn creation_clock(&self) -> Arc<CreationClock> {
        Arc::clone(&self.shared.creation)
    }

    pub fn stats(&self) -> CommitterStats {
        match self.stats.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Follows the newest timestamp at which every commit is applied (what [`Self::begin`]
    /// would return): it changes after every applied group. Subscriptions wait on it.
    pub fn watch_applied(&self) -> watch::Receiver<Timestamp> {
        self.shared.safe.subscribe()
    }

    /// Whether a commit in `(from, to]` wrote something `reads` covers; `true` when the
    /// write log no longer holds every commit after `from`.
    pub fn changed(&self, reads: &ReadSet, from: Timestamp, to: Timestamp) -> bool {
        self.shared.lock().write_log.changed(reads, from, to)
    }

    /// Commits after `ts` that the write log still holds, oldest first: (timestamp, keys).
    pub fn commits_after(&self, ts: Timestamp) -> Vec<(Timestamp, Arc<WrittenKeys>)> {
        self.shared
            .lock()
            .write_log
            .after(ts)
            .map(|e| (e.ts, Arc::clone(&e.keys)))
            .collect()
    }
}

async fn run(
    mut rx: mpsc::Receiver<CommitRequest>,
    shared: Arc<Shared>,
    replicator: Arc<dyn Replicator>,
    stats: Arc<Mutex<CommitterStats>>,
) {
    while let Some(first) = rx.recv().await {
        // Group commit: everything that queued up while the previous group replicated.
        let mut requests = vec![first];
        while requests.len() < knobs::COMMIT_GROUP_MAX_TRANSACTIONS {
            match rx.try_recv() {
                Ok(request) => requests.push(request),
                Err(_) => break,
            }
        }
        // One batch of timestamps per group: a remote oracle costs one round trip per group.
        let stamps = match reserve_stamps(&shared, requests.len()).await {
            Ok(stamps) => stamps,
            Err(e) => {
                let message = e.to_string();
                for request in requests {
                    let _ = request.respond.send(Err(CommitError::Tso(
                        crate::tso::TsoError::Unavailable(message.clone()),
                    )));
                }
                continue;
            }
        };
        let last_stamp = stamps.last().copied().unwrap_or(Timestamp::MIN);
        let mut stamps = stamps.into_iter();
        let mut accepted = Vec::with_capacity(requests.len());
        let mut commits = Vec::with_capacity(requests.len());
        let mut conflicts = 0u64;
        {
            let mut state = shared.lock();
            if let Some(reason) = &state.failed {
                let reason = reason.clone();
                for request in requests {
                    let _ = request.respond.send(Err(state.refusal(&reason)));
                }
                continue;
            }
            for request in requests {
                if let Err(e) = state
                    .write_log
                    .validate(&request.txn.reads, request.txn.read_ts)
                {
                    conflicts += 1;
                    let _ = request.respond.send(Err(e));
                    continue;
                }
                // A reader may have fenced past the batch while it was being reserved.
                let floor = state.max_assigned.max(state.fenced);
                let Some(ts) = stamps.by_ref().find(|ts| *ts > floor) else {
                    let _ = request.respond.send(Err(CommitError::Tso(
                        crate::tso::TsoError::Unavailable(
                            "timestamps reserved for this group fell below a reader's fence".into(),
                        ),
                    )));
                    continue;
                };
                assert!(ts > state.max_assigned, "commit timestamps must increase");
                state.max_assigned = ts;
                state.in_flight.insert(ts);
                state
                    .write_log
                    .append(ts, Arc::new(request.txn.written.clone()));
                commits.push(request.txn.to_commit(ts));
                accepted.push((ts, request.respond));
            }
        }
        if commits.is_empty() {
            bump(&stats, 0, 0, conflicts);
            continue;
        }
        let outcome = replicator.replicate(commits).await;
        {
            let mut state = shared.lock();
            for (ts, _) in &accepted {
                state.in_flight.remove(ts);
            }
            if let Err(e) = &outcome {
                // The group may or may not be in the log; nothing later can be ordered after
                // it safely here. Stop: a new committer starts with a new leader.
                state.failed = Some(format!("replication failed: {e}"));
            }
            let safe = state.safe_ts();
            state.write_log.trim(safe, last_stamp.max(safe));
            shared.safe.send_if_modified(|published| {
                let newer = safe > *published;
                if newer {
                    *published = safe;
                }
                newer
            });
        }
        shared.applied.notify_waiters();
        match outcome {
            Ok(_) => {
                bump(&stats, 1, accepted.len() as u64, conflicts);
                for (ts, respond) in accepted {
                    let _ = respond.send(Ok(ts));
                }
            }
            Err(e) => {
                let retryable = e.is_retryable();
                let hint = match &e {
                    ReplicateError::NotLeader { hint } => *hint,
                    _ => None,
                };
                for (_, respond) in accepted {
                    let err = if retryable {
                        CommitError::NotLeader { hint }
                    } else {
                        CommitError::OutcomeUnknown(e.to_string())
                    };
                    let _ = respond.send(Err(err));
                }
                break;
            }
        }
    }
    // Fail whatever is still queued (never proposed).
    rx.close();
    while let Some(request) = rx.recv().await {
        let refusal = shared.lock().refusal("committer stopped");
        let _ = request.respond.send(Err(refusal));
    }
}

/// `n` timestamps above everything this committer assigned or a reader fenced. The fence is
/// re-read after the reservation: a stale batch is retried once above the fence, and any
/// stamp still below it is skipped under the lock by the caller.
async fn reserve_stamps(shared: &Shared, n: usize) -> Result<Vec<Timestamp>, crate::tso::TsoError> {
    let stamps = shared.tso.reserve(n).await?;
    let floor = {
        let state = shared.lock();
        state.max_assigned.max(state.fenced)
    };
    if stamps.first().is_some_and(|first| *first > floor) {
        return Ok(stamps);
    }
    shared.tso.fence(floor).await?;
    shared.tso.reserve(n).await
}

/// A synchronous oracle as a [`TimestampSource`] (object-safe wrapper for `Arc<dyn ...>`).
struct SyncOracle(Arc<dyn TimestampOracle>);

impl TimestampSource for SyncOracle {
    fn reserve(
        &self,
        n: usize,
    ) -> replication::BoxFuture<'_, Result<Vec<Timestamp>, crate::tso::TsoError>> {
        TimestampSource::reserve(self.0.as_ref(), n)
    }

    fn fence(&self, ts: Timestamp) -> replication::BoxFuture<'_, Result<(), crate::tso::TsoError>> {
        TimestampSource::fence(self.0.as_ref(), ts)
    }
}

fn bump(stats: &Mutex<CommitterStats>, groups: u64, commits: u64, conflicts: u64) {
    let mut stats = match stats.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    stats.groups += groups;
    stats.commits += commits;
    stats.conflicts += conflicts;
}
