//! The runner: finding functions, validating arguments and results, error classes, retrying
//! conflicting mutations, and read sets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use functions::{DeveloperErrorKind, FunctionError, RunOptions};
use js::{FunctionKind, Visibility};
use serde_json::{Value as Json, json};

fn developer_kind(e: &FunctionError) -> Option<DeveloperErrorKind> {
    match e {
        FunctionError::Developer { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[tokio::test]
async fn invalid_arguments_write_nothing() {
    let f = fixture(1);
    let err = f
        .try_mutation(
            "messages:send",
            json!({ "author": "a", "body": 1.0, "n": 1.0 }),
        )
        .await
        .expect_err("body must be a string");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::InvalidArgs));
    assert!(
        err.to_string().starts_with("ArgumentValidationError"),
        "{err}"
    );
    assert!(err.to_string().contains(".body"), "{err}");
    let err = f
        .try_mutation("messages:send", json!({ "author": "a", "n": 1.0 }))
        .await
        .expect_err("body is required");
    assert!(
        err.to_string()
            .contains("missing the required field `body`"),
        "{err}"
    );
    let err = f
        .try_mutation(
            "messages:send",
            json!({ "author": "a", "body": "", "n": 1.0, "extra": true }),
        )
        .await
        .expect_err("extra fields are refused");
    assert!(err.to_string().contains("extra field `extra`"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(f.count("messages").await, 0.0);
}

#[tokio::test]
async fn convex_error_from_a_mutation_carries_data_and_writes_nothing() {
    let f = fixture(1);
    let err = f
        .try_mutation("messages:failAfterInsert", json!({ "body": "hi" }))
        .await
        .expect_err("the mutation throws");
    match &err {
        FunctionError::ConvexError { data, .. } => {
            assert_eq!(data.to_json(), json!({ "code": "nope", "body": "hi" }));
        }
        other => panic!("expected a ConvexError, got {other:?}"),
    }
    assert!(!err.is_retryable());
    let err = f
        .try_mutation("messages:throwAfterInsert", json!({}))
        .await
        .expect_err("the mutation throws");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::Uncaught));
    assert!(err.to_string().contains("boom"), "{err}");
    assert_eq!(f.count("messages").await, 0.0);
}

#[tokio::test]
async fn unknown_functions_wrong_kinds_and_visibility() {
    let f = fixture(1);
    let err = f
        .try_query("messages:nope", json!({}))
        .await
        .expect_err("no such export");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::NotFound));
    let err = f
        .try_query("other:list", json!({}))
        .await
        .expect_err("no such module");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::NotFound));
    let err = f
        .try_query("messages:send", json!({}))
        .await
        .expect_err("a mutation");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::WrongKind));
    let err = f
        .try_mutation("messages:list", json!({}))
        .await
        .expect_err("a query");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::WrongKind));

    // Export defaults to `default`, module to `.js`.
    assert_eq!(f.query_json("messages", json!({})).await, json!("default!"));
    assert_eq!(
        f.query_json("messages.js:default", json!({})).await,
        json!("default!")
    );

    // Internal functions: callable server-side, hidden from clients.
    assert_eq!(
        f.query_json("messages:hidden", json!({})).await,
        json!("hidden")
    );
    let spec = bounded(f.runner.function(&f.code, "messages:hidden"))
        .await
        .expect("spec");
    assert_eq!(
        (spec.kind, spec.visibility),
        (FunctionKind::Query, Visibility::Internal)
    );
    let client = RunOptions {
        public_only: true,
        ..RunOptions::default()
    };
    let err =
        bounded(
            f.runner
                .run_query_with(f.code.clone(), "messages:hidden", v(json!({})), &client),
        )
        .await
        .expect_err("internal");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::NotFound));
}

#[tokio::test]
async fn results_are_checked_against_returns_and_logs_come_back() {
    let f = fixture(1);
    let err = f
        .try_query("messages:badReturn", json!({}))
        .await
        .expect_err("42 is no string");
    assert_eq!(
        developer_kind(&err),
        Some(DeveloperErrorKind::InvalidReturn)
    );
    assert!(
        err.to_string().starts_with("ReturnsValidationError"),
        "{err}"
    );
    let outcome = f.query("messages:logs", json!({})).await;
    assert_eq!(outcome.log_lines, vec!["[LOG] 'hello' 1".to_string()]);
    // Arguments must be an object.
    let err = bounded(
        f.runner
            .run_query(f.code.clone(), "messages:list", v(json!([1.0]))),
    )
    .await
    .expect_err("array args");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::InvalidArgs));
}

