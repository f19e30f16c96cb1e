// A real Kubernetes control plane for tests (envtest-style): etcd plus
// kube-apiserver on loopback ports, with generated certificates, RBAC,
// service-account tokens and the default admission chain (PodSecurity,
// ValidatingAdmissionPolicy). No controller-manager or scheduler runs, so
// Deployments never get ReplicaSets or Pods and namespaces are not emptied by
// a controller (deleteNamespace() does that part itself).
//
// Trusts: the binaries found by tests/controlplane/ensure.sh and the servers it
// starts. Does not trust: API responses (checked before use). Test-only code;
// nothing here enters the product.

import { parseAllDocuments } from "yaml";

/** How tests reach a control plane: what tests/run.ts exports as KRT_TEST_* env vars. */
export interface ControlPlaneInfo {
  /** `https://127.0.0.1:<port>` */
  server: string;
  caPem: string;
  /** Bearer token of a `system:masters` user. */
  adminToken: string;
  adminKubeconfigPath: string;
}

/** A control plane started by this process. */
export interface ControlPlane extends ControlPlaneInfo {
  /** The CA certificate as a file, for KRT_TEST_KUBE_CA_FILE. */
  caFile: string;
  /** Stops kube-apiserver then etcd (SIGTERM, SIGKILL after a bound) and removes the temp dir. */
  stop(): Promise<void>;
  /** Stops and starts kube-apiserver only, on the same port, and waits for /readyz. */
  restartApiServer(): Promise<void>;
}

export interface StartControlPlaneOptions {
  /** Folder with `kube-apiserver` and `etcd` (see ensureControlPlaneAssets()). */
  assetsDir: string;
  /** Parent of the temp dir; default the system temp dir. */
  workDir?: string;
  /** Receives every output line of etcd and kube-apiserver, prefixed with the process name. */
  log?: (line: string) => void;
  /** Bound on each readiness wait; default 90 s. */
  readyTimeoutMs?: number;
}

/** The env var names tests/run.ts exports for one shared control plane. */
export const CONTROL_PLANE_ENV = {
  server: "KRT_TEST_KUBE_SERVER",
  caFile: "KRT_TEST_KUBE_CA_FILE",
  token: "KRT_TEST_KUBE_TOKEN",
  kubeconfig: "KRT_TEST_KUBECONFIG",
} as const;

const ENSURE_SCRIPT = decodeURIComponent(
  new URL("../controlplane/ensure.sh", import.meta.url).pathname,
);
const STOP_GRACE_MS = 10_000;
const SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local";

// ---------------------------------------------------------------------------
// Binaries

/** Runs tests/controlplane/ensure.sh (progress on stderr) and returns the assets folder. */
export async function ensureControlPlaneAssets(): Promise<string> {
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
      `Cannot provide kube-apiserver, etcd and kubectl: ${ENSURE_SCRIPT} exited with ${output.code}` +
        " (its reason is on stderr above)",
    );
  }
  return last;
}

// ---------------------------------------------------------------------------
// Processes

class ManagedProcess {
  readonly #tail: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<unknown>;
  readonly status: Promise<Deno.CommandStatus>;
  exited = false;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    log: ((line: string) => void) | undefined,
  ) {
    this.#child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // Security: a clean environment, so ETCD_* or proxy variables of the
      // developer's shell cannot change what the tests run against.
      clearEnv: true,
      env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    }).spawn();
    const onLine = (line: string) => {
      this.#tail.push(line);
      if (this.#tail.length > 60) this.#tail.shift();
      log?.(`${name}: ${line}`);
    };
    this.#pumps = Promise.all([
      pumpLines(this.#child.stdout, onLine),
      pumpLines(this.#child.stderr, onLine),
    ]);
    this.status = this.#child.status.then((status) => {
      this.exited = true;
      return status;
    });
  }

  tail(): string {
    return this.#tail.join("\n");
  }

  /** Synchronous last resort for the unload handler. */
  killNow(): void {
    if (this.exited) return;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }

  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (!this.exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // Exited between the check and the signal.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        this.status.then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), graceMs)),
      ]);
      clearTimeout(timer);
      if (timedOut) this.killNow();
    }
    await this.status;
    await this.#pumps;
  }
}

