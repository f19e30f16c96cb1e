/**
 * Runs a composite action's steps here the way GitHub's runner does: reads
 * action.yml, fills the `inputs` context (defaults for what the caller does
 * not give; names case-insensitive), substitutes `${{ … }}` in `env:` values
 * and `run:` scripts, writes each script to a file and starts it with
 * `bash --noprofile --norc -eo pipefail <file>` (the runner's `shell: bash`),
 * with files for GITHUB_OUTPUT and GITHUB_STEP_SUMMARY, then maps the
 * action's outputs from its steps' outputs. Composite actions get no INPUT_*
 * variables from the runner, so none are set. Only the expressions an action
 * of ours may use are emulated; any other is an error, never an empty string.
 * Also: a loopback stand-in for the runner's OIDC token service.
 */

import { parse } from "yaml";
import { ROOT } from "./program.ts";
import type { TestIssuer } from "./issuer.ts";

/** The parts of action.yml the runner reads. */
export interface ActionMetadata {
  name: string;
  inputs: Record<string, { description?: string; required?: boolean; default?: string }>;
  outputs: Record<string, { description?: string; value: string }>;
  runs: { using: string; steps: ActionStep[] };
}

/** One composite step. */
export interface ActionStep {
  id?: string;
  name?: string;
  shell?: string;
  run?: string;
  uses?: string;
  env?: Record<string, string>;
  if?: string;
}

/** Reads action.yml at the repository root. */
export function readAction(path = `${ROOT}action.yml`): ActionMetadata {
  return parse(Deno.readTextFileSync(path)) as ActionMetadata;
}

const EXPRESSION = /\$\{\{\s*(.*?)\s*\}\}/g;

/** Every `${{ … }}` expression in a text, trimmed. */
export function expressionsIn(text: string): string[] {
  return [...text.matchAll(EXPRESSION)].map((m) => m[1]);
}

/** Context the emulated expressions read. */
export interface ExpressionContext {
  inputs: Record<string, string>;
  actionPath: string;
  steps?: Record<string, Record<string, string>>;
}

/** Substitutes the expressions the runner would evaluate; throws on any other. */
export function substitute(text: string, context: ExpressionContext): string {
  return text.replace(EXPRESSION, (_whole, expr: string) => {
    let m = /^inputs\.([A-Za-z_][A-Za-z0-9_-]*)$/.exec(expr);
    if (m) {
      const name = m[1].toLowerCase();
      if (!(name in context.inputs)) throw new Error(`action.yml reads undeclared input ${m[1]}`);
      return context.inputs[name];
    }
    if (expr === "github.action_path") return context.actionPath;
    m = /^steps\.([A-Za-z_][A-Za-z0-9_-]*)\.outputs\.([A-Za-z_][A-Za-z0-9_-]*)$/.exec(expr);
    if (m && context.steps) return context.steps[m[1]]?.[m[2]] ?? "";
    throw new Error(`expression not emulated: \${{ ${expr} }}`);
  });
}

/** Reads a GITHUB_OUTPUT file: `name=value` lines and `name<<DELIMITER` blocks. */
export function parseOutputFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === "") continue;
    const block = /^([^=<]+)<<(.+)$/.exec(line);
    if (block) {
      const value: string[] = [];
      for (i++; i < lines.length && lines[i] !== block[2]; i++) value.push(lines[i]);
      if (i >= lines.length) throw new Error(`output ${block[1]} has no closing delimiter`);
      out[block[1]] = value.join("\n");
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`GITHUB_OUTPUT line is neither name=value nor name<<DELIMITER`);
    out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** What one run of the action came to. */
export interface ActionRun {
  /** The exit code of the step that ended the run (0 when every step passed). */
  code: number;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  /** The job summary written by the steps. */
  summary: string;
  /** Values the steps asked the runner to mask (`::add-mask::`). */
  masks: string[];
  /** `::error::` and `::warning::` messages, decoded. */
  errors: string[];
  warnings: string[];
  /** The raw GITHUB_OUTPUT file contents. */
  outputFile: string;
}

/** Options for runAction. */
export interface RunActionOptions {
  /** The `with:` map of the calling step. */
  with: Record<string, string>;
  /** Extra environment (e.g. ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN). */
  env?: Record<string, string>;
  action?: ActionMetadata;
  /** Stops the step after this long (a bound for the test, not the action's own timeout). */
  killAfterMs?: number;
}

function decodeCommandData(text: string): string {
  return text.replace(/%0A/g, "\n").replace(/%0D/g, "\r").replace(/%25/g, "%");
}

