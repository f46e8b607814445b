//! Why running a function failed, in the three classes Convex reports: a `ConvexError` the
//! function threw on purpose, a developer error (the code or the call is wrong), and a system
//! error (the database or the runtime failed).

use value::Value;

/// What kind of mistake a developer error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeveloperErrorKind {
    /// The function threw (or rejected with) something other than a `ConvexError`.
    Uncaught,
    /// The arguments do not match the function's `args` validator, or are not an object.
    InvalidArgs,
    /// The return value does not match the function's `returns` validator, or is not a
    /// Convex value.
    InvalidReturn,
    /// No function at that path (missing module or export), or an internal function called
    /// as a public one.
    NotFound,
    /// The function exists but is of another kind (a mutation called as a query, …).
    WrongKind,
    /// The code cannot be loaded or analyzed (an import fails, a validator is malformed).
    InvalidCode,
    /// The function ran past its time or memory limit, or past a transaction limit.
    LimitExceeded,
}

/// Why a function run failed. Nothing a failed mutation wrote is committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FunctionError {
    /// The function threw a `ConvexError`; `data` is its payload (`Null` if it had none).
    #[error("Uncaught ConvexError: {message}")]
    ConvexError {
        message: String,
        data: Value,
        log_lines: Vec<String>,
    },
    /// The function's code, or the call, is wrong; see `kind`.
    #[error("{message}")]
    Developer {
        kind: DeveloperErrorKind,
        message: String,
        log_lines: Vec<String>,
    },
    /// The database or the runtime failed. `retryable`: running the same function again
    /// later may succeed, and this attempt certainly committed nothing.
    #[error("{message}")]
    System { message: String, retryable: bool },
}

impl FunctionError {
    /// Whether running the same call again later may succeed (and this attempt certainly
    /// committed nothing). Only system errors can be; developer errors and `ConvexError`s
    /// would repeat.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FunctionError::System {
                retryable: true,
                ..
            }
        )
    }

    /// The console output of the failed run, if the function got to run.
    pub fn log_lines(&self) -> &[String] {
        match self {
            FunctionError::ConvexError { log_lines, .. }
            | FunctionError::Developer { log_lines, .. } => log_lines,
            FunctionError::System { .. } => &[],
        }
    }

    pub(crate) fn developer(kind: DeveloperErrorKind, message: impl Into<String>) -> Self {
        FunctionError::Developer {
            kind,
            message: message.into(),
            log_lines: Vec::new(),
        }
    }

    pub(crate) fn system(message: impl Into<String>, retryable: bool) -> Self {
        FunctionError::System {
            message: message.into(),
            retryable,
        }
    }

    pub(crate) fn with_log_lines(mut self, lines: Vec<String>) -> Self {
        match &mut self {
            FunctionError::ConvexError { log_lines, .. }
            | FunctionError::Developer { log_lines, .. } => *log_lines = lines,
            FunctionError::System { .. } => {}
        }
        self
    }
}
