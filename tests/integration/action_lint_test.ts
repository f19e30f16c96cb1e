/**
 * action.yml and the docs' workflows, checked statically: the action's
 * structure (inputs as the existing action names them, no expression inside a
 * script, outputs mapped to what the script writes), `bash -n` and shellcheck
 * on its script, and actionlint (built from the Go module pinned in
 * tests/gotools/go.mod) on every workflow in docs/ — with `uses:` pointed at
 * this repository's action.yml, so actionlint also checks each `with:` and
 * `steps.<id>.outputs` against the action's metadata — and on a reusable
 * workflow made from the action's own step; and on this repository's own
 * workflows (.github/workflows), which must pin every third-party action to a
 * full commit SHA and give each job its own least permissions. Under CI=true a
 * missing Go or shellcheck fails the run (tests/helpers/skip.ts).
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { expressionsIn, readAction } from "../helpers/action_runner.ts";
import { locateGoTool } from "../helpers/go_tools.ts";
import { ROOT } from "../helpers/program.ts";
import { missing } from "../helpers/skip.ts";
import { parse, stringify } from "yaml";

const action = readAction();
const steps = action.runs.steps;

function onPath(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  return undefined;
}

const actionlint = await locateGoTool("actionlint");
const shellcheck = onPath("shellcheck");
if (shellcheck === undefined) missing("shellcheck", "apt-get install shellcheck");

Deno.test("action.yml is a composite action with the existing action's inputs, same names and defaults", () => {
  assertEquals(action.runs.using, "composite");
  const inputs = action.inputs;
  for (const name of ["url", "audience", "image", "tags"]) {
    assertEquals(inputs[name]?.required, true, `${name} is required, as in the existing action`);
  }
  assertEquals(inputs["timeout-seconds"]?.default, "10");
  assertEquals(inputs["expand-versions"]?.default, "false");
  assertEquals(inputs.wait?.default, "true");
  assertEquals(inputs.timeout?.default, "15m");
  assertEquals(inputs["fail-on-no-match"]?.default, "true");
  assertEquals(inputs["allow-dry-run"]?.default, "false");
  assertEquals(Object.keys(inputs).sort(), [
    "allow-dry-run",
    "audience",
    "expand-versions",
    "fail-on-no-match",
    "image",
    "tags",
    "timeout",
    "timeout-seconds",
    "url",
    "wait",
  ]);
  for (const [name, spec] of Object.entries(inputs)) {
    assert((spec.description ?? "").length > 10, `input ${name} has a description`);
  }
});

Deno.test("action.yml: every step runs bash, every input reaches a step, every output is written", () => {
  const ids = new Set(steps.map((s) => s.id).filter(Boolean));
  const used = new Set<string>();
  for (const step of steps) {
    assertEquals(step.shell, "bash", "a composite run step must name its shell");
    for (const value of Object.values(step.env ?? {})) {
      for (const expr of expressionsIn(String(value))) {
        const m = /^inputs\.([a-z-]+)$/.exec(expr);
        assert(m, `env expressions read inputs only, not ${expr}`);
        assert(m[1] in action.inputs, `input ${m[1]} is declared`);
        used.add(m[1]);
      }
    }
  }
  assertEquals([...used].sort(), Object.keys(action.inputs).sort(), "no input is ignored");
  assertEquals(Object.keys(action.outputs).sort(), ["event-id", "restarted", "state"]);
  for (const [name, spec] of Object.entries(action.outputs)) {
    const m = /^\$\{\{ steps\.([a-z-]+)\.outputs\.([a-z-]+) \}\}$/.exec(spec.value);
    assert(m, `output ${name} maps a step's output`);
    assert(ids.has(m[1]), `output ${name} names step ${m[1]}, which exists`);
    const writer = steps.find((s) => s.id === m[1])!;
    assert(
      writer.run!.includes(`set_output ${m[2]} `),
      `step ${m[1]} writes ${m[2]} to GITHUB_OUTPUT (through set_output, which checks its form)`,
    );
  }
});

Deno.test("security: no expression is pasted into action.yml's scripts (inputs arrive through env)", () => {
  for (const step of steps) {
    assertEquals(expressionsIn(step.run ?? ""), [], "a ${{ }} in run: would be script injection");
    assert(!(step.run ?? "").includes("${{"), "no partial expression either");
  }
});

Deno.test("action.yml's scripts parse with bash -n and pass shellcheck", async (t) => {
  for (const [index, step] of steps.entries()) {
    const file = await Deno.makeTempFile({ suffix: ".sh" });
    try {
      await Deno.writeTextFile(file, step.run!);
      await t.step(`step ${index}: bash -n`, async () => {
        const out = await new Deno.Command("bash", { args: ["-n", file], stderr: "piped" })
          .output();
        assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
      });
      await t.step({
        name: `step ${index}: shellcheck`,
        ignore: shellcheck === undefined,
        fn: async () => {
          const out = await new Deno.Command(shellcheck!, {
            args: ["--shell=bash", "--severity=style", file],
            stdout: "piped",
          }).output();
          assertEquals(out.code, 0, new TextDecoder().decode(out.stdout));
        },
      });
    } finally {
      await Deno.remove(file);
    }
  }
});

/** The ```yaml blocks of a Markdown file. */
function yamlBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

