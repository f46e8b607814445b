//! Recording a history: one clock for every client of a run, clients that call Convex
//! functions through the client protocol and turn each call into an op, and the history files.
//!
//! # How an answer becomes an outcome
//! Only `status: "success"` is `Ok`. A `ConvexError` whose `code` the workload names as a
//! refusal (`INSUFFICIENT_FUNDS`, `CAS_MISMATCH`) is `Fail`: the function threw before writing,
//! so its transaction rolled back. Everything else — a transport error, a timeout, an error
//! status, any other function error — is `Info`: the request may or may not have taken effect.
//! Counting an unknown error as `Info` is always sound; counting it as `Fail` would let a
//! checker trust something it must not.
//!
//! An `Ok` answer whose value does not have the shape the function returns is recorded as
//! `Info` with an error starting with [`MALFORMED`]; the verdict reports every such op as an
//! anomaly (the database answered something its function cannot return).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::{Duration, Instant};

use check::Outcome;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http;
use crate::rng::Rng;

/// The prefix of the error of an op whose `Ok` answer had the wrong shape.
pub const MALFORMED: &str = "malformed answer";

/// Monotonic nanoseconds since the start of a run, shared by every client and the nemesis.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// What a call's answer said.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `status: "success"`, with the value.
    Ok(Value),
    /// A `ConvexError` with one of the codes the caller named as refusals.
    Refused(String),
    /// Anything else; the reason, for the record.
    Unknown(String),
}

/// One recorded op before it is numbered (see [`write_history`]).
#[derive(Clone, Debug)]
pub struct RawOp {
    pub process: u64,
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
    pub outcome: Outcome,
    pub payload: Value,
    /// Why the op is `Fail` or `Info`.
    pub error: Option<String>,
}

/// A client: one process of the history, issuing one request at a time to one node, moving
/// to the next node when an answer is unknown.
pub struct Client {
    pub process: u64,
    pub rng: Rng,
    apis: Vec<String>,
    target: usize,
    clock: Clock,
    timeout: Duration,
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Calls a function (`kind` is `query` or `mutation`) with `format: json`.
pub fn call(
    api: &str,
    kind: &str,
    path: &str,
    args: &Value,
    refusals: &[&str],
    timeout: Duration,
) -> Answer {
    let body = serde_json::json!({ "path": path, "args": args, "format": "json" }).to_string();
    let (status, text) =
        match http::request(api, "POST", &format!("/api/{kind}"), &body, None, timeout) {
            Ok(answer) => answer,
            // A blocking socket's read timeout surfaces as `WouldBlock` on Linux.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Answer::Unknown(format!(
                    "timeout: no answer within {} ms",
                    timeout.as_millis()
                ));
            }
            Err(e) => return Answer::Unknown(format!("transport: {e}")),
        };
    if status != 200 {
        return Answer::Unknown(format!("status {status}: {}", truncate(&text, 200)));
    }
    let answer: Value = match serde_json::from_str(&text) {
        Ok(answer) => answer,
        Err(e) => {
            return Answer::Unknown(format!("unparseable reply ({e}): {}", truncate(&text, 200)));
        }
    };
    if answer["status"] == "success" {
        return Answer::Ok(answer["value"].clone());
    }
    if let Some(code) = answer["errorData"]["code"].as_str()
        && refusals.contains(&code)
    {
        return Answer::Refused(code.to_string());
    }
    Answer::Unknown(format!(
        "function error: {}",
        truncate(
            answer["errorMessage"].as_str().unwrap_or("(no message)"),
            200
        )
    ))
}

impl Client {
    /// Client `process`, starting at `apis[process % len]`.
    pub fn new(process: u64, apis: Vec<String>, clock: Clock, timeout: Duration, rng: Rng) -> Self {
        assert!(!apis.is_empty(), "a client needs a node");
        let target = process as usize % apis.len();
        Self {
            process,
            rng,
            apis,
            target,
            clock,
            timeout,
        }
    }

    /// Calls a function and times it; an unknown answer moves this client to the next node.
    pub fn call(
        &mut self,
        kind: &str,
        path: &str,
        args: &Value,
        refusals: &[&str],
    ) -> (u64, u64, Answer) {
        let invoke_ns = self.clock.now_ns();
        let answer = call(
            &self.apis[self.target],
            kind,
            path,
            args,
            refusals,
            self.timeout,
        );
        let complete_ns = self.clock.now_ns().max(invoke_ns);
        if matches!(answer, Answer::Unknown(_)) {
            self.target = (self.target + 1) % self.apis.len();
        }
        (invoke_ns, complete_ns, answer)
    }

