/**
 * Worker mode end to end: real web and worker processes (deno run with their
 * permission sets), a real Valkey-compatible server, a loopback OIDC issuer
 * and the real kube-apiserver. A signed POST must restart exactly the
 * Deployments that use the image, and nothing else may change.
 */

// Assertions index into API objects.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals, assertMatch, assertRejects } from "../helpers/assert.ts";
import {
  deploymentManifest,
  eventually,
  type ExtraCluster,
  openCluster,
  startExtraCluster,
} from "../helpers/cluster.ts";
import { createKubeClient, requireControlPlane } from "../helpers/control_plane.ts";
import { waitForRollout } from "../helpers/rollout.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { appendEvent, connectValkey, startValkey, type TestValkey } from "../helpers/valkey.ts";
import { EVENTS_STREAM, MESSAGE_FIELD } from "../../shared/event_stream.ts";

const RESTARTED_AT = "kubectl.kubernetes.io/restartedAt";
const CHANNEL = "krt-worker-e2e";
const DIGEST = `sha256:${"d".repeat(64)}`;
const info = withoutValkey() ? undefined : requireControlPlane("the worker end-to-end tests");
const options = { ignore: info === undefined, sanitizeOps: false, sanitizeResources: false };

function sharedEnv(valkey: TestValkey) {
  return {
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    LOG_LEVEL: "debug",
  };
}

async function post(
  url: string,
  issuer: TestIssuer,
  body: unknown,
): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}/event`, {
    method: "POST",
    headers: { authorization: `Bearer ${await issuer.sign()}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

/** Appends a well-formed event to the event stream, as web would; returns its id and entry id. */
async function sendEvent(valkey: TestValkey, image: string, tags: string[]) {
  const id = crypto.randomUUID();
  const message = JSON.stringify({ id, time: new Date().toISOString(), image, tags });
  return { id, entry: await appendEvent(valkey, message) };
}

function handled(program: Program, eventId: string) {
  return program.waitForLog((l) => l.msg === "event handled" && l.event_id === eventId, 15_000);
}

/** The replica's summary of the event, or its line saying another replica of its cluster has it. */
/**
 * The one "event handled" line of `eventId` among one cluster's replicas: the
 * cluster's consumer group gives each event to one of them, and no other
 * replica handles or even sees it (checked once the first has handled it).
 */
async function handledOnce(programs: Program[], eventId: string) {
  const line = await Promise.any(
    programs.map((p) =>
      p.waitForLog((l) => l.msg === "event handled" && l.event_id === eventId, 15_000)
    ),
  );
  await new Promise((r) => setTimeout(r, 500));
  const seen = programs.filter((p) => p.logs.some((l) => l.event_id === eventId));
  assertEquals(seen.length, 1, "one replica of the cluster saw the event");
  return line;
}

function stripRestart(d: any) {
  const spec = structuredClone(d.spec);
  delete spec.template.metadata?.annotations?.[RESTARTED_AT];
  if (
    spec.template.metadata?.annotations &&
    Object.keys(spec.template.metadata.annotations).length === 0
  ) {
    delete spec.template.metadata.annotations;
  }
  // The Deployment controller counts revisions there: a restart adds one.
  const { "deployment.kubernetes.io/revision": _revision, ...annotations } =
    d.metadata.annotations ?? {};
  return { spec, labels: d.metadata.labels, annotations };
}

