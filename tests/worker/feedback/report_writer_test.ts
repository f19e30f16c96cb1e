/**
 * The report writer with a fake clock and an in-memory write function:
 * coalescing (one write in flight, at most one started per interval, latest
 * wins), retries with backoff until the write lands or the event's life ends,
 * and a final write after every other.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { fakeClock, settle } from "../../helpers/fake_clock.ts";
import {
  afterWrite,
  createReportWriter,
  writeDelay,
  type WriteResult,
  type WriteState,
} from "../../../worker/feedback/report_writer.ts";

function setup(fail = () => false) {
  const clock = fakeClock(0);
  let version = 0;
  const written: { at: number; version: number }[] = [];
  const results: string[] = [];
  const done: string[] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const writer = createReportWriter({
    clock,
    minIntervalMs: 500,
    retryBaseMs: 1000,
    retryMaxMs: 4000,
    async write(): Promise<WriteResult> {
      const seen = version;
      if (hold) await new Promise<void>((r) => release = r);
      if (fail()) throw new Error("connection is closed");
      written.push({ at: clock.now(), version: seen });
      return "written";
    },
    onResult: (_id, r) => results.push(r),
    onDone: (id) => done.push(id),
  });
  return {
    clock,
    writer,
    written,
    results,
    done,
    change(final = false) {
      version++;
      writer.update("e", final, 60_000);
    },
    hold(on: boolean) {
      hold = on;
    },
    release: () => release?.(),
  };
}

Deno.test("the report writer coalesces a burst of changes into few writes, the latest report winning", async () => {
  const t = setup();
  t.change();
  await settle();
  for (let i = 0; i < 20; i++) t.change();
  await settle();
  assertEquals(t.written.map((w) => w.version), [1], "the burst waits for the interval");
  await t.clock.advance(500);
  assertEquals(t.written.map((w) => [w.at, w.version]), [[0, 1], [500, 21]]);
  t.change(true);
  await t.clock.advance(500);
  assertEquals(t.written.map((w) => w.version), [1, 21, 22]);
  assertEquals(t.done, ["e"]);
  assertEquals(t.writer.pending(), 0);
});

Deno.test("the report writer keeps one write in flight; a change meanwhile is written after it", async () => {
  const t = setup();
  t.hold(true);
  t.change();
  await settle();
  t.change(true);
  await t.clock.advance(2000);
  assertEquals(t.written.length, 0, "the first write has not returned");
  t.hold(false);
  t.release();
  await settle();
  await t.clock.advance(500);
  assertEquals(t.written.map((w) => w.version), [1, 2]);
  assertEquals(t.done, ["e"]);
});

Deno.test("the report writer retries a failed write with backoff until it lands, then writes the final report", async () => {
  let down = true;
  const t = setup(() => down);
  t.change();
  await settle();
  t.change(true);
  await t.clock.advance(10_000);
  const failures = t.results.filter((r) => r === "failed").length;
  assertEquals(failures >= 3 && failures <= 12, true, `${failures} retries in 10 s, backed off`);
  assertEquals(t.written, []);
  down = false;
  await t.clock.advance(5000);
  assertEquals(t.written.map((w) => w.version), [2], "the latest report, once");
  assertEquals(t.done, ["e"]);
});

Deno.test("the report writer gives up when the event's life ends", async () => {
  const t = setup(() => true);
  t.change(true);
  await t.clock.advance(70_000);
  assertEquals(t.results.at(-1), "abandoned");
  assertEquals(t.done, ["e"]);
  assertEquals(t.clock.pending(), 0, "no timer left behind");
});

Deno.test("writeDelay() starts a changed event's write once its interval since the last start has passed", async (t) => {
  const idle: WriteState = {
    final: false,
    giveUpAt: 60_000,
    dirty: true,
    inFlight: false,
    lastStart: -Infinity,
    failures: 0,
  };
  const cases: [string, Partial<WriteState>, number, number | undefined][] = [
    ["the first write, at once", {}, 0, 0],
    ["the interval has passed", { lastStart: 1000 }, 1500, 0],
    ["the interval is not over: wait the rest", { lastStart: 1000 }, 1200, 300],
    ["nothing changed", { dirty: false }, 0, undefined],
    ["a write is in flight", { inFlight: true, lastStart: 0 }, 5000, undefined],
    ["a timer will kick it", { cancelTimer: () => {} }, 0, undefined],
  ];
  for (const [name, state, now, expected] of cases) {
    await t.step(name, () => assertEquals(writeDelay({ ...idle, ...state }, 500, now), expected));
  }
});

Deno.test("afterWrite() finishes, writes again or retries by the write's result", async (t) => {
  const cases: [
    string,
    WriteResult | undefined,
    { wasFinal: boolean; dirty: boolean; now: number },
    ReturnType<typeof afterWrite>,
  ][] = [
    ["no record: stop", "no_record", { wasFinal: false, dirty: true, now: 0 }, {
      report: "no_record",
      then: "finish",
    }],
    ["the final report landed", "written", { wasFinal: true, dirty: false, now: 0 }, {
      report: "written",
      then: "finish",
    }],
    ["a final report changed while written", "written", { wasFinal: true, dirty: true, now: 0 }, {
      report: "written",
      then: "kick",
    }],
    ["a report that is not final yet", "written", { wasFinal: false, dirty: false, now: 0 }, {
      report: "written",
      then: "kick",
    }],
    ["failed before giveUpAt", undefined, { wasFinal: true, dirty: false, now: 59_999 }, {
      report: "failed",
      then: "retry",
    }],
    ["failed at giveUpAt", undefined, { wasFinal: false, dirty: true, now: 60_000 }, {
      report: "abandoned",
      then: "finish",
    }],
  ];
  for (const [name, result, { now, ...state }, expected] of cases) {
    await t.step(name, () => {
      assertEquals(afterWrite(result, { ...state, giveUpAt: 60_000 }, now), expected);
    });
  }
});
