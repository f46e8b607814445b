import { ConvexError, v } from "convex/values";
import { mutation, query } from "./_generated/server";

export const role = v.union(v.literal("admin"), v.literal("member"));

export const register = mutation({
  args: { name: v.string(), role, email: v.optional(v.string()) },
  returns: v.id("users"),
  handler: async (ctx, args) => {
    const existing = await ctx.db
      .query("users")
      .withIndex("by_name", (q) => q.eq("name", args.name))
      .unique();
    if (existing !== null) {
      throw new ConvexError({ code: "NAME_TAKEN", name: args.name });
    }
    return await ctx.db.insert("users", args);
  },
});

// The one-argument `db.get(id)` (no table name), unlike the other modules.
export const get = query({
  args: { id: v.id("users") },
  handler: async (ctx, { id }) => await ctx.db.get(id),
});