Deno.test({
  name:
    "worker restarts exactly the Deployments that use the pushed image, through the real processes",
  ...options,
  async fn(t) {
    const cluster = openCluster(info!);
    const issuer = await startIssuer();
    const valkey = await startValkey();
    const programs: Program[] = [];
    try {
      const scoped = await cluster.namespace("krt-scope");
      const outside = await cluster.namespace("krt-outside");
      await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: scoped });
      await cluster.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: outside });
      await cluster.applyManifest("k8s/admission/policy.yaml");
      const kubeconfig = await cluster.workerKubeconfig();
      const fixtures: [string, string, ReturnType<typeof deploymentManifest>][] = [
        [
          "restart",
          scoped,
          deploymentManifest(scoped, "uses-app", [{
            image: "ghcr.io/acme/app:dev",
            imagePullPolicy: "Always",
          }]),
        ],
        [
          "restart",
          scoped,
          deploymentManifest(scoped, "init-only", [{ image: "ghcr.io/acme/base:1" }], {
            init: [{ image: "GHCR.io/acme/app:dev" }],
          }),
        ],
        [
          "keep",
          scoped,
          deploymentManifest(scoped, "other-image", [{ image: "ghcr.io/acme/other:dev" }]),
        ],
        [
          "keep",
          scoped,
          deploymentManifest(scoped, "other-tag", [{ image: "ghcr.io/acme/app:prod" }]),
        ],
        [
          "keep",
          scoped,
          deploymentManifest(scoped, "digest-pinned", [{ image: `ghcr.io/acme/app@${DIGEST}` }]),
        ],
        [
          "keep",
          scoped,
          deploymentManifest(scoped, "paused", [{ image: "ghcr.io/acme/app:dev" }], {
            paused: true,
          }),
        ],
        [
          "keep",
          scoped,
          deploymentManifest(scoped, "opted-out", [{ image: "ghcr.io/acme/app:dev" }], {
            annotations: { "kuberollouttrigger/ignore": "true" },
          }),
        ],
        [
          "keep",
          outside,
          deploymentManifest(outside, "out-of-scope", [{ image: "ghcr.io/acme/app:dev" }]),
        ],
      ];
      for (const [, , manifest] of fixtures) await cluster.createDeployment(manifest);
      const before = new Map<string, any>();
      for (const [, ns, m] of fixtures) {
        before.set(`${ns}/${m.metadata.name}`, await cluster.getDeployment(ns, m.metadata.name));
      }

      const web = await startWeb({
        ...sharedEnv(valkey),
        GITHUB_OIDC_ISSUER: issuer.url,
        GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
        GITHUB_ALLOWED_ORG: "acme",
      });
      programs.push(web.program);
      // The burst window is tested on its own below; here every event must act.
      const worker = await startWorker({
        ...sharedEnv(valkey),
        WATCH_NAMESPACES: scoped,
        CLUSTER_NAME: "e2e",
        RESTART_DEDUP_WINDOW: "0s",
      }, kubeconfig);
      programs.push(worker.program);

      await t.step(
        "the worker is ready and runs with net, env and read of its kubeconfig only",
        async () => {
          const ready = await fetch(`${worker.healthUrl}/readyz`);
          assertEquals(await ready.json(), {
            status: "ready",
            checks: { inventory_synced: "ok", cluster_registered: "ok", events_reading: "ok" },
          });
          const start = await worker.program.waitForLog((l) => l.msg === "starting");
          const permissions = start.permissions as Record<string, string>;
          assertEquals(permissions.net, "granted");
          assertEquals(permissions.env, "granted");
          for (const kind of ["write", "run", "ffi", "sys"]) {
            assert(!permissions[kind].startsWith("granted"), kind);
          }
          assert(permissions.read !== "granted", "read must be limited to the kubeconfig");
        },
      );

      // Shaped exactly like kuberollouttrigger-action's request: POST, Bearer token,
      // application/json, {"image","tags"} and its user agent.
      const actionRequest = await fetch(`${web.url}/event`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${await issuer.sign()}`,
          "Content-Type": "application/json",
          "User-Agent": "kuberollouttrigger-action",
        },
        body: JSON.stringify({ image: "ghcr.io/acme/app", tags: ["dev"] }),
      });
      const status = actionRequest.status;
      const json = await actionRequest.json();
      assertEquals(status, 202);
      const summary = await handled(worker.program, json.id);

      await t.step(
        "a request shaped like the existing GitHub Action's is accepted end to end",
        () => {
          assertEquals(status, 202);
          assertEquals(json.subscribers, 0, "the worker reads the stream, not the channel");
          assertEquals(json.clusters, ["e2e"]);
          assertEquals(summary.event_id, json.id);
        },
      );

      await t.step("the summary names what was restarted and what was skipped, and why", () => {
        assertEquals((summary.restarted as string[]).sort(), [
          `${scoped}/init-only`,
          `${scoped}/uses-app`,
        ]);
        const skipped = Object.fromEntries(
          (summary.skipped as any[]).map((s) => [s.deployment, s.reason]),
        );
        assertEquals(skipped, {
          [`${scoped}/digest-pinned`]: "digest_pinned",
          [`${scoped}/paused`]: "paused",
          [`${scoped}/opted-out`]: "opted_out",
        });
        assertEquals(summary.failed, []);
        assertEquals(summary.matched, 4, "digest-pinned is skipped, not matched");
        assertEquals(typeof summary.duration_ms, "number");
      });

      await t.step("matching Deployments got restartedAt and nothing else changed", async () => {
        for (const [expect, ns, m] of fixtures) {
          const name = `${ns}/${m.metadata.name}`;
          const after = await cluster.getDeployment(ns, m.metadata.name);
          const old = before.get(name);
          assertEquals(
            stripRestart(after),
            stripRestart(old),
            `${name} changed beyond the annotation`,
          );
          const annotation = after.spec.template.metadata?.annotations?.[RESTARTED_AT];
          if (expect === "restart") {
            assertMatch(annotation ?? "", /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, name);
            assertEquals(
              after.metadata.generation,
              old.metadata.generation + 1,
              `${name} generation`,
            );
          } else {
            assertEquals(annotation, undefined, `${name} must not be restarted`);
            assertEquals(
              after.metadata.resourceVersion,
              old.metadata.resourceVersion,
              `${name} must not be written`,
            );
          }
        }
      });

      await t.step(
        "the pull-policy warning names the container that may keep a cached image",
        async () => {
          const warning = await worker.program.waitForLog((l) =>
            l.msg.startsWith("imagePullPolicy is not Always")
          );
          assertEquals(warning.deployment, "init-only");
          assertEquals(warning.containers, ["init:i0"]);
        },
      );

      await t.step(
        "a malformed or forged message is logged and dropped, and the worker carries on",
        async () => {
          const forgeries = [
            "not json",
            '{"id":"x"}',
            JSON.stringify({
              id: crypto.randomUUID(),
              time: new Date().toISOString(),
              image: "ghcr.io/evil/app",
              tags: ["dev"],
            }),
          ];
          for (const forged of forgeries) await appendEvent(valkey, forged);
          await eventually(
            "three dropped messages",
            () =>
              worker.program.logs.filter((l) => l.msg === "dropped an invalid message").length === 3
                ? true
                : undefined,
          );
          const again = await post(web.url, issuer, { image: "ghcr.io/acme/app:dev" });
          assertEquals(again.status, 202);
          const next = await handled(worker.program, again.json.id);
          assertEquals((next.restarted as string[]).length, 2);
        },
      );

      await t.step(
        "the worker reads again after Valkey restarts (its group lost without persistence) and handles the next event",
        async () => {
          await valkey.restart();
          await worker.program.waitForLog(
            (l) => l.msg === "reading the event stream again",
            20_000,
          );
          const gap = worker.program.logs.find((l) =>
            l.msg === "reading the event stream failed; retrying"
          );
          assert(gap, "the gap is logged");
          const res = await eventually("web accepting again", async () => {
            const r = await post(web.url, issuer, { image: "ghcr.io/acme/app:dev" });
            return r.status === 202 ? r : undefined;
          }, 15_000);
          const next = await handled(worker.program, res.json.id);
          assertEquals((next.restarted as string[]).length, 2);
          const metrics = await (await fetch(`${worker.healthUrl}/metrics`)).text();
          assertMatch(metrics, /kuberollouttrigger_worker_stream_reading 1/);
          assertMatch(metrics, /kuberollouttrigger_worker_events_total\{result="invalid"\} 3/);
        },
      );

      await t.step(
        "the worker made no list call per event, only one patch per restart",
        async () => {
          const metrics = await (await fetch(`${worker.healthUrl}/metrics`)).text();
          const count = (verb: string) =>
            Number(
              new RegExp(`kube_requests_total\\{verb="${verb}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0,
            );
          assertEquals(count("list"), 1, "one list at startup");
          // The controllers' status writes may outdate a matched resourceVersion:
          // each conflict costs one get and one more patch.
          assertEquals(count("patch") - count("get"), 6, "three events x two Deployments");
          // Following the rollouts reads the watch: the only other call is one Event per restart.
          assertEquals(count("create_event"), 6, "one RolloutTriggered Event per restart");
        },
      );

      await t.step("SIGTERM stops both processes cleanly", async () => {
        assertEquals(await worker.program.stop(), 0);
        assertEquals(await web.program.stop(), 0);
      });
    } finally {
      for (const p of programs) await p.stop();
      await valkey.stop();
      await issuer.stop();
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name: "two workers on one cluster restart each Deployment once per event",
  ...options,
  async fn(t) {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    const programs: Program[] = [];
    let second: ExtraCluster | undefined;
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-replicas");
      await cluster.createDeployment(
        deploymentManifest(ns, "app", [{ name: "a", image: "ghcr.io/acme/app:dev" }, {
          name: "b",
          image: "ghcr.io/acme/app:v1",
        }]),
      );
      const env = {
        ...sharedEnv(valkey),
        WATCH_NAMESPACES: ns,
        CLUSTER_NAME: "replicas",
        RESTART_DEDUP_WINDOW: "0s",
        // The replica that leaves an event to the other says so at debug.
        LOG_LEVEL: "debug",
      };
      for (let i = 0; i < 2; i++) programs.push((await startWorker(env, kubeconfig)).program);
      {
        await t.step(
          "an event whose several tags match one Deployment restarts it once, by one worker",
          async () => {
            const before = await cluster.getDeployment(ns, "app");
            const { id } = await sendEvent(valkey, "ghcr.io/acme/app", ["dev", "v1"]);
            const summary = await handledOnce(programs, id);
            assertEquals(summary.restarted, [`${ns}/app`]);
            assertEquals(summary.skipped, []);
            const after = await cluster.getDeployment(ns, "app");
            assertEquals(after.metadata.generation, before.metadata.generation + 1);
          },
        );
        await t.step(
          "a worker of a second, independent cluster sharing the Valkey restarts that cluster's Deployment once",
          async () => {
            second = await startExtraCluster("other-cluster");
            const there = second.cluster;
            // Independent: the shared cluster's CA and credentials are worthless there.
            const server = second.plane.server;
            const wrongCa = createKubeClient({ server, caPem: info!.caPem, token: "unused" });
            const tlsError = await assertRejects(() => wrongCa.request("GET", "/version"), {
              instanceOf: TypeError,
            });
            assertMatch(String(tlsError.cause), /certificate|issuer/i);
            wrongCa.close();
            const caPem = second.plane.caPem;
            const foreign = createKubeClient({ server, caPem, token: info!.adminToken });
            assertEquals((await foreign.request("GET", "/version")).status, 401);
            foreign.close();

            await there.admin.createNamespace(ns);
            await there.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
            await there.createDeployment(
              deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
            );
            const otherKubeconfig = await there.workerKubeconfig();
            const beforeHere = await cluster.getDeployment(ns, "app");
            const beforeThere = await there.getDeployment(ns, "app");
            const other = await startWorker(
              { ...env, CLUSTER_NAME: "other-cluster" },
              otherKubeconfig,
            );
            programs.push(other.program);

            const { id } = await sendEvent(valkey, "ghcr.io/acme/app", ["dev"]);
            // One restart per cluster: one of this cluster's two workers, and the other's worker.
            const here = await handledOnce(programs.slice(0, 2), id);
            const there_ = await handledOnce([other.program], id);
            assertEquals(here.restarted, [`${ns}/app`]);
            assertEquals(there_.restarted, [`${ns}/app`]);
            const afterHere = await cluster.getDeployment(ns, "app");
            const afterThere = await there.getDeployment(ns, "app");
            assertEquals(afterHere.metadata.generation, beforeHere.metadata.generation + 1);
            assertEquals(afterThere.metadata.generation, beforeThere.metadata.generation + 1);
            // The other cluster's own controllers roll the restart out.
            await waitForRollout(there.admin, ns, "app");
          },
        );
      }
    } finally {
      for (const p of programs) await p.stop();
      await valkey.stop();
      await cluster.cleanup();
      await second?.stop();
    }
  },
});

