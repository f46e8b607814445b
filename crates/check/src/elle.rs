//! Transactional isolation from list-append histories, after Elle (Kingsbury & Alvaro, "Elle:
//! Inferring Isolation Anomalies from Experimental Observations", VLDB 2020).
//!
//! Each transaction is a list of micro-ops: `append(key, value)` with a value unique per key,
//! and `read(key)` returning the whole list. Because a list only grows, every read reveals the
//! order of all appends before it, so the version order of a key is the longest list any read
//! returned, and every other read must be a prefix of it.
//!
//! From that order the checker infers, over committed transactions (`Ok`, plus `Info` ones
//! whose appends some read observed):
//! - **ww** `T1 → T2`: T2 appended the version right after T1's on some key;
//! - **wr** `T1 → T2`: the last element T2 read of a key was appended by T1;
//! - **rw** `T1 → T2`: T1 read a key up to a version, and T2 appended the next one;
//! - **rt** `T1 → T2` (strict serializability only): T1 completed before T2 was invoked.
//!
//! A cycle in this graph means no serial order explains what was observed. Cycles are
//! classified by their edges as Adya does: G0 (ww only), G1c (ww and wr), G-single (exactly one
//! rw), G2 (two or more rw), each with a `-realtime` variant when the cycle needs an rt edge.
//! Non-cyclic anomalies are found directly: aborted reads (G1a), intermediate reads (G1b),
//! garbage values, duplicates, incompatible orders, and reads inconsistent with the
//! transaction's own earlier appends.
//!
//! What it does not prove: appends no read ever observed cannot be placed in the version order,
//! so they only contribute through the strict-mode "acknowledged append missing from a later
//! read" check. A valid report means no anomaly was *found*; with few reads, many histories are
//! trivially consistent.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::HistoryError;
use crate::graph::{Digraph, LABELS, NO_COMPONENT, RT, RW, Step, WR, WW, erase_loops};
use crate::history::{Op, Outcome, validate};

/// One micro-operation of a list-append transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum MicroOp {
    /// Append `value` to the list at `key`. Values must be unique per key across the history.
    Append {
        /// The list's key.
        key: u64,
        /// The appended value.
        value: u64,
    },
    /// Read the list at `key`; `value` is the list returned, known only for `Ok` transactions
    /// (`None` otherwise, or for an absent list read as `Some(vec![])`).
    Read {
        /// The list's key.
        key: u64,
        /// What the read returned.
        #[serde(default)]
        value: Option<Vec<u64>>,
    },
}

/// The payload of a list-append op: its micro-ops in execution order.
pub type Txn = Vec<MicroOp>;

/// Which isolation level the history must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Some serial order explains every read.
    Serializable,
    /// Some serial order explains every read and also respects real time: a transaction that
    /// completed before another was invoked comes first.
    StrictSerializable,
}

/// Settings of [`check`].
#[derive(Clone, Debug)]
pub struct ElleConfig {
    /// The isolation level to check.
    pub consistency: Consistency,
    /// How many candidate edges a cycle search tries per component and anomaly class before
    /// settling for the shortest cycle found so far. Bounds the search on huge components;
    /// small components are always searched exhaustively, so their cycles are the shortest.
    pub max_cycle_candidates: usize,
}

impl Default for ElleConfig {
    fn default() -> Self {
        Self {
            consistency: Consistency::StrictSerializable,
            max_cycle_candidates: 32,
        }
    }
}

/// The kind of a dependency edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EdgeKind {
    /// Write-write: the target wrote the next version of a key after the source's.
    Ww,
    /// Write-read: the target read the source's write.
    Wr,
    /// Read-write anti-dependency: the source read a version before the target's write.
    Rw,
    /// Real time: the source completed before the target was invoked.
    Realtime,
}

impl EdgeKind {
    fn from_label(label: u8) -> Self {
        match label {
            WW => Self::Ww,
            WR => Self::Wr,
            RW => Self::Rw,
            _ => Self::Realtime,
        }
    }

    /// Short name (`ww`, `wr`, `rw`, `rt`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ww => "ww",
            Self::Wr => "wr",
            Self::Rw => "rw",
            Self::Realtime => "rt",
        }
    }
}

