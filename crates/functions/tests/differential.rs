//! Differential test against `convex-test` (the npm package's JS model of the Convex backend):
//! `tests/convex-project/reference/scenario.json` replayed through [`functions::FunctionRunner`]
//! on the real CLI bundle, compared step by step with `reference/expected.json`, the output of
//! `tests/convex-project/reference.sh` (convex 1.48.0, convex-test 0.0.60; deterministic, so it
//! is checked in — regenerate it with
//! `tests/convex-project/reference.sh tests/convex-project/reference/expected.json` after
//! changing the scenario or the app).
//!
//! Compared: each step's resolved arguments, its result or its `ConvexError` data, and the final
//! contents of every table. Mapped rather than compared: document ids (a bijection between
//! convex-test's counter ids and Chorus's, which must also agree on the table) and pagination
//! cursors (a bijection of opaque strings). `_creationTime` values are not compared (convex-test
//! uses the faked `Date.now()`, Chorus the system clock), but documents are compared in order, and
//! the final tables are listed in `_creationTime` order on both sides, so their order is.
//!
//! 5 of the app's functions (9 of the 23 steps) call `ctx.runQuery` / `ctx.runMutation`
//! (`1.0/runUdf`). `scenario_matches_convex_test` replays everything strictly through the
//! runner; `scenario_matches_convex_test_with_nested_calls_emulated`, from before `1.0/runUdf`
//! existed, runs the other 14 steps through the runner and stands in for the 9 with a harness
//! emulation ([`emulate`]) that has the same effects, built from direct transactions and the
//! app's own internal functions; it is kept as a check of the emulation's assumptions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod convex_project;

use std::collections::BTreeMap;

use convex_project::*;
use functions::FunctionError;
use serde_json::{Value as Json, json};
use value::DocumentId;

/// Functions that call `ctx.runQuery` / `ctx.runMutation` (`1.0/runUdf`).
const NEEDS_RUN_UDF: &[&str] = &[
    "messages:send",
    "messages:remove",
    "counters:read",
    "admin/stats:default",
    "admin/stats:purgeChannel",
];

fn reference() -> Json {
    let path = project_dir().join("reference/expected.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json is JSON")
}

fn scenario() -> Json {
    let path = project_dir().join("reference/scenario.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("scenario.json is JSON")
}

/// A one-to-one correspondence between the two runs' strings of one kind.
#[derive(Default)]
struct Bijection {
    forward: BTreeMap<String, String>,
    backward: BTreeMap<String, String>,
}

impl Bijection {
    /// Records or checks that `reference` corresponds to `chorus`.
    fn pair(&mut self, reference: &str, chorus: &str) -> Result<(), String> {
        match (self.forward.get(reference), self.backward.get(chorus)) {
            (None, None) => {
                self.forward.insert(reference.into(), chorus.into());
                self.backward.insert(chorus.into(), reference.into());
                Ok(())
            }
            (Some(c), _) if c == chorus => Ok(()),
            (Some(c), _) => Err(format!(
                "{reference:?} was {c:?} in Chorus before, now {chorus:?}"
            )),
            (None, Some(r)) => Err(format!(
                "Chorus's {chorus:?} was convex-test's {r:?} before, now {reference:?}"
            )),
        }
    }
}

/// convex-test's ids: a decimal counter followed by the table name.
fn reference_id_table(s: &str) -> Option<&str> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let table = &s[digits..];
    (digits >= 10 && !table.is_empty() && table.bytes().all(|b| b.is_ascii_alphabetic()))
        .then_some(table)
}

struct Comparison<'a> {
    app: &'a App,
    ids: Bijection,
    cursors: Bijection,
    differences: Vec<String>,
}

