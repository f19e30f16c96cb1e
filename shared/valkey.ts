/**
 * Valkey connections for both modes, built from the shared settings: one
 * server (VALKEY_ADDR) or the primary the Sentinels name, ACL user and
 * password, optional TLS with a private CA and a client certificate, bounded
 * connect and command times, reconnect with capped exponential backoff.
 * Connection state changes are logged once per change, never with the
 * password: a connection we close ourselves is "closed" (info), one that drops
 * is "lost" (warn).
 *
 * TLS names no servername: the TLS layer derives it from the host it connects
 * to, sending SNI for a name and checking an IP address against the
 * certificate's IP SANs. A servername set to an IP address is refused outright,
 * and with Sentinel the host is whatever address the Sentinel announces.
 *
 * Security: Valkey's error replies can quote the command they refuse
 * ("unknown command 'auth', with args beginning with: 'user' 'password'"), so
 * replies are reported by describeValkeyError, never as they came.
 */

import { Valkey } from "iovalkey";
import type { ConnectionOptions } from "node:tls";
import { backoffDelay } from "./backoff.ts";
import { AppError, describeError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { type HostPort, parsePemCertificates } from "./setting_values.ts";

/** What a Valkey connection needs from the configuration. */
export interface ValkeySettings {
  /** Unset when the Sentinels name the primary. */
  valkeyAddr?: HostPort;
  valkeyUsername: string;
  valkeyPassword: string;
  valkeyTls: boolean;
  valkeyTimeout: number;
  /** PEM of the CAs to trust instead of the root CAs. */
  valkeyTlsCaCert?: string;
  valkeyTlsClientCert?: string;
  valkeyTlsClientKey?: string;
  valkeySentinels?: HostPort[];
  valkeySentinelMaster?: string;
  valkeySentinelUsername?: string;
  valkeySentinelPassword?: string;
}

/** Options for createValkeyConnection. */
export interface ValkeyConnectionOptions {
  /** Shown in CLIENT LIST and in our logs. */
  name: string;
  logger: Logger;
  /** Web fails fast while disconnected; a subscriber may queue its SUBSCRIBE. */
  offlineQueue: boolean;
  /** False for a subscriber that subscribes itself on each ready (default true). */
  autoResubscribe?: boolean;
  /** Reports every transition between connected and disconnected. */
  onStateChange?: (connected: boolean) => void;
}

/**
 * Reads VALKEY_TLS_CA_FILE (worker only) into the CA setting, so both modes
 * then hand the CA to the connection the same way. Throws ERR_CONFIG with
 * one line naming the file, never its content.
 */
export async function loadValkeyCaFile<T extends ValkeySettings & { valkeyTlsCaFile?: string }>(
  settings: T,
  readTextFile: (path: string) => Promise<string> = Deno.readTextFile,
): Promise<T> {
  const path = settings.valkeyTlsCaFile;
  if (!path) return settings;
  let text: string;
  try {
    text = await readTextFile(path);
  } catch (err) {
    const hint =
      err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied
        ? "; the worker may read only under /etc/kuberollouttrigger: mount the CA there"
        : "";
    throw new AppError(
      "ERR_CONFIG",
      `VALKEY_TLS_CA_FILE ${path} cannot be read (${
        err instanceof Error ? err.name : "error"
      })${hint}`,
    );
  }
  try {
    return { ...settings, valkeyTlsCaCert: parsePemCertificates(text) };
  } catch (err) {
    throw new AppError("ERR_CONFIG", `VALKEY_TLS_CA_FILE ${path} ${(err as Error).message}`);
  }
}

/** The TLS options for data and Sentinel connections, or undefined without TLS. */
function tlsOptions(settings: ValkeySettings): ConnectionOptions | undefined {
  if (!settings.valkeyTls) return undefined;
  return {
    ...(settings.valkeyTlsCaCert ? { ca: settings.valkeyTlsCaCert } : {}),
    ...(settings.valkeyTlsClientCert
      ? { cert: settings.valkeyTlsClientCert, key: settings.valkeyTlsClientKey }
      : {}),
  };
}

/** What the logs call the Valkey a connection goes to. */
export function describeValkeyTarget(settings: ValkeySettings): string {
  if (settings.valkeySentinels?.length) {
    return `sentinel master ${settings.valkeySentinelMaster} via ${
      settings.valkeySentinels.map(formatHostPort).join(",")
    }`;
  }
  return settings.valkeyAddr ? formatHostPort(settings.valkeyAddr) : "(no address)";
}

function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

// Node's certificate-check codes, each with what an operator can do about it.
const TLS_PROBLEMS: [RegExp, string][] = [
  [
    /^ERR_TLS_CERT_ALTNAME_INVALID$/,
    "Valkey's TLS certificate does not name the host connected to; connect by a name or IP address in its subjectAltName, or reissue it",
  ],
  [
    /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE)$/,
    "Valkey's TLS certificate is not signed by a trusted CA; set VALKEY_TLS_CA_CERT to the CA that signed it",
  ],
  [
    /^CERT_HAS_EXPIRED$/,
    "Valkey's TLS certificate has expired; renew the server's certificate",
  ],
  [
    /^CERT_NOT_YET_VALID$/,
    "Valkey's TLS certificate is not valid yet; check the clocks or the certificate's dates",
  ],
  [
    /CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE|UNKNOWN_CA/,
    "Valkey refused the TLS handshake; if it requires client certificates, set VALKEY_TLS_CLIENT_CERT and VALKEY_TLS_CLIENT_KEY to one its CA signed",
  ],
];

