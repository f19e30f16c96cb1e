/**
 * Rollout feedback end to end (SPEC §12), through the real programs: web and
 * workers under `deno run` with their permission sets, a real Valkey, the
 * loopback issuer, and test clusters whose controllers and test node really
 * roll Deployments out. A workflow posts an event and reads GET /event/<id>
 * until it is final; the Action's own steps run against the same programs.
 */

// Assertions index into API answers.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { readAction, runAction, startTokenService } from "../helpers/action_runner.ts";
import {
  type Cluster,
  deploymentManifest,
  eventually,
  type ExtraCluster,
  openCluster,
  startExtraCluster,
} from "../helpers/cluster.ts";
import { requireRolloutCluster } from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { connectValkey, startValkey, type TestValkey } from "../helpers/valkey.ts";
import { CLUSTERS_KEY } from "../../shared/event_status.ts";

const CHANNEL = "krt-feedback-e2e";
const DIGEST = `sha256:${"e".repeat(64)}`;
const rollout = withoutValkey() ? undefined : requireRolloutCluster("the rollout feedback tests");
const options = { ignore: rollout === undefined, sanitizeOps: false, sanitizeResources: false };
// Feedback runs on the signed path production takes: signed events and status bindings.
const KEYS = await generateKeyPair();

interface Env {
  valkey: TestValkey;
  issuer: TestIssuer;
  web: { program: Program; url: string };
  cluster: Cluster;
  workers: Program[];
}

async function post(env: Env, image: string, tags: string[]): Promise<any> {
  const res = await fetch(`${env.web.url}/event`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await env.issuer.sign()}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ image, tags }),
  });
  const body = await res.json();
  assertEquals(res.status, 202, JSON.stringify(body));
  return body;
}

/** Reads the status the way clients do: 25 s slices with a fresh token, until final. */
async function waitFinal(env: Env, id: string, boundMs = 90_000): Promise<any> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const res = await fetch(`${env.web.url}/event/${id}?wait=25`, {
      headers: { authorization: `Bearer ${await env.issuer.sign()}` },
    });
    const body = await res.json();
    assertEquals(res.status, 200, JSON.stringify(body));
    if (body.final) return body;
    if (Date.now() > deadline) throw new Error(`not final in time: ${JSON.stringify(body)}`);
  }
}

function deploymentsOf(status: any, cluster: string): Map<string, any> {
  const c = status.clusters.find((x: any) => x.cluster === cluster);
  assert(c, `cluster ${cluster} in ${JSON.stringify(status.clusters)}`);
  return new Map(c.deployments.map((d: any) => [`${d.namespace}/${d.name}`, d]));
}

async function startEnv(): Promise<Env> {
  const valkey = await startValkey();
  const issuer = await startIssuer();
  const web = await startWeb({
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_OIDC_ISSUER: issuer.url,
    GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
    GITHUB_ALLOWED_ORG: "acme",
    STATUS_REPORT_TIMEOUT: "8s",
    EVENT_SIGNING_KEY: KEYS.privatePem,
  });
  return { valkey, issuer, web, cluster: openCluster(rollout!.info), workers: [] };
}

async function stopEnv(env: Env): Promise<void> {
  for (const w of env.workers) await w.stop();
  await env.web.program.stop();
  await env.cluster.cleanup();
  await env.issuer.stop();
  await env.valkey.stop();
}

async function worker(
  env: Env,
  name: string,
  namespaces: string[],
  kubeconfig: string,
): Promise<Program> {
  const { program } = await startWorker({
    VALKEY_ADDR: env.valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    CLUSTER_NAME: name,
    WATCH_NAMESPACES: namespaces.join(","),
    LOG_LEVEL: "debug",
    EVENT_VERIFY_KEYS: KEYS.publicPem,
  }, kubeconfig);
  env.workers.push(program);
  // Web counts a cluster as live from its heartbeat, sent once the worker is ready.
  const client = await connectValkey(env.valkey);
  try {
    await eventually(
      `the heartbeat of ${name}`,
      async () => (await client.call("ZSCORE", CLUSTERS_KEY, name)) !== null || undefined,
      30_000,
    );
  } finally {
    client.disconnect();
  }
  return program;
}

/** A namespace whose Role lacks `patch`: the restart is forbidden. */
async function namespaceWithoutPatch(cluster: Cluster): Promise<string> {
  const ns = await cluster.namespace("fb-nopatch");
  await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", {
    namespace: ns,
    edit: (doc) => {
      if (doc.kind !== "Role") return;
      for (const rule of doc.rules) {
        if (rule.resources.includes("deployments")) {
          rule.verbs = rule.verbs.filter((v: string) => v !== "patch");
        }
      }
    },
  });
  return ns;
}

