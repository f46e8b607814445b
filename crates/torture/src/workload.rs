//! The workloads: what each client sends (functions of `tests/convex-project/convex/
//! torture.ts`) and how each answer is recorded, in the payload shapes of the `check` crate's
//! checkers. Keys of the list-append and register workloads and the sets of the set workload
//! are used for a bounded number of ops and then retired for fresh ones (Jepsen's
//! "independent keys"), which keeps lists short and each register's linearizability search
//! small however long the run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use check::Outcome;
use check::bank::BankOp;
use check::elle::MicroOp;
use check::linear::{RegisterFn, RegisterOp};
use check::set::SetOp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::record::{Answer, Client, RawOp, as_i64, as_int_map, as_u64, as_u64_list};

/// The process id of the client that makes the final reads after healing.
pub const FINAL_READER: u64 = 999;
/// How many times a final read is tried before the run gives up on it.
const FINAL_READ_ATTEMPTS: usize = 10;

/// The workloads by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    Bank,
    Append,
    Register,
    Set,
    Monotonic,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 5] = [
        Self::Bank,
        Self::Append,
        Self::Register,
        Self::Set,
        Self::Monotonic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Bank => "bank",
            Self::Append => "append",
            Self::Register => "register",
            Self::Set => "set",
            Self::Monotonic => "monotonic",
        }
    }

    /// The history file of this workload in a run directory.
    pub fn history_file(self) -> String {
        format!("history-{}.jsonl", self.name())
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WorkloadKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown workload {s:?} (bank, append, register, set, monotonic, all)")
            })
    }
}

/// Settings of the bank workload, kept in the run's parameters for offline checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankParams {
    pub accounts: u64,
    pub total: i64,
}

impl Default for BankParams {
    fn default() -> Self {
        Self {
            accounts: 5,
            total: 500,
        }
    }
}

/// A set op with the set it is about (several sets are used in turn).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRecord {
    pub set: u64,
    #[serde(flatten)]
    pub op: SetOp,
}

/// One workload: its setup, one client step, and the reads after healing.
pub trait Workload: Send + Sync {
    fn kind(&self) -> WorkloadKind;

    /// Runs once before the clients start; must succeed.
    fn setup(&self, _client: &mut Client) -> Result<(), String> {
        Ok(())
    }

    /// One op of a client.
    fn step(&self, client: &mut Client) -> RawOp;

    /// Reads of everything written, made after the cluster healed and every client stopped,
    /// so that every acknowledged write precedes them (each tried until it succeeds, every
    /// attempt recorded).
    fn final_reads(&self, _client: &mut Client) -> Vec<RawOp> {
        Vec::new()
    }
}

