//! The history model shared by every checker: one [`Op`] per client request, with when it was
//! sent, when (and whether) it was answered, and a workload-specific payload.
//!
//! A history is recorded by a harness as JSON lines ([`write_jsonl`]) and checked now or later
//! ([`read_jsonl`]). Times are monotonic nanoseconds from one clock shared by all clients of a
//! run; only their order matters.
//!
//! # Invariants a history must satisfy ([`validate`])
//! - `index` strictly increases along the history (it is the op's position in the recorded
//!   history, or in the history a filtered one was taken from);
//! - an `Ok` or `Fail` op has `complete_ns`, and `complete_ns >= invoke_ns`;
//! - an `Info` op may carry the time its client gave up (`complete_ns`), but that time bounds
//!   nothing: the request may still take effect later, so checkers treat an `Info` op as open
//!   forever ([`Op::end_ns`]).

use std::io::{BufRead, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::HistoryError;

/// What the client learned about its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request took effect, exactly once, at some instant between invoke and complete, and
    /// its payload holds what it returned.
    Ok,
    /// The request certainly did not take effect (a refused transfer, an aborted transaction).
    Fail,
    /// Indeterminate (timeout, connection lost): it may or may not have taken effect, and if it
    /// did, at any instant after invocation. Its returned values are unknown.
    Info,
}

/// One client request in a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op<P> {
    /// Position in the history; strictly increasing. Checkers name ops by it.
    pub index: u64,
    /// The client that issued the request. A client issues one request at a time.
    pub process: u64,
    /// When the client sent the request (monotonic ns).
    pub invoke_ns: u64,
    /// When the client got its answer; `None` if it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_ns: Option<u64>,
    /// What the answer said.
    pub outcome: Outcome,
    /// The workload's request and, for `Ok` ops, its result.
    pub payload: P,
}

impl<P> Op<P> {
    /// The latest instant at which this op may have taken effect: its completion for `Ok` and
    /// `Fail` ops, `u64::MAX` (never bounded) for `Info` ops or ops without a completion.
    pub fn end_ns(&self) -> u64 {
        match self.outcome {
            Outcome::Info => u64::MAX,
            Outcome::Ok | Outcome::Fail => self.complete_ns.unwrap_or(u64::MAX),
        }
    }

    /// Whether this op certainly finished before `other` was sent (the real-time order that
    /// linearizability and strict serializability must respect).
    pub fn precedes<Q>(&self, other: &Op<Q>) -> bool {
        self.end_ns() < other.invoke_ns
    }

    /// `true` if the outcome is `Ok`.
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// `true` if the outcome is `Fail`.
    pub fn is_fail(&self) -> bool {
        self.outcome == Outcome::Fail
    }

    /// `true` if the outcome is `Info`.
    pub fn is_info(&self) -> bool {
        self.outcome == Outcome::Info
    }
}

