/**
 * Starts real Valkey-compatible servers (valkey-server, else redis-server) on
 * free loopback ports for one test, with persistence off, and stops them:
 * plain or TLS (with throwaway certificates made here), a replica, and a
 * Sentinel group. Also a subscriber that records every message on a channel,
 * and connected command clients for tests' own reads and writes, all on the
 * product's own client (shared/valkey_client.ts).
 */

import { createLogger } from "../../lib/log.ts";
import type { HostPort } from "../../lib/setting_values.ts";
import { createValkeyClient, type ValkeyClient } from "../../shared/valkey_client.ts";
import type { ValkeySettings } from "../../shared/valkey_settings.ts";
import { EVENTS_STREAM, MESSAGE_FIELD } from "../../shared/event_stream.ts";
import { CLUSTERS_KEY } from "../../shared/event_status.ts";
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

/** What connectValkey takes besides the address. */
export interface ConnectOptions {
  username?: string;
  password?: string;
  /** PEM of the CA to trust: connects over TLS. */
  tlsCa?: string;
  /** Seeds of a cluster instead of one address. */
  clusterNodes?: HostPort[];
  /** Shown in CLIENT LIST (default krt-test). */
  name?: string;
  /** How long to wait for the connection (default 10 s). */
  connectTimeoutMs?: number;
}

const quiet = createLogger({ level: "error", write: () => {} });

/** The client settings for a test connection. */
export function testSettings(target: HostPort, options: ConnectOptions = {}): ValkeySettings {
  return {
    valkeyAddr: options.clusterNodes ? undefined : { host: target.host, port: target.port },
    valkeyClusterNodes: options.clusterNodes,
    valkeyUsername: options.username ?? "",
    valkeyPassword: options.password ?? "",
    valkeyTls: options.tlsCa !== undefined,
    valkeyTlsCaCert: options.tlsCa,
    valkeyTimeout: 3000,
  };
}

/** Resolves once `client` is connected; disconnects it and throws after `timeoutMs`. */
async function connected(client: ValkeyClient, timeoutMs = 10_000): Promise<ValkeyClient> {
  try {
    await eventually("the test's Valkey connection", () => client.connected, timeoutMs, 10);
    return client;
  } catch (err) {
    client.disconnect();
    throw err;
  }
}

/** A connected command client for the test's own reads and writes; disconnect() it. */
export function connectValkey(
  target: HostPort,
  options: ConnectOptions = {},
): Promise<ValkeyClient> {
  return connected(
    createValkeyClient(testSettings(target, options), {
      name: options.name ?? "krt-test",
      logger: quiet,
    }),
    options.connectTimeoutMs,
  );
}

/** Runs one command on a fresh connection and closes it. */
export async function valkeyCall(
  target: HostPort,
  command: string,
  ...args: (string | number)[]
): Promise<unknown> {
  const client = await connectValkey(target);
  try {
    return await client.call(command, ...args);
  } finally {
    client.disconnect();
  }
}

/** A HGETALL reply as an object. */
export function fieldsOf(reply: unknown): Record<string, string> {
  const fields: Record<string, string> = {};
  if (!Array.isArray(reply)) return fields;
  for (let i = 0; i + 1 < reply.length; i += 2) fields[String(reply[i])] = String(reply[i + 1]);
  return fields;
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
  const tlsCa = tls ? await Deno.readTextFile(tls.ca) : undefined;
  const ask = async (port: number, ...command: string[]) => {
    const client = await connectValkey({ host: "127.0.0.1", port }, { tlsCa });
    try {
      return await client.call(command[0], ...command.slice(1));
    } finally {
      client.disconnect();
    }
  };
  try {
    await eventually("the replica in sync", async () => {
      const info = String(await ask(replica.port, "INFO", "replication"));
      return /master_link_status:up/.test(info) || undefined;
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
          const replicas = await ask(port, "SENTINEL", "REPLICAS", master) as unknown[];
          const peers = await ask(port, "SENTINEL", "SENTINELS", master) as unknown[];
          if (replicas.length < 1 || peers.length < 2) return undefined;
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
        try {
          const reply = await ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master);
          if (Array.isArray(reply)) return `${reply[0]}:${reply[1]}`;
        } catch {
          // this Sentinel does not answer; ask the next
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
  server: HostPort,
  channel: string,
  options: ConnectOptions & { sharded?: boolean } = {},
): Promise<RecordingSubscriber> {
  const messages: string[] = [];
  const name = `krt-test-subscriber-${crypto.randomUUID().slice(0, 8)}`;
  const client = await connected(
    createValkeyClient(testSettings(server, options), {
      name,
      logger: quiet,
      subscription: {
        channels: [channel],
        sharded: options.sharded,
        onMessage: (_channel, message) => messages.push(message),
      },
    }),
  );
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
      // The subscription counts until the server has seen the socket close.
      client.disconnect();
      if (options.clusterNodes) return;
      await eventually(
        "the subscriber gone from CLIENT LIST",
        async () => {
          // A server that is gone holds no subscription either.
          const admin = await connectValkey(server, { connectTimeoutMs: 1000 }).catch(() => {});
          if (!admin) return true;
          try {
            return !String(await admin.call("CLIENT", "LIST")).includes(`name=${name} `);
          } finally {
            admin.disconnect();
          }
        },
        5000,
        20,
      );
    },
  };
}

/**
 * Registers a worker cluster as a worker does (its score in the clusters set),
 * so web has a known cluster to accept events for; nothing reads them.
 */
export async function registerCluster(
  server: HostPort,
  name = "test-cluster",
  options: ConnectOptions = {},
): Promise<void> {
  const client = await connectValkey(server, options);
  try {
    await client.call("ZADD", CLUSTERS_KEY, Date.now(), name);
  } finally {
    client.disconnect();
  }
}

/**
 * Appends a raw message to the event stream as web does (without web's status
 * record or channel publish): what every worker cluster reads. Returns the
 * entry id.
 */
export async function appendEvent(server: HostPort, message: string): Promise<string> {
  return String(await valkeyCall(server, "XADD", EVENTS_STREAM, "*", MESSAGE_FIELD, message));
}