    /// Calls a function and records it: `payload` is the request; for an `Ok` answer,
    /// `complete` turns the request and the returned value into the recorded payload (an
    /// `Err` marks the answer malformed).
    pub fn op(
        &mut self,
        kind: &str,
        path: &str,
        args: &Value,
        refusals: &[&str],
        payload: Value,
        complete: impl FnOnce(&Value) -> Result<Value, String>,
    ) -> RawOp {
        let (invoke_ns, complete_ns, answer) = self.call(kind, path, args, refusals);
        let (outcome, payload, error) = match answer {
            Answer::Ok(value) => match complete(&value) {
                Ok(payload) => (Outcome::Ok, payload, None),
                Err(why) => (
                    Outcome::Info,
                    payload,
                    Some(format!(
                        "{MALFORMED}: {why}: {}",
                        truncate(&value.to_string(), 300)
                    )),
                ),
            },
            Answer::Refused(code) => (Outcome::Fail, payload, Some(code)),
            Answer::Unknown(why) => (Outcome::Info, payload, Some(why)),
        };
        RawOp {
            process: self.process,
            invoke_ns,
            complete_ns: Some(complete_ns),
            outcome,
            payload,
            error,
        }
    }
}

/// A number the functions return (Convex numbers are floats in JSON) as an integer.
pub fn as_u64(value: &Value) -> Result<u64, String> {
    let f = value
        .as_f64()
        .ok_or_else(|| format!("{value} is not a number"))?;
    if f < 0.0 || f.fract() != 0.0 || f > 9_007_199_254_740_992.0 {
        return Err(format!("{value} is not a non-negative integer"));
    }
    Ok(f as u64)
}

/// Like [`as_u64`], for values that may be negative.
pub fn as_i64(value: &Value) -> Result<i64, String> {
    let f = value
        .as_f64()
        .ok_or_else(|| format!("{value} is not a number"))?;
    if f.fract() != 0.0 || f.abs() > 9_007_199_254_740_992.0 {
        return Err(format!("{value} is not an integer"));
    }
    Ok(f as i64)
}

/// A list of integers.
pub fn as_u64_list(value: &Value) -> Result<Vec<u64>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{value} is not an array"))?
        .iter()
        .map(as_u64)
        .collect()
}

/// An object keyed by integers (as the functions return maps), each value converted by `f`.
pub fn as_int_map<T>(
    value: &Value,
    f: impl Fn(&Value) -> Result<T, String>,
) -> Result<BTreeMap<u64, T>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{value} is not an object"))?
        .iter()
        .map(|(k, v)| {
            let key = k
                .parse::<u64>()
                .map_err(|_| format!("key {k:?} is not an integer"))?;
            Ok((key, f(v)?))
        })
        .collect()
}

/// One line of a history file: a `check::Op` plus the error of a `Fail`/`Info` op (which
/// checkers ignore).
#[derive(Serialize, Deserialize)]
struct Line {
    index: u64,
    process: u64,
    invoke_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    complete_ns: Option<u64>,
    outcome: Outcome,
    payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Numbers the ops in invocation order and writes them as JSON lines (what
/// `check::history::read_jsonl` reads).
pub fn write_history(path: &Path, mut ops: Vec<RawOp>) -> io::Result<usize> {
    ops.sort_by_key(|op| (op.invoke_ns, op.process));
    let lines: Vec<Line> = ops
        .into_iter()
        .enumerate()
        .map(|(index, op)| Line {
            index: index as u64,
            process: op.process,
            invoke_ns: op.invoke_ns,
            complete_ns: op.complete_ns,
            outcome: op.outcome,
            payload: op.payload,
            error: op.error,
        })
        .collect();
    let count = lines.len();
    check::history::write_jsonl(BufWriter::new(File::create(path)?), &lines)
        .map_err(io::Error::other)?;
    Ok(count)
}

/// Per op of a history file: its outcome and error (for counting and for malformed answers).
pub fn read_outcomes(path: &Path) -> Result<Vec<(u64, Outcome, Option<String>)>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<Line> = check::history::read_records(io::BufReader::new(file))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(lines
        .into_iter()
        .map(|l| (l.index, l.outcome, l.error))
        .collect())
}
