//! The node's implementation of the client protocol's [`Backend`]: function calls through the
//! [`FunctionRunner`] against the active deployment, subscriptions through the committer's
//! write log, deploys through `push`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use api::{
    ApiError, Backend, CallKind, CallRequest, DeployOp, ErrorCode, FunctionFailure, FunctionResult,
    FunctionSuccess, Identity, MutationRun, QueryRun, ReadToken, Ts,
};
use functions::{FunctionError, FunctionRunner, RunOptions};
use futures_util::future::BoxFuture;
use js::FunctionKind;
use store::Timestamp;
use tokio::sync::watch;
use txn::{Database, ReadSet};

use crate::deployment::{self, Deployment};
use crate::push::Push;

/// What a subscribed query read, for [`Backend::invalidated`].
struct QueryReads {
    /// `None`: depends on everything (a failed query is re-run on any commit).
    reads: Option<ReadSet>,
    /// The code version it ran (0: none deployed); a deploy invalidates every query.
    code_version: u64,
}

/// Confirms, before a query reads, that this node still leads the range (a lease check), so
/// a deposed leader that has not heard of its successor cannot serve a stale read. `None` on
/// a single node, which cannot be deposed.
pub type ReadGuard = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// One node serving the client protocol.
pub struct Server {
    read_guard: Option<ReadGuard>,
    pub(crate) runner: FunctionRunner,
    admin_key: String,
    url: String,
    deployment: RwLock<Option<Arc<Deployment>>>,
    /// Changes after every applied commit and after every deploy.
    /// `None` once retired ([`Server::retire`]): subscribers see the channel close.
    changes: Mutex<Option<watch::Sender<Ts>>>,
    pub(crate) pushes: Mutex<HashMap<u64, Arc<Push>>>,
}

impl Server {
    /// A server over `runner`'s database; loads the active deployment.
    pub async fn start(
        runner: FunctionRunner,
        admin_key: String,
        url: String,
    ) -> Result<Arc<Self>, String> {
        Self::start_guarded(runner, admin_key, url, None).await
    }

    /// Like [`Self::start`]; every query first passes `read_guard` (a cluster's lease check).
    pub async fn start_guarded(
        runner: FunctionRunner,
        admin_key: String,
        url: String,
        read_guard: Option<ReadGuard>,
    ) -> Result<Arc<Self>, String> {
        let db = runner.database().clone();
        let mut txn = db.begin().map_err(|e| e.to_string())?;
        let active = deployment::load(&mut txn)?.map(Arc::new);
        let applied = db.committer.watch_applied();
        let (changes, _) = watch::channel(applied.borrow().0);
        let server = Arc::new(Self {
            read_guard,
            runner,
            admin_key,
            url,
            deployment: RwLock::new(active),
            changes: Mutex::new(Some(changes)),
            pushes: Mutex::new(HashMap::new()),
        });
        // Forward the committer's progress to subscribers.
        let weak = Arc::downgrade(&server);
        let mut applied = applied;
        tokio::spawn(async move {
            while applied.changed().await.is_ok() {
                let ts = applied.borrow_and_update().0;
                let Some(server) = weak.upgrade() else { break };
                let changes = server.changes_lock();
                let Some(changes) = changes.as_ref() else {
                    break;
                };
                changes.send_if_modified(|current| {
                    let newer = ts > *current;
                    if newer {
                        *current = ts;
                    }
                    newer
                });
            }
        });
        Ok(server)
    }

    fn changes_lock(&self) -> MutexGuard<'_, Option<watch::Sender<Ts>>> {
        match self.changes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Stops feeding subscriptions: every WebSocket session on this server sees its commit
    /// feed close and ends, so its client reconnects (through the gateway, to whoever serves
    /// now). Called when a cluster node stops leading the range.
    pub fn retire(&self) {
        self.changes_lock().take();
    }

    pub fn db(&self) -> &Database {
        self.runner.database()
    }

