//! Histories of a correct database: every generator below executes its ops one at a time
//! against an in-memory model, each at its own instant ("linearization point"), and records
//! them with invocation and completion times around that instant, random but consistent with
//! one client issuing one request at a time. So the histories look concurrent (intervals of
//! about ten clients overlap) but are linearizable and strictly serializable by construction,
//! and every checker must accept them.
//!
//! `Fail` ops are not applied. `Info` ops are applied with probability one half, and their
//! client is retired (as Jepsen does: a client with an unanswered request is replaced).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use check::bank::BankOp;
use check::elle::{MicroOp, Txn};
use check::history::{HistoryBuilder, Op, Outcome};
use check::linear::{RegisterFn, RegisterOp};
use check::monotonic::Observation;
use check::set::SetOp;
use check::subscription::{CommittedWrite, Query, State, SubscriberTrace, Transition};

/// SplitMix64: small, seedable, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `true` with probability `percent / 100`.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An outcome: mostly `Ok`, some `Fail` and `Info`.
    pub fn outcome(&mut self) -> Outcome {
        match self.below(100) {
            0..85 => Outcome::Ok,
            85..93 => Outcome::Fail,
            _ => Outcome::Info,
        }
    }
}

/// When an op runs: its client, its interval, and its linearization point inside it.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub process: u64,
    pub invoke_ns: u64,
    pub point_ns: u64,
    pub complete_ns: u64,
}

/// Hands out slots in linearization order.
pub struct Schedule {
    /// Per live client: (process id, busy until).
    clients: Vec<(u64, u64)>,
    next_process: u64,
    now: u64,
}

impl Schedule {
    pub fn new(clients: u64) -> Self {
        Self {
            clients: (0..clients).map(|p| (p, 0)).collect(),
            next_process: clients,
            now: 1_000,
        }
    }

    /// The next op's slot: its point is after every earlier point, its client is idle then.
    pub fn next(&mut self, rng: &mut Rng) -> (usize, Slot) {
        self.now += 1 + rng.below(60);
        let idle: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.clients[c].1 < self.now)
            .collect();
        let client = if idle.is_empty() {
            let (c, _) = self
                .clients
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, busy))| *busy)
                .expect("clients");
            self.now = self.clients[c].1 + 1;
            c
        } else {
            idle[rng.below(idle.len() as u64) as usize]
        };
        let (process, busy) = self.clients[client];
        let invoke_ns = (busy + 1).max(self.now.saturating_sub(rng.below(400)));
        let complete_ns = self.now + rng.below(400);
        self.clients[client].1 = complete_ns;
        (
            client,
            Slot {
                process,
                invoke_ns,
                point_ns: self.now,
                complete_ns,
            },
        )
    }

    /// Replaces a client whose request went unanswered.
    pub fn retire(&mut self, client: usize) {
        self.clients[client] = (self.next_process, self.clients[client].1);
        self.next_process += 1;
    }

    /// A slot after every op so far has completed (for final reads).
    pub fn quiescent(&mut self) -> Slot {
        let busy = self.clients.iter().map(|c| c.1).max().unwrap_or(0);
        self.now = self.now.max(busy) + 10;
        let slot = Slot {
            process: self.next_process,
            invoke_ns: self.now,
            point_ns: self.now + 1,
            complete_ns: self.now + 2,
        };
        self.next_process += 1;
        self.now += 3;
        slot
    }
}

/// Records an op given its slot and outcome.
fn record<P>(h: &mut HistoryBuilder<P>, slot: Slot, outcome: Outcome, payload: P) {
    let complete = (outcome != Outcome::Info).then_some(slot.complete_ns);
    h.push(slot.process, slot.invoke_ns, complete, outcome, payload);
}

/// Whether an op with `outcome` takes effect, retiring its client if it is `Info`.
fn applies(rng: &mut Rng, schedule: &mut Schedule, client: usize, outcome: Outcome) -> bool {
    match outcome {
        Outcome::Ok => true,
        Outcome::Fail => false,
        Outcome::Info => {
            schedule.retire(client);
            rng.percent(50)
        }
    }
}

