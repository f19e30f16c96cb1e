/**
 * Kubeconfig files for tests: a valid one around a given user entry, and every
 * malformed input the worker must refuse, each carrying a credential-shaped
 * secret that must never be quoted. Used in process (tests/worker/kube/) and
 * against the real worker (tests/e2e/kubeconfig_test.ts).
 */

/** A CA certificate, as a kubeconfig's certificate-authority file holds it. */
export const CA = `-----BEGIN CERTIFICATE-----
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

/** Writes `files` into a fresh folder, runs `fn` there, and removes the folder. */
export async function withFiles(files: Record<string, string>, fn: (dir: string) => Promise<void>) {
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

/** A kubeconfig whose one user entry is `user` (and cluster line `cluster`). */
export function kubeconfig(user: string, cluster = `certificate-authority: ca.crt`): string {
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

// A credential-shaped value fed through every failure path below. Each path
// must fail with one ERR_KUBE line that names the field and never the value.
export const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
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

/** One malformed input and the message that must name it. */
export interface FailureCase {
  name: string;
  files: Record<string, string>;
  message: RegExp;
}

/** Every malformed kubeconfig the worker refuses. */
export async function failureCases(): Promise<FailureCase[]> {
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
