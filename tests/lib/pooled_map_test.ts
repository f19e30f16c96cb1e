import { pooledMap } from "../../lib/pooled_map.ts";
import { assertEquals, assertRejects } from "../helpers/assert.ts";

Deno.test("pooledMap() returns results in input order whatever order calls finish in", async () => {
  const delays = [30, 5, 20, 0, 10];
  const out = await pooledMap(delays, 2, async (ms, i) => {
    await new Promise((r) => setTimeout(r, ms));
    return `${i}:${ms}`;
  });
  assertEquals(out, ["0:30", "1:5", "2:20", "3:0", "4:10"]);
});

Deno.test("pooledMap() never has more than `limit` calls in flight, and uses all of them", async () => {
  let inFlight = 0;
  let most = 0;
  await pooledMap(Array.from({ length: 20 }, (_, i) => i), 3, async () => {
    most = Math.max(most, ++inFlight);
    await new Promise((r) => setTimeout(r, 1));
    inFlight--;
  });
  assertEquals(most, 3);
});

Deno.test("pooledMap() of no items resolves to an empty list", async () => {
  assertEquals(await pooledMap([], 4, () => Promise.resolve(1)), []);
});

Deno.test("pooledMap() rejects when a call rejects, after the calls in flight settle", async () => {
  const finished: number[] = [];
  await assertRejects(
    () =>
      pooledMap([0, 1, 2], 3, async (i) => {
        await new Promise((r) => setTimeout(r, i * 5));
        if (i === 0) throw new Error("boom");
        finished.push(i);
      }),
    { message: /boom/ },
  );
  assertEquals(finished, [1, 2]);
});

Deno.test("pooledMap() refuses a limit below 1", async () => {
  await assertRejects(() => pooledMap([1], 0, () => Promise.resolve(1)), {
    instanceOf: RangeError,
    message: /limit/,
  });
});
