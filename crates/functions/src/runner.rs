//! Running a query or a mutation: find the function in the code's analysis, check its
//! arguments, run it in the JS pool over a fresh transaction, check its result, and for a
//! mutation commit, re-running the whole function on a retryable commit error.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use js::{
    CallFailure, CallOutcome, CallRequest, FunctionKind, JsError, JsPool, ModuleSet, Visibility,
};
use store::Timestamp;
use txn::{
    Clock, CommitError, Database, LOGICAL_PER_MS, ReadSet, SystemClock, Transaction, TxnError,
};
use udf::Validator;
use value::Value;

use crate::actions::ActionSyscalls;
use crate::error::{DeveloperErrorKind, FunctionError};
use crate::syscalls::{AccessMode, DbSyscalls, FatalSyscallError};

/// One function of a code version, as analysis found it, with its validators parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// Module path, e.g. `messages.js`.
    pub module: String,
    /// Export name, e.g. `list` or `default`.
    pub name: String,
    pub kind: FunctionKind,
    pub visibility: Visibility,
    /// The `args` validator (`Any` when the function declared none).
    pub args: Option<Validator>,
    /// The `returns` validator; `None` when the function declared none.
    pub returns: Option<Validator>,
}

/// The functions of one code version, by (module path, export name).
pub(crate) type Analysis = BTreeMap<(String, String), FunctionSpec>;

/// Who is calling, and as whom.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// What `ctx.auth.getUserIdentity()` returns (`null` without one).
    pub identity: Option<serde_json::Value>,
    /// A client call: internal functions are then reported as not found (as Convex does).
    pub public_only: bool,
}

/// A query that returned.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutcome {
    pub value: Value,
    pub log_lines: Vec<String>,
    /// Everything the query read: re-run it when a commit after `ts` writes into this set.
    pub read_set: ReadSet,
    /// The snapshot the query read.
    pub ts: Timestamp,
}

/// A mutation that committed.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationOutcome {
    pub value: Value,
    /// Console output of the attempt that committed.
    pub log_lines: Vec<String>,
    /// The commit's timestamp (the read timestamp if the mutation wrote nothing).
    pub commit_ts: Timestamp,
}

/// An action that returned.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutcome {
    pub value: Value,
    pub log_lines: Vec<String>,
}

/// Splits a function path `module:export` into a module path and an export name. The module
/// may omit `.js`; without `:export` the export is `default`.
pub fn parse_function_path(path: &str) -> Result<(String, String), FunctionError> {
    let (module, export) = path.split_once(':').unwrap_or((path, "default"));
    let export = if export.is_empty() { "default" } else { export };
    if module.is_empty() || module.contains(':') || export.contains(':') {
        return Err(FunctionError::developer(
            DeveloperErrorKind::NotFound,
            format!("Invalid function path '{path}': expected `module:export`"),
        ));
    }
    let module = if module.ends_with(".js") {
        module.to_owned()
    } else {
        format!("{module}.js")
    };
    Ok((module, export.to_owned()))
}

/// Analyses of recent code versions, least recently inserted evicted first. Failed analyses
/// that would fail again (broken code) are kept too; retryable failures are not.
#[derive(Default)]
struct AnalysisCache {
    by_version: HashMap<u64, Result<Arc<Analysis>, FunctionError>>,
    order: VecDeque<u64>,
}

