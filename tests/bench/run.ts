/**
 * `deno task bench`: measures the product on this machine against real
 * servers on loopback (the real program under `deno run` with its permission
 * sets, redis-server/valkey-server, kube-apiserver + etcd), prints a table and
 * writes docs/bench/results.json. Not a test: nothing here asserts timings.
 * Every load is bounded in count and stops by itself.
 */

import { ensureControlPlaneAssets, startControlPlane } from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { ROOT, startWeb } from "../helpers/program.ts";
import { startValkey, subscribe, type TestValkey, valkeyCall } from "../helpers/valkey.ts";
import { benchEndToEnd, benchWorkerIdle, benchWorkerScale } from "./worker_bench.ts";
import { benchSignatures } from "./signature_bench.ts";
import { cpuSeconds, peakRssMiB, resetPeakRss, rssMiB } from "./proc.ts";
import { GO_REFERENCE } from "./reference.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { parseSigningKey } from "../../shared/event_keys.ts";
import { importSigningKey } from "../../shared/signing_key.ts";
import { reportValue } from "../../worker/feedback/store.ts";
import {
  type ClusterReport,
  CLUSTERS_KEY,
  emptyCounts,
  MAX_REPORTED_DEPLOYMENTS,
  reportField,
  statusKey,
} from "../../shared/event_status.ts";

const CHANNEL = "krt-bench";
const quick = Deno.args.includes("--quick");
// --web-only: the web scenarios alone (about 40 s), for before/after runs of web changes.
const webOnly = Deno.args.includes("--web-only");
// --signing-only: the event-signature scenarios alone (issue #18's cost, about 6 minutes).
const signingOnly = Deno.args.includes("--signing-only");
/** `--worker-idle[=ROOT]`: only the idle worker's memory, 3 rounds; against ROOT's program too. */
const workerIdle = Deno.args.find((a) => a.startsWith("--worker-idle"));
/** `--worker-scale=N`: only the worker against N realistic Deployments (opt-in: minutes, GiBs). */
const workerScale = Number(
  Deno.args.find((a) => a.startsWith("--worker-scale="))?.slice("--worker-scale=".length) ?? 0,
);

/** One row of the results table. */
export interface Row {
  scenario: string;
  metric: string;
  value: number;
  unit: string;
  target?: string;
  /** The same figure for the Go implementation on this kind of machine, when known. */
  reference?: string;
}

const rows: Row[] = [];
/** Records and prints one measurement. */
export function record(row: Row): void {
  rows.push(row);
  const value = Number.isInteger(row.value) ? String(row.value) : row.value.toFixed(2);
  console.error(
    `  ${row.scenario.padEnd(34)} ${row.metric.padEnd(34)} ${value.padStart(10)} ${
      row.unit.padEnd(8)
    } ${(row.target ?? "").padEnd(20)} ${row.reference ?? ""}`,
  );
}

async function load(
  args: string[],
): Promise<
  { count: number; rate: number; p50_ms: number; p99_ms: number; statuses: Record<string, number> }
> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "--allow-read", `${ROOT}tests/bench/load.ts`, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (out.code !== 0) throw new Error("load generator failed");
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

async function signTokens(
  issuer: TestIssuer,
  count: number,
  options: Parameters<TestIssuer["sign"]>[0] = {},
) {
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) tokens.push(await issuer.sign(options));
  const file = await Deno.makeTempFile({ prefix: "krt-bench-tokens-" });
  await Deno.writeTextFile(file, tokens.join("\n"));
  return file;
}

/** The --v8-flags of a mode's task in deno.json: the bench runs what `deno task web` runs. */
function v8Flags(task: "web" | "worker"): string[] {
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks;
  return String(tasks[task]).split(" ").filter((arg) => arg.startsWith("--v8-flags="));
}

/** One accepted event before measuring, so the JWKS is cached and the first-request paths ran. */
async function warmUp(issuer: TestIssuer, url: string) {
  const res = await fetch(`${url}/event`, {
    method: "POST",
    headers: { authorization: `Bearer ${await issuer.sign()}`, "content-type": "application/json" },
    body: '{"image":"ghcr.io/acme/app:dev"}',
  });
  await res.body?.cancel();
  if (res.status !== 202) throw new Error(`warm-up event answered ${res.status}`);
}