/// List-append transactions of one to four micro-ops. Keys are retired after about
/// `appends_per_key` appends, as Elle's generator does, so lists stay short.
pub fn list_append(seed: u64, txns: usize, clients: u64, appends_per_key: usize) -> Vec<Op<Txn>> {
    let mut rng = Rng::new(seed);
    let mut schedule = Schedule::new(clients);
    let mut h = HistoryBuilder::new();
    let mut lists: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut active: Vec<u64> = (0..5).collect();
    let mut next_key = 5;
    let mut next_value = 1;
    for _ in 0..txns {
        let (client, slot) = schedule.next(&mut rng);
        let outcome = rng.outcome();
        let applied = applies(&mut rng, &mut schedule, client, outcome);
        let mut txn = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let slot_index = rng.below(active.len() as u64) as usize;
            let key = active[slot_index];
            if rng.percent(50) {
                let value = next_value;
                next_value += 1;
                txn.push(MicroOp::Append { key, value });
                if applied {
                    let list = lists.entry(key).or_default();
                    list.push(value);
                    if list.len() >= appends_per_key {
                        active[slot_index] = next_key;
                        next_key += 1;
                    }
                }
            } else {
                let value =
                    (outcome == Outcome::Ok).then(|| lists.get(&key).cloned().unwrap_or_default());
                txn.push(MicroOp::Read { key, value });
            }
        }
        record(&mut h, slot, outcome, txn);
    }
    // A final read of every key, so that most appends are observed.
    let mut keys: Vec<u64> = lists.keys().copied().collect();
    keys.sort_unstable();
    let slot = schedule.quiescent();
    let txn = keys
        .iter()
        .map(|&key| MicroOp::Read {
            key,
            value: Some(lists[&key].clone()),
        })
        .collect();
    record(&mut h, slot, Outcome::Ok, txn);
    h.build()
}

/// Register ops over `keys` keys: reads, unique writes, and cas (failing when it would).
pub fn register(seed: u64, ops: usize, clients: u64, keys: u64) -> Vec<Op<RegisterOp>> {
    let mut rng = Rng::new(seed);
    let mut schedule = Schedule::new(clients);
    let mut h = HistoryBuilder::new();
    let mut values: HashMap<u64, Option<u64>> = HashMap::new();
    let mut next_value = 1;
    for _ in 0..ops {
        let (client, slot) = schedule.next(&mut rng);
        let key = rng.below(keys);
        let current = values.get(&key).copied().flatten();
        let mut outcome = rng.outcome();
        let f = match rng.below(3) {
            0 => RegisterFn::Read {
                value: (outcome == Outcome::Ok).then_some(current).flatten(),
            },
            1 => {
                next_value += 1;
                RegisterFn::Write { value: next_value }
            }
            _ => {
                next_value += 1;
                let expected = if rng.percent(70) {
                    current
                } else {
                    Some(rng.below(next_value))
                };
                if expected != current && outcome == Outcome::Ok {
                    // The comparison failed: the op did nothing, which is recorded as Fail.
                    outcome = Outcome::Fail;
                }
                RegisterFn::Cas {
                    expected,
                    new: next_value,
                }
            }
        };
        if applies(&mut rng, &mut schedule, client, outcome) {
            match f {
                RegisterFn::Write { value } => {
                    values.insert(key, Some(value));
                }
                RegisterFn::Cas { expected, new } if expected == current => {
                    values.insert(key, Some(new));
                }
                _ => {}
            }
        }
        record(&mut h, slot, outcome, RegisterOp { key, f });
    }
    h.build()
}

/// Adds of unique elements and whole-set reads, then a final read after quiescence.
pub fn set(seed: u64, ops: usize, clients: u64) -> Vec<Op<SetOp>> {
    let mut rng = Rng::new(seed);
    let mut schedule = Schedule::new(clients);
    let mut h = HistoryBuilder::new();
    let mut present = BTreeSet::new();
    let mut next = 0;
    for _ in 0..ops {
        let (client, slot) = schedule.next(&mut rng);
        let outcome = rng.outcome();
        if rng.percent(70) {
            next += 1;
            if applies(&mut rng, &mut schedule, client, outcome) {
                present.insert(next);
            }
            record(&mut h, slot, outcome, SetOp::Add { element: next });
        } else {
            applies(&mut rng, &mut schedule, client, outcome);
            let elements = (outcome == Outcome::Ok).then(|| present.clone());
            record(&mut h, slot, outcome, SetOp::Read { elements });
        }
    }
    let slot = schedule.quiescent();
    record(
        &mut h,
        slot,
        Outcome::Ok,
        SetOp::Read {
            elements: Some(present),
        },
    );
    h.build()
}

