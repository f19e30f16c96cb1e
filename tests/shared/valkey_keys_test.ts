/** The names the product keeps in Valkey: one hash tag for every key, sharded events in a cluster. */

import { assertEquals } from "../helpers/assert.ts";
import { CLUSTERS_KEY, statusKey } from "../../shared/event_status.ts";
import { eventChannel, KEY_TAG, productKey } from "../../shared/valkey_keys.ts";
import { keySlot } from "../../shared/valkey_slots.ts";

const settings = { valkeyUsername: "", valkeyPassword: "", valkeyTls: false, valkeyTimeout: 1 };

Deno.test("every key the product writes shares one slot, so its scripts and transactions run on one node", () => {
  const slot = keySlot(KEY_TAG);
  for (
    const key of [
      statusKey("6f1c1d7e-0000-4000-8000-000000000000"),
      CLUSTERS_KEY,
      productKey("jti", "ab12"),
      productKey("prod-eu", "handling", "id"),
      productKey("prod-eu", "tracking"),
    ]
  ) {
    assertEquals(key.startsWith(`${KEY_TAG}:`), true, key);
    assertEquals(keySlot(key), slot, key);
  }
});

Deno.test("events go over VALKEY_CHANNEL as it is outside a cluster, and over sharded PubSub in the keys' slot in one", () => {
  assertEquals(eventChannel("deploys", { ...settings, valkeyAddr: { host: "h", port: 1 } }), {
    name: "deploys",
    sharded: false,
    publish: "PUBLISH",
  });
  const sharded = eventChannel("deploys", {
    ...settings,
    valkeyClusterNodes: [{ host: "h", port: 1 }],
  });
  assertEquals(sharded, {
    name: "{kuberollouttrigger}:deploys",
    sharded: true,
    publish: "SPUBLISH",
  });
  assertEquals(keySlot(sharded.name), keySlot(CLUSTERS_KEY));
  // A channel with braces of its own still lands in our slot: the first tag wins.
  const braced = eventChannel("a{b}c", {
    ...settings,
    valkeyClusterNodes: [{ host: "h", port: 1 }],
  });
  assertEquals(keySlot(braced.name), keySlot(CLUSTERS_KEY));
});