/// Adya's classification of a dependency cycle, with Elle's `-realtime` variants for cycles
/// that need a real-time edge (they violate strict serializability only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CycleKind {
    /// Only ww edges: a write cycle.
    G0,
    /// ww and wr edges, at least one wr: circular information flow.
    G1c,
    /// Exactly one rw edge (read skew, lost update).
    GSingle,
    /// Two or more rw edges (write skew).
    G2,
    /// [`CycleKind::G0`] closed by real-time edges.
    G0Realtime,
    /// [`CycleKind::G1c`] closed by real-time edges.
    G1cRealtime,
    /// [`CycleKind::GSingle`] closed by real-time edges (e.g. a stale read).
    GSingleRealtime,
    /// [`CycleKind::G2`] closed by real-time edges.
    G2Realtime,
}

impl CycleKind {
    /// Classifies a cycle by its edges.
    pub fn of(edges: impl IntoIterator<Item = EdgeKind>) -> Self {
        let (mut rw, mut wr, mut rt) = (0, false, false);
        for edge in edges {
            match edge {
                EdgeKind::Rw => rw += 1,
                EdgeKind::Wr => wr = true,
                EdgeKind::Realtime => rt = true,
                EdgeKind::Ww => {}
            }
        }
        match (rw, wr, rt) {
            (0, false, false) => Self::G0,
            (0, true, false) => Self::G1c,
            (1, _, false) => Self::GSingle,
            (_, _, false) => Self::G2,
            (0, false, true) => Self::G0Realtime,
            (0, true, true) => Self::G1cRealtime,
            (1, _, true) => Self::GSingleRealtime,
            (_, _, true) => Self::G2Realtime,
        }
    }

    /// Elle's name for the anomaly (`G0`, `G1c`, `G-single`, `G2`, `G-single-realtime`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::G0 => "G0",
            Self::G1c => "G1c",
            Self::GSingle => "G-single",
            Self::G2 => "G2",
            Self::G0Realtime => "G0-realtime",
            Self::G1cRealtime => "G1c-realtime",
            Self::GSingleRealtime => "G-single-realtime",
            Self::G2Realtime => "G2-realtime",
        }
    }
}

/// One edge of a reported cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleStep {
    /// Index of the source transaction.
    pub from: u64,
    /// Index of the target transaction.
    pub to: u64,
    /// The dependency this step stands for.
    pub edge: EdgeKind,
    /// Why the dependency holds, in terms of what was observed.
    pub why: String,
}

/// A dependency cycle: `steps[i].to == steps[i + 1].from`, and the last step returns to the
/// first transaction. No transaction appears twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cycle {
    /// Its classification.
    pub kind: CycleKind,
    /// Its edges, in order.
    pub steps: Vec<CycleStep>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind.name())?;
        for step in &self.steps {
            write!(f, "T{} -{}-> ", step.from, step.edge.name())?;
        }
        if let Some(first) = self.steps.first() {
            write!(f, "T{}", first.from)?;
        }
        for step in &self.steps {
            write!(f, "\n  {}", step.why)?;
        }
        Ok(())
    }
}

/// One anomaly found in a list-append history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElleAnomaly {
    /// The same value was appended to a key more than once, so reads cannot tell the appends
    /// apart (a harness bug, or a duplicated write). Dependencies use the first append.
    DuplicateAppend {
        /// The key.
        key: u64,
        /// The repeated value.
        value: u64,
        /// Every op that appended it.
        writers: Vec<u64>,
    },
    /// A read returned a list containing the same value twice: an append applied twice.
    DuplicateElements {
        /// The reading op.
        op: u64,
        /// The key.
        key: u64,
        /// The repeated value.
        value: u64,
    },
    /// Two reads of a key returned lists neither of which is a prefix of the other, so no
    /// single order of appends explains both.
    IncompatibleOrder {
        /// The key.
        key: u64,
        /// The op whose read is not a prefix of the longest.
        op: u64,
        /// What it read.
        read: Vec<u64>,
        /// The op that read the longest list.
        longest_op: u64,
        /// The longest list.
        longest: Vec<u64>,
    },
    /// A transaction's read did not end with its own earlier appends to that key.
    Internal {
        /// The op.
        op: u64,
        /// The key.
        key: u64,
        /// What it read.
        read: Vec<u64>,
        /// What it had appended to the key earlier in the same transaction.
        own_appends: Vec<u64>,
    },
    /// Aborted read: a committed read saw a value appended by a transaction that failed.
    G1a {
        /// The reading op.
        reader: u64,
        /// The failed op that appended the value.
        writer: u64,
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// Intermediate read: a read's last element is an append that is not the writer's final
    /// append to that key, so the read saw the writer's transaction half done.
    G1b {
        /// The reading op.
        reader: u64,
        /// The op that appended the value.
        writer: u64,
        /// The key.
        key: u64,
        /// The intermediate value the read ended with.
        value: u64,
        /// The writer's final append to the key, which the read missed.
        final_value: u64,
    },
    /// A read returned a value nobody appended.
    Garbage {
        /// The reading op.
        reader: u64,
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// A dependency cycle.
    Cycle(Cycle),
}

impl ElleAnomaly {
    /// A short name for the anomaly class: Elle's name for cycles and G1a/G1b, otherwise
    /// `duplicate-append`, `duplicate-elements`, `incompatible-order`, `internal`, `garbage`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DuplicateAppend { .. } => "duplicate-append",
            Self::DuplicateElements { .. } => "duplicate-elements",
            Self::IncompatibleOrder { .. } => "incompatible-order",
            Self::Internal { .. } => "internal",
            Self::G1a { .. } => "G1a",
            Self::G1b { .. } => "G1b",
            Self::Garbage { .. } => "garbage",
            Self::Cycle(cycle) => cycle.kind.name(),
        }
    }
}

