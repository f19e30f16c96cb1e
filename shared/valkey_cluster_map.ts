/**
 * What a Valkey Cluster client knows of the cluster: the slot map (which
 * primary serves each slot, read from CLUSTER SLOTS of the first node that
 * answers), and what it remembers of each node across connections.
 */

import type { HostPort } from "../lib/setting_values.ts";
import { describeValkeyError } from "./valkey_errors.ts";
import { formatHostPort } from "./valkey_settings.ts";
import type { Session } from "./valkey_session.ts";
import { parseClusterSlots, type SlotRange, SLOTS } from "./valkey_slots.ts";
import type { Stuck } from "./valkey_socket.ts";

/** The slot map: which primary serves each slot, by address. */
export class SlotMap {
  readonly #owners = new Array<string | undefined>(SLOTS);
  readonly #addresses = new Map<string, HostPort>();
  /** The ranges as read, to tell whether a new read changed anything. */
  readonly signature: string;

  constructor(ranges: SlotRange[] = []) {
    for (const range of ranges) {
      for (let slot = range.first; slot <= range.last; slot++) this.assign(slot, range.primary);
    }
    this.signature = ranges.map((r) => `${r.first}-${r.last}@${formatHostPort(r.primary)}`)
      .join(",");
  }

  assign(slot: number, primary: HostPort): void {
    const key = formatHostPort(primary);
    this.#addresses.set(key, primary);
    this.#owners[slot] = key;
  }

  owner(slot: number): HostPort | undefined {
    const key = this.#owners[slot];
    return key === undefined ? undefined : this.#addresses.get(key);
  }

  primaries(): HostPort[] {
    const serving = new Set(this.#owners);
    return [...this.#addresses].filter(([key]) => serving.has(key)).map(([, address]) => address);
  }
}

/**
 * What a client remembers of each node across its connections: the one
 * connection attempt Deno could not abort (a TLS handshake nobody answers),
 * and when the node last failed, so the next read of the map asks the others
 * first instead of waiting out a dead node's timeout every time.
 */
export class NodeMemory {
  readonly #nodes = new Map<string, { stuck: Stuck; failedAt?: number }>();

  #of(address: HostPort) {
    const key = formatHostPort(address);
    let node = this.#nodes.get(key);
    if (!node) this.#nodes.set(key, node = { stuck: {} });
    return node;
  }

  stuck(address: HostPort): Stuck {
    return this.#of(address).stuck;
  }

  failed(address: HostPort): void {
    this.#of(address).failedAt = performance.now();
  }

  answered(address: HostPort): void {
    this.#of(address).failedAt = undefined;
  }

  /** The addresses, those that failed last at the end (the most recent failure last). */
  order(addresses: HostPort[]): HostPort[] {
    const failedAt = (a: HostPort) => this.#nodes.get(formatHostPort(a))?.failedAt ?? -Infinity;
    return [...addresses].sort((a, b) => failedAt(a) - failedAt(b));
  }
}

/** The addresses to ask for the map: the primaries known, then the seeds, each once; failed ones last. */
export function candidates(map: SlotMap, seeds: HostPort[], memory: NodeMemory): HostPort[] {
  const seen = new Set<string>();
  return memory.order([...map.primaries(), ...seeds].filter((address) => {
    const key = formatHostPort(address);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  }));
}

/** Reads the slot map from the first node that gives one, opening each with `sessionOf`. */
export async function readSlotMap(
  addresses: HostPort[],
  sessionOf: (address: HostPort) => Promise<Session>,
): Promise<SlotMap> {
  let last: unknown;
  for (const address of addresses) {
    try {
      const ranges = parseClusterSlots(
        await (await sessionOf(address)).send(["CLUSTER", "SLOTS"]),
        address,
      );
      if (ranges.length > 0) return new SlotMap(ranges);
      last = new Error(`${formatHostPort(address)} serves no slots: is the cluster created?`);
    } catch (err) {
      last = /cluster support disabled/i.test(String((err as Error)?.message))
        ? new Error(
          `${
            formatHostPort(address)
          } is not in cluster mode; use VALKEY_ADDR instead of VALKEY_CLUSTER_NODES`,
        )
        : err;
    }
  }
  throw new ClusterUnreachable(last);
}

/** No node of the cluster gave its slot map. */
export class ClusterUnreachable extends Error {
  constructor(readonly last: unknown) {
    super(
      `no Valkey Cluster node answered CLUSTER SLOTS. Last error: ${describeValkeyError(last)}`,
    );
  }
}
