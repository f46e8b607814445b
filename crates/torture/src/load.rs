//! A closed-loop write load through the client protocol that records every operation, and the
//! checks made from the record: which writes were acknowledged, how long the cluster was
//! unavailable around a fault, whether every acknowledged write is in the database.
//!
//! The writes are `cluster:write({client, seq})` of `tests/convex-project` (one document per
//! write). A client sends to one node and moves to the next on a transport error or an error
//! status. Only an answer with `status: success` is an acknowledgement; every other outcome is
//! indeterminate (the write may or may not have happened) — never "failed".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http;

/// How long one write may take before it counts as indeterminate.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One recorded write.
#[derive(Clone, Debug)]
pub struct WriteOp {
    pub client: u64,
    pub seq: u64,
    /// Since the load started.
    pub invoked: Duration,
    pub completed: Duration,
    /// `Ok` = acknowledged; `Err` = indeterminate, with what was seen.
    pub outcome: Result<(), String>,
}

/// Live counters of a running load.
#[derive(Default)]
struct Progress {
    acks: AtomicU64,
    /// Completion time of the latest acknowledgement, in microseconds since the start.
    last_ack_us: AtomicU64,
}

/// A running load; [`WriteLoad::stop`] ends it and returns the record.
pub struct WriteLoad {
    started: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    threads: Vec<JoinHandle<Vec<WriteOp>>>,
}

impl WriteLoad {
    /// `clients` closed-loop writers spread over `apis` (client protocol addresses).
    pub fn start(apis: Vec<String>, clients: u64) -> Self {
        assert!(!apis.is_empty(), "no node to write to");
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let threads = (0..clients)
            .map(|client| {
                let apis = apis.clone();
                let stop = Arc::clone(&stop);
                let progress = Arc::clone(&progress);
                std::thread::spawn(move || writer(client, apis, started, stop, progress))
            })
            .collect();
        Self {
            started,
            stop,
            progress,
            threads,
        }
    }

    /// Acknowledged writes so far.
    pub fn acks(&self) -> u64 {
        self.progress.acks.load(Ordering::SeqCst)
    }

    /// When the latest acknowledgement arrived (since the start).
    pub fn last_ack(&self) -> Duration {
        Duration::from_micros(self.progress.last_ack_us.load(Ordering::SeqCst))
    }

    /// Waits until an acknowledgement arrives after `after`; false after `timeout`.
    pub fn wait_for_ack_after(&self, after: Duration, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.last_ack() <= after {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Time since the load started (the clock of [`WriteOp`]).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the writers (each finishes its current write) and returns every operation.
    pub fn stop(self) -> LoadRecord {
        self.stop.store(true, Ordering::SeqCst);
        let mut ops: Vec<WriteOp> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("writer thread"))
            .collect();
        ops.sort_by_key(|op| op.completed);
        LoadRecord { ops }
    }
}

fn writer(
    client: u64,
    apis: Vec<String>,
    started: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Vec<WriteOp> {
    let mut ops = Vec::new();
    let mut target = client as usize % apis.len();
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let invoked = started.elapsed();
        let answer = http::call(
            &apis[target],
            "mutation",
            "cluster:write",
            &json!({ "client": client, "seq": seq }),
            WRITE_TIMEOUT,
        );
        let completed = started.elapsed();
        let outcome = match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(message)) => Err(message),
            Err(e) => Err(format!("transport: {e}")),
        };
        if outcome.is_ok() {
            progress.acks.fetch_add(1, Ordering::SeqCst);
            progress
                .last_ack_us
                .fetch_max(completed.as_micros() as u64, Ordering::SeqCst);
        } else {
            target = (target + 1) % apis.len();
            std::thread::sleep(Duration::from_millis(5));
        }
        ops.push(WriteOp {
            client,
            seq,
            invoked,
            completed,
            outcome,
        });
    }
    ops
}

/// Everything a load did, ordered by completion time.
pub struct LoadRecord {
    pub ops: Vec<WriteOp>,
}

