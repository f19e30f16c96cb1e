/**
 * Both modes, as the real program, against a TLS-only redis-server with a
 * throwaway private CA: connected with verification on by IP address (IP SAN)
 * and by host name, with a client certificate; each TLS mistake at runtime is
 * one clear line, readiness false and 503, and both recover once the server is
 * fixed; a bad TLS setting stops the program at startup with one line. No key
 * material reaches the output. Loopback only; every wait is bounded.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { eventually } from "../helpers/eventually.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, ROOT, startProgram, startWeb } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import {
  generateValkeyCertificates,
  type ServerTls,
  startValkey,
  type ValkeyCertificates,
} from "../helpers/valkey.ts";

const CHANNEL = "krt-tls";
const LOCAL_INVENTORY = `${ROOT}k8s/dev/local-inventory.yaml`;
const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };

function webEnv(issuer: TestIssuer, extra: Record<string, string>) {
  return {
    VALKEY_CHANNEL: CHANNEL,
    VALKEY_TLS_ENABLED: "true",
    VALKEY_TIMEOUT: "1s",
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_OIDC_ISSUER: issuer.url,
    GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
    GITHUB_ALLOWED_ORG: "acme",
    ...extra,
  };
}

/** A worker on the local inventory (no cluster needed), optionally allowed to read more files. */
function startTlsWorker(extra: Record<string, string>, readable: string[] = []): Program {
  return startProgram({
    args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
    env: {
      VALKEY_CHANNEL: CHANNEL,
      VALKEY_TLS_ENABLED: "true",
      VALKEY_TIMEOUT: "1s",
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      LOCAL_INVENTORY,
      ...extra,
    },
    permissions: ["-P=worker", `--allow-read=${[LOCAL_INVENTORY, ...readable].join(",")}`],
  });
}

async function healthUrl(program: Program): Promise<string> {
  const line = await program.waitForLog((l) => l.msg === "worker health server listening", 20_000);
  return `http://${line.addr}`;
}

async function post(
  url: string,
  issuer: TestIssuer,
): Promise<{ status: number; body: { id?: string; subscribers?: number } }> {
  const res = await fetch(`${url}/event`, {
    method: "POST",
    headers: { authorization: `Bearer ${await issuer.sign()}`, "content-type": "application/json" },
    body: '{"image":"ghcr.io/acme/app:dev"}',
  });
  return { status: res.status, body: await res.json() };
}

async function readyStatus(url: string): Promise<number> {
  const res = await fetch(`${url}/readyz`);
  await res.body?.cancel();
  return res.status;
}

function output(program: Program): string {
  return JSON.stringify(program.logs) + program.stderr();
}

/** The key's base64 body, which must never be printed. */
function keyBody(certs: ValkeyCertificates): string {
  return certs.client.keyPem.split("\n").filter((l) => l && !l.startsWith("-----")).join("");
}

