/**
 * restartEach(): each planned restart claimed, patched (or in dry run only
 * logged) and settled with one outcome at its plan position, in the order
 * the restarts finish; a Kubernetes Event per restart. In-process fakes for
 * the API and the coordinator.
 */

import { assertEquals } from "../helpers/assert.ts";
import { createLogger } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import { parseEventMessage } from "../../shared/event.ts";
import type { Claim, Coordinator, RecentRestart } from "../../worker/coordination.ts";
import type { KubeApi } from "../../worker/kube/api.ts";
import { KubeApiError } from "../../worker/kube/errors.ts";
import type { Deployment } from "../../worker/kube/objects.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";
import { OPEN_POLICY, type PlannedRestart } from "../../worker/plan.ts";
import { restartEach } from "../../worker/restart_each.ts";

const MESSAGE = parseEventMessage(
  JSON.stringify({
    id: "6a0c9a3e-6e0b-4c35-9d0e-1a2b3c4d5e6f",
    time: new Date().toISOString(),
    image: "ghcr.io/acme/app",
    tags: ["dev"],
  }),
  ["ghcr.io/acme"],
);

const target = (name: string): PlannedRestart => ({
  namespace: "ns",
  name,
  resourceVersion: "1",
  containers: ["c"],
  pullPolicyWarnings: [],
  restartedAtMs: NaN,
});
const object = (name: string): Deployment => ({
  metadata: { name, namespace: "ns", resourceVersion: "2", generation: 7 },
});
const RESTART_AT = new Date(Date.parse(MESSAGE.time));
/** A Deployment whose template already carries `at` as its restartedAt. */
const restartedObject = (name: string, at: Date): Deployment => ({
  metadata: { name, namespace: "ns", resourceVersion: "3" },
  spec: {
    template: {
      metadata: { annotations: { "kubectl.kubernetes.io/restartedAt": at.toISOString() } },
    },
  },
} as Deployment);

function setUp(
  { claims = {}, patch, dryRun = false, recent = {}, current }: {
    claims?: Record<string, Claim>;
    patch?: (name: string) => Promise<Deployment>;
    dryRun?: boolean;
    /** What the window says on each read, the last answer repeating. */
    recent?: Record<string, RecentRestart[]>;
    /** What GET answers for a Deployment; default: one already at the event's restart. */
    current?: (name: string) => Deployment;
  } = {},
) {
  const made: string[] = [];
  const patched: string[] = [];
  const released: string[] = [];
  const events: string[] = [];
  const read: string[] = [];
  const metrics = createWorkerMetrics(createRegistry());
  const api: Pick<KubeApi, "patchDeployment" | "createEvent" | "getDeployment"> = {
    getDeployment: (_ns, name) => {
      read.push(name);
      return Promise.resolve(current ? current(name) : restartedObject(name, RESTART_AT));
    },
    patchDeployment: (_ns, name) => {
      patched.push(name);
      return patch ? patch(name) : Promise.resolve(object(name));
    },
    createEvent: (_ns, event) => {
      events.push(event.involvedObject.name);
      return event.involvedObject.name === "unrecorded"
        ? Promise.reject(new KubeApiError(403, "Forbidden", "POST: 403 Forbidden"))
        : Promise.resolve();
    },
  };
  const coordinator: Coordinator = {
    claimEvent: () => Promise.resolve("claimed"),
    finishEvent: () => Promise.resolve(),
    handled: () => Promise.resolve(false),
    claim: (_id, name) => Promise.resolve(claims[name] ?? "claimed"),
    release: (_id, name) => {
      released.push(name);
      return Promise.resolve();
    },
    restartMade: (name, _repo, record) => {
      const by = record.eventId === MESSAGE.id ? "this" : record.eventId;
      made.push(
        `${name} ${by} ${record.generation} ${record.restartedAt === RESTART_AT.getTime()}`,
      );
      return Promise.resolve();
    },
    recentRestart: (name) => {
      const answers = recent[name] ?? [{ kind: "gone" }];
      return Promise.resolve(answers.length > 1 ? answers.shift()! : answers[0]);
    },
  };
  const run = (targets: PlannedRestart[], firstPosition = 0) =>
    restartEach(targets, {
      message: MESSAGE,
      log: createLogger({ level: "error", write: () => {} }),
      inventory: { upsert: () => {} },
      api: api as KubeApi,
      coordinator,
      metrics,
      dryRun,
      policy: OPEN_POLICY,
      clusterName: "test",
      restartAt: RESTART_AT,
      concurrency: 4,
      firstPosition,
      followWaitMs: 500,
    });
  return { run, patched, released, events, read, metrics, made };
}

