//! `chorus-bench cluster`: replicated commits on a 3-node Chorus cluster next to the same load
//! on a 3-member etcd cluster, both started here on loopback, measured in the same run and
//! interleaved level by level (disk sync latency drifts from one minute to the next, so only
//! numbers from one run compare).
//!
//! The load is closed loop: each client owns one keep-alive HTTP/1.1 connection, sends one
//! request, waits for the whole answer and sends the next. Chorus gets
//! `POST /api/mutation` `cluster:write({client, seq})` (the JS function inserts one document;
//! the commit goes through the data range's Raft log, its timestamp from the oracle on the meta
//! range's leader); etcd gets `POST /v3/kv/put` through its JSON gateway with a unique key and a
//! 256-byte value. Both clusters keep their default durability (fsync before acknowledging).
//!
//! CPU is sampled from `/proc` over each measured window: the measured cluster's processes,
//! the idle other cluster, the load generator itself and the whole machine, so a saturated
//! machine or generator shows in the output instead of passing for server speed.
//!
//! Flags: `--clients 1,16,128` (one level each), `--secs 10` measured after `--warmup 2`,
//! `--spread leader,all` (every client on the leader, then round-robin over the three nodes),
//! `--chorus-bin PATH`, `--etcd-bin PATH`, `--project DIR` (the Convex project to deploy),
//! `--dir DIR` (where the run's temporary data directory goes; default `.`, which should be on
//! the disk under test), `--generator-threads 1`.
//!
//! Needs the release `chorus` binary (`--chorus-bin`, default next to this executable), `etcd`
//! on PATH (`--etcd-bin`; Debian's `etcd-server`, installed by `scripts/bench-cluster`), and
//! Node.js with npm for the real `npx convex deploy` of `tests/convex-project`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use torture::cluster::{Cluster, DATA_RANGE, META_RANGE};

use crate::{machine, ms, percentile};

const ADMIN_KEY: &str = "chorus-bench-cluster|00112233445566778899aabbccddeeff";
const ETCD_VALUE_BYTES: usize = 256;
/// etcd's backend quota; the default 2 GiB would be enough, this keeps long runs from ever
/// tripping the NOSPACE alarm.
const ETCD_QUOTA_BACKEND_BYTES: u64 = 8 << 30;
/// One request that takes longer than this counts as an error and its connection is replaced.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Error messages kept per level for the report.
const ERROR_SAMPLES: usize = 3;

/// Set by SIGINT/SIGTERM: the load stops and `run` returns, so the clusters are dropped and
/// every process this benchmark started is killed by id.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

struct Opts {
    clients: Vec<usize>,
    secs: u64,
    warmup_secs: u64,
    chorus_bin: Option<PathBuf>,
    etcd_bin: String,
    project: PathBuf,
    dir: Option<PathBuf>,
    spreads: Vec<Spread>,
    generator_threads: usize,
}

/// Where the clients send: all to the leader, or round-robin over the three nodes (a follower
/// forwards: Chorus's gateway proxies the HTTP request to the leader, etcd forwards the
/// proposal over Raft).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spread {
    Leader,
    All,
}

