//! Checking a run directory: every workload's history through its checker, plus the cluster
//! checks recorded during the run (recovery after healing, replica convergence), into one
//! [`Verdict`]. The same code checks a run as it finishes and later, offline
//! (`chorus-torture check DIR`), so both give the same answer.
//!
//! An *anomaly* is a proof that Chorus broke a promise (a checker's counterexample, an answer
//! no function could return, replicas that disagree, a cluster that did not recover). A
//! *warning* is a checker that could not decide (the linearizability search gave up): it is
//! reported loudly but is not an anomaly.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use check::Outcome;
use check::bank::{BankConfig, BankOp};
use check::elle::{Consistency, ElleConfig, Txn};
use check::linear::{LinearConfig, RegisterOp, Verdict as LinearVerdict};
use check::monotonic::Observation;
use check::{Op, history};
use serde::{Deserialize, Serialize};

use crate::nemesis::{FaultEvent, NemesisConfig};
use crate::record::{MALFORMED, read_outcomes};
use crate::workload::{BankParams, SetRecord, WorkloadKind};

/// The run's parameters (`params.json`).
pub const PARAMS_FILE: &str = "params.json";
/// The nemesis's events, JSON lines.
pub const FAULTS_FILE: &str = "faults.jsonl";
/// Cluster checks made during the run (`ClusterChecks`).
pub const CLUSTER_CHECKS_FILE: &str = "cluster-checks.json";
/// The verdict, written by `run` and by `check`.
pub const REPORT_FILE: &str = "report.json";

/// What a run was asked to do; enough to check its histories later.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub seed: u64,
    pub duration_secs: u64,
    pub workloads: Vec<WorkloadKind>,
    pub clients: u64,
    pub nemesis: NemesisConfig,
    pub bank: BankParams,
    pub op_timeout_ms: u64,
    pub chorus_bin: String,
}

/// Cluster-level results that cannot be recomputed from the histories.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterChecks {
    /// Per workload, how long after healing its first op sent after healing succeeded
    /// (`None`: none did within the recovery timeout).
    pub recovered_after_ms: BTreeMap<String, Option<u64>>,
    /// The recovery timeout used.
    pub recovery_timeout_ms: u64,
    /// Per range, `None` if every replica reported the same applied index and checksum, else
    /// what they reported.
    pub divergence: BTreeMap<String, Option<String>>,
}

/// The verdict on one workload.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkloadVerdict {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Info ops by the first words of their reason, for the report.
    pub info_reasons: BTreeMap<String, usize>,
    /// What the checker looked at (reads checked, graph size, keys…).
    pub checked: String,
    pub anomalies: Vec<String>,
    pub warnings: Vec<String>,
}

/// The verdict on a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub workloads: BTreeMap<String, WorkloadVerdict>,
    /// Cluster anomalies: no recovery after healing, diverged replicas.
    pub cluster: Vec<String>,
    /// Per workload, how long after healing an op succeeded again (ms).
    pub recovered_after_ms: BTreeMap<String, Option<u64>>,
    pub faults: Vec<FaultEvent>,
}

impl Verdict {
    pub fn anomaly_count(&self) -> usize {
        self.cluster.len()
            + self
                .workloads
                .values()
                .map(|w| w.anomalies.len())
                .sum::<usize>()
    }

    pub fn warning_count(&self) -> usize {
        self.workloads.values().map(|w| w.warnings.len()).sum()
    }

    pub fn is_valid(&self) -> bool {
        self.anomaly_count() == 0
    }

