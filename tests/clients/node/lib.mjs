// Shared by the npm drivers: arguments, bounded waits, checks that fail with a clear message.
// Every wait is bounded: a server that never answers fails the step that was waiting, with the
// step's name, and a watchdog ends the whole process if anything else gets stuck.

import net from "node:net";
import { isDeepStrictEqual, inspect } from "node:util";
import { randomBytes } from "node:crypto";

/** Bound on any single wait (a call, a subscription update, a close). */
export const STEP_TIMEOUT_MS = 20_000;
/** Bound on one step (a step's waits take milliseconds each on a healthy server). */
const STEP_BOUND_MS = STEP_TIMEOUT_MS + 5_000;
/** Bound on a whole driver; run.sh adds an outer `timeout` as well. */
const DRIVER_TIMEOUT_MS = 170_000;

let driverName = "driver";
let currentStep = "start";

/** Parses `node DRIVER.mjs URL [ADMIN_KEY]` (or CHORUS_URL / CHORUS_ADMIN_KEY). */
export function setup(name) {
  driverName = name;
  const url = process.argv[2] ?? process.env.CHORUS_URL;
  const adminKey = process.argv[3] ?? process.env.CHORUS_ADMIN_KEY ?? null;
  if (!url) {
    console.error(`usage: node ${process.argv[1]} URL [ADMIN_KEY]   (or CHORUS_URL, CHORUS_ADMIN_KEY)`);
    process.exit(2);
  }
  const watchdog = setTimeout(() => {
    fail(`the driver did not finish within ${DRIVER_TIMEOUT_MS / 1000} s`);
  }, DRIVER_TIMEOUT_MS);
  watchdog.unref();
  // An unhandled rejection or exception anywhere (a client callback included) fails the run.
  process.on("unhandledRejection", (e) => fail(`unhandled rejection: ${describe(e)}`));
  process.on("uncaughtException", (e) => fail(`uncaught exception: ${describe(e)}`));
  // Unique per run, so that runs against one server do not see each other's data.
  const suffix = `${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
  return { url: url.replace(/\/+$/, ""), adminKey, suffix };
}

export function fail(message) {
  console.error(`[${driverName}] FAIL in step "${currentStep}": ${message}`);
  process.exit(1);
}

/** Runs one named step: an async function bounded by `timeoutMs`. */
export async function step(name, body, timeoutMs = STEP_BOUND_MS) {
  currentStep = name;
  const started = Date.now();
  try {
    await withTimeout(Promise.resolve().then(body), timeoutMs, name);
  } catch (e) {
    fail(describe(e));
  }
  console.log(`[${driverName}] ok   ${name} (${Date.now() - started} ms)`);
}

/** `fetch` for ConvexHttpClient: every request is aborted after STEP_TIMEOUT_MS. */
export async function boundedFetch(input, init) {
  try {
    return await fetch(input, { ...init, signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
  } catch (e) {
    if (e?.name === "TimeoutError") {
      throw new Error(`no HTTP response within ${STEP_TIMEOUT_MS / 1000} s from ${input}`);
    }
    throw e;
  }
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms / 1000} s waiting for: ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Fails early, with the OS's reason, if nothing accepts TCP connections at the URL. */
export async function checkReachable(url) {
  const parsed = new URL(url);
  const port = Number(parsed.port || (parsed.protocol === "https:" ? 443 : 80));
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  await step(`connect to ${parsed.host}`, () =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.setTimeout(5_000, () => {
        socket.destroy();
        reject(new Error(`cannot connect to ${url}: no answer within 5 s`));
      });
      socket.once("connect", () => {
        socket.end();
        resolve();
      });
      socket.once("error", (e) =>
        reject(new Error(`cannot connect to ${url}: ${e.code ?? e.message} (is the server running?)`)),
      );
    }),
  );
}

export function describe(e) {
  if (e instanceof Error) {
    const cause = e.cause ? ` (cause: ${describe(e.cause)})` : "";
    const data = "data" in e ? ` data=${show(e.data)}` : "";
    return `${e.name}: ${e.message}${data}${cause}`;
  }
  return show(e);
}

export function show(value) {
  return inspect(value, { depth: 6, breakLength: Infinity });
}

export function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

export function eq(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** Awaits `promise`, expecting it to reject; returns the error. */
export async function rejects(promise, what) {
  let value;
  try {
    value = await promise;
  } catch (e) {
    return e;
  }
  throw new Error(`${what}: expected an error, got the value ${show(value)}`);
}

/** Checks a document's system fields and returns the document without them. */
export function userFields(doc, table) {
  check(doc !== null && typeof doc === "object", `${table} document expected, got ${show(doc)}`);
  check(typeof doc._id === "string" && doc._id.length > 0, `${table}._id: ${show(doc._id)}`);
  check(
    typeof doc._creationTime === "number" && doc._creationTime > 1e12,
    `${table}._creationTime should be a float64 ms timestamp: ${show(doc._creationTime)}`,
  );
  const { _id, _creationTime, ...rest } = doc;
  return rest;
}

export function done() {
  console.log(`[${driverName}] PASS`);
  process.exit(0);
}