impl Spread {
    fn label(self) -> &'static str {
        match self {
            Spread::Leader => "leader",
            Spread::All => "all 3",
        }
    }
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        clients: vec![1, 16, 128],
        secs: 10,
        warmup_secs: 2,
        chorus_bin: None,
        etcd_bin: "etcd".into(),
        project: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/convex-project"),
        dir: None,
        spreads: vec![Spread::Leader, Spread::All],
        generator_threads: 1,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--clients" => {
                opts.clients = value
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=10_000).contains(n))
                            .ok_or_else(|| format!("--clients: bad number {c:?}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--secs" => opts.secs = number()?.max(1),
            "--warmup" => opts.warmup_secs = number()?,
            "--chorus-bin" => opts.chorus_bin = Some(PathBuf::from(value)),
            "--etcd-bin" => opts.etcd_bin = value.clone(),
            "--project" => opts.project = PathBuf::from(value),
            "--dir" => opts.dir = Some(PathBuf::from(value)),
            "--spread" => {
                opts.spreads = value
                    .split(',')
                    .map(|s| match s.trim() {
                        "leader" => Ok(Spread::Leader),
                        "all" => Ok(Spread::All),
                        other => Err(format!("--spread: {other:?} is not leader or all")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--generator-threads" => opts.generator_threads = number()?.clamp(1, 64) as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if opts.clients.is_empty() || opts.spreads.is_empty() {
        return Err("--clients and --spread need at least one value".into());
    }
    Ok(opts)
}

pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    let chorus_bin = match &opts.chorus_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("current_exe: {e}"))?
            .with_file_name("chorus"),
    };
    if !chorus_bin.is_file() {
        return Err(format!(
            "no chorus binary at {} (cargo build --release -p chorus, or --chorus-bin PATH)",
            chorus_bin.display()
        ));
    }
    let chorus_version = first_line_of(&chorus_bin.to_string_lossy(), "--version")?;
    let etcd_version = first_line_of(&opts.etcd_bin, "--version").map_err(|e| {
        format!("{e}\n(install etcd: scripts/bench-cluster does `apt-get install etcd-server`)")
    })?;
    let deploy_sh = opts.project.join("deploy.sh");
    if !deploy_sh.is_file() {
        return Err(format!("no {} (--project DIR)", deploy_sh.display()));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.generator_threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("interrupted: stopping the load and the clusters");
        INTERRUPTED.store(true, Ordering::SeqCst);
    });

    // A fresh directory every run (etcd would otherwise rejoin an old cluster). Declared before
    // the clusters, so it is removed only after they are dropped (killed).
    let parent = opts.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = tempfile::tempdir_in(&parent).map_err(|e| format!("tempdir: {e}"))?;
    let dir = std::fs::canonicalize(tmp.path()).map_err(|e| format!("tempdir: {e}"))?;
    let cpu = Cpu::new();

    println!("chorus-bench cluster");
    println!("machine:  {}", machine());
    println!(
        "load:     load average before the run {} (the machine is shared; see cpu per level)",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    eprintln!("starting 3 chorus nodes ({})", chorus_bin.display());
    let chorus_dir = dir.join("chorus");
    std::fs::create_dir_all(&chorus_dir).map_err(|e| e.to_string())?;
    let chorus = Cluster::start(&chorus_bin, &chorus_dir, 3, ADMIN_KEY, &[]);
    let chorus_pids: Vec<u32> = chorus.nodes.values().filter_map(|n| n.pid()).collect();
    let leader = chorus_leader(&chorus)?;
    deploy(&deploy_sh, &leader)?;

    eprintln!("starting 3 etcd members ({})", opts.etcd_bin);
    let etcd = Etcd::start(&opts.etcd_bin, &dir.join("etcd"))?;
    let etcd_pids = etcd.pids();

    println!(
        "chorus:   {chorus_version} ({}), 3 nodes on loopback, data on the disk under {}; \
         durable: a commit is acknowledged after a quorum has the Raft log entry fsync'd",
        chorus_bin.display(),
        dir.display()
    );
    println!(
        "etcd:     {etcd_version}, 3 members on loopback, same disk; default durability \
         (WAL fsync'd before a put is acknowledged), --quota-backend-bytes {ETCD_QUOTA_BACKEND_BYTES}"
    );
    println!(
        "work:     chorus: POST /api/mutation cluster:write({{client, seq}}): a JS mutation \
         inserting one small document, a timestamp from the meta range's leader, a Raft commit \
         of the data range; etcd: POST /v3/kv/put (JSON gateway), unique key, \
         {ETCD_VALUE_BYTES}-byte value"
    );
    println!(
        "clients:  closed loop, one keep-alive HTTP/1.1 connection each (hyper), generator on \
         {} tokio worker thread(s) in this process; per level {} s warmup then {} s measured; \
         levels interleaved chorus/etcd; spread: {}",
        opts.generator_threads,
        opts.warmup_secs,
        opts.secs,
        opts.spreads
            .iter()
            .map(|s| match s {
                Spread::Leader => "all clients on the leader",
                Spread::All => "clients round-robin over the 3 nodes",
            })
            .collect::<Vec<_>>()
            .join(", then ")
    );

    let etcd_value = BASE64.encode(etcd_value());
    let mut rows = Vec::new();
    let mut run_id = 0u64;
    for &clients in &opts.clients {
        for &spread in &opts.spreads {
            let mut pair = Vec::new();
            for system in [System::Chorus, System::Etcd] {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    return Err("interrupted".into());
                }
                run_id += 1;
                let (targets, leader_note, pids, idle, probe) = match system {
                    System::Chorus => {
                        let leader = chorus_leader(&chorus)?;
                        let meta = chorus
                            .leader(META_RANGE)
                            .map_or("?".to_string(), |id| id.to_string());
                        let data = chorus
                            .leader(DATA_RANGE)
                            .map_or("?".to_string(), |id| id.to_string());
                        let targets = match spread {
                            Spread::Leader => vec![leader.clone()],
                            Spread::All => chorus.nodes.values().map(|n| n.api.clone()).collect(),
                        };
                        (
                            targets,
                            format!("data leader node {data}, meta (oracle) leader node {meta}"),
                            &chorus_pids,
                            &etcd_pids,
                            Some(leader),
                        )
                    }
                    System::Etcd => {
                        let leader = etcd.leader()?;
                        let targets = match spread {
                            Spread::Leader => vec![etcd.members[leader].client.clone()],
                            Spread::All => etcd.members.iter().map(|m| m.client.clone()).collect(),
                        };
                        (
                            targets,
                            format!("leader {}", etcd.members[leader].name),
                            &etcd_pids,
                            &chorus_pids,
                            None,
                        )
                    }
                };
                let workload = Arc::new(match system {
                    System::Chorus => Workload::Chorus,
                    System::Etcd => Workload::Etcd {
                        value_b64: etcd_value.clone(),
                    },
                });
                let level = Level {
                    targets,
                    workload,
                    clients,
                    run_id,
                    probe,
                    warmup: Duration::from_secs(opts.warmup_secs),
                    measured: Duration::from_secs(opts.secs),
                };
                let result = runtime.block_on(level.run(&cpu, pids, idle));
                print_level(system, spread, clients, &leader_note, &result);
                pair.push(result);
            }
            if let [c, e] = &pair[..] {
                rows.push((clients, spread, c.summary(), e.summary()));
            }
        }
    }
    print_table(&rows);
    drop(etcd);
    drop(chorus);
    Ok(())
}