/** Runs the action's steps as the runner would; resolves when they end. */
export async function runAction(options: RunActionOptions): Promise<ActionRun> {
  const action = options.action ?? readAction();
  if (action.runs.using !== "composite") throw new Error("only composite actions are emulated");
  const inputs: Record<string, string> = {};
  for (const [name, spec] of Object.entries(action.inputs ?? {})) {
    inputs[name.toLowerCase()] = spec.default === undefined ? "" : String(spec.default);
  }
  for (const [name, value] of Object.entries(options.with)) {
    if (!(name.toLowerCase() in inputs)) throw new Error(`unexpected input ${name}`);
    inputs[name.toLowerCase()] = value;
  }
  const temp = await Deno.makeTempDir({ prefix: "krt-action-" });
  const outputPath = `${temp}/github_output`;
  const summaryPath = `${temp}/step_summary`;
  const runnerTemp = `${temp}/runner_temp`;
  await Deno.mkdir(runnerTemp);
  await Deno.writeTextFile(summaryPath, "");
  const steps: Record<string, Record<string, string>> = {};
  const run: ActionRun = {
    code: 0,
    stdout: "",
    stderr: "",
    outputs: {},
    summary: "",
    masks: [],
    errors: [],
    warnings: [],
    outputFile: "",
  };
  try {
    for (const [index, step] of action.runs.steps.entries()) {
      if (step.uses !== undefined || step.run === undefined) {
        throw new Error("only run steps are emulated");
      }
      if (step.if !== undefined) throw new Error("step conditions are not emulated");
      if (step.shell !== "bash") throw new Error(`step ${index} must use shell: bash`);
      const context = { inputs, actionPath: ROOT.replace(/\/$/, ""), steps };
      const env: Record<string, string> = {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? "/root",
        CI: "true",
        GITHUB_ACTIONS: "true",
        GITHUB_ACTION_PATH: context.actionPath,
        GITHUB_OUTPUT: outputPath,
        GITHUB_STEP_SUMMARY: summaryPath,
        RUNNER_TEMP: runnerTemp,
        ...options.env,
      };
      for (const [name, value] of Object.entries(step.env ?? {})) {
        env[name] = substitute(String(value), context);
      }
      await Deno.writeTextFile(outputPath, "");
      const script = `${runnerTemp}/step-${index}.sh`;
      await Deno.writeTextFile(script, substitute(step.run, context));
      const child = new Deno.Command("bash", {
        args: ["--noprofile", "--norc", "-eo", "pipefail", script],
        env,
        clearEnv: true,
        cwd: temp,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = options.killAfterMs === undefined ? undefined : setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already ended
        }
      }, options.killAfterMs);
      const result = await child.output();
      clearTimeout(timer);
      const stdout = new TextDecoder().decode(result.stdout);
      run.stdout += stdout;
      run.stderr += new TextDecoder().decode(result.stderr);
      for (const line of stdout.split("\n")) {
        const m = /^::(add-mask|error|warning)(?: [^:]*)?::(.*)$/.exec(line);
        if (!m) continue;
        const data = decodeCommandData(m[2]);
        if (m[1] === "add-mask") run.masks.push(data);
        else if (m[1] === "error") run.errors.push(data);
        else run.warnings.push(data);
      }
      run.outputFile += await Deno.readTextFile(outputPath);
      if (step.id) steps[step.id] = parseOutputFile(await Deno.readTextFile(outputPath));
      run.code = result.code;
      if (result.code !== 0) break;
    }
    run.summary = await Deno.readTextFile(summaryPath);
    for (const [name, spec] of Object.entries(action.outputs ?? {})) {
      run.outputs[name] = substitute(spec.value, { inputs, actionPath: "", steps });
    }
    return run;
  } finally {
    await Deno.remove(temp, { recursive: true });
  }
}

/** The runner's OIDC token service, on loopback: mints tokens with a test issuer. */
export interface TokenService {
  /** ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN for the job. */
  env: Record<string, string>;
  /** Every token handed out, in order. */
  minted: string[];
  /** Requests refused (wrong request token, no audience, …), with why. */
  refused: string[];
  /** The raw query strings received (to check the audience's encoding). */
  queries: string[];
  stop(): Promise<void>;
}

/**
 * Starts the stand-in: it answers `GET <url>&audience=<aud>` with
 * `{"count":…, "value":<token>}` only when the request carries
 * `Authorization: bearer <request token>` and the expected audience, as
 * GitHub's service does; anything else gets 401/400 and is recorded.
 */
export function startTokenService(
  issuer: TestIssuer,
  options: { audience: string; claims?: Record<string, unknown> },
): TokenService {
  const requestToken = `request-${crypto.randomUUID()}`;
  const minted: string[] = [];
  const refused: string[] = [];
  const queries: string[] = [];
  const controller = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onListen: () => {},
  }, async (req) => {
    const url = new URL(req.url);
    queries.push(url.search);
    const auth = req.headers.get("authorization") ?? "";
    const m = /^bearer (.+)$/i.exec(auth);
    if (req.method !== "GET" || url.pathname !== "/idtoken") {
      refused.push(`${req.method} ${url.pathname}`);
      return new Response("not found", { status: 404 });
    }
    if (!m || m[1] !== requestToken) {
      refused.push("wrong request token");
      return new Response('{"message":"unauthorized"}', { status: 401 });
    }
    if (url.searchParams.get("api-version") !== "2.0") {
      refused.push("no api-version");
      return new Response('{"message":"bad request"}', { status: 400 });
    }
    const audience = url.searchParams.getAll("audience");
    if (audience.length !== 1 || audience[0] !== options.audience) {
      refused.push(`audience ${JSON.stringify(audience)}`);
      return new Response('{"message":"bad audience"}', { status: 400 });
    }
    const token = await issuer.sign({ claims: { aud: audience[0], ...options.claims } });
    minted.push(token);
    return Response.json({ count: token.length, value: token });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  return {
    env: {
      ACTIONS_ID_TOKEN_REQUEST_URL: `${base}/idtoken?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: requestToken,
    },
    minted,
    refused,
    queries,
    async stop() {
      controller.abort();
      await server.finished;
    },
  };
}