impl fmt::Display for ElleAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateAppend {
                key,
                value,
                writers,
            } => write!(
                f,
                "duplicate-append: {value} was appended to key {key} by {writers:?}"
            ),
            Self::DuplicateElements { op, key, value } => write!(
                f,
                "duplicate-elements: T{op} read key {key} with {value} in it twice"
            ),
            Self::IncompatibleOrder {
                key,
                op,
                read,
                longest_op,
                longest,
            } => write!(
                f,
                "incompatible-order: T{op} read key {key} = {read:?}, which is not a prefix of \
                 {longest:?} read by T{longest_op}"
            ),
            Self::Internal {
                op,
                key,
                read,
                own_appends,
            } => write!(
                f,
                "internal: T{op} read key {key} = {read:?} after appending {own_appends:?} to \
                 it itself"
            ),
            Self::G1a {
                reader,
                writer,
                key,
                value,
            } => write!(
                f,
                "G1a: T{reader} read {value} on key {key}, appended by T{writer}, which failed"
            ),
            Self::G1b {
                reader,
                writer,
                key,
                value,
                final_value,
            } => write!(
                f,
                "G1b: T{reader} read key {key} ending at {value}, an intermediate append of \
                 T{writer}, whose final append to it was {final_value}"
            ),
            Self::Garbage { reader, key, value } => write!(
                f,
                "garbage: T{reader} read {value} on key {key}, which nobody appended"
            ),
            Self::Cycle(cycle) => write!(f, "{cycle}"),
        }
    }
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElleReport {
    /// Everything found: direct anomalies, then cycles by component, then (strict mode)
    /// acknowledged appends missing from later reads, as two-edge cycles.
    pub anomalies: Vec<ElleAnomaly>,
    /// Transactions in the dependency graph.
    pub graph_nodes: usize,
    /// Labelled transaction pairs in the dependency graph.
    pub graph_edges: usize,
}

impl ElleReport {
    /// `true` if no anomaly was found.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// Whether an anomaly named `name` (see [`ElleAnomaly::name`]) was found.
    pub fn has(&self, name: &str) -> bool {
        self.anomalies.iter().any(|a| a.name() == name)
    }

    /// The cycles found.
    pub fn cycles(&self) -> impl Iterator<Item = &Cycle> {
        self.anomalies.iter().filter_map(|a| match a {
            ElleAnomaly::Cycle(cycle) => Some(cycle),
            _ => None,
        })
    }
}

/// Who appended a value, and whether it was their last append to the key.
#[derive(Clone, Copy, Debug)]
struct Append {
    /// Position of the writer in the history slice.
    op: usize,
    /// The writer's last append to the same key, if this one is not it.
    final_value: Option<u64>,
}

/// A committed read as the dependency analysis sees it.
#[derive(Clone, Copy, Debug)]
struct Read<'a> {
    op: usize,
    key: u64,
    /// The whole list returned.
    full: &'a [u64],
    /// The prefix written by other transactions (the list minus the reader's own appends).
    external: &'a [u64],
}

/// Why a dependency edge holds; the first witness of each label is kept.
#[derive(Clone, Copy, Debug, Default)]
struct Why {
    /// Key, the source's version, the target's next version.
    ww: Option<(u64, u64, u64)>,
    /// Key, the value read last.
    wr: Option<(u64, u64)>,
    /// Key, the last value read (`None`: empty), the target's next version.
    rw: Option<(u64, Option<u64>, u64)>,
}

