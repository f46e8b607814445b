//! The nemesis: faults injected into a running cluster on a seeded schedule, one at a time,
//! each held for a while and then healed, with quiet periods between them.
//!
//! - **kill**: SIGKILL a node (by process id), later restart it on its data directory;
//! - **pause**: SIGSTOP a node, later SIGCONT (its sockets stay open and nothing answers, the
//!   way a long GC pause or a stalled VM looks to its peers);
//! - **partition**: through the nodes' fault endpoint (`POST /api/cluster/faults`, nodes
//!   started with `CHORUS_FAULT_INJECTION=1`), each side drops every call to the other. Shapes:
//!   one node isolated from both others, or a *bridge* (two nodes cannot talk to each other but
//!   both talk to the third, a non-transitive partition).
//!
//! Targets are the data range's leader, the meta range's leader (the timestamp oracle) or a
//! random node. Kinds come in rounds, each round every enabled kind once in a shuffled order,
//! so a short run still exercises every kind. Every start and heal is recorded with its time on
//! the run's clock.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::{Cluster, DATA_RANGE, META_RANGE};
use crate::http;
use crate::record::Clock;
use crate::rng::Rng;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
}

impl FaultKind {
    pub const ALL: [FaultKind; 3] = [Self::Kill, Self::Pause, Self::Partition];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Partition => "partition",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown nemesis {s:?} (kill, pause, partition, all, none)"))
    }
}

/// One recorded nemesis action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// On the run's clock (the histories' clock).
    pub at_ns: u64,
    /// `start` or `heal`.
    pub action: String,
    pub kind: FaultKind,
    /// `isolate`, `bridge` (partitions), or the signal's effect.
    pub shape: String,
    /// Whom it was aimed at: `data-leader`, `meta-leader` or `random`.
    pub target: String,
    /// The nodes affected (for a bridge: the two ends, which cannot talk).
    pub nodes: Vec<u64>,
    /// Empty if the action worked; otherwise why not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// Settings of the schedule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NemesisConfig {
    pub kinds: Vec<FaultKind>,
    /// Quiet time before each fault, a uniform range in milliseconds.
    pub quiet_ms: (u64, u64),
    /// How long each fault is held, a uniform range in milliseconds.
    pub hold_ms: (u64, u64),
}

/// A fault in place, and what healing it takes.
enum Active {
    Killed(u64),
    Paused(u64),
    Partitioned(Vec<u64>),
}

pub struct Nemesis {
    config: NemesisConfig,
    rng: Rng,
    clock: Clock,
    round: Vec<FaultKind>,
    pub events: Vec<FaultEvent>,
}

/// How long one fault-endpoint call may take.
const FAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets the nodes `node` drops calls to (`[]` heals it).
pub fn block(cluster: &Cluster, node: u64, blocked: &[u64]) -> Result<(), String> {
    let api = &cluster.nodes[&node].api;
    let body = json!({ "blockNodes": blocked }).to_string();
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        match http::request(
            api,
            "POST",
            "/api/cluster/faults",
            &body,
            Some(&cluster.admin_key),
            FAULT_CALL_TIMEOUT,
        ) {
            Ok((200, _)) => return Ok(()),
            Ok((status, text)) => {
                last = format!("node {node}: status {status}: {text}");
                // A refusal (fault injection off, bad key) will not change on a retry.
                if (400..500).contains(&status) {
                    break;
                }
            }
            Err(e) => last = format!("node {node}: {e}"),
        }
    }
    Err(last)
}

impl Nemesis {
    pub fn new(config: NemesisConfig, rng: Rng, clock: Clock) -> Self {
        Self {
            config,
            rng,
            clock,
            round: Vec::new(),
            events: Vec::new(),
        }
    }

    fn sleep_until(&self, at: Duration) {
        let now = self.clock.elapsed();
        if at > now {
            std::thread::sleep(at - now);
        }
    }

    fn next_kind(&mut self) -> Option<FaultKind> {
        if self.round.is_empty() {
            self.round = self.config.kinds.clone();
            self.rng.shuffle(&mut self.round);
        }
        self.round.pop()
    }

    fn record(
        &mut self,
        action: &str,
        kind: FaultKind,
        shape: &str,
        target: &str,
        nodes: &[u64],
        error: String,
    ) {
        let event = FaultEvent {
            at_ns: self.clock.now_ns(),
            action: action.into(),
            kind,
            shape: shape.into(),
            target: target.into(),
            nodes: nodes.to_vec(),
            error,
        };
        println!(
            "[{:>7.2} s] nemesis {} {} {} {:?} ({}){}",
            event.at_ns as f64 / 1e9,
            event.action,
            event.kind,
            event.shape,
            event.nodes,
            event.target,
            if event.error.is_empty() {
                String::new()
            } else {
                format!(" FAILED: {}", event.error)
            }
        );
        self.events.push(event);
    }

