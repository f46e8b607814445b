//! The HTTP edge over real HTTP/1.1: `api::http::router` served on loopback with axum, a fake
//! [`Backend`] that records every call, and a minimal raw-socket client, so status lines,
//! headers and bodies are checked exactly as clients see them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::{
    ApiError, Backend, CallKind, CallRequest, DeployOp, ErrorCode, FunctionFailure, FunctionResult,
    FunctionSuccess, Identity, MutationRun, QueryRun, ReadToken, Ts,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use value::Value;

/// Contains a `:`, as cloud deploy keys do, so the acting-as split is exercised.
const ADMIN_KEY: &str = "prod:chorus|0123abcd";
const USER_TOKEN: &str = "good-token";
const LATEST_TS: Ts = 1_700_000_000_000_000_000;
const CANONICAL_URL: &str = "http://fake.example:3210";
/// Every exchange must finish within this; a server that hangs fails the test.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

// ---- The fake backend ----

#[derive(Clone, Debug)]
enum Recorded {
    Query(CallRequest, Option<Ts>),
    Mutation(CallRequest),
    Action(CallRequest),
    Function(CallRequest),
    Deploy(DeployOp, serde_json::Value),
}

impl Recorded {
    fn call(&self) -> &CallRequest {
        match self {
            Recorded::Query(call, _)
            | Recorded::Mutation(call)
            | Recorded::Action(call)
            | Recorded::Function(call) => call,
            Recorded::Deploy(..) => panic!("not a function call: {self:?}"),
        }
    }
}

struct Fake {
    calls: Mutex<Vec<Recorded>>,
    commits: watch::Sender<Ts>,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            calls: Mutex::new(Vec::new()),
            commits: watch::channel(LATEST_TS).0,
        })
    }

    fn record(&self, recorded: Recorded) {
        self.calls.lock().unwrap().push(recorded);
    }

    fn calls(&self) -> Vec<Recorded> {
        self.calls.lock().unwrap().clone()
    }

    fn take_calls(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

fn obj(fields: &[(&str, Value)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// What a function "does", chosen by its path.
fn outcome(call: &CallRequest) -> Result<FunctionResult, ApiError> {
    match call.path.as_str() {
        "values:all" | "values/all:default" | "values:all_run" => Ok(Ok(FunctionSuccess {
            value: obj(&[
                ("int", Value::Int64(7)),
                ("bytes", Value::Bytes(vec![1, 2, 3])),
                ("nan", Value::Float64(f64::NAN)),
                ("inf", Value::Float64(f64::INFINITY)),
                ("ninf", Value::Float64(f64::NEG_INFINITY)),
                ("float", Value::Float64(5.0)),
                ("str", Value::String("s".into())),
                ("nested", Value::Array(vec![Value::Int64(-1), Value::Null])),
            ]),
            log_lines: vec!["[LOG] 'hi'".into()],
        })),
        "fail:plain" => Ok(Err(FunctionFailure {
            message: "Uncaught Error: boom".into(),
            data: None,
            log_lines: vec!["[ERROR] 'x'".into()],
        })),
        "fail:convex" => Ok(Err(FunctionFailure {
            message: "ConvexError: nope".into(),
            data: Some(obj(&[("code", Value::Int64(3))])),
            log_lines: vec![],
        })),
        "api:unavailable" => Err(ApiError::new(ErrorCode::Unavailable, "no leader")),
        "api:internal" => Err(ApiError::new(ErrorCode::Internal, "bug")),
        // Everything else echoes its arguments.
        _ => Ok(Ok(FunctionSuccess {
            value: call.args.clone(),
            log_lines: vec![],
        })),
    }
}

impl Backend for Fake {
    fn check_admin_key(&self, key: &str) -> bool {
        key == ADMIN_KEY
    }

    fn authenticate_user(&self, token: &str) -> Result<serde_json::Value, String> {
        if token == USER_TOKEN {
            Ok(json!({"subject": "user1", "issuer": "https://issuer.example"}))
        } else {
            Err("bad signature".into())
        }
    }

    fn latest_ts(&self) -> Result<Ts, ApiError> {
        Ok(LATEST_TS)
    }

    fn run_query(
        &self,
        call: CallRequest,
        ts: Option<Ts>,
    ) -> BoxFuture<'_, Result<QueryRun, ApiError>> {
        self.record(Recorded::Query(call.clone(), ts));
        Box::pin(async move {
            let reads: ReadToken = Arc::new(());
            Ok(QueryRun {
                result: outcome(&call)?,
                reads,
                ts: ts.unwrap_or(LATEST_TS),
            })
        })
    }

    fn run_mutation(&self, call: CallRequest) -> BoxFuture<'_, Result<MutationRun, ApiError>> {
        self.record(Recorded::Mutation(call.clone()));
        Box::pin(async move {
            let result = outcome(&call)?;
            let commit_ts = result.is_ok().then_some(LATEST_TS + 1);
            Ok(MutationRun { result, commit_ts })
        })
    }

    fn run_action(&self, call: CallRequest) -> BoxFuture<'_, Result<FunctionResult, ApiError>> {
        self.record(Recorded::Action(call.clone()));
        Box::pin(async move { outcome(&call) })
    }

    fn run_function(&self, call: CallRequest) -> BoxFuture<'_, Result<FunctionResult, ApiError>> {
        self.record(Recorded::Function(call.clone()));
        Box::pin(async move { outcome(&call) })
    }

    fn commits(&self) -> watch::Receiver<Ts> {
        self.commits.subscribe()
    }

    fn invalidated(&self, _reads: &ReadToken, _from: Ts, _to: Ts) -> bool {
        false
    }

    fn deploy(
        &self,
        op: DeployOp,
        body: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, ApiError>> {
        self.record(Recorded::Deploy(op, body));
        Box::pin(async move { Ok(json!({"answered": format!("{op:?}")})) })
    }

    fn canonical_url(&self) -> String {
        CANONICAL_URL.to_owned()
    }
}

