//! Linearizability of independent registers: each key is a register (initially unset) with
//! `write(v)`, `read() -> v` and `cas(expected, new)`, and the history of each key must be
//! explainable by applying its ops one at a time, each at an instant between its invocation
//! and its completion (`Info` ops: at any instant after invocation, or never).
//!
//! The search is Wing & Gong's, with Lowe's just-in-time linearization and memoization
//! ("Testing for linearizability", 2017): the invocations and completions of a key are put on
//! one time-ordered list; the search repeatedly tries to linearize an op invoked before the
//! earliest pending completion (only those may go first), and backtracks when it reaches the
//! completion of an op it has not linearized. A configuration — which ops are linearized and
//! the register's value — that was already explored is not explored again, so the work is
//! bounded by the number of distinct configurations, about n·2^c for n ops at concurrency c.
//! A valid history is usually found on the first pass; an invalid one whose violation comes
//! late may need every configuration before it. The search is complete: `Linearizable` and
//! `NotLinearizable` are proofs. Past `max_steps_per_key` it gives up with `Unknown` rather
//! than run on.
//!
//! Reductions keep `Info` ops cheap. An `Info` read is dropped (it has no effect and no known
//! result). An `Info` write or cas of `v` matters only to the *observers* of `v` (`Ok` reads
//! returning `v`, cas ops expecting `v`): linearized after all of them, it could be left out
//! without making any op illegal (the register would hold `v` until the next write, and
//! nothing reads `v` there). So it is dropped if no observer ends after its invocation, and
//! otherwise the search stops considering it once the last observer has ended, instead of
//! carrying "linearized or not" for it to the end of the history, which would double the
//! configurations for every pending `Info` op.
//!
//! Before the search, two cheap checks catch the commonest violations with a short witness: a
//! value read that nobody could have written yet, and a stale read (see `cheap_witness`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::HistoryError;
use crate::history::{Op, Outcome, validate};

/// What a register op does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum RegisterFn {
    /// Read the register; `value` is what it returned (`None`: never written). Known for `Ok`
    /// ops only.
    Read {
        /// The value read.
        #[serde(default)]
        value: Option<u64>,
    },
    /// Write `value`.
    Write {
        /// The value written.
        value: u64,
    },
    /// If the register holds `expected` (`None`: never written), write `new`. A cas whose
    /// comparison failed must be recorded as `Fail`.
    Cas {
        /// The value compared against.
        expected: Option<u64>,
        /// The value written on success.
        new: u64,
    },
}

impl RegisterFn {
    /// The register's next value if this op is legal on `state`.
    fn step(self, state: Option<u64>) -> Option<Option<u64>> {
        match self {
            Self::Read { value } => (value == state).then_some(state),
            Self::Write { value } => Some(Some(value)),
            Self::Cas { expected, new } => (expected == state).then_some(Some(new)),
        }
    }
}

impl fmt::Display for RegisterFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<u64>| v.map_or("unset".to_string(), |v| v.to_string());
        match self {
            Self::Read { value } => write!(f, "read -> {}", show(*value)),
            Self::Write { value } => write!(f, "write {value}"),
            Self::Cas { expected, new } => write!(f, "cas {} -> {new}", show(*expected)),
        }
    }
}

/// A register op on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOp {
    /// The register.
    pub key: u64,
    /// What the op does.
    #[serde(flatten)]
    pub f: RegisterFn,
}

/// Settings of [`check`].
#[derive(Clone, Debug)]
pub struct LinearConfig {
    /// Search steps per key before giving up with [`Verdict::Unknown`]. Memory grows with the
    /// steps taken (one memoized configuration per step at most, tens of bytes each).
    pub max_steps_per_key: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            max_steps_per_key: 1_000_000,
        }
    }
}

