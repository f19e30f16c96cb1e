/**
 * The local dev flow as a newcomer runs it (`deno task dev`'s entry point),
 * and the safety rails of dev mode.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { waitForAccess } from "../helpers/capabilities.ts";
import { deploymentManifest, openCluster } from "../helpers/cluster.ts";
import { requireControlPlane } from "../helpers/control_plane.ts";
import { startIssuer } from "../helpers/issuer.ts";
import { ROOT, startProgram } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { freePort } from "../helpers/valkey.ts";
import { kubeconfigFiles } from "../../tools/kubeconfig_files.ts";
import { renderBanner, startLocalFlow } from "../../tools/dev.ts";
import { triggerDevEvent } from "../../tools/trigger.ts";

const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    "the dev flow: one command starts web, worker and Valkey; a dev event restarts the local inventory's matches",
  ...options,
  async fn(t) {
    const flow = await startLocalFlow({
      webAddr: `127.0.0.1:${freePort()}`,
      healthAddr: `127.0.0.1:${freePort()}`,
    });
    try {
      await t.step(
        "a dev event is accepted and the local inventory reports the expected restarts",
        async () => {
          const { status, body } = await triggerDevEvent(flow.webUrl, "ghcr.io/acme/app:dev");
          assertEquals(status, 202);
          const id = JSON.parse(body).id;
          const summary = await flow.worker.waitForLog((l) =>
            l.msg === "event handled" && l.event_id === id
          );
          assertEquals(summary.restarted, ["apps/web", "apps/migrations"]);
          assertEquals(summary.skipped, [{ deployment: "apps/pinned", reason: "digest_pinned" }]);
          assertEquals(summary.local_inventory, true);
          const recorded = flow.worker.logs.filter((l) =>
            l.msg.startsWith("LOCAL INVENTORY: restart recorded")
          );
          assertEquals(recorded.map((l) => l.deployment), ["web", "migrations"]);
          // The event took the signed path: web's key id is the one the worker verifies with.
          const signing = flow.web.logs.find((l) => l.msg === "signing events");
          const verifying = flow.worker.logs.find((l) => l.msg === "verifying event signatures");
          assertEquals(verifying?.key_ids, [signing?.key_id]);
        },
      );
      await t.step("dev mode is loud on the lines that matter", async () => {
        const warning = await flow.web.waitForLog((l) => l.msg.startsWith("DEV MODE"));
        assertEquals(warning.level, "warn");
        const requests = flow.web.logs.filter((l) => l.msg === "request");
        assert(requests.length > 0 && requests.every((l) => l.dev_mode === true));
      });
      await t.step(
        "dev mode keeps every other check: a token not signed by the dev key is denied",
        async () => {
          const issuer = await startIssuer();
          try {
            const res = await fetch(`${flow.webUrl}/event`, {
              method: "POST",
              headers: {
                authorization: `Bearer ${await issuer.sign()}`,
                "content-type": "application/json",
              },
              body: '{"image":"ghcr.io/acme/app:dev"}',
            });
            assertEquals(res.status, 403);
            await res.body?.cancel();
          } finally {
            await issuer.stop();
          }
          const minted = await (await fetch(`${flow.webUrl}/dev/token`, { method: "POST" })).json();
          const [h, p, s] = minted.token.split(".");
          const flipped = s.slice(0, -2) + (s.endsWith("AA") ? "BB" : "AA");
          const res = await fetch(`${flow.webUrl}/event`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${h}.${p}.${flipped}`,
              "content-type": "application/json",
            },
            body: '{"image":"ghcr.io/acme/app:dev"}',
          });
          assertEquals(res.status, 403);
          await res.body?.cancel();
          const outside = await triggerDevEvent(flow.webUrl, "ghcr.io/evil/app:dev");
          assertEquals(outside.status, 400);
        },
      );
    } finally {
      await flow.stop();
    }
    assertEquals(await flow.web.status.then((s) => s.code), 0);
    assertEquals(await flow.worker.status.then((s) => s.code), 0);
  },
});

Deno.test("security: dev mode refuses to listen on anything but loopback", async () => {
  const program = startProgram({
    args: ["web", "--dev-mode", "--listen-addr", ":0"],
    env: {
      VALKEY_ADDR: "127.0.0.1:1",
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      GITHUB_OIDC_AUDIENCE: "x",
      GITHUB_ALLOWED_ORG: "acme",
    },
  });
  assertEquals((await program.status).code, 2);
  assertMatch(program.stderr(), /DEV_MODE \(--dev-mode\) needs a loopback WEB_LISTEN_ADDR/);
});

Deno.test("security: without DEV_MODE there is no dev token endpoint", async () => {
  const program = startProgram({
    args: ["web", "--listen-addr", "127.0.0.1:0"],
    env: {
      VALKEY_ADDR: "127.0.0.1:1",
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      GITHUB_OIDC_AUDIENCE: "x",
      GITHUB_ALLOWED_ORG: "acme",
    },
  });
  try {
    const line = await program.waitForLog((l) => l.msg === "web listening");
    const res = await fetch(`http://${line.addr}/dev/token`, { method: "POST" });
    assertEquals(res.status, 404);
    await res.body?.cancel();
    assert(!program.logs.some((l) => l.dev_mode));
  } finally {
    await program.stop();
  }
});

/** A `deno task …` child as a user runs it from the repository root; stdout kept as lines. */
function startTask(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", ...args],
    cwd: ROOT,
    env: { ...baseEnv(), NO_COLOR: "1", ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let stderr = "";
  const pump = async (stream: ReadableStream<Uint8Array>, onText: (text: string) => void) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) onText(text);
  };
  let pending = "";
  const done = Promise.all([
    child.status,
    pump(child.stdout, (text) => {
      pending += text;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      lines.push(...parts);
    }),
    pump(child.stderr, (text) => stderr += text),
  ]).then(([status]) => status);
  return {
    lines,
    stderr: () => stderr,
    status: done,
    /** Resolves once `predicate` holds for the lines so far; fails if the task ends first. */
    async until(what: string, predicate: (lines: string[]) => boolean, timeoutMs = 90_000) {
      let ended = false;
      done.then(() => ended = true);
      const deadline = Date.now() + timeoutMs;
      while (!predicate(lines)) {
        if (ended) throw new Error(`the task ended before ${what}; stderr: ${stderr.slice(-1500)}`);
        if (Date.now() > deadline) throw new Error(`${what} not seen within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop(signal: Deno.Signal = "SIGINT") {
      try {
        child.kill(signal);
      } catch {
        // already ended
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already ended
        }
      }, 20_000);
      const status = await done;
      clearTimeout(timer);
      return status;
    },
  };
}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** --web-addr and --health-addr on free loopback ports. */
function freeAddrs(): string[] {
  return ["--web-addr", `127.0.0.1:${freePort()}`, "--health-addr", `127.0.0.1:${freePort()}`];
}

/** The JSON log lines among a task's stdout lines. */
function logLines(lines: string[]): Record<string, unknown>[] {
  return lines.flatMap((line) => {
    try {
      const parsed = JSON.parse(line);
      return typeof parsed === "object" && parsed !== null ? [parsed] : [];
    } catch {
      return [];
    }
  });
}

const info = requireControlPlane("the dev flow against a real cluster");

Deno.test({
  name:
    "deno task dev --kubeconfig restarts a real cluster's Deployment in WATCH_NAMESPACES, with a CA file the kubeconfig names",
  ignore: info === undefined || withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = openCluster(info!);
    let task: ReturnType<typeof startTask> | undefined;
    try {
      const { ns, kubeconfig } = await cluster.workerNamespace("krt-dev");
      for (const verb of ["list", "watch", "patch"]) await waitForAccess(cluster, ns, verb, true);
      // The kubeconfig names its CA by a path relative to itself, as kubectl allows.
      const config = JSON.parse(await Deno.readTextFile(kubeconfig));
      const dir = kubeconfig.slice(0, kubeconfig.lastIndexOf("/"));
      await Deno.writeTextFile(`${dir}/ca.crt`, info!.caPem);
      delete config.clusters[0].cluster["certificate-authority-data"];
      config.clusters[0].cluster["certificate-authority"] = "ca.crt";
      await Deno.writeTextFile(kubeconfig, JSON.stringify(config), { mode: 0o600 });
      await cluster.createDeployment(
        deploymentManifest(ns, "web", [{ name: "app", image: "ghcr.io/acme/app:dev" }]),
      );

      // Cluster-wide is the worker's default; this user may list only in `ns`.
      const refused = startTask(["dev", "--kubeconfig", kubeconfig, ...freeAddrs()], {});
      assertEquals((await refused.status).code, 1);
      assertMatch(
        refused.stderr(),
        /\ndeno task dev: the API server does not let the worker list Deployments cluster-wide \(403\): set WATCH_NAMESPACES/,
      );

      const webPort = freePort();
      const url = `http://127.0.0.1:${webPort}`;
      task = startTask([
        "dev",
        "--kubeconfig",
        kubeconfig,
        "--web-addr",
        `127.0.0.1:${webPort}`,
        "--health-addr",
        `127.0.0.1:${freePort()}`,
      ], { WATCH_NAMESPACES: ns });
      await task.until("the dev banner", (lines) => lines.some((l) => l.includes("Ctrl-C stops")));
      const banner = task.lines.join("\n");
      assertMatch(banner, new RegExp(`cluster from ${kubeconfig}`));
      assert(
        banner.includes(`npx -y deno@2.9.6 task trigger ghcr.io/acme/app:dev --url ${url}\n`),
        `the banner's trigger command keeps --url ${url}:\n${banner}`,
      );
      const started = logLines(task.lines).find((l) => l.msg === "starting" && l.mode === "worker");
      const permissions = (started as { permissions: { read: string } }).permissions;
      assert(
        permissions.read !== "granted",
        `the worker may not read every file: ${permissions.read}`,
      );

      const trigger = await new Deno.Command(Deno.execPath(), {
        args: ["task", "trigger", "ghcr.io/acme/app:dev", "--url", url],
        cwd: ROOT,
        env: { ...baseEnv(), NO_COLOR: "1" },
        clearEnv: true,
        stdin: "null",
      }).output();
      const answer = new TextDecoder().decode(trigger.stdout);
      assertEquals(trigger.code, 0, answer + new TextDecoder().decode(trigger.stderr));
      const id = JSON.parse(answer.slice(answer.indexOf("{"))).id;

      await task.until(
        "the worker's event summary",
        (lines) => logLines(lines).some((l) => l.msg === "event handled" && l.event_id === id),
      );
      const summary = logLines(task.lines).find((l) =>
        l.msg === "event handled" && l.event_id === id
      )!;
      assertEquals(summary.restarted, [`${ns}/web`]);
      const after = await cluster.getDeployment(ns, "web");
      assertMatch(
        after.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"],
        /^\d{4}-\d\d-\d\dT/,
      );
      assertEquals((await task.stop()).code, 0);
      task = undefined;
    } finally {
      await task?.stop();
      await cluster.cleanup();
    }
  },
});

