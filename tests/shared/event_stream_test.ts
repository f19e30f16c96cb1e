/**
 * The event stream's shared pieces in process (shared/event_stream.ts): what a
 * worker makes of XREADGROUP and XAUTOCLAIM replies, including entries trimmed
 * after delivery and replies nobody of ours wrote, and the oldest id web keeps
 * when it appends. The real stream is proven in
 * tests/integration/web/publisher_test.ts (web's appends and trimming).
 */

import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { MAX_SIGNED_MESSAGE } from "../../shared/event_signature.ts";
import {
  EVENTS_STREAM,
  isEntryId,
  laterId,
  MESSAGE_FIELD,
  parseAutoClaimReply,
  parseInfoRecords,
  parseReadReply,
  RETENTION_FACTOR,
  retentionMinId,
} from "../../shared/event_stream.ts";

/** One XREADGROUP reply for the events stream with these entries. */
const read = (...entries: unknown[]) => [[EVENTS_STREAM, entries]];

Deno.test("the stream and its field are the names web and the workers agree on", () => {
  assertEquals([EVENTS_STREAM, MESSAGE_FIELD, RETENTION_FACTOR], [
    "{kuberollouttrigger}:events",
    "m",
    2,
  ]);
});

Deno.test("parseReadReply() reads each entry's id and message in order", async (t) => {
  await t.step("nil (a blocking read that timed out): no entries", () => {
    assertEquals(parseReadReply(null), []);
  });
  await t.step("the stream with no entries (nothing pending): no entries", () => {
    assertEquals(parseReadReply(read()), []);
  });
  await t.step("entries in the order Valkey gave them", () => {
    assertEquals(
      parseReadReply(read(["1700000000000-0", ["m", "first"]], ["1700000000000-1", ["m", "2nd"]])),
      [{ id: "1700000000000-0", message: "first" }, { id: "1700000000000-1", message: "2nd" }],
    );
  });
  await t.step("the message field among others, wherever it is", () => {
    assertEquals(parseReadReply(read(["1-0", ["x", "y", "m", "msg", "z", "w"]])), [
      { id: "1-0", message: "msg" },
    ]);
  });
  await t.step("a pending entry trimmed since delivery ([id, nil]): the id, no message", () => {
    assertEquals(parseReadReply(read(["1-0", null])), [{ id: "1-0", message: undefined }]);
  });
  await t.step("an entry without the message field (anyone may XADD): no message", () => {
    assertEquals(parseReadReply(read(["1-0", ["other", "x"]], ["2-0", ["m"]])), [
      { id: "1-0", message: undefined },
      { id: "2-0", message: undefined },
    ]);
  });
  await t.step("a message field that is not text: no message", () => {
    assertEquals(parseReadReply(read(["1-0", ["m", 42]])), [{ id: "1-0", message: undefined }]);
  });
  await t.step("security: a message longer than any web writes is dropped unread", () => {
    const most = "x".repeat(MAX_SIGNED_MESSAGE);
    assertEquals(parseReadReply(read(["1-0", ["m", most]], ["2-0", ["m", `${most}x`]])), [
      { id: "1-0", message: most },
      { id: "2-0", message: undefined },
    ]);
  });
});

Deno.test("security: parseReadReply() throws on a reply of another shape", async (t) => {
  const cases: [string, unknown][] = [
    ["a string", "OK"],
    ["an empty list", []],
    ["two streams", [...read(), ...read()]],
    ["a stream that is not a pair", ["stream"]],
    ["entries that are not a list", [[EVENTS_STREAM, "entries"]]],
    ["an entry that is not a pair", read("1-0")],
    ["an entry without an id", read([null, ["m", "x"]])],
    ["an id that is not one", read(["1-0; DEL x", ["m", "x"]])],
    ["an id with no sequence", read(["1700000000000", ["m", "x"]])],
    ["an id of more than 20 digits", read([`${"9".repeat(21)}-0`, ["m", "x"]])],
  ];
  for (const [name, reply] of cases) {
    await t.step(name, () => {
      assertThrows(() => parseReadReply(reply));
    });
  }
});

