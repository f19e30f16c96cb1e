/**
 * Sentinel failover with real processes on loopback: a primary, a replica and
 * three Sentinels (redis-server --sentinel), web and a worker given only the
 * Sentinels. The primary is killed by PID under a steady, bounded stream of
 * events: web answers 503 only while no primary is known, the worker
 * reads the event stream again on the new primary, and every 202 restarts exactly once.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { assertEachRestarted, assertRestartedForEvery } from "../helpers/accepted_restarts.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { connectValkey, startSentinelGroup } from "../helpers/valkey.ts";

const CHANNEL = "krt-sentinel";
const info = withoutValkey() ? undefined : requireControlPlane("the Sentinel failover test");
const options = { ignore: info === undefined, sanitizeOps: false, sanitizeResources: false };

const EVENTS = 300;
const INTERVAL_MS = 50; // 20 events/s for 15 s
const KILL_AFTER_MS = 4000;

/** Polls until `check` is true (bounded); resolves with the time it first was. */
async function timeOf(check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return Date.now();
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not true within ${timeoutMs} ms`);
}

Deno.test({
  name:
    "the primary killed under 20 events/s: 503 only until the Sentinels name the replica, the worker reads again, every 202 restarts, no more rollouts than events",
  ...options,
  async fn() {
    const cluster = openCluster(info!);
    const dir = await Deno.makeTempDir({ prefix: "krt-sentinel-" });
    const group = await startSentinelGroup(dir);
    const issuer = await startIssuer();
    const programs: Program[] = [];
    // Commands fail at once while it reconnects (the Sentinels disconnect clients on promotion).
    const replicaAdmin = await connectValkey({ host: "127.0.0.1", port: group.replica.port });
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-sentinel");
      await cluster.createDeployment(
        deploymentManifest(ns, "app", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      const before = await cluster.getDeployment(ns, "app");
      const valkeyEnv = {
        VALKEY_SENTINELS: group.sentinels.join(","),
        VALKEY_SENTINEL_MASTER: group.master,
        VALKEY_CHANNEL: CHANNEL,
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
        { ...valkeyEnv, WATCH_NAMESPACES: ns, RESTART_DEDUP_WINDOW: "0s" },
        kubeconfig,
      );
      programs.push(worker.program);
      const oldPrimary = group.primary.addr;
      assertEquals(await group.currentPrimary(), oldPrimary);

      const tokens = await Promise.all(Array.from({ length: EVENTS }, () => issuer.sign()));
      const results: { sentAt: number; status: number; id?: string }[] = [];
      const started = Date.now();
      let killedAt = Infinity;
      let promotedAt = Infinity;
      let knownAt = Infinity;
      const failover = (async () => {
        await new Promise((r) => setTimeout(r, KILL_AFTER_MS));
        const pid = group.primary.pid();
        assert(pid !== undefined, "the primary runs");
        killedAt = Date.now();
        Deno.kill(pid, "SIGKILL");
        await group.primary.stop(); // reaps the process
        const promoted = timeOf(
          async () => /role:master/.test(String(await replicaAdmin.call("INFO", "replication"))),
          30_000,
        );
        const known = timeOf(
          async () => (await group.currentPrimary()) === group.replica.addr,
          30_000,
        );
        [promotedAt, knownAt] = await Promise.all([promoted, known]);
      })();
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < EVENTS; i++) {
        const due = started + i * INTERVAL_MS;
        await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
        const sentAt = Date.now();
        inFlight.push((async () => {
          const res = await fetch(`${web.url}/event`, {
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
      await failover;

      const accepted = results.filter((r) => r.status === 202);
      const refused = results.filter((r) => r.status === 503);
      const first503 = Math.min(...refused.map((r) => r.sentAt));
      const last503 = Math.max(...refused.map((r) => r.sentAt));
      console.error(
        `sentinel failover: ${results.length} requests, ${accepted.length} x 202, ${refused.length} x 503; ` +
          `replica promoted ${promotedAt - killedAt} ms and named by the Sentinels ${
            knownAt - killedAt
          } ms after the kill; ` +
          `503s sent from ${first503 - killedAt} ms to ${last503 - killedAt} ms after the kill ` +
          `(outage seen by clients ~${last503 - first503 + INTERVAL_MS} ms)`,
      );
      assertEquals(accepted.length + refused.length, results.length, "only 202 and 503");
      const beforePromotion = results.filter((r) => r.sentAt > killedAt && r.sentAt < promotedAt);
      assert(beforePromotion.length > 0, "requests were sent while there was no primary");
      assert(beforePromotion.every((r) => r.status === 503), "202 while there was no primary");
      // A request in flight at the kill may fail (1 s command bound); after the Sentinels name the
      // new primary, the clients find it on their next try, at most 1 s later.
      assert(
        refused.every((r) => r.sentAt >= killedAt - 1000 && r.sentAt <= knownAt + 2000),
        `a 503 outside the failover: ${refused.map((r) => r.sentAt - killedAt)}`,
      );
      assert(accepted.some((r) => r.sentAt > knownAt), "web recovered without a restart");

      const reconnected = await worker.program.waitForLog(
        (l) => l.msg === "valkey connected" && l.primary === group.replica.addr,
        10_000,
      );
      assertEquals(reconnected.level, "info");
      await worker.program.waitForLog((l) => l.msg === "reading the event stream again", 10_000);

      const summaries = await eventually("a summary for every accepted event", () => {
        const lines = worker.program.logs.filter((l) => l.msg === "event handled");
        const ids = new Set(lines.map((l) => l.event_id));
        return accepted.every((r) => ids.has(r.id)) ? lines : undefined;
      }, 30_000);
      assertEachRestarted(summaries, accepted);
      const after = await cluster.getDeployment(ns, "app");
      assertRestartedForEvery(
        accepted,
        after.metadata.generation - before.metadata.generation,
        after.spec.template.metadata?.annotations?.["kubectl.kubernetes.io/restartedAt"],
      );
    } finally {
      replicaAdmin.disconnect();
      for (const p of programs) await p.stop();
      await issuer.stop();
      await group.stop();
      await cluster.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
