//! The WebSocket sync protocol end to end: `api::sync::serve` behind a real axum server on
//! loopback, a fake in-memory key-value [`Backend`], and a raw `tokio-tungstenite` client that
//! records every message and checks the protocol's invariants on each one it receives
//! (transitions chain, timestamps never go back).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::sync::messages::WireTs;
use api::sync::{SyncConfig, SyncShared};
use api::{
    ApiError, Backend, CallKind, CallRequest, DeployOp, ErrorCode, FunctionFailure, FunctionResult,
    FunctionSuccess, Identity, MutationRun, QueryRun, ReadToken, Ts,
};
use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::{Value as Json, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use value::Value;

const START_TS: Ts = 1_700_000_000_000_000_000;
const ADMIN_KEY: &str = "admin-key";
const USER_TOKEN: &str = "good-token";
/// Generous bound for anything the server should do "soon"; never a performance assertion.
const PATIENCE: Duration = Duration::from_secs(10);

// ---- The fake backend: an MVCC key→value map ----

#[derive(Default)]
struct Data {
    ts: Ts,
    /// Every version of every key, oldest first.
    versions: BTreeMap<String, Vec<(Ts, Value)>>,
    /// (commit ts, key written), in commit order.
    writes: Vec<(Ts, String)>,
}

struct Fake {
    data: Mutex<Data>,
    /// `None` once the fake "stopped serving": sessions see their commit feed close.
    commits: Mutex<Option<watch::Sender<Ts>>>,
    /// Mutations that ran `kv:set` (a replayed answer does not count).
    executions: AtomicUsize,
    running_mutations: AtomicUsize,
    max_concurrent_mutations: AtomicUsize,
    /// Query runs per `kv:get` key.
    query_runs: Mutex<HashMap<String, usize>>,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            data: Mutex::new(Data {
                ts: START_TS,
                ..Data::default()
            }),
            commits: Mutex::new(Some(watch::channel(START_TS).0)),
            executions: AtomicUsize::new(0),
            running_mutations: AtomicUsize::new(0),
            max_concurrent_mutations: AtomicUsize::new(0),
            query_runs: Mutex::new(HashMap::new()),
        })
    }

    /// Commits `key = value` and notifies subscribers; returns the commit ts.
    fn write(&self, key: &str, value: Value) -> Ts {
        let ts = {
            let mut data = self.data.lock().unwrap();
            data.ts += 1;
            let ts = data.ts;
            data.versions
                .entry(key.to_string())
                .or_default()
                .push((ts, value));
            data.writes.push((ts, key.to_string()));
            ts
        };
        if let Some(commits) = self.commits.lock().expect("commits").as_ref() {
            commits.send_replace(ts);
        }
        ts
    }

    fn read(&self, key: &str, ts: Ts) -> Value {
        let data = self.data.lock().unwrap();
        data.versions
            .get(key)
            .and_then(|versions| versions.iter().rev().find(|(at, _)| *at <= ts))
            .map(|(_, value)| value.clone())
            .unwrap_or(Value::Null)
    }

    fn query_runs(&self, key: &str) -> usize {
        self.query_runs
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

fn arg<'a>(call: &'a CallRequest, name: &str) -> &'a Value {
    match &call.args {
        Value::Object(fields) => fields.get(name).unwrap_or(&Value::Null),
        _ => &Value::Null,
    }
}

fn key_arg(call: &CallRequest) -> String {
    match arg(call, "key") {
        Value::String(key) => key.clone(),
        other => panic!("key must be a string, not {other:?}"),
    }
}

fn ok(value: Value) -> FunctionResult {
    Ok(FunctionSuccess {
        value,
        log_lines: vec![],
    })
}

fn not_found(path: &str) -> FunctionResult {
    Err(FunctionFailure {
        message: format!("Could not find public function for '{path}'"),
        data: None,
        log_lines: vec![],
    })
}

fn identity_name(identity: &Identity) -> String {
    let subject = |attributes: &Json| attributes["subject"].as_str().unwrap_or("?").to_string();
    match identity {
        Identity::None => "none".into(),
        Identity::User(attributes) => format!("user:{}", subject(attributes)),
        Identity::Admin { acting_as: None } => "admin".into(),
        Identity::Admin {
            acting_as: Some(attributes),
        } => format!("admin as {}", subject(attributes)),
    }
}

