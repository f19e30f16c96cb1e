/**
 * The Valkey TLS and Sentinel settings: PEM values are checked before Deno
 * sees them, with one line that never quotes the material; VALKEY_ADDR is
 * required unless VALKEY_SENTINELS is given; combinations that cannot work
 * are listed together; secrets stay out of the startup summary.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { parseCommandLine, summarizeConfig } from "../../config/command_line.ts";
import { AppError, ConfigError } from "../../shared/errors.ts";
import {
  describeValkeyTarget,
  loadValkeyCaFile,
  reconnectDelay,
  type ValkeySettings,
} from "../../shared/valkey_settings.ts";
import { parsePemCertificates, parsePemPrivateKey } from "../../lib/setting_values.ts";

const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
// A syntactically valid block: base64 of a DER-looking SEQUENCE.
const body = (seed: string) =>
  btoa("\x30\x82" + seed.padEnd(48, "x")).match(/.{1,64}/g)!.join("\n");
const CERT = `-----BEGIN CERTIFICATE-----\n${body("cert")}\n-----END CERTIFICATE-----\n`;
const KEY = `-----BEGIN PRIVATE KEY-----\n${body(SECRET)}\n-----END PRIVATE KEY-----\n`;

const WORKER_ENV: Record<string, string> = { ALLOWED_IMAGE_PREFIX: "ghcr.io/acme" };

function problems(mode: "web" | "worker", env: Record<string, string>): string[] {
  const err = assertThrows(() => parseCommandLine(mode, [], (n) => env[n]));
  assert(err instanceof ConfigError, `expected ConfigError, got ${err}`);
  return [...(err as ConfigError).problems];
}

Deno.test("parsePemCertificates() takes one certificate or a bundle, and says what is wrong otherwise", async (t) => {
  await t.step("one and two certificates", () => {
    assertEquals(parsePemCertificates(`  ${CERT}`), CERT);
    assertEquals(parsePemCertificates(CERT + "\n" + CERT), CERT + "\n" + CERT);
  });
  const cases: [string, string, string][] = [
    ["a path", "/etc/ssl/ca.pem", "is not PEM: it must start with a -----BEGIN ...----- line"],
    [
      "escaped newlines",
      CERT.replaceAll("\n", "\\n"),
      "is not PEM: it holds the two characters \\n instead of line breaks",
    ],
    ["a cut-off block", CERT.slice(0, 80), "is not PEM: block 1 is cut off"],
    ["a second block cut off", CERT + CERT.slice(0, 60), "is not PEM: block 2 is cut off"],
    ["a key instead", KEY, "block 1 is a PRIVATE KEY, not a CERTIFICATE"],
    [
      "no DER inside",
      "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----",
      "is not PEM: block 1 does not hold DER data",
    ],
  ];
  for (const [name, raw, message] of cases) {
    await t.step(name, () => {
      const err = assertThrows(() => parsePemCertificates(raw));
      assert(err.message.startsWith(message), err.message);
    });
  }
});

Deno.test("security: parsePemPrivateKey() refuses what it cannot use without quoting the key", async (t) => {
  assertEquals(parsePemPrivateKey(KEY), KEY);
  const cases: [string, string, string][] = [
    ["two keys", KEY + KEY, "holds 2 PEM blocks; give exactly one key"],
    [
      "an encrypted key",
      KEY.replaceAll("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
      "is an encrypted key; give it unencrypted",
    ],
    ["a certificate", CERT, "is a CERTIFICATE, not a PRIVATE KEY"],
    ["a damaged key", KEY.replace("\n", "\n!!"), "is not PEM: block 1 is cut off"],
  ];
  for (const [name, raw, message] of cases) {
    await t.step(name, () => {
      const err = assertThrows(() => parsePemPrivateKey(raw));
      assert(err.message.startsWith(message), err.message);
      assert(
        !err.message.includes(SECRET.slice(0, 20)) &&
          !err.message.includes(body(SECRET).slice(0, 20)),
      );
    });
  }
});

Deno.test("security: a bad TLS value is one line naming the setting, and no part of the value", () => {
  const found = problems("web", {
    ...WORKER_ENV,
    VALKEY_ADDR: "127.0.0.1:6379",
    GITHUB_OIDC_AUDIENCE: "a",
    GITHUB_ALLOWED_ORG: "acme",
    VALKEY_TLS_ENABLED: "true",
    VALKEY_TLS_CLIENT_CERT: CERT,
    VALKEY_TLS_CLIENT_KEY: KEY.slice(0, 90),
  });
  assertEquals(found, [
    "VALKEY_TLS_CLIENT_KEY (--valkey-tls-client-key): is not PEM: block 1 is cut off or has no matching -----END ...----- line",
  ]);
});

Deno.test("VALKEY_ADDR is required unless VALKEY_SENTINELS is given, and the two exclude each other", async (t) => {
  await t.step("neither: VALKEY_ADDR is required", () => {
    assertEquals(problems("worker", WORKER_ENV), ["VALKEY_ADDR (--valkey-addr) is required"]);
  });
  await t.step("Sentinels with a master name: no VALKEY_ADDR needed", () => {
    const parsed = parseCommandLine("worker", [], (n) =>
      ({
        ...WORKER_ENV,
        VALKEY_SENTINELS: "10.0.0.1:26379, sentinel-2:26379",
        VALKEY_SENTINEL_MASTER: "mymaster",
      })[n]);
    assert(parsed.kind === "config");
    assertEquals(parsed.config.valkeyAddr, undefined);
    assertEquals(parsed.config.valkeySentinels, [
      { host: "10.0.0.1", port: 26379 },
      { host: "sentinel-2", port: 26379 },
    ]);
  });
  await t.step("both, or Sentinels without a master name", () => {
    assertEquals(
      problems("worker", {
        ...WORKER_ENV,
        VALKEY_ADDR: "127.0.0.1:6379",
        VALKEY_SENTINELS: "127.0.0.1:26379",
      }),
      [
        "VALKEY_ADDR (--valkey-addr) and VALKEY_SENTINELS (--valkey-sentinels) exclude each other: with Sentinel the primary's address comes from the Sentinels",
        "VALKEY_SENTINEL_MASTER (--valkey-sentinel-master) is required with VALKEY_SENTINELS (--valkey-sentinels)",
      ],
    );
  });
  await t.step("a bad Sentinel address names the item", () => {
    assertEquals(
      problems("worker", { ...WORKER_ENV, VALKEY_SENTINELS: "127.0.0.1:26379,sentinel" }),
      [`VALKEY_SENTINELS (--valkey-sentinels) "127.0.0.1:26379,sentinel": "sentinel": expected host:port (IPv6 as [::1]:6379)`],
    );
  });
});

Deno.test("settings that cannot work together are listed at once", () => {
  assertEquals(
    problems("worker", {
      ...WORKER_ENV,
      VALKEY_ADDR: "127.0.0.1:6379",
      VALKEY_SENTINEL_MASTER: "mymaster",
      VALKEY_SENTINEL_PASSWORD: SECRET,
      VALKEY_TLS_CA_CERT: CERT,
      VALKEY_TLS_CA_FILE: "/etc/kuberollouttrigger/ca.pem",
      VALKEY_TLS_CLIENT_CERT: CERT,
    }),
    [
      "VALKEY_SENTINEL_MASTER (--valkey-sentinel-master) needs VALKEY_SENTINELS (--valkey-sentinels)",
      "VALKEY_SENTINEL_PASSWORD (--valkey-sentinel-password) needs VALKEY_SENTINELS (--valkey-sentinels)",
      "VALKEY_TLS_CA_CERT (--valkey-tls-ca-cert) needs VALKEY_TLS_ENABLED (--valkey-tls) set to true",
      "VALKEY_TLS_CLIENT_CERT (--valkey-tls-client-cert) needs VALKEY_TLS_ENABLED (--valkey-tls) set to true",
      "VALKEY_TLS_CLIENT_CERT (--valkey-tls-client-cert) and VALKEY_TLS_CLIENT_KEY (--valkey-tls-client-key) go together: give both or neither",
      "VALKEY_TLS_CA_FILE (--valkey-tls-ca-file) needs VALKEY_TLS_ENABLED (--valkey-tls) set to true",
      "VALKEY_TLS_CA_CERT (--valkey-tls-ca-cert) and VALKEY_TLS_CA_FILE (--valkey-tls-ca-file) exclude each other: choose one",
    ],
  );
});

Deno.test("security: the startup summary shows the CA file path and Sentinels, and only (set) for PEM values and passwords", () => {
  const env: Record<string, string> = {
    ...WORKER_ENV,
    VALKEY_SENTINELS: "127.0.0.1:26379",
    VALKEY_SENTINEL_MASTER: "mymaster",
    VALKEY_SENTINEL_USERNAME: "krt",
    VALKEY_SENTINEL_PASSWORD: SECRET,
    VALKEY_TLS_ENABLED: "true",
    VALKEY_TLS_CA_FILE: "/etc/kuberollouttrigger/ca.pem",
    VALKEY_TLS_CLIENT_CERT: CERT,
    VALKEY_TLS_CLIENT_KEY: KEY,
  };
  const parsed = parseCommandLine("worker", [], (n) => env[n]);
  assert(parsed.kind === "config");
  const summary = summarizeConfig("worker", parsed.origins);
  assertEquals(summary.VALKEY_SENTINELS, "127.0.0.1:26379");
  assertEquals(summary.VALKEY_SENTINEL_MASTER, "mymaster");
  assertEquals(summary.VALKEY_TLS_CA_FILE, "/etc/kuberollouttrigger/ca.pem");
  assertEquals(summary.VALKEY_TLS_CA_CERT, "(unset)");
  assertEquals(summary.VALKEY_TLS_CLIENT_CERT, "(set)");
  assertEquals(summary.VALKEY_TLS_CLIENT_KEY, "(set)");
  assertEquals(summary.VALKEY_SENTINEL_PASSWORD, "(set)");
  assert(!JSON.stringify(summary).includes(SECRET));
});

Deno.test("VALKEY_CLUSTER_NODES puts both modes in cluster mode instead of VALKEY_ADDR, and excludes VALKEY_ADDR and Sentinel", async (t) => {
  await t.step("cluster nodes alone: no VALKEY_ADDR needed, every seed parsed", () => {
    for (const mode of ["web", "worker"] as const) {
      const env: Record<string, string> = {
        ...WORKER_ENV,
        GITHUB_OIDC_AUDIENCE: "a",
        GITHUB_ALLOWED_ORG: "acme",
        VALKEY_CLUSTER_NODES: "clustercfg.example.cache.amazonaws.com:6379, [::1]:7001",
      };
      const parsed = parseCommandLine(mode, [], (n) => env[n]);
      assert(parsed.kind === "config");
      assertEquals(parsed.config.valkeyAddr, undefined);
      assertEquals(parsed.config.valkeyClusterNodes, [
        { host: "clustercfg.example.cache.amazonaws.com", port: 6379 },
        { host: "::1", port: 7001 },
      ]);
    }
  });
  await t.step("with VALKEY_ADDR or VALKEY_SENTINELS: both problems at once", () => {
    assertEquals(
      problems("worker", {
        ...WORKER_ENV,
        VALKEY_ADDR: "127.0.0.1:6379",
        VALKEY_SENTINELS: "127.0.0.1:26379",
        VALKEY_SENTINEL_MASTER: "m",
        VALKEY_CLUSTER_NODES: "127.0.0.1:7000",
      }),
      [
        "VALKEY_ADDR (--valkey-addr) and VALKEY_SENTINELS (--valkey-sentinels) exclude each other: with Sentinel the primary's address comes from the Sentinels",
        "VALKEY_ADDR (--valkey-addr) and VALKEY_CLUSTER_NODES (--valkey-cluster-nodes) exclude each other: in cluster mode the nodes come from the cluster's slot map",
        "VALKEY_SENTINELS (--valkey-sentinels) and VALKEY_CLUSTER_NODES (--valkey-cluster-nodes) exclude each other: a Valkey Cluster fails over by itself, without Sentinel",
      ],
    );
  });
  await t.step("a bad node names the item", () => {
    assertEquals(
      problems("worker", { ...WORKER_ENV, VALKEY_CLUSTER_NODES: "node-1:7000,node-2" }),
      [
        `VALKEY_CLUSTER_NODES (--valkey-cluster-nodes) "node-1:7000,node-2": "node-2": expected host:port (IPv6 as [::1]:6379)`,
      ],
    );
  });
});

Deno.test("in a cluster the logs name the seeds, and reconnects back off to at most a second (a failover is wanted fast)", () => {
  const base = {
    valkeyUsername: "",
    valkeyPassword: "",
    valkeyTls: false,
    valkeyTimeout: 1000,
  };
  const cluster = {
    ...base,
    valkeyClusterNodes: [{ host: "10.0.0.1", port: 7000 }, { host: "::1", port: 7001 }],
  };
  assertEquals(describeValkeyTarget(cluster), "cluster via 10.0.0.1:7000,[::1]:7001");
  const one = { ...base, valkeyAddr: { host: "10.0.0.1", port: 6379 } };
  const longest = (settings: typeof base) =>
    Math.max(...Array.from({ length: 200 }, () => reconnectDelay(20, settings)));
  assert(longest(cluster) <= 1000, `cluster backoff reached ${longest(cluster)} ms`);
  assert(longest(one) > 1000, "one server backs off further");
});

Deno.test("loadValkeyCaFile() reads the worker's CA file, and names the file, never its content, when it cannot", async (t) => {
  const base: ValkeySettings = {
    valkeyAddr: { host: "127.0.0.1", port: 6379 },
    valkeyUsername: "",
    valkeyPassword: "",
    valkeyTls: false,
    valkeyTimeout: 2000,
  };
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
      () =>
        Promise.reject(
          new Deno.errors.NotCapable("Requires read access to /tmp/ca.pem"),
        ),
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
      assert(
        !err.message.includes(SECRET) && !err.message.includes("just text"),
      );
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