/// Checks a list-append history. Fails only if the history itself is malformed.
pub fn check(ops: &[Op<Txn>], config: &ElleConfig) -> Result<ElleReport, HistoryError> {
    validate(ops)?;
    let strict = config.consistency == Consistency::StrictSerializable;
    let mut anomalies = Vec::new();

    let appends = index_appends(ops, &mut anomalies);
    let reads = committed_reads(ops, &mut anomalies);
    let orders = version_orders(ops, &reads, &mut anomalies);
    let observed = observed_writers(ops, &reads, &appends, &mut anomalies);

    // Nodes: committed transactions, and indeterminate ones known to have committed.
    let mut node_of = vec![u32::MAX; ops.len()];
    let mut op_of = Vec::new();
    for (pos, op) in ops.iter().enumerate() {
        if op.is_ok() || (op.is_info() && observed.contains(&pos)) {
            node_of[pos] = op_of.len() as u32;
            op_of.push(pos);
        }
    }

    let mut whys: HashMap<(u32, u32), Why> = HashMap::new();
    let mut edges = Vec::new();
    let mut add = |from: usize, to: usize, label: u8, update: &dyn Fn(&mut Why)| {
        let (a, b) = (node_of[from], node_of[to]);
        if a == u32::MAX || b == u32::MAX || a == b {
            return;
        }
        edges.push((a, b, label));
        update(whys.entry((a, b)).or_default());
    };

    // ww: consecutive versions of each key written by different committed transactions.
    let mut keys: Vec<u64> = orders.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let Some(order) = orders.get(&key) else {
            continue;
        };
        let mut previous: Option<(usize, u64)> = None;
        for &value in order.values {
            let Some(append) = appends.get(&(key, value)) else {
                continue;
            };
            if node_of[append.op] == u32::MAX {
                continue;
            }
            if let Some((writer, previous_value)) = previous {
                add(writer, append.op, WW, &|w| {
                    w.ww.get_or_insert((key, previous_value, value));
                });
            }
            previous = Some((append.op, value));
        }
    }

    // wr and rw from every read consistent with its key's order.
    for read in &reads {
        let Some(order) = orders.get(&read.key) else {
            continue;
        };
        if !order.values.starts_with(read.full) {
            continue;
        }
        let key = read.key;
        if let Some(&last) = read.external.last()
            && let Some(append) = appends.get(&(key, last))
        {
            add(append.op, read.op, WR, &|w| {
                w.wr.get_or_insert((key, last));
            });
        }
        let next = order.values[read.external.len()..]
            .iter()
            .filter_map(|value| appends.get(&(key, *value)).map(|a| (a.op, *value)))
            .find(|(writer, _)| node_of[*writer] != u32::MAX);
        if let Some((writer, value)) = next {
            let last = read.external.last().copied();
            add(read.op, writer, RW, &|w| {
                w.rw.get_or_insert((key, last, value));
            });
        }
    }

    if strict {
        for (from, to) in realtime_edges(ops, &op_of) {
            edges.push((from, to, RT));
        }
    }
    let graph = Digraph::from_edges(op_of.len(), edges);
    let explain = Explainer {
        ops,
        op_of: &op_of,
        whys: &whys,
    };
    let label_mask = if strict {
        WW | WR | RW | RT
    } else {
        WW | WR | RW
    };
    for cycle in find_cycles(&graph, label_mask, config.max_cycle_candidates.max(1)) {
        anomalies.push(ElleAnomaly::Cycle(explain.cycle(&cycle)));
    }
    if strict {
        missing_appends(ops, &appends, &reads, &mut anomalies);
    }
    Ok(ElleReport {
        anomalies,
        graph_nodes: graph.len(),
        graph_edges: graph.edge_count(),
    })
}

