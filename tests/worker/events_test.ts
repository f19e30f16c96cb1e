/**
 * The event handler's summary, with in-process fakes for the inventory, the
 * API and the coordinator (the real ones are proven in tests/e2e/worker_test.ts):
 * what `matched` counts and what `skipped` says.
 */

import { assertEquals } from "../helpers/assert.ts";
import { createLogger } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import type { Coordinator } from "../../worker/coordination.ts";
import { createEventHandler } from "../../worker/events.ts";
import type { Inventory } from "../../worker/inventory.ts";
import type { Deployment, KubeApi } from "../../worker/kube_api.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";
import { summarizeDeployment } from "../../worker/plan.ts";
import { importVerifyKeys } from "../../shared/event_signature.ts";
import { createEventVerifier, type EventVerifier } from "../../worker/event_verifier.ts";
import { createSigner } from "../../web/event_signer.ts";
import { parseSigningKey, parseVerifyKeys } from "../../shared/event_keys.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";

const DIGEST = `sha256:${"e".repeat(64)}`;

function deployment(name: string, image: string): Deployment {
  return {
    metadata: { name, namespace: "ns", resourceVersion: "1" },
    spec: { template: { spec: { containers: [{ name: "c", image }] } } },
  };
}

function handlerOver(deployments: Deployment[], verifier?: EventVerifier) {
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
    claimEvent: (id) => {
      claimed.push(id);
      return Promise.resolve("claimed");
    },
    finishEvent: () => Promise.resolve(),
    claim: () => Promise.resolve("claimed"),
    release: () => Promise.resolve(),
  };
  const metrics = createWorkerMetrics(createRegistry());
  const claimed: string[] = [];
  const handle = createEventHandler({
    inventory: inventory as Inventory,
    api: api as KubeApi,
    coordinator,
    prefixes: ["ghcr.io/acme"],
    logger: createLogger({ level: "error", write: () => {} }),
    metrics,
    dryRun: false,
    verifier,
  });
  return { handle, patched, metrics, claimed };
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

Deno.test("security: with verify keys an unsigned message claims nothing, patches nothing and is counted by reason", async () => {
  const pair = await generateKeyPair();
  const keys = await importVerifyKeys(parseVerifyKeys(pair.publicPem));
  const verifier = createEventVerifier({ keys, maxAgeMs: 60_000 });
  const { handle, patched, metrics, claimed } = handlerOver(
    [deployment("dev", "ghcr.io/acme/app:dev")],
    verifier,
  );
  assertEquals(await handle(message(["dev"])), undefined);
  assertEquals(patched, []);
  assertEquals(claimed, [], "a dropped message must not even claim the event");
  assertEquals(metrics.droppedMessages.get({ reason: "unsigned" }), 1);
  // The same event signed by web's key is handled.
  const signer = await createSigner(parseSigningKey(pair.privatePem)!);
  const summary = await handle((await signer.signEvent(message(["dev"]), "a".repeat(64))).message);
  assertEquals(summary?.restarted, ["ns/dev"]);
  assertEquals(patched, ["ns/dev"]);
});
