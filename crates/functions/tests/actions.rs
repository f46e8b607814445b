//! Actions: outside any transaction; `ctx.runQuery`/`ctx.runMutation`/`ctx.runAction` run the
//! target as an independent call (a mutation commits before the action goes on), database
//! syscalls are refused, validators hold, and many actions at once do not deadlock the pool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use functions::{DeveloperErrorKind, FunctionError};
use serde_json::json;

async fn action(f: &Fixture, path: &str, args: serde_json::Value) -> serde_json::Value {
    match bounded(f.runner.run_action(f.code.clone(), path, v(args))).await {
        Ok(outcome) => outcome.value.to_json(),
        Err(e) => panic!("action {path} failed: {e:?}"),
    }
}

async fn try_action(
    f: &Fixture,
    path: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, FunctionError> {
    bounded(f.runner.run_action(f.code.clone(), path, v(args)))
        .await
        .map(|o| o.value.to_json())
}

#[tokio::test]
async fn an_action_runs_a_query_and_a_mutation() {
    let f = fixture(1);
    f.message("a", 0.0, "old").await;
    let out = action(&f, "actions:sendAndList", json!({ "body": "new" })).await;
    assert_eq!(out["before"], json!(1.0));
    let mut after: Vec<String> = serde_json::from_value(out["after"].clone()).unwrap();
    after.sort();
    assert_eq!(after, ["new", "old"]);
    assert_eq!(out["sent"], json!("string"));
    assert_eq!(f.count("messages").await, 2.0);
}

#[tokio::test]
async fn a_mutation_stays_committed_when_the_action_then_throws() {
    let f = fixture(1);
    let err = try_action(&f, "actions:sendThenThrow", json!({ "body": "kept" }))
        .await
        .expect_err("the action throws");
    assert!(
        matches!(&err, FunctionError::ConvexError { data, .. } if data.to_json() == json!({ "code": "after-commit" })),
        "{err:?}"
    );
    let all = f.query_json("messages:list", json!({})).await;
    assert_eq!(all[0]["body"], json!("kept"));
}

#[tokio::test]
async fn database_syscalls_are_refused_in_an_action() {
    let f = fixture(1);
    let errors = action(&f, "actions:directDb", json!({})).await;
    let errors: Vec<Option<String>> = serde_json::from_value(errors).unwrap();
    assert_eq!(errors.len(), 4);
    for error in &errors[..3] {
        let error = error.as_deref().expect("refused");
        assert!(error.contains("not available in an action"), "{error}");
    }
    let schedule = errors[3].as_deref().expect("refused");
    assert!(schedule.contains("not supported"), "{schedule}");
    assert_eq!(f.count("messages").await, 0.0);
}

#[tokio::test]
async fn action_arguments_and_results_are_validated() {
    let f = fixture(1);
    assert_eq!(
        action(&f, "actions:validated", json!({ "body": "hi" })).await,
        json!("hi")
    );
    let err = try_action(&f, "actions:validated", json!({ "body": 1 }))
        .await
        .expect_err("bad args");
    assert!(
        matches!(
            err,
            FunctionError::Developer {
                kind: DeveloperErrorKind::InvalidArgs,
                ..
            }
        ),
        "{err:?}"
    );
    let err = try_action(&f, "messages:list", json!({}))
        .await
        .expect_err("not an action");
    assert!(
        matches!(
            err,
            FunctionError::Developer {
                kind: DeveloperErrorKind::WrongKind,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn targets_of_an_action_are_validated() {
    let f = fixture(1);
    let errors = action(&f, "actions:badTargets", json!({})).await;
    let errors: Vec<Option<String>> = serde_json::from_value(errors).unwrap();
    let expect = [
        "ArgumentValidationError",
        "ReturnsValidationError",
        "defined as a mutation",
        "ArgumentValidationError",
        "Could not find function for 'actions:nope'",
    ];
    assert_eq!(errors.len(), expect.len());
    for (error, expected) in errors.iter().zip(expect) {
        let error = error.as_deref().expect("an error");
        assert!(
            error.contains(expected),
            "{error} should contain {expected}"
        );
    }
    assert_eq!(f.count("messages").await, 0.0);
}

#[tokio::test]
async fn an_action_calls_an_action() {
    let f = fixture(1);
    let out = action(&f, "actions:outer", json!({ "body": "deep" })).await;
    assert_eq!(out, json!({ "n": 1.0, "echoed": "deep", "who": null }));
    assert_eq!(f.count("messages").await, 1.0);
}

#[tokio::test]
async fn overlapping_nested_calls_fail_clearly_and_identity_is_visible() {
    let f = fixture(1);
    let out = action(&f, "actions:overlapping", json!({})).await;
    assert_eq!(out[0], json!(null));
    let second = out[1].as_str().expect("the overlapping call fails");
    assert!(
        second.contains("one ctx.runQuery/ctx.runMutation at a time"),
        "{second}"
    );

    let identity = json!({ "subject": "user-1", "issuer": "https://issuer" });
    let options = functions::RunOptions {
        identity: Some(identity.clone()),
        public_only: true,
    };
    let out =
        bounded(
            f.runner
                .run_action_with(f.code.clone(), "actions:whoami", v(json!({})), &options),
        )
        .await
        .expect("whoami");
    assert_eq!(out.value.to_json(), identity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_actions_calling_mutations_do_not_deadlock() {
    let f = std::sync::Arc::new(fixture(2));
    let id = f.insert("counters", json!({ "value": 0.0 })).await;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let f = f.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            action(&f, "actions:bump", json!({ "id": id, "times": 5.0 })).await
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let out = f.query_json("messages:getLoose", json!({ "id": id })).await;
    assert_eq!(out["value"], json!(30.0));
    // Every increment committed once; any conflict between the two JS threads was retried.
    let stats = f.runner.database().committer.stats();
    eprintln!("committer stats: {stats:?}");
    assert_eq!(stats.commits, 31);
}
