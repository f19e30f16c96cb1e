/**
 * The tracker's slim copy of every Deployment in scope: only what
 * rolloutProgress() and the bake read, one flat record per Deployment (100,000 in a large
 * cluster), kept newest first so a late API answer cannot make a finished
 * rollout look unfinished. Pure: the tracker owns the map and the timing.
 */

import type { Deployment } from "../kube/objects.ts";
import { BAKE_TIME_ANNOTATION, type DeploymentProgress } from "./rollout_progress.ts";

/** Longest bake-time annotation kept: a longer one is not a duration anyway. */
const MAX_BAKE_TIME_CHARS = 64;

/** Snapshots by namespace, then name. */
export type Snapshots = Map<string, Map<string, Snapshot>>;

/**
 * Only what rolloutProgress() and the bake read, flat: the tracker keeps one per Deployment
 * in scope (100,000 in a large cluster), so no nested objects or arrays.
 * Values are kept as the API sent them; rolloutProgress() checks them.
 */
export interface Snapshot {
  uid?: string;
  generation: unknown;
  replicas: unknown;
  hasStatus: boolean;
  observedGeneration: unknown;
  statusReplicas: unknown;
  updated: unknown;
  ready: unknown;
  available: unknown;
  /** The Progressing condition's reason and status, the only condition read. */
  progressing?: unknown;
  progressingStatus?: unknown;
  /** The bake-time annotation as set (bounded), when it is. */
  bakeTime?: unknown;
}

/** The slim copy of `d` the tracker keeps. */
export function snapshotOf(d: Deployment): Snapshot {
  const s = d.status;
  const progressing = Array.isArray(s?.conditions)
    ? s.conditions.find((c) => c?.type === "Progressing")
    : undefined;
  return {
    uid: d.metadata.uid,
    generation: d.metadata.generation,
    replicas: d.spec?.replicas,
    hasStatus: s !== undefined && s !== null,
    observedGeneration: s?.observedGeneration,
    statusReplicas: s?.replicas,
    updated: s?.updatedReplicas,
    ready: s?.readyReplicas,
    available: s?.availableReplicas,
    progressing: progressing?.reason,
    progressingStatus: progressing?.status,
    bakeTime: bounded(d.metadata.annotations?.[BAKE_TIME_ANNOTATION]),
  };
}

// Security: an annotation may be 256 KiB; a long one is kept cut (it then fails to parse, as it would whole).
function bounded(value: unknown): unknown {
  if (typeof value !== "string" || value.length <= MAX_BAKE_TIME_CHARS) return value;
  return `${value.slice(0, MAX_BAKE_TIME_CHARS)}…`;
}

/** The snapshot in the shape rolloutProgress() reads. */
export function progressOf(s: Snapshot): DeploymentProgress {
  return {
    metadata: { generation: s.generation },
    spec: { replicas: s.replicas },
    status: s.hasStatus
      ? {
        observedGeneration: s.observedGeneration,
        replicas: s.statusReplicas,
        updatedReplicas: s.updated,
        readyReplicas: s.ready,
        availableReplicas: s.available,
        conditions: s.progressing === undefined && s.progressingStatus === undefined
          ? undefined
          : [{ type: "Progressing", status: s.progressingStatus, reason: s.progressing }],
      }
      : undefined,
  };
}

/** The snapshot kept under `namespace/name`. */
export function latestAt(latest: Snapshots, k: string): Snapshot | undefined {
  const slash = k.indexOf("/");
  return latest.get(k.slice(0, slash))?.get(k.slice(slash + 1));
}

/**
 * Keeps the latest snapshot of `d` (or forgets a deleted one); false when `d`
 * is older than what is kept and changes nothing.
 */
export function updateLatest(
  latest: Snapshots,
  type: "ADDED" | "MODIFIED" | "DELETED",
  d: Deployment,
): boolean {
  const { namespace, name } = d.metadata;
  let names = latest.get(namespace);
  if (type === "DELETED") {
    names?.delete(name);
    if (names?.size === 0) latest.delete(namespace);
    return true;
  }
  const next = snapshotOf(d);
  const known = names?.get(name);
  // An API answer (the patch's) can be handled after newer watch events: a status the
  // controller has moved past is older, and must not make a finished rollout look unfinished.
  const observed = (s?: Snapshot) => Number(s?.observedGeneration ?? 0) || 0;
  if (known && known.uid === next.uid && observed(known) > observed(next)) return false;
  if (!names) latest.set(namespace, names = new Map());
  names.set(name, next);
  return true;
}
