import { assert, assertEquals, assertMatch, assertRejects } from "../../helpers/assert.ts";
import { AppError } from "../../../shared/errors.ts";
import { loadKubeAccess } from "../../../worker/kube/config.ts";
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
    ["an exec plugin", "exec: { command: aws }", undefined, /exec, which the worker cannot use/],
    ["an auth provider", "auth-provider: { name: oidc }", undefined, /auth-provider/],
    ["basic auth", "username: admin", undefined, /basic auth/],
    ["no credentials", "{}", undefined, /no token, tokenFile or client certificate/],
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
