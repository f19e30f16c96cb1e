// Fixtures index freely into API objects.
// deno-lint-ignore-file no-explicit-any
/**
 * Fixtures on the shared test control plane: namespaces with random names,
 * Deployments with given images, the shipped k8s/ manifests applied as they
 * are, and a kubeconfig that authenticates as the worker's ServiceAccount.
 */

import { parseAllDocuments, stringify } from "yaml";
import {
  ASSETS_ENV,
  type ControlPlane,
  type ControlPlaneInfo,
  createKubeClient,
  describeTimings,
  ensureControlPlaneAssets,
  type KubeClient,
  startControlPlane,
  writeKubeconfig,
} from "./control_plane.ts";
import { ROOT } from "./program.ts";
import { waitForSettled } from "./rollout.ts";
import { READY_LABEL } from "./test_node.ts";

export { eventually } from "./eventually.ts";

/** The worker's ServiceAccount as k8s/ ships it. */
export const WORKER_SA = { namespace: "kuberollouttrigger", name: "kuberollouttrigger-worker" };

/** A container for deploymentManifest. */
export interface TestContainer {
  name?: string;
  image: string;
  imagePullPolicy?: string;
  command?: string[];
}

/** Options for deploymentManifest. */
export interface DeploymentOptions {
  init?: TestContainer[];
  paused?: boolean;
  annotations?: Record<string, string>;
  /** Labels besides `app: <name>`. */
  labels?: Record<string, string>;
  replicas?: number;
  /** Pods that run but never become Ready on the test node (see READY_LABEL). */
  unready?: boolean;
  progressDeadlineSeconds?: number;
}

/** A minimal valid Deployment. */
export function deploymentManifest(
  namespace: string,
  name: string,
  containers: TestContainer[],
  options: DeploymentOptions = {},
) {
  const named = (list: TestContainer[], prefix: string) =>
    list.map((c, i) => ({ name: c.name ?? `${prefix}${i}`, ...c }));
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name,
      namespace,
      annotations: options.annotations,
      labels: { app: name, ...options.labels },
    },
    spec: {
      replicas: options.replicas ?? 1,
      paused: options.paused,
      progressDeadlineSeconds: options.progressDeadlineSeconds,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: {
          labels: { app: name, ...(options.unready ? { [READY_LABEL]: "false" } : {}) },
        },
        spec: {
          containers: named(containers, "c"),
          initContainers: options.init ? named(options.init, "i") : undefined,
        },
      },
    },
  };
}

/** A random DNS-label suffix. */
export function suffix(): string {
  return crypto.randomUUID().slice(0, 8);
}

/** Admin access plus helpers, for one test. */
export interface Cluster {
  admin: KubeClient;
  info: ControlPlaneInfo;
  /** Creates a namespace named `${prefix}-<random>` and remembers it for cleanup. */
  namespace(prefix: string, labels?: Record<string, string>): Promise<string>;
  /**
   * Creates the Deployment. On a cluster with controllers it also waits until
   * it settled (first rollout complete, or pause recorded; not for unready
   * pods), so it no longer changes by itself when the test reads it.
   */
  createDeployment(manifest: ReturnType<typeof deploymentManifest>): Promise<void>;
  getDeployment(namespace: string, name: string): Promise<any>;
  /** Applies a k8s/ file as shipped; `namespace` rewrites namespaced objects (per-namespace RBAC). */
  applyManifest(
    relativePath: string,
    options?: { namespace?: string; edit?: (doc: Record<string, any>) => void },
  ): Promise<string[]>;
  /** Writes a kubeconfig for the worker's ServiceAccount into a temp dir; returns its path. */
  workerKubeconfig(): Promise<string>;
  /** A new namespace with the shipped namespaced RBAC for the worker, and the worker's kubeconfig. */
  workerNamespace(prefix: string): Promise<{ ns: string; kubeconfig: string }>;
  cleanup(): Promise<void>;
}

