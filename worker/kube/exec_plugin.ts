/**
 * Runs a kubeconfig's exec credential plugin, bounded: only with Deno's run
 * permission for exactly that command, with no terminal (stdin is /dev/null),
 * within a time limit, reading a bounded stdout, and keeping stderr only as one
 * bounded line for the log (plugins print hints there, e.g. "run gcloud auth
 * login"). The protocol (what goes in, what comes out) is exec_credential.ts.
 *
 * Trusts the command as the operator's. Security: stdout is a credential and
 * is never quoted; the plugin's environment (`exec.env`) is never logged or
 * put into an error; errors name the command only, not its arguments; the
 * plugin does not inherit the worker's own settings (its Valkey password,
 * its signing key).
 */

import { SETTINGS } from "../../config/settings.ts";
import { AppError } from "../../shared/errors.ts";
import { commandName, type ExecPlugin } from "./exec_credential.ts";

/** How long a plugin may run (kubectl has no bound; a worker must not hang). */
export const PLUGIN_TIMEOUT_MS = 30_000;
/** The most a plugin may print on stdout: an ExecCredential is a few kilobytes. */
export const PLUGIN_MAX_STDOUT = 1024 * 1024;
/** The most of stderr kept, before it is reduced to one line. */
const STDERR_KEPT = 8 * 1024;
/** How long stderr is read on after the plugin exited. */
const STDERR_GRACE_MS = 500;

/** What a plugin run produced. */
export interface PluginOutput {
  stdout: string;
  /**
   * The first 8 KiB of stderr as printed. Security: it may echo the credential;
   * it goes to a log only through oneLine() with the credential redacted.
   */
  stderr: string;
}

/** Bounds for one run, and what it starts from. */
export interface PluginRunOptions {
  timeoutMs?: number;
  maxStdoutBytes?: number;
  /** The environment before `exec.env`; default: pluginEnvironment() of the worker's. */
  environment?: Record<string, string>;
}

/** The product's own variables; KUBECONFIG stays, as kubectl passes it on. */
const PRODUCT_VARIABLES = new Set(
  Object.values(SETTINGS).map((s) => s.env).filter((name) => name !== "KUBECONFIG"),
);

/**
 * The environment a plugin starts from: the worker's, as kubectl passes its
 * own, less the product's settings. Security: VALKEY_PASSWORD,
 * REPORT_SIGNING_KEY and the like are none of a credential plugin's business.
 */
export function pluginEnvironment(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !PRODUCT_VARIABLES.has(name)));
}

/** The state of Deno's run permission for a command (Deno.permissions.query). */
export type RunPermission = (command: string) => Promise<Deno.PermissionState>;

function kubeError(message: string, cause?: unknown): AppError {
  return new AppError("ERR_KUBE", message, { cause });
}

const SECRET_FLAG = /secret|password|token|key|credential/i;

/**
 * What a plugin was given that may be secret: every exec.env value, and the
 * value of an argument whose flag names a secret (`--client-secret x`,
 * `--password=x`); other arguments are kept, since a plugin's hint quotes them.
 */
export function pluginSecrets(plugin: Pick<ExecPlugin, "env" | "args">): string[] {
  const fromArgs = plugin.args.flatMap((arg, i) => {
    const eq = /^--?([^=]+)=(.*)$/.exec(arg);
    if (eq) return SECRET_FLAG.test(eq[1]) ? [eq[2]] : [];
    const previous = plugin.args[i - 1];
    const flag = previous?.startsWith("-") && !previous.includes("=");
    return flag && SECRET_FLAG.test(previous) && !arg.startsWith("-") ? [arg] : [];
  });
  return [...Object.values(plugin.env), ...fromArgs].filter((s) => s.length >= 8);
}

/**
 * Text as one log line: control characters and runs of whitespace become one
 * space; a long text keeps its start and its end (where tools put the hint).
 * Each of `secrets` is replaced, in case a plugin echoes what it printed.
 */
export function oneLine(text: string, secrets: readonly string[] = []): string {
  let line = text;
  for (const secret of secrets) {
    if (secret.length >= 8) line = line.replaceAll(secret, "[redacted]");
  }
  line = line.replace(/[\p{Cc}\s]+/gu, " ").trim();
  return line.length <= 400 ? line : `${line.slice(0, 150)} … ${line.slice(-250)}`;
}

/** Why Deno refused to start a plugin it may run: the variables that make it refuse. */
function notCapableReason(
  name: string,
  plugin: ExecPlugin,
  environment: Readonly<Record<string, string>>,
): string {
  const names = Object.keys({ ...environment, ...plugin.env });
  const loader = names.filter((n) => /^(LD_|DYLD_)/.test(n));
  const path = Object.hasOwn(plugin.env, "PATH") ? ["PATH (in exec.env)"] : [];
  const causes = [...loader, ...path];
  return `${name} could not be started although --allow-run grants it: Deno refuses to run a ` +
    `process while ${
      causes.length > 0 ? causes.join(", ") : "an LD_*/DYLD_* variable or a changed PATH"
    } is set; unset ${
      causes.length === 1 ? "it" : "them"
    } for the worker, or grant --allow-run for everything`;
}

/**
 * Refuses, with the flag to add, a plugin Deno may not run. The in-cluster
 * permission sets and the compiled binary never grant run, so this is the line
 * an operator sees there.
 */
