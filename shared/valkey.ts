/**
 * Valkey connections for both modes, built from the shared settings: ACL user
 * and password, optional TLS, bounded connect and command times, reconnect
 * with capped exponential backoff. Connection state changes are logged once
 * per change, never with the password: a connection we close ourselves is
 * "closed" (info), one that drops is "lost" (warn).
 *
 * Security: Valkey's error replies can quote the command they refuse
 * ("unknown command 'auth', with args beginning with: 'user' 'password'"), so
 * replies are reported by describeValkeyError, never as they came.
 */

import { Valkey } from "iovalkey";
import { backoffDelay } from "./backoff.ts";
import { describeError } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { HostPort } from "./setting_values.ts";

/** What a Valkey connection needs from the configuration. */
export interface ValkeySettings {
  valkeyAddr: HostPort;
  valkeyUsername: string;
  valkeyPassword: string;
  valkeyTls: boolean;
  valkeyTimeout: number;
}

/** Options for createValkeyConnection. */
export interface ValkeyConnectionOptions {
  /** Shown in CLIENT LIST and in our logs. */
  name: string;
  logger: Logger;
  /** Web fails fast while disconnected; a subscriber may queue its SUBSCRIBE. */
  offlineQueue: boolean;
  /** Reports every transition between connected and disconnected. */
  onStateChange?: (connected: boolean) => void;
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
  const { host, port } = settings.valkeyAddr;
  const client = new Valkey({
    host,
    port,
    username: settings.valkeyUsername || undefined,
    password: settings.valkeyPassword || undefined,
    tls: settings.valkeyTls ? { servername: host } : undefined,
    connectionName: options.name,
    connectTimeout: settings.valkeyTimeout,
    commandTimeout: settings.valkeyTimeout,
    maxRetriesPerRequest: options.offlineQueue ? null : 0,
    enableOfflineQueue: options.offlineQueue,
    // Reconnect forever: 100 ms doubling to 5 s, jittered.
    retryStrategy: (attempt: number) => backoffDelay(attempt - 1),
    lazyConnect: true,
  });
  let connected = false;
  let lastError = "";
  const log = options.logger.child({ valkey: `${host}:${port}`, connection: options.name });
  client.on("ready", () => {
    if (connected) return;
    connected = true;
    lastError = "";
    log.info("valkey connected");
    options.onStateChange?.(true);
  });
  client.on("error", (err: unknown) => {
    const message = describeValkeyError(err);
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