/** Opens admin access to the control plane. */
export function openCluster(info: ControlPlaneInfo): Cluster {
  const admin = createKubeClient({
    server: info.server,
    caPem: info.caPem,
    token: info.adminToken,
  });
  const namespaces: string[] = [];
  const tempDirs: string[] = [];
  return {
    admin,
    info,
    async namespace(prefix, labels) {
      const name = `${prefix}-${suffix()}`;
      const res = await admin.createNamespace(name, labels);
      if (res.status !== 201) throw new Error(`creating namespace ${name}: ${res.status}`);
      namespaces.push(name);
      return name;
    },
    async createDeployment(manifest) {
      const ns = manifest.metadata.namespace;
      const res = await admin.request(
        "POST",
        `/apis/apps/v1/namespaces/${ns}/deployments`,
        manifest,
      );
      if (res.status !== 201) {
        throw new Error(
          `creating deployment ${ns}/${manifest.metadata.name}: ${res.status} ${
            JSON.stringify(res.json)
          }`,
        );
      }
      const unready = manifest.spec.template.metadata.labels[READY_LABEL] === "false";
      if (info.controllers && !unready) await waitForSettled(admin, ns, manifest.metadata.name);
    },
    async getDeployment(namespace, name) {
      const res = await admin.request(
        "GET",
        `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`,
      );
      if (res.status !== 200) throw new Error(`get deployment ${namespace}/${name}: ${res.status}`);
      return res.json as Record<string, any>;
    },
    async applyManifest(relativePath, options = {}) {
      const text = await Deno.readTextFile(`${ROOT}${relativePath}`);
      const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, any>).filter(
        Boolean,
      );
      for (const doc of docs) {
        if (options.namespace && doc.metadata?.namespace && doc.kind !== "ServiceAccount") {
          doc.metadata.namespace = options.namespace;
        }
        options.edit?.(doc);
      }
      const result = await admin.applyYaml(docs.map((d) => stringify(d)).join("---\n"), {
        fieldManager: "krt-tests",
      });
      return result.warnings;
    },
    async workerKubeconfig() {
      await this.applyManifest("k8s/base/namespace.yaml");
      await this.applyManifest("k8s/base/worker/serviceaccount.yaml");
      const token = await admin.serviceAccountToken(WORKER_SA.namespace, WORKER_SA.name, 3600);
      const dir = await Deno.makeTempDir({ prefix: "krt-worker-" });
      tempDirs.push(dir);
      const path = `${dir}/kubeconfig`;
      await writeKubeconfig(path, { server: info.server, caPem: info.caPem, token });
      return path;
    },
    async workerNamespace(prefix) {
      const ns = await this.namespace(prefix);
      await this.applyManifest("k8s/rbac/namespaced/rbac.yaml", { namespace: ns });
      return { ns, kubeconfig: await this.workerKubeconfig() };
    },
    async cleanup() {
      for (const ns of namespaces) await admin.deleteNamespace(ns).catch(() => {});
      for (const dir of tempDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
      admin.close();
    },
  };
}

/** A cluster of its own for one test, next to the shared one. */
export interface ExtraCluster {
  cluster: Cluster;
  plane: ControlPlane;
  /** Cleans up the fixtures, then stops every process of the cluster. */
  stop(): Promise<void>;
}

/**
 * Starts another, independent cluster: its own etcd, kube-apiserver,
 * kube-controller-manager and test node, with its own CA, tokens and
 * service-account key, so nothing of the shared cluster is valid there.
 * Costs several seconds: start it only in the tests that need two clusters.
 * Logs how long each part took.
 */
export async function startExtraCluster(label: string): Promise<ExtraCluster> {
  const assetsDir = Deno.env.get(ASSETS_ENV) || await ensureControlPlaneAssets();
  const started = performance.now();
  const plane = await startControlPlane({ assetsDir, controllers: true });
  console.error(
    `[test] cluster "${label}" up at ${plane.server} in ${
      Math.round(performance.now() - started)
    } ms (${describeTimings(plane.timings)})`,
  );
  const cluster = openCluster(plane);
  return {
    cluster,
    plane,
    async stop() {
      await cluster.cleanup();
      await plane.stop();
    },
  };
}
