// npm `convex` ConvexHttpClient against a Chorus server running tests/convex-project:
//   node http.mjs URL [ADMIN_KEY]
// Queries, mutations and an action over POST /api/{query,mutation,action}; ConvexError data;
// function errors; pagination to the end; admin auth when a key is given.

import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";
import {
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
  userFields,
} from "./lib.mjs";

const api = anyApi;
const { url, adminKey, suffix } = setup("npm-http");
console.log(`[npm-http] ${url}, names end in ${suffix}`);
await checkReachable(url);

const client = new ConvexHttpClient(url, { logger: false, fetch: boundedFetch });
const channel = `http_${suffix}`;
const alice = `alice_${suffix}`;
const bob = `bob_${suffix}`;
let aliceId;
let bobId;

function isPlainError(e) {
  return e instanceof Error && !(e instanceof ConvexError);
}

await step("users:register returns an id", async () => {
  aliceId = await client.mutation(api.users.register, {
    name: alice,
    role: "admin",
    email: `${alice}@example.com`,
  });
  check(typeof aliceId === "string" && aliceId.length > 0, `id: ${show(aliceId)}`);
  bobId = await client.mutation(api.users.register, { name: bob, role: "member" });
  check(typeof bobId === "string" && bobId !== aliceId, `second id: ${show(bobId)}`);
});

await step("users:get reads the documents back", async () => {
  const a = await client.query(api.users.get, { id: aliceId });
  eq(a?._id, aliceId, "alice._id");
  eq(userFields(a, "users"), { name: alice, role: "admin", email: `${alice}@example.com` }, "alice");
  const b = await client.query(api.users.get, { id: bobId });
  // The optional field was not given, so the document has no such field at all.
  eq(userFields(b, "users"), { name: bob, role: "member" }, "bob");
});

await step("duplicate users:register fails with ConvexError data NAME_TAKEN", async () => {
  const e = await rejects(
    client.mutation(api.users.register, { name: alice, role: "member" }),
    "duplicate register",
  );
  check(e instanceof ConvexError, `expected a ConvexError, got ${describe(e)}`);
  eq(e.data, { code: "NAME_TAKEN", name: alice }, "ConvexError data");
});

await step("an unknown function is a function error", async () => {
  const e = await rejects(client.query(api.nope.missing, {}), "unknown function");
  check(isPlainError(e), `expected a plain Error, got ${describe(e)}`);
  check(
    e.message.includes("Could not find public function"),
    `message should say the function was not found: ${show(e.message)}`,
  );
});

await step("an internal function is not callable from a client", async () => {
  const e = await rejects(client.query(api.counters.get, { name: "messages" }), "counters:get");
  check(isPlainError(e), `expected a plain Error, got ${describe(e)}`);
  check(e.message.includes("Could not find public function"), `message: ${show(e.message)}`);
});

await step("a wrongly typed argument fails validation", async () => {
  // An id of the users table where the validator says v.id("messages").
  const e = await rejects(
    client.mutation(api.messages.edit, { id: aliceId, body: "x" }),
    "edit with a users id",
  );
  check(isPlainError(e), `expected a plain Error, got ${describe(e)}`);
});

const bodies = ["m1", "m2", "m3", "m4", "m5"];
const messageIds = [];
let countBefore;

await step("counters:read returns an int64 (bigint)", async () => {
  countBefore = await client.query(api.counters.read, { name: "messages" });
  check(typeof countBefore === "bigint", `expected a bigint, got ${show(countBefore)}`);
  eq(await client.query(api.counters.read, { name: `none_${suffix}` }), 0n, "missing counter");
});

await step("messages:send five messages", async () => {
  for (const [i, body] of bodies.entries()) {
    const author = i % 2 === 0 ? aliceId : bobId;
    const tags = i === 0 ? ["first", "x"] : undefined;
    const id = await client.mutation(api.messages.send, {
      author,
      channel,
      body,
      ...(tags ? { tags } : {}),
    });
    check(typeof id === "string" && !messageIds.includes(id), `message id: ${show(id)}`);
    messageIds.push(id);
  }
});

await step("counters:read counted the sends (bigint)", async () => {
  const after = await client.query(api.counters.read, { name: "messages" });
  check(typeof after === "bigint", `expected a bigint, got ${show(after)}`);
  // The counter is shared with every other run (which may remove messages concurrently), so
  // only its type and a lower bound are checked.
  check(after >= 5n, `messages counter ${after} after five sends`);
  console.log(`[npm-http]      messages counter ${countBefore} -> ${after}`);
});

let listed;
await step("messages:list returns the channel newest first", async () => {
  listed = await client.query(api.messages.list, { channel });
  eq(
    listed.map((m) => m.body),
    [...bodies].reverse(),
    "bodies",
  );
  eq(
    listed.map((m) => m._id),
    [...messageIds].reverse(),
    "ids",
  );
  for (const m of listed) {
    const fields = userFields(m, "messages");
    eq(fields.channel, channel, "channel");
    check(typeof fields.time === "number", `time: ${show(fields.time)}`);
  }
  eq(userFields(listed.at(-1), "messages").tags, ["first", "x"], "tags of the first message");
  check(!("tags" in listed[0]), `no tags field expected: ${show(listed[0])}`);
  for (let i = 1; i < listed.length; i++) {
    check(listed[i - 1].time >= listed[i].time, `times not descending: ${show(listed)}`);
  }
});

