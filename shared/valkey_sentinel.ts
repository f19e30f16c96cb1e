/**
 * Finding the primary through Sentinel: the Sentinels given are asked in
 * order (never the peers they announce, whose addresses the certificate or
 * the network policy may not cover), and the first that knows the primary
 * names it. The client then checks with ROLE that it is one.
 */

import type { HostPort } from "../lib/setting_values.ts";
import { describeValkeyError } from "./valkey_errors.ts";
import { formatHostPort, type ValkeySettings } from "./valkey_settings.ts";
import { Session } from "./valkey_session.ts";
import {
  authCommand,
  openError,
  openSocket,
  type Stuck,
  type TlsOptions,
} from "./valkey_socket.ts";

/** The primary the first Sentinel that knows it names. */
export async function askSentinels(
  settings: ValkeySettings,
  tls: TlsOptions | undefined,
  stuckFor: (address: HostPort) => Stuck,
  signal: AbortSignal,
): Promise<HostPort> {
  let last: unknown;
  for (const sentinel of settings.valkeySentinels ?? []) {
    if (signal.aborted) break;
    let session: Session | undefined;
    try {
      session = new Session(
        await openSocket(sentinel, tls, settings.valkeyTimeout, stuckFor(sentinel)),
        settings.valkeyTimeout,
      );
      const auth = authCommand(settings.valkeySentinelUsername, settings.valkeySentinelPassword);
      if (auth) await session.send(auth);
      const reply = await session.send([
        "SENTINEL",
        "get-master-addr-by-name",
        settings.valkeySentinelMaster ?? "",
      ]);
      const primary = announcedAddress(reply);
      if (primary) return primary;
      last = new Error(
        `Sentinel ${
          formatHostPort(sentinel)
        } does not know master ${settings.valkeySentinelMaster}`,
      );
    } catch (err) {
      last = openError(err, sentinel);
    } finally {
      session?.close();
    }
  }
  throw new Error(`All sentinels are unreachable. Last error: ${describeValkeyError(last)}`);
}

/** The [host, port] a Sentinel answered, or undefined when it is not one. */
function announcedAddress(reply: unknown): HostPort | undefined {
  if (!Array.isArray(reply) || typeof reply[0] !== "string") return undefined;
  const port = /^\d{1,5}$/.test(String(reply[1])) ? Number(reply[1]) : 0;
  return port >= 1 && port <= 65535 ? { host: reply[0], port } : undefined;
}