/// Transfers (refused when they would overdraw) and reads over `accounts` accounts holding
/// 100 each.
pub fn bank(seed: u64, ops: usize, clients: u64, accounts: u64) -> Vec<Op<BankOp>> {
    let mut rng = Rng::new(seed);
    let mut schedule = Schedule::new(clients);
    let mut h = HistoryBuilder::new();
    let mut balances: BTreeMap<u64, i64> = (0..accounts).map(|a| (a, 100)).collect();
    for _ in 0..ops {
        let (client, slot) = schedule.next(&mut rng);
        let mut outcome = rng.outcome();
        if rng.percent(60) {
            let from = rng.below(accounts);
            let to = (from + 1 + rng.below(accounts - 1)) % accounts;
            let amount = 1 + rng.below(60) as i64;
            if balances[&from] < amount && outcome == Outcome::Ok {
                outcome = Outcome::Fail;
            }
            if applies(&mut rng, &mut schedule, client, outcome) && balances[&from] >= amount {
                *balances.entry(from).or_default() -= amount;
                *balances.entry(to).or_default() += amount;
            }
            record(&mut h, slot, outcome, BankOp::Transfer { from, to, amount });
        } else {
            applies(&mut rng, &mut schedule, client, outcome);
            let read = (outcome == Outcome::Ok).then(|| balances.clone());
            record(&mut h, slot, outcome, BankOp::Read { balances: read });
        }
    }
    h.build()
}

/// Ops that each observe the database's commit timestamp and the versions of a few keys, some
/// of them also committing a write (which bumps the timestamp and the written key's version).
pub fn monotonic(seed: u64, ops: usize, clients: u64) -> Vec<Op<Observation>> {
    let mut rng = Rng::new(seed);
    let mut schedule = Schedule::new(clients);
    let mut h = HistoryBuilder::new();
    let mut ts = 0;
    let mut versions: BTreeMap<u64, u64> = BTreeMap::new();
    for _ in 0..ops {
        let (client, slot) = schedule.next(&mut rng);
        let outcome = rng.outcome();
        let applied = applies(&mut rng, &mut schedule, client, outcome);
        let mut observation = Observation {
            read_ts: Some(ts),
            versions: BTreeMap::new(),
        };
        for _ in 0..1 + rng.below(3) {
            let key = rng.below(6);
            observation
                .versions
                .insert(key, versions.get(&key).copied().unwrap_or(0));
        }
        if applied && rng.percent(40) {
            ts += 1;
            *versions.entry(rng.below(6)).or_default() = ts;
        }
        record(&mut h, slot, outcome, observation);
    }
    h.build()
}

/// A committed log of `commits` commits over keys "a".."h" (puts and deletes), and
/// `subscribers` traces of `query`, each delivering the exact result at a random increasing
/// subset of timestamps (coalescing the rest) and ending at the last commit.
pub fn subscriptions(
    seed: u64,
    commits: usize,
    subscribers: u64,
    query: &dyn Query,
) -> (Vec<CommittedWrite>, Vec<SubscriberTrace>) {
    let mut rng = Rng::new(seed);
    let mut log = Vec::new();
    let mut ts = 0;
    let mut states: Vec<(u64, State)> = vec![(0, State::new())];
    let mut state = State::new();
    for _ in 0..commits {
        ts += 1 + rng.below(5);
        for _ in 0..1 + rng.below(3) {
            let key = ((b'a' + rng.below(8) as u8) as char).to_string();
            let value = (!rng.percent(20)).then(|| serde_json::Value::from(rng.below(100)));
            match &value {
                Some(v) => state.insert(key.clone(), v.clone()),
                None => state.remove(&key),
            };
            log.push(CommittedWrite { ts, key, value });
        }
        states.push((ts, state.clone()));
    }
    let traces = (0..subscribers)
        .map(|subscriber| {
            let mut transitions = Vec::new();
            for (i, (ts, state)) in states.iter().enumerate() {
                let last = i + 1 == states.len();
                if i == 0 || last || rng.percent(30) {
                    // Sometimes the result is delivered at a timestamp between commits.
                    let at = if !last && rng.percent(30) {
                        ts + 1
                    } else {
                        *ts
                    };
                    let at = states.get(i + 1).map_or(at, |(next, _)| at.min(next - 1));
                    transitions.push(Transition {
                        ts: at.max(*ts),
                        result: query.evaluate(state),
                    });
                }
            }
            SubscriberTrace {
                subscriber,
                transitions,
            }
        })
        .collect();
    (log, traces)
}
