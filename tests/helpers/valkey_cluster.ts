/**
 * Starts a real Valkey/Redis Cluster on loopback for one test (by default 3
 * primaries with a replica each, 6 server processes), and lets the test kill
 * nodes, wait for failover, move a slot by hand and run admin commands.
 *
 * Admin commands go through `valkey-cli`/`redis-cli` as a subprocess, so this
 * helper does not depend on the product's Valkey client. Every wait is
 * bounded (each redis-cli run by CLI_TIMEOUT_MS, cluster creation by
 * CREATE_TIMEOUT_MS, every poll by its own timeout) and throws saying what it
 * waited for.
 *
 * API:
 * - `startValkeyCluster({ primaries = 3, replicasPerPrimary = 1, password,
 *   tls, nodeTimeoutMs = 1000 })` → `TestValkeyCluster`. With `tls`
 *   (`ClusterTls`), nodes speak only TLS, cluster bus and replication
 *   included; the cluster bus needs a clientAuth certificate (see
 *   ClusterTls); `tls.authClients` is not supported.
 * - `TestValkeyCluster`: `seeds`, `nodes()`, `ownerOf(slot)`, `kill(node)`,
 *   `waitHealthy(timeoutMs = 20000)`, `migrateSlot(slot, to, { whileMigrating,
 *   afterSomeKeys, batch })`, `cli(node, ...args)` (redis-cli options such
 *   as `-c` may come first), `stop()`.
 * - `ClusterNode` also carries `slots`, the ranges a primary serves.
 * - `keySlot(key)`: the hash slot of a key, to cross-check the product's
 *   own; `SLOTS` = 16384.
 *
 * Trusts the server binaries on PATH and the topology they report; trusts
 * nothing of the product. Keys handed to migrateSlot() must not contain
 * newlines (redis-cli prints one key per line).
 */

import { freePorts } from "../../tools/ports.ts";
import {
  requireBinary,
  type ServerTls,
  startValkey,
  type TestValkey,
} from "../../tools/valkey_server.ts";
import { generateCertificates, openssl } from "./certificates.ts";
import { eventually } from "./eventually.ts";
import { assertServersAllowed } from "./skip.ts";

/** Number of hash slots in a cluster. */
export const SLOTS = 16384;

const CLI_TIMEOUT_MS = 10_000;
const CREATE_TIMEOUT_MS = 30_000;
const HEALTHY_TIMEOUT_MS = 20_000;
const MIGRATE_TIMEOUT_MS = 5_000;

/** One node as CLUSTER NODES of a live node reports it. */
export interface ClusterNode {
  host: string;
  port: number;
  id: string;
  role: "primary" | "replica";
  /** For a replica: the id of the primary it replicates. */
  primaryId?: string;
  /** The server process's id. */
  pid: number;
  /** Slot ranges (inclusive) a primary serves; empty for a replica. */
  slots: [number, number][];
}

/** Hooks migrateSlot() awaits while a slot is half moved. */
export interface MigrateHooks {
  /** Awaited once IMPORTING/MIGRATING are set, before any key moves. */
  whileMigrating?: () => Promise<void>;
  /** Awaited after each batch of keys has moved, with that batch's keys. */
  afterSomeKeys?: (moved: string[]) => Promise<void>;
  /** Keys per GETKEYSINSLOT/MIGRATE round (default 10, as redis-cli's reshard). */
  batch?: number;
}

