/**
 * What the Valkey client takes from the configuration (one server, the
 * primary the Sentinels name, or a cluster's nodes; ACL user, TLS with a
 * private CA and a client certificate, timeouts), and how the logs name the
 * Valkey a connection goes to.
 */

import { backoffDelay } from "../lib/backoff.ts";
import { AppError } from "./errors.ts";
import { type HostPort, parsePemCertificates } from "../lib/setting_values.ts";

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
  /** Seeds of a Valkey Cluster: set puts the client in cluster mode. */
  valkeyClusterNodes?: HostPort[];
  valkeySentinelMaster?: string;
  valkeySentinelUsername?: string;
  valkeySentinelPassword?: string;
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

/** What the logs call the Valkey a connection goes to. */
export function describeValkeyTarget(settings: ValkeySettings): string {
  if (settings.valkeySentinels?.length) {
    return `sentinel master ${settings.valkeySentinelMaster} via ${
      settings.valkeySentinels.map(formatHostPort).join(",")
    }`;
  }
  if (settings.valkeyClusterNodes?.length) {
    return `cluster via ${settings.valkeyClusterNodes.map(formatHostPort).join(",")}`;
  }
  return settings.valkeyAddr ? formatHostPort(settings.valkeyAddr) : "(no address)";
}

/** host:port, with an IPv6 host in brackets. */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * How long the client waits before reconnect attempt `attempt` (0-based):
 * 100 ms doubling to 5 s, jittered. With Sentinel or a cluster at most 1 s:
 * each try only asks the Sentinels or the nodes for the primary, and in a
 * failover the new primary is wanted as soon as it is named.
 */
export function reconnectDelay(attempt: number, settings: ValkeySettings): number {
  const failsOver = Boolean(
    settings.valkeySentinels?.length || settings.valkeyClusterNodes?.length,
  );
  return backoffDelay(attempt, 100, failsOver ? 1000 : 5000);
}
