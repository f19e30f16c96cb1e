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

/** One event's writes: what is due, what runs, when the last one started. */
export interface WriteState {
  final: boolean;
  giveUpAt: number;
  /** The report changed since the last write started. */
  dirty: boolean;
  inFlight: boolean;
  lastStart: number;
  failures: number;
  /** Set while a timer (interval or retry backoff) will kick the event. */
  cancelTimer?: () => void;
}

/** What a write's outcome is reported as, and what the event does next. */
export interface WriteStep {
  report: WriteResult | "failed" | "abandoned";
  /** finish: forget the event; kick: write again when due; retry: after backoff. */
  then: "finish" | "kick" | "retry";
}

/**
 * When the event's next write may start: undefined when not now (nothing
 * changed, a write is in flight, or a timer will kick it), else the ms to
 * wait (0: at once) so that at most one write starts per `minIntervalMs`.
 */
export function writeDelay(
  state: Readonly<WriteState>,
  minIntervalMs: number,
  now: number,
): number | undefined {
  if (state.inFlight || state.cancelTimer || !state.dirty) return undefined;
  const wait = state.lastStart + minIntervalMs - now;
  return wait > 0 ? wait : 0;
}

/**
 * What follows a write that returned `result` (undefined: it threw). A final
 * report is done only when nothing changed while it was written; a failure is
 * retried until the event's `giveUpAt`.
 */
export function afterWrite(
  result: WriteResult | undefined,
  state: { wasFinal: boolean; dirty: boolean; giveUpAt: number },
  now: number,
): WriteStep {
  if (result === "no_record") return { report: result, then: "finish" };
  if (result === "written") {
    return { report: result, then: state.wasFinal && !state.dirty ? "finish" : "kick" };
  }
  if (now >= state.giveUpAt) return { report: "abandoned", then: "finish" };
  return { report: "failed", then: "retry" };
}

/** The writer's state, handed to each step below. */
interface Writer {
  options: ReportWriterOptions;
  minInterval: number;
  retryBaseMs: number;
  retryMaxMs: number;
  states: Map<string, WriteState>;
  /** idle() callers, woken when no event is pending. */
  waiters: (() => void)[];
}

/** Creates a writer. */
export function createReportWriter(options: ReportWriterOptions): ReportWriter {
  const w: Writer = {
    options,
    minInterval: options.minIntervalMs ?? 500,
    retryBaseMs: options.retryBaseMs ?? 500,
    retryMaxMs: options.retryMaxMs ?? 30_000,
    states: new Map(),
    waiters: [],
  };
  return {
    update(eventId, final, giveUpAt) {
      let state = w.states.get(eventId);
      if (!state) {
        state = {
          final,
          giveUpAt,
          dirty: true,
          inFlight: false,
          lastStart: -Infinity,
          failures: 0,
        };
        w.states.set(eventId, state);
      }
      state.dirty = true;
      state.final ||= final;
      kick(w, eventId);
    },
    pending: () => w.states.size,
    idle(signal) {
      if (w.states.size === 0 || signal?.aborted) return Promise.resolve();
      return new Promise((resolve) => {
        w.waiters.push(resolve);
        signal?.addEventListener("abort", () => resolve(), { once: true });
      });
    },
    stop() {
      for (const eventId of [...w.states.keys()]) {
        w.states.get(eventId)?.cancelTimer?.();
        w.states.delete(eventId);
      }
      wake(w);
    },
  };
}

/** Starts the event's write if one is due now, or schedules it for when it is. */
function kick(w: Writer, eventId: string): void {
  const state = w.states.get(eventId);
  if (!state) return;
  const wait = writeDelay(state, w.minInterval, w.options.clock.now());
  if (wait === undefined) return;
  if (wait > 0) return later(w, eventId, state, wait);
  void run(w, eventId, state);
}

/** Kicks the event again after `ms`. */
function later(w: Writer, eventId: string, state: WriteState, ms: number): void {
  state.cancelTimer = w.options.clock.schedule(() => {
    state.cancelTimer = undefined;
    kick(w, eventId);
  }, ms);
}

/** One write of the event's report, then what its outcome leads to. */
async function run(w: Writer, eventId: string, state: WriteState): Promise<void> {
  const { clock } = w.options;
  state.dirty = false;
  state.inFlight = true;
  state.lastStart = clock.now();
  const wasFinal = state.final;
  let result: WriteResult | undefined;
  let error: unknown;
  try {
    result = await w.options.write(eventId);
  } catch (err) {
    error = err;
  }
  state.inFlight = false;
  if (w.states.get(eventId) !== state) return; // stopped meanwhile
  const step = afterWrite(
    result,
    { wasFinal, dirty: state.dirty, giveUpAt: state.giveUpAt },
    clock.now(),
  );
  if (step.report === "written" || step.report === "no_record") {
    w.options.onResult?.(eventId, step.report);
  } else w.options.onResult?.(eventId, step.report, error);
  if (step.report === "written") state.failures = 0;
  if (step.then === "finish") return finish(w, eventId);
  if (step.then === "kick") return kick(w, eventId);
  state.dirty = true;
  later(w, eventId, state, backoffDelay(state.failures++, w.retryBaseMs, w.retryMaxMs));
}

/** The event is done (or never will be): forget it, and wake idle() when none is left. */
function finish(w: Writer, eventId: string): void {
  w.states.get(eventId)?.cancelTimer?.();
  w.states.delete(eventId);
  w.options.onDone?.(eventId);
  if (w.states.size === 0) wake(w);
}

function wake(w: Writer): void {
  const ready = w.waiters;
  w.waiters = [];
  for (const resolve of ready) resolve();
}
