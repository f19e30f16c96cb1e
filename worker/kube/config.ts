/**
 * How the worker reaches the API server: a kubeconfig file, or the in-cluster
 * ServiceAccount (token, CA, KUBERNETES_SERVICE_HOST/PORT). Produces a Deno
 * HTTP client (cluster CA, client certificate) and an Authorization header
 * that re-reads token files, so rotated ServiceAccount tokens are picked up.
 * The kubeconfig is the operator's; its secrets never reach a log or an error.
 * Every value is checked here at startup (shape in kubeconfig_yaml.ts; base64,
 * PEM and tokens in credentials.ts; the server URL below), so a malformed
 * input stops the worker with one ERR_KUBE line naming the field by position.
 *
 * Supported: token, tokenFile, client certificates (inline or files). Refused
 * with a clear error: exec plugins and auth providers (the worker may not run
 * processes), basic auth, insecure-skip-tls-verify, proxy-url, tls-server-name.
 */

import { AppError } from "../../shared/errors.ts";
import { describeError } from "../../lib/error_text.ts";
import { isLoopbackHost } from "../../lib/setting_values.ts";
import {
  checkPem,
  checkToken,
  createTlsClient,
  decodeBase64Field,
  type PemKind,
} from "./credentials.ts";
import {
  type Entry,
  fieldsOf,
  findNamed,
  type Mapping,
  parseKubeconfigYaml,
} from "./kubeconfig_yaml.ts";

/** What kube/api.ts needs to talk to the API server. */
export interface KubeAccess {
  server: string;
  httpClient: Deno.HttpClient;
  /** The current Authorization header value, if the user authenticates by token. */
  authorization(): Promise<string | undefined>;
  /** For the startup log: server, context and auth kind, never credentials. */
  description: Record<string, string>;
  /** The CA bundle (PEM) the client trusts; undefined means the system roots. Public, not secret. */
  caPem?: string;
}

/** Where the in-cluster ServiceAccount files live. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
/** How long a token read from a file is reused before it is read again. */
const TOKEN_REREAD_MS = 60_000;

/** Options for loadKubeAccess. */
export interface KubeAccessOptions {
  /** Empty means in-cluster. */
  kubeconfig: string;
  serviceAccountDir?: string;
  env?: (name: string) => string | undefined;
  now?: () => number;
}

function kubeError(message: string, cause?: unknown): AppError {
  return new AppError("ERR_KUBE", message, { cause });
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    const hint = err instanceof Deno.errors.NotCapable
      ? " (the worker may only read its kubeconfig and the files it names: run with --allow-read=<those files>, or mount them under /etc/kuberollouttrigger/)"
      : "";
    throw kubeError(`Cannot read ${what} ${path}: ${describeError(err)}${hint}`, err);
  }
}

/** A bearer token read from a file, re-read once a minute. */
function tokenFile(path: string, now: () => number): () => Promise<string> {
  let cached = "";
  let readAt = -Infinity;
  return async () => {
    if (now() - readAt >= TOKEN_REREAD_MS) {
      cached = checkToken((await readText(path, "token file")).trim(), `Token file ${path}`);
      readAt = now();
    }
    return cached;
  };
}

/**
 * The API server's base URL, without a trailing slash. It is logged at startup
 * and prefixed to every request, so it must be a plain https URL (http only to
 * this machine, e.g. `kubectl proxy`). Security: a URL with a user or password
 * is refused without quoting it.
 */
function checkServer(raw: string, field: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw kubeError(`${field} is not a URL (expected https://<host>:<port>)`);
  }
  if (url.username || url.password) {
    throw kubeError(`${field} carries a user or password in the URL; the worker refuses it`);
  }
  const loopback = isLoopbackHost(url.hostname);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) {
    throw kubeError(
      `${field} must be an https:// URL (http:// only to this machine): the token must not travel in clear text`,
    );
  }
  if (url.search || url.hash) throw kubeError(`${field} must not have a query or fragment`);
  return raw.trim().replace(/\/+$/, "");
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : path.slice(0, i);
}

function resolvePath(base: string, path: string): string {
  return path.startsWith("/") ? path : `${base}/${path}`;
}

async function fromKubeconfig(path: string, now: () => number): Promise<KubeAccess> {
  const doc = parseKubeconfigYaml(await readText(path, "kubeconfig"), path);
  const { contextName, cluster, user, server } = selectContext(doc, path);
  refuseUnsupported(cluster.body, user?.body ?? {});
  const base = dirOf(path);
  const ca = await pemField(cluster, {
    base,
    data: "certificate-authority-data",
    file: "certificate-authority",
    kind: "certificate",
  });
  const cert = await pemField(user, {
    base,
    data: "client-certificate-data",
    file: "client-certificate",
    kind: "certificate",
  });
  const key = await pemField(user, {
    base,
    data: "client-key-data",
    file: "client-key",
    kind: "private key",
  });
  if ((cert === undefined) !== (key === undefined)) {
    throw kubeError(
      "The kubeconfig user has a client certificate without its key, or a key without its certificate",
    );
  }
  const readToken = tokenSource(user, { base, now });
  if (!readToken && !cert) {
    throw kubeError("The kubeconfig user has no token, tokenFile or client certificate");
  }
  if (readToken) await readToken(); // fail at startup, not on the first event
  return {
    server,
    httpClient: createTlsClient({ ca, cert, key }),
    authorization: async () => readToken ? `Bearer ${await readToken()}` : undefined,
    description: {
      server,
      source: "kubeconfig",
      context: contextName,
      auth: cert ? "client certificate" : "token",
    },
    caPem: ca?.pem,
  };
}

