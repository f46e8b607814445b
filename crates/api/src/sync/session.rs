//! One sync socket: the state machine of `research/convex-protocol.md` §3.4–§3.10.
//!
//! A single task owns the session and reacts to one event at a time: a client frame, a commit
//! notification, the end of the running mutation, of an action, or of the transition being
//! computed, the client's idle deadline, or the writer stopping. Work that takes time (query
//! runs, mutations, actions) is a future the task polls, so the session needs no locks and the
//! invariants below hold between events. Only a mutation's run is spawned (see
//! `spawn_mutation`), and the writer (`outbound`).
//!
//! - `sent` is the `endVersion` of the last Transition written; every Transition starts there,
//!   and its `ts` never decreases (a computation picks `ts ≥ sent.ts`).
//! - At most one transition computation is in flight. It works on a snapshot (versions, `ts`,
//!   removed queries) taken when it starts; anything that arrives meanwhile waits for the next.
//! - While a computation is in flight, responses are held in `deferred` and written right
//!   after its Transition. So the first Transition a client sees after a `MutationResponse` is
//!   one started after the commit, with `ts ≥` the commit ts (clients release the mutation on
//!   it), and `deferred` is empty whenever no computation is in flight.
//! - Mutations run one at a time in arrival order; actions run concurrently.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::hash::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::task::Poll;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, SplitStream};
use futures_util::{FutureExt as _, StreamExt as _};
use serde_json::Value as Json;
use tokio::sync::watch;
use tokio::time::Instant;
use value::Value;

use super::messages::{
    Authenticate, ClientMessage, QueryId, QuerySetModification, RequestId, ServerMessage,
    StateModification, StateVersion, WireTs,
};
use super::outbound::{Outbound, Overflow, Writer};
use super::shared::{Begin, MutationKey, SharedOutcome, SyncConfig, SyncShared};
use crate::{
    ApiError, Backend, CallKind, CallRequest, ErrorCode, FunctionFailure, FunctionResult,
    FunctionSuccess, Identity, MutationRun, QueryRun, ReadToken, Ts,
};

/// Longest close reason a WebSocket close frame can carry, in bytes.
const CLOSE_REASON_MAX_BYTES: usize = 123;

pub(crate) async fn run(backend: Arc<dyn Backend>, shared: Arc<SyncShared>, socket: WebSocket) {
    let config = shared.config().clone();
    let (sink, mut stream) = socket.split();
    let (outbound, mut writer) = Outbound::start(sink, &config);
    let mut session = Session::new(backend, shared, config, outbound);
    let stop = session.drive(&mut stream).await;
    session.finish(stop, &mut writer, &mut stream).await;
}

/// Why a session ends, and so how its socket is closed.
#[derive(Debug)]
enum Stop {
    /// The connection broke or the writer stopped: nothing more can be said.
    Gone,
    /// The client sent a close frame.
    ClientClosed,
    /// The client does not read what it is sent.
    Overflow,
    /// A bad-request-class error: `FatalError`, then close without a status code.
    Fatal(String),
    /// `AuthError`, then close.
    Auth {
        error: String,
        update_attempted: bool,
    },
    /// Close with this code and reason.
    Close { code: u16, reason: String },
}

impl From<Overflow> for Stop {
    fn from(_: Overflow) -> Self {
        Stop::Overflow
    }
}

/// The one mapping of a backend error to how the socket ends (§3.7): bad requests get a
/// `FatalError`, an invalid credential an `AuthError`, overload "try again" (1013), internal
/// errors 1011 (without the internal message), and refusals a normal close.
fn stop_for(error: ApiError) -> Stop {
    let ApiError { code, message } = error;
    let with_message = |name: &str| format!("{name}: {message}");
    match code {
        ErrorCode::BadRequest => Stop::Fatal(with_message("BadRequest")),
        ErrorCode::PayloadTooLarge => Stop::Fatal(with_message("PayloadTooLarge")),
        ErrorCode::Unauthenticated => Stop::Auth {
            error: message,
            update_attempted: false,
        },
        ErrorCode::Forbidden => Stop::Close {
            code: close_code::NORMAL,
            reason: with_message("Forbidden"),
        },
        ErrorCode::NotFound => Stop::Close {
            code: close_code::NORMAL,
            reason: with_message("NotFound"),
        },
        ErrorCode::Unavailable => Stop::Close {
            code: close_code::AGAIN,
            reason: with_message("TemporarilyUnavailable"),
        },
        ErrorCode::Internal => {
            tracing::warn!(%message, "sync session closed by an internal error");
            Stop::Close {
                code: close_code::ERROR,
                reason: "InternalServerError".to_string(),
            }
        }
    }
}

