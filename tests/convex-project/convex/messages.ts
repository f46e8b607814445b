import { paginationOptsValidator } from "convex/server";
import { ConvexError, v } from "convex/values";
import { internal } from "./_generated/api";
import { mutation, query } from "./_generated/server";

// Newest first, within a time window of one channel.
export const list = query({
  args: {
    channel: v.string(),
    after: v.optional(v.number()),
    before: v.optional(v.number()),
    limit: v.optional(v.number()),
  },
  handler: async (ctx, { channel, after, before, limit }) =>
    await ctx.db
      .query("messages")
      .withIndex("by_channel_time", (q) =>
        q
          .eq("channel", channel)
          .gt("time", after ?? 0)
          .lt("time", before ?? Number.MAX_SAFE_INTEGER),
      )
      .order("desc")
      .take(limit ?? 10),
});

export const latest = query({
  args: { channel: v.string() },
  handler: async (ctx, { channel }) =>
    await ctx.db
      .query("messages")
      .withIndex("by_channel_time", (q) => q.eq("channel", channel))
      .order("desc")
      .first(),
});

export const byAuthor = query({
  args: { author: v.id("users"), tag: v.optional(v.string()) },
  handler: async (ctx, { author, tag }) => {
    const mine = ctx.db
      .query("messages")
      .withIndex("by_author", (q) => q.eq("author", author));
    if (tag === undefined) {
      return await mine.collect();
    }
    const tagged = await mine
      .filter((q) => q.or(q.eq(q.field("edited"), true), q.gt(q.field("time"), 0)))
      .collect();
    return tagged.filter((m) => m.tags?.includes(tag) ?? false);
  },
});

export const page = query({
  args: { channel: v.string(), paginationOpts: paginationOptsValidator },
  handler: async (ctx, { channel, paginationOpts }) =>
    await ctx.db
      .query("messages")
      .withIndex("by_channel_time", (q) => q.eq("channel", channel))
      .order("desc")
      .paginate(paginationOpts),
});

export const send = mutation({
  args: {
    author: v.id("users"),
    channel: v.string(),
    body: v.string(),
    tags: v.optional(v.array(v.string())),
  },
  returns: v.id("messages"),
  handler: async (ctx, args) => {
    const user = await ctx.db.get("users", args.author);
    if (user === null) {
      throw new ConvexError({ code: "UNKNOWN_USER", author: args.author });
    }
    const id = await ctx.db.insert("messages", { ...args, time: Date.now() });
    await ctx.runMutation(internal.counters.increment, {
      name: "messages",
      by: 1n,
    });
    return id;
  },
});

export const edit = mutation({
  args: { id: v.id("messages"), body: v.string() },
  returns: v.null(),
  handler: async (ctx, { id, body }) => {
    await ctx.db.patch("messages", id, { body, edited: true, tags: undefined });
    return null;
  },
});

// Replaces the whole document, keeping only where and when it was posted.
export const rewrite = mutation({
  args: {
    id: v.id("messages"),
    update: v.object({ body: v.string(), author: v.id("users") }),
  },
  handler: async (ctx, { id, update }) => {
    const old = await ctx.db.get("messages", id);
    if (old === null) {
      throw new ConvexError({ code: "NOT_FOUND", id });
    }
    await ctx.db.replace("messages", id, {
      ...update,
      channel: old.channel,
      time: old.time,
    });
  },
});

export const remove = mutation({
  args: { id: v.id("messages") },
  handler: async (ctx, { id }) => {
    await ctx.db.delete("messages", id);
    await ctx.runMutation(internal.counters.increment, {
      name: "messages",
      by: -1n,
    });
  },
});
