// Starts one real Kubernetes test cluster (envtest-style) on loopback ports:
// etcd, kube-apiserver with its own CA, RBAC, service-account tokens and the
// default admission chain (PodSecurity, ValidatingAdmissionPolicy), and, when
// asked, kube-controller-manager running the Deployment, ReplicaSet and
// ServiceAccount controllers plus a test node (./test_node.ts) that makes
// their pods run. No scheduler, no namespace controller and no garbage
// collector run: the test node binds pods, and deleteNamespace() empties
// namespaces itself.
//
// Trusts: the binaries found by tests/controlplane/ensure.sh and the servers it
// starts. Does not trust: API responses (checked before use). Test-only code;
// nothing here enters the product.

import { assertServersAllowed } from "./skip.ts";
import { generateCertificates, randomToken, writeTokenFile } from "./certificates.ts";
import { createKubeClient, writeKubeconfig } from "./kube_client.ts";
import { freePorts, ManagedProcess, waitUntilReady } from "./processes.ts";
import { startTestNode, type TestNode } from "./test_node.ts";

/** How tests reach a control plane: what tests/run.ts exports as KRT_TEST_* env vars. */
export interface ControlPlaneInfo {
  /** `https://127.0.0.1:<port>` */
  server: string;
  caPem: string;
  /** Bearer token of a `system:masters` user. */
  adminToken: string;
  adminKubeconfigPath: string;
  /** True when kube-controller-manager and a test node run, so Deployments roll out. */
  controllers?: boolean;
}

/** How long each part took to become ready, in ms (for the test log). */
export interface StartTimings {
  etcd: number;
  kubeApiserver: number;
  kubeControllerManager?: number;
  testNode?: number;
}

/** A control plane started by this process. */
export interface ControlPlane extends ControlPlaneInfo {
  /** The CA certificate as a file, for KRT_TEST_KUBE_CA_FILE. */
  caFile: string;
  timings: StartTimings;
  /** Stops the test node, kube-controller-manager, kube-apiserver then etcd (SIGTERM, SIGKILL after a bound) and removes the temp dir. */
  stop(): Promise<void>;
  /** Stops and starts kube-apiserver only, on the same port, and waits for /readyz. */
  restartApiServer(): Promise<void>;
}

export interface StartControlPlaneOptions {
  /** Folder with the binaries (see ensureControlPlaneAssets()). */
  assetsDir: string;
  /**
   * Also run kube-controller-manager (Deployment, ReplicaSet and ServiceAccount
   * controllers) and a test node, so Deployments roll out as in a real cluster.
   * Default false: the API server alone, where a Deployment never changes by itself.
   */
  controllers?: boolean;
  /** Parent of the temp dir; default the system temp dir. */
  workDir?: string;
  /** Receives every output line of the servers, prefixed with the process name. */
  log?: (line: string) => void;
  /** Bound on each readiness wait; default 90 s. */
  readyTimeoutMs?: number;
}

const ENSURE_SCRIPT = decodeURIComponent(
  new URL("../controlplane/ensure.sh", import.meta.url).pathname,
);
const SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local";
/** The controllers the tests rely on; the rest of a real cluster's set stays off. */
const CONTROLLERS = ["deployment", "replicaset", "serviceaccount"];

