/**
 * Valkey connections against a real Valkey-compatible server: what their log
 * says when a connection is closed on purpose, when it drops, and when the
 * server's error reply quotes the command it refused.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { eventually } from "../helpers/cluster.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkey } from "../helpers/valkey.ts";
import { createLogger, type LogFields } from "../../shared/log.ts";
import { parseHostPort } from "../../shared/setting_values.ts";
import { createValkeyConnection, describeValkeyError } from "../../shared/valkey.ts";

const skip = withoutValkey();
const options = { ignore: skip, sanitizeOps: false, sanitizeResources: false };
const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;

function recordingLogger() {
  const lines: (LogFields & { msg: string; level: string })[] = [];
  const logger = createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  return { lines, logger };
}

function settings(addr: string, password = "") {
  return {
    valkeyAddr: parseHostPort(addr),
    valkeyUsername: password ? "worker" : "",
    valkeyPassword: password,
    valkeyTls: false,
    valkeyTimeout: 2000,
  };
}

Deno.test("describeValkeyError() keeps a reply's code and words, and drops what it quotes", async (t) => {
  const reply = (message: string) => Object.assign(new Error(message), { name: "ReplyError" });
  const cases: [string, Error, string][] = [
    [
      "an unknown command echoing its arguments",
      reply(`ERR unknown command 'auth', with args beginning with: 'worker' '${SECRET}' `),
      "ERR unknown command (rest of the reply not shown)",
    ],
    [
      "a reply without quotes",
      reply("WRONGPASS invalid username-password pair or user is disabled."),
      "WRONGPASS invalid username-password pair or user is disabled.",
    ],
    [
      "a client error (not a reply)",
      new Error("connect ECONNREFUSED 127.0.0.1:1"),
      "connect ECONNREFUSED 127.0.0.1:1",
    ],
  ];
  for (const [name, err, expected] of cases) {
    await t.step(name, () => assertEquals(describeValkeyError(err), expected));
  }
});

Deno.test({
  ...options,
  name: "security: a Valkey reply that quotes the password never reaches the log",
  async fn() {
    // With AUTH renamed away, the server answers AUTH with "unknown command 'auth',
    // with args beginning with: '<user>' '<password>'".
    const valkey = await startValkey(["--rename-command", "AUTH", ""]);
    const { lines, logger } = recordingLogger();
    const client = createValkeyConnection(settings(valkey.addr, SECRET), {
      name: "test",
      logger,
      offlineQueue: false,
    });
    try {
      const error = await eventually(
        "the connection error line",
        () => lines.find((l) => l.msg === "valkey connection error"),
      );
      assertEquals(error.error, "ERR unknown command (rest of the reply not shown)");
      assert(!JSON.stringify(lines).includes(SECRET), "the password reached the log");
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  ...options,
  name:
    "createValkeyConnection() logs a requested disconnect as closed (info) and a dropped connection as lost (warn)",
  async fn(t) {
    const valkey = await startValkey();
    try {
      await t.step("disconnect() is closed, not lost", async () => {
        const { lines, logger } = recordingLogger();
        const states: boolean[] = [];
        const client = createValkeyConnection(settings(valkey.addr), {
          name: "test",
          logger,
          offlineQueue: false,
          onStateChange: (connected) => states.push(connected),
        });
        await eventually("connected", () => states.includes(true) || undefined);
        client.disconnect();
        await eventually("closed", () => lines.find((l) => l.msg === "valkey connection closed"));
        assertEquals(lines.map((l) => [l.level, l.msg]), [
          ["info", "valkey connected"],
          ["info", "valkey connection closed"],
        ]);
        assertEquals(states, [true, false]);
      });
      await t.step("a server that goes away is lost, and the client reconnects", async () => {
        const { lines, logger } = recordingLogger();
        const client = createValkeyConnection(settings(valkey.addr), {
          name: "test",
          logger,
          offlineQueue: false,
        });
        try {
          await eventually("connected", () => lines.find((l) => l.msg === "valkey connected"));
          await valkey.restart();
          const lost = await eventually(
            "lost",
            () => lines.find((l) => l.msg === "valkey connection lost; reconnecting"),
          );
          assertEquals(lost.level, "warn");
          await eventually(
            "reconnected",
            () => lines.filter((l) => l.msg === "valkey connected").length === 2 || undefined,
          );
        } finally {
          client.disconnect();
        }
      });
    } finally {
      await valkey.stop();
    }
  },
});
