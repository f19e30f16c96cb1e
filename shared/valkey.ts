/**
 * Valkey connections for both modes, built from the shared settings: ACL user
 * and password, optional TLS, bounded connect and command times, reconnect
 * with capped exponential backoff. Connection state changes are logged once
 * per change, never with the password.
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
    const message = describeError(err);
    if (message !== lastError) log.warn("valkey connection error", { error: message });
    lastError = message;
  });
  client.on("close", () => {
    if (!connected) return;
    connected = false;
    log.warn("valkey connection lost; reconnecting");
    options.onStateChange?.(false);
  });
  client.connect().catch(() => {
    // The error event above has logged it; retryStrategy keeps trying.
  });
  return client;
}
