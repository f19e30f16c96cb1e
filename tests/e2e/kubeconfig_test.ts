/**
 * The real worker on malformed kubeconfigs: one `cannot start` line, exit 1,
 * nothing quoted. The same inputs are refused in process by
 * tests/worker/kube/config_test.ts. And the real worker with an exec
 * credential plugin: refused, naming the flag, under the permission sets that
 * never run processes; under the grants `deno task dev` computes, it runs the
 * plugin against the real API server (again on a 401) through a KUBECONFIG list.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  CA,
  type FailureCase,
  failureCases,
  kubeconfig,
  SECRET,
  withFiles,
} from "../helpers/kubeconfig_cases.ts";
import { startProgram } from "../helpers/program.ts";
import { waitForAccess } from "../helpers/capabilities.ts";
import { openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { ENV_SECRET, execKubeconfig, writeFakePlugin } from "../fixtures/exec_plugin.ts";
import { userPluginEnvironment, workerGrants } from "../../tools/dev.ts";
import { kubeconfigNeeds } from "../../tools/kubeconfig_files.ts";

Deno.test({
  name:
    "security: the real worker stops on each malformed kubeconfig with one `cannot start` line, exit 1, no stack and no secret",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cases = await failureCases();
    // Four programs at a time: each is a full `deno run`, and the machine is shared.
    const results = new Map<string, Promise<{ code: number; stdout: string; stderr: string }>>();
    const runOne = (c: FailureCase) =>
      withFilesResult(c.files, async (dir) => {
        const program = startProgram({
          args: ["worker"],
          env: {
            KUBECONFIG: `${dir}/config`,
            VALKEY_ADDR: "127.0.0.1:1",
            ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
          },
          permissions: ["-P=worker", `--allow-read=${dir}`],
        });
        // A worker that accepted the input keeps running: stop it, so the step fails, not hangs.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const ranOn = new Promise<"running">((r) => timer = setTimeout(() => r("running"), 30_000));
        const ended = await Promise.race([program.status, ranOn]);
        clearTimeout(timer);
        const code = ended === "running" ? await program.stop() : ended.code;
        return {
          code,
          stdout: JSON.stringify(program.logs),
          stderr: program.stderr(),
          logs: program.logs,
        };
      });
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const done = batch.map((c) => runOne(c));
      batch.forEach((c, j) => results.set(c.name, done[j]));
      await Promise.allSettled(done);
    }
    for (const c of cases) {
      await t.step(c.name, async () => {
        const { code, stdout, stderr, logs } = await results.get(c.name)! as Awaited<
          ReturnType<typeof runOne>
        >;
        assertEquals(code, 1, `exit code; stderr: ${stderr.slice(0, 500)}`);
        const failures = logs.filter((l) => l.msg === "cannot start");
        assertEquals(failures.length, 1, `one cannot start line in ${stdout.slice(0, 500)}`);
        assertEquals(failures[0].level, "error");
        assertEquals(failures[0].code, "ERR_KUBE");
        assertMatch(String(failures[0].error), c.message);
        assert(!stdout.includes(SECRET), "the secret reached stdout");
        assert(!stderr.includes(SECRET), "the secret reached stderr");
        assertEquals(
          stderr.split("\n").filter((l) => l.trim() !== "" && !DENO_NOTICE.test(l)),
          [],
          "nothing else on stderr: no stack trace, no yaml warning",
        );
        assertEquals(logs.filter((l) => l.level === "raw"), [], "stdout holds only log lines");
      });
    }
  },
});

// What Deno itself prints for `-P=worker` (permissions from deno.json).
const DENO_NOTICE = /^Warning Permissions in the config file is an experimental feature/;

async function withFilesResult<T>(
  files: Record<string, string>,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  let result: T | undefined;
  await withFiles(files, async (dir) => {
    result = await fn(dir);
  });
  return result as T;
}

Deno.test({
  name:
    "security: the running worker does not print the yaml library's warning about the token line",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Valid apart from an unknown tag: the worker starts and retries an unreachable server,
    // so a warning printed in the background would reach stderr meanwhile.
    await withFiles(
      { config: kubeconfig(`token: !vault ${SECRET}`), "ca.crt": CA },
      async (dir) => {
        const program = startProgram({
          args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
          env: {
            KUBECONFIG: `${dir}/config`,
            VALKEY_ADDR: "127.0.0.1:1",
            ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
          },
          permissions: ["-P=worker", `--allow-read=${dir}`],
        });
        try {
          await program.waitForLog(
            (l) => l.msg === "inventory list/watch failed; retrying",
            20_000,
          );
        } finally {
          await program.stop();
        }
        assert(!program.stderr().includes(SECRET), "the yaml warning quoted the token on stderr");
        assert(!JSON.stringify(program.logs).includes(SECRET), "the token reached stdout");
      },
    );
  },
});

Deno.test({
  name:
    "the real worker refuses an exec kubeconfig under the permission sets that run no processes, naming the flag to add",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await withFiles({}, async (dir) => {
      const plugin = await writeFakePlugin(dir);
      await Deno.writeTextFile(
        `${dir}/config`,
        execKubeconfig({ server: "https://127.0.0.1:6443", command: plugin.command, dir }),
      );
      // `compiled` is the binary's set; `deno run -P=compiled` applies it without compiling.
      for (const set of ["worker", "compiled"]) {
        await t.step(`-P=${set}`, async () => {
          const program = startProgram({
            args: ["worker"],
            env: {
              KUBECONFIG: `${dir}/config`,
              VALKEY_ADDR: "127.0.0.1:1",
              ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
            },
            permissions: [`-P=${set}`, `--allow-read=${dir}`],
          });
          const { code } = await program.status;
          assertEquals(code, 1, program.stderr());
          const failures = program.logs.filter((l) => l.msg === "cannot start");
          assertEquals(failures.length, 1);
          assertEquals(failures[0].code, "ERR_KUBE");
          assertMatch(
            String(failures[0].error),
            new RegExp(
              `runs ".*fake-plugin", which the worker has no permission to run: add --allow-run=${plugin.command} to its deno run flags`,
            ),
          );
          assert(
            !JSON.stringify(program.logs).includes(ENV_SECRET),
            "an exec.env value was logged",
          );
          assertEquals(await plugin.runs(), 0, "the plugin never ran");
        });
      }
    });
  },
});

const info = requireControlPlane("the worker with an exec plugin against a real API server");

Deno.test({
  name:
    "the real worker, with the grants deno task dev gives it, authenticates through an exec plugin and runs it again on a 401",
  ignore: info === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = openCluster(info!);
    const dir = await Deno.makeTempDir({ prefix: "krt-exec-e2e-" });
    let program: ReturnType<typeof startProgram> | undefined;
    try {
      const { ns, kubeconfig: tokenKubeconfig } = await cluster.workerNamespace("krt-exec");
      for (const verb of ["list", "watch"]) await waitForAccess(cluster, ns, verb, true);
      const token = JSON.parse(await Deno.readTextFile(tokenKubeconfig)).users[0].user.token;
      const plugin = await writeFakePlugin(dir);
      // The first run's token is stale (the API server answers 401); later runs print the real one.
      await plugin.set("token.1", "stale-token-from-the-first-run");
      await plugin.set("token", token);
      await plugin.set("expiry", new Date(Date.now() + 3600_000).toISOString());
      await Deno.writeTextFile(
        `${dir}/config`,
        execKubeconfig({
          server: info!.server,
          caPem: info!.caPem,
          command: plugin.command,
          dir,
          apiVersion: "client.authentication.k8s.io/v1beta1",
          exec: ["interactiveMode: IfAvailable", "provideClusterInfo: true"],
        }),
      );
      // A KUBECONFIG list whose first file is missing: skipped, as kubectl skips it.
      const kubeconfig = `${dir}/missing-config:${dir}/config`;
      const grants = await workerGrants(kubeconfig);
      assertEquals(grants.flags, [
        `--allow-read=${dir}/missing-config,${dir}/config`,
        `--allow-run=${plugin.command}`,
      ]);
      program = startProgram({
        args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
        env: {
          KUBECONFIG: kubeconfig,
          VALKEY_ADDR: "127.0.0.1:1",
          ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
          WATCH_NAMESPACES: ns,
          VALKEY_PASSWORD: "krt-valkey-password-not-for-plugins",
        },
        permissions: ["-P=worker", ...grants.flags],
      });
      const access = await program.waitForLog((l) => l.msg === "kubernetes access", 20_000);
      assertEquals([access.auth, access.exec_command], ["exec plugin", plugin.command]);
      await program.waitForLog((l) => l.msg === "inventory synced", 30_000);
      assertEquals(await plugin.runs(), 2, "once at startup, once after the 401");
      const execInfo = await plugin.execInfo(2) as { spec: { cluster: { server: string } } };
      assertEquals(execInfo.spec.cluster.server, info!.server, "provideClusterInfo");
      const env = await plugin.environment(1);
      assert(env.includes(`KRT_SECRET=${ENV_SECRET}\n`), "the plugin got its exec.env");
      assert(!env.includes("krt-valkey-password"), "the plugin got the worker's Valkey password");
      const logged = JSON.stringify(program.logs) + program.stderr();
      assert(!logged.includes(token), "the token reached the log");
      assert(!logged.includes(ENV_SECRET), "an exec.env value reached the log");
    } finally {
      await program?.stop();
      await cluster.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("kubeconfigNeeds() grants what the merged kubeconfig makes the worker read and run", async (t) => {
  const first = `current-context: dev
users:
  - { name: u, user: { exec: { apiVersion: client.authentication.k8s.io/v1, command: bin/plugin } } }
`;
  const second = `current-context: other
contexts:
  - { name: dev, context: { cluster: c, user: u } }
clusters:
  - { name: c, cluster: { server: "https://x", certificate-authority: ca.crt } }
users:
  - { name: u, user: { tokenFile: /never/granted } }
`;
  await t.step("the first file's user wins; each path is relative to the file naming it", () => {
    assertEquals(
      kubeconfigNeeds([
        { path: "/missing/config" },
        { path: "/a/config", text: first },
        { path: "/b/config", text: second },
      ]),
      {
        files: ["/missing/config", "/a/config", "/b/config", "/b/ca.crt"],
        commands: ["/a/bin/plugin"],
      },
    );
  });
  await t.step("a command name stays a name, for Deno to find on PATH", () => {
    const named = first.replace("bin/plugin", "gke-gcloud-auth-plugin");
    assertEquals(
      kubeconfigNeeds([{ path: "/a/config", text: named }, { path: "/b/config", text: second }])
        .commands,
      [
        "gke-gcloud-auth-plugin",
      ],
    );
  });
});

Deno.test("userPluginEnvironment() passes an exec plugin the cloud CLIs' variables and nothing of the worker's", () => {
  assertEquals(
    userPluginEnvironment({
      AWS_PROFILE: "dev",
      CLOUDSDK_CONFIG: "/c",
      AZURE_CONFIG_DIR: "/z",
      HTTPS_PROXY: "http://p:3128",
      VALKEY_ADDR: "127.0.0.1:6379",
      DRY_RUN: "true",
      SHELL: "/bin/bash",
    }),
    {
      AWS_PROFILE: "dev",
      CLOUDSDK_CONFIG: "/c",
      AZURE_CONFIG_DIR: "/z",
      HTTPS_PROXY: "http://p:3128",
    },
  );
});
