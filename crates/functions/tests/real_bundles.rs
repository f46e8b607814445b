//! The fixture app `tests/convex-project`, bundled by the real Convex CLI (`convex` 1.48.0), run
//! through [`functions::FunctionRunner`] and the real syscall layer on a database whose catalog
//! matches `convex/schema.ts`.
//!
//! The app's functions that call another function (`ctx.runQuery` / `ctx.runMutation`,
//! `1.0/runUdf`) — `messages:send`, `messages:remove`, `counters:read`, `admin/stats:default`
//! and `admin/stats:purgeChannel` — run their nested calls in the caller's transaction
//! (`send_remove_and_read_the_counter`, `stats_and_purge_channel`; the nested-call semantics
//! themselves are pinned by `tests/run_udf.rs`). Most tests seed messages through a
//! transaction, which keeps their data independent of the counter.
//!
//! Needs Node.js 20+ and npm (see `convex_project`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod convex_project;

use convex_project::*;
use functions::{DeveloperErrorKind, FunctionError};
use serde_json::{Value as Json, json};

const T0: u64 = 1_700_000_000_000;

fn developer_kind(e: &FunctionError) -> Option<DeveloperErrorKind> {
    match e {
        FunctionError::Developer { kind, .. } => Some(*kind),
        _ => None,
    }
}

fn id_of(json: &Json) -> String {
    json.as_str()
        .unwrap_or_else(|| panic!("not an id: {json}"))
        .to_owned()
}

fn field<'a>(docs: &'a Json, name: &str) -> Vec<&'a Json> {
    docs.as_array()
        .unwrap_or_else(|| panic!("not an array: {docs}"))
        .iter()
        .map(|doc| &doc[name])
        .collect()
}

async fn register(app: &App, name: &str, role: &str) -> String {
    id_of(
        &app.mutation("users:register", json!({ "name": name, "role": role }))
            .await,
    )
}

/// Two users and five messages (seeded through a transaction, so no counter). Returns
/// (ada, bob, message ids in insertion order).
async fn seeded() -> (App, String, String, Vec<String>) {
    let app = App::new(T0);
    let ada = register(&app, "ada", "admin").await;
    let bob = register(&app, "bob", "member").await;
    let message = |author: &str, channel: &str, body: &str, time: u64, tags: Option<Json>| {
        let mut doc =
            json!({ "author": author, "channel": channel, "body": body, "time": time as f64 });
        if let Some(tags) = tags {
            doc["tags"] = tags;
        }
        doc
    };
    let ids = app
        .seed(
            MESSAGES,
            vec![
                message(&ada, "general", "g1", T0 + 1000, Some(json!(["greeting"]))),
                message(&bob, "general", "g2", T0 + 2000, None),
                message(&ada, "random", "r1", T0 + 3000, Some(json!(["food"]))),
                message(&bob, "general", "g3", T0 + 4000, Some(json!(["food"]))),
                message(&ada, "general", "g4", T0 + 5000, None),
            ],
        )
        .await;
    (app, ada, bob, ids)
}

#[tokio::test]
async fn users_register_unique_convex_error_and_get() {
    let app = App::new(T0);
    let ada = id_of(
        &app.mutation(
            "users:register",
            json!({ "name": "ada", "role": "admin", "email": "ada@example.com" }),
        )
        .await,
    );
    let bob = register(&app, "bob", "member").await;
    assert_ne!(ada, bob);

    // `.unique()` on the by_name index finds ada; the ConvexError carries its data and the
    // mutation writes nothing.
    let err = app
        .try_mutation("users:register", json!({ "name": "ada", "role": "member" }))
        .await
        .expect_err("the name is taken");
    assert_eq!(
        error_data(&err),
        Some(json!({ "code": "NAME_TAKEN", "name": "ada" })),
        "{err:?}"
    );

    // One-argument `db.get(id)`.
    let got = app.query("users:get", json!({ "id": bob })).await;
    assert_eq!(got["_id"], json!(bob));
    assert!(got["_creationTime"].is_number(), "{got}");
    assert_eq!(
        without_system_fields(&got),
        json!({ "name": "bob", "role": "member" })
    );
    let got = app.query("users:get", json!({ "id": ada })).await;
    assert_eq!(got["email"], json!("ada@example.com"));

    let users = app.dump("users");
    assert_eq!(users.len(), 2);
    assert_eq!(field(&json!(users), "name"), [&json!("ada"), &json!("bob")]);
}

