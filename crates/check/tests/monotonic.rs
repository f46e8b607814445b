//! Hand-made monotonic-read histories.

use check::HistoryBuilder;
use check::monotonic::{self, MonotonicAnomaly, Observation};

fn saw(read_ts: Option<u64>, versions: &[(u64, u64)]) -> Observation {
    Observation {
        read_ts,
        versions: versions.iter().copied().collect(),
    }
}

#[test]
fn each_client_moving_forward_is_valid() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, saw(Some(5), &[(1, 3)]));
    h.ok(1, 0, 10, saw(Some(2), &[(1, 1)])); // another client may lag
    h.ok(0, 20, 30, saw(Some(5), &[(1, 3), (2, 4)]));
    h.fail(0, 40, 50, saw(Some(1), &[]));
    h.ok(0, 60, 70, saw(Some(9), &[(2, 9)]));
    let report = monotonic::check(&h.build()).expect("well-formed");
    assert!(report.is_valid(), "{:#?}", report.anomalies);
}

#[test]
fn going_back_is_reported_against_the_op_that_set_the_bar() {
    let mut h = HistoryBuilder::new();
    let first = h.ok(0, 0, 10, saw(Some(5), &[(1, 3)]));
    h.ok(0, 20, 30, saw(None, &[(2, 1)]));
    let back = h.ok(0, 40, 50, saw(Some(4), &[(1, 2)]));
    let report = monotonic::check(&h.build()).expect("well-formed");
    assert_eq!(
        report.anomalies,
        vec![
            MonotonicAnomaly::ReadTsWentBack {
                process: 0,
                earlier: first,
                earlier_ts: 5,
                later: back,
                later_ts: 4
            },
            MonotonicAnomaly::VersionWentBack {
                process: 0,
                key: 1,
                earlier: first,
                earlier_version: 3,
                later: back,
                later_version: 2
            },
        ]
    );
    for anomaly in &report.anomalies {
        eprintln!("{anomaly}");
    }
}
