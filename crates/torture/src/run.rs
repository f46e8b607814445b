//! One harness run: start a 3-node cluster, deploy `tests/convex-project`, run the workloads'
//! clients while the nemesis injects faults, heal, check that the cluster recovers and its
//! replicas converge, make the final reads, write the histories and check them.
//!
//! The run directory holds everything: `params.json`, one `history-<workload>.jsonl` per
//! workload, `faults.jsonl`, `cluster-checks.json`, `report.json`, `deploy.log`, and
//! `cluster/` (each node's data directory and log, `cluster/node-N.log`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use check::Outcome;
use serde_json::Value;

use crate::cluster::{Cluster, DATA_RANGE, META_RANGE};
use crate::nemesis::{self, FaultKind, Nemesis, NemesisConfig};
use crate::record::{Client, Clock, RawOp, write_history};
use crate::rng::Rng;
use crate::verdict::{self, ClusterChecks, Params, Verdict};
use crate::workload::{self, BankParams, FINAL_READER, Workload, WorkloadKind};

/// The admin key of the harness's clusters.
pub const ADMIN_KEY: &str = "chorus-torture|0123456789abcdef";
/// Nodes in the cluster.
pub const NODES: u64 = 3;
/// How long a final read may take.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long replicas get to converge after the clients stop.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// Load kept up after healing at least this long, whatever the recovery took.
const MIN_RECOVERY_LOAD: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    /// How long faults are injected (the clients run for this plus the recovery).
    pub duration: Duration,
    pub workloads: Vec<WorkloadKind>,
    pub nemesis: NemesisConfig,
    /// Clients per workload.
    pub clients: u64,
    pub out: PathBuf,
    pub chorus_bin: PathBuf,
    /// `tests/convex-project` (its `deploy.sh` is run).
    pub project: PathBuf,
    pub op_timeout: Duration,
    /// How long the cluster gets to serve every workload again after healing.
    pub recovery_timeout: Duration,
    pub bank: BankParams,
}

impl RunConfig {
    /// Defaults for everything but what a caller must choose.
    pub fn new(
        seed: u64,
        duration: Duration,
        out: PathBuf,
        chorus_bin: PathBuf,
        project: PathBuf,
    ) -> Self {
        Self {
            seed,
            duration,
            workloads: WorkloadKind::ALL.to_vec(),
            nemesis: NemesisConfig {
                kinds: FaultKind::ALL.to_vec(),
                quiet_ms: (2_000, 5_000),
                hold_ms: (3_000, 8_000),
            },
            clients: 3,
            out,
            chorus_bin,
            project,
            op_timeout: Duration::from_secs(5),
            recovery_timeout: Duration::from_secs(60),
            bank: BankParams::default(),
        }
    }

