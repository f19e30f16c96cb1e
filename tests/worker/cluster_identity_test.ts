/**
 * The cluster identity: CA certificates by their DER fingerprint (what
 * openssl prints), whatever the PEM's layout; one shared certificate through a
 * CA rotation; the server URL without a CA or with a trust-store-sized bundle;
 * dev mode's local inventory by its real path; and what loadKubeAccess()
 * exposes for it, in-cluster and from a kubeconfig.
 */

import { assert, assertEquals, assertMatch, assertNotEquals } from "../helpers/assert.ts";
import { CA, kubeconfig, SECRET, withFiles } from "../helpers/kubeconfig_cases.ts";
import {
  ABOUT_MAX_LENGTH,
  apiServerIdentity,
  FINGERPRINT,
  labelIdentity,
  localInventoryIdentity,
  MAX_CA_CERTIFICATES,
} from "../../worker/cluster_identity.ts";
import { loadKubeAccess } from "../../worker/kube/config.ts";

/** A second, unrelated CA (made once with openssl; valid until 2126). */
const OTHER_CA = `-----BEGIN CERTIFICATE-----
MIIBkDCCATWgAwIBAgIUPwX4l2/VnD7cqFx8qBCnKWSJOBswCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRc2Vjb25kLWNsdXN0ZXItY2EwIBcNMjYxMjA2MDg0OTQyWhgP
MjEyNjExMTIwODQ5NDJaMBwxGjAYBgNVBAMMEXNlY29uZC1jbHVzdGVyLWNhMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmjvoVCfFJPXxCDZsVoFFHWo1gsV+BRC8
ZUTV/sKtvQnb9wIhCo69MVHd3qt8KhDipmjcvuSBhBM/KZIazq1YzKNTMFEwHQYD
VR0OBBYEFOn/ywC2LF8cVHHFhI2zTMsQo4h9MB8GA1UdIwQYMBaAFOn/ywC2LF8c
VHHFhI2zTMsQo4h9MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIh
AItLU5rJlJbWV0hGfP2gB8G66tneI48HNW8xPvB89bL8AiEAseJWBbwIfkm5gYLK
KRo8TkrDiABFo0r6L0X0QV5XWp0=
-----END CERTIFICATE-----
`;
// `openssl x509 -noout -fingerprint -sha256` of each, first 16 hex digits.
const CA_FINGERPRINT = "59a2ed65535bb5f6";
const OTHER_CA_FINGERPRINT = "101bba221716f088";

const SERVER = "https://10.0.0.1:6443";

Deno.test("apiServerIdentity() fingerprints each CA certificate as openssl does", () => {
  const one = apiServerIdentity({ server: SERVER, caPem: CA });
  assertEquals(one.fingerprints, [CA_FINGERPRINT]);
  assertEquals(one.about, `${SERVER}, CA sha256:${CA_FINGERPRINT}`);
  const other = apiServerIdentity({ server: SERVER, caPem: OTHER_CA });
  assertEquals(other.fingerprints, [OTHER_CA_FINGERPRINT], "another CA, another identity");
});

Deno.test("apiServerIdentity() gives one CA the same identity whatever the PEM's layout or the URL", async (t) => {
  const expected = apiServerIdentity({ server: SERVER, caPem: CA }).fingerprints;
  const layouts: [string, string][] = [
    ["CRLF line ends", CA.replaceAll("\n", "\r\n")],
    ["a comment and blank lines around it", `# cluster CA\n\n${CA}\n\n`],
    ["the certificate twice", CA + CA],
  ];
  for (const [name, caPem] of layouts) {
    await t.step(name, () => {
      assertEquals(apiServerIdentity({ server: SERVER, caPem }).fingerprints, expected);
    });
  }
  await t.step("another URL of the same cluster (in-cluster vs kubeconfig)", () => {
    const inCluster = apiServerIdentity({ server: "https://10.96.0.1:443", caPem: CA });
    assertEquals(inCluster.fingerprints, expected);
  });
});

Deno.test("apiServerIdentity() keeps a CA rotation's bundles one cluster: they share a certificate", () => {
  const before = apiServerIdentity({ server: SERVER, caPem: CA });
  const during = apiServerIdentity({ server: SERVER, caPem: OTHER_CA + CA });
  const after = apiServerIdentity({ server: SERVER, caPem: OTHER_CA });
  assertEquals(during.fingerprints, [OTHER_CA_FINGERPRINT, CA_FINGERPRINT].sort());
  assertEquals(during.about, `${SERVER}, CA sha256:101bba221716f088 + sha256:59a2ed65535bb5f6`);
  const shares = (a: readonly string[], b: readonly string[]) => a.some((f) => b.includes(f));
  assert(shares(before.fingerprints, during.fingerprints));
  assert(shares(during.fingerprints, after.fingerprints));
  assert(!shares(before.fingerprints, after.fingerprints));
});

