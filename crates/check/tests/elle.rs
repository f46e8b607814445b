//! Hand-made list-append histories, each with one anomaly the checker must name, and the
//! nearby valid histories it must accept.

use check::HistoryBuilder;
use check::elle::{self, Consistency, CycleKind, EdgeKind, ElleAnomaly, ElleConfig, MicroOp, Txn};

fn append(key: u64, value: u64) -> MicroOp {
    MicroOp::Append { key, value }
}

fn read(key: u64, list: &[u64]) -> MicroOp {
    MicroOp::Read {
        key,
        value: Some(list.to_vec()),
    }
}

fn check(h: HistoryBuilder<Txn>, consistency: Consistency) -> elle::ElleReport {
    let config = ElleConfig {
        consistency,
        ..ElleConfig::default()
    };
    let report = elle::check(&h.build(), &config).expect("well-formed history");
    for anomaly in &report.anomalies {
        eprintln!("{anomaly}");
    }
    report
}

fn strict(h: HistoryBuilder<Txn>) -> elle::ElleReport {
    check(h, Consistency::StrictSerializable)
}

const X: u64 = 1;
const Y: u64 = 2;

#[test]
fn serial_history_is_valid() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, vec![append(X, 1)]);
    h.ok(
        1,
        5,
        20,
        vec![read(X, &[1]), append(X, 2), read(X, &[1, 2])],
    );
    h.ok(0, 30, 40, vec![read(X, &[1, 2]), read(Y, &[])]);
    let report = strict(h);
    assert!(report.is_valid(), "{:#?}", report.anomalies);
    assert_eq!(report.graph_nodes, 3);
}

/// Two transactions read the same list and both append: each missed the other's append.
#[test]
fn lost_update_is_g_single() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, vec![append(X, 1)]);
    let t1 = h.ok(1, 20, 40, vec![read(X, &[1]), append(X, 2)]);
    let t2 = h.ok(2, 21, 41, vec![read(X, &[1]), append(X, 3)]);
    h.ok(0, 50, 60, vec![read(X, &[1, 2, 3])]);
    for consistency in [Consistency::Serializable, Consistency::StrictSerializable] {
        let report = check(h.clone(), consistency);
        assert!(report.has("G-single"), "{:#?}", report.anomalies);
        let cycle = report.cycles().next().expect("a cycle");
        assert_eq!(cycle.kind, CycleKind::GSingle);
        // The shortest example: t1 -ww-> t2 -rw-> t1.
        assert_eq!(cycle.steps.len(), 2);
        let edges: Vec<_> = cycle.steps.iter().map(|s| (s.from, s.to, s.edge)).collect();
        assert!(edges.contains(&(t1, t2, EdgeKind::Ww)), "{edges:?}");
        assert!(edges.contains(&(t2, t1, EdgeKind::Rw)), "{edges:?}");
        let text = cycle.to_string();
        assert!(text.contains("G-single"), "{text}");
        assert!(text.contains("read key 1 ending at 1"), "{text}");
    }
}

/// Each transaction reads both keys empty and appends to one of them: write skew.
#[test]
fn write_skew_is_g2() {
    let mut h = HistoryBuilder::new();
    h.ok(1, 0, 20, vec![read(X, &[]), read(Y, &[]), append(X, 1)]);
    h.ok(2, 1, 21, vec![read(X, &[]), read(Y, &[]), append(Y, 1)]);
    h.ok(0, 30, 40, vec![read(X, &[1]), read(Y, &[1])]);
    let report = check(h, Consistency::Serializable);
    assert!(report.has("G2"), "{:#?}", report.anomalies);
    assert!(!report.has("G-single"));
    let cycle = report.cycles().next().expect("a cycle");
    assert!(cycle.steps.iter().all(|s| s.edge == EdgeKind::Rw));
}

/// A read invoked after an append completed misses it; a later read shows it. Strict
/// serializability forbids this (the stale read must follow the append); plain
/// serializability allows it (order the stale read first).
#[test]
fn stale_read_is_g_single_realtime_only_under_strict() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, vec![append(X, 1)]);
    h.ok(1, 20, 30, vec![read(X, &[])]);
    h.ok(2, 40, 50, vec![read(X, &[1])]);
    let report = strict(h.clone());
    assert!(report.has("G-single-realtime"), "{:#?}", report.anomalies);
    let cycle = report.cycles().next().expect("a cycle");
    assert!(cycle.steps.iter().any(|s| s.edge == EdgeKind::Realtime));
    assert!(check(h, Consistency::Serializable).is_valid());
}

/// The same stale read when no read ever observes the append: the checker still knows the
/// stale read must have seen it.
#[test]
fn unobserved_acknowledged_append_missing_from_later_read() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, vec![append(X, 1)]);
    h.ok(1, 20, 30, vec![read(X, &[])]);
    let report = strict(h.clone());
    assert!(report.has("G-single-realtime"), "{:#?}", report.anomalies);
    assert!(check(h, Consistency::Serializable).is_valid());
    // Concurrent with the append, the read may go first.
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 25, vec![append(X, 1)]);
    h.ok(1, 20, 30, vec![read(X, &[])]);
    assert!(strict(h).is_valid());
}

