/**
 * Follows the rollouts an event's restarts started, from the Deployments the
 * inventory's list and watch already deliver (no API call of its own): each
 * restarted Deployment is `progressing` until rolloutProgress() says complete
 * or failed, it is deleted (failed), or the event's deadline passes
 * (timed_out). Keeps a slim copy of every Deployment's status, so tracking can
 * start from what the cluster already shows: right after a patch, or when a
 * restarted worker resumes an event. Time comes from an injected clock.
 */

import type { DeploymentReport, RolloutReport } from "../../shared/event_status.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Deployment } from "../kube/objects.ts";
import { rolloutProgress } from "./rollout_progress.ts";
import {
  latestAt,
  progressOf,
  type Snapshot,
  type Snapshots,
  updateLatest,
} from "./rollout_snapshots.ts";

/** A restarted Deployment whose rollout is followed. */
export interface TrackTarget {
  namespace: string;
  name: string;
  /** metadata.generation of the patch's answer: the rollout to wait for. */
  generation: number;
  uid?: string;
}

/** Everything needed to follow (or resume following) one event. */
export interface TrackedEvent {
  eventId: string;
  matched: number;
  /** Every Deployment of the report; restarted ones get their `rollout` here. */
  deployments: DeploymentReport[];
  /** clock.now() after which unfinished rollouts are timed_out. */
  deadline: number;
  targets: TrackTarget[];
  /** A problem beyond the Deployments: the cluster fails the event once its rollouts settle. */
  reason?: string;
  /** The event expired before the cluster took it up: nothing was restarted. */
  expired?: boolean;
}

/** Options for createRolloutTracker. */
export interface RolloutTrackerOptions {
  clock: Clock;
  /** ROLLOUT_TIMEOUT as the timed_out reason says it, e.g. "10m". */
  timeoutText: string;
  /** An event's report changed; `final` once none of its rollouts is progressing. */
  onChange(eventId: string, final: boolean): void;
  /** One rollout reached a final state. */
  onFinal?(eventId: string, deployment: DeploymentReport): void;
}

/** The tracker. */
export interface RolloutTracker {
  /** Hands over a Deployment from list, watch or an API answer (DELETED when it is gone). */
  observe(type: "ADDED" | "MODIFIED" | "DELETED", d: Deployment): void;
  /** Starts following an event's targets from what is known of them now. */
  track(event: TrackedEvent): void;
  /** The event as it stands (a copy), or undefined when it is not followed. */
  get(eventId: string): TrackedEvent | undefined;
  /** The event itself, not a copy (read only: the tracker changes it as rollouts move). */
  view(eventId: string): Readonly<TrackedEvent> | undefined;
  /** Stops following an event. */
  forget(eventId: string): void;
  /** Events still followed. */
  size(): number;
}

const key = (namespace: string, name: string) => `${namespace}/${name}`;

const FINAL = new Set<string>(["complete", "failed", "timed_out"]);

interface Held {
  event: TrackedEvent;
  /** Deployment key → its target and report entry (the entry is inside event.deployments). */
  byKey: Map<string, { target: TrackTarget; entry: DeploymentReport }>;
  /** Targets whose rollout is not final yet. */
  open: number;
  cancel: () => void;
}

/** The tracker's state, handed to each step below. */
interface Tracker {
  options: RolloutTrackerOptions;
  /** namespace → name → snapshot: the names are the Deployment's own strings, no key per entry. */
  latest: Snapshots;
  events: Map<string, Held>;
  /** Deployment key → ids of events following it. */
  followers: Map<string, Set<string>>;
}

/**
 * Creates a tracker. Cost per watch event is constant per event following
 * that Deployment (indexes, a counter of open rollouts), so an event that
 * restarted 10,000 Deployments is followed without quadratic work.
 */
export function createRolloutTracker(options: RolloutTrackerOptions): RolloutTracker {
  const t: Tracker = { options, latest: new Map(), events: new Map(), followers: new Map() };
  return {
    observe: (type, d) => observe(t, type, d),
    track: (event) => track(t, event),
    view: (eventId) => t.events.get(eventId)?.event,
    get(eventId) {
      const held = t.events.get(eventId);
      return held && structuredClone(held.event);
    },
    forget: (eventId) => forget(t, eventId),
    size: () => t.events.size,
  };
}

/** Keeps the Deployment's latest status and re-reads the events following it. */
function observe(t: Tracker, type: "ADDED" | "MODIFIED" | "DELETED", d: Deployment): void {
  if (!d?.metadata?.name || !d.metadata.namespace) return;
  const { namespace, name } = d.metadata;
  if (!updateLatest(t.latest, type, d)) return;
  if (t.followers.size === 0) return;
  const k = key(namespace, name);
  const ids = t.followers.get(k);
  if (!ids) return;
  for (const eventId of [...ids]) {
    const held = t.events.get(eventId);
    if (held) settle(t, eventId, evaluate(t, held, k));
  }
}

