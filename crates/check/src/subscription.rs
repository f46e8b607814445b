//! Subscriptions: a subscriber is sent a new result of its query whenever a commit changes it,
//! each result tagged with the timestamp it reflects. Given the log of committed writes and
//! what each subscriber received, this checks that:
//! - **consistent**: every result equals the query run fresh on the committed state at its
//!   timestamp (all writes with `ts <=` it) — no result mixes two snapshots or shows a write
//!   that had not committed;
//! - **increasing**: timestamps strictly increase along each subscriber's trace;
//! - **convergent**: the last result equals the query on the final state — the last commit
//!   that changed the result was delivered (otherwise a *skipped update*).
//!
//! Coalescing is allowed: a subscriber may skip intermediate results, as Convex does when
//! several commits land before it re-runs a query. So this does not prove every change was
//! delivered, only that nothing delivered was wrong and the subscriber caught up in the end.
//! The harness must wait for quiescence (no writes in flight, subscribers settled) before it
//! ends the traces.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The modelled database state: rows by key.
pub type State = BTreeMap<String, Value>;

/// The subscribed query, as a pure function of the state.
pub trait Query {
    /// The query's result on `state`. Must be deterministic: equal states give equal results.
    fn evaluate(&self, state: &State) -> Value;
}

impl<F: Fn(&State) -> Value> Query for F {
    fn evaluate(&self, state: &State) -> Value {
        self(state)
    }
}

/// All rows sorted by key, as a JSON array of `[key, value]` pairs.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllRows;

impl Query for AllRows {
    fn evaluate(&self, state: &State) -> Value {
        Value::Array(
            state
                .iter()
                .map(|(key, value)| Value::Array(vec![Value::String(key.clone()), value.clone()]))
                .collect(),
        )
    }
}

/// One committed write. Writes with the same `ts` belong to one commit and apply together, in
/// log order (so the later of two writes to one key in a commit wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedWrite {
    /// The commit timestamp.
    pub ts: u64,
    /// The row's key.
    pub key: String,
    /// The new value, or `None` for a delete.
    #[serde(default)]
    pub value: Option<Value>,
}

/// One result a subscriber received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The timestamp the result claims to reflect.
    pub ts: u64,
    /// The result.
    pub result: Value,
}

/// Everything one subscriber received, in order of receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberTrace {
    /// Which subscriber.
    pub subscriber: u64,
    /// Its results in order of receipt; the first is the initial result.
    pub transitions: Vec<Transition>,
}

/// One anomaly of a subscriber's trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionAnomaly {
    /// A result differs from the query run on the state at its timestamp.
    Inconsistent {
        /// The subscriber.
        subscriber: u64,
        /// Position of the transition in the trace.
        position: usize,
        /// Its timestamp.
        ts: u64,
        /// What the subscriber received.
        result: Value,
        /// What the query returns on the state at `ts`.
        expected: Value,
    },
    /// A transition's timestamp is not greater than the one before.
    NonIncreasingTs {
        /// The subscriber.
        subscriber: u64,
        /// Position of the transition in the trace.
        position: usize,
        /// The previous transition's timestamp.
        previous_ts: u64,
        /// This transition's timestamp.
        ts: u64,
    },
    /// The last result never reflected a later commit that changed the query's result.
    SkippedUpdate {
        /// The subscriber.
        subscriber: u64,
        /// The last transition's timestamp.
        last_ts: u64,
        /// The last commit that changed the result.
        change_ts: u64,
        /// What the subscriber last received.
        last_result: Value,
        /// The query on the final state.
        expected: Value,
    },
    /// The subscriber received no result at all.
    NoResult {
        /// The subscriber.
        subscriber: u64,
    },
}

impl fmt::Display for SubscriptionAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inconsistent {
                subscriber,
                position,
                ts,
                result,
                expected,
            } => write!(
                f,
                "subscriber {subscriber}, transition {position} at ts {ts}: got {result}, but \
                 the query at ts {ts} returns {expected}"
            ),
            Self::NonIncreasingTs {
                subscriber,
                position,
                previous_ts,
                ts,
            } => write!(
                f,
                "subscriber {subscriber}, transition {position}: ts {ts} does not follow \
                 {previous_ts}"
            ),
            Self::SkippedUpdate {
                subscriber,
                last_ts,
                change_ts,
                last_result,
                expected,
            } => write!(
                f,
                "subscriber {subscriber} stopped at ts {last_ts} with {last_result}, missing \
                 the commit at ts {change_ts} that made the result {expected}"
            ),
            Self::NoResult { subscriber } => {
                write!(f, "subscriber {subscriber} received no result")
            }
        }
    }
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionReport {
    /// Every anomaly, by subscriber.
    pub anomalies: Vec<SubscriptionAnomaly>,
    /// Transitions checked.
    pub transitions: usize,
}

