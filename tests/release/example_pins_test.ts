/**
 * security: the workflows users copy (docs/examples/*.yml, the ```yaml blocks
 * of docs/ and README.md) and this repository's own (.github/workflows) pin
 * every third-party action to a full 40-hex commit SHA with its release in a
 * `# vX.Y.Z` comment: a tag can be moved to other code, a commit cannot.
 * Our own Action may be named by its release tag (its commit does not exist
 * before the release; tests/integration/action_lint_test.ts lints the
 * examples against action.yml under that name) or by commit with the tag as
 * comment. One action at one release has one commit everywhere, so a SHA
 * copied wrong is caught.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { ROOT } from "../helpers/program.ts";

/** One `uses:` line of a workflow. */
interface Use {
  /** Where: file, or file and the yaml block's first line, and the line. */
  where: string;
  action: string;
  ref: string;
  comment: string;
}

const OUR_ACTION = "kuberollouttrigger/kuberollouttrigger";
const SHA = /^[0-9a-f]{40}$/;
const RELEASE_COMMENT = /^# v\d+\.\d+\.\d+$/;

/** The `uses:` lines of a workflow (or a list of steps), with the comment after each. */
function usesIn(where: string, text: string, firstLine = 1): Use[] {
  const out: Use[] = [];
  text.split("\n").forEach((line, i) => {
    const m = /^\s*(?:-\s+)?uses:\s*(["']?)([^\s"'#]+)\1\s*(#.*)?$/.exec(line);
    if (!m) return;
    const [action, ref = ""] = m[2].split(/@(?=[^@]*$)/);
    out.push({ where: `${where}:${firstLine + i}`, action, ref, comment: (m[3] ?? "").trim() });
  });
  return out;
}

/** Why a `uses:` is not pinned as it must be, or undefined when it is. */
function pinProblem(use: Use): string | undefined {
  if (use.action.startsWith("./")) return undefined; // this repository's own code
  if (use.action.startsWith("docker://")) {
    return /@sha256:[0-9a-f]{64}$/.test(`${use.action}@${use.ref}`)
      ? undefined
      : "a docker:// action must name its image by digest";
  }
  if (!/^[\w.-]+\/[\w.-]+(\/[\w./-]+)?$/.test(use.action)) return "not owner/repo[/path]@ref";
  if (use.action === OUR_ACTION && /^v\d+\.\d+\.\d+$/.test(use.ref) && use.comment === "") {
    return undefined; // ours, by release tag
  }
  if (!SHA.test(use.ref)) return `ref "${use.ref}" is not a full 40-hex commit SHA`;
  if (!RELEASE_COMMENT.test(use.comment)) return `no "# vX.Y.Z" comment naming the release`;
  return undefined;
}

/** The ```yaml blocks of a Markdown file, each with the line its text starts on. */
function yamlBlocks(markdown: string): { text: string; line: number }[] {
  return [...markdown.matchAll(/^```ya?ml\n([\s\S]*?)^```$/gm)].map((m) => ({
    text: m[1],
    line: markdown.slice(0, m.index).split("\n").length + 1,
  }));
}

function filesIn(dir: string, pattern: RegExp): string[] {
  return [...Deno.readDirSync(`${ROOT}${dir}`)]
    .filter((e) => e.isFile && pattern.test(e.name))
    .map((e) => `${dir}${e.name}`)
    .sort();
}

function markdownFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
    if (entry.isDirectory) out.push(...markdownFiles(`${dir}${entry.name}/`));
    else if (entry.name.endsWith(".md")) out.push(`${dir}${entry.name}`);
  }
  return out.sort();
}

/** Every `uses:` in the example workflows, the docs' yaml blocks and .github/workflows. */
function allUses(): Use[] {
  const read = (file: string) => Deno.readTextFileSync(`${ROOT}${file}`);
  const workflows = [
    ...filesIn("docs/examples/", /\.ya?ml$/),
    ...filesIn(".github/workflows/", /\.ya?ml$/),
  ];
  return [
    ...workflows.flatMap((file) => usesIn(file, read(file))),
    ...["README.md", ...markdownFiles("docs/")].flatMap((file) =>
      yamlBlocks(read(file)).flatMap((block) => usesIn(file, block.text, block.line))
    ),
  ];
}