// ---- Serving and a raw HTTP/1.1 client ----

async fn start() -> (Arc<Fake>, SocketAddr) {
    let fake = Fake::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = api::http::router(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, addr)
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts an `ApiError` reply: status and `{"code", "message"}`.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let json = self.json();
        assert_eq!(json["code"], code, "{json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
        assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (k, v) = line.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One request on a fresh connection (`Connection: close`); adds `Content-Length` unless the
/// caller gave one.
async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if !has_length && (method != "GET" || !body.is_empty()) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let exchange = async {
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(REPLY_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no reply to {method} {target} within {REPLY_TIMEOUT:?}"));
    parse_reply(&raw)
}

async fn post(addr: SocketAddr, target: &str, body: serde_json::Value) -> Reply {
    send(
        addr,
        "POST",
        target,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

async fn post_as(
    addr: SocketAddr,
    target: &str,
    authorization: &str,
    body: serde_json::Value,
) -> Reply {
    send(
        addr,
        "POST",
        target,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", authorization),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

fn admin_header() -> String {
    format!("Convex {ADMIN_KEY}")
}

fn brotli(data: &[u8], quality: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 1 << 16, quality, 22);
        writer.write_all(data).unwrap();
    }
    out
}

// ---- Basics ----

#[tokio::test]
async fn version_answers_with_the_crate_version() {
    let (_, addr) = start().await;
    let reply = send(addr, "GET", "/version", &[], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_404_json() {
    let (fake, addr) = start().await;
    let reply = send(addr, "GET", "/no/such/thing", &[], b"").await;
    reply.assert_error(404, "NotFound");
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/thing")
    );
    send(addr, "GET", "/api/mutation", &[], b"")
        .await
        .assert_error(404, "NotFound");
    post(addr, "/api/nope", json!({}))
        .await
        .assert_error(404, "NotFound");
    assert!(fake.calls().is_empty());
}

// ---- Function calls: result shapes and formats ----

#[tokio::test]
async fn success_in_clean_json_by_default() {
    let (fake, addr) = start().await;
    let expected = json!({
        "int": "7",
        "bytes": "AQID",
        "nan": "NaN",
        "inf": "Infinity",
        "ninf": "-Infinity",
        "float": 5.0,
        "str": "s",
        "nested": ["-1", null],
    });
    for format in [None, Some("json"), Some("convex_clean_json")] {
        let mut body = json!({"path": "values:all", "args": {}});
        if let Some(format) = format {
            body["format"] = json!(format);
        }
        let reply = post(addr, "/api/query", body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            reply.json(),
            json!({"status": "success", "value": expected, "logLines": ["[LOG] 'hi'"]}),
            "format {format:?}"
        );
        // Floats keep their decimal point on the wire (Python rejects `5`).
        assert!(reply.text().contains("\"float\":5.0"), "{}", reply.text());
    }
    assert_eq!(fake.calls().len(), 3);
}

#[tokio::test]
async fn success_in_convex_encoded_json() {
    let (_, addr) = start().await;
    for format in ["convex_encoded_json", "convex_json"] {
        let reply = post(
            addr,
            "/api/query",
            json!({"path": "values:all", "args": [{}], "format": format}),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json(),
            json!({
                "status": "success",
                "value": {
                    "int": {"$integer": "BwAAAAAAAAA="},
                    "bytes": {"$bytes": "AQID"},
                    "nan": {"$float": "AAAAAAAA+H8="},
                    "inf": {"$float": "AAAAAAAA8H8="},
                    "ninf": {"$float": "AAAAAAAA8P8="},
                    "float": 5.0,
                    "str": "s",
                    "nested": [{"$integer": "//////////8="}, null],
                },
                "logLines": ["[LOG] 'hi'"],
            })
        );
        assert!(reply.text().contains("\"float\":5.0"));
    }
}

#[tokio::test]
async fn unknown_format_is_refused() {
    let (fake, addr) = start().await;
    post(
        addr,
        "/api/query",
        json!({"path": "values:all", "args": {}, "format": "xml"}),
    )
    .await
    .assert_error(400, "BadRequest");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn function_errors_are_200_with_status_error() {
    let (_, addr) = start().await;
    for format in ["json", "convex_encoded_json"] {
        let reply = post(
            addr,
            "/api/mutation",
            json!({"path": "fail:plain", "args": {}, "format": format}),
        )
        .await;
        assert_eq!(reply.status, 200);
        // No `errorData` key at all for a plain error.
        assert_eq!(
            reply.json(),
            json!({
                "status": "error",
                "errorMessage": "Uncaught Error: boom",
                "logLines": ["[ERROR] 'x'"],
            })
        );
    }
}

#[tokio::test]
async fn convex_error_data_in_both_formats() {
    let (_, addr) = start().await;
    let clean = post(
        addr,
        "/api/action",
        json!({"path": "fail:convex", "args": {}, "format": "json"}),
    )
    .await;
    assert_eq!(clean.status, 200);
    assert_eq!(
        clean.json(),
        json!({
            "status": "error",
            "errorMessage": "ConvexError: nope",
            "errorData": {"code": "3"},
            "logLines": [],
        })
    );
    let encoded = post(
        addr,
        "/api/action",
        json!({"path": "fail:convex", "args": {}, "format": "convex_encoded_json"}),
    )
    .await;
    assert_eq!(
        encoded.json()["errorData"],
        json!({"code": {"$integer": "AwAAAAAAAAA="}})
    );
}

#[tokio::test]
async fn backend_errors_map_to_status_and_code() {
    let (_, addr) = start().await;
    let reply = post(addr, "/api/query", json!({"path": "api:unavailable"})).await;
    reply.assert_error(503, "Unavailable");
    assert_eq!(reply.json()["message"], "no leader");
    post(addr, "/api/mutation", json!({"path": "api:internal"}))
        .await
        .assert_error(500, "InternalServerError");
}

#[tokio::test]
async fn each_endpoint_reaches_its_backend_method() {
    let (fake, addr) = start().await;
    post(addr, "/api/query", json!({"path": "m:q", "args": {}})).await;
    post(addr, "/api/mutation", json!({"path": "m:m", "args": {}})).await;
    post(addr, "/api/action", json!({"path": "m:a", "args": {}})).await;
    let calls = fake.take_calls();
    assert!(
        matches!(&calls[0], Recorded::Query(c, None) if c.path == "m:q" && c.kind == CallKind::Query)
    );
    assert!(
        matches!(&calls[1], Recorded::Mutation(c) if c.path == "m:m" && c.kind == CallKind::Mutation)
    );
    assert!(
        matches!(&calls[2], Recorded::Action(c) if c.path == "m:a" && c.kind == CallKind::Action)
    );
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert_eq!(call.call().identity, Identity::None);
    }
}

// ---- Arguments ----

#[tokio::test]
async fn args_as_object_array_or_absent() {
    let (fake, addr) = start().await;
    let one = obj(&[("a", Value::Float64(1.0)), ("n", Value::Int64(1))]);
    for args in [
        json!({"a": 1, "n": {"$integer": "AQAAAAAAAAA="}}),
        json!([{"a": 1, "n": {"$integer": "AQAAAAAAAAA="}}]),
    ] {
        let reply = post(
            addr,
            "/api/query",
            json!({"path": "echo:args", "args": args, "format": "convex_encoded_json"}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.json()["value"],
            json!({"a": 1.0, "n": {"$integer": "AQAAAAAAAAA="}})
        );
        let calls = fake.take_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].call().args, one);
    }
    let reply = post(addr, "/api/query", json!({"path": "echo:args"})).await;
    assert_eq!(reply.json()["value"], json!({}));
    assert_eq!(fake.take_calls()[0].call().args, obj(&[]));
}

#[tokio::test]
async fn invalid_args_are_400_and_nothing_runs() {
    let (fake, addr) = start().await;
    for args in [
        json!(null),
        json!(1),
        json!("x"),
        json!(true),
        json!([]),
        json!([{}, {}]),
        json!([1]),
        json!([[{}]]),
        json!({"$bad": 1}),
        json!({"n": {"$integer": "AQ=="}}),
    ] {
        for endpoint in ["/api/query", "/api/mutation", "/api/action"] {
            let reply = post(addr, endpoint, json!({"path": "echo:args", "args": args})).await;
            reply.assert_error(400, "BadRequest");
        }
    }
    for body in [
        json!({"args": {}}),
        json!({"path": 3, "args": {}}),
        json!({"path": "", "args": {}}),
    ] {
        post(addr, "/api/mutation", body)
            .await
            .assert_error(400, "BadRequest");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn malformed_bodies_are_400_and_nothing_runs() {
    let (fake, addr) = start().await;
    for body in [
        &b"{\"path\":"[..],
        b"not json",
        b"",
        b"   ",
        b"[1]",
        b"\"x\"",
        b"\xff\xfe",
    ] {
        for endpoint in [
            "/api/query",
            "/api/mutation",
            "/api/function",
            "/api/query_batch",
        ] {
            let reply = send(
                addr,
                "POST",
                endpoint,
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &admin_header()),
                ],
                body,
            )
            .await;
            reply.assert_error(400, "BadRequest");
        }
    }
    let reply = send(addr, "POST", "/api/mutation", &[], b"{\"path\":").await;
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    // An unknown content encoding is refused rather than misread.
    send(
        addr,
        "POST",
        "/api/mutation",
        &[("Content-Encoding", "gzip")],
        b"{}",
    )
    .await
    .assert_error(400, "BadRequest");
    assert!(fake.calls().is_empty());
}

// ---- Limits ----

#[tokio::test]
async fn declared_oversized_body_is_413_before_reading() {
    let (fake, addr) = start().await;
    let declared = (knobs::HTTP_FUNCTION_BODY_MAX_BYTES + 1).to_string();
    let reply = send(
        addr,
        "POST",
        "/api/mutation",
        &[("Content-Length", &declared)],
        b"",
    )
    .await;
    reply.assert_error(413, "PayloadTooLarge");
    let declared = (knobs::HTTP_DEPLOY_BODY_MAX_BYTES + 1).to_string();
    send(
        addr,
        "POST",
        "/api/deploy2/start_push",
        &[
            ("Content-Length", &declared),
            ("Authorization", &admin_header()),
        ],
        b"",
    )
    .await
    .assert_error(413, "PayloadTooLarge");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn streamed_oversized_body_is_413() {
    let (fake, addr) = start().await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // A valid JSON prefix, then far more than the limit, sent chunked (no length up front).
    let writing = tokio::spawn(async move {
        let head = "POST /api/mutation HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        writer.write_all(head.as_bytes()).await?;
        let prefix = b"{\"path\":\"echo:args\",\"args\":{\"s\":\"";
        writer
            .write_all(format!("{:x}\r\n", prefix.len()).as_bytes())
            .await?;
        writer.write_all(prefix).await?;
        writer.write_all(b"\r\n").await?;
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0;
        while sent <= knobs::HTTP_FUNCTION_BODY_MAX_BYTES {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        writer.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(())
    });
    // The server stops reading once it refuses: the writer may then fail, and the read may end
    // in a reset after the reply arrived. What counts is the reply.
    let mut raw = Vec::new();
    let read = tokio::time::timeout(REPLY_TIMEOUT, reader.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "no reply within {REPLY_TIMEOUT:?}");
    let _ = writing.await;
    parse_reply(&raw).assert_error(413, "PayloadTooLarge");
    assert!(fake.calls().is_empty());
}

// ---- Credentials ----

#[tokio::test]
async fn wrong_credentials_are_401_and_nothing_runs() {
    let (fake, addr) = start().await;
    let wrong_admin = "Convex prod:chorus|wrong".to_string();
    let wrong_acting_as = format!("Convex {ADMIN_KEY}x:e30=");
    let bad_identity = format!("Convex {ADMIN_KEY}:not-base64!");
    for authorization in [
        wrong_admin.as_str(),
        "Convex ",
        "Bearer bad-token",
        "Basic dXNlcjpwYXNz",
        wrong_acting_as.as_str(),
        bad_identity.as_str(),
    ] {
        for (endpoint, body) in [
            ("/api/query", json!({"path": "m:q", "args": {}})),
            ("/api/mutation", json!({"path": "m:m", "args": {}})),
            ("/api/action", json!({"path": "m:a", "args": {}})),
            ("/api/function", json!({"path": "m:f", "args": {}})),
            ("/api/run/m/f", json!({"args": {}})),
            ("/api/query_ts", json!({})),
            (
                "/api/query_at_ts",
                json!({"path": "m:q", "args": {}, "ts": "AAAqNv6clxc="}),
            ),
            ("/api/query_batch", json!({"queries": []})),
            ("/api/deploy2/start_push", json!({"adminKey": ADMIN_KEY})),
            ("/api/get_config_hashes", json!({})),
            ("/api/deploy2/report_push_completed", json!({})),
        ] {
            let reply = post_as(addr, endpoint, authorization, body).await;
            assert_eq!(
                reply.status,
                401,
                "{authorization} {endpoint}: {}",
                reply.text()
            );
            reply.assert_error(401, "Unauthenticated");
        }
    }
    post(addr, "/api/mutation?adminKey=nope", json!({"path": "m:m"}))
        .await
        .assert_error(401, "Unauthenticated");
    // The refusal must not echo the key back.
    let reply = post_as(addr, "/api/mutation", &wrong_admin, json!({"path": "m:m"})).await;
    assert!(!reply.text().contains("wrong"));
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn identities_reach_the_backend() {
    let (fake, addr) = start().await;
    let acting_as = json!({"subject": "u2", "issuer": "i"});
    let encoded = STANDARD.encode(acting_as.to_string());
    let cases: Vec<(String, Identity)> = vec![
        (admin_header(), Identity::Admin { acting_as: None }),
        (
            format!("convex {ADMIN_KEY}"),
            Identity::Admin { acting_as: None },
        ),
        (
            format!("CONVEX {ADMIN_KEY}:{encoded}"),
            Identity::Admin {
                acting_as: Some(acting_as.clone()),
            },
        ),
        (
            format!("Bearer {USER_TOKEN}"),
            Identity::User(json!({"subject": "user1", "issuer": "https://issuer.example"})),
        ),
        (
            format!("bearer {USER_TOKEN}"),
            Identity::User(json!({"subject": "user1", "issuer": "https://issuer.example"})),
        ),
    ];
    for (authorization, identity) in cases {
        let reply = post_as(addr, "/api/query", &authorization, json!({"path": "m:q"})).await;
        assert_eq!(reply.status, 200, "{authorization}: {}", reply.text());
        let calls = fake.take_calls();
        assert_eq!(calls[0].call().identity, identity, "{authorization}");
    }
    let key = ADMIN_KEY.replace('|', "%7C").replace(':', "%3A");
    let reply = post(
        addr,
        &format!("/api/query?adminKey={key}"),
        json!({"path": "m:q"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        fake.take_calls()[0].call().identity,
        Identity::Admin { acting_as: None }
    );
}

#[tokio::test]
async fn function_endpoint_needs_the_admin_key() {
    let (fake, addr) = start().await;
    let body = json!({"path": "m:f", "args": {"x": 1}, "format": "json"});
    post(addr, "/api/function", body.clone())
        .await
        .assert_error(401, "Unauthenticated");
    post_as(
        addr,
        "/api/function",
        &format!("Bearer {USER_TOKEN}"),
        body.clone(),
    )
    .await
    .assert_error(403, "Forbidden");
    assert!(fake.calls().is_empty());

    let reply = post_as(addr, "/api/function", &admin_header(), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"status": "success", "value": {"x": 1.0}, "logLines": []})
    );
    let calls = fake.take_calls();
    assert!(matches!(&calls[..], [Recorded::Function(c)]
        if c.path == "m:f" && c.kind == CallKind::Any
            && c.identity == Identity::Admin { acting_as: None }));

    post_as(
        addr,
        "/api/function",
        &admin_header(),
        json!({"path": "m:f", "args": {}, "componentPath": "child"}),
    )
    .await
    .assert_error(400, "BadRequest");
    assert!(fake.calls().is_empty());
}

// ---- /api/run, query_ts, query_at_ts, query_batch, GET /api/query ----

#[tokio::test]
async fn run_decodes_the_path() {
    let (fake, addr) = start().await;
    let reply = post(
        addr,
        "/api/run/dir%20x/sub/my%2Dfn",
        json!({"args": {"a": 1}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["value"], json!({"a": 1.0}));
    let calls = fake.take_calls();
    assert!(matches!(&calls[..], [Recorded::Function(c)]
        if c.path == "dir x/sub:my-fn" && c.kind == CallKind::Any));

    // Clean JSON unless asked otherwise.
    let reply = post(addr, "/api/run/values/all", json!({})).await;
    assert_eq!(reply.json()["value"]["int"], "7");
    let reply = post(
        addr,
        "/api/run/values/all",
        json!({"format": "convex_encoded_json"}),
    )
    .await;
    assert_eq!(
        reply.json()["value"]["int"],
        json!({"$integer": "BwAAAAAAAAA="})
    );
    assert_eq!(fake.take_calls()[0].call().path, "values:all");

    // No body at all: no arguments.
    let reply = send(addr, "POST", "/api/run/m/f", &[], b"").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(fake.take_calls()[0].call().args, obj(&[]));

    for bad in ["/api/run/only", "/api/run/a//b", "/api/run/a/%zz"] {
        post(addr, bad, json!({}))
            .await
            .assert_error(400, "BadRequest");
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn query_ts_and_query_at_ts() {
    let (fake, addr) = start().await;
    let reply = post(addr, "/api/query_ts", json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"ts": "AAAqNv6clxc="}));

    let reply = post(
        addr,
        "/api/query_at_ts",
        json!({"path": "m:q", "args": [{"k": "v"}], "format": "convex_encoded_json", "ts": "AQAAAAAAAAA="}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["value"], json!({"k": "v"}));
    let calls = fake.take_calls();
    assert!(matches!(&calls[..], [Recorded::Query(c, Some(1))] if c.path == "m:q"));

    for ts in [json!(null), json!("AAAA"), json!(-1), json!([])] {
        post(
            addr,
            "/api/query_at_ts",
            json!({"path": "m:q", "args": {}, "ts": ts}),
        )
        .await
        .assert_error(400, "BadRequest");
    }
    post(addr, "/api/query_at_ts", json!({"path": "m:q", "args": {}}))
        .await
        .assert_error(400, "BadRequest");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn query_batch_runs_every_query_at_one_snapshot() {
    let (fake, addr) = start().await;
    let reply = post(
        addr,
        "/api/query_batch",
        json!({"queries": [
            {"path": "m:q", "args": {"i": 1}, "format": "json"},
            {"path": "fail:convex", "args": [{}], "format": "convex_encoded_json"},
        ]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"results": [
            {"status": "success", "value": {"i": 1.0}, "logLines": []},
            {"status": "error", "errorMessage": "ConvexError: nope",
             "errorData": {"code": {"$integer": "AwAAAAAAAAA="}}, "logLines": []},
        ]})
    );
    let calls = fake.take_calls();
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert!(
            matches!(call, Recorded::Query(_, Some(LATEST_TS))),
            "{call:?}"
        );
    }

    for body in [
        json!({}),
        json!({"queries": {}}),
        json!({"queries": [1]}),
        json!({"queries": [{"path": "m:q"}, {"path": "m:q", "args": 1}]}),
    ] {
        post(addr, "/api/query_batch", body)
            .await
            .assert_error(400, "BadRequest");
    }
    let too_many: Vec<_> = (0..=knobs::HTTP_QUERY_BATCH_MAX_QUERIES)
        .map(|_| json!({"path": "m:q"}))
        .collect();
    post(addr, "/api/query_batch", json!({"queries": too_many}))
        .await
        .assert_error(400, "BadRequest");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn get_query_reads_the_query_string() {
    let (fake, addr) = start().await;
    let reply = send(
        addr,
        "GET",
        "/api/query?path=m%3Aq&args=%7B%22a%22%3A1%7D&format=json",
        &[],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["value"], json!({"a": 1.0}));
    assert!(matches!(&fake.take_calls()[..], [Recorded::Query(c, None)] if c.path == "m:q"));
}

// ---- CORS ----

#[tokio::test]
async fn cors_preflight_mirrors_origin_and_headers() {
    let (fake, addr) = start().await;
    for target in ["/api/query", "/api/deploy2/start_push", "/nowhere"] {
        let reply = send(
            addr,
            "OPTIONS",
            target,
            &[
                ("Origin", "https://app.example"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "content-type,convex-client",
                ),
            ],
            b"",
        )
        .await;
        assert!(reply.status == 204 || reply.status == 200, "{reply:?}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            reply.header("access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(
            reply.header("access-control-allow-headers"),
            Some("content-type,convex-client")
        );
        let methods = reply.header("access-control-allow-methods").unwrap();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert!(methods.contains(method), "{methods}");
        }
        assert_eq!(reply.header("access-control-max-age"), Some("86400"));
        assert!(
            reply
                .header_all("vary")
                .iter()
                .any(|v| v.contains("origin"))
        );
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn cors_headers_on_every_response() {
    let (_, addr) = start().await;
    let origin = [
        ("Origin", "http://localhost:5173"),
        ("Content-Type", "application/json"),
    ];
    let ok = send(addr, "POST", "/api/query", &origin, br#"{"path":"m:q"}"#).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    let error = send(addr, "POST", "/api/query", &origin, b"nope").await;
    assert_eq!(error.status, 400);
    assert_eq!(
        error.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    let missing = send(addr, "GET", "/missing", &origin, b"").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    // Without an Origin there is nothing to mirror.
    let plain = post(addr, "/api/query", json!({"path": "m:q"})).await;
    assert_eq!(plain.header("access-control-allow-origin"), None);
}

// ---- Deploy ----

const DEPLOY_ROUTES: [(&str, DeployOp); 6] = [
    ("/api/get_config_hashes", DeployOp::GetConfigHashes),
    ("/api/deploy2/evaluate_schema", DeployOp::EvaluateSchema),
    ("/api/deploy2/evaluate_push", DeployOp::EvaluatePush),
    ("/api/deploy2/start_push", DeployOp::StartPush),
    ("/api/deploy2/wait_for_schema", DeployOp::WaitForSchema),
    ("/api/deploy2/finish_push", DeployOp::FinishPush),
];

#[tokio::test]
async fn deploy_endpoints_reach_their_op() {
    let (fake, addr) = start().await;
    for (route, op) in DEPLOY_ROUTES {
        let body = json!({"adminKey": ADMIN_KEY, "version": "1.48.0", "n": [1, {"x": null}]});
        let reply = post_as(addr, route, &admin_header(), body.clone()).await;
        assert_eq!(reply.status, 200, "{route}: {}", reply.text());
        assert_eq!(reply.json(), json!({"answered": format!("{op:?}")}));
        let calls = fake.take_calls();
        assert!(
            matches!(&calls[..], [Recorded::Deploy(o, b)] if *o == op && *b == body),
            "{route}: {calls:?}"
        );
    }
}

#[tokio::test]
async fn deploy_brotli_body_is_decoded_and_passed_through() {
    let (fake, addr) = start().await;
    let body = json!({
        "adminKey": ADMIN_KEY,
        "dryRun": false,
        "functions": "convex/",
        "appDefinition": {
            "changedModules": [{"path": "messages.js", "source": "export const x = 1;\n".repeat(500), "environment": "isolate"}],
            "unchangedModuleHashes": [],
        },
    });
    let compressed = brotli(body.to_string().as_bytes(), 9);
    assert!(compressed.len() < body.to_string().len() / 5);
    let reply = send(
        addr,
        "POST",
        "/api/deploy2/start_push",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "br"),
            ("Authorization", &admin_header()),
        ],
        &compressed,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let calls = fake.take_calls();
    assert!(
        matches!(&calls[..], [Recorded::Deploy(DeployOp::StartPush, b)] if *b == body),
        "{calls:?}"
    );

    // Garbage claiming to be brotli is a bad request.
    send(
        addr,
        "POST",
        "/api/deploy2/finish_push",
        &[
            ("Content-Encoding", "br"),
            ("Authorization", &admin_header()),
        ],
        b"{\"not\": \"brotli\"}",
    )
    .await
    .assert_error(400, "BadRequest");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn brotli_bomb_is_413_and_nothing_runs() {
    let (fake, addr) = start().await;
    // Zeros inflating to just over the limit, from a body of a few KiB.
    let bomb = brotli(&vec![0u8; knobs::HTTP_DEPLOY_BODY_MAX_BYTES + 1], 1);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let reply = send(
        addr,
        "POST",
        "/api/deploy2/start_push",
        &[
            ("Content-Encoding", "br"),
            ("Authorization", &admin_header()),
        ],
        &bomb,
    )
    .await;
    reply.assert_error(413, "PayloadTooLarge");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn deploy_admin_key_from_header_or_body() {
    let (fake, addr) = start().await;
    // The key only in the body (the push endpoints authenticate from it).
    let reply = post(
        addr,
        "/api/deploy2/wait_for_schema",
        json!({"adminKey": ADMIN_KEY, "timeoutMs": 10}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(fake.take_calls().len(), 1);

    // No key anywhere, a wrong body key (with or without a right header), a user token.
    post(addr, "/api/deploy2/start_push", json!({}))
        .await
        .assert_error(401, "Unauthenticated");
    post(addr, "/api/deploy2/start_push", json!({"adminKey": "nope"}))
        .await
        .assert_error(401, "Unauthenticated");
    post_as(
        addr,
        "/api/deploy2/start_push",
        &admin_header(),
        json!({"adminKey": "nope"}),
    )
    .await
    .assert_error(401, "Unauthenticated");
    post_as(
        addr,
        "/api/deploy2/start_push",
        &format!("Bearer {USER_TOKEN}"),
        json!({"adminKey": ADMIN_KEY}),
    )
    .await
    .assert_error(403, "Forbidden");
    post_as(
        addr,
        "/api/deploy2/start_push",
        &admin_header(),
        json!({"adminKey": 5}),
    )
    .await
    .assert_error(400, "BadRequest");
    send(
        addr,
        "POST",
        "/api/deploy2/start_push",
        &[("Authorization", &admin_header())],
        b"{oops",
    )
    .await
    .assert_error(400, "BadRequest");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn report_push_completed_answers_null() {
    let (fake, addr) = start().await;
    let reply = post_as(
        addr,
        "/api/deploy2/report_push_completed",
        &admin_header(),
        json!({"adminKey": ADMIN_KEY, "spans": [{"name": "deploy"}]}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!(null));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn canonical_urls_need_the_admin_key() {
    let (_, addr) = start().await;
    let reply = send(
        addr,
        "GET",
        "/api/v1/get_canonical_urls",
        &[("Authorization", &admin_header())],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"convexCloudUrl": CANONICAL_URL, "convexSiteUrl": CANONICAL_URL})
    );
    send(addr, "GET", "/api/v1/get_canonical_urls", &[], b"")
        .await
        .assert_error(401, "Unauthenticated");
}

#[tokio::test]
async fn stream_function_logs_long_polls() {
    let (_, addr) = start().await;
    let started = Instant::now();
    let reply = send(
        addr,
        "GET",
        "/api/stream_function_logs?cursor=17",
        &[("Authorization", &admin_header())],
        b"",
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"entries": [], "newCursor": 17}));
    let poll = Duration::from_millis(knobs::HTTP_LOG_STREAM_POLL_MS);
    assert!(
        waited >= poll,
        "answered after {waited:?}, poll is {poll:?}"
    );
    assert!(waited < poll * 5, "answered after {waited:?}");
    send(
        addr,
        "GET",
        "/api/stream_function_logs?cursor=x",
        &[("Authorization", &admin_header())],
        b"",
    )
    .await
    .assert_error(400, "BadRequest");
    send(addr, "GET", "/api/stream_function_logs?cursor=0", &[], b"")
        .await
        .assert_error(401, "Unauthenticated");
}

// ---- WebSocket upgrade ----

#[tokio::test]
async fn websocket_upgrades_on_both_sync_paths() {
    let (_, addr) = start().await;
    for path in ["/api/sync", "/api/1.48.0/sync"] {
        let (_socket, response) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(response.status(), 101, "{path}");
    }
    // A plain GET is not an upgrade.
    send(addr, "GET", "/api/sync", &[], b"")
        .await
        .assert_error(400, "BadRequest");
}
