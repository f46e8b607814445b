//! Size sanity, not timing assertions: the checkers finish on histories of the size a harness
//! run produces, valid and broken, and print how long they took (see `--no-capture`).

mod common;

use std::time::Instant;

use check::Outcome;
use check::elle::{self, ElleConfig, MicroOp};
use check::linear::{self, LinearConfig, RegisterFn};

#[test]
fn list_append_10k_transactions() {
    let ops = common::list_append(42, 10_000, 10, 32);
    let started = Instant::now();
    let report = elle::check(&ops, &ElleConfig::default()).expect("well-formed");
    eprintln!(
        "list-append, {} txns, valid: {:?} ({} nodes, {} edges)",
        ops.len(),
        started.elapsed(),
        report.graph_nodes,
        report.graph_edges
    );
    assert!(report.is_valid(), "{:#?}", report.anomalies);
}

/// The first transaction reads a list as it is at the end of the run: under strict
/// serializability that closes one cycle through nearly every transaction.
#[test]
fn list_append_10k_transactions_in_one_component() {
    let mut ops = common::list_append(43, 10_000, 10, 32);
    let last = ops.last().expect("ops").payload.clone();
    let (key, list) = last
        .iter()
        .find_map(|mop| match mop {
            MicroOp::Read {
                key,
                value: Some(list),
            } if !list.is_empty() => Some((*key, list.clone())),
            _ => None,
        })
        .expect("a final read");
    let first = ops
        .iter_mut()
        .find(|op| {
            op.outcome == Outcome::Ok
                && op.payload.iter().all(|mop| match mop {
                    MicroOp::Append { key: k, .. } | MicroOp::Read { key: k, .. } => *k != key,
                })
        })
        .expect("an ok op");
    first.payload.insert(
        0,
        MicroOp::Read {
            key,
            value: Some(list),
        },
    );
    let started = Instant::now();
    let report = elle::check(&ops, &ElleConfig::default()).expect("well-formed");
    eprintln!(
        "list-append, {} txns, one big component: {:?}, {} anomalies",
        ops.len(),
        started.elapsed(),
        report.anomalies.len()
    );
    for anomaly in report.anomalies.iter().take(3) {
        eprintln!("{anomaly}");
    }
    assert!(!report.is_valid());
}

#[test]
fn register_2000_ops_on_one_key() {
    let ops = common::register(42, 2_000, 10, 1);
    let started = Instant::now();
    let report = linear::check(&ops, &LinearConfig::default()).expect("well-formed");
    eprintln!(
        "register, {} ops, valid: {:?} ({} steps)",
        ops.len(),
        started.elapsed(),
        report.keys[0].steps
    );
    assert!(report.is_valid(), "{:#?}", report.keys);
}

/// The same history with one late read turned stale (caught before the search).
#[test]
fn register_2000_ops_with_a_stale_read() {
    let mut ops = common::register(42, 2_000, 10, 1);
    let written: Vec<u64> = ops
        .iter()
        .filter(|op| op.outcome == Outcome::Ok)
        .filter_map(|op| match op.payload.f {
            RegisterFn::Write { value } => Some(value),
            _ => None,
        })
        .collect();
    let stale = written[written.len() / 2];
    let target = ops
        .iter()
        .rposition(|op| {
            op.outcome == Outcome::Ok
                && matches!(op.payload.f, RegisterFn::Read { value: Some(v) } if v != stale)
        })
        .expect("a late read");
    ops[target].payload.f = RegisterFn::Read { value: Some(stale) };
    let started = Instant::now();
    let report = linear::check(&ops, &LinearConfig::default()).expect("well-formed");
    eprintln!(
        "register, {} ops, stale read: {:?} ({} steps), invalid {}, unknown {}",
        ops.len(),
        started.elapsed(),
        report.keys[0].steps,
        report.is_invalid(),
        report.is_unknown()
    );
    assert!(!report.is_valid());
    if let Some((_, witness)) = report.failures().next() {
        eprintln!("{}", witness.explanation);
    }
}

/// A register history of `ops` generated ops followed, after quiescence, by two concurrent
/// writes that two readers see in opposite orders: not linearizable, and invisible to the
/// cheap pre-checks, so the search must exhaust every configuration of the history before it.
fn with_contradictory_readers(ops: usize) -> Vec<check::Op<check::linear::RegisterOp>> {
    let mut h = check::HistoryBuilder::new();
    for op in common::register(42, ops, 10, 1) {
        h.push(
            op.process,
            op.invoke_ns,
            op.complete_ns,
            op.outcome,
            op.payload,
        );
    }
    let t = h
        .ops()
        .iter()
        .filter_map(|op| op.complete_ns)
        .max()
        .unwrap_or(0)
        + 1_000;
    let (a, b) = (1 << 40, (1 << 40) + 1);
    let reg = |f| check::linear::RegisterOp { key: 0, f };
    h.ok(1000, t, t + 100, reg(RegisterFn::Write { value: a }));
    h.ok(1001, t, t + 100, reg(RegisterFn::Write { value: b }));
    h.ok(
        1002,
        t + 10,
        t + 20,
        reg(RegisterFn::Read { value: Some(a) }),
    );
    h.ok(
        1002,
        t + 30,
        t + 40,
        reg(RegisterFn::Read { value: Some(b) }),
    );
    h.ok(
        1003,
        t + 10,
        t + 20,
        reg(RegisterFn::Read { value: Some(b) }),
    );
    h.ok(
        1003,
        t + 30,
        t + 40,
        reg(RegisterFn::Read { value: Some(a) }),
    );
    h.build()
}

#[test]
fn register_violation_after_300_ops_is_decided() {
    let ops = with_contradictory_readers(300);
    let started = Instant::now();
    let report = linear::check(&ops, &LinearConfig::default()).expect("well-formed");
    eprintln!(
        "register, {} ops, contradictory readers at the end: {:?} ({} steps)",
        ops.len(),
        started.elapsed(),
        report.keys[0].steps,
    );
    assert!(report.is_invalid(), "{:#?}", report.keys);
    if let Some((_, witness)) = report.failures().next() {
        eprintln!("{}", witness.explanation);
    }
}

/// The same after 2,000 ops: decided, or `Unknown` once the budget runs out; never valid and
/// never a hang.
#[test]
fn register_violation_after_2000_ops_stops() {
    let ops = with_contradictory_readers(2_000);
    let started = Instant::now();
    let report = linear::check(&ops, &LinearConfig::default()).expect("well-formed");
    eprintln!(
        "register, {} ops, contradictory readers at the end: {:?} ({} steps), invalid {}, \
         unknown {}",
        ops.len(),
        started.elapsed(),
        report.keys[0].steps,
        report.is_invalid(),
        report.is_unknown()
    );
    assert!(!report.is_valid());
}
