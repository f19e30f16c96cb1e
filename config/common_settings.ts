/**
 * The settings both modes read that are not Valkey's: the log level and the
 * image prefixes events may name.
 */

import { LOG_LEVELS, type LogLevel } from "../lib/log.ts";
import { parseList } from "../lib/setting_values.ts";
import { parseImagePrefix } from "../shared/image_ref.ts";
import { BOTH, setting } from "./setting.ts";

function logLevel(raw: string): LogLevel {
  const v = raw.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(v)) {
    throw new Error(`must be one of ${LOG_LEVELS.join(", ")}`);
  }
  return v as LogLevel;
}

function prefixes(raw: string): string[] {
  return parseList(raw).map((item) => {
    try {
      return parseImagePrefix(item);
    } catch (err) {
      throw new Error(`"${item}" ${(err as Error).message}`);
    }
  });
}

/** LOG_LEVEL: first in the table. */
export const LOG_SETTINGS = {
  logLevel: setting({
    env: "LOG_LEVEL",
    flag: "log-level",
    modes: BOTH,
    show: true,
    default: "info",
    help: "Lowest level logged: debug, info, warn or error.",
    parse: logLevel,
  }),
};

/** ALLOWED_IMAGE_PREFIX: after the Valkey rows. */
export const IMAGE_SETTINGS = {
  allowedImagePrefixes: setting({
    env: "ALLOWED_IMAGE_PREFIX",
    flag: "allowed-image-prefix",
    modes: BOTH,
    show: true,
    required: true,
    help:
      "Comma-separated image prefixes events may name, matched on a path boundary (ghcr.io/acme allows ghcr.io/acme/app, not ghcr.io/acme-evil/app).",
    parse: prefixes,
  }),
};
