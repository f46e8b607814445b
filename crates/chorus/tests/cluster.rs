//! A 3-node cluster (`chorus start`) as real processes on loopback, deployed to with the real
//! `npx convex deploy` (through a follower, forwarded to the leader), under a closed-loop write
//! load through the client protocol (`torture::load`):
//!
//! - failover: SIGKILL the data range's leader, then the meta range's leader, round after
//!   round; the client-visible unavailability of each (last acknowledgement before the kill →
//!   first after) is printed; afterwards every acknowledged write is present exactly once and
//!   every node holds the same data (checksum of the range at one applied index);
//! - rejoin: a node killed for 10,000 commits catches up from a snapshot (its log was
//!   compacted past it) and ends with the leader's checksum;
//! - membership: a fourth node joins as a learner, catches up, is promoted; an old voter is
//!   removed; writes continue throughout and none is lost.
//!
//! Needs Node.js 20+ and npm (the Convex CLI). The bounds asserted on unavailability are
//! deliberately loose sanity bounds (`CHORUS_FAILOVER_MAX_MS`, default 5000): on a loaded
//! 2-core CI machine the point is that failover is automatic and loses nothing; the measured
//! numbers come from the benchmark run in `docs/benchmarks.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use torture::cluster::{Cluster, DATA_RANGE, META_RANGE};
use torture::load::{self, WriteLoad};

