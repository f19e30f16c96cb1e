// Plays the node of a test cluster: a Node object that is Ready, and a loop
// that does for pods what the scheduler and a kubelet would. It binds every
// unscheduled pod to the node (pods/binding), reports it Running through
// pods/status with the conditions and container statuses a kubelet writes,
// and confirms graceful deletions. No container runs. The ReplicaSet and
// Deployment controllers only read those pod fields, so rollouts complete,
// or stall when a Deployment asks for unready pods.
//
// Why not kubemark's hollow node: another large Go build running the
// kubelet's loops, where these few requests are all the controllers observe.
// See docs/development.md.
//
// Trusts: the API server. Test-only code; nothing here enters the product.

// API objects are indexed freely.
// deno-lint-ignore-file no-explicit-any
import type { KubeClient } from "./kube_client.ts";

/**
 * A pod-template label: pods carrying `krt-test/ready: "false"` run but never
 * become Ready, so their Deployment stalls (ProgressDeadlineExceeded).
 */
export const READY_LABEL = "krt-test/ready";

export interface TestNode {
  name: string;
  /** Ends the loop after its current round. */
  stop(): Promise<void>;
}

export interface TestNodeOptions {
  name?: string;
  /** Pause between rounds; default 100 ms. */
  intervalMs?: number;
  /** Receives one line per failed request (the loop keeps going). */
  log?: (line: string) => void;
}

/** Creates the Node (Ready) and starts the loop; resolves once the node is registered. */
export async function startTestNode(
  client: KubeClient,
  options: TestNodeOptions = {},
): Promise<TestNode> {
  const name = options.name ?? "krt-test-node";
  const intervalMs = options.intervalMs ?? 100;
  const log = options.log ?? (() => {});
  await registerNode(client, name);

  let stopped = false;
  let podIp = 0;
  const nextIp = () => `10.244.${Math.floor(++podIp / 250) % 250}.${(podIp % 250) + 2}`;

  const round = async () => {
    const unbound = await list(client, "/api/v1/pods?fieldSelector=spec.nodeName%3D");
    for (const pod of unbound) {
      if (pod.metadata.deletionTimestamp) continue;
      await checked(log, `binding ${podName(pod)}`, bind(client, pod, name));
    }
    const bound = await list(
      client,
      `/api/v1/pods?fieldSelector=${encodeURIComponent(`spec.nodeName=${name}`)}`,
    );
    for (const pod of bound) {
      if (pod.metadata.deletionTimestamp) {
        // The API server keeps a bound pod until its kubelet confirms that
        // the containers stopped: a delete with grace period 0.
        await checked(
          log,
          `confirming the deletion of ${podName(pod)}`,
          client.request("DELETE", podPath(pod), { gracePeriodSeconds: 0 }),
        );
      } else if ((pod.status?.phase ?? "Pending") === "Pending") {
        await checked(
          log,
          `reporting ${podName(pod)} running`,
          client.request(
            "PATCH",
            `${podPath(pod)}/status`,
            { status: runningStatus(pod, nextIp()) },
            "application/merge-patch+json",
          ),
        );
      }
    }
  };

  const loop = (async () => {
    while (!stopped) {
      // The API server may be restarting (fault tests): try again next round.
      await round().catch((error) => log(`test node round failed: ${(error as Error).message}`));
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();

  return {
    name,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function registerNode(client: KubeClient, name: string): Promise<void> {
  const created = await client.request("POST", "/api/v1/nodes", {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name, labels: { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" } },
  });
  if (created.status !== 201 && created.status !== 409) {
    throw new Error(`Cannot register the test node "${name}": HTTP ${created.status}`);
  }
  const now = rfc3339(new Date());
  const patched = await client.request(
    "PATCH",
    `/api/v1/nodes/${encodeURIComponent(name)}/status`,
    {
      status: {
        capacity: { cpu: "64", memory: "256Gi", pods: "1000" },
        allocatable: { cpu: "64", memory: "256Gi", pods: "1000" },
        addresses: [{ type: "InternalIP", address: "127.0.0.1" }, {
          type: "Hostname",
          address: name,
        }],
        conditions: [{
          type: "Ready",
          status: "True",
          reason: "KubeletReady",
          message: "test node plays the kubelet",
          lastHeartbeatTime: now,
          lastTransitionTime: now,
        }],
      },
    },
    "application/merge-patch+json",
  );
  if (patched.status !== 200) {
    throw new Error(`Cannot mark the test node "${name}" Ready: HTTP ${patched.status}`);
  }
}

function bind(client: KubeClient, pod: any, node: string) {
  return client.request("POST", `${podPath(pod)}/binding`, {
    apiVersion: "v1",
    kind: "Binding",
    metadata: { name: pod.metadata.name, namespace: pod.metadata.namespace },
    target: { apiVersion: "v1", kind: "Node", name: node },
  });
}

/** The status a kubelet reports once every container started (and, unless opted out, is ready). */
function runningStatus(pod: any, ip: string) {
  const ready = pod.metadata.labels?.[READY_LABEL] !== "false";
  const now = rfc3339(new Date());
  const condition = (type: string, ok: boolean) => ({
    type,
    status: ok ? "True" : "False",
    lastTransitionTime: now,
    ...(ok ? {} : { reason: "ContainersNotReady", message: `${READY_LABEL} is "false"` }),
  });
  const id = () => `containerd://${crypto.randomUUID().replaceAll("-", "")}`;
  return {
    phase: "Running",
    hostIP: "127.0.0.1",
    hostIPs: [{ ip: "127.0.0.1" }],
    podIP: ip,
    podIPs: [{ ip }],
    startTime: now,
    conditions: [
      condition("PodReadyToStartContainers", true),
      condition("Initialized", true),
      condition("ContainersReady", ready),
      condition("Ready", ready),
      condition("PodScheduled", true),
    ],
    initContainerStatuses: (pod.spec.initContainers ?? []).map((c: any) => ({
      name: c.name,
      image: c.image,
      imageID: "",
      containerID: id(),
      ready: true,
      started: false,
      restartCount: 0,
      state: {
        terminated: { exitCode: 0, reason: "Completed", startedAt: now, finishedAt: now },
      },
    })),
    containerStatuses: pod.spec.containers.map((c: any) => ({
      name: c.name,
      image: c.image,
      imageID: "",
      containerID: id(),
      ready,
      started: true,
      restartCount: 0,
      state: { running: { startedAt: now } },
    })),
  };
}

async function list(client: KubeClient, path: string): Promise<any[]> {
  const response = await client.request("GET", path);
  if (response.status !== 200) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return (response.json as { items: any[] }).items;
}

/** Logs a failed request; conflicts and vanished pods are normal and retried next round. */
async function checked(
  log: (line: string) => void,
  what: string,
  response: Promise<{ status: number }>,
): Promise<void> {
  const { status } = await response;
  if (status >= 300 && status !== 404 && status !== 409) log(`test node ${what}: HTTP ${status}`);
}

function podPath(pod: any): string {
  return `/api/v1/namespaces/${encodeURIComponent(pod.metadata.namespace)}/pods/${
    encodeURIComponent(pod.metadata.name)
  }`;
}

function podName(pod: any): string {
  return `pod ${pod.metadata.namespace}/${pod.metadata.name}`;
}

/** Kubernetes' time format: RFC 3339 in whole seconds. */
function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}
