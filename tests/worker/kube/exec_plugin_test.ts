/**
 * Running a plugin (a real `#!/bin/sh` script): its environment and
 * KUBERNETES_EXEC_INFO, and each way it can fail, as one line naming the
 * command that never shows its env values or its output.
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../../helpers/assert.ts";
import { AppError } from "../../../shared/errors.ts";
import { execInfo, type ExecPlugin } from "../../../worker/kube/exec_credential.ts";
import {
  checkRunPermission,
  oneLine,
  pluginEnvironment,
  pluginSecrets,
  runExecPlugin,
} from "../../../worker/kube/exec_plugin.ts";
import { ENV_SECRET, type FakePlugin, writeFakePlugin } from "../../fixtures/exec_plugin.ts";

const V1 = "client.authentication.k8s.io/v1";

async function withPlugin(fn: (fake: FakePlugin, plugin: ExecPlugin) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "krt-exec-" });
  try {
    const fake = await writeFakePlugin(dir);
    await fn(fake, {
      command: fake.command,
      args: ["--krt-arg"],
      env: { KRT_PLUGIN_DIR: dir, KRT_SECRET: ENV_SECRET },
      apiVersion: V1,
      execInfo: execInfo(V1, undefined),
      installHint: "Install it with: apt-get install fake-plugin",
      where: "Kubeconfig /k: users[0].user.exec",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("runExecPlugin() gives the plugin KUBERNETES_EXEC_INFO and its env, and returns stdout", async () => {
  await withPlugin(async (fake, plugin) => {
    await fake.set("stderr", "note: using cached\ncredentials\n");
    const out = await runExecPlugin(plugin);
    assertEquals(JSON.parse(out.stdout).status.token, "run-1");
    assertEquals(JSON.parse(out.stdout).apiVersion, V1);
    assertEquals(out.stderr, "note: using cached\ncredentials\n", "as printed, for redaction");
    assertEquals(await fake.execInfo(1), {
      apiVersion: V1,
      kind: "ExecCredential",
      spec: { interactive: false },
    });
  });
});

Deno.test("security: runExecPlugin() starts the plugin from the worker's environment without the product's settings", async () => {
  const worker = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: "/home/worker",
    AWS_PROFILE: "dev",
    KUBECONFIG: "/k/config",
    VALKEY_PASSWORD: "krt-valkey-password",
    REPORT_SIGNING_KEY: "krt-signing-key",
  };
  assertEquals(pluginEnvironment(worker), {
    PATH: worker.PATH,
    HOME: "/home/worker",
    AWS_PROFILE: "dev",
    KUBECONFIG: "/k/config",
  });
  await withPlugin(async (fake, plugin) => {
    await runExecPlugin(plugin, { environment: pluginEnvironment(worker) });
    const env = await fake.environment(1);
    assert(env.includes("AWS_PROFILE=dev\n"), env);
    assert(env.includes(`KRT_SECRET=${ENV_SECRET}\n`), "exec.env is added");
    assert(!env.includes("krt-valkey-password") && !env.includes("krt-signing-key"), env);
  });
});

Deno.test("runExecPlugin() fails with one line naming the command, never its env values", async (t) => {
  await t.step("a non-zero exit, with the plugin's stderr as one bounded line", async () => {
    await withPlugin(async (fake, plugin) => {
      await fake.set(
        "fail",
        `ERROR: no active account.\n\n  Please run:\n  $ gcloud auth login\n${
          "x".repeat(5000)
        }\nlast words`,
      );
      const err = await assertRejects(() => runExecPlugin(plugin), {
        instanceOf: AppError,
        code: "ERR_KUBE",
      });
      assertMatch(
        err.message,
        /^Exec plugin ".*fake-plugin" failed with exit code 3: ERROR: no active account\. Please run: \$ gcloud auth login x+ … x+ last words$/,
      );
      assert(err.message.length < 600, `bounded: ${err.message.length}`);
      assert(!err.message.includes(ENV_SECRET), "an env value reached the error");
    });
  });
  await t.step("not installed: says so, with the kubeconfig's installHint", async () => {
    await withPlugin(async (_fake, plugin) => {
      await assertRejects(() => runExecPlugin({ ...plugin, command: "krt-no-such-plugin" }), {
        code: "ERR_KUBE",
        message:
          /^Exec plugin "krt-no-such-plugin" \(Kubeconfig \/k: users\[0\]\.user\.exec\.command\) was not found: install it or put it on PATH \(Install it with: apt-get install fake-plugin\)$/,
      });
    });
  });
  await t.step("too slow: stopped at the time limit", async () => {
    await withPlugin(async (fake, plugin) => {
      await fake.set("sleep", "5");
      const started = performance.now();
      await assertRejects(() => runExecPlugin(plugin, { timeoutMs: 300 }), {
        code: "ERR_KUBE",
        message: /fake-plugin" did not finish within 0\.3 s and was stopped$/,
      });
      assert(performance.now() - started < 3000, "stopped at the bound");
    });
  });
  await t.step("too much output: stopped at the size limit", async () => {
    await withPlugin(async (fake, plugin) => {
      await fake.set("token", "t".repeat(4096));
      await assertRejects(() => runExecPlugin(plugin, { maxStdoutBytes: 1024 }), {
        code: "ERR_KUBE",
        message: /printed more than 1024 bytes and was stopped$/,
      });
    });
  });
});

Deno.test("checkRunPermission() refuses a plugin Deno may not run, naming the flag to add", async () => {
  await withPlugin(async (_fake, plugin) => {
    const named = { ...plugin, command: "gke-gcloud-auth-plugin" };
    await checkRunPermission(named, () => Promise.resolve("granted"));
    const err = await assertRejects(
      () => checkRunPermission(named, () => Promise.resolve("prompt")),
      { code: "ERR_KUBE" },
    );
    assertEquals(
      err.message,
      'Kubeconfig /k: users[0].user.exec runs "gke-gcloud-auth-plugin", which the worker has no permission to run: add --allow-run=gke-gcloud-auth-plugin to its deno run flags (Deno grants a command name only if it is on PATH; the compiled binary and the in-cluster permission sets never run processes)',
    );
  });
});

Deno.test("security: oneLine() keeps a plugin's stderr to one bounded line without the credentials", () => {
  const token = "tok_abcdefghijklmnop";
  assertEquals(
    oneLine(`debug: token ${token}\r\n\tdone\u001b[0m`, [token]),
    "debug: token [redacted] done [0m",
  );
  const long = oneLine(`${"a".repeat(1000)}${"b".repeat(1000)}`);
  assertEquals(long.length, 150 + 3 + 250);
});

Deno.test("security: pluginSecrets() names exec.env values and secret-flag arguments, not the rest", () => {
  assertEquals(
    pluginSecrets({
      env: { AAD_SERVICE_PRINCIPAL_CLIENT_SECRET: "s3cr3t-value-1", SHORT: "abc" },
      args: [
        "get-token",
        "--client-secret",
        "s3cr3t-value-2",
        "--password=s3cr3t-value-3",
        "--cluster-name",
        "prod-cluster",
      ],
    }),
    ["s3cr3t-value-1", "s3cr3t-value-2", "s3cr3t-value-3"],
  );
  assertEquals(
    oneLine("error: bad secret s3cr3t-value-2 for prod-cluster", ["s3cr3t-value-2"]),
    "error: bad secret [redacted] for prod-cluster",
  );
});