impl Backend for Fake {
    fn check_admin_key(&self, key: &str) -> bool {
        key == ADMIN_KEY
    }

    fn authenticate_user(&self, token: &str) -> Result<Json, String> {
        if token == USER_TOKEN {
            Ok(
                json!({"tokenIdentifier": "https://issuer|alice", "issuer": "https://issuer",
                "subject": "alice"}),
            )
        } else {
            Err("Could not verify token".into())
        }
    }

    fn latest_ts(&self) -> Result<Ts, ApiError> {
        Ok(self.data.lock().unwrap().ts)
    }

    fn run_query(
        &self,
        call: CallRequest,
        ts: Option<Ts>,
    ) -> BoxFuture<'_, Result<QueryRun, ApiError>> {
        async move {
            assert_eq!(call.kind, CallKind::Query);
            let ts = match ts {
                Some(ts) => ts,
                None => self.latest_ts()?,
            };
            let (result, reads) = match call.path.as_str() {
                "kv:get" => {
                    let key = key_arg(&call);
                    *self
                        .query_runs
                        .lock()
                        .unwrap()
                        .entry(key.clone())
                        .or_default() += 1;
                    (ok(self.read(&key, ts)), vec![key])
                }
                "kv:slowGet" => {
                    // Slow enough that a mutation sent meanwhile finishes first.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let key = key_arg(&call);
                    (ok(self.read(&key, ts)), vec![key])
                }
                "kv:whoami" => (ok(Value::String(identity_name(&call.identity))), vec![]),
                "kv:unavailable" => {
                    return Err(ApiError::new(ErrorCode::Unavailable, "no leader"));
                }
                path => (not_found(path), vec![]),
            };
            let reads: ReadToken = Arc::new(reads);
            Ok(QueryRun { result, reads, ts })
        }
        .boxed()
    }

    fn run_mutation(&self, call: CallRequest) -> BoxFuture<'_, Result<MutationRun, ApiError>> {
        async move {
            assert_eq!(call.kind, CallKind::Mutation);
            let running = self.running_mutations.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_concurrent_mutations
                .fetch_max(running, Ordering::SeqCst);
            // Give a concurrent mutation (if the session started one) time to overlap.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let run = match call.path.as_str() {
                "kv:set" => {
                    self.executions.fetch_add(1, Ordering::SeqCst);
                    let ts = self.write(&key_arg(&call), arg(&call, "value").clone());
                    MutationRun {
                        result: ok(Value::Null),
                        commit_ts: Some(ts),
                    }
                }
                "kv:fail" => MutationRun {
                    result: Err(FunctionFailure {
                        message: "Uncaught ConvexError: nope".into(),
                        data: Some(Value::Object(BTreeMap::from([(
                            "code".to_string(),
                            Value::String("NOPE".into()),
                        )]))),
                        log_lines: vec!["[ERROR] about to fail".into()],
                    }),
                    commit_ts: None,
                },
                path => MutationRun {
                    result: not_found(path),
                    commit_ts: None,
                },
            };
            self.running_mutations.fetch_sub(1, Ordering::SeqCst);
            Ok(run)
        }
        .boxed()
    }

    fn run_action(&self, call: CallRequest) -> BoxFuture<'_, Result<FunctionResult, ApiError>> {
        async move {
            assert_eq!(call.kind, CallKind::Action);
            Ok(match call.path.as_str() {
                "kv:echo" => ok(call.args.clone()),
                path => not_found(path),
            })
        }
        .boxed()
    }

    fn run_function(&self, _: CallRequest) -> BoxFuture<'_, Result<FunctionResult, ApiError>> {
        async { Err(ApiError::new(ErrorCode::NotFound, "not in this fake")) }.boxed()
    }

    fn commits(&self) -> watch::Receiver<Ts> {
        match self.commits.lock().expect("commits").as_ref() {
            Some(commits) => commits.subscribe(),
            None => watch::channel(0).1,
        }
    }

    fn invalidated(&self, reads: &ReadToken, from: Ts, to: Ts) -> bool {
        let Some(keys) = reads.downcast_ref::<Vec<String>>() else {
            return true;
        };
        let data = self.data.lock().unwrap();
        data.writes
            .iter()
            .any(|(ts, key)| *ts > from && *ts <= to && keys.contains(key))
    }

    fn deploy(&self, _: DeployOp, _: Json) -> BoxFuture<'_, Result<Json, ApiError>> {
        async { Err(ApiError::new(ErrorCode::NotFound, "not in this fake")) }.boxed()
    }

    fn canonical_url(&self) -> String {
        "http://fake".into()
    }
}

