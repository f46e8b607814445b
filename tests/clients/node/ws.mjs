// npm `convex` ConvexClient (WebSocket sync protocol) against a Chorus server running
// tests/convex-project:
//   node ws.mjs URL [ADMIN_KEY]
// A subscription to messages:list sees, in order, every state produced by a mutation from the
// same client, one from a plain HTTP client and one from a second WebSocket client; awaited
// mutations resolve (read-your-writes for the subscribing client); ConvexError data arrives;
// a failing subscription reports its error; an action and a one-shot query work; close() ends.

import { isDeepStrictEqual } from "node:util";
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";
import {
  STEP_TIMEOUT_MS,
  boundedFetch,
  check,
  checkReachable,
  describe,
  done,
  eq,
  rejects,
  setup,
  show,
  step,
  withTimeout,
} from "./lib.mjs";

const api = anyApi;
const { url, suffix } = setup("npm-ws");
console.log(`[npm-ws] ${url}, names end in ${suffix}`);
await checkReachable(url);

/** Records every distinct consecutive result of one subscription. */
function record(client, query, args) {
  const states = [];
  const errors = [];
  let wake = () => {};
  const unsubscribe = client.onUpdate(
    query,
    args,
    (value) => {
      if (states.length === 0 || !isDeepStrictEqual(states.at(-1), value)) {
        states.push(value);
      }
      wake();
    },
    (error) => {
      errors.push(error);
      wake();
    },
  );
  /** Waits until `predicate(states, errors)` holds, at most STEP_TIMEOUT_MS. */
  async function waitFor(predicate, what) {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (!predicate(states, errors)) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out after ${STEP_TIMEOUT_MS / 1000} s waiting for ${what}; ` +
            `observed results: ${show(states)}, errors: ${show(errors.map((e) => e.message))}`,
        );
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
  return { states, errors, unsubscribe, waitFor };
}

const bodiesOf = (messages) => messages.map((m) => m.body);

const a = new ConvexClient(url);
const b = new ConvexClient(url);
const http = new ConvexHttpClient(url, { logger: false, fetch: boundedFetch });
const channel = `ws_${suffix}`;
const name = `wsuser_${suffix}`;
let userId;
let sub;
const ids = {};

await step("await client.mutation(users:register) resolves with an id", async () => {
  userId = await a.mutation(api.users.register, { name, role: "member" });
  check(typeof userId === "string" && userId.length > 0, `id: ${show(userId)}`);
});

await step("onUpdate(messages:list) delivers the empty channel", async () => {
  sub = record(a, api.messages.list, { channel });
  await sub.waitFor((states) => states.length > 0, "the first result");
  eq(sub.states, [[]], "first result");
});

await step("a mutation on the subscribing client is visible once it resolves", async () => {
  ids.one = await a.mutation(api.messages.send, { author: userId, channel, body: "one" });
  check(typeof ids.one === "string", `message id: ${show(ids.one)}`);
  // npm holds a mutation's promise until a Transition covering its commit has been applied.
  eq(bodiesOf(sub.unsubscribe.getCurrentValue() ?? []), ["one"], "current value when resolved");
  await sub.waitFor((s) => isDeepStrictEqual(bodiesOf(s.at(-1)), ["one"]), "['one']");
});

await step("a mutation from an HTTP client updates the subscription", async () => {
  ids.two = await http.mutation(api.messages.send, { author: userId, channel, body: "two" });
  await sub.waitFor((s) => isDeepStrictEqual(bodiesOf(s.at(-1)), ["two", "one"]), "['two','one']");
});

await step("a mutation from a second WebSocket client updates the subscription", async () => {
  ids.three = await b.mutation(api.messages.send, { author: userId, channel, body: "three" });
  await sub.waitFor(
    (s) => isDeepStrictEqual(bodiesOf(s.at(-1)), ["three", "two", "one"]),
    "['three','two','one']",
  );
});

await step("a removal from the second client updates the subscription", async () => {
  eq(await b.mutation(api.messages.remove, { id: ids.two }), null, "remove result");
  await sub.waitFor(
    (s) => isDeepStrictEqual(bodiesOf(s.at(-1)), ["three", "one"]),
    "['three','one']",
  );
});

await step("the subscription saw exactly the expected sequence of results", async () => {
  eq(
    sub.states.map(bodiesOf),
    [[], ["one"], ["two", "one"], ["three", "two", "one"], ["three", "one"]],
    "observed results",
  );
  eq(sub.errors, [], "subscription errors");
  eq(
    sub.states.at(-1).map((m) => m._id),
    [ids.three, ids.one],
    "ids in the last result",
  );
});

await step("a ConvexError from a mutation arrives with its data", async () => {
  const e = await rejects(a.mutation(api.users.register, { name, role: "admin" }), "duplicate");
  check(e instanceof ConvexError, `expected a ConvexError, got ${describe(e)}`);
  eq(e.data, { code: "NAME_TAKEN", name }, "ConvexError data");
});

await step("a subscription to an unknown function reports an error", async () => {
  const bad = record(a, api.nope.missing, {});
  await bad.waitFor((_, errors) => errors.length > 0, "the query error");
  bad.unsubscribe();
  eq(bad.states, [], "results of the failing query");
  const message = bad.errors[0]?.message ?? "";
  check(message.includes("Could not find public function"), `error: ${show(message)}`);
});

await step("client.query runs a one-shot query", async () => {
  const latest = await a.query(api.messages.latest, { channel });
  eq(latest?._id, ids.three, "latest message");
});

await step("client.action runs clients:registerAndFetch", async () => {
  const carol = `wscarol_${suffix}`;
  const result = await a.action(api.clients.registerAndFetch, { name: carol });
  check(typeof result?.id === "string", `action result: ${show(result)}`);
  eq(result, { id: result.id, name: carol, role: "member", email: null }, "action result");
  const user = await a.query(api.users.get, { id: result.id });
  eq(user?.name, carol, "user written by the action");
});

await step("a ConvexError from an action arrives with its data", async () => {
  const e = await rejects(a.action(api.clients.registerAndFetch, { name }), "action");
  check(e instanceof ConvexError, `expected a ConvexError, got ${describe(e)}`);
  eq(e.data, { code: "NAME_TAKEN", name }, "ConvexError data");
});

await step("the subscription saw nothing unexpected meanwhile", async () => {
  eq(sub.states.length, 5, "number of distinct results");
  eq(sub.errors, [], "subscription errors");
});

await step("close() both clients", async () => {
  sub.unsubscribe();
  await withTimeout(Promise.all([a.close(), b.close()]), STEP_TIMEOUT_MS, "close()");
  check(a.closed && b.closed, "clients report closed");
});

done();