Deno.test("security: every third-party action in the examples, the docs and our workflows is pinned to a commit with its release named", () => {
  const uses = allUses();
  const problems = uses.flatMap((use) => {
    const problem = pinProblem(use);
    return problem ? [`${use.where}: ${use.action}@${use.ref}: ${problem}`] : [];
  });
  assertEquals(problems, []);
  // The scan reads each source: a scan that finds nothing proves nothing.
  const files = new Set(uses.map((u) => u.where.replace(/:\d+$/, "")));
  for (
    const file of [
      "docs/examples/rollout.yml",
      "docs/examples/release.yml",
      "docs/examples/fire-and-forget.yml",
      "docs/github-actions.md",
      ".github/workflows/ci.yml",
      ".github/workflows/release.yml",
    ]
  ) {
    assert(files.has(file), `${file} has uses: lines the scan found`);
  }
  const thirdParty = uses.filter((u) => u.action !== OUR_ACTION && !u.action.startsWith("./"));
  assert(
    thirdParty.some((u) => u.where.startsWith("docs/examples/rollout.yml")) &&
      thirdParty.some((u) => u.where.startsWith("docs/github-actions.md")),
    "the examples' third-party actions are among those checked",
  );
});

Deno.test("an action at one release has one commit everywhere, and one commit one release", () => {
  const commits = new Map<string, Set<string>>();
  const releases = new Map<string, Set<string>>();
  for (const use of allUses()) {
    if (!SHA.test(use.ref)) continue;
    const release = `${use.action} ${use.comment}`;
    commits.set(release, (commits.get(release) ?? new Set()).add(use.ref));
    const commit = `${use.action}@${use.ref}`;
    releases.set(commit, (releases.get(commit) ?? new Set()).add(use.comment));
  }
  const split = [
    ...[...commits].filter(([, s]) => s.size > 1).map(([k, s]) => `${k}: ${[...s].join(", ")}`),
    ...[...releases].filter(([, s]) => s.size > 1).map(([k, s]) => `${k}: ${[...s].join(", ")}`),
  ];
  assertEquals(split, []);
  assert(
    commits.get("actions/checkout # v7.0.1")?.size === 1,
    "checkout is pinned in several files",
  );
});

Deno.test("pinProblem() accepts a pinned action and names what is wrong with the rest", async (t) => {
  const sha = "3d3c42e5aac5ba805825da76410c181273ba90b1";
  const cases: [string, string | undefined][] = [
    [`- uses: actions/checkout@${sha} # v7.0.1`, undefined],
    [`  uses: "actions/checkout@${sha}" # v7.0.1`, undefined],
    [`- uses: github/codeql-action/init@${sha} # v4.37.6`, undefined],
    ["- uses: ./", undefined],
    ["- uses: ./.github/actions/setup", undefined],
    [`- uses: ${OUR_ACTION}@v0.2.0`, undefined],
    [`- uses: ${OUR_ACTION}@${sha} # v0.2.0`, undefined],
    [`- uses: docker://alpine@sha256:${"0".repeat(64)}`, undefined],
    ["- uses: actions/checkout@v4", 'ref "v4" is not a full 40-hex commit SHA'],
    [
      "- uses: UnitVectorY-Labs/kuberollouttrigger-action@main",
      'ref "main" is not a full 40-hex commit SHA',
    ],
    [
      `- uses: actions/checkout@${sha.slice(0, 7)} # v7.0.1`,
      `ref "${sha.slice(0, 7)}" is not a full 40-hex commit SHA`,
    ],
    [`- uses: actions/checkout@${sha}`, 'no "# vX.Y.Z" comment naming the release'],
    [`- uses: actions/checkout@${sha} # pinned`, 'no "# vX.Y.Z" comment naming the release'],
    [
      `- uses: actions/checkout@${sha.toUpperCase()} # v7.0.1`,
      `ref "${sha.toUpperCase()}" is not a full 40-hex commit SHA`,
    ],
    // Someone else's repository named like ours is third-party.
    ["- uses: acme/kuberollouttrigger@v0.2.0", 'ref "v0.2.0" is not a full 40-hex commit SHA'],
    [`- uses: ${OUR_ACTION}@main`, 'ref "main" is not a full 40-hex commit SHA'],
    ["- uses: docker://alpine:3.20", "a docker:// action must name its image by digest"],
  ];
  for (const [line, expected] of cases) {
    await t.step(line.trim(), () => {
      const uses = usesIn("x.yml", line);
      assertEquals(uses.length, 1, "the line is read as a uses:");
      assertEquals(pinProblem(uses[0]), expected);
    });
  }
});