impl SubscriptionReport {
    /// `true` if every trace was consistent, increasing and convergent.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// The committed log, as commits in timestamp order.
struct Log<'a> {
    /// (ts, writes of that commit), ts strictly increasing.
    commits: Vec<(u64, Vec<&'a CommittedWrite>)>,
}

impl<'a> Log<'a> {
    fn new(writes: &'a [CommittedWrite]) -> Self {
        let mut sorted: Vec<&CommittedWrite> = writes.iter().collect();
        sorted.sort_by_key(|w| w.ts);
        let mut commits: Vec<(u64, Vec<&CommittedWrite>)> = Vec::new();
        for write in sorted {
            match commits.last_mut() {
                Some((ts, group)) if *ts == write.ts => group.push(write),
                _ => commits.push((write.ts, vec![write])),
            }
        }
        Self { commits }
    }

    fn apply(state: &mut State, writes: &[&CommittedWrite]) {
        for write in writes {
            match &write.value {
                Some(value) => state.insert(write.key.clone(), value.clone()),
                None => state.remove(&write.key),
            };
        }
    }
}

/// Checks every subscriber's trace of `query` against the committed log.
pub fn check(
    log: &[CommittedWrite],
    traces: &[SubscriberTrace],
    query: &dyn Query,
) -> SubscriptionReport {
    let log = Log::new(log);
    let mut final_state = State::new();
    for (_, writes) in &log.commits {
        Log::apply(&mut final_state, writes);
    }
    let final_result = query.evaluate(&final_state);
    let mut report = SubscriptionReport::default();
    for trace in traces {
        check_trace(&log, trace, query, &final_result, &mut report);
    }
    report
}

fn check_trace(
    log: &Log<'_>,
    trace: &SubscriberTrace,
    query: &dyn Query,
    final_result: &Value,
    report: &mut SubscriptionReport,
) {
    let subscriber = trace.subscriber;
    let transitions = &trace.transitions;
    report.transitions += transitions.len();
    for (position, pair) in transitions.windows(2).enumerate() {
        if pair[1].ts <= pair[0].ts {
            report.anomalies.push(SubscriptionAnomaly::NonIncreasingTs {
                subscriber,
                position: position + 1,
                previous_ts: pair[0].ts,
                ts: pair[1].ts,
            });
        }
    }
    // Sweep the log once, in timestamp order of the transitions.
    let mut order: Vec<usize> = (0..transitions.len()).collect();
    order.sort_by_key(|&i| (transitions[i].ts, i));
    let mut state = State::new();
    let mut applied = 0;
    for position in order {
        let transition = &transitions[position];
        while let Some((ts, writes)) = log.commits.get(applied)
            && *ts <= transition.ts
        {
            Log::apply(&mut state, writes);
            applied += 1;
        }
        let expected = query.evaluate(&state);
        if expected != transition.result {
            report.anomalies.push(SubscriptionAnomaly::Inconsistent {
                subscriber,
                position,
                ts: transition.ts,
                result: transition.result.clone(),
                expected,
            });
        }
    }
    let Some(last) = transitions.last() else {
        report
            .anomalies
            .push(SubscriptionAnomaly::NoResult { subscriber });
        return;
    };
    // Converged unless a commit after the last transition changed the result. (A last result
    // that is wrong at its own timestamp is already reported as inconsistent.)
    let mut state = state_at(log, last.ts);
    let mut current = query.evaluate(&state);
    if current == *final_result {
        return;
    }
    let mut change_ts = last.ts;
    for (ts, writes) in log.commits.iter().filter(|(ts, _)| *ts > last.ts) {
        Log::apply(&mut state, writes);
        let result = query.evaluate(&state);
        if result != current {
            change_ts = *ts;
            current = result;
        }
    }
    report.anomalies.push(SubscriptionAnomaly::SkippedUpdate {
        subscriber,
        last_ts: last.ts,
        change_ts,
        last_result: last.result.clone(),
        expected: final_result.clone(),
    });
}

/// The state after every commit with `ts <= at`.
fn state_at(log: &Log<'_>, at: u64) -> State {
    let mut state = State::new();
    for (_, writes) in log.commits.iter().take_while(|(ts, _)| *ts <= at) {
        Log::apply(&mut state, writes);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_rows_is_sorted_pairs() {
        let mut state = State::new();
        state.insert("b".into(), Value::from(2));
        state.insert("a".into(), Value::from(1));
        assert_eq!(
            AllRows.evaluate(&state),
            serde_json::json!([["a", 1], ["b", 2]])
        );
    }
}
