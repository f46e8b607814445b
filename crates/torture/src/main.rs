//! `chorus-torture`: the correctness harness (docs/correctness.md).
//!
//! - `chorus-torture run --out DIR [--seed N] [--duration-secs S] [--workload LIST]
//!   [--nemesis LIST] [--clients C] [--chorus-bin PATH]` runs a 3-node cluster under faults,
//!   records and checks the histories;
//! - `chorus-torture check DIR` re-checks a run directory offline.
//!
//! Exit status: 0 if no anomaly was found (a checker that could not decide is printed as a
//! WARNING and does not change the status), 1 if any anomaly was found, 2 if the harness itself
//! failed (bad arguments, the cluster or the deploy did not come up, unreadable histories).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use torture::nemesis::FaultKind;
use torture::run::{self, RunConfig};
use torture::verdict::Verdict;
use torture::workload::WorkloadKind;

#[derive(Parser)]
#[command(
    name = "chorus-torture",
    about = "Chorus's correctness harness: recorded histories checked under real faults"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a cluster under faults and check what the clients saw.
    Run {
        /// Seed of every random choice (ops, faults, timings); printed. Default: from the clock.
        #[arg(long)]
        seed: Option<u64>,
        /// How long faults are injected (clients run this long plus the recovery).
        #[arg(long, default_value_t = 60)]
        duration_secs: u64,
        /// Comma-separated: bank, append, register, set, monotonic, or all.
        #[arg(long, default_value = "all")]
        workload: String,
        /// Comma-separated: kill, pause, partition; or all, or none.
        #[arg(long, default_value = "kill,pause,partition")]
        nemesis: String,
        /// Concurrent clients per workload.
        #[arg(long, default_value_t = 3)]
        clients: u64,
        /// Run directory (histories, report, node logs); must not hold a run already.
        #[arg(long)]
        out: PathBuf,
        /// The `chorus` binary. Default: `chorus` next to this executable.
        #[arg(long)]
        chorus_bin: Option<PathBuf>,
        /// The Convex project to deploy. Default: tests/convex-project of this checkout.
        #[arg(long)]
        project: Option<PathBuf>,
        /// Quiet time before each fault, MIN-MAX milliseconds.
        #[arg(long, default_value = "2000-5000")]
        quiet_ms: String,
        /// How long each fault is held, MIN-MAX milliseconds.
        #[arg(long, default_value = "3000-8000")]
        hold_ms: String,
        /// A request not answered within this long is indeterminate.
        #[arg(long, default_value_t = 5000)]
        op_timeout_ms: u64,
        /// After healing, how long every workload gets to succeed again.
        #[arg(long, default_value_t = 60)]
        recovery_timeout_secs: u64,
    },
    /// Re-check a run directory written by `run`.
    Check { dir: PathBuf },
}

fn list<T: std::str::FromStr<Err = String> + Copy>(
    text: &str,
    all: &[T],
) -> Result<Vec<T>, String> {
    match text.trim() {
        "all" => Ok(all.to_vec()),
        "none" | "" => Ok(Vec::new()),
        text => text.split(',').map(|s| s.trim().parse()).collect(),
    }
}

fn range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{text:?} is not MIN-MAX");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo = lo.trim().parse().map_err(|_| bad())?;
    let hi = hi.trim().parse().map_err(|_| bad())?;
    Ok((lo, hi))
}

fn default_project() -> PathBuf {
    let local = PathBuf::from("tests/convex-project");
    if local.join("deploy.sh").is_file() {
        return local;
    }
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/convex-project"
    ))
}

fn exit_for(verdict: &Verdict) -> ExitCode {
    if verdict.warning_count() > 0 {
        println!(
            "WARNING: {} checks could not decide (see above); they are not counted as anomalies",
            verdict.warning_count()
        );
    }
    if verdict.is_valid() {
        println!("OK: no anomalies");
        ExitCode::SUCCESS
    } else {
        println!("FAILED: {} anomalies", verdict.anomaly_count());
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Check { dir } => run::check_and_report(&dir),
        Cmd::Run {
            seed,
            duration_secs,
            workload,
            nemesis,
            clients,
            out,
            chorus_bin,
            project,
            quiet_ms,
            hold_ms,
            op_timeout_ms,
            recovery_timeout_secs,
        } => (|| {
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            });
            let chorus_bin = match chorus_bin {
                Some(bin) => bin,
                None => std::env::current_exe()
                    .map_err(|e| format!("cannot locate this executable: {e}"))?
                    .with_file_name("chorus"),
            };
            let mut config = RunConfig::new(
                seed,
                Duration::from_secs(duration_secs),
                out,
                chorus_bin,
                project.unwrap_or_else(default_project),
            );
            config.workloads = list(&workload, &WorkloadKind::ALL)?;
            config.nemesis.kinds = list(&nemesis, &FaultKind::ALL)?;
            config.nemesis.quiet_ms = range(&quiet_ms)?;
            config.nemesis.hold_ms = range(&hold_ms)?;
            config.clients = clients;
            config.op_timeout = Duration::from_millis(op_timeout_ms);
            config.recovery_timeout = Duration::from_secs(recovery_timeout_secs);
            run::run(&config)
        })(),
    };
    match result {
        Ok(verdict) => exit_for(&verdict),
        Err(e) => {
            eprintln!("chorus-torture: {e}");
            ExitCode::from(2)
        }
    }
}
