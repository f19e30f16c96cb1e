/**
 * Coalesces an event's report writes: at most one write in flight per event,
 * at most one started per `minIntervalMs`, and the latest report wins (the
 * write function reads the report when it runs, so changes made meanwhile
 * are in it). A failed write is retried with capped backoff until it lands or
 * the event's `giveUpAt` passes. A final update is written after every earlier
 * one, and then the event is forgotten. Time comes from an injected clock.
 */

import { backoffDelay } from "../../lib/backoff.ts";
import type { Clock } from "../../lib/clock.ts";

/** What one write achieved: stored, or there is no record to store it in (stop). */
export type WriteResult = "written" | "no_record";

/** Options for createReportWriter. */
export interface ReportWriterOptions {
  clock: Clock;
  /** Writes the event's report as it stands now; throws when Valkey failed. */
  write(eventId: string): Promise<WriteResult>;
  /** Least time between the starts of two writes of one event; default 500 ms. */
  minIntervalMs?: number;
  /** Bounds of the retry backoff; default 500 ms doubling to 30 s. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Each attempt's outcome: written, no_record, failed (will retry) or abandoned. */
  onResult?(eventId: string, result: WriteResult | "failed" | "abandoned", error?: unknown): void;
  /** The event's final report landed (or never will): it is forgotten. */
  onDone?(eventId: string): void;
}

/** The writer. */
export interface ReportWriter {
  /** The event's report changed; `final` when it will not change again. */
  update(eventId: string, final: boolean, giveUpAt: number): void;
  /** Events with a write pending, running or being retried. */
  pending(): number;
  /** Resolves once nothing is pending (or `signal` aborts). */
  idle(signal?: AbortSignal): Promise<void>;
  /** Drops every pending write (shutdown). */
  stop(): void;
}

interface State {
  final: boolean;
  giveUpAt: number;
  dirty: boolean;
  inFlight: boolean;
  lastStart: number;
  failures: number;
  cancelTimer?: () => void;
}

/** Creates a writer. */
export function createReportWriter(options: ReportWriterOptions): ReportWriter {
  const { clock } = options;
  const minInterval = options.minIntervalMs ?? 500;
  const states = new Map<string, State>();
  let waiters: (() => void)[] = [];

  const finish = (eventId: string) => {
    const state = states.get(eventId);
    state?.cancelTimer?.();
    states.delete(eventId);
    options.onDone?.(eventId);
    if (states.size === 0) {
      const ready = waiters;
      waiters = [];
      for (const resolve of ready) resolve();
    }
  };

  const later = (eventId: string, state: State, ms: number) => {
    state.cancelTimer = clock.schedule(() => {
      state.cancelTimer = undefined;
      kick(eventId);
    }, ms);
  };

  const kick = (eventId: string) => {
    const state = states.get(eventId);
    if (!state || state.inFlight || state.cancelTimer || !state.dirty) return;
    const wait = state.lastStart + minInterval - clock.now();
    if (wait > 0) return later(eventId, state, wait);
    void run(eventId, state);
  };

  const run = async (eventId: string, state: State) => {
    state.dirty = false;
    state.inFlight = true;
    state.lastStart = clock.now();
    const wasFinal = state.final;
    let result: WriteResult | undefined;
    let error: unknown;
    try {
      result = await options.write(eventId);
    } catch (err) {
      error = err;
    }
    state.inFlight = false;
    if (states.get(eventId) !== state) return; // stopped meanwhile
    if (result === "no_record") {
      options.onResult?.(eventId, result);
      return finish(eventId);
    }
    if (result === "written") {
      options.onResult?.(eventId, result);
      state.failures = 0;
      if (wasFinal && !state.dirty) return finish(eventId);
      return kick(eventId);
    }
    if (clock.now() >= state.giveUpAt) {
      options.onResult?.(eventId, "abandoned", error);
      return finish(eventId);
    }
    options.onResult?.(eventId, "failed", error);
    state.dirty = true;
    const retryBase = options.retryBaseMs ?? 500;
    later(eventId, state, backoffDelay(state.failures++, retryBase, options.retryMaxMs ?? 30_000));
  };

  return {
    update(eventId, final, giveUpAt) {
      let state = states.get(eventId);
      if (!state) {
        state = {
          final,
          giveUpAt,
          dirty: true,
          inFlight: false,
          lastStart: -Infinity,
          failures: 0,
        };
        states.set(eventId, state);
      }
      state.dirty = true;
      state.final ||= final;
      kick(eventId);
    },
    pending: () => states.size,
    idle(signal) {
      if (states.size === 0 || signal?.aborted) return Promise.resolve();
      return new Promise((resolve) => {
        waiters.push(resolve);
        signal?.addEventListener("abort", () => resolve(), { once: true });
      });
    },
    stop() {
      for (const eventId of [...states.keys()]) {
        states.get(eventId)?.cancelTimer?.();
        states.delete(eventId);
      }
      const ready = waiters;
      waiters = [];
      for (const resolve of ready) resolve();
    },
  };
}
