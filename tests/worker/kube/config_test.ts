import { assert, assertEquals, assertMatch, assertRejects } from "../../helpers/assert.ts";
import { startProgram } from "../../helpers/program.ts";
import { AppError } from "../../../shared/errors.ts";
import { loadKubeAccess } from "../../../worker/kube/config.ts";

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

// A credential-shaped value fed through every failure path below. Each path
// must fail with one ERR_KUBE line that names the field and never the value.
const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
const b64 = (text: string) => btoa(text);
const fakePem = (label: string) =>
  `-----BEGIN ${label}-----\n${b64(SECRET + SECRET)}\n-----END ${label}-----\n`;

async function privateKeyPem(): Promise<string> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const body = btoa(String.fromCharCode(...der)).replace(/.{64}/g, "$&\n");
  return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;
}

interface FailureCase {
  name: string;
  files: Record<string, string>;
  message: RegExp;
}

async function failureCases(): Promise<FailureCase[]> {
  const key = await privateKeyPem();
  const withUser = (user: string, cluster?: string) => ({
    config: kubeconfig(user, cluster),
    "ca.crt": CA,
  });
  const raw = (config: string) => ({ config, "ca.crt": CA });
  return [
    {
      name: "a YAML syntax error on the line after the token",
      files: withUser(`token: ${SECRET}\n     oops: [`),
      message:
        /Cannot parse kubeconfig .*: YAML error BAD_INDENT at line 16, column 1 \(the line is not shown/,
    },
    {
      name: "an unterminated quote around the token",
      files: withUser(`token: "${SECRET}`),
      message: /YAML error MISSING_CHAR at line \d+, column \d+/,
    },
    {
      name: "the token given twice",
      files: withUser(`token: ${SECRET}\n      token: ${SECRET}x`),
      message: /YAML error DUPLICATE_KEY at line 16, column 7/,
    },
    {
      // The yaml library prints warnings (with the line) to stderr unless told not to.
      name: "an unknown YAML tag on the token line (a warning, then another failure)",
      files: withUser(`token: !vault ${SECRET}\n      exec: { command: x }`),
      message: /exec, which the worker cannot use/,
    },
    {
      name: "a token with a newline inside",
      files: withUser(`token: "abc\\n${SECRET}"`),
      message:
        /users\[0\]\.user\.token holds a character that cannot be sent in an Authorization header .*position 4/,
    },
    {
      name: "a token file with a space inside",
      files: { ...withUser("tokenFile: token"), token: `${SECRET} ${SECRET}\n` },
      message: /Token file .*token holds a character that cannot be sent/,
    },
    {
      name: "certificate-authority-data that is not base64",
      files: withUser("token: x", `certificate-authority-data: "${SECRET}!"`),
      message: /clusters\[0\]\.cluster\.certificate-authority-data is not base64: character \d+/,
    },
    {
      name: "certificate-authority-data that is base64 of text, not PEM",
      files: withUser("token: x", `certificate-authority-data: ${b64(SECRET)}`),
      message: /certificate-authority-data holds no PEM certificate/,
    },
    {
      name: "certificate-authority-data whose PEM block is not a certificate",
      files: withUser("token: x", `certificate-authority-data: ${b64(fakePem("CERTIFICATE"))}`),
      message:
        /certificate-authority-data holds a PEM certificate whose content is not valid X\.509/,
    },
    {
      name: "a certificate-authority file that is not PEM",
      files: { ...withUser("token: x", "certificate-authority: bad.crt"), "bad.crt": SECRET },
      message: /certificate-authority \(.*bad\.crt\) holds no PEM certificate/,
    },
    {
      name: "client-key-data that is not base64",
      files: withUser(
        `client-certificate-data: ${b64(CA)}\n      client-key-data: "${SECRET}*"`,
      ),
      message: /users\[0\]\.user\.client-key-data is not base64/,
    },
    {
      name: "client-key-data that holds no private key",
      files: withUser(
        `client-certificate-data: ${b64(CA)}\n      client-key-data: ${b64(SECRET)}`,
      ),
      message: /client-key-data must hold exactly one PEM private key/,
    },
    {
      name: "client-key-data whose key does not parse",
      files: withUser(
        `client-certificate-data: ${b64(CA)}\n      client-key-data: ${
          b64(fakePem("PRIVATE KEY"))
        }`,
      ),
      message: /client-key-data holds a private key Deno cannot read/,
    },
    {
      name: "client-key-data that is not the certificate's key",
      files: withUser(
        `client-certificate-data: ${b64(CA)}\n      client-key-data: ${b64(key)}`,
      ),
      message: /client-key-data is not the private key of .*client-certificate-data/,
    },
    {
      name: "client-certificate-data whose PEM block is not a certificate",
      files: withUser(
        `client-certificate-data: ${b64(fakePem("CERTIFICATE"))}\n      client-key-data: ${
          b64(key)
        }`,
      ),
      message: /client-certificate-data holds a PEM certificate whose content is not valid X\.509/,
    },
    {
      name: "a client-certificate file that is not PEM",
      files: {
        ...withUser("client-certificate: c.crt\n      client-key: k.key"),
        "c.crt": SECRET,
        "k.key": key,
      },
      message: /client-certificate \(.*c\.crt\) holds no PEM certificate/,
    },
    {
      name: "a server URL with a password in it",
      files: raw(
        kubeconfig("token: x").replace(
          "https://127.0.0.1:6443/",
          `https://admin:${SECRET}@127.0.0.1:6443/`,
        ),
      ),
      message: /clusters\[0\]\.cluster\.server carries a user or password/,
    },
    {
      name: "a server that is not a URL",
      files: raw(kubeconfig("token: x").replace("https://127.0.0.1:6443/", `${SECRET} here`)),
      message: /clusters\[0\]\.cluster\.server is not a URL/,
    },
    {
      name: "a plain-http server on another machine",
      files: raw(kubeconfig(`token: ${SECRET}`).replace("https://127.0.0.1", "http://10.1.2.3")),
      message: /server must be an https:\/\/ URL/,
    },
    {
      name: "a file that is YAML but not a mapping",
      files: raw(`- ${SECRET}\n`),
      message: /must be a YAML mapping \(found a list\)/,
    },
    {
      name: "clusters that is a number",
      files: raw(
        kubeconfig(`token: ${SECRET}`).replace(
          /clusters:\n( {2}.*\n)+?users:/,
          "clusters: 5\nusers:",
        ),
      ),
      message: /: clusters must be a list \(found a number\)/,
    },
    {
      name: "contexts that is a mapping",
      files: raw(`current-context: dev\ncontexts: { dev: ${SECRET} }\n`),
      message: /: contexts must be a list \(found a mapping\)/,
    },
    {
      name: "a user entry that is text",
      files: raw(kubeconfig("token: x").replace(/users:\n[\s\S]*$/, `users:\n  - ${SECRET}\n`)),
      message: /: users\[0\] must be a mapping \(found text\)/,
    },
    {
      name: "a token that is a list",
      files: withUser(`token: [${SECRET}]`),
      message: /users\[0\]\.user\.token must be text \(found a list\)/,
    },
    {
      name: "a context body that is a list",
      files: raw(
        kubeconfig(`token: ${SECRET}`).replace("context: { cluster: c, user: u }", "context: [c]"),
      ),
      message: /contexts\[0\]\.context must be a mapping \(found a list\)/,
    },
  ];
}

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