#[tokio::test]
async fn validators_reject_bad_arguments_and_nothing_is_written() {
    let app = App::new(T0);
    let ada = register(&app, "ada", "admin").await;
    let bad = [
        // Not one of the role literals.
        json!({ "name": "eve", "role": "owner" }),
        // Missing the required name.
        json!({ "role": "member" }),
        // A field the validator does not declare.
        json!({ "name": "eve", "role": "member", "age": 3.0 }),
        // The optional field with the wrong type.
        json!({ "name": "eve", "role": "member", "email": 1.0 }),
    ];
    for args in bad {
        let err = app
            .try_mutation("users:register", args.clone())
            .await
            .expect_err("invalid arguments");
        assert_eq!(
            developer_kind(&err),
            Some(DeveloperErrorKind::InvalidArgs),
            "{args}: {err:?}"
        );
        assert!(
            err.to_string().starts_with("ArgumentValidationError"),
            "{err}"
        );
    }
    // v.id("users") refuses an id of another table and a string that is no id.
    let [message] = &app
        .seed(
            MESSAGES,
            vec![json!({ "author": ada, "channel": "c", "body": "b", "time": 1.0 })],
        )
        .await[..]
    else {
        unreachable!()
    };
    for id in [json!(message), json!("not an id")] {
        let err = app
            .try_query("users:get", json!({ "id": id }))
            .await
            .expect_err("not a users id");
        assert_eq!(
            developer_kind(&err),
            Some(DeveloperErrorKind::InvalidArgs),
            "{id}: {err:?}"
        );
    }
    // Nested v.object in `messages:rewrite`: an extra field inside `update`.
    let err = app
        .try_mutation(
            "messages:rewrite",
            json!({ "id": message, "update": { "body": "x", "author": ada, "extra": true } }),
        )
        .await
        .expect_err("extra nested field");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::InvalidArgs));
    // int64 argument of an internal mutation given a float.
    let err = app
        .try_mutation("counters:increment", json!({ "name": "n", "by": 1.0 }))
        .await
        .expect_err("by must be an int64");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::InvalidArgs));

    assert_eq!(app.dump("users").len(), 1);
    assert_eq!(app.dump("counters").len(), 0);
    let messages = app.dump("messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["body"], json!("b"));
}

#[tokio::test]
async fn index_ranges_order_take_and_first() {
    let (app, ..) = seeded().await;
    // eq + gt + lt on by_channel_time, descending, take(10) by default.
    let all = app
        .query("messages:list", json!({ "channel": "general" }))
        .await;
    assert_eq!(
        field(&all, "body"),
        [&json!("g4"), &json!("g3"), &json!("g2"), &json!("g1")]
    );
    let window = app
        .query(
            "messages:list",
            json!({ "channel": "general", "after": (T0 + 1000) as f64, "before": (T0 + 5000) as f64 }),
        )
        .await;
    assert_eq!(field(&window, "body"), [&json!("g3"), &json!("g2")]);
    let limited = app
        .query(
            "messages:list",
            json!({ "channel": "general", "limit": 1.0 }),
        )
        .await;
    assert_eq!(field(&limited, "body"), [&json!("g4")]);
    let none = app
        .query("messages:list", json!({ "channel": "nowhere" }))
        .await;
    assert_eq!(none, json!([]));

    // first() in descending order; null when the range is empty.
    let latest = app
        .query("messages:latest", json!({ "channel": "random" }))
        .await;
    assert_eq!(latest["body"], json!("r1"));
    assert_eq!(latest["tags"], json!(["food"]));
    assert_eq!(
        app.query("messages:latest", json!({ "channel": "nowhere" }))
            .await,
        Json::Null
    );
}