// ---- The server ----

type AppState = (Arc<dyn Backend>, Arc<SyncShared>);

async fn upgrade(State((backend, shared)): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| api::sync::serve(backend, shared, socket))
}

struct Server {
    fake: Arc<Fake>,
    /// `ws://127.0.0.1:port`
    base: String,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(SyncConfig::default()).await
    }

    async fn start_with(config: SyncConfig) -> Server {
        let fake = Fake::new();
        let backend: Arc<dyn Backend> = fake.clone();
        let shared = Arc::new(SyncShared::with_config(config));
        let app = Router::new()
            .route("/api/sync", get(upgrade))
            .route("/api/{version}/sync", get(upgrade))
            .with_state((backend, shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { fake, base }
    }

    /// A client on the Rust/Python path, already past `Connect`.
    async fn client(&self, session_id: &str) -> Client {
        self.client_at("/api/sync", session_id).await
    }

    async fn client_at(&self, path: &str, session_id: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{}{path}", self.base))
            .await
            .unwrap();
        let mut client = Client {
            ws,
            version: initial_version(),
            received: Vec::new(),
            view: BTreeMap::new(),
            query_set: 0,
            identity: 0,
            ws_pings: 0,
        };
        client
            .send(
                json!({"type":"Connect","sessionId":session_id,"connectionCount":0,
                "lastCloseReason":"InitialConnect","clientTs":0}),
            )
            .await;
        client
    }
}

// ---- The client ----

fn initial_version() -> Json {
    json!({"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="})
}

fn ts_of(version: &Json) -> Ts {
    WireTs::decode(version["ts"].as_str().unwrap()).unwrap().0
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The endVersion of the last Transition received.
    version: Json,
    /// Every server message, in order.
    received: Vec<Json>,
    /// Query id → its latest QueryUpdated value or QueryFailed message, as a client sees it.
    view: BTreeMap<u64, Json>,
    query_set: u32,
    identity: u32,
    ws_pings: usize,
}

impl Client {
    async fn send(&mut self, message: Json) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// Adds queries: `(id, path, args)`.
    async fn add(&mut self, queries: &[(u64, &str, Json)]) {
        let modifications: Vec<Json> = queries
            .iter()
            .map(|(id, path, args)| {
                json!({"type":"Add","queryId":id,"udfPath":path,"args":[args],"journal":null})
            })
            .collect();
        self.modify(modifications).await;
    }

    async fn modify(&mut self, modifications: Vec<Json>) {
        let base = self.query_set;
        self.query_set += 1;
        self.send(json!({"type":"ModifyQuerySet","baseVersion":base,
            "newVersion":self.query_set,"modifications":modifications}))
            .await;
    }

    async fn authenticate(&mut self, token: Json) {
        let mut message = token;
        message["type"] = json!("Authenticate");
        message["baseVersion"] = json!(self.identity);
        self.identity += 1;
        self.send(message).await;
    }

    async fn mutation(&mut self, request_id: u32, path: &str, args: Json) {
        self.send(
            json!({"type":"Mutation","requestId":request_id,"udfPath":path,
            "args":[args]}),
        )
        .await;
    }

    /// The next server message (Pings included), checked against the protocol's invariants.
    async fn recv(&mut self) -> Json {
        self.recv_by(Instant::now() + PATIENCE).await
    }

    async fn recv_by(&mut self, deadline: Instant) -> Json {
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("no server message in time")
                .expect("socket ended")
                .expect("socket failed");
            let text = match frame {
                Message::Text(text) => text,
                Message::Ping(_) => {
                    self.ws_pings += 1;
                    continue;
                }
                Message::Pong(_) | Message::Frame(_) => continue,
                Message::Binary(_) => panic!("binary frame from the server"),
                Message::Close(frame) => panic!("closed unexpectedly: {frame:?}"),
            };
            let message: Json = serde_json::from_str(&text).unwrap();
            assert_ne!(message["type"], "TransitionChunk");
            if message["type"] == "Transition" {
                assert_eq!(
                    message["startVersion"], self.version,
                    "a Transition must start where the previous one ended"
                );
                let end = message["endVersion"].clone();
                assert!(
                    ts_of(&end) >= ts_of(&self.version),
                    "ts went back: {message}"
                );
                for modification in message["modifications"].as_array().unwrap() {
                    let id = modification["queryId"].as_u64().unwrap();
                    match modification["type"].as_str().unwrap() {
                        "QueryUpdated" => {
                            assert!(modification["logLines"].is_array());
                            self.view.insert(id, modification["value"].clone());
                        }
                        "QueryFailed" => {
                            assert!(modification["logLines"].is_array());
                            self.view
                                .insert(id, json!({"failed": modification["errorMessage"]}));
                        }
                        "QueryRemoved" => {
                            self.view.remove(&id);
                        }
                        other => panic!("unknown modification {other}"),
                    }
                }
                self.version = end;
            }
            self.received.push(message.clone());
            return message;
        }
    }

    /// The next message that is not a Ping.
    async fn recv_non_ping(&mut self) -> Json {
        self.until(|m| m["type"] != "Ping").await
    }

    /// Receives until a message satisfies `pred` (within [`PATIENCE`]), and returns it.
    async fn until(&mut self, pred: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let message = self.recv_by(deadline).await;
            if pred(&message) {
                return message;
            }
        }
    }

    async fn until_type(&mut self, kind: &str) -> Json {
        self.until(|m| m["type"] == kind).await
    }

    /// Receives until the socket closes; returns the close frame (if any) and what came
    /// before it.
    async fn until_closed(&mut self) -> (Option<CloseFrame>, Vec<Json>) {
        let mut before = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("socket not closed in time");
            match frame {
                Some(Ok(Message::Close(frame))) => return (frame, before),
                Some(Ok(Message::Text(text))) => before.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return (None, before),
            }
        }
    }
}

