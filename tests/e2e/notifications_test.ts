/**
 * Notifications end to end (issue 31): two real web replicas with NOTIFY_URLS,
 * a real worker on the test cluster, and a loopback receiver in this process.
 * Nobody reads any status: each final outcome (succeeded, a failed rollout, a
 * cluster gone silent) reaches each URL exactly once, signed; a receiver that
 * answers 500 twice gets the third try; a receiver that hangs does not keep
 * POST /event from answering.
 */

// Assertions index into the delivered bodies.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals } from "../helpers/assert.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireRolloutCluster } from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { connectValkey, startValkey } from "../helpers/valkey.ts";
import { CLUSTERS_KEY } from "../../shared/event_status.ts";
import { verifyNotification } from "../../web/notification_signature.ts";

const CHANNEL = "krt-notify-e2e";
const SECRET = "the-receivers-shared-secret-0123456789";
const rollout = withoutValkey() ? undefined : requireRolloutCluster("the notification tests");
const options = { ignore: rollout === undefined, sanitizeOps: false, sanitizeResources: false };

interface Delivery {
  path: string;
  body: any;
  raw: string;
  headers: Headers;
  status: number;
}

/** Answers /hook 200, /flaky 500 twice per event then 200, /hang never. */
function startReceiver() {
  const deliveries: Delivery[] = [];
  // When each /hang request was open (until its client gave up or the receiver stopped).
  const open: { from: number; to?: number }[] = [];
  const release: (() => void)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const raw = await req.text();
    const body = JSON.parse(raw);
    const before = deliveries.filter((d) => d.path === path && d.body.event_id === body.event_id);
    const status = path === "/flaky" && before.length < 2 ? 500 : 200;
    deliveries.push({ path, body, raw, headers: req.headers, status });
    if (path === "/hang") {
      const interval: { from: number; to?: number } = { from: Date.now() };
      open.push(interval);
      await new Promise<void>((resolve) => {
        release.push(resolve);
        req.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      interval.to = Date.now();
    }
    return new Response(null, { status });
  });
  return {
    deliveries,
    url: `http://127.0.0.1:${server.addr.port}`,
    hanging: () => open.filter((i) => i.to === undefined).length,
    /** True when a /hang request was open from `from` to `to`. */
    heldOpenDuring: (from: number, to: number) =>
      open.some((i) => i.from <= from && (i.to === undefined || i.to >= to)),
    async stop() {
      for (const r of release) r();
      await server.shutdown();
    },
  };
}

async function post(url: string, issuer: TestIssuer, image: string): Promise<string> {
  const res = await fetch(`${url}/event`, {
    method: "POST",
    headers: { authorization: `Bearer ${await issuer.sign()}`, "content-type": "application/json" },
    body: JSON.stringify({ image }),
  });
  const body = await res.json();
  assertEquals(res.status, 202, JSON.stringify(body));
  return body.id;
}