const EARLIER = "0d1e2f30-4a5b-4c6d-8e7f-8091a2b3c4d5";
/** The window's record of EARLIER's restart: generation 7, this event's restartedAt, patched after it was accepted. */
const MADE: RecentRestart = {
  kind: "made",
  eventId: EARLIER,
  generation: 7,
  restartedAt: RESTART_AT.getTime(),
  patchedAt: RESTART_AT.getTime() + 500,
};
/** The Deployment as the API answers after that restart. */
const afterMade = (name: string, edit: (d: Deployment) => void = () => {}): Deployment => {
  const d = {
    metadata: { name, namespace: "ns", resourceVersion: "9", generation: 7 },
    spec: {
      template: {
        metadata: {
          annotations: { "kubectl.kubernetes.io/restartedAt": RESTART_AT.toISOString() },
        },
        spec: { containers: [{ name: "c", image: "ghcr.io/acme/app:dev" }] },
      },
    },
  } as Deployment;
  edit(d);
  return d;
};

Deno.test("restartEach() records the restart it made in the burst window", async () => {
  const { run, made } = setUp();
  await run([target("a")]);
  assertEquals(made, ["ns/a this 7 true"]);
});

Deno.test("restartEach() follows the restart another event made within the burst window, patching nothing", async () => {
  const { run, patched, read, events } = setUp({
    claims: { "ns/a": "recent" },
    recent: { "ns/a": [MADE] },
    current: (name) => afterMade(name),
  });
  const [outcome] = await run([target("a")]);
  assertEquals([outcome.result, "reason" in outcome && outcome.reason], [
    "restarted",
    `restarted by event ${EARLIER} within RESTART_DEDUP_WINDOW; following that rollout`,
  ]);
  assertEquals(read, ["a"], "the Deployment as it is after that restart, to follow");
  assertEquals([patched, events], [[], []], "no second restart, no second Kubernetes Event");
});

Deno.test("restartEach() waits for the window's restart to be made before following it", async () => {
  const { run, read } = setUp({
    claims: { "ns/a": "recent" },
    recent: { "ns/a": [{ kind: "in_flight" }, MADE] },
    current: (name) => afterMade(name),
  });
  const [outcome] = await run([target("a")]);
  assertEquals(outcome.result, "restarted");
  assertEquals(read, ["a"]);
});

Deno.test("security: restartEach() restarts, never follows, a window record the Deployment does not bear out", async (t) => {
  const cases: [string, RecentRestart, (d: Deployment) => void][] = [
    ["the template does not carry that restart", MADE, (d) => {
      d.spec!.template!.metadata!.annotations!["kubectl.kubernetes.io/restartedAt"] =
        "2020-01-01T00:00:00Z";
    }],
    ["the Deployment is behind that restart's generation", MADE, (d) => {
      d.metadata.generation = 6;
    }],
    ["the restart was made before this event was accepted", {
      ...MADE,
      patchedAt: RESTART_AT.getTime() - 1,
    } as RecentRestart, () => {}],
    ["the Deployment no longer runs the image", MADE, (d) => {
      d.spec!.template!.spec!.containers![0].image = "ghcr.io/acme/other:dev";
    }],
    ["the Deployment was paused since", MADE, (d) => {
      d.spec!.paused = true;
    }],
  ];
  for (const [name, recent, edit] of cases) {
    await t.step(name, async () => {
      const { run, patched } = setUp({
        claims: { "ns/a": "recent" },
        recent: { "ns/a": [recent] },
        current: (n) => afterMade(n, edit),
      });
      const [outcome] = await run([target("a")]);
      assertEquals([outcome.result, "reason" in outcome ? outcome.reason : undefined], [
        "restarted",
        undefined,
      ]);
      assertEquals(patched, ["a"], "this event restarts it itself");
    });
  }
});

Deno.test("restartEach() restarts, never skips, when the window's restart never shows (its holder died, or the window was written by someone else)", async () => {
  const { run, patched } = setUp({
    claims: { "ns/a": "recent" },
    recent: { "ns/a": [{ kind: "in_flight" }] },
  });
  const [outcome] = await run([target("a")]);
  assertEquals(outcome.result, "restarted");
  assertEquals(patched, ["a"], "a missed restart is worse than a doubled one");
});

