/**
 * Requests waiting for an event's status record to change. Workers announce
 * each change by publishing the event id on the status channel; web holds one
 * subscription for all waiters and wakes them here. Waiters are bounded and
 * each is released at its deadline: a flood of waiting requests costs a timer
 * each, never a poll.
 */

/** Why a wait ended. */
export type WaitEnd = "changed" | "deadline" | "aborted";

/** One registered waiter: `ended` settles on a change, the deadline or abort; `cancel` frees it. */
export interface Waiter {
  ended: Promise<WaitEnd>;
  cancel(): void;
}

/** Requests waiting for a record to change. */
export interface StatusWaiters {
  /**
   * Registers a waiter for changes of `id` until `untilMs`, or undefined when
   * the bound is reached. Register before reading the record, so a change
   * announced between the read and the wait is not missed.
   */
  watch(id: string, untilMs: number, signal?: AbortSignal): Waiter | undefined;
  /** A worker announced a change to this record. */
  notify(id: string): void;
  /** Wakes every waiter (after a gap in the subscription, notifications may be lost). */
  notifyAll(): void;
  size(): number;
}

/** Options for createStatusWaiters. */
export interface StatusWaitersOptions {
  max: number;
  now?: () => number;
}

/** Creates the waiter registry. */
export function createStatusWaiters(options: StatusWaitersOptions): StatusWaiters {
  const now = options.now ?? Date.now;
  const byId = new Map<string, Set<(end: WaitEnd) => void>>();
  let count = 0;
  const wakeAll = (wakers: Iterable<(end: WaitEnd) => void> | undefined) => {
    for (const wake of [...(wakers ?? [])]) wake("changed");
  };
  return {
    watch(id, untilMs, signal) {
      if (count >= options.max) return undefined;
      count++;
      let done!: (end: WaitEnd) => void;
      const ended = new Promise<WaitEnd>((resolve) => {
        let set = byId.get(id);
        if (!set) byId.set(id, set = new Set());
        done = (end: WaitEnd) => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          const current = byId.get(id);
          if (current?.delete(done)) {
            count--;
            if (current.size === 0) byId.delete(id);
          }
          resolve(end);
        };
        const onAbort = () => done("aborted");
        const timer = setTimeout(() => done("deadline"), Math.max(0, untilMs - now()));
        set.add(done);
        if (signal?.aborted) onAbort();
        else signal?.addEventListener("abort", onAbort, { once: true });
      });
      return { ended, cancel: () => done("aborted") };
    },
    notify: (id) => wakeAll(byId.get(id)),
    notifyAll: () => {
      for (const set of [...byId.values()]) wakeAll(set);
    },
    size: () => count,
  };
}
