/**
 * RESP2 in-process: the bytes a command becomes, and replies read back whole
 * however the socket splits them, with lengths counted in bytes (UTF-8), and
 * bytes that are not RESP refused rather than guessed at.
 */

import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  commandText,
  MAX_REPLY_BYTES,
  MAX_REPLY_DEPTH,
  ProtocolError,
  ReplyError,
  RespReader,
  utf8Length,
} from "../../lib/resp.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
// What the client puts on the socket: the command's text, UTF-8 encoded.
const encodeCommand = (args: (string | number)[]) => new TextEncoder().encode(commandText(args));

Deno.test("commandText() sends each argument as a bulk string whose length counts bytes", () => {
  assertEquals(
    text(encodeCommand(["SET", "k", "välue€", 42])),
    "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$9\r\nvälue€\r\n$2\r\n42\r\n",
  );
  assertEquals(text(encodeCommand(["PING"])), "*1\r\n$4\r\nPING\r\n");
  assertEquals(text(encodeCommand(["ECHO", ""])), "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n");
});

Deno.test("utf8Length() counts what TextEncoder makes of any string, lone surrogates included", () => {
  const pieces = ["a", "é", "€", "😀", "\ud800", "\udfff", "\u0000", "\u07ff", "\u0800", "\uffff"];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  for (let i = 0; i < 2000; i++) {
    let text = "";
    for (let j = next() % 12; j > 0; j--) text += pieces[next() % pieces.length];
    assertEquals(utf8Length(text), new TextEncoder().encode(text).length, JSON.stringify(text));
  }
  assertEquals(
    text(encodeCommand(["ECHO", "😀\ud800"])),
    `*2\r\n$4\r\nECHO\r\n$7\r\n😀\ufffd\r\n`,
  );
});

const REPLIES =
  "+OK\r\n-ERR wrong\r\n:42\r\n:-7\r\n$9\r\nvälue€\r\n$-1\r\n$0\r\n\r\n*3\r\n$3\r\nfoo\r\n:1\r\n*1\r\n+in\r\n*-1\r\n*0\r\n";

function values(reader: RespReader) {
  const out: unknown[] = [];
  for (let r = reader.next(); r; r = reader.next()) {
    out.push(r.value instanceof ReplyError ? { error: r.value.message } : r.value);
  }
  return out;
}

const EXPECTED = [
  "OK",
  { error: "ERR wrong" },
  42,
  -7,
  "välue€",
  null,
  "",
  ["foo", 1, ["in"]],
  null,
  [],
];

Deno.test("RespReader reads every reply type whole, split at any byte, even inside a UTF-8 character", () => {
  const bytes = new TextEncoder().encode(REPLIES);
  assertEquals(values(withChunks(bytes, [bytes.length])), EXPECTED);
  for (let cut = 1; cut < bytes.length; cut++) {
    assertEquals(values(withChunks(bytes, [cut, bytes.length - cut])), EXPECTED, `cut at ${cut}`);
  }
  const oneByOne = new RespReader();
  const seen: unknown[] = [];
  for (const b of bytes) {
    oneByOne.push(new Uint8Array([b]));
    seen.push(...values(oneByOne));
  }
  assertEquals(seen, EXPECTED);
});

function withChunks(bytes: Uint8Array, sizes: number[]): RespReader {
  // All chunks are pushed before reading: the reader keeps what it has not used.
  const reader = new RespReader();
  let at = 0;
  for (const size of sizes) {
    reader.push(bytes.slice(at, at + size));
    at += size;
  }
  return reader;
}

Deno.test("RespReader refuses bytes that are not RESP2 instead of guessing", async (t) => {
  for (
    const [name, bytes] of [
      ["an unknown type byte", "!oops\r\n"],
      ["a bulk string longer than it says", "$2\r\nabc\r\n"],
      ["a length that is not a number", "$x\r\nab\r\n"],
      ["a huge length", "$99999999999\r\n"],
      ["an integer that is not one", ":12a\r\n"],
      ["a negative length other than -1", "$-5\r\n"],
      ["a negative array length other than -1", "*-2\r\n"],
      [
        `arrays nested deeper than ${MAX_REPLY_DEPTH}`,
        "*1\r\n".repeat(MAX_REPLY_DEPTH + 1) + ":1\r\n",
      ],
    ]
  ) {
    await t.step(name, () => {
      const reader = new RespReader();
      reader.push(new TextEncoder().encode(bytes));
      assert(assertThrows(() => reader.next()) instanceof ProtocolError);
    });
  }
});

Deno.test("RespReader waits for the rest of a reply without losing the part it has", () => {
  const reader = new RespReader();
  reader.push(new TextEncoder().encode("*2\r\n$3\r\nab"));
  assertEquals(reader.next(), undefined);
  assertEquals(reader.next(), undefined);
  reader.push(new TextEncoder().encode("c\r\n:5\r\n+next"));
  assertEquals(reader.next(), { value: ["abc", 5] });
  assertEquals(reader.next(), undefined);
  reader.push(new TextEncoder().encode("\r\n"));
  const last = reader.next();
  assert(last && last.value === "next");
});

Deno.test("security: RespReader refuses a reply over MAX_REPLY_BYTES however it arrives, and reads big ones in pieces", async (t) => {
  const chunked = (bytes: Uint8Array, size: number) => {
    const reader = new RespReader();
    const out: unknown[] = [];
    for (let at = 0; at < bytes.length; at += size) {
      reader.push(bytes.subarray(at, at + size));
      for (let r = reader.next(); r; r = reader.next()) out.push(r.value);
    }
    return out;
  };
  await t.step("a bulk string of 8 MiB in 64 KiB pieces, then the next reply", () => {
    const body = "x".repeat(8 * 1024 * 1024);
    const out = chunked(new TextEncoder().encode(`$${body.length}\r\n${body}\r\n:7\r\n`), 65536);
    assertEquals(out.length, 2);
    assertEquals((out[0] as string).length, body.length);
    assertEquals(out[1], 7);
  });
  await t.step("an array of 200,000 items in 1 KiB pieces", () => {
    const items = Array.from({ length: 200_000 }, (_, i) => i);
    const wire = `*${items.length}\r\n` + items.map((i) => `:${i}\r\n`).join("");
    assertEquals(chunked(new TextEncoder().encode(wire), 1024), [items]);
  });
  await t.step("one bulk string longer than the bound: refused by its header", () => {
    const reader = new RespReader();
    reader.push(new TextEncoder().encode(`$${MAX_REPLY_BYTES + 1}\r\n`));
    assert(assertThrows(() => reader.next()) instanceof ProtocolError);
  });
  await t.step("many small items adding up to more than the bound: refused as they come", () => {
    const reader = new RespReader();
    reader.push(new TextEncoder().encode("*10000000\r\n"));
    assertEquals(reader.next(), undefined);
    const piece = new TextEncoder().encode(`$1000\r\n${"y".repeat(1000)}\r\n`.repeat(64));
    let refused: unknown;
    for (let i = 0; i < (MAX_REPLY_BYTES / piece.length) + 2 && !refused; i++) {
      try {
        reader.push(piece);
        while (reader.next());
      } catch (err) {
        refused = err;
      }
    }
    assert(refused instanceof ProtocolError, String(refused));
  });
});
