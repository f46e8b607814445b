//! No false negatives on realistic histories: take a generated correct history (see
//! `common`), inject one anomaly of the kind each checker exists for, and require it found.

mod common;

use check::Outcome;
use check::bank::{self, BankConfig, BankOp};
use check::elle::{self, ElleConfig, MicroOp};
use check::linear::{self, LinearConfig, RegisterFn};
use check::monotonic::{self, MonotonicAnomaly};
use check::set::{self, SetAnomaly, SetOp};
use check::subscription::{self, AllRows, SubscriptionAnomaly};
use proptest::prelude::*;
use std::collections::HashMap;

/// (key, value) → position of the committed transaction that appended it.
fn committed_appends(ops: &[check::Op<check::elle::Txn>]) -> HashMap<(u64, u64), usize> {
    let mut appends = HashMap::new();
    for (pos, op) in ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.outcome == Outcome::Ok)
    {
        for mop in &op.payload {
            if let MicroOp::Append { key, value } = mop {
                appends.insert((*key, *value), pos);
            }
        }
    }
    appends
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// The final read (after quiescence) misses the last append to some key, made by a
    /// committed transaction: a stale read under strict serializability.
    #[test]
    fn list_append_final_read_missing_an_append(seed in any::<u64>()) {
        let mut ops = common::list_append(seed, 300, 8, 12);
        let committed = committed_appends(&ops);
        let last = ops.last_mut().expect("final read");
        let Some(list) = last.payload.iter_mut().find_map(|mop| match mop {
            MicroOp::Read { key, value: Some(list) }
                if list.last().is_some_and(|v| committed.contains_key(&(*key, *v))) => Some(list),
            _ => None,
        }) else {
            return Ok(());
        };
        list.pop();
        let report = elle::check(&ops, &ElleConfig::default()).expect("well-formed");
        prop_assert!(report.has("G-single-realtime"), "{:#?}", report.anomalies);
    }

    /// A committed read-only transaction is made to return a list as it was at the end of the
    /// run, including an append by a transaction invoked after it completed.
    #[test]
    fn list_append_read_from_the_future(seed in any::<u64>()) {
        let mut ops = common::list_append(seed, 300, 8, 12);
        let committed = committed_appends(&ops);
        let finals: HashMap<u64, Vec<u64>> = ops
            .last()
            .expect("final read")
            .payload
            .iter()
            .filter_map(|mop| match mop {
                MicroOp::Read { key, value: Some(list) } => Some((*key, list.clone())),
                _ => None,
            })
            .collect();
        // Per key, when the transaction that made the last append was invoked.
        let last_append_invoked = |key: u64| {
            let value = finals.get(&key)?.last()?;
            committed.get(&(key, *value)).map(|&pos| ops[pos].invoke_ns)
        };
        let target = ops.iter().position(|op| {
            op.outcome == Outcome::Ok
                && op.payload.len() == 1
                && matches!(&op.payload[0], MicroOp::Read { key, .. }
                    if last_append_invoked(*key).is_some_and(|t| t > op.complete_ns.unwrap_or(u64::MAX)))
        });
        let Some(target) = target else { return Ok(()) };
        let MicroOp::Read { key, .. } = ops[target].payload[0] else { unreachable!() };
        ops[target].payload[0] = MicroOp::Read { key, value: Some(finals[&key].clone()) };
        let report = elle::check(&ops, &ElleConfig::default()).expect("well-formed");
        prop_assert!(report.cycles().any(|c| c.kind.name().ends_with("realtime")), "{:#?}", report.anomalies);
    }

    #[test]
    fn register_stale_read(seed in any::<u64>()) {
        let mut ops = common::register(seed, 300, 8, 1);
        // A read after quiescence returning the first value ever written.
        let Some(first) = ops.iter().find_map(|op| match op.payload.f {
            RegisterFn::Write { value } if op.outcome == Outcome::Ok => Some(value),
            _ => None,
        }) else {
            return Ok(());
        };
        let end = ops.iter().filter_map(|op| op.complete_ns).max().unwrap_or(0);
        let current = ops.iter().rev().find_map(|op| match op.payload.f {
            RegisterFn::Write { value } | RegisterFn::Cas { new: value, .. }
                if op.outcome == Outcome::Ok => Some(value),
            _ => None,
        });
        prop_assume!(current != Some(first));
        let mut h = check::HistoryBuilder::new();
        for op in ops.drain(..) {
            h.push(op.process, op.invoke_ns, op.complete_ns, op.outcome, op.payload);
        }
        h.ok(999, end + 10, end + 20, check::linear::RegisterOp {
            key: 0,
            f: RegisterFn::Read { value: Some(first) },
        });
        let report = linear::check(&h.build(), &LinearConfig::default()).expect("well-formed");
        prop_assert!(report.is_invalid(), "{:#?}", report.keys);
    }

    #[test]
    fn set_lost_acknowledged_add(seed in any::<u64>()) {
        let mut ops = common::set(seed, 300, 8);
        let Some(element) = ops.iter().find_map(|op| match op.payload {
            SetOp::Add { element } if op.outcome == Outcome::Ok => Some(element),
            _ => None,
        }) else {
            return Ok(());
        };
        if let SetOp::Read { elements: Some(read) } = &mut ops.last_mut().expect("final").payload {
            read.remove(&element);
        }
        let report = set::check(&ops).expect("well-formed");
        prop_assert!(
            report.anomalies.iter().any(|a| matches!(a, SetAnomaly::Lost { element: e, .. } if *e == element)),
            "{:#?}", report.anomalies
        );
    }

    #[test]
    fn bank_read_off_by_one(seed in any::<u64>()) {
        let mut ops = common::bank(seed, 300, 8, 5);
        let Some(read) = ops.iter_mut().rev().find(|op| {
            op.outcome == Outcome::Ok && matches!(op.payload, BankOp::Read { .. })
        }) else {
            return Ok(());
        };
        if let BankOp::Read { balances: Some(balances) } = &mut read.payload {
            *balances.entry(0).or_default() += 1;
        }
        let config = BankConfig { total: 500, allow_negative: false, accounts: None };
        let report = bank::check(&ops, &config).expect("well-formed");
        prop_assert_eq!(report.anomalies.len(), 1);
    }

    #[test]
    fn monotonic_read_ts_going_back(seed in any::<u64>()) {
        let mut ops = common::monotonic(seed, 300, 4);
        // The last ok op of some process reads at timestamp 0, after an earlier op of that
        // process read at a later one.
        let mut by_process: HashMap<u64, Vec<usize>> = HashMap::new();
        for (pos, op) in ops.iter().enumerate().filter(|(_, op)| op.outcome == Outcome::Ok) {
            by_process.entry(op.process).or_default().push(pos);
        }
        let mut candidates: Vec<(u64, usize)> = by_process
            .into_iter()
            .filter(|(_, list)| list[..list.len() - 1].iter().any(|&p| ops[p].payload.read_ts > Some(0)))
            .map(|(process, list)| (process, list[list.len() - 1]))
            .collect();
        candidates.sort_unstable();
        let Some(&(process, last)) = candidates.first() else {
            return Ok(());
        };
        let last = &mut ops[last];
        last.payload.read_ts = Some(0);
        let report = monotonic::check(&ops).expect("well-formed");
        prop_assert!(
            report.anomalies.iter().any(|a| matches!(a, MonotonicAnomaly::ReadTsWentBack { process: p, .. } if *p == process)),
            "{:#?}", report.anomalies
        );
    }

    #[test]
    fn subscription_stops_early(seed in any::<u64>()) {
        let (log, mut traces) = common::subscriptions(seed, 40, 2, &AllRows);
        // Drop the last transition whenever it changed the result: the update is skipped.
        let trace = &mut traces[0];
        let n = trace.transitions.len();
        prop_assume!(n >= 2 && trace.transitions[n - 1].result != trace.transitions[n - 2].result);
        trace.transitions.pop();
        let report = subscription::check(&log, &traces, &AllRows);
        prop_assert!(
            matches!(&report.anomalies[..], [SubscriptionAnomaly::SkippedUpdate { subscriber: 0, .. }]),
            "{:#?}", report.anomalies
        );
    }

    #[test]
    fn subscription_result_from_the_wrong_snapshot(seed in any::<u64>()) {
        let (log, mut traces) = common::subscriptions(seed, 40, 1, &AllRows);
        let trace = &mut traces[0];
        let n = trace.transitions.len();
        prop_assume!(n >= 3 && trace.transitions[1].result != trace.transitions[2].result);
        // The second result claims the timestamp of the third.
        trace.transitions[1].ts = trace.transitions[2].ts;
        let report = subscription::check(&log, &traces, &AllRows);
        prop_assert!(
            report.anomalies.iter().any(|a| matches!(a, SubscriptionAnomaly::Inconsistent { position: 1, .. })),
            "{:#?}", report.anomalies
        );
    }
}
