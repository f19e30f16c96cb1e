/**
 * The chart's release (.github/scripts/package-chart.sh and the release
 * workflow's chart job): the package is the chart at deno.json's version,
 * linted strictly; the push's digest is what gets signed, never a tag; the
 * job has only the permissions it needs. Runs the script with the pinned helm
 * (tests/gotools) and, for the push, a helm that only prints what a push
 * prints: nothing leaves this machine.
 */

import { parse } from "yaml";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { locateHelm } from "../helpers/helm.ts";
import { ROOT } from "../helpers/program.ts";

const SCRIPT = `${ROOT}.github/scripts/package-chart.sh`;
const VERSION = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).version as string;
const helmBin = await locateHelm();
const DIGEST = `sha256:${"ab".repeat(32)}`;

async function run(args: string[], path: string) {
  const out = await new Deno.Command("bash", {
    args: [SCRIPT, ...args],
    env: { PATH: path, HELM_CACHE_HOME: "/nonexistent", HELM_CONFIG_HOME: "/nonexistent" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** A directory whose `helm` runs the real one, except `push`, which only prints a push's lines. */
async function helmWithFakePush(real: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "krt-helm-" });
  await Deno.writeTextFile(
    `${dir}/helm`,
    `#!/usr/bin/env bash
if [[ "$1" == push ]]; then
  echo "Pushed: \${3#oci://}/kuberollouttrigger:${VERSION}"
  echo "Digest: ${DIGEST}"
  exit 0
fi
exec "${real}" "$@"
`,
  );
  await Deno.chmod(`${dir}/helm`, 0o755);
  return dir;
}

Deno.test({
  name: "package-chart.sh packages the chart at deno.json's version and pushes it by digest",
  ignore: helmBin === undefined,
  async fn(t) {
    const out = await Deno.makeTempDir({ prefix: "krt-chart-" });
    const fake = await helmWithFakePush(helmBin!);
    const path = `${fake}:${Deno.env.get("PATH")}`;
    try {
      await t.step("without a registry: the package only", async () => {
        const r = await run([VERSION, out], path);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout, `chart=${out}/kuberollouttrigger-${VERSION}.tgz\n`);
        const shown = await new Deno.Command(helmBin!, {
          args: ["show", "chart", `${out}/kuberollouttrigger-${VERSION}.tgz`],
          stdout: "piped",
        }).output();
        const chart = parse(new TextDecoder().decode(shown.stdout));
        assertEquals([chart.version, chart.appVersion], [VERSION, VERSION]);
      });
      await t.step("with a registry: the digest to sign and the reference", async () => {
        const r = await run([VERSION, out, "oci://ghcr.io/acme/charts"], path);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(
          r.stdout.split("\n").filter(Boolean),
          [
            `chart=${out}/kuberollouttrigger-${VERSION}.tgz`,
            `digest=${DIGEST}`,
            "ref=ghcr.io/acme/charts/kuberollouttrigger",
          ],
        );
      });
      await t.step("another version than the chart's: refused, nothing pushed", async () => {
        const r = await run(["9.9.9", out, "oci://ghcr.io/acme/charts"], path);
        assertEquals(r.code, 1);
        assertMatch(r.stderr, /packaged no .*kuberollouttrigger-9\.9\.9\.tgz/);
        assert(!r.stderr.includes("Pushed:"), "pushed a chart of another version");
      });
    } finally {
      await Deno.remove(out, { recursive: true });
      await Deno.remove(fake, { recursive: true });
    }
  },
});

Deno.test("the release workflow's chart job pushes with package-chart.sh and signs the pushed digest", async () => {
  const workflow = parse(await Deno.readTextFile(`${ROOT}.github/workflows/release.yml`));
  const job = workflow.jobs.chart;
  // After the image job: never a signed chart whose appVersion image failed to publish.
  assertEquals(job.needs, ["version", "image"]);
  assertEquals(job.permissions, { contents: "read", packages: "write", "id-token": "write" });
  const steps = job.steps as { id?: string; run?: string; env?: Record<string, string> }[];
  const push = steps.find((s) => s.id === "chart")!;
  assertMatch(push.run!, /package-chart\.sh "\$VERSION" dist "\$OCI"/);
  assertEquals(push.env!.VERSION, "${{ needs.version.outputs.version }}");
  const sign = steps.find((s) => s.run?.includes("cosign sign"))!;
  assertMatch(sign.run!, /cosign sign --yes "\$REF@\$DIGEST"/);
  assertEquals(sign.env!.DIGEST, "${{ steps.chart.outputs.digest }}");
  // helm comes from its module, checked by the Go checksum database, at the chart tests' version.
  const gomod = await Deno.readTextFile(`${ROOT}tests/gotools/helm/go.mod`);
  const pinned = /helm\.sh\/helm\/v3 (v[0-9.]+)/.exec(gomod)![1];
  assertEquals(job.env.HELM_VERSION, pinned);
  assert(
    steps.some((s) => s.run?.includes('go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"')),
    "helm is built from its checked module",
  );
});
