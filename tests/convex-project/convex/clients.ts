import { v } from "convex/values";
import { api } from "./_generated/api";
import { action } from "./_generated/server";

// Used by the official-client drivers in tests/clients/: an action that writes through a
// mutation and reads the result back through a query (`ctx.runMutation` / `ctx.runQuery`
// from an action, i.e. separate transactions), returning what the driver can check.
export const registerAndFetch = action({
  args: { name: v.string(), email: v.optional(v.string()) },
  returns: v.object({
    id: v.id("users"),
    name: v.string(),
    role: v.string(),
    email: v.union(v.string(), v.null()),
  }),
  handler: async (ctx, { name, email }) => {
    const id = await ctx.runMutation(api.users.register, {
      name,
      role: "member",
      ...(email === undefined ? {} : { email }),
    });
    const user = await ctx.runQuery(api.users.get, { id });
    if (user === null) {
      throw new Error(`user ${id} registered by the action is not visible to its query`);
    }
    return { id, name: user.name, role: user.role, email: user.email ?? null };
  },
});