/** The web every bench scenario starts: the test issuer, the bench channel, and `extra`. */
function benchWebEnv(
  issuer: TestIssuer,
  valkey: TestValkey,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_OIDC_ISSUER: issuer.url,
    GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
    GITHUB_ALLOWED_ORG: "acme",
    ...extra,
  };
}

async function benchWeb(issuer: TestIssuer, valkey: TestValkey) {
  // A channel subscriber for a web that delivers over PubSub (a KRT_PROGRAM_ROOT from before
  // issue #27), and a live registered cluster for one that appends to the stream.
  const sub = await subscribe(valkey, CHANNEL);
  const register = () => valkeyCall(valkey, "ZADD", CLUSTERS_KEY, Date.now(), "bench");
  await register();
  const registration = setInterval(() => void register().catch(() => {}), 5000);
  const { program, url } = await startWeb(
    benchWebEnv(issuer, valkey),
    [],
    ["-P=web", ...v8Flags("web")],
  );
  const pid = program.child.pid;
  // The peak of each load alone (issue #14 compares the peak under c=32); the
  // process's own peak is the largest of them.
  let wholePeak = 0;
  let acceptPeak = 0;
  const phasePeak = () => {
    const peak = peakRssMiB(pid);
    wholePeak = Math.max(wholePeak, peak);
    resetPeakRss(pid);
    return peak;
  };
  try {
    // Idle: started, listening, one JWKS fetch behind it, nothing else yet.
    await warmUp(issuer, url);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    record({ scenario: "web process", metric: "RSS idle", value: rssMiB(pid), unit: "MiB" });
    for (
      const [concurrency, count] of [[1, quick ? 300 : 2000], [32, quick ? 1000 : 10000], [
        256,
        quick ? 1000 : 10000,
      ]]
    ) {
      const tokens = await signTokens(issuer, count);
      phasePeak();
      const cpuBefore = cpuSeconds(pid);
      const result = await load([
        "--url",
        `${url}/event`,
        "--tokens",
        tokens,
        "--concurrency",
        String(concurrency),
      ]);
      const cpu = cpuSeconds(pid) - cpuBefore;
      const peak = phasePeak();
      acceptPeak = Math.max(acceptPeak, peak);
      await Deno.remove(tokens);
      const scenario = `web accept c=${concurrency}`;
      const go = concurrency === 32 ? GO_REFERENCE : undefined;
      record({
        scenario,
        metric: "events/s",
        value: result.rate,
        unit: "1/s",
        target: concurrency === 32 ? "≥ 3000" : undefined,
        reference: go?.acceptedPerSecond,
      });
      record({
        scenario,
        metric: "server CPU per accepted event",
        value: (cpu * 1000) / Math.max(1, result.statuses["202"] ?? 0),
        unit: "ms",
        reference: go?.cpuPerEventMs,
      });
      record({
        scenario,
        metric: "p50 latency",
        value: result.p50_ms,
        unit: "ms",
        reference: go?.p50Ms,
      });
      record({
        scenario,
        metric: "p99 latency",
        value: result.p99_ms,
        unit: "ms",
        target: concurrency === 32 ? "≤ 25" : undefined,
      });
      record({
        scenario,
        metric: "non-202 answers",
        value: result.count - (result.statuses["202"] ?? 0),
        unit: "count",
      });
      record({
        scenario,
        metric: "peak RSS during this load",
        value: peak,
        unit: "MiB",
        target: concurrency === 32 ? "≤ 96" : undefined,
        reference: go?.peakRssMiB,
      });
    }
    record({
      scenario: "web process",
      metric: "peak RSS under accept load",
      value: acceptPeak,
      unit: "MiB",
      reference: GO_REFERENCE.peakRssMiB,
    });
    const count = quick ? 2000 : 20000;
    const garbageCpuBefore = cpuSeconds(pid);
    const garbage = await load([
      "--url",
      `${url}/event`,
      "--token",
      "garbage",
      "--count",
      String(count),
      "--concurrency",
      "32",
    ]);
    record({
      scenario: "reject garbage c=32",
      metric: "requests/s",
      value: garbage.rate,
      unit: "1/s",
      target: "≥ 10000",
    });
    record({
      scenario: "reject garbage c=32",
      metric: "server CPU per rejection",
      value: ((cpuSeconds(pid) - garbageCpuBefore) * 1000) / Math.max(1, garbage.count),
      unit: "ms",
    });
    const jwksBefore = issuer.hits.get("/.well-known/jwks") ?? 0;
    const unknown = await signTokens(issuer, quick ? 1000 : 5000, {
      header: { kid: "unknown-kid" },
    });
    const started = performance.now();
    const unknownResult = await load([
      "--url",
      `${url}/event`,
      "--tokens",
      unknown,
      "--concurrency",
      "32",
    ]);
    const seconds = (performance.now() - started) / 1000;
    await Deno.remove(unknown);
    const fetches = (issuer.hits.get("/.well-known/jwks") ?? 0) - jwksBefore;
    record({
      scenario: "reject unknown kid c=32",
      metric: "requests/s",
      value: unknownResult.rate,
      unit: "1/s",
    });
    record({
      scenario: "reject unknown kid c=32",
      metric: `JWKS fetches in ${seconds.toFixed(1)} s`,
      value: fetches,
      unit: "count",
      target: `≤ ${Math.ceil(seconds / 10) + 1} (10 s cooldown)`,
    });
    await benchStatusReads(issuer, valkey, url);
    record({ scenario: "web process", metric: "RSS after load", value: rssMiB(pid), unit: "MiB" });
    phasePeak();
    record({ scenario: "web process", metric: "peak RSS", value: wholePeak, unit: "MiB" });
  } finally {
    clearInterval(registration);
    await sub.close();
    await program.stop();
  }
}