/// Why a key's history is not linearizable: the op at which the deepest partial linearization
/// got stuck, and the ops that overlapped it (the usual suspects).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witness {
    /// The op that could not be linearized.
    pub op: u64,
    /// What it did.
    pub f: RegisterFn,
    /// Ops of the same key whose intervals overlap it.
    pub concurrent: Vec<u64>,
    /// How many ops the deepest partial linearization held before getting stuck.
    pub linearized: usize,
    /// The register's value in that partial linearization.
    pub state: Option<u64>,
    /// A human-readable account.
    pub explanation: String,
}

/// The verdict on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Some linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable(Witness),
    /// The search gave up.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// The result for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    /// The key.
    pub key: u64,
    /// Ops searched (after dropping failed ops and irrelevant `Info` ones).
    pub ops: usize,
    /// Search steps taken.
    pub steps: u64,
    /// The verdict.
    pub verdict: Verdict,
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearReport {
    /// One entry per key, by key.
    pub keys: Vec<KeyReport>,
}

impl LinearReport {
    /// `true` if every key is linearizable.
    pub fn is_valid(&self) -> bool {
        self.keys
            .iter()
            .all(|k| matches!(k.verdict, Verdict::Linearizable))
    }

    /// `true` if some key is proven not linearizable.
    pub fn is_invalid(&self) -> bool {
        self.keys
            .iter()
            .any(|k| matches!(k.verdict, Verdict::NotLinearizable(_)))
    }

    /// `true` if neither proven valid nor invalid: some search gave up.
    pub fn is_unknown(&self) -> bool {
        !self.is_valid() && !self.is_invalid()
    }

    /// Keys proven not linearizable, with their witnesses.
    pub fn failures(&self) -> impl Iterator<Item = (u64, &Witness)> {
        self.keys.iter().filter_map(|k| match &k.verdict {
            Verdict::NotLinearizable(w) => Some((k.key, w)),
            _ => None,
        })
    }
}

/// Checks every key of a register history independently.
pub fn check(ops: &[Op<RegisterOp>], config: &LinearConfig) -> Result<LinearReport, HistoryError> {
    validate(ops)?;
    let mut by_key: BTreeMap<u64, Vec<&Op<RegisterOp>>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.payload.key).or_default().push(op);
    }
    let keys = by_key
        .into_iter()
        .map(|(key, ops)| check_key(key, &ops, config))
        .collect();
    Ok(LinearReport { keys })
}

/// One op of the key being searched.
#[derive(Clone, Copy, Debug)]
struct Call {
    index: u64,
    f: RegisterFn,
    invoke_ns: u64,
    /// `None` for `Info` ops: they never force a decision.
    complete_ns: Option<u64>,
    /// For an `Info` op, when the last op that could observe its value ends: past that,
    /// leaving it out is as good as linearizing it, so the search stops considering it.
    expires_ns: Option<u64>,
}

fn check_key(key: u64, ops: &[&Op<RegisterOp>], config: &LinearConfig) -> KeyReport {
    // Per value, when its last observer (a read of it, or a cas expecting it) may end. An
    // Info op writing a value matters only until then (see the module docs).
    let mut deadlines: HashMap<u64, u64> = HashMap::new();
    for op in ops.iter().filter(|op| !op.is_fail()) {
        let seen = match op.payload.f {
            RegisterFn::Read { value: Some(v) } if op.is_ok() => v,
            RegisterFn::Cas {
                expected: Some(v), ..
            } => v,
            _ => continue,
        };
        let deadline = deadlines.entry(seen).or_insert(0);
        *deadline = (*deadline).max(op.end_ns());
    }
    let mut calls: Vec<Call> = ops
        .iter()
        .filter_map(|op| {
            let f = op.payload.f;
            let call = Call {
                index: op.index,
                f,
                invoke_ns: op.invoke_ns,
                complete_ns: None,
                expires_ns: None,
            };
            match (op.outcome, f) {
                (Outcome::Ok, _) => Some(Call {
                    complete_ns: op.complete_ns,
                    ..call
                }),
                (Outcome::Fail, _) | (Outcome::Info, RegisterFn::Read { .. }) => None,
                (
                    Outcome::Info,
                    RegisterFn::Write { value } | RegisterFn::Cas { new: value, .. },
                ) => match deadlines.get(&value) {
                    Some(&deadline) if deadline >= op.invoke_ns => Some(Call {
                        expires_ns: (deadline != u64::MAX).then_some(deadline),
                        ..call
                    }),
                    _ => None,
                },
            }
        })
        .collect();
    calls.sort_by_key(|c| (c.invoke_ns, c.index));
    if let Some(witness) = cheap_witness(key, &calls) {
        return KeyReport {
            key,
            ops: calls.len(),
            steps: 0,
            verdict: Verdict::NotLinearizable(witness),
        };
    }
    let mut search = Wgl::new(&calls);
    let verdict = match search.run(config.max_steps_per_key) {
        Search::Linearizable => Verdict::Linearizable,
        Search::NotLinearizable => Verdict::NotLinearizable(search.witness(key, &calls)),
        Search::GaveUp => Verdict::Unknown {
            reason: format!(
                "gave up after {} steps (max_steps_per_key) with {} configurations memoized",
                search.steps,
                search.cache.len()
            ),
        },
    };
    KeyReport {
        key,
        ops: calls.len(),
        steps: search.steps,
        verdict,
    }
}