impl Comparison<'_> {
    fn differ(&mut self, at: &str, what: String) {
        self.differences.push(format!("{at}: {what}"));
    }

    fn compare(&mut self, at: &str, reference: &Json, chorus: &Json) {
        match (reference, chorus) {
            (Json::Object(r), Json::Object(c)) => {
                let keys: std::collections::BTreeSet<&String> = r.keys().chain(c.keys()).collect();
                for key in keys {
                    let here = format!("{at}.{key}");
                    match (r.get(key), c.get(key)) {
                        (Some(rv), Some(cv)) if key == "_creationTime" => {
                            if !(rv.is_number() && cv.is_number()) {
                                self.differ(&here, format!("{rv} vs {cv}"));
                            }
                        }
                        (Some(rv), Some(cv)) => self.compare(&here, rv, cv),
                        (Some(rv), None) => {
                            self.differ(&here, format!("missing in Chorus (convex-test: {rv})"));
                        }
                        (None, Some(cv)) => {
                            self.differ(&here, format!("only in Chorus: {cv}"));
                        }
                        (None, None) => unreachable!(),
                    }
                }
            }
            (Json::Array(r), Json::Array(c)) => {
                if r.len() != c.len() {
                    self.differ(
                        at,
                        format!(
                            "{} items in convex-test, {} in Chorus:\n    convex-test {reference}\n    chorus      {chorus}",
                            r.len(),
                            c.len()
                        ),
                    );
                    return;
                }
                for (i, (rv, cv)) in r.iter().zip(c).enumerate() {
                    self.compare(&format!("{at}[{i}]"), rv, cv);
                }
            }
            (Json::String(r), Json::String(c))
                if at.ends_with(".continueCursor") || at.ends_with(".paginationOpts.cursor") =>
            {
                if let Err(e) = self.cursors.pair(r, c) {
                    self.differ(at, format!("cursor mapping: {e}"));
                }
            }
            (Json::String(r), Json::String(c)) => {
                let chorus_table = DocumentId::decode(c).ok().and_then(|id| {
                    self.app
                        .db()
                        .catalog()
                        .table(id.table)
                        .map(|t| t.name.clone())
                });
                match (reference_id_table(r), chorus_table) {
                    (Some(rt), Some(ct)) => {
                        if rt != ct {
                            self.differ(at, format!("an id of {rt} vs an id of {ct}"));
                        } else if let Err(e) = self.ids.pair(r, c) {
                            self.differ(at, format!("id mapping: {e}"));
                        }
                    }
                    _ if r == c => {}
                    _ => self.differ(at, format!("{reference} vs {chorus}")),
                }
            }
            (Json::Number(r), Json::Number(c)) => {
                if r.as_f64() != c.as_f64() {
                    self.differ(at, format!("{r} vs {c}"));
                }
            }
            _ if reference == chorus => {}
            _ => self.differ(at, format!("convex-test {reference} vs Chorus {chorus}")),
        }
    }
}

/// Replaces `{"$ref": "step"}` / `{"$ref": "step.field"}` with an earlier step's result, as
/// `reference/reference.test.ts` does (Convex JSON in, Convex JSON out).
fn resolve(json: &Json, results: &BTreeMap<String, Json>) -> Result<Json, String> {
    match json {
        Json::Array(items) => items.iter().map(|item| resolve(item, results)).collect(),
        Json::Object(object) => {
            if let Some(Json::String(reference)) = object.get("$ref") {
                let mut path = reference.split('.');
                let step = path.next().unwrap_or_default();
                let mut value = results
                    .get(step)
                    .ok_or_else(|| format!("no result for step {step}"))?;
                for field in path {
                    value = value
                        .get(field)
                        .ok_or_else(|| format!("no field {field} in the result of {step}"))?;
                }
                return Ok(value.clone());
            }
            if object.keys().any(|key| key.starts_with('$')) {
                return Ok(json.clone());
            }
            object
                .iter()
                .map(|(key, value)| Ok((key.clone(), resolve(value, results)?)))
                .collect::<Result<serde_json::Map<_, _>, String>>()
                .map(Json::Object)
        }
        other => Ok(other.clone()),
    }
}

/// What one step came to in Chorus.
enum Outcome {
    Result(Json),
    ConvexError(Json),
    Failed(String),
}

async fn run_step(app: &App, kind: &str, path: &str, args: Json) -> Outcome {
    let result = if kind == "query" {
        app.try_query(path, args).await
    } else {
        app.try_mutation(path, args).await
    };
    match result {
        Ok(value) => Outcome::Result(value),
        Err(FunctionError::ConvexError { data, .. }) => Outcome::ConvexError(data.to_json()),
        Err(e) => Outcome::Failed(format!("{e:?}")),
    }
}

