import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

export default defineSchema({
  users: defineTable({
    name: v.string(),
    role: v.union(v.literal("admin"), v.literal("member")),
    email: v.optional(v.string()),
  }).index("by_name", ["name"]),

  messages: defineTable({
    author: v.id("users"),
    channel: v.string(),
    body: v.string(),
    time: v.number(),
    tags: v.optional(v.array(v.string())),
    edited: v.optional(v.boolean()),
  })
    .index("by_author", ["author"])
    .index("by_channel_time", ["channel", "time"]),

  counters: defineTable({
    name: v.string(),
    value: v.int64(),
  }).index("by_name", ["name"]),

  // cluster.ts: one document per acknowledged write of the cluster tests.
  writes: defineTable({
    client: v.number(),
    seq: v.number(),
  }),

  // torture.ts: the correctness harness's workloads (crates/torture, docs/correctness.md).
  accounts: defineTable({
    account: v.number(),
    balance: v.number(),
  }).index("by_account", ["account"]),

  lists: defineTable({
    key: v.number(),
    values: v.array(v.number()),
  }).index("by_key", ["key"]),

  registers: defineTable({
    key: v.number(),
    value: v.number(),
  }).index("by_key", ["key"]),

  elements: defineTable({
    set: v.number(),
    element: v.number(),
  }).index("by_set", ["set"]),

  monotonic: defineTable({
    key: v.number(),
    value: v.number(),
  }).index("by_key", ["key"]),
});