Deno.test({
  name:
    "notifications: each final event reaches each URL exactly once across two web replicas, signed, with no status read",
  ...options,
  async fn(t) {
    const cluster = openCluster(rollout!.info);
    const valkey = await startValkey();
    const issuer = await startIssuer();
    const receiver = startReceiver();
    const keys = await generateKeyPair();
    const programs: Program[] = [];
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-notify");
      await cluster.createDeployment(
        deploymentManifest(ns, "ok", [{ image: "ghcr.io/acme/notify-ok:dev" }]),
      );
      await cluster.createDeployment(
        deploymentManifest(ns, "slow", [{ image: "ghcr.io/acme/notify-slow:dev" }], {
          unready: true,
          progressDeadlineSeconds: 3,
        }),
      );
      const shared = {
        VALKEY_ADDR: valkey.addr,
        VALKEY_CHANNEL: CHANNEL,
        ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      };
      const webEnv = {
        ...shared,
        GITHUB_OIDC_ISSUER: issuer.url,
        GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
        GITHUB_ALLOWED_ORG: "acme",
        STATUS_REPORT_TIMEOUT: "5s",
        EVENT_SIGNING_KEY: keys.privatePem,
        NOTIFY_URLS: ["/hook", "/flaky", "/hang"].map((p) => receiver.url + p).join(","),
        NOTIFY_SECRET: SECRET,
      };
      const webs = [await startWeb(webEnv), await startWeb(webEnv)];
      programs.push(...webs.map((w) => w.program));
      const { program: worker } = await startWorker({
        ...shared,
        CLUSTER_NAME: "notify",
        WATCH_NAMESPACES: ns,
        RESTART_DEDUP_WINDOW: "0s",
        EVENT_VERIFY_KEYS: keys.publicPem,
      }, kubeconfig);
      programs.push(worker);
      const admin = await connectValkey(valkey);
      await eventually(
        "the worker's heartbeat",
        async () => (await admin.call("ZSCORE", CLUSTERS_KEY, "notify")) !== null || undefined,
        30_000,
      );
      admin.disconnect();

      const ids: Record<string, string> = {};
      await t.step("a succeeded and a failed rollout, through either replica", async () => {
        ids.succeeded = await post(webs[0].url, issuer, "ghcr.io/acme/notify-ok:dev");
        ids.failed = await post(webs[1].url, issuer, "ghcr.io/acme/notify-slow:dev");
        await eventually(
          "both on /hook",
          () =>
            [ids.succeeded, ids.failed].every((id) =>
              receiver.deliveries.some((d) => d.path === "/hook" && d.body.event_id === id)
            ) || undefined,
          90_000,
        );
      });

      await t.step("a hanging receiver does not hold POST /event", async () => {
        // Stopped first: its heartbeat stays live for a while, so the next event waits for it.
        await worker.stop();
        await eventually(
          "a delivery held open by /hang",
          () => receiver.hanging() > 0 || undefined,
        );
        const sent = Date.now();
        ids.silent = await post(webs[0].url, issuer, "ghcr.io/acme/notify-ok:dev");
        assert(receiver.heldOpenDuring(sent, Date.now()), "answered while /hang held a delivery");
      });

      await t.step("a cluster that never reports: notified once the event times out", async () => {
        await eventually(
          "the silent event on /hook",
          () =>
            receiver.deliveries.some((d) => d.path === "/hook" && d.body.event_id === ids.silent) ||
            undefined,
          30_000,
        );
      });

      await t.step(
        "exactly once per URL; /flaky got its third try; every delivery verifies",
        async () => {
          await eventually(
            "three tries of /flaky for each",
            () =>
              Object.values(ids).every((id) =>
                receiver.deliveries.filter((d) => d.path === "/flaky" && d.body.event_id === id)
                  .length === 3
              ) || undefined,
            30_000,
          );
          // Longer than a poll and a recheck: a doubled delivery would have come by now.
          await new Promise((r) => setTimeout(r, 3000));
          for (const [expected, id] of Object.entries(ids)) {
            const of = (path: string) =>
              receiver.deliveries.filter((d) => d.path === path && d.body.event_id === id);
            assertEquals(of("/hook").length, 1, `${expected}: /hook`);
            assertEquals(of("/flaky").map((d) => d.status), [500, 500, 200], `${expected}: /flaky`);
            const state = of("/hook")[0].body.state;
            assertEquals(state, expected === "succeeded" ? "succeeded" : "failed", expected);
          }
          const silent = receiver.deliveries.find((d) => d.body.event_id === ids.silent)!;
          assertEquals(silent.body.clusters[0].state, "no_report");
          const failed = receiver.deliveries.find((d) => d.body.event_id === ids.failed)!;
          assertEquals(
            failed.body.clusters[0].deployments[0].rollout.reason,
            "ProgressDeadlineExceeded",
          );
          const now = Math.floor(Date.now() / 1000);
          for (const d of receiver.deliveries) {
            assert(
              verifyNotification({
                secret: SECRET,
                body: d.raw,
                headers: d.headers,
                nowSeconds: now,
              }),
              `${d.path} ${d.body.event_id} verifies`,
            );
            assertEquals(d.body.repository, "acme/app");
          }
          const logged = programs.flatMap((p) => p.logs).filter((l) =>
            l.msg === "notification delivered"
          );
          assert(
            logged.every((l) => !String(l.target).includes("/hook")),
            "only scheme and host logged",
          );
        },
      );
    } finally {
      for (const p of programs) await p.stop();
      await receiver.stop();
      await issuer.stop();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