    /// A target node: a leader (as the cluster reports it) or a random running node.
    fn target(&mut self, cluster: &Cluster) -> (u64, &'static str) {
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        let roll = self.rng.below(100);
        let leader = if roll < 40 {
            cluster.leader(DATA_RANGE).map(|id| (id, "data-leader"))
        } else if roll < 70 {
            cluster.leader(META_RANGE).map(|id| (id, "meta-leader"))
        } else {
            None
        };
        leader
            .filter(|(id, _)| ids.contains(id))
            .unwrap_or_else(|| (*self.rng.pick(&ids), "random"))
    }

    /// Injects faults until `until` on the run's clock (a fault started before `until` is
    /// held to its end), leaving the cluster healed.
    pub fn run(&mut self, cluster: &mut Cluster, until: Duration) {
        if self.config.kinds.is_empty() {
            self.sleep_until(until);
            return;
        }
        loop {
            let quiet = Duration::from_millis(
                self.rng
                    .between(self.config.quiet_ms.0, self.config.quiet_ms.1),
            );
            let hold = Duration::from_millis(
                self.rng
                    .between(self.config.hold_ms.0, self.config.hold_ms.1),
            );
            let start = self.clock.elapsed() + quiet;
            // No new fault that could not be held for the shortest hold before the end.
            if start + Duration::from_millis(self.config.hold_ms.0) > until {
                self.sleep_until(until);
                return;
            }
            self.sleep_until(start);
            let Some(kind) = self.next_kind() else {
                return;
            };
            let active = self.inject(cluster, kind);
            self.sleep_until(start + hold);
            if let Some(active) = active {
                self.heal(cluster, kind, active);
            }
        }
    }

    fn inject(&mut self, cluster: &mut Cluster, kind: FaultKind) -> Option<Active> {
        let (node, target) = self.target(cluster);
        match kind {
            FaultKind::Kill => {
                cluster.kill(node);
                self.record("start", kind, "sigkill", target, &[node], String::new());
                Some(Active::Killed(node))
            }
            FaultKind::Pause => {
                cluster.pause(node);
                self.record("start", kind, "sigstop", target, &[node], String::new());
                Some(Active::Paused(node))
            }
            FaultKind::Partition => {
                let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
                let others: Vec<u64> = ids.iter().copied().filter(|id| *id != node).collect();
                // A bridge: `node` stays connected to both others, which cannot talk.
                let bridge = others.len() == 2 && self.rng.percent(25);
                let (shape, plan): (&str, Vec<(u64, Vec<u64>)>) = if bridge {
                    (
                        "bridge",
                        vec![(others[0], vec![others[1]]), (others[1], vec![others[0]])],
                    )
                } else {
                    let mut plan = vec![(node, others.clone())];
                    plan.extend(others.iter().map(|&o| (o, vec![node])));
                    ("isolate", plan)
                };
                let affected: Vec<u64> = if bridge { others.clone() } else { vec![node] };
                let errors: Vec<String> = plan
                    .iter()
                    .filter_map(|(at, blocked)| block(cluster, *at, blocked).err())
                    .collect();
                let error = errors.join("; ");
                let failed = !error.is_empty();
                self.record("start", kind, shape, target, &affected, error);
                if failed {
                    // Undo whatever half of the partition took hold.
                    self.heal(cluster, kind, Active::Partitioned(affected));
                    return None;
                }
                Some(Active::Partitioned(affected))
            }
        }
    }

    fn heal(&mut self, cluster: &mut Cluster, kind: FaultKind, active: Active) {
        match active {
            Active::Killed(node) => {
                cluster.restart(node);
                self.record("heal", kind, "restart", "", &[node], String::new());
            }
            Active::Paused(node) => {
                cluster.resume(node);
                self.record("heal", kind, "sigcont", "", &[node], String::new());
            }
            Active::Partitioned(nodes) => {
                let error = self.unblock_all(cluster);
                self.record("heal", kind, "unblock", "", &nodes, error);
            }
        }
    }

    /// Clears every node's blocked set; the errors, if any.
    fn unblock_all(&self, cluster: &Cluster) -> String {
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        ids.iter()
            .filter_map(|id| block(cluster, *id, &[]).err())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Faults injected successfully, by kind.
    pub fn injected(&self) -> Vec<(FaultKind, usize)> {
        FaultKind::ALL
            .into_iter()
            .map(|kind| {
                let n = self
                    .events
                    .iter()
                    .filter(|e| e.action == "start" && e.kind == kind && e.error.is_empty())
                    .count();
                (kind, n)
            })
            .collect()
    }
}
