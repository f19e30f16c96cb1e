import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { parseCommandLine, renderHelp, summarizeConfig } from "../../config/command_line.ts";
import { ConfigError } from "../../shared/errors.ts";
import { SETTINGS, settingsFor } from "../../config/settings.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";

const WEB_ENV: Record<string, string> = {
  VALKEY_ADDR: "127.0.0.1:6379",
  ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
  GITHUB_OIDC_AUDIENCE: "https://example",
  GITHUB_ALLOWED_ORG: "acme",
};

function parse(mode: "web" | "worker", args: string[], env: Record<string, string>) {
  const result = parseCommandLine(mode, args, (name) => env[name]);
  if (result.kind !== "config") throw new Error("expected a config");
  return result;
}

function problems(fn: () => unknown): string[] {
  const err = assertThrows(fn);
  assert(err instanceof ConfigError, `expected ConfigError, got ${err}`);
  return [...(err as ConfigError).problems];
}

Deno.test("parseCommandLine() lists every missing required setting in one error", () => {
  const found = problems(() => parseCommandLine("web", [], () => undefined));
  assertEquals(found, [
    "VALKEY_ADDR (--valkey-addr) is required",
    "ALLOWED_IMAGE_PREFIX (--allowed-image-prefix) is required",
    "GITHUB_OIDC_AUDIENCE (--github-oidc-audience) is required",
    "GITHUB_ALLOWED_ORG (--github-allowed-org) is required",
  ]);
});

Deno.test("parseCommandLine() reports invalid values together with missing ones", () => {
  const found = problems(() =>
    parseCommandLine(
      "web",
      ["--valkey-tls=maybe"],
      (n) => ({ LOG_LEVEL: "loud", VALKEY_ADDR: "redis:abc" } as Record<string, string>)[n],
    )
  );
  assertEquals(found.length, 6);
  assertMatch(found.join("\n"), /VALKEY_ADDR \(--valkey-addr\) "redis:abc": port must be a number/);
  assertMatch(found.join("\n"), /LOG_LEVEL/);
  assertMatch(found.join("\n"), /--valkey-tls: expected true or false/);
});

Deno.test("parseCommandLine(): a flag beats env, env beats the default", () => {
  const { config, origins } = parse("web", ["--valkey-channel", "from-flag"], {
    ...WEB_ENV,
    VALKEY_CHANNEL: "from-env",
    LOG_LEVEL: "warn",
  });
  assertEquals(config.valkeyChannel, "from-flag");
  assertEquals(origins.valkeyChannel.source, "flag");
  assertEquals(config.logLevel, "warn");
  assertEquals(config.listenAddr, { host: "0.0.0.0", port: 8080 });
  assertEquals(config.oidcIssuer, "https://token.actions.githubusercontent.com");
});

Deno.test("parseCommandLine() reads booleans as --x, --no-x and --x=false", () => {
  assertEquals(
    parse("web", ["--dev-mode", "--listen-addr", "127.0.0.1:8080"], WEB_ENV).config.devMode,
    true,
  );
  assertEquals(
    parse("web", ["--no-valkey-tls"], { ...WEB_ENV, VALKEY_TLS_ENABLED: "true" }).config.valkeyTls,
    false,
  );
  assertEquals(
    parse("web", ["--valkey-tls=false"], { ...WEB_ENV, VALKEY_TLS_ENABLED: "true" }).config
      .valkeyTls,
    false,
  );
  assertEquals(parse("web", [], { ...WEB_ENV, VALKEY_TLS_ENABLED: "TRUE" }).config.valkeyTls, true);
});

Deno.test("parseCommandLine() rejects unknown flags, positionals and other modes' flags as usage errors", () => {
  for (const args of [["--bogus"], ["extra"], ["--kubeconfig", "/x"], ["--valkey-addr"]]) {
    const err = assertThrows(() => parseCommandLine("web", args, (n) => WEB_ENV[n]));
    assertEquals((err as ConfigError).code, "ERR_USAGE");
  }
});

Deno.test("parseCommandLine() ignores other modes' environment variables: web's config has no worker setting", () => {
  const { config } = parse("web", [], {
    ...WEB_ENV,
    KUBECONFIG: "/etc/passwd",
    WATCH_NAMESPACES: "BAD NAME",
  });
  assertEquals(["kubeconfig", "watchNamespaces"].filter((key) => key in config), []);
  assertEquals(config.valkeyChannel, "kuberollouttrigger");
});