fn messages_by_channel(channel: &Json) -> Json {
    json!({
        "type": "IndexRange",
        "indexName": "messages.by_channel_time",
        "range": [{ "type": "Eq", "fieldPath": "channel", "value": channel }],
        "order": null,
    })
}

fn count(app: &App, table: &str) -> f64 {
    app.dump(table).len() as f64
}

/// Stands in for a function that needs `1.0/runUdf`: the same effects and result, from direct
/// transactions plus the app's own internal functions (`counters:get`, `counters:increment`)
/// run through the runner. Not the function under test: only what keeps the scenario's data
/// the same for the steps that are.
async fn emulate(app: &App, path: &str, args: &Json, now_ms: u64) -> Outcome {
    let increment = |by: i64| async move {
        app.mutation(
            "counters:increment",
            json!({ "name": "messages", "by": int64(by) }),
        )
        .await;
    };
    let counted = || async {
        match app
            .query("counters:get", json!({ "name": "messages" }))
            .await
        {
            Json::Null => int64(0),
            n => n,
        }
    };
    match path {
        "messages:send" => {
            let found = app
                .query("users:get", json!({ "id": args["author"] }))
                .await;
            if found.is_null() {
                return Outcome::ConvexError(
                    json!({ "code": "UNKNOWN_USER", "author": args["author"] }),
                );
            }
            let mut doc = args.clone();
            doc["time"] = json!(now_ms as f64);
            let [id] = &app.seed(MESSAGES, vec![doc]).await[..] else {
                unreachable!()
            };
            increment(1).await;
            Outcome::Result(json!(id))
        }
        "messages:remove" => {
            app.delete(&[args["id"].as_str().expect("an id").to_owned()])
                .await;
            increment(-1).await;
            Outcome::Result(Json::Null)
        }
        "counters:read" => Outcome::Result(counted().await),
        "admin/stats:default" => Outcome::Result(json!({
            "users": count(app, "users"),
            "messages": count(app, "messages"),
            "counted": counted().await,
        })),
        "admin/stats:purgeChannel" => {
            let mut txn = app.db().begin().expect("begin");
            let ids: Vec<String> = app
                .scan(&mut txn, messages_by_channel(&args["channel"]))
                .into_iter()
                .map(|doc| doc["_id"].to_json().as_str().expect("an id").to_owned())
                .collect();
            drop(txn);
            app.delete(&ids).await;
            increment(-(ids.len() as i64)).await;
            Outcome::Result(json!(ids.len() as f64))
        }
        other => panic!("no emulation of {other}"),
    }
}

/// Replays the scenario; returns every difference from the reference (empty: the same).
async fn replay(emulate_nested_calls: bool) -> Vec<String> {
    let reference = reference();
    let t0 = reference["t0"].as_u64().expect("t0");
    let step_ms = reference["stepMs"].as_u64().expect("stepMs");
    let app = App::new(t0);
    let mut cmp = Comparison {
        app: &app,
        ids: Bijection::default(),
        cursors: Bijection::default(),
        differences: Vec::new(),
    };
    let scenario = scenario();
    let steps = scenario["steps"].as_array().expect("steps");
    let expected = reference["steps"].as_array().expect("reference steps");
    assert_eq!(steps.len(), expected.len(), "regenerate expected.json");
    let mut results = BTreeMap::new();
    for (i, (step, expected)) in steps.iter().zip(expected).enumerate() {
        let name = step["name"].as_str().expect("name");
        let path = step["fn"].as_str().expect("fn");
        let kind = step["kind"].as_str().expect("kind");
        assert_eq!(
            (expected["name"].as_str(), expected["fn"].as_str()),
            (Some(name), Some(path)),
            "expected.json is not from this scenario.json: regenerate it"
        );
        let now_ms = t0 + i as u64 * step_ms;
        app.clock.set(now_ms);
        let at = format!("step {i} {name} ({path})");
        let args = match resolve(&step["args"], &results) {
            Ok(args) => args,
            Err(e) => {
                cmp.differ(&at, format!("not run: {e}"));
                continue;
            }
        };
        cmp.compare(&format!("{at} args"), &expected["args"], &args);
        let outcome = if emulate_nested_calls && NEEDS_RUN_UDF.contains(&path) {
            emulate(&app, path, &args, now_ms).await
        } else {
            run_step(&app, kind, path, args).await
        };
        match (outcome, expected.get("result"), expected.get("errorData")) {
            (Outcome::Result(value), Some(want), _) => {
                cmp.compare(&format!("{at} result"), want, &value);
                results.insert(name.to_owned(), value);
            }
            (Outcome::ConvexError(data), _, Some(want)) => {
                cmp.compare(&format!("{at} errorData"), want, &data);
            }
            (Outcome::Result(value), None, _) => {
                cmp.differ(&at, format!("returned {value}, convex-test threw"));
                results.insert(name.to_owned(), value);
            }
            (Outcome::ConvexError(data), ..) => {
                cmp.differ(
                    &at,
                    format!("threw ConvexError {data}, convex-test returned"),
                );
            }
            (Outcome::Failed(e), ..) => cmp.differ(&at, format!("failed in Chorus: {e}")),
        }
    }
    for (table, want) in reference["tables"].as_object().expect("tables") {
        let dump = app.dump(table);
        let times: Vec<f64> = dump
            .iter()
            .map(|doc| doc["_creationTime"].as_f64().expect("_creationTime"))
            .collect();
        if !times.is_sorted_by(|a, b| a < b) {
            cmp.differ(
                &format!("table {table}"),
                format!("not in strictly increasing _creationTime order: {times:?}"),
            );
        }
        cmp.compare(&format!("table {table}"), want, &Json::Array(dump));
    }
    cmp.differences
}

