/**
 * Follows the rollouts an event's restarts started, from the Deployments the
 * inventory's list and watch already deliver (no API call of its own): each
 * restarted Deployment is `progressing` until rolloutProgress() says complete
 * or failed, it is deleted (failed), or the event's deadline passes
 * (timed_out). With a bake time (ROLLOUT_BAKE_TIME, or the Deployment's
 * bake-time annotation) a rollout that looks complete is `baking` until it
 * has stayed healthy that long (bakingRollout()); a timer ends the bake, as a
 * healthy Deployment may send no watch event at all. Keeps a slim copy of
 * every Deployment's status, so tracking can start from what the cluster
 * already shows: right after a patch, or when a restarted worker resumes an
 * event. Time comes from an injected clock.
 */

import type { DeploymentReport, RolloutReport } from "../../shared/event_status.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Deployment } from "../kube/objects.ts";
import { formatDuration } from "../../lib/setting_values.ts";
import { type Bake, bakeTimeOf, bakingRollout, rolloutProgress } from "./rollout_progress.ts";
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
  /**
   * While the rollout bakes: when it first looked complete and its generation
   * then; kept with the tracking state, so a resumed worker bakes on from there.
   */
  bake?: Bake;
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
  /** ROLLOUT_BAKE_TIME in ms; 0 (the default): complete as soon as it looks complete. */
  bakeTimeMs?: number;
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

/** One followed rollout: its target, its report entry (inside event.deployments), its bake's timer. */
interface Followed {
  target: TrackTarget;
  entry: DeploymentReport;
  wake?: { at: number; cancel: () => void };
}

interface Held {
  event: TrackedEvent;
  /** Deployment key → the rollout followed there. */
  byKey: Map<string, Followed>;
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
  const { clock, bakeTimeMs = 0 } = t.options;
  const current = item.entry.rollout;
  const step = rolloutStep(current, latestAt(t.latest, k), item.target, {
    now: clock.now(),
    bakeTimeMs,
  });
  if (!step) return false;
  if (step.bake) item.target.bake = step.bake;
  else if (item.target.bake) delete item.target.bake;
  wakeAt(t, held, k, step.wakeAt);
  const next = step.rollout;
  if (JSON.stringify(next) === JSON.stringify(current)) return false;
  item.entry.rollout = next;
  if (FINAL.has(next.state)) {
    held.open--;
    t.options.onFinal?.(held.event.eventId, item.entry);
  }
  return true;
}

/**
 * Re-reads a baking rollout when its bake time is up (`at`), since a healthy
 * Deployment may send no watch event; no timer once it is not baking.
 */
function wakeAt(t: Tracker, held: Held, k: string, at: number | undefined): void {
  const item = held.byKey.get(k)!;
  if (item.wake?.at === at) return;
  item.wake?.cancel();
  item.wake = undefined;
  if (at === undefined) return;
  const { clock } = t.options;
  const wake = () => {
    item.wake = undefined;
    if (t.events.get(held.event.eventId) === held) {
      settle(t, held.event.eventId, evaluate(t, held, k));
    }
  };
  item.wake = { at, cancel: clock.schedule(wake, Math.max(0, at - clock.now())) };
}

