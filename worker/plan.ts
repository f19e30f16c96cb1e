/**
 * Pure decisions: what of a Deployment matters for matching, and which
 * Deployments an event restarts, skips (with a reason) or leaves alone. No I/O,
 * so the rules are tested as tables. Deployment specs are untrusted input:
 * an image that does not parse never matches.
 */

import type { ImageEvent } from "../shared/event.ts";
import type { Sender } from "../shared/event_sender.ts";
import { type ImageRef, parseImageRef } from "../shared/image_ref.ts";
import {
  accessDetail,
  type AccessList,
  ALLOWED_REPOSITORIES_ANNOTATION,
  decideAccess,
  parseAccessList,
} from "./deployment_access.ts";
import type { Deployment } from "./kube/objects.ts";
import type { LabelSelector } from "../lib/label_selector.ts";

/** Annotation that opts a Deployment out of restarts. */
export const OPT_OUT_ANNOTATION = "kuberollouttrigger/ignore";
/** The annotation `kubectl rollout restart` sets on the pod template. */
export const RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt";

/**
 * One container of a pod template, as matching needs it: of its image only the
 * normalised repository, tag and digest (the inventory holds one per container
 * of every Deployment in scope, so nothing else is kept).
 */
export interface ContainerSummary {
  name: string;
  init: boolean;
  /** Undefined when the image does not parse (such a container never matches). */
  repository?: string;
  tag?: string;
  digest?: string;
  /** The effective pull policy (the API server's default applied when empty). */
  pullPolicy: string;
}

/** What the inventory keeps of a Deployment: only what matching, planning and restarting need. */
export interface DeploymentSummary {
  namespace: string;
  name: string;
  resourceVersion: string;
  paused: boolean;
  optedOut: boolean;
  /** Who may restart it (its allowed-repositories annotation; undefined: no annotation). */
  access: AccessList;
  /** The pod template's restartedAt in ms since the epoch; NaN when it has none. */
  restartedAtMs: number;
  containers: ContainerSummary[];
}

/** A Deployment to restart and why. */
export interface PlannedRestart {
  namespace: string;
  name: string;
  resourceVersion: string;
  /** Matched containers, e.g. `app` or `init:migrate`. */
  containers: string[];
  /** Matched containers whose pull policy is not Always. */
  pullPolicyWarnings: string[];
  /** The pod template's restartedAt when matched (ms; NaN when none). */
  restartedAtMs: number;
}

/** Why a Deployment that uses the image is not restarted. */
export type SkipReason =
  | "paused"
  | "opted_out"
  | "digest_pinned"
  | "not_allowed"
  | "not_opted_in"
  | "not_selected";

/** The cluster's own say over its Deployments (worker settings). */
export interface PlanPolicy {
  /** REQUIRE_OPT_IN: a Deployment without the allowed-repositories annotation is not restarted. */
  requireOptIn: boolean;
  /**
   * DEPLOYMENT_SELECTOR: the inventory holds only what it selects; a Deployment
   * read fresh (a conflict, a followed restart) is held to it again.
   */
  selector?: LabelSelector;
}

/** No mandatory opt-in: annotated Deployments still decide for themselves. */
export const OPEN_POLICY: PlanPolicy = { requireOptIn: false };

/** A Deployment left alone, and why. */
export interface PlannedSkip {
  namespace: string;
  name: string;
  reason: SkipReason;
  /** For the log: which repository was refused, or what is wrong with the annotation. */
  detail?: string;
}

/** The outcome of planning one event. */
export interface RestartPlan {
  restarts: PlannedRestart[];
  skipped: PlannedSkip[];
  /**
   * Deployments that use the event's image with one of its tags: those to
   * restart plus those skipped as paused or opted out. A digest-pinned one is
   * in `skipped` (so the summary says why nothing happened) but not matched:
   * it does not use the tag, it uses one fixed content.
   */
  matched: number;
}

// Kubernetes defaults imagePullPolicy to Always for :latest or no tag, else
// IfNotPresent (pkg/apis/core/v1/defaults.go).
function effectivePullPolicy(policy: string | undefined, ref: ImageRef | undefined): string {
  if (policy) return policy;
  return !ref || ref.tag === undefined || ref.tag === "latest" ? "Always" : "IfNotPresent";
}

/** Reduces a Deployment to what matching needs. */
export function summarizeDeployment(d: Deployment): DeploymentSummary {
  return summarizeSharing(d, (s) => s);
}

/**
 * summarizeDeployment() with `share` returning one stored copy of a string (the
 * inventory's pool), so a namespace, repository, tag, container name or pull
 * policy used by many Deployments is held once.
 */
