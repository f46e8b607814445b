// Subscription latency, measured the way Convex's load generator does: a subscriber watches a
// query; a second client runs a mutation; the time from sending the mutation to the
// subscriber's update showing the new row. Sequential iterations, one server, loopback.
//   node sub_latency.mjs URL [ITERATIONS]   (default 1000)
// Prints p50/p90/p99/max and the conditions. Not a test: a benchmark (docs/benchmarks.md).

import os from "node:os";
import { ConvexClient } from "convex/browser";
import { anyApi } from "convex/server";

const api = anyApi;
const url = (process.argv[2] ?? process.env.CHORUS_URL ?? "").replace(/\/+$/, "");
const iterations = Number(process.argv[3] ?? 1000);
if (!url || !(iterations > 0)) {
  console.error("usage: node sub_latency.mjs URL [ITERATIONS]");
  process.exit(2);
}
const watchdog = setTimeout(() => {
  console.error("sub_latency: no progress for 30 s; giving up");
  process.exit(1);
}, 30_000);

const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;
const channel = `lat_${suffix}`;
const subscriber = new ConvexClient(url);
const writer = new ConvexClient(url);
const author = await writer.mutation(api.users.register, { name: `lat_${suffix}`, role: "member" });

let waiting = null; // { body, resolve }
subscriber.onUpdate(api.messages.latest, { channel }, (latest) => {
  if (waiting && latest && latest.body === waiting.body) {
    const w = waiting;
    waiting = null;
    w.resolve(performance.now());
  }
});
// Let the subscription's first result arrive.
await subscriber.query(api.messages.latest, { channel });

const samples = [];
for (let i = 0; i < iterations; i++) {
  const body = `m${i}`;
  const seen = new Promise((resolve) => (waiting = { body, resolve }));
  const start = performance.now();
  writer.mutation(api.messages.send, { author, channel, body }).catch((e) => {
    console.error(`mutation failed: ${e}`);
    process.exit(1);
  });
  const end = await seen;
  samples.push(end - start);
  watchdog.refresh();
}
clearTimeout(watchdog);
samples.sort((a, b) => a - b);
const pct = (p) => samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))];
console.log(
  `subscription latency (mutation sent -> subscriber sees the row), ${iterations} iterations, ` +
    `npm convex ConvexClient x2 over WebSocket, ${url}, ${os.cpus().length} cores`,
);
console.log(
  `p50 ${pct(50).toFixed(2)} ms  p90 ${pct(90).toFixed(2)} ms  p99 ${pct(99).toFixed(2)} ms  max ${samples[samples.length - 1].toFixed(2)} ms`,
);
await subscriber.close();
await writer.close();
process.exit(0);
