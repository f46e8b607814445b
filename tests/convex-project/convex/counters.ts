import { v } from "convex/values";
import { internal } from "./_generated/api";
import { internalMutation, internalQuery, query } from "./_generated/server";

export const get = internalQuery({
  args: { name: v.string() },
  returns: v.union(v.int64(), v.null()),
  handler: async (ctx, { name }) => {
    const counter = await ctx.db
      .query("counters")
      .withIndex("by_name", (q) => q.eq("name", name))
      .first();
    return counter?.value ?? null;
  },
});

export const increment = internalMutation({
  args: { name: v.string(), by: v.int64() },
  returns: v.int64(),
  handler: async (ctx, { name, by }) => {
    const counter = await ctx.db
      .query("counters")
      .withIndex("by_name", (q) => q.eq("name", name))
      .unique();
    if (counter === null) {
      await ctx.db.insert("counters", { name, value: by });
      return by;
    }
    const value = counter.value + by;
    await ctx.db.patch("counters", counter._id, { value });
    return value;
  },
});

// A public query that reads through an internal one (`ctx.runQuery`).
export const read = query({
  args: { name: v.string() },
  returns: v.int64(),
  handler: async (ctx, { name }) =>
    (await ctx.runQuery(internal.counters.get, { name })) ?? 0n,
});
