/**
 * The command line as users meet it: the real program under `deno run` with
 * the permission sets from deno.json.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { startProgram, startWeb } from "../helpers/program.ts";
import { settingsFor } from "../../shared/settings.ts";

const WEB_ENV = {
  VALKEY_ADDR: "127.0.0.1:1",
  ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
  GITHUB_OIDC_AUDIENCE: "https://example",
  GITHUB_ALLOWED_ORG: "acme",
};

async function run(args: string[], env: Record<string, string> = {}) {
  const program = startProgram({ args, env, permissions: ["-P=web"] });
  const status = await program.status;
  return { code: status.code, stderr: program.stderr(), logs: program.logs };
}

Deno.test("no command, an unknown command or an unknown flag exits 2 with a one-line error and usage", async (t) => {
  for (
    const [args, error] of [
      [[], /kuberollouttrigger: a command is required/],
      [["serve"], /unknown command "serve"/],
      [["web", "--bogus"], /unknown flag --bogus/],
    ] as const
  ) {
    await t.step(args.join(" ") || "(nothing)", async () => {
      const { code, stderr } = await run([...args], WEB_ENV);
      assertEquals(code, 2);
      assertMatch(stderr, error);
      assertMatch(stderr, /Usage: kuberollouttrigger <command>/);
    });
  }
});

Deno.test("web with every required setting missing exits 2 naming all of them in one line", async () => {
  const { code, stderr } = await run(["web"]);
  assertEquals(code, 2);
  const line = stderr.split("\n").find((l) => l.includes("invalid configuration")) ?? "";
  for (
    const env of [
      "VALKEY_ADDR",
      "ALLOWED_IMAGE_PREFIX",
      "GITHUB_OIDC_AUDIENCE",
      "GITHUB_ALLOWED_ORG",
    ]
  ) {
    assert(line.includes(`${env} (--`), `${env} missing from: ${line}`);
  }
});

Deno.test("web --help lists every web setting and exits 0", async () => {
  const program = startProgram({ args: ["web", "--help"], permissions: ["-P=web"] });
  const status = await program.status;
  assertEquals(status.code, 0);
  const text = program.logs.map((l) => String(l.text ?? "")).join("\n");
  for (const [, s] of settingsFor("web")) {
    assert(text.includes(`--${s.flag}`) && text.includes(s.env), s.env);
  }
});

Deno.test("version prints the version", async () => {
  const program = startProgram({ args: ["version"], permissions: ["-P=web"] });
  assertEquals((await program.status).code, 0);
  assertMatch(String(program.logs[0].text), /^kuberollouttrigger \d+\.\d+\.\d+/);
});

Deno.test("web logs its effective configuration at startup: flag over env, secrets hidden", async () => {
  const { program } = await startWeb({
    ...WEB_ENV,
    VALKEY_CHANNEL: "from-env",
    VALKEY_PASSWORD: "s3cret-valkey-password",
  }, ["--valkey-channel", "from-flag"]);
  try {
    const start = await program.waitForLog((l) => l.msg === "starting");
    const config = start.config as Record<string, string>;
    assertEquals(config.VALKEY_CHANNEL, "from-flag");
    assertEquals(config.VALKEY_PASSWORD, "(set)");
    assertEquals(start.mode, "web");
  } finally {
    assertEquals(await program.stop(), 0, "SIGTERM ends web cleanly");
  }
  assert(!JSON.stringify(program.logs).includes("s3cret"), "the password must never be logged");
  assert(!program.stderr().includes("s3cret"));
});

Deno.test("security: web runs with net and env only, also when started with the compiled binary's permissions", async (t) => {
  for (const set of ["web", "compiled"]) {
    await t.step(`-P=${set}`, async () => {
      const { program } = await startWeb(WEB_ENV, [], [`-P=${set}`]);
      try {
        const start = await program.waitForLog((l) => l.msg === "starting");
        const permissions = start.permissions as Record<string, string>;
        assertEquals(permissions.net, "granted");
        assertEquals(permissions.env, "granted");
        for (const kind of ["read", "write", "run", "ffi", "sys"]) {
          assert(
            !permissions[kind].startsWith("granted"),
            `${kind} must not be granted to web (was ${permissions[kind]})`,
          );
        }
      } finally {
        await program.stop();
      }
    });
  }
});
