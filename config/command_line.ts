/**
 * Turns argv and the environment into a Config for one mode, using the
 * SETTINGS table: flag beats env beats default; every problem is collected
 * and reported at once. Also renders `--help` and the startup summary from the
 * same table. Trusts nothing it is given.
 */

import { parseArgs } from "node:util";
import { ConfigError } from "../shared/errors.ts";
import { parseBool } from "../lib/setting_values.ts";
import {
  checkCombinations,
  describeDefault,
  type Mode,
  type ModeConfig,
  type Setting,
  type SettingKey,
  SETTINGS,
  settingsFor,
} from "./settings.ts";

/** Reads one environment variable; `undefined` when unset. */
export type EnvReader = (name: string) => string | undefined;

/** The result of parsing a mode's command line: that mode's settings only. */
export type ParsedCommandLine<M extends Mode> =
  | { kind: "help" }
  | { kind: "config"; config: ModeConfig<M>; origins: Origins };

/** Where each setting's value came from, and the raw text, for the startup summary. */
export type Origins = Record<string, { source: "flag" | "env" | "default"; raw: string }>;

interface RawFlag {
  value: string | boolean;
}

// Boolean flags accept `--x`, `--no-x` and Go's `--x=false`; parseArgs only
// knows the first two, so rewrite the third before parsing.
function rewriteBooleanFlags(args: string[], booleans: Set<string>, problems: string[]): string[] {
  return args.flatMap((arg) => {
    const m = /^--([a-z0-9-]+)=(.*)$/s.exec(arg);
    if (!m || !booleans.has(m[1])) return [arg];
    try {
      return [parseBool(m[2]) ? `--${m[1]}` : `--no-${m[1]}`];
    } catch {
      // Security: the value is not echoed; a misplaced secret may be in it.
      problems.push(`--${m[1]}: expected true or false`);
      return [];
    }
  });
}

const OPTION_NAME = /'(--?[A-Za-z0-9][A-Za-z0-9-]{0,63})[ ']/;

// Security: parseArgs quotes the offending argument, and a stray positional is
// often a value that lost its flag (`--valkey-password= secret`). Only an
// option's name, which the user typed as a name, is repeated back.
function describeArgsError(err: unknown): string {
  const code = (err as { code?: string }).code;
  const name = OPTION_NAME.exec((err as Error).message ?? "")?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return "unexpected argument (not shown, it may be a secret): give settings as --name=value";
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${name ?? "(not shown)"}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return name
        ? `flag ${name} has a missing or unexpected value`
        : "a flag has a missing or unexpected value";
    default:
      return "cannot parse the command line";
  }
}

/**
 * Parses the flags after the subcommand plus the environment into the mode's
 * configuration (WebConfig or WorkerConfig): a setting of the other mode is
 * neither read nor present. Throws ConfigError: code ERR_USAGE for bad flags,
 * ERR_CONFIG for bad values.
 */
export function parseCommandLine<M extends Mode>(
  mode: M,
  args: string[],
  env: EnvReader,
): ParsedCommandLine<M> {
  const settings = settingsFor(mode);
  const booleans = new Set(settings.filter(([, s]) => s.boolean).map(([, s]) => s.flag));
  // Value problems are collected across flags and env so one error lists them all.
  const problems: string[] = [];
  const rewritten = rewriteBooleanFlags(args, booleans, problems);
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [, s] of settings) options[s.flag] = { type: s.boolean ? "boolean" : "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      args: rewritten,
      options,
      strict: true,
      allowPositionals: false,
      allowNegative: true,
    });
    values = parsed.values as Record<string, string | boolean | undefined>;
  } catch (err) {
    throw new ConfigError("ERR_USAGE", [describeArgsError(err)]);
  }
  if (values.help) return { kind: "help" };

  // A required setting may be waived by another one being given (VALKEY_ADDR by VALKEY_SENTINELS).
  const givenInstead = (s: Setting<unknown>) =>
    (s.unless ?? []).some((key) => {
      const other = SETTINGS[key as SettingKey];
      return [values[other.flag], env(other.env)].some((v) =>
        typeof v === "string" && v.trim() !== ""
      );
    });
  const config: Record<string, unknown> = {};
  const origins: Origins = {};
  for (const [key, s] of settings) {
    const flag: RawFlag | undefined = values[s.flag] !== undefined
      ? { value: values[s.flag]! }
      : undefined;
    const fromEnv = env(s.env);
    let raw = s.default;
    let source: "flag" | "env" | "default" = "default";
    if (flag) {
      raw = typeof flag.value === "boolean" ? String(flag.value) : flag.value;
      source = "flag";
    } else if (fromEnv !== undefined && fromEnv !== "") {
      raw = fromEnv;
      source = "env";
    }
    origins[key] = { source, raw };
    const name = `${s.env} (--${s.flag})`;
    if (raw.trim() === "" && s.required && !givenInstead(s)) {
      problems.push(`${name} is required`);
      continue;
    }
    try {
      const value = s.parse(raw);
      if (s.required && Array.isArray(value) && value.length === 0) {
        problems.push(`${name} is required`);
        continue;
      }
      config[key] = value;
    } catch (err) {
      const shown = s.show ? ` "${raw}"` : "";
      // A setting that holds many entries (REPOSITORY_RULES) names each problem on its own.
      const each = err instanceof AggregateError ? err.errors : [err];
      for (const e of each) problems.push(`${name}${shown}: ${(e as Error).message}`);
    }
  }
  const parsed = config as ModeConfig<M>;
  if (problems.length === 0) problems.push(...checkCombinations(mode, parsed));
  if (problems.length > 0) throw new ConfigError("ERR_CONFIG", problems);
  return { kind: "config", config: parsed, origins };
}

/** Renders the settings table of a mode for `--help`. */
export function renderHelp(mode: Mode): string {
  const lines = [
    `Usage: kuberollouttrigger ${mode} [flags]`,
    "",
    "Every setting can be given as a flag or an environment variable; the flag wins.",
    "",
  ];
  for (const [, s] of settingsFor(mode)) {
    const flag = s.boolean ? `--${s.flag}[=true|false]` : `--${s.flag} <value>`;
    lines.push(`  ${flag}`);
    lines.push(`      env ${s.env}; ${describeDefault(s)}`);
    lines.push(`      ${s.help}`);
  }
  lines.push("  -h, --help", "      Show this help.");
  return lines.join("\n");
}

/** The effective configuration for the startup log: values only for settings that opt in. */
export function summarizeConfig(mode: Mode, origins: Origins): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, s] of settingsFor(mode)) {
    const raw = origins[key]?.raw.trim() ?? "";
    out[s.env] = s.show ? raw : raw === "" ? "(unset)" : "(set)";
  }
  return out;
}

/** The settings table as Markdown, for docs/configuration.md. */
export function renderSettingsTable(): string {
  const rows = ["| env | flag | mode | default | meaning |", "|---|---|---|---|---|"];
  for (const s of Object.values(SETTINGS) as Setting<unknown>[]) {
    const def = describeDefault(s);
    const shown = def === "required" || def === "unset" ? def : `\`${def}\``;
    rows.push(
      `| \`${s.env}\` | \`--${s.flag}\` | ${s.modes.join(", ")} | ${shown} | ${
        s.help.replace(/\|/g, "\\|")
      } |`,
    );
  }
  return rows.join("\n");
}
