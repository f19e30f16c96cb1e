/**
 * The event handler's summary, with in-process fakes for the inventory, the
 * API and the coordinator (the real ones are proven in tests/e2e/worker_test.ts):
 * what `matched` counts and what `skipped` says.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { createLogger } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import type { Coordinator } from "../../worker/coordination.ts";
import { createEventHandler, type EventHandler, type EventSummary } from "../../worker/events.ts";
import type { Inventory } from "../../worker/inventory/inventory.ts";
import type { KubeApi } from "../../worker/kube/api.ts";
import { KubeApiError } from "../../worker/kube/errors.ts";
import type { Deployment } from "../../worker/kube/objects.ts";
import type { Feedback, HandledEvent } from "../../worker/feedback/feedback.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";
import { summarizeDeployment } from "../../worker/plan.ts";
import { importVerifyKeys } from "../../shared/event_signature.ts";
import { createEventVerifier, type EventVerifier } from "../../worker/event_verifier.ts";
import { createSigner } from "../../web/event_signer.ts";
import { parseSigningKey, parseVerifyKeys } from "../../shared/event_keys.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";

const DIGEST = `sha256:${"e".repeat(64)}`;
const HOUR = 3_600_000;
/** Events the fake coordinator says this cluster handled to the end before. */
const handledIds = new Set<string>();

/** Reads then handles a raw message: the summary of a handled event, else undefined. */
function rawHandler(handler: EventHandler) {
  return async (raw: string, restartAt?: Date): Promise<EventSummary | undefined> => {
    const message = await handler.read(raw);
    if (!message) return undefined;
    const outcome = await handler.handle(message, restartAt);
    return outcome.kind === "handled" ? outcome.summary : undefined;
  };
}

function deployment(name: string, image: string): Deployment {
  return {
    metadata: { name, namespace: "ns", resourceVersion: "1", generation: 2 },
    spec: { template: { spec: { containers: [{ name: "c", image }] } } },
  };
}