Deno.test("apiServerIdentity() falls back to the server URL without a CA or with a trust store", async (t) => {
  await t.step("no CA: the URL, in one canonical form", () => {
    const a = apiServerIdentity({ server: "https://api.example.com:443/" });
    const b = apiServerIdentity({ server: "https://API.example.com" });
    assertEquals(a, b);
    assertEquals(a.about, "https://api.example.com, system trust store");
    assertNotEquals(
      a.fingerprints,
      apiServerIdentity({ server: "https://api.other.example.com" }).fingerprints,
    );
  });
  await t.step("more certificates than a cluster's CA: the URL", () => {
    const store = OTHER_CA.repeat(1) + CA.repeat(MAX_CA_CERTIFICATES);
    const identity = apiServerIdentity({ server: SERVER, caPem: store });
    assertEquals(identity.fingerprints, apiServerIdentity({ server: SERVER }).fingerprints);
    assertEquals(identity.about, `${SERVER}, a ${MAX_CA_CERTIFICATES + 1}-certificate bundle`);
  });
});

Deno.test("labelIdentity() and every identity: fingerprints of one shape, about short printable ASCII", () => {
  const identities = [
    apiServerIdentity({ server: `https://${"a".repeat(300)}.example:6443/ü`, caPem: CA }),
    labelIdentity("tests\u0007 \u00e9"),
  ];
  for (const identity of identities) {
    for (const f of identity.fingerprints) assertMatch(f, FINGERPRINT);
    assertMatch(identity.about, /^[\x20-\x7e]+$/);
    assert(identity.about.length <= ABOUT_MAX_LENGTH, identity.about);
  }
  assertEquals(labelIdentity("tests\u0007").about, "tests?");
});

Deno.test("localInventoryIdentity() names the file by its real path: one file is one cluster", async () => {
  await withFiles({ "a.yaml": "[]", "b.yaml": "[]" }, async (dir) => {
    const absolute = await localInventoryIdentity(`${dir}/a.yaml`);
    const relative = await localInventoryIdentity(
      `${dir}/../${dir.split("/").at(-1)}/./a.yaml`,
    );
    assertEquals(relative, absolute);
    assertEquals(absolute.about, `local inventory ${await Deno.realPath(`${dir}/a.yaml`)}`);
    const other = await localInventoryIdentity(`${dir}/b.yaml`);
    assertNotEquals(other.fingerprints, absolute.fingerprints);
    const missing = await localInventoryIdentity("no/such/file.yaml");
    assertEquals(missing.about, "local inventory no/such/file.yaml", "the path as given");
  });
});

Deno.test("loadKubeAccess() exposes the CA it trusts for the identity, and no credential reaches it", async (t) => {
  await t.step("kubeconfig: certificate-authority file", async () => {
    await withFiles(
      { config: kubeconfig(`token: ${SECRET}`), "ca.crt": CA },
      async (dir) => {
        const access = await loadKubeAccess({ kubeconfig: `${dir}/config` });
        access.httpClient.close();
        assertEquals(access.caPem, CA);
        const identity = apiServerIdentity(access);
        assertEquals(identity.fingerprints, [CA_FINGERPRINT]);
        assert(!JSON.stringify(identity).includes(SECRET));
      },
    );
  });
  await t.step("kubeconfig: certificate-authority-data", async () => {
    const data = `certificate-authority-data: ${btoa(OTHER_CA)}`;
    await withFiles({ config: kubeconfig(`token: ${SECRET}`, data) }, async (dir) => {
      const access = await loadKubeAccess({ kubeconfig: `${dir}/config` });
      access.httpClient.close();
      assertEquals(apiServerIdentity(access).fingerprints, [OTHER_CA_FINGERPRINT]);
    });
  });
  await t.step("kubeconfig without a CA: the system roots, so the URL", async () => {
    await withFiles({ config: kubeconfig(`token: ${SECRET}`, "") }, async (dir) => {
      const access = await loadKubeAccess({ kubeconfig: `${dir}/config` });
      access.httpClient.close();
      assertEquals(access.caPem, undefined);
      assertEquals(apiServerIdentity(access).about, "https://127.0.0.1:6443, system trust store");
    });
  });
  await t.step("in-cluster: the ServiceAccount's ca.crt", async () => {
    await withFiles({ "ca.crt": CA, token: SECRET }, async (dir) => {
      const env: Record<string, string> = {
        KUBERNETES_SERVICE_HOST: "10.96.0.1",
        KUBERNETES_SERVICE_PORT: "443",
      };
      const access = await loadKubeAccess({
        kubeconfig: "",
        serviceAccountDir: dir,
        env: (n) => env[n],
      });
      access.httpClient.close();
      const identity = apiServerIdentity(access);
      assertEquals(identity.about, `https://10.96.0.1, CA sha256:${CA_FINGERPRINT}`);
      assert(!JSON.stringify(identity).includes(SECRET));
    });
  });
});
