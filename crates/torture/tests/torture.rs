//! The correctness harness end to end (docs/correctness.md):
//!
//! - `torture_run_under_faults_finds_no_anomaly`: a real 3-node cluster (`chorus start`
//!   processes on loopback), `tests/convex-project` deployed with the real `npx convex
//!   deploy`, every workload's clients through the HTTP client protocol, kill, pause and
//!   partition faults for `CHORUS_TORTURE_SECS` (default 45) seconds; the recorded histories
//!   must hold no anomaly, every fault kind must have been injected, and every workload must
//!   have had ops succeed. The seed is printed; `CHORUS_TORTURE_SEED` replays a schedule. On
//!   failure the run directory (histories, report, node logs) is kept under
//!   `target/tmp/torture-*` and printed.
//! - `checker_path_reports_injected_anomalies`: the harness's checking path (the one `run`
//!   and `chorus-torture check` use) on run directories written by hand, one anomaly per
//!   workload injected: each is reported, and the binary exits 1 (0 without them).
//!
//! Needs the `chorus` binary next to this test's profile directory (`target/debug/chorus`):
//! `cargo nextest run --workspace` builds it; with `-p torture` alone it is built here if
//! missing (a stale one is used as is: build `-p chorus` first). Needs Node.js 20+ and npm.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use check::Outcome;
use check::bank::BankOp;
use check::elle::MicroOp;
use check::linear::{RegisterFn, RegisterOp};
use check::set::SetOp;
use serde_json::{Value, json};
use torture::nemesis::{FaultKind, NemesisConfig};
use torture::record::{RawOp, write_history};
use torture::run::{RunConfig, run};
use torture::verdict::{self, ClusterChecks, Params};
use torture::workload::{BankParams, SetRecord, WorkloadKind};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/<profile>` of this test executable (`target/<profile>/deps/torture-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// The `chorus` binary of this profile, built if missing.
fn chorus_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("CHORUS_BIN") {
        return PathBuf::from(bin);
    }
    let dir = profile_dir();
    let bin = dir.join("chorus");
    if bin.is_file() {
        return bin;
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    println!("{} is missing: building it", bin.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(repo())
        .args(["build", "-p", "chorus", "--bin", "chorus"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p chorus failed: {status}");
    assert!(
        bin.is_file(),
        "cargo build did not produce {}",
        bin.display()
    );
    bin
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn torture_run_under_faults_finds_no_anomaly() {
    let started = Instant::now();
    let seed = env_u64("CHORUS_TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000)
            .unwrap_or(1)
    });
    let secs = env_u64("CHORUS_TORTURE_SECS").unwrap_or(45);
    println!("torture seed {seed} ({secs} s of faults); replay with CHORUS_TORTURE_SEED={seed}");
    let target = profile_dir();
    let out = target
        .parent()
        .unwrap_or(&target)
        .join("tmp")
        .join(format!("torture-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut config = RunConfig::new(
        seed,
        Duration::from_secs(secs),
        out.clone(),
        chorus_bin(),
        repo().join("tests/convex-project"),
    );
    config.clients = 2;
    config.nemesis = NemesisConfig {
        kinds: FaultKind::ALL.to_vec(),
        quiet_ms: (1_000, 3_000),
        hold_ms: (2_000, 5_000),
    };
    let verdict = run(&config).unwrap_or_else(|e| {
        panic!(
            "harness failed (seed {seed}): {e}\nrun directory kept: {}",
            out.display()
        )
    });
    let injected = verdict.faults_injected();
    let ok: Vec<(String, usize)> = verdict
        .workloads
        .iter()
        .map(|(name, w)| (name.clone(), w.ok))
        .collect();
    println!(
        "seed {seed}: faults {injected:?}, ok ops {ok:?}, {} anomalies, {:.0} s in all",
        verdict.anomaly_count(),
        started.elapsed().as_secs_f64()
    );
    let healthy = verdict.is_valid()
        && FaultKind::ALL
            .iter()
            .all(|k| injected.get(k.name()).copied().unwrap_or(0) >= 1)
        && ok.iter().all(|(_, n)| *n >= 30);
    if healthy {
        let _ = std::fs::remove_dir_all(&out);
    } else {
        println!("run directory kept: {}", out.display());
    }
    assert!(
        verdict.is_valid(),
        "seed {seed}: {} anomalies (report above; {} kept)",
        verdict.anomaly_count(),
        out.display()
    );
    for kind in FaultKind::ALL {
        assert!(
            injected.get(kind.name()).copied().unwrap_or(0) >= 1,
            "seed {seed}: no {kind} fault was injected: {injected:?}"
        );
    }
    for (name, n) in &ok {
        assert!(*n >= 30, "seed {seed}: only {n} {name} ops succeeded");
    }
}

// ---------------------------------------------------------------------------------------------
// The checking path on hand-written histories.

fn op(process: u64, invoke: u64, complete: u64, outcome: Outcome, payload: Value) -> RawOp {
    RawOp {
        process,
        invoke_ns: invoke,
        complete_ns: Some(complete),
        outcome,
        payload,
        error: None,
    }
}

fn ok<T: serde::Serialize>(process: u64, invoke: u64, complete: u64, payload: &T) -> RawOp {
    op(
        process,
        invoke,
        complete,
        Outcome::Ok,
        serde_json::to_value(payload).expect("payload json"),
    )
}

/// Writes a run directory whose histories hold one anomaly per workload if `inject`.
fn write_run(dir: &Path, inject: bool) {
    let bank = BankParams {
        accounts: 2,
        total: 20,
    };
    let params = Params {
        seed: 0,
        duration_secs: 0,
        workloads: WorkloadKind::ALL.to_vec(),
        clients: 2,
        nemesis: NemesisConfig {
            kinds: Vec::new(),
            quiet_ms: (1, 1),
            hold_ms: (1, 1),
        },
        bank,
        op_timeout_ms: 1,
        chorus_bin: String::new(),
    };
    std::fs::write(
        dir.join(verdict::PARAMS_FILE),
        serde_json::to_string(&params).expect("params json"),
    )
    .expect("write params");
    let history = |kind: WorkloadKind, ops: Vec<RawOp>| {
        write_history(&dir.join(kind.history_file()), ops).expect("write history");
    };

    // bank: a read whose balances do not sum to the total.
    let balances = |a: i64, b: i64| BankOp::Read {
        balances: Some([(0, a), (1, b)].into_iter().collect()),
    };
    let mut ops = vec![
        ok(
            0,
            10,
            20,
            &BankOp::Transfer {
                from: 0,
                to: 1,
                amount: 5,
            },
        ),
        ok(1, 30, 40, &balances(5, 15)),
    ];
    if inject {
        ops.push(ok(1, 50, 60, &balances(5, 25)));
    }
    history(WorkloadKind::Bank, ops);

    // append: write skew (each txn reads the key the other appends to, neither sees it).
    let read = |key, value: Vec<u64>| MicroOp::Read {
        key,
        value: Some(value),
    };
    let mut ops = vec![ok(
        0,
        10,
        40,
        &vec![read(2, vec![]), MicroOp::Append { key: 1, value: 1 }],
    )];
    if inject {
        ops.push(ok(
            1,
            11,
            41,
            &vec![read(1, vec![]), MicroOp::Append { key: 2, value: 2 }],
        ));
        ops.push(ok(2, 50, 60, &vec![read(1, vec![1]), read(2, vec![2])]));
    } else {
        ops.push(ok(2, 50, 60, &vec![read(1, vec![1]), read(2, vec![])]));
    }
    history(WorkloadKind::Append, ops);

    // register: a stale read after a completed write.
    let reg = |f| RegisterOp { key: 0, f };
    let mut ops = vec![
        ok(0, 10, 20, &reg(RegisterFn::Write { value: 1 })),
        ok(0, 30, 40, &reg(RegisterFn::Write { value: 2 })),
        ok(1, 50, 60, &reg(RegisterFn::Read { value: Some(2) })),
    ];
    if inject {
        ops.push(ok(1, 70, 80, &reg(RegisterFn::Read { value: Some(1) })));
    }
    history(WorkloadKind::Register, ops);

    // set: an acknowledged add missing from the final read.
    let set = |op| SetRecord { set: 0, op };
    let final_read: BTreeSet<u64> = if inject { [1].into() } else { [1, 2].into() };
    let ops = vec![
        ok(0, 10, 20, &set(SetOp::Add { element: 1 })),
        ok(0, 30, 40, &set(SetOp::Add { element: 2 })),
        ok(
            999,
            50,
            60,
            &set(SetOp::Read {
                elements: Some(final_read),
            }),
        ),
    ];
    history(WorkloadKind::Set, ops);

    // monotonic: a client's later read sees an older version; plus an answer no function
    // returns (recorded as malformed by the client).
    let mut ops = vec![
        ok(0, 10, 20, &json!({"f": "read", "versions": {"0": 5}})),
        ok(0, 30, 40, &json!({"f": "read", "versions": {"0": 6}})),
    ];
    if inject {
        ops.push(ok(0, 50, 60, &json!({"f": "read", "versions": {"0": 4}})));
        ops.push(RawOp {
            error: Some(format!(
                "{}: \"x\" is not a number",
                torture::record::MALFORMED
            )),
            ..op(1, 50, 60, Outcome::Info, json!({"f": "read"}))
        });
    }
    history(WorkloadKind::Monotonic, ops);

    let checks = ClusterChecks {
        recovered_after_ms: [("bank".to_string(), Some(10))].into(),
        recovery_timeout_ms: 1_000,
        divergence: [("data".to_string(), None)].into(),
    };
    std::fs::write(
        dir.join(verdict::CLUSTER_CHECKS_FILE),
        serde_json::to_string(&checks).expect("checks json"),
    )
    .expect("write checks");
}

#[test]
fn checker_path_reports_injected_anomalies() {
    let bin = env!("CARGO_BIN_EXE_chorus-torture");

    let clean = tempfile::tempdir().expect("tempdir");
    write_run(clean.path(), false);
    let verdict = verdict::check_dir(clean.path()).expect("check clean run");
    assert!(verdict.is_valid(), "{}", verdict.render(10));
    let status = Command::new(bin)
        .arg("check")
        .arg(clean.path())
        .status()
        .expect("run chorus-torture check");
    assert_eq!(status.code(), Some(0), "clean run");

    let bad = tempfile::tempdir().expect("tempdir");
    write_run(bad.path(), true);
    let verdict = verdict::check_dir(bad.path()).expect("check bad run");
    println!("{}", verdict.render(10));
    for kind in WorkloadKind::ALL {
        let w = &verdict.workloads[kind.name()];
        assert!(
            !w.anomalies.is_empty(),
            "{kind}: injected anomaly not reported"
        );
    }
    assert!(verdict.workloads["append"].anomalies[0].starts_with("G2"));
    assert_eq!(
        verdict.workloads["monotonic"].anomalies.len(),
        2,
        "a regression and a malformed answer"
    );
    let output = Command::new(bin)
        .arg("check")
        .arg(bad.path())
        .output()
        .expect("run chorus-torture check");
    assert_eq!(output.status.code(), Some(1), "run with anomalies");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("ANOMALY"), "{text}");

    // A cluster that did not recover, and replicas that diverged, are anomalies too.
    let checks = ClusterChecks {
        recovered_after_ms: [("bank".to_string(), None)].into(),
        recovery_timeout_ms: 1_000,
        divergence: [("data".to_string(), Some("different checksums".into()))].into(),
    };
    std::fs::write(
        clean.path().join(verdict::CLUSTER_CHECKS_FILE),
        serde_json::to_string(&checks).expect("checks json"),
    )
    .expect("write checks");
    let verdict = verdict::check_dir(clean.path()).expect("check run");
    assert_eq!(verdict.cluster.len(), 2, "{:?}", verdict.cluster);
}
