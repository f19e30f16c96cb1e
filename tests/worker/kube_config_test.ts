import { assertEquals, assertMatch, assertRejects } from "../helpers/assert.ts";
import { AppError } from "../../shared/errors.ts";
import { loadKubeAccess } from "../../worker/kube_config.ts";

const CA = `-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy
dmVyLWNhQDE3MDAwMDAwMDAwHhcNMjMxMTE0MjIxMzIwWhcNMzMxMTExMjIxMzIw
WjAjMSEwHwYDVQQDDBhrM3Mtc2VydmVyLWNhQDE3MDAwMDAwMDAwWTATBgcqhkjO
PQIBBggqhkjOPQMBBwNCAAS6WlJJLFHiTFuMPBN0qTfpmtn0tM0TI5nLUHYafTSy
7tMBhF2oYJ5I7hozKVsf0ePBbzxAUemEIUArFZgTI8W1o0IwQDAOBgNVHQ8BAf8E
BAMCAqQwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUemCpjuzU1ymkCGf2grnH
czeUF8YwCgYIKoZIzj0EAwIDSAAwRQIhAKZ3JpVkHpo+rN1WvGZtJ3gJ7cYwbRuc
vBd3chU0i0wBAiBmoRq6bM47UU5jO0p68qrfKqNR7wkQ6JBYvuqgkgGxJw==
-----END CERTIFICATE-----
`;

async function withFiles(files: Record<string, string>, fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "krt-kubeconfig-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function kubeconfig(user: string, cluster = `certificate-authority: ca.crt`): string {
  return `apiVersion: v1
kind: Config
current-context: dev
contexts:
  - name: dev
    context: { cluster: c, user: u }
clusters:
  - name: c
    cluster:
      server: https://127.0.0.1:6443/
      ${cluster}
users:
  - name: u
    user:
      ${user}
`;
}

Deno.test("loadKubeAccess() reads a YAML kubeconfig with a token and a CA file relative to it", async () => {
  await withFiles({ config: kubeconfig("token: abc.def"), "ca.crt": CA }, async (dir) => {
    const access = await loadKubeAccess({ kubeconfig: `${dir}/config` });
    assertEquals(access.server, "https://127.0.0.1:6443");
    assertEquals(await access.authorization(), "Bearer abc.def");
    assertEquals(access.description, {
      server: "https://127.0.0.1:6443/",
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
      "client-certificate-data: eA==",
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
  await t.step("a token never appears in an error", async () => {
    await withFiles({
      config: kubeconfig("token: s3cret-token\n      exec: { command: x }"),
      "ca.crt": CA,
    }, async (dir) => {
      const err = await assertRejects(() => loadKubeAccess({ kubeconfig: `${dir}/config` }));
      assertEquals(err.message.includes("s3cret-token"), false);
    });
  });
});