impl LoadRecord {
    pub fn acknowledged(&self) -> BTreeSet<(u64, u64)> {
        self.ops
            .iter()
            .filter(|op| op.outcome.is_ok())
            .map(|op| (op.client, op.seq))
            .collect()
    }

    pub fn indeterminate(&self) -> BTreeSet<(u64, u64)> {
        self.ops
            .iter()
            .filter(|op| op.outcome.is_err())
            .map(|op| (op.client, op.seq))
            .collect()
    }

    /// Client-visible unavailability around a fault at `at`: from the last acknowledgement at
    /// or before `at` to the first acknowledgement of a write *sent* after `at` (an answer to
    /// a write sent before the fault may still arrive after it, relayed by a surviving node,
    /// and says nothing about whether the cluster recovered). `None` if either is missing.
    pub fn unavailability(&self, at: Duration) -> Option<Duration> {
        let acks = self.ops.iter().filter(|op| op.outcome.is_ok());
        let before = acks
            .clone()
            .map(|op| op.completed)
            .filter(|t| *t <= at)
            .max()?;
        let after = acks
            .filter(|op| op.invoked > at)
            .map(|op| op.completed)
            .min()?;
        Some(after.saturating_sub(before))
    }

    /// The longest time without an acknowledgement between the first and the last one.
    pub fn longest_gap(&self) -> Duration {
        let acks: Vec<Duration> = self
            .ops
            .iter()
            .filter(|op| op.outcome.is_ok())
            .map(|op| op.completed)
            .collect();
        acks.windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// Acknowledged writes per second over the whole run.
    pub fn throughput(&self) -> f64 {
        let Some(last) = self.ops.last() else {
            return 0.0;
        };
        self.acknowledged().len() as f64 / last.completed.as_secs_f64().max(1e-9)
    }

    /// Counts of outcomes by a short reason, for the report.
    pub fn outcome_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for op in &self.ops {
            let key = match &op.outcome {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("indeterminate: {}", e.chars().take(60).collect::<String>()),
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }
}

/// Every `cluster:write` document, read page by page through `api`: `(client, seq)` → count.
pub fn read_all_writes(api: &str) -> Result<BTreeMap<(u64, u64), u64>, String> {
    let mut found = BTreeMap::new();
    let mut cursor = serde_json::Value::Null;
    for _ in 0..100_000 {
        let args = json!({ "paginationOpts": { "numItems": 2000, "cursor": cursor } });
        let page = http::call(
            api,
            "query",
            "cluster:writes",
            &args,
            Duration::from_secs(60),
        )
        .map_err(|e| e.to_string())??;
        for doc in page["page"].as_array().ok_or("no page")? {
            let key = (
                doc["client"].as_f64().ok_or("no client")? as u64,
                doc["seq"].as_f64().ok_or("no seq")? as u64,
            );
            *found.entry(key).or_insert(0) += 1;
        }
        if page["isDone"] == true {
            return Ok(found);
        }
        cursor = page["continueCursor"].clone();
    }
    Err("too many pages".into())
}

/// Checks a final read against a record: every acknowledged write is present exactly once,
/// and nothing is present that was not attempted. Returns the problems found.
pub fn check_writes(record: &LoadRecord, found: &BTreeMap<(u64, u64), u64>) -> Vec<String> {
    let acked = record.acknowledged();
    let attempted: BTreeSet<(u64, u64)> = record.ops.iter().map(|op| (op.client, op.seq)).collect();
    let mut problems = Vec::new();
    for key in &acked {
        if !found.contains_key(key) {
            problems.push(format!("acknowledged write {key:?} is missing"));
        }
    }
    for (key, count) in found {
        if *count > 1 {
            problems.push(format!("write {key:?} is present {count} times"));
        }
        if !attempted.contains(key) {
            problems.push(format!("write {key:?} is present but was never attempted"));
        }
    }
    problems
}