fn bad_request(message: impl std::fmt::Display) -> Stop {
    Stop::Fatal(format!("BadRequest: {message}"))
}

/// `text` cut to at most `max` bytes at a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A subscribed query.
struct Query {
    path: String,
    args: Value,
    /// Changes whenever earlier runs stop counting (identity changed), so a run started
    /// before is discarded when it ends.
    generation: u64,
    /// Must run at the next computation (new, or the identity changed).
    needs_run: bool,
    /// The last run that counted; `None` until the first.
    last: Option<LastRun>,
}

struct LastRun {
    reads: ReadToken,
    /// The result is known valid up to here: the run's snapshot, moved forward while commits
    /// do not invalidate `reads`.
    ts: Ts,
    /// Digest of the last result the client was sent, to omit unchanged results. A digest
    /// rather than the value bounds a session's memory by its query count.
    digest: u64,
}

/// What a computation started from.
struct Snapshot {
    query_set: u32,
    identity: u32,
    ts: Ts,
    removed: Vec<QueryId>,
    /// A Transition must be sent even if nothing changed.
    due: bool,
}

type Computed = Vec<(QueryId, u64, Result<QueryRun, ApiError>)>;

struct PendingMutation {
    request_id: RequestId,
    call: CallRequest,
    key: Option<MutationKey>,
}

enum Event {
    Frame(Option<Result<Message, axum::Error>>),
    Commit { open: bool },
    Mutation((RequestId, Result<MutationRun, ApiError>)),
    Action((RequestId, Result<FunctionResult, ApiError>)),
    Computed(Computed),
    Idle,
    WriterGone,
}

struct Session {
    backend: Arc<dyn Backend>,
    shared: Arc<SyncShared>,
    config: SyncConfig,
    outbound: Outbound,
    commits: watch::Receiver<Ts>,
    commits_open: bool,
    /// A commit happened since the last computation started.
    commit_seen: bool,
    session_id: Option<String>,
    identity: Identity,
    received_query_set: u32,
    received_identity: u32,
    sent: StateVersion,
    queries: BTreeMap<QueryId, Query>,
    /// Removed since the last computation started, among those the client holds a result
    /// for; reported by the next Transition.
    removed: Vec<QueryId>,
    next_generation: u64,
    /// The next Transition must be sent even if nothing changed (versions moved, or a request
    /// finished and the client waits for a Transition to release it).
    transition_due: bool,
    /// The next Transition's ts must reach this (commit ts of answered mutations).
    min_ts: Ts,
    computation: Option<BoxFuture<'static, Computed>>,
    computing: Option<Snapshot>,
    deferred: Vec<ServerMessage>,
    mutation_queue: VecDeque<PendingMutation>,
    mutation: Option<BoxFuture<'static, (RequestId, Result<MutationRun, ApiError>)>>,
    actions: FuturesUnordered<BoxFuture<'static, (RequestId, Result<FunctionResult, ApiError>)>>,
    last_inbound: Instant,
}

