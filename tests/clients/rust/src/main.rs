//! crates.io `convex` 0.10.4 (`convex::ConvexClient`, WebSocket sync protocol) against a Chorus
//! server running tests/convex-project:
//!
//! ```text
//! chorus-client-rust URL [ADMIN_KEY]        (or CHORUS_URL, CHORUS_ADMIN_KEY)
//! ```
//!
//! Queries, mutations, an action, ConvexError data, function errors, and a subscription that
//! must see the writes of its own client and of a second client. Prints `ok` per step and PASS,
//! or `FAIL in step …` and exits 1 at the first mismatch. Every wait is bounded
//! ([`STEP_TIMEOUT`]) and so is the whole run ([`DRIVER_TIMEOUT`]): the client itself reconnects
//! forever, so without a bound a broken server would hang the driver.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
use convex::{ConvexClient, FunctionResult, QuerySubscription, Value};
use futures::StreamExt;
use serde_json::json;

/// Bound on any single wait: a call, a subscription update.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the whole run; run.sh adds an outer `timeout` as well.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(170);
const NAME: &str = "rust";

type Args = BTreeMap<String, Value>;

fn args<const N: usize>(pairs: [(&str, Value); N]) -> Args {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A Convex value from JSON (numbers become float64, as in JavaScript).
fn from_json(json: serde_json::Value) -> Value {
    match Value::try_from(json) {
        Ok(value) => value,
        Err(e) => panic!("test literal is not a Convex value: {e}"),
    }
}

/// The value of a successful call; a function error is a failure naming `what`.
fn ok(result: FunctionResult, what: &str) -> anyhow::Result<Value> {
    match result {
        FunctionResult::Value(value) => Ok(value),
        FunctionResult::ErrorMessage(message) => bail!("{what} failed: {message}"),
        FunctionResult::ConvexError(e) => {
            bail!(
                "{what} failed with ConvexError {:?} data {:?}",
                e.message,
                e.data
            )
        }
    }
}

async fn bounded<T>(what: &str, fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(result) => result.with_context(|| format!("while waiting for: {what}")),
        Err(_) => bail!("timed out after {STEP_TIMEOUT:?} waiting for: {what}"),
    }
}

fn field<'a>(value: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    match value {
        Value::Object(fields) => fields
            .get(name)
            .ok_or_else(|| anyhow!("no field {name:?} in {value:?}")),
        other => bail!("an object with {name:?} expected, got {other:?}"),
    }
}

fn string(value: &Value) -> anyhow::Result<&str> {
    match value {
        Value::String(s) => Ok(s),
        other => bail!("a string expected, got {other:?}"),
    }
}

fn array(value: &Value) -> anyhow::Result<&[Value]> {
    match value {
        Value::Array(items) => Ok(items),
        other => bail!("an array expected, got {other:?}"),
    }
}

fn bodies(messages: &Value) -> anyhow::Result<Vec<String>> {
    array(messages)?
        .iter()
        .map(|m| Ok(string(field(m, "body")?)?.to_string()))
        .collect()
}

/// The document's fields without `_id` and `_creationTime`, after checking their types.
fn user_fields(doc: &Value) -> anyhow::Result<BTreeMap<String, Value>> {
    let Value::Object(fields) = doc else {
        bail!("a document expected, got {doc:?}");
    };
    ensure!(
        !string(field(doc, "_id")?)?.is_empty(),
        "empty _id in {doc:?}"
    );
    match field(doc, "_creationTime")? {
        Value::Float64(t) if *t > 1e12 => {}
        other => bail!("_creationTime should be a float64 ms timestamp, got {other:?}"),
    }
    let mut fields = fields.clone();
    fields.remove("_id");
    fields.remove("_creationTime");
    Ok(fields)
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(
    actual: T,
    expected: T,
    what: &str,
) -> anyhow::Result<()> {
    ensure!(
        actual == expected,
        "{what}: expected {expected:?}, got {actual:?}"
    );
    Ok(())
}

/// Reads a subscription and records each distinct result.
struct Watch {
    subscription: QuerySubscription,
    observed: Vec<Vec<String>>,
}

impl Watch {
    /// Reads until the subscription shows `expected`, at most STEP_TIMEOUT in all.
    async fn wait_for(&mut self, expected: &[&str]) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while self.observed.last().is_none_or(|last| last != expected) {
            let next = tokio::time::timeout_at(deadline.into(), self.subscription.next());
            let result = match next.await {
                Ok(Some(result)) => result,
                Ok(None) => bail!("the subscription ended; observed {:?}", self.observed),
                Err(_) => bail!(
                    "timed out after {STEP_TIMEOUT:?} waiting for {expected:?}; observed {:?}",
                    self.observed
                ),
            };
            let current = bodies(&ok(result, "subscription to messages:list")?)?;
            if self.observed.last() != Some(&current) {
                self.observed.push(current);
            }
        }
        Ok(())
    }
}