/** Runs tests/controlplane/ensure.sh (progress on stderr) and returns the assets folder. */
export async function ensureControlPlaneAssets(): Promise<string> {
  assertServersAllowed("the Kubernetes control plane");
  const output = await new Deno.Command("bash", {
    args: [ENSURE_SCRIPT],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const lines = new TextDecoder().decode(output.stdout).trim().split("\n");
  const last = lines[lines.length - 1] ?? "";
  if (!output.success || last === "") {
    throw new Error(
      "Cannot provide kube-apiserver, etcd, kube-controller-manager and kubectl:" +
        ` ${ENSURE_SCRIPT} exited with ${output.code} (its reason is on stderr above)`,
    );
  }
  return last;
}

/** Starts etcd and kube-apiserver (and the controllers) on free 127.0.0.1 ports; resolves once ready. */
export async function startControlPlane(options: StartControlPlaneOptions): Promise<ControlPlane> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  const binaries = ["etcd", "kube-apiserver"];
  if (options.controllers) binaries.push("kube-controller-manager");
  for (const binary of binaries) {
    const path = `${options.assetsDir}/${binary}`;
    const info = await Deno.stat(path).catch(() => undefined);
    if (!info?.isFile) throw new Error(`Cannot start the control plane: ${path} does not exist`);
  }
  if (options.workDir !== undefined) await Deno.mkdir(options.workDir, { recursive: true });
  const dir = await Deno.realPath(
    await Deno.makeTempDir({ dir: options.workDir, prefix: "krt-controlplane-" }),
  );
  const processes: ManagedProcess[] = [];
  let node: TestNode | undefined;
  // Safety net: if the test process ends without stop(), do not leave servers behind.
  const onUnload = () => {
    for (const p of processes) p.killNow();
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Best effort.
    }
  };
  globalThis.addEventListener("unload", onUnload);

  const stopAll = async () => {
    await node?.stop();
    // Clients before servers: kube-apiserver needs etcd to shut down cleanly.
    const order = ["kube-controller-manager", "kube-apiserver", "etcd"];
    for (const name of order) {
      for (const p of processes.filter((p) => p.name === name)) await p.stop();
    }
    processes.length = 0;
    globalThis.removeEventListener("unload", onUnload);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  const timings: StartTimings = { etcd: 0, kubeApiserver: 0 };
  const timed = async <T>(key: keyof StartTimings, run: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const value = await run();
    timings[key] = Math.round(performance.now() - started);
    return value;
  };

  let client: ReturnType<typeof createKubeClient> | undefined;
  try {
    const [etcdClientPort, etcdPeerPort, apiPort] = freePorts(3);
    const certs = await generateCertificates(dir);
    const adminToken = randomToken();
    const controllerManagerToken = randomToken();
    // The controller-manager's own identity: the bootstrap RBAC binds
    // system:kube-controller-manager to the user of that name; with
    // --use-service-account-credentials each controller then acts as its own
    // kube-system ServiceAccount with its bootstrap role, as in kubeadm clusters.
    await writeTokenFile(`${dir}/tokens.csv`, [
      { token: adminToken, user: "krt-test-admin", groups: ["system:masters"] },
      { token: controllerManagerToken, user: "system:kube-controller-manager", groups: [] },
    ]);

    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    await timed("etcd", async () => {
      const etcd = new ManagedProcess("etcd", `${options.assetsDir}/etcd`, [
        "--name=default",
        `--data-dir=${dir}/etcd`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=default=${peerUrl}`,
        "--unsafe-no-fsync=true",
        "--log-level=warn",
      ], options.log);
      processes.push(etcd);
      await waitUntilReady(etcd, readyTimeoutMs, async () => {
        const response = await fetch(`${etcdUrl}/health`).catch(() => undefined);
        const body = await response?.text();
        return response?.status === 200 && body !== undefined && body.includes('"health":"true"');
      });
    });

    const server = `https://127.0.0.1:${apiPort}`;
    const apiArgs = [
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${apiPort}`,
      `--cert-dir=${dir}/apiserver-certs`,
      `--tls-cert-file=${certs.servingCert}`,
      `--tls-private-key-file=${certs.servingKey}`,
      `--client-ca-file=${certs.caCert}`,
      `--etcd-servers=${etcdUrl}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      "--authorization-mode=Node,RBAC",
      `--token-auth-file=${dir}/tokens.csv`,
      "--anonymous-auth=false",
      `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
      `--service-account-key-file=${certs.serviceAccountPublicKey}`,
      `--service-account-signing-key-file=${certs.serviceAccountKey}`,
      `--api-audiences=${SERVICE_ACCOUNT_ISSUER}`,
      // --enable-admission-plugins is deliberately not passed: the default
      // chain already holds PodSecurity and ValidatingAdmissionPolicy.
      "--allow-privileged=true",
      "--profiling=false",
      "--endpoint-reconciler-type=none",
    ];
    const apiPath = `${options.assetsDir}/kube-apiserver`;
    const admin = createKubeClient({ server, caPem: certs.caPem, token: adminToken });
    client = admin;
    const startApiServer = async () => {
      const apiserver = new ManagedProcess("kube-apiserver", apiPath, apiArgs, options.log);
      processes.push(apiserver);
      await waitUntilReady(apiserver, readyTimeoutMs, async () => {
        const response = await admin.request("GET", "/readyz").catch(() => undefined);
        return response?.status === 200;
      });
      return apiserver;
    };
    let apiserver = await timed("kubeApiserver", startApiServer);

    const adminKubeconfigPath = `${dir}/admin.kubeconfig`;
    await writeKubeconfig(adminKubeconfigPath, { server, caPem: certs.caPem, token: adminToken });

    if (options.controllers) {
      const kubeconfig = `${dir}/controller-manager.kubeconfig`;
      await writeKubeconfig(kubeconfig, {
        server,
        caPem: certs.caPem,
        token: controllerManagerToken,
      });
      await timed("kubeControllerManager", async () => {
        const manager = new ManagedProcess(
          "kube-controller-manager",
          `${options.assetsDir}/kube-controller-manager`,
          [
            `--kubeconfig=${kubeconfig}`,
            "--leader-elect=false",
            `--controllers=${CONTROLLERS.join(",")}`,
            "--use-service-account-credentials=true",
            // No serving endpoint: readiness is observed through the API below.
            "--secure-port=0",
            "--profiling=false",
          ],
          options.log,
        );
        processes.push(manager);
        // The ServiceAccount controller creating "default" shows that the
        // controllers started and reach the API with their own credentials.
        await waitUntilReady(manager, readyTimeoutMs, async () => {
          const response = await admin
            .request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            .catch(() => undefined);
          return response?.status === 200;
        });
      });
      node = await timed("testNode", () => startTestNode(admin, { log: options.log }));
    }

    return {
      server,
      caPem: certs.caPem,
      caFile: certs.caCert,
      adminToken,
      adminKubeconfigPath,
      controllers: options.controllers === true,
      timings,
      stop: async () => {
        await stopAll();
        admin.close();
      },
      restartApiServer: async () => {
        await apiserver.stop();
        processes.splice(processes.indexOf(apiserver), 1);
        apiserver = await startApiServer();
      },
    };
  } catch (error) {
    await stopAll();
    client?.close();
    throw error;
  }
}

/** One line for the test log: how long each part took to start. */
export function describeTimings(timings: StartTimings): string {
  const parts = [`etcd ${timings.etcd} ms`, `kube-apiserver ${timings.kubeApiserver} ms`];
  if (timings.kubeControllerManager !== undefined) {
    parts.push(`kube-controller-manager ${timings.kubeControllerManager} ms`);
  }
  if (timings.testNode !== undefined) parts.push(`test node ${timings.testNode} ms`);
  return parts.join(", ");
}