export async function checkRunPermission(
  plugin: ExecPlugin,
  query: RunPermission = async (command) =>
    (await Deno.permissions.query({ name: "run", command })).state,
): Promise<void> {
  if (await query(plugin.command) === "granted") return;
  throw kubeError(
    `${plugin.where} runs ${
      commandName(plugin.command)
    }, which the worker has no permission to run: add --allow-run=${plugin.command} to its deno run flags (Deno grants a command name only if it is on PATH; the compiled binary and the in-cluster permission sets never run processes)`,
  );
}

/**
 * Reads a stream to its end or until `signal` aborts. Past `max` bytes it
 * keeps nothing more: `over` is set and `onOver` called (stdout: stop the
 * plugin), or the rest is drained unkept (stderr: the plugin never blocks on
 * a full pipe).
 */
async function readBounded(
  stream: ReadableStream<Uint8Array>,
  { max, signal, onOver }: { max: number; signal: AbortSignal; onOver?: () => void },
): Promise<{ bytes: Uint8Array; over: boolean }> {
  const reader = stream.getReader();
  // A grandchild may hold the pipe open after the plugin is stopped: stop reading too.
  const stop = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", stop, { once: true });
  const bytes = new Uint8Array(max);
  let size = 0;
  let over = false;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      const room = max - size;
      bytes.set(value.subarray(0, room), size);
      size += Math.min(room, value.length);
      if (value.length > room && !over) {
        over = true;
        if (onOver) {
          onOver();
          await stop();
          break;
        }
      }
    }
  } catch {
    // Cancelled: what was read so far is the answer.
  } finally {
    signal.removeEventListener("abort", stop);
  }
  return { bytes: bytes.subarray(0, size), over };
}

/**
 * Runs the plugin once and returns its stdout and its stderr line. Throws
 * ERR_KUBE naming the command: not found (with the kubeconfig's installHint),
 * not permitted, timed out, too much output, or a non-zero exit (with the
 * stderr line).
 */
export async function runExecPlugin(
  plugin: ExecPlugin,
  {
    timeoutMs = PLUGIN_TIMEOUT_MS,
    maxStdoutBytes = PLUGIN_MAX_STDOUT,
    environment = pluginEnvironment(Deno.env.toObject()),
  }: PluginRunOptions = {},
): Promise<PluginOutput> {
  const name = `Exec plugin ${commandName(plugin.command)}`;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(plugin.command, {
      args: plugin.args,
      // exec.env is added to the environment, as kubectl adds it to its own.
      clearEnv: true,
      env: { ...environment, ...plugin.env, KUBERNETES_EXEC_INFO: plugin.execInfo },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw kubeError(
        `${name} (${plugin.where}.command) was not found: install it or put it on PATH${
          plugin.installHint ? ` (${plugin.installHint})` : ""
        }`,
        err,
      );
    }
    if (err instanceof Deno.errors.NotCapable) {
      // Missing --allow-run, or granted and still refused: Deno runs nothing, whatever the grant,
      // while the environment holds an LD_* or DYLD_* variable or exec.env moves PATH.
      await checkRunPermission(plugin);
      throw kubeError(notCapableReason(name, plugin, environment), err);
    }
    throw kubeError(
      `${name} could not be started: ${err instanceof Error ? err.name : "error"}`,
      err,
    );
  }
  const stopped = new AbortController();
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
  };
  const timer = setTimeout(() => {
    kill();
    stopped.abort();
  }, timeoutMs);
  let grace: ReturnType<typeof setTimeout> | undefined;
  try {
    // kubectl hands the plugin its own stderr; here it is a pipe, which a process the plugin
    // left behind may hold open: once the plugin has exited, stderr gets a moment, no more.
    const stderrDone = new AbortController();
    stopped.signal.addEventListener("abort", () => stderrDone.abort(), { once: true });
    const exited = child.status.then((s) => {
      grace = setTimeout(() => stderrDone.abort(), STDERR_GRACE_MS);
      return s;
    });
    const [out, err, status] = await Promise.all([
      readBounded(child.stdout, { max: maxStdoutBytes, signal: stopped.signal, onOver: kill }),
      readBounded(child.stderr, { max: STDERR_KEPT, signal: stderrDone.signal }),
      exited,
    ]);
    const stderrText = new TextDecoder().decode(err.bytes);
    // A failed run printed no credential, but may echo a secret it was given (exec.env, args).
    const stderr = oneLine(stderrText, pluginSecrets(plugin));
    if (stopped.signal.aborted) {
      throw kubeError(
        `${name} did not finish within ${timeoutMs / 1000} s and was stopped${
          stderr ? `: ${stderr}` : ""
        }`,
      );
    }
    if (out.over) {
      throw kubeError(`${name} printed more than ${maxStdoutBytes} bytes and was stopped`);
    }
    if (!status.success) {
      throw kubeError(
        `${name} failed with exit code ${status.code}${
          stderr ? `: ${stderr}` : " and printed nothing on stderr"
        }`,
      );
    }
    return { stdout: new TextDecoder().decode(out.bytes), stderr: stderrText };
  } finally {
    clearTimeout(timer);
    clearTimeout(grace);
  }
}