/// Cheap proofs before the search, for the two commonest violations. Each concerns an
/// *observer*: an `Ok` read of `v`, or an `Ok` cas expecting `v`.
/// - **Value from nowhere**: no op that writes `v` was invoked before the observer completed
///   (for `v` unset: never a problem, the register starts unset).
/// - **Stale read**: every op that writes `v` had completed before some `Ok` op writing another
///   value was invoked, and that op completed before the observer was invoked. In any
///   linearization the other value then sits between every write of `v` and the observer.
///
/// Both take O(n log n) and give a short witness; the search would find them too, but only
/// after exhausting every configuration before the observer.
fn cheap_witness(key: u64, calls: &[Call]) -> Option<Witness> {
    // Per value: earliest invocation and latest possible end among the ops writing it.
    let mut writers: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    // Ok ops that change the value: (invoke, end, index).
    let mut changes: Vec<(u64, u64, u64)> = Vec::new();
    for call in calls {
        if let RegisterFn::Write { value } | RegisterFn::Cas { new: value, .. } = call.f {
            let end = call.complete_ns.unwrap_or(u64::MAX);
            let entry = writers
                .entry(value)
                .or_insert((call.invoke_ns, end, call.index));
            entry.0 = entry.0.min(call.invoke_ns);
            if end >= entry.1 {
                (entry.1, entry.2) = (end, call.index);
            }
            if let Some(complete) = call.complete_ns {
                changes.push((call.invoke_ns, complete, call.index));
            }
        }
    }
    changes.sort_unstable();
    // suffix[i]: the change with the earliest end among changes[i..].
    let mut suffix: Vec<(u64, u64)> = vec![(u64::MAX, 0); changes.len() + 1];
    for i in (0..changes.len()).rev() {
        suffix[i] = suffix[i + 1].min((changes[i].1, changes[i].2));
    }
    let describe = |index: u64| {
        calls
            .iter()
            .find(|c| c.index == index)
            .map_or(String::new(), |c| {
                let end = c.complete_ns.map_or("never".to_string(), |t| t.to_string());
                format!(
                    "op {index} ({}, invoked {}, completed {end})",
                    c.f, c.invoke_ns
                )
            })
    };
    for call in calls {
        let (RegisterFn::Read { value: seen } | RegisterFn::Cas { expected: seen, .. }) = call.f
        else {
            continue;
        };
        let Some(end) = call.complete_ns else {
            continue;
        };
        let last_write = match seen {
            None => None,
            Some(v) => match writers.get(&v) {
                Some(&(first, last_end, last_writer)) if first <= end => {
                    Some((last_end, last_writer))
                }
                _ => {
                    return Some(Witness {
                        op: call.index,
                        f: call.f,
                        concurrent: Vec::new(),
                        linearized: 0,
                        state: None,
                        explanation: format!(
                            "key {key}: {} observed {v}, which no op wrote before it completed",
                            describe(call.index)
                        ),
                    });
                }
            },
        };
        // Changes invoked after every write of the observed value ended.
        let from = match last_write {
            None => 0,
            Some((last_end, _)) => changes.partition_point(|c| c.0 <= last_end),
        };
        let (other_end, other) = suffix[from];
        if other_end < call.invoke_ns {
            let other_call = calls.iter().find(|c| c.index == other);
            let explanation = match (seen, last_write) {
                (Some(v), Some((_, writer))) => format!(
                    "key {key}: stale read: {} observed {v}, but was invoked after {} had \
                     completed, which was itself invoked after every write of {v} had \
                     completed (the last: {})",
                    describe(call.index),
                    describe(other),
                    describe(writer)
                ),
                _ => format!(
                    "key {key}: stale read: {} observed the register unset, but was invoked \
                     after {} had completed",
                    describe(call.index),
                    describe(other)
                ),
            };
            return Some(Witness {
                op: call.index,
                f: call.f,
                concurrent: vec![other],
                linearized: 0,
                state: other_call.and_then(|c| match c.f {
                    RegisterFn::Write { value } | RegisterFn::Cas { new: value, .. } => Some(value),
                    RegisterFn::Read { .. } => None,
                }),
                explanation,
            });
        }
    }
    None
}