fn get_args(key: &str) -> Json {
    json!({ "key": key })
}

fn set_args(key: &str, value: f64) -> Json {
    json!({ "key": key, "value": value })
}

/// The modifications of `query_id` in `message` (none if it is not a Transition).
fn updates_of(message: &Json, query_id: u64) -> Vec<Json> {
    let modifications = message["modifications"].as_array();
    modifications
        .into_iter()
        .flatten()
        .filter(|m| m["queryId"] == query_id)
        .cloned()
        .collect()
}

// ---- Tests ----

#[tokio::test]
async fn query_result_arrives_in_the_first_transition() {
    let server = Server::start().await;
    let at = server.fake.write("a", Value::Float64(1.0));
    // npm's path.
    let mut client = server.client_at("/api/1.48.0/sync", "s1").await;
    client.add(&[(0, "kv:get", get_args("a"))]).await;
    let transition = client.recv_non_ping().await;
    assert_eq!(
        transition,
        json!({"type":"Transition",
            "startVersion": initial_version(),
            "endVersion": {"querySet":1,"identity":0,"ts": WireTs(at).encode()},
            "modifications":[{"type":"QueryUpdated","queryId":0,"value":1.0,"logLines":[],
                "journal":null}]})
    );
    // A missing function is a function error, not a protocol error.
    client.add(&[(1, "kv:nope", json!({}))]).await;
    let transition = client.recv_non_ping().await;
    assert_eq!(
        updates_of(&transition, 1),
        vec![json!({"type":"QueryFailed","queryId":1,
            "errorMessage":"Could not find public function for 'kv:nope'","logLines":[],
            "journal":null})]
    );
    assert!(
        updates_of(&transition, 0).is_empty(),
        "unchanged result resent"
    );
}

#[tokio::test]
async fn mutation_response_comes_first_then_a_transition_covering_its_commit() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client.add(&[(0, "kv:get", get_args("a"))]).await;
    client.until_type("Transition").await;
    assert_eq!(client.view[&0], json!(null));

    client.mutation(0, "kv:set", set_args("a", 2.0)).await;
    let response = client.until_type("MutationResponse").await;
    assert_eq!(response["requestId"], 0);
    assert_eq!(response["success"], true);
    assert_eq!(response["result"], json!(null));
    assert_eq!(response["logLines"], json!([]));
    let commit_ts = WireTs::decode(response["ts"].as_str().unwrap()).unwrap().0;
    // The very next Transition reaches the commit ts; the client's view then has the write.
    let transition = client.recv_non_ping().await;
    assert_eq!(transition["type"], "Transition");
    assert!(ts_of(&transition["endVersion"]) >= commit_ts);
    assert_eq!(client.view[&0], json!(2.0));
}