#[tokio::test]
async fn filters_and_collect() {
    let (app, ada, bob, _) = seeded().await;
    // by_author eq + collect, in index order (then creation order).
    let mine = app
        .query("messages:byAuthor", json!({ "author": ada }))
        .await;
    assert_eq!(
        field(&mine, "body"),
        [&json!("g1"), &json!("r1"), &json!("g4")]
    );
    // .filter(or(eq(field, true), gt(field, 0))) then a JS filter on tags.
    let food = app
        .query("messages:byAuthor", json!({ "author": bob, "tag": "food" }))
        .await;
    assert_eq!(field(&food, "body"), [&json!("g3")]);
    let greeting = app
        .query(
            "messages:byAuthor",
            json!({ "author": ada, "tag": "greeting" }),
        )
        .await;
    assert_eq!(field(&greeting, "body"), [&json!("g1")]);
}

#[tokio::test]
async fn paginate_to_the_end() {
    let (app, ..) = seeded().await;
    let mut cursor = Json::Null;
    let mut bodies = Vec::new();
    let mut pages = 0;
    loop {
        let page = app
            .query(
                "messages:page",
                json!({ "channel": "general", "paginationOpts": { "numItems": 3.0, "cursor": cursor } }),
            )
            .await;
        pages += 1;
        assert!(pages <= 3, "pagination does not end: {page}");
        for doc in page["page"].as_array().expect("a page") {
            bodies.push(doc["body"].as_str().expect("a body").to_owned());
        }
        assert!(page["continueCursor"].is_string(), "{page}");
        if page["isDone"] == json!(true) {
            break;
        }
        cursor = page["continueCursor"].clone();
    }
    assert_eq!(bodies, ["g4", "g3", "g2", "g1"]);
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn patch_replace_and_missing_documents() {
    let (app, ada, bob, ids) = seeded().await;
    // patch: sets body and edited, removes tags (`undefined`).
    assert_eq!(
        app.mutation("messages:edit", json!({ "id": ids[0], "body": "edited" }))
            .await,
        Json::Null
    );
    let doc = app
        .query("messages:latest", json!({ "channel": "general" }))
        .await;
    assert_eq!(doc["body"], json!("g4"));
    let mine = app
        .query("messages:byAuthor", json!({ "author": ada }))
        .await;
    assert_eq!(
        without_system_fields(&mine[0]),
        json!({ "author": ada, "channel": "general", "body": "edited", "edited": true, "time": (T0 + 1000) as f64 })
    );

    // replace: keeps channel and time, changes the author (so the by_author index moves).
    let before = app.dump("messages")[1].clone();
    assert_eq!(
        app.mutation(
            "messages:rewrite",
            json!({ "id": ids[1], "update": { "body": "rewritten", "author": ada } }),
        )
        .await,
        Json::Null
    );
    let after = app
        .dump("messages")
        .into_iter()
        .find(|doc| doc["_id"] == json!(ids[1]))
        .expect("still there");
    assert_eq!(after["_creationTime"], before["_creationTime"]);
    assert_eq!(
        without_system_fields(&after),
        json!({ "author": ada, "channel": "general", "body": "rewritten", "time": (T0 + 2000) as f64 })
    );
    let bobs = app
        .query("messages:byAuthor", json!({ "author": bob }))
        .await;
    assert_eq!(field(&bobs, "body"), [&json!("g3")]);

    // A deleted document: `db.get` finds nothing and the ConvexError carries the id.
    app.delete(&ids[2..3]).await;
    let err = app
        .try_mutation(
            "messages:rewrite",
            json!({ "id": ids[2], "update": { "body": "gone", "author": ada } }),
        )
        .await
        .expect_err("deleted");
    assert_eq!(
        error_data(&err),
        Some(json!({ "code": "NOT_FOUND", "id": ids[2] }))
    );
    // Patching it is an uncaught error.
    let err = app
        .try_mutation("messages:edit", json!({ "id": ids[2], "body": "x" }))
        .await
        .expect_err("deleted");
    assert_eq!(developer_kind(&err), Some(DeveloperErrorKind::Uncaught));
    assert!(err.to_string().contains("nonexistent"), "{err}");
    assert_eq!(app.dump("messages").len(), 4);
}

#[tokio::test]
async fn internal_counter_functions_with_int64() {
    let app = App::new(T0);
    assert_eq!(
        app.query("counters:get", json!({ "name": "messages" }))
            .await,
        Json::Null
    );
    // insert on first use, then `.unique()` + patch.
    assert_eq!(
        app.mutation(
            "counters:increment",
            json!({ "name": "messages", "by": int64(2) })
        )
        .await,
        int64(2)
    );
    assert_eq!(
        app.mutation(
            "counters:increment",
            json!({ "name": "messages", "by": int64(-5) })
        )
        .await,
        int64(-3)
    );
    assert_eq!(
        app.query("counters:get", json!({ "name": "messages" }))
            .await,
        int64(-3)
    );
    let counters = app.dump("counters");
    assert_eq!(counters.len(), 1);
    assert_eq!(
        without_system_fields(&counters[0]),
        json!({ "name": "messages", "value": int64(-3) })
    );
}

#[tokio::test]
async fn send_remove_and_read_the_counter() {
    let app = App::new(T0);
    let ada = register(&app, "ada", "admin").await;
    app.clock.set(T0 + 1000);
    let m1 = id_of(
        &app.mutation(
            "messages:send",
            json!({ "author": ada, "channel": "general", "body": "hello", "tags": ["x"] }),
        )
        .await,
    );
    app.clock.set(T0 + 2000);
    let m2 = id_of(
        &app.mutation(
            "messages:send",
            json!({ "author": ada, "channel": "general", "body": "again" }),
        )
        .await,
    );
    let listed = app
        .query("messages:list", json!({ "channel": "general" }))
        .await;
    assert_eq!(
        field(&listed, "time"),
        [&json!((T0 + 2000) as f64), &json!((T0 + 1000) as f64)]
    );
    assert_eq!(
        app.query("counters:read", json!({ "name": "messages" }))
            .await,
        int64(2)
    );
    // A deleted user id: ConvexError with data, nothing written.
    let bob = register(&app, "bob", "member").await;
    app.delete(std::slice::from_ref(&bob)).await;
    let err = app
        .try_mutation(
            "messages:send",
            json!({ "author": bob, "channel": "general", "body": "?" }),
        )
        .await
        .expect_err("unknown user");
    assert_eq!(
        error_data(&err),
        Some(json!({ "code": "UNKNOWN_USER", "author": bob }))
    );
    app.mutation("messages:remove", json!({ "id": m1 })).await;
    assert_eq!(
        app.query("counters:read", json!({ "name": "messages" }))
            .await,
        int64(1)
    );
    let left = app.dump("messages");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["_id"], json!(m2));
}

#[tokio::test]
async fn stats_and_purge_channel() {
    let (app, ..) = seeded().await;
    app.mutation(
        "counters:increment",
        json!({ "name": "messages", "by": int64(5) }),
    )
    .await;
    assert_eq!(
        app.query("admin/stats", json!({})).await,
        json!({ "users": 2.0, "messages": 5.0, "counted": int64(5) })
    );
    assert_eq!(
        app.mutation("admin/stats:purgeChannel", json!({ "channel": "general" }))
            .await,
        json!(4.0)
    );
    assert_eq!(
        app.query("admin/stats:default", json!({})).await,
        json!({ "users": 2.0, "messages": 1.0, "counted": int64(1) })
    );
}
