import { assert, assertEquals, assertMatch, assertRejects } from "../../helpers/assert.ts";
import { AppError } from "../../../shared/errors.ts";
import { type KubeAccess, loadKubeAccess } from "../../../worker/kube/config.ts";
import { createKubeApi, type KubeApi } from "../../../worker/kube/api.ts";
import { KubeApiError } from "../../../worker/kube/errors.ts";
import {
  ENV_SECRET,
  execKubeconfig,
  type FakePlugin,
  writeFakePlugin,
} from "../../fixtures/exec_plugin.ts";
import { CA, failureCases, kubeconfig, SECRET, withFiles } from "../../helpers/kubeconfig_cases.ts";

Deno.test("loadKubeAccess() reads a YAML kubeconfig with a token and a CA file relative to it", async () => {
  await withFiles({ config: kubeconfig("token: abc.def"), "ca.crt": CA }, async (dir) => {
    const access = await loadKubeAccess({ kubeconfig: `${dir}/config` });
    assertEquals(access.server, "https://127.0.0.1:6443");
    assertEquals(await access.authorization(), "Bearer abc.def");
    assertEquals(access.description, {
      server: "https://127.0.0.1:6443",
      source: "kubeconfig",
      context: "dev",
      auth: "token",
    });
    access.httpClient.close();
  });
});

Deno.test("loadKubeAccess() re-reads a tokenFile once a minute, so rotated tokens are used", async () => {
  await withFiles(
    { config: kubeconfig("tokenFile: token"), "ca.crt": CA, token: "first\n" },
    async (dir) => {
      let now = 0;
      const access = await loadKubeAccess({ kubeconfig: `${dir}/config`, now: () => now });
      assertEquals(await access.authorization(), "Bearer first");
      await Deno.writeTextFile(`${dir}/token`, "second");
      assertEquals(await access.authorization(), "Bearer first");
      now = 60_000;
      assertEquals(await access.authorization(), "Bearer second");
      access.httpClient.close();
    },
  );
});

Deno.test("loadKubeAccess() uses the in-cluster ServiceAccount files and service address", async () => {
  await withFiles({ "ca.crt": CA, token: "sa-token" }, async (dir) => {
    const env: Record<string, string> = {
      KUBERNETES_SERVICE_HOST: "fd00::1",
      KUBERNETES_SERVICE_PORT: "443",
    };
    const access = await loadKubeAccess({
      kubeconfig: "",
      serviceAccountDir: dir,
      env: (n) => env[n],
    });
    assertEquals(access.server, "https://[fd00::1]:443");
    assertEquals(await access.authorization(), "Bearer sa-token");
    access.httpClient.close();
  });
});

Deno.test("loadKubeAccess() refuses what it cannot do safely, saying what to change", async (t) => {
  const cases: [string, string, string | undefined, RegExp][] = [
    [
      "an exec plugin beside a token",
      "token: x\n      exec: { command: aws }",
      undefined,
      /has a token, tokenFile or client certificate and also exec, which the worker cannot use together: keep one/,
    ],
    ["an auth provider", "auth-provider: { name: oidc }", undefined, /auth-provider/],
    ["basic auth", "username: admin", undefined, /basic auth/],
    ["no credentials", "{}", undefined, /no token, tokenFile, client certificate or exec/],
    [
      "impersonation",
      "token: x\n      as: admin\n      as-groups: [system:masters]",
      undefined,
      /^The kubeconfig user sets as, as-groups \(impersonation\), which the worker does not support: give the worker credentials of its own identity/,
    ],
    [
      "impersonation by uid",
      "token: x\n      as-uid: '0'",
      undefined,
      /sets as-uid \(impersonation\)/,
    ],
    [
      "impersonation extras",
      "token: x\n      as-user-extra: { scopes: [a] }",
      undefined,
      /sets as-user-extra \(impersonation\)/,
    ],
    [
      "a certificate without its key",
      `client-certificate-data: ${btoa(CA)}`,
      undefined,
      /without its key/,
    ],
    [
      "insecure-skip-tls-verify",
      "token: x",
      "insecure-skip-tls-verify: true",
      /insecure-skip-tls-verify/,
    ],
    [
      "a missing CA file",
      "token: x",
      "certificate-authority: missing.crt",
      /Cannot read certificate-authority/,
    ],
  ];
  for (const [name, user, cluster, message] of cases) {
    await t.step(name, async () => {
      await withFiles({ config: kubeconfig(user, cluster), "ca.crt": CA }, async (dir) => {
        const err = await assertRejects(() => loadKubeAccess({ kubeconfig: `${dir}/config` }));
        assertEquals((err as AppError).code, "ERR_KUBE");
        assertMatch(err.message, message);
      });
    });
  }
  await t.step("not in a cluster and no kubeconfig", async () => {
    const err = await assertRejects(() => loadKubeAccess({ kubeconfig: "", env: () => undefined }));
    assertMatch(err.message, /set KUBECONFIG/);
  });
});