Deno.test("restartEach() restarts itself when the window's restart failed and released it", async () => {
  const { run, patched } = setUp({
    claims: { "ns/a": "recent" },
    recent: { "ns/a": [{ kind: "gone" }] },
  });
  const [outcome] = await run([target("a")]);
  assertEquals(outcome.result, "restarted");
  assertEquals(patched, ["a"]);
});

Deno.test("restartEach() patches again what this event already claimed: a replica died after its patch", async () => {
  const { run, patched } = setUp({ claims: { "ns/a": "duplicate" } });
  const outcomes = await run([target("a")]);
  assertEquals(outcomes.map((o) => [o.name, o.result]), [["a", "restarted"]]);
  assertEquals(patched, ["a"], "the same restartedAt is written again, which starts no rollout");
});

Deno.test("restartEach() neither claims nor patches a Deployment already at the event's restart; no second Kubernetes Event", async () => {
  const { run, patched, events, read } = setUp({ claims: { "ns/a": "recent" } });
  const outcomes = await run([{ ...target("a"), restartedAtMs: RESTART_AT.getTime() }]);
  assertEquals(outcomes.map((o) => [o.name, o.result]), [["a", "restarted"]]);
  assertEquals(read, ["a"], "re-read to follow its rollout");
  assertEquals(patched, []);
  assertEquals(events, []);
});

Deno.test("restartEach() in dry run claims and patches nothing", async () => {
  const { run, patched } = setUp({ dryRun: true, claims: { "ns/a": "duplicate" } });
  assertEquals(await run([target("a")], 3), [
    { namespace: "ns", name: "a", position: 3, result: "dry_run" },
  ]);
  assertEquals(patched, []);
});

Deno.test("restartEach() gives the burst window up when its restart made nothing (skipped)", async () => {
  const { run, released } = setUp({
    patch: () => Promise.reject(new KubeApiError(404, "NotFound", "PATCH x: 404 NotFound")),
    current: () => {
      throw new KubeApiError(404, "NotFound", "GET x: 404 NotFound");
    },
  });
  const [outcome] = await run([target("a")]);
  assertEquals(outcome.result, "skipped");
  assertEquals(released, ["ns/a"]);
});

Deno.test("restartEach() releases the burst window of a failed restart", async () => {
  const { run, released } = setUp({
    patch: () => Promise.reject(new KubeApiError(403, "Forbidden", "PATCH x: 403 Forbidden")),
  });
  assertEquals(await run([target("a")]), [{
    namespace: "ns",
    name: "a",
    position: 0,
    result: "failed",
    error: "PATCH x: 403 Forbidden",
    httpStatus: 403,
  }]);
  assertEquals(released, ["ns/a"]);
});

Deno.test("restartEach() settles restarts in the order they finish, each at its plan position", async () => {
  const { run } = setUp({
    patch: async (name) => {
      if (name === "slow") await new Promise((r) => setTimeout(r, 20));
      return object(name);
    },
  });
  const outcomes = await run([target("slow"), target("fast")], 2);
  assertEquals(outcomes.map((o) => [o.name, o.position, o.result]), [
    ["fast", 3, "restarted"],
    ["slow", 2, "restarted"],
  ]);
});

Deno.test("restartEach() records a Kubernetes Event per restart; failing to does not fail it", async () => {
  const { run, events, metrics } = setUp();
  const outcomes = await run([target("recorded"), target("unrecorded")]);
  assertEquals(outcomes.map((o) => o.result), ["restarted", "restarted"]);
  assertEquals(events, ["recorded", "unrecorded"]);
  assertEquals(metrics.kubeEvents.get({ result: "created" }), 1);
  assertEquals(metrics.kubeEvents.get({ result: "failed" }), 1);
});

Deno.test("restartEach() restarts a Deployment whose restartedAt lies ahead of the clock: a future date proves no restart", async () => {
  const { run, patched } = setUp();
  const ahead = Date.now() + 3_600_000;
  const outcomes = await run([{ ...target("a"), restartedAtMs: ahead }]);
  assertEquals(outcomes.map((o) => [o.name, o.result]), [["a", "restarted"]]);
  assertEquals(patched, ["a"]);
});
