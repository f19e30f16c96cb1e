/**
 * Signed events end to end (issue 18): the real web and worker processes, a
 * real Valkey-compatible server, a loopback OIDC issuer and the real
 * kube-apiserver. With verify keys, nothing that reaches the channel without
 * web's signature (unsigned, another key, a signature lifted from another
 * body, a replay, a stale message) restarts anything, while the next event
 * through web restarts exactly what it should; rotation accepts both keys,
 * then only the new one; status bindings that do not verify answer 404.
 */

// Assertions index into API objects.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { deploymentManifest, eventually, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb, startWorker } from "../helpers/program.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { withoutValkey } from "../helpers/skip.ts";
import {
  appendEvent,
  connectValkey,
  startValkey,
  subscribe,
  type TestValkey,
} from "../helpers/valkey.ts";
import { createSigner } from "../../web/event_signer.ts";
import { parseSigningKey } from "../../shared/event_keys.ts";
import { BINDING_FIELD, statusKey } from "../../shared/event_status.ts";

const RESTARTED_AT = "kubectl.kubernetes.io/restartedAt";
const CHANNEL = "krt-signing-e2e";
const MAX_AGE_MS = 6000;
const info = withoutValkey() ? undefined : requireControlPlane("the signed events end-to-end test");
const options = { ignore: info === undefined, sanitizeOps: false, sanitizeResources: false };

function sharedEnv(valkey: TestValkey) {
  return {
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    LOG_LEVEL: "debug",
  };
}

function webEnv(valkey: TestValkey, issuer: TestIssuer, extra: Record<string, string>) {
  return {
    ...sharedEnv(valkey),
    GITHUB_OIDC_ISSUER: issuer.url,
    GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
    GITHUB_ALLOWED_ORG: "acme",
    ...extra,
  };
}

async function post(url: string, issuer: TestIssuer, image: string): Promise<any> {
  const res = await fetch(`${url}/event`, {
    method: "POST",
    headers: { authorization: `Bearer ${await issuer.sign()}`, "content-type": "application/json" },
    body: JSON.stringify({ image }),
  });
  assertEquals(res.status, 202);
  return await res.json();
}

async function statusOf(url: string, issuer: TestIssuer, id: string): Promise<number> {
  const res = await fetch(`${url}/event/${id}`, {
    headers: { authorization: `Bearer ${await issuer.sign()}` },
  });
  await res.body?.cancel();
  return res.status;
}

function handled(program: Program, eventId: string) {
  return program.waitForLog((l) => l.msg === "event handled" && l.event_id === eventId, 15_000);
}

/** Resolves with the next drop line after the `seen` earlier ones. */
async function nthDrop(program: Program, n: number) {
  return await eventually(`drop line ${n}`, () => {
    const drops = program.logs.filter((l) =>
      l.msg === "dropped a message that failed authentication"
    );
    return drops.length >= n ? drops[n - 1] : undefined;
  }, 15_000);
}

