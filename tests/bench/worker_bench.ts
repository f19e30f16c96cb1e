/**
 * The worker's benchmarks for `deno task bench`: end-to-end latency from POST
 * to a patched Deployment visible in the API server, and the worker at scale
 * (inventory sync, message → last patch, API requests per event, memory)
 * beside a naive list-every-Deployment-per-event baseline.
 */

import { openCluster } from "../helpers/cluster.ts";
import type { ControlPlane } from "../helpers/control_plane.ts";
import { deploymentManifest } from "../helpers/cluster.ts";
import { TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { publishRaw, type TestValkey } from "../helpers/valkey.ts";
import { createKubeApi, type KubeApi } from "../../worker/kube_api.ts";
import { planRestarts, summarizeDeployment } from "../../worker/plan.ts";
import { restartDeployment } from "../../worker/restart.ts";
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

/** The worker against `deployments` Deployments over `namespaces` namespaces, beside the naive baseline. */
export async function benchWorkerScale(options: {
  plane: ControlPlane;
  valkey: TestValkey;
  deployments: number;
  namespaces: number;
  record: (row: Row) => void;
}): Promise<void> {
  const { deployments, namespaces } = options;
  const cluster = openCluster(options.plane);
  const scenario = `worker, ${deployments} Deployments / ${namespaces} ns`;
  let program: Program | undefined;
  try {
    await cluster.applyManifest("k8s/rbac/cluster-wide/rbac.yaml");
    const nsNames = Array.from({ length: namespaces }, (_, i) => `scale-${i}`);
    await inParallel(nsNames, 16, async (ns) => void await cluster.admin.createNamespace(ns));
    const hot = new Set([0, 1, 2, 3, 4].map((i) => Math.floor(i * deployments / 5)));
    const indexes = Array.from({ length: deployments }, (_, i) => i);
    const createStarted = performance.now();
    await inParallel(indexes, 32, async (i) => {
      const image = hot.has(i) ? "ghcr.io/acme/hot:dev" : `ghcr.io/acme/svc-${i}:v1`;
      await cluster.createDeployment(
        deploymentManifest(nsNames[i % namespaces], `d-${i}`, [{
          image,
          imagePullPolicy: "Always",
        }]),
      );
    });
    console.error(
      `  (created ${deployments} Deployments in ${
        ((performance.now() - createStarted) / 1000).toFixed(1)
      } s)`,
    );
    const kubeconfig = await cluster.workerKubeconfig();
    const worker = await startWorker({
      VALKEY_ADDR: options.valkey.addr,
      VALKEY_CHANNEL: CHANNEL,
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      RESTART_DEDUP_WINDOW: "0s",
    }, kubeconfig);
    program = worker.program;
    {
      const start = Date.parse(String(program.logs.find((l) => l.msg === "starting")!.ts));
      const synced = Date.parse(String(program.logs.find((l) => l.msg === "inventory synced")!.ts));
      options.record({
        scenario,
        metric: "inventory sync at startup",
        value: synced - start,
        unit: "ms",
      });
      options.record({
        scenario,
        metric: "worker RSS after sync",
        value: rssMiB(program),
        unit: "MB",
        target: "≤ 150",
      });

      const before = await scrape(worker.healthUrl);
      const wall: number[] = [];
      const handling: number[] = [];
      const events = 20;
      for (let i = 0; i < events; i++) {
        const id = crypto.randomUUID();
        const t0 = performance.now();
        await publishRaw(
          options.valkey,
          CHANNEL,
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
        metric: "message → last patch, p50",
        value: percentile(handling, 0.5),
        unit: "ms",
        target: "≤ 50",
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
