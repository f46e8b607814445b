//! Crash test with real processes: a writer process commits and prints each acknowledged
//! commit; the test kills it with SIGKILL at random moments, restarts it, and checks after
//! every kill that every acknowledged commit is stored and nothing is half-applied.
//!
//! Seed: `CHORUS_CRASH_SEED` (printed); kills: `CHORUS_CRASH_KILLS` (default 20).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WRITER: &str = env!("CARGO_BIN_EXE_txn-crash-writer");

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Runs the writer until it has acknowledged `acks` commits or `max_ms` passed, then SIGKILLs
/// it. Returns the acknowledged seqs.
fn run_and_kill(dir: &Path, acks: u64, max_ms: u64) -> Vec<i64> {
    let mut child = Command::new(WRITER)
        .args(["run", "--dir"])
        .arg(dir)
        .args(["--writers", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_millis(max_ms);
    let mut acked = Vec::new();
    while (acked.len() as u64) < acks {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let seq = rest.split_whitespace().next().expect("seq");
                    acked.push(seq.parse().expect("seq number"));
                }
            }
            Err(_) => break,
        }
    }
    // SIGKILL: no chance to flush or clean up.
    child.kill().expect("kill writer");
    child.wait().expect("reap writer");
    // Lines the writer printed before dying were acknowledged too.
    reader.join().expect("reader thread");
    while let Ok(line) = rx.try_recv() {
        if let Some(rest) = line.strip_prefix("ACK ") {
            acked.push(
                rest.split_whitespace()
                    .next()
                    .expect("seq")
                    .parse()
                    .expect("seq"),
            );
        }
    }
    acked
}

fn verify(dir: &Path) -> (i64, Vec<i64>, Vec<i64>) {
    let out = Command::new(WRITER)
        .args(["verify", "--dir"])
        .arg(dir)
        .output()
        .expect("run verify");
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("verify printed no {name}"))
            .trim()
            .to_string()
    };
    let list = |s: String| -> Vec<i64> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().expect("seq"))
            .collect()
    };
    (
        field("COUNTER ").parse().expect("counter"),
        list(field("LEDGER")),
        list(field("MIRROR")),
    )
}

#[test]
fn acknowledged_commits_survive_sigkill() {
    let seed: u64 = std::env::var("CHORUS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let kills: u64 = std::env::var("CHORUS_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("crash test seed {seed} (CHORUS_CRASH_SEED={seed} to replay), {kills} kills");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all_acked: BTreeSet<i64> = BTreeSet::new();
    for round in 0..kills {
        // Kill after a random number of acknowledgements, or at a random moment, sometimes
        // before the writer even finished recovering.
        let acks = rng.below(300);
        let max_ms = 20 + rng.below(600);
        let acked = run_and_kill(dir.path(), acks, max_ms);
        for seq in &acked {
            assert!(
                all_acked.insert(*seq),
                "seed {seed}: seq {seq} acknowledged twice"
            );
        }
        let (counter, mut ledger, mut mirror) = verify(dir.path());
        ledger.sort_unstable();
        mirror.sort_unstable();
        let expected: Vec<i64> = (1..=counter).collect();
        assert_eq!(
            ledger, expected,
            "seed {seed} round {round}: ledger is not exactly 1..=counter"
        );
        assert_eq!(
            mirror, expected,
            "seed {seed} round {round}: a commit was half-applied (mirror differs)"
        );
        if let Some(max) = all_acked.last() {
            assert!(
                *max <= counter,
                "seed {seed} round {round}: acknowledged seq {max} lost (counter {counter})"
            );
        }
        eprintln!(
            "round {round}: {} acked this round, {} acked in all, {counter} stored",
            acked.len(),
            all_acked.len()
        );
    }
    assert!(
        all_acked.len() > 100,
        "seed {seed}: the writer made too little progress to test anything"
    );
}