Deno.test("security: loadKubeAccess() names the field of each malformed input and never quotes it", async (t) => {
  for (const c of await failureCases()) {
    await t.step(c.name, async () => {
      await withFiles(c.files, async (dir) => {
        const err = await assertRejects(() => loadKubeAccess({ kubeconfig: `${dir}/config` }), {
          instanceOf: AppError,
          code: "ERR_KUBE",
          message: c.message,
        });
        assert(!err.message.includes(SECRET), `the secret is in: ${err.message}`);
        assert(!String(err.cause ?? "").includes(SECRET), "the secret is in the cause");
        assert(!err.message.includes("\n"), "one line");
      });
    });
  }
});

Deno.test("security: loadKubeAccess() checks the in-cluster CA like a kubeconfig CA", async () => {
  await withFiles({ "ca.crt": SECRET, token: "sa-token" }, async (dir) => {
    const err = await assertRejects(
      () =>
        loadKubeAccess({
          kubeconfig: "",
          serviceAccountDir: dir,
          env: (n) => ({ KUBERNETES_SERVICE_HOST: "10.0.0.1", KUBERNETES_SERVICE_PORT: "443" })[n],
        }),
      { instanceOf: AppError, code: "ERR_KUBE", message: /Service-account CA .* holds no PEM/ },
    );
    assert(!err.message.includes(SECRET));
  });
});

Deno.test("loadKubeAccess() refuses in-cluster service variables that do not form a URL", async () => {
  await withFiles({ "ca.crt": CA, token: "sa-token" }, async (dir) => {
    await assertRejects(
      () =>
        loadKubeAccess({
          kubeconfig: "",
          serviceAccountDir: dir,
          env: (n) => ({ KUBERNETES_SERVICE_HOST: "bad host", KUBERNETES_SERVICE_PORT: "443" })[n],
        }),
      {
        instanceOf: AppError,
        code: "ERR_KUBE",
        message: /KUBERNETES_SERVICE_HOST\/PORT is not a URL/,
      },
    );
  });
});

// Exec plugins: a real `#!/bin/sh` plugin (tests/fixtures/exec_plugin.ts) and a loopback API server.

const V1 = "client.authentication.k8s.io/v1";
const V1BETA1 = "client.authentication.k8s.io/v1beta1";
const T0 = Date.UTC(2030, 0, 1);

