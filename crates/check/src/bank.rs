//! The bank workload: transfers between accounts and reads of every balance, each in one
//! transaction. Transfers conserve money, so under any isolation level that forbids lost
//! updates and torn reads, every committed read sums to the same total; and a database that
//! refuses overdrafts never shows a negative balance.
//!
//! Only `Ok` reads are checked; transfers are context (a `Fail` transfer was refused, an `Info`
//! one may or may not have happened, and neither changes the total).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::HistoryError;
use crate::history::{Op, validate};

/// A bank op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum BankOp {
    /// Move `amount` from one account to another.
    Transfer {
        /// Debited account.
        from: u64,
        /// Credited account.
        to: u64,
        /// Amount moved.
        amount: i64,
    },
    /// Read every balance in one transaction; `balances` is known for `Ok` reads only.
    Read {
        /// Account → balance.
        #[serde(default)]
        balances: Option<BTreeMap<u64, i64>>,
    },
}

/// Settings of [`check`].
#[derive(Clone, Debug)]
pub struct BankConfig {
    /// The sum every read must show.
    pub total: i64,
    /// Whether a balance may go below zero.
    pub allow_negative: bool,
    /// If set, every read must show exactly these accounts.
    pub accounts: Option<BTreeSet<u64>>,
}

/// One bad read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankAnomaly {
    /// The balances do not sum to the total: money was created or destroyed.
    WrongTotal {
        /// The read op.
        op: u64,
        /// The configured total.
        expected: i64,
        /// What the balances summed to (saturating).
        actual: i64,
        /// The balances read.
        balances: BTreeMap<u64, i64>,
    },
    /// A balance is negative though overdrafts are forbidden.
    Negative {
        /// The read op.
        op: u64,
        /// The account.
        account: u64,
        /// Its balance.
        balance: i64,
    },
    /// The read showed a different set of accounts than configured.
    WrongAccounts {
        /// The read op.
        op: u64,
        /// Configured accounts the read lacked.
        missing: Vec<u64>,
        /// Accounts the read showed that are not configured.
        unexpected: Vec<u64>,
    },
    /// An `Ok` read carried no balances (a harness bug).
    MissingBalances {
        /// The read op.
        op: u64,
    },
}

impl fmt::Display for BankAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongTotal {
                op,
                expected,
                actual,
                balances,
            } => write!(
                f,
                "op {op} read balances {balances:?} summing to {actual}, not {expected}"
            ),
            Self::Negative {
                op,
                account,
                balance,
            } => write!(
                f,
                "op {op} read a negative balance {balance} on account {account}"
            ),
            Self::WrongAccounts {
                op,
                missing,
                unexpected,
            } => write!(
                f,
                "op {op} read accounts lacking {missing:?} and with unexpected {unexpected:?}"
            ),
            Self::MissingBalances { op } => write!(f, "op {op} is an ok read without balances"),
        }
    }
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankReport {
    /// Every bad read, in history order.
    pub anomalies: Vec<BankAnomaly>,
    /// How many `Ok` reads were checked.
    pub reads: usize,
}

impl BankReport {
    /// `true` if every read was good.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// Checks every `Ok` read of a bank history.
pub fn check(ops: &[Op<BankOp>], config: &BankConfig) -> Result<BankReport, HistoryError> {
    validate(ops)?;
    let mut report = BankReport::default();
    for op in ops.iter().filter(|op| op.is_ok()) {
        let BankOp::Read { balances } = &op.payload else {
            continue;
        };
        report.reads += 1;
        let Some(balances) = balances else {
            report
                .anomalies
                .push(BankAnomaly::MissingBalances { op: op.index });
            continue;
        };
        let actual = balances
            .values()
            .fold(0i64, |sum, &balance| sum.saturating_add(balance));
        if actual != config.total {
            report.anomalies.push(BankAnomaly::WrongTotal {
                op: op.index,
                expected: config.total,
                actual,
                balances: balances.clone(),
            });
        }
        if !config.allow_negative {
            for (&account, &balance) in balances.iter().filter(|(_, b)| **b < 0) {
                report.anomalies.push(BankAnomaly::Negative {
                    op: op.index,
                    account,
                    balance,
                });
            }
        }
        if let Some(accounts) = &config.accounts {
            let read: BTreeSet<u64> = balances.keys().copied().collect();
            if &read != accounts {
                report.anomalies.push(BankAnomaly::WrongAccounts {
                    op: op.index,
                    missing: accounts.difference(&read).copied().collect(),
                    unexpected: read.difference(accounts).copied().collect(),
                });
            }
        }
    }
    Ok(report)
}
