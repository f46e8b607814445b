import { paginationOptsValidator } from "convex/server";
import { v } from "convex/values";
import { mutation, query } from "./_generated/server";

// Used by the cluster tests (crates/chorus/tests/cluster.rs): one document per acknowledged
// write, so a test can check afterwards that every acknowledged write is there.
export const write = mutation({
  args: { client: v.number(), seq: v.number() },
  returns: v.id("writes"),
  handler: async (ctx, args) => await ctx.db.insert("writes", args),
});

// Every write, in creation order, a page at a time.
export const writes = query({
  args: { paginationOpts: paginationOptsValidator },
  handler: async (ctx, { paginationOpts }) =>
    await ctx.db.query("writes").paginate(paginationOpts),
});