export function summarizeSharing(d: Deployment, share: (s: string) => string): DeploymentSummary {
  const spec = d.spec?.template?.spec;
  const containers: ContainerSummary[] = [];
  const add = (list: unknown, init: boolean) => {
    if (!Array.isArray(list)) return;
    for (const c of list as { name?: unknown; image?: unknown; imagePullPolicy?: string }[]) {
      if (!c || typeof c.image !== "string") continue;
      let ref: ImageRef | undefined;
      try {
        ref = parseImageRef(c.image);
      } catch {
        ref = undefined;
      }
      containers.push({
        name: share(String(c.name)),
        init,
        repository: ref && share(ref.repository),
        tag: ref?.tag === undefined ? undefined : share(ref.tag),
        digest: ref?.digest,
        pullPolicy: share(effectivePullPolicy(c.imagePullPolicy, ref)),
      });
    }
  };
  add(spec?.initContainers, true);
  add(spec?.containers, false);
  return {
    namespace: share(d.metadata.namespace),
    name: d.metadata.name,
    resourceVersion: d.metadata.resourceVersion ?? "",
    paused: d.spec?.paused === true,
    optedOut: d.metadata.annotations?.[OPT_OUT_ANNOTATION] === "true",
    access: parseAccessList(d.metadata.annotations?.[ALLOWED_REPOSITORIES_ANNOTATION]),
    restartedAtMs: restartedAtOf(d),
    containers,
  };
}

/** The pod template's restartedAt annotation in ms (NaN when absent or not a time). */
export function restartedAtOf(d: Deployment): number {
  const value = d.spec?.template?.metadata?.annotations?.[RESTARTED_AT_ANNOTATION];
  return typeof value === "string" ? Date.parse(value) : NaN;
}

/** The normalised repositories a Deployment's containers use, each once (its inventory index keys). */
export function repositoriesOf(summary: DeploymentSummary): string[] {
  const out: string[] = [];
  for (const c of summary.containers) {
    if (c.repository !== undefined && !out.includes(c.repository)) out.push(c.repository);
  }
  return out;
}

/**
 * Why a matched Deployment is not restarted, if it is not: the owner's
 * opt-out first, then who may restart it (the event's sender against its
 * annotation), then paused (`kubectl rollout restart` refuses those too).
 */
function skipOf(
  d: DeploymentSummary,
  sender: Sender | undefined,
  policy: PlanPolicy,
): { reason: SkipReason; detail?: string } | undefined {
  if (d.optedOut) return { reason: "opted_out" };
  const access = decideAccess(d.access, sender, policy.requireOptIn);
  if (access !== "allowed") {
    return { reason: access, detail: accessDetail(d.access, sender, policy.requireOptIn) };
  }
  return d.paused ? { reason: "paused" } : undefined;
}

/**
 * planRestarts() for a Deployment just read from the API server (not from the
 * inventory, which list and watch already filtered): its labels must still
 * match the selector, or it is skipped as not_selected.
 */
export function planFresh(
  event: ImageEvent & { sender?: Sender },
  fresh: Deployment,
  policy: PlanPolicy = OPEN_POLICY,
): RestartPlan {
  const plan = planRestarts(event, [summarizeDeployment(fresh)], policy);
  if (plan.restarts.length === 0 || !policy.selector) return plan;
  if (policy.selector.matches(fresh.metadata.labels)) return plan;
  const { namespace, name } = fresh.metadata;
  return { restarts: [], skipped: [{ namespace, name, reason: "not_selected" }], matched: 1 };
}

/** The skip reasons that say the event may not restart the Deployment (not that it cannot). */
export const REFUSALS: readonly SkipReason[] = ["not_allowed", "not_opted_in", "not_selected"];

/** A fresh plan's refusal, if its one Deployment was refused to this event. */
export function refusalOf(plan: RestartPlan): SkipReason | undefined {
  const reason = plan.skipped[0]?.reason;
  return reason !== undefined && REFUSALS.includes(reason) ? reason : undefined;
}

/**
 * Decides what one event does to each candidate. A Deployment is restarted at
 * most once, however many of its containers or of the event's tags match.
 */
export function planRestarts(
  event: ImageEvent & { sender?: Sender },
  candidates: readonly DeploymentSummary[],
  policy: PlanPolicy = OPEN_POLICY,
): RestartPlan {
  const plan: RestartPlan = { restarts: [], skipped: [], matched: 0 };
  for (const d of candidates) {
    const matched: ContainerSummary[] = [];
    let pinned = false;
    for (const c of d.containers) {
      if (c.repository === undefined || c.repository !== event.image) continue;
      const tagMatches = event.tags.includes(c.tag ?? "latest");
      // A digest pins the content; restarting would not change it.
      if (c.digest !== undefined) {
        if (c.tag === undefined || tagMatches) pinned = true;
        continue;
      }
      if (tagMatches) matched.push(c);
    }
    const where = { namespace: d.namespace, name: d.name };
    if (matched.length === 0) {
      if (pinned) plan.skipped.push({ ...where, reason: "digest_pinned" });
      continue;
    }
    plan.matched++;
    const skip = skipOf(d, event.sender, policy);
    if (skip !== undefined) plan.skipped.push({ ...where, ...skip });
    else {
      const label = (c: ContainerSummary) => (c.init ? `init:${c.name}` : c.name);
      plan.restarts.push({
        namespace: d.namespace,
        name: d.name,
        resourceVersion: d.resourceVersion,
        containers: matched.map(label),
        pullPolicyWarnings: matched.filter((c) => c.pullPolicy !== "Always").map(label),
        restartedAtMs: d.restartedAtMs,
      });
    }
  }
  return plan;
}