#[test]
fn aborted_read_is_g1a() {
    let mut h = HistoryBuilder::new();
    let writer = h.fail(0, 0, 10, vec![append(X, 1)]);
    let reader = h.ok(1, 20, 30, vec![read(X, &[1])]);
    let report = strict(h);
    assert!(
        report.anomalies.contains(&ElleAnomaly::G1a {
            reader,
            writer,
            key: X,
            value: 1
        }),
        "{:#?}",
        report.anomalies
    );
}

#[test]
fn info_append_that_was_observed_is_fine() {
    let mut h = HistoryBuilder::new();
    h.info(0, 0, vec![append(X, 1)]);
    h.ok(1, 20, 30, vec![read(X, &[1])]);
    h.ok(1, 40, 50, vec![read(X, &[1])]);
    let report = strict(h);
    assert!(report.is_valid(), "{:#?}", report.anomalies);
    assert_eq!(report.graph_nodes, 3);
}

#[test]
fn intermediate_read_is_g1b() {
    let mut h = HistoryBuilder::new();
    let writer = h.ok(0, 0, 10, vec![append(X, 1), append(X, 2)]);
    let reader = h.ok(1, 5, 8, vec![read(X, &[1])]);
    h.ok(2, 20, 30, vec![read(X, &[1, 2])]);
    let report = check(h, Consistency::Serializable);
    assert!(
        report.anomalies.contains(&ElleAnomaly::G1b {
            reader,
            writer,
            key: X,
            value: 1,
            final_value: 2
        }),
        "{:#?}",
        report.anomalies
    );
}

/// T1 and T2 append to X and Y in opposite orders: a pure write cycle.
#[test]
fn write_cycle_is_g0() {
    let mut h = HistoryBuilder::new();
    h.ok(1, 0, 10, vec![append(X, 1), append(Y, 1)]);
    h.ok(2, 0, 10, vec![append(X, 2), append(Y, 2)]);
    h.ok(0, 20, 30, vec![read(X, &[1, 2]), read(Y, &[2, 1])]);
    let report = check(h, Consistency::Serializable);
    assert!(report.has("G0"), "{:#?}", report.anomalies);
    let cycle = report
        .cycles()
        .find(|c| c.kind == CycleKind::G0)
        .expect("G0");
    assert!(cycle.steps.iter().all(|s| s.edge == EdgeKind::Ww));
    assert_eq!(cycle.steps.len(), 2);
}

/// Each transaction reads the other's append: circular information flow.
#[test]
fn circular_information_flow_is_g1c() {
    let mut h = HistoryBuilder::new();
    h.ok(1, 0, 10, vec![append(X, 1), read(Y, &[1])]);
    h.ok(2, 0, 10, vec![append(Y, 1), read(X, &[1])]);
    let report = check(h, Consistency::Serializable);
    assert!(report.has("G1c"), "{:#?}", report.anomalies);
    assert!(!report.has("G0"));
}

/// A real-time cycle through ww edges only: T2 completes before T1 is invoked, yet T1's
/// append comes first in the list.
#[test]
fn realtime_write_order_is_g0_realtime() {
    let mut h = HistoryBuilder::new();
    h.ok(2, 0, 10, vec![append(X, 2)]);
    h.ok(1, 20, 30, vec![append(X, 1)]);
    h.ok(0, 40, 50, vec![read(X, &[1, 2])]);
    let report = strict(h.clone());
    assert!(report.has("G0-realtime"), "{:#?}", report.anomalies);
    assert!(check(h, Consistency::Serializable).is_valid());
}

#[test]
fn garbage_duplicates_incompatible_orders_and_internal_reads() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, vec![append(X, 1), append(X, 2)]);
    h.ok(1, 20, 30, vec![read(X, &[1, 2, 9])]);
    h.ok(2, 20, 30, vec![read(X, &[1, 1])]);
    h.ok(3, 20, 30, vec![read(X, &[2, 1])]);
    h.ok(4, 40, 50, vec![append(Y, 5), read(Y, &[])]);
    let report = strict(h);
    for name in [
        "garbage",
        "duplicate-elements",
        "incompatible-order",
        "internal",
    ] {
        assert!(report.has(name), "{name}: {:#?}", report.anomalies);
    }
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, vec![append(X, 1)]);
    h.ok(1, 0, 10, vec![append(X, 1)]);
    assert!(strict(h).has("duplicate-append"));
}

/// Many independent lost updates: one cycle each, all reported.
#[test]
fn every_component_is_reported() {
    let mut h = HistoryBuilder::new();
    for key in 0..50 {
        h.ok(0, 0, 1, vec![append(key, 1)]);
        h.ok(1, 10, 20, vec![read(key, &[1]), append(key, 2)]);
        h.ok(2, 10, 20, vec![read(key, &[1]), append(key, 3)]);
        h.ok(3, 30, 40, vec![read(key, &[1, 2, 3])]);
    }
    let report = check(h, Consistency::Serializable);
    assert_eq!(report.cycles().count(), 50, "{:#?}", report.anomalies);
}
