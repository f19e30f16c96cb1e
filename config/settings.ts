/**
 * The one table of settings, assembled from its owners' rows in the order
 * --help and docs/configuration.md show them. Parsing (env var, 1:1 flag),
 * `--help`, the startup summary and the docs table all come from SETTINGS, so
 * a setting cannot exist in one place and be missing from another; each mode's
 * config type is derived from the rows, never kept by hand. Input is the
 * process environment and argv: untrusted until each parser accepts it.
 */

import { IMAGE_SETTINGS, LOG_SETTINGS } from "./common_settings.ts";
import type { Mode, Setting } from "./setting.ts";
import {
  checkValkeyCaFileCombinations,
  checkValkeyCombinations,
  VALKEY_SETTINGS,
} from "./valkey_settings.ts";
import { checkWebCombinations, WEB_SETTINGS } from "./web_settings.ts";
import { checkWorkerCombinations, WORKER_SETTINGS } from "./worker_settings.ts";

export type { Mode, Setting } from "./setting.ts";
export { describeDefault } from "./setting.ts";

/** Every setting of the product. Keys are the config field names. */
export const SETTINGS = {
  ...LOG_SETTINGS,
  ...VALKEY_SETTINGS,
  ...IMAGE_SETTINGS,
  ...WEB_SETTINGS,
  ...WORKER_SETTINGS,
};

/** Names of all settings. */
export type SettingKey = keyof typeof SETTINGS;
type Table = typeof SETTINGS;
/** Names of the settings that apply to mode M. */
export type ModeKey<M extends Mode> = {
  [K in SettingKey]: M extends Table[K]["modes"][number] ? K : never;
}[SettingKey];
type ConfigOf<K extends SettingKey> = { [P in K]: ReturnType<Table[P]["parse"]> };
/** The settings both modes have (Valkey, logging, image prefixes). */
export type SharedConfig = ConfigOf<ModeKey<"web"> & ModeKey<"worker">>;
/** The parsed settings of mode M: only those the table gives that mode. */
export type ModeConfig<M extends Mode> = SharedConfig & ConfigOf<ModeKey<M>>;
/** What web mode runs on. */
export type WebConfig = ModeConfig<"web">;
/** What worker mode runs on. */
export type WorkerConfig = ModeConfig<"worker">;

/** The settings that apply to `mode`, in table order. */
export function settingsFor(mode: Mode): [SettingKey, Setting<unknown>][] {
  return (Object.entries(SETTINGS) as [SettingKey, Setting<unknown>][])
    .filter(([, s]) => s.modes.includes(mode));
}

/** Problems with combinations of otherwise valid settings of `mode`. */
export function checkCombinations<M extends Mode>(mode: M, config: ModeConfig<M>): string[] {
  // Order as an operator reads it: what is special to the mode around the shared Valkey rules.
  if (mode === "web") {
    return [...checkWebCombinations(config as WebConfig), ...checkValkeyCombinations(config)];
  }
  const worker = config as WorkerConfig;
  return [
    ...checkValkeyCombinations(worker),
    ...checkValkeyCaFileCombinations(worker),
    ...checkWorkerCombinations(worker),
  ];
}
