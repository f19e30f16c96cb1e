/**
 * The one Valkey client of both modes (shared/valkey_client.ts) against a real
 * Valkey-compatible server: replies matched to their commands under
 * pipelining and after a timeout, transactions that run all together and stay
 * contiguous among other commands, fail-fast while disconnected, what the log
 * says when a connection is closed or drops, a subscriber that subscribes
 * again after a restart (classic SUBSCRIBE outside a cluster, even when asked
 * for sharded), TLS with a private CA (by name, by IP, mutual) and the one
 * line each TLS mistake gives, Sentinel discovery and failover.
 */

import { assert, assertEquals, assertMatch } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/cluster.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import {
  connectValkey,
  generateValkeyCertificates,
  type ServerTls,
  startSentinelGroup,
  startValkey,
  valkeyCall,
} from "../../helpers/valkey.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { parseHostPort } from "../../../lib/setting_values.ts";
import { createValkeyClient, type ValkeyClientOptions } from "../../../shared/valkey_client.ts";
import type { ValkeySettings } from "../../../shared/valkey_settings.ts";
import { ReplyError, RespReader } from "../../../lib/resp.ts";

const skip = withoutValkey();
const options = { ignore: skip, sanitizeOps: false, sanitizeResources: false };
const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;

function recordingLogger() {
  const lines: (LogFields & { msg: string; level: string })[] = [];
  const logger = createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  return { lines, logger };
}

function settings(addr: string, extra: Partial<ValkeySettings> = {}): ValkeySettings {
  return {
    valkeyAddr: parseHostPort(addr),
    valkeyUsername: "",
    valkeyPassword: "",
    valkeyTls: false,
    valkeyTimeout: 2000,
    ...extra,
  };
}

function client(config: ValkeySettings, extra: Partial<ValkeyClientOptions> = {}) {
  const { lines, logger } = recordingLogger();
  const states: boolean[] = [];
  const c = createValkeyClient(config, {
    name: "test",
    logger,
    onStateChange: (up) => states.push(up),
    ...extra,
  });
  const connected = () => eventually("connected", () => c.connected || undefined);
  return { client: c, lines, states, connected };
}