/// Runs queries and mutations of deployed code against one [`Database`].
pub struct FunctionRunner {
    pool: JsPool,
    db: Database,
    env: Arc<BTreeMap<String, String>>,
    clock: Arc<dyn Clock>,
    analyses: Mutex<AnalysisCache>,
    seed_base: u64,
    seeds: AtomicU64,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FunctionRunner {
    /// A runner with an empty `process.env`, the system clock and a random seed base.
    pub fn new(pool: JsPool, db: Database) -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0xF0_0D);
        FunctionRunner {
            pool,
            db,
            env: Arc::new(BTreeMap::new()),
            clock: Arc::new(SystemClock),
            analyses: Mutex::new(AnalysisCache::default()),
            seed_base: hasher.finish(),
            seeds: AtomicU64::new(0),
        }
    }

    /// `process.env` of every function run.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// The clock `Date.now()` is taken from (fixed per attempt).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Makes the `Math.random` seeds of successive attempts a function of `seed` alone.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed_base = seed;
        self
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn pool(&self) -> &JsPool {
        &self.pool
    }

    fn next_seed(&self) -> u64 {
        splitmix(self.seed_base ^ splitmix(self.seeds.fetch_add(1, Ordering::Relaxed)))
    }

    fn cache(&self) -> MutexGuard<'_, AnalysisCache> {
        match self.analyses.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The functions of `code`, analyzed once per code version.
    async fn analysis(&self, code: &Arc<ModuleSet>) -> Result<Arc<Analysis>, FunctionError> {
        if let Some(cached) = self.cache().by_version.get(&code.version) {
            return cached.clone();
        }
        // Not holding the lock while analyzing: two callers may analyze the same version at
        // once, and the second insert wins with an equal result.
        let result = self.analyze(code).await;
        if !result.as_ref().is_err_and(FunctionError::is_retryable) {
            let mut cache = self.cache();
            if cache
                .by_version
                .insert(code.version, result.clone())
                .is_none()
            {
                cache.order.push_back(code.version);
            }
            while cache.order.len() > knobs::FUNCTION_ANALYSIS_CACHE_VERSIONS {
                if let Some(oldest) = cache.order.pop_front() {
                    cache.by_version.remove(&oldest);
                }
            }
        }
        result
    }

    async fn analyze(&self, code: &Arc<ModuleSet>) -> Result<Arc<Analysis>, FunctionError> {
        let infos = self
            .pool
            .analyze(code.clone(), self.env.clone())
            .await
            .map_err(|e| js_error(e, Vec::new()))?;
        let mut analysis = Analysis::new();
        for info in infos {
            let invalid = |which: &str, e: udf::ParseError| {
                FunctionError::developer(
                    DeveloperErrorKind::InvalidCode,
                    format!(
                        "{}:{} has an invalid {which} validator: {e}",
                        info.module, info.name
                    ),
                )
            };
            let args =
                Validator::parse_exported(&info.args_json).map_err(|e| invalid("args", e))?;
            let returns =
                Validator::parse_exported(&info.returns_json).map_err(|e| invalid("returns", e))?;
            analysis.insert(
                (info.module.clone(), info.name.clone()),
                FunctionSpec {
                    module: info.module,
                    name: info.name,
                    kind: info.kind,
                    visibility: info.visibility,
                    args,
                    returns,
                },
            );
        }
        Ok(Arc::new(analysis))
    }

    /// The function at `path` in `code` (`module:export`, see [`parse_function_path`]); lets
    /// a caller check its kind and visibility before running it.
    pub async fn function(
        &self,
        code: &Arc<ModuleSet>,
        path: &str,
    ) -> Result<FunctionSpec, FunctionError> {
        let (module, export) = parse_function_path(path)?;
        let analysis = self.analysis(code).await?;
        analysis.get(&(module, export)).cloned().ok_or_else(|| {
            FunctionError::developer(
                DeveloperErrorKind::NotFound,
                format!("Could not find function for '{path}'"),
            )
        })
    }

    /// Finds the function, checks kind and visibility, and checks the arguments. Returns the
    /// spec and the JSON text of the positional args array.
    async fn prepare(
        &self,
        code: &Arc<ModuleSet>,
        path: &str,
        kind: FunctionKind,
        args: &Value,
        options: &RunOptions,
    ) -> Result<(FunctionSpec, String), FunctionError> {
        let spec = match self.function(code, path).await {
            Err(FunctionError::Developer {
                kind: DeveloperErrorKind::NotFound,
                ..
            }) if options.public_only => {
                return Err(FunctionError::developer(
                    DeveloperErrorKind::NotFound,
                    format!("Could not find public function for '{path}'"),
                ));
            }
            other => other?,
        };
        if options.public_only && spec.visibility == Visibility::Internal {
            return Err(FunctionError::developer(
                DeveloperErrorKind::NotFound,
                format!("Could not find public function for '{path}'"),
            ));
        }
        if spec.kind != kind {
            return Err(FunctionError::developer(
                DeveloperErrorKind::WrongKind,
                format!(
                    "Trying to execute {path} as a {kind}, but it is defined as a {}",
                    spec.kind
                ),
            ));
        }
        if !matches!(args, Value::Object(_)) {
            return Err(FunctionError::developer(
                DeveloperErrorKind::InvalidArgs,
                format!(
                    "ArgumentValidationError: the arguments of {path} must be an object, not {}",
                    args.type_name()
                ),
            ));
        }
        if let Some(validator) = &spec.args {
            validator.check(args, &*self.db.catalog()).map_err(|e| {
                FunctionError::developer(
                    DeveloperErrorKind::InvalidArgs,
                    format!("ArgumentValidationError: {e}"),
                )
            })?;
        }
        let args_json = serde_json::Value::Array(vec![args.to_json()]).to_string();
        Ok((spec, args_json))
    }

    /// One run of the function's JS over a fresh transaction. On success the transaction
    /// comes back with the function's reads and writes, the result checked against `returns`.
    async fn attempt(
        &self,
        code: &Arc<ModuleSet>,
        spec: &FunctionSpec,
        args_json: &str,
        mode: AccessMode,
        options: &RunOptions,
        at: Option<Timestamp>,
    ) -> Result<(Value, Vec<String>, Transaction), FunctionError> {
        let functions = self.analysis(code).await?;
        let txn = match at {
            None => self.db.begin().map_err(commit_error)?,
            Some(ts) => self.db.begin_at(ts).await.map_err(commit_error)?,
        };
        let snapshot_ms = txn.read_ts().0 / LOGICAL_PER_MS;
        let now_ms = self.clock.now_ms().max(snapshot_ms) as f64;
        let handler = DbSyscalls::new(txn, mode)
            .with_identity(options.identity.clone())
            .with_functions(functions);
        let request = CallRequest {
            code: code.clone(),
            module: spec.module.clone(),
            export: spec.name.clone(),
            kind: spec.kind,
            args_json: args_json.to_owned(),
            request_id: String::new(),
            seed: self.next_seed(),
            now_ms,
            env: self.env.clone(),
            handler: Box::new(handler),
        };
        match self.pool.run(request).await {
            Ok(CallOutcome {
                result_json,
                log_lines,
                handler,
            }) => {
                let handler = handler.downcast::<DbSyscalls>().map_err(|_| {
                    FunctionError::system("the JS pool returned a foreign syscall handler", false)
                })?;
                let (txn, fatal) = handler.into_parts();
                if let Some(fatal) = fatal {
                    return Err(fatal_error(fatal).with_log_lines(log_lines));
                }
                let value = Value::from_json_bytes(result_json.as_bytes()).map_err(|e| {
                    FunctionError::developer(
                        DeveloperErrorKind::InvalidReturn,
                        format!("the function returned an invalid Convex value: {e}"),
                    )
                    .with_log_lines(log_lines.clone())
                })?;
                if let Some(validator) = &spec.returns {
                    validator.check(&value, &*self.db.catalog()).map_err(|e| {
                        FunctionError::developer(
                            DeveloperErrorKind::InvalidReturn,
                            format!("ReturnsValidationError: {e}"),
                        )
                        .with_log_lines(log_lines.clone())
                    })?;
                }
                Ok((value, log_lines, txn))
            }
            Err(CallFailure {
                error,
                log_lines,
                handler,
            }) => {
                // A fatal syscall error explains the failure better than whatever the JS code
                // made of the exception.
                let fatal = handler
                    .and_then(|h| h.downcast::<DbSyscalls>().ok())
                    .and_then(|h| h.into_parts().1);
                Err(match fatal {
                    Some(fatal) => fatal_error(fatal).with_log_lines(log_lines),
                    None => js_error(error, log_lines),
                })
            }
        }
    }

    /// Runs the query at `path` (`module:export`) with `args` (an object), as a server-side
    /// caller (internal functions allowed, no identity).
    pub async fn run_query(
        &self,
        code: Arc<ModuleSet>,
        path: &str,
        args: Value,
    ) -> Result<QueryOutcome, FunctionError> {
        self.run_query_with(code, path, args, &RunOptions::default())
            .await
    }

    pub async fn run_query_with(
        &self,
        code: Arc<ModuleSet>,
        path: &str,
        args: Value,
        options: &RunOptions,
    ) -> Result<QueryOutcome, FunctionError> {
        self.run_query_at(code, path, args, options, None).await
    }

    /// Runs the query at snapshot `at` (once a read there is safe; `None`: the newest safe
    /// snapshot). Subscriptions run every query of a transition at one timestamp this way.
    pub async fn run_query_at(
        &self,
        code: Arc<ModuleSet>,
        path: &str,
        args: Value,
        options: &RunOptions,
        at: Option<Timestamp>,
    ) -> Result<QueryOutcome, FunctionError> {
        let (spec, args_json) = self
            .prepare(&code, path, FunctionKind::Query, &args, options)
            .await?;
        let (value, log_lines, txn) = self
            .attempt(&code, &spec, &args_json, AccessMode::ReadOnly, options, at)
            .await?;
        Ok(QueryOutcome {
            value,
            log_lines,
            read_set: txn.read_set().clone(),
            ts: txn.read_ts(),
        })
    }

    /// Runs the mutation at `path` with `args` and commits it; see [`Self::run_mutation_with`].
    pub async fn run_mutation(
        &self,
        code: Arc<ModuleSet>,
        path: &str,
        args: Value,
    ) -> Result<MutationOutcome, FunctionError> {
        self.run_mutation_with(code, path, args, &RunOptions::default())
            .await
    }

    /// Runs the mutation and commits its writes. On a retryable commit error (a conflict with
    /// a concurrent commit) the whole function runs again on a fresh snapshot with a new seed,
    /// up to `knobs::TRANSACTION_MAX_ATTEMPTS` attempts with doubling backoff. Any error
    /// before the commit commits nothing.
    pub async fn run_mutation_with(
        &self,
        code: Arc<ModuleSet>,
        path: &str,
        args: Value,
        options: &RunOptions,
    ) -> Result<MutationOutcome, FunctionError> {
        let (spec, args_json) = self
            .prepare(&code, path, FunctionKind::Mutation, &args, options)
            .await?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (value, log_lines, txn) = self
                .attempt(
                    &code,
                    &spec,
                    &args_json,
                    AccessMode::ReadWrite,
                    options,
                    None,
                )
                .await?;
            let finished = txn
                .finish()
                .map_err(|e| finish_error(e, log_lines.clone()))?;
            match self.db.committer.commit(finished).await {
                Ok(commit_ts) => {
                    return Ok(MutationOutcome {
                        value,
                        log_lines,
                        commit_ts,
                    });
                }
                Err(e) if e.is_retryable() && attempt < knobs::TRANSACTION_MAX_ATTEMPTS => {
                    tokio::time::sleep(txn::retry_backoff(attempt)).await;
                }
                Err(e) if e.is_retryable() => {
                    return Err(FunctionError::system(
                        format!("mutation {path} gave up after {attempt} attempts: {e}"),
                        true,
                    ));
                }
                Err(e) => return Err(commit_error(e)),
            }
        }
    }
}