/** A running cluster. */
export interface TestValkeyCluster {
  /** Every node's address, as seeds for a client ("127.0.0.1:port"). */
  seeds: { host: string; port: number }[];
  /** The current topology as CLUSTER NODES of a live node says (failed and killed nodes left out). */
  nodes(): Promise<ClusterNode[]>;
  /** The live primary serving `slot` now; throws if none does (e.g. during failover). */
  ownerOf(slot: number): Promise<ClusterNode>;
  /** SIGKILLs the node's process and waits until it has exited. */
  kill(node: ClusterNode): Promise<void>;
  /** Resolves once every slot is served by a live primary and every live node agrees and says ok. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Moves one slot to `to` the way `redis-cli --cluster reshard` does. */
  migrateSlot(slot: number, to: ClusterNode, hooks?: MigrateHooks): Promise<void>;
  /** Runs a command on a node with redis-cli; resolves to its stdout (error replies included). */
  cli(node: { host: string; port: number }, ...args: string[]): Promise<string>;
  /** Kills every node and removes the temporary directory. */
  stop(): Promise<void>;
}

/**
 * TLS files of every node. Security: the cluster bus always asks the peer
 * for a certificate (tls-auth-clients only governs the client port), so the
 * nodes need one usable for clientAuth: `clientCert`/`clientKey`, else `cert`
 * must allow clientAuth as well as serverAuth.
 */
export interface ClusterTls extends ServerTls {
  clientCert?: string;
  clientKey?: string;
}

/** How startValkeyCluster() builds the cluster. */
export interface ClusterOptions {
  /** At least 3 (redis-cli refuses fewer). Default 3. */
  primaries?: number;
  /** Default 1. */
  replicasPerPrimary?: number;
  /** requirepass and masterauth of every node. */
  password?: string;
  /** Serve only TLS, cluster bus and replication included. */
  tls?: ClusterTls;
  /** cluster-node-timeout: how soon a silent node counts as failed. Default 1000. */
  nodeTimeoutMs?: number;
}

/** A node's process and where it listens. */
interface NodeProcess {
  port: number;
  server: TestValkey;
  pid: number;
  killed: boolean;
  log: string;
}

/** Starts the nodes, joins them with `redis-cli --cluster create` and waits until healthy. */
export async function startValkeyCluster(options: ClusterOptions = {}): Promise<TestValkeyCluster> {
  assertServersAllowed("a Valkey cluster");
  const { primaries = 3, replicasPerPrimary = 1, password, tls, nodeTimeoutMs = 1000 } = options;
  if (primaries < 3) throw new Error(`A cluster needs at least 3 primaries, not ${primaries}`);
  if (tls?.authClients) throw new Error("startValkeyCluster() does not support tls.authClients");
  const binary = requireBinary();
  const cliBinary = requireCli(binary);
  const dir = await Deno.makeTempDir({ prefix: "krt-valkey-cluster-" });
  const count = primaries * (1 + replicasPerPrimary);
  // The bus port is set explicitly: the default (port + 10000) may be taken or above 65535.
  const ports = freePorts(count * 2);
  const procs: NodeProcess[] = [];
  const cli = createCli(cliBinary, password, tls);
  const cluster = createCluster(procs, cli, dir);
  try {
    const started = await Promise.all(
      ports.slice(0, count).map((port, i) =>
        startNode({ binary, dir, port, busPort: ports[count + i], password, tls, nodeTimeoutMs })
      ),
    );
    procs.push(...started);
    await cli.run([
      "--cluster",
      "create",
      ...procs.map((p) => `127.0.0.1:${p.port}`),
      "--cluster-replicas",
      String(replicasPerPrimary),
      "--cluster-yes",
    ], CREATE_TIMEOUT_MS);
    await cluster.waitHealthy();
    // The node asked may learn of a replica by gossip a moment after the replica is in sync.
    await eventually(
      "the cluster's primaries and replicas",
      async () => {
        assertShape(await cluster.nodes(), primaries, replicasPerPrimary);
        return true;
      },
      HEALTHY_TIMEOUT_MS,
      50,
    );
  } catch (err) {
    const logs = await logTails(procs);
    await cluster.stop().catch(() => {}); // the startup error is the one to report
    const hint = tls ? " (TLS: does the nodes' certificate allow clientAuth? see ClusterTls)" : "";
    throw new Error(`The Valkey cluster did not start${hint}: ${(err as Error).message}\n${logs}`, {
      cause: err,
    });
  }
  return cluster;
}

