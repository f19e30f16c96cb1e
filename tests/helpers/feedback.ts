// Rollout-feedback fixtures: an in-process worker (runWorker, real Valkey, real
// cluster) with its logs and metrics, events published exactly as web
// publishes them (web/publisher.ts, binding included), and the cluster report
// read back as web reads it. Test-only code; nothing here enters the product.

// API objects are indexed freely.
// deno-lint-ignore-file no-explicit-any
import { parseCommandLine } from "../../config/command_line.ts";
import { encodeEventMessage } from "../../shared/event.ts";
import {
  type ClusterReport,
  parseClusterReport,
  reportField,
  statusKey,
} from "../../shared/event_status.ts";
import { createLogger } from "../../lib/log.ts";
import { createValkeyClient, type ValkeyClient } from "../../shared/valkey_client.ts";
import { createPublisher } from "../../web/publisher.ts";
import { runWorker } from "../../worker/worker.ts";
import { eventually } from "./eventually.ts";
import type { KubeClient } from "./kube_client.ts";
import { testSettings, type TestValkey } from "./valkey.ts";

/** One in-process worker. */
export interface TestWorker {
  logs: Record<string, any>[];
  healthUrl: string;
  /** One sample of /metrics, e.g. metric('kuberollouttrigger_worker_rollouts_total{state="complete"}'). */
  metric(series: string): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Starts runWorker with `env` over the defaults; resolves once it is ready
 * (/readyz: inventory synced, cluster registered, reading the event stream),
 * so an event published from then on reaches it.
 */
export async function startTestWorker(env: Record<string, string>): Promise<TestWorker> {
  const parsed = parseCommandLine("worker", [], (name) =>
    ({
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      HEALTH_LISTEN_ADDR: "127.0.0.1:0",
      RESTART_DEDUP_WINDOW: "0s",
      LOG_LEVEL: "debug",
      ...env,
    } as Record<string, string>)[name]);
  if (parsed.kind !== "config") throw new Error(`worker settings: ${JSON.stringify(parsed)}`);
  const logs: Record<string, any>[] = [];
  const stop = new AbortController();
  let healthUrl = "";
  const running = runWorker(parsed.config, {
    logger: createLogger({
      level: "debug",
      fields: { mode: "worker" },
      write: (line) => logs.push(JSON.parse(line)),
    }),
    signal: stop.signal,
    onListen: (addr) => healthUrl = `http://${addr.hostname}:${addr.port}`,
  });
  await eventually(
    "the worker to be ready",
    async () => {
      if (healthUrl === "") return undefined;
      const res = await fetch(`${healthUrl}/readyz`);
      const body = await res.text();
      if (!res.ok) throw new Error(`/readyz answered ${res.status} ${body}`); // named on timeout
      return true;
    },
    30_000,
  );
  return {
    logs,
    get healthUrl() {
      return healthUrl;
    },
    async metric(series) {
      const text = await (await fetch(`${healthUrl}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      if (line === undefined) throw new Error(`no ${series} in /metrics`);
      return Number(line.split(" ").pop());
    },
    async stop() {
      stop.abort();
      await running;
    },
  };
}

/** Publishes events as web does and reads reports as web does. */
export interface StatusClient {
  /** The client's own connection, for the test's reads (it fails at once while disconnected). */
  valkey: ValkeyClient;
  /** Publishes `image:tags` with a binding; returns the id and what the publish answered. */
  publish(
    image: string,
    tags: string[],
  ): Promise<{ id: string; subscribers: number; clusters: string[]; unreachable: string[] }>;
  /** The cluster's report, or undefined while there is none. */
  report(id: string, cluster: string): Promise<ClusterReport | undefined>;
  /** Waits for the cluster's report to satisfy `done`. */
  waitForReport(
    id: string,
    cluster: string,
    done: (r: ClusterReport) => boolean,
    timeoutMs?: number,
  ): Promise<ClusterReport>;
  close(): void;
}

/**
 * A client on `server` for `channel`; records live an hour, as STATUS_TTL's
 * default, and the catch-up window and forget-after are their settings'
 * defaults too (1 h, 168 h).
 */
export function statusClient(server: TestValkey, channel: string): StatusClient {
  // Tests stop the server on purpose; the client reconnects by itself, and each
  // call waits for it (bounded), as web's client fails at once while disconnected.
  const valkey = createValkeyClient(testSettings(server), {
    name: "krt-test-status",
    logger: createLogger({ level: "error", write: () => {} }),
  });
  const up = () => eventually("the status client's Valkey connection", () => valkey.connected);
  const publisher = createPublisher({
    client: valkey,
    channel,
    statusTtlMs: 3_600_000,
    catchUpWindowMs: 3_600_000,
    forgetAfterMs: 168 * 3_600_000,
  });
  const api: StatusClient = {
    valkey,
    async publish(image, tags) {
      await up();
      const id = crypto.randomUUID();
      const time = new Date().toISOString();
      const published = await publisher.publish({
        eventId: id,
        message: encodeEventMessage({ id, time, image, tags }),
        binding: { repository: "a".repeat(64), image, tags, time },
      });
      return { id, ...published };
    },
    async report(id, cluster) {
      await up();
      const raw = await valkey.call("HGET", statusKey(id), reportField(cluster));
      return typeof raw === "string" ? parseClusterReport(raw) : undefined;
    },
    waitForReport(id, cluster, done, timeoutMs = 60_000) {
      return eventually(`the report of ${cluster} for ${id}`, async () => {
        const r = await api.report(id, cluster).catch(() => undefined);
        return r && done(r) ? r : undefined;
      }, timeoutMs);
    },
    close: () => valkey.disconnect(),
  };
  return api;
}

/** A report's Deployments as `name: result[/reason][ rollout[/reason]]`, sorted. */
export function outcomes(report: ClusterReport): string[] {
  return report.deployments.map((d) =>
    `${d.name}: ${d.result}${d.reason ? `/${d.reason}` : ""}${
      d.rollout ? ` ${d.rollout.state}${d.rollout.reason ? `/${d.rollout.reason}` : ""}` : ""
    }`
  ).sort();
}

/**
 * Makes every running pod of the namespace Ready, as a kubelet would report it
 * (the test node reports a pod's status once, so unready pods stay unready
 * until told): the Ready and ContainersReady conditions, merged by type.
 */
export async function makePodsReady(admin: KubeClient, ns: string): Promise<void> {
  const pods = (await admin.request("GET", `/api/v1/namespaces/${ns}/pods`)).json as any;
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  for (const pod of pods.items) {
    if (pod.status?.phase !== "Running" || pod.metadata.deletionTimestamp) continue;
    const ready = (pod.status.conditions ?? []).find((c: any) => c.type === "Ready");
    if (ready?.status === "True") continue;
    await admin.request(
      "PATCH",
      `/api/v1/namespaces/${ns}/pods/${pod.metadata.name}/status`,
      {
        status: {
          conditions: ["Ready", "ContainersReady"].map((type) => ({
            type,
            status: "True",
            lastTransitionTime: now,
            reason: null,
            message: null,
          })),
        },
      },
      "application/strategic-merge-patch+json",
    );
  }
}