    /// Successful fault starts by kind name.
    pub fn faults_injected(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for event in self
            .faults
            .iter()
            .filter(|e| e.action == "start" && e.error.is_empty())
        {
            *counts.entry(event.kind.name().to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// A human-readable report (at most `limit` anomalies per workload; all are in
    /// `report.json`).
    pub fn render(&self, limit: usize) -> String {
        let mut out = String::new();
        out.push_str(&format!("faults injected: {:?}\n", self.faults_injected()));
        for event in &self.faults {
            out.push_str(&format!(
                "  {:>8.2} s {:<5} {:<9} {:<8} {:?} {}{}\n",
                event.at_ns as f64 / 1e9,
                event.action,
                event.kind.name(),
                event.shape,
                event.nodes,
                event.target,
                if event.error.is_empty() {
                    String::new()
                } else {
                    format!(" FAILED: {}", event.error)
                }
            ));
        }
        for (name, w) in &self.workloads {
            let status = if !w.anomalies.is_empty() {
                format!("{} ANOMALIES", w.anomalies.len())
            } else if !w.warnings.is_empty() {
                "UNKNOWN (see warnings)".to_string()
            } else {
                "valid".to_string()
            };
            out.push_str(&format!(
                "{name:<10} ok {:>6}  fail {:>5}  info {:>5}  | {} | {status}\n",
                w.ok, w.fail, w.info, w.checked
            ));
            for (reason, n) in &w.info_reasons {
                out.push_str(&format!("             info {n:>5} × {reason}\n"));
            }
            for warning in &w.warnings {
                out.push_str(&format!("  WARNING: {warning}\n"));
            }
            for anomaly in w.anomalies.iter().take(limit) {
                out.push_str(&format!("  ANOMALY: {}\n", anomaly.replace('\n', "\n    ")));
            }
            if w.anomalies.len() > limit {
                out.push_str(&format!(
                    "  … and {} more (report.json)\n",
                    w.anomalies.len() - limit
                ));
            }
        }
        if !self.recovered_after_ms.is_empty() {
            let shown: Vec<String> = self
                .recovered_after_ms
                .iter()
                .map(|(w, ms)| match ms {
                    Some(ms) => format!("{w} {ms} ms"),
                    None => format!("{w} NEVER"),
                })
                .collect();
            out.push_str(&format!(
                "first success after healing: {}\n",
                shown.join(", ")
            ));
        }
        for anomaly in &self.cluster {
            out.push_str(&format!("  CLUSTER ANOMALY: {anomaly}\n"));
        }
        out.push_str(&format!(
            "verdict: {} anomalies, {} warnings\n",
            self.anomaly_count(),
            self.warning_count()
        ));
        out
    }
}

/// A bank op as written by `check::bank::BankOp`'s serializer. `BankOp` itself cannot be read
/// back from JSON: it is an internally tagged enum, which serde buffers, and a buffered map
/// key stays a string, so its `balances` map (keyed by account numbers) fails to deserialize.
/// A plain struct reads the same JSON.
#[derive(Deserialize)]
struct BankLine {
    f: String,
    #[serde(default)]
    from: u64,
    #[serde(default)]
    to: u64,
    #[serde(default)]
    amount: i64,
    #[serde(default)]
    balances: Option<BTreeMap<u64, i64>>,
}

impl BankLine {
    fn into_op(self) -> Result<BankOp, String> {
        match self.f.as_str() {
            "transfer" => Ok(BankOp::Transfer {
                from: self.from,
                to: self.to,
                amount: self.amount,
            }),
            "read" => Ok(BankOp::Read {
                balances: self.balances,
            }),
            other => Err(format!("unknown bank op {other:?}")),
        }
    }
}

fn read_ops<P: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<Op<P>>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    history::read_jsonl(BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads the run's parameters.
pub fn read_params(dir: &Path) -> Result<Params, String> {
    let path = dir.join(PARAMS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks every history of a run directory.
pub fn check_dir(dir: &Path) -> Result<Verdict, String> {
    let params = read_params(dir)?;
    let mut verdict = Verdict::default();
    let faults_path = dir.join(FAULTS_FILE);
    if faults_path.exists() {
        let file =
            File::open(&faults_path).map_err(|e| format!("{}: {e}", faults_path.display()))?;
        verdict.faults = history::read_records(BufReader::new(file))
            .map_err(|e| format!("{}: {e}", faults_path.display()))?;
    }
    for kind in &params.workloads {
        let path = dir.join(kind.history_file());
        let w = check_workload(*kind, &path, &params)?;
        verdict.workloads.insert(kind.name().to_string(), w);
    }
    let checks_path = dir.join(CLUSTER_CHECKS_FILE);
    if checks_path.exists() {
        let text = std::fs::read_to_string(&checks_path)
            .map_err(|e| format!("{}: {e}", checks_path.display()))?;
        let checks: ClusterChecks =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", checks_path.display()))?;
        verdict.recovered_after_ms = checks.recovered_after_ms.clone();
        for (workload, after) in &checks.recovered_after_ms {
            if after.is_none() {
                verdict.cluster.push(format!(
                    "{workload}: no op sent after healing succeeded within {} ms (the cluster \
                     did not recover)",
                    checks.recovery_timeout_ms
                ));
            }
        }
        for (range, divergence) in &checks.divergence {
            if let Some(what) = divergence {
                verdict.cluster.push(format!(
                    "range {range}: replicas diverged after healing: {what}"
                ));
            }
        }
    }
    Ok(verdict)
}

/// An Info op's reason with digits masked and cut short, to group similar reasons.
fn reason_class(error: &str) -> String {
    error
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .take(90)
        .collect()
}

fn check_workload(
    kind: WorkloadKind,
    path: &Path,
    params: &Params,
) -> Result<WorkloadVerdict, String> {
    let mut w = WorkloadVerdict::default();
    for (index, outcome, error) in read_outcomes(path)? {
        match outcome {
            Outcome::Ok => w.ok += 1,
            Outcome::Fail => w.fail += 1,
            Outcome::Info => {
                w.info += 1;
                let error = error.unwrap_or_default();
                if error.starts_with(MALFORMED) {
                    w.anomalies.push(format!("op {index}: {error}"));
                }
                *w.info_reasons.entry(reason_class(&error)).or_insert(0) += 1;
            }
        }
    }
    match kind {
        WorkloadKind::Bank => {
            let ops: Vec<Op<BankOp>> = read_ops::<BankLine>(path)?
                .into_iter()
                .map(|op| {
                    Ok(Op {
                        index: op.index,
                        process: op.process,
                        invoke_ns: op.invoke_ns,
                        complete_ns: op.complete_ns,
                        outcome: op.outcome,
                        payload: op.payload.into_op()?,
                    })
                })
                .collect::<Result<_, String>>()?;
            let config = BankConfig {
                total: params.bank.total,
                allow_negative: false,
                accounts: Some((0..params.bank.accounts).collect()),
            };
            let report = check::bank::check(&ops, &config).map_err(|e| e.to_string())?;
            w.checked = format!("{} reads of all balances", report.reads);
            w.anomalies
                .extend(report.anomalies.iter().map(ToString::to_string));
        }
        WorkloadKind::Append => {
            let ops: Vec<Op<Txn>> = read_ops(path)?;
            let config = ElleConfig {
                consistency: Consistency::StrictSerializable,
                ..ElleConfig::default()
            };
            let report = check::elle::check(&ops, &config).map_err(|e| e.to_string())?;
            w.checked = format!(
                "strict serializability: {} txns in the graph, {} edges",
                report.graph_nodes, report.graph_edges
            );
            w.anomalies
                .extend(report.anomalies.iter().map(ToString::to_string));
        }
        WorkloadKind::Register => {
            let ops: Vec<Op<RegisterOp>> = read_ops(path)?;
            let report =
                check::linear::check(&ops, &LinearConfig::default()).map_err(|e| e.to_string())?;
            let steps: u64 = report.keys.iter().map(|k| k.steps).sum();
            w.checked = format!(
                "linearizability: {} keys, {steps} search steps",
                report.keys.len()
            );
            for key in &report.keys {
                match &key.verdict {
                    LinearVerdict::Linearizable => {}
                    LinearVerdict::NotLinearizable(witness) => w.anomalies.push(format!(
                        "register {} is not linearizable: op {} ({}) cannot be placed; \
                         concurrent ops {:?}; {}",
                        key.key, witness.op, witness.f, witness.concurrent, witness.explanation
                    )),
                    LinearVerdict::Unknown { reason } => {
                        w.warnings
                            .push(format!("register {}: search gave up ({reason})", key.key));
                    }
                }
            }
        }
        WorkloadKind::Set => {
            let ops: Vec<Op<SetRecord>> = read_ops(path)?;
            let mut by_set: BTreeMap<u64, Vec<Op<check::set::SetOp>>> = BTreeMap::new();
            for op in ops {
                by_set.entry(op.payload.set).or_default().push(Op {
                    index: op.index,
                    process: op.process,
                    invoke_ns: op.invoke_ns,
                    complete_ns: op.complete_ns,
                    outcome: op.outcome,
                    payload: op.payload.op,
                });
            }
            let (mut acknowledged, mut recovered) = (0, 0);
            for (set, ops) in &by_set {
                let report = check::set::check(ops).map_err(|e| e.to_string())?;
                acknowledged += report.acknowledged;
                recovered += report.recovered;
                if report.final_read.is_none() && report.acknowledged > 0 {
                    w.anomalies
                        .push(format!("set {set}: no successful read, so no final read"));
                }
                w.anomalies
                    .extend(report.anomalies.iter().map(|a| format!("set {set}: {a}")));
            }
            w.checked = format!(
                "{} sets, {acknowledged} acknowledged adds, {recovered} indeterminate adds present",
                by_set.len()
            );
        }
        WorkloadKind::Monotonic => {
            let ops: Vec<Op<Observation>> = read_ops(path)?;
            let report = check::monotonic::check(&ops).map_err(|e| e.to_string())?;
            let processes: std::collections::BTreeSet<u64> =
                ops.iter().map(|op| op.process).collect();
            w.checked = format!("monotonic reads of {} clients", processes.len());
            w.anomalies
                .extend(report.anomalies.iter().map(ToString::to_string));
        }
    }
    Ok(w)
}