#[tokio::test]
async fn a_response_is_never_followed_by_a_transition_older_than_its_commit() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    // A transition computation is in flight (slow query) when the mutation commits: its
    // Transition, computed before the commit, must not be the first one after the response.
    client.add(&[(0, "kv:slowGet", get_args("a"))]).await;
    client.mutation(0, "kv:set", set_args("a", 1.0)).await;
    let response = client.until_type("MutationResponse").await;
    let commit_ts = WireTs::decode(response["ts"].as_str().unwrap()).unwrap().0;
    let transition = client.recv_non_ping().await;
    assert_eq!(transition["type"], "Transition");
    assert!(
        ts_of(&transition["endVersion"]) >= commit_ts,
        "{transition} after a commit at {commit_ts}"
    );
    assert_eq!(client.view[&0], json!(1.0));
}

#[tokio::test]
async fn a_rerun_with_an_unchanged_result_is_omitted() {
    let server = Server::start().await;
    server.fake.write("a", Value::Float64(1.0));
    let mut client = server.client("s1").await;
    client
        .add(&[(0, "kv:get", get_args("a")), (1, "kv:get", get_args("b"))])
        .await;
    client.until_type("Transition").await;
    let initial = client.received.len();
    // Rewrite "a" with the same value (its query re-runs), then change "b".
    client.mutation(0, "kv:set", set_args("a", 1.0)).await;
    client.until_type("MutationResponse").await;
    client.mutation(1, "kv:set", set_args("b", 2.0)).await;
    let deadline = Instant::now() + PATIENCE;
    while client.view.get(&1) != Some(&json!(2.0)) {
        client.recv_by(deadline).await;
    }
    assert_eq!(server.fake.query_runs("a"), 2, "the query on a was re-run");
    for message in &client.received[initial..] {
        assert!(
            updates_of(message, 0).is_empty(),
            "unchanged result in {message}"
        );
    }
}

#[tokio::test]
async fn mutations_on_one_socket_run_one_at_a_time_in_order() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    for i in 0..5u32 {
        client
            .mutation(i, "kv:set", set_args("a", f64::from(i)))
            .await;
    }
    let mut last_ts = 0;
    for i in 0..5u32 {
        let response = client.until_type("MutationResponse").await;
        assert_eq!(response["requestId"], i, "responses in request order");
        let ts = WireTs::decode(response["ts"].as_str().unwrap()).unwrap().0;
        assert!(ts > last_ts, "commits in request order");
        last_ts = ts;
    }
    assert_eq!(
        server.fake.max_concurrent_mutations.load(Ordering::SeqCst),
        1
    );
    assert_eq!(server.fake.read("a", last_ts), Value::Float64(4.0));
}

#[tokio::test]
async fn another_socket_sees_the_write() {
    let server = Server::start().await;
    let mut watcher = server.client("watcher").await;
    watcher.add(&[(7, "kv:get", get_args("a"))]).await;
    watcher.until_type("Transition").await;

    let mut writer = server.client("writer").await;
    writer.mutation(0, "kv:set", set_args("a", 3.0)).await;
    let response = writer.until_type("MutationResponse").await;
    let commit_ts = WireTs::decode(response["ts"].as_str().unwrap()).unwrap().0;

    let transition = watcher
        .until(|m| m["type"] == "Transition" && !updates_of(m, 7).is_empty())
        .await;
    assert_eq!(
        updates_of(&transition, 7),
        vec![json!({"type":"QueryUpdated","queryId":7,"value":3.0,"logLines":[],"journal":null})]
    );
    assert!(ts_of(&transition["endVersion"]) >= commit_ts);
}

#[tokio::test]
async fn a_subscription_to_an_unrelated_key_is_neither_rerun_nor_updated() {
    let server = Server::start().await;
    server.fake.write("other", Value::String("x".into()));
    let mut watcher = server.client("watcher").await;
    watcher
        .add(&[
            (0, "kv:get", get_args("other")),
            (1, "kv:get", get_args("a")),
        ])
        .await;
    watcher.until_type("Transition").await;
    let initial = watcher.received.len();

    let mut writer = server.client("writer").await;
    for i in 0..3u32 {
        writer
            .mutation(i, "kv:set", set_args("a", f64::from(i)))
            .await;
        writer.until_type("MutationResponse").await;
    }
    // Wait until the watcher has seen the last write to "a"; by then every commit was handled.
    let deadline = Instant::now() + PATIENCE;
    while watcher.view.get(&1) != Some(&json!(2.0)) {
        watcher.recv_by(deadline).await;
    }
    for message in &watcher.received[initial..] {
        if message["type"] == "Transition" {
            assert!(
                updates_of(message, 0).is_empty(),
                "unrelated query in {message}"
            );
        }
    }
    assert_eq!(
        server.fake.query_runs("other"),
        1,
        "unrelated query was re-run"
    );
    assert_eq!(watcher.view[&0], json!("x"));
}