/** The redis-cli (or valkey-cli) beside the server binary, else on PATH. */
function requireCli(serverBinary: string): string {
  const sibling = serverBinary.replace(/-server$/, "-cli");
  const dirs = (Deno.env.get("PATH") ?? "").split(":");
  const candidates = [sibling, ...dirs.flatMap((d) => [`${d}/valkey-cli`, `${d}/redis-cli`])];
  for (const path of candidates) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  throw new Error("no valkey-cli or redis-cli on PATH: apt-get install redis-tools");
}

/** Starts one cluster-enabled node in its own subdirectory of `dir`. */
async function startNode(o: {
  binary: string;
  dir: string;
  port: number;
  busPort: number;
  password?: string;
  tls?: ClusterTls;
  nodeTimeoutMs: number;
}): Promise<NodeProcess> {
  const home = `${o.dir}/${o.port}`;
  await Deno.mkdir(home);
  const log = `${home}/server.log`;
  const args = [
    "--dir",
    home,
    "--logfile",
    log,
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    `${home}/nodes.conf`,
    "--cluster-port",
    String(o.busPort),
    "--cluster-node-timeout",
    String(o.nodeTimeoutMs),
    // Promote a replica however long its link was down: tests kill primaries on purpose.
    "--cluster-replica-validity-factor",
    "0",
    // Sync replicas at once instead of waiting 5 s for more to come.
    "--repl-diskless-sync-delay",
    "0",
    ...(o.password ? ["--requirepass", o.password, "--masterauth", o.password] : []),
    ...(o.tls ? ["--tls-cluster", "yes", "--tls-replication", "yes"] : []),
    ...(o.tls?.clientCert ? ["--tls-client-cert-file", o.tls.clientCert] : []),
    ...(o.tls?.clientKey ? ["--tls-client-key-file", o.tls.clientKey] : []),
  ];
  const server = await startValkey(args, { tls: o.tls, port: o.port });
  return { port: o.port, server, pid: server.pid()!, killed: false, log };
}

/** Runs redis-cli with the cluster's password and TLS settings. */
interface Cli {
  password?: string;
  run(args: string[], timeoutMs?: number): Promise<string>;
  on(node: { host: string; port: number }, args: string[]): Promise<string>;
}

function createCli(binary: string, password: string | undefined, tls: ServerTls | undefined): Cli {
  const tlsArgs = tls ? ["--tls", "--cacert", tls.ca] : [];
  // Security: the password goes through REDISCLI_AUTH, not argv, so `ps` does not show it.
  const env: Record<string, string> = password ? { REDISCLI_AUTH: password } : {};
  const run = async (args: string[], timeoutMs = CLI_TIMEOUT_MS) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const output = await new Deno.Command(binary, {
      args: [...tlsArgs, ...args],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal,
    }).output();
    const what = `redis-cli ${args.slice(0, 4).join(" ")}`;
    if (signal.aborted) throw new Error(`${what} did not finish within ${timeoutMs} ms`);
    const stdout = new TextDecoder().decode(output.stdout);
    // redis-cli 7.0 exits 0 on an error reply (printed on stdout) and 1 when it cannot connect.
    if (!output.success) {
      const stderr = new TextDecoder().decode(output.stderr).trim();
      throw new Error(`${what} failed with code ${output.code}: ${stderr || stdout.trim()}`);
    }
    return stdout;
  };
  return {
    password,
    run,
    on: (node, args) => run(["-h", node.host, "-p", String(node.port), ...args]),
  };
}