impl FunctionRunner {
    /// Runs the action at `path` with `args`, as a server-side caller; see
    /// [`Self::run_action_with`].
    pub async fn run_action(
        &self,
        code: Arc<ModuleSet>,
        path: &str,
        args: Value,
    ) -> Result<ActionOutcome, FunctionError> {
        self.run_action_with(code, path, args, &RunOptions::default())
            .await
    }

    /// Runs an action: outside any transaction, with a clock that advances. Its
    /// `ctx.runQuery`/`ctx.runMutation`/`ctx.runAction` run the target as an independent call
    /// (a query at a fresh snapshot; a mutation committed, with conflict retries, before the
    /// action goes on), nested in the action's JS context (see `actions.rs`). An action is
    /// never retried: what its mutations committed stays committed if it later fails.
    pub async fn run_action_with(
        &self,
        code: Arc<ModuleSet>,
        path: &str,
        args: Value,
        options: &RunOptions,
    ) -> Result<ActionOutcome, FunctionError> {
        let (spec, args_json) = self
            .prepare(&code, path, FunctionKind::Action, &args, options)
            .await?;
        let functions = self.analysis(&code).await?;
        let handler = ActionSyscalls::new(self.db.clone(), functions, options.identity.clone());
        let seed = self.next_seed();
        let request = CallRequest {
            code: code.clone(),
            module: spec.module.clone(),
            export: spec.name.clone(),
            kind: FunctionKind::Action,
            args_json,
            request_id: format!("{:016x}", splitmix(seed)),
            seed,
            now_ms: self.clock.now_ms() as f64,
            env: self.env.clone(),
            handler: Box::new(handler),
        };
        match self.pool.run(request).await {
            Ok(CallOutcome {
                result_json,
                log_lines,
                ..
            }) => {
                let value = Value::from_json_bytes(result_json.as_bytes()).map_err(|e| {
                    FunctionError::developer(
                        DeveloperErrorKind::InvalidReturn,
                        format!("the function returned an invalid Convex value: {e}"),
                    )
                    .with_log_lines(log_lines.clone())
                })?;
                if let Some(validator) = &spec.returns {
                    validator.check(&value, &*self.db.catalog()).map_err(|e| {
                        FunctionError::developer(
                            DeveloperErrorKind::InvalidReturn,
                            format!("ReturnsValidationError: {e}"),
                        )
                        .with_log_lines(log_lines.clone())
                    })?;
                }
                Ok(ActionOutcome { value, log_lines })
            }
            Err(CallFailure {
                error, log_lines, ..
            }) => Err(js_error(error, log_lines)),
        }
    }
}

