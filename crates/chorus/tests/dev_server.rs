//! `chorus dev` as a real process on loopback, deployed to with the real `npx convex deploy`
//! and driven by the real clients (`tests/clients/run.sh`: npm `ConvexHttpClient` and
//! `ConvexClient`, the PyPI `convex` client, the crates.io `convex` client). Then a SIGTERM
//! (clean exit) and a restart on the same data directory: the deployment and the data are
//! still there.
//!
//! Needs Node.js 20+ and npm (the CLI and the npm clients), Python 3 (the PyPI client) and
//! network access to the registries the first time (`.ci/run` provides them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "chorus-test|0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `chorus dev`; killed (by its process id) if the test ends without stopping it.
struct Dev {
    child: Option<Child>,
    url: String,
}

impl Dev {
    fn start(data_dir: &Path) -> Dev {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["dev", "--port", "0", "--admin-key", ADMIN_KEY, "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chorus dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("[chorus] {line}");
                if let Some(url) = line.strip_prefix("Chorus is serving at ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill();
                panic!("chorus dev did not print its URL within 60 s: {e}");
            }
        };
        Dev {
            child: Some(child),
            url,
        }
    }

    fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("chorus dev did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request (Connection: close); returns status and body.
fn http(addr: &str, method: &str, path: &str, body: &str, auth: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = auth
        .map(|key| format!("Authorization: Convex {key}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_string())
}

fn run(script: &Path, args: &[&str]) {
    let started = Instant::now();
    let status = Command::new(script)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    println!(
        "{} finished in {:.1} s",
        script.display(),
        started.elapsed().as_secs_f64()
    );
    assert!(status.success(), "{} failed: {status}", script.display());
}

fn query_json(addr: &str, path: &str, args: &str) -> serde_json::Value {
    let (status, body) = http(
        addr,
        "POST",
        "/api/query",
        &format!(r#"{{"path":"{path}","args":{args},"format":"convex_encoded_json"}}"#),
        None,
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

#[test]
fn dev_server_serves_the_real_clients_and_recovers_after_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let dev = Dev::start(data.path());
    let addr = dev.addr();

    let (status, body) = http(&addr, "GET", "/version", "", None);
    assert_eq!(status, 200, "GET /version: {body}");
    // Before any deploy: a clear function error, not a crash.
    let before = query_json(&addr, "messages:list", r#"{"channel":"x"}"#);
    assert_eq!(before["status"], "error", "{before}");
    // A wrong admin key is refused and deploys nothing.
    let (status, body) = http(
        &addr,
        "POST",
        "/api/get_config_hashes",
        r#"{"version":"1.48.0","adminKey":"wrong"}"#,
        Some("wrong"),
    );
    assert_eq!(status, 401, "wrong admin key: {body}");

    run(
        &repo().join("tests/convex-project/deploy.sh"),
        &[&dev.url, ADMIN_KEY],
    );
    run(&repo().join("tests/clients/run.sh"), &[&dev.url, ADMIN_KEY]);
    bad_input_changes_nothing(&addr);

    // Something to find after the restart.
    let (status, body) = http(
        &addr,
        "POST",
        "/api/mutation",
        r#"{"path":"users:register","args":{"name":"survivor","role":"member"},"format":"convex_encoded_json"}"#,
        None,
    );
    assert_eq!(status, 200, "{body}");
    let registered: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(registered["status"], "success", "{registered}");
    let id = registered["value"].as_str().expect("id").to_string();
    let (_, hashes) = http(
        &addr,
        "POST",
        "/api/get_config_hashes",
        &format!(r#"{{"version":"1.48.0","adminKey":"{ADMIN_KEY}"}}"#),
        Some(ADMIN_KEY),
    );

    let status = dev.terminate();
    assert!(
        status.success(),
        "chorus dev exited with {status} on SIGTERM"
    );

    let dev = Dev::start(data.path());
    let addr = dev.addr();
    let user = query_json(&addr, "users:get", &format!(r#"{{"id":"{id}"}}"#));
    assert_eq!(user["status"], "success", "{user}");
    assert_eq!(user["value"]["name"], "survivor", "{user}");
    let (_, hashes_after) = http(
        &addr,
        "POST",
        "/api/get_config_hashes",
        &format!(r#"{{"version":"1.48.0","adminKey":"{ADMIN_KEY}"}}"#),
        Some(ADMIN_KEY),
    );
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("json");
    assert_eq!(
        parse(&hashes)["moduleHashes"],
        parse(&hashes_after)["moduleHashes"],
        "the deployment survives the restart"
    );
    assert!(
        parse(&hashes_after)["moduleHashes"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "{hashes_after}"
    );
    // A second deploy of unchanged code goes through the unchanged-hash path.
    run(
        &repo().join("tests/convex-project/deploy.sh"),
        &[&dev.url, ADMIN_KEY],
    );
    let user = query_json(&addr, "users:get", &format!(r#"{{"id":"{id}"}}"#));
    assert_eq!(user["value"]["name"], "survivor", "{user}");
    let status = dev.terminate();
    assert!(status.success(), "second SIGTERM: {status}");
}

fn counter(addr: &str) -> serde_json::Value {
    query_json(addr, "counters:read", r#"{"name":"messages"}"#)["value"].clone()
}

/// Sends one masked (all-zero mask) WebSocket text frame of `payload` (< 126 bytes).
fn ws_text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// Opens a WebSocket to the sync endpoint by hand, sends `frame`, returns what came back
/// until the server closed the connection (or 10 s passed).
fn ws_exchange(addr: &str, frame: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let handshake = format!(
        "GET /api/1.48.0/sync HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(handshake.as_bytes()).expect("handshake");
    stream.write_all(frame).expect("frame");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    received
}

/// Bad input gets clear errors, writes nothing, and leaves the server serving.
fn bad_input_changes_nothing(addr: &str) {
    let before = counter(addr);
    let post = |path: &str, body: &str| http(addr, "POST", path, body, None);
    let (status, body) = post("/api/mutation", "{not json");
    assert_eq!(status, 400, "malformed JSON: {body}");
    assert!(body.contains("\"code\""), "{body}");
    let (status, body) = post(
        "/api/mutation",
        r#"{"path":"messages:send","args":{"author":"nope","channel":"c","body":"b"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"error\""), "bad args: {body}");
    let (status, body) = post("/api/mutation", r#"{"path":"nope:missing","args":{}}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Could not find public function"), "{body}");
    // An oversized request is refused from its declared length, before its body is read.
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST /api/mutation HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"path\":",
        64 << 20
    );
    stream.write_all(head.as_bytes()).expect("send");
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 413"),
        "oversized request: {reply}"
    );
    // A garbage text frame: the protocol's FatalError, then the socket closes.
    let reply = ws_exchange(addr, &ws_text_frame(b"{garbage"));
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");
    assert!(reply.contains("FatalError"), "garbage frame: {reply}");
    // A frame that is not WebSocket at all: the connection is dropped.
    let reply = ws_exchange(addr, b"\xff\xff\xff\xff garbage");
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 101"));

    assert_eq!(counter(addr), before, "bad input wrote something");
    let (status, _) = http(addr, "GET", "/version", "", None);
    assert_eq!(status, 200, "the server is still serving");
}
