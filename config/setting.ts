/**
 * The machinery of the settings table: what one setting is (env var, 1:1
 * flag, modes, default, help, parser), the helper that builds a row, and the
 * small parsers several owners' rows share. The rows themselves live with
 * their owner (common, Valkey, web, worker); config/settings.ts assembles them.
 */

import { parseBool, parseDuration, parseList } from "../lib/setting_values.ts";

/** The two long-running modes. */
export type Mode = "web" | "worker";

/** One setting: where it comes from, how it parses, how it is documented. */
export interface Setting<T, M extends readonly Mode[] = readonly Mode[]> {
  env: string;
  flag: string;
  modes: M;
  /** Raw default, parsed like user input; "" means unset. */
  default: string;
  required: boolean;
  /** `required` is waived when one of these other settings is given (VALKEY_ADDR with VALKEY_SENTINELS). */
  unless?: string[];
  /**
   * Security: the startup summary prints a value only when its setting opts in
   * here (an allow-list); every other setting is shown as set or unset.
   */
  show: boolean;
  boolean: boolean;
  help: string;
  parse: (raw: string) => T;
}

type Options<T, M extends readonly Mode[]> =
  & Omit<Setting<T, M>, "required" | "show" | "boolean" | "default">
  & {
    default?: string;
    required?: boolean;
    show?: boolean;
    boolean?: boolean;
  };

/** Builds a row. */
// The modes stay a literal type, so WebConfig and WorkerConfig can be derived from the table.
export function setting<T, const M extends readonly Mode[]>(options: Options<T, M>): Setting<T, M> {
  return { required: false, show: false, boolean: false, default: "", ...options };
}

/** What a set of rows parses to: each key's parser's result. */
export type ConfigOfRows<R extends Record<string, Setting<unknown>>> = {
  [K in keyof R]: ReturnType<R[K]["parse"]>;
};

/** Rows of both modes. */
export const BOTH = ["web", "worker"] as const;
/** Rows of web only. */
export const WEB = ["web"] as const;
/** Rows of the worker only. */
export const WORKER = ["worker"] as const;

/** Trimmed text. */
export const text = (raw: string) => raw.trim();
/** A boolean; "" is false. */
export const bool = (raw: string) => raw === "" ? false : parseBool(raw);
/** A duration, zero allowed. */
export const duration = (raw: string) => parseDuration(raw);
/** A duration above zero. */
export const positiveDuration = (raw: string) => {
  const ms = parseDuration(raw);
  if (ms <= 0) throw new Error("must be greater than zero");
  return ms;
};

/** A whole number above zero. */
export const positiveInteger = (raw: string) => {
  const v = raw.trim();
  if (!/^[0-9]{1,9}$/.test(v) || Number(v) === 0) throw new Error("must be a whole number above 0");
  return Number(v);
};

/** A comma-separated list, each item checked by `check`. */
export function listOf(check: (item: string) => string): (raw: string) => string[] {
  return (raw) => parseList(raw).map(check);
}

/** How problems name a setting: its env var and flag. */
export function settingName(s: Pick<Setting<unknown>, "env" | "flag">): string {
  return `${s.env} (--${s.flag})`;
}

/** Describes a setting's default for help and docs. */
export function describeDefault(s: Setting<unknown>): string {
  if (s.required) return "required";
  if (s.default === "") return "unset";
  return s.default;
}