/** Follows an event (again, from scratch) and reads its targets from what is known now. */
function track(t: Tracker, input: TrackedEvent): void {
  const { clock } = t.options;
  forget(t, input.eventId);
  const { event, byKey, open } = followedEvent(input);
  const cancel = clock.schedule(
    () => timeOut(t, event.eventId),
    Math.max(0, event.deadline - clock.now()),
  );
  const held: Held = { event, byKey, open, cancel };
  t.events.set(event.eventId, held);
  for (const k of byKey.keys()) {
    let set = t.followers.get(k);
    if (!set) t.followers.set(k, set = new Set());
    set.add(event.eventId);
  }
  let changed = false;
  for (const k of byKey.keys()) changed = evaluate(t, held, k) || changed;
  settle(t, event.eventId, changed);
}

/** Re-reads one target of one event; true when its rollout changed. */
function evaluate(t: Tracker, held: Held, k: string): boolean {
  const item = held.byKey.get(k);
  if (!item) return false;
  const next = changedRollout(item.entry.rollout, latestAt(t.latest, k), item.target);
  if (!next) return false;
  item.entry.rollout = next;
  if (FINAL.has(next.state)) {
    held.open--;
    t.options.onFinal?.(held.event.eventId, item.entry);
  }
  return true;
}

/** The event's deadline passed: every rollout still progressing is timed_out. */
function timeOut(t: Tracker, eventId: string): void {
  const held = t.events.get(eventId);
  if (!held) return;
  let changed = false;
  for (const { entry } of held.byKey.values()) {
    const next = timedOutRollout(entry.rollout, t.options.timeoutText);
    if (!next) continue;
    entry.rollout = next;
    held.open--;
    t.options.onFinal?.(eventId, entry);
    changed = true;
  }
  settle(t, eventId, changed);
}

/** Tells of a change, or of the end: once no rollout is open the event is final and forgotten. */
function settle(t: Tracker, eventId: string, changed: boolean): void {
  const held = t.events.get(eventId);
  if (!held) return;
  const final = held.open === 0;
  if (changed || final) t.options.onChange(eventId, final);
  if (final) forget(t, eventId);
}

function forget(t: Tracker, eventId: string): void {
  const held = t.events.get(eventId);
  if (!held) return;
  held.cancel();
  t.events.delete(eventId);
  for (const k of held.byKey.keys()) {
    const set = t.followers.get(k);
    set?.delete(eventId);
    if (set?.size === 0) t.followers.delete(k);
  }
}

const progressing = (): RolloutReport => ({
  state: "progressing",
  replicas: 0,
  updated: 0,
  ready: 0,
  available: 0,
});

/**
 * A followed rollout's next report when it changed; undefined when there is
 * none to follow, it is final already, or it reads the same as before.
 */
export function changedRollout(
  current: RolloutReport | undefined,
  snapshot: Snapshot | undefined,
  target: TrackTarget,
): RolloutReport | undefined {
  if (!current || FINAL.has(current.state)) return undefined;
  const next = nextRollout(current, snapshot, target);
  return JSON.stringify(next) === JSON.stringify(current) ? undefined : next;
}

/** A rollout still progressing at the event's deadline, timed_out; undefined for any other. */
export function timedOutRollout(
  current: RolloutReport | undefined,
  timeoutText: string,
): RolloutReport | undefined {
  if (current?.state !== "progressing") return undefined;
  return {
    ...current,
    state: "timed_out",
    reason: `not complete within ROLLOUT_TIMEOUT (${timeoutText})`,
  };
}

/** Where a followed rollout stands now, from the Deployment's latest snapshot. */
function nextRollout(
  current: RolloutReport,
  snapshot: Snapshot | undefined,
  target: TrackTarget,
): RolloutReport {
  if (!snapshot) return { ...current, state: "failed", reason: "the Deployment was deleted" };
  if (snapshot.uid && target.uid && snapshot.uid !== target.uid) {
    return { ...current, state: "failed", reason: "the Deployment was deleted and recreated" };
  }
  return rolloutProgress(progressOf(snapshot), target.generation);
}

/**
 * A copy of the event with each target's report entry (added when the caller
 * did not list it) holding a rollout, and how many of them are still open.
 */
function followedEvent(input: TrackedEvent) {
  const event = structuredClone(input);
  const restarted = new Map<string, DeploymentReport>();
  for (const d of event.deployments) {
    if (d.result === "restarted") restarted.set(key(d.namespace, d.name), d);
  }
  const byKey = new Map<string, { target: TrackTarget; entry: DeploymentReport }>();
  let open = 0;
  for (const target of event.targets) {
    const k = key(target.namespace, target.name);
    // Every followed rollout is named in the report, whatever the caller listed.
    let entry = restarted.get(k);
    if (!entry) {
      entry = { namespace: target.namespace, name: target.name, result: "restarted" };
      event.deployments.push(entry);
    }
    entry.rollout ??= progressing();
    if (!FINAL.has(entry.rollout.state)) open++;
    byKey.set(k, { target, entry });
  }
  return { event, byKey, open };
}
