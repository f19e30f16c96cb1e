/**
 * The whole product on a real Valkey Cluster (three primaries with a replica
 * each, on loopback): web and a worker given only VALKEY_CLUSTER_NODES, a
 * steady, bounded stream of events (20/s), and in the middle of it either the
 * primary of the product's slot killed by PID or the slot moved to another
 * primary by hand (ASK while it moves, MOVED after). Web answers only 202 or
 * 503, 503 only while the slot has no reachable primary or is
 * moving, the status of an accepted event is readable, and every 202
 * restarts the Deployment exactly once.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { assertEachRestarted, assertRestartedForEvery } from "../helpers/accepted_restarts.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkeyCluster, type TestValkeyCluster } from "../helpers/valkey_cluster.ts";
import { KEY_TAG } from "../../shared/valkey_keys.ts";
import { keySlot } from "../../shared/valkey_slots.ts";

const info = withoutValkey() ? undefined : requireControlPlane("the Valkey Cluster test");
const options = { ignore: info === undefined, sanitizeOps: false, sanitizeResources: false };

const EVENTS = 300;
const INTERVAL_MS = 50; // 20 events/s for 15 s
const FAULT_AFTER_MS = 4000;
const SLOT = keySlot(KEY_TAG);

interface Sent {
  sentAt: number;
  status: number;
  id?: string;
}

/** What one run saw. */
interface Run {
  results: Sent[];
  accepted: Sent[];
  refused: Sent[];
}

/** Posts EVENTS events at a steady rate while `fault` runs once, after FAULT_AFTER_MS. */
async function underLoad(
  issuer: TestIssuer,
  url: string,
  fault: () => Promise<void>,
): Promise<Run> {
  const tokens = await Promise.all(Array.from({ length: EVENTS }, () => issuer.sign()));
  const results: Sent[] = [];
  const started = Date.now();
  const faulted = (async () => {
    await new Promise((r) => setTimeout(r, FAULT_AFTER_MS));
    await fault();
  })();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const due = started + i * INTERVAL_MS;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
    const sentAt = Date.now();
    inFlight.push((async () => {
      const res = await fetch(`${url}/event`, {
        method: "POST",
        headers: { authorization: `Bearer ${tokens[i]}`, "content-type": "application/json" },
        body: '{"image":"ghcr.io/acme/app:dev"}',
        signal: AbortSignal.timeout(10_000),
      });
      const body = await res.json();
      results.push({ sentAt, status: res.status, id: body.id });
    })());
  }
  await Promise.all(inFlight);
  await faulted;
  return {
    results,
    accepted: results.filter((r) => r.status === 202),
    refused: results.filter((r) => r.status === 503),
  };
}

/** Every accepted event handled by the worker with exactly one restart, and no other restart. */
async function assertOneRestartEach(
  worker: Program,
  run: Run,
  restarts: () => Promise<{ count: number; restartedAt?: string }>,
): Promise<void> {
  const summaries = await eventually("a summary for every accepted event", () => {
    const lines = worker.logs.filter((l) => l.msg === "event handled");
    const ids = new Set(lines.map((l) => l.event_id));
    return run.accepted.every((r) => ids.has(r.id)) ? lines : undefined;
  }, 30_000);
  assertEachRestarted(summaries, run.accepted);
  const { count, restartedAt } = await restarts();
  assertRestartedForEvery(run.accepted, count, restartedAt);
}

/** Starts the cluster, web, a worker and one Deployment; runs `body`; stops everything. */
async function withProduct(
  prefix: string,
  body: (
    parts: {
      cluster: TestValkeyCluster;
      issuer: TestIssuer;
      url: string;
      web: Program;
      worker: Program;
      restarts: () => Promise<{ count: number; restartedAt?: string }>;
    },
  ) => Promise<void>,
): Promise<void> {
  const kube = openCluster(info!);
  const cluster = await startValkeyCluster();
  const issuer = await startIssuer();
  const programs: Program[] = [];
  try {
    const { ns, kubeconfig } = await kube.workerNamespace(prefix);
    await kube.createDeployment(deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }]));
    const before = (await kube.getDeployment(ns, "app")).metadata.generation;
    const valkeyEnv = {
      VALKEY_CLUSTER_NODES: cluster.seeds.map((s) => `${s.host}:${s.port}`).join(","),
      VALKEY_CHANNEL: prefix,
      VALKEY_TIMEOUT: "1s",
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    };
    const web = await startWeb({
      ...valkeyEnv,
      GITHUB_OIDC_ISSUER: issuer.url,
      GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
      GITHUB_ALLOWED_ORG: "acme",
    });
    programs.push(web.program);
    const worker = await startWorker(
      { ...valkeyEnv, WATCH_NAMESPACES: ns, RESTART_DEDUP_WINDOW: "0s", CLUSTER_NAME: "east" },
      kubeconfig,
    );
    programs.push(worker.program);
    await worker.program.waitForLog((l) => l.msg === "reading the event stream", 20_000);
    await body({
      cluster,
      issuer,
      url: web.url,
      web: web.program,
      worker: worker.program,
      restarts: async () => {
        const d = await kube.getDeployment(ns, "app");
        return {
          count: d.metadata.generation - before,
          restartedAt: d.spec.template.metadata?.annotations?.["kubectl.kubernetes.io/restartedAt"],
        };
      },
    });
  } finally {
    for (const p of programs) await p.stop();
    await issuer.stop();
    await cluster.stop();
    await kube.cleanup();
  }
}