fn report(differences: &[String]) {
    assert!(
        differences.is_empty(),
        "{} differences from convex-test:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[test]
fn reference_is_from_the_pinned_versions_and_this_scenario() {
    let reference = reference();
    assert_eq!(
        reference["versions"],
        json!({ "convex": "1.48.0", "convex-test": "0.0.60" })
    );
    let scenario = scenario();
    assert_eq!(reference["t0"], scenario["t0"]);
    assert_eq!(reference["stepMs"], scenario["stepMs"]);
    let names = |steps: &Json| -> Vec<(String, String, String)> {
        steps
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["name"].to_string(),
                    s["kind"].to_string(),
                    s["fn"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(names(&reference["steps"]), names(&scenario["steps"]));
}

/// Differences that are not Chorus bugs, each with why. None at present (a full page looks one
/// row ahead, so a page ending at the last document is done in both: [`full_last_page_is_done`]).
const KNOWN_DIFFERENCES: &[&str] = &[];

/// Fails on any difference but the known ones, and when a known one is gone.
fn check(differences: &[String]) {
    let unexpected: Vec<String> = differences
        .iter()
        .filter(|d| !KNOWN_DIFFERENCES.contains(&d.as_str()))
        .cloned()
        .collect();
    report(&unexpected);
    assert_eq!(
        differences, KNOWN_DIFFERENCES,
        "a known difference went away: update KNOWN_DIFFERENCES"
    );
}

#[tokio::test]
async fn scenario_matches_convex_test_with_nested_calls_emulated() {
    check(&replay(true).await);
}

#[tokio::test]
async fn full_last_page_is_done() {
    let app = App::new(1_700_000_000_000);
    let ada = app
        .mutation("users:register", json!({ "name": "ada", "role": "admin" }))
        .await;
    app.seed(
        MESSAGES,
        vec![json!({ "author": ada, "channel": "general", "body": "only", "time": 1.0 })],
    )
    .await;
    let page = |cursor: Json| {
        app.query(
            "messages:page",
            json!({ "channel": "general", "paginationOpts": { "numItems": 1.0, "cursor": cursor } }),
        )
    };
    // A full page that ends at the last document is done, as in convex-test; its cursor, if a
    // client follows it anyway, gives an empty page that is done too.
    let first = page(Json::Null).await;
    assert_eq!(first["page"].as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(first["isDone"], json!(true), "{first}");
    let second = page(first["continueCursor"].clone()).await;
    assert_eq!(second["page"], json!([]), "{second}");
    assert_eq!(second["isDone"], json!(true), "{second}");
}

#[tokio::test]
async fn scenario_matches_convex_test() {
    check(&replay(false).await);
}
