/**
 * Who may restart what, end to end (issue 29): the real web and worker, a
 * real Valkey-compatible server, a loopback OIDC issuer and the real
 * kube-apiserver. Web's REPOSITORY_RULES give repository A its images and B
 * its own; each Deployment's allowed-repositories annotation is the cluster
 * owner's say, checked against the sender web signed into the event;
 * REQUIRE_OPT_IN skips unannotated Deployments; DEPLOYMENT_SELECTOR keeps
 * unlabelled ones out of the inventory. A message whose sender was swapped,
 * or that carries no signature, cannot speak for another repository.
 */

// Assertions index into API objects and status answers.
// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals } from "../helpers/assert.ts";
import { type Cluster, deploymentManifest, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startProgram, startWeb, startWorker } from "../helpers/program.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { fieldsOf, startValkey, type TestValkey, valkeyCall } from "../helpers/valkey.ts";
import { EVENTS_STREAM, MESSAGE_FIELD, SENDER_FIELD } from "../../shared/event_stream.ts";
import { encodeSender } from "../../shared/event_sender.ts";

const CHANNEL = "krt-rules-e2e";
const info = withoutValkey() ? undefined : requireControlPlane("the repository rules test");
const options = { ignore: info === undefined, sanitizeOps: false, sanitizeResources: false };

/** The test's two repositories, as their tokens name them. */
const A = { repository: "acme/team-a", repository_id: "1001", sub: "repo:acme/team-a:ref:main" };
const B = { repository: "acme/team-b", repository_id: "1002", sub: "repo:acme/team-b:ref:main" };
const RULES = "acme/team-a -> ghcr.io/acme/a, ghcr.io/acme/shared; " +
  "id:1002 -> ghcr.io/acme/b, ghcr.io/acme/shared";
const ANNOTATION = "kuberollouttrigger/allowed-repositories";

function sharedEnv(valkey: TestValkey) {
  return {
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
  };
}

async function post(url: string, issuer: TestIssuer, who: typeof A, image: string) {
  const res = await fetch(`${url}/event`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await issuer.sign({ claims: who })}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ image }),
  });
  return { status: res.status, body: await res.text() };
}

/** The cluster's report for an event, once final, as GET /event/<id> answers it. */
async function finalReport(url: string, issuer: TestIssuer, who: typeof A, id: string) {
  const res = await fetch(`${url}/event/${id}?wait=30`, {
    headers: { authorization: `Bearer ${await issuer.sign({ claims: who })}` },
  });
  assertEquals(res.status, 200);
  const body: any = await res.json();
  const byName = Object.fromEntries(
    body.clusters[0].deployments.map((d: any) => [d.name, d.reason ?? d.result]),
  );
  return { state: body.state, byName };
}

async function generations(cluster: Cluster, ns: string, names: string[]) {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (await cluster.getDeployment(ns, n)).metadata.generation;
  return out;
}

const DEPLOYMENTS = [
  { name: "a-app", image: "ghcr.io/acme/a:dev", labels: { team: "a" } },
  { name: "b-app", image: "ghcr.io/acme/b:dev", labels: { team: "b" } },
  {
    name: "shared-for-a",
    image: "ghcr.io/acme/shared:dev",
    a: "acme/team-a",
    labels: { team: "a" },
  },
  { name: "shared-for-b", image: "ghcr.io/acme/shared:dev", a: "id:1002", labels: { team: "b" } },
  { name: "shared-open", image: "ghcr.io/acme/shared:dev" },
];

