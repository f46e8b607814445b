import { ConvexError, v } from "convex/values";
import { mutation, query, type QueryCtx } from "./_generated/server";

// The workloads of the correctness harness (`chorus-torture`, crates/torture). Each function is
// one small transaction; the harness records every call and checks the history afterwards
// (docs/correctness.md). Keys, values and elements are integers below 2^53 (Convex numbers are
// floats). A refused operation throws a `ConvexError` with a `code`, which the harness records
// as a clean failure (the transaction rolled back); any other error is indeterminate.

// ---- bank: transfers between accounts; every read of all balances sums to the total.

export const bankInit = mutation({
  args: { accounts: v.number(), total: v.number() },
  returns: v.null(),
  handler: async (ctx, { accounts, total }) => {
    // Idempotent: a retried init after an indeterminate one must not add money.
    if ((await ctx.db.query("accounts").first()) !== null) {
      return null;
    }
    const each = Math.floor(total / accounts);
    for (let account = 0; account < accounts; account++) {
      const extra = account === 0 ? total - each * accounts : 0;
      await ctx.db.insert("accounts", { account, balance: each + extra });
    }
    return null;
  },
});

async function account(ctx: QueryCtx, account: number) {
  const doc = await ctx.db
    .query("accounts")
    .withIndex("by_account", (q) => q.eq("account", account))
    .unique();
  if (doc === null) {
    throw new ConvexError({ code: "NO_ACCOUNT", account });
  }
  return doc;
}

export const transfer = mutation({
  args: { from: v.number(), to: v.number(), amount: v.number() },
  returns: v.null(),
  handler: async (ctx, { from, to, amount }) => {
    const source = await account(ctx, from);
    const target = await account(ctx, to);
    if (source.balance < amount) {
      throw new ConvexError({ code: "INSUFFICIENT_FUNDS", balance: source.balance });
    }
    await ctx.db.patch("accounts", source._id, { balance: source.balance - amount });
    await ctx.db.patch("accounts", target._id, { balance: target.balance + amount });
    return null;
  },
});

// Account → balance (object keys are the account numbers as strings).
export const balances = query({
  args: {},
  handler: async (ctx) => {
    const out: Record<string, number> = {};
    for (const doc of await ctx.db.query("accounts").collect()) {
      out[String(doc.account)] = doc.balance;
    }
    return out;
  },
});

// ---- list-append: transactions of appends and reads over lists (Elle).

async function list(ctx: QueryCtx, key: number) {
  return await ctx.db
    .query("lists")
    .withIndex("by_key", (q) => q.eq("key", key))
    .unique();
}

const microOp = v.union(
  v.object({ f: v.literal("append"), key: v.number(), value: v.number() }),
  v.object({ f: v.literal("read"), key: v.number() }),
);

// Runs the micro-ops in order; returns, per micro-op, the list read (`null` for appends).
export const txn = mutation({
  args: { ops: v.array(microOp) },
  handler: async (ctx, { ops }) => {
    const results: (number[] | null)[] = [];
    for (const op of ops) {
      const doc = await list(ctx, op.key);
      if (op.f === "read") {
        results.push(doc === null ? [] : doc.values);
      } else {
        if (doc === null) {
          await ctx.db.insert("lists", { key: op.key, values: [op.value] });
        } else {
          await ctx.db.patch("lists", doc._id, { values: [...doc.values, op.value] });
        }
        results.push(null);
      }
    }
    return results;
  },
});

// A read-only transaction as a query: key → list (absent keys read as []).
export const readLists = query({
  args: { keys: v.array(v.number()) },
  handler: async (ctx, { keys }) => {
    const out: Record<string, number[]> = {};
    for (const key of keys) {
      const doc = await list(ctx, key);
      out[String(key)] = doc === null ? [] : doc.values;
    }
    return out;
  },
});

// ---- registers: linearizable read, write and compare-and-set per key.

async function register(ctx: QueryCtx, key: number) {
  return await ctx.db
    .query("registers")
    .withIndex("by_key", (q) => q.eq("key", key))
    .unique();
}

export const regWrite = mutation({
  args: { key: v.number(), value: v.number() },
  returns: v.null(),
  handler: async (ctx, { key, value }) => {
    const doc = await register(ctx, key);
    if (doc === null) {
      await ctx.db.insert("registers", { key, value });
    } else {
      await ctx.db.patch("registers", doc._id, { value });
    }
    return null;
  },
});

export const regRead = query({
  args: { key: v.number() },
  returns: v.union(v.number(), v.null()),
  handler: async (ctx, { key }) => (await register(ctx, key))?.value ?? null,
});

// Writes `to` if the register holds `from`; otherwise refuses with CAS_MISMATCH.
export const regCas = mutation({
  args: { key: v.number(), from: v.number(), to: v.number() },
  returns: v.null(),
  handler: async (ctx, { key, from, to }) => {
    const doc = await register(ctx, key);
    if (doc === null || doc.value !== from) {
      throw new ConvexError({ code: "CAS_MISMATCH", value: doc?.value ?? null });
    }
    await ctx.db.patch("registers", doc._id, { value: to });
    return null;
  },
});

// ---- sets: unique elements added to one of several sets; acknowledged adds are never lost.

export const setAdd = mutation({
  args: { set: v.number(), element: v.number() },
  returns: v.null(),
  handler: async (ctx, args) => {
    await ctx.db.insert("elements", args);
    return null;
  },
});

export const setRead = query({
  args: { set: v.number() },
  returns: v.array(v.number()),
  handler: async (ctx, { set }) =>
    (
      await ctx.db
        .query("elements")
        .withIndex("by_set", (q) => q.eq("set", set))
        .collect()
    ).map((doc) => doc.element),
});

// ---- monotonic: per-key counters; no client may see one go back.

export const monoIncrement = mutation({
  args: { key: v.number() },
  returns: v.number(),
  handler: async (ctx, { key }) => {
    const doc = await ctx.db
      .query("monotonic")
      .withIndex("by_key", (q) => q.eq("key", key))
      .unique();
    if (doc === null) {
      await ctx.db.insert("monotonic", { key, value: 1 });
      return 1;
    }
    await ctx.db.patch("monotonic", doc._id, { value: doc.value + 1 });
    return doc.value + 1;
  },
});

// key → counter (absent keys read as 0).
export const monoRead = query({
  args: { keys: v.array(v.number()) },
  handler: async (ctx, { keys }) => {
    const out: Record<string, number> = {};
    for (const key of keys) {
      const doc = await ctx.db
        .query("monotonic")
        .withIndex("by_key", (q) => q.eq("key", key))
        .unique();
      out[String(key)] = doc?.value ?? 0;
    }
    return out;
  },
});