async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  }
  if (rest !== "") onLine(rest);
}

// ---------------------------------------------------------------------------
// Start

/** Starts etcd and kube-apiserver on free 127.0.0.1 ports and waits until /readyz is ok. */
export async function startControlPlane(options: StartControlPlaneOptions): Promise<ControlPlane> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  for (const binary of ["etcd", "kube-apiserver"]) {
    const path = `${options.assetsDir}/${binary}`;
    const info = await Deno.stat(path).catch(() => undefined);
    if (!info?.isFile) throw new Error(`Cannot start the control plane: ${path} does not exist`);
  }
  if (options.workDir !== undefined) await Deno.mkdir(options.workDir, { recursive: true });
  const dir = await Deno.realPath(
    await Deno.makeTempDir({ dir: options.workDir, prefix: "krt-controlplane-" }),
  );
  const processes: ManagedProcess[] = [];
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
    // kube-apiserver first: it needs etcd to shut down cleanly.
    for (const p of [...processes].reverse()) await p.stop();
    processes.length = 0;
    globalThis.removeEventListener("unload", onUnload);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  try {
    const [etcdClientPort, etcdPeerPort, apiPort] = freePorts(3);
    const certs = await generateCertificates(dir);
    const adminToken = randomToken();
    // Static token file: token,user,uid,"groups" (kube-apiserver --token-auth-file).
    await Deno.writeTextFile(
      `${dir}/tokens.csv`,
      `${adminToken},krt-test-admin,krt-test-admin,"system:masters"\n`,
      { mode: 0o600 },
    );

    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
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
    await waitFor("etcd", etcd, readyTimeoutMs, async () => {
      const response = await fetch(`${etcdUrl}/health`).catch(() => undefined);
      const body = await response?.text();
      return response?.status === 200 && body !== undefined && body.includes('"health":"true"');
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
    const client = createKubeClient({ server, caPem: certs.caPem, token: adminToken });
    const startApiServer = async () => {
      const apiserver = new ManagedProcess("kube-apiserver", apiPath, apiArgs, options.log);
      processes.push(apiserver);
      await waitFor("kube-apiserver", apiserver, readyTimeoutMs, async () => {
        const response = await client.request("GET", "/readyz").catch(() => undefined);
        return response?.status === 200;
      });
      return apiserver;
    };
    let apiserver = await startApiServer();

    const adminKubeconfigPath = `${dir}/admin.kubeconfig`;
    await writeKubeconfig(adminKubeconfigPath, { server, caPem: certs.caPem, token: adminToken });

    return {
      server,
      caPem: certs.caPem,
      caFile: certs.caCert,
      adminToken,
      adminKubeconfigPath,
      stop: async () => {
        client.close();
        await stopAll();
      },
      restartApiServer: async () => {
        await apiserver.stop();
        processes.splice(processes.indexOf(apiserver), 1);
        apiserver = await startApiServer();
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** Polls `ready` every 250 ms until true, the process exits, or the bound passes. */
async function waitFor(
  name: string,
  process: ManagedProcess,
  timeoutMs: number,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (process.exited) {
      const status = await process.status;
      throw new Error(
        `${name} exited with code ${status.code} before it was ready; last output:\n${process.tail()}`,
      );
    }
    if (await ready()) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${name} was not ready after ${timeoutMs} ms; last output:\n${process.tail()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Holds all listeners open until each port is picked, so the ports are distinct. */
function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface Certificates {
  caPem: string;
  caCert: string;
  servingCert: string;
  servingKey: string;
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

/** A one-day CA, a serving cert for 127.0.0.1/localhost and an RSA service-account key pair. */
async function generateCertificates(dir: string): Promise<Certificates> {
  const p = (name: string) => `${dir}/${name}`;
  await Deno.writeTextFile(
    p("serving.ext"),
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "",
    ].join("\n"),
  );
  const ec = "ec_paramgen_curve:prime256v1";
  await openssl(argv`req -x509 -newkey ec -pkeyopt ${ec} -nodes -days 1
    -keyout ${p("ca.key")} -out ${p("ca.crt")} -subj /CN=kuberollouttrigger-test-ca
    -addext basicConstraints=critical,CA:TRUE
    -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature`);
  await openssl(argv`req -newkey ec -pkeyopt ${ec} -nodes
    -keyout ${p("serving.key")} -out ${p("serving.csr")} -subj /CN=kube-apiserver`);
  await openssl(argv`x509 -req -in ${p("serving.csr")} -days 1 -extfile ${p("serving.ext")}
    -CA ${p("ca.crt")} -CAkey ${p("ca.key")} -CAcreateserial -out ${p("serving.crt")}`);
  await openssl(argv`genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${p("sa.key")}`);
  await openssl(argv`pkey -in ${p("sa.key")} -pubout -out ${p("sa.pub")}`);
  return {
    caPem: await Deno.readTextFile(p("ca.crt")),
    caCert: p("ca.crt"),
    servingCert: p("serving.crt"),
    servingKey: p("serving.key"),
    serviceAccountKey: p("sa.key"),
    serviceAccountPublicKey: p("sa.pub"),
  };
}

/** An argument vector: literal text splits on whitespace, interpolated values stay whole. */
function argv(strings: TemplateStringsArray, ...values: string[]): string[] {
  const args: string[] = [];
  strings.forEach((text, i) => {
    args.push(...text.split(/\s+/).filter((part) => part !== ""));
    if (i < values.length) args.push(values[i]);
  });
  return args;
}

async function openssl(args: string[]): Promise<void> {
  const output = await new Deno.Command("openssl", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output().catch((error) => {
    throw new Error("Cannot run openssl (needed to generate test certificates); install it", {
      cause: error,
    });
  });
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`openssl ${args[0]} failed with code ${output.code}: ${stderr}`);
  }
}

// ---------------------------------------------------------------------------
// Shared control plane from the environment

/** The control plane tests/run.ts exported, or undefined when KRT_TEST_KUBE_SERVER is unset. */
export function controlPlaneFromEnv(): ControlPlaneInfo | undefined {
  const values = {
    server: Deno.env.get(CONTROL_PLANE_ENV.server),
    caFile: Deno.env.get(CONTROL_PLANE_ENV.caFile),
    token: Deno.env.get(CONTROL_PLANE_ENV.token),
    kubeconfig: Deno.env.get(CONTROL_PLANE_ENV.kubeconfig),
  };
  if (values.server === undefined || values.server === "") return undefined;
  const missing = (Object.keys(values) as (keyof typeof values)[])
    .filter((key) => !values[key])
    .map((key) => CONTROL_PLANE_ENV[key]);
  if (missing.length > 0) {
    throw new Error(
      `${CONTROL_PLANE_ENV.server} is set but ${missing.join(", ")} is not; set all four`,
    );
  }
  return {
    server: values.server,
    caPem: Deno.readTextFileSync(values.caFile!),
    adminToken: values.token!,
    adminKubeconfigPath: values.kubeconfig!,
  };
}

/** The env vars that make controlPlaneFromEnv() return this control plane (for tests/run.ts). */
export function controlPlaneEnv(controlPlane: ControlPlane): Record<string, string> {
  return {
    [CONTROL_PLANE_ENV.server]: controlPlane.server,
    [CONTROL_PLANE_ENV.caFile]: controlPlane.caFile,
    [CONTROL_PLANE_ENV.token]: controlPlane.adminToken,
    [CONTROL_PLANE_ENV.kubeconfig]: controlPlane.adminKubeconfigPath,
  };
}

/**
 * controlPlaneFromEnv(), with the policy for when it is missing: under CI=true
 * it throws (a skipped integration test would hide a broken setup); elsewhere
 * it prints a loud skip reason and returns undefined.
 */
export function requireControlPlane(what = "this test"): ControlPlaneInfo | undefined {
  const info = controlPlaneFromEnv();
  if (info !== undefined) return info;
  const reason = `${CONTROL_PLANE_ENV.server} is not set: run the tests through` +
    " `deno task test` (tests/run.ts), which starts a Kubernetes control plane";
  if (Deno.env.get("CI") === "true") {
    throw new Error(`Cannot run ${what} under CI=true: ${reason}`);
  }
  console.error(`\n!!! SKIPPING ${what}: ${reason} !!!\n`);
  return undefined;
}

// ---------------------------------------------------------------------------
// Kubernetes API client for tests

export interface KubeConnection {
  server: string;
  caPem: string;
  token: string;
}

export interface KubeResponse {
  status: number;
  /** The parsed body, or null when it is not JSON. */
  json: unknown;
  /** Messages of the `Warning` response headers (RFC 7234 warn-text). */
  warnings: string[];
}

export interface ApplyResult {
  objects: { apiVersion: string; kind: string; name: string; namespace?: string }[];
  /** Every warning the server returned while applying, in document order. */
  warnings: string[];
}

export interface KubeClient {
  request(
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<KubeResponse>;
  createNamespace(name: string, labels?: Record<string, string>): Promise<KubeResponse>;
  /** Deletes what we create in namespaces, then the namespace (no namespace controller runs). */
  deleteNamespace(name: string): Promise<void>;
  createServiceAccount(namespace: string, name: string): Promise<KubeResponse>;
  /** A bound token from the TokenRequest API; the API's minimum lifetime is 600 s. */
  serviceAccountToken(namespace: string, name: string, seconds?: number): Promise<string>;
  /** Server-side apply (force) of every document of a multi-document YAML text. */
  applyYaml(
    yamlText: string,
    options: { fieldManager: string; namespace?: string },
  ): Promise<ApplyResult>;
  /** Releases the HTTP client. */
  close(): void;
}

/** A non-2xx answer from the API server; `json` is usually a metav1.Status. */
export class KubeApiError extends Error {
  constructor(readonly what: string, readonly status: number, readonly json: unknown) {
    const message = (json as { message?: unknown } | null)?.message;
    super(`${what} failed with HTTP ${status}${typeof message === "string" ? `: ${message}` : ""}`);
    this.name = "KubeApiError";
  }
}

interface Resource {
  plural: string;
  namespaced: boolean;
}

// REST paths of the kinds the tests apply, keyed by "apiVersion kind".
const RESOURCES: Record<string, Resource> = {
  "v1 Namespace": { plural: "namespaces", namespaced: false },
  "v1 ServiceAccount": { plural: "serviceaccounts", namespaced: true },
  "v1 ConfigMap": { plural: "configmaps", namespaced: true },
  "v1 Secret": { plural: "secrets", namespaced: true },
  "v1 Service": { plural: "services", namespaced: true },
  "apps/v1 Deployment": { plural: "deployments", namespaced: true },
  "rbac.authorization.k8s.io/v1 Role": { plural: "roles", namespaced: true },
  "rbac.authorization.k8s.io/v1 RoleBinding": { plural: "rolebindings", namespaced: true },
  "rbac.authorization.k8s.io/v1 ClusterRole": { plural: "clusterroles", namespaced: false },
  "rbac.authorization.k8s.io/v1 ClusterRoleBinding": {
    plural: "clusterrolebindings",
    namespaced: false,
  },
  "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy": {
    plural: "validatingadmissionpolicies",
    namespaced: false,
  },
  "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding": {
    plural: "validatingadmissionpolicybindings",
    namespaced: false,
  },
};

// What deleteNamespace() empties before removing the namespace finalizer.
const NAMESPACED_COLLECTIONS = [
  "/apis/apps/v1/namespaces/{ns}/deployments",
  "/apis/apps/v1/namespaces/{ns}/replicasets",
  "/api/v1/namespaces/{ns}/pods",
  "/api/v1/namespaces/{ns}/services",
  "/api/v1/namespaces/{ns}/configmaps",
  "/api/v1/namespaces/{ns}/secrets",
  "/api/v1/namespaces/{ns}/serviceaccounts",
  "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
  "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
];

/** The REST path of one object, from its apiVersion and kind. */
export function resourcePath(
  apiVersion: string,
  kind: string,
  name: string,
  namespace?: string,
): string {
  const resource = RESOURCES[`${apiVersion} ${kind}`];
  if (resource === undefined) {
    throw new Error(
      `No REST path known for apiVersion "${apiVersion}" kind "${kind}";` +
        " add it to RESOURCES in tests/helpers/control_plane.ts",
    );
  }
  const prefix = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  if (!resource.namespaced) return `${prefix}/${resource.plural}/${encodeURIComponent(name)}`;
  if (namespace === undefined || namespace === "") {
    throw new Error(`${kind} "${name}" needs a namespace`);
  }
  return `${prefix}/namespaces/${encodeURIComponent(namespace)}/${resource.plural}/` +
    encodeURIComponent(name);
}

/** Parses `Warning` header values: `299 - "text", 299 - "text"` (RFC 7234 §5.5). */
export function parseWarnings(header: string | null): string[] {
  if (header === null) return [];
  const warnings: string[] = [];
  for (const match of header.matchAll(/\d{3} \S+ "((?:[^"\\]|\\.)*)"/g)) {
    warnings.push(match[1].replace(/\\(.)/g, "$1"));
  }
  return warnings;
}

/** A minimal API client: fetch with the cluster CA and a bearer token. */
export function createKubeClient(connection: KubeConnection): KubeClient {
  const httpClient = Deno.createHttpClient({ caCerts: [connection.caPem] });
  const server = connection.server.replace(/\/+$/, "");

  const request = async (
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<KubeResponse> => {
    const headers: Record<string, string> = {
      authorization: `Bearer ${connection.token}`,
      accept: "application/json",
    };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === "string" ? body : JSON.stringify(body);
      headers["content-type"] = contentType ?? "application/json";
    }
    const response = await fetch(`${server}${path}`, {
      method,
      headers,
      body: payload,
      client: httpClient,
    });
    const text = await response.text();
    let json: unknown = null;
    if (response.headers.get("content-type")?.includes("json")) {
      json = text === "" ? null : JSON.parse(text);
    }
    return {
      status: response.status,
      json,
      warnings: parseWarnings(response.headers.get("warning")),
    };
  };

  const expectOk = async (
    what: string,
    responsePromise: Promise<KubeResponse>,
  ): Promise<KubeResponse> => {
    const response = await responsePromise;
    if (response.status < 200 || response.status > 299) {
      throw new KubeApiError(what, response.status, response.json);
    }
    return response;
  };

  const nsPath = (namespace: string) => `/api/v1/namespaces/${encodeURIComponent(namespace)}`;

  return {
    request,

    createNamespace: (name, labels = {}) =>
      expectOk(
        `Creating namespace "${name}"`,
        request("POST", "/api/v1/namespaces", {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: { name, labels },
        }),
      ),

    async deleteNamespace(name) {
      for (const collection of NAMESPACED_COLLECTIONS) {
        const path = collection.replace("{ns}", encodeURIComponent(name));
        const response = await request("DELETE", path);
        if (response.status !== 404 && (response.status < 200 || response.status > 299)) {
          throw new KubeApiError(`Deleting ${path}`, response.status, response.json);
        }
      }
      const deleted = await request("DELETE", nsPath(name));
      if (deleted.status === 404) return;
      if (deleted.status < 200 || deleted.status > 299) {
        throw new KubeApiError(`Deleting namespace "${name}"`, deleted.status, deleted.json);
      }
      // Without kube-controller-manager nothing removes the "kubernetes"
      // finalizer, so the namespace would stay Terminating forever.
      const finalized = await request("PUT", `${nsPath(name)}/finalize`, {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name },
        spec: { finalizers: [] },
      });
      if (finalized.status !== 404 && (finalized.status < 200 || finalized.status > 299)) {
        throw new KubeApiError(`Finalizing namespace "${name}"`, finalized.status, finalized.json);
      }
    },

    createServiceAccount: (namespace, name) =>
      expectOk(
        `Creating ServiceAccount "${namespace}/${name}"`,
        request("POST", `${nsPath(namespace)}/serviceaccounts`, {
          apiVersion: "v1",
          kind: "ServiceAccount",
          metadata: { name, namespace },
        }),
      ),

    async serviceAccountToken(namespace, name, seconds = 3600) {
      const response = await expectOk(
        `Requesting a token for ServiceAccount "${namespace}/${name}"`,
        request(
          "POST",
          `${nsPath(namespace)}/serviceaccounts/${encodeURIComponent(name)}/token`,
          {
            apiVersion: "authentication.k8s.io/v1",
            kind: "TokenRequest",
            spec: { expirationSeconds: seconds },
          },
        ),
      );
      const token = (response.json as { status?: { token?: unknown } } | null)?.status?.token;
      if (typeof token !== "string" || token === "") {
        throw new Error(`TokenRequest for "${namespace}/${name}" returned no status.token`);
      }
      return token;
    },

    async applyYaml(yamlText, options) {
      const result: ApplyResult = { objects: [], warnings: [] };
      for (const document of parseAllDocuments(yamlText)) {
        if (document.errors.length > 0) {
          throw new Error(`Cannot parse YAML: ${document.errors[0].message}`);
        }
        const object = document.toJS() as Record<string, unknown> | null;
        if (object === null || object === undefined) continue; // empty document
        const { apiVersion, kind } = object;
        const metadata = (object.metadata ?? {}) as Record<string, unknown>;
        if (typeof apiVersion !== "string" || typeof kind !== "string") {
          throw new Error("Cannot apply a YAML document without string apiVersion and kind");
        }
        if (typeof metadata.name !== "string" || metadata.name === "") {
          throw new Error(`Cannot apply a ${kind} without metadata.name`);
        }
        const name = metadata.name;
        const resource = RESOURCES[`${apiVersion} ${kind}`];
        let namespace: string | undefined;
        if (resource?.namespaced) {
          if (
            typeof metadata.namespace === "string" && options.namespace !== undefined &&
            metadata.namespace !== options.namespace
          ) {
            throw new Error(
              `${kind} "${name}" is in namespace "${metadata.namespace}", not "${options.namespace}"`,
            );
          }
          namespace = typeof metadata.namespace === "string"
            ? metadata.namespace
            : options.namespace;
          object.metadata = { ...metadata, namespace };
        }
        const query = `?fieldManager=${encodeURIComponent(options.fieldManager)}&force=true`;
        const path = resourcePath(apiVersion, kind, name, namespace) + query;
        const response = await expectOk(
          `Applying ${kind} "${namespace ? `${namespace}/` : ""}${name}"`,
          request("PATCH", path, object, "application/apply-patch+yaml"),
        );
        result.objects.push({ apiVersion, kind, name, ...(namespace ? { namespace } : {}) });
        result.warnings.push(...response.warnings);
      }
      return result;
    },

    close: () => httpClient.close(),
  };
}

/** Writes a kubeconfig (JSON, a subset of YAML) for one server and bearer token, mode 0600. */
export async function writeKubeconfig(path: string, connection: KubeConnection): Promise<void> {
  const caData = btoa(connection.caPem);
  const kubeconfig = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name: "krt-test",
      cluster: { server: connection.server, "certificate-authority-data": caData },
    }],
    users: [{ name: "krt-test", user: { token: connection.token } }],
    contexts: [{ name: "krt-test", context: { cluster: "krt-test", user: "krt-test" } }],
    "current-context": "krt-test",
  };
  await Deno.writeTextFile(path, JSON.stringify(kubeconfig, null, 2) + "\n", { mode: 0o600 });
}