/// Mutation A commits and is held in replication; B takes its snapshot while A is in flight
/// (so B cannot see A), then A is released; B's commit conflicts with A, and B's retry, on a
/// fresh snapshot, sees A's write. Both increments land.
#[tokio::test]
async fn conflicting_mutation_is_retried_and_both_effects_land() {
    let f = fixture(2);
    let counter = f.insert("counters", json!({ "value": 0.0 })).await;
    let entered_before = f.replicator.entered.load(Ordering::SeqCst);
    let stats_before = f.runner.database().committer.stats();
    f.replicator.hold();

    let first = f.try_mutation("messages:increment", json!({ "id": counter }));
    let clock_reads = std::sync::atomic::AtomicUsize::new(0);
    let second = async {
        // Start B only once A's commit is in the replicator (validated, timestamp assigned,
        // not applied).
        while f.replicator.entered.load(Ordering::SeqCst) == entered_before {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        clock_reads.store(f.clock.reads.load(Ordering::SeqCst), Ordering::SeqCst);
        f.try_mutation("messages:increment", json!({ "id": counter }))
            .await
    };
    let release = async {
        // Release A once B's first attempt has taken its snapshot (the runner reads the clock
        // right after `begin`).
        loop {
            let before_b = clock_reads.load(Ordering::SeqCst);
            if before_b != 0 && f.clock.reads.load(Ordering::SeqCst) > before_b {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        f.replicator.release_all();
    };
    let (a, b, ()) = bounded(async { tokio::join!(first, second, release) }).await;
    let a = a.expect("A commits");
    let b = b.expect("B commits after retrying");
    assert_eq!(a.value.to_json(), json!(1.0));
    assert_eq!(b.value.to_json(), json!(2.0));
    assert!(b.commit_ts > a.commit_ts);
    let doc = f
        .query_json("messages:getLoose", json!({ "id": counter }))
        .await;
    assert_eq!(doc["value"], json!(2.0));
    assert!(f.runner.database().committer.stats().conflicts > stats_before.conflicts);
    // B ran twice: its first snapshot could not see A.
    assert!(f.clock.reads.load(Ordering::SeqCst) >= clock_reads.load(Ordering::SeqCst) + 2);
}

/// The commit of the mutation run as `path` after `ts`, checked against `reads`.
async fn intersects(
    f: &Fixture,
    reads: &txn::ReadSet,
    after: store::Timestamp,
    path: &str,
    args: Json,
) -> bool {
    let outcome = f.mutation(path, args).await;
    let commits = f.runner.database().committer.commits_after(after);
    let (_, keys) = commits
        .iter()
        .find(|(ts, _)| *ts == outcome.commit_ts)
        .expect("the commit is in the write log");
    keys.first_intersection(reads).is_some()
}

#[tokio::test]
async fn a_query_read_set_covers_what_it_read() {
    let f = fixture(1);
    let a1 = f.message("a", 1.0, "").await;
    f.message("b", 2.0, "").await;
    f.message("c", 3.0, "").await;
    let q = f.query("messages:readSome", json!({ "id": a1 })).await;
    assert_eq!(q.value.to_json()["b"], json!(1.0));
    let reads = q.read_set;
    assert!(!reads.is_empty());
    // Writing the document it read, or into the index range it read, intersects.
    assert!(intersects(&f, &reads, q.ts, "messages:clearBody", json!({ "id": a1 })).await);
    assert!(
        intersects(
            &f,
            &reads,
            q.ts,
            "messages:insert",
            json!({ "table": "messages", "doc": { "author": "b", "n": 9.0, "body": "" } })
        )
        .await
    );
    // Writes elsewhere do not.
    assert!(
        !intersects(
            &f,
            &reads,
            q.ts,
            "messages:insert",
            json!({ "table": "messages", "doc": { "author": "c", "n": 9.0, "body": "" } })
        )
        .await
    );
    assert!(
        !intersects(
            &f,
            &reads,
            q.ts,
            "messages:insert",
            json!({ "table": "counters", "doc": { "value": 1.0 } })
        )
        .await
    );
}

/// A transaction limit is fatal: the function caught the exception and returned normally, but
/// the run fails and nothing commits.
#[tokio::test]
async fn an_exceeded_transaction_limit_fails_the_run_even_if_caught() {
    let f = fixture(1);
    let id = f.message("a", 1.0, "").await;
    let err = f
        .try_mutation("messages:readTooMuch", json!({ "id": id }))
        .await
        .expect_err("the read limit is fatal");
    assert_eq!(
        developer_kind(&err),
        Some(DeveloperErrorKind::LimitExceeded)
    );
    assert!(
        err.to_string().contains("transaction limit exceeded"),
        "{err}"
    );
    assert_eq!(f.count("messages").await, 1.0);
}
