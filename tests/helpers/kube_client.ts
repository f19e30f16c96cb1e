// A minimal Kubernetes API client for tests: fetch with the cluster's CA and
// a bearer token, server-side apply of YAML, namespace clean-up, and
// kubeconfig files for the processes under test.
//
// Trusts: the API server it was given. Does not trust: its responses (checked
// before use). Test-only code; nothing here enters the product.

import { parseAllDocuments } from "yaml";

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
        " add it to RESOURCES in tests/helpers/kube_client.ts",
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
      // The test controller-manager runs no namespace controller, so nothing
      // else removes the "kubernetes" finalizer: the namespace would stay
      // Terminating forever.
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
