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

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END \1-----/y;

/**
 * Splits PEM text into its blocks and checks each one's shape and base64
 * body. Security: the messages describe the problem, never the text, which
 * for a private key is a secret.
 */
function pemBlocks(raw: string): { label: string; der: Uint8Array }[] {
  const text = raw.trim();
  if (text === "") throw new Error("is empty");
  if (!text.includes("\n") && text.includes("\\n")) {
    throw new Error(
      "is not PEM: it holds the two characters \\n instead of line breaks; give the PEM as it is, with its line breaks",
    );
  }
  if (!text.startsWith("-----BEGIN ")) {
    throw new Error(
      "is not PEM: it must start with a -----BEGIN ...----- line (give the PEM text, not a path or base64 of it)",
    );
  }
  const blocks: { label: string; der: Uint8Array }[] = [];
  let index = 0;
  while (index < text.length) {
    PEM_BLOCK.lastIndex = index;
    const m = PEM_BLOCK.exec(text);
    if (!m) {
      throw new Error(
        `is not PEM: block ${
          blocks.length + 1
        } is cut off or has no matching -----END ...----- line`,
      );
    }
    let der: Uint8Array;
    try {
      der = Uint8Array.from(atob(m[2].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    } catch {
      throw new Error(`is not PEM: the base64 inside block ${blocks.length + 1} is damaged`);
    }
    // DER always starts with a SEQUENCE.
    if (der.length < 16 || der[0] !== 0x30) {
      throw new Error(`is not PEM: block ${blocks.length + 1} does not hold DER data`);
    }
    blocks.push({ label: m[1], der });
    index = PEM_BLOCK.lastIndex;
    while (index < text.length && /\s/.test(text[index])) index++;
  }
  return blocks;
}

/** Checks PEM text of one or more certificates (a bundle); returns it trimmed. */
export function parsePemCertificates(raw: string): string {
  const blocks = pemBlocks(raw);
  const other = blocks.findIndex((b) => b.label !== "CERTIFICATE");
  if (other >= 0) {
    throw new Error(
      `block ${other + 1} is a ${blocks[other].label}, not a CERTIFICATE; give certificates only`,
    );
  }
  return raw.trim() + "\n";
}

/** Checks PEM text of one unencrypted private key; returns it trimmed. */
export function parsePemPrivateKey(raw: string): string {
  const blocks = pemBlocks(raw);
  if (blocks.length !== 1) {
    throw new Error(`holds ${blocks.length} PEM blocks; give exactly one key`);
  }
  const { label } = blocks[0];
  if (label === "ENCRYPTED PRIVATE KEY") {
    throw new Error("is an encrypted key; give it unencrypted (keep it in a Secret)");
  }
  if (!/^(RSA |EC )?PRIVATE KEY$/.test(label)) {
    throw new Error(`is a ${label}, not a PRIVATE KEY`);
  }
  return raw.trim() + "\n";
}