Deno.test({
  name:
    "Valkey Cluster: the primary of our slot killed under 20 events/s: 503 only until its replica is promoted, every 202 restarts once",
  ...options,
  async fn() {
    await withProduct(
      "krt-cluster-kill",
      async ({ cluster, issuer, url, web, worker, restarts }) => {
        const victim = await cluster.ownerOf(SLOT);
        let killedAt = Infinity;
        let promotedAt = Infinity;
        const run = await underLoad(issuer, url, async () => {
          killedAt = Date.now();
          await cluster.kill(victim);
          await eventually(
            "a replica promoted for our slot",
            async () => {
              const owner = await cluster.ownerOf(SLOT).catch(() => undefined);
              return owner && owner.id !== victim.id ? owner : undefined;
            },
            30_000,
            50,
          );
          promotedAt = Date.now();
        });
        const first503 = Math.min(...run.refused.map((r) => r.sentAt));
        const last503 = Math.max(...run.refused.map((r) => r.sentAt));
        console.error(
          `cluster failover: ${run.results.length} requests, ${run.accepted.length} x 202, ${run.refused.length} x 503; ` +
            `replica promoted ${promotedAt - killedAt} ms after the kill; 503s sent from ${
              first503 - killedAt
            } to ${last503 - killedAt} ms after it`,
        );
        assertEquals(
          run.accepted.length + run.refused.length,
          run.results.length,
          "only 202 and 503",
        );
        assert(run.refused.length > 0, "the kill was noticed");
        // In flight at the kill: up to the 1 s command bound. After the promotion: the clients
        // read the slot map again within their 1 s backoff and the worker reads there again.
        assert(
          run.refused.every((r) => r.sentAt >= killedAt - 1000 && r.sentAt <= promotedAt + 3000),
          `a 503 outside the failover: ${run.refused.map((r) => r.sentAt - killedAt)}`,
        );
        assert(run.accepted.some((r) => r.sentAt > promotedAt), "web recovered without a restart");
        await worker.waitForLog((l) => l.msg === "reading the event stream again", 10_000);
        await assertOneRestartEach(worker, run, restarts);
        const last = run.accepted.at(-1)!;
        // The last accepted event's record, written by web and the worker, reads back.
        const status = await fetch(`${url}/event/${last.id}?wait=10`, {
          headers: { authorization: `Bearer ${await issuer.sign()}` },
        });
        const body = await status.json();
        assertEquals(status.status, 200, JSON.stringify(body));
        assert(JSON.stringify(body).includes('"east"'), JSON.stringify(body));
        // Web's only errors are the 503 answers themselves: nothing unhandled, nothing else failed.
        const errors = web.logs.filter((l) => l.level === "error" && l.status !== 503);
        assertEquals(errors, [], "web logged an error other than a 503");
      },
    );
  },
});

Deno.test({
  name:
    "Valkey Cluster: our slot moved to another primary under 20 events/s (ASK, then MOVED): nothing accepted is lost, every 202 restarts once",
  ...options,
  async fn() {
    await withProduct("krt-cluster-move", async ({ cluster, issuer, url, worker, restarts }) => {
      let startedAt = Infinity;
      let movedAt = Infinity;
      const run = await underLoad(issuer, url, async () => {
        const from = await cluster.ownerOf(SLOT);
        const to = (await cluster.nodes()).find((n) => n.role === "primary" && n.id !== from.id)!;
        startedAt = Date.now();
        // Ten keys at a time with a pause after each, so events meet the slot half moved.
        await cluster.migrateSlot(SLOT, to, {
          batch: 10,
          afterSomeKeys: () => new Promise((r) => setTimeout(r, 50)),
        });
        movedAt = Date.now();
      });
      console.error(
        `cluster slot move: ${run.results.length} requests, ${run.accepted.length} x 202, ${run.refused.length} x 503; ` +
          `the move took ${movedAt - startedAt} ms; 503s at ${
            run.refused.map((r) => r.sentAt - startedAt).join(",")
          } ms after it began`,
      );
      assertEquals(
        run.accepted.length + run.refused.length,
        run.results.length,
        "only 202 and 503",
      );
      assert(
        run.refused.every((r) => r.sentAt >= startedAt - 1000 && r.sentAt <= movedAt + 3000),
        `a 503 outside the move`,
      );
      assert(run.accepted.some((r) => r.sentAt > movedAt + 3000), "accepted again after the move");
      await assertOneRestartEach(worker, run, restarts);
    });
  },
});