/** A loopback API server that answers a Deployment to the tokens `accept` takes, else 401. */
function fakeApiServer(accept: (authorization: string) => boolean) {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const authorization = req.headers.get("authorization") ?? "";
    seen.push(authorization);
    if (!accept(authorization)) {
      return Response.json({ kind: "Status", reason: "Unauthorized", code: 401 }, { status: 401 });
    }
    return Response.json({ kind: "Deployment", metadata: { name: "d", namespace: "ns" } });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

/**
 * A plugin in a temp folder, a kubeconfig running it against a loopback API
 * server, and the access and API the worker would build from them.
 */
async function withExecPlugin(
  options: {
    accept?: (authorization: string) => boolean;
    apiVersion?: string;
    now?: () => number;
    setup?: (plugin: FakePlugin) => Promise<void>;
  },
  fn: (
    parts: { plugin: FakePlugin; api: KubeApi; access: KubeAccess; seen: string[] },
  ) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "krt-exec-config-" });
  const server = fakeApiServer(options.accept ?? (() => true));
  try {
    const plugin = await writeFakePlugin(dir);
    await options.setup?.(plugin);
    await Deno.writeTextFile(
      `${dir}/config`,
      execKubeconfig({
        server: server.url,
        command: plugin.command,
        dir,
        apiVersion: options.apiVersion,
      }),
    );
    const access = await loadKubeAccess({ kubeconfig: `${dir}/config`, now: options.now });
    const api = createKubeApi({
      server: access.server,
      credentials: access.credentials,
      renewCredentials: access.renewCredentials,
    });
    await fn({ plugin, api, access, seen: server.seen });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadKubeAccess() runs an exec plugin once at startup and once for many requests", async (t) => {
  for (const apiVersion of [V1, V1BETA1]) {
    await t.step(apiVersion, async () => {
      await withExecPlugin({ apiVersion }, async ({ plugin, api, access, seen }) => {
        assertEquals(await plugin.runs(), 1, "ran at startup");
        assertEquals(access.description, {
          server: access.server,
          source: "kubeconfig",
          context: "dev",
          auth: "exec plugin",
          exec_command: plugin.command,
        });
        await Promise.all(Array.from({ length: 30 }, () => api.getDeployment("ns", "d")));
        assertEquals(await plugin.runs(), 1);
        assertEquals(new Set(seen), new Set(["Bearer run-1"]));
        assertEquals(await plugin.execInfo(1), {
          apiVersion,
          kind: "ExecCredential",
          spec: { interactive: false },
        });
      });
    });
  }
});

Deno.test("loadKubeAccess() runs an exec plugin again when its credentials are about to expire", async () => {
  let now = T0;
  await withExecPlugin({
    now: () => now,
    setup: (plugin) => plugin.set("expiry", "2030-01-01T00:10:00Z"),
  }, async ({ plugin, api, seen }) => {
    await api.getDeployment("ns", "d");
    now = T0 + 5 * 60_000;
    await api.getDeployment("ns", "d");
    assertEquals(await plugin.runs(), 1, "still valid for minutes");
    now = T0 + 10 * 60_000 - 1_000;
    await Promise.all(Array.from({ length: 10 }, () => api.getDeployment("ns", "d")));
    assertEquals(await plugin.runs(), 2, "one run for every request that found them due");
    assertEquals(seen.at(-1), "Bearer run-2");
  });
});

Deno.test("createKubeApi() runs the exec plugin again on a 401 and retries each request once", async (t) => {
  await t.step(
    "a stale token: one new run for all the refused requests, each retried",
    async () => {
      await withExecPlugin(
        { accept: (auth) => auth === "Bearer run-2" },
        async ({ plugin, api, seen }) => {
          await Promise.all(Array.from({ length: 10 }, () => api.getDeployment("ns", "d")));
          assertEquals(await plugin.runs(), 2);
          assertEquals(seen.filter((a) => a === "Bearer run-1").length, 10);
          assertEquals(seen.filter((a) => a === "Bearer run-2").length, 10);
        },
      );
    },
  );
  await t.step("still refused after the new run: the 401 is the answer, no third try", async () => {
    await withExecPlugin({ accept: () => false }, async ({ plugin, api, seen }) => {
      const err = await assertRejects(() => api.getDeployment("ns", "d"), {
        instanceOf: KubeApiError,
        message: /: 401 Unauthorized$/,
      });
      assertEquals((err as KubeApiError).status, 401);
      assertEquals(seen, ["Bearer run-1", "Bearer run-2"]);
      assertEquals(await plugin.runs(), 2);
    });
  });
  await t.step("a plugin that fails on the re-run: one line naming it", async () => {
    await withExecPlugin({ accept: () => false }, async ({ plugin, api }) => {
      await plugin.set("fail", "ERROR: please run gcloud auth login");
      await assertRejects(() => api.getDeployment("ns", "d"), {
        instanceOf: KubeApiError,
        reason: "CredentialsUnavailable",
        message:
          /^GET \/apis\/apps\/v1\/namespaces\/ns\/deployments\/d: no usable credentials: Exec plugin ".*fake-plugin" failed with exit code 3: ERROR: please run gcloud auth login$/,
      });
    });
  });
});

