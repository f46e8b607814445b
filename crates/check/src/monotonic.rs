//! Monotonic reads per client: once a client has observed a snapshot (a read timestamp) or a
//! version of a key, none of its later reads may observe an older one. This is a session
//! guarantee, weaker than linearizability and checked per client only; Convex clients rely on
//! it when they move between replicas.
//!
//! Ops of one process are ordered by invocation (a client issues one request at a time). Only
//! `Ok` ops are checked, and each is compared with the newest observation so far, so a long
//! regression is reported once, against the op that set the bar.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::HistoryError;
use crate::history::{Op, validate};

/// What one op observed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The snapshot timestamp the op read at, if the database reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_ts: Option<u64>,
    /// Per key, the version read (a commit timestamp or a per-key counter).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<u64, u64>,
}

/// A later op of a client observed something older than an earlier op of the same client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MonotonicAnomaly {
    /// The read timestamp went back.
    ReadTsWentBack {
        /// The client.
        process: u64,
        /// The earlier op, which read at `earlier_ts`.
        earlier: u64,
        /// Its timestamp.
        earlier_ts: u64,
        /// The later op, which read at `later_ts < earlier_ts`.
        later: u64,
        /// Its timestamp.
        later_ts: u64,
    },
    /// The version of a key went back.
    VersionWentBack {
        /// The client.
        process: u64,
        /// The key.
        key: u64,
        /// The earlier op, which saw `earlier_version`.
        earlier: u64,
        /// The version it saw.
        earlier_version: u64,
        /// The later op, which saw `later_version < earlier_version`.
        later: u64,
        /// The version it saw.
        later_version: u64,
    },
}

impl fmt::Display for MonotonicAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadTsWentBack {
                process,
                earlier,
                earlier_ts,
                later,
                later_ts,
            } => write!(
                f,
                "process {process}: op {later} read at ts {later_ts}, older than ts \
                 {earlier_ts} read by its earlier op {earlier}"
            ),
            Self::VersionWentBack {
                process,
                key,
                earlier,
                earlier_version,
                later,
                later_version,
            } => write!(
                f,
                "process {process}: op {later} saw version {later_version} of key {key}, older \
                 than version {earlier_version} seen by its earlier op {earlier}"
            ),
        }
    }
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonotonicReport {
    /// Every regression, by process then history order.
    pub anomalies: Vec<MonotonicAnomaly>,
}

impl MonotonicReport {
    /// `true` if no client's reads went back.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// The newest observation of one client so far: (value, op index) per thing observed.
#[derive(Default)]
struct Session {
    read_ts: Option<(u64, u64)>,
    versions: HashMap<u64, (u64, u64)>,
}

/// Checks that every client's reads are monotonic.
pub fn check(ops: &[Op<Observation>]) -> Result<MonotonicReport, HistoryError> {
    validate(ops)?;
    let mut by_process: BTreeMap<u64, Vec<&Op<Observation>>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.is_ok()) {
        by_process.entry(op.process).or_default().push(op);
    }
    let mut report = MonotonicReport::default();
    for (process, mut list) in by_process {
        list.sort_by_key(|op| (op.invoke_ns, op.index));
        let mut session = Session::default();
        for op in list {
            if let Some(ts) = op.payload.read_ts {
                match session.read_ts {
                    Some((newest, earlier)) if ts < newest => {
                        report.anomalies.push(MonotonicAnomaly::ReadTsWentBack {
                            process,
                            earlier,
                            earlier_ts: newest,
                            later: op.index,
                            later_ts: ts,
                        });
                    }
                    Some((newest, _)) if ts == newest => {}
                    _ => session.read_ts = Some((ts, op.index)),
                }
            }
            for (&key, &version) in &op.payload.versions {
                match session.versions.get(&key) {
                    Some(&(newest, earlier)) if version < newest => {
                        report.anomalies.push(MonotonicAnomaly::VersionWentBack {
                            process,
                            key,
                            earlier,
                            earlier_version: newest,
                            later: op.index,
                            later_version: version,
                        });
                    }
                    Some(&(newest, _)) if version == newest => {}
                    _ => {
                        session.versions.insert(key, (version, op.index));
                    }
                }
            }
        }
    }
    Ok(report)
}