function handlerOver(
  deployments: Deployment[],
  verifier?: EventVerifier,
  unavailable: { scope: string; reason: string }[] = [],
) {
  const patched: string[] = [];
  const bodies: unknown[] = [];
  const inventory: Pick<Inventory, "candidates" | "upsert" | "unavailable"> = {
    candidates: () => deployments.map(summarizeDeployment),
    upsert: () => {},
    unavailable: () => unavailable,
  };
  const api: Pick<KubeApi, "patchDeployment" | "createEvent"> = {
    patchDeployment: (namespace, name, body) => {
      patched.push(`${namespace}/${name}`);
      bodies.push(body);
      return Promise.resolve(deployments.find((d) => d.metadata.name === name)!);
    },
    createEvent: () => Promise.resolve(),
  };
  const begun: HandledEvent[] = [];
  const coordinator: Coordinator = {
    claimEvent: (id) => {
      claimed.push(id);
      return Promise.resolve("claimed");
    },
    finishEvent: () => Promise.resolve(),
    handled: (id: string) => Promise.resolve(handledIds.has(id)),
    claim: () => Promise.resolve("claimed"),
    release: () => Promise.resolve(),
    restartMade: () => Promise.resolve(),
    recentRestart: () => Promise.resolve({ kind: "gone" }),
  };
  const metrics = createWorkerMetrics(createRegistry());
  const claimed: string[] = [];
  const lines: string[] = [];
  const handler = createEventHandler({
    inventory: inventory as Inventory,
    api: api as KubeApi,
    coordinator,
    prefixes: ["ghcr.io/acme"],
    logger: createLogger({ level: "info", write: (l) => lines.push(l) }),
    metrics,
    dryRun: false,
    catchUpWindowMs: HOUR,
    feedback: { begin: (e: HandledEvent) => begun.push(e) } as unknown as Feedback,
    verifier,
  });
  return { handle: rawHandler(handler), patched, bodies, metrics, claimed, begun, lines };
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

/**
 * Every kind of outcome in one event, with one patch answered late so the order things
 * finish in differs from the plan's: the exact log lines, restart metrics and report.
 */
function everyOutcome(dryRun: boolean) {
  const lines: string[] = [];
  const image = "ghcr.io/acme/app:dev";
  const deployments = [
    deployment("late", image),
    deployment("no-event", image),
    deployment("recent", image),
    deployment("forbidden", image),
    deployment("gone", image),
    { ...deployment("paused", image), spec: { ...deployment("paused", image).spec, paused: true } },
    deployment("pinned", `ghcr.io/acme/app@${DIGEST}`),
  ];
  const inventory: Pick<Inventory, "candidates" | "upsert" | "unavailable"> = {
    candidates: () => deployments.map(summarizeDeployment),
    upsert: () => {},
    unavailable: () => [],
  };
  const api: Pick<KubeApi, "patchDeployment" | "createEvent" | "getDeployment"> = {
    // "recent" as the API answers after the restart the window records (another event's).
    getDeployment: (_namespace, name) => {
      const d = structuredClone(deployments.find((x) => x.metadata.name === name)!);
      d.spec!.template!.metadata = {
        annotations: { "kubectl.kubernetes.io/restartedAt": JSON.parse(EVENT).time },
      };
      return Promise.resolve(d);
    },
    patchDeployment: async (_namespace, name) => {
      if (name === "late") await new Promise((r) => setTimeout(r, 30));
      if (name === "forbidden") {
        throw new KubeApiError(403, "Forbidden", "PATCH /apis/x: 403 Forbidden: no");
      }
      if (name === "gone") throw new KubeApiError(404, "NotFound", "PATCH /apis/x: 404 NotFound");
      return deployments.find((d) => d.metadata.name === name)!;
    },
    createEvent: (_namespace, event) =>
      event.involvedObject.name === "no-event"
        ? Promise.reject(new KubeApiError(403, "Forbidden", "POST /api/v1/x: 403 Forbidden"))
        : Promise.resolve(),
  };
  const released: string[] = [];
  const coordinator: Coordinator = {
    claimEvent: () => Promise.resolve("claimed"),
    finishEvent: () => Promise.resolve(),
    handled: (id: string) => Promise.resolve(handledIds.has(id)),
    claim: (_id, name) => Promise.resolve(name === "ns/recent" ? "recent" : "claimed"),
    release: (_id, name) => {
      released.push(name);
      return Promise.resolve();
    },
    restartMade: () => Promise.resolve(),
    // Another event's restart of "recent", made after this event was accepted: followed, and
    // answered after every other outcome.
    recentRestart: () =>
      new Promise((r) =>
        setTimeout(() =>
          r({
            kind: "made" as const,
            eventId: FOLLOWED,
            generation: 2,
            restartedAt: Date.parse(JSON.parse(EVENT).time),
            patchedAt: Date.parse(JSON.parse(EVENT).time) + 1,
          }), 80)
      ),
  };
  const registry = createRegistry();
  const metrics = createWorkerMetrics(registry);
  const begun: HandledEvent[] = [];
  const handle = rawHandler(createEventHandler({
    inventory: inventory as Inventory,
    api: api as KubeApi,
    coordinator,
    prefixes: ["ghcr.io/acme"],
    logger: createLogger({
      level: "debug",
      write: (l) => lines.push(l),
      now: () => new Date("2026-01-02T03:04:05.000Z"),
    }),
    metrics,
    dryRun,
    catchUpWindowMs: HOUR,
    feedback: { begin: (e: HandledEvent) => begun.push(e) } as unknown as Feedback,
    now: () => new Date(Date.parse(JSON.parse(EVENT).time) + 1000),
    followWaitMs: 0,
  }));
  const restartMetrics = () =>
    registry.render().split("\n").filter((l) =>
      /^kuberollouttrigger_worker_(restarts|events|kube_events)_total\{/.test(l)
    );
  return { handle, lines, begun, released, restartMetrics };
}

const EVENT = JSON.stringify({
  id: "0b7e6c1e-93c4-4ad5-9d6f-6f3b4c1f0a11",
  time: new Date().toISOString(),
  image: "ghcr.io/acme/app",
  tags: ["dev"],
});

const TS = "2026-01-02T03:04:05.000Z";
/** The event whose restart of "recent" the window records. */
const FOLLOWED = "5f0c1b2a-3d4e-4f5a-8b6c-7d8e9f0a1b2c";
/** One log line exactly as the logger writes it (JSON.stringify keeps the key order). */
const line = (level: string, msg: string, fields: Record<string, unknown>) =>
  JSON.stringify({
    ts: TS,
    level,
    msg,
    event_id: JSON.parse(EVENT).id,
    image: "ghcr.io/acme/app",
    ...fields,
  });
const at = (name: string) => ({ namespace: "ns", deployment: name });
const pullPolicy = (name: string) =>
  line(
    "warn",
    "imagePullPolicy is not Always: nodes that cached the tag may keep the old image",
    { ...at(name), containers: ["c"] },
  );
const planSkips = [
  line("info", "skipped deployment", { ...at("paused"), reason: "paused" }),
  line("info", "skipped deployment", { ...at("pinned"), reason: "digest_pinned" }),
];
const RESTARTS = ["late", "no-event", "recent", "forbidden", "gone"];
const report = (rest: Record<string, unknown>[]) => [
  { namespace: "ns", name: "paused", result: "skipped", reason: "paused" },
  { namespace: "ns", name: "pinned", result: "skipped", reason: "digest_pinned" },
  ...rest,
];

Deno.test("createEventHandler() writes the same lines, metrics and report for every kind of outcome", async () => {
  const { handle, lines, begun, released, restartMetrics } = everyOutcome(false);
  const summary = (await handle(EVENT))!;
  const withContainers = (name: string) => ({ ...at(name), containers: ["c"] });
  // Lists in the summary are in the order restarts finished ("late" answers last); the
  // report keeps the plan's order.
  const expectedSummary = {
    event_id: JSON.parse(EVENT).id,
    image: "ghcr.io/acme/app",
    tags: ["dev"],
    matched: 6,
    restarted: ["ns/no-event", "ns/late", "ns/recent"],
    skipped: [
      { deployment: "ns/paused", reason: "paused" },
      { deployment: "ns/pinned", reason: "digest_pinned" },
      { deployment: "ns/gone", reason: "deleted" },
    ],
    failed: [{ deployment: "ns/forbidden", error: "PATCH /apis/x: 403 Forbidden: no" }],
    duration_ms: summary.duration_ms,
  };
  assertEquals(JSON.stringify(summary), JSON.stringify(expectedSummary));
  assertEquals(lines, [
    ...planSkips,
    ...RESTARTS.map(pullPolicy),
    line("error", "restart failed", {
      ...withContainers("forbidden"),
      error: "PATCH /apis/x: 403 Forbidden: no",
      status: 403,
      hint:
        "the worker's ServiceAccount may not patch this Deployment: check the RoleBinding and the admission policy",
    }),
    line("info", "skipped deployment", { ...withContainers("gone"), reason: "deleted" }),
    line("info", "restarted deployment", withContainers("no-event")),
    line("warn", "could not record the Kubernetes Event for the restart", {
      ...withContainers("no-event"),
      error: "POST /api/v1/x: 403 Forbidden",
      hint: "the worker's Role needs create on events (core group) in this namespace",
    }),
    line("info", "restarted deployment", withContainers("late")),
    // It followed the restart the window records: no patch, no Kubernetes Event of its own.
    line("info", "restarted deployment", withContainers("recent")),
    JSON.stringify({ ts: TS, level: "error", msg: "event handled", ...expectedSummary }),
  ]);
  assertEquals(restartMetrics(), [
    'kuberollouttrigger_worker_events_total{result="handled"} 1',
    'kuberollouttrigger_worker_events_total{result="invalid"} 0',
    'kuberollouttrigger_worker_events_total{result="expired"} 0',
    'kuberollouttrigger_worker_events_total{result="other_replica"} 0',
    'kuberollouttrigger_worker_restarts_total{result="restarted"} 3',
    'kuberollouttrigger_worker_restarts_total{result="skipped"} 3',
    'kuberollouttrigger_worker_restarts_total{result="failed"} 1',
    'kuberollouttrigger_worker_restarts_total{result="dry_run"} 0',
    'kuberollouttrigger_worker_kube_events_total{result="created"} 1',
    'kuberollouttrigger_worker_kube_events_total{result="failed"} 1',
  ]);
  // Neither a failed restart nor one that found the Deployment gone holds the window.
  assertEquals(released.sort(), ["ns/forbidden", "ns/gone"]);
  assertEquals(begun.length, 1);
  assertEquals(begun[0].eventId, JSON.parse(EVENT).id);
  assertEquals(begun[0].matched, 6);
  assertEquals(
    JSON.stringify(begun[0].deployments),
    JSON.stringify(report([
      { namespace: "ns", name: "late", result: "restarted" },
      { namespace: "ns", name: "no-event", result: "restarted" },
      {
        namespace: "ns",
        name: "recent",
        result: "restarted",
        reason:
          `restarted by event ${FOLLOWED} within RESTART_DEDUP_WINDOW; following that rollout`,
      },
      { namespace: "ns", name: "forbidden", result: "failed", reason: "403 Forbidden: no" },
      { namespace: "ns", name: "gone", result: "skipped", reason: "deleted" },
    ])),
  );
  assertEquals(begun[0].restarted.map((d) => d.metadata.name), ["no-event", "late", "recent"]);
});

Deno.test("createEventHandler() in dry run logs, counts and reports every match as dry_run", async () => {
  const { handle, lines, begun, released, restartMetrics } = everyOutcome(true);
  const summary = (await handle(EVENT))!;
  const expectedSummary = {
    event_id: JSON.parse(EVENT).id,
    image: "ghcr.io/acme/app",
    tags: ["dev"],
    matched: 6,
    restarted: [],
    skipped: [
      { deployment: "ns/paused", reason: "paused" },
      { deployment: "ns/pinned", reason: "digest_pinned" },
      ...RESTARTS.map((name) => ({ deployment: `ns/${name}`, reason: "dry_run" })),
    ],
    failed: [],
    duration_ms: summary.duration_ms,
  };
  assertEquals(JSON.stringify(summary), JSON.stringify(expectedSummary));
  assertEquals(lines, [
    ...planSkips,
    ...RESTARTS.flatMap((name) => [
      pullPolicy(name),
      line("info", "dry run: would restart deployment", { ...at(name), containers: ["c"] }),
    ]),
    JSON.stringify({ ts: TS, level: "info", msg: "event handled", ...expectedSummary }),
  ]);
  assertEquals(restartMetrics(), [
    'kuberollouttrigger_worker_events_total{result="handled"} 1',
    'kuberollouttrigger_worker_events_total{result="invalid"} 0',
    'kuberollouttrigger_worker_events_total{result="expired"} 0',
    'kuberollouttrigger_worker_events_total{result="other_replica"} 0',
    'kuberollouttrigger_worker_restarts_total{result="restarted"} 0',
    'kuberollouttrigger_worker_restarts_total{result="skipped"} 2',
    'kuberollouttrigger_worker_restarts_total{result="failed"} 0',
    'kuberollouttrigger_worker_restarts_total{result="dry_run"} 5',
    'kuberollouttrigger_worker_kube_events_total{result="created"} 0',
    'kuberollouttrigger_worker_kube_events_total{result="failed"} 0',
  ]);
  assertEquals(released, []);
  assertEquals(
    JSON.stringify(begun[0].deployments),
    JSON.stringify(report(
      RESTARTS.map((name) => ({ namespace: "ns", name, result: "dry_run" })),
    )),
  );
  assertEquals(begun[0].restarted, []);
});

Deno.test("createEventHandler() restarts nothing for an event older than the catch-up window and reports it expired", async () => {
  const { handle, patched, claimed, begun, metrics, lines } = handlerOver([
    deployment("dev", "ghcr.io/acme/app:dev"),
  ]);
  const old = JSON.stringify({
    id: crypto.randomUUID(),
    time: new Date(Date.now() - HOUR - 60_000).toISOString(),
    image: "ghcr.io/acme/app",
    tags: ["dev"],
  });
  assertEquals(await handle(old), undefined);
  assertEquals(patched, []);
  assertEquals(claimed, [], "an expired event claims nothing");
  assertEquals(metrics.events.get({ result: "expired" }), 1);
  assertEquals(begun.length, 1);
  assertEquals(begun[0].expired, true);
  assertEquals(begun[0].deployments, []);
  assert(/more than CATCH_UP_WINDOW \(3600s\)/.test(begun[0].reason!), begun[0].reason);
  assertEquals(JSON.parse(lines[0]).msg, "event expired");
});

Deno.test("createEventHandler() writes the restart time it is given, the event's own by default", async () => {
  const { handle, bodies } = handlerOver([deployment("dev", "ghcr.io/acme/app:dev")]);
  const raw = message(["dev"]);
  await handle(raw);
  const later = new Date(Date.parse(JSON.parse(raw).time) + 5000);
  await handle(message(["dev"]), later);
  const written = bodies.map((b) =>
    (b as { spec: { template: { metadata: { annotations: Record<string, string> } } } }).spec
      .template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]
  );
  assertEquals(written, [new Date(JSON.parse(raw).time).toISOString(), later.toISOString()]);
});

Deno.test("createEventHandler() matches what it can list and names in the report the namespace it cannot", async () => {
  const reason = "namespace team-b: 403 Forbidden: deployments.apps is forbidden";
  const { handle, patched, begun, lines } = handlerOver(
    [deployment("dev", "ghcr.io/acme/app:dev")],
    undefined,
    [{ scope: "team-b", reason }],
  );
  const summary = await handle(message(["dev"]));
  assertEquals(summary?.restarted, ["ns/dev"]);
  assertEquals(patched, ["ns/dev"]);
  assertEquals(begun[0].reason, `not listable, not matched: ${reason}`);
  const handled = JSON.parse(lines.find((l) => l.includes('"event handled"'))!);
  assertEquals(handled.level, "warn");
  assertEquals(handled.unavailable_scopes, ["team-b"]);
});

Deno.test("security: an expired replay of an event this cluster handled leaves its report alone", async () => {
  const { handle, patched, begun, metrics } = handlerOver([
    deployment("dev", "ghcr.io/acme/app:dev"),
  ]);
  const id = crypto.randomUUID();
  handledIds.add(id);
  const old = JSON.stringify({
    id,
    time: new Date(Date.now() - 2 * HOUR).toISOString(),
    image: "ghcr.io/acme/app",
    tags: ["dev"],
  });
  assertEquals(await handle(old), undefined);
  assertEquals(begun, [], "no expired report over the one it wrote when it handled it");
  assertEquals(patched, []);
  assertEquals(metrics.events.get({ result: "expired" }), 0);
  assertEquals(metrics.events.get({ result: "other_replica" }), 1);
});
