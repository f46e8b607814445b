"""PyPI `convex` 0.8.1 against a Chorus server running tests/convex-project.

    .venv/bin/python driver.py URL [ADMIN_KEY]     (or CHORUS_URL, CHORUS_ADMIN_KEY)

Uses `convex.ConvexClient` (the WebSocket client; the Rust crate 0.10.4 built in) for queries,
mutations, an action and a subscription, and the package's pure-Python `ConvexHttpClient` as
the "other client" whose writes the subscription must see. Exits 0 after printing PASS; on the
first mismatch prints FAIL with the step's name and exits 1.

Every wait is bounded. The client's blocking calls check for Python signals while they wait,
so a SIGALRM handler ends a stuck step with an exception; `faulthandler` is a second,
GIL-independent watchdog for the whole run, and run.sh adds an outer `timeout`.
"""

from __future__ import annotations

import faulthandler
import os
import secrets
import signal
import socket
import sys
import time
import traceback
import urllib.parse
from typing import Any, Callable, List, Optional

import convex
from convex import ConvexClient, ConvexError, ConvexInt64
from convex.http_client import ConvexHttpClient

STEP_TIMEOUT_S = 20  # any single wait: a call, a subscription update
DRIVER_TIMEOUT_S = 170  # the whole run
NAME = "python"


class Failure(Exception):
    pass


class StepTimeout(BaseException):
    """Raised from the SIGALRM handler; a BaseException so that no `except Exception` eats it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise StepTimeout(f"timed out after {STEP_TIMEOUT_S} s")


class Bounded:
    """`with Bounded(what):` raises StepTimeout if the block takes longer than STEP_TIMEOUT_S."""

    def __init__(self, what: str, seconds: int = STEP_TIMEOUT_S) -> None:
        self.what = what
        self.seconds = seconds

    def __enter__(self) -> None:
        signal.alarm(self.seconds)

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        signal.alarm(0)
        if isinstance(value, StepTimeout):
            raise Failure(f"timed out after {self.seconds} s waiting for: {self.what}")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def eq(actual: Any, expected: Any, what: str) -> None:
    if actual != expected or type(actual) is not type(expected):
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def expect_error(call: Callable[[], Any], what: str) -> BaseException:
    try:
        with Bounded(what):
            value = call()
    except Failure:
        raise
    except Exception as e:  # noqa: BLE001 - the error is what is checked
        return e
    raise Failure(f"{what}: expected an error, got the value {value!r}")


def user_fields(doc: Any, table: str) -> dict:
    """Checks a document's system fields and returns the document without them."""
    check(isinstance(doc, dict), f"{table} document expected, got {doc!r}")
    check(isinstance(doc.get("_id"), str) and doc["_id"] != "", f"{table}._id: {doc!r}")
    created = doc.get("_creationTime")
    check(
        isinstance(created, float) and created > 1e12,
        f"{table}._creationTime should be a float64 ms timestamp: {created!r}",
    )
    return {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}


def bodies(messages: Any) -> List[str]:
    check(isinstance(messages, list), f"a list of messages expected, got {messages!r}")
    return [m["body"] for m in messages]


current_step = "start"


def step(name: str) -> Callable[[Callable[[], None]], None]:
    """Decorator: runs the function at once as a named step."""

    def run(body: Callable[[], None]) -> None:
        global current_step
        current_step = name
        started = time.monotonic()
        body()
        print(f"[{NAME}] ok   {name} ({(time.monotonic() - started) * 1000:.0f} ms)", flush=True)

    return run


def check_reachable(url: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=5).close()
    except OSError as e:
        raise Failure(f"cannot connect to {url}: {e} (is the server running?)") from None


