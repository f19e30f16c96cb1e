/**
 * Slot arithmetic and cluster replies, in process. keySlot is also checked
 * against a real server's CLUSTER KEYSLOT in tests/integration/shared/.
 */

import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { ReplyError } from "../../lib/resp.ts";
import {
  keySlot,
  parseClusterSlots,
  parseRedirect,
  routingKey,
} from "../../shared/valkey_slots.ts";

Deno.test("keySlot() hashes the whole key, or only its first non-empty {hash tag}", () => {
  // Values as Valkey's CLUSTER KEYSLOT gives them.
  assertEquals(keySlot("foo"), 12182);
  assertEquals(keySlot("123456789"), 12739);
  assertEquals(keySlot("{user1000}.following"), keySlot("user1000"));
  assertEquals(keySlot("{kuberollouttrigger}:event-status:x"), keySlot("kuberollouttrigger"));
  // An empty tag does not count; the first { and the next } decide.
  assertEquals(keySlot("foo{}{bar}"), keySlot("foo{}{bar}"));
  assertEquals(keySlot("{}bar") === keySlot("bar"), false);
  assertEquals(keySlot("foo{{bar}}zap"), keySlot("{bar"));
  assertEquals(keySlot("foo{bar"), keySlot("foo{bar"));
  // Multi-byte characters are hashed as their UTF-8 bytes.
  assertEquals(keySlot("{ü}a"), keySlot("ü"));
});

Deno.test("routingKey() finds the key a command is routed by; keyless commands go anywhere", () => {
  assertEquals(routingKey(["GET", "k"]), "k");
  assertEquals(routingKey(["set", "k", "v", "PX", 5]), "k");
  assertEquals(routingKey(["EVALSHA", "abc", 2, "k1", "k2", "arg"]), "k1");
  assertEquals(routingKey(["EVAL", "return 1", 0, "arg"]), undefined);
  assertEquals(routingKey(["SPUBLISH", "{t}:events", "m"]), "{t}:events");
  for (const keyless of [["PING"], ["PUBLISH", "ch", "m"], ["CLUSTER", "SLOTS"], ["ROLE"]]) {
    assertEquals(routingKey(keyless), undefined, keyless.join(" "));
  }
});

Deno.test("parseClusterSlots() reads the ranges and their primaries; a node without its own address is the one asked", () => {
  const asked = { host: "10.0.0.9", port: 7000 };
  assertEquals(
    parseClusterSlots([
      [0, 5460, ["127.0.0.1", 7000, "id1"], ["127.0.0.1", 7003, "id4"]],
      [5461, 10922, ["", 7001, "id2"]],
    ], asked),
    [
      { first: 0, last: 5460, primary: { host: "127.0.0.1", port: 7000 } },
      { first: 5461, last: 10922, primary: { host: "10.0.0.9", port: 7001 } },
    ],
  );
});

Deno.test("parseClusterSlots() refuses a malformed map whole rather than route by half of it", () => {
  const asked = { host: "h", port: 1 };
  for (
    const reply of [
      "ERR",
      [[0, 16384, ["h", 1]]],
      [[5, 4, ["h", 1]]],
      [[0, 1, ["h", 0]]],
      [[0, 1, [7, 1]]],
      [[0, 1]],
      [[0, 1, ["h", 1]], "junk"],
      // Overlapping ranges: more slots than there are.
      Array.from({ length: 3 }, () => [0, 16383, ["h", 1]]),
    ]
  ) {
    assertThrows(() => parseClusterSlots(reply, asked), { message: /^CLUSTER SLOTS answered/ });
  }
});

Deno.test("parseRedirect() reads MOVED and ASK; anything else is no redirection", () => {
  assertEquals(parseRedirect(new ReplyError("MOVED 3999 127.0.0.1:6381")), {
    kind: "MOVED",
    slot: 3999,
    to: { host: "127.0.0.1", port: 6381 },
  });
  assertEquals(parseRedirect(new ReplyError("ASK 12 ::1:7002")), {
    kind: "ASK",
    slot: 12,
    to: { host: "::1", port: 7002 },
  });
  assertEquals(parseRedirect(new ReplyError("MOVED 7 :7002"))?.to, { host: "", port: 7002 });
  for (
    const other of [
      new ReplyError("ERR MOVED 1 h:2"),
      new ReplyError("MOVED 16384 h:2"),
      new ReplyError("MOVED 1 h:0"),
      new Error("MOVED 1 h:2"),
      "MOVED 1 h:2",
    ]
  ) {
    assertEquals(parseRedirect(other), undefined);
  }
});