Deno.test({
  name: "rollout feedback: a workflow learns what its push restarted and whether it became healthy",
  ...options,
  async fn(t) {
    const env = await startEnv();
    try {
      const { ns, kubeconfig } = await env.cluster.workerNamespace("fb-main");
      const noPatch = await namespaceWithoutPatch(env.cluster);
      const good = "ghcr.io/acme/fb-good";
      const slow = "ghcr.io/acme/fb-slow";
      const mixed = "ghcr.io/acme/fb-mixed";
      const denied = "ghcr.io/acme/fb-denied";
      // The Action's own image: a second event for `good` could fall in RESTART_DEDUP_WINDOW.
      const viaAction = "ghcr.io/acme/fb-action";
      await env.cluster.createDeployment(
        deploymentManifest(ns, "good-a", [{ image: `${good}:dev` }], { replicas: 2 }),
      );
      await env.cluster.createDeployment(
        deploymentManifest(ns, "good-b", [{ image: `${good}:dev` }]),
      );
      await env.cluster.createDeployment(
        deploymentManifest(ns, "slow", [{ image: `${slow}:dev` }], {
          unready: true,
          progressDeadlineSeconds: 3,
        }),
      );
      await env.cluster.createDeployment(
        deploymentManifest(ns, "mixed-live", [{ image: `${mixed}:dev` }]),
      );
      await env.cluster.createDeployment(
        deploymentManifest(ns, "mixed-paused", [{ image: `${mixed}:dev` }], { paused: true }),
      );
      await env.cluster.createDeployment(
        deploymentManifest(ns, "mixed-pinned", [{ image: `${mixed}@${DIGEST}` }]),
      );
      await env.cluster.createDeployment(
        deploymentManifest(noPatch, "denied", [{ image: `${denied}:dev` }]),
      );
      await env.cluster.createDeployment(
        deploymentManifest(ns, "action-a", [{ image: `${viaAction}:dev` }], { replicas: 2 }),
      );
      await env.cluster.createDeployment(
        deploymentManifest(ns, "action-b", [{ image: `${viaAction}:dev` }]),
      );
      await worker(env, "fb-a", [ns, noPatch], kubeconfig);

      await t.step(
        "an all-good event ends succeeded, every restarted Deployment complete",
        async () => {
          const accepted = await post(env, good, ["dev"]);
          assertEquals(accepted.clusters, ["fb-a"]);
          const status = await waitFinal(env, accepted.id);
          assertEquals(status.state, "succeeded", JSON.stringify(status));
          const ds = deploymentsOf(status, "fb-a");
          for (const name of ["good-a", "good-b"]) {
            const d = ds.get(`${ns}/${name}`);
            assertEquals([d.result, d.rollout.state], ["restarted", "complete"]);
          }
          assertEquals(ds.get(`${ns}/good-a`).rollout.available, 2);
          // The cluster agrees: the controller finished the rollout the report names.
          const live = await env.cluster.getDeployment(ns, "good-a");
          assertEquals(live.status.observedGeneration, live.metadata.generation);
          assertEquals(live.status.updatedReplicas, 2);
        },
      );

      await t.step(
        "an unready Deployment makes it failed with ProgressDeadlineExceeded",
        async () => {
          const status = await waitFinal(env, (await post(env, slow, ["dev"])).id);
          assertEquals(status.state, "failed");
          const d = deploymentsOf(status, "fb-a").get(`${ns}/slow`);
          assertEquals([d.result, d.rollout.state, d.rollout.reason], [
            "restarted",
            "failed",
            "ProgressDeadlineExceeded",
          ]);
        },
      );

      await t.step("a forbidden patch makes it failed with the reason", async () => {
        const status = await waitFinal(env, (await post(env, denied, ["dev"])).id);
        assertEquals(status.state, "failed");
        const d = deploymentsOf(status, "fb-a").get(`${noPatch}/denied`);
        assertEquals(d.result, "failed");
        assertMatch(d.reason, /403|[Ff]orbidden/);
      });

      await t.step("an image nothing uses ends no_match", async () => {
        const status = await waitFinal(
          env,
          (await post(env, "ghcr.io/acme/fb-unused", ["dev"])).id,
        );
        assertEquals(status.state, "no_match");
        assertEquals(status.clusters[0].matched, 0);
      });

      await t.step(
        "paused and digest-pinned Deployments are listed as skipped with their reasons",
        async () => {
          const status = await waitFinal(env, (await post(env, mixed, ["dev"])).id);
          assertEquals(status.state, "succeeded");
          const ds = deploymentsOf(status, "fb-a");
          assertEquals(ds.get(`${ns}/mixed-live`).rollout.state, "complete");
          assertEquals(
            [ds.get(`${ns}/mixed-paused`).result, ds.get(`${ns}/mixed-paused`).reason],
            ["skipped", "paused"],
          );
          assertEquals(
            [ds.get(`${ns}/mixed-pinned`).result, ds.get(`${ns}/mixed-pinned`).reason],
            ["skipped", "digest_pinned"],
          );
        },
      );

      await t.step(
        "the Action's steps follow the event to the end and print the table",
        async () => {
          const tokens = startTokenService(env.issuer, { audience: TEST_AUDIENCE });
          try {
            const run = await runAction({
              action: readAction(),
              with: {
                url: `${env.web.url}/event`,
                audience: TEST_AUDIENCE,
                image: viaAction,
                tags: "dev",
                timeout: "2m",
              },
              env: tokens.env,
              killAfterMs: 150_000,
            });
            assertEquals(run.code, 0, run.stderr);
            assertEquals(run.outputs.state, "succeeded");
            assertEquals(run.outputs.restarted, "2");
            assertMatch(run.summary, /action-a/);
            for (const token of tokens.minted) {
              for (const text of [run.stdout, run.stderr, run.summary, run.outputFile]) {
                const shown = text.split("\n").filter((l) => !l.startsWith("::add-mask::")).join(
                  "\n",
                );
                assert(!shown.includes(token), "the token reached the Action's output");
              }
            }
          } finally {
            await tokens.stop();
          }
        },
      );
    } finally {
      await stopEnv(env);
    }
  },
});