Deno.test({
  name:
    "a burst of events for the same image within the window restarts each Deployment once, and every event reports it restarted",
  ...options,
  async fn() {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    let program: Program | undefined;
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-burst");
      await cluster.createDeployment(
        deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      const before = await cluster.getDeployment(ns, "app");
      program = (await startWorker({
        ...sharedEnv(valkey),
        WATCH_NAMESPACES: ns,
        CLUSTER_NAME: "burst",
        RESTART_DEDUP_WINDOW: "30s",
      }, kubeconfig)).program;
      // One push sent as three events, all accepted before the worker restarts anything (one
      // round trip): the later ones follow the first one's restart instead of restarting again.
      const messages = Array.from({ length: 3 }, () => ({
        id: crypto.randomUUID(),
        time: new Date().toISOString(),
        image: "ghcr.io/acme/app",
        tags: ["dev"],
      }));
      const client = await connectValkey(valkey);
      try {
        await client.transaction(
          messages.map((m) => ["XADD", EVENTS_STREAM, "*", MESSAGE_FIELD, JSON.stringify(m)]),
        );
      } finally {
        client.disconnect();
      }
      const ids = messages.map((m) => m.id);
      const summaries = await Promise.all(ids.map((id) => handled(program!, id)));
      // Each event reports the Deployment restarted (by itself, or the restart it followed)...
      assertEquals(summaries.map((s) => (s.restarted as string[]).length), [1, 1, 1]);
      assertEquals(summaries.map((s) => (s.skipped as unknown[]).length), [0, 0, 0]);
      // ...and the Deployment rolled out once.
      assertEquals(
        (await cluster.getDeployment(ns, "app")).metadata.generation,
        before.metadata.generation + 1,
      );
    } finally {
      await program?.stop();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name: "dry run logs what would be restarted and patches nothing",
  ...options,
  async fn() {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    let program: Program | undefined;
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-dry");
      await cluster.createDeployment(
        deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      const before = await cluster.getDeployment(ns, "app");
      program = (await startWorker(
        { ...sharedEnv(valkey), WATCH_NAMESPACES: ns, DRY_RUN: "true" },
        kubeconfig,
      )).program;
      const { id } = await sendEvent(valkey, "ghcr.io/acme/app", ["dev"]);
      const summary = await handled(program, id);
      assertEquals(summary.skipped, [{ deployment: `${ns}/app`, reason: "dry_run" }]);
      await program.waitForLog((l) =>
        l.msg === "dry run: would restart deployment" && l.deployment === "app"
      );
      assertEquals(
        (await cluster.getDeployment(ns, "app")).metadata.resourceVersion,
        before.metadata.resourceVersion,
      );
    } finally {
      await program?.stop();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name:
    "a cluster-wide worker (no WATCH_NAMESPACES) sees every namespace with the cluster-wide RBAC",
  ...options,
  async fn() {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    let program: Program | undefined;
    try {
      await cluster.applyManifest("k8s/rbac/cluster-wide/rbac.yaml");
      const a = await cluster.namespace("krt-cw-a");
      const b = await cluster.namespace("krt-cw-b");
      const image = `ghcr.io/acme/cw-${crypto.randomUUID().slice(0, 6)}`;
      for (const ns of [a, b]) {
        await cluster.createDeployment(deploymentManifest(ns, "app", [{ image: `${image}:dev` }]));
      }
      const kubeconfig = await cluster.workerKubeconfig();
      program =
        (await startWorker({ ...sharedEnv(valkey), CLUSTER_NAME: "cw" }, kubeconfig)).program;
      const { id } = await sendEvent(valkey, image, ["dev"]);
      const summary = await handled(program, id);
      assertEquals((summary.restarted as string[]).sort(), [`${a}/app`, `${b}/app`].sort());
    } finally {
      await program?.stop();
      await valkey.stop();
      await cluster.admin.request(
        "DELETE",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kuberollouttrigger-worker",
      );
      await cluster.cleanup();
    }
  },
});