Deno.test({
  ...options,
  name: "security: a Valkey reply that quotes the password never reaches web's log",
  async fn() {
    // With AUTH renamed away, the server answers "unknown command 'auth', with args beginning with: …".
    const valkey = await startValkey(["--rename-command", "AUTH", ""]);
    const { client: c, lines } = client(
      settings(valkey.addr, { valkeyUsername: "web", valkeyPassword: SECRET }),
    );
    try {
      const error = await eventually(
        "the connection error line",
        () => lines.find((l) => l.msg === "valkey connection error"),
      );
      assertEquals(error.error, "ERR unknown command (rest of the reply not shown)");
      assert(!JSON.stringify(lines).includes(SECRET), "the password reached the log");
    } finally {
      c.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyClient() answers every pipelined command with its own reply, also after one timed out",
  async fn(t) {
    const valkey = await startValkey();
    const admin = await connectValkey(valkey, { name: "krt-test-admin" });
    const { client: c, lines, connected } = client(settings(valkey.addr, { valkeyTimeout: 500 }));
    try {
      await connected();
      await t.step("500 commands in flight at once, each with its own answer", async () => {
        const values = Array.from({ length: 500 }, (_, i) => `v${i}-${"é".repeat(i % 7)}`);
        const replies = await Promise.all(values.map((v) => c.call("ECHO", v)));
        assertEquals(replies, values);
        assertEquals(await c.call("HSET", "h", "a", "1", "b", "ü"), 2);
        assertEquals(await c.call("HGETALL", "h"), ["a", "1", "b", "ü"]);
      });
      await t.step("an error reply rejects that command only", async () => {
        const [bad, good] = await Promise.allSettled([
          c.call("HGETALL", "h", "extra"),
          c.call("ECHO", "fine"),
        ]);
        assertEquals(bad.status, "rejected");
        assertMatch(String((bad as PromiseRejectedResult).reason?.message), /^ERR /);
        assertEquals(good, { status: "fulfilled", value: "fine" });
      });
      await t.step(
        "a command the server holds past VALKEY_TIMEOUT fails, and the next reply is not shifted",
        async () => {
          await admin.call("CLIENT", "PAUSE", "700", "ALL");
          const started = Date.now();
          const late = await c.call("ECHO", "late").catch((e: Error) => e);
          assert(late instanceof Error, `expected a timeout, got ${late}`);
          assertMatch(late.message, /did not answer ECHO within VALKEY_TIMEOUT/);
          assert(Date.now() - started < 650, "the timeout came after the pause ended");
          // Sent while the late reply is still owed: it must get its own reply, not that one.
          assertEquals(await c.call("ECHO", "next"), "next");
          assert(!lines.some((l) => l.msg === "valkey connection lost; reconnecting"));
          assert(c.connected);
        },
      );
    } finally {
      c.disconnect();
      admin.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyClient().transaction() runs its commands as one MULTI/EXEC, contiguous among other commands",
  async fn(t) {
    const valkey = await startValkey();
    const { client: c, connected } = client(settings(valkey.addr));
    const other = client(settings(valkey.addr));
    try {
      await connected();
      await other.connected();
      await t.step("every command's reply, in order", async () => {
        assertEquals(
          await c.transaction([
            ["SET", "tx:k", "1"],
            ["INCR", "tx:k"],
            ["HSET", "tx:h", "a", "1", "b", "ü"],
            ["HGETALL", "tx:h"],
            ["GET", "tx:missing"],
          ]),
          ["OK", 2, 2, ["a", "1", "b", "ü"], null],
        );
      });
      await t.step(
        "a command refused while queueing: nothing runs, and the refusal rejects",
        async () => {
          await c.call("SET", "tx:untouched", "before");
          const err = await c.transaction([
            ["SET", "tx:untouched", "after"],
            ["GET"],
          ]).then(() => undefined, (e) => e);
          assert(err instanceof ReplyError, `expected a ReplyError, got ${err}`);
          assertMatch(err.message, /^ERR wrong number of arguments/);
          assertEquals(await c.call("GET", "tx:untouched"), "before");
        },
      );
      await t.step(
        "a command refused at run time (WRONGTYPE) rejects with that error; the connection stays in step",
        async () => {
          await c.call("SET", "tx:string", "text");
          const err = await c.transaction([
            ["INCR", "tx:counter"],
            ["HSET", "tx:string", "f", "v"],
            ["INCR", "tx:counter"],
          ]).then(() => undefined, (e) => e);
          assert(err instanceof ReplyError, `expected a ReplyError, got ${err}`);
          assertMatch(err.message, /^WRONGTYPE /);
          // Valkey does not roll back at run time: the commands around the refused one ran.
          assertEquals(await c.call("GET", "tx:counter"), "2");
          assertEquals(await c.call("ECHO", "after"), "after");
          assertEquals(await c.transaction([["ECHO", "again"]]), ["again"]);
        },
      );
      await t.step(
        "50 transactions at once among plain commands and another client's: each stays whole",
        async () => {
          await c.call("DEL", "tx:a", "tx:b", "tx:plain");
          let writing = true;
          const observed: unknown[][] = [];
          // Another connection reads both counters, in one transaction, while they are written.
          const observer = (async () => {
            while (writing) {
              observed.push(
                await other.client.transaction([["GET", "tx:a"], ["GET", "tx:b"]])
                  .catch((e: Error) => [e.message, "a failed read"]),
              );
              await new Promise((r) => setTimeout(r, 0));
            }
          })();
          // A failure is kept as the value: the loop below awaits while others are in flight.
          const transactions: Promise<unknown>[] = [];
          const plainCalls: Promise<unknown>[] = [];
          for (let i = 0; i < 50; i++) {
            transactions.push(
              c.transaction([["INCR", "tx:a"], ["INCR", "tx:b"]]).catch((e: Error) => e),
            );
            // A plain command between them must not land inside a MULTI block (it would answer QUEUED).
            plainCalls.push(c.call("INCR", "tx:plain").catch((e: Error) => e));
            // Now and then a turn of the event loop, so some go out in writes of their own.
            if (i % 5 === 4) await new Promise((r) => setTimeout(r, 0));
          }
          const pairs = await Promise.all(transactions);
          const plain = await Promise.all(plainCalls);
          writing = false;
          await observer;
          for (const pair of pairs) {
            assert(Array.isArray(pair) && pair[0] === pair[1], `a transaction answered ${pair}`);
          }
          assertEquals(
            pairs.map((pair) => (pair as number[])[0]).sort((x, y) => x - y),
            Array.from({ length: 50 }, (_, i) => i + 1),
          );
          assertEquals(plain.sort((x, y) => Number(x) - Number(y)), pairs.map((_, i) => i + 1));
          assert(observed.length > 0);
          for (const [a, b] of observed) assertEquals(a, b, `observed a=${a} b=${b}`);
          assertEquals(await c.transaction([["GET", "tx:a"], ["GET", "tx:b"]]), ["50", "50"]);
          assertEquals(await c.call("GET", "tx:plain"), "50");
        },
      );
    } finally {
      c.disconnect();
      other.client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyClient() logs a requested disconnect as closed (info) and a dropped connection as lost (warn), failing commands at once while down",
  async fn(t) {
    const valkey = await startValkey();
    try {
      await t.step("disconnect() is closed, not lost", async () => {
        const { client: c, lines, states, connected } = client(settings(valkey.addr));
        await connected();
        c.disconnect();
        await eventually("closed", () => lines.find((l) => l.msg === "valkey connection closed"));
        assertEquals(lines.map((l) => [l.level, l.msg]), [
          ["info", "valkey connected"],
          ["info", "valkey connection closed"],
        ]);
        assertEquals(states, [true, false]);
        const after = await c.call("PING").catch((e: Error) => e);
        assert(after instanceof Error);
      });
      await t.step(
        "a server that goes away is lost; commands fail at once; it reconnects",
        async () => {
          const { client: c, lines, connected } = client(settings(valkey.addr));
          try {
            await connected();
            assertEquals(await c.call("PING"), "PONG");
            await valkey.stop();
            const lost = await eventually(
              "lost",
              () => lines.find((l) => l.msg === "valkey connection lost; reconnecting"),
            );
            assertEquals(lost.level, "warn");
            const started = Date.now();
            const refused = await c.call("PING").catch((e: Error) => e);
            assert(refused instanceof Error && Date.now() - started < 100, "did not fail at once");
            await valkey.start();
            await eventually(
              "reconnected",
              () => lines.filter((l) => l.msg === "valkey connected").length === 2 || undefined,
              10_000,
            );
            assertEquals(await c.call("PING"), "PONG");
            const errors = lines.filter((l) => l.msg === "valkey connection error");
            assert(
              errors.length <= 1,
              `the refusal was logged per retry: ${JSON.stringify(errors)}`,
            );
          } finally {
            c.disconnect();
          }
        },
      );
    } finally {
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyClient() as a subscriber gets each message, subscribes again after a restart, and says so when an ACL refuses the channel",
  async fn(t) {
    const valkey = await startValkey([
      "--user",
      "default",
      "on",
      "nopass",
      "~*",
      "&*",
      "+@all",
      "--user",
      "narrow",
      "on",
      ">narrow-pw",
      "~*",
      "&other",
      "+@all",
    ]);
    const admin = await connectValkey(valkey, { name: "krt-test-admin" });
    const publish = async (channel: string, message: string) =>
      Number(await admin.call("PUBLISH", channel, message));
    try {
      await t.step("messages, and again after the server restarts", async () => {
        const got: string[] = [];
        const { client: c, lines, states } = client(settings(valkey.addr), {
          subscription: { channels: ["a", "b"], onMessage: (ch, m) => got.push(`${ch}:${m}`) },
        });
        try {
          await eventually(
            "subscribed",
            async () => await publish("a", "x") === 1 || undefined,
          );
          await publish("b", "y");
          await publish("elsewhere", "z");
          await eventually("two messages", () => got.includes("b:y") || undefined);
          await valkey.restart();
          await eventually(
            "subscribed again",
            async () => await publish("a", "after").catch(() => 0) === 1 || undefined,
            10_000,
          );
          await eventually("the message after", () => got.includes("a:after") || undefined);
          assert(!got.some((m) => m.startsWith("elsewhere")));
          assertEquals(states.slice(0, 3), [true, false, true]);
          assert(lines.some((l) => l.msg === "valkey connection lost; reconnecting"));
          const refused = await c.call("PING").catch((e: Error) => e);
          assert(refused instanceof Error, "a subscriber took a command");
        } finally {
          c.disconnect();
        }
      });
      await t.step("an ACL without the channel: one error line naming NOPERM", async () => {
        const { client: c, lines } = client(
          settings(valkey.addr, { valkeyUsername: "narrow", valkeyPassword: "narrow-pw" }),
          { subscription: { channels: ["a"], onMessage: () => {} } },
        );
        try {
          const error = await eventually(
            "the error line",
            () => lines.find((l) => l.msg === "valkey connection error"),
          );
          assertMatch(String(error.error), /^NOPERM/);
          await new Promise((r) => setTimeout(r, 1000));
          assertEquals(lines.filter((l) => l.msg === "valkey connection error").length, 1);
          assert(!c.connected);
          assert(!JSON.stringify(lines).includes("narrow-pw"));
        } finally {
          c.disconnect();
        }
      });
    } finally {
      admin.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyClient() as a sharded subscriber outside a cluster subscribes with classic SUBSCRIBE",
  async fn() {
    const valkey = await startValkey();
    const got: string[] = [];
    const { client: c, connected } = client(settings(valkey.addr), {
      subscription: {
        channels: ["events"],
        sharded: true,
        onMessage: (ch, m) => got.push(`${ch}:${m}`),
      },
    });
    try {
      await connected();
      // Sharded PubSub only applies in a cluster: a classic PUBLISH reaches the subscriber.
      assertEquals(await valkeyCall(valkey, "PUBLISH", "events", "classic"), 1);
      await eventually("the message", () => got.includes("events:classic") || undefined);
      assertEquals(await valkeyCall(valkey, "PUBSUB", "NUMSUB", "events"), ["events", 1]);
      assertEquals(await valkeyCall(valkey, "PUBSUB", "SHARDNUMSUB", "events"), ["events", 0]);
    } finally {
      c.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name: "createValkeyClient() names a server that accepts but never answers, with the TLS hint",
  async fn() {
    // What a TLS-only server does with a short plaintext command: it waits for the rest of a record.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    (async () => {
      for await (const conn of listener) held.push(conn);
    })().catch(() => {});
    const { client: c, lines } = client(
      settings(`127.0.0.1:${listener.addr.port}`, { valkeyTimeout: 300 }),
    );
    try {
      const error = await eventually(
        "the error line",
        () => lines.find((l) => l.msg === "valkey connection error"),
      );
      assertMatch(
        String(error.error),
        /^no reply from 127\.0\.0\.1:\d+ within VALKEY_TIMEOUT; if the server expects TLS, set VALKEY_TLS_ENABLED=true/,
      );
    } finally {
      c.disconnect();
      listener.close();
      for (const conn of held) conn.close();
    }
  },
});

Deno.test({
  ...options,
  name:
    "security: Deno keeps its root CAs beside VALKEY_TLS_CA_CERT, so a certificate from a root CA is accepted too (docs/security.md)",
  async fn() {
    // A limitation of Deno's TLS, pinned so that docs/deployment.md's advice (connect by a name
    // no public CA certifies) stays true: the server's CA is made a root CA of the child process
    // through the system store, and the client is given only the private CA.
    const dir = await Deno.makeTempDir({ prefix: "krt-valkey-client-roots-" });
    const certs = await generateValkeyCertificates(dir);
    const valkey = await startValkey([], { tls: certs.untrusted });
    const roots = `${dir}/roots.pem`;
    await Deno.writeTextFile(roots, certs.otherCa.pem);
    const script = `
      import { createValkeyClient } from ${
      JSON.stringify(new URL("../../../shared/valkey_client.ts", import.meta.url).href)
    };
      import { createLogger } from ${
      JSON.stringify(new URL("../../../lib/log.ts", import.meta.url).href)
    };
      const lines = [];
      const logger = createLogger({ level: "info", write: (l) => lines.push(JSON.parse(l)) });
      const c = createValkeyClient({
        valkeyAddr: { host: "127.0.0.1", port: ${valkey.port} }, valkeyUsername: "", valkeyPassword: "",
        valkeyTls: true, valkeyTimeout: 2000, valkeyTlsCaCert: Deno.env.get("PRIVATE_CA"),
      }, { name: "roots", logger });
      const deadline = Date.now() + 10000;
      while (Date.now() < deadline && !lines.length) await new Promise((r) => setTimeout(r, 20));
      c.disconnect();
      console.log(lines[0]?.msg === "valkey connected" ? "connected" : String(lines[0]?.error));
      Deno.exit(0);
    `;
    const run = async (env: Record<string, string>) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--no-config", script],
        env: { PRIVATE_CA: certs.ca.pem, ...env },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout).trim() || new TextDecoder().decode(out.stderr);
    };
    try {
      assertMatch(await run({}), /not signed by a trusted CA/);
      assertEquals(await run({ DENO_TLS_CA_STORE: "system", SSL_CERT_FILE: roots }), "connected");
    } finally {
      await valkey.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * A stand-in server on loopback that reads commands as RESP and answers each
 * with what `answer` returns (nothing when it returns undefined). Counts the
 * connections it accepted.
 */
function fakeServer(answer: (command: string[]) => string | undefined) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        const reader = new RespReader();
        const buf = new Uint8Array(65536);
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) return;
          reader.push(buf.subarray(0, n));
          for (let r = reader.next(); r; r = reader.next()) {
            const reply = answer((r.value as string[]).map(String));
            if (reply !== undefined) await conn.write(new TextEncoder().encode(reply));
          }
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  return {
    addr: `127.0.0.1:${listener.addr.port}`,
    accepted: () => conns.length,
    close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed by the client already
        }
      }
    },
  };
}

Deno.test({
  ...options,
  name:
    "createValkeyClient() gives up a connection whose server stopped answering, and fails commands at once past its bound",
  async fn(t) {
    // Answers the connection's first command, then nothing: a Valkey that hangs.
    let answered = 0;
    const server = fakeServer(() => answered++ === 0 ? "+OK\r\n" : undefined);
    const { client: c, lines, connected } = client(settings(server.addr, { valkeyTimeout: 300 }));
    try {
      await connected();
      await t.step("commands past the bound of waiting ones fail at once", async () => {
        const waiting = Array.from({ length: 4096 }, () => c.call("PING").catch((e: Error) => e));
        const over = await c.call("PING").catch((e: Error) => e);
        assert(over instanceof Error);
        assertMatch(over.message, /4096 commands are already waiting for Valkey/);
        const timedOut = await Promise.all(waiting);
        assert(timedOut.every((e) => e instanceof Error && /did not answer PING/.test(e.message)));
      });
      await t.step(
        "after twice VALKEY_TIMEOUT without a reply the connection is given up",
        async () => {
          const lost = await eventually(
            "lost",
            () => lines.find((l) => l.msg === "valkey connection lost; reconnecting"),
          );
          assertMatch(String(lost.error), /stopped answering/);
        },
      );
    } finally {
      c.disconnect();
      server.close();
    }
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyClient() says what failed while connecting: a name that does not resolve, no reply to AUTH, a Sentinel that names a replica",
  async fn(t) {
    await t.step("a host name that does not resolve", async () => {
      const line = await firstOutcome(settings("no-such-host.invalid:6379"));
      assertMatch(String(line.error), /^getaddrinfo ENOTFOUND no-such-host\.invalid/);
    });
    await t.step("no reply to AUTH: the TLS hint, and no password", async () => {
      const server = fakeServer(() => undefined);
      try {
        const line = await firstOutcome(
          settings(server.addr, { valkeyPassword: SECRET, valkeyTimeout: 300 }),
        );
        assertMatch(String(line.error), /^no reply from 127\.0\.0\.1:\d+ within VALKEY_TIMEOUT/);
        assert(!JSON.stringify(line).includes(SECRET));
      } finally {
        server.close();
      }
    });
    await t.step("a Sentinel that names a replica", async () => {
      const primary = await startValkey();
      const replica = await startValkey(["--replicaof", "127.0.0.1", String(primary.port)]);
      const sentinel = fakeServer((command) =>
        command[0].toUpperCase() === "SENTINEL"
          ? `*2\r\n$9\r\n127.0.0.1\r\n$${String(replica.port).length}\r\n${replica.port}\r\n`
          : "+OK\r\n"
      );
      try {
        const line = await firstOutcome({
          ...settings("127.0.0.1:1"),
          valkeyAddr: undefined,
          valkeySentinels: [parseHostPort(sentinel.addr)],
          valkeySentinelMaster: "krt",
        });
        assertEquals(line.msg, "valkey connection error");
        assertMatch(String(line.error), /named by the Sentinels, is not a primary/);
      } finally {
        sentinel.close();
        await replica.stop();
        await primary.stop();
      }
    });
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyClient() keeps one socket, not one per retry, for a TLS server that never answers the handshake",
  async fn() {
    const silent = fakeServer(() => undefined);
    const { client: c, lines } = client(
      settings(silent.addr, { valkeyTls: true, valkeyTimeout: 200 }),
    );
    try {
      await eventually(
        "the error line",
        () => lines.find((l) => l.msg === "valkey connection error"),
      );
      // Several retries' worth of time: with backoff from 100 ms, five or more attempts.
      await new Promise((r) => setTimeout(r, 2000));
      assertEquals(silent.accepted(), 1);
      assertEquals(lines.filter((l) => l.msg === "valkey connection error").length, 1);
      assertMatch(
        String(lines.find((l) => l.msg === "valkey connection error")?.error),
        /ETIMEDOUT/,
      );
    } finally {
      c.disconnect();
      silent.close();
    }
  },
});

/** Connects with `config` and resolves with the first "connected" or "error" line. */
async function firstOutcome(config: ValkeySettings) {
  const { client: c, lines } = client(config);
  try {
    return await eventually(
      "connected or an error",
      () => lines.find((l) => l.msg === "valkey connected" || l.msg === "valkey connection error"),
    );
  } finally {
    c.disconnect();
  }
}

Deno.test({
  ...options,
  name:
    "createValkeyClient() over TLS: a private CA by IP address and by host name, in a bundle, with a client certificate; each mistake is one line saying what to fix",
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "krt-valkey-client-tls-" });
    const certs = await generateValkeyCertificates(dir);
    const valkey = await startValkey([], { tls: certs.server });
    const tls = (addr: string, extra: Partial<ValkeySettings> = {}) =>
      settings(addr, { valkeyTls: true, valkeyTlsCaCert: certs.ca.pem, ...extra });
    const byName = `localhost:${valkey.port}`;
    let current: ServerTls | undefined = certs.server;
    const serve = async (next: ServerTls | undefined) => {
      if (next !== current) await valkey.restartWithTls(next);
      current = next;
    };
    const cases: [string, ServerTls | undefined, ValkeySettings, RegExp][] = [
      ["by IP address", certs.server, tls(valkey.addr), /^connected$/],
      ["by host name", certs.server, tls(byName), /^connected$/],
      [
        "the CA in a bundle after another",
        certs.server,
        tls(valkey.addr, { valkeyTlsCaCert: certs.otherCa.pem + certs.ca.pem }),
        /^connected$/,
      ],
      [
        "no private CA: Deno's roots do not know the test CA",
        certs.server,
        tls(valkey.addr, { valkeyTlsCaCert: undefined }),
        /^Valkey's TLS certificate is not signed by a trusted CA; set VALKEY_TLS_CA_CERT/,
      ],
      [
        "TLS off against a TLS server",
        certs.server,
        settings(valkey.addr, { valkeyTimeout: 1000 }),
        /the server closed the connection; if it expects TLS, set VALKEY_TLS_ENABLED=true/,
      ],
      [
        "a certificate for other names, by IP address",
        certs.wrongName,
        tls(valkey.addr),
        /^Valkey's TLS certificate does not name the host connected to; .* \[ERR_TLS_CERT_ALTNAME_INVALID\]$/,
      ],
      [
        "a certificate for other names, by host name",
        certs.wrongName,
        tls(byName),
        /^Valkey's TLS certificate does not name the host connected to; /,
      ],
      [
        "a CA that is not trusted",
        certs.untrusted,
        tls(valkey.addr),
        /^Valkey's TLS certificate is not signed by a trusted CA; set VALKEY_TLS_CA_CERT/,
      ],
      [
        "an expired certificate",
        certs.expired,
        tls(valkey.addr),
        /^Valkey's TLS certificate has expired; renew the server's certificate \[CERT_HAS_EXPIRED\]$/,
      ],
      [
        "a client certificate required and not given",
        { ...certs.server, authClients: true },
        tls(valkey.addr),
        /set VALKEY_TLS_CLIENT_CERT and VALKEY_TLS_CLIENT_KEY/,
      ],
      [
        "a client certificate required and given",
        { ...certs.server, authClients: true },
        tls(valkey.addr, {
          valkeyTlsClientCert: certs.client.certPem,
          valkeyTlsClientKey: certs.client.keyPem,
        }),
        /^connected$/,
      ],
      [
        "a server without TLS",
        undefined,
        tls(valkey.addr, { valkeyTimeout: 1000 }),
        /no TLS handshake within VALKEY_TIMEOUT; the server may not speak TLS on that port/,
      ],
    ];
    // The cases are ordered so that each server configuration is started once.
    const servers = [...new Set(cases.map((c) => c[1]))];
    try {
      for (const server of servers) {
        for (const [name, tlsFiles, config, expected] of cases) {
          if (tlsFiles !== server) continue;
          await t.step(name, async () => {
            await serve(server);
            const line = await firstOutcome(config);
            const outcome = line.msg === "valkey connected" ? "connected" : String(line.error);
            assertMatch(outcome, expected);
            assert(!JSON.stringify(line).includes("PRIVATE KEY"));
          });
        }
      }
    } finally {
      await valkey.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyClient() with Sentinel over TLS finds the primary, and the new one after a manual failover and after the primary dies",
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "krt-valkey-client-sentinel-" });
    const certs = await generateValkeyCertificates(dir);
    const group = await startSentinelGroup(dir, { tls: certs.server });
    const { client: c, lines } = client({
      ...settings("127.0.0.1:1"),
      valkeyAddr: undefined,
      valkeyTls: true,
      valkeyTlsCaCert: certs.ca.pem,
      valkeySentinels: group.sentinels.map(parseHostPort),
      valkeySentinelMaster: group.master,
    });
    const connectedTo = (addr: string, after: number) =>
      eventually(
        `connected to ${addr}`,
        () => lines.slice(after).find((l) => l.msg === "valkey connected" && l.primary === addr),
        30_000,
      );
    try {
      await t.step("the primary the Sentinels name", async () => {
        const line = await connectedTo(group.primary.addr, 0);
        assertMatch(String(line.valkey), /^sentinel master krt via 127\.0\.0\.1:\d+,/);
        assertEquals(await c.call("SET", "k", "v"), "OK");
      });
      await t.step("the replica, after a manual failover keeps the old primary up", async () => {
        const from = lines.length;
        const sentinel = await connectValkey(parseHostPort(group.sentinels[0]), {
          tlsCa: certs.ca.pem,
        });
        try {
          assertEquals(await sentinel.call("SENTINEL", "FAILOVER", group.master), "OK");
        } finally {
          sentinel.disconnect();
        }
        await connectedTo(group.replica.addr, from);
        // A write that reaches the demoted primary answers READONLY; the client then asks again.
        await eventually(
          "a write accepted by the new primary",
          async () => await c.call("SET", "k", "w").catch(() => undefined) === "OK" || undefined,
          30_000,
        );
        assertEquals(await c.call("GET", "k"), "w");
      });
      await t.step("the old primary again, once promoted after the new one is killed", async () => {
        const from = lines.length;
        await group.replica.stop();
        await connectedTo(group.primary.addr, from);
        // Replication is asynchronous: what the killed primary had last need not be here.
        assertEquals(await c.call("SET", "k", "x"), "OK");
        assertEquals(await c.call("GET", "k"), "x");
      });
    } finally {
      c.disconnect();
      await group.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...options,
  name:
    "a subscriber whose server stops answering without closing the connection notices by PING, and subscribes again once it answers",
  async fn() {
    const valkey = await startValkey();
    const received: string[] = [];
    const { client: c, lines, states } = client(settings(valkey.addr, { valkeyTimeout: 500 }), {
      subscription: {
        channels: ["krt-frozen"],
        onMessage: (_channel, message) => received.push(message),
      },
    });
    const pid = valkey.pid()!;
    try {
      await eventually("subscribed", () => c.connected || undefined);
      // A frozen server keeps its sockets open: only a PING can tell it is gone.
      Deno.kill(pid, "SIGSTOP");
      const lost = await eventually(
        "the lost line",
        () => lines.find((l) => l.msg === "valkey connection lost; reconnecting"),
        15_000,
      );
      assertEquals(lost.error, "Valkey did not answer the subscriber's PING within VALKEY_TIMEOUT");
      assertEquals(states, [true, false]);
      Deno.kill(pid, "SIGCONT");
      await eventually("subscribed again", () => c.connected || undefined, 15_000);
      await eventually("a message after the thaw", async () => {
        await valkeyCall(valkey, "PUBLISH", "krt-frozen", "after");
        return received.includes("after") || undefined;
      });
    } finally {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch {
        // already running or gone
      }
      c.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "a transaction the connection cannot take whole is refused whole: the server is never left inside MULTI",
  async fn() {
    const valkey = await startValkey();
    const { client: c, connected } = client(settings(valkey.addr, { valkeyTimeout: 10_000 }));
    const pid = valkey.pid()!;
    try {
      await connected();
      // A frozen server: every command waits, so the connection's 4096 places fill up.
      Deno.kill(pid, "SIGSTOP");
      const waiting = Array.from({ length: 4094 }, (_, i) => c.call("SET", `k${i}`, "v"));
      const refused = await c.transaction([["INCR", "a"], ["INCR", "b"]]).then(
        () => "taken",
        (err: Error) => err.message,
      );
      assertEquals(refused, "4096 commands are already waiting for Valkey");
      const after = c.call("GET", "k1");
      Deno.kill(pid, "SIGCONT");
      const replies = await Promise.all(waiting);
      // Had MULTI gone out alone, these would have been queued ("QUEUED"), not run.
      assert(replies.every((r) => r === "OK"), `replies: ${[...new Set(replies)]}`);
      assertEquals(await after, "v");
      assertEquals(await c.call("EXISTS", "a", "b"), 0);
    } finally {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch {
        // already running or gone
      }
      c.disconnect();
      await valkey.stop();
    }
  },
});