    pub(crate) fn deployment(&self) -> Option<Arc<Deployment>> {
        match self.deployment.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `next` the code every later call runs, and tells subscribers to re-run.
    pub(crate) fn set_deployment(&self, next: Arc<Deployment>) {
        match self.deployment.write() {
            Ok(mut guard) => *guard = Some(next),
            Err(poisoned) => *poisoned.into_inner() = Some(next),
        }
        if let Some(changes) = self.changes_lock().as_ref() {
            changes.send_modify(|_| {});
        }
    }

    pub(crate) fn pushes(&self) -> MutexGuard<'_, HashMap<u64, Arc<Push>>> {
        match self.pushes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn code_version(&self) -> u64 {
        self.deployment().map_or(0, |d| d.code.version)
    }

    /// The code to run `call` with, or the function error Convex gives when nothing is
    /// deployed.
    fn code_for(&self, call: &CallRequest) -> Result<Arc<Deployment>, FunctionFailure> {
        self.deployment().ok_or_else(|| FunctionFailure {
            message: format!("Could not find public function for '{}'", call.path),
            data: None,
            log_lines: Vec::new(),
        })
    }
}

fn options(identity: &Identity) -> RunOptions {
    match identity {
        Identity::None => RunOptions {
            identity: None,
            public_only: true,
        },
        Identity::User(attributes) => RunOptions {
            identity: Some(attributes.clone()),
            public_only: true,
        },
        Identity::Admin { acting_as } => RunOptions {
            identity: acting_as.clone(),
            public_only: false,
        },
    }
}

/// A function error as the client sees it, or a system failure for the edge to map.
fn outcome(error: FunctionError) -> Result<FunctionFailure, ApiError> {
    let log_lines = error.log_lines().to_vec();
    match error {
        FunctionError::ConvexError { message, data, .. } => Ok(FunctionFailure {
            message: format!("Uncaught ConvexError: {message}"),
            data: Some(data),
            log_lines,
        }),
        FunctionError::Developer { message, .. } => Ok(FunctionFailure {
            message,
            data: None,
            log_lines,
        }),
        FunctionError::System { message, retryable } => Err(ApiError::new(
            if retryable {
                ErrorCode::Unavailable
            } else {
                ErrorCode::Internal
            },
            message,
        )),
    }
}

impl Server {
    async fn query(&self, call: CallRequest, ts: Option<Ts>) -> Result<QueryRun, ApiError> {
        if let Some(guard) = &self.read_guard {
            guard()
                .await
                .map_err(|e| ApiError::new(ErrorCode::Unavailable, e))?;
        }
        let deployment = match self.code_for(&call) {
            Ok(d) => d,
            Err(f) => {
                let ts = self.latest_ts()?;
                return Ok(QueryRun {
                    result: Err(f),
                    reads: Arc::new(QueryReads {
                        reads: Some(ReadSet::default()),
                        code_version: 0,
                    }),
                    ts,
                });
            }
        };
        let code_version = deployment.code.version;
        let run = self
            .runner
            .run_query_at(
                deployment.code.clone(),
                &call.path,
                call.args,
                &options(&call.identity),
                ts.map(Timestamp),
            )
            .await;
        match run {
            Ok(out) => Ok(QueryRun {
                result: Ok(FunctionSuccess {
                    value: out.value,
                    log_lines: out.log_lines,
                }),
                reads: Arc::new(QueryReads {
                    reads: Some(out.read_set),
                    code_version,
                }),
                ts: out.ts.0,
            }),
            Err(e) => {
                let f = outcome(e)?;
                // A failed query depends on everything: re-run it on any commit after `ts`.
                let ts = match ts {
                    Some(ts) => ts,
                    None => self.latest_ts()?,
                };
                Ok(QueryRun {
                    result: Err(f),
                    reads: Arc::new(QueryReads {
                        reads: None,
                        code_version,
                    }),
                    ts,
                })
            }
        }
    }

    async fn mutation(&self, call: CallRequest) -> Result<MutationRun, ApiError> {
        let deployment = match self.code_for(&call) {
            Ok(d) => d,
            Err(f) => {
                return Ok(MutationRun {
                    result: Err(f),
                    commit_ts: None,
                });
            }
        };
        match self
            .runner
            .run_mutation_with(
                deployment.code.clone(),
                &call.path,
                call.args,
                &options(&call.identity),
            )
            .await
        {
            Ok(out) => Ok(MutationRun {
                result: Ok(FunctionSuccess {
                    value: out.value,
                    log_lines: out.log_lines,
                }),
                commit_ts: Some(out.commit_ts.0),
            }),
            Err(e) => Ok(MutationRun {
                result: Err(outcome(e)?),
                commit_ts: None,
            }),
        }
    }