/** The cluster object over its processes. */
function createCluster(procs: NodeProcess[], cli: Cli, dir: string): TestValkeyCluster {
  const live = () => procs.filter((p) => !p.killed);
  const addr = (p: NodeProcess) => ({ host: "127.0.0.1", port: p.port });
  const viewOf = async (p: NodeProcess) =>
    parseClusterNodes(await cli.on(addr(p), ["CLUSTER", "NODES"]), procs);

  const nodes = async () => {
    let last: unknown;
    for (const p of live()) {
      try {
        return await viewOf(p);
      } catch (err) {
        last = err; // ask the next live node
      }
    }
    throw new Error("No live cluster node answered CLUSTER NODES", { cause: last });
  };

  const ownerOf = async (slot: number) => {
    const owner = ownerIn(await nodes(), slot);
    if (!owner) {
      throw new Error(
        `No live primary serves slot ${slot} now (failing over? waitHealthy() first)`,
      );
    }
    return owner;
  };

  const checkHealthy = async () => {
    const maps = new Map<number, string>();
    for (const p of live()) {
      const info = await cli.on(addr(p), ["CLUSTER", "INFO"]);
      if (!/^cluster_state:ok\r?$/m.test(info)) throw new Error(`node ${p.port} is not ok`);
      const view = await viewOf(p);
      const missing = live().filter((q) => !view.some((n) => n.port === q.port));
      if (missing.length) throw new Error(`node ${p.port} does not know ${portsOf(missing)}`);
      maps.set(p.port, describeSlotMap(view, p.port));
      const me = view.find((n) => n.port === p.port);
      if (me) await assertReplicationUp(cli, me, view);
    }
    if (new Set(maps.values()).size > 1) {
      throw new Error(`nodes disagree on the slot map: ${[...maps.values()].join(" | ")}`);
    }
    return true;
  };

  const waitHealthy = async (timeoutMs = HEALTHY_TIMEOUT_MS) => {
    await eventually("the cluster to be healthy", checkHealthy, timeoutMs, 100);
  };

  const kill = async (node: ClusterNode) => {
    const p = procs.find((q) => q.port === node.port);
    if (!p) throw new Error(`Node 127.0.0.1:${node.port} is not part of this cluster`);
    p.killed = true;
    await p.server.stop(); // SIGKILL, then waits for the exit
  };

  const migrateSlot = async (slot: number, to: ClusterNode, hooks: MigrateHooks = {}) => {
    const from = await ownerOf(slot);
    if (from.id === to.id) throw new Error(`Slot ${slot} is already served by ${to.port}`);
    // `to` may be stale (killed, or a primary since demoted): moving a slot there would strand it.
    if (!(await nodes()).some((n) => n.id === to.id && n.role === "primary")) {
      throw new Error(`Cannot move slot ${slot} to ${to.port}: it is not a live primary`);
    }
    const expect = async (node: ClusterNode, args: string[]) => {
      const reply = (await cli.on(node, args)).trim();
      if (reply !== "OK") throw new Error(`${args.join(" ")} on ${node.port} answered ${reply}`);
    };
    await expect(to, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", from.id]);
    await expect(from, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", to.id]);
    await hooks.whileMigrating?.();
    await moveKeys(cli, { slot, from, to, batch: hooks.batch ?? 10, hooks });
    // As redis-cli: the target first, so no node points back to a source that no longer has the slot.
    const primaries = (await nodes()).filter((n) => n.role === "primary");
    const others = primaries.filter((n) => n.id !== from.id && n.id !== to.id);
    for (const node of [to, from, ...others]) {
      await expect(node, ["CLUSTER", "SETSLOT", String(slot), "NODE", to.id]);
    }
    await eventually(`every node to see slot ${slot} at ${to.port}`, async () => {
      for (const p of live()) {
        if (ownerIn(await viewOf(p), slot)?.id !== to.id) throw new Error(`not yet ${p.port}`);
      }
      return true;
    }, HEALTHY_TIMEOUT_MS);
  };

  return {
    // A getter: the processes are added after this object is made.
    get seeds() {
      return procs.map(addr);
    },
    nodes,
    ownerOf,
    kill,
    waitHealthy,
    migrateSlot,
    cli: (node, ...args) => cli.on(node, args),
    async stop() {
      // Every process is stopped even when one stop fails; the first failure is reported after.
      const results = await Promise.allSettled(procs.map((p) => {
        p.killed = true;
        return p.server.stop();
      }));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw new Error("Cannot stop a cluster node", { cause: failed.reason });
    },
  };
}

/** GETKEYSINSLOT + MIGRATE in batches until the source holds no key of the slot. */
async function moveKeys(
  cli: Cli,
  o: { slot: number; from: ClusterNode; to: ClusterNode; batch: number; hooks: MigrateHooks },
): Promise<void> {
  // MIGRATE logs in to the target itself; this is the one place a test password is in argv.
  const auth = cli.password ? ["AUTH", cli.password] : [];
  while (true) {
    const out = await cli.on(o.from, ["CLUSTER", "GETKEYSINSLOT", String(o.slot), String(o.batch)]);
    const keys = out.split("\n").filter((k) => k !== "");
    if (keys.length === 0) return;
    const reply = (await cli.on(o.from, [
      "MIGRATE",
      o.to.host,
      String(o.to.port),
      "",
      "0",
      String(MIGRATE_TIMEOUT_MS),
      ...auth,
      "KEYS",
      ...keys,
    ])).trim();
    if (reply !== "OK") throw new Error(`MIGRATE of slot ${o.slot} answered ${reply}`);
    await o.hooks.afterSomeKeys?.(keys);
  }
}

/**
 * Fails unless a replica's link is up and a primary streams to each of its
 * live replicas. Both sides matter: after a diskless full sync the replica
 * says "up" before its primary has put it online (on its first REPLCONF
 * ACK), and a write in that gap was seen lost on a failover (redis 7.0).
 */
async function assertReplicationUp(cli: Cli, me: ClusterNode, view: ClusterNode[]) {
  const info = await cli.on(me, ["INFO", "replication"]);
  if (me.role === "replica") {
    if (!/^master_link_status:up\r?$/m.test(info)) {
      throw new Error(`replica ${me.port} is not linked to its primary`);
    }
    return;
  }
  const online = info.match(/^slave\d+:.*state=online/gm)?.length ?? 0;
  const replicas = view.filter((n) => n.primaryId === me.id).length;
  if (online < replicas) {
    throw new Error(`primary ${me.port} streams to ${online} of its ${replicas} replicas`);
  }
}

/** The primary in `view` whose ranges hold `slot`. */
function ownerIn(view: ClusterNode[], slot: number): ClusterNode | undefined {
  return view.find((n) => n.role === "primary" && n.slots.some(([a, b]) => a <= slot && slot <= b));
}

/** A comparable summary of who serves what, failing when a slot is served by no live primary. */
function describeSlotMap(view: ClusterNode[], port: number): string {
  const ranges = view.filter((n) => n.role === "primary")
    .flatMap((n) => n.slots.map(([a, b]) => ({ a, b, port: n.port })))
    .sort((x, y) => x.a - y.a);
  const covered = ranges.reduce((sum, r) => sum + r.b - r.a + 1, 0);
  if (covered !== SLOTS) {
    throw new Error(`node ${port} sees ${covered} of ${SLOTS} slots served by a live primary`);
  }
  return ranges.map((r) => `${r.a}-${r.b}@${r.port}`).join(",");
}

function portsOf(procs: NodeProcess[]): string {
  return procs.map((p) => p.port).join(", ");
}

/** Fails unless the cluster has the primaries and replicas asked for. */
function assertShape(view: ClusterNode[], primaries: number, replicasPerPrimary: number) {
  const found = view.filter((n) => n.role === "primary");
  for (const p of found) {
    const replicas = view.filter((n) => n.primaryId === p.id).length;
    if (replicas !== replicasPerPrimary) {
      throw new Error(`primary ${p.port} has ${replicas} replicas, not ${replicasPerPrimary}`);
    }
  }
  if (found.length !== primaries) {
    throw new Error(`the cluster has ${found.length} primaries, not ${primaries}`);
  }
}

/**
 * Parses CLUSTER NODES (`<id> <ip:port@cport[,hostname]> <flags> <primary>
 * <ping> <pong> <epoch> <link> <slot>...`), leaving out nodes flagged fail,
 * in handshake or without address, and nodes whose process was killed.
 */
function parseClusterNodes(text: string, procs: NodeProcess[]): ClusterNode[] {
  const out: ClusterNode[] = [];
  for (const line of text.split("\n").map((l) => l.trim()).filter((l) => l !== "")) {
    const [id, address, flagText, primary, , , , , ...slotTokens] = line.split(" ");
    const flags = flagText.split(",");
    if (flags.some((f) => f === "fail" || f === "handshake" || f === "noaddr")) continue;
    const match = /^(.*):(\d+)@\d+/.exec(address);
    if (!match) throw new Error(`Cannot parse CLUSTER NODES line: ${line}`);
    const port = Number(match[2]);
    const proc = procs.find((p) => p.port === port);
    if (!proc || proc.killed) continue;
    const isPrimary = flags.includes("master");
    out.push({
      host: match[1],
      port,
      id,
      role: isPrimary ? "primary" : "replica",
      ...(primary !== "-" && !isPrimary ? { primaryId: primary } : {}),
      pid: proc.pid,
      // `[slot->-id]` and `[slot-<-id]` mark a slot being migrated or imported: not served here.
      slots: slotTokens.filter((t) => !t.startsWith("[")).map(parseRange),
    });
  }
  return out;
}

function parseRange(token: string): [number, number] {
  const [a, b = a] = token.split("-").map(Number);
  return [a, b];
}

/** The last lines of every node's log, for a startup error. */
async function logTails(procs: NodeProcess[]): Promise<string> {
  const parts: string[] = [];
  for (const p of procs) {
    const text = await Deno.readTextFile(p.log).catch(() => "");
    parts.push(`--- node ${p.port} ---\n${text.trim().split("\n").slice(-8).join("\n")}`);
  }
  return parts.join("\n");
}

/** CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys with. */
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[i] = crc & 0xffff;
  }
  return table;
})();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff];
  return crc;
}