Deno.test("the dev banner's commands are the README's, with --url only when web is elsewhere", async (t) => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const at = (webUrl: string) =>
    renderBanner({ webUrl, healthUrl: "http://127.0.0.1:8081", valkeyAddr: "127.0.0.1:6379" });
  await t.step("on the default address the trigger command is the README's, verbatim", () => {
    const command = "npx -y deno@2.9.6 task trigger ghcr.io/acme/app:dev";
    assert(readme.includes(`\`${command}\``), "the README names the trigger command");
    assert(at("http://127.0.0.1:8080").includes(`\n   ${command}\n`), at("http://127.0.0.1:8080"));
  });
  await t.step("on another port it keeps --url, so the command reaches this web", () => {
    assert(
      at("http://127.0.0.1:18080").includes(
        "\n   npx -y deno@2.9.6 task trigger ghcr.io/acme/app:dev --url http://127.0.0.1:18080\n",
      ),
      at("http://127.0.0.1:18080"),
    );
  });
});

Deno.test("deno task trigger against a port where nothing listens names the URL and what to check, in one line", async () => {
  const url = `http://127.0.0.1:${freePort()}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "trigger", "ghcr.io/acme/app:dev", "--url", url],
    cwd: ROOT,
    env: { ...baseEnv(), NO_COLOR: "1" },
    clearEnv: true,
    stdin: "null",
  }).output();
  assertEquals(out.code, 1);
  const lines = new TextDecoder().decode(out.stderr).trim().split("\n")
    .filter((l) => !l.startsWith("Task "));
  assertEquals(lines, [
    `deno task trigger: Cannot reach ${url}/dev/token (Connection refused): check that \`npx -y deno@2.9.6 task dev\` is running and that --url is the "web" address its banner prints`,
  ]);
});