#[tokio::test]
async fn failed_mutation_has_error_data_and_is_still_followed_by_a_transition() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client.mutation(0, "kv:fail", json!({})).await;
    let response = client.recv_non_ping().await;
    assert_eq!(
        response,
        json!({"type":"MutationResponse","requestId":0,"success":false,
            "result":"Uncaught ConvexError: nope","logLines":["[ERROR] about to fail"],
            "errorData":{"code":"NOPE"}})
    );
    let next = client.recv_non_ping().await;
    assert_eq!(next["type"], "Transition");
    assert_eq!(next["startVersion"], initial_version());
    assert_eq!(next["endVersion"]["querySet"], 0);
    assert_eq!(server.fake.executions.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn action_response_is_followed_by_a_transition() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client
        .send(json!({"type":"Action","requestId":0,"udfPath":"kv:echo",
            "args":[{"n":{"$integer":"AQAAAAAAAAA="}}]}))
        .await;
    let response = client.recv_non_ping().await;
    assert_eq!(
        response,
        json!({"type":"ActionResponse","requestId":0,"success":true,
            "result":{"n":{"$integer":"AQAAAAAAAAA="}},"logLines":[]})
    );
    assert_eq!(client.recv_non_ping().await["type"], "Transition");
}

#[tokio::test]
async fn base_version_mismatch_is_a_fatal_error() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client
        .send(
            json!({"type":"ModifyQuerySet","baseVersion":3,"newVersion":4,
            "modifications":[]}),
        )
        .await;
    let (_, before) = client.until_closed().await;
    let fatal = before
        .iter()
        .find(|m| m["type"] == "FatalError")
        .expect("FatalError before close");
    assert!(
        fatal["error"]
            .as_str()
            .unwrap()
            .starts_with("BaseVersionMismatch"),
        "{fatal}"
    );

    let mut client = server.client("s2").await;
    client
        .send(json!({"type":"Authenticate","tokenType":"None","baseVersion":1}))
        .await;
    let (_, before) = client.until_closed().await;
    assert!(before.iter().any(|m| {
        m["type"] == "FatalError"
            && m["error"]
                .as_str()
                .unwrap()
                .starts_with("BaseVersionMismatch")
    }));
}

#[tokio::test]
async fn malformed_and_unknown_messages_are_fatal() {
    let server = Server::start().await;
    for bad in [
        json!({"type":"Subscribe"}),
        json!({"type":"Mutation","requestId":0,"udfPath":"kv:set","args":[{"$bad":1}]}),
    ] {
        let mut client = server.client("s").await;
        client.send(bad).await;
        let (_, before) = client.until_closed().await;
        assert!(
            before.iter().any(|m| m["type"] == "FatalError"),
            "{before:?}"
        );
    }
    assert_eq!(server.fake.executions.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn remove_reports_query_removed() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client
        .add(&[(0, "kv:get", get_args("a")), (1, "kv:get", get_args("b"))])
        .await;
    client.until_type("Transition").await;
    client
        .modify(vec![json!({"type":"Remove","queryId":0})])
        .await;
    let transition = client.until_type("Transition").await;
    assert_eq!(transition["endVersion"]["querySet"], 2);
    assert_eq!(
        transition["modifications"],
        json!([{"type":"QueryRemoved","queryId":0}])
    );
    assert_eq!(client.view.keys().copied().collect::<Vec<_>>(), vec![1]);
    // Removing it again is an error.
    client
        .modify(vec![json!({"type":"Remove","queryId":0})])
        .await;
    let (_, before) = client.until_closed().await;
    assert!(before.iter().any(|m| m["type"] == "FatalError"));
}

#[tokio::test]
async fn authenticate_bumps_identity_and_reruns_queries_as_the_new_identity() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client.add(&[(0, "kv:whoami", json!({}))]).await;
    client.until_type("Transition").await;
    assert_eq!(client.view[&0], json!("none"));

    client
        .authenticate(json!({"tokenType":"User","value":USER_TOKEN}))
        .await;
    let transition = client.until_type("Transition").await;
    assert_eq!(transition["startVersion"]["identity"], 0);
    assert_eq!(transition["endVersion"]["identity"], 1);
    assert_eq!(client.view[&0], json!("user:alice"));

    client
        .authenticate(json!({"tokenType":"Admin","value":ADMIN_KEY,
            "impersonating":{"tokenIdentifier":"i|bob","issuer":"i","subject":"bob"}}))
        .await;
    client.until_type("Transition").await;
    assert_eq!(client.version["identity"], 2);
    assert_eq!(client.view[&0], json!("admin as bob"));

    // The Rust client's spelling of acting-as.
    client
        .authenticate(json!({"tokenType":"Admin","value":ADMIN_KEY,
            "acting_as":{"tokenIdentifier":"i|carol","issuer":"i","subject":"carol"}}))
        .await;
    client.until_type("Transition").await;
    assert_eq!(client.view[&0], json!("admin as carol"));

    client.authenticate(json!({"tokenType":"None"})).await;
    let transition = client.until_type("Transition").await;
    assert_eq!(transition["endVersion"]["identity"], 4);
    assert_eq!(client.view[&0], json!("none"));
}