/**
 * The connection error as one actionable line: TLS verification failures say
 * what to fix, with Node's code in brackets; a timeout over TLS and a reset
 * without it hint at a TLS mismatch with the server.
 */
export function describeConnectionError(err: unknown, tls: boolean): string {
  const code = String((err as { code?: unknown })?.code ?? "");
  for (const [pattern, advice] of TLS_PROBLEMS) {
    if (code && pattern.test(code)) return `${advice} [${code}]`;
  }
  // The Sentinel connector names its next delay, jittered: dropped so the line is logged once.
  const text = describeValkeyError(err).replace(/ Retrying from scratch after \d+ms\./, "");
  if (tls && /ETIMEDOUT/.test(text)) {
    return `${text}: no TLS handshake within VALKEY_TIMEOUT; the server may not speak TLS on that port (or is unreachable)`;
  }
  if (!tls && /ECONNRESET/.test(text)) {
    return `${text}: the server closed the connection; if it expects TLS, set VALKEY_TLS_ENABLED=true`;
  }
  return text;
}

/**
 * A one-line description of a Valkey or connection error. A server reply keeps
 * its error code and the words before the first quoted argument; the rest,
 * which may echo command arguments (a password, a key), is dropped.
 */
export function describeValkeyError(err: unknown): string {
  if (!(err instanceof Error) || err.name !== "ReplyError") return describeError(err);
  const text = describeError(err);
  const quote = text.search(/['"`]/);
  if (quote < 0) return text;
  return `${text.slice(0, quote).replace(/[\s,:;(]+$/, "")} (rest of the reply not shown)`;
}

/** Opens a connection (in the background) and returns the client. */
export function createValkeyConnection(
  settings: ValkeySettings,
  options: ValkeyConnectionOptions,
): Valkey {
  const tls = tlsOptions(settings);
  const sentinel = Boolean(settings.valkeySentinels?.length);
  // Reconnect forever: 100 ms doubling to 5 s, jittered. With Sentinel at most
  // 1 s: each try only asks the Sentinels, and in a failover the new primary is
  // wanted as soon as they name it.
  const retry = (attempt: number) => backoffDelay(attempt - 1, 100, sentinel ? 1000 : 5000);
  const target = sentinel
    ? {
      sentinels: (settings.valkeySentinels ?? []).map(({ host, port }) => ({ host, port })),
      name: settings.valkeySentinelMaster,
      sentinelUsername: settings.valkeySentinelUsername || undefined,
      sentinelPassword: settings.valkeySentinelPassword || undefined,
      sentinelTLS: tls,
      enableTLSForSentinelMode: tls !== undefined,
      sentinelRetryStrategy: retry,
      sentinelCommandTimeout: settings.valkeyTimeout,
      // Only the Sentinels given are asked: a Sentinel's announced peers may be
      // addresses the certificate or the network policy does not cover.
      updateSentinels: false,
      // Subscribes to +switch-master, so a primary demoted while still up is left at once.
      failoverDetector: true,
    }
    : { host: settings.valkeyAddr?.host, port: settings.valkeyAddr?.port };
  const client = new Valkey({
    ...target,
    username: settings.valkeyUsername || undefined,
    password: settings.valkeyPassword || undefined,
    tls,
    connectionName: options.name,
    connectTimeout: settings.valkeyTimeout,
    commandTimeout: settings.valkeyTimeout,
    maxRetriesPerRequest: options.offlineQueue ? null : 0,
    enableOfflineQueue: options.offlineQueue,
    autoResubscribe: options.autoResubscribe ?? true,
    retryStrategy: retry,
    lazyConnect: true,
  });
  let connected = false;
  let lastError = "";
  const log = options.logger.child({
    valkey: describeValkeyTarget(settings),
    connection: options.name,
  });
  client.on("ready", () => {
    if (connected) return;
    connected = true;
    lastError = "";
    const stream =
      (client as unknown as { stream?: { remoteAddress?: string; remotePort?: number } })
        .stream;
    const primary = settings.valkeySentinels?.length && stream?.remoteAddress
      ? { primary: formatHostPort({ host: stream.remoteAddress, port: stream.remotePort ?? 0 }) }
      : {};
    log.info("valkey connected", primary);
    options.onStateChange?.(true);
  });
  client.on("error", (err: unknown) => {
    const message = describeConnectionError(err, tls !== undefined);
    if (message !== lastError) log.warn("valkey connection error", { error: message });
    lastError = message;
  });
  // The client emits "close" for both; then "reconnecting" when the connection
  // dropped, or "end" when disconnect()/quit() asked for it (no reconnect).
  client.on("reconnecting", () => {
    if (!connected) return;
    connected = false;
    log.warn("valkey connection lost; reconnecting");
    options.onStateChange?.(false);
  });
  client.on("end", () => {
    if (!connected) return;
    connected = false;
    log.info("valkey connection closed");
    options.onStateChange?.(false);
  });
  client.connect().catch(() => {
    // The error event above has logged it; retryStrategy keeps trying.
  });
  return client;
}
