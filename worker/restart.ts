/**
 * Restarts one Deployment the way `kubectl rollout restart` does: a
 * strategic-merge patch of the pod template's restartedAt annotation, nothing
 * else. The patch carries the resourceVersion the match was made on, so a
 * Deployment changed since then (another image, paused) is re-read and
 * re-planned instead of restarted blindly. Retries 409/429/5xx and network
 * errors with backoff; never retries 403 or 404.
 *
 * The restartedAt an event writes is its own (web's accepted time), not the
 * clock's, so handling an event twice (another replica after a crash between
 * patch and acknowledgement, a replay) writes the same template and starts no
 * second rollout; and a Deployment whose restartedAt is already at or past
 * the event's was restarted by it or by a later event: it is reported as
 * restarted (already) and followed, and not patched. A restartedAt ahead of
 * the worker's clock (a client clock running fast, a date written by hand)
 * proves nothing, so such a Deployment is restarted.
 */

import { backoffDelay, sleep } from "../lib/backoff.ts";
import { describeError } from "../lib/error_text.ts";
import type { ImageEvent } from "../shared/event.ts";
import type { Sender } from "../shared/event_sender.ts";
import type { KubeApi } from "./kube/api.ts";
import { KubeApiError } from "./kube/errors.ts";
import type { Deployment } from "./kube/objects.ts";
import {
  planFresh,
  type PlannedRestart,
  type PlanPolicy,
  refusalOf,
  RESTARTED_AT_ANNOTATION,
  restartedAtOf,
} from "./plan.ts";

/** What happened to one planned restart. */
export type RestartOutcome =
  | { status: "restarted"; attempts: number; deployment: Deployment; already?: boolean }
  | { status: "skipped"; reason: string }
  | { status: "failed"; error: string; httpStatus: number };

/** Options for restartDeployment. */
export interface RestartOptions {
  api: KubeApi;
  event: ImageEvent & { sender?: Sender };
  /** The cluster's say, applied again when the Deployment changed under the patch. */
  policy?: PlanPolicy;
  /** The restartedAt to write (the event's time); default now. */
  restartAt?: Date;
  maxAttempts?: number;
  /** Receives every Deployment the API returns, to keep the inventory fresh. */
  onObject?: (d: Deployment) => void;
}

/**
 * RFC 3339 in UTC with milliseconds. kubectl writes whole seconds, so two
 * restarts within one second write the same value and the second changes
 * nothing; milliseconds make every event's restart a real template change.
 */
export function restartedAt(at: Date): string {
  return at.toISOString();
}

/** How far ahead of the worker's clock a restartedAt may lie and still count as made (clock skew). */
export const AHEAD_TOLERANCE_MS = 5000;

/**
 * True when a template whose restartedAt is `templateMs` already carries the
 * restart at `atMs`: the same one, or a later one that is not in the future.
 */
export function carriesRestart(templateMs: number, atMs: number, nowMs: number): boolean {
  return templateMs === atMs || (templateMs > atMs && templateMs <= nowMs + AHEAD_TOLERANCE_MS);
}

/** The exact patch body: restartedAt plus the resourceVersion precondition. */
export function restartPatch(resourceVersion: string, at: string): unknown {
  return {
    metadata: resourceVersion ? { resourceVersion } : undefined,
    spec: { template: { metadata: { annotations: { [RESTARTED_AT_ANNOTATION]: at } } } },
  };
}

/**
 * The Deployment as it is now, when its template already carries this
 * restart or a later one; undefined when a patch is still needed. A read
 * that keeps failing fails the restart: patching blind could write an older
 * restartedAt over a newer one and start a rollout nobody asked for.
 */
async function alreadyRestarted(
  target: PlannedRestart,
  at: Date,
  options: RestartOptions,
): Promise<RestartOutcome | undefined> {
  const maxAttempts = options.maxAttempts ?? 5;
  let lastError: unknown;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    try {
      const current = await options.api.getDeployment(target.namespace, target.name);
      options.onObject?.(current);
      if (!carriesRestart(restartedAtOf(current), at.getTime(), Date.now())) return undefined;
      return { status: "restarted", attempts: 0, deployment: current, already: true };
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) {
        return { status: "skipped", reason: "deleted" };
      }
      lastError = err;
      if (!retryable(err)) break;
      await sleep(backoffDelay(attempt - 1));
    }
  }
  return failedWith(lastError);
}

/** The outcome of a restart that gave up on `error`: its text and the API's status (0: none). */
function failedWith(error: unknown): RestartOutcome {
  return {
    status: "failed",
    error: describeError(error),
    httpStatus: error instanceof KubeApiError ? error.status : 0,
  };
}

function retryable(err: unknown): boolean {
  if (!(err instanceof KubeApiError)) return false;
  return err.status === 0 || err.status === 429 || err.status >= 500;
}

/** Patches one Deployment, re-planning on conflicts; never throws. */
export async function restartDeployment(
  target: PlannedRestart,
  options: RestartOptions,
): Promise<RestartOutcome> {
  const at = options.restartAt ?? new Date();
  const maxAttempts = options.maxAttempts ?? 5;
  let resourceVersion = target.resourceVersion;
  let lastError: unknown;
  if (carriesRestart(target.restartedAtMs, at.getTime(), Date.now())) {
    const done = await alreadyRestarted(target, at, options);
    if (done) return done;
  }
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    try {
      const updated = await options.api.patchDeployment(
        target.namespace,
        target.name,
        restartPatch(resourceVersion, restartedAt(at)),
      );
      options.onObject?.(updated);
      return { status: "restarted", attempts: attempt, deployment: updated };
    } catch (err) {
      lastError = err;
      if (err instanceof KubeApiError && err.status === 409) {
        // The Deployment changed after we matched it: decide again on what it is now.
        let fresh;
        try {
          fresh = await options.api.getDeployment(target.namespace, target.name);
        } catch (getErr) {
          if (getErr instanceof KubeApiError && getErr.status === 404) {
            return { status: "skipped", reason: "deleted" };
          }
          lastError = getErr;
          if (!retryable(getErr)) break;
          await sleep(backoffDelay(attempt - 1));
          continue;
        }
        options.onObject?.(fresh);
        // Who may restart it first: a restart someone else made is not this event's to claim.
        const replan = planFresh(options.event, fresh, options.policy);
        const refused = refusalOf(replan);
        if (refused) return { status: "skipped", reason: refused };
        if (carriesRestart(restartedAtOf(fresh), at.getTime(), Date.now())) {
          return { status: "restarted", attempts: attempt, deployment: fresh, already: true };
        }
        if (replan.restarts.length === 0) {
          return { status: "skipped", reason: replan.skipped[0]?.reason ?? "no_longer_uses_image" };
        }
        resourceVersion = fresh.metadata.resourceVersion ?? "";
        continue;
      }
      if (err instanceof KubeApiError && err.status === 404) {
        return { status: "skipped", reason: "deleted" };
      }
      if (!retryable(err)) break;
      await sleep(backoffDelay(attempt - 1));
    }
  }
  return failedWith(lastError);
}