/** A docs block as a workflow: whole workflows as they are, a list of steps inside a job. */
function asWorkflow(block: string): string {
  if (/^jobs:/m.test(block)) return block;
  const steps = block.replace(/^/gm, "      ").trimEnd();
  return `on: push\npermissions:\n  id-token: write\njobs:\n  job:\n    runs-on: ubuntu-latest\n    steps:\n${steps}\n`;
}

/** The action's own step as a reusable workflow, so actionlint checks its expressions and script. */
function actionAsWorkflow(): string {
  const inputs: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(action.inputs)) {
    inputs[name] = { type: "string", required: spec.required ?? false, default: spec.default };
  }
  return stringify({
    on: { workflow_call: { inputs } },
    jobs: {
      action: {
        "runs-on": "ubuntu-latest",
        permissions: { "id-token": "write" },
        steps: steps.map((s) => ({ id: s.id, shell: s.shell, env: s.env, run: s.run })),
      },
    },
  });
}

/** Lays out a project whose workflows use `./` for our action, runs actionlint in it. */
async function lintWorkflows(workflows: Record<string, string>): Promise<{
  code: number;
  output: string;
}> {
  const dir = await Deno.makeTempDir({ prefix: "krt-actionlint-" });
  try {
    await Deno.mkdir(`${dir}/.git`);
    await Deno.mkdir(`${dir}/.github/workflows`, { recursive: true });
    await Deno.copyFile(`${ROOT}action.yml`, `${dir}/action.yml`);
    for (const [name, text] of Object.entries(workflows)) {
      const local = text.replaceAll(/kuberollouttrigger\/kuberollouttrigger@v[0-9.]+/g, "./");
      await Deno.writeTextFile(`${dir}/.github/workflows/${name}`, local);
    }
    const out = await new Deno.Command(actionlint!, {
      args: ["-no-color", "-shellcheck", shellcheck ?? ""],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: out.code, output: decode(out.stdout) + decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "actionlint accepts the docs' workflows and the action's own step",
  ignore: actionlint === undefined,
  async fn(t) {
    const workflows: Record<string, string> = {};
    for await (const entry of Deno.readDir(`${ROOT}docs/examples`)) {
      if (entry.name.endsWith(".yml")) {
        workflows[entry.name] = await Deno.readTextFile(`${ROOT}docs/examples/${entry.name}`);
      }
    }
    assert(Object.keys(workflows).length >= 3, "docs/examples holds the example workflows");
    const guide = await Deno.readTextFile(`${ROOT}docs/github-actions.md`);
    const blocks = yamlBlocks(guide);
    assert(blocks.length >= 3, "docs/github-actions.md shows its workflows");
    blocks.forEach((block, i) => workflows[`github-actions-md-${i}.yml`] = asWorkflow(block));
    workflows["action-step.yml"] = actionAsWorkflow();

    await t.step("docs/github-actions.md shows docs/examples/rollout.yml verbatim", () => {
      assert(blocks.includes(workflows["rollout.yml"]), "the guide's first workflow is the file");
    });
    await t.step("every workflow lints clean", async () => {
      const { code, output } = await lintWorkflows(workflows);
      assertEquals(output, "");
      assertEquals(code, 0);
    });
    await t.step("the lint can fail: an unknown input and a missing one are reported", async () => {
      const bad = workflows["rollout.yml"].replace("tags: dev\n", "tag: dev\n");
      const { code, output } = await lintWorkflows({ "bad.yml": bad });
      assertEquals(code, 1);
      assertMatch(output, /input "tag" is not defined in action "kuberollouttrigger"/);
      assertMatch(output, /missing input "tags" which is required/);
    });
    await t.step({
      name: "the lint can fail: shellcheck runs on run: scripts",
      ignore: shellcheck === undefined,
      fn: async () => {
        const bad = asWorkflow('- run: cd $HOME/build && ls "$x"\n');
        const { code, output } = await lintWorkflows({ "bad.yml": bad });
        assertEquals(code, 1);
        assertMatch(output, /shellcheck reported issue in this script: SC2086/);
      },
    });
  },
});

/** This repository's own workflows, by file name. */
function ownWorkflows(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of Deno.readDirSync(`${ROOT}.github/workflows`)) {
    if (/\.ya?ml$/.test(entry.name)) {
      out[entry.name] = Deno.readTextFileSync(`${ROOT}.github/workflows/${entry.name}`);
    }
  }
  return out;
}

Deno.test({
  name: "actionlint accepts every workflow under .github/workflows",
  ignore: actionlint === undefined,
  async fn(t) {
    const workflows = ownWorkflows();
    assertEquals(Object.keys(workflows).sort(), ["ci.yml", "release.yml"]);
    await t.step("they lint clean, with shellcheck on their scripts", async () => {
      const { code, output } = await lintWorkflows(workflows);
      assertEquals(output, "");
      assertEquals(code, 0);
    });
    await t.step("the lint can fail: a job output from a step that does not exist", async () => {
      const bad = workflows["release.yml"].replace(
        "steps.version.outputs.version",
        "steps.versoin.outputs.version",
      );
      const { code, output } = await lintWorkflows({ "release.yml": bad });
      assertEquals(code, 1);
      assertMatch(output, /versoin/);
    });
  },
});

Deno.test("security: the workflows pin third-party actions to commit SHAs and give each job least permissions", () => {
  for (const [name, text] of Object.entries(ownWorkflows())) {
    for (const [, uses, comment] of text.matchAll(/uses: (\S+)( #.*)?$/gm)) {
      assertMatch(uses, /^[\w.-]+\/[\w.-]+(\/[\w./-]+)?@[0-9a-f]{40}$/, `${name}: ${uses}`);
      assertMatch(comment ?? "", /^ # v\d+\.\d+\.\d+$/, `${name}: ${uses} names its release`);
    }
    const workflow = parse(text);
    const top = workflow.permissions;
    assert(
      JSON.stringify(top) === "{}" || JSON.stringify(top) === '{"contents":"read"}',
      `${name}: the default for jobs is nothing or contents: read, not ${JSON.stringify(top)}`,
    );
    for (
      const [job, spec] of Object.entries(workflow.jobs as Record<string, Record<string, unknown>>)
    ) {
      const perms = (spec.permissions ?? top) as Record<string, string>;
      for (const [scope, level] of Object.entries(perms)) {
        if (level !== "write") continue;
        assert(
          name === "release.yml" &&
            ["contents", "packages", "id-token", "attestations"].includes(scope),
          `${name} ${job}: ${scope}: write`,
        );
      }
    }
    for (
      const [job, spec] of Object.entries(workflow.jobs as Record<string, Record<string, unknown>>)
    ) {
      const steps = spec.steps as { run?: string }[];
      for (const step of steps) {
        assertEquals(expressionsIn(step.run ?? ""), [], `${name} ${job}: no expression in run:`);
      }
    }
  }
});
