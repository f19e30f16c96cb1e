/**
 * What the release workflow does that can run here: the version derivation
 * (the tag, the image tag, the chart, the manifests' tag and the Action's
 * version all come from deno.json's "version"), the `deno compile` command
 * lines and the permission set they use, and the Dockerfile's references to
 * the tree. And one version everywhere a user reads or pulls one: every
 * mention of our Action, image, binaries or chart in README.md, action.yml,
 * docs/ and k8s/ names deno.json's version.
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
    "action.yml",
    "README.md",
    "k8s/helm/kuberollouttrigger/Chart.yaml",
    "k8s/base/web/deployment.yaml",
    "k8s/base/worker/deployment.yaml",
    "k8s/overlays/quickstart/kustomization.yaml",
    ...filesUnder("docs/"),
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
  await t.step(
    "the Action's user agent and an example workflow left at an older version",
    async () => {
      const dir = await tree(async (d) => {
        await replaceIn(
          `${d}/action.yml`,
          `kuberollouttrigger-action/${VERSION}`,
          "kuberollouttrigger-action/0.0.9",
        );
        await replaceIn(
          `${d}/docs/examples/release.yml`,
          `kuberollouttrigger/kuberollouttrigger@v${VERSION}`,
          "kuberollouttrigger/kuberollouttrigger@v0.0.9",
        );
      });
      try {
        const out = await releaseVersion(dir, `v${VERSION}`);
        assertEquals(out.code, 1);
        assertEquals(out.stdout, "");
        assertMatch(out.stderr, /action\.yml's user agent names version "0\.0\.9"/);
        assertMatch(
          out.stderr,
          /docs\/examples\/release\.yml:\d+ names kuberollouttrigger\/kuberollouttrigger@v0\.0\.9, not v/,
        );
        assertEquals(out.stderr.trim().split("\n").length, 2, out.stderr);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
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

/** Every file under `dir` (relative to ROOT, ending in "/"), as paths relative to ROOT. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}${entry.name}`;
    if (entry.isDirectory) out.push(...filesUnder(`${path}/`));
    else if (entry.isFile) out.push(path);
  }
  return out.sort();
}

/** A version of ours written where a user reads or pulls it. */
interface Mention {
  file: string;
  line: number;
  what: string;
  version: string;
}

const SEMVER = String.raw`\d+\.\d+\.\d+(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?`;
const NOT_AFTER_NAME = String.raw`(?<![\w.-])`;

/**
 * What names a version of ours, each with the version as its group 1; `files`
 * narrows a pattern that would be too loose elsewhere. Third-party actions,
 * images and tools (`actions/checkout@… # v7.0.1`, `valkey/valkey:8.1`,
 * `deno@2.9.6`, the existing kuberollouttrigger-action) match none of them.
 */