pub fn make(kind: WorkloadKind, bank: BankParams) -> Box<dyn Workload> {
    match kind {
        WorkloadKind::Bank => Box::new(Bank { params: bank }),
        WorkloadKind::Append => Box::new(Append::default()),
        WorkloadKind::Register => Box::new(Register::default()),
        WorkloadKind::Set => Box::new(Set::default()),
        WorkloadKind::Monotonic => Box::new(Monotonic),
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Locks shared generator state; a poisoned lock (a panicked client) still holds valid state.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Repeats `read` until it is `Ok`, keeping every attempt.
fn until_ok(client: &mut Client, mut read: impl FnMut(&mut Client) -> RawOp) -> Vec<RawOp> {
    let mut ops = Vec::new();
    for _ in 0..FINAL_READ_ATTEMPTS {
        let op = read(client);
        let done = op.outcome == Outcome::Ok;
        ops.push(op);
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    ops
}

// ---------------------------------------------------------------------------------------------
// bank

struct Bank {
    params: BankParams,
}

impl Bank {
    fn read(client: &mut Client) -> RawOp {
        client.op(
            "query",
            "torture:balances",
            &json!({}),
            &[],
            to_json(&BankOp::Read { balances: None }),
            |value| {
                let balances = as_int_map(value, as_i64)?;
                Ok(to_json(&BankOp::Read {
                    balances: Some(balances),
                }))
            },
        )
    }
}

impl Workload for Bank {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Bank
    }

    fn setup(&self, client: &mut Client) -> Result<(), String> {
        let args = json!({ "accounts": self.params.accounts, "total": self.params.total });
        let mut last = String::new();
        for _ in 0..20 {
            match client.call("mutation", "torture:bankInit", &args, &[]).2 {
                Answer::Ok(_) => return Ok(()),
                Answer::Refused(why) | Answer::Unknown(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!("bankInit failed: {last}"))
    }

    fn step(&self, client: &mut Client) -> RawOp {
        if client.rng.percent(25) {
            return Self::read(client);
        }
        let from = client.rng.below(self.params.accounts);
        let to = (from + client.rng.between(1, self.params.accounts - 1)) % self.params.accounts;
        let amount = client.rng.between(1, 30) as i64;
        let payload = to_json(&BankOp::Transfer { from, to, amount });
        client.op(
            "mutation",
            "torture:transfer",
            &json!({ "from": from, "to": to, "amount": amount }),
            &["INSUFFICIENT_FUNDS"],
            payload.clone(),
            move |_| Ok(payload),
        )
    }

    fn final_reads(&self, client: &mut Client) -> Vec<RawOp> {
        until_ok(client, Self::read)
    }
}

// ---------------------------------------------------------------------------------------------
// list-append

/// Appends per key before the key is retired.
const APPENDS_PER_KEY: u64 = 24;
/// Keys in use at once.
const ACTIVE_LISTS: u64 = 4;
/// Keys per final read query.
const FINAL_READ_KEYS: usize = 50;

#[derive(Default)]
struct Append {
    state: Mutex<AppendState>,
}

#[derive(Default)]
struct AppendState {
    active: Vec<u64>,
    next_key: u64,
    appends: BTreeMap<u64, u64>,
    next_value: u64,
}

impl AppendState {
    fn key(&mut self, rng: &mut crate::rng::Rng) -> u64 {
        while (self.active.len() as u64) < ACTIVE_LISTS {
            self.active.push(self.next_key);
            self.next_key += 1;
        }
        *rng.pick(&self.active)
    }

    fn appended(&mut self, key: u64) {
        let count = self.appends.entry(key).or_insert(0);
        *count += 1;
        if *count >= APPENDS_PER_KEY {
            self.active.retain(|k| *k != key);
        }
    }
}

/// Reads of `keys` as one query: a read-only transaction at one snapshot.
fn read_lists(client: &mut Client, keys: &[u64]) -> RawOp {
    let txn: Vec<MicroOp> = keys
        .iter()
        .map(|&key| MicroOp::Read { key, value: None })
        .collect();
    let payload = to_json(&txn);
    client.op(
        "query",
        "torture:readLists",
        &json!({ "keys": keys }),
        &[],
        payload,
        |value| {
            let lists = as_int_map(value, as_u64_list)?;
            let txn: Result<Vec<MicroOp>, String> = txn
                .iter()
                .map(|op| match op {
                    MicroOp::Read { key, .. } => lists
                        .get(key)
                        .map(|list| MicroOp::Read {
                            key: *key,
                            value: Some(list.clone()),
                        })
                        .ok_or_else(|| format!("no list for key {key}")),
                    append => Ok(append.clone()),
                })
                .collect();
            Ok(to_json(&txn?))
        },
    )
}

impl Workload for Append {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Append
    }

    fn step(&self, client: &mut Client) -> RawOp {
        let txn: Vec<MicroOp> = {
            let mut state = lock(&self.state);
            let len = client.rng.between(1, 4);
            (0..len)
                .map(|_| {
                    let key = state.key(&mut client.rng);
                    if client.rng.percent(50) {
                        state.next_value += 1;
                        let value = state.next_value;
                        state.appended(key);
                        MicroOp::Append { key, value }
                    } else {
                        MicroOp::Read { key, value: None }
                    }
                })
                .collect()
        };
        let read_only = txn.iter().all(|op| matches!(op, MicroOp::Read { .. }));
        if read_only && client.rng.percent(50) {
            let keys: Vec<u64> = txn
                .iter()
                .filter_map(|op| match op {
                    MicroOp::Read { key, .. } => Some(*key),
                    MicroOp::Append { .. } => None,
                })
                .collect();
            return read_lists(client, &keys);
        }
        let args: Vec<Value> = txn
            .iter()
            .map(|op| match op {
                MicroOp::Append { key, value } => {
                    json!({ "f": "append", "key": key, "value": value })
                }
                MicroOp::Read { key, .. } => json!({ "f": "read", "key": key }),
            })
            .collect();
        let payload = to_json(&txn);
        client.op(
            "mutation",
            "torture:txn",
            &json!({ "ops": args }),
            &[],
            payload,
            |value| {
                let results = value.as_array().ok_or("not an array")?;
                if results.len() != txn.len() {
                    return Err(format!(
                        "{} results for {} micro-ops",
                        results.len(),
                        txn.len()
                    ));
                }
                let done: Result<Vec<MicroOp>, String> = txn
                    .iter()
                    .zip(results)
                    .map(|(op, result)| match op {
                        MicroOp::Read { key, .. } => Ok(MicroOp::Read {
                            key: *key,
                            value: Some(as_u64_list(result)?),
                        }),
                        append => Ok(append.clone()),
                    })
                    .collect();
                Ok(to_json(&done?))
            },
        )
    }

    fn final_reads(&self, client: &mut Client) -> Vec<RawOp> {
        let keys: Vec<u64> = (0..lock(&self.state).next_key).collect();
        let mut ops = Vec::new();
        for chunk in keys.chunks(FINAL_READ_KEYS) {
            ops.extend(until_ok(client, |c| read_lists(c, chunk)));
        }
        ops
    }
}

// ---------------------------------------------------------------------------------------------
// registers

/// Ops per register before it is retired.
const OPS_PER_REGISTER: u64 = 120;
/// Registers in use at once.
const ACTIVE_REGISTERS: u64 = 3;

#[derive(Default)]
struct Register {
    state: Mutex<RegisterState>,
}

#[derive(Default)]
struct RegisterState {
    active: Vec<u64>,
    next_key: u64,
    ops: BTreeMap<u64, u64>,
    next_value: u64,
    /// The latest value seen per key (a good guess for a cas that succeeds).
    last: BTreeMap<u64, u64>,
}

impl Workload for Register {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Register
    }

    fn step(&self, client: &mut Client) -> RawOp {
        let op = {
            let mut state = lock(&self.state);
            while (state.active.len() as u64) < ACTIVE_REGISTERS {
                let key = state.next_key;
                state.active.push(key);
                state.next_key += 1;
            }
            let key = *client.rng.pick(&state.active);
            let count = state.ops.entry(key).or_insert(0);
            *count += 1;
            if *count >= OPS_PER_REGISTER {
                state.active.retain(|k| *k != key);
            }
            let roll = client.rng.below(100);
            let known = state.last.get(&key).copied();
            let f = if roll < 50 {
                RegisterFn::Read { value: None }
            } else {
                state.next_value += 1;
                let new = state.next_value;
                match known {
                    Some(expected) if roll >= 75 => RegisterFn::Cas {
                        expected: Some(expected),
                        new,
                    },
                    _ => RegisterFn::Write { value: new },
                }
            };
            RegisterOp { key, f }
        };
        let key = op.key;
        let raw = match op.f {
            RegisterFn::Read { .. } => client.op(
                "query",
                "torture:regRead",
                &json!({ "key": key }),
                &[],
                to_json(&op),
                |value| {
                    let value = if value.is_null() {
                        None
                    } else {
                        Some(as_u64(value)?)
                    };
                    Ok(to_json(&RegisterOp {
                        key,
                        f: RegisterFn::Read { value },
                    }))
                },
            ),
            RegisterFn::Write { value } => client.op(
                "mutation",
                "torture:regWrite",
                &json!({ "key": key, "value": value }),
                &[],
                to_json(&op),
                |_| Ok(to_json(&op)),
            ),
            RegisterFn::Cas { expected, new } => client.op(
                "mutation",
                "torture:regCas",
                &json!({ "key": key, "from": expected, "to": new }),
                &["CAS_MISMATCH"],
                to_json(&op),
                |_| Ok(to_json(&op)),
            ),
        };
        if raw.outcome == Outcome::Ok {
            let seen =
                match serde_json::from_value::<RegisterOp>(raw.payload.clone()).map(|op| op.f) {
                    Ok(RegisterFn::Read { value }) => value,
                    Ok(RegisterFn::Write { value }) => Some(value),
                    Ok(RegisterFn::Cas { new, .. }) => Some(new),
                    Err(_) => None,
                };
            if let Some(value) = seen {
                lock(&self.state).last.insert(key, value);
            }
        }
        raw
    }
}

// ---------------------------------------------------------------------------------------------
// sets

/// Adds per set before the next set is used.
const ADDS_PER_SET: u64 = 150;

#[derive(Default)]
struct Set {
    state: Mutex<SetState>,
}

#[derive(Default)]
struct SetState {
    set: u64,
    adds: u64,
    next_element: u64,
}

fn read_set(client: &mut Client, set: u64) -> RawOp {
    client.op(
        "query",
        "torture:setRead",
        &json!({ "set": set }),
        &[],
        to_json(&SetRecord {
            set,
            op: SetOp::Read { elements: None },
        }),
        |value| {
            let list = as_u64_list(value)?;
            let elements: BTreeSet<u64> = list.iter().copied().collect();
            if elements.len() != list.len() {
                return Err("an element is in the set twice".into());
            }
            Ok(to_json(&SetRecord {
                set,
                op: SetOp::Read {
                    elements: Some(elements),
                },
            }))
        },
    )
}

impl Workload for Set {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Set
    }

    fn step(&self, client: &mut Client) -> RawOp {
        let (set, add) = {
            let mut state = lock(&self.state);
            if client.rng.percent(25) {
                // Mostly the current set; sometimes the previous one, read after it is full.
                let set = if state.set > 0 && client.rng.percent(20) {
                    state.set - 1
                } else {
                    state.set
                };
                (set, None)
            } else {
                state.next_element += 1;
                let element = state.next_element;
                let set = state.set;
                state.adds += 1;
                if state.adds >= ADDS_PER_SET {
                    state.set += 1;
                    state.adds = 0;
                }
                (set, Some(element))
            }
        };
        match add {
            None => read_set(client, set),
            Some(element) => {
                let payload = to_json(&SetRecord {
                    set,
                    op: SetOp::Add { element },
                });
                client.op(
                    "mutation",
                    "torture:setAdd",
                    &json!({ "set": set, "element": element }),
                    &[],
                    payload.clone(),
                    move |_| Ok(payload),
                )
            }
        }
    }

    fn final_reads(&self, client: &mut Client) -> Vec<RawOp> {
        let last = lock(&self.state).set;
        (0..=last)
            .flat_map(|set| until_ok(client, |c| read_set(c, set)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// monotonic

/// Counters of the monotonic workload.
const COUNTERS: u64 = 4;

struct Monotonic;

impl Workload for Monotonic {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Monotonic
    }

    fn step(&self, client: &mut Client) -> RawOp {
        if client.rng.percent(40) {
            let key = client.rng.below(COUNTERS);
            return client.op(
                "mutation",
                "torture:monoIncrement",
                &json!({ "key": key }),
                &[],
                json!({ "f": "inc", "key": key }),
                |value| {
                    let version = as_u64(value)?;
                    let versions = BTreeMap::from([(key, version)]);
                    Ok(json!({ "f": "inc", "key": key, "versions": to_json(&versions) }))
                },
            );
        }
        let keys: Vec<u64> = (0..COUNTERS).collect();
        client.op(
            "query",
            "torture:monoRead",
            &json!({ "keys": keys }),
            &[],
            json!({ "f": "read", "keys": keys }),
            |value| {
                let versions = as_int_map(value, as_u64)?;
                Ok(json!({ "f": "read", "keys": keys, "versions": to_json(&versions) }))
            },
        )
    }
}
