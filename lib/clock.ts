/**
 * Time as the product sees it: the current time and timers. Code that waits
 * takes a Clock, so tests decide when time passes (tests/helpers/fake_clock.ts)
 * instead of sleeping.
 */

/** The current time and one-shot timers. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` after `ms`; returns a function that cancels it. */
  schedule(fn: () => void, ms: number): () => void;
}

/** The one real clock: Date.now and setTimeout. */
export const REAL_CLOCK: Clock = Object.freeze({
  now: () => Date.now(),
  schedule(fn: () => void, ms: number) {
    const id = setTimeout(fn, ms);
    return () => clearTimeout(id);
  },
});
