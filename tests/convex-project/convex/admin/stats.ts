import { v } from "convex/values";
import { internal } from "../_generated/api";
import { internalMutation, query } from "../_generated/server";

export default query({
  args: {},
  returns: v.object({
    users: v.number(),
    messages: v.number(),
    counted: v.int64(),
  }),
  handler: async (ctx) => ({
    users: (await ctx.db.query("users").collect()).length,
    messages: (await ctx.db.query("messages").collect()).length,
    counted: (await ctx.runQuery(internal.counters.get, { name: "messages" })) ?? 0n,
  }),
});

// Deletes a channel's messages one by one, iterating the query with `for await`.
export const purgeChannel = internalMutation({
  args: { channel: v.string() },
  returns: v.number(),
  handler: async (ctx, { channel }) => {
    let deleted = 0;
    for await (const message of ctx.db
      .query("messages")
      .withIndex("by_channel_time", (q) => q.eq("channel", channel))) {
      await ctx.db.delete(message._id);
      deleted += 1;
    }
    await ctx.runMutation(internal.counters.increment, {
      name: "messages",
      by: BigInt(-deleted),
    });
    return deleted;
  },
});