fn commit_error(e: CommitError) -> FunctionError {
    let retryable = e.is_retryable();
    FunctionError::system(e.to_string(), retryable)
}

fn fatal_error(fatal: FatalSyscallError) -> FunctionError {
    if fatal.system {
        FunctionError::system(fatal.message, false)
    } else {
        FunctionError::developer(DeveloperErrorKind::LimitExceeded, fatal.message)
    }
}

/// `Transaction::finish` computes index keys of the written documents; a document whose
/// key cannot be built is the function's mistake, anything else the database's.
fn finish_error(e: TxnError, log_lines: Vec<String>) -> FunctionError {
    match e {
        TxnError::Key(_) | TxnError::InvalidDocument(_) | TxnError::Limit(_) => {
            FunctionError::developer(DeveloperErrorKind::LimitExceeded, e.to_string())
                .with_log_lines(log_lines)
        }
        other => FunctionError::system(format!("could not finish the transaction: {other}"), false),
    }
}

fn js_error(error: JsError, log_lines: Vec<String>) -> FunctionError {
    use DeveloperErrorKind as K;
    let developer = |kind, message: String| FunctionError::Developer {
        kind,
        message,
        log_lines: log_lines.clone(),
    };
    match error {
        JsError::ConvexError { message, data_json } => FunctionError::ConvexError {
            message,
            // The library encodes `data` itself; text that is not a value is reported as null
            // rather than losing the error.
            data: Value::from_json_bytes(data_json.as_bytes()).unwrap_or(Value::Null),
            log_lines,
        },
        JsError::Uncaught { message } => developer(K::Uncaught, message),
        e @ (JsError::Timeout { .. } | JsError::OutOfMemory { .. }) => {
            developer(K::LimitExceeded, e.to_string())
        }
        e @ JsError::ImportFailed { .. } => developer(K::InvalidCode, e.to_string()),
        e @ (JsError::ModuleNotFound { .. } | JsError::ExportNotFound { .. }) => {
            developer(K::NotFound, e.to_string())
        }
        e @ JsError::WrongKind { .. } => developer(K::WrongKind, e.to_string()),
        e @ JsError::InvalidResult { .. } => developer(K::InvalidReturn, e.to_string()),
        e @ JsError::Overloaded { .. } => FunctionError::system(e.to_string(), true),
        e @ (JsError::InvalidConfig { .. } | JsError::Internal { .. }) => {
            FunctionError::system(e.to_string(), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_function_path;

    #[test]
    fn function_paths_default_the_extension_and_the_export() {
        let ok = |p: &str| parse_function_path(p).ok();
        let pair = |m: &str, e: &str| Some((m.to_owned(), e.to_owned()));
        assert_eq!(ok("messages:list"), pair("messages.js", "list"));
        assert_eq!(ok("messages.js:list"), pair("messages.js", "list"));
        assert_eq!(ok("dir/other:hidden"), pair("dir/other.js", "hidden"));
        assert_eq!(ok("messages"), pair("messages.js", "default"));
        assert_eq!(ok("messages:"), pair("messages.js", "default"));
        assert_eq!(ok(":list"), None);
        assert_eq!(ok("a:b:c"), None);
    }
}
