/**
 * Starts real Valkey-compatible servers (valkey-server, else redis-server) on
 * free loopback ports for one test, with persistence off, and stops them:
 * plain or TLS (with throwaway certificates made here), a replica, and a
 * Sentinel group. Also a subscriber that records every message on a channel.
 */

import { Valkey } from "iovalkey";
import { openssl } from "./certificates.ts";
import { eventually } from "./eventually.ts";
import { freePort } from "./processes.ts";
import {
  findValkeyBinary as findBinary,
  requireBinary,
  type ServerTls,
  startValkey as startServer,
  type TestValkey,
  waitForPort,
} from "../../tools/valkey_server.ts";
import { assertServersAllowed, NO_SERVERS } from "./skip.ts";

// Re-exported: tests import the one freePort() from here or from ./processes.ts.
export { freePort };
export { type ServerTls, type TestValkey } from "../../tools/valkey_server.ts";

/** The server binary found on PATH; none in the in-process tier. */
export function findValkeyBinary(): string | undefined {
  return NO_SERVERS ? undefined : findBinary();
}

/** tools/valkey_server.ts's startValkey, refused in the in-process tier. */
export function startValkey(
  ...args: Parameters<typeof startServer>
): ReturnType<typeof startServer> {
  assertServersAllowed("a Valkey server");
  return startServer(...args);
}

/** Certificates for TLS tests, as files (paths) and PEM text. */
export interface ValkeyCertificates {
  /** The private CA clients are told to trust. */
  ca: { cert: string; pem: string };
  /** Another CA nobody trusts. */
  otherCa: { cert: string; pem: string };
  /** For IP:127.0.0.1 and DNS:localhost, signed by `ca`: the good one. */
  server: ServerTls;
  /** Signed by `ca` for other.example and 127.0.0.2 only. */
  wrongName: ServerTls;
  /** Signed by `ca` for the right names, but past its notAfter. */
  expired: ServerTls;
  /** For the right names, signed by `otherCa`. */
  untrusted: ServerTls;
  /** A client certificate signed by `ca`, as PEM text (the key is a secret). */
  client: { certPem: string; keyPem: string };
}

