//! `ctx.db` through the syscalls, end to end: a bundle-shaped project run by `FunctionRunner`
//! over an in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value as Json, json};

fn ns(docs: &Json) -> Vec<f64> {
    docs.as_array()
        .unwrap_or_else(|| panic!("not an array: {docs}"))
        .iter()
        .map(|d| d["n"].as_f64().unwrap_or_else(|| panic!("no n in {d}")))
        .collect()
}

#[tokio::test]
async fn insert_then_query_back() {
    let f = fixture(1);
    let outcome = f
        .mutation(
            "messages:send",
            json!({ "author": "a", "body": "hello", "n": 1.0 }),
        )
        .await;
    let Json::String(id) = outcome.value.to_json() else {
        panic!("send returned {:?}", outcome.value);
    };
    let doc = f.query_json("messages:get", json!({ "id": id })).await;
    assert_eq!(doc["_id"], json!(id));
    assert_eq!(doc["body"], json!("hello"));
    assert_eq!(doc["author"], json!("a"));
    assert!(doc["_creationTime"].as_f64().is_some(), "{doc}");
    let all = f.query_json("messages:list", json!({})).await;
    assert_eq!(all, json!([doc]));
    // The query read at or after the mutation's commit.
    let q = f.query("messages:list", json!({})).await;
    assert!(q.ts >= outcome.commit_ts);
}

#[tokio::test]
async fn get_of_an_invalid_or_foreign_id_is_null() {
    let f = fixture(1);
    let counter = f.insert("counters", json!({ "value": 0.0 })).await;
    assert_eq!(
        f.query_json("messages:getLoose", json!({ "id": "garbage" }))
            .await,
        Json::Null
    );
    // An id of an existing table but a document that does not exist.
    f.mutation("messages:remove", json!({ "id": counter }))
        .await;
    assert_eq!(
        f.query_json("messages:getLoose", json!({ "id": counter }))
            .await,
        Json::Null
    );
}

#[tokio::test]
async fn index_ranges_with_eq_gt_lt_in_both_orders() {
    let f = fixture(1);
    for n in 0..6 {
        f.message("a", f64::from(n), "x").await;
        f.message("b", f64::from(n), "y").await;
    }
    let run = |args: Json| f.query_json("messages:byAuthor", args);
    assert_eq!(
        ns(&run(json!({ "author": "a" })).await),
        vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
    assert_eq!(
        ns(&run(json!({ "author": "b", "gt": 1.0, "lt": 4.0 })).await),
        vec![2.0, 3.0]
    );
    assert_eq!(
        ns(&run(json!({ "author": "b", "gt": 1.0, "lt": 4.0, "order": "desc" })).await),
        vec![3.0, 2.0]
    );
    assert_eq!(
        ns(&run(json!({ "author": "a", "gt": 3.0, "order": "desc" })).await),
        vec![5.0, 4.0]
    );
    assert_eq!(
        ns(&run(json!({ "author": "a", "lt": 2.0 })).await),
        vec![0.0, 1.0]
    );
    assert_eq!(ns(&run(json!({ "author": "c" })).await), Vec::<f64>::new());
    let docs = run(json!({ "author": "b", "lt": 1.0 })).await;
    assert_eq!(docs[0]["body"], json!("y"));
}

#[tokio::test]
async fn filter_take_first_collect() {
    let f = fixture(1);
    f.message("a", 0.0, "").await;
    f.message("b", 1.0, "one").await;
    f.message("a", 2.0, "").await;
    f.message("b", 3.0, "three").await;
    f.message("c", 4.0, "four").await;
    assert_eq!(
        ns(&f.query_json("messages:nonEmpty", json!({})).await),
        vec![3.0, 4.0]
    );
    let out = f
        .query_json("messages:takeFirst", json!({ "n": 2.0 }))
        .await;
    assert_eq!(
        out,
        json!({ "take": [4.0, 3.0], "first": 1.0, "none": null, "all": 5.0 })
    );
}

#[tokio::test]
async fn paginate_to_the_end_with_cursors() {
    let f = fixture(1);
    for n in 0..10 {
        f.message("a", f64::from(n), "").await;
        f.message("b", f64::from(n), "").await;
    }
    let mut cursor = Json::Null;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "pagination does not end");
        let page = f
            .query_json(
                "messages:page",
                json!({ "cursor": cursor, "numItems": 3.0 }),
            )
            .await;
        let got = ns(&page["page"]);
        assert!(got.len() <= 3, "page larger than asked: {got:?}");
        seen.extend(got);
        if page["isDone"] == json!(true) {
            break;
        }
        cursor = page["continueCursor"].clone();
        assert!(cursor.is_string(), "{page}");
    }
    let expected: Vec<f64> = (0..10).map(f64::from).collect();
    assert_eq!(seen, expected);
    assert!(pages >= 4);
}

#[tokio::test]
async fn only_one_paginated_query_per_function() {
    let f = fixture(1);
    f.message("a", 0.0, "").await;
    let err = f
        .try_query("messages:twoPages", json!({}))
        .await
        .expect_err("second paginate must fail");
    assert!(
        err.to_string().contains("multiple paginated queries"),
        "{err}"
    );
}

