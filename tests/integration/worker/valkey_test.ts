/**
 * Valkey connections against a real Valkey-compatible server: what their log
 * says when a connection is closed on purpose, when it drops, and when the
 * server's error reply quotes the command it refused; TLS with a private CA by
 * host name and by IP address, and the one line each TLS mistake gives.
 */

import { assert, assertEquals, assertMatch } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/cluster.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import {
  generateValkeyCertificates,
  type ServerTls,
  startSentinelGroup,
  startValkey,
  type ValkeyCertificates,
} from "../../helpers/valkey.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { parseHostPort } from "../../../lib/setting_values.ts";
import { createValkeyConnection } from "../../../worker/valkey.ts";
import { describeConnectionError, describeValkeyError } from "../../../shared/valkey_errors.ts";
import { loadValkeyCaFile, type ValkeySettings } from "../../../shared/valkey_settings.ts";
import { AppError } from "../../../shared/errors.ts";

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

function tlsSettings(addr: string, extra: Partial<ValkeySettings> = {}): ValkeySettings {
  return { ...settings(addr), valkeyTls: true, ...extra };
}

/** Connects with `config` and resolves with the first "connected" or "error" line. */
async function firstOutcome(config: ValkeySettings) {
  const { lines, logger } = recordingLogger();
  const client = createValkeyConnection(config, { name: "test", logger, offlineQueue: false });
  try {
    return await eventually(
      "connected or an error",
      () => lines.find((l) => l.msg === "valkey connected" || l.msg === "valkey connection error"),
    );
  } finally {
    client.disconnect();
  }
}