/// A memoized configuration: the set of linearized ops (as the positions where its
/// run-length encoding flips, starting from "not linearized") and the register's value.
#[derive(Debug, PartialEq, Eq)]
struct Config {
    hash: u64,
    flips: Box<[u32]>,
    state: Option<u64>,
}

impl Hash for Config {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        hasher.write_u64(self.hash);
    }
}

/// The head sentinel of the event list.
const HEAD: usize = 0;

/// How a search ended.
enum Search {
    Linearizable,
    NotLinearizable,
    GaveUp,
}

/// What an entry of the event list marks. At equal times invocations come first (an op
/// completed at the instant another was invoked overlaps it), then completions, then expiries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// An op was invoked: it may be linearized from here on.
    Call,
    /// An `Ok` op completed: it must be linearized by here.
    Return,
    /// An `Info` op's value can no longer be observed: drop it if not linearized.
    Expiry,
    /// The head or tail of the list.
    Sentinel,
}

/// One decision on the search stack.
#[derive(Clone, Copy, Debug)]
struct Decision {
    op: usize,
    /// The register's value before it.
    before: Option<u64>,
    /// `true` if the op was dropped at its expiry (a forced move with no alternative).
    dropped: bool,
}

/// The search state for one key.
struct Wgl {
    /// Doubly linked list over the events (HEAD = 0, then events in time order, then the
    /// tail sentinel). Lifting an op unlinks its events; undoing relinks them.
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per list entry: (op, what it marks).
    events: Vec<(usize, Event)>,
    /// Per op: its list entries, [call, return or expiry].
    slots: Vec<[usize; 2]>,
    fs: Vec<RegisterFn>,
    /// The set of ops decided (linearized, or dropped at expiry).
    bits: Vec<u64>,
    /// Zobrist keys per op; the set's hash is the xor of its members' keys.
    zobrist: Vec<u64>,
    cache: HashSet<Config>,
    steps: u64,
    /// Deepest stuck point: (ops linearized, the stuck op, register value).
    deepest: Option<(usize, usize, Option<u64>)>,
}

/// Marks an op without a return or expiry entry.
const NO_ENTRY: usize = usize::MAX;