Deno.test({
  name:
    "security: repository A restarts its Deployments and not B's; annotations, mandatory opt-in and a label selector give the cluster its say",
  ...options,
  async fn(t) {
    const cluster = openCluster(info!);
    const issuer = await startIssuer();
    const valkey = await startValkey();
    const key = await generateKeyPair();
    const programs: Program[] = [];
    const names = DEPLOYMENTS.map((d) => d.name);
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-rules");
      for (const d of DEPLOYMENTS) {
        await cluster.createDeployment(
          deploymentManifest(ns, d.name, [{ image: d.image }], {
            annotations: d.a ? { [ANNOTATION]: d.a } : undefined,
            labels: d.labels,
          }),
        );
      }
      const web = await startWeb({
        ...sharedEnv(valkey),
        GITHUB_OIDC_ISSUER: issuer.url,
        GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
        GITHUB_ALLOWED_ORG: "acme",
        EVENT_SIGNING_KEY: key.privatePem,
        REPOSITORY_RULES: RULES,
      });
      programs.push(web.program);
      const workerEnv = {
        ...sharedEnv(valkey),
        WATCH_NAMESPACES: ns,
        CLUSTER_NAME: "rules",
        RESTART_DEDUP_WINDOW: "0s",
        ROLLOUT_TIMEOUT: "0s",
        EVENT_VERIFY_KEYS: key.publicPem,
      };
      let worker = await startWorker(workerEnv, kubeconfig);
      programs.push(worker.program);
      const restartWorker = async (extra: Record<string, string>) => {
        await worker.program.stop();
        worker = await startWorker({ ...workerEnv, ...extra }, kubeconfig);
        programs.push(worker.program);
      };

      await t.step("web: A may name its image, not B's (the same 403 as any denial)", async () => {
        const before = await generations(cluster, ns, names);
        const own = await post(web.url, issuer, A, "ghcr.io/acme/a:dev");
        assertEquals(own.status, 202);
        const report = await finalReport(web.url, issuer, A, JSON.parse(own.body).id);
        assertEquals(report.byName, { "a-app": "restarted" });
        const other = await post(web.url, issuer, A, "ghcr.io/acme/b:dev");
        const evil = { ...A, repository_owner: "evil", repository: "evil/team-a" };
        const stranger = await post(web.url, issuer, evil, "ghcr.io/acme/a:dev");
        assertEquals([other.status, other.body], [403, stranger.body]);
        assertEquals(stranger.status, 403);
        const denial = web.program.logs.find((l) => l.reason === "image_not_granted");
        assert(String(denial?.detail).includes("ghcr.io/acme/b"), "the log says what was refused");
        const after = await generations(cluster, ns, names);
        assertEquals(after["b-app"], before["b-app"], "B's Deployment untouched");
        assertEquals(after["a-app"], before["a-app"] + 1);
      });

      await t.step(
        "worker: A's shared image skips B's annotated Deployment as not_allowed",
        async () => {
          const sent = await post(web.url, issuer, A, "ghcr.io/acme/shared:dev");
          assertEquals(sent.status, 202);
          const report = await finalReport(web.url, issuer, A, JSON.parse(sent.body).id);
          assertEquals(report.byName, {
            "shared-for-a": "restarted",
            "shared-for-b": "not_allowed",
            "shared-open": "restarted",
          });
          const bSent = await post(web.url, issuer, B, "ghcr.io/acme/shared:dev");
          const bReport = await finalReport(web.url, issuer, B, JSON.parse(bSent.body).id);
          assertEquals(bReport.byName, {
            "shared-for-a": "not_allowed",
            "shared-for-b": "restarted",
            "shared-open": "restarted",
          });
        },
      );

      await t.step("a sender swapped into A's signed stream entry is dropped", async () => {
        const before = await generations(cluster, ns, names);
        const entries = await valkeyCall(valkey, "XRANGE", EVENTS_STREAM, "-", "+") as any[];
        const fields = entries.map(([, f]: [string, string[]]) => fieldsOf(f))
          .find((f) => f[SENDER_FIELD]?.includes("team-a"));
        assert(fields, "web's stream entry carries its sender beside the message");
        const field = JSON.parse(fields[SENDER_FIELD]);
        const forged = JSON.stringify({
          ...field,
          sender: encodeSender({
            repository: "acme/team-b",
            repositoryId: "1002",
            ref: "refs/heads/main",
            workflowRef: "acme/team-b/.github/workflows/build.yml@refs/heads/main",
          }),
        });
        await valkeyCall(
          valkey,
          "XADD",
          EVENTS_STREAM,
          "*",
          MESSAGE_FIELD,
          fields[MESSAGE_FIELD],
          SENDER_FIELD,
          forged,
        );
        const drop = await worker.program.waitForLog(
          (l) => l.msg === "dropped a message that failed authentication",
          15_000,
        );
        assertEquals(drop.detail, "sender signature does not verify");
        assertEquals(await generations(cluster, ns, names), before);
      });

      await t.step("with REQUIRE_OPT_IN the unannotated Deployment is skipped", async () => {
        await restartWorker({ REQUIRE_OPT_IN: "true" });
        const sent = await post(web.url, issuer, A, "ghcr.io/acme/shared:dev");
        const report = await finalReport(web.url, issuer, A, JSON.parse(sent.body).id);
        assertEquals(report.byName, {
          "shared-for-a": "restarted",
          "shared-for-b": "not_allowed",
          "shared-open": "not_opted_in",
        });
      });

      await t.step("with DEPLOYMENT_SELECTOR the others are not even listed", async () => {
        await restartWorker({ DEPLOYMENT_SELECTOR: "team=a" });
        const synced = await worker.program.waitForLog((l) => l.msg === "inventory synced");
        console.error(
          `label selector: ${synced.deployments} of ${DEPLOYMENTS.length} Deployments listed`,
        );
        assertEquals(synced.deployments, 2);
        const sent = await post(web.url, issuer, A, "ghcr.io/acme/shared:dev");
        const report = await finalReport(web.url, issuer, A, JSON.parse(sent.body).id);
        assertEquals(report.byName, { "shared-for-a": "restarted" });
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
  name:
    "security: without signatures no event speaks for a repository: annotated Deployments are skipped, REQUIRE_OPT_IN refuses to start",
  ...options,
  async fn() {
    const cluster = openCluster(info!);
    const issuer = await startIssuer();
    const valkey = await startValkey();
    const programs: Program[] = [];
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-rules-unsigned");
      for (const d of DEPLOYMENTS.slice(2)) {
        await cluster.createDeployment(
          deploymentManifest(ns, d.name, [{ image: d.image }], {
            annotations: d.a ? { [ANNOTATION]: d.a } : undefined,
          }),
        );
      }
      const web = await startWeb({
        ...sharedEnv(valkey),
        GITHUB_OIDC_ISSUER: issuer.url,
        GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
        GITHUB_ALLOWED_ORG: "acme",
      });
      programs.push(web.program);
      const workerEnv = {
        ...sharedEnv(valkey),
        WATCH_NAMESPACES: ns,
        CLUSTER_NAME: "unsigned",
        RESTART_DEDUP_WINDOW: "0s",
        ROLLOUT_TIMEOUT: "0s",
      };
      const refused = startProgram({
        args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
        env: { KUBECONFIG: kubeconfig, ...workerEnv, REQUIRE_OPT_IN: "true" },
        permissions: ["-P=worker", `--allow-read=${kubeconfig}`],
      });
      programs.push(refused);
      assertEquals((await refused.status).code, 2);
      assert(
        refused.stderr().includes("REQUIRE_OPT_IN (--require-opt-in) needs EVENT_VERIFY_KEYS"),
      );
      const worker = await startWorker(workerEnv, kubeconfig);
      programs.push(worker.program);
      const sent = await post(web.url, issuer, A, "ghcr.io/acme/shared:dev");
      assertEquals(sent.status, 202);
      const report = await finalReport(web.url, issuer, A, JSON.parse(sent.body).id);
      assertEquals(report.byName, {
        "shared-for-a": "not_allowed",
        "shared-for-b": "not_allowed",
        "shared-open": "restarted",
      });
    } finally {
      for (const p of programs) await p.stop();
      await valkey.stop();
      await issuer.stop();
      await cluster.cleanup();
    }
  },
});