    async fn action(&self, call: CallRequest) -> Result<FunctionResult, ApiError> {
        let deployment = match self.code_for(&call) {
            Ok(d) => d,
            Err(f) => return Ok(Err(f)),
        };
        match self
            .runner
            .run_action_with(
                deployment.code.clone(),
                &call.path,
                call.args,
                &options(&call.identity),
            )
            .await
        {
            Ok(out) => Ok(Ok(FunctionSuccess {
                value: out.value,
                log_lines: out.log_lines,
            })),
            Err(e) => Ok(Err(outcome(e)?)),
        }
    }

    async fn any_function(&self, call: CallRequest) -> Result<FunctionResult, ApiError> {
        let deployment = match self.code_for(&call) {
            Ok(d) => d,
            Err(f) => return Ok(Err(f)),
        };
        let spec = match self.runner.function(&deployment.code, &call.path).await {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(outcome(e)?)),
        };
        match spec.kind {
            FunctionKind::Query => Ok(self.query(call, None).await?.result),
            FunctionKind::Mutation => Ok(self.mutation(call).await?.result),
            FunctionKind::Action => self.action(call).await,
        }
    }
}

impl Backend for Server {
    fn check_admin_key(&self, key: &str) -> bool {
        // Compared in full whatever the input, so timing does not reveal a matching prefix.
        let expected = self.admin_key.as_bytes();
        let given = key.as_bytes();
        let mut diff = expected.len() ^ given.len();
        for (i, b) in expected.iter().enumerate() {
            diff |= usize::from(b ^ given.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }

    fn authenticate_user(&self, _token: &str) -> Result<serde_json::Value, String> {
        Err("this deployment has no authentication providers configured (auth.config.js is not supported yet)".into())
    }

    fn latest_ts(&self) -> Result<Ts, ApiError> {
        self.db()
            .committer
            .begin()
            .map(|ts| ts.0)
            .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))
    }

    fn run_query(
        &self,
        call: CallRequest,
        ts: Option<Ts>,
    ) -> BoxFuture<'_, Result<QueryRun, ApiError>> {
        Box::pin(self.query(call, ts))
    }

    fn run_mutation(&self, call: CallRequest) -> BoxFuture<'_, Result<MutationRun, ApiError>> {
        Box::pin(self.mutation(call))
    }

    fn run_action(&self, call: CallRequest) -> BoxFuture<'_, Result<FunctionResult, ApiError>> {
        Box::pin(self.action(call))
    }

    fn run_function(&self, call: CallRequest) -> BoxFuture<'_, Result<FunctionResult, ApiError>> {
        Box::pin(async move {
            match call.kind {
                CallKind::Query => Ok(self.query(call, None).await?.result),
                CallKind::Mutation => Ok(self.mutation(call).await?.result),
                CallKind::Action => self.action(call).await,
                CallKind::Any => self.any_function(call).await,
            }
        })
    }

    fn commits(&self) -> watch::Receiver<Ts> {
        match self.changes_lock().as_ref() {
            Some(changes) => changes.subscribe(),
            // Retired: a channel that is already closed, so a new session ends at once.
            None => watch::channel(0).1,
        }
    }

    fn invalidated(&self, reads: &ReadToken, from: Ts, to: Ts) -> bool {
        let Some(reads) = reads.downcast_ref::<QueryReads>() else {
            return true;
        };
        if reads.code_version != self.code_version() {
            return true;
        }
        match &reads.reads {
            None => from < to,
            Some(set) => self
                .db()
                .committer
                .changed(set, Timestamp(from), Timestamp(to)),
        }
    }

    fn deploy(
        &self,
        op: DeployOp,
        body: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, ApiError>> {
        Box::pin(crate::push::handle(self, op, body))
    }

    fn canonical_url(&self) -> String {
        self.url.clone()
    }
}
