/**
 * Load generator for `deno task bench`, run as its own process so that the
 * load does not share a runtime with the server it measures. Reads one token
 * per line from --tokens (or sends --token for every request), POSTs --body
 * (or, with --method GET, GETs) --url with --concurrency workers until every
 * token is used, and prints
 * one JSON line: count, seconds, rate, latency percentiles, statuses.
 * Loopback targets only.
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    url: { type: "string" },
    tokens: { type: "string" },
    token: { type: "string" },
    count: { type: "string" },
    concurrency: { type: "string", default: "1" },
    body: { type: "string", default: '{"image":"ghcr.io/acme/app:dev"}' },
    method: { type: "string", default: "POST" },
  },
  strict: true,
});

const url = new URL(values.url!);
if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
  console.error("load.ts only targets loopback addresses");
  Deno.exit(2);
}
const tokens = values.tokens
  ? (await Deno.readTextFile(values.tokens)).split("\n").filter(Boolean)
  : Array.from({ length: Number(values.count) }, () => values.token!);
const concurrency = Number(values.concurrency);
const latencies: number[] = [];
const statuses: Record<string, number> = {};
let next = 0;
const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < tokens.length) {
    const token = tokens[next++];
    const t0 = performance.now();
    const res = values.method === "GET"
      ? await fetch(url, { headers: { authorization: `Bearer ${token}` } })
      : await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: values.body,
      });
    await res.arrayBuffer();
    latencies.push(performance.now() - t0);
    statuses[res.status] = (statuses[res.status] ?? 0) + 1;
  }
}));
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
console.log(JSON.stringify({
  count: latencies.length,
  seconds,
  rate: latencies.length / seconds,
  p50_ms: pct(0.5),
  p99_ms: pct(0.99),
  statuses,
}));