/** The current context, its cluster (which must have a server) and its user. */
function selectContext(doc: Mapping, path: string) {
  const top = fieldsOf(doc, `Kubeconfig ${path}:`);
  const contextName = top.text("current-context");
  const context = contextName
    ? findNamed(doc, path, "contexts", "context", contextName)
    : undefined;
  if (!contextName || !context) {
    const names = top.list("contexts").map((c) => c.name).filter((n) => typeof n === "string")
      .map((n) => (n as string).slice(0, 63)).join(", ") || "none";
    throw kubeError(
      `Kubeconfig ${path} has no usable current-context (contexts: ${names}): set current-context`,
    );
  }
  const clusterName = context.fields.text("cluster");
  const userName = context.fields.text("user");
  const cluster = clusterName === undefined
    ? undefined
    : findNamed(doc, path, "clusters", "cluster", clusterName);
  const user = userName === undefined ? undefined : findNamed(doc, path, "users", "user", userName);
  const rawServer = cluster?.fields.text("server");
  if (!cluster || !rawServer) {
    throw kubeError(`Kubeconfig ${path}: context ${contextName} names no cluster with a server`);
  }
  const server = checkServer(rawServer, `${cluster.where}.server`);
  return { contextName, cluster, user, server };
}

/** Refuses what the worker cannot do safely (or at all), saying what to change. */
function refuseUnsupported(clusterBody: Mapping, userBody: Mapping): void {
  const present = (body: Mapping, key: string) =>
    body[key] !== undefined && body[key] !== null && body[key] !== false;
  if (present(clusterBody, "insecure-skip-tls-verify")) {
    throw kubeError(
      "The kubeconfig sets insecure-skip-tls-verify, which the worker refuses: give the cluster's CA",
    );
  }
  for (const unsupported of ["proxy-url", "tls-server-name"]) {
    if (present(clusterBody, unsupported)) {
      throw kubeError(`The kubeconfig sets ${unsupported}, which the worker does not support`);
    }
  }
  for (const unsupported of ["exec", "auth-provider"]) {
    if (present(userBody, unsupported)) {
      throw kubeError(
        `The kubeconfig user authenticates with ${unsupported}, which the worker cannot use (it may not run processes): use a token, tokenFile or client certificate`,
      );
    }
  }
  if (present(userBody, "username") || present(userBody, "password")) {
    throw kubeError(
      "The kubeconfig user uses basic auth, which Kubernetes removed: use a token or client certificate",
    );
  }
}

/**
 * A checked PEM from the entry's inline `data` field, or else from its `file`
 * (relative to the kubeconfig's folder); undefined when neither is set.
 */
async function pemField(
  entry: Entry | undefined,
  keys: { base: string; data: string; file: string; kind: PemKind },
) {
  if (!entry) return undefined;
  const data = entry.fields.text(keys.data);
  if (data !== undefined) {
    const field = `${entry.where}.${keys.data}`;
    return { pem: checkPem(decodeBase64Field(data, field), field, keys.kind), field };
  }
  const file = entry.fields.text(keys.file);
  if (file === undefined) return undefined;
  const resolved = resolvePath(keys.base, file);
  const field = `${entry.where}.${keys.file} (${resolved})`;
  return { pem: checkPem(await readText(resolved, keys.file), field, keys.kind), field };
}

/** The user's token: inline (checked now), or a tokenFile re-read as it rotates. */
function tokenSource(
  user: Entry | undefined,
  { base, now }: { base: string; now: () => number },
): (() => Promise<string>) | undefined {
  // An empty token counts as none, as in client-go.
  const token = user?.fields.text("token") || undefined;
  const tokenPath = user?.fields.text("tokenFile") || undefined;
  if (token !== undefined) {
    checkToken(token, `${user?.where}.token`);
    return () => Promise.resolve(token);
  }
  return tokenPath !== undefined ? tokenFile(resolvePath(base, tokenPath), now) : undefined;
}

async function inCluster(
  options: Required<Omit<KubeAccessOptions, "kubeconfig">>,
): Promise<KubeAccess> {
  const host = options.env("KUBERNETES_SERVICE_HOST");
  const port = options.env("KUBERNETES_SERVICE_PORT");
  if (!host || !port) {
    throw kubeError(
      "KUBECONFIG is empty and KUBERNETES_SERVICE_HOST/PORT are unset: not running in a cluster; set KUBECONFIG",
    );
  }
  const server = checkServer(
    `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    "KUBERNETES_SERVICE_HOST/PORT",
  );
  const caPath = `${options.serviceAccountDir}/ca.crt`;
  const caField = `Service-account CA ${caPath}`;
  const ca = checkPem(await readText(caPath, "service-account CA"), caField, "certificate");
  const readToken = tokenFile(`${options.serviceAccountDir}/token`, options.now);
  await readToken();
  return {
    server,
    httpClient: createTlsClient({ ca: { pem: ca, field: caField } }),
    authorization: async () => `Bearer ${await readToken()}`,
    description: {
      server,
      source: "in-cluster",
      context: "in-cluster",
      auth: "service-account token",
    },
    caPem: ca,
  };
}

/** Loads API access; throws ERR_KUBE saying what to fix when that is impossible. */
export async function loadKubeAccess(options: KubeAccessOptions): Promise<KubeAccess> {
  const now = options.now ?? Date.now;
  if (options.kubeconfig) return await fromKubeconfig(options.kubeconfig, now);
  return await inCluster({
    serviceAccountDir: options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR,
    env: options.env ?? ((name) => Deno.env.get(name)),
    now,
  });
}