impl Wgl {
    fn new(calls: &[Call]) -> Self {
        let mut timeline: Vec<(u64, Event, usize)> = Vec::with_capacity(calls.len() * 2);
        for (op, call) in calls.iter().enumerate() {
            timeline.push((call.invoke_ns, Event::Call, op));
            if let Some(complete) = call.complete_ns {
                timeline.push((complete, Event::Return, op));
            } else if let Some(expires) = call.expires_ns {
                timeline.push((expires, Event::Expiry, op));
            }
        }
        timeline.sort_unstable();
        let n = timeline.len();
        let mut slots = vec![[NO_ENTRY; 2]; calls.len()];
        let mut events = vec![(0, Event::Sentinel)];
        for (i, &(_, event, op)) in timeline.iter().enumerate() {
            let slot = usize::from(event != Event::Call);
            slots[op][slot] = i + 1;
            events.push((op, event));
        }
        events.push((0, Event::Sentinel));
        Self {
            next: (1..=n + 2).collect(),
            prev: (0..n + 2).map(|i| i.saturating_sub(1)).collect(),
            events,
            slots,
            fs: calls.iter().map(|c| c.f).collect(),
            bits: vec![0; calls.len().div_ceil(64)],
            zobrist: (0..calls.len() as u64).map(splitmix64).collect(),
            cache: HashSet::new(),
            steps: 0,
            deepest: None,
        }
    }

