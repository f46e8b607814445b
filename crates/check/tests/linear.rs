//! Hand-made register histories: stale reads and lost updates must be proven non-linearizable,
//! with a witness; valid concurrency and indeterminate writes must be accepted.

use check::HistoryBuilder;
use check::linear::{self, LinearConfig, LinearReport, RegisterFn, RegisterOp, Verdict};

fn write(key: u64, value: u64) -> RegisterOp {
    RegisterOp {
        key,
        f: RegisterFn::Write { value },
    }
}

fn read(key: u64, value: Option<u64>) -> RegisterOp {
    RegisterOp {
        key,
        f: RegisterFn::Read { value },
    }
}

fn cas(key: u64, expected: Option<u64>, new: u64) -> RegisterOp {
    RegisterOp {
        key,
        f: RegisterFn::Cas { expected, new },
    }
}

fn check(h: HistoryBuilder<RegisterOp>) -> LinearReport {
    let report = linear::check(&h.build(), &LinearConfig::default()).expect("well-formed");
    for (_, witness) in report.failures() {
        eprintln!("{}", witness.explanation);
    }
    report
}

#[test]
fn overlapping_ops_may_take_effect_in_either_order() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, write(1, 1));
    // Concurrent with the write: may see the initial value or 1.
    h.ok(1, 5, 15, read(1, None));
    h.ok(2, 6, 16, read(1, Some(1)));
    h.ok(0, 20, 30, write(1, 2));
    h.ok(1, 25, 40, read(1, Some(1)));
    h.ok(2, 35, 45, read(1, Some(2)));
    h.ok(0, 50, 60, cas(1, Some(2), 3));
    h.ok(1, 70, 80, read(1, Some(3)));
    let report = check(h);
    assert!(report.is_valid(), "{:#?}", report.keys);
}

/// A read after a newer write completed returns the older value.
#[test]
fn stale_read_is_not_linearizable() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, write(1, 1));
    h.ok(0, 20, 30, write(1, 2));
    let stale = h.ok(1, 40, 50, read(1, Some(1)));
    let report = check(h);
    assert!(report.is_invalid());
    let (key, witness) = report.failures().next().expect("a failure");
    assert_eq!(key, 1);
    assert_eq!(witness.op, stale);
    assert_eq!(witness.state, Some(2));
    assert!(
        witness.explanation.contains("read -> 1"),
        "{}",
        witness.explanation
    );
}

/// Two clients both compare-and-set from the same value, and both succeed: one update lost.
#[test]
fn lost_update_by_cas_is_not_linearizable() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, write(1, 0));
    let a = h.ok(1, 20, 40, cas(1, Some(0), 1));
    let b = h.ok(2, 21, 41, cas(1, Some(0), 2));
    h.ok(0, 50, 60, read(1, Some(2)));
    let report = check(h);
    let (_, witness) = report.failures().next().expect("a failure");
    assert!([a, b].contains(&witness.op), "{witness:?}");
    assert!(
        witness.concurrent.contains(&a) || witness.concurrent.contains(&b),
        "{witness:?}"
    );
}

/// An indeterminate write may take effect late, or never.
#[test]
fn info_writes_take_effect_any_time_after_invocation_or_never() {
    let mut h = HistoryBuilder::new();
    h.info(0, 0, write(1, 1));
    h.ok(1, 10, 20, read(1, None));
    h.ok(1, 30, 40, read(1, Some(1)));
    assert!(check(h).is_valid());

    let mut h = HistoryBuilder::new();
    h.info(0, 0, write(1, 1));
    h.ok(1, 10, 20, read(1, None));
    assert!(check(h).is_valid());

    // But not before it was invoked.
    let mut h = HistoryBuilder::new();
    h.ok(1, 0, 5, read(1, Some(1)));
    h.info(0, 10, write(1, 1));
    assert!(check(h).is_invalid());

    // And once seen, it cannot be undone.
    let mut h = HistoryBuilder::new();
    h.info(0, 0, write(1, 1));
    h.ok(1, 10, 20, read(1, Some(1)));
    h.ok(1, 30, 40, read(1, None));
    assert!(check(h).is_invalid());
}

#[test]
fn failed_writes_never_take_effect() {
    let mut h = HistoryBuilder::new();
    h.fail(0, 0, 10, write(1, 1));
    h.ok(1, 5, 20, read(1, Some(1)));
    assert!(check(h).is_invalid());
}

#[test]
fn keys_are_independent() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, write(1, 1));
    h.ok(0, 0, 10, write(2, 1));
    h.ok(1, 20, 30, read(1, Some(1)));
    h.ok(1, 20, 30, read(2, None));
    let report = check(h);
    assert_eq!(report.keys.len(), 2);
    assert!(matches!(report.keys[0].verdict, Verdict::Linearizable));
    let failures: Vec<u64> = report.failures().map(|(key, _)| key).collect();
    assert_eq!(failures, vec![2]);
}

#[test]
fn read_of_a_value_never_written_is_caught_without_search() {
    let mut h = HistoryBuilder::new();
    for i in 0..30 {
        h.ok(i, 0, 100, write(1, i));
    }
    let bad = h.ok(99, 50, 300, read(1, Some(1_000)));
    let report = check(h);
    let (_, witness) = report.failures().next().expect("a failure");
    assert_eq!(witness.op, bad);
    assert_eq!(report.keys[0].steps, 0);
}

#[test]
fn search_gives_up_with_unknown_past_its_budget() {
    // Eight concurrent writes, then two reads that disagree about the final value: the search
    // must try every order of the writes before it can say no.
    let mut h = HistoryBuilder::new();
    for i in 0..8 {
        h.ok(i, 0, 100, write(1, i));
    }
    h.ok(99, 200, 300, read(1, Some(1)));
    h.ok(99, 400, 500, read(1, Some(2)));
    let ops = h.build();
    let config = LinearConfig {
        max_steps_per_key: 50,
    };
    let report = linear::check(&ops, &config).expect("well-formed");
    assert!(report.is_unknown());
    assert!(!report.is_valid() && !report.is_invalid());
    assert!(matches!(report.keys[0].verdict, Verdict::Unknown { .. }));
    // With the default budget the same history is decided.
    let report = linear::check(&ops, &LinearConfig::default()).expect("well-formed");
    assert!(report.is_invalid());
    eprintln!("decided in {} steps", report.keys[0].steps);
}