/// Indexes every append by (key, value), reporting values appended twice.
fn index_appends(ops: &[Op<Txn>], anomalies: &mut Vec<ElleAnomaly>) -> HashMap<(u64, u64), Append> {
    let mut appends: HashMap<(u64, u64), Append> = HashMap::new();
    let mut duplicates: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for (pos, op) in ops.iter().enumerate() {
        let mut last_append: HashMap<u64, u64> = HashMap::new();
        for mop in op.payload.iter().rev() {
            if let MicroOp::Append { key, value } = *mop {
                last_append.entry(key).or_insert(value);
            }
        }
        for mop in &op.payload {
            let MicroOp::Append { key, value } = *mop else {
                continue;
            };
            let final_value = last_append.get(&key).copied().filter(|&last| last != value);
            if let Some(first) = appends.get(&(key, value)) {
                duplicates
                    .entry((key, value))
                    .or_insert_with(|| vec![ops[first.op].index])
                    .push(op.index);
                continue;
            }
            appends.insert(
                (key, value),
                Append {
                    op: pos,
                    final_value,
                },
            );
        }
    }
    let mut duplicates: Vec<_> = duplicates.into_iter().collect();
    duplicates.sort_unstable();
    for ((key, value), writers) in duplicates {
        anomalies.push(ElleAnomaly::DuplicateAppend {
            key,
            value,
            writers,
        });
    }
    appends
}

/// Every read of a committed transaction whose result is known, with its external part;
/// reports reads inconsistent with the transaction's own appends, and duplicate elements.
fn committed_reads<'a>(ops: &'a [Op<Txn>], anomalies: &mut Vec<ElleAnomaly>) -> Vec<Read<'a>> {
    let mut reads = Vec::new();
    for (pos, op) in ops.iter().enumerate() {
        if !op.is_ok() {
            continue;
        }
        let mut own: HashMap<u64, Vec<u64>> = HashMap::new();
        for mop in &op.payload {
            match mop {
                MicroOp::Append { key, value } => own.entry(*key).or_default().push(*value),
                MicroOp::Read {
                    key,
                    value: Some(list),
                } => {
                    let mut seen = HashSet::new();
                    if let Some(&value) = list.iter().find(|&&v| !seen.insert(v)) {
                        anomalies.push(ElleAnomaly::DuplicateElements {
                            op: op.index,
                            key: *key,
                            value,
                        });
                    }
                    let own_appends = own.get(key).map(Vec::as_slice).unwrap_or_default();
                    if !list.ends_with(own_appends) {
                        anomalies.push(ElleAnomaly::Internal {
                            op: op.index,
                            key: *key,
                            read: list.clone(),
                            own_appends: own_appends.to_vec(),
                        });
                        continue;
                    }
                    reads.push(Read {
                        op: pos,
                        key: *key,
                        full: list,
                        external: &list[..list.len() - own_appends.len()],
                    });
                }
                MicroOp::Read { value: None, .. } => {}
            }
        }
    }
    reads
}

/// The inferred version order of a key: the longest list read.
#[derive(Debug)]
struct VersionOrder<'a> {
    values: &'a [u64],
}

/// Per key, the longest read; reports reads that are not a prefix of it.
fn version_orders<'a>(
    ops: &[Op<Txn>],
    reads: &[Read<'a>],
    anomalies: &mut Vec<ElleAnomaly>,
) -> HashMap<u64, VersionOrder<'a>> {
    let mut longest: HashMap<u64, &Read<'a>> = HashMap::new();
    for read in reads {
        let entry = longest.entry(read.key).or_insert(read);
        if read.full.len() > entry.full.len() {
            *entry = read;
        }
    }
    for read in reads {
        let Some(top) = longest.get(&read.key) else {
            continue;
        };
        if !top.full.starts_with(read.full) {
            anomalies.push(ElleAnomaly::IncompatibleOrder {
                key: read.key,
                op: ops[read.op].index,
                read: read.full.to_vec(),
                longest_op: ops[top.op].index,
                longest: top.full.to_vec(),
            });
        }
    }
    longest
        .into_iter()
        .map(|(key, read)| (key, VersionOrder { values: read.full }))
        .collect()
}