const ADMIN_KEY: &str = "chorus-cluster-test|0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chorus"))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn deploy(api: &str) {
    let started = Instant::now();
    let status = Command::new(repo().join("tests/convex-project/deploy.sh"))
        .args([&format!("http://{api}"), ADMIN_KEY])
        .status()
        .expect("run deploy.sh");
    assert!(status.success(), "deploy through {api} failed: {status}");
    println!(
        "deployed through {api} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A test directory, kept (not deleted) when `CHORUS_KEEP_TEST_DIR` is set, for its node logs.
struct KeepDir(Option<tempfile::TempDir>);

impl KeepDir {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("dir").path()
    }
}

impl Drop for KeepDir {
    fn drop(&mut self) {
        if std::env::var("CHORUS_KEEP_TEST_DIR").is_ok()
            && let Some(dir) = self.0.take()
        {
            let _ = dir.keep();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Every acknowledged write present exactly once, nothing unattempted, all nodes equal.
fn check_nothing_lost(cluster: &Cluster, record: &load::LoadRecord, via: &str) {
    let sums = cluster.wait_converged(DATA_RANGE, Duration::from_secs(120));
    println!("data range converged: {sums:?}");
    cluster.wait_converged(META_RANGE, Duration::from_secs(60));
    let found = load::read_all_writes(via).expect("read every write");
    let problems = load::check_writes(record, &found);
    assert!(
        problems.is_empty(),
        "{} problems: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    println!(
        "{} acknowledged writes all present once; {} indeterminate, of which {} present",
        record.acknowledged().len(),
        record.indeterminate().len(),
        record
            .indeterminate()
            .iter()
            .filter(|k| found.contains_key(k))
            .count()
    );
}

#[test]
fn failover_kills_leaders_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::var("CHORUS_KEEP_TEST_DIR").is_ok() {
        println!("node logs kept in {}", dir.path().display());
    }
    let dir = KeepDir(Some(dir));
    let mut cluster = Cluster::start(&bin(), dir.path(), 3, ADMIN_KEY, &[]);
    let follower = (1..=3)
        .find(|id| Some(*id) != cluster.leader(DATA_RANGE))
        .expect("a follower");
    deploy(&cluster.nodes[&follower].api.clone());

    let rounds = env_u64("CHORUS_FAILOVER_ROUNDS", 10);
    let load = WriteLoad::start(cluster.live_apis(), 8);
    assert!(
        load.wait_for_ack_after(Duration::ZERO, Duration::from_secs(30)),
        "no write succeeded before the first fault"
    );
    let mut kills = Vec::new();
    for round in 0..rounds {
        // Alternate: the data range's leader, then the meta range's (the oracle).
        let range = if round % 2 == 0 {
            DATA_RANGE
        } else {
            META_RANGE
        };
        let victim = cluster.leader(range).expect("a leader");
        let also = if range == DATA_RANGE {
            META_RANGE
        } else {
            DATA_RANGE
        };
        let both = cluster.leader(also) == Some(victim);
        // Steady load first.
        let steady = load.now();
        assert!(
            load.wait_for_ack_after(steady + Duration::from_millis(300), Duration::from_secs(30)),
            "writes did not resume before round {round}"
        );
        let at = load.now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        println!("round {round}: SIGKILL node {victim} at unix {wall:.3}");
        cluster.kill(victim);
        let resumed = load.wait_for_ack_after(at, Duration::from_secs(30));
        assert!(
            resumed,
            "no write succeeded within 30 s of killing node {victim}:\n{}",
            cluster.log_tail(victim, 30)
        );
        kills.push((round, range, victim, both, at));
        std::thread::sleep(Duration::from_millis(200));
        cluster.restart(victim);
        cluster.wait_for_leaders(Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(500));
    let record = load.stop();

    let mut gaps = Vec::new();
    println!("round  range  victim  also-led-other  unavailable");
    for (round, range, victim, both, at) in &kills {
        let gap = record
            .unavailability(*at)
            .expect("acknowledgements before and after the kill");
        println!(
            "{round:>5}  {:>5}  {victim:>6}  {both:>14}  {:>8.0} ms",
            if *range == DATA_RANGE { "data" } else { "meta" },
            gap.as_secs_f64() * 1e3
        );
        gaps.push(gap);
    }
    gaps.sort();
    let p50 = percentile(&gaps, 50.0);
    let max = *gaps.last().expect("rounds");
    println!(
        "FAILOVER {} kills: unavailability p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms; {:.0} acknowledged writes/s overall; outcomes {:?}",
        gaps.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&gaps, 90.0).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        record.throughput(),
        record.outcome_counts()
    );
    let bound = Duration::from_millis(env_u64("CHORUS_FAILOVER_MAX_MS", 5_000));
    assert!(max <= bound, "a failover took {max:?} (bound {bound:?})");
    check_nothing_lost(&cluster, &record, &cluster.nodes[&1].api.clone());
}

#[test]
fn killed_node_rejoins_from_a_snapshot_after_10000_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Snapshots every 200 entries (the log kept 40 behind), so 10,000 commits compact the log
    // far past the stopped node.
    let mut cluster = Cluster::start(
        &bin(),
        dir.path(),
        3,
        ADMIN_KEY,
        &[("CHORUS_RAFT_SNAPSHOT_ENTRIES", "200")],
    );
    let leaders = [cluster.leader(DATA_RANGE), cluster.leader(META_RANGE)];
    let victim = (1..=3)
        .rev()
        .find(|id| !leaders.contains(&Some(*id)))
        .unwrap_or(3);
    let survivor = (1..=3).find(|id| *id != victim).expect("survivor");
    deploy(&cluster.nodes[&survivor].api.clone());

    let before = cluster.status().expect("status");
    let victim_log_at_kill = replica(&before, DATA_RANGE, victim)["lastLogIndex"]
        .as_u64()
        .unwrap_or(0);
    cluster.kill(victim);
    let apis: Vec<String> = cluster.live_apis();
    let load = WriteLoad::start(apis.clone(), 16);
    let started = Instant::now();
    while load.acks() < 10_000 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {} commits in 600 s",
            load.acks()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let record = load.stop();
    println!(
        "{} commits while node {victim} was down, {:.0}/s",
        record.acknowledged().len(),
        record.throughput()
    );
    let status = cluster.status().expect("status");
    let data = range(&status, DATA_RANGE);
    let purged = data["purgedIndex"].as_u64().unwrap_or(0);
    assert!(
        purged > victim_log_at_kill,
        "the leader's log must be compacted past the stopped node ({purged} <= {victim_log_at_kill})"
    );

    let restarted = Instant::now();
    cluster.restart(victim);
    let sums = cluster.wait_converged(DATA_RANGE, Duration::from_secs(180));
    println!(
        "node {victim} caught up in {:.1} s: {sums:?}",
        restarted.elapsed().as_secs_f64()
    );
    let after = cluster.status().expect("status");
    let snapshot = replica(&after, DATA_RANGE, victim)["snapshotIndex"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        snapshot > victim_log_at_kill,
        "node {victim} holds no snapshot past its old log ({snapshot} <= {victim_log_at_kill})"
    );
    check_nothing_lost(&cluster, &record, &cluster.nodes[&victim].api.clone());
}

#[test]
fn learner_joins_is_promoted_and_an_old_voter_is_removed_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(&bin(), dir.path(), 3, ADMIN_KEY, &[]);
    deploy(&cluster.nodes[&2].api.clone());
    // The cluster endpoints refuse requests without the admin key, and change nothing.
    for (method, path, body) in [
        ("GET", "/api/cluster/status", ""),
        (
            "POST",
            "/api/cluster/membership",
            r#"{"op":"remove","node":3}"#,
        ),
    ] {
        let (status, text) = torture::http::request(
            &cluster.nodes[&1].api,
            method,
            path,
            body,
            None,
            Duration::from_secs(10),
        )
        .expect("request");
        assert_eq!(status, 401, "{method} {path}: {text}");
    }
    // Clients use nodes 2 and 3; node 1 leaves the cluster.
    let apis = vec![cluster.nodes[&2].api.clone(), cluster.nodes[&3].api.clone()];
    let load = WriteLoad::start(apis, 8);
    assert!(load.wait_for_ack_after(Duration::ZERO, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_secs(1));

    let peer = cluster.add_node(4).peer.clone();
    let (code, answer) = cluster.admin_post(
        2,
        "/api/cluster/membership",
        &json!({ "op": "addLearner", "node": 4, "peer": peer }),
    );
    assert_eq!(code, 200, "{answer}");
    // Promote once caught up (the server refuses while the learner lags).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, answer) = cluster.admin_post(
            3,
            "/api/cluster/membership",
            &json!({ "op": "promote", "node": 4 }),
        );
        if code == 200 {
            println!("promoted: {answer}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 never caught up: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, answer) = cluster.admin_post(
        2,
        "/api/cluster/membership",
        &json!({ "op": "remove", "node": 1 }),
    );
    assert_eq!(code, 200, "{answer}");
    std::thread::sleep(Duration::from_secs(1));
    cluster.kill(1);
    std::thread::sleep(Duration::from_secs(2));
    let record = load.stop();

    let status = cluster.status().expect("status");
    for id in [DATA_RANGE, META_RANGE] {
        let voters: Vec<u64> = range(&status, id)["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .filter(|r| r["voter"] == true)
            .filter_map(|r| r["node"].as_u64())
            .collect();
        assert_eq!(voters, vec![2, 3, 4], "range {id}: {status}");
    }
    let gap = record.longest_gap();
    println!(
        "membership change under load: {} acknowledged, longest gap {:.0} ms, outcomes {:?}",
        record.acknowledged().len(),
        gap.as_secs_f64() * 1e3,
        record.outcome_counts()
    );
    let bound = Duration::from_millis(env_u64("CHORUS_FAILOVER_MAX_MS", 5_000));
    assert!(gap <= bound, "writes stopped for {gap:?}");
    check_nothing_lost(&cluster, &record, &cluster.nodes[&4].api.clone());
}

fn range(status: &Value, id: u64) -> &Value {
    status["ranges"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == id))
        .expect("range in status")
}

fn replica(status: &Value, range_id: u64, node: u64) -> &Value {
    range(status, range_id)["replicas"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["node"] == node))
        .expect("replica in status")
}