def main() -> None:
    url = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CHORUS_URL", "")).rstrip("/")
    if not url:
        print(f"usage: {sys.argv[0]} URL [ADMIN_KEY]   (or CHORUS_URL, CHORUS_ADMIN_KEY)", file=sys.stderr)
        sys.exit(2)
    eq(convex.__version__, "0.8.1", "convex package version")
    suffix = f"{int(time.time() * 1000):x}_{secrets.token_hex(4)}"
    print(f"[{NAME}] {url}, names end in {suffix}", flush=True)

    @step(f"connect to {url}")
    def _() -> None:
        check_reachable(url)

    client = ConvexClient(url)
    http = ConvexHttpClient(url)
    channel = f"py_{suffix}"
    name = f"pyuser_{suffix}"
    state: dict = {}

    @step("mutation users:register returns an id")
    def _() -> None:
        with Bounded("users:register"):
            user_id = client.mutation("users:register", {"name": name, "role": "member"})
        check(isinstance(user_id, str) and user_id != "", f"id: {user_id!r}")
        state["user"] = user_id

    @step("query users:get reads the document back")
    def _() -> None:
        with Bounded("users:get"):
            doc = client.query("users:get", {"id": state["user"]})
        eq(doc["_id"], state["user"], "_id")
        eq(user_fields(doc, "users"), {"name": name, "role": "member"}, "user")

    @step("a duplicate register raises ConvexError with data NAME_TAKEN")
    def _() -> None:
        e = expect_error(
            lambda: client.mutation("users:register", {"name": name, "role": "admin"}),
            "duplicate register",
        )
        check(isinstance(e, ConvexError), f"expected ConvexError, got {type(e).__name__}: {e}")
        assert isinstance(e, ConvexError)
        eq(e.data, {"code": "NAME_TAKEN", "name": name}, "ConvexError data")

    @step("an unknown function raises a plain error")
    def _() -> None:
        e = expect_error(lambda: client.query("nope:missing", {}), "unknown function")
        check(not isinstance(e, ConvexError), f"expected a plain error, got ConvexError {e}")
        check("Could not find public function" in str(e), f"error: {e!r}")

    @step("counters:read returns an int64")
    def _() -> None:
        with Bounded("counters:read"):
            value = client.query("counters:read", {"name": f"none_{suffix}"})
        eq(value, ConvexInt64(0), "missing counter")
        check(isinstance(value, ConvexInt64), f"expected ConvexInt64, got {value!r}")

    sub = None
    observed: List[List[str]] = []

    def wait_for(expected: List[str], what: str) -> None:
        """Reads the subscription until it shows `expected`; records each distinct result."""
        assert sub is not None
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not observed or observed[-1] != expected:
            left = int(deadline - time.monotonic()) + 1
            if time.monotonic() >= deadline:
                raise Failure(f"timed out waiting for {what}; observed {observed!r}")
            try:
                with Bounded(f"{what}; observed so far {observed!r}", left):
                    value = next(sub)
            except ConvexError as e:
                raise Failure(f"subscription failed: ConvexError {e} data={e.data!r}") from None
            result = bodies(value)
            if not observed or observed[-1] != result:
                observed.append(result)

    @step("subscribe to messages:list delivers the empty channel")
    def _() -> None:
        nonlocal sub
        with Bounded("subscribe"):
            sub = client.subscribe("messages:list", {"channel": channel})
        wait_for([], "the first result []")

    @step("a mutation on the subscribing client updates the subscription")
    def _() -> None:
        with Bounded("messages:send"):
            state["one"] = client.mutation(
                "messages:send", {"author": state["user"], "channel": channel, "body": "one"}
            )
        check(isinstance(state["one"], str), f"message id: {state['one']!r}")
        wait_for(["one"], "['one']")

    @step("a mutation from the Python HTTP client updates the subscription")
    def _() -> None:
        with Bounded("HTTP messages:send"):
            state["two"] = http.mutation(
                "messages:send", {"author": state["user"], "channel": channel, "body": "two"}
            )
        check(isinstance(state["two"], str), f"message id: {state['two']!r}")
        wait_for(["two", "one"], "['two', 'one']")

    @step("a mutation from a second ConvexClient updates the subscription")
    def _() -> None:
        other = ConvexClient(url)
        with Bounded("second client messages:send"):
            state["three"] = other.mutation(
                "messages:send", {"author": state["user"], "channel": channel, "body": "three"}
            )
        wait_for(["three", "two", "one"], "['three', 'two', 'one']")
        with Bounded("second client messages:remove"):
            eq(other.mutation("messages:remove", {"id": state["two"]}), None, "remove result")
        wait_for(["three", "one"], "['three', 'one']")

    @step("the subscription saw the states in order")
    def _() -> None:
        # The client may skip a state (it keeps only the newest), never reorder or invent one.
        expected = [[], ["one"], ["two", "one"], ["three", "two", "one"], ["three", "one"]]
        it = iter(expected)
        check(all(s in it for s in observed), f"observed {observed!r}, not in order")
        eq(observed[-1], ["three", "one"], "last state")

    @step("messages:list documents have the schema's fields and types")
    def _() -> None:
        with Bounded("messages:list"):
            messages = client.query("messages:list", {"channel": channel})
        eq([m["_id"] for m in messages], [state["three"], state["one"]], "ids")
        for m in messages:
            fields = user_fields(m, "messages")
            check(isinstance(fields.pop("time"), float), f"time should be a float: {m!r}")
            eq(sorted(fields), ["author", "body", "channel"], "fields")
            eq(fields["author"], state["user"], "author")

    @step("messages:page paginates with cursors until isDone")
    def _() -> None:
        seen: List[str] = []
        cursor: Optional[str] = None
        for _ in range(10):
            with Bounded("messages:page"):
                page = client.query(
                    "messages:page",
                    {"channel": channel, "paginationOpts": {"numItems": 1, "cursor": cursor}},
                )
            check(len(page["page"]) <= 1, f"page larger than asked: {page!r}")
            check(isinstance(page["continueCursor"], str), f"continueCursor: {page!r}")
            seen += bodies(page["page"])
            if page["isDone"] is True:
                break
            cursor = page["continueCursor"]
        else:
            raise Failure(f"pagination did not finish after 10 pages: {seen!r}")
        eq(seen, ["three", "one"], "all pages together")

    @step("the Python HTTP client reads the same data and gets ConvexError data")
    def _() -> None:
        with Bounded("HTTP messages:list"):
            eq(bodies(http.query("messages:list", {"channel": channel})), ["three", "one"], "list")
        with Bounded("HTTP users:get"):
            doc = http.query("users:get", {"id": state["user"]})
        eq(user_fields(doc, "users"), {"name": name, "role": "member"}, "user over HTTP")
        e = expect_error(
            lambda: http.mutation("users:register", {"name": name, "role": "member"}),
            "HTTP duplicate register",
        )
        check(isinstance(e, ConvexError), f"expected ConvexError, got {type(e).__name__}: {e}")
        assert isinstance(e, ConvexError)
        eq(e.data, {"code": "NAME_TAKEN", "name": name}, "ConvexError data over HTTP")

    @step("action clients:registerAndFetch runs a mutation and a query")
    def _() -> None:
        carol = f"pycarol_{suffix}"
        with Bounded("clients:registerAndFetch"):
            result = client.action(
                "clients:registerAndFetch", {"name": carol, "email": f"{carol}@example.com"}
            )
        check(isinstance(result, dict) and isinstance(result.get("id"), str), f"{result!r}")
        eq(
            result,
            {"id": result["id"], "name": carol, "role": "member", "email": f"{carol}@example.com"},
            "action result",
        )
        with Bounded("users:get"):
            eq(client.query("users:get", {"id": result["id"]})["name"], carol, "stored user")

    @step("a ConvexError from an action arrives with its data")
    def _() -> None:
        e = expect_error(
            lambda: client.action("clients:registerAndFetch", {"name": name}), "action"
        )
        check(isinstance(e, ConvexError), f"expected ConvexError, got {type(e).__name__}: {e}")
        assert isinstance(e, ConvexError)
        eq(e.data, {"code": "NAME_TAKEN", "name": name}, "ConvexError data")

    admin_key = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("CHORUS_ADMIN_KEY")
    if admin_key:

        @step("a client with admin auth (Authenticate Admin) can call functions")
        def _() -> None:
            admin = ConvexClient(url)
            with Bounded("set_admin_auth"):
                admin.set_admin_auth(admin_key)
            with Bounded("users:get with admin auth"):
                doc = admin.query("users:get", {"id": state["user"]})
            eq(doc["name"], name, "user read with admin auth")

    else:
        print(f"[{NAME}] skip the admin-auth check: no admin key given", flush=True)

    @step("unsubscribe")
    def _() -> None:
        assert sub is not None
        with Bounded("unsubscribe"):
            sub.unsubscribe()

    print(f"[{NAME}] PASS", flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, _on_alarm)
    # Runs on its own C thread, so it fires even if a call somehow holds the GIL.
    faulthandler.dump_traceback_later(DRIVER_TIMEOUT_S, exit=True)
    try:
        main()
    except Failure as e:
        print(f"[{NAME}] FAIL in step {current_step!r}: {e}", file=sys.stderr, flush=True)
        os._exit(1)
    except SystemExit:
        raise
    except BaseException:
        print(f"[{NAME}] FAIL in step {current_step!r}:", file=sys.stderr, flush=True)
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    # The client's background runtime can keep the interpreter from exiting promptly.
    os._exit(0)
