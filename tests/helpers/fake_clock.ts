// A clock that moves only when the test says so, for code that takes a Clock
// (lib/clock.ts). Test-only code.

import type { Clock } from "../../lib/clock.ts";

/** A Clock plus advance(), which runs every timer that came due and lets promises settle. */
export interface FakeClock extends Clock {
  advance(ms: number): Promise<void>;
  /** Timers not yet run. */
  pending(): number;
}

/** Lets in-memory promise chains run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 0));
}

/** Creates a clock at `start` ms. */
export function fakeClock(start = 0): FakeClock {
  let now = start;
  const timers = new Set<{ at: number; fn: () => void }>();
  return {
    now: () => now,
    schedule(fn, ms) {
      const timer = { at: now + ms, fn };
      timers.add(timer);
      return () => timers.delete(timer);
    },
    async advance(ms) {
      const end = now + ms;
      // Timers set by timers run too, in time order, as long as they fall within the step.
      while (true) {
        const due = [...timers].filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        timers.delete(due);
        now = Math.max(now, due.at);
        due.fn();
        await settle();
      }
      now = end;
      await settle();
    },
    pending: () => timers.size,
  };
}
