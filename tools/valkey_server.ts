/**
 * Starts a Valkey-compatible server (valkey-server, else redis-server) on a
 * free loopback port with persistence off, plain or TLS, and stops it: for
 * `deno task dev` and, through tests/helpers/valkey.ts, the tests.
 */

import { freePort } from "./ports.ts";

/** TLS files for a server: its certificate and key, and the CA its clients' certificates come from. */
export interface ServerTls {
  cert: string;
  key: string;
  ca: string;
  /** tls-auth-clients: require a client certificate (default false). */
  authClients?: boolean;
}

/** A running server. */
export interface TestValkey {
  host: string;
  port: number;
  /** `127.0.0.1:<port>`, as VALKEY_ADDR takes it. */
  addr: string;
  /** The server process's id while it runs. */
  pid(): number | undefined;
  stop(): Promise<void>;
  /** Stops the server and starts it again on the same port. */
  restart(): Promise<void>;
  /** Starts the server again after stop(), on the same port. */
  start(): Promise<void>;
  /** Restarts it on the same port with other TLS files, or without TLS (undefined). */
  restartWithTls(tls: ServerTls | undefined): Promise<void>;
}

/** The server binary found on PATH, or undefined. */
export function findValkeyBinary(): string | undefined {
  for (const name of ["valkey-server", "redis-server"]) {
    for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
      try {
        const path = `${dir}/${name}`;
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // not in this directory
      }
    }
  }
  return undefined;
}

/** Resolves once something accepts connections on the loopback `port`. */
export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`valkey did not listen on ${port} within ${timeoutMs} ms`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** The server binary, or an error saying what to install. */
export function requireBinary(): string {
  const binary = findValkeyBinary();
  if (!binary) {
    throw new Error("no valkey-server or redis-server on PATH: apt-get install redis-server");
  }
  return binary;
}

function tlsArgs(port: number, tls: ServerTls | undefined): string[] {
  if (!tls) return ["--port", String(port)];
  return [
    "--port",
    "0",
    "--tls-port",
    String(port),
    "--tls-cert-file",
    tls.cert,
    "--tls-key-file",
    tls.key,
    "--tls-ca-cert-file",
    tls.ca,
    "--tls-auth-clients",
    tls.authClients ? "yes" : "no",
  ];
}

/**
 * Starts a server; extra arguments are passed to it (e.g. `--requirepass`).
 * With `tls`, it speaks only TLS on its port.
 */
export async function startValkey(
  extraArgs: string[] = [],
  options: { tls?: ServerTls; port?: number } = {},
): Promise<TestValkey> {
  const binary = requireBinary();
  const port = options.port ?? freePort();
  let tls = options.tls;
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    child = new Deno.Command(binary, {
      args: [
        ...tlsArgs(port, tls),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        ...extraArgs,
      ],
      stdout: "null",
      stderr: "null",
      stdin: "null",
    }).spawn();
    await waitForPort(port, 5000);
  };
  const stop = async () => {
    if (!child) return;
    const c = child;
    child = undefined;
    try {
      c.kill("SIGKILL");
    } catch {
      // already gone
    }
    await c.status;
  };
  await start();
  return {
    host: "127.0.0.1",
    port,
    addr: `127.0.0.1:${port}`,
    pid: () => child?.pid,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async restartWithTls(next) {
      await stop();
      tls = next;
      await start();
    },
  };
}
