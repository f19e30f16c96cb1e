/**
 * The event handler's summary, with in-process fakes for the inventory, the
 * API and the coordinator (the real ones are proven in tests/e2e/worker_test.ts):
 * what `matched` counts and what `skipped` says.
 */

import { assertEquals } from "../helpers/assert.ts";
import { createLogger } from "../../shared/log.ts";
import { createRegistry } from "../../shared/metrics.ts";
import type { Coordinator } from "../../worker/coordination.ts";
import { createEventHandler } from "../../worker/events.ts";
import type { Inventory } from "../../worker/inventory.ts";
import type { Deployment, KubeApi } from "../../worker/kube_api.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";
import { summarizeDeployment } from "../../worker/plan.ts";

const DIGEST = `sha256:${"e".repeat(64)}`;

function deployment(name: string, image: string): Deployment {
  return {
    metadata: { name, namespace: "ns", resourceVersion: "1" },
    spec: { template: { spec: { containers: [{ name: "c", image }] } } },
  };
}

function handlerOver(deployments: Deployment[]) {
  const patched: string[] = [];
  const inventory: Pick<Inventory, "candidates" | "upsert"> = {
    candidates: () => deployments.map(summarizeDeployment),
    upsert: () => {},
  };
  const api: Pick<KubeApi, "patchDeployment"> = {
    patchDeployment: (namespace, name) => {
      patched.push(`${namespace}/${name}`);
      return Promise.resolve(deployments.find((d) => d.metadata.name === name)!);
    },
  };
  const coordinator: Coordinator = {
    claimEvent: () => Promise.resolve("claimed"),
    finishEvent: () => Promise.resolve(),
    claim: () => Promise.resolve("claimed"),
    release: () => Promise.resolve(),
  };
  const handle = createEventHandler({
    inventory: inventory as Inventory,
    api: api as KubeApi,
    coordinator,
    prefixes: ["ghcr.io/acme"],
    logger: createLogger({ level: "error", write: () => {} }),
    metrics: createWorkerMetrics(createRegistry()),
    dryRun: false,
  });
  return { handle, patched };
}

const message = (tags: string[]) =>
  JSON.stringify({
    id: crypto.randomUUID(),
    time: new Date().toISOString(),
    image: "ghcr.io/acme/app",
    tags,
  });

Deno.test("createEventHandler() does not count a digest-pinned Deployment as matched; it lists it as skipped", async (t) => {
  const deployments = [
    deployment("pinned", `ghcr.io/acme/app@${DIGEST}`),
    deployment("dev", "ghcr.io/acme/app:dev"),
  ];
  await t.step("a tag nothing uses", async () => {
    const { handle, patched } = handlerOver(deployments);
    const summary = (await handle(message(["nothing"])))!;
    assertEquals(summary.matched, 0);
    assertEquals(summary.restarted, []);
    assertEquals(summary.skipped, [{ deployment: "ns/pinned", reason: "digest_pinned" }]);
    assertEquals(patched, []);
  });
  await t.step("a tag one Deployment uses", async () => {
    const { handle, patched } = handlerOver(deployments);
    const summary = (await handle(message(["dev"])))!;
    assertEquals(summary.matched, 1);
    assertEquals(summary.restarted, ["ns/dev"]);
    assertEquals(summary.skipped, [{ deployment: "ns/pinned", reason: "digest_pinned" }]);
    assertEquals(patched, ["ns/dev"]);
  });
});
