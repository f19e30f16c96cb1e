/**
 * What a batch of events read together from the stream (a cluster catching
 * up on a backlog) restarts. Events are handled in the order web accepted
 * them, but an event followed in the same batch by a later one for the same
 * image writes that later event's restartedAt: its Deployments restart once,
 * at the newest push, and the later event finds them already restarted and
 * follows the same rollout. So a backlog of N pushes of one image restarts
 * each Deployment once and every event still gets its report. Pure.
 */

import type { EventMessage } from "../shared/event.ts";

/**
 * For each event in order, the time its restarts write: the latest of its
 * image at or after it. An event dated after `notAfter` (ahead of the
 * worker's clock: it will be dropped) lends its time to none.
 */
export function restartTimes(
  events: readonly Pick<EventMessage, "image" | "time">[],
  notAfter = Infinity,
): Date[] {
  const latest = new Map<string, number>();
  const times: Date[] = new Array(events.length);
  for (let i = events.length - 1; i >= 0; i--) {
    const own = Date.parse(events[i].time);
    const later = latest.get(events[i].image);
    const at = later === undefined || own > later ? own : later;
    if (own <= notAfter) latest.set(events[i].image, at);
    times[i] = new Date(own > notAfter ? own : at);
  }
  return times;
}
