/**
 * The entry point and the only place that reads Deno.args and Deno.env, writes
 * usage to the terminal, installs signal handlers and exits. It picks the mode,
 * parses settings, trims permissions and hands real clients to the mode.
 */

import denoJson from "./deno.json" with { type: "json" };
import { parseCommandLine, renderHelp, summarizeConfig } from "./config/command_line.ts";
import { AppError, ConfigError, type ErrorCode } from "./shared/errors.ts";
import { describeError } from "./lib/error_text.ts";
import { createBatchedSink, createLogger, flushAtExit, type Logger } from "./lib/log.ts";
import { describePermissions, dropPermissions } from "./lib/permissions.ts";
import type { Mode, ModeConfig } from "./config/settings.ts";

const USAGE = `Usage: kuberollouttrigger <command> [flags]

Commands:
  web      verify GitHub Actions OIDC requests and publish image events to Valkey
  worker   restart the Deployments that use a published image
  version  print the version
  help     show this help

Run 'kuberollouttrigger <web|worker> --help' for every setting of a mode.`;

// Paths the worker's permission set may read; probed so the startup log shows
// path-scoped grants as well as global ones.
const PERMISSION_PROBE_PATHS = [
  "/var/run/secrets/kubernetes.io/serviceaccount/token",
  "/etc/kuberollouttrigger/kubeconfig",
];

const encoder = new TextEncoder();
const print = (text: string) => Deno.stdout.writeSync(encoder.encode(text + "\n"));
const printError = (text: string) => Deno.stderr.writeSync(encoder.encode(text + "\n"));

function exitUsage(message: string): never {
  printError(`kuberollouttrigger: ${message}`);
  printError(USAGE);
  Deno.exit(2);
}

/** What a failure to start looks like in the `cannot start` log line. */
export interface StartupFailure {
  code: ErrorCode;
  error: string;
  /** For a bug: where it was thrown (file:line:column), as a start for the report. */
  at?: string;
}

/**
 * Reduces anything thrown while a mode starts to the fields of one log line
 * (docs/operations.md, "Exit codes"). AppErrors carry their code and an
 * operator's message; operating-system errors (a port in use, a file that may
 * not be read) theirs. Anything else is a bug: it is reported as ERR_INTERNAL
 * with the error's class and where it was thrown. Security: not with its
 * message, which for a parser's error may quote the input (a token, a body).
 */
export function describeStartupFailure(err: unknown): StartupFailure {
  if (err instanceof AppError) {
    return { code: err.code, error: err.message };
  }
  if (Object.values(Deno.errors).some((kind) => err instanceof kind)) {
    return { code: "ERR_SYSTEM", error: describeError(err) };
  }
  const name = err instanceof Error && /^\w{1,40}$/.test(err.name) ? err.name : typeof err;
  // The first frame in a local module, relative to its folder: no argument values.
  const frame = err instanceof Error
    ? /file:\/\/\S*?([\w.-]+\/[\w.-]+\.ts:\d+:\d+)/.exec(err.stack ?? "")?.[1]
    : undefined;
  return {
    code: "ERR_INTERNAL",
    error: `${name}: an unexpected error (a bug); please report this line`,
    ...(frame ? { at: frame } : {}),
  };
}

function shutdownSignal(onSignal: (name: string) => void): AbortSignal {
  const controller = new AbortController();
  for (const name of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(name, () => {
      if (!controller.signal.aborted) onSignal(name);
      controller.abort();
    });
  }
  return controller.signal;
}

/** What main needs to know of one mode; picked once, by the command. */
interface ModeEntry<M extends Mode> {
  /** Gives up what the mode never needs, before anything else runs. */
  trimPermissions(): Promise<void>;
  /** Labels on every log line: dev-only behaviour is marked wherever it could matter. */
  labels(config: ModeConfig<M>): Record<string, unknown>;
  /** Files whose read permission the startup line reports. */
  files(config: ModeConfig<M>): string[];
  /** Runs the mode until the signal; loads only that mode's modules. */
  run(
    config: ModeConfig<M>,
    runtime: { logger: Logger; signal: AbortSignal; version: string },
  ): Promise<void>;
}

const MODES: { [M in Mode]: ModeEntry<M> } = {
  web: {
    // Security: the binary carries both modes' permissions; web needs no files,
    // processes, FFI or system information, so it gives them up before serving.
    trimPermissions: () => dropPermissions(["read", "write", "run", "ffi", "sys"]),
    labels: (config) => config.devMode ? { dev_mode: true } : {},
    files: () => PERMISSION_PROBE_PATHS,
    run: async (config, runtime) => (await import("./web/server.ts")).runWeb(config, runtime),
  },
  worker: {
    trimPermissions: async () => {},
    labels: (config) => config.localInventory ? { local_inventory: true } : {},
    files: (config) =>
      [
        ...PERMISSION_PROBE_PATHS,
        // KUBECONFIG may be a ':' list, as for kubectl: each file is probed.
        ...(config.kubeconfig ? config.kubeconfig.split(":").filter(Boolean) : []),
        config.localInventory,
        config.valkeyTlsCaFile,
      ].filter(Boolean),
    run: async (config, runtime) => (await import("./worker/worker.ts")).runWorker(config, runtime),
  },
};

/** Parses the mode's settings or exits with the usage or configuration error. */
function parseOrExit<M extends Mode>(mode: M, args: string[]) {
  try {
    return parseCommandLine(mode, args, (name) => Deno.env.get(name));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (err.code === "ERR_USAGE") exitUsage(err.problems.join("; "));
    printError(`kuberollouttrigger ${mode}: invalid configuration: ${err.problems.join("; ")}`);
    printError(`Run 'kuberollouttrigger ${mode} --help' for every setting.`);
    Deno.exit(2);
  }
}

async function runMode<M extends Mode>(mode: M, entry: ModeEntry<M>, args: string[]) {
  const parsed = parseOrExit(mode, args);
  if (parsed.kind === "help") {
    print(renderHelp(mode));
    return;
  }
  const { config, origins } = parsed;
  await entry.trimPermissions();
  // Log lines go out once per event-loop turn; whatever way the process ends, none is lost.
  const sink = createBatchedSink();
  flushAtExit(sink, globalThis);
  const logger = createLogger({
    level: config.logLevel,
    fields: { mode, ...entry.labels(config) },
    sink,
  });
  try {
    logger.info("starting", {
      version: denoJson.version,
      config: summarizeConfig(mode, origins),
      permissions: await describePermissions(entry.files(config)),
    });
    const signal = shutdownSignal((name) => logger.info("shutting down", { signal: name }));
    await entry.run(config, { logger, signal, version: denoJson.version });
  } catch (err) {
    // One line and an exit code for every failure, never a stack trace.
    logger.error("cannot start", { ...describeStartupFailure(err) });
    Deno.exit(1);
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "web":
      return await runMode(command, MODES.web, rest);
    case "worker":
      return await runMode(command, MODES.worker, rest);
    case "version":
    case "--version":
      print(`kuberollouttrigger ${denoJson.version}`);
      return;
    case "help":
    case "--help":
    case "-h":
      print(USAGE);
      return;
    case undefined:
      exitUsage("a command is required");
      break;
    default:
      exitUsage(`unknown command "${command.slice(0, 40)}"`);
  }
}

if (import.meta.main) await main(Deno.args);