const OPEN = 0x7b; // "{"
const CLOSE = 0x7d; // "}"

/**
 * The hash slot of a key: CRC16 of its UTF-8 bytes mod 16384, or of its hash
 * tag, the bytes between the first "{" and the next "}" when there are any
 * (an empty "{}" or a "{" without "}" hashes the whole key), as the Redis
 * Cluster specification's HASH_SLOT says.
 */
export function keySlot(key: string): number {
  const bytes = new TextEncoder().encode(key);
  const open = bytes.indexOf(OPEN);
  if (open !== -1) {
    const close = bytes.indexOf(CLOSE, open + 1);
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOTS;
  }
  return crc16(bytes) % SLOTS;
}

/** A CA and a serving certificate for loopback, plus the client certificate the cluster bus asks for. */
export async function clusterCertificates(dir: string): Promise<ClusterTls> {
  const certs = await generateCertificates(dir);
  const p = (name: string) => `${dir}/${name}`;
  await Deno.writeTextFile(p("node.ext"), "extendedKeyUsage=clientAuth\n");
  await openssl(
    ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat(
      ["-keyout", p("node.key"), "-out", p("node.csr"), "-subj", "/CN=cluster-node"],
    ),
  );
  await openssl(
    ["x509", "-req", "-in", p("node.csr"), "-days", "1", "-extfile", p("node.ext")].concat(
      ["-CA", certs.caCert, "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("node.crt")],
    ),
  );
  return {
    cert: certs.servingCert,
    key: certs.servingKey,
    ca: certs.caCert,
    clientCert: p("node.crt"),
    clientKey: p("node.key"),
  };
}
