/**
 * What counts as a restart already made (carriesRestart), and a restart whose
 * confirming read keeps failing: failed, never a blind patch. The patch
 * itself against the real API server is in tests/integration/restart_retry_test.ts.
 */

import { assertEquals } from "../helpers/assert.ts";
import type { KubeApi } from "../../worker/kube/api.ts";
import { KubeApiError } from "../../worker/kube/errors.ts";
import { OPEN_POLICY, type PlannedRestart } from "../../worker/plan.ts";
import { parseLabelSelector } from "../../lib/label_selector.ts";
import { AHEAD_TOLERANCE_MS, carriesRestart, restartDeployment } from "../../worker/restart.ts";

const NOW = Date.UTC(2026, 11, 6, 10, 0, 0);

Deno.test("carriesRestart() trusts the same restart, or a later one that is not in the future", async (t) => {
  const at = NOW - 60_000;
  const cases: [string, number, boolean][] = [
    ["the same restart (a retake, a replay, a coalesced backlog)", at, true],
    ["a later restart, made before now", NOW - 1000, true],
    ["a later restart within the clock tolerance", NOW + AHEAD_TOLERANCE_MS, true],
    [
      "a restart dated ahead of the clock (a fast laptop, a hand-written date)",
      NOW + AHEAD_TOLERANCE_MS + 1,
      false,
    ],
    ["the year 2052", Date.UTC(2052, 0, 1), false],
    ["an earlier restart", at - 1, false],
    ["no restartedAt", NaN, false],
  ];
  for (const [name, template, expected] of cases) {
    await t.step(name, () => assertEquals(carriesRestart(template, at, NOW), expected));
  }
});

Deno.test("restartDeployment() fails, and patches nothing, when the read that would confirm a restart keeps failing", async () => {
  let patched = 0;
  const api = {
    getDeployment: () => Promise.reject(new KubeApiError(503, "ServiceUnavailable", "GET x: 503")),
    patchDeployment: () => {
      patched++;
      return Promise.reject(new Error("not reached"));
    },
  } as unknown as KubeApi;
  const at = new Date(Date.now() - 1000);
  const target: PlannedRestart = {
    namespace: "ns",
    name: "app",
    resourceVersion: "1",
    containers: ["c"],
    pullPolicyWarnings: [],
    restartedAtMs: at.getTime(),
  };
  const outcome = await restartDeployment(target, {
    api,
    event: { image: "ghcr.io/acme/app", tags: ["dev"] },
    restartAt: at,
    maxAttempts: 2,
  });
  assertEquals(outcome.status, "failed");
  assertEquals(patched, 0);
});

Deno.test("security: restartDeployment() re-decides who may restart it on a conflict, before taking someone else's restart as this event's", async (t) => {
  const at = new Date(NOW - 1000);
  const target: PlannedRestart = {
    namespace: "ns",
    name: "app",
    resourceVersion: "1",
    containers: ["c"],
    pullPolicyWarnings: [],
    restartedAtMs: NaN,
  };
  /** The Deployment as a fresh read finds it: restarted by someone else, with `extra`. */
  const fresh = (
    annotations: Record<string, string>,
    labels: Record<string, string> = { team: "a" },
  ) => ({
    metadata: { namespace: "ns", name: "app", resourceVersion: "2", annotations, labels },
    spec: {
      template: {
        metadata: { annotations: { "kubectl.kubernetes.io/restartedAt": at.toISOString() } },
        spec: { containers: [{ name: "c", image: "ghcr.io/acme/app:dev" }] },
      },
    },
  });
  const restart = (deployment: unknown, policy = OPEN_POLICY) =>
    restartDeployment(target, {
      api: {
        patchDeployment: () => Promise.reject(new KubeApiError(409, "Conflict", "PATCH: 409")),
        getDeployment: () => Promise.resolve(deployment),
      } as unknown as KubeApi,
      event: { image: "ghcr.io/acme/app", tags: ["dev"], sender: SENDER },
      policy,
      restartAt: at,
      maxAttempts: 2,
    });
  await t.step("still its own: the restart it finds is taken as made", async () => {
    assertEquals((await restart(fresh({}))).status, "restarted");
  });
  await t.step("now annotated for another repository: not_allowed, not restarted", async () => {
    const outcome = await restart(
      fresh({ "kuberollouttrigger/allowed-repositories": "acme/other" }),
    );
    assertEquals([outcome.status, "reason" in outcome && outcome.reason], [
      "skipped",
      "not_allowed",
    ]);
  });
  await t.step("its label gone from DEPLOYMENT_SELECTOR: not_selected", async () => {
    const policy = { requireOptIn: false, selector: parseLabelSelector("team=a") };
    const outcome = await restart(fresh({}, { team: "b" }), policy);
    assertEquals([outcome.status, "reason" in outcome && outcome.reason], [
      "skipped",
      "not_selected",
    ]);
  });
});

const SENDER = {
  repository: "acme/app",
  repositoryId: "2002",
  ref: "refs/heads/main",
  workflowRef: "acme/app/.github/workflows/build.yml@refs/heads/main",
};