    /// Whether `op` completed `Ok` (an `Info` op may be left out).
    fn must_linearize(&self, op: usize) -> bool {
        let end = self.slots[op][1];
        end != NO_ENTRY && self.events[end].1 == Event::Return
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    /// Takes an op's entries out of the list (undone by `unlift`, in reverse order).
    fn lift(&mut self, op: usize) {
        let [call, end] = self.slots[op];
        self.unlink(call);
        if end != NO_ENTRY {
            self.unlink(end);
        }
    }

    fn unlift(&mut self, op: usize) {
        let [call, end] = self.slots[op];
        if end != NO_ENTRY {
            self.relink(end);
        }
        self.relink(call);
    }

    fn flip(&mut self, op: usize, set_hash: &mut u64) {
        self.bits[op / 64] ^= 1 << (op % 64);
        *set_hash ^= self.zobrist[op];
    }

    /// Run-length encoding of `bits`: the positions where membership flips.
    fn flips(&self) -> Box<[u32]> {
        let mut out = Vec::new();
        let mut member = false;
        for (w, &word) in self.bits.iter().enumerate() {
            let mut diff = word ^ if member { !0 } else { 0 };
            while diff != 0 {
                let bit = diff.trailing_zeros();
                out.push(w as u32 * 64 + bit);
                member = !member;
                // Bits below `bit` agree with the old run; invert the rest for the new one.
                diff = (!diff) & (!0u64 << bit) & !(1u64 << bit);
                if bit == 63 {
                    break;
                }
            }
        }
        out.into_boxed_slice()
    }

    /// Marks `op` decided, leaving the register at `state`; `false` (and no change) if that
    /// configuration was explored before.
    fn decide(&mut self, op: usize, state: Option<u64>, set_hash: &mut u64) -> bool {
        self.flip(op, set_hash);
        let config = Config {
            hash: *set_hash ^ splitmix64(state.map_or(u64::MAX, |v| v ^ (1 << 63))),
            flips: self.flips(),
            state,
        };
        if self.cache.insert(config) {
            self.lift(op);
            true
        } else {
            self.flip(op, set_hash);
            false
        }
    }

    /// Searches for a linearization, for at most `max_steps` steps.
    fn run(&mut self, max_steps: u64) -> Search {
        let mut pending_ok = self
            .events
            .iter()
            .filter(|(_, event)| *event == Event::Return)
            .count();
        let mut state: Option<u64> = None;
        let mut set_hash = 0u64;
        let mut stack: Vec<Decision> = Vec::new();
        let mut linearized = 0;
        let mut entry = self.next[HEAD];
        loop {
            if pending_ok == 0 {
                return Search::Linearizable;
            }
            self.steps += 1;
            if self.steps > max_steps {
                return Search::GaveUp;
            }
            let (op, event) = self.events[entry];
            match event {
                Event::Call => {
                    if let Some(next_state) = self.fs[op].step(state)
                        && self.decide(op, next_state, &mut set_hash)
                    {
                        stack.push(Decision {
                            op,
                            before: state,
                            dropped: false,
                        });
                        state = next_state;
                        linearized += 1;
                        if self.must_linearize(op) {
                            pending_ok -= 1;
                        }
                        entry = self.next[HEAD];
                    } else {
                        entry = self.next[entry];
                    }
                    continue;
                }
                Event::Expiry => {
                    if self.decide(op, state, &mut set_hash) {
                        stack.push(Decision {
                            op,
                            before: state,
                            dropped: true,
                        });
                        entry = self.next[HEAD];
                        continue;
                    }
                }
                Event::Return => {
                    if self.deepest.is_none_or(|(depth, _, _)| linearized > depth) {
                        self.deepest = Some((linearized, op, state));
                    }
                }
                Event::Sentinel => {}
            }
            // Nothing decided so far extends past this entry: undo the latest choice (and
            // the forced drops after it) and try the next alternative to it.
            loop {
                let Some(undone) = stack.pop() else {
                    return Search::NotLinearizable;
                };
                state = undone.before;
                self.flip(undone.op, &mut set_hash);
                self.unlift(undone.op);
                if undone.dropped {
                    continue;
                }
                linearized -= 1;
                if self.must_linearize(undone.op) {
                    pending_ok += 1;
                }
                entry = self.next[self.slots[undone.op][0]];
                break;
            }
        }
    }

    fn witness(&self, key: u64, calls: &[Call]) -> Witness {
        let (linearized, op, state) = self.deepest.unwrap_or((0, 0, None));
        let Some(stuck) = calls.get(op).copied() else {
            return Witness {
                op: 0,
                f: RegisterFn::Read { value: None },
                concurrent: Vec::new(),
                linearized,
                state,
                explanation: format!("key {key}: no linearization exists"),
            };
        };
        let end = |c: &Call| c.complete_ns.or(c.expires_ns).unwrap_or(u64::MAX);
        let concurrent: Vec<u64> = calls
            .iter()
            .filter(|c| c.index != stuck.index)
            .filter(|c| c.invoke_ns <= end(&stuck) && stuck.invoke_ns <= end(c))
            .map(|c| c.index)
            .collect();
        let describe = |c: &Call| {
            let completed = c
                .complete_ns
                .map_or("never completed".to_string(), |t| format!("completed {t}"));
            format!(
                "op {} ({}, invoked {}, {completed})",
                c.index, c.f, c.invoke_ns
            )
        };
        let others: Vec<String> = calls
            .iter()
            .filter(|c| concurrent.contains(&c.index))
            .map(describe)
            .collect();
        let held = state.map_or("unset".to_string(), |v| v.to_string());
        Witness {
            op: stuck.index,
            f: stuck.f,
            concurrent,
            linearized,
            state,
            explanation: format!(
                "key {key}: {} cannot be linearized; the furthest partial linearization \
                 ({linearized} ops) left the register {held}, and no order of the ops \
                 concurrent with it helps: [{}]",
                describe(&stuck),
                others.join("; ")
            ),
        }
    }
}

/// A 64-bit mixer (SplitMix64's finalizer) for Zobrist keys and state hashes.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_encode_runs() {
        let calls: Vec<Call> = (0..200)
            .map(|i| Call {
                index: i,
                f: RegisterFn::Write { value: i },
                invoke_ns: i,
                complete_ns: Some(i + 1),
                expires_ns: None,
            })
            .collect();
        let mut wgl = Wgl::new(&calls);
        let mut hash = 0;
        for op in (0..130).chain([150, 199]) {
            wgl.flip(op, &mut hash);
        }
        wgl.flip(63, &mut hash);
        assert_eq!(&*wgl.flips(), &[0, 63, 64, 130, 150, 151, 199, 200]);
        let mut full = Wgl::new(&calls[..64]);
        for op in 0..64 {
            full.flip(op, &mut hash);
        }
        assert_eq!(&*full.flips(), &[0]);
    }
}