Deno.test("security: loadKubeAccess() stops on a failing exec plugin with one line naming the command", async () => {
  const err = await assertRejects(
    () =>
      withExecPlugin(
        {
          setup: (plugin) =>
            plugin.set(
              "fail",
              "ERROR: (gcloud) You do not currently have an active account.\nPlease run:\n  $ gcloud auth login",
            ),
        },
        () => Promise.resolve(),
      ),
    { instanceOf: AppError, code: "ERR_KUBE" },
  );
  assertMatch(
    err.message,
    /^Exec plugin ".*\/fake-plugin" failed with exit code 3: ERROR: \(gcloud\) You do not currently have an active account\. Please run: \$ gcloud auth login$/,
  );
  assert(!err.message.includes(ENV_SECRET), "an exec.env value reached the error");
});

Deno.test("loadKubeAccess() refuses an exec plugin Deno may not run, naming the flag, before running it", async () => {
  await withFiles({}, async (dir) => {
    const plugin = await writeFakePlugin(dir);
    await Deno.writeTextFile(
      `${dir}/config`,
      execKubeconfig({ server: "https://127.0.0.1:6443", command: plugin.command, dir }),
    );
    const err = await assertRejects(
      () =>
        loadKubeAccess({
          kubeconfig: `${dir}/config`,
          runPermission: () => Promise.resolve("prompt"),
        }),
      { code: "ERR_KUBE" },
    );
    assertMatch(
      err.message,
      new RegExp(
        `^Kubeconfig ${dir}/config: users\\[0\\]\\.user\\.exec runs ".*", which the worker has no permission to run: add --allow-run=${plugin.command} to its deno run flags`,
      ),
    );
    assertEquals(await plugin.runs(), 0);
  });
});

Deno.test("loadKubeAccess() merges a KUBECONFIG list: the first file to set a value wins", async () => {
  await withFiles({ "ca.crt": CA }, async (dir) => {
    await Deno.mkdir(`${dir}/b`);
    await Deno.writeTextFile(`${dir}/b/ca.crt`, CA);
    // The first file: the current context and the user; the second: the context's cluster.
    await Deno.writeTextFile(
      `${dir}/a.yaml`,
      `current-context: dev\nusers:\n  - { name: u, user: { token: from-a } }\n`,
    );
    await Deno.writeTextFile(
      `${dir}/b/config`,
      `current-context: other
contexts:
  - { name: dev, context: { cluster: c, user: u } }
clusters:
  - { name: c, cluster: { server: "https://127.0.0.1:6443", certificate-authority: ca.crt } }
users:
  - { name: u, user: { token: from-b } }
`,
    );
    const access = await loadKubeAccess({
      kubeconfig: `${dir}/missing:${dir}/a.yaml:${dir}/b/config`,
    });
    assertEquals(await access.authorization(), "Bearer from-a");
    assertEquals(access.description.context, "dev");
    assertEquals(access.caPem, CA, "the CA path is relative to the second file's folder");
    access.httpClient.close();
    await assertRejects(() => loadKubeAccess({ kubeconfig: `${dir}/x:${dir}/y` }), {
      code: "ERR_KUBE",
      message: /^None of the KUBECONFIG files exists: /,
    });
  });
});
