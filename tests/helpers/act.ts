/**
 * Runs our action.yml under nektos/act (a runner implementation nobody here
 * wrote; built from the version pinned in tests/gotools/act/go.mod by
 * tests/gotools/ensure_act.sh), with its host executor
 * (`-P ubuntu-latest=-self-hosted`): no Docker, steps run as processes here.
 * The workflow uses the action as `kuberollouttrigger/kuberollouttrigger@v0.2.0`
 * served from a local folder (`--local-repository`), so act resolves it as a
 * remote action and nothing is fetched. act provides no OIDC token service:
 * ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN come from the test's stand-in,
 * through an env file (not act's command line). Everything act logs is read
 * from its --json output: the step's lines, the commands act processed, the
 * job summary and the job's result; the outputs are written to a file by a
 * second step, as a workflow would read them.
 */

import { stringify } from "yaml";
import { locateGoTool } from "./go_tools.ts";
import { ROOT } from "./program.ts";

/** Where act is, built on first use; undefined when it cannot be (no Go: skip.ts's rule). */
export const locateAct = (): Promise<string | undefined> => locateGoTool("act");

/** The action as a workflow names it. */
export const ACTION_REF = "kuberollouttrigger/kuberollouttrigger@v0.2.0";

/** One entry of act's --json log. */
export interface ActEntry {
  msg?: string;
  raw_output?: boolean;
  /** Set on the lines act read as workflow commands (`ignored` while commands are stopped). */
  command?: string;
  raw?: string;
  arg?: string;
  content?: string;
  jobResult?: string;
  step?: string;
  stepID?: string[];
}

/** What one act run came to. */
export interface ActRun {
  code: number;
  /** The job's result as act reports it (`success`, `failure`). */
  jobResult?: string;
  /** The action step's output lines, as the runner read them (commands included). */
  log: string;
  /** The same with the tokens of `::add-mask::` lines hidden, for failure messages. */
  shown: string;
  /** The commands act processed in the action's step (name and argument). */
  commands: { command: string; arg: string; raw: string }[];
  /** The action's job summary. */
  summary: string;
  /** The outputs as the workflow's next step saw them. */
  outputs: { "event-id": string; state: string; restarted: string };
  entries: ActEntry[];
  stderr: string;
}

/** Options for runActWorkflow. */
export interface ActOptions {
  act: string;
  /** The `with:` map of the action's step. */
  with: Record<string, string>;
  /** ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN for the job. */
  env: Record<string, string>;
  /** act is killed after this long. */
  killAfterMs?: number;
}

/** Writes a one-job workflow that uses the action, runs act on it, and reads what happened. */
export async function runActWorkflow(options: ActOptions): Promise<ActRun> {
  const temp = await Deno.makeTempDir({ prefix: "krt-act-" });
  try {
    const actionDir = `${temp}/action`;
    const repo = `${temp}/repo`;
    await Deno.mkdir(actionDir);
    await Deno.mkdir(`${repo}/.github/workflows`, { recursive: true });
    await Deno.mkdir(`${temp}/home`);
    await Deno.copyFile(`${ROOT}action.yml`, `${actionDir}/action.yml`);
    const outputsFile = `${temp}/outputs.json`;
    const workflow = {
      name: "rollout",
      on: "push",
      permissions: { "id-token": "write" },
      jobs: {
        rollout: {
          "runs-on": "ubuntu-latest",
          steps: [
            { id: "rollout", uses: ACTION_REF, with: options.with },
            {
              name: "Keep the outputs",
              if: "always()",
              env: {
                EVENT_ID: "${{ steps.rollout.outputs.event-id }}",
                STATE: "${{ steps.rollout.outputs.state }}",
                RESTARTED: "${{ steps.rollout.outputs.restarted }}",
              },
              run: `jq -n --arg e "$EVENT_ID" --arg s "$STATE" --arg r "$RESTARTED" ` +
                `'{"event-id": $e, state: $s, restarted: $r}' > '${outputsFile}'`,
            },
          ],
        },
      },
    };
    await Deno.writeTextFile(`${repo}/.github/workflows/rollout.yml`, stringify(workflow));
    const envFile = `${temp}/job.env`;
    await Deno.writeTextFile(
      envFile,
      Object.entries(options.env).map(([k, v]) => `${k}=${v}\n`).join(""),
    );
    const child = new Deno.Command(options.act, {
      args: [
        "push",
        "--json",
        "-P",
        "ubuntu-latest=-self-hosted",
        "--env-file",
        envFile,
        "--local-repository",
        `${ACTION_REF}=${actionDir}`,
        "--action-offline-mode",
        "--no-cache-server",
        "--action-cache-path",
        `${temp}/act-cache`,
      ],
      cwd: repo,
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: `${temp}/home`,
        CI: "true",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already ended
      }
    }, options.killAfterMs ?? 120_000);
    const result = await child.output();
    clearTimeout(timer);
    const entries: ActEntry[] = new TextDecoder().decode(result.stdout).split("\n")
      .filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    const ours = entries.filter((e) => e.step === ACTION_REF && e.stepID?.length === 2);
    const log = ours.flatMap((e) =>
      e.raw_output ? [e.msg ?? ""] : e.raw !== undefined ? [e.raw] : []
    ).map((l) =>
      l.replace(/\n$/, "")
    ).join("\n") + "\n";
    const commands = ours.filter((e) => e.command !== undefined && e.command !== "summary")
      .map((e) => ({ command: e.command!, arg: e.arg ?? "", raw: e.raw ?? "" }));
    const summary = ours.find((e) => e.command === "summary")?.content ?? "";
    let outputs = { "event-id": "", state: "", restarted: "" };
    try {
      outputs = JSON.parse(await Deno.readTextFile(outputsFile));
    } catch {
      // the second step did not run
    }
    return {
      code: result.code,
      jobResult: entries.find((e) => e.jobResult !== undefined)?.jobResult,
      log,
      shown: log.replace(/^::add-mask::.*$/gm, "::add-mask::***").slice(-4000) +
        new TextDecoder().decode(result.stderr).slice(-2000),
      commands,
      summary,
      outputs,
      entries,
      stderr: new TextDecoder().decode(result.stderr),
    };
  } finally {
    await Deno.remove(temp, { recursive: true });
  }
}