/** A full cluster report of `cluster`: 50 named Deployments, 150 more counted. */
function fullReport(cluster: string): ClusterReport {
  const deployments = Array.from({ length: MAX_REPORTED_DEPLOYMENTS }, (_, i) => ({
    namespace: "bench",
    name: `app-${i}`,
    result: "restarted" as const,
    rollout: { state: "complete" as const, replicas: 3, updated: 3, ready: 3, available: 3 },
  }));
  return {
    cluster,
    state: "succeeded",
    matched: 200,
    counts: { ...emptyCounts(), restarted: 200, complete: 200 },
    deployments,
    omitted: 150,
    updated: new Date().toISOString(),
  };
}

/** Posts one event to `url` and answers its id. */
async function postOne(issuer: TestIssuer, url: string): Promise<string> {
  const posted = await fetch(`${url}/event`, {
    method: "POST",
    headers: { authorization: `Bearer ${await issuer.sign()}`, "content-type": "application/json" },
    body: '{"image":"ghcr.io/acme/app:dev"}',
  });
  if (posted.status !== 202) throw new Error(`bench event answered ${posted.status}`);
  return (await posted.json()).id;
}

/** GET /event/<id> (no wait) at c=32 on a record already holding its report: one HGETALL per read. */
async function loadStatusReads(issuer: TestIssuer, url: string, id: string, scenario: string) {
  const reader = await signTokens(issuer, 1);
  const readToken = (await Deno.readTextFile(reader)).trim();
  await Deno.remove(reader);
  const result = await load([
    "--url",
    `${url}/event/${id}`,
    "--method",
    "GET",
    "--token",
    readToken,
    "--count",
    String(quick ? 2000 : 20000),
    "--concurrency",
    "32",
  ]);
  record({ scenario, metric: "reads/s", value: result.rate, unit: "1/s" });
  record({ scenario, metric: "p50 latency", value: result.p50_ms, unit: "ms" });
  record({ scenario, metric: "p99 latency", value: result.p99_ms, unit: "ms" });
  record({
    scenario,
    metric: "non-200 answers",
    value: result.count - (result.statuses["200"] ?? 0),
    unit: "count",
  });
}

/** Status reads on a record with a full, unsigned cluster report. */
async function benchStatusReads(issuer: TestIssuer, valkey: TestValkey, url: string) {
  const id = await postOne(issuer, url);
  const report = JSON.stringify(fullReport("bench"));
  // Also under the name from before the keys' hash tag (issue #26), so a before/after pair
  // (KRT_PROGRAM_ROOT) reads the same record.
  for (const key of [statusKey(id), `kuberollouttrigger:event-status:${id}`]) {
    await valkeyCall(valkey, "HSET", key, reportField("bench"), report);
  }
  await loadStatusReads(issuer, url, id, "status read c=32 (50 named)");
}

/**
 * The same reads with both directions signed (issue #28): web checks its
 * binding's two signatures and the cluster's report signature on every read.
 */
