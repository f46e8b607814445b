//! The set workload: clients add unique elements and read the whole set.
//!
//! An element is *known present* from the earliest of: the completion of an `Ok` add of it, or
//! the completion of an `Ok` read that contained it (which also covers `Info` adds that turned
//! out to have happened). Then:
//! - **lost**: an element known present before the final read (the `Ok` read invoked last) was
//!   invoked is missing from it — an acknowledged write was lost;
//! - **stale**: an earlier `Ok` read invoked after the element was known present lacks it — the
//!   read is not linearizable (the element may have shown up later; it is still a stale read);
//! - **unexpected**: a read contains an element nobody added, or whose every add failed.
//!
//! An element whose adds are all `Info` and that no read shows is fine either way. Run a final
//! read after the cluster has healed and every client is done, so that every acknowledged add
//! precedes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::HistoryError;
use crate::history::{Op, Outcome, validate};

/// A set op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum SetOp {
    /// Add an element (unique across the history).
    Add {
        /// The element.
        element: u64,
    },
    /// Read the whole set; `elements` is known for `Ok` reads only.
    Read {
        /// What the read returned.
        #[serde(default)]
        elements: Option<BTreeSet<u64>>,
    },
}

/// Why an element should not have been read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnexpectedReason {
    /// No op ever added it.
    NeverAdded,
    /// Every add of it failed.
    AddFailed,
}

/// One anomaly of a set history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetAnomaly {
    /// An element known present is missing from the final read.
    Lost {
        /// The element.
        element: u64,
        /// The op that made it known present (its `Ok` add, or a read that showed it).
        known_since: u64,
        /// The final read.
        final_read: u64,
    },
    /// Reads invoked after an element was known present that lack it.
    Stale {
        /// The element.
        element: u64,
        /// The op that made it known present.
        known_since: u64,
        /// The reads lacking it, in history order (the final read is reported as lost).
        reads: Vec<u64>,
    },
    /// Reads that contain an element that should not exist.
    Unexpected {
        /// The element.
        element: u64,
        /// Why it should not exist.
        reason: UnexpectedReason,
        /// The reads that contain it.
        reads: Vec<u64>,
    },
}

impl fmt::Display for SetAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lost {
                element,
                known_since,
                final_read,
            } => write!(
                f,
                "lost: {element}, present since op {known_since}, is missing from the final \
                 read (op {final_read})"
            ),
            Self::Stale {
                element,
                known_since,
                reads,
            } => write!(
                f,
                "stale read: {element}, present since op {known_since}, is missing from later \
                 reads {reads:?}"
            ),
            Self::Unexpected {
                element,
                reason,
                reads,
            } => {
                let why = match reason {
                    UnexpectedReason::NeverAdded => "was never added",
                    UnexpectedReason::AddFailed => "was only added by failed ops",
                };
                write!(f, "unexpected: {element} {why} but reads {reads:?} show it")
            }
        }
    }
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetReport {
    /// Every anomaly: lost, then stale, then unexpected, each by element.
    pub anomalies: Vec<SetAnomaly>,
    /// The final read, if any `Ok` read exists.
    pub final_read: Option<u64>,
    /// Elements with an `Ok` add.
    pub acknowledged: usize,
    /// Elements whose adds were all `Info` that the final read shows.
    pub recovered: usize,
}

impl SetReport {
    /// `true` if nothing was lost, stale or unexpected.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Element {
    ok: bool,
    info: bool,
    fail: bool,
    /// (time, op index) from which the element is known present.
    known: Option<(u64, u64)>,
}

impl Element {
    fn learn(&mut self, time: u64, op: u64) {
        if self.known.is_none_or(|k| (time, op) < k) {
            self.known = Some((time, op));
        }
    }
}

/// Checks a set history.
pub fn check(ops: &[Op<SetOp>]) -> Result<SetReport, HistoryError> {
    validate(ops)?;
    let mut elements: HashMap<u64, Element> = HashMap::new();
    let mut reads: Vec<(&Op<SetOp>, &BTreeSet<u64>)> = Vec::new();
    for op in ops {
        match &op.payload {
            SetOp::Add { element } => {
                let e = elements.entry(*element).or_default();
                match op.outcome {
                    Outcome::Ok => {
                        e.ok = true;
                        e.learn(op.end_ns(), op.index);
                    }
                    Outcome::Info => e.info = true,
                    Outcome::Fail => e.fail = true,
                }
            }
            SetOp::Read {
                elements: Some(read),
            } if op.is_ok() => reads.push((op, read)),
            SetOp::Read { .. } => {}
        }
    }

    let mut unexpected: BTreeMap<u64, (UnexpectedReason, Vec<u64>)> = BTreeMap::new();
    for &(op, read) in &reads {
        for element in read {
            let e = elements.get(element).copied().unwrap_or_default();
            if e.ok || e.info {
                if let Some(e) = elements.get_mut(element) {
                    e.learn(op.end_ns(), op.index);
                }
                continue;
            }
            let reason = if e.fail {
                UnexpectedReason::AddFailed
            } else {
                UnexpectedReason::NeverAdded
            };
            unexpected
                .entry(*element)
                .or_insert_with(|| (reason, Vec::new()))
                .1
                .push(op.index);
        }
    }

    // Elements by the time they became known present.
    let mut known: Vec<(u64, u64, u64)> = elements
        .iter()
        .filter_map(|(&element, e)| e.known.map(|(time, op)| (time, element, op)))
        .collect();
    known.sort_unstable();

    let final_read = reads
        .iter()
        .max_by_key(|(op, _)| (op.invoke_ns, op.index))
        .map(|(op, _)| op.index);
    let mut report = SetReport {
        final_read,
        acknowledged: elements.values().filter(|e| e.ok).count(),
        ..SetReport::default()
    };
    let mut stale: BTreeMap<u64, (u64, Vec<u64>)> = BTreeMap::new();
    for &(op, read) in &reads {
        // Elements known present strictly before the read was invoked.
        let due = known.partition_point(|&(time, _, _)| time < op.invoke_ns);
        let present = read
            .iter()
            .filter(|element| {
                elements
                    .get(element)
                    .and_then(|e| e.known)
                    .is_some_and(|(time, _)| time < op.invoke_ns)
            })
            .count();
        if present == due {
            continue;
        }
        for &(_, element, since) in &known[..due] {
            if read.contains(&element) {
                continue;
            }
            if Some(op.index) == final_read {
                report.anomalies.push(SetAnomaly::Lost {
                    element,
                    known_since: since,
                    final_read: op.index,
                });
            } else {
                stale
                    .entry(element)
                    .or_insert_with(|| (since, Vec::new()))
                    .1
                    .push(op.index);
            }
        }
    }
    report.anomalies.sort_by_key(|a| match a {
        SetAnomaly::Lost { element, .. } => *element,
        _ => 0,
    });
    for (element, (known_since, reads)) in stale {
        report.anomalies.push(SetAnomaly::Stale {
            element,
            known_since,
            reads,
        });
    }
    for (element, (reason, reads)) in unexpected {
        report.anomalies.push(SetAnomaly::Unexpected {
            element,
            reason,
            reads,
        });
    }
    if let Some(&(_, last)) = reads.iter().find(|(op, _)| Some(op.index) == final_read) {
        report.recovered = last
            .iter()
            .filter(|element| elements.get(element).is_some_and(|e| e.info && !e.ok))
            .count();
    }
    Ok(report)
}
