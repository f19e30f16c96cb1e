/**
 * The worker's Valkey connections, through iovalkey (web has its own client on
 * Deno's sockets, web/valkey_client.ts), built from the shared settings:
 * one server (VALKEY_ADDR) or the primary the Sentinels name, ACL user and
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
 * Security: Valkey's error replies can quote the command they refuse, so
 * replies are reported by describeValkeyError (shared/valkey_errors.ts), never
 * as they came.
 */

import { Valkey } from "iovalkey";
import type { ConnectionOptions } from "node:tls";
import type { Logger } from "../lib/log.ts";
import { describeConnectionError } from "../shared/valkey_errors.ts";
import {
  describeValkeyTarget,
  formatHostPort,
  reconnectDelay,
  type ValkeySettings,
} from "../shared/valkey_settings.ts";

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

/** Opens a connection (in the background) and returns the client. */
export function createValkeyConnection(
  settings: ValkeySettings,
  options: ValkeyConnectionOptions,
): Valkey {
  const tls = tlsOptions(settings);
  const sentinel = Boolean(settings.valkeySentinels?.length);
  // iovalkey counts its retries from 1.
  const retry = (attempt: number) => reconnectDelay(attempt - 1, settings);
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