/// Positions of the writers whose appends some committed read observed; reports aborted
/// reads (G1a), intermediate reads (G1b) and garbage.
fn observed_writers(
    ops: &[Op<Txn>],
    reads: &[Read<'_>],
    appends: &HashMap<(u64, u64), Append>,
    anomalies: &mut Vec<ElleAnomaly>,
) -> HashSet<usize> {
    let mut observed = HashSet::new();
    let mut reported = HashSet::new();
    for read in reads {
        for &value in read.full {
            let Some(append) = appends.get(&(read.key, value)) else {
                if reported.insert((read.op, read.key, value)) {
                    anomalies.push(ElleAnomaly::Garbage {
                        reader: ops[read.op].index,
                        key: read.key,
                        value,
                    });
                }
                continue;
            };
            observed.insert(append.op);
            if ops[append.op].outcome == Outcome::Fail
                && reported.insert((read.op, read.key, value))
            {
                anomalies.push(ElleAnomaly::G1a {
                    reader: ops[read.op].index,
                    writer: ops[append.op].index,
                    key: read.key,
                    value,
                });
            }
        }
        if let Some(&last) = read.external.last()
            && let Some(append) = appends.get(&(read.key, last))
            && let Some(final_value) = append.final_value
            && append.op != read.op
        {
            anomalies.push(ElleAnomaly::G1b {
                reader: ops[read.op].index,
                writer: ops[append.op].index,
                key: read.key,
                value: last,
                final_value,
            });
        }
    }
    observed
}

/// Real-time order over the graph's nodes, as (from, to) node pairs, reduced to a sparse
/// subgraph with the same reachability: each op gets an edge from every op on the *frontier*
/// when it is invoked, where the frontier holds the completed ops that no completed op is
/// known to follow. An op leaves the frontier when an op that saw it there completes, since
/// that op now stands for it; every real-time predecessor of an op therefore still reaches it
/// through a path. With concurrency c this makes O(n·c) edges instead of O(n²).
fn realtime_edges(ops: &[Op<Txn>], op_of: &[usize]) -> Vec<(u32, u32)> {
    // (time, is completion, node): at equal times invocations come first, so an op completed
    // at the very instant another was invoked does not precede it.
    let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(op_of.len() * 2);
    for (node, &pos) in op_of.iter().enumerate() {
        let op = &ops[pos];
        events.push((op.invoke_ns, false, node as u32));
        if op.end_ns() != u64::MAX {
            events.push((op.end_ns(), true, node as u32));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<u32> = Vec::new();
    let mut predecessors: Vec<Vec<u32>> = vec![Vec::new(); op_of.len()];
    let mut replaced = vec![false; op_of.len()];
    let mut edges = Vec::new();
    for (_, completion, node) in events {
        if completion {
            for &p in &predecessors[node as usize] {
                replaced[p as usize] = true;
            }
            frontier.retain(|&f| !replaced[f as usize]);
            for &p in &predecessors[node as usize] {
                replaced[p as usize] = false;
            }
            predecessors[node as usize] = Vec::new();
            frontier.push(node);
        } else {
            for &f in &frontier {
                edges.push((f, node));
            }
            predecessors[node as usize] = frontier.clone();
        }
    }
    edges
}

/// Strict mode only: an acknowledged append that no read ever observed, although some
/// committed read of its key was invoked after it completed. That read must have seen it, so
/// the writer and that reader form a G-single-realtime cycle (`writer rt→ reader rw→ writer`).
fn missing_appends(
    ops: &[Op<Txn>],
    appends: &HashMap<(u64, u64), Append>,
    reads: &[Read<'_>],
    anomalies: &mut Vec<ElleAnomaly>,
) {
    let mut readers: HashMap<u64, Vec<(u64, usize, Option<u64>)>> = HashMap::new();
    for read in reads {
        readers.entry(read.key).or_default().push((
            ops[read.op].invoke_ns,
            read.op,
            read.external.last().copied(),
        ));
    }
    for list in readers.values_mut() {
        list.sort_unstable();
    }
    let observed: HashSet<(u64, u64)> = reads
        .iter()
        .flat_map(|read| read.full.iter().map(move |v| (read.key, *v)))
        .collect();
    let mut missing: Vec<(u64, u64, usize)> = appends
        .iter()
        .filter(|(kv, append)| ops[append.op].is_ok() && !observed.contains(*kv))
        .map(|(&(key, value), append)| (key, value, append.op))
        .collect();
    missing.sort_unstable();
    for (key, value, writer) in missing {
        let Some(list) = readers.get(&key) else {
            continue;
        };
        let completed = ops[writer].end_ns();
        let first_after = list.partition_point(|&(invoke, _, _)| invoke <= completed);
        let Some(&(invoke, reader, last)) = list[first_after..].iter().find(|r| r.1 != writer)
        else {
            continue;
        };
        let (w, r) = (&ops[writer], &ops[reader]);
        let seen = last.map_or("empty".to_string(), |v| format!("ending at {v}"));
        anomalies.push(ElleAnomaly::Cycle(Cycle {
            kind: CycleKind::GSingleRealtime,
            steps: vec![
                CycleStep {
                    from: w.index,
                    to: r.index,
                    edge: EdgeKind::Realtime,
                    why: format!(
                        "rt: T{} completed at {completed} ns, before T{} was invoked at \
                         {invoke} ns",
                        w.index, r.index
                    ),
                },
                CycleStep {
                    from: r.index,
                    to: w.index,
                    edge: EdgeKind::Rw,
                    why: format!(
                        "rw: T{} read key {key} {seen}, missing T{}'s acknowledged append of \
                         {value}, which no read ever observed",
                        r.index, w.index
                    ),
                },
            ],
        }));
    }
}

/// Finds example cycles, one per strongly connected component and anomaly class, searching
/// from the mildest class to the strongest so that each example is classified as mildly as
/// the graph allows:
/// 1. ww-only components → G0;
/// 2. ww+wr components with a wr-only edge inside → G1c;
/// 3. ww+wr+rw components with an rw-only edge inside → G-single if a ww/wr path closes the
///    cycle, else G2;
/// 4. with rt edges: a cycle through an rt-only edge that joins two different components of
///    step 3 (or leaves them) → the `-realtime` classes. An rt edge inside one component would
///    only decorate a cycle already reported.
///
/// "x-only" means the edge carries no milder label: a ww edge that is also wr closes a G0
/// cycle, not a G1c one. Each cycle goes through a candidate edge and closes with a shortest
/// path (breadth-first); up to `candidates` edges are tried and the shortest cycle kept.
fn find_cycles(graph: &Digraph, mask: u8, candidates: usize) -> Vec<Vec<Step>> {
    let mut cycles = Vec::new();
    let top = graph.components(mask);
    for group in &top.groups {
        let (sub, nodes) = graph.induced(group, mask);
        let mut found = Vec::new();
        let levels: [(u8, u8, &[u8]); 3] = [
            (WW, WW, &[WW]),
            (WW | WR, WR, &[WW | WR]),
            (WW | WR | RW, RW, &[WW | WR, WW | WR | RW]),
        ];
        let mut components = None;
        for (level_mask, candidate, path_masks) in levels {
            let level = sub.components(level_mask);
            for (c, members) in level.groups.iter().enumerate() {
                let member = |n: u32| level.comp[n as usize] == c as u32;
                let is_candidate = |s: Step| s.label == candidate;
                for &path_mask in path_masks {
                    let search = Search {
                        graph: &sub,
                        members,
                        member: &member,
                        is_candidate: &is_candidate,
                        path_mask,
                        require: None,
                        limit: candidates,
                    };
                    if let Some(cycle) = search.shortest_cycle() {
                        found.push(cycle);
                        break;
                    }
                }
            }
            components = Some(level.comp);
        }
        if let Some(comp) = components.filter(|_| mask & RT != 0) {
            let component = |n: u32| comp.get(n as usize).copied().unwrap_or(NO_COMPONENT);
            let joins = |s: Step| {
                s.label == RT
                    && (component(s.from) == NO_COMPONENT || component(s.from) != component(s.to))
            };
            let is_rw = |s: Step| s.label == RW;
            let all: Vec<u32> = (0..sub.len() as u32).collect();
            let attempts: [(EdgeTest<'_>, u8, Option<EdgeTest<'_>>); 4] = [
                (&joins, WW | RT, None),
                (&joins, WW | WR | RT, None),
                (&is_rw, WW | WR | RT, Some(&joins)),
                (&joins, mask, None),
            ];
            for (is_candidate, path_mask, require) in attempts {
                let search = Search {
                    graph: &sub,
                    members: &all,
                    member: &|_| true,
                    is_candidate,
                    path_mask,
                    require,
                    limit: candidates,
                };
                if let Some(cycle) = search.shortest_cycle() {
                    found.push(cycle);
                    break;
                }
            }
        }
        for cycle in found {
            cycles.push(
                cycle
                    .into_iter()
                    .map(|s| Step {
                        from: nodes[s.from as usize],
                        to: nodes[s.to as usize],
                        label: s.label,
                    })
                    .collect(),
            );
        }
    }
    cycles
}

/// A predicate on edges.
type EdgeTest<'a> = &'a dyn Fn(Step) -> bool;

/// One bounded search for a short cycle through a candidate edge.
struct Search<'a> {
    graph: &'a Digraph,
    /// Where candidate edges start.
    members: &'a [u32],
    /// Which nodes the cycle may visit.
    member: &'a dyn Fn(u32) -> bool,
    /// Accepts a candidate edge, given with its mildest label.
    is_candidate: EdgeTest<'a>,
    /// Labels the closing path may use.
    path_mask: u8,
    /// An edge the closing path must use, if any.
    require: Option<EdgeTest<'a>>,
    /// Most candidate edges to try.
    limit: usize,
}

impl Search<'_> {
    /// The shortest cycle found by closing up to `limit` candidate edges with a shortest path,
    /// loop-erased so that no node repeats.
    fn shortest_cycle(&self) -> Option<Vec<Step>> {
        let mut best: Option<Vec<Step>> = None;
        let mut tried = 0;
        for &from in self.members {
            for &(to, labels) in self.graph.edges(from) {
                let Some(label) = LABELS.into_iter().find(|&l| labels & l != 0) else {
                    continue;
                };
                let candidate = Step { from, to, label };
                if !(self.member)(to) || !(self.is_candidate)(candidate) {
                    continue;
                }
                if tried == self.limit || best.as_ref().is_some_and(|b| b.len() == 2) {
                    return best;
                }
                tried += 1;
                let Some(path) =
                    self.graph
                        .shortest_path(self.member, to, from, self.path_mask, self.require)
                else {
                    continue;
                };
                let mut walk = vec![candidate];
                walk.extend(path);
                let cycle = erase_loops(&walk);
                if best.as_ref().is_none_or(|b| cycle.len() < b.len()) {
                    best = Some(cycle);
                }
            }
        }
        best
    }
}

/// Turns graph cycles into reported ones, with the observation behind each edge.
struct Explainer<'a> {
    ops: &'a [Op<Txn>],
    op_of: &'a [usize],
    whys: &'a HashMap<(u32, u32), Why>,
}

impl Explainer<'_> {
    fn cycle(&self, cycle: &[Step]) -> Cycle {
        let steps: Vec<CycleStep> = cycle.iter().map(|s| self.step(*s)).collect();
        Cycle {
            kind: CycleKind::of(steps.iter().map(|s| s.edge)),
            steps,
        }
    }

    fn step(&self, step: Step) -> CycleStep {
        let from = &self.ops[self.op_of[step.from as usize]];
        let to = &self.ops[self.op_of[step.to as usize]];
        let why = self
            .whys
            .get(&(step.from, step.to))
            .copied()
            .unwrap_or_default();
        let (a, b) = (from.index, to.index);
        let text = match (step.label, why) {
            (
                WW,
                Why {
                    ww: Some((key, x, y)),
                    ..
                },
            ) => format!(
                "ww: T{a} appended {x} to key {key}, and T{b} appended {y}, the next version"
            ),
            (
                WR,
                Why {
                    wr: Some((key, x)), ..
                },
            ) => {
                format!("wr: T{b} read key {key} ending at {x}, appended by T{a}")
            }
            (
                RW,
                Why {
                    rw: Some((key, last, y)),
                    ..
                },
            ) => {
                let seen = last.map_or("empty".to_string(), |v| format!("ending at {v}"));
                format!(
                    "rw: T{a} read key {key} {seen}, missing T{b}'s append of {y}, the next version"
                )
            }
            _ => format!(
                "rt: T{a} completed at {} ns, before T{b} was invoked at {} ns",
                from.end_ns(),
                to.invoke_ns
            ),
        };
        CycleStep {
            from: a,
            to: b,
            edge: EdgeKind::from_label(step.label),
            why: text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryBuilder;

    #[test]
    fn realtime_edges_are_a_reduction() {
        // Three ops in sequence, then one concurrent with the third: edges 0→1, 1→2, 1→3 only.
        let mut h = HistoryBuilder::new();
        h.ok(0, 0, 10, vec![]);
        h.ok(0, 20, 30, vec![]);
        h.ok(0, 40, 50, vec![]);
        h.ok(1, 45, 60, vec![]);
        let ops = h.build();
        let mut edges = realtime_edges(&ops, &[0, 1, 2, 3]);
        edges.sort_unstable();
        assert_eq!(edges, vec![(0, 1), (1, 2), (1, 3)]);
    }

    #[test]
    fn cycle_kinds() {
        use EdgeKind::*;
        assert_eq!(CycleKind::of([Ww, Ww]), CycleKind::G0);
        assert_eq!(CycleKind::of([Ww, Wr]), CycleKind::G1c);
        assert_eq!(CycleKind::of([Rw, Wr]), CycleKind::GSingle);
        assert_eq!(CycleKind::of([Rw, Rw]), CycleKind::G2);
        assert_eq!(CycleKind::of([Realtime, Rw]), CycleKind::GSingleRealtime);
        assert_eq!(CycleKind::of([Realtime, Ww]), CycleKind::G0Realtime);
    }
}