Deno.test({
  ...options,
  name:
    "TLS: connects with a private CA given as a value, by IP address (IP SAN) and by host name, and to a server requiring a client certificate",
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "krt-valkey-tls-" });
    const certs = await generateValkeyCertificates(dir);
    const valkey = await startValkey([], { tls: certs.server });
    const ca = certs.ca.pem;
    try {
      await t.step("by IP address", async () => {
        const line = await firstOutcome(tlsSettings(valkey.addr, { valkeyTlsCaCert: ca }));
        assertEquals(line.msg, "valkey connected", String(line.error));
      });
      await t.step("by host name", async () => {
        const line = await firstOutcome(
          tlsSettings(`localhost:${valkey.port}`, { valkeyTlsCaCert: ca }),
        );
        assertEquals(line.msg, "valkey connected", String(line.error));
      });
      await t.step("with the CA in a bundle after another CA", async () => {
        const bundle = certs.otherCa.pem + ca;
        const line = await firstOutcome(tlsSettings(valkey.addr, { valkeyTlsCaCert: bundle }));
        assertEquals(line.msg, "valkey connected", String(line.error));
      });
      await t.step("a client certificate when the server requires one", async () => {
        await valkey.restartWithTls({ ...certs.server, authClients: true });
        const without = await firstOutcome(tlsSettings(valkey.addr, { valkeyTlsCaCert: ca }));
        assertEquals(without.msg, "valkey connection error");
        assertMatch(String(without.error), /set VALKEY_TLS_CLIENT_CERT and VALKEY_TLS_CLIENT_KEY/);
        const withCert = await firstOutcome(tlsSettings(valkey.addr, {
          valkeyTlsCaCert: ca,
          valkeyTlsClientCert: certs.client.certPem,
          valkeyTlsClientKey: certs.client.keyPem,
        }));
        assertEquals(withCert.msg, "valkey connected", String(withCert.error));
      });
    } finally {
      await valkey.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...options,
  name:
    "TLS: a wrong name, an untrusted CA, an expired certificate and a plaintext server each give one line saying what to fix",
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "krt-valkey-tls-" });
    const certs: ValkeyCertificates = await generateValkeyCertificates(dir);
    const valkey = await startValkey([], { tls: certs.wrongName });
    const config = tlsSettings(valkey.addr, { valkeyTlsCaCert: certs.ca.pem, valkeyTimeout: 1000 });
    const cases: [string, ServerTls | undefined, ValkeySettings, RegExp][] = [
      [
        "a certificate for other names, by IP address",
        certs.wrongName,
        config,
        /^Valkey's TLS certificate does not name the host connected to; .* \[ERR_TLS_CERT_ALTNAME_INVALID\]$/,
      ],
      [
        "a certificate for other names, by host name",
        certs.wrongName,
        { ...config, valkeyAddr: parseHostPort(`localhost:${valkey.port}`) },
        /^Valkey's TLS certificate does not name the host connected to; /,
      ],
      [
        "a CA that is not trusted",
        certs.untrusted,
        config,
        /^Valkey's TLS certificate is not signed by a trusted CA; set VALKEY_TLS_CA_CERT/,
      ],
      [
        "no private CA given: the root CAs do not know the test CA",
        certs.server,
        { ...config, valkeyTlsCaCert: undefined },
        /^Valkey's TLS certificate is not signed by a trusted CA; /,
      ],
      [
        "an expired certificate",
        certs.expired,
        config,
        /^Valkey's TLS certificate has expired; renew the server's certificate \[CERT_HAS_EXPIRED\]$/,
      ],
      [
        "a server without TLS",
        undefined,
        config,
        /no TLS handshake within VALKEY_TIMEOUT; the server may not speak TLS on that port/,
      ],
      [
        "TLS off against a TLS server",
        certs.server,
        { ...config, valkeyTls: false },
        /the server closed the connection; if it expects TLS, set VALKEY_TLS_ENABLED=true/,
      ],
    ];
    let current: ServerTls | undefined = certs.wrongName;
    try {
      for (const [name, tls, settings, expected] of cases) {
        await t.step(name, async () => {
          if (tls !== current) await valkey.restartWithTls(tls);
          current = tls;
          const line = await firstOutcome(settings);
          assertEquals(line.msg, "valkey connection error");
          assertMatch(String(line.error), expected);
        });
      }
    } finally {
      await valkey.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("loadValkeyCaFile() reads the worker's CA file, and names the file, never its content, when it cannot", async (t) => {
  const base: ValkeySettings = settings("127.0.0.1:6379");
  const pem = `-----BEGIN CERTIFICATE-----\n${
    btoa("0".repeat(40)).replace(/^../, "MD")
  }\n-----END CERTIFICATE-----\n`;
  await t.step("no file: the settings as they were", async () => {
    assertEquals(await loadValkeyCaFile({ ...base, valkeyTlsCaFile: "" }), {
      ...base,
      valkeyTlsCaFile: "",
    });
  });
  await t.step("a file outside the worker's read permission", async () => {
    const err = await loadValkeyCaFile(
      { ...base, valkeyTlsCaFile: "/tmp/ca.pem" },
      () => Promise.reject(new Deno.errors.NotCapable("Requires read access to /tmp/ca.pem")),
    ).catch((e) => e);
    assert(err instanceof AppError && err.code === "ERR_CONFIG");
    assertEquals(
      err.message,
      "VALKEY_TLS_CA_FILE /tmp/ca.pem cannot be read (NotCapable); the worker may read only under /etc/kuberollouttrigger: mount the CA there",
    );
  });
  await t.step("a file that is not PEM, or a key by mistake", async () => {
    const secret = `-----BEGIN PRIVATE KEY-----\nMIG${SECRET}\n-----END PRIVATE KEY-----\n`;
    for (const text of ["just text", secret]) {
      const err = await loadValkeyCaFile(
        { ...base, valkeyTlsCaFile: "/etc/kuberollouttrigger/ca.pem" },
        () => Promise.resolve(text),
      ).catch((e) => e);
      assert(err instanceof AppError && err.code === "ERR_CONFIG");
      assertMatch(
        err.message,
        /^VALKEY_TLS_CA_FILE \/etc\/kuberollouttrigger\/ca.pem (is not PEM|block 1 is)/,
      );
      assert(!err.message.includes(SECRET) && !err.message.includes("just text"));
    }
  });
  await t.step("a PEM certificate", async () => {
    const loaded = await loadValkeyCaFile(
      { ...base, valkeyTlsCaFile: "/etc/kuberollouttrigger/ca.pem" },
      () => Promise.resolve(pem),
    );
    assertEquals(loaded.valkeyTlsCaCert, pem);
  });
});

Deno.test("describeConnectionError() says the same about every retry, so it is logged once", () => {
  const attempt = (ms: number) =>
    new Error(
      `All sentinels are unreachable. Retrying from scratch after ${ms}ms. Last error: connect ECONNREFUSED 127.0.0.1:26379`,
    );
  assertEquals(
    describeConnectionError(attempt(523), false),
    "All sentinels are unreachable. Last error: connect ECONNREFUSED 127.0.0.1:26379",
  );
  assertEquals(
    describeConnectionError(attempt(812), false),
    describeConnectionError(attempt(97), false),
  );
});

Deno.test({
  ...options,
  name:
    "Sentinel over TLS: the Sentinels and the primary they name are verified with the private CA, also after a failover",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "krt-sentinel-tls-" });
    const certs = await generateValkeyCertificates(dir);
    const group = await startSentinelGroup(dir, { tls: certs.server });
    const { lines, logger } = recordingLogger();
    const client = createValkeyConnection({
      ...settings("127.0.0.1:1"),
      valkeyAddr: undefined,
      valkeyTls: true,
      valkeyTlsCaCert: certs.ca.pem,
      valkeySentinels: group.sentinels.map(parseHostPort),
      valkeySentinelMaster: group.master,
    }, { name: "test", logger, offlineQueue: false });
    try {
      const connected = await eventually(
        "connected",
        () => lines.find((l) => l.msg === "valkey connected"),
      );
      assertEquals(connected.primary, group.primary.addr);
      assertMatch(String(connected.valkey), /^sentinel master krt via 127\.0\.0\.1:\d+,/);
      assertEquals(await client.set("k", "v"), "OK");
      await group.primary.stop();
      const after = await eventually(
        "connected to the new primary",
        () => lines.find((l) => l.msg === "valkey connected" && l.primary === group.replica.addr),
        20_000,
      );
      assertEquals(after.level, "info");
      assertEquals(await client.get("k"), "v");
    } finally {
      client.disconnect();
      await group.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
