/**
 * What "every 202 restarts its Deployment, none twice" means for a test that
 * sends a steady stream of events for one image through a fault. A backlog a
 * worker reads at once (after a failover, a restart) restarts each
 * Deployment once for all its events (docs/worker.md), so the Deployment's
 * restarts are counted against the accepted events, not equal to them; what
 * may never happen is a restart lost (the template's restartedAt is older
 * than the last accepted request) or more rollouts than events. An event
 * handled twice (its acknowledgement lost in a failover) writes the same
 * restartedAt again, which starts no rollout.
 */

import { assert } from "./assert.ts";

/** Throws unless the Deployment restarted at least once, at most once per accepted event, and late enough. */
export function assertRestartedForEvery(
  accepted: readonly { sentAt: number }[],
  restarts: number,
  restartedAt: string | undefined,
): void {
  assert(accepted.length > 0, "no event was accepted");
  assert(
    restarts >= 1 && restarts <= accepted.length,
    `${restarts} restarts for ${accepted.length} accepted events`,
  );
  const last = Math.max(...accepted.map((r) => r.sentAt));
  // web's time for an event is taken after its request was sent (same clock on loopback).
  assert(
    restartedAt !== undefined && Date.parse(restartedAt) >= last,
    `the last restart (${restartedAt}) is older than the last accepted request (${
      new Date(last).toISOString()
    })`,
  );
}

/**
 * Every accepted event has a summary that restarted the Deployment, and none
 * failed. An event whose acknowledgement a failover lost is handled again:
 * its second summary says restarted too, but it writes the same restartedAt
 * and starts no rollout, so rollouts are counted by assertRestartedForEvery.
 */
export function assertEachRestarted(
  summaries: readonly Record<string, unknown>[],
  accepted: readonly { id?: string }[],
): void {
  const byId = new Map<string, number>();
  for (const s of summaries) {
    assert((s.failed as unknown[]).length === 0, `event ${s.event_id} failed`);
    const id = String(s.event_id);
    byId.set(id, (byId.get(id) ?? 0) + (s.restarted as string[]).length);
  }
  for (const r of accepted) assert((byId.get(r.id!) ?? 0) >= 1, `event ${r.id} restarted`);
}