/** Makes a throwaway CA and the server and client certificates TLS tests need, in `dir`. */
export async function generateValkeyCertificates(dir: string): Promise<ValkeyCertificates> {
  const p = (name: string) => `${dir}/${name}`;
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const makeCa = async (name: string) => {
    await openssl([
      "req",
      "-x509",
      ...ec,
      "-days",
      "1",
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.crt`),
      "-subj",
      `/CN=kuberollouttrigger-test-${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    return { cert: p(`${name}.crt`), pem: await Deno.readTextFile(p(`${name}.crt`)) };
  };
  const ca = await makeCa("ca");
  const otherCa = await makeCa("other-ca");
  // -days -1 puts notAfter a day before notBefore: a certificate that is past its end.
  const issue = async (name: string, san: string, usage: string, signer: string, days = "1") => {
    await Deno.writeTextFile(
      p(`${name}.ext`),
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${usage}\n${san}\n`,
    );
    await openssl(["req", ...ec, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`)].concat(
      ["-subj", `/CN=${name}`],
    ));
    await openssl([
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-days",
      days,
      "-extfile",
      p(`${name}.ext`),
      "-CA",
      p(`${signer}.crt`),
      "-CAkey",
      p(`${signer}.key`),
      "-CAcreateserial",
      "-out",
      p(`${name}.crt`),
    ]);
    return { cert: p(`${name}.crt`), key: p(`${name}.key`), ca: ca.cert };
  };
  const right = "subjectAltName=IP:127.0.0.1,DNS:localhost";
  const server = await issue("server", right, "serverAuth", "ca");
  const wrongName = await issue(
    "wrong-name",
    "subjectAltName=DNS:other.example,IP:127.0.0.2",
    "serverAuth",
    "ca",
  );
  const expired = await issue("expired", right, "serverAuth", "ca", "-1");
  const untrusted = await issue("untrusted", right, "serverAuth", "other-ca");
  const client = await issue("client", "subjectAltName=DNS:worker", "clientAuth", "ca");
  return {
    ca,
    otherCa,
    server,
    wrongName,
    expired,
    untrusted,
    client: {
      certPem: await Deno.readTextFile(client.cert),
      keyPem: await Deno.readTextFile(client.key),
    },
  };
}

/** A primary, a replica and three Sentinels watching them, all on loopback. */
export interface SentinelGroup {
  master: string;
  primary: TestValkey;
  replica: TestValkey;
  /** `127.0.0.1:<port>` of each Sentinel, as VALKEY_SENTINELS takes them. */
  sentinels: string[];
  /** The primary's address as the first answering Sentinel reports it now. */
  currentPrimary(): Promise<string | undefined>;
  stop(): Promise<void>;
}

/**
 * Starts a primary, a replica of it and three Sentinels (`--sentinel`, each
 * with its own generated sentinel.conf in `dir`) with short timeouts: down
 * after 1 s, failover timeout 3 s. With `tls`, all of them speak only TLS. Resolves once the replica is in sync and
 * every Sentinel knows the replica and the two other Sentinels.
 */
export async function startSentinelGroup(
  dir: string,
  options: { master?: string; tls?: ServerTls } = {},
): Promise<SentinelGroup> {
  const binary = requireBinary();
  const { master = "krt", tls } = options;
  // With TLS every process speaks only TLS, replication and Sentinel's own connections included.
  const tlsReplication = tls ? ["--tls-replication", "yes"] : [];
  // A replica keeps the RDB of its full sync in its working directory: the test's, not the repository.
  const own = ["--dir", dir, ...tlsReplication];
  const primary = await startValkey([...own, "--dbfilename", "primary.rdb"], { tls });
  const replica = await startValkey(
    ["--replicaof", "127.0.0.1", String(primary.port), ...own, "--dbfilename", "replica.rdb"],
    { tls },
  );
  const children: Deno.ChildProcess[] = [];
  const ports = [freePort(), freePort(), freePort()];
  const clientTls = tls ? { ca: await Deno.readTextFile(tls.ca) } : undefined;
  const admin = (port: number) =>
    new Valkey({
      host: "127.0.0.1",
      port,
      tls: clientTls,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
  try {
    await eventually("the replica in sync", async () => {
      const client = admin(replica.port);
      client.on("error", () => {});
      try {
        return /master_link_status:up/.test(await client.info("replication")) || undefined;
      } finally {
        client.disconnect();
      }
    }, 10_000);
    for (const [i, port] of ports.entries()) {
      const conf = `${dir}/sentinel-${i}.conf`;
      await Deno.writeTextFile(
        conf,
        [
          ...(tls
            ? [
              "port 0",
              `tls-port ${port}`,
              `tls-cert-file ${tls.cert}`,
              `tls-key-file ${tls.key}`,
              `tls-ca-cert-file ${tls.ca}`,
              "tls-auth-clients no",
              "tls-replication yes",
            ]
            : [`port ${port}`]),
          "bind 127.0.0.1",
          `dir ${dir}`,
          `sentinel monitor ${master} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${master} 1000`,
          `sentinel failover-timeout ${master} 3000`,
          `sentinel parallel-syncs ${master} 1`,
          "",
        ].join("\n"),
      );
      children.push(
        new Deno.Command(binary, {
          args: [conf, "--sentinel"],
          stdout: "null",
          stderr: "null",
          stdin: "null",
        }).spawn(),
      );
      await waitForPort(port, 5000);
    }
    await eventually(
      "every Sentinel to know the replica and its two peers",
      async () => {
        for (const port of ports) {
          const client = admin(port);
          client.on("error", () => {});
          try {
            const replicas = await client.call("SENTINEL", "REPLICAS", master) as unknown[];
            const peers = await client.call("SENTINEL", "SENTINELS", master) as unknown[];
            if (replicas.length < 1 || peers.length < 2) return undefined;
          } finally {
            client.disconnect();
          }
        }
        return true;
      },
      20_000,
      200,
    );
  } catch (err) {
    for (const c of children) c.kill("SIGKILL");
    await primary.stop();
    await replica.stop();
    throw err;
  }
  return {
    master,
    primary,
    replica,
    sentinels: ports.map((port) => `127.0.0.1:${port}`),
    async currentPrimary() {
      for (const port of ports) {
        const client = admin(port);
        client.on("error", () => {});
        try {
          const reply = await client.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", master);
          if (Array.isArray(reply)) return `${reply[0]}:${reply[1]}`;
        } catch {
          // this Sentinel does not answer; ask the next
        } finally {
          client.disconnect();
        }
      }
      return undefined;
    },
    async stop() {
      for (const c of children) {
        try {
          c.kill("SIGKILL");
        } catch {
          // already gone
        }
        await c.status;
      }
      await primary.stop();
      await replica.stop();
    },
  };
}

/** Records every message published on `channel`. */
export interface RecordingSubscriber {
  messages: string[];
  /** Resolves when at least `count` messages have arrived (or rejects after timeoutMs). */
  waitFor(count: number, timeoutMs?: number): Promise<string[]>;
  /** Resolves once the server has confirmed the unsubscribe, so a publish after it counts no one. */
  close(): Promise<void>;
}

/** Subscribes to `channel` on the server and records what arrives. */
export async function subscribe(
  server: TestValkey,
  channel: string,
  options: { username?: string; password?: string } = {},
): Promise<RecordingSubscriber> {
  const client = new Valkey({
    host: server.host,
    port: server.port,
    ...options,
    maxRetriesPerRequest: 1,
  });
  const messages: string[] = [];
  client.on("message", (_channel: string, message: string) => messages.push(message));
  client.on("error", () => {});
  await client.subscribe(channel);
  return {
    messages,
    waitFor(count, timeoutMs = 3000) {
      return eventually(
        `${count} messages`,
        () => {
          if (messages.length >= count) return messages;
          throw new Error(`got ${messages.length}`); // named in the timeout error
        },
        timeoutMs,
        10,
      );
    },
    close: async () => {
      // disconnect() alone leaves the subscription counted until the server sees the socket close.
      await client.unsubscribe(channel).catch(() => {});
      client.disconnect();
    },
  };
}

/** Publishes one raw message on `channel` (bypassing web); resolves to the receiver count. */
export async function publishRaw(
  server: TestValkey,
  channel: string,
  message: string,
): Promise<number> {
  const client = new Valkey({ host: server.host, port: server.port, maxRetriesPerRequest: 1 });
  try {
    return await client.publish(channel, message);
  } finally {
    client.disconnect();
  }
}
