import { assertEquals } from "../helpers/assert.ts";
import { createBatchedSink, createLogger, flushAtExit } from "../../lib/log.ts";

Deno.test("createLogger() writes one JSON object per line at or above its level, with the base fields", () => {
  const lines: string[] = [];
  const logger = createLogger({
    level: "info",
    write: (l) => lines.push(l),
    now: () => new Date("2026-01-02T03:04:05.678Z"),
    fields: { mode: "web" },
  });
  logger.debug("hidden");
  logger.info("shown", { n: 1 });
  logger.child({ request_id: "r1" }).error("from a child", { mode: "overridden" });
  assertEquals(lines.map((l) => JSON.parse(l)), [
    { ts: "2026-01-02T03:04:05.678Z", level: "info", msg: "shown", mode: "web", n: 1 },
    {
      ts: "2026-01-02T03:04:05.678Z",
      level: "error",
      msg: "from a child",
      mode: "overridden",
      request_id: "r1",
    },
  ]);
  assertEquals(lines.every((l) => !l.includes("\n")), true);
});

Deno.test("createLogger() writes a BigInt as its digits and an Error as its message, not {}", () => {
  const lines: string[] = [];
  createLogger({ level: "debug", write: (l) => lines.push(l) }).warn("x", {
    big: 12345678901234567890n,
    error: new Error("boom"),
  });
  const line = JSON.parse(lines[0]);
  assertEquals([line.big, line.error], ["12345678901234567890", "boom"]);
});

/** A batched sink whose writes and scheduled flushes the test sees and runs itself. */
function recordingSink(maxChars?: number) {
  const writes: string[] = [];
  const scheduled: (() => void)[] = [];
  const sink = createBatchedSink({
    writeAll: (bytes) => writes.push(new TextDecoder().decode(bytes)),
    schedule: (flush) => scheduled.push(flush),
    maxChars,
  });
  const endTurn = () => scheduled.splice(0).forEach((flush) => flush());
  return { sink, writes, endTurn };
}

Deno.test("a batched sink writes the lines of one event-loop turn together, in order, once the turn ends", () => {
  const { sink, writes, endTurn } = recordingSink();
  const logger = createLogger({ level: "info", sink });
  logger.info("one");
  logger.info("two");
  assertEquals(writes, [], "written before the turn ended");
  endTurn();
  assertEquals(writes.length, 1);
  assertEquals(writes[0].split("\n").map((l) => l && JSON.parse(l).msg), ["one", "two", ""]);
  logger.info("three");
  endTurn();
  assertEquals(writes.length, 2);
  assertEquals(JSON.parse(writes[1]).msg, "three");
  endTurn();
  assertEquals(writes.length, 2, "an empty turn writes nothing");
});

Deno.test("an error line goes out at once, after the lines held before it; a warn line waits for the turn's end", () => {
  const { sink, writes, endTurn } = recordingSink();
  const logger = createLogger({ level: "info", sink });
  logger.info("held");
  logger.warn("denied");
  assertEquals(writes, [], "a warn line was written before the turn ended");
  logger.error("problem");
  assertEquals(writes.join("").trim().split("\n").map((l) => JSON.parse(l).msg), [
    "held",
    "denied",
    "problem",
  ]);
  endTurn();
  assertEquals(writes.length, 1, "the turn's end wrote again with nothing held");
});

Deno.test("a batched sink holds a bounded amount: past maxChars it writes at once", () => {
  const { sink, writes } = recordingSink(100);
  for (let i = 0; i < 10; i++) sink.write(`line ${i} ${"x".repeat(20)}`);
  assertEquals(writes.length >= 2, true, `${writes.length} writes within one turn`);
  assertEquals(writes.every((w) => w.length <= 100 + 30), true);
  sink.flush();
  assertEquals(
    writes.join("").trim().split("\n"),
    Array.from({ length: 10 }, (_, i) => `line ${i} ${"x".repeat(20)}`),
  );
});

Deno.test("flushAtExit() writes what is held when the process ends, however it ends", () => {
  for (const type of ["unload", "error", "unhandledrejection"]) {
    const { sink, writes } = recordingSink();
    const target = new EventTarget();
    flushAtExit(sink, target);
    sink.write("last words");
    target.dispatchEvent(new Event(type));
    assertEquals(writes, ["last words\n"], type);
  }
});
