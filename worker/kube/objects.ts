/**
 * The shapes of what the worker reads from and writes to the Kubernetes API:
 * a Deployment (only the fields the worker reads are typed), one page of a
 * list, and the core/v1 Event it creates per restart. Types only; objects
 * from the API are untrusted and checked where they are read.
 */

/** A Deployment as the API returns it (only what we read is typed). */
export interface Deployment {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    generation?: number;
  };
  spec?: {
    paused?: boolean;
    replicas?: number;
    progressDeadlineSeconds?: number;
    template?: {
      metadata?: { annotations?: Record<string, string> };
      spec?: {
        containers?: { name: string; image?: string; imagePullPolicy?: string }[];
        initContainers?: { name: string; image?: string; imagePullPolicy?: string }[];
      };
    };
  };
  /** What the rollout tracker reads (worker/feedback/rollout_progress.ts checks every field). */
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
    conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
  };
}

/** A core/v1 Event as the worker creates it (see worker/kube/events.ts). */
export interface KubeEvent {
  apiVersion: "v1";
  kind: "Event";
  metadata: { generateName: string; namespace: string };
  involvedObject: {
    apiVersion: string;
    kind: string;
    namespace: string;
    name: string;
    uid?: string;
    resourceVersion?: string;
  };
  reason: string;
  message: string;
  type: "Normal" | "Warning";
  source: { component: string };
  reportingComponent: string;
  reportingInstance: string;
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
}

/** One page of a list call. */
export interface DeploymentList {
  items: Deployment[];
  resourceVersion: string;
  continueToken?: string;
}
