/**
 * What the release workflow does that can run here: the version derivation
 * (the tag, the image tag, the chart and the manifests' tag all come from
 * deno.json's "version"), the `deno compile` command lines and the permission
 * set they use, and the Dockerfile's references to the tree.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { ROOT } from "../helpers/program.ts";

const VERSION = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).version as string;
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

/** A copy of the files release-version.sh reads, with `edit` applied to them. */
async function tree(edit: (dir: string) => Promise<void> = async () => {}): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "krt-release-" });
  const files = [
    ".github/scripts/release-version.sh",
    "deno.json",
    "k8s/helm/kuberollouttrigger/Chart.yaml",
    "k8s/base/web/deployment.yaml",
    "k8s/base/worker/deployment.yaml",
    "k8s/overlays/quickstart/kustomization.yaml",
  ];
  for (const file of files) {
    if (file.includes("/")) {
      await Deno.mkdir(`${dir}/${file.replace(/\/[^/]+$/, "")}`, { recursive: true });
    }
    await Deno.copyFile(`${ROOT}${file}`, `${dir}/${file}`);
  }
  await edit(dir);
  return dir;
}

async function releaseVersion(dir: string, tag: string) {
  const out = await new Deno.Command("bash", {
    args: [`${dir}/.github/scripts/release-version.sh`, tag],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

async function replaceIn(path: string, from: string | RegExp, to: string) {
  const text = await Deno.readTextFile(path);
  const next = text.replace(from, to);
  assert(next !== text, `${path} had ${from}`);
  await Deno.writeTextFile(path, next);
}

Deno.test("release-version.sh: the tag of deno.json's version releases it, for the image and the chart alike", async () => {
  const dir = await tree();
  try {
    const ok = await releaseVersion(dir, `v${VERSION}`);
    assertEquals(ok.stderr, "");
    assertEquals(ok.code, 0);
    assertEquals(ok.stdout, `version=${VERSION}\n`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("release-version.sh stops a release whose tag, chart or manifests disagree with deno.json, naming each", async (t) => {
  await t.step("another tag", async () => {
    const dir = await tree();
    try {
      const out = await releaseVersion(dir, "v9.9.9");
      assertEquals(out.code, 1);
      assertEquals(out.stdout, "");
      assertMatch(
        out.stderr,
        new RegExp(`tag "v9\\.9\\.9" is not v${VERSION.replaceAll(".", "\\.")}`),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await t.step("a chart and a manifest left at an older version", async () => {
    const dir = await tree(async (d) => {
      await replaceIn(
        `${d}/k8s/helm/kuberollouttrigger/Chart.yaml`,
        /^appVersion: .*$/m,
        'appVersion: "0.0.9"',
      );
      await replaceIn(
        `${d}/k8s/base/worker/deployment.yaml`,
        `kuberollouttrigger:${VERSION}`,
        "kuberollouttrigger:0.0.9",
      );
    });
    try {
      const out = await releaseVersion(dir, `v${VERSION}`);
      assertEquals(out.code, 1);
      assertEquals(out.stdout, "", "no version for the workflow to build");
      assertMatch(out.stderr, /Chart\.yaml appVersion is "0\.0\.9"/);
      assertMatch(out.stderr, /k8s\/base\/worker\/deployment\.yaml names .*:0\.0\.9, not/);
      assert(!out.stderr.includes("web/deployment.yaml"), out.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("the release workflow takes its image tag and version from release-version.sh only", () => {
  const workflow = Deno.readTextFileSync(`${ROOT}.github/workflows/release.yml`);
  assertMatch(workflow, /release-version\.sh "\$TAG" >>"\$GITHUB_OUTPUT"/);
  assertMatch(
    workflow,
    /tags: \$\{\{ steps\.name\.outputs\.image \}\}:\$\{\{ needs\.version\.outputs\.version \}\}/,
  );
  assert(
    !/:\d+\.\d+\.\d+/.test(workflow.replaceAll(/@[0-9a-f]{40} # v[\d.]+/g, "")),
    "no version written in the workflow",
  );
});

Deno.test("compile.sh builds both Linux targets with the compiled permission set, and that command line runs", async () => {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}.github/scripts/compile.sh`, "--print", VERSION, "dist"],
    stdout: "piped",
  }).output();
  assertEquals(out.code, 0);
  const lines = decode(out.stdout).trim().split("\n");
  // One heap setting for every way the program runs: both modes' tasks, the image's compile
  // task and the release binaries (one binary runs either mode).
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks;
  const v8 = (task: string) => /--v8-flags=\S+/.exec(task)?.[0];
  const flags = v8(tasks.compile);
  assert(flags !== undefined, "the compile task sets --v8-flags");
  assertEquals([v8(tasks.web), v8(tasks.worker)], [flags, flags]);
  assertEquals(
    lines,
    ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"].map((target) =>
      `deno compile -P=compiled --frozen ${flags} --target ${target} --output dist/kuberollouttrigger-${VERSION}-${target} main.ts`
    ),
  );
  // `deno compile` needs a denort download; the same flags less the
  // compile-only ones run the same program with the same permissions.
  const args = lines[0].split(" ").slice(2);
  const run = args.filter((a, i) =>
    !["--target", "--output"].includes(a) &&
    !["--target", "--output"].includes(args[i - 1])
  );
  assertEquals(run, ["-P=compiled", "--frozen", flags, "main.ts"]);
  const started = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...run.slice(0, -1), "main.ts", "worker", "--help"],
    cwd: ROOT,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(started.code, 0, decode(started.stderr));
  assertMatch(decode(started.stdout), /WATCH_NAMESPACES/);
});

Deno.test("the Dockerfile copies what main.ts needs, compiles with the compiled set, and runs as non-root", () => {
  const dockerfile = Deno.readTextFileSync(`${ROOT}Dockerfile`);
  const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
    m[1].split(" ")
  );
  for (const path of copied) {
    assert(
      Deno.statSync(`${ROOT}${path}`).isFile || Deno.statSync(`${ROOT}${path}`).isDirectory,
      `${path} exists`,
    );
  }
  // Every local module main.ts reaches, the modes' dynamic imports included, lives in a
  // directory the build copies (or is copied itself).
  const dirs = copied.filter((path) => path.endsWith("/"));
  const imports = new Set<string>();
  const pending = ["main.ts"];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (imports.has(file)) continue;
    imports.add(file);
    const text = Deno.readTextFileSync(`${ROOT}${file}`);
    for (const [, spec] of text.matchAll(/(?:from |import\()"(\.{1,2}\/[^"]+)"/g)) {
      pending.push(new URL(spec, `file:///${file}`).pathname.slice(1));
    }
  }
  for (const file of imports) {
    assert(copied.includes(file) || dirs.some((d) => file.startsWith(d)), `${file} is copied`);
  }
  assertMatch(
    dockerfile,
    /^RUN deno install --frozen --entrypoint main\.ts \\\n && deno task compile$/m,
  );
  const compile = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks.compile;
  assertMatch(compile, /^deno compile -P=compiled /);
  assertMatch(dockerfile, /^USER 65532:65532$/m);
  assertMatch(dockerfile, /^FROM denoland\/deno:debian-2\.9\.6 AS build$/m);
});
