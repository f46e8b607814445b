//! Hand-made set histories.

use check::HistoryBuilder;
use check::set::{self, SetAnomaly, SetOp, UnexpectedReason};

fn add(element: u64) -> SetOp {
    SetOp::Add { element }
}

fn read(elements: &[u64]) -> SetOp {
    SetOp::Read {
        elements: Some(elements.iter().copied().collect()),
    }
}

#[test]
fn valid_history_with_concurrent_and_indeterminate_adds() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, add(1));
    h.ok(1, 5, 30, add(2)); // concurrent with the next read: may or may not be seen
    h.info(2, 6, add(3)); // may or may not ever appear
    h.info(3, 6, add(4));
    h.fail(4, 6, 8, add(5));
    h.ok(5, 20, 25, read(&[1]));
    h.ok(5, 40, 50, read(&[1, 2, 4]));
    let report = set::check(&h.build()).expect("well-formed");
    assert!(report.is_valid(), "{:#?}", report.anomalies);
    assert_eq!(report.final_read, Some(6));
    assert_eq!(report.acknowledged, 2);
    assert_eq!(report.recovered, 1);
}

#[test]
fn lost_acknowledged_add_is_reported() {
    let mut h = HistoryBuilder::new();
    let added = h.ok(0, 0, 10, add(1));
    h.ok(0, 20, 30, add(2));
    let last = h.ok(1, 40, 50, read(&[2]));
    let report = set::check(&h.build()).expect("well-formed");
    assert_eq!(
        report.anomalies,
        vec![SetAnomaly::Lost {
            element: 1,
            known_since: added,
            final_read: last
        }]
    );
    eprintln!("{}", report.anomalies[0]);
}

#[test]
fn element_seen_then_lost_is_reported_even_if_its_add_was_indeterminate() {
    let mut h = HistoryBuilder::new();
    h.info(0, 0, add(1));
    let seen = h.ok(1, 10, 20, read(&[1]));
    let stale = h.ok(1, 30, 40, read(&[]));
    let last = h.ok(1, 50, 60, read(&[]));
    let report = set::check(&h.build()).expect("well-formed");
    assert_eq!(
        report.anomalies,
        vec![
            SetAnomaly::Lost {
                element: 1,
                known_since: seen,
                final_read: last
            },
            SetAnomaly::Stale {
                element: 1,
                known_since: seen,
                reads: vec![stale]
            },
        ]
    );
}

#[test]
fn stale_read_is_reported_even_if_the_element_shows_up_later() {
    let mut h = HistoryBuilder::new();
    let added = h.ok(0, 0, 10, add(1));
    let stale = h.ok(1, 20, 30, read(&[]));
    h.ok(1, 40, 50, read(&[1]));
    let report = set::check(&h.build()).expect("well-formed");
    assert_eq!(
        report.anomalies,
        vec![SetAnomaly::Stale {
            element: 1,
            known_since: added,
            reads: vec![stale]
        }]
    );
}

#[test]
fn unexpected_elements_are_reported() {
    let mut h = HistoryBuilder::new();
    h.fail(0, 0, 10, add(1));
    let r = h.ok(1, 20, 30, read(&[1, 7]));
    let report = set::check(&h.build()).expect("well-formed");
    assert_eq!(
        report.anomalies,
        vec![
            SetAnomaly::Unexpected {
                element: 1,
                reason: UnexpectedReason::AddFailed,
                reads: vec![r]
            },
            SetAnomaly::Unexpected {
                element: 7,
                reason: UnexpectedReason::NeverAdded,
                reads: vec![r]
            },
        ]
    );
}