Deno.test({
  name:
    "security: with verify keys only events signed by web restart anything; keys rotate with no gap",
  ...options,
  async fn(t) {
    const cluster = openCluster(info!);
    const issuer = await startIssuer();
    const valkey = await startValkey();
    const recorder = await subscribe(valkey, CHANNEL);
    const admin = await connectValkey(valkey, { name: "krt-test-admin" });
    const programs: Program[] = [];
    const [oldKey, newKey, strangerKey] = await Promise.all([
      generateKeyPair(),
      generateKeyPair(),
      generateKeyPair(),
    ]);
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-signing");
      await cluster.createDeployment(
        deploymentManifest(ns, "target", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      await cluster.createDeployment(
        deploymentManifest(ns, "bystander", [{ image: "ghcr.io/acme/other:dev" }]),
      );
      const restartedAt = async (name: string) => {
        const d = await cluster.getDeployment(ns, name);
        return {
          at: d.spec.template.metadata?.annotations?.[RESTARTED_AT],
          generation: d.metadata.generation,
        };
      };
      const bystanderBefore = await restartedAt("bystander");

      const webOld = await startWeb(
        webEnv(valkey, issuer, { EVENT_SIGNING_KEY: oldKey.privatePem }),
      );
      programs.push(webOld.program);
      const stranger = await startWeb(
        webEnv(valkey, issuer, { EVENT_SIGNING_KEY: strangerKey.privatePem }),
      );
      programs.push(stranger.program);
      const workerEnv = {
        ...sharedEnv(valkey),
        WATCH_NAMESPACES: ns,
        CLUSTER_NAME: "signing",
        RESTART_DEDUP_WINDOW: "0s",
        ROLLOUT_TIMEOUT: "0s",
        CATCH_UP_WINDOW: `${MAX_AGE_MS}ms`,
      };
      let worker = await startWorker(
        { ...workerEnv, EVENT_VERIFY_KEYS: oldKey.publicPem },
        kubeconfig,
      );
      programs.push(worker.program);

      await t.step(
        "web's signed event restarts the target; the key never reaches a log",
        async () => {
          const before = await restartedAt("target");
          const accepted = await post(webOld.url, issuer, "ghcr.io/acme/app:dev");
          const summary = await handled(worker.program, accepted.id);
          assertEquals(summary.restarted, [`${ns}/target`]);
          const after = await restartedAt("target");
          assertEquals(after.generation, before.generation + 1);
          const secretLine = oldKey.privatePem.split("\n")[1];
          for (const program of [webOld.program, worker.program]) {
            const text = JSON.stringify(program.logs) + program.stderr();
            assert(!text.includes(secretLine.slice(0, 20)), "the private key is in the output");
          }
          const start = webOld.program.logs.find((l) => l.msg === "starting")!;
          assertEquals((start.config as any).EVENT_SIGNING_KEY, "(set)");
          const signing = webOld.program.logs.find((l) => l.msg === "signing events")!;
          const verifying = worker.program.logs.find((l) =>
            l.msg === "verifying event signatures"
          )!;
          assertEquals(verifying.key_ids, [signing.key_id]);
          // What crossed the channel is the signed envelope, not the bare event.
          const [published] = await recorder.waitFor(1);
          assertEquals(Object.keys(JSON.parse(published)).sort(), ["event", "kid", "rep", "sig"]);
        },
      );

      const [captured] = recorder.messages;
      const envelope = JSON.parse(captured);
      const capturedEvent = JSON.parse(envelope.event);
      const freshEvent = () =>
        JSON.stringify({
          id: crypto.randomUUID(),
          time: new Date().toISOString(),
          image: "ghcr.io/acme/app",
          tags: ["dev"],
        });

      await t.step(
        "forged and replayed messages are dropped with their reason and restart nothing",
        async () => {
          const before = await restartedAt("target");
          const liftedId = crypto.randomUUID();
          const forgeries: [string, string][] = [
            ["replayed", captured],
            ["unsigned", freshEvent()],
            [
              // The signature of the captured body on a body of the attacker's.
              "bad_signature",
              JSON.stringify({
                ...envelope,
                event: JSON.stringify({ ...capturedEvent, id: liftedId }),
              }),
            ],
          ];
          for (const [, message] of forgeries) {
            await appendEvent(valkey, message);
          }
          // A web replica with a key the worker does not hold publishes through the real path.
          const foreign = await post(stranger.url, issuer, "ghcr.io/acme/app:dev");
          forgeries.push(["unknown_key", foreign.id]);
          for (const [i, [reason]] of forgeries.entries()) {
            const line = await nthDrop(worker.program, i + 1);
            assertEquals(line.reason, reason);
            assert(!JSON.stringify(line).includes(envelope.sig), "the log line quotes the message");
          }
          // Past the window the same message restarts nothing, whatever Valkey says about its id,
          // and the report the cluster wrote when it handled it stands.
          await new Promise((r) => setTimeout(r, MAX_AGE_MS + 500));
          await appendEvent(valkey, captured);
          await worker.program.waitForLog((l) =>
            l.msg === "an expired event this cluster handled before: its report stands" &&
            l.event_id === capturedEvent.id
          );
          assertEquals(await restartedAt("target"), before, "a forgery restarted the target");
          assertEquals(await statusOf(webOld.url, issuer, liftedId), 404);
          await stranger.program.stop();
          assertEquals(
            await admin.call("EXISTS", statusKey(liftedId)),
            0,
            "no report for a forgery",
          );
          const metrics = await (await fetch(`${worker.healthUrl}/metrics`)).text();
          for (
            const reason of ["unknown_key", "unsigned", "bad_signature", "replayed"]
          ) {
            assertMatch(
              metrics,
              new RegExp(
                `kuberollouttrigger_worker_dropped_messages_total\\{reason="${reason}"\\} 1\\n`,
              ),
            );
          }
          assertMatch(metrics, /dropped_messages_total\{reason="future"\} 0\n/);

          // The next event through web restarts exactly the target.
          const next = await post(webOld.url, issuer, "ghcr.io/acme/app:dev");
          assertEquals((await handled(worker.program, next.id)).restarted, [`${ns}/target`]);
          assertEquals((await restartedAt("target")).generation, before.generation + 1);
          assertEquals(await restartedAt("bystander"), bystanderBefore);
        },
      );

      await t.step(
        "a status binding answers only while web's signature over it verifies",
        async () => {
          const accepted = await post(webOld.url, issuer, "ghcr.io/acme/unused:1");
          await handled(worker.program, accepted.id);
          assertEquals(await statusOf(webOld.url, issuer, accepted.id), 200);
          const key = statusKey(accepted.id);
          const binding = JSON.parse(String(await admin.call("HGET", key, BINDING_FIELD)));
          assertMatch(binding.sig, /^[A-Za-z0-9_-]{86}$/);
          await admin.call(
            "HSET",
            key,
            BINDING_FIELD,
            JSON.stringify({ ...binding, tags: ["prod"] }),
          );
          assertEquals(await statusOf(webOld.url, issuer, accepted.id), 404, "altered binding");
          const { kid: _kid, sig: _sig, ...unsigned } = binding;
          await admin.call("HSET", key, BINDING_FIELD, JSON.stringify(unsigned));
          assertEquals(await statusOf(webOld.url, issuer, accepted.id), 404, "unsigned binding");
          await admin.call("HSET", key, BINDING_FIELD, JSON.stringify(binding));
          assertEquals(await statusOf(webOld.url, issuer, accepted.id), 200, "restored binding");
        },
      );

      const webNew = await startWeb(webEnv(valkey, issuer, {
        EVENT_SIGNING_KEY: newKey.privatePem,
        // Mid-rotation: records the old web replica bound stay readable here.
        EVENT_VERIFY_KEYS: oldKey.publicPem,
      }));
      programs.push(webNew.program);

      await t.step(
        "rotation: a worker with both keys restarts for events signed by either",
        async () => {
          await worker.program.stop();
          worker = await startWorker(
            { ...workerEnv, EVENT_VERIFY_KEYS: oldKey.publicPem + newKey.publicPem },
            kubeconfig,
          );
          programs.push(worker.program);
          for (const web of [webOld, webNew]) {
            const before = await restartedAt("target");
            const accepted = await post(web.url, issuer, "ghcr.io/acme/app:dev");
            assertEquals((await handled(worker.program, accepted.id)).restarted, [`${ns}/target`]);
            assertEquals((await restartedAt("target")).generation, before.generation + 1);
            assertEquals(await statusOf(webNew.url, issuer, accepted.id), 200);
          }
        },
      );

      await t.step(
        "rotation: with only the new key the old key's events restart nothing",
        async () => {
          await worker.program.stop();
          worker = await startWorker(
            { ...workerEnv, EVENT_VERIFY_KEYS: newKey.publicJwk },
            kubeconfig,
          );
          programs.push(worker.program);
          const before = await restartedAt("target");
          const refused = await post(webOld.url, issuer, "ghcr.io/acme/app:dev");
          const line = await nthDrop(worker.program, 1);
          assertEquals(line.reason, "unknown_key");
          assertEquals(await restartedAt("target"), before);
          assert(
            !worker.program.logs.some((l) =>
              l.event_id === refused.id && l.msg === "event handled"
            ),
          );
          const accepted = await post(webNew.url, issuer, "ghcr.io/acme/app:dev");
          assertEquals((await handled(worker.program, accepted.id)).restarted, [`${ns}/target`]);
          assertEquals((await restartedAt("target")).generation, before.generation + 1);
          assertEquals(await restartedAt("bystander"), bystanderBefore);
        },
      );
    } finally {
      for (const program of programs) await program.stop();
      admin.disconnect();
      await recorder.close();
      await valkey.stop();
      await issuer.stop();
      await cluster.cleanup();
    }
  },
});

Deno.test({
  name:
    "a worker without verify keys or a report key warns once for each at startup and handles unsigned and signed messages",
  ...options,
  async fn() {
    const cluster = openCluster(info!);
    const valkey = await startValkey();
    const key = await generateKeyPair();
    let worker: Program | undefined;
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-unsigned");
      await cluster.createDeployment(
        deploymentManifest(ns, "target", [{ image: "ghcr.io/acme/app:dev" }]),
      );
      const started = await startWorker({
        ...sharedEnv(valkey),
        WATCH_NAMESPACES: ns,
        RESTART_DEDUP_WINDOW: "0s",
        ROLLOUT_TIMEOUT: "0s",
      }, kubeconfig);
      worker = started.program;
      const warnings = worker.logs.filter((l) => l.msg.startsWith("EVENT_VERIFY_KEYS is not set"));
      assertEquals(warnings.map((l) => l.level), ["warn"]);
      // Unsigned reports are as loud: web with report keys ignores them, without them anyone forges them.
      const reports = worker.logs.filter((l) => l.msg.startsWith("REPORT_SIGNING_KEY is not set"));
      assertEquals(reports.map((l) => l.level), ["warn"]);
      const unsigned = JSON.stringify({
        id: crypto.randomUUID(),
        time: new Date().toISOString(),
        image: "ghcr.io/acme/app",
        tags: ["dev"],
      });
      await appendEvent(valkey, unsigned);
      assertEquals((await handled(worker, JSON.parse(unsigned).id)).restarted, [`${ns}/target`]);
      // A signed message from a key this worker does not know is still handled: it checks nothing.
      const signer = await createSigner(parseSigningKey(key.privatePem)!);
      const id = crypto.randomUUID();
      await appendEvent(
        valkey,
        (await signer.signEvent(
          JSON.stringify({
            id,
            time: new Date().toISOString(),
            image: "ghcr.io/acme/app",
            tags: ["dev"],
          }),
          "a".repeat(64),
        )).message,
      );
      assertEquals((await handled(worker, id)).restarted, [`${ns}/target`]);
    } finally {
      await worker?.stop();
      await valkey.stop();
      await cluster.cleanup();
    }
  },
});
