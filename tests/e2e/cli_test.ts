/**
 * The command line as users meet it: the real program under `deno run` with
 * the permission sets from deno.json.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { type Program, ROOT, startProgram, startWeb } from "../helpers/program.ts";
import { describeStartupFailure } from "../../main.ts";
import { AppError } from "../../shared/errors.ts";
import { settingsFor } from "../../config/settings.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkey } from "../helpers/valkey.ts";

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

const LOCAL_INVENTORY = `${ROOT}k8s/dev/local-inventory.yaml`;
// What Deno itself prints for `-P=<set>` (permissions from deno.json).
const DENO_NOTICE = /^Warning Permissions in the config file is an experimental feature/;

/** stderr without Deno's own notice: must be empty for a clean one-line failure. */
function strayStderr(program: Program): string[] {
  return program.stderr().split("\n").filter((l) => l.trim() !== "" && !DENO_NOTICE.test(l));
}

Deno.test("describeStartupFailure() keeps an AppError's code and message, names OS errors, and reports a bug without its message", async (t) => {
  await t.step("an AppError", () => {
    assertEquals(describeStartupFailure(new AppError("ERR_KUBE", "Cannot read kubeconfig /k")), {
      code: "ERR_KUBE",
      error: "Cannot read kubeconfig /k",
    });
  });
  await t.step("an operating-system error", () => {
    assertEquals(
      describeStartupFailure(new Deno.errors.AddrInUse("Address already in use (os error 98)")),
      { code: "ERR_SYSTEM", error: "Address already in use (os error 98)" },
    );
  });
  await t.step("security: a bug, whose message may quote input", () => {
    let err: unknown;
    try {
      JSON.parse("{token-s3cret");
    } catch (e) {
      err = e;
    }
    const failure = describeStartupFailure(err);
    assertEquals(failure.code, "ERR_INTERNAL");
    assertMatch(failure.error, /^SyntaxError: an unexpected error \(a bug\)/);
    assertMatch(failure.at ?? "", /^e2e\/cli_test\.ts:\d+:\d+$/);
    assert(!JSON.stringify(failure).includes("s3cret"), "the input must not be quoted");
  });
});

Deno.test("a mode that cannot start (its port is taken) exits 1 with one `cannot start` line and no stack trace", async (t) => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const addr = `127.0.0.1:${(busy.addr as Deno.NetAddr).port}`;
  try {
    const runs: [string, Program][] = [
      [
        "worker",
        startProgram({
          args: ["worker", "--health-listen-addr", addr],
          env: { ...WEB_ENV, LOCAL_INVENTORY },
          permissions: ["-P=worker", `--allow-read=${LOCAL_INVENTORY}`],
        }),
      ],
      ["web", startProgram({ args: ["web", "--listen-addr", addr], env: WEB_ENV })],
    ];
    for (const [mode, program] of runs) {
      await t.step(mode, async () => {
        assertEquals((await program.status).code, 1);
        const failures = program.logs.filter((l) => l.msg === "cannot start");
        assertEquals(failures.length, 1, JSON.stringify(program.logs).slice(0, 1000));
        assertEquals(failures[0].code, "ERR_SYSTEM");
        assertMatch(String(failures[0].error), /in use/i);
        assertEquals(strayStderr(program), [], "no stack trace on stderr");
      });
    }
  } finally {
    busy.close();
  }
});

/** The worker on the dev inventory file (no cluster), with Valkey at `addr`. */
function startLocalWorker(env: Record<string, string>): Program {
  return startProgram({
    args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
    env: { ALLOWED_IMAGE_PREFIX: "ghcr.io/acme", LOCAL_INVENTORY, LOG_LEVEL: "debug", ...env },
    permissions: ["-P=worker", `--allow-read=${LOCAL_INVENTORY}`],
  });
}

Deno.test({
  name:
    "the worker stopped by SIGTERM logs its Valkey connections as closed at info, warns of nothing and exits 0",
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const valkey = await startValkey();
    const program = startLocalWorker({ VALKEY_ADDR: valkey.addr });
    try {
      await program.waitForLog((l) => l.msg === "reading the event stream", 20_000);
      assertEquals(await program.stop(), 0);
      await program.waitForLog((l) => l.msg === "worker stopped");
      const afterSignal = program.logs.slice(
        program.logs.findIndex((l) => l.msg === "shutting down"),
      );
      assertEquals(
        afterSignal.filter((l) => l.level !== "info" && l.level !== "debug"),
        [],
        "a requested shutdown warns of nothing",
      );
      assertEquals(afterSignal.filter((l) => l.msg === "valkey connection closed").length, 2);
      assertEquals(strayStderr(program), []);
    } finally {
      await program.stop();
      await valkey.stop();
    }
  },
});

Deno.test({
  name: "security: the worker never logs a Valkey reply that quotes its password",
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const secret = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
    // With AUTH renamed away, the server's reply to AUTH quotes the user and password.
    const valkey = await startValkey(["--rename-command", "AUTH", ""]);
    const program = startLocalWorker({
      VALKEY_ADDR: valkey.addr,
      VALKEY_USERNAME: "worker",
      VALKEY_PASSWORD: secret,
    });
    try {
      const error = await program.waitForLog((l) => l.msg === "valkey connection error", 20_000);
      assertEquals(error.error, "ERR unknown command (rest of the reply not shown)");
    } finally {
      await program.stop();
      await valkey.stop();
    }
    assert(!JSON.stringify(program.logs).includes(secret), "the password reached stdout");
    assert(!program.stderr().includes(secret), "the password reached stderr");
  },
});
