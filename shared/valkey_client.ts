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

import type { Logger } from "../lib/log.ts";
import { createClusterClient } from "./valkey_cluster_client.ts";
import { keepConnected, type Opened } from "./valkey_link.ts";
import { askSentinels } from "./valkey_sentinel.ts";
import { describeValkeyTarget, formatHostPort, type ValkeySettings } from "./valkey_settings.ts";
import { openError, openSession } from "./valkey_socket.ts";

/** One argument of a command. */
export type ValkeyArg = string | number;

/** What the product asks of Valkey. */
export interface ValkeyCommands {
  /** Sends one command and resolves with its reply; an error reply rejects with a ReplyError. */
  call(command: string, ...args: ValkeyArg[]): Promise<unknown>;
  /**
   * Runs the commands as one MULTI/EXEC on one connection: none runs when one
   * is refused while queueing (a wrong command, a MOVED), and no other
   * client's command runs between them. Valkey does not roll back, so a
   * command refused while running (WRONGTYPE) leaves the others done. In a
   * cluster their keys must share a slot. Resolves with their replies;
   * rejects with the first refusal.
   */
  transaction(commands: ValkeyArg[][]): Promise<unknown[]>;
}

/** A command connection (call) or a subscriber (subscription in the options). */
export interface ValkeyClient extends ValkeyCommands {
  /** True between "valkey connected" and the connection's loss or close. */
  readonly connected: boolean;
  /** Closes the connection for good; pending commands reject. */
  disconnect(): void;
}

/** What a subscriber connection listens to. */
export interface ValkeySubscription {
  channels: string[];
  /**
   * Sharded PubSub (SSUBSCRIBE) in a cluster: the subscription goes to the
   * primary serving the channel's slot and follows it when the slot moves.
   * Outside a cluster, and when false, classic SUBSCRIBE.
   */
  sharded?: boolean;
  onMessage(channel: string, message: string): void;
}

/** Options for createValkeyClient. */
export interface ValkeyClientOptions {
  /** Shown in CLIENT LIST and in our logs. */
  name: string;
  logger: Logger;
  /** Reports every transition between connected and disconnected. */
  onStateChange?: (connected: boolean) => void;
  /** Makes this a subscriber: these channels are subscribed on every connect. */
  subscription?: ValkeySubscription;
}

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
