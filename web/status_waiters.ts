/**
 * Requests waiting for an event's status record to change. Workers announce
 * each change by publishing the event id on the status channel; web holds one
 * subscription for all waiters and wakes them here. Waiters are bounded in
 * all (STATUS_MAX_WAITERS) and per repository (a fair share of that bound, so
 * one repository's token cannot take every slot), and each is released at its
 * deadline, at shutdown, or as soon as its client goes away: a flood of
 * waiting requests costs a timer each, never a poll.
 */

/** Why a wait ended. */
export type WaitEnd = "changed" | "deadline" | "aborted";

/** One registered waiter: `ended` settles on a change, the deadline or abort; `cancel` frees it. */
export interface Waiter {
  ended: Promise<WaitEnd>;
  cancel(): void;
}

/** Why a waiter was not admitted: every slot is held, or the repository holds its share. */
export type WaitRefusal = "full" | "repository_share";

/** What one waiting read asks for. */
export interface WatchRequest {
  /** The event whose record it waits on. */
  id: string;
  /** Whose read it is (the repository binding): each holds at most its share of the slots. */
  repository: string;
  /** When the wait ends at the latest (ms since the epoch). */
  untilMs: number;
  /** Any of them aborting ends the wait at once (shutdown, the client going away). */
  signals?: readonly (AbortSignal | undefined)[];
}

/** Requests waiting for a record to change. */
export interface StatusWaiters {
  /**
   * Registers a waiter for changes of `request.id`, or says why it may not
   * wait. Register before reading the record, so a change announced between
   * the read and the wait is not missed.
   */
  watch(request: WatchRequest): Waiter | { refused: WaitRefusal };
  /** A worker announced a change to this record. */
  notify(id: string): void;
  /** Wakes every waiter (after a gap in the subscription, notifications may be lost). */
  notifyAll(): void;
  /** Waiters held now, in all. */
  size(): number;
}

/** Options for createStatusWaiters. */
export interface StatusWaitersOptions {
  /** STATUS_MAX_WAITERS: waiters held at once in all. */
  max: number;
  now?: () => number;
}

/**
 * The most waiters one repository may hold: a quarter of the bound rounded
 * up, at least one (250 of the default 1000). Security: whatever one
 * repository's token sends, the other slots stay for other repositories (all
 * but one with a bound of 1 to 4: there each repository holds one).
 */
export function repositoryShare(max: number): number {
  return Math.max(1, Math.ceil(max / 4));
}

/** What admitWaiter decides from. */
export interface AdmissionInput {
  max: number;
  /** Waiters held now, in all. */
  held: number;
  /** Waiters the asking repository holds now. */
  heldByRepository: number;
}

/**
 * Whether one more waiter may be held: refused when every slot is held, else
 * when the repository already holds its share. Pure, so the rule is a table.
 */
export function admitWaiter(input: AdmissionInput): "admitted" | WaitRefusal {
  if (input.held >= input.max) return "full";
  if (input.heldByRepository >= repositoryShare(input.max)) return "repository_share";
  return "admitted";
}

/** Creates the waiter registry. */
export function createStatusWaiters(options: StatusWaitersOptions): StatusWaiters {
  const now = options.now ?? Date.now;
  const byId = new Map<string, Set<(end: WaitEnd) => void>>();
  const byRepository = new Map<string, number>();
  let count = 0;
  const wakeAll = (wakers: Iterable<(end: WaitEnd) => void> | undefined) => {
    for (const wake of [...(wakers ?? [])]) wake("changed");
  };
  const release = (repository: string) => {
    count--;
    const held = (byRepository.get(repository) ?? 1) - 1;
    if (held > 0) byRepository.set(repository, held);
    else byRepository.delete(repository);
  };
  return {
    watch({ id, repository, untilMs, signals = [] }) {
      const decision = admitWaiter({
        max: options.max,
        held: count,
        heldByRepository: byRepository.get(repository) ?? 0,
      });
      if (decision !== "admitted") return { refused: decision };
      count++;
      byRepository.set(repository, (byRepository.get(repository) ?? 0) + 1);
      const live = signals.filter((s): s is AbortSignal => s !== undefined);
      let done!: (end: WaitEnd) => void;
      const ended = new Promise<WaitEnd>((resolve) => {
        let set = byId.get(id);
        if (!set) byId.set(id, set = new Set());
        done = (end: WaitEnd) => {
          clearTimeout(timer);
          for (const signal of live) signal.removeEventListener("abort", onAbort);
          const current = byId.get(id);
          if (current?.delete(done)) {
            release(repository);
            if (current.size === 0) byId.delete(id);
          }
          resolve(end);
        };
        const onAbort = () => done("aborted");
        const timer = setTimeout(() => done("deadline"), Math.max(0, untilMs - now()));
        set.add(done);
        if (live.some((s) => s.aborted)) onAbort();
        else for (const signal of live) signal.addEventListener("abort", onAbort, { once: true });
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