Deno.test({
  ...options,
  name:
    "web and worker reach a TLS Valkey with a private CA and a client certificate, by IP address and by host name, and print no key",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "krt-tls-e2e-" });
    const certs = await generateValkeyCertificates(dir);
    const valkey = await startValkey([], { tls: { ...certs.server, authClients: true } });
    const issuer = await startIssuer();
    const programs: Program[] = [];
    const client = {
      VALKEY_TLS_CLIENT_CERT: certs.client.certPem,
      VALKEY_TLS_CLIENT_KEY: certs.client.keyPem,
    };
    const byIp = `127.0.0.1:${valkey.port}`;
    const byName = `localhost:${valkey.port}`;
    try {
      // The worker by IP takes the CA as a file it was allowed to read; the one by name as a
      // value. Two clusters, so each handles every event (replicas of one would share it).
      const workers = [
        startTlsWorker({
          CLUSTER_NAME: "by-ip",
          VALKEY_ADDR: byIp,
          VALKEY_TLS_CA_FILE: certs.ca.cert,
          ...client,
        }, [
          certs.ca.cert,
        ]),
        startTlsWorker({
          CLUSTER_NAME: "by-name",
          VALKEY_ADDR: byName,
          VALKEY_TLS_CA_CERT: certs.ca.pem,
          ...client,
        }),
      ];
      programs.push(...workers);
      const webs = await Promise.all(
        [byIp, byName].map((addr) =>
          startWeb(
            webEnv(issuer, { VALKEY_ADDR: addr, VALKEY_TLS_CA_CERT: certs.ca.pem, ...client }),
          )
        ),
      );
      programs.push(...webs.map((w) => w.program));
      for (const worker of workers) {
        await worker.waitForLog((l) => l.msg === "reading the event stream", 20_000);
        // Ready: its cluster is registered, so web sends it the events below.
        const url = await healthUrl(worker);
        await eventually("worker ready", async () => await readyStatus(url) === 200 || undefined);
      }
      for (const web of webs) {
        await eventually("web ready", async () => await readyStatus(web.url) === 200 || undefined);
        const { status, body } = await post(web.url, issuer);
        assertEquals(status, 202, JSON.stringify(body));
        assertEquals((body as { clusters?: string[] }).clusters, ["by-ip", "by-name"]);
        for (const worker of workers) {
          await worker.waitForLog((l) => l.msg === "event handled" && l.event_id === body.id);
        }
      }
      const secret = keyBody(certs);
      for (const p of programs) assert(!output(p).includes(secret), "the client key was printed");
      const summary = webs[0].program.logs.find((l) => l.msg === "starting")?.config as Record<
        string,
        string
      >;
      assertEquals(summary.VALKEY_TLS_CLIENT_KEY, "(set)");
      assertEquals(summary.VALKEY_TLS_CA_CERT, "(set)");
    } finally {
      for (const p of programs) await p.stop();
      await issuer.stop();
      await valkey.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...options,
  name:
    "a wrong name, an untrusted CA, an expired certificate and a plaintext server: one line each, readiness false and 503, recovery when fixed",
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "krt-tls-e2e-" });
    const certs = await generateValkeyCertificates(dir);
    const valkey = await startValkey([], { tls: certs.wrongName });
    const issuer = await startIssuer();
    const programs: Program[] = [];
    try {
      const settings = { VALKEY_ADDR: valkey.addr, VALKEY_TLS_CA_CERT: certs.ca.pem };
      const worker = startTlsWorker(settings);
      programs.push(worker);
      const web = await startWeb(webEnv(issuer, settings));
      programs.push(web.program);
      const workerUrl = await healthUrl(worker);
      const cases: [string, ServerTls | undefined, RegExp][] = [
        ["a certificate for other names", certs.wrongName, /does not name the host connected to/],
        ["a certificate from an untrusted CA", certs.untrusted, /not signed by a trusted CA/],
        ["an expired certificate", certs.expired, /has expired; renew/],
        ["a server without TLS", undefined, /the server may not speak TLS on that port/],
      ];
      for (const [name, tls, expected] of cases) {
        await t.step(name, async () => {
          // The first server is the one both started against: its line may already be logged.
          const first = tls === certs.wrongName;
          const from = first
            ? { web: 0, worker: 0 }
            : { web: web.program.logs.length, worker: worker.logs.length };
          if (!first) await valkey.restartWithTls(tls);
          const errorLines = (p: Program, start: number) =>
            p.logs.slice(start).filter((l) =>
              l.msg === "valkey connection error" && expected.test(String(l.error))
            );
          for (const [p, start] of [[web.program, from.web], [worker, from.worker]] as const) {
            await eventually(
              `${name}: the error line`,
              () => errorLines(p, start).length > 0 || undefined,
              20_000,
            );
          }
          assertEquals(await readyStatus(web.url), 503);
          assertEquals(await readyStatus(workerUrl), 503);
          assertEquals((await post(web.url, issuer)).status, 503);
          // Said once per connection, not once per retry.
          await new Promise((r) => setTimeout(r, 1500));
          for (const [p, start] of [[web.program, from.web], [worker, from.worker]] as const) {
            const perConnection = new Map<string, number>();
            for (const l of errorLines(p, start)) {
              perConnection.set(
                String(l.connection),
                (perConnection.get(String(l.connection)) ?? 0) + 1,
              );
            }
            assert(
              [...perConnection.values()].every((n) => n === 1),
              JSON.stringify([...perConnection]),
            );
          }
        });
      }
      await t.step("the right certificate: both recover without a restart", async () => {
        await valkey.restartWithTls(certs.server);
        await worker.waitForLog((l) => l.msg === "reading the event stream", 20_000);
        await eventually(
          "web ready",
          async () => await readyStatus(web.url) === 200 || undefined,
          20_000,
        );
        // Ready once it registered the cluster again (the restarted Valkey holds nothing).
        await eventually(
          "worker ready",
          async () => await readyStatus(workerUrl) === 200 || undefined,
          20_000,
        );
        const { status, body } = await post(web.url, issuer);
        assertEquals(status, 202);
        await worker.waitForLog((l) => l.msg === "event handled" && l.event_id === body.id);
      });
    } finally {
      for (const p of programs) await p.stop();
      await issuer.stop();
      await valkey.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...options,
  name:
    "a bad TLS setting stops the program at startup with one line: a PEM value (exit 2) or a CA file the worker may not read (exit 1)",
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "krt-tls-e2e-" });
    const certs = await generateValkeyCertificates(dir);
    const issuer = await startIssuer();
    try {
      await t.step("web: a path given as VALKEY_TLS_CA_CERT, a cut-off key", async () => {
        const program = startProgram({
          args: ["web"],
          env: webEnv(issuer, {
            VALKEY_ADDR: "127.0.0.1:1",
            VALKEY_TLS_CA_CERT: certs.ca.cert,
            VALKEY_TLS_CLIENT_CERT: certs.client.certPem,
            VALKEY_TLS_CLIENT_KEY: certs.client.keyPem.slice(0, 100),
          }),
        });
        assertEquals((await program.status).code, 2);
        const line = program.stderr().split("\n").find((l) => l.includes("invalid configuration"));
        assertMatch(
          String(line),
          /VALKEY_TLS_CA_CERT \(--valkey-tls-ca-cert\): is not PEM: it must start with a -----BEGIN/,
        );
        assertMatch(String(line), /VALKEY_TLS_CLIENT_KEY \(--valkey-tls-client-key\): is not PEM/);
        assert(!program.stderr().includes(keyBody(certs).slice(0, 40)), "the key was printed");
        assert(!program.stderr().includes(certs.ca.cert), "the value was quoted");
      });
      await t.step("worker: a CA file outside what it may read", async () => {
        const program = startTlsWorker({
          VALKEY_ADDR: "127.0.0.1:1",
          VALKEY_TLS_CA_FILE: certs.ca.cert,
        });
        assertEquals((await program.status).code, 1);
        const line = program.logs.find((l) => l.msg === "cannot start");
        assertEquals(line?.code, "ERR_CONFIG");
        assertMatch(
          String(line?.error),
          /^VALKEY_TLS_CA_FILE \S+ca\.crt cannot be read \(NotCapable\); the worker may read only under \/etc\/kuberollouttrigger/,
        );
      });
    } finally {
      await issuer.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