#[tokio::test]
async fn patch_deletes_undefined_fields_and_replaces_nested_objects() {
    let f = fixture(1);
    let id = f
        .insert(
            "messages",
            json!({ "author": "a", "n": 1.0, "body": "b", "meta": { "a": 1.0 } }),
        )
        .await;
    let doc = f
        .mutation_json("messages:clearBody", json!({ "id": id }))
        .await;
    assert_eq!(doc["meta"], json!({ "b": 2.0 }));
    assert!(doc.get("body").is_none(), "{doc}");
    assert_eq!(doc["author"], json!("a"));
    // Committed, not just visible inside the mutation.
    let stored = f.query_json("messages:get", json!({ "id": id })).await;
    assert_eq!(stored, doc);
}

#[tokio::test]
async fn replace_keeps_system_fields_only() {
    let f = fixture(1);
    let id = f.message("a", 1.0, "old").await;
    let before = f.query_json("messages:get", json!({ "id": id })).await;
    let doc = f
        .mutation_json(
            "messages:replace",
            json!({ "id": id, "doc": { "author": "z", "n": 9.0 } }),
        )
        .await;
    assert_eq!(
        doc,
        json!({ "_id": id, "_creationTime": before["_creationTime"], "author": "z", "n": 9.0 })
    );
    let stored = f.query_json("messages:get", json!({ "id": id })).await;
    assert_eq!(stored, doc);
}

#[tokio::test]
async fn delete_removes_the_document() {
    let f = fixture(1);
    let id = f.message("a", 1.0, "").await;
    let keep = f.message("a", 2.0, "").await;
    let out = f
        .mutation_json("messages:remove", json!({ "id": id }))
        .await;
    assert_eq!(out["afterDelete"], Json::Null);
    assert!(
        out["again"]
            .as_str()
            .is_some_and(|m| m.contains("nonexistent document")),
        "{out}"
    );
    assert_eq!(
        f.query_json("messages:getLoose", json!({ "id": id })).await,
        Json::Null
    );
    let all = f.query_json("messages:list", json!({})).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    assert_eq!(all[0]["_id"], json!(keep));
    assert_eq!(f.count("messages").await, 1.0);
}

#[tokio::test]
async fn normalize_id_accepts_only_ids_of_the_table() {
    let f = fixture(1);
    let id = f.message("a", 1.0, "").await;
    let run = |table: &str, id_string: &str| {
        f.query_json(
            "messages:normalize",
            json!({ "table": table, "idString": id_string }),
        )
    };
    assert_eq!(run("messages", &id).await, json!(id));
    assert_eq!(run("counters", &id).await, Json::Null);
    assert_eq!(run("nope", &id).await, Json::Null);
    assert_eq!(run("messages", "not-an-id").await, Json::Null);
}

#[tokio::test]
async fn count_and_identity() {
    let f = fixture(1);
    assert_eq!(f.count("messages").await, 0.0);
    assert_eq!(f.count("unknown").await, 0.0);
    f.message("a", 1.0, "").await;
    f.message("a", 2.0, "").await;
    assert_eq!(f.count("messages").await, 2.0);
    assert_eq!(f.query_json("messages:whoami", json!({})).await, Json::Null);
    let options = functions::RunOptions {
        identity: Some(json!({ "subject": "user|1", "tokenIdentifier": "t|user|1" })),
        public_only: true,
    };
    let outcome =
        bounded(
            f.runner
                .run_query_with(f.code.clone(), "messages:whoami", v(json!({})), &options),
        )
        .await
        .expect("whoami");
    assert_eq!(
        outcome.value.to_json(),
        json!({ "subject": "user|1", "tokenIdentifier": "t|user|1" })
    );
}

#[tokio::test]
async fn writes_in_a_query_are_refused() {
    let f = fixture(1);
    let id = f.message("a", 1.0, "keep").await;
    let out = f
        .query_json("messages:writeInQuery", json!({ "id": id }))
        .await;
    let messages = out.as_array().expect("array");
    assert_eq!(messages.len(), 3);
    for (m, method) in messages.iter().zip(["insert", "patch", "delete"]) {
        let m = m
            .as_str()
            .unwrap_or_else(|| panic!("{method} did not fail: {out}"));
        assert!(
            m.contains(&format!("db.{method}()")) && m.contains("read-only"),
            "{m}"
        );
    }
    assert_eq!(f.count("messages").await, 1.0);
}

#[tokio::test]
async fn syscall_errors_are_catchable_and_leave_the_transaction_usable() {
    let f = fixture(1);
    let id = f.message("a", 1.0, "").await;
    let out = f
        .mutation_json("messages:errors", json!({ "id": id }))
        .await;
    let messages: Vec<&str> = out
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            m.as_str()
                .unwrap_or_else(|| panic!("a call did not fail: {out}"))
        })
        .collect();
    let expect = [
        "System tables (prefixed with `_`) are read-only",
        "Table nope does not exist",
        "_id",
        "Invalid argument `id` for `db.patch`",
        "is an id of table `messages`, not `counters`",
        "Unknown async operation 1.0/bogus",
        "Unknown operation 1.0/bogus",
        "Query 99 is not open",
        "Index messages.nope not found",
    ];
    assert_eq!(messages.len(), expect.len(), "{out}");
    for (message, expected) in messages.iter().zip(expect) {
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    // The write after the failures committed.
    let after = f
        .query_json("messages:byAuthor", json!({ "author": "after" }))
        .await;
    assert_eq!(after.as_array().map(Vec::len), Some(1));
    assert_eq!(f.count("messages").await, 2.0);
}
