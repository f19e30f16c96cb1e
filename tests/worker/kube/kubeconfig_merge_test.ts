/**
 * KUBECONFIG lists merged as kubectl merges them: the first file to set a
 * value wins, missing files of a list are skipped, relative paths stay
 * relative to the file that names them.
 */

import { assertEquals, assertRejects } from "../../helpers/assert.ts";
import { AppError } from "../../../shared/errors.ts";
import { loadKubeconfigs, splitKubeconfigPaths } from "../../../worker/kube/kubeconfig_merge.ts";

const FILES: Record<string, string> = {
  "/a/config": `
current-context: from-a
contexts:
  - { name: from-a, context: { cluster: shared, user: only-a } }
clusters:
  - { name: shared, cluster: { server: "https://a:6443" } }
users:
  - { name: only-a, user: { token: a } }
`,
  "/b/config": `
current-context: from-b
contexts:
  - { name: from-a, context: { cluster: other, user: other } }
  - { name: from-b, context: { cluster: only-b, user: only-a } }
clusters:
  - { name: shared, cluster: { server: "https://b:6443" } }
  - { name: only-b, cluster: { server: "https://only-b:6443", certificate-authority: ca.crt } }
users:
  - { name: only-a, user: { token: b } }
`,
  "/c/config": `
clusters:
  - { name: from-c, cluster: { server: "https://c:6443" } }
`,
};

function read(path: string): Promise<string> {
  if (FILES[path] !== undefined) return Promise.resolve(FILES[path]);
  const cause = new Deno.errors.NotFound(`No such file or directory (os error 2): ${path}`);
  return Promise.reject(
    new AppError("ERR_KUBE", `Cannot read kubeconfig ${path}: ${cause.message}`, { cause }),
  );
}

Deno.test("splitKubeconfigPaths() splits at ':' as kubectl does, dropping empty and repeated paths", () => {
  assertEquals(splitKubeconfigPaths("/a:/b::/a:"), ["/a", "/b"]);
  assertEquals(splitKubeconfigPaths("/only"), ["/only"]);
});

Deno.test("loadKubeconfigs() lets the first file that sets a value win", async (t) => {
  const merged = await loadKubeconfigs("/c/config:/a/config:/b/config", read);
  await t.step("current-context from the first file that sets it", () => {
    assertEquals(merged.currentContext, { name: "from-a", path: "/a/config" });
  });
  await t.step("a name defined twice: the first file's definition", () => {
    assertEquals(merged.find("clusters", "shared")?.fields.text("server"), "https://a:6443");
    assertEquals(merged.find("users", "only-a")?.fields.text("token"), "a");
    assertEquals(merged.find("contexts", "from-a")?.fields.text("cluster"), "shared");
  });
  await t.step(
    "a name defined once, in a later file, is found there, relative to that file",
    () => {
      const entry = merged.find("clusters", "only-b");
      assertEquals(entry?.where, "Kubeconfig /b/config: clusters[1].cluster");
      assertEquals(entry?.base, "/b");
      assertEquals(merged.find("clusters", "from-c")?.base, "/c");
    },
  );
  await t.step("names lists every file's names once, first files first", () => {
    assertEquals(merged.names("contexts"), ["from-a", "from-b"]);
  });
});

Deno.test("loadKubeconfigs() skips missing files of a list, as kubectl does", async (t) => {
  await t.step("some missing: the others are read", async () => {
    const merged = await loadKubeconfigs("/missing/config:/b/config", read);
    assertEquals(merged.paths, ["/b/config"]);
    assertEquals(merged.currentContext?.name, "from-b");
  });
  await t.step("all missing: one line naming them", async () => {
    await assertRejects(() => loadKubeconfigs("/x/config:/y/config", read), {
      code: "ERR_KUBE",
      message: /^None of the KUBECONFIG files exists: \/x\/config, \/y\/config$/,
    });
  });
  await t.step("a single missing path: the read error itself", async () => {
    await assertRejects(() => loadKubeconfigs("/x/config", read), {
      code: "ERR_KUBE",
      message: /^Cannot read kubeconfig \/x\/config: No such file/,
    });
  });
  await t.step("a file that may not be read is an error, not skipped", async () => {
    const denied = (path: string) =>
      path === "/b/config"
        ? Promise.reject(
          new AppError("ERR_KUBE", "Cannot read kubeconfig /b/config", {
            cause: new Deno.errors.NotCapable("Requires read access"),
          }),
        )
        : read(path);
    await assertRejects(() => loadKubeconfigs("/a/config:/b/config", denied), {
      message: /^Cannot read kubeconfig \/b\/config/,
    });
  });
});