/// Checks the invariants every checker relies on (see the module docs).
pub fn validate<P>(ops: &[Op<P>]) -> Result<(), HistoryError> {
    let mut previous: Option<u64> = None;
    for op in ops {
        if let Some(previous) = previous
            && op.index <= previous
        {
            return Err(HistoryError::IndexOrder {
                index: op.index,
                previous,
            });
        }
        previous = Some(op.index);
        match (op.outcome, op.complete_ns) {
            (Outcome::Ok | Outcome::Fail, None) => {
                return Err(HistoryError::MissingCompletion { index: op.index });
            }
            (_, Some(complete_ns)) if complete_ns < op.invoke_ns => {
                return Err(HistoryError::CompletedBeforeInvoked {
                    index: op.index,
                    invoke_ns: op.invoke_ns,
                    complete_ns,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes records as JSON lines, one per line: a history's ops, or any other record a checker
/// takes (a subscription's committed writes or traces).
pub fn write_jsonl<W: Write, T: Serialize>(mut out: W, records: &[T]) -> Result<(), HistoryError> {
    for record in records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads records written by [`write_jsonl`]; blank lines are skipped.
pub fn read_records<R: BufRead, T: DeserializeOwned>(input: R) -> Result<Vec<T>, HistoryError> {
    let mut records = Vec::new();
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| HistoryError::Line {
            line: number + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Reads a history written by [`write_jsonl`] and [`validate`]s it.
pub fn read_jsonl<R: BufRead, P: DeserializeOwned>(input: R) -> Result<Vec<Op<P>>, HistoryError> {
    let ops = read_records(input)?;
    validate(&ops)?;
    Ok(ops)
}

/// Builds a history in order, numbering ops from 0. Handy for tests and for harnesses that
/// learn an op's outcome before appending it.
#[derive(Clone, Debug)]
pub struct HistoryBuilder<P> {
    ops: Vec<Op<P>>,
}

impl<P> Default for HistoryBuilder<P> {
    fn default() -> Self {
        Self { ops: Vec::new() }
    }
}

impl<P> HistoryBuilder<P> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an op and returns its index.
    pub fn push(
        &mut self,
        process: u64,
        invoke_ns: u64,
        complete_ns: Option<u64>,
        outcome: Outcome,
        payload: P,
    ) -> u64 {
        let index = self.ops.len() as u64;
        self.ops.push(Op {
            index,
            process,
            invoke_ns,
            complete_ns,
            outcome,
            payload,
        });
        index
    }

    /// Appends an `Ok` op.
    pub fn ok(&mut self, process: u64, invoke_ns: u64, complete_ns: u64, payload: P) -> u64 {
        self.push(process, invoke_ns, Some(complete_ns), Outcome::Ok, payload)
    }

    /// Appends a `Fail` op.
    pub fn fail(&mut self, process: u64, invoke_ns: u64, complete_ns: u64, payload: P) -> u64 {
        self.push(
            process,
            invoke_ns,
            Some(complete_ns),
            Outcome::Fail,
            payload,
        )
    }

    /// Appends an `Info` op that never completed.
    pub fn info(&mut self, process: u64, invoke_ns: u64, payload: P) -> u64 {
        self.push(process, invoke_ns, None, Outcome::Info, payload)
    }

    /// The ops appended so far.
    pub fn ops(&self) -> &[Op<P>] {
        &self.ops
    }

    /// The finished history.
    pub fn build(self) -> Vec<Op<P>> {
        self.ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trips_and_validates() {
        let mut h = HistoryBuilder::new();
        h.ok(1, 10, 20, "a".to_string());
        h.fail(2, 11, 15, "b".to_string());
        h.info(3, 12, "c".to_string());
        let ops = h.build();
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &ops).expect("write");
        let back: Vec<Op<String>> = read_jsonl(&buf[..]).expect("read");
        assert_eq!(back, ops);
        assert_eq!(back[2].end_ns(), u64::MAX);
        assert!(back[1].precedes(&Op {
            invoke_ns: 16,
            ..back[0].clone()
        }));
    }

    #[test]
    fn validate_rejects_malformed_histories() {
        let op = |index, complete_ns, outcome| Op {
            index,
            process: 0,
            invoke_ns: 10,
            complete_ns,
            outcome,
            payload: (),
        };
        assert!(matches!(
            validate(&[op(1, Some(11), Outcome::Ok), op(1, Some(11), Outcome::Ok)]),
            Err(HistoryError::IndexOrder { .. })
        ));
        assert!(matches!(
            validate(&[op(0, None, Outcome::Fail)]),
            Err(HistoryError::MissingCompletion { .. })
        ));
        assert!(matches!(
            validate(&[op(0, Some(9), Outcome::Info)]),
            Err(HistoryError::CompletedBeforeInvoked { .. })
        ));
        assert!(validate(&[op(0, None, Outcome::Info)]).is_ok());
        let bad = "{\"index\":0,\"process\":0}\n";
        assert!(matches!(
            read_jsonl::<_, ()>(bad.as_bytes()),
            Err(HistoryError::Line { line: 1, .. })
        ));
    }
}