/** The event's deadline passed: every rollout still progressing or baking is timed_out. */
function timeOut(t: Tracker, eventId: string): void {
  const held = t.events.get(eventId);
  if (!held) return;
  let changed = false;
  const now = t.options.clock.now();
  for (const [k, item] of held.byKey) {
    const { entry, target } = item;
    // A bake that ends by the deadline is complete, whichever timer runs first.
    if (entry.rollout?.state === "baking") changed = evaluate(t, held, k) || changed;
    const baked = target.bake && item.wake
      ? { healthyMs: now - target.bake.since, bakeMs: item.wake.at - target.bake.since }
      : undefined;
    const next = timedOutRollout(entry.rollout, t.options.timeoutText, baked);
    if (!next) continue;
    item.wake?.cancel();
    item.wake = undefined;
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
  for (const item of held.byKey.values()) item.wake?.cancel();
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

/** What the bake needs beyond the Deployment: the time now, and ROLLOUT_BAKE_TIME in ms. */
export interface BakeContext {
  now: number;
  bakeTimeMs: number;
}

const NO_BAKE: BakeContext = { now: 0, bakeTimeMs: 0 };

/** A followed rollout's next state: its report, and while it bakes, the bake and when it ends. */
export interface RolloutStep {
  rollout: RolloutReport;
  bake?: Bake;
  wakeAt?: number;
}

/**
 * A followed rollout's next report when it changed; undefined when there is
 * none to follow, it is final already, or it reads the same as before.
 */
export function changedRollout(
  current: RolloutReport | undefined,
  snapshot: Snapshot | undefined,
  target: TrackTarget,
  context: BakeContext = NO_BAKE,
): RolloutReport | undefined {
  const next = rolloutStep(current, snapshot, target, context)?.rollout;
  return next && JSON.stringify(next) !== JSON.stringify(current) ? next : undefined;
}

/**
 * A rollout still progressing or baking at the event's deadline, timed_out
 * (a baking one says so, with how long of its bake time it stayed healthy);
 * undefined for any other.
 */
export function timedOutRollout(
  current: RolloutReport | undefined,
  timeoutText: string,
  baked?: { healthyMs: number; bakeMs: number },
): RolloutReport | undefined {
  if (current?.state !== "progressing" && current?.state !== "baking") return undefined;
  let reason = `not complete within ROLLOUT_TIMEOUT (${timeoutText})`;
  if (current.state === "baking") {
    reason += ": still baking";
    if (baked) {
      const healthy = formatDuration(Math.max(0, Math.floor(baked.healthyMs / 1000) * 1000));
      reason += `, healthy for ${healthy} of its ${formatDuration(baked.bakeMs)} bake time`;
    }
  }
  return { ...current, state: "timed_out", reason };
}

/**
 * Where a followed rollout stands now, from the Deployment's latest snapshot;
 * undefined when there is none to follow or it is final already. A rollout
 * that looks complete bakes first when its bake time is not 0.
 */
export function rolloutStep(
  current: RolloutReport | undefined,
  snapshot: Snapshot | undefined,
  target: TrackTarget,
  context: BakeContext,
): RolloutStep | undefined {
  if (!current || FINAL.has(current.state)) return undefined;
  const failed = (reason: string) => ({
    rollout: { ...current, state: "failed" as const, reason },
  });
  if (!snapshot) return failed("the Deployment was deleted");
  if (snapshot.uid && target.uid && snapshot.uid !== target.uid) {
    return failed("the Deployment was deleted and recreated");
  }
  const deployment = progressOf(snapshot);
  const read = rolloutProgress(deployment, target.generation);
  const baking = current.state === "baking";
  if (!baking && read.state !== "complete") return { rollout: read };
  const bakeMs = bakeTimeOf(snapshot.bakeTime, context.bakeTimeMs);
  if (typeof bakeMs !== "number") {
    return { rollout: { ...read, state: "failed", reason: bakeMs.reason } };
  }
  if (!baking && bakeMs === 0) return { rollout: read };
  // A bake starts when the rollout first looks complete; one resumed without its start starts again.
  const bake = target.bake ?? { since: context.now, generation: generationOf(snapshot) };
  const rollout = bakingRollout({ read, deployment, bake, bakeMs, now: context.now });
  return rollout.state === "baking" ? { rollout, bake, wakeAt: bake.since + bakeMs } : { rollout };
}

function generationOf(snapshot: Snapshot): number {
  const g = snapshot.generation;
  return typeof g === "number" && Number.isSafeInteger(g) && g >= 0 ? g : 0;
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
  const byKey = new Map<string, Followed>();
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