fn first_line_of(bin: &str, arg: &str) -> Result<String, String> {
    let out = Command::new(bin)
        .arg(arg)
        .output()
        .map_err(|e| format!("running {bin} {arg}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

fn chorus_leader(cluster: &Cluster) -> Result<String, String> {
    let id = cluster
        .leader(DATA_RANGE)
        .ok_or("the chorus cluster reports no data range leader")?;
    Ok(cluster
        .nodes
        .get(&id)
        .ok_or_else(|| format!("data leader {id} is not a node this benchmark started"))?
        .api
        .clone())
}

/// The real `npx convex deploy` of tests/convex-project; its output goes to stderr so stdout
/// holds only the report.
fn deploy(deploy_sh: &Path, api: &str) -> Result<(), String> {
    use std::os::fd::AsFd;
    eprintln!("deploying {} to http://{api}", deploy_sh.display());
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = Command::new(deploy_sh)
        .args([&format!("http://{api}"), ADMIN_KEY])
        .stdout(Stdio::from(stdout))
        .status()
        .map_err(|e| {
            format!(
                "running {}: {e} (needs Node.js and npm)",
                deploy_sh.display()
            )
        })?;
    if !status.success() {
        return Err(format!("{} failed: {status}", deploy_sh.display()));
    }
    eprintln!("deployed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// 256 printable bytes, the same for every put (etcd does not compress values).
fn etcd_value() -> Vec<u8> {
    (0..ETCD_VALUE_BYTES)
        .map(|i| b'a' + (i % 26) as u8)
        .collect()
}

struct EtcdMember {
    name: String,
    /// Client address, HOST:PORT.
    client: String,
    child: Option<Child>,
}

/// Three etcd members started by this benchmark; each is killed by process id on drop.
struct Etcd {
    members: Vec<EtcdMember>,
}

impl Etcd {
    fn start(bin: &str, dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut addrs = Vec::new();
        for i in 1..=3 {
            addrs.push((
                format!("bench-etcd-{i}"),
                format!("127.0.0.1:{}", free_port()?),
                format!("127.0.0.1:{}", free_port()?),
            ));
        }
        let initial_cluster = addrs
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("chorus-bench-{}", std::process::id());
        // Built member by member, so a failed start still kills what was started.
        let mut etcd = Etcd {
            members: Vec::new(),
        };
        for (name, client, peer) in addrs {
            let log = File::create(dir.join(format!("{name}.log")))
                .map_err(|e| format!("etcd log: {e}"))?;
            let child = Command::new(bin)
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.join(&name))
                .args(["--listen-client-urls", &format!("http://{client}")])
                .args(["--advertise-client-urls", &format!("http://{client}")])
                .args(["--listen-peer-urls", &format!("http://{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args([
                    "--quota-backend-bytes",
                    &ETCD_QUOTA_BACKEND_BYTES.to_string(),
                ])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|e| format!("starting {bin}: {e}"))?;
            etcd.members.push(EtcdMember {
                name,
                client,
                child: Some(child),
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let healthy = etcd.members.iter().all(|m| {
                torture::http::request(&m.client, "GET", "/health", "", None, START_TIMEOUT)
                    .is_ok_and(|(status, body)| status == 200 && body.contains("true"))
            });
            if healthy && etcd.leader().is_ok() {
                return Ok(etcd);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd did not become healthy within {START_TIMEOUT:?} (logs in {})",
                    dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    /// The index of the member that is the leader, by `/v3/maintenance/status`: the member
    /// whose own id (`header.member_id`) is the `leader` it reports.
    fn leader(&self) -> Result<usize, String> {
        for (i, member) in self.members.iter().enumerate() {
            let (status, body) = torture::http::request(
                &member.client,
                "POST",
                "/v3/maintenance/status",
                "{}",
                None,
                Duration::from_secs(5),
            )
            .map_err(|e| format!("etcd status on {}: {e}", member.client))?;
            if status != 200 {
                return Err(format!("etcd status on {}: {status} {body}", member.client));
            }
            let json: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| format!("etcd status on {}: {e}: {body}", member.client))?;
            let own = &json["header"]["member_id"];
            if !own.is_null() && json["leader"] == *own {
                return Ok(i);
            }
        }
        Err("no etcd member reports itself leader".into())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum System {
    Chorus,
    Etcd,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Chorus => "chorus",
            System::Etcd => "etcd",
        }
    }
}

enum Workload {
    Chorus,
    Etcd { value_b64: String },
}

impl Workload {
    fn path(&self) -> &'static str {
        match self {
            Workload::Chorus => "/api/mutation",
            Workload::Etcd { .. } => "/v3/kv/put",
        }
    }

    /// The request body of write `seq` of `client`; unique across the whole run.
    fn body(&self, client: u64, seq: u64) -> Bytes {
        match self {
            Workload::Chorus => Bytes::from(format!(
                r#"{{"path":"cluster:write","args":{{"client":{client},"seq":{seq}}},"format":"json"}}"#
            )),
            Workload::Etcd { value_b64 } => {
                let key = BASE64.encode(format!("bench/{client}/{seq}"));
                Bytes::from(format!(r#"{{"key":"{key}","value":"{value_b64}"}}"#))
            }
        }
    }

    /// Whether the answer acknowledges the write.
    fn succeeded(&self, status: u16, body: &[u8]) -> bool {
        status == 200
            && match self {
                Workload::Chorus => contains(body, br#""status":"success""#),
                Workload::Etcd { .. } => body.starts_with(br#"{"header""#),
            }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One keep-alive HTTP/1.1 connection; its driver task is aborted on drop.
struct Conn {
    host: String,
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            host: addr.to_string(),
            sender,
            driver,
        })
    }

    /// POSTs a JSON body; the status and the whole answer.
    async fn post(&mut self, path: &'static str, body: Bytes) -> Result<(u16, Bytes), String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

struct Level {
    targets: Vec<String>,
    workload: Arc<Workload>,
    clients: usize,
    run_id: u64,
    /// A Chorus node's client address whose `/metrics` give the Raft log positions of both
    /// ranges, read at both ends of the window.
    probe: Option<String>,
    warmup: Duration,
    measured: Duration,
}

/// What one client saw inside the measured window.
#[derive(Default)]
struct ClientRecord {
    latencies: Vec<Duration>,
    errors: u64,
}

struct LevelResult {
    ok: u64,
    errors: u64,
    /// Sorted.
    latencies: Vec<Duration>,
    window: Duration,
    error_samples: Vec<String>,
    cpu: CpuUse,
    interrupted: bool,
    /// Raft log entries appended in the window: (data range, meta range).
    raft_entries: Option<(u64, u64)>,
}

#[derive(Clone, Copy)]
struct Summary {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    /// CPU time of the measured cluster's processes (all 3) per acknowledged write.
    server_cpu_per_write: Duration,
}

impl LevelResult {
    fn summary(&self) -> Summary {
        Summary {
            per_sec: self.ok as f64 / self.window.as_secs_f64(),
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
            errors: self.errors,
            server_cpu_per_write: Duration::from_secs_f64(
                self.cpu.servers * self.window.as_secs_f64() / self.ok.max(1) as f64,
            ),
        }
    }
}

impl Level {
    /// Runs the clients through warmup and the measured window. Only requests that complete
    /// inside the window count, each with its whole latency.
    async fn run(self, cpu: &Cpu, pids: &[u32], idle_pids: &[u32]) -> LevelResult {
        let start = Instant::now();
        let window_start = start + self.warmup;
        let window_end = window_start + self.measured;
        let samples = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::with_capacity(self.clients);
        for c in 0..self.clients {
            let addr = self.targets[c % self.targets.len()].clone();
            let workload = self.workload.clone();
            let samples = samples.clone();
            let client_id = self.run_id * 1_000_000 + c as u64;
            tasks.push(tokio::spawn(client_loop(
                addr,
                workload,
                client_id,
                window_start,
                window_end,
                samples,
            )));
        }
        sleep_until_or_interrupted(window_start).await;
        let before = cpu.sample(pids, idle_pids);
        let log_before = raft_log_indexes(self.probe.clone()).await;
        sleep_until_or_interrupted(window_end).await;
        let after = cpu.sample(pids, idle_pids);
        let log_after = raft_log_indexes(self.probe.clone()).await;
        let mut latencies = Vec::new();
        let mut errors = 0;
        for task in tasks {
            match task.await {
                Ok(record) => {
                    latencies.extend(record.latencies);
                    errors += record.errors;
                }
                Err(e) => {
                    errors += 1;
                    push_sample(&samples, format!("client task failed: {e}"));
                }
            }
        }
        latencies.sort();
        let error_samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
        LevelResult {
            ok: latencies.len() as u64,
            errors,
            latencies,
            window: self.measured,
            error_samples,
            cpu: cpu.usage(&before, &after),
            interrupted: INTERRUPTED.load(Ordering::SeqCst),
            raft_entries: log_before
                .zip(log_after)
                .map(|((d0, m0), (d1, m1))| (d1.saturating_sub(d0), m1.saturating_sub(m0))),
        }
    }
}

/// The last Raft log index of the data and the meta range on the Chorus node at `api`, from
/// its Prometheus text (`chorus_raft_last_log_index{node=..,range="data"|"meta"}`).
async fn raft_log_indexes(api: Option<String>) -> Option<(u64, u64)> {
    let api = api?;
    let text = tokio::task::spawn_blocking(move || {
        torture::http::request(&api, "GET", "/metrics", "", None, Duration::from_secs(5))
    })
    .await
    .ok()?
    .ok()?
    .1;
    let index = |range: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("chorus_raft_last_log_index{")
                    && l.contains(&format!("range=\"{range}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((index("data")?, index("meta")?))
}

async fn sleep_until_or_interrupted(deadline: Instant) {
    while !INTERRUPTED.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
    }
}

fn push_sample(samples: &Mutex<Vec<String>>, message: String) {
    if let Ok(mut samples) = samples.lock()
        && samples.len() < ERROR_SAMPLES
    {
        samples.push(message);
    }
}

async fn client_loop(
    addr: String,
    workload: Arc<Workload>,
    client_id: u64,
    window_start: Instant,
    window_end: Instant,
    samples: Arc<Mutex<Vec<String>>>,
) -> ClientRecord {
    let mut record = ClientRecord::default();
    let mut conn: Option<Conn> = None;
    let mut seq = 0u64;
    while Instant::now() < window_end && !INTERRUPTED.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(&addr).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    let now = Instant::now();
                    if now >= window_start && now < window_end {
                        record.errors += 1;
                    }
                    push_sample(&samples, e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        seq += 1;
        let body = workload.body(client_id, seq);
        let sent = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, c.post(workload.path(), body)).await;
        let done = Instant::now();
        let counted = done >= window_start && done < window_end;
        let failure = match answer {
            Ok(Ok((status, body))) if workload.succeeded(status, &body) => None,
            Ok(Ok((status, body))) => Some(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
            Ok(Err(e)) => {
                conn = None;
                Some(format!("transport: {e}"))
            }
            Err(_) => {
                conn = None;
                Some(format!("no answer within {REQUEST_TIMEOUT:?}"))
            }
        };
        match failure {
            None if counted => record.latencies.push(done - sent),
            None => {}
            Some(message) => {
                if counted {
                    record.errors += 1;
                }
                push_sample(&samples, message);
            }
        }
    }
    record
}

/// CPU time from `/proc`, in clock ticks.
struct Cpu {
    ticks_per_sec: f64,
}

struct CpuSample {
    at: Instant,
    machine_busy: u64,
    servers: u64,
    idle_cluster: u64,
    generator: u64,
}

/// Average cores busy over a window.
#[derive(Clone, Copy, Default)]
struct CpuUse {
    machine: f64,
    servers: f64,
    idle_cluster: f64,
    generator: f64,
}

impl Cpu {
    fn new() -> Cpu {
        let ticks_per_sec = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        Cpu { ticks_per_sec }
    }

    fn sample(&self, pids: &[u32], idle_pids: &[u32]) -> CpuSample {
        let sum = |pids: &[u32]| {
            pids.iter()
                .filter_map(|pid| process_ticks(&pid.to_string()))
                .sum()
        };
        CpuSample {
            at: Instant::now(),
            machine_busy: machine_busy_ticks().unwrap_or(0),
            servers: sum(pids),
            idle_cluster: sum(idle_pids),
            generator: process_ticks("self").unwrap_or(0),
        }
    }

    fn usage(&self, before: &CpuSample, after: &CpuSample) -> CpuUse {
        let secs = (after.at - before.at).as_secs_f64().max(1e-3);
        let cores = |a: u64, b: u64| b.saturating_sub(a) as f64 / self.ticks_per_sec / secs;
        CpuUse {
            machine: cores(before.machine_busy, after.machine_busy),
            servers: cores(before.servers, after.servers),
            idle_cluster: cores(before.idle_cluster, after.idle_cluster),
            generator: cores(before.generator, after.generator),
        }
    }
}

/// utime + stime of a process (all its threads).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces): state is the first, utime
    // the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Busy ticks of the whole machine (all cores): everything but idle and iowait.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    Some(values.iter().take(8).sum::<u64>() - values.get(3)? - values.get(4)?)
}

fn print_level(system: System, spread: Spread, clients: usize, leader_note: &str, r: &LevelResult) {
    let s = r.summary();
    println!(
        "{:<6} {:>3} clients -> {:<6}: {:>6.0} writes/s, p50 {:.2} ms, p90 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms, {} errors [{} acknowledged in {:.0} s; {leader_note}]",
        system.label(),
        clients,
        spread.label(),
        s.per_sec,
        ms(s.p50),
        ms(percentile(&r.latencies, 0.90)),
        ms(s.p99),
        ms(r.latencies.last().copied().unwrap_or_default()),
        s.errors,
        r.ok,
        r.window.as_secs_f64(),
    );
    println!(
        "{:<6} {:>3} cpu (cores of the machine's {}): {} servers {:.2} ({:.2} ms per write), \
         generator {:.2}, idle {} cluster {:.2}, everything else {:.2}; machine busy {:.2}",
        "",
        "",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        system.label(),
        r.cpu.servers,
        ms(s.server_cpu_per_write),
        r.cpu.generator,
        match system {
            System::Chorus => "etcd",
            System::Etcd => "chorus",
        },
        r.cpu.idle_cluster,
        (r.cpu.machine - r.cpu.servers - r.cpu.generator - r.cpu.idle_cluster).max(0.0),
        r.cpu.machine,
    );
    if let Some((data, meta)) = r.raft_entries {
        println!(
            "{:<10} raft: {data} data-range log entries ({:.1} commits per entry, i.e. per \
             replicated fsync'd append), {meta} meta-range entries",
            "",
            r.ok as f64 / data.max(1) as f64,
        );
    }
    for sample in &r.error_samples {
        println!("{:<10} error: {sample}", "");
    }
    if r.interrupted {
        println!("{:<10} (interrupted)", "");
    }
}

fn print_table(rows: &[(usize, Spread, Summary, Summary)]) {
    println!();
    println!(
        "Ratios are Chorus/etcd: above 1 means Chorus has more throughput, below 1 lower latency."
    );
    println!();
    println!(
        "| clients | sent to | Chorus commits/s | etcd puts/s | ratio | Chorus p50 | etcd p50 | \
         ratio | Chorus p99 | etcd p99 | ratio | server CPU per write, Chorus / etcd | \
         errors (Chorus/etcd) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (clients, spread, c, e) in rows {
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "-".to_string()
            }
        };
        println!(
            "| {clients} | {} | {:.0} | {:.0} | {} | {:.2} ms | {:.2} ms | {} | {:.2} ms | \
             {:.2} ms | {} | {:.2} / {:.2} ms | {}/{} |",
            spread.label(),
            c.per_sec,
            e.per_sec,
            ratio(c.per_sec, e.per_sec),
            ms(c.p50),
            ms(e.p50),
            ratio(ms(c.p50), ms(e.p50)),
            ms(c.p99),
            ms(e.p99),
            ratio(ms(c.p99), ms(e.p99)),
            ms(c.server_cpu_per_write),
            ms(e.server_cpu_per_write),
            c.errors,
            e.errors,
        );
    }
}
