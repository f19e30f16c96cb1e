/**
 * Runs the real program as users do (for `deno task dev` and the tests): `deno run` with the mode's permission set
 * from deno.json, a clean environment holding only what the test gives, stdout
 * parsed as JSON log lines. Stops with SIGTERM and reports the exit code.
 */

/** Repository root (the folder holding deno.json). */
export const ROOT = new URL("../", import.meta.url).pathname;

/** A parsed log line. */
export type LogLine = Record<string, unknown> & { msg: string; level: string };

/** A running program. */
export interface Program {
  logs: LogLine[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the first log line (already seen or coming) matching `predicate`. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM, then waits (SIGKILL after the bound); resolves to the exit code. */
  stop(timeoutMs?: number): Promise<number>;
  /** Resolves to the exit code when the program ends by itself. */
  status: Promise<Deno.CommandStatus>;
  child: Deno.ChildProcess;
}

/** Options for startProgram. */
export interface ProgramOptions {
  /** Subcommand and flags, e.g. ["web", "--listen-addr", "127.0.0.1:0"]. */
  args: string[];
  env?: Record<string, string>;
  /** Permission flags; default: the subcommand's set from deno.json. */
  permissions?: string[];
  /** Receives every stdout and stderr line as it arrives (the dev flow prints them). */
  echo?: (line: string) => void;
}

const BASE_ENV = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"];

/** Runs `deno run <permissions> main.ts <args>`. */
export function startProgram(options: ProgramOptions): Program {
  const env: Record<string, string> = {};
  for (const name of BASE_ENV) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  Object.assign(env, { NO_COLOR: "1" }, options.env);
  const permissions = options.permissions ?? [`-P=${options.args[0]}`];
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, "main.ts", ...options.args],
    // KRT_PROGRAM_ROOT runs another checkout (bench before/after on the same bench code).
    cwd: Deno.env.get("KRT_PROGRAM_ROOT") ?? ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: LogLine[] = [];
  let stderrText = "";
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  const pump = async (stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = pending.indexOf("\n")) >= 0) {
        onLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    }
    if (pending) onLine(pending);
  };
  const stdoutDone = pump(child.stdout, (text) => {
    options.echo?.(text);
    let line: LogLine;
    try {
      line = JSON.parse(text);
    } catch {
      line = { msg: "(not json)", level: "raw", text };
    }
    logs.push(line);
    for (const w of [...waiters]) {
      if (w.predicate(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const stderrDone = pump(child.stderr, (text) => {
    options.echo?.(text);
    stderrText += text + "\n";
  });
  const status = Promise.all([child.status, stdoutDone, stderrDone]).then(([s]) => s);

  return {
    logs,
    child,
    status,
    stderr: () => stderrText,
    waitForLog(predicate, timeoutMs = 15000) {
      const seen = logs.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(
            new Error(
              `log line not seen within ${timeoutMs} ms; stderr: ${stderrText.slice(-2000)}`,
            ),
          );
        }, timeoutMs);
        const waiter = {
          predicate,
          resolve: (l: LogLine) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        waiters.push(waiter);
        status.then(() => {
          if (waiters.includes(waiter)) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(waiter), 1);
            reject(
              new Error(`program exited before the log line; stderr: ${stderrText.slice(-2000)}`),
            );
          }
        });
      });
    },
    async stop(timeoutMs = 10000) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already exited
        }
      }, timeoutMs);
      const s = await status;
      clearTimeout(timer);
      return s.code;
    },
  };
}
