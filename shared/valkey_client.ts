/**
 * The one Valkey client of both modes, on Deno's own sockets: a command
 * connection (call, transaction) or a subscriber. It goes to one server
 * (VALKEY_ADDR), to the primary the Sentinels name (VALKEY_SENTINELS), or to
 * a Valkey Cluster (VALKEY_CLUSTER_NODES: shared/valkey_cluster_client.ts).
 * Both modes load no npm client and no Node compatibility layer for Valkey,
 * which is most of what a process weighed idle (docs/performance.md).
 *
 * Commands fail at once while disconnected, so web can answer 503 instead of
 * queueing an event nobody may see; each waits at most VALKEY_TIMEOUT for its
 * reply, at most 4096 wait on one connection, and a connection that answers
 * nothing for twice VALKEY_TIMEOUT is given up. Replies are bounded in size
 * and depth (lib/resp.ts). With Sentinel the primary is asked of the
 * Sentinels given and checked with ROLE before use. A primary the Sentinels
 * demote while it is still up is left too: they disconnect its clients
 * (CLIENT KILL) when they reconfigure it, and the next connect asks them again.
 */

import { createClusterClient } from "./valkey_cluster_client.ts";
import { keepConnected, type Opened } from "./valkey_link.ts";
import { askSentinels } from "./valkey_sentinel.ts";
import { describeValkeyTarget, formatHostPort, type ValkeySettings } from "./valkey_settings.ts";
import { openError, openSession } from "./valkey_socket.ts";

export type {
  ValkeyArg,
  ValkeyClient,
  ValkeyClientOptions,
  ValkeyCommands,
  ValkeySubscription,
} from "./valkey_commands.ts";
import type { ValkeyClient, ValkeyClientOptions } from "./valkey_commands.ts";

/** Opens a client that connects in the background and reconnects until disconnect(). */
export function createValkeyClient(
  settings: ValkeySettings,
  options: ValkeyClientOptions,
): ValkeyClient {
  if (settings.valkeyClusterNodes?.length) return createClusterClient(settings, options);
  const sentinel = Boolean(settings.valkeySentinels?.length);
  const subscription = options.subscription && { ...options.subscription, sharded: false };
  return keepConnected(
    settings,
    { ...options, subscription },
    describeValkeyTarget(settings),
    async ({ tls, stuckFor, signal }): Promise<Opened> => {
      const target = sentinel
        ? await askSentinels(settings, tls, stuckFor, signal)
        : settings.valkeyAddr!;
      const stuck = stuckFor(target);
      const session = await openSession(target, { settings, tls, name: options.name, stuck });
      if (!sentinel) return { session, fields: {} };
      try {
        const role = await session.send(["ROLE"]);
        if (!Array.isArray(role) || role[0] !== "master") {
          throw new Error(`${formatHostPort(target)}, named by the Sentinels, is not a primary`);
        }
      } catch (err) {
        session.close();
        throw openError(err, target);
      }
      return { session, fields: { primary: formatHostPort(target) } };
    },
  );
}
