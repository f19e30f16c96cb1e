/**
 * What "every 202 restarts its Deployment, none twice" means for a test that
 * sends a steady stream of events for one image through a fault. A backlog a
 * worker reads at once (after a failover, a restart) restarts each
 * Deployment once for all its events (docs/worker.md), so the Deployment's
 * restarts are counted against the accepted events, not equal to them; what
 * may never happen is a restart lost (the template's restartedAt is older
 * than the last accepted request) or one event restarting twice.
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
