/**
 * What CI reads is the truth, end to end through the real programs: web with
 * EVENT_SIGNING_KEY and every cluster's public key in REPORT_VERIFY_KEYS,
 * workers signing their reports with their own REPORT_SIGNING_KEY, a real
 * Valkey and the test cluster whose controllers roll Deployments out.
 * - A report forged in Valkey (unsigned, or signed with another cluster's
 *   key) is ignored: the Action does not pass, and web logs it once.
 * - A cluster named in REPORT_VERIFY_KEYS that never registered is still
 *   waited for, also when someone cuts it from an event's record.
 * - Every match skipped is `skipped`, a DRY_RUN cluster is `dry_run`, never
 *   `succeeded`; a second push within RESTART_DEDUP_WINDOW follows the first
 *   one's rollout (or restarts again) and ends with its real outcome. The
 *   follow itself is proven deterministically in tests/e2e/worker_test.ts.
 */

// Assertions index into API answers.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals, assertMatch, assertNotEquals } from "../helpers/assert.ts";
import { readAction, runAction, startTokenService } from "../helpers/action_runner.ts";
import { type Cluster, deploymentManifest, openCluster } from "../helpers/cluster.ts";
import { requireRolloutCluster } from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { generateKeyPair, type TestKeyPair } from "../helpers/signing_keys.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { connectValkey, startValkey, type TestValkey } from "../helpers/valkey.ts";
import { BINDING_FIELD, reportField, statusKey } from "../../shared/event_status.ts";
import { encodeSignedReport, reportBytes } from "../../shared/report_signature.ts";
import { parseSigningKey } from "../../shared/event_keys.ts";
import { importSigningKey } from "../../shared/signing_key.ts";

const CHANNEL = "krt-signed-reports-e2e";
const rollout = withoutValkey() ? undefined : requireRolloutCluster("the signed report tests");
const options = { ignore: rollout === undefined, sanitizeOps: false, sanitizeResources: false };
const [WEB_KEY, LIVE_KEY, DRY_KEY, GHOST_KEY] = await Promise.all([
  generateKeyPair(),
  generateKeyPair(),
  generateKeyPair(),
  generateKeyPair(),
]);
const LIVE = "sr-live";
const DRY = "sr-dry";
/** Named in one web's REPORT_VERIFY_KEYS; no worker runs it. */
const GHOST = "sr-ghost";

interface Env {
  valkey: TestValkey;
  issuer: TestIssuer;
  cluster: Cluster;
  programs: Program[];
}

function webEnv(env: Env, clusters: [string, TestKeyPair][]): Record<string, string> {
  return {
    VALKEY_ADDR: env.valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_OIDC_ISSUER: env.issuer.url,
    GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
    GITHUB_ALLOWED_ORG: "acme",
    STATUS_REPORT_TIMEOUT: "8s",
    EVENT_SIGNING_KEY: WEB_KEY.privatePem,
    REPORT_VERIFY_KEYS: clusters.map(([name, pair]) => `${name}=${pair.publicLine}`).join("\n"),
  };
}

async function worker(
  env: Env,
  name: string,
  key: TestKeyPair,
  extra: Record<string, string> = {},
): Promise<string> {
  const { ns, kubeconfig } = await env.cluster.workerNamespace(`${name}-ns`);
  const { program } = await startWorker({
    VALKEY_ADDR: env.valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    CLUSTER_NAME: name,
    WATCH_NAMESPACES: ns,
    EVENT_VERIFY_KEYS: WEB_KEY.publicPem,
    REPORT_SIGNING_KEY: key.privatePem,
    ...extra,
  }, kubeconfig);
  env.programs.push(program);
  return ns;
}

async function post(env: Env, url: string, image: string): Promise<any> {
  const res = await fetch(`${url}/event`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await env.issuer.sign()}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ image, tags: ["dev"] }),
  });
  const body = await res.json();
  assertEquals(res.status, 202, JSON.stringify(body));
  return body;
}