async function benchSignedStatusReads(issuer: TestIssuer, valkey: TestValkey) {
  const [webKey, clusterKey] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const { program, url } = await startWeb(
    benchWebEnv(issuer, valkey, {
      EVENT_SIGNING_KEY: webKey.privatePem,
      REPORT_VERIFY_KEYS: `bench=${clusterKey.publicLine}`,
    }),
    [],
    ["-P=web", ...v8Flags("web")],
  );
  try {
    const id = await postOne(issuer, url);
    const key = await importSigningKey(parseSigningKey(clusterKey.privatePem)!, "bench");
    const value = reportValue(id, fullReport("bench"), key);
    await valkeyCall(valkey, "HSET", statusKey(id), reportField("bench"), value);
    await loadStatusReads(issuer, url, id, "status read c=32 (50 named, signed both ways)");
  } finally {
    await program.stop();
  }
}

/** Ends the run after the web scenarios (--web-only). */
class WebOnlyDone extends Error {}

const assets = webOnly || signingOnly ? "" : await ensureControlPlaneAssets();
if (workerIdle) {
  const valkey = await startValkey();
  const plane = await startControlPlane({ assetsDir: assets });
  try {
    const otherRoot = workerIdle.split("=")[1];
    await benchWorkerIdle({ plane, valkey, record, rounds: 3, otherRoot });
  } finally {
    await plane.stop();
    await valkey.stop();
  }
  Deno.exit(0);
}
console.error(
  `kuberollouttrigger bench on ${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores${
    quick ? " (quick)" : ""
  }${webOnly ? " (web only)" : ""}${signingOnly ? " (signing only)" : ""}, load average ${
    (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ")
  }`,
);
console.error(
  `  ${"scenario".padEnd(34)} ${"metric".padEnd(34)} ${"value".padStart(10)} ${"unit".padEnd(8)} ${
    "target".padEnd(20)
  } Go reference`,
);
const issuer = await startIssuer();
const valkey = await startValkey();
const started = Date.now();
if (workerScale > 0) {
  const plane = await startControlPlane({ assetsDir: assets });
  try {
    await benchWorkerScale({
      plane,
      valkey,
      deployments: workerScale,
      namespaces: Math.min(1000, Math.ceil(workerScale / 10)),
      realistic: true,
      baseline: false,
      record,
    });
  } finally {
    await plane.stop();
    await valkey.stop();
    await issuer.stop();
  }
  Deno.exit(0);
}
try {
  if (!signingOnly) {
    await benchWeb(issuer, valkey);
    await benchSignedStatusReads(issuer, valkey);
  }
  await benchSignatures({
    issuer,
    valkey,
    quick,
    record,
    load,
    signTokens: (i, n) => signTokens(i, n),
    webPermissions: ["-P=web", ...v8Flags("web")],
    warmUp: (url) => warmUp(issuer, url),
  });
  if (webOnly || signingOnly) throw new WebOnlyDone();
  const plane = await startControlPlane({ assetsDir: assets });
  try {
    await benchEndToEnd({ plane, issuer, valkey, events: quick ? 50 : 200, record });
  } finally {
    await plane.stop();
  }
  for (const [deployments, namespaces] of quick ? [[1000, 100]] : [[1000, 100], [10000, 500]]) {
    const scalePlane = await startControlPlane({ assetsDir: assets });
    try {
      await benchWorkerScale({ plane: scalePlane, valkey, deployments, namespaces, record });
    } finally {
      await scalePlane.stop();
    }
  }
} catch (err) {
  if (!(err instanceof WebOnlyDone)) throw err;
} finally {
  await valkey.stop();
  await issuer.stop();
}

const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.+)/)?.[1] ??
  "unknown";
const mem = Number(/MemTotal:\s+(\d+)/.exec(await Deno.readTextFile("/proc/meminfo"))?.[1] ?? 0);
const results = {
  date: new Date().toISOString(),
  duration_s: Math.round((Date.now() - started) / 1000),
  quick,
  web_only: webOnly,
  machine: {
    cpu,
    cores: navigator.hardwareConcurrency,
    memory_gib: Math.round(mem / 1024 / 1024),
    os: Deno.build.os,
    deno: Deno.version.deno,
  },
  rows,
};
if (!quick && !webOnly && !signingOnly) {
  await Deno.mkdir(`${ROOT}docs/bench`, { recursive: true });
  await Deno.writeTextFile(
    `${ROOT}docs/bench/results.json`,
    JSON.stringify(results, null, 2) + "\n",
  );
  console.error(`wrote docs/bench/results.json (${results.duration_s} s)`);
}
