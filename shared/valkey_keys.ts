/**
 * How the product names what it keeps in Valkey. Every key carries one hash
 * tag, {kuberollouttrigger}, so in a Valkey Cluster they all live in one slot
 * and every script and transaction (which may touch several of them: the
 * publish script writes the status record, reads the live clusters and
 * claims the token) runs on one node. One slot is one primary's share of the
 * load, far more than events need.
 *
 * Events go over the VALKEY_CHANNEL. In a cluster they go over sharded PubSub
 * on that name under the same tag, so the publish script can publish from
 * the slot's node and count who received it there (a classic PUBLISH counts
 * only the subscribers of the node it runs on). Status notifications stay
 * classic PubSub: the cluster bus carries them to every node, and nobody
 * counts their receivers.
 */

import type { ValkeySettings } from "./valkey_settings.ts";

/** The hash tag in front of every key the product writes. */
export const KEY_TAG = "{kuberollouttrigger}";

/** A key of the product: the tag and the parts, joined by colons. */
export function productKey(...parts: string[]): string {
  return [KEY_TAG, ...parts].join(":");
}

/** The channel events go over, and the command that publishes to it. */
export interface EventChannel {
  name: string;
  /** Sharded PubSub (a cluster): SSUBSCRIBE and SPUBLISH. */
  sharded: boolean;
  publish: "PUBLISH" | "SPUBLISH";
}

/** The event channel for VALKEY_CHANNEL: itself, or in a cluster its sharded twin in our slot. */
export function eventChannel(channel: string, settings: ValkeySettings): EventChannel {
  return settings.valkeyClusterNodes?.length
    ? { name: productKey(channel), sharded: true, publish: "SPUBLISH" }
    : { name: channel, sharded: false, publish: "PUBLISH" };
}