#[tokio::test]
async fn authenticate_without_queries_still_sends_a_transition() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client
        .authenticate(json!({"tokenType":"Admin","value":ADMIN_KEY}))
        .await;
    let transition = client.recv_non_ping().await;
    assert_eq!(transition["type"], "Transition");
    assert_eq!(transition["endVersion"]["identity"], 1);
    assert_eq!(transition["modifications"], json!([]));
}

#[tokio::test]
async fn rejected_credentials_are_auth_errors_then_close() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client
        .authenticate(json!({"tokenType":"Admin","value":"wrong key"}))
        .await;
    let (_, before) = client.until_closed().await;
    let error = before
        .iter()
        .find(|m| m["type"] == "AuthError")
        .expect("AuthError");
    assert_eq!(error["baseVersion"], 0);
    assert_eq!(error["authUpdateAttempted"], true);
    assert!(error["error"].is_string());

    // A later bad token: baseVersion is the identity version of the last sent Transition.
    let mut client = server.client("s2").await;
    client
        .authenticate(json!({"tokenType":"User","value":USER_TOKEN}))
        .await;
    client.until_type("Transition").await;
    client
        .authenticate(json!({"tokenType":"User","value":"forged"}))
        .await;
    let (_, before) = client.until_closed().await;
    let error = before
        .iter()
        .find(|m| m["type"] == "AuthError")
        .expect("AuthError");
    assert_eq!(
        error,
        &json!({"type":"AuthError","error":"Could not verify token","baseVersion":1,
            "authUpdateAttempted":true})
    );
}

#[tokio::test]
async fn a_resent_mutation_is_answered_from_memory_not_run_twice() {
    let server = Server::start().await;
    let executions = || server.fake.executions.load(Ordering::SeqCst);

    let mut first = server.client("session-1").await;
    first.mutation(0, "kv:set", set_args("a", 1.0)).await;
    let original = first.until_type("MutationResponse").await;
    first.until_type("Transition").await;
    drop(first);
    assert_eq!(executions(), 1);

    // Reconnect with the same session: the same request is answered, not run.
    let mut second = server.client("session-1").await;
    second.mutation(0, "kv:set", set_args("a", 1.0)).await;
    let replayed = second.until_type("MutationResponse").await;
    assert_eq!(replayed, original, "same result and commit ts");
    assert_eq!(second.recv_non_ping().await["type"], "Transition");
    assert_eq!(executions(), 1);

    // A new request id, or another session, does run.
    second.mutation(1, "kv:set", set_args("a", 2.0)).await;
    second.until_type("MutationResponse").await;
    assert_eq!(executions(), 2);
    let mut other = server.client("session-2").await;
    other.mutation(0, "kv:set", set_args("a", 1.0)).await;
    let response = other.until_type("MutationResponse").await;
    assert_ne!(response["ts"], original["ts"]);
    assert_eq!(executions(), 3);
}

