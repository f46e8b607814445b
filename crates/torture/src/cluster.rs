//! A cluster of `chorus start` processes on loopback.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http;

/// Range ids as `chorus start` numbers them.
pub const META_RANGE: u64 = 0;
pub const DATA_RANGE: u64 = 1;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One node process (running or not).
pub struct NodeProc {
    pub id: u64,
    /// Client protocol address.
    pub api: String,
    /// Node-to-node address.
    pub peer: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A cluster of `chorus start` processes; every process is killed (by id) on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    pub admin_key: String,
    /// `--peers` of the initial members.
    peers: String,
    env: Vec<(String, String)>,
    pub nodes: BTreeMap<u64, NodeProc>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Cluster {
    /// Starts nodes `1..=n` as the initial members in `dir`, and waits until both ranges have a
    /// leader that serves.
    pub fn start(bin: &Path, dir: &Path, n: u64, admin_key: &str, env: &[(&str, &str)]) -> Self {
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            nodes.insert(id, Self::node_proc(dir, id));
        }
        let peers = nodes
            .values()
            .map(|node| format!("{}={}", node.id, node.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            admin_key: admin_key.to_string(),
            peers,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nodes,
        };
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.spawn(id);
        }
        cluster.wait_for_leaders(Duration::from_secs(60));
        cluster
    }

    fn node_proc(dir: &Path, id: u64) -> NodeProc {
        NodeProc {
            id,
            api: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            data_dir: dir.join(format!("node-{id}")),
            log: dir.join(format!("node-{id}.log")),
            child: None,
        }
    }

    /// Adds node `id` (not an initial member) and starts it; it waits to be added.
    pub fn add_node(&mut self, id: u64) -> &NodeProc {
        let node = Self::node_proc(&self.dir, id);
        self.nodes.insert(id, node);
        self.spawn(id);
        &self.nodes[&id]
    }

    fn spawn(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        assert!(node.child.is_none(), "node {id} is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log");
        let mut command = Command::new(&self.bin);
        command
            .args(["start", "--node-id", &id.to_string()])
            .args(["--listen", &node.api, "--peer-listen", &node.peer])
            .args(["--peers", &self.peers, "--admin-key", &self.admin_key])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .env("RUST_LOG", "info,openraft=error")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            command.env(k, v);
        }
        node.child = Some(command.spawn().expect("start chorus"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let api = node.api.clone();
        while http::request(&api, "GET", "/version", "", None, Duration::from_secs(1))
            .map(|(s, _)| s != 200)
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "node {id} did not answer /version within 30 s (log: {})",
                self.nodes[&id].log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL node `id` (by process id) and reap it.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts a killed node on its data directory and addresses.
    pub fn restart(&mut self, id: u64) {
        self.spawn(id);
    }

    fn signal(&self, id: u64, signal: &str) {
        let pid = self.nodes[&id].pid().expect("running node");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// SIGSTOP: the process freezes (its sockets stay open, nothing answers).
    pub fn pause(&self, id: u64) {
        self.signal(id, "-STOP");
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self, id: u64) {
        self.signal(id, "-CONT");
    }

    /// API addresses of the running nodes.
    pub fn live_apis(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.is_running())
            .map(|n| n.api.clone())
            .collect()
    }

    /// An admin GET through any running node.
    pub fn admin_get(&self, path: &str) -> Option<Value> {
        for api in self.live_apis() {
            if let Ok((200, body)) =
                http::request(&api, "GET", path, "", Some(&self.admin_key), ADMIN_TIMEOUT)
                && let Ok(value) = serde_json::from_str(&body)
            {
                return Some(value);
            }
        }
        None
    }

    /// An admin POST through node `via`: status and JSON answer.
    pub fn admin_post(&self, via: u64, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = http::request(
            &self.nodes[&via].api,
            "POST",
            path,
            &body.to_string(),
            Some(&self.admin_key),
            Duration::from_secs(30),
        )
        .expect("admin request");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET /api/cluster/status` through any running node.
    pub fn status(&self) -> Option<Value> {
        self.admin_get("/api/cluster/status")
    }

    /// The leader of `range` per the cluster status.
    pub fn leader(&self, range: u64) -> Option<u64> {
        let status = self.status()?;
        status["ranges"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == range)?["leader"]
            .as_u64()
    }

    /// Waits until both ranges have a leader and the data leader serves.
    pub fn wait_for_leaders(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status() {
                let serving = status["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|n| n["servesData"] == true))
                    && status["nodes"]
                        .as_array()
                        .is_some_and(|n| n.iter().any(|n| n["servesTimestamps"] == true));
                if serving {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no serving leaders within {timeout:?}: {:?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Per running node, the checksum record of `range` (`/api/cluster/checksums`).
    pub fn checksums(&self, range: u64) -> Vec<Value> {
        self.admin_get("/api/cluster/checksums")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["range"] == range)
            .filter(|c| {
                c["node"]
                    .as_u64()
                    .is_some_and(|id| self.nodes.get(&id).is_some_and(NodeProc::is_running))
            })
            .collect()
    }

    /// Waits until every running node reports the same applied index and checksum of `range`
    /// (writes must have stopped); returns them.
    pub fn wait_converged(&self, range: u64, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let running = self.nodes.values().filter(|n| n.is_running()).count();
        loop {
            let sums = self.checksums(range);
            let complete = sums.len() == running && sums.iter().all(|c| c["error"].is_null());
            if complete
                && sums
                    .windows(2)
                    .all(|w| w[0]["index"] == w[1]["index"] && w[0]["sha256"] == w[1]["sha256"])
            {
                return sums;
            }
            assert!(
                Instant::now() < deadline,
                "range {range} did not converge within {timeout:?}: {sums:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The tail of node `id`'s log, for failure messages.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            // A paused process must be resumed to die promptly on some kernels; SIGKILL works
            // on stopped processes on Linux, so kill is enough.
            self.kill(id);
        }
    }
}