await step("messages:list with limit and a time window", async () => {
  const two = await client.query(api.messages.list, { channel, limit: 2 });
  eq(
    two.map((m) => m.body),
    ["m5", "m4"],
    "limit 2",
  );
  const oldest = listed.at(-1);
  const newest = listed[0];
  if (newest.time > oldest.time) {
    const window = await client.query(api.messages.list, {
      channel,
      after: oldest.time,
      before: newest.time,
    });
    const expected = listed.filter((m) => m.time > oldest.time && m.time < newest.time);
    eq(
      window.map((m) => m._id),
      expected.map((m) => m._id),
      "exclusive time window",
    );
  }
  eq(await client.query(api.messages.list, { channel: `empty_${suffix}` }), [], "empty channel");
});

await step("messages:latest and messages:byAuthor", async () => {
  const latest = await client.query(api.messages.latest, { channel });
  eq(latest?._id, messageIds.at(-1), "latest");
  const byBob = await client.query(api.messages.byAuthor, { author: bobId });
  eq(byBob.map((m) => m.body).sort(), ["m2", "m4"], "bob's messages");
});

await step("messages:page paginates with cursors until isDone", async () => {
  const seen = [];
  let cursor = null;
  for (let pages = 0; ; pages++) {
    check(pages < 10, `pagination did not finish after 10 pages: ${show(seen)}`);
    const result = await client.query(api.messages.page, {
      channel,
      paginationOpts: { numItems: 2, cursor },
    });
    check(Array.isArray(result.page), `page: ${show(result)}`);
    check(typeof result.isDone === "boolean", `isDone: ${show(result)}`);
    check(typeof result.continueCursor === "string", `continueCursor: ${show(result)}`);
    check(result.page.length <= 2, `page larger than asked: ${show(result.page)}`);
    seen.push(...result.page.map((m) => m.body));
    if (result.isDone) {
      break;
    }
    check(result.continueCursor !== cursor, "the cursor did not move");
    cursor = result.continueCursor;
  }
  eq(seen, [...bodies].reverse(), "all pages together");
});

await step("messages:edit patches the body and removes tags", async () => {
  const first = messageIds[0];
  eq(await client.mutation(api.messages.edit, { id: first, body: "m1 edited" }), null, "edit");
  const list = await client.query(api.messages.list, { channel });
  const edited = list.find((m) => m._id === first);
  eq(
    userFields(edited, "messages"),
    {
      author: aliceId,
      channel,
      body: "m1 edited",
      time: listed.at(-1).time,
      edited: true,
    },
    "edited message",
  );
});

await step("messages:remove deletes one message", async () => {
  eq(await client.mutation(api.messages.remove, { id: messageIds[2] }), null, "remove");
  const list = await client.query(api.messages.list, { channel });
  eq(
    list.map((m) => m.body),
    ["m5", "m4", "m2", "m1 edited"],
    "bodies after remove",
  );
});

await step("clients:registerAndFetch action runs a mutation and a query", async () => {
  const carol = `carol_${suffix}`;
  const result = await client.action(api.clients.registerAndFetch, {
    name: carol,
    email: `${carol}@example.com`,
  });
  check(typeof result?.id === "string", `action result: ${show(result)}`);
  eq(
    result,
    { id: result.id, name: carol, role: "member", email: `${carol}@example.com` },
    "action result",
  );
  const stored = await client.query(api.users.get, { id: result.id });
  eq(
    userFields(stored, "users"),
    { name: carol, role: "member", email: `${carol}@example.com` },
    "user written by the action",
  );
  const noEmail = await client.action(api.clients.registerAndFetch, { name: `dave_${suffix}` });
  eq(noEmail.email, null, "action result without email");
});

await step("a ConvexError from the action's mutation reaches the client with data", async () => {
  const e = await rejects(
    client.action(api.clients.registerAndFetch, { name: alice }),
    "action registering a taken name",
  );
  check(e instanceof ConvexError, `expected a ConvexError, got ${describe(e)}`);
  eq(e.data, { code: "NAME_TAKEN", name: alice }, "ConvexError data");
});

if (adminKey !== null) {
  await step("admin auth: a client with the admin key can call functions", async () => {
    const admin = new ConvexHttpClient(url, { logger: false, fetch: boundedFetch });
    admin.setAdminAuth(adminKey);
    const user = await admin.query(api.users.get, { id: aliceId });
    eq(user?.name, alice, "user read with admin auth");
  });

  await step("admin auth: a wrong admin key is refused", async () => {
    const wrong = new ConvexHttpClient(url, { logger: false, fetch: boundedFetch });
    wrong.setAdminAuth(`${adminKey}-wrong`);
    const e = await rejects(wrong.query(api.users.get, { id: aliceId }), "wrong admin key");
    check(isPlainError(e), `expected a plain Error, got ${describe(e)}`);
  });
} else {
  console.log("[npm-http] skip admin-auth checks: no admin key given");
}

done();
