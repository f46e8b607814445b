// Runs reference/scenario.json against convex-test (a JS model of the Convex backend that runs
// functions serially in Node) and writes each step's result and the final tables, as Convex
// JSON, to $REFERENCE_OUT. Run it with ../reference.sh OUT_FILE, not directly.
/// <reference types="vite/client" />
import { convexTest } from "convex-test";
import { makeFunctionReference } from "convex/server";
import { ConvexError, convexToJson, jsonToConvex, type Value } from "convex/values";
import { readFileSync, writeFileSync } from "node:fs";
import { expect, test, vi } from "vitest";
import schema from "../convex/schema";

type Step = { name: string; kind: "query" | "mutation"; fn: string; args: unknown };
type Scenario = { t0: number; stepMs: number; steps: Step[] };

const modules = import.meta.glob("../convex/**/*.*s");
const scenario: Scenario = JSON.parse(
  readFileSync(new URL("./scenario.json", import.meta.url), "utf8"),
);

// Replaces {"$ref": "step"} / {"$ref": "step.field"} with an earlier step's result; decodes the
// rest from Convex JSON. ("$" field names are reserved in Convex, so "$ref" cannot collide.)
function resolve(json: unknown, results: Map<string, Value>): Value {
  if (Array.isArray(json)) {
    return json.map((item) => resolve(item, results));
  }
  if (json !== null && typeof json === "object") {
    const object = json as Record<string, unknown>;
    if (typeof object.$ref === "string") {
      const [step, ...path] = object.$ref.split(".");
      if (!results.has(step)) throw new Error(`no result for step ${step}`);
      let value: any = results.get(step);
      for (const field of path) value = value?.[field];
      return value;
    }
    if (Object.keys(object).some((key) => key.startsWith("$"))) {
      return jsonToConvex(object as any);
    }
    return Object.fromEntries(
      Object.entries(object).map(([key, value]) => [key, resolve(value, results)]),
    );
  }
  return jsonToConvex(json as any);
}

test("reference scenario", async () => {
  const out = process.env.REFERENCE_OUT;
  expect(out, "set REFERENCE_OUT (use ../reference.sh)").toBeTruthy();
  vi.useFakeTimers({ toFake: ["Date"] });
  const t = convexTest(schema, modules);
  const results = new Map<string, Value>();
  const steps = [];
  for (const [index, step] of scenario.steps.entries()) {
    vi.setSystemTime(scenario.t0 + index * scenario.stepMs);
    const args = resolve(step.args, results) as Record<string, Value>;
    const record: Record<string, unknown> = {
      name: step.name,
      kind: step.kind,
      fn: step.fn,
      args: convexToJson(args),
    };
    try {
      const result =
        step.kind === "query"
          ? await t.query(makeFunctionReference<"query">(step.fn), args)
          : await t.mutation(makeFunctionReference<"mutation">(step.fn), args);
      results.set(step.name, result);
      record.result = convexToJson(result === undefined ? null : result);
    } catch (error) {
      if (!(error instanceof ConvexError)) throw error;
      record.errorData = convexToJson(error.data ?? null);
    }
    steps.push(record);
  }
  const tables = await t.run(async (ctx) => {
    const dump: Record<string, Value> = {};
    for (const table of ["users", "messages", "counters"] as const) {
      dump[table] = await ctx.db.query(table).collect();
    }
    return dump;
  });
  vi.useRealTimers();
  const report = {
    generator: "convex-test (tests/convex-project/reference.sh)",
    versions: {
      convex: (await import("convex")).version,
      "convex-test": JSON.parse(
        readFileSync(new URL("../node_modules/convex-test/package.json", import.meta.url), "utf8"),
      ).version,
    },
    t0: scenario.t0,
    stepMs: scenario.stepMs,
    steps,
    tables: convexToJson(tables),
  };
  writeFileSync(out!, JSON.stringify(report, null, 2) + "\n");
});