/** GET /event/<id> until final (or 404), as clients read it. */
async function waitFinal(env: Env, url: string, id: string, boundMs = 90_000): Promise<any> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const res = await fetch(`${url}/event/${id}?wait=20`, {
      headers: { authorization: `Bearer ${await env.issuer.sign()}` },
    });
    const body = await res.json();
    if (res.status === 404) return { status: 404 };
    assertEquals(res.status, 200, JSON.stringify(body));
    if (body.final) return body;
    if (Date.now() > deadline) throw new Error(`not final in time: ${JSON.stringify(body)}`);
  }
}

const clusterOf = (status: any, name: string) =>
  status.clusters.find((c: any) => c.cluster === name);

Deno.test({
  name:
    "signed reports: a forged report cannot make CI green; skipped, dry_run and a push within the dedup window say what really happened",
  ...options,
  async fn(t) {
    const env: Env = {
      valkey: await startValkey(),
      issuer: await startIssuer(),
      cluster: openCluster(rollout!.info),
      programs: [],
    };
    const valkey = await connectValkey(env.valkey);
    try {
      const web = await startWeb(webEnv(env, [[LIVE, LIVE_KEY], [DRY, DRY_KEY]]));
      env.programs.push(web.program);
      const live = await worker(env, LIVE, LIVE_KEY);
      const dry = await worker(env, DRY, DRY_KEY, { DRY_RUN: "true" });
      const good = "ghcr.io/acme/sr-good";
      // Its own image: an event for `good` restarted moments before would hold the window.
      const twice = "ghcr.io/acme/sr-twice";
      const paused = "ghcr.io/acme/sr-paused";
      const rehearsed = "ghcr.io/acme/sr-dry";
      await env.cluster.createDeployment(
        deploymentManifest(live, "good", [{ image: `${good}:dev` }]),
      );
      await env.cluster.createDeployment(
        deploymentManifest(live, "twice", [{ image: `${twice}:dev` }]),
      );
      await env.cluster.createDeployment(
        deploymentManifest(live, "held", [{ image: `${paused}:dev` }], { paused: true }),
      );
      await env.cluster.createDeployment(
        deploymentManifest(dry, "rehearsed", [{ image: `${rehearsed}:dev` }]),
      );

      await t.step("a signed report is read: succeeded", async () => {
        const status = await waitFinal(env, web.url, (await post(env, web.url, good)).id);
        assertEquals(status.state, "succeeded", JSON.stringify(status));
        assertEquals(clusterOf(status, DRY).state, "no_match");
      });

      await t.step(
        "a second push within RESTART_DEDUP_WINDOW follows the first one's rollout, or restarts again, and both succeed",
        async () => {
          const before = (await env.cluster.getDeployment(live, "twice")).metadata.generation;
          const first = await post(env, web.url, twice);
          const second = await post(env, web.url, twice);
          const [a, b] = await Promise.all([
            waitFinal(env, web.url, first.id),
            waitFinal(env, web.url, second.id),
          ]);
          assertEquals([a.state, b.state], ["succeeded", "succeeded"], JSON.stringify(b));
          for (const status of [a, b]) {
            const d = clusterOf(status, LIVE).deployments[0];
            assertEquals([d.result, d.rollout.state], ["restarted", "complete"], JSON.stringify(d));
          }
          // Whether the second follows the first's rollout depends on whether the first patch
          // started before the second push was accepted; both ways end true. Followed: it names
          // the event whose restart it is, and the Deployment rolled out once. Not followed (the
          // earlier rollout's pods may predate the second push): it restarted again.
          const reasons = [a, b].map((s) => clusterOf(s, LIVE).deployments[0].reason ?? "");
          const named = (id: string) => new RegExp(`restarted by event ${id} within`);
          const followed = named(first.id).test(reasons[1]) || named(second.id).test(reasons[0]);
          const after = (await env.cluster.getDeployment(live, "twice")).metadata.generation;
          assertEquals(after, before + (followed ? 1 : 2), JSON.stringify(reasons));
          if (!followed) assertEquals(reasons, ["", ""]);
        },
      );

      await t.step("every match skipped: skipped with the reason, not no_match", async () => {
        const status = await waitFinal(env, web.url, (await post(env, web.url, paused)).id);
        assertEquals(status.state, "skipped", JSON.stringify(status));
        const held = clusterOf(status, LIVE).deployments[0];
        assertEquals([held.result, held.reason], ["skipped", "paused"]);
      });

      await t.step("a DRY_RUN cluster is dry_run, never succeeded", async () => {
        const status = await waitFinal(env, web.url, (await post(env, web.url, rehearsed)).id);
        assertEquals(status.state, "dry_run", JSON.stringify(status));
        assertEquals(clusterOf(status, DRY).state, "dry_run");
      });

      // A web that also expects a cluster no worker runs, whose report an attacker forges.
      const strict = await startWeb(webEnv(env, [[LIVE, LIVE_KEY], [DRY, DRY_KEY], [
        GHOST,
        GHOST_KEY,
      ]]));
      env.programs.push(strict.program);

      await t.step(
        "a forged report for a silent cluster is ignored: the Action fails",
        async () => {
          const liveKey = await importSigningKey(parseSigningKey(LIVE_KEY.privatePem)!, "k");
          const forged = (id: string) => {
            const json = JSON.stringify({
              cluster: GHOST,
              state: "succeeded",
              matched: 1,
              counts: {
                restarted: 1,
                skipped: 0,
                failed: 0,
                dry_run: 0,
                complete: 1,
                progressing: 0,
                rollout_failed: 0,
              },
              deployments: [],
              omitted: 0,
              updated: new Date().toISOString(),
            });
            // Once bare, once signed with another cluster's key.
            return Math.random() < 0.5
              ? json
              : encodeSignedReport(json, liveKey.keyId, liveKey.sign(reportBytes(id, json)));
          };
          // The forger writes into every record it sees until the Action is done.
          let forging = true;
          const forger = (async () => {
            while (forging) {
              const keys = (await valkey.call("KEYS", statusKey("*"))) as string[];
              for (const key of keys) {
                const id = key.slice(key.lastIndexOf(":") + 1);
                await valkey.call("HSET", key, reportField(GHOST), forged(id));
              }
              await new Promise((r) => setTimeout(r, 100));
            }
          })();
          const tokens = startTokenService(env.issuer, { audience: TEST_AUDIENCE });
          try {
            const run = await runAction({
              action: readAction(),
              with: {
                url: `${strict.url}/event`,
                audience: TEST_AUDIENCE,
                image: good,
                tags: "dev",
                timeout: "2m",
              },
              env: tokens.env,
              killAfterMs: 150_000,
            });
            assertNotEquals(run.code, 0, run.stdout);
            assertEquals(run.outputs.state, "failed", run.stdout);
            assertMatch(run.summary, /no\\?_report/);
          } finally {
            forging = false;
            await forger;
            await tokens.stop();
          }
          const ignored = strict.program.logs.filter((l) =>
            l.msg === "cluster report ignored" && l.cluster === GHOST
          );
          assert(ignored.length >= 1, "web logged the forgery");
          const seen = new Set(ignored.map((l) => `${l.event_id} ${l.reason}`));
          assertEquals(seen.size, ignored.length, "each forged field logged once");
        },
      );

      await t.step(
        "cutting the silent cluster from an event's record does not make it green: it is still waited for",
        async () => {
          const accepted = await post(env, strict.url, good);
          assertEquals(accepted.clusters, [DRY, GHOST, LIVE]);
          const binding = JSON.parse(
            (await valkey.call("HGET", statusKey(accepted.id), BINDING_FIELD)) as string,
          );
          binding.clusters = [DRY, LIVE];
          await valkey.call("HSET", statusKey(accepted.id), BINDING_FIELD, JSON.stringify(binding));
          const status = await waitFinal(env, strict.url, accepted.id);
          assertEquals(status.state, "failed", JSON.stringify(status));
          assertEquals(clusterOf(status, GHOST).state, "no_report");
        },
      );
    } finally {
      valkey.disconnect();
      for (const p of env.programs.reverse()) await p.stop();
      await env.cluster.cleanup();
      await env.issuer.stop();
      await env.valkey.stop();
    }
  },
});
