//! What can go wrong running or analyzing function code.

use crate::FunctionKind;

/// Why a call or an analysis failed. Every variant leaves the pool usable: the thread that hit
/// a `Timeout` or `OutOfMemory` throws its QuickJS runtime away and builds a new one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsError {
    /// The function threw a `ConvexError` (detected as `error[error.ConvexErrorSymbol] ===
    /// true`). `data_json` is the convex-encoded JSON of its `data`.
    #[error("Uncaught ConvexError: {message}")]
    ConvexError { message: String, data_json: String },
    /// Any other exception or rejection: `Uncaught <Name>: <message>`, then the stack if the
    /// engine gave one.
    #[error("{message}")]
    Uncaught { message: String },
    /// The call ran past its time limit and was interrupted.
    #[error("function execution timed out (limit {limit_ms} ms)")]
    Timeout { limit_ms: u64 },
    /// The call needed more memory than its limit.
    #[error("function ran out of memory (limit {limit_bytes} bytes)")]
    OutOfMemory { limit_bytes: usize },
    /// A module could not be imported: it threw while being evaluated, failed to compile, or
    /// imports a module that the code does not have.
    #[error("failed to import module \"{module}\": {message}")]
    ImportFailed { module: String, message: String },
    /// The code has no module at the requested path.
    #[error("module \"{module}\" not found")]
    ModuleNotFound { module: String },
    /// The module has no export of that name that registers a Convex function (exactly one of
    /// `isQuery`, `isMutation`, `isAction`).
    #[error("\"{module}:{export}\" is not a registered Convex function")]
    ExportNotFound { module: String, export: String },
    /// The export is a function of another kind than the one requested.
    #[error("\"{module}:{export}\" is a {actual}, not a {expected}")]
    WrongKind {
        module: String,
        export: String,
        expected: FunctionKind,
        actual: FunctionKind,
    },
    /// The function's promise settled with something other than a JSON string, or never
    /// settled although nothing was left to wait for.
    #[error("invalid function result: {message}")]
    InvalidResult { message: String },
    /// Too many requests are waiting for a JS thread.
    #[error("too many function calls are waiting (queue of {capacity})")]
    Overloaded { capacity: usize },
    /// The pool configuration cannot work.
    #[error("invalid JS pool configuration: {message}")]
    InvalidConfig { message: String },
    /// The pool has shut down, or a thread failed while handling the request.
    #[error("JS pool failure: {message}")]
    Internal { message: String },
}

impl JsError {
    /// Whether the same call may succeed if simply tried again later (the pool was busy).
    pub fn is_retryable(&self) -> bool {
        matches!(self, JsError::Overloaded { .. })
    }
}

/// A syscall that failed. It reaches the user's code as a JS exception (`Error(message)`), so
/// the function may catch it. With `data_json` (convex-encoded JSON) the error also carries a
/// `data` property, which the Convex library turns into a `ConvexError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyscallError {
    pub message: String,
    pub data_json: Option<String>,
}

impl SyscallError {
    pub fn new(message: impl Into<String>) -> Self {
        SyscallError {
            message: message.into(),
            data_json: None,
        }
    }
}