Deno.test("kubeconfigFiles() names the kubeconfig and exactly the files its current context reads", async (t) => {
  const yaml = (cluster: string, user: string) => `
current-context: dev
contexts:
  - name: dev
    context: { cluster: c, user: u }
  - name: other
    context: { cluster: c2, user: u2 }
clusters:
  - name: c
    cluster: { server: "https://x", ${cluster} }
  - name: c2
    cluster: { server: "https://y", certificate-authority: /other/ca.crt }
users:
  - name: u
    user: { ${user} }
  - name: u2
    user: { tokenFile: /other/token }
`;
  await t.step(
    "a relative path is relative to the kubeconfig's folder, as kubectl reads it",
    () => {
      assertEquals(
        kubeconfigFiles(
          "/home/me/.kube/config",
          yaml(
            "certificate-authority: ca.crt",
            "client-certificate: /pki/me.crt, client-key: me.key",
          ),
        ),
        ["/home/me/.kube/config", "/home/me/.kube/ca.crt", "/pki/me.crt", "/home/me/.kube/me.key"],
      );
    },
  );
  await t.step("a token file is granted; other contexts' files are not", () => {
    assertEquals(
      kubeconfigFiles("/k/config", yaml("certificate-authority: /k/ca.crt", "tokenFile: token")),
      ["/k/config", "/k/ca.crt", "/k/token"],
    );
  });
  await t.step("inline data wins over a file, so the file is not granted", () => {
    assertEquals(
      kubeconfigFiles(
        "/k/config",
        yaml(
          "certificate-authority-data: QQ==, certificate-authority: /k/ca.crt",
          "token: t, tokenFile: /k/token",
        ),
      ),
      ["/k/config"],
    );
  });
  await t.step(
    "security: an unparseable kubeconfig grants only itself; the parser message, which quotes lines, goes nowhere",
    () => {
      assertEquals(kubeconfigFiles("/k/config", "token: s3cr3t\n  : : ["), ["/k/config"]);
    },
  );
});