/// Polls the future in `slot`, pending forever when there is none. The caller empties the
/// slot as soon as it yields.
fn poll_slot<'a, T>(slot: &'a mut Option<BoxFuture<'static, T>>) -> impl Future<Output = T> + 'a {
    std::future::poll_fn(move |cx| match slot {
        Some(future) => future.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

fn digest(keys: &RandomState, result: &FunctionResult) -> u64 {
    let mut hasher = keys.build_hasher();
    match result {
        Ok(success) => {
            0u8.hash(&mut hasher);
            success.value.hash(&mut hasher);
        }
        Err(failure) => {
            1u8.hash(&mut hasher);
            failure.message.hash(&mut hasher);
            failure.data.hash(&mut hasher);
        }
    }
    hasher.finish()
}

fn modification(query_id: QueryId, result: FunctionResult) -> StateModification {
    match result {
        Ok(FunctionSuccess { value, log_lines }) => StateModification::QueryUpdated {
            query_id,
            value: value.to_json(),
            log_lines,
            journal: None,
        },
        Err(FunctionFailure {
            message,
            data,
            log_lines,
        }) => StateModification::QueryFailed {
            query_id,
            error_message: message,
            log_lines,
            journal: None,
            error_data: data.as_ref().map(Value::to_json),
        },
    }
}

/// The arguments object of a call: npm, Rust and Python send `[args]`; a bare object is
/// accepted too.
fn call_args(args: Json) -> Result<Value, Stop> {
    let object = match args {
        Json::Array(mut items) if items.len() == 1 => items.pop().unwrap_or_default(),
        Json::Array(items) if items.is_empty() => Json::Object(serde_json::Map::new()),
        object @ Json::Object(_) => object,
        other => {
            return Err(bad_request(format!(
                "args must be [object] or an object, not {other}"
            )));
        }
    };
    Value::from_json(&object).map_err(|e| bad_request(format!("invalid arguments: {e}")))
}

/// The Backend has no notion of components, so only the root component is served.
fn check_component(component_path: Option<&str>) -> Result<(), Stop> {
    match component_path {
        None | Some("") => Ok(()),
        Some(path) => Err(bad_request(format!(
            "componentPath {path:?}: components are not supported"
        ))),
    }
}

/// Runs a mutation in its own task, so that it finishes (and is remembered) even if its
/// socket closes meanwhile: a client re-sending it after a reconnect must find its outcome,
/// not run it twice. The task is bounded by the backend's function time limit.
fn spawn_mutation(
    backend: Arc<dyn Backend>,
    shared: Arc<SyncShared>,
    key: Option<MutationKey>,
    call: CallRequest,
    outcome: watch::Sender<SharedOutcome>,
) {
    /// Ends the claim on `key` even if the run panics, so the key is not stuck "running".
    struct Claim {
        shared: Arc<SyncShared>,
        key: Option<MutationKey>,
        outcome: SharedOutcome,
    }
    impl Drop for Claim {
        fn drop(&mut self) {
            if let Some(key) = &self.key {
                self.shared.finish_mutation(key, self.outcome.as_ref());
            }
        }
    }
    tokio::spawn(async move {
        let mut claim = Claim {
            shared,
            key,
            outcome: None,
        };
        let result = backend.run_mutation(call).await;
        claim.outcome = Some(result.clone());
        drop(claim);
        outcome.send_replace(Some(result));
    });
}

async fn wait_for_outcome(
    mut outcome: watch::Receiver<SharedOutcome>,
) -> Result<MutationRun, ApiError> {
    match outcome.wait_for(Option::is_some).await {
        Ok(known) => known.clone().unwrap_or_else(|| {
            Err(ApiError::new(
                ErrorCode::Internal,
                "mutation outcome vanished",
            ))
        }),
        Err(_) => Err(ApiError::new(
            ErrorCode::Internal,
            "the mutation's task ended without an outcome",
        )),
    }
}

impl Session {
    fn new(
        backend: Arc<dyn Backend>,
        shared: Arc<SyncShared>,
        config: SyncConfig,
        outbound: Outbound,
    ) -> Session {
        let commits = backend.commits();
        Session {
            backend,
            shared,
            config,
            outbound,
            commits,
            commits_open: true,
            commit_seen: false,
            session_id: None,
            identity: Identity::None,
            received_query_set: 0,
            received_identity: 0,
            sent: StateVersion::default(),
            queries: BTreeMap::new(),
            removed: Vec::new(),
            next_generation: 0,
            transition_due: false,
            min_ts: 0,
            computation: None,
            computing: None,
            deferred: Vec::new(),
            mutation_queue: VecDeque::new(),
            mutation: None,
            actions: FuturesUnordered::new(),
            last_inbound: Instant::now(),
        }
    }

    async fn drive(&mut self, stream: &mut SplitStream<WebSocket>) -> Stop {
        loop {
            self.start_next_mutation();
            if let Err(stop) = self.start_transition() {
                return stop;
            }
            let idle_deadline = self.last_inbound + self.config.client_idle_timeout;
            let event = tokio::select! {
                frame = stream.next() => Event::Frame(frame),
                changed = self.commits.changed(), if self.commits_open => {
                    Event::Commit { open: changed.is_ok() }
                }
                done = poll_slot(&mut self.mutation) => Event::Mutation(done),
                Some(done) = self.actions.next() => Event::Action(done),
                computed = poll_slot(&mut self.computation) => Event::Computed(computed),
                () = tokio::time::sleep_until(idle_deadline) => Event::Idle,
                () = self.outbound.writer_gone() => Event::WriterGone,
            };
            if let Err(stop) = self.handle(event) {
                return stop;
            }
        }
    }

    fn handle(&mut self, event: Event) -> Result<(), Stop> {
        match event {
            Event::Frame(frame) => self.on_frame(frame),
            Event::Commit { open: false } => {
                // The backend stopped serving (a cluster node lost the lead, or shutdown):
                // close with "service restart" so the client reconnects and resubscribes.
                self.commits_open = false;
                Err(Stop::Close {
                    code: close_code::RESTART,
                    reason: "this node stopped serving; reconnect".into(),
                })
            }
            Event::Commit { open: true } => {
                self.commits_open = true;
                self.commit_seen = true;
                Ok(())
            }
            Event::Mutation((request_id, outcome)) => {
                self.mutation = None;
                self.on_mutation_done(request_id, outcome)
            }
            Event::Action((request_id, outcome)) => self.on_action_done(request_id, outcome),
            Event::Computed(results) => {
                self.computation = None;
                self.on_computed(results)
            }
            Event::Idle => Err(Stop::Close {
                code: close_code::NORMAL,
                reason: format!(
                    "ClientInactive: nothing received for {} s",
                    self.config.client_idle_timeout.as_secs()
                ),
            }),
            Event::WriterGone => Err(Stop::Gone),
        }
    }

    fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Result<(), Stop> {
        let message = match frame {
            Some(Ok(message)) => message,
            None | Some(Err(_)) => return Err(Stop::Gone),
        };
        self.last_inbound = Instant::now();
        match message {
            Message::Text(text) => {
                if text.len() > self.config.max_message_bytes {
                    return Err(Stop::Fatal(format!(
                        "PayloadTooLarge: a message of {} bytes exceeds the limit of {} bytes",
                        text.len(),
                        self.config.max_message_bytes
                    )));
                }
                let message: ClientMessage = serde_json::from_str(text.as_str())
                    .map_err(|e| bad_request(format!("invalid client message: {e}")))?;
                self.on_message(message)
            }
            Message::Binary(_) => Err(bad_request("binary frames are not part of the protocol")),
            Message::Ping(_) | Message::Pong(_) => Ok(()),
            Message::Close(_) => Err(Stop::ClientClosed),
        }
    }

    fn on_message(&mut self, message: ClientMessage) -> Result<(), Stop> {
        match message {
            ClientMessage::Connect {
                session_id,
                max_observed_timestamp,
                ..
            } => {
                if let Some(WireTs(observed)) = max_observed_timestamp {
                    let latest = self.backend.latest_ts().map_err(stop_for)?;
                    if observed > latest {
                        // The client saw data newer than this server has: serving it would
                        // move its view back in time.
                        return Err(Stop::Close {
                            code: close_code::AGAIN,
                            reason: format!(
                                "ClientTimestampAhead: client observed {observed}, server is at {latest}"
                            ),
                        });
                    }
                }
                if self.session_id.is_none() {
                    self.session_id = Some(session_id);
                }
                Ok(())
            }
            ClientMessage::ModifyQuerySet {
                base_version,
                new_version,
                modifications,
            } => self.on_modify_query_set(base_version, new_version, modifications),
            ClientMessage::Mutation {
                request_id,
                udf_path,
                args,
                component_path,
            } => {
                self.check_inflight()?;
                let call = self.call(udf_path, args, component_path, CallKind::Mutation)?;
                let key = self.session_id.clone().map(|id| (id, request_id));
                self.mutation_queue.push_back(PendingMutation {
                    request_id,
                    call,
                    key,
                });
                Ok(())
            }
            ClientMessage::Action {
                request_id,
                udf_path,
                args,
                component_path,
            } => {
                self.check_inflight()?;
                let call = self.call(udf_path, args, component_path, CallKind::Action)?;
                let backend = self.backend.clone();
                self.actions
                    .push(async move { (request_id, backend.run_action(call).await) }.boxed());
                Ok(())
            }
            ClientMessage::Authenticate(authenticate) => self.on_authenticate(authenticate),
            ClientMessage::Event { .. } => Ok(()),
        }
    }

    fn call(
        &self,
        path: String,
        args: Json,
        component_path: Option<String>,
        kind: CallKind,
    ) -> Result<CallRequest, Stop> {
        check_component(component_path.as_deref())?;
        Ok(CallRequest {
            path,
            args: call_args(args)?,
            identity: self.identity.clone(),
            kind,
        })
    }

    fn check_inflight(&self) -> Result<(), Stop> {
        let inflight =
            self.mutation_queue.len() + usize::from(self.mutation.is_some()) + self.actions.len();
        if inflight >= self.config.max_inflight_requests {
            return Err(Stop::Close {
                code: close_code::AGAIN,
                reason: format!(
                    "TooManyConcurrentRequests: more than {} mutations and actions in flight",
                    self.config.max_inflight_requests
                ),
            });
        }
        Ok(())
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    fn on_modify_query_set(
        &mut self,
        base_version: u32,
        new_version: u32,
        modifications: Vec<QuerySetModification>,
    ) -> Result<(), Stop> {
        if base_version != self.received_query_set {
            return Err(Stop::Fatal(format!(
                "BaseVersionMismatch: ModifyQuerySet has baseVersion {base_version}, \
                 but the query set is at version {}",
                self.received_query_set
            )));
        }
        if new_version <= base_version {
            return Err(bad_request(format!(
                "ModifyQuerySet newVersion {new_version} is not above baseVersion {base_version}"
            )));
        }
        for modification in modifications {
            match modification {
                QuerySetModification::Add {
                    query_id,
                    udf_path,
                    args,
                    journal: _,
                    component_path,
                } => {
                    if self.queries.contains_key(&query_id) {
                        return Err(bad_request(format!("query {query_id} is already added")));
                    }
                    if self.queries.len() >= self.config.max_queries {
                        return Err(Stop::Fatal(format!(
                            "TooManyQueries: a session may subscribe to at most {} queries",
                            self.config.max_queries
                        )));
                    }
                    check_component(component_path.as_deref())?;
                    let args = call_args(args)?;
                    let generation = self.generation();
                    // Re-added before its removal was reported: the new result replaces the
                    // old one on the client, so the removal need not be sent.
                    self.removed.retain(|id| *id != query_id);
                    self.queries.insert(
                        query_id,
                        Query {
                            path: udf_path,
                            args,
                            generation,
                            needs_run: true,
                            last: None,
                        },
                    );
                }
                QuerySetModification::Remove { query_id } => {
                    let Some(query) = self.queries.remove(&query_id) else {
                        return Err(bad_request(format!(
                            "query {query_id} cannot be removed: it was never added"
                        )));
                    };
                    // Only a query the client holds a result for needs a QueryRemoved. This
                    // also bounds `removed` by `max_queries`: queries added after the last
                    // computation started have no result yet.
                    if query.last.is_some() {
                        self.removed.push(query_id);
                    }
                }
            }
        }
        self.received_query_set = new_version;
        self.transition_due = true;
        Ok(())
    }

    fn on_authenticate(&mut self, authenticate: Authenticate) -> Result<(), Stop> {
        let base_version = authenticate.base_version();
        if base_version != self.received_identity {
            return Err(Stop::Fatal(format!(
                "BaseVersionMismatch: Authenticate has baseVersion {base_version}, \
                 but the identity is at version {}",
                self.received_identity
            )));
        }
        let identity = match authenticate {
            Authenticate::User { value, .. } => match self.backend.authenticate_user(&value) {
                Ok(attributes) => Identity::User(attributes),
                Err(error) => {
                    return Err(Stop::Auth {
                        error,
                        update_attempted: true,
                    });
                }
            },
            Authenticate::Admin {
                value,
                impersonating,
                acting_as,
                ..
            } => {
                if !self.backend.check_admin_key(&value) {
                    return Err(Stop::Auth {
                        error: "The provided admin key was invalid for this instance".into(),
                        update_attempted: true,
                    });
                }
                Identity::Admin {
                    acting_as: impersonating.or(acting_as),
                }
            }
            Authenticate::None { .. } => Identity::None,
        };
        self.received_identity = self
            .received_identity
            .checked_add(1)
            .ok_or_else(|| bad_request("identity version overflow"))?;
        self.identity = identity;
        let ids: Vec<QueryId> = self.queries.keys().copied().collect();
        for id in ids {
            let generation = self.generation();
            if let Some(query) = self.queries.get_mut(&id) {
                query.generation = generation;
                query.needs_run = true;
            }
        }
        self.transition_due = true;
        Ok(())
    }

    fn start_next_mutation(&mut self) {
        if self.mutation.is_some() {
            return;
        }
        let Some(PendingMutation {
            request_id,
            call,
            key,
        }) = self.mutation_queue.pop_front()
        else {
            return;
        };
        let backend = self.backend.clone();
        let shared = self.shared.clone();
        self.mutation = Some(
            async move {
                let begin = match &key {
                    Some(key) => shared.begin_mutation(key),
                    None => Begin::Run(watch::channel(None).0),
                };
                let outcome = match begin {
                    Begin::Remembered(remembered) => Ok(MutationRun {
                        result: Ok(remembered.success.clone()),
                        commit_ts: Some(remembered.commit_ts),
                    }),
                    Begin::Wait(outcome) => wait_for_outcome(outcome).await,
                    Begin::Run(sender) => {
                        let outcome = sender.subscribe();
                        spawn_mutation(backend, shared, key, call, sender);
                        wait_for_outcome(outcome).await
                    }
                };
                (request_id, outcome)
            }
            .boxed(),
        );
    }

    fn on_mutation_done(
        &mut self,
        request_id: RequestId,
        outcome: Result<MutationRun, ApiError>,
    ) -> Result<(), Stop> {
        let run = outcome.map_err(stop_for)?;
        let response = match run.result {
            Ok(FunctionSuccess { value, log_lines }) => {
                let commit_ts = match run.commit_ts {
                    Some(ts) => ts,
                    // A success always commits; should a backend not say when, any ts at
                    // which the commit is readable will do.
                    None => self.backend.latest_ts().map_err(stop_for)?,
                };
                self.min_ts = self.min_ts.max(commit_ts);
                ServerMessage::MutationResponse {
                    request_id,
                    success: true,
                    result: value.to_json(),
                    ts: Some(WireTs(commit_ts)),
                    log_lines,
                    error_data: None,
                }
            }
            Err(FunctionFailure {
                message,
                data,
                log_lines,
            }) => ServerMessage::MutationResponse {
                request_id,
                success: false,
                result: Json::String(message),
                ts: None,
                log_lines,
                error_data: data.as_ref().map(Value::to_json),
            },
        };
        // Clients release a mutation (even a failed one) only on a later Transition.
        self.transition_due = true;
        self.respond(response)
    }

    fn on_action_done(
        &mut self,
        request_id: RequestId,
        outcome: Result<FunctionResult, ApiError>,
    ) -> Result<(), Stop> {
        let response = match outcome.map_err(stop_for)? {
            Ok(FunctionSuccess { value, log_lines }) => ServerMessage::ActionResponse {
                request_id,
                success: true,
                result: value.to_json(),
                log_lines,
                error_data: None,
            },
            Err(FunctionFailure {
                message,
                data,
                log_lines,
            }) => ServerMessage::ActionResponse {
                request_id,
                success: false,
                result: Json::String(message),
                log_lines,
                error_data: data.as_ref().map(Value::to_json),
            },
        };
        self.transition_due = true;
        self.respond(response)
    }

    fn respond(&mut self, response: ServerMessage) -> Result<(), Stop> {
        if self.computation.is_some() {
            self.deferred.push(response);
            Ok(())
        } else {
            Ok(self.outbound.send(&response)?)
        }
    }

    /// Starts computing the next Transition if one is needed and none is in flight: picks
    /// `ts`, advances the queries that stayed valid, and runs the others at `ts`.
    fn start_transition(&mut self) -> Result<(), Stop> {
        if self.computation.is_some() {
            return Ok(());
        }
        assert!(
            self.deferred.is_empty(),
            "responses are deferred only while a computation is in flight"
        );
        let wanted = self.transition_due
            || self.commit_seen
            || !self.removed.is_empty()
            || self.queries.values().any(|q| q.needs_run);
        if !wanted {
            return Ok(());
        }
        // Everything committed up to now is covered by `latest_ts` below.
        self.commits.borrow_and_update();
        self.commit_seen = false;
        let latest = self.backend.latest_ts().map_err(stop_for)?;
        let ts = latest.max(self.sent.ts.0).max(self.min_ts);

        let mut jobs = Vec::new();
        for (&id, query) in &mut self.queries {
            let rerun = match &mut query.last {
                _ if query.needs_run => true,
                None => true,
                Some(last) if last.ts >= ts => false,
                Some(last) => {
                    if self.backend.invalidated(&last.reads, last.ts, ts) {
                        true
                    } else {
                        // Nothing it read changed in (last.ts, ts]: its result holds at ts.
                        last.ts = ts;
                        false
                    }
                }
            };
            if rerun {
                let call = CallRequest {
                    path: query.path.clone(),
                    args: query.args.clone(),
                    identity: self.identity.clone(),
                    kind: CallKind::Query,
                };
                jobs.push((id, query.generation, call));
            }
        }
        if jobs.is_empty() && !self.transition_due && self.removed.is_empty() {
            // Only commits that touched nothing this session reads: nothing to tell.
            return Ok(());
        }

        self.computing = Some(Snapshot {
            query_set: self.received_query_set,
            identity: self.received_identity,
            ts,
            removed: std::mem::take(&mut self.removed),
            due: std::mem::take(&mut self.transition_due),
        });
        let backend = self.backend.clone();
        let concurrency = self.config.query_concurrency.max(1);
        self.computation = Some(
            futures_util::stream::iter(jobs)
                .map(move |(id, generation, call)| {
                    let backend = backend.clone();
                    async move { (id, generation, backend.run_query(call, Some(ts)).await) }
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
                .boxed(),
        );
        Ok(())
    }

    /// Turns a finished computation into a Transition, then writes the responses held back
    /// while it ran.
    fn on_computed(&mut self, mut results: Computed) -> Result<(), Stop> {
        let Some(snapshot) = self.computing.take() else {
            unreachable!("a computation finished that was never started");
        };
        let mut modifications: Vec<StateModification> = snapshot
            .removed
            .iter()
            .map(|&query_id| StateModification::QueryRemoved { query_id })
            .collect();
        results.sort_by_key(|(id, _, _)| *id);
        for (id, generation, outcome) in results {
            let run = outcome.map_err(stop_for)?;
            let Some(query) = self.queries.get_mut(&id) else {
                continue; // removed meanwhile; its removal goes out next time
            };
            if query.generation != generation {
                continue; // ran with an identity that is no longer current
            }
            query.needs_run = false;
            let digest = digest(&self.shared.digest_keys, &run.result);
            let changed = query.last.as_ref().is_none_or(|last| last.digest != digest);
            query.last = Some(LastRun {
                reads: run.reads,
                ts: run.ts,
                digest,
            });
            if changed {
                modifications.push(modification(id, run.result));
            }
        }
        let end = StateVersion {
            query_set: snapshot.query_set,
            identity: snapshot.identity,
            ts: WireTs(snapshot.ts),
        };
        assert!(
            end.ts >= self.sent.ts
                && end.query_set >= self.sent.query_set
                && end.identity >= self.sent.identity,
            "versions only move forward: {:?} after {:?}",
            end,
            self.sent
        );
        let versions_moved =
            end.query_set != self.sent.query_set || end.identity != self.sent.identity;
        if snapshot.due || versions_moved || !modifications.is_empty() {
            self.outbound.send(&ServerMessage::Transition {
                start_version: self.sent,
                end_version: end,
                modifications,
            })?;
            self.sent = end;
        }
        for response in std::mem::take(&mut self.deferred) {
            self.outbound.send(&response)?;
        }
        Ok(())
    }

    /// Says goodbye as `stop` requires, then waits (bounded) for the close handshake.
    async fn finish(self, stop: Stop, writer: &mut Writer, stream: &mut SplitStream<WebSocket>) {
        tracing::debug!(?stop, "sync session ends");
        let closing = match stop {
            Stop::Gone | Stop::Overflow => false,
            Stop::ClientClosed => self.outbound.close(None),
            Stop::Fatal(error) => {
                let error = truncate(error, self.config.max_message_bytes);
                let _ = self.outbound.send(&ServerMessage::FatalError { error });
                self.outbound.close(None)
            }
            Stop::Auth {
                error,
                update_attempted,
            } => {
                let _ = self.outbound.send(&ServerMessage::AuthError {
                    error,
                    base_version: self.sent.identity,
                    auth_update_attempted: update_attempted,
                });
                self.outbound.close(Some(CloseFrame {
                    code: close_code::NORMAL,
                    reason: "AuthError".into(),
                }))
            }
            Stop::Close { code, reason } => self.outbound.close(Some(CloseFrame {
                code,
                reason: truncate(reason, CLOSE_REASON_MAX_BYTES).into(),
            })),
        };
        if closing {
            let handshake = async {
                writer.stopped().await;
                while let Some(Ok(_)) = stream.next().await {}
            };
            let _ = tokio::time::timeout(self.config.close_timeout, handshake).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let cut = truncate(long, CLOSE_REASON_MAX_BYTES);
        assert!(cut.len() <= CLOSE_REASON_MAX_BYTES);
        assert_eq!(cut.len(), 122, "cut at a character boundary");
        assert_eq!(truncate("short".into(), 10), "short");
    }

    #[test]
    fn every_error_code_has_its_close() {
        let stop = |code| stop_for(ApiError::new(code, "why"));
        assert!(matches!(stop(ErrorCode::BadRequest), Stop::Fatal(m) if m == "BadRequest: why"));
        assert!(matches!(stop(ErrorCode::PayloadTooLarge), Stop::Fatal(_)));
        assert!(matches!(
            stop(ErrorCode::Unauthenticated),
            Stop::Auth {
                update_attempted: false,
                ..
            }
        ));
        assert!(matches!(
            stop(ErrorCode::Forbidden),
            Stop::Close { code: 1000, .. }
        ));
        assert!(matches!(
            stop(ErrorCode::NotFound),
            Stop::Close { code: 1000, .. }
        ));
        assert!(matches!(
            stop(ErrorCode::Unavailable),
            Stop::Close { code: 1013, .. }
        ));
        assert!(matches!(
            stop(ErrorCode::Internal),
            Stop::Close { code: 1011, reason } if reason == "InternalServerError"
        ));
    }

    #[test]
    fn args_are_unwrapped_from_the_one_element_array() {
        use serde_json::json;
        assert!(matches!(call_args(json!([{"a": 1.0}])), Ok(Value::Object(f)) if f.len() == 1));
        assert!(matches!(call_args(json!({"a": 1.0})), Ok(Value::Object(_))));
        assert!(matches!(call_args(json!([])), Ok(Value::Object(f)) if f.is_empty()));
        assert!(matches!(call_args(json!([{}, {}])), Err(Stop::Fatal(_))));
        assert!(matches!(call_args(json!(3.0)), Err(Stop::Fatal(_))));
        assert!(matches!(
            call_args(json!([{"$bad": 1}])),
            Err(Stop::Fatal(_))
        ));
    }
}
