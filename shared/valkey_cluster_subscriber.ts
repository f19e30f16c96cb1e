/**
 * The subscriber in a Valkey Cluster: one connection, to the primary of its
 * channel's slot (sharded PubSub must be there), reopened where the slot is
 * now when the server ends the subscription (the slot moved) or the node
 * stops answering. Each reopen reads the slot map again, asking the nodes
 * that failed last.
 */

import type { HostPort } from "../lib/setting_values.ts";
import type { ValkeyClient, ValkeyClientOptions } from "./valkey_commands.ts";
import { candidates, NodeMemory, readSlotMap, SlotMap } from "./valkey_cluster_map.ts";
import { keepConnected, type OpenContext } from "./valkey_link.ts";
import { describeValkeyTarget, formatHostPort, type ValkeySettings } from "./valkey_settings.ts";
import type { Session } from "./valkey_session.ts";
import { keySlot } from "./valkey_slots.ts";
import { openSession } from "./valkey_socket.ts";

/** The subscriber: one connection to the primary of the channel's slot, reopened where it moves. */
export function createClusterSubscriber(
  settings: ValkeySettings,
  options: ValkeyClientOptions,
): ValkeyClient {
  const seeds = settings.valkeyClusterNodes ?? [];
  const memory = new NodeMemory();
  let known = new SlotMap();
  return keepConnected(
    settings,
    options,
    describeValkeyTarget(settings),
    async ({ tls }: OpenContext) => {
      const open = async (address: HostPort) => {
        try {
          const stuck = memory.stuck(address);
          const session = await openSession(address, { settings, tls, name: options.name, stuck });
          memory.answered(address);
          return session;
        } catch (err) {
          memory.failed(address);
          throw err;
        }
      };
      const asked: Session[] = [];
      try {
        known = await readSlotMap(candidates(known, seeds, memory), async (address) => {
          const session = await open(address);
          asked.push(session);
          return session;
        });
      } finally {
        for (const session of asked) session.close();
      }
      const slot = keySlot(options.subscription!.channels[0]);
      const primary = known.owner(slot);
      if (!primary) {
        throw new Error(`no Valkey Cluster primary serves slot ${slot} (cluster down?)`);
      }
      return { session: await open(primary), fields: { node: formatHostPort(primary) } };
    },
  );
}