struct Steps {
    current: String,
}

impl Steps {
    fn start(&mut self, name: &str) -> Instant {
        self.current = name.to_string();
        Instant::now()
    }

    fn ok(&self, started: Instant) {
        println!(
            "[{NAME}] ok   {} ({} ms)",
            self.current,
            started.elapsed().as_millis()
        );
    }
}

async fn run(url: &str, admin_key: Option<&str>, steps: &mut Steps) -> anyhow::Result<()> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let random = RandomState::new().hash_one(std::process::id()) as u32;
    let suffix = format!("{millis:x}_{random:08x}");
    println!("[{NAME}] {url}, names end in {suffix}");

    let t = steps.start(&format!("connect to {url}"));
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&address),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("cannot connect to {url}: {e} (is the server running?)"),
        Err(_) => bail!("cannot connect to {url}: no answer within 5 s"),
    }
    let mut client = bounded("ConvexClient::new", ConvexClient::new(url)).await?;
    let mut other = bounded("second ConvexClient::new", ConvexClient::new(url)).await?;
    steps.ok(t);

    let name = format!("rsuser_{suffix}");
    let channel = format!("rs_{suffix}");

    let t = steps.start("mutation users:register returns an id");
    let registered = bounded("users:register", async {
        let register = args([("name", name.as_str().into()), ("role", "member".into())]);
        ok(
            client.mutation("users:register", register).await?,
            "users:register",
        )
    })
    .await?;
    let user_id = string(&registered)?.to_string();
    ensure!(!user_id.is_empty(), "empty user id");
    steps.ok(t);

    let t = steps.start("query users:get reads the document back");
    let doc = bounded("users:get", async {
        let get = args([("id", user_id.as_str().into())]);
        ok(client.query("users:get", get).await?, "users:get")
    })
    .await?;
    expect_eq(string(field(&doc, "_id")?)?, user_id.as_str(), "_id")?;
    expect_eq(
        Value::Object(user_fields(&doc)?),
        from_json(json!({"name": name, "role": "member"})),
        "user",
    )?;
    steps.ok(t);

    let t = steps.start("a duplicate register fails with ConvexError data NAME_TAKEN");
    let duplicate = bounded("duplicate users:register", async {
        let register = args([("name", name.as_str().into()), ("role", "admin".into())]);
        client.mutation("users:register", register).await
    })
    .await?;
    match duplicate {
        FunctionResult::ConvexError(e) => expect_eq(
            e.data,
            from_json(json!({"code": "NAME_TAKEN", "name": name})),
            "ConvexError data",
        )?,
        other => bail!("expected a ConvexError, got {other:?}"),
    }
    steps.ok(t);

    let t = steps.start("an unknown function is a function error");
    let unknown = bounded("nope:missing", async {
        client.query("nope:missing", Args::new()).await
    })
    .await?;
    match unknown {
        FunctionResult::ErrorMessage(message) => ensure!(
            message.contains("Could not find public function"),
            "error message: {message:?}"
        ),
        other => bail!("expected an error message, got {other:?}"),
    }
    steps.ok(t);

    let t = steps.start("counters:read returns an int64");
    let count = bounded("counters:read", async {
        let read = args([("name", format!("none_{suffix}").into())]);
        ok(client.query("counters:read", read).await?, "counters:read")
    })
    .await?;
    expect_eq(count, Value::Int64(0), "missing counter")?;
    steps.ok(t);

    let t = steps.start("subscribe to messages:list delivers the empty channel");
    let subscription = bounded("subscribe", async {
        let list = args([("channel", channel.as_str().into())]);
        client.subscribe("messages:list", list).await
    })
    .await?;
    let mut watch = Watch {
        subscription,
        observed: Vec::new(),
    };
    watch.wait_for(&[]).await?;
    steps.ok(t);

    let send = |body: &str| {
        args([
            ("author", user_id.as_str().into()),
            ("channel", channel.as_str().into()),
            ("body", body.into()),
        ])
    };

    let t = steps.start("a mutation on the subscribing client updates the subscription");
    let one = bounded("messages:send", async {
        ok(
            client.mutation("messages:send", send("one")).await?,
            "messages:send",
        )
    })
    .await?;
    let one = string(&one)?.to_string();
    watch.wait_for(&["one"]).await?;
    steps.ok(t);

    let t = steps.start("a mutation from a second client updates the subscription");
    let two = bounded("second client messages:send", async {
        ok(
            other.mutation("messages:send", send("two")).await?,
            "messages:send",
        )
    })
    .await?;
    let two = string(&two)?.to_string();
    watch.wait_for(&["two", "one"]).await?;
    steps.ok(t);

    let t = steps.start("a removal from the second client updates the subscription");
    let removed = bounded("second client messages:remove", async {
        let remove = args([("id", two.as_str().into())]);
        ok(
            other.mutation("messages:remove", remove).await?,
            "messages:remove",
        )
    })
    .await?;
    expect_eq(removed, Value::Null, "remove result")?;
    watch.wait_for(&["one"]).await?;
    steps.ok(t);

    let t = steps.start("the subscription saw the states in order");
    // The client keeps only the newest result, so it may skip a state, never reorder one.
    let expected: [&[&str]; 4] = [&[], &["one"], &["two", "one"], &["one"]];
    let mut rest = expected.iter();
    for state in &watch.observed {
        ensure!(
            rest.any(|e| e == state),
            "observed {:?}, not a subsequence of {expected:?}",
            watch.observed
        );
    }
    steps.ok(t);

    let t = steps.start("messages:list documents have the schema's fields and types");
    let listed = bounded("messages:list", async {
        let list = args([("channel", channel.as_str().into())]);
        ok(client.query("messages:list", list).await?, "messages:list")
    })
    .await?;
    let [message] = array(&listed)? else {
        bail!("one message expected, got {listed:?}");
    };
    expect_eq(string(field(message, "_id")?)?, one.as_str(), "_id")?;
    let mut fields = user_fields(message)?;
    match fields.remove("time") {
        Some(Value::Float64(_)) => {}
        other => bail!("time should be a float64, got {other:?}"),
    }
    expect_eq(
        Value::Object(fields),
        from_json(json!({"author": user_id, "channel": channel, "body": "one"})),
        "message",
    )?;
    steps.ok(t);

    let t = steps.start("action clients:registerAndFetch runs a mutation and a query");
    let carol = format!("rscarol_{suffix}");
    let result = bounded("clients:registerAndFetch", async {
        let register = args([("name", carol.as_str().into())]);
        ok(
            client.action("clients:registerAndFetch", register).await?,
            "action",
        )
    })
    .await?;
    let carol_id = string(field(&result, "id")?)?.to_string();
    expect_eq(
        result,
        from_json(json!({"id": carol_id, "name": carol, "role": "member", "email": null})),
        "action result",
    )?;
    steps.ok(t);

    let t = steps.start("a ConvexError from an action arrives with its data");
    let failed = bounded("clients:registerAndFetch", async {
        let register = args([("name", name.as_str().into())]);
        client.action("clients:registerAndFetch", register).await
    })
    .await?;
    match failed {
        FunctionResult::ConvexError(e) => expect_eq(
            e.data,
            from_json(json!({"code": "NAME_TAKEN", "name": name})),
            "ConvexError data",
        )?,
        other => bail!("expected a ConvexError, got {other:?}"),
    }
    steps.ok(t);

    if let Some(key) = admin_key {
        let t = steps.start("a client with admin auth (Authenticate Admin) can call functions");
        let user = bounded("users:get with admin auth", async {
            let mut admin = ConvexClient::new(url).await?;
            admin.set_admin_auth(key.to_string(), None).await;
            let get = args([("id", user_id.as_str().into())]);
            ok(admin.query("users:get", get).await?, "users:get")
        })
        .await?;
        expect_eq(field(&user, "name")?, &Value::from(name.as_str()), "user")?;
        steps.ok(t);
    } else {
        println!("[{NAME}] skip the admin-auth check: no admin key given");
    }

    Ok(())
}

#[tokio::main]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CHORUS_URL").ok())
        .unwrap_or_default();
    if url.is_empty() {
        eprintln!("usage: chorus-client-rust URL [ADMIN_KEY]   (or CHORUS_URL, CHORUS_ADMIN_KEY)");
        std::process::exit(2);
    }
    let url = url.trim_end_matches('/').to_string();
    let admin_key = std::env::args()
        .nth(2)
        .or_else(|| std::env::var("CHORUS_ADMIN_KEY").ok())
        .filter(|key| !key.is_empty());
    let mut steps = Steps {
        current: "start".into(),
    };
    let outcome =
        match tokio::time::timeout(DRIVER_TIMEOUT, run(&url, admin_key.as_deref(), &mut steps))
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow!(
                "the driver did not finish within {DRIVER_TIMEOUT:?}"
            )),
        };
    match outcome {
        Ok(()) => {
            println!("[{NAME}] PASS");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("[{NAME}] FAIL in step {:?}: {e:#}", steps.current);
            std::process::exit(1);
        }
    }
}