const OURS: { what: string; re: RegExp; files?: RegExp }[] = [
  {
    what: "the Action by tag",
    re: new RegExp(`${NOT_AFTER_NAME}kuberollouttrigger/kuberollouttrigger@v(${SEMVER})`, "g"),
  },
  {
    what: "the Action by commit",
    re: new RegExp(
      `${NOT_AFTER_NAME}kuberollouttrigger/kuberollouttrigger@[^\\s#\`]+(?: [^#\\n\`]*)? # v(${SEMVER})`,
      "g",
    ),
  },
  {
    what: "a release of the repository",
    re: new RegExp(
      `${NOT_AFTER_NAME}kuberollouttrigger/kuberollouttrigger/[\\w/]*?v(${SEMVER})`,
      "g",
    ),
  },
  { what: "the Action's user agent", re: new RegExp(`kuberollouttrigger-action/(${SEMVER})`, "g") },
  {
    what: "the image",
    re: new RegExp(
      `${NOT_AFTER_NAME}(?:[\\w.-]+(?::\\d+)?/)*kuberollouttrigger:v?(${SEMVER})`,
      "g",
    ),
  },
  { what: "the image tag", re: new RegExp(`\\bnewTag: *"?v?(${SEMVER})`, "g"), files: /^k8s\// },
  {
    what: "the chart",
    re: new RegExp(`^(?:version|appVersion): *"?(${SEMVER})"?$`, "gm"),
    files: /Chart\.yaml$/,
  },
  {
    what: "the chart",
    re: new RegExp(`charts/kuberollouttrigger\\S*\\s+--version[ =]v?(${SEMVER})`, "g"),
  },
  { what: "a release binary", re: new RegExp(`kuberollouttrigger-v?(${SEMVER})-`, "g") },
  {
    // docs/deployment.md's download: `v=X.Y.Z target=…`, then …/download/v$v/kuberollouttrigger-$v-$target.
    what: "a release binary",
    re: new RegExp(`^v=(${SEMVER})\\b`, "gm"),
    files: /\.md$/,
  },
];

/** Every mention of a version of ours in `text`, the contents of `file`. */
function versionMentions(file: string, text: string): Mention[] {
  const out: Mention[] = [];
  for (const { what, re, files } of OURS) {
    if (files && !files.test(file)) continue;
    for (const m of text.matchAll(re)) {
      const line = text.slice(0, m.index).split("\n").length;
      out.push({ file, line, what, version: m[1] });
    }
  }
  return out.sort((a, b) => a.line - b.line || a.what.localeCompare(b.what));
}

/** The places a user reads or pulls a version: README.md, action.yml, docs/, k8s/. */
function scanned(): string[] {
  return ["README.md", "action.yml", ...filesUnder("docs/"), ...filesUnder("k8s/")]
    .filter((file) => /\.(md|ya?ml|txt|tpl)$/.test(file));
}

Deno.test("every version of our Action, image, binaries and chart in README, action.yml, docs/ and k8s/ is deno.json's", () => {
  const mentions = scanned().flatMap((file) =>
    versionMentions(file, Deno.readTextFileSync(`${ROOT}${file}`))
  );
  const others = mentions
    .filter((m) => m.version !== VERSION)
    .map((m) => `${m.file}:${m.line}: ${m.what} at ${m.version}`);
  // The scan reaches each kind of place that names one (a scan finding nothing passes nothing).
  const found = new Set(mentions.map((m) => `${m.file}: ${m.what}`));
  const expected = [
    "action.yml: the Action's user agent",
    "k8s/helm/kuberollouttrigger/Chart.yaml: the chart",
    "k8s/base/web/deployment.yaml: the image",
    "k8s/base/worker/deployment.yaml: the image",
    "k8s/overlays/quickstart/kustomization.yaml: the image tag",
    "docs/examples/rollout.yml: the Action by tag",
    "docs/examples/release.yml: the Action by tag",
    "docs/examples/fire-and-forget.yml: the Action by tag",
    "docs/github-actions.md: the Action by tag",
    "docs/github-actions.md: the Action by commit",
    "docs/github-actions.md: a release of the repository",
    "docs/deployment.md: a release binary",
    "docs/deployment.md: the image",
  ];
  assertEquals(
    { otherVersions: others, notFound: expected.filter((e) => !found.has(e)) },
    { otherVersions: [], notFound: [] },
    `deno.json says ${VERSION}; found:\n${[...found].join("\n")}`,
  );
  assertEquals(
    mentions.filter((m) => m.file.endsWith("Chart.yaml")).length,
    2,
    "version and appVersion",
  );
});

Deno.test("versionMentions() finds our versions and only ours", async (t) => {
  const cases: [string, string, [string, string][]][] = [
    ["docs/x.md", "uses: kuberollouttrigger/kuberollouttrigger@v0.1.9", [[
      "the Action by tag",
      "0.1.9",
    ]]],
    [
      "docs/x.md",
      `- uses: kuberollouttrigger/kuberollouttrigger@${"ab12".repeat(10)} # v0.1.9`,
      [["the Action by commit", "0.1.9"]],
    ],
    [
      "docs/x.md",
      "`uses: kuberollouttrigger/kuberollouttrigger@<40-hex commit of v0.1.9> # v0.1.9`",
      [["the Action by commit", "0.1.9"]],
    ],
    [
      "docs/x.md",
      "gh api repos/kuberollouttrigger/kuberollouttrigger/commits/v0.1.9 --jq .sha",
      [["a release of the repository", "0.1.9"]],
    ],
    ["action.yml", 'USER_AGENT="kuberollouttrigger-action/0.1.9"', [[
      "the Action's user agent",
      "0.1.9",
    ]]],
    [
      "k8s/base/web/deployment.yaml",
      "image: ghcr.io/kuberollouttrigger/kuberollouttrigger:0.1.9@sha256:0123",
      [["the image", "0.1.9"]],
    ],
    [
      "docs/deployment.md",
      "docker build -t ghcr.io/your-org/kuberollouttrigger:1.0.0-rc.1 .",
      [["the image", "1.0.0-rc.1"]],
    ],
    ["k8s/overlays/x/kustomization.yaml", "#     newTag: 0.1.9", [["the image tag", "0.1.9"]]],
    ["k8s/helm/kuberollouttrigger/Chart.yaml", 'version: 0.1.9\nappVersion: "0.1.8"', [
      ["the chart", "0.1.9"],
      ["the chart", "0.1.8"],
    ]],
    [
      "docs/deployment.md",
      "helm install krt oci://ghcr.io/acme/charts/kuberollouttrigger --version 0.1.9",
      [["the chart", "0.1.9"]],
    ],
    ["docs/deployment.md", "v=0.1.9 target=x86_64-unknown-linux-gnu", [[
      "a release binary",
      "0.1.9",
    ]]],
    ["README.md", "curl -O …/kuberollouttrigger-0.1.9-x86_64-unknown-linux-gnu", [[
      "a release binary",
      "0.1.9",
    ]]],
    // Not ours.
    ["docs/x.md", "- uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1", []],
    [
      "docs/x.md",
      "uses: UnitVectorY-Labs/kuberollouttrigger-action@a22de2a2ec7e9bef05f8cd2d6c72fceeb61fa88c # v0.3.0",
      [],
    ],
    ["docs/x.md", "uses: acme/kuberollouttrigger@v1.2.3", []],
    ["k8s/valkey/x.yaml", "image: valkey/valkey:8.1.0-alpine", []],
    ["docs/x.md", "npx -y deno@2.9.6 task dev; tags: dev,v1.2.3; ghcr.io/acme/app:v1.2.3", []],
    ["docs/x.md", "version: 0.1.9\nnewTag: 0.1.9\nkuberollouttrigger {{ .Chart.AppVersion }}", []],
  ];
  for (const [file, text, expected] of cases) {
    await t.step(`${file}: ${text.split("\n")[0]}`, () => {
      assertEquals(versionMentions(file, text).map((m) => [m.what, m.version]), expected);
    });
  }
});