    fn params(&self) -> Params {
        Params {
            seed: self.seed,
            duration_secs: self.duration.as_secs(),
            workloads: self.workloads.clone(),
            clients: self.clients,
            nemesis: self.nemesis.clone(),
            bank: self.bank,
            op_timeout_ms: self.op_timeout.as_millis() as u64,
            chorus_bin: self.chorus_bin.display().to_string(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.workloads.is_empty() {
            return Err("no workload".into());
        }
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if self.bank.accounts < 2 {
            return Err("the bank needs at least 2 accounts".into());
        }
        let (q, h) = (self.nemesis.quiet_ms, self.nemesis.hold_ms);
        if q.0 > q.1 || h.0 > h.1 || h.0 == 0 {
            return Err(format!(
                "bad nemesis timings: quiet {q:?} ms, hold {h:?} ms"
            ));
        }
        if !self.chorus_bin.is_file() {
            return Err(format!(
                "no chorus binary at {} (build it: cargo build -p chorus, or pass --chorus-bin)",
                self.chorus_bin.display()
            ));
        }
        if !self.project.join("deploy.sh").is_file() {
            return Err(format!("no deploy.sh in {}", self.project.display()));
        }
        Ok(())
    }
}

/// Runs the project's `deploy.sh` against `api`, output to `log`.
fn deploy(project: &Path, api: &str, log: &Path) -> Result<(), String> {
    let started = Instant::now();
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let status = Command::new(project.join("deploy.sh"))
        .args([&format!("http://{api}"), ADMIN_KEY])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| format!("running deploy.sh: {e}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        return Err(format!(
            "deploy failed ({status}):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    println!(
        "deployed tests/convex-project in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Per workload: the latest invocation time of an `Ok` op (to see recovery live).
struct Progress {
    last_ok_invoke_ns: Vec<AtomicU64>,
    ok: Vec<AtomicU64>,
}

fn spawn_clients(
    workloads: &[Arc<dyn Workload>],
    config: &RunConfig,
    apis: &[String],
    clock: Clock,
    stop: &Arc<AtomicBool>,
    progress: &Arc<Progress>,
) -> Vec<(usize, JoinHandle<Vec<RawOp>>)> {
    let root = Rng::new(config.seed);
    let mut threads = Vec::new();
    for (w, workload) in workloads.iter().enumerate() {
        for process in 0..config.clients {
            let stream = (w as u64 + 1) << 32 | process;
            let mut client = Client::new(
                process,
                apis.to_vec(),
                clock,
                config.op_timeout,
                root.fork(stream),
            );
            let workload = Arc::clone(workload);
            let stop = Arc::clone(stop);
            let progress = Arc::clone(progress);
            let handle = std::thread::spawn(move || {
                let mut ops = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let op = workload.step(&mut client);
                    match op.outcome {
                        Outcome::Ok => {
                            progress.last_ok_invoke_ns[w].fetch_max(op.invoke_ns, Ordering::SeqCst);
                            progress.ok[w].fetch_add(1, Ordering::SeqCst);
                        }
                        // Unknown answers usually mean the node is down or the cluster is
                        // electing: back off a little.
                        Outcome::Info => std::thread::sleep(Duration::from_millis(50)),
                        Outcome::Fail => {}
                    }
                    ops.push(op);
                    let think = client.rng.below(5);
                    std::thread::sleep(Duration::from_millis(think));
                }
                ops
            });
            threads.push((w, handle));
        }
    }
    threads
}

/// Waits until every running replica of `range` reports the same applied index and checksum;
/// `None` if they do, else what they reported last.
fn converge(cluster: &Cluster, range: u64) -> Option<String> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let running = cluster.nodes.values().filter(|n| n.is_running()).count();
    loop {
        let sums = cluster.checksums(range);
        let complete = sums.len() == running && sums.iter().all(|c| c["error"].is_null());
        let same = |key: &str| sums.windows(2).all(|w| w[0][key] == w[1][key]);
        if complete && same("index") && same("sha256") {
            println!(
                "range {range}: {} replicas converged at index {}",
                sums.len(),
                sums.first()
                    .map(|s| s["index"].to_string())
                    .unwrap_or_default()
            );
            return None;
        }
        if Instant::now() >= deadline {
            let what = if complete && same("index") {
                "same applied index, different checksums"
            } else {
                "not converged in time"
            };
            return Some(format!("{what}: {}", Value::Array(sums)));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs the harness; the verdict is also written to `OUT/report.json`. `Err` is a harness
/// failure (nothing was checked), not an anomaly.
pub fn run(config: &RunConfig) -> Result<Verdict, String> {
    config.validate()?;
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    if out.join(verdict::PARAMS_FILE).exists() || out.join("cluster").exists() {
        return Err(format!(
            "{} already holds a run; use a fresh directory",
            out.display()
        ));
    }
    let params = config.params();
    let params_json = serde_json::to_string_pretty(&params).map_err(|e| e.to_string())?;
    std::fs::write(out.join(verdict::PARAMS_FILE), &params_json).map_err(|e| e.to_string())?;
    println!(
        "chorus-torture run: seed {} duration {} s workloads {:?} nemesis {:?} (quiet {:?} ms, hold {:?} ms) clients {}/workload out {}",
        config.seed,
        config.duration.as_secs(),
        config
            .workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>(),
        config
            .nemesis
            .kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>(),
        config.nemesis.quiet_ms,
        config.nemesis.hold_ms,
        config.clients,
        out.display()
    );

    let cluster_dir = out.join("cluster");
    std::fs::create_dir_all(&cluster_dir).map_err(|e| format!("{}: {e}", cluster_dir.display()))?;
    let mut cluster = Cluster::start(
        &config.chorus_bin,
        &cluster_dir,
        NODES,
        ADMIN_KEY,
        &[("CHORUS_FAULT_INJECTION", "1")],
    );
    let apis: Vec<String> = cluster.nodes.values().map(|n| n.api.clone()).collect();
    println!("cluster up: {apis:?} (logs in {}/cluster)", out.display());
    deploy(&config.project, &apis[0], &out.join("deploy.log"))?;

    let workloads: Vec<Arc<dyn Workload>> = config
        .workloads
        .iter()
        .map(|kind| Arc::from(workload::make(*kind, config.bank)))
        .collect();
    let clock = Clock::start();
    for workload in &workloads {
        let mut client = Client::new(
            FINAL_READER,
            apis.clone(),
            clock,
            FINAL_READ_TIMEOUT,
            Rng::new(config.seed),
        );
        workload.setup(&mut client)?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress {
        last_ok_invoke_ns: workloads.iter().map(|_| AtomicU64::new(0)).collect(),
        ok: workloads.iter().map(|_| AtomicU64::new(0)).collect(),
    });
    let threads = spawn_clients(&workloads, config, &apis, clock, &stop, &progress);
    let load_started = clock.elapsed();

    let mut nemesis = Nemesis::new(config.nemesis.clone(), Rng::new(config.seed).fork(0), clock);
    nemesis.run(&mut cluster, load_started + config.duration);

    // Heal everything (the nemesis heals each fault; this is the belt to its braces).
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in &ids {
        if !cluster.nodes[id].is_running() {
            cluster.restart(*id);
        }
        if config.nemesis.kinds.contains(&FaultKind::Partition)
            && let Err(e) = nemesis::block(&cluster, *id, &[])
        {
            stop.store(true, Ordering::SeqCst);
            return Err(format!("could not heal node {id}: {e}"));
        }
    }
    let healed_ns = clock.now_ns();
    println!(
        "[{:>7.2} s] healed; ok ops so far: {:?}",
        healed_ns as f64 / 1e9,
        workloads
            .iter()
            .zip(&progress.ok)
            .map(|(w, n)| (w.kind().name(), n.load(Ordering::SeqCst)))
            .collect::<Vec<_>>()
    );
    let recovery_deadline = Instant::now() + config.recovery_timeout;
    let min_load_until = Instant::now() + MIN_RECOVERY_LOAD;
    loop {
        let recovered = progress
            .last_ok_invoke_ns
            .iter()
            .all(|t| t.load(Ordering::SeqCst) >= healed_ns);
        let now = Instant::now();
        if (recovered && now >= min_load_until) || now >= recovery_deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let mut histories: BTreeMap<usize, Vec<RawOp>> = BTreeMap::new();
    for (w, handle) in threads {
        let ops = handle
            .join()
            .map_err(|_| "a client thread panicked".to_string())?;
        histories.entry(w).or_default().extend(ops);
    }
    println!("[{:>7.2} s] clients stopped", clock.elapsed().as_secs_f64());

    let mut checks = ClusterChecks {
        recovery_timeout_ms: config.recovery_timeout.as_millis() as u64,
        ..ClusterChecks::default()
    };
    for (w, workload) in workloads.iter().enumerate() {
        let first = histories
            .get(&w)
            .into_iter()
            .flatten()
            .filter(|op| op.outcome == Outcome::Ok && op.invoke_ns >= healed_ns)
            .filter_map(|op| op.complete_ns)
            .min();
        checks.recovered_after_ms.insert(
            workload.kind().name().to_string(),
            first.map(|t| (t - healed_ns) / 1_000_000),
        );
    }
    for (range, name) in [(DATA_RANGE, "data"), (META_RANGE, "meta")] {
        checks
            .divergence
            .insert(name.to_string(), converge(&cluster, range));
    }

    for (w, workload) in workloads.iter().enumerate() {
        let mut client = Client::new(
            FINAL_READER,
            apis.clone(),
            clock,
            FINAL_READ_TIMEOUT,
            Rng::new(config.seed),
        );
        let finals = workload.final_reads(&mut client);
        histories.entry(w).or_default().extend(finals);
    }
    println!(
        "[{:>7.2} s] final reads done",
        clock.elapsed().as_secs_f64()
    );

    for (w, workload) in workloads.iter().enumerate() {
        let ops = histories.remove(&w).unwrap_or_default();
        let path = out.join(workload.kind().history_file());
        write_history(&path, ops).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let faults_path = out.join(verdict::FAULTS_FILE);
    let file = std::fs::File::create(&faults_path)
        .map_err(|e| format!("{}: {e}", faults_path.display()))?;
    check::history::write_jsonl(std::io::BufWriter::new(file), &nemesis.events)
        .map_err(|e| e.to_string())?;
    let checks_json = serde_json::to_string_pretty(&checks).map_err(|e| e.to_string())?;
    std::fs::write(out.join(verdict::CLUSTER_CHECKS_FILE), checks_json)
        .map_err(|e| e.to_string())?;
    drop(cluster);

    let verdict = check_and_report(out)?;
    Ok(verdict)
}

/// Checks a run directory, prints the report, writes `report.json`.
pub fn check_and_report(dir: &Path) -> Result<Verdict, String> {
    let started = Instant::now();
    let verdict = verdict::check_dir(dir)?;
    let params = verdict::read_params(dir)?;
    println!(
        "checked {} in {:.1} s (seed {}, {} s of faults, {} clients/workload)",
        dir.display(),
        started.elapsed().as_secs_f64(),
        params.seed,
        params.duration_secs,
        params.clients
    );
    print!("{}", verdict.render(10));
    let json = serde_json::to_string_pretty(&verdict).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(verdict::REPORT_FILE), json).map_err(|e| e.to_string())?;
    Ok(verdict)
}
