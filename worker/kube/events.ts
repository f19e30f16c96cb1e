/**
 * The audit trail in the cluster (SPEC §12): one core/v1 Event on each
 * Deployment the worker restarts, reason RolloutTriggered, naming the event id
 * (which web's log ties to the workflow run), the verified sender's repository
 * and ref when the event was signed, and the image and tags. Shaped
 * like client-go's legacy event recorder: first/last timestamp and count, no
 * eventTime (which would require an action and a series).
 */

import type { EventMessage } from "../../shared/event.ts";
import type { Deployment, KubeEvent } from "./objects.ts";

/** The Event's reason, for `kubectl get events --field-selector reason=RolloutTriggered`. */
export const ROLLOUT_TRIGGERED = "RolloutTriggered";
/** source.component and reportingComponent. */
export const COMPONENT = "kuberollouttrigger";

/** The Event for one restart; `restarted` is the patch's answer. */
export function rolloutTriggeredEvent(
  restarted: Deployment,
  event: EventMessage,
  clusterName: string,
  now: Date,
): KubeEvent {
  const { namespace, name, uid, resourceVersion } = restarted.metadata;
  const images = event.tags.map((t) => `${event.image}:${t}`).join(", ");
  // Only a verified sender is named: the cluster's own record of who asked (no token, public claims).
  const from = event.sender ? ` from ${event.sender.repository} (${event.sender.ref})` : "";
  // Whole seconds, as metav1.Time serialises.
  const at = now.toISOString().replace(/\.\d{3}Z$/, "Z");
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { generateName: `${name.slice(0, 200)}.`, namespace },
    involvedObject: {
      apiVersion: "apps/v1",
      kind: "Deployment",
      namespace,
      name,
      uid,
      resourceVersion,
    },
    reason: ROLLOUT_TRIGGERED,
    message: `Restarted by kuberollouttrigger for event ${event.id}${from}: ${images}`.slice(
      0,
      1024,
    ),
    type: "Normal",
    source: { component: COMPONENT },
    reportingComponent: COMPONENT,
    reportingInstance: `${COMPONENT}-${clusterName}`,
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1,
  };
}
