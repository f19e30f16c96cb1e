/**
 * The worker's benchmarks for `deno task bench`: end-to-end latency from POST
 * to a patched Deployment visible in the API server, and the worker at scale
 * (inventory sync, message → last patch, API requests per event, memory)
 * beside a naive list-every-Deployment-per-event baseline.
 */

import { deploymentManifest, openCluster } from "../helpers/cluster.ts";
import type { ControlPlane } from "../helpers/control_plane.ts";
import { TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, ROOT, startProgram, startWeb, startWorker } from "../helpers/program.ts";
import { appendEvent, type TestValkey } from "../helpers/valkey.ts";
import { createKubeApi, type KubeApi } from "../../worker/kube/api.ts";
import { planRestarts, summarizeDeployment } from "../../worker/plan.ts";
import { restartDeployment } from "../../worker/restart.ts";
import { benchListFloor } from "./list_floor.ts";
import type { Row } from "./run.ts";

const CHANNEL = "krt-bench-worker";

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function adminApi(plane: ControlPlane): KubeApi {
  return createKubeApi({
    server: plane.server,
    httpClient: Deno.createHttpClient({ caCerts: [plane.caPem] }),
    authorization: () => Promise.resolve(`Bearer ${plane.adminToken}`),
  });
}

function rssMiB(program: Program): number {
  const status = Deno.readTextFileSync(`/proc/${program.child.pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function scrape(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/kube_requests_total\{verb="(\w+)"\} (\d+)/g)) {
    out[m[1]] = Number(m[2]);
  }
  return out;
}

/** POST → restartedAt visible through a watch, sequentially, `events` times. */
export async function benchEndToEnd(options: {
  plane: ControlPlane;
  issuer: TestIssuer;
  valkey: TestValkey;
  events: number;
  record: (row: Row) => void;
}): Promise<void> {
  const cluster = openCluster(options.plane);
  const programs: Program[] = [];
  const stop = new AbortController();
  try {
    const { ns, kubeconfig } = await cluster.workerNamespace("bench-e2e");
    await cluster.createDeployment(
      deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev", imagePullPolicy: "Always" }]),
    );
    const shared = {
      VALKEY_ADDR: options.valkey.addr,
      VALKEY_CHANNEL: CHANNEL,
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    };
    const web = await startWeb({
      ...shared,
      GITHUB_OIDC_ISSUER: options.issuer.url,
      GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
      GITHUB_ALLOWED_ORG: "acme",
    });
    programs.push(web.program);
    programs.push(
      (await startWorker(
        { ...shared, WATCH_NAMESPACES: ns, RESTART_DEDUP_WINDOW: "0s" },
        kubeconfig,
      )).program,
    );

    const api = adminApi(options.plane);
    const list = await api.listDeployments(ns);
    const seen: { at: number; value: string }[] = [];
    let wake: (() => void) | undefined;
    (async () => {
      for await (
        const ev of api.watchDeployments(ns, {
          resourceVersion: list.resourceVersion,
          signal: stop.signal,
          timeoutSeconds: 600,
        })
      ) {
        if (ev.type !== "MODIFIED") continue;
        const value = ev.object.spec?.template?.metadata?.annotations
          ?.["kubectl.kubernetes.io/restartedAt"];
        if (value) seen.push({ at: performance.now(), value });
        wake?.();
      }
    })().catch(() => {});

    const tokens: string[] = [];
    for (let i = 0; i < options.events; i++) tokens.push(await options.issuer.sign());
    const latencies: number[] = [];
    for (const token of tokens) {
      const before = seen.length;
      const t0 = performance.now();
      const res = await fetch(`${web.url}/event`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: '{"image":"ghcr.io/acme/app","tags":["dev"]}',
      });
      await res.body?.cancel();
      if (res.status !== 202) throw new Error(`POST answered ${res.status}`);
      const deadline = t0 + 10_000;
      while (seen.length === before && performance.now() < deadline) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 100);
        });
      }
      if (seen.length === before) throw new Error("the restart never became visible");
      latencies.push(seen[seen.length - 1].at - t0);
    }
    const scenario = `end to end (${options.events} events)`;
    options.record({
      scenario,
      metric: "POST → patched, p50",
      value: percentile(latencies, 0.5),
      unit: "ms",
      target: "≤ 50",
    });
    options.record({
      scenario,
      metric: "POST → patched, p99",
      value: percentile(latencies, 0.99),
      unit: "ms",
    });
  } finally {
    stop.abort();
    for (const p of programs) await p.stop();
    await cluster.cleanup();
  }
}

async function inParallel<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

/**
 * A Deployment shaped like those of a real cluster (a few containers, labels,
 * annotations, resources, probes, env): what the inventory parses per object
 * matters to both the sync time and the garbage it leaves. Containers: an
 * app image of its own, a sidecar shared by every Deployment, and an init
 * container from one of 50 migration images.
 */
export function realisticDeployment(namespace: string, name: string, appImage: string) {
  const manifest = deploymentManifest(namespace, name, [
    { name: "app", image: appImage, imagePullPolicy: "Always" },
    { name: "proxy", image: "ghcr.io/acme/envoy:v1.31.2", imagePullPolicy: "IfNotPresent" },
  ], {
    init: [{ name: "migrate", image: `ghcr.io/acme/migrate-${name.length % 50}:v3` }],
    annotations: {
      "deployment.kubernetes.io/owner": "team-" + (name.length % 17),
      "example.com/description": "a service of the scale benchmark with a realistic manifest",
    },
  });
  type Container = Record<string, unknown>;
  const spec = manifest.spec.template.spec as unknown as {
    containers: Container[];
    initContainers: Container[];
  };
  for (const c of [...spec.containers, ...spec.initContainers]) {
    c.resources = { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } };
    c.env = [
      { name: "LOG_LEVEL", value: "info" },
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    ];
  }
  spec.containers[0].ports = [{ name: "http", containerPort: 8080 }];
  spec.containers[0].readinessProbe = { httpGet: { path: "/healthz", port: "http" } };
  Object.assign(manifest.metadata.labels, {
    "app.kubernetes.io/part-of": "scale-bench",
    "app.kubernetes.io/managed-by": "bench",
  });
  return manifest;
}

/**
 * The V8 flags of deno.json's `worker` task (how the worker is meant to run), or
 * KRT_BENCH_WORKER_V8_FLAGS to compare others; "none" for V8's defaults.
 */
function workerV8Flags(override = Deno.env.get("KRT_BENCH_WORKER_V8_FLAGS")): string[] {
  if (override !== undefined) return override === "none" ? [] : [`--v8-flags=${override}`];
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const flag = /--v8-flags=\S+/.exec(String(config.tasks?.worker ?? ""));
  return flag ? [flag[0]] : [];
}

/** Starts the worker as startWorker does, but resolves once it listens (not once subscribed). */
async function launchWorker(
  env: Record<string, string>,
  kubeconfig: string,
  v8Flags = workerV8Flags(),
): Promise<{ program: Program; healthUrl: string }> {
  const program = startProgram({
    args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
    env: { KUBECONFIG: kubeconfig, ...env },
    permissions: ["-P=worker", `--allow-read=${kubeconfig}`, ...v8Flags],
  });
  const listening = await program.waitForLog(
    (l) => l.msg === "worker health server listening",
    20_000,
  );
  return { program, healthUrl: `http://${listening.addr}` };
}

async function readyzOk(url: string): Promise<boolean> {
  const res = await fetch(`${url}/readyz`).catch(() => undefined);
  await res?.body?.cancel();
  return res?.status === 200;
}

/** Polls /readyz until 200; resolves to Date.now() of the first 200. */
async function waitReady(url: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await readyzOk(url)) return Date.now();
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the worker was not ready within ${timeoutMs} ms`);
}

/**
 * The worker against `deployments` Deployments over `namespaces` namespaces:
 * start → ready, memory after sync and after 20 events, bytes per Deployment
 * (above an empty worker), message → last patch, API requests per event, and
 * (with `baseline`) the naive list-every-Deployment-per-event way beside it.
 */
export async function benchWorkerScale(options: {
  plane: ControlPlane;
  valkey: TestValkey;
  deployments: number;
  namespaces: number;
  record: (row: Row) => void;
  /** Realistic Deployments (three containers, probes, env) instead of minimal ones. */
  realistic?: boolean;
  /** Also measure the list-per-event baseline (5 full lists: slow at 100k). */
  baseline?: boolean;
}): Promise<void> {
  const { deployments, namespaces } = options;
  const cluster = openCluster(options.plane);
  const scenario = `worker, ${deployments} Deployments / ${namespaces} ns${
    options.realistic ? " (3 containers)" : ""
  }`;
  const workerEnv = {
    VALKEY_ADDR: options.valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    RESTART_DEDUP_WINDOW: "0s",
  };
  let program: Program | undefined;
  try {
    await cluster.applyManifest("k8s/rbac/cluster-wide/rbac.yaml");
    const kubeconfig = await cluster.workerKubeconfig();
    const nsNames = Array.from({ length: namespaces }, (_, i) => `scale-${i}`);
    await inParallel([...nsNames, "scale-empty"], 16, async (ns) => {
      const res = await cluster.admin.createNamespace(ns);
      if (res.status !== 201) throw new Error(`creating namespace ${ns}: ${res.status}`);
    });
    // The same worker with nothing to list: what the inventory adds is measured above it.
    const empty = await launchWorker({ ...workerEnv, WATCH_NAMESPACES: "scale-empty" }, kubeconfig);
    await waitReady(empty.healthUrl, 30_000);
    const emptyRss = rssMiB(empty.program);
    await empty.program.stop();

    const hot = new Set([0, 1, 2, 3, 4].map((i) => Math.floor(i * deployments / 5)));
    const indexes = Array.from({ length: deployments }, (_, i) => i);
    const createStarted = performance.now();
    // Loopback POSTs with bounded concurrency: the API server, not the client, is the limit.
    await inParallel(indexes, options.realistic ? 64 : 32, async (i) => {
      const image = hot.has(i) ? "ghcr.io/acme/hot:dev" : `ghcr.io/acme/svc-${i}:v1`;
      const ns = nsNames[i % namespaces];
      await cluster.createDeployment(
        options.realistic
          ? realisticDeployment(ns, `d-${i}`, image)
          : deploymentManifest(ns, `d-${i}`, [{ image, imagePullPolicy: "Always" }]),
      );
    });
    console.error(
      `  (created ${deployments} Deployments in ${
        ((performance.now() - createStarted) / 1000).toFixed(1)
      } s)`,
    );
    if (options.realistic) {
      await benchListFloor({ plane: options.plane, scenario, record: options.record });
    }
    // KRT_BENCH_WORKER_V8_VARIANTS="none|--max-semi-space-size=1|...": start → ready and
    // memory under each, on the same objects (how the worker task's flags were chosen).
    for (const variant of (Deno.env.get("KRT_BENCH_WORKER_V8_VARIANTS") ?? "").split("|")) {
      if (!variant) continue;
      const trial = await launchWorker(workerEnv, kubeconfig, workerV8Flags(variant));
      try {
        const readyAt = await waitReady(trial.healthUrl, 120_000);
        const start = Date.parse(String(trial.program.logs.find((l) => l.msg === "starting")!.ts));
        const rss = rssMiB(trial.program);
        await new Promise((r) => setTimeout(r, 5000));
        const label = `${scenario} V8 ${variant}`;
        options.record({
          scenario: label,
          metric: "start → ready",
          value: readyAt - start,
          unit: "ms",
        });
        options.record({ scenario: label, metric: "RSS after sync", value: rss, unit: "MB" });
        options.record({
          scenario: label,
          metric: "RSS 5 s later",
          value: rssMiB(trial.program),
          unit: "MB",
        });
      } finally {
        await trial.program.stop();
      }
    }
    const worker = await launchWorker(workerEnv, kubeconfig);
    program = worker.program;
    {
      const readyAt = await waitReady(worker.healthUrl, 120_000);
      const start = Date.parse(String(program.logs.find((l) => l.msg === "starting")!.ts));
      const synced = Date.parse(String(program.logs.find((l) => l.msg === "inventory synced")!.ts));
      options.record({
        scenario,
        metric: "start → ready (/readyz 200)",
        value: readyAt - start,
        unit: "ms",
        target: deployments >= 100_000 ? "≤ 3000" : undefined,
      });
      options.record({
        scenario,
        metric: "inventory sync at startup",
        value: synced - start,
        unit: "ms",
      });
      const rssSynced = rssMiB(program);
      options.record({
        scenario,
        metric: "worker RSS after sync",
        value: rssSynced,
        unit: "MB",
        target: "≤ 150",
      });
      options.record({
        scenario,
        metric: "bytes per Deployment (RSS above empty)",
        value: Math.round((rssSynced - emptyRss) * 1024 * 1024 / deployments),
        unit: "B",
      });

      const before = await scrape(worker.healthUrl);
      const wall: number[] = [];
      const handling: number[] = [];
      const events = 20;
      for (let i = 0; i < events; i++) {
        const id = crypto.randomUUID();
        const t0 = performance.now();
        await appendEvent(
          options.valkey,
          JSON.stringify({
            id,
            time: new Date().toISOString(),
            image: "ghcr.io/acme/hot",
            tags: ["dev"],
          }),
        );
        const summary = await program.waitForLog(
          (l) => l.msg === "event handled" && l.event_id === id,
          30_000,
        );
        wall.push(performance.now() - t0);
        handling.push(Number(summary.duration_ms));
        if ((summary.restarted as string[]).length !== hot.size) {
          throw new Error(
            `restarted ${(summary.restarted as string[]).length}, expected ${hot.size}`,
          );
        }
      }
      const after = await scrape(worker.healthUrl);
      const delta = (verb: string) => ((after[verb] ?? 0) - (before[verb] ?? 0)) / events;
      options.record({
        scenario,
        metric: `worker RSS after ${events} events`,
        value: rssMiB(program),
        unit: "MB",
        target: "≤ 150",
      });
      options.record({
        scenario,
        metric: "message → last patch, p50",
        value: percentile(handling, 0.5),
        unit: "ms",
        target: deployments >= 100_000 ? "≤ 10" : "≤ 50",
      });
      options.record({
        scenario,
        metric: "publish → summary logged, p50",
        value: percentile(wall, 0.5),
        unit: "ms",
      });
      options.record({
        scenario,
        metric: "list calls per event",
        value: delta("list"),
        unit: "count",
        target: "0",
      });
      options.record({
        scenario,
        metric: "API requests per event",
        value: delta("list") + delta("get") + delta("patch"),
        unit: "count",
        target: `${hot.size} (restarted)`,
      });
      // Rollout tracking reads the watch; the audit trail is the only other call.
      options.record({
        scenario,
        metric: "Kubernetes Event creates per event",
        value: delta("create_event"),
        unit: "count",
        target: `${hot.size} (one per restart)`,
      });
      await program.stop();
      program = undefined;
      if (options.baseline === false) return;

      // Baseline: what a naive worker does — list every Deployment for each event.
      const api = adminApi(options.plane);
      const naive: number[] = [];
      let requests = 0;
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const all = [];
        let continueToken: string | undefined;
        do {
          const page = await api.listDeployments(undefined, { limit: 500, continueToken });
          requests++;
          all.push(...page.items);
          continueToken = page.continueToken;
        } while (continueToken);
        const plan = planRestarts(
          { image: "ghcr.io/acme/hot", tags: ["dev"] },
          all.map(summarizeDeployment),
        );
        for (const target of plan.restarts) {
          await restartDeployment(target, {
            api,
            event: { image: "ghcr.io/acme/hot", tags: ["dev"] },
          });
          requests++;
        }
        naive.push(performance.now() - t0);
      }
      const naiveP50 = percentile(naive, 0.5);
      options.record({
        scenario,
        metric: "baseline list-per-event, p50",
        value: naiveP50,
        unit: "ms",
      });
      options.record({
        scenario,
        metric: "baseline API requests per event",
        value: requests / 5,
        unit: "count",
      });
      options.record({
        scenario,
        metric: "speed-up over baseline",
        value: naiveP50 / percentile(handling, 0.5),
        unit: "x",
        target: "≥ 20",
      });
    }
  } finally {
    await program?.stop();
    cluster.admin.close();
  }
}

/**
 * The worker idle: ready (subscribed, its one empty namespace listed), then
 * RSS 5 s later, `rounds` times; with `otherRoot` each round also runs that
 * checkout's program (KRT_PROGRAM_ROOT), alternating which goes first, so a
 * before/after pair shares the machine's state.
 */
export async function benchWorkerIdle(options: {
  plane: ControlPlane;
  valkey: TestValkey;
  record: (row: Row) => void;
  rounds: number;
  otherRoot?: string;
}): Promise<void> {
  const cluster = openCluster(options.plane);
  await cluster.applyManifest("k8s/rbac/cluster-wide/rbac.yaml");
  const kubeconfig = await cluster.workerKubeconfig();
  const res = await cluster.admin.createNamespace("idle-empty");
  if (res.status !== 201) throw new Error(`creating namespace idle-empty: ${res.status}`);
  const env = {
    VALKEY_ADDR: options.valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    WATCH_NAMESPACES: "idle-empty",
  };
  const measure = async (root: string | undefined): Promise<number> => {
    const saved = Deno.env.get("KRT_PROGRAM_ROOT");
    if (root) Deno.env.set("KRT_PROGRAM_ROOT", root);
    else Deno.env.delete("KRT_PROGRAM_ROOT");
    try {
      const worker = await launchWorker(env, kubeconfig);
      try {
        await waitReady(worker.healthUrl, 30_000);
        await new Promise((r) => setTimeout(r, 5000));
        return rssMiB(worker.program);
      } finally {
        await worker.program.stop();
      }
    } finally {
      if (saved === undefined) Deno.env.delete("KRT_PROGRAM_ROOT");
      else Deno.env.set("KRT_PROGRAM_ROOT", saved);
    }
  };
  for (let round = 0; round < options.rounds; round++) {
    const order = options.otherRoot && round % 2 === 1
      ? [options.otherRoot, undefined]
      : [undefined, ...(options.otherRoot ? [options.otherRoot] : [])];
    for (const root of order) {
      options.record({
        scenario: root ? `worker idle (${root})` : "worker idle",
        metric: `RSS 5 s after ready, round ${round + 1}`,
        value: await measure(root),
        unit: "MiB",
      });
    }
  }
}
