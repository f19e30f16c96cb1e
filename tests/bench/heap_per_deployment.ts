/**
 * Live heap per Deployment: the worker's inventory alone, then with the rollout
 * tracker's snapshots, filled by a streaming list of N realistic Deployments
 * (made one at a time, so nothing else stays on the heap). Measures what the
 * index holds after a full collection, not RSS: where the bytes of issue #19
 * go. In process, no servers; asserts nothing.
 *
 *   deno run -A --v8-flags=--expose-gc tests/bench/heap_per_deployment.ts [N]
 */

import { realisticDeployment } from "./worker_bench.ts";
import { createInventory } from "../../worker/inventory/inventory.ts";
import type { KubeApi } from "../../worker/kube/api.ts";
import type { Deployment } from "../../worker/kube/objects.ts";
import type { WatchEvent } from "../../worker/kube/watch_stream.ts";
import { createRolloutTracker } from "../../worker/feedback/rollout_tracker.ts";
import type { Logger } from "../../lib/log.ts";

const count = Number(Deno.args[0] ?? 50_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");

/** One Deployment as the API server would send it, status included, as fresh JSON. */
function deploymentJson(i: number): string {
  const d = realisticDeployment(`scale-${i % 1000}`, `d-${i}`, `ghcr.io/acme/svc-${i}:v1`);
  return JSON.stringify({
    type: "ADDED",
    object: {
      ...d,
      metadata: {
        ...d.metadata,
        uid: crypto.randomUUID(),
        resourceVersion: String(100_000 + i),
        generation: 1,
      },
      status: {
        observedGeneration: 1,
        replicas: 1,
        updatedReplicas: 1,
        readyReplicas: 1,
        availableReplicas: 1,
        conditions: [
          { type: "Available", status: "True", reason: "MinimumReplicasAvailable" },
          { type: "Progressing", status: "True", reason: "NewReplicaSetAvailable" },
        ],
      },
    },
  });
}

const silent: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silent,
};

/** A streaming list of `count` Deployments, then its end bookmark; then quiet until aborted. */
const api = {
  async *watchDeployments(_namespace: string | undefined, options: { signal: AbortSignal }) {
    for (let i = 0; i < count; i++) yield JSON.parse(deploymentJson(i)) as WatchEvent;
    yield {
      type: "BOOKMARK",
      object: { metadata: { resourceVersion: "999999" }, initialEventsEnd: true },
    } as WatchEvent;
    await new Promise((resolve) => options.signal.addEventListener("abort", resolve));
  },
} as unknown as KubeApi;

async function liveBytes(withTracker: boolean): Promise<number> {
  gc!();
  const before = Deno.memoryUsage().heapUsed;
  const tracker = withTracker
    ? createRolloutTracker({
      clock: { now: () => Date.now(), schedule: () => () => {} },
      timeoutText: "10m",
      onChange() {},
    })
    : undefined;
  const stop = new AbortController();
  const inventory = createInventory({
    api,
    namespaces: [],
    logger: silent,
    onObject: tracker ? (type, d: Deployment) => tracker.observe(type, d) : undefined,
  });
  const running = inventory.run(stop.signal);
  await inventory.whenSynced(stop.signal);
  gc!();
  const bytes = (Deno.memoryUsage().heapUsed - before) / count;
  stop.abort();
  await running;
  // Both stay reachable until here, so the collection above could not take them.
  if (inventory.size() !== count || inventory.candidates("ghcr.io/acme/svc-1").length !== 1) {
    throw new Error("the inventory did not hold what it was given");
  }
  tracker?.size();
  return bytes;
}

const inventoryOnly = await liveBytes(false);
const withTracker = await liveBytes(true);
console.log(`${count} realistic Deployments, live heap per Deployment after a full collection:`);
console.log(`  inventory index            ${inventoryOnly.toFixed(0)} B`);
console.log(`  plus rollout snapshots     ${(withTracker - inventoryOnly).toFixed(0)} B`);
console.log(`  together                   ${withTracker.toFixed(0)} B`);
