/**
 * Starts a real Valkey-compatible server (valkey-server, else redis-server) on
 * a free loopback port for one test, with persistence off, and stops it. Also
 * a subscriber that records every message on a channel.
 */

import { Valkey } from "iovalkey";
import { eventually } from "./eventually.ts";
import { freePort } from "./processes.ts";

// Re-exported: tests import the one freePort() from here or from ./processes.ts.
export { freePort };

/** A running server. */
export interface TestValkey {
  host: string;
  port: number;
  /** `127.0.0.1:<port>`, as VALKEY_ADDR takes it. */
  addr: string;
  stop(): Promise<void>;
  /** Stops the server and starts it again on the same port. */
  restart(): Promise<void>;
  /** Starts the server again after stop(), on the same port. */
  start(): Promise<void>;
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

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  await eventually(
    `valkey to listen on ${port}`,
    async () => {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    },
    timeoutMs,
    20,
  );
}

/** Starts a server; extra arguments are passed to it (e.g. `--requirepass`). */
export async function startValkey(extraArgs: string[] = []): Promise<TestValkey> {
  const binary = findValkeyBinary();
  if (!binary) {
    throw new Error("no valkey-server or redis-server on PATH: apt-get install redis-server");
  }
  const port = freePort();
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    child = new Deno.Command(binary, {
      args: [
        "--port",
        String(port),
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
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
  };
}

/** Records every message published on `channel`. */
export interface RecordingSubscriber {
  messages: string[];
  /** Resolves when at least `count` messages have arrived (or rejects after timeoutMs). */
  waitFor(count: number, timeoutMs?: number): Promise<string[]>;
  close(): void;
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
    close: () => client.disconnect(),
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