Deno.test("parseCommandLine() parses lists, IPv6 addresses and durations", () => {
  const { config } = parse("web", [], {
    ...WEB_ENV,
    VALKEY_ADDR: "[::1]:6380",
    ALLOWED_IMAGE_PREFIX: " ghcr.io/acme/ , registry.example.com:5000/team ",
    GITHUB_ALLOWED_ORG: "Acme,Other",
    GITHUB_OIDC_MAX_TOKEN_AGE: "1h30m",
  });
  assertEquals(config.valkeyAddr, { host: "::1", port: 6380 });
  assertEquals(config.allowedImagePrefixes, ["ghcr.io/acme", "registry.example.com:5000/team"]);
  assertEquals(config.allowedOrgs, ["acme", "other"]);
  assertEquals(config.maxTokenAge, 5_400_000);
});

Deno.test("security: an http issuer is refused unless it is on loopback", () => {
  assertMatch(
    problems(() => parse("web", [], { ...WEB_ENV, GITHUB_OIDC_ISSUER: "http://token.example.com" }))
      .join(),
    /https/,
  );
  assertEquals(
    parse("web", [], { ...WEB_ENV, GITHUB_OIDC_ISSUER: "http://127.0.0.1:9000" }).config.oidcIssuer,
    "http://127.0.0.1:9000",
  );
});

Deno.test("security: IDs must be numeric strings and prefixes must name a registry", () => {
  assertMatch(
    problems(() => parse("web", [], { ...WEB_ENV, GITHUB_ALLOWED_OWNER_IDS: "12,abc" })).join(),
    /"abc" is not a numeric ID/,
  );
  assertMatch(
    problems(() => parse("web", [], { ...WEB_ENV, ALLOWED_IMAGE_PREFIX: "acme" })).join(),
    /registry host/,
  );
});

Deno.test("renderHelp() documents every setting of the mode with env var, default and meaning", () => {
  for (const mode of ["web", "worker"] as const) {
    const help = renderHelp(mode);
    for (const [, s] of settingsFor(mode)) {
      assert(help.includes(`--${s.flag}`), `${mode} help lacks --${s.flag}`);
      assert(help.includes(`env ${s.env}`), `${mode} help lacks ${s.env}`);
      assert(help.includes(s.help), `${mode} help lacks the meaning of ${s.env}`);
    }
  }
});

Deno.test("security: summarizeConfig() never prints a secret", () => {
  const { origins } = parse("web", ["--valkey-password", "hunter2-secret"], WEB_ENV);
  const summary = summarizeConfig("web", origins);
  assertEquals(summary.VALKEY_PASSWORD, "(set)");
  assert(!JSON.stringify(summary).includes("hunter2"));
  assertEquals(summary.VALKEY_ADDR, "127.0.0.1:6379");
});

Deno.test("every setting has an env var and a flag that no other setting uses", () => {
  const envs = Object.values(SETTINGS).map((s) => s.env);
  const flags = Object.values(SETTINGS).map((s) => s.flag);
  assertEquals(new Set(envs).size, envs.length);
  assertEquals(new Set(flags).size, flags.length);
});

Deno.test("security: checkCombinations() refuses dev mode on a non-loopback address and a kubeconfig with a local inventory", () => {
  assertMatch(
    problems(() => parse("web", ["--dev-mode"], WEB_ENV)).join(),
    /DEV_MODE .* needs a loopback/,
  );
  const worker = {
    VALKEY_ADDR: "127.0.0.1:6379",
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    KUBECONFIG: "/k",
    LOCAL_INVENTORY: "/l",
  };
  assertMatch(problems(() => parse("worker", [], worker)).join(), /exclude each other/);
});

Deno.test("security: usage errors never repeat a value, only a flag's name", async (t) => {
  const secret = "hunter2-s3cret";
  const cases: [string[], RegExp][] = [
    [["--valkey-password=", secret], /unexpected argument/],
    [[secret], /unexpected argument/],
    [[`--valkey-pasword=${secret}`], /unknown flag --valkey-pasword$/],
    [[`-Z${secret}`], /unknown flag -Z$/],
    [[`--dev-mode=${secret}`], /--dev-mode: expected true or false/],
    [["--valkey-addr"], /flag --valkey-addr has a missing or unexpected value/],
  ];
  for (const [args, expected] of cases) {
    await t.step(args.join(" "), () => {
      const err = assertThrows(() => parseCommandLine("web", args, (n) => WEB_ENV[n]), {
        instanceOf: ConfigError,
      });
      assertMatch(err.message, expected);
      assert(!err.message.includes(secret), `the secret leaked: ${err.message}`);
    });
  }
});

