import { assertEquals } from "../helpers/assert.ts";
import { createLogger } from "../../shared/log.ts";

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
