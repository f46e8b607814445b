//! What the client protocol needs from the rest of Chorus. The HTTP handlers (`http`) and the
//! WebSocket sync sessions (`sync`) are written against this trait only; `chorus` implements
//! it over the function runner, the database and the deployed code, and tests implement it
//! with fakes.

use std::any::Any;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use value::Value;

/// A commit timestamp on the Convex wire: nanoseconds-like u64 (`physical_ms × 10⁶ +
/// logical`), sent as base64 of 8 little-endian bytes in the sync protocol.
pub type Ts = u64;

/// Who is calling.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Identity {
    /// No credentials.
    #[default]
    None,
    /// A user, with the `UserIdentityAttributes` object functions see from
    /// `ctx.auth.getUserIdentity()` (camelCase keys, `tokenIdentifier`, `issuer`, `subject`, …).
    User(serde_json::Value),
    /// The holder of the admin key, optionally acting as a user.
    Admin {
        acting_as: Option<serde_json::Value>,
    },
}

/// Which kind of function a call expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Query,
    Mutation,
    Action,
    /// `/api/function`, `/api/run/...`: whatever the function is (admin or public).
    Any,
}

/// One function call as the edge hands it over.
#[derive(Clone, Debug)]
pub struct CallRequest {
    /// `module:export` or `module/path.js:export` as the client sent it.
    pub path: String,
    /// The arguments object (already unwrapped from npm's one-element array).
    pub args: Value,
    pub identity: Identity,
    pub kind: CallKind,
}

/// The function ran and returned.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSuccess {
    pub value: Value,
    pub log_lines: Vec<String>,
}

/// The function (or the call of it) failed in a way the client sees as a function error
/// (HTTP 200 `status: "error"`, `QueryFailed`, `MutationResponse { success: false }`): a thrown
/// error, a `ConvexError` (`data` set), bad arguments, an unknown or non-public function.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionFailure {
    pub message: String,
    /// The `ConvexError`'s data; `None` for every other error.
    pub data: Option<Value>,
    pub log_lines: Vec<String>,
}

/// The outcome of a function that ran (successfully or not).
pub type FunctionResult = Result<FunctionSuccess, FunctionFailure>;

/// What a subscription must remember of a query run to know when to re-run it: opaque to the
/// edge, interpreted only by [`Backend::invalidated`].
pub type ReadToken = Arc<dyn Any + Send + Sync>;

/// A query run at one snapshot.
#[derive(Clone)]
pub struct QueryRun {
    pub result: FunctionResult,
    /// What the query read (documents, index ranges, the catalog).
    pub reads: ReadToken,
    /// The snapshot it ran at.
    pub ts: Ts,
}

/// A mutation run: its result and, when it committed, its commit timestamp.
#[derive(Clone, Debug)]
pub struct MutationRun {
    pub result: FunctionResult,
    /// `Some` exactly when the mutation committed (a failed mutation commits nothing).
    pub commit_ts: Option<Ts>,
}

/// Errors that are not function errors: the request itself is wrong, or the server cannot
/// serve it now. Mapped once at the edge to a stable code and status (HTTP) or a close code /
/// `FatalError` (WebSocket).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Stable error classes (Convex's `ErrorMetadata` short codes and statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400 `BadRequest`: malformed JSON, bad arguments to an endpoint, oversized bodies.
    BadRequest,
    /// 401 `Unauthenticated`: a missing or wrong admin key, an invalid token.
    Unauthenticated,
    /// 403 `Forbidden`.
    Forbidden,
    /// 404 `NotFound`: no such endpoint.
    NotFound,
    /// 413 `PayloadTooLarge`.
    PayloadTooLarge,
    /// 503 `Overloaded` / `TemporarilyUnavailable`: retry later (OCC exhaustion, no leader).
    Unavailable,
    /// 500 `InternalServerError`.
    Internal,
}

/// The deploy endpoints of `npx convex deploy` (protocol doc §5), each taking the decoded JSON
/// body and answering JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeployOp {
    GetConfigHashes,
    EvaluateSchema,
    EvaluatePush,
    StartPush,
    WaitForSchema,
    FinishPush,
}

/// The server behind the client protocol.
pub trait Backend: Send + Sync + 'static {
    /// Whether `key` is this deployment's admin key.
    fn check_admin_key(&self, key: &str) -> bool;

    /// The identity in a user's JWT, or why it is refused.
    fn authenticate_user(&self, token: &str) -> Result<serde_json::Value, String>;

    /// The newest timestamp at which every acknowledged commit is readable.
    fn latest_ts(&self) -> Result<Ts, ApiError>;

    /// Runs a query at `ts` (`None`: at [`Backend::latest_ts`]).
    fn run_query(
        &self,
        call: CallRequest,
        ts: Option<Ts>,
    ) -> BoxFuture<'_, Result<QueryRun, ApiError>>;

    /// Runs a mutation and commits it (retrying conflicts inside).
    fn run_mutation(&self, call: CallRequest) -> BoxFuture<'_, Result<MutationRun, ApiError>>;

    /// Runs an action.
    fn run_action(&self, call: CallRequest) -> BoxFuture<'_, Result<FunctionResult, ApiError>>;

    /// Runs whatever function `call.path` names (`CallKind::Any`; `/api/function`, `/api/run`).
    fn run_function(&self, call: CallRequest) -> BoxFuture<'_, Result<FunctionResult, ApiError>>;

    /// The newest applied commit timestamp; the value changes after every commit (and after
    /// a deploy that changes code, so subscriptions re-run).
    fn commits(&self) -> watch::Receiver<Ts>;

    /// Whether something committed in `(from, to]` may change what `reads` read, or the code
    /// changed. `true` when it cannot tell (history no longer kept): when in doubt, re-run.
    fn invalidated(&self, reads: &ReadToken, from: Ts, to: Ts) -> bool;

    /// One deploy endpoint. `body` is the decoded request JSON (brotli already undone).
    fn deploy(
        &self,
        op: DeployOp,
        body: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, ApiError>>;

    /// The URL clients use (`GET /api/v1/get_canonical_urls`).
    fn canonical_url(&self) -> String;
}