Deno.test("security: allowed orgs and repositories must be ASCII GitHub names, lower-cased as ASCII", () => {
  // U+212A KELVIN SIGN: toLowerCase() turns it into "k".
  for (const org of ["\u212Aube", "ac me", "acme/app"]) {
    assertMatch(
      problems(() => parse("web", [], { ...WEB_ENV, GITHUB_ALLOWED_ORG: org })).join(),
      /GITHUB_ALLOWED_ORG.*is not a GitHub organisation or user name/,
    );
  }
  for (const repo of ["\u212Aube/app", "acme/\u212Ait", "acme/", "acme/app/x", "acme/.."]) {
    assertMatch(
      problems(() => parse("web", [], { ...WEB_ENV, GITHUB_ALLOWED_REPOSITORIES: repo })).join(),
      /GITHUB_ALLOWED_REPOSITORIES.*is not owner\/repo/,
    );
  }
  const { config } = parse("web", [], {
    ...WEB_ENV,
    GITHUB_ALLOWED_ORG: "Acme,My_Org",
    GITHUB_ALLOWED_REPOSITORIES: "Acme/App.js",
  });
  assertEquals(config.allowedOrgs, ["acme", "my_org"]);
  assertEquals(config.allowedRepositories, ["acme/app.js"]);
});

Deno.test("security: REPORT_VERIFY_KEYS needs EVENT_SIGNING_KEY, and CLUSTERS may name only clusters with a key", async () => {
  const [web, east] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const keys = `east=${east.publicLine}`;
  assertEquals(
    problems(() => parse("web", [], { ...WEB_ENV, REPORT_VERIFY_KEYS: keys })),
    [
      "REPORT_VERIFY_KEYS (--report-verify-keys) needs EVENT_SIGNING_KEY: web signs the list of clusters each event waits for, so Valkey write access cannot drop one",
    ],
  );
  const signed = { ...WEB_ENV, REPORT_VERIFY_KEYS: keys, EVENT_SIGNING_KEY: web.privatePem };
  assertEquals(parse("web", [], signed).config.reportVerifyKeys.size, 1);
  assertMatch(
    problems(() => parse("web", [], { ...signed, CLUSTERS: "east,west,north" })).join(),
    /CLUSTERS .* without a key in REPORT_VERIFY_KEYS: west, north;/,
  );
  assertEquals(parse("web", [], { ...signed, CLUSTERS: "east" }).config.clusters, ["east"]);
  // Without report keys, CLUSTERS is free as before.
  assertEquals(parse("web", [], { ...WEB_ENV, CLUSTERS: "west" }).config.clusters, ["west"]);
});

Deno.test("parseCommandLine() names each REPOSITORY_RULES problem on its own line, and patterns no allowed image can match", () => {
  const found = problems(() =>
    parse("web", [], {
      ...WEB_ENV,
      REPOSITORY_RULES: "acme -> ghcr.io/acme/app; acme/app -> ghcr.io/ACME/app",
    })
  );
  assertEquals(found.length, 2, found.join("\n"));
  assertMatch(found[0], /^REPOSITORY_RULES \(--repository-rules\): rule 1: /);
  assertMatch(found[1], /^REPOSITORY_RULES \(--repository-rules\): rule 2: .*write it as/);
  const outside = problems(() =>
    parse("web", [], { ...WEB_ENV, REPOSITORY_RULES: "acme/app -> ghcr.io/other/app" })
  );
  assertMatch(outside.join(), /rule 1: ghcr\.io\/other\/app is not under ALLOWED_IMAGE_PREFIX/);
});

Deno.test("security: checkCombinations() refuses notifications receivers could not verify or that a timeout would lose, and REQUIRE_OPT_IN without signatures", () => {
  const notify = { ...WEB_ENV, NOTIFY_URLS: "https://hooks.example/x" };
  assertMatch(problems(() => parse("web", [], notify)).join(), /needs NOTIFY_SECRET/);
  const secret = "a".repeat(32);
  // Slack does not check a signature: no secret needed.
  parse("web", [], { ...notify, NOTIFY_FORMAT: "slack" });
  parse("web", [], { ...notify, NOTIFY_SECRET: secret });
  assertMatch(
    problems(() =>
      parse("web", [], {
        ...notify,
        NOTIFY_SECRET: secret,
        STATUS_TTL: "30s",
        STATUS_REPORT_TIMEOUT: "30s",
      })
    ).join(),
    /needs STATUS_TTL .* longer than STATUS_REPORT_TIMEOUT/,
  );
  const worker = {
    VALKEY_ADDR: "127.0.0.1:6379",
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    REQUIRE_OPT_IN: "true",
  };
  assertMatch(
    problems(() => parse("worker", [], worker)).join(),
    /REQUIRE_OPT_IN .* needs EVENT_VERIFY_KEYS/,
  );
});