Deno.test({
  name: "rollout feedback: two real clusters report separately, and a stopped one shows no_report",
  ...options,
  async fn(t) {
    const env = await startEnv();
    let second: ExtraCluster | undefined;
    try {
      second = await startExtraCluster("feedback-b");
      const image = "ghcr.io/acme/fb-two";
      const a = await env.cluster.workerNamespace("fb-two-a");
      const b = await second.cluster.workerNamespace("fb-two-b");
      await env.cluster.createDeployment(
        deploymentManifest(a.ns, "app", [{ image: `${image}:dev` }]),
      );
      // A second image for the later event: the first one is inside RESTART_DEDUP_WINDOW.
      const later = "ghcr.io/acme/fb-two-later";
      await env.cluster.createDeployment(
        deploymentManifest(a.ns, "later", [{ image: `${later}:dev` }]),
      );
      await second.cluster.createDeployment(
        deploymentManifest(b.ns, "app", [{ image: `${image}:dev` }]),
      );
      await worker(env, "fb-two-a", [a.ns], a.kubeconfig);
      const workerB = await worker(env, "fb-two-b", [b.ns], b.kubeconfig);

      await t.step("each cluster reports its own Deployment, complete", async () => {
        const accepted = await post(env, image, ["dev"]);
        assertEquals([...accepted.clusters].sort(), ["fb-two-a", "fb-two-b"]);
        const status = await waitFinal(env, accepted.id);
        assertEquals(status.state, "succeeded");
        assertEquals(
          deploymentsOf(status, "fb-two-a").get(`${a.ns}/app`).rollout.state,
          "complete",
        );
        assertEquals(
          deploymentsOf(status, "fb-two-b").get(`${b.ns}/app`).rollout.state,
          "complete",
        );
      });

      await t.step(
        "a cluster that was live but stopped is no_report, and the event failed",
        async () => {
          await workerB.stop();
          env.workers.splice(env.workers.indexOf(workerB), 1);
          // Its heartbeat is still fresh: web counts it as live when it publishes.
          const accepted = await post(env, later, ["dev"]);
          assert(accepted.clusters.includes("fb-two-b"), JSON.stringify(accepted));
          const status = await waitFinal(env, accepted.id);
          assertEquals(status.state, "failed");
          const b = status.clusters.find((c: any) => c.cluster === "fb-two-b");
          assertEquals(b.state, "no_report");
          assertEquals(
            status.clusters.find((c: any) => c.cluster === "fb-two-a").state,
            "succeeded",
          );
        },
      );
    } finally {
      await stopEnv(env);
      await second?.stop();
    }
  },
});
