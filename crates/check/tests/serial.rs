//! No false positives: histories of a correct (serial) execution, generated with realistic
//! overlapping intervals, failures and indeterminate ops (see `common`), must pass every
//! checker, at every seed.

mod common;

use check::bank::{self, BankConfig};
use check::elle::{self, Consistency, ElleConfig};
use check::linear::{self, LinearConfig};
use check::subscription::{self, AllRows, Query, State};
use check::{monotonic, set};
use proptest::prelude::*;
use serde_json::Value;

/// Keys whose value exceeds 50, in key order.
fn big_values(state: &State) -> Value {
    Value::Array(
        state
            .iter()
            .filter(|(_, v)| v.as_u64().is_some_and(|v| v > 50))
            .map(|(k, _)| Value::String(k.clone()))
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn list_append_serial_is_strict_serializable(seed in any::<u64>(), clients in 1u64..12) {
        let ops = common::list_append(seed, 300, clients, 12);
        for consistency in [Consistency::Serializable, Consistency::StrictSerializable] {
            let config = ElleConfig { consistency, ..ElleConfig::default() };
            let report = elle::check(&ops, &config).expect("well-formed");
            prop_assert!(report.is_valid(), "{consistency:?}: {:#?}", report.anomalies);
        }
    }

    #[test]
    fn register_serial_is_linearizable(seed in any::<u64>(), clients in 1u64..12) {
        let ops = common::register(seed, 300, clients, 3);
        let report = linear::check(&ops, &LinearConfig::default()).expect("well-formed");
        prop_assert!(report.is_valid(), "{:#?}", report.keys);
    }

    #[test]
    fn set_serial_is_valid(seed in any::<u64>(), clients in 1u64..12) {
        let ops = common::set(seed, 300, clients);
        let report = set::check(&ops).expect("well-formed");
        prop_assert!(report.is_valid(), "{:#?}", report.anomalies);
        prop_assert!(report.final_read.is_some());
    }

    #[test]
    fn bank_serial_is_valid(seed in any::<u64>(), clients in 1u64..12) {
        let ops = common::bank(seed, 300, clients, 5);
        let config = BankConfig { total: 500, allow_negative: false, accounts: Some((0..5).collect()) };
        let report = bank::check(&ops, &config).expect("well-formed");
        prop_assert!(report.is_valid(), "{:#?}", report.anomalies);
    }

    #[test]
    fn monotonic_serial_is_valid(seed in any::<u64>(), clients in 1u64..12) {
        let ops = common::monotonic(seed, 300, clients);
        let report = monotonic::check(&ops).expect("well-formed");
        prop_assert!(report.is_valid(), "{:#?}", report.anomalies);
    }

    #[test]
    fn subscriptions_serial_are_valid(seed in any::<u64>()) {
        let queries: [&dyn Query; 2] = [&AllRows, &big_values];
        for query in queries {
            let (log, traces) = common::subscriptions(seed, 60, 4, query);
            let report = subscription::check(&log, &traces, query);
            prop_assert!(report.is_valid(), "{:#?}", report.anomalies);
        }
    }
}

/// The generated histories round-trip through JSON lines unchanged.
#[test]
fn generated_histories_round_trip_through_jsonl() {
    let ops = common::list_append(7, 200, 8, 10);
    let mut buf = Vec::new();
    check::history::write_jsonl(&mut buf, &ops).expect("write");
    let back: Vec<check::Op<check::elle::Txn>> =
        check::history::read_jsonl(&buf[..]).expect("read");
    assert_eq!(back, ops);
    let ops = common::register(7, 200, 8, 2);
    let mut buf = Vec::new();
    check::history::write_jsonl(&mut buf, &ops).expect("write");
    let back: Vec<check::Op<check::linear::RegisterOp>> =
        check::history::read_jsonl(&buf[..]).expect("read");
    assert_eq!(back, ops);
    let first = String::from_utf8_lossy(&buf);
    eprintln!("{}", first.lines().next().unwrap_or_default());
    let (log, traces) = common::subscriptions(7, 20, 2, &AllRows);
    let mut buf = Vec::new();
    check::history::write_jsonl(&mut buf, &log).expect("write");
    let back: Vec<check::subscription::CommittedWrite> =
        check::history::read_records(&buf[..]).expect("read");
    assert_eq!(back, log);
    let mut buf = Vec::new();
    check::history::write_jsonl(&mut buf, &traces).expect("write");
    let back: Vec<check::subscription::SubscriberTrace> =
        check::history::read_records(&buf[..]).expect("read");
    assert_eq!(back, traces);
}
