//! Hand-made bank histories.

use check::HistoryBuilder;
use check::bank::{self, BankAnomaly, BankConfig, BankOp};
use std::collections::BTreeMap;

fn read(balances: &[(u64, i64)]) -> BankOp {
    BankOp::Read {
        balances: Some(balances.iter().copied().collect::<BTreeMap<_, _>>()),
    }
}

fn transfer(from: u64, to: u64, amount: i64) -> BankOp {
    BankOp::Transfer { from, to, amount }
}

fn config() -> BankConfig {
    BankConfig {
        total: 100,
        allow_negative: false,
        accounts: Some([0, 1, 2].into()),
    }
}

#[test]
fn conserving_history_is_valid() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, read(&[(0, 100), (1, 0), (2, 0)]));
    h.ok(1, 5, 15, transfer(0, 1, 30));
    h.fail(2, 5, 15, transfer(2, 1, 30));
    h.info(3, 6, transfer(0, 2, 10));
    h.ok(0, 20, 30, read(&[(0, 60), (1, 30), (2, 10)]));
    h.push(
        4,
        20,
        Some(30),
        check::Outcome::Fail,
        BankOp::Read { balances: None },
    );
    let report = bank::check(&h.build(), &config()).expect("well-formed");
    assert!(report.is_valid(), "{:#?}", report.anomalies);
    assert_eq!(report.reads, 2);
}

/// Two transfers read account 0 at 100 and both write back their own debit: one debit lost,
/// money created.
#[test]
fn lost_update_breaks_the_total() {
    let mut h = HistoryBuilder::new();
    h.ok(1, 0, 10, transfer(0, 1, 10));
    h.ok(2, 0, 10, transfer(0, 2, 20));
    let bad = h.ok(0, 20, 30, read(&[(0, 80), (1, 10), (2, 20)]));
    let report = bank::check(&h.build(), &config()).expect("well-formed");
    assert_eq!(report.anomalies.len(), 1);
    assert!(matches!(
        &report.anomalies[0],
        BankAnomaly::WrongTotal { op, expected: 100, actual: 110, .. } if *op == bad
    ));
    eprintln!("{}", report.anomalies[0]);
}

#[test]
fn negative_balances_and_wrong_accounts_are_reported() {
    let mut h = HistoryBuilder::new();
    h.ok(0, 0, 10, read(&[(0, 120), (1, -20), (2, 0)]));
    h.ok(0, 20, 30, read(&[(0, 100), (3, 0)]));
    let ops = h.build();
    let report = bank::check(&ops, &config()).expect("well-formed");
    assert_eq!(
        report.anomalies,
        vec![
            BankAnomaly::Negative {
                op: 0,
                account: 1,
                balance: -20
            },
            BankAnomaly::WrongAccounts {
                op: 1,
                missing: vec![1, 2],
                unexpected: vec![3]
            },
        ]
    );
    let lenient = BankConfig {
        allow_negative: true,
        accounts: None,
        ..config()
    };
    assert!(bank::check(&ops, &lenient).expect("well-formed").is_valid());
}
