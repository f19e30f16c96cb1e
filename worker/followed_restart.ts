/**
 * Whether an event may follow a restart another event made within
 * RESTART_DEDUP_WINDOW instead of restarting again (worker/restart_each.ts).
 * Pure. The window's record comes from Valkey (sealed with the cluster's key,
 * worker/sealed_state.ts); what decides is the Deployment as the API answers
 * it now, so no record can make this cluster report a rollout that did not
 * happen or that does not carry this event's push:
 * - the template still carries that restart (its restartedAt), at the
 *   generation the patch produced or later;
 * - its first patch attempt started after this event was accepted (web's
 *   time against the worker's: NTP assumed), so the pods it rolls out
 *   pulled after this push;
 * - the Deployment still uses the image with one of the event's tags and is
 *   neither paused nor opted out.
 * Anything else: this event restarts it itself.
 */

import type { EventMessage } from "../shared/event.ts";
import type { MadeRestart } from "./coordination.ts";
import type { Deployment } from "./kube/objects.ts";
import { OPEN_POLICY, planFresh, type PlanPolicy, refusalOf, restartedAtOf } from "./plan.ts";

/** Why a recorded restart cannot be followed; undefined when it can. */
export function cannotFollow(
  made: MadeRestart,
  current: Deployment,
  event: EventMessage,
  policy: PlanPolicy = OPEN_POLICY,
): string | undefined {
  const generation = current.metadata.generation;
  if (typeof generation !== "number" || generation < made.generation) {
    return "the Deployment is not at the generation that restart produced";
  }
  if (restartedAtOf(current) !== made.restartedAt) {
    return "the Deployment's template does not carry that restart";
  }
  // Written so that a time that does not parse refuses (NaN compares false).
  if (!(made.patchedAt >= Date.parse(event.time))) {
    return "that restart was made before this event was accepted";
  }
  const replan = planFresh(event, current, policy);
  if (replan.restarts.length !== 1) {
    const refused = refusalOf(replan);
    return refused
      ? `the Deployment no longer lets this event's sender restart it (${refused})`
      : "the Deployment no longer runs the image with this event's tags";
  }
  return undefined;
}