Deno.test("parseAutoClaimReply() reads the cursor and the entries taken over", async (t) => {
  await t.step("Valkey 7: [next, entries, deleted ids]", () => {
    assertEquals(parseAutoClaimReply(["0-0", [["5-0", ["m", "a"]]], ["4-0"]]), {
      next: "0-0",
      entries: [{ id: "5-0", message: "a" }],
    });
  });
  await t.step("Redis 6.2: [next, entries] with a trimmed entry as [id, nil]", () => {
    assertEquals(parseAutoClaimReply(["7-1", [["5-0", null], ["6-0", ["m", "b"]]]]), {
      next: "7-1",
      entries: [{ id: "5-0", message: undefined }, { id: "6-0", message: "b" }],
    });
  });
  await t.step("nothing to take over", () => {
    assertEquals(parseAutoClaimReply(["0-0", [], []]), { next: "0-0", entries: [] });
  });
});

Deno.test("security: parseAutoClaimReply() throws on a reply of another shape", async (t) => {
  const cases: [string, unknown][] = [
    ["nil", null],
    ["a cursor alone", ["0-0"]],
    ["a cursor that is not text", [0, []]],
    ["a cursor that is not an id", ["next", []]],
    ["entries that are not a list", ["0-0", null]],
    ["an entry with a bad id", ["0-0", [["x-1", ["m", "a"]]]]],
  ];
  for (const [name, reply] of cases) {
    await t.step(name, () => {
      assertThrows(() => parseAutoClaimReply(reply));
    });
  }
});

Deno.test("laterId() orders entry ids by milliseconds, then sequence, as numbers", async (t) => {
  const cases: [string | undefined, string, string][] = [
    [undefined, "5-0", "5-0"],
    ["5-0", "6-0", "6-0"],
    ["6-0", "5-9", "6-0"],
    ["5-1", "5-2", "5-2"],
    ["5-10", "5-9", "5-10"],
    ["9-0", "10-0", "10-0"],
    ["18446744073709551615-0", "18446744073709551614-5", "18446744073709551615-0"],
    ["7-3", "7-3", "7-3"],
  ];
  for (const [a, b, later] of cases) {
    await t.step(`${a} vs ${b}`, () => assertEquals(laterId(a, b), later));
  }
});

Deno.test("parseInfoRecords() reads XINFO's flat records as maps and skips anything else", () => {
  const records = parseInfoRecords([["name", "prod", "pending", 0], "junk", ["odd"]]);
  assertEquals(records.map((r) => [r.get("name"), r.get("pending")]), [["prod", 0], [
    undefined,
    undefined,
  ]]);
  assertEquals(parseInfoRecords("nope"), []);
  assertEquals([isEntryId("1-2"), isEntryId("1"), isEntryId(3)], [true, false, false]);
});

Deno.test("retentionMinId() keeps twice the catch-up window, in whole ms, never below 0", async (t) => {
  const cases: [string, number, number, string][] = [
    ["one hour window: two hours back", 1_700_000_000_000, 3_600_000, "1699992800000"],
    ["a fractional now is floored", 10_000.9, 1000, "8000"],
    ["a fractional window", 10_000, 0.4, "9999"],
    ["a window longer than the clock: 0, keep everything", 1000, 3_600_000, "0"],
  ];
  for (const [name, now, window, expected] of cases) {
    await t.step(name, () => assertEquals(retentionMinId(now, window), expected));
  }
});

Deno.test("parseReadReply() reads the sender field beside the message, bounded", () => {
  const entries = parseReadReply([[
    "s",
    [
      ["1-0", ["m", "{}", "s", '{"sender":"x","ssig":"y"}']],
      ["2-0", ["s", "x".repeat(5000), "m", "{}"]],
    ],
  ]]);
  assertEquals(entries, [
    { id: "1-0", message: "{}", sender: '{"sender":"x","ssig":"y"}' },
    { id: "2-0", message: "{}" },
  ]);
});
