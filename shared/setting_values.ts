/**
 * Parsers for the value types settings use (durations, addresses, lists,
 * booleans). Each takes the raw string from an env var or flag and returns the
 * typed value or throws an Error whose message says what is wrong with it.
 */

/** A `host:port` pair; `host` holds an IPv6 address without brackets. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parses a Go-style boolean (1, t, true, 0, f, false in any case, plus yes/no). */
export function parseBool(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (["1", "t", "true", "yes", "y", "on"].includes(v)) return true;
  if (["0", "f", "false", "no", "n", "off"].includes(v)) return false;
  throw new Error("expected true or false");
}

/** Splits a comma-separated list, trimming entries and dropping empty ones. */
export function parseList(raw: string): string[] {
  return raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a duration such as `500ms`, `5s`, `10m` or `1h30m` into milliseconds. */
export function parseDuration(raw: string): number {
  const text = raw.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
  let total = 0;
  let index = 0;
  if (text === "") throw new Error("expected a duration such as 5s or 10m");
  while (index < text.length) {
    re.lastIndex = index;
    const m = re.exec(text);
    if (!m) throw new Error("expected a duration such as 5s or 10m");
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    index = re.lastIndex;
  }
  if (!Number.isFinite(total) || total > 365 * 86_400_000) {
    throw new Error("duration is out of range");
  }
  return Math.round(total);
}

/** Formats milliseconds the way parseDuration reads them. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function parsePort(text: string, min = 1): number {
  if (!/^\d{1,5}$/.test(text)) throw new Error("port must be a number");
  const port = Number(text);
  if (port < min || port > 65535) throw new Error(`port must be between ${min} and 65535`);
  return port;
}

/** Parses `host:port` or `[ipv6]:port`; the host is required. */
export function parseHostPort(raw: string): HostPort {
  const text = raw.trim();
  const bracketed = /^\[([0-9A-Fa-f:.]+)\]:([^:]*)$/.exec(text);
  if (bracketed) return { host: bracketed[1], port: parsePort(bracketed[2]) };
  const colon = text.lastIndexOf(":");
  if (colon <= 0) throw new Error("expected host:port (IPv6 as [::1]:6379)");
  const host = text.slice(0, colon);
  if (host.includes(":")) throw new Error("an IPv6 address must be in brackets, as [::1]:6379");
  if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new Error("host has invalid characters");
  return { host, port: parsePort(text.slice(colon + 1)) };
}

/**
 * Parses a listen address: `:8080` (all IPv4 interfaces), `host:port` or
 * `[::]:8080`. Port 0 picks a free port (the log says which).
 */
export function parseListenAddr(raw: string): HostPort {
  const text = raw.trim();
  if (text.startsWith(":")) return { host: "0.0.0.0", port: parsePort(text.slice(1), 0) };
  const { host, port } = parseHostPort(text.replace(/:0$/, ":1"));
  return { host, port: text.endsWith(":0") ? 0 : port };
}

/** True for names and addresses that only reach this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

// GitHub account and repository names are ASCII: letters, digits, '-', plus
// '_' (managed users) and '.' (repositories).
const GITHUB_NAME = /^[A-Za-z0-9._-]{1,100}$/;

/** True for a GitHub owner or repository name: 1-100 ASCII letters, digits, '.', '_', '-'. */
export function isGitHubName(text: string): boolean {
  return GITHUB_NAME.test(text) && text !== "." && text !== "..";
}

/**
 * Lower-cases A-Z only. Security: String.prototype.toLowerCase folds some
 * non-ASCII letters to ASCII (the Kelvin sign U+212A becomes "k"), so two
 * different names could compare equal; GitHub names are ASCII and compared so.
 */
export function asciiLowerCase(text: string): string {
  return text.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}
