//! `ctx.runQuery` / `ctx.runMutation` (`1.0/runUdf`) inside queries and mutations: the nested
//! function runs in the caller's transaction, a failed nested mutation is rolled back while
//! the caller goes on, and the checks (kind, arguments, result, depth) hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use functions::{DeveloperErrorKind, FunctionError};
use serde_json::json;

async fn bodies(f: &Fixture) -> Vec<String> {
    let all = f.query_json("messages:list", json!({})).await;
    let mut out: Vec<String> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["body"].as_str().expect("body").to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_nested_query_sees_the_callers_writes() {
    let f = fixture(1);
    f.message("a", 0.0, "old").await;
    let listed = f
        .mutation_json("nested:writeThenList", json!({ "body": "new" }))
        .await;
    let mut listed: Vec<String> = serde_json::from_value(listed).expect("strings");
    listed.sort();
    assert_eq!(listed, ["new", "old"]);
    assert_eq!(bodies(&f).await, ["new", "old"]);
}

#[tokio::test]
async fn a_failed_nested_mutation_is_rolled_back_and_the_caller_goes_on() {
    let f = fixture(1);
    let out = f.mutation_json("nested:catchFailingChild", json!({})).await;
    assert_eq!(out["kept"], json!("kept"));
    assert_eq!(
        out["caught"],
        json!({ "isConvexError": true, "data": { "code": "child", "body": "lost" } })
    );
    let mut seen: Vec<String> = serde_json::from_value(out["bodies"].clone()).expect("strings");
    seen.sort();
    assert_eq!(seen, ["after", "before", "kept"]);
    assert_eq!(bodies(&f).await, ["after", "before", "kept"]);
}

#[tokio::test]
async fn run_mutation_from_a_query_is_refused() {
    let f = fixture(1);
    let message = f.query_json("nested:queryCallsMutation", json!({})).await;
    let message = message.as_str().expect("an error message");
    assert!(
        message.contains("cannot be called from a query"),
        "{message}"
    );
    assert!(bodies(&f).await.is_empty());
}

#[tokio::test]
async fn bad_nested_calls_are_refused_with_catchable_errors() {
    let f = fixture(1);
    let errors = f.mutation_json("nested:badNestedArgs", json!({})).await;
    let errors: Vec<Option<String>> = serde_json::from_value(errors).expect("messages");
    let expect = [
        "ArgumentValidationError",
        "Could not find function for 'nested:nope'",
        "defined as a mutation",
        "ReturnsValidationError",
    ];
    assert_eq!(errors.len(), expect.len());
    for (error, expected) in errors.iter().zip(expect) {
        let error = error.as_deref().expect("an error");
        assert!(
            error.contains(expected),
            "{error} should contain {expected}"
        );
    }
    assert!(bodies(&f).await.is_empty());
}

#[tokio::test]
async fn internal_functions_can_be_called_from_public_ones() {
    let f = fixture(1);
    assert_eq!(
        f.query_json("nested:hiddenViaNested", json!({})).await,
        json!("hidden")
    );
}

#[tokio::test]
async fn nesting_depth_is_bounded() {
    let f = fixture(1);
    // deepFrom(n) opens n + 1 nested calls.
    let depth = knobs::FUNCTION_MAX_NESTING_DEPTH as f64;
    assert_eq!(
        f.query_json("nested:deepFrom", json!({ "n": depth - 1.0 }))
            .await,
        json!(depth - 1.0)
    );
    let err = f
        .try_query("nested:deepFrom", json!({ "n": depth }))
        .await
        .expect_err("too deep");
    assert!(
        matches!(
            err,
            FunctionError::Developer {
                kind: DeveloperErrorKind::Uncaught,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("depth exceeded"), "{err}");
}
