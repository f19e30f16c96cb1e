/**
 * Follows the rollouts an event's restarts started, from the Deployments the
 * inventory's list and watch already deliver (no API call of its own): each
 * restarted Deployment is `progressing` until rolloutProgress() says complete
 * or failed, it is deleted (failed), or the event's deadline passes
 * (timed_out). Keeps a slim copy of every Deployment's status, so tracking can
 * start from what the cluster already shows: right after a patch, or when a
 * restarted worker resumes an event. Time comes from an injected clock.
 */

import type { DeploymentReport, RolloutReport } from "../shared/event_status.ts";
import type { Clock } from "./inventory.ts";
import type { Deployment } from "./kube_api.ts";
import { type DeploymentProgress, rolloutProgress } from "./rollout_progress.ts";

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
  /** Stops following an event. */
  forget(eventId: string): void;
  /** Events still followed. */
  size(): number;
}

type Snapshot = DeploymentProgress & { uid?: string };

const key = (namespace: string, name: string) => `${namespace}/${name}`;

/** Keeps only what rolloutProgress() reads: the inventory may hold thousands. */
function snapshotOf(d: Deployment): Snapshot {
  const s = d.status;
  return {
    uid: d.metadata.uid,
    metadata: { generation: d.metadata.generation },
    spec: { replicas: d.spec?.replicas },
    status: s && {
      observedGeneration: s.observedGeneration,
      replicas: s.replicas,
      updatedReplicas: s.updatedReplicas,
      readyReplicas: s.readyReplicas,
      availableReplicas: s.availableReplicas,
      conditions: Array.isArray(s.conditions)
        ? s.conditions.filter((c) => c?.type === "Progressing").map((c) => ({
          type: c.type,
          reason: c.reason,
        }))
        : undefined,
    },
  };
}

const FINAL = new Set(["complete", "failed", "timed_out"]);

/** Creates a tracker. */
export function createRolloutTracker(options: RolloutTrackerOptions): RolloutTracker {
  const latest = new Map<string, Snapshot>();
  const events = new Map<string, { event: TrackedEvent; cancel: () => void }>();
  /** Deployment key → ids of events following it. */
  const followers = new Map<string, Set<string>>();

  const entryOf = (event: TrackedEvent, k: string) =>
    event.deployments.find((d) => key(d.namespace, d.name) === k && d.result === "restarted");

  const isFinal = (event: TrackedEvent) =>
    event.targets.every((t) =>
      FINAL.has(entryOf(event, key(t.namespace, t.name))?.rollout?.state ?? "")
    );

  /** Re-reads one target of one event; true when its rollout changed. */
  const evaluate = (event: TrackedEvent, target: TrackTarget): boolean => {
    const k = key(target.namespace, target.name);
    const entry = entryOf(event, k);
    if (!entry?.rollout || FINAL.has(entry.rollout.state)) return false;
    const before = JSON.stringify(entry.rollout);
    const snapshot = latest.get(k);
    let next: RolloutReport;
    if (!snapshot) {
      next = { ...entry.rollout, state: "failed", reason: "the Deployment was deleted" };
    } else if (snapshot.uid && target.uid && snapshot.uid !== target.uid) {
      next = {
        ...entry.rollout,
        state: "failed",
        reason: "the Deployment was deleted and recreated",
      };
    } else {
      next = rolloutProgress(snapshot, target.generation);
    }
    if (JSON.stringify(next) === before) return false;
    entry.rollout = next;
    if (FINAL.has(next.state)) options.onFinal?.(event.eventId, entry);
    return true;
  };

  const settle = (eventId: string, changed: boolean) => {
    const held = events.get(eventId);
    if (!held) return;
    const final = isFinal(held.event);
    if (changed || final) options.onChange(eventId, final);
    if (final) forget(eventId);
  };

  const timeOut = (eventId: string) => {
    const held = events.get(eventId);
    if (!held) return;
    let changed = false;
    for (const entry of held.event.deployments) {
      if (entry.rollout?.state !== "progressing") continue;
      entry.rollout = {
        ...entry.rollout,
        state: "timed_out",
        reason: `not complete within ROLLOUT_TIMEOUT (${options.timeoutText})`,
      };
      options.onFinal?.(eventId, entry);
      changed = true;
    }
    settle(eventId, changed);
  };

  const forget = (eventId: string) => {
    const held = events.get(eventId);
    if (!held) return;
    held.cancel();
    events.delete(eventId);
    for (const t of held.event.targets) {
      const k = key(t.namespace, t.name);
      const set = followers.get(k);
      set?.delete(eventId);
      if (set?.size === 0) followers.delete(k);
    }
  };

  return {
    observe(type, d) {
      if (!d?.metadata?.name || !d.metadata.namespace) return;
      const k = key(d.metadata.namespace, d.metadata.name);
      if (type === "DELETED") latest.delete(k);
      else {
        const next = snapshotOf(d);
        const known = latest.get(k);
        // An API answer (the patch's) can be handled after newer watch events: a status the
        // controller has moved past is older, and must not make a finished rollout look unfinished.
        const observed = (s?: Snapshot) => Number(s?.status?.observedGeneration ?? 0) || 0;
        if (known && known.uid === next.uid && observed(known) > observed(next)) return;
        latest.set(k, next);
      }
      for (const eventId of [...(followers.get(k) ?? [])]) {
        const held = events.get(eventId);
        if (!held) continue;
        let changed = false;
        for (const t of held.event.targets) {
          if (key(t.namespace, t.name) === k) changed = evaluate(held.event, t) || changed;
        }
        settle(eventId, changed);
      }
    },
    track(input) {
      forget(input.eventId);
      const event = structuredClone(input);
      const progressing = (): RolloutReport => ({
        state: "progressing",
        replicas: 0,
        updated: 0,
        ready: 0,
        available: 0,
      });
      for (const t of event.targets) {
        // Every followed rollout is named in the report, whatever the caller listed.
        const entry = entryOf(event, key(t.namespace, t.name));
        if (!entry) {
          event.deployments.push({
            namespace: t.namespace,
            name: t.name,
            result: "restarted",
            rollout: progressing(),
          });
        } else entry.rollout ??= progressing();
      }
      const cancel = options.clock.schedule(
        () => timeOut(event.eventId),
        Math.max(0, event.deadline - options.clock.now()),
      );
      events.set(event.eventId, { event, cancel });
      for (const t of event.targets) {
        const k = key(t.namespace, t.name);
        let set = followers.get(k);
        if (!set) followers.set(k, set = new Set());
        set.add(event.eventId);
      }
      let changed = false;
      for (const t of event.targets) changed = evaluate(event, t) || changed;
      settle(event.eventId, changed);
    },
    get(eventId) {
      const held = events.get(eventId);
      return held && structuredClone(held.event);
    },
    forget,
    size: () => events.size,
  };
}
