//! Hand-made subscription traces.

use check::subscription::{
    self, AllRows, CommittedWrite, State, SubscriberTrace, SubscriptionAnomaly, Transition,
};
use serde_json::{Value, json};

fn put(ts: u64, key: &str, value: i64) -> CommittedWrite {
    CommittedWrite {
        ts,
        key: key.to_string(),
        value: Some(json!(value)),
    }
}

fn delete(ts: u64, key: &str) -> CommittedWrite {
    CommittedWrite {
        ts,
        key: key.to_string(),
        value: None,
    }
}

fn trace(transitions: &[(u64, Value)]) -> SubscriberTrace {
    SubscriberTrace {
        subscriber: 7,
        transitions: transitions
            .iter()
            .map(|(ts, result)| Transition {
                ts: *ts,
                result: result.clone(),
            })
            .collect(),
    }
}

fn log() -> Vec<CommittedWrite> {
    vec![
        put(10, "a", 1),
        put(20, "b", 2),
        put(20, "c", 3), // one commit, two writes
        delete(30, "a"),
        put(40, "b", 5),
    ]
}

#[test]
fn exact_and_coalesced_traces_are_valid() {
    let full = trace(&[
        (0, json!([])),
        (10, json!([["a", 1]])),
        (25, json!([["a", 1], ["b", 2], ["c", 3]])),
        (30, json!([["b", 2], ["c", 3]])),
        (40, json!([["b", 5], ["c", 3]])),
    ]);
    let coalesced = trace(&[(15, json!([["a", 1]])), (45, json!([["b", 5], ["c", 3]]))]);
    let report = subscription::check(&log(), &[full, coalesced], &AllRows);
    assert!(report.is_valid(), "{:#?}", report.anomalies);
    assert_eq!(report.transitions, 7);
}

/// A result showing half of the commit at ts 20 (b without c).
#[test]
fn inconsistent_transition_is_reported() {
    let t = trace(&[
        (10, json!([["a", 1]])),
        (20, json!([["a", 1], ["b", 2]])),
        (40, json!([["b", 5], ["c", 3]])),
    ]);
    let report = subscription::check(&log(), &[t], &AllRows);
    assert_eq!(
        report.anomalies,
        vec![SubscriptionAnomaly::Inconsistent {
            subscriber: 7,
            position: 1,
            ts: 20,
            result: json!([["a", 1], ["b", 2]]),
            expected: json!([["a", 1], ["b", 2], ["c", 3]]),
        }]
    );
    eprintln!("{}", report.anomalies[0]);
}

/// The subscriber never hears of the delete at 30 or the write at 40.
#[test]
fn skipped_final_update_is_reported() {
    let t = trace(&[(25, json!([["a", 1], ["b", 2], ["c", 3]]))]);
    let report = subscription::check(&log(), &[t], &AllRows);
    assert!(
        matches!(
            &report.anomalies[..],
            [SubscriptionAnomaly::SkippedUpdate {
                last_ts: 25,
                change_ts: 40,
                ..
            }]
        ),
        "{:#?}",
        report.anomalies
    );
    eprintln!("{}", report.anomalies[0]);
}

/// A filter query: a commit that does not change its result need not be delivered.
#[test]
fn commits_that_do_not_change_the_result_need_no_transition() {
    let has_c = |state: &State| json!(state.contains_key("c"));
    let t = trace(&[(0, json!(false)), (20, json!(true))]);
    let report = subscription::check(&log(), &[t], &has_c);
    assert!(report.is_valid(), "{:#?}", report.anomalies);
}

#[test]
fn non_increasing_timestamps_and_empty_traces_are_reported() {
    let t = trace(&[
        (30, json!([["b", 2], ["c", 3]])),
        (30, json!([["b", 2], ["c", 3]])),
        (45, json!([["b", 5], ["c", 3]])),
    ]);
    let empty = SubscriberTrace {
        subscriber: 8,
        transitions: vec![],
    };
    let report = subscription::check(&log(), &[t, empty], &AllRows);
    assert_eq!(
        report.anomalies,
        vec![
            SubscriptionAnomaly::NonIncreasingTs {
                subscriber: 7,
                position: 1,
                previous_ts: 30,
                ts: 30
            },
            SubscriptionAnomaly::NoResult { subscriber: 8 },
        ]
    );
}