#[tokio::test]
async fn an_idle_socket_gets_pings() {
    let server = Server::start_with(SyncConfig {
        heartbeat_interval: Duration::from_millis(50),
        ws_ping_interval: Duration::from_millis(50),
        ..SyncConfig::default()
    })
    .await;
    let mut client = server.client("s1").await;
    assert_eq!(client.recv().await, json!({"type":"Ping"}));
    let deadline = Instant::now() + PATIENCE;
    while client.ws_pings == 0 {
        client.recv_by(deadline).await;
    }
}

#[tokio::test]
async fn a_silent_client_is_disconnected() {
    let server = Server::start_with(SyncConfig {
        client_idle_timeout: Duration::from_millis(100),
        ..SyncConfig::default()
    })
    .await;
    let mut client = server.client("s1").await;
    let (frame, _) = client.until_closed().await;
    let frame = frame.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    assert!(frame.reason.starts_with("ClientInactive"), "{frame:?}");
}

#[tokio::test]
async fn an_unavailable_backend_closes_with_try_again() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client.add(&[(0, "kv:unavailable", json!({}))]).await;
    let (frame, before) = client.until_closed().await;
    assert!(
        before.iter().all(|m| m["type"] != "Transition"),
        "an ApiError is not a QueryFailed: {before:?}"
    );
    let frame = frame.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1013);
    assert!(
        frame.reason.starts_with("TemporarilyUnavailable"),
        "{frame:?}"
    );
}

#[tokio::test]
async fn a_backend_that_stops_serving_closes_sessions_with_service_restart() {
    let server = Server::start().await;
    let mut client = server.client("s1").await;
    client.add(&[(0, "kv:get", get_args("a"))]).await;
    // A cluster node that loses the lead drops its commit feed.
    server.fake.commits.lock().expect("commits").take();
    let (frame, _) = client.until_closed().await;
    let frame = frame.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1012, "{frame:?}");
}

#[tokio::test]
async fn too_many_queries_is_fatal() {
    let server = Server::start_with(SyncConfig {
        max_queries: 2,
        ..SyncConfig::default()
    })
    .await;
    let mut client = server.client("s1").await;
    client
        .add(&[(0, "kv:get", get_args("a")), (1, "kv:get", get_args("b"))])
        .await;
    client.until_type("Transition").await;
    client.add(&[(2, "kv:get", get_args("c"))]).await;
    let (_, before) = client.until_closed().await;
    assert!(
        before.iter().any(|m| m["type"] == "FatalError"
            && m["error"].as_str().unwrap().starts_with("TooManyQueries"))
    );
}

#[tokio::test]
async fn a_client_observing_the_future_is_turned_away() {
    let server = Server::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/api/sync", server.base))
        .await
        .unwrap();
    let ahead = WireTs(START_TS + 1_000).encode();
    ws.send(Message::text(
        json!({"type":"Connect","sessionId":"s","connectionCount":1,"lastCloseReason":null,
            "maxObservedTimestamp":ahead,"clientTs":0})
        .to_string(),
    ))
    .await
    .unwrap();
    let mut client = Client {
        ws,
        version: initial_version(),
        received: Vec::new(),
        view: BTreeMap::new(),
        query_set: 0,
        identity: 0,
        ws_pings: 0,
    };
    let (frame, _) = client.until_closed().await;
    assert_eq!(u16::from(frame.expect("a close frame").code), 1013);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_not_buffered_for() {
    let server = Server::start_with(SyncConfig {
        outbound_max_messages: 4,
        outbound_max_bytes: 256 << 10,
        ..SyncConfig::default()
    })
    .await;
    let mut client = server.client("s1").await;
    // 300 responses of 100 kB each: far more than the socket buffers and the queue hold.
    let requests = 300u32;
    let payload = "x".repeat(100_000);
    for request_id in 0..requests {
        let sent = client
            .ws
            .send(Message::text(
                json!({"type":"Action","requestId":request_id,"udfPath":"kv:echo",
                    "args":[{"s": payload}]})
                .to_string(),
            ))
            .await;
        if sent.is_err() {
            break; // already disconnected
        }
    }
    let mut responses = 0;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, client.ws.next())
            .await
            .expect("neither all responses nor a disconnect in time")
        {
            Some(Ok(Message::Text(text))) => {
                let message: Json = serde_json::from_str(&text).unwrap();
                if message["type"] == "ActionResponse" {
                    responses += 1;
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(
        responses < requests,
        "all {responses} responses were buffered for a client that did not read"
    );
}
