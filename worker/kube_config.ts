/**
 * How the worker reaches the API server: a kubeconfig file, or the in-cluster
 * ServiceAccount (token, CA, KUBERNETES_SERVICE_HOST/PORT). Produces a Deno
 * HTTP client (cluster CA, client certificate) and an Authorization header
 * that re-reads token files, so rotated ServiceAccount tokens are picked up.
 * The kubeconfig is the operator's; its secrets never reach a log or an error.
 *
 * Supported: token, tokenFile, client certificates (inline or files). Refused
 * with a clear error: exec plugins and auth providers (the worker may not run
 * processes), basic auth, insecure-skip-tls-verify, proxy-url, tls-server-name.
 */

import { parse } from "yaml";
import { AppError, describeError } from "../shared/errors.ts";

/** What kube_api.ts needs to talk to the API server. */
export interface KubeAccess {
  server: string;
  httpClient: Deno.HttpClient;
  /** The current Authorization header value, if the user authenticates by token. */
  authorization(): Promise<string | undefined>;
  /** For the startup log: server, context and auth kind, never credentials. */
  description: Record<string, string>;
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
      cached = (await readText(path, "token file")).trim();
      readAt = now();
    }
    return cached;
  };
}

function decodeBase64(data: string): string {
  return new TextDecoder().decode(
    Uint8Array.from(atob(data.replace(/\s+/g, "")), (c) => c.charCodeAt(0)),
  );
}

type Named<T> = { name?: string } & T;
interface KubeconfigFile {
  "current-context"?: string;
  contexts?: Named<{ context?: { cluster?: string; user?: string } }>[];
  clusters?: Named<{ cluster?: Record<string, unknown> }>[];
  users?: Named<{ user?: Record<string, unknown> }>[];
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : path.slice(0, i);
}

function resolvePath(base: string, path: string): string {
  return path.startsWith("/") ? path : `${base}/${path}`;
}

async function fromKubeconfig(path: string, now: () => number): Promise<KubeAccess> {
  let doc: KubeconfigFile;
  try {
    doc = parse(await readText(path, "kubeconfig")) as KubeconfigFile;
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw kubeError(`Cannot parse kubeconfig ${path}: ${describeError(err)}`, err);
  }
  const base = dirOf(path);
  const contextName = doc?.["current-context"];
  const context = doc?.contexts?.find((c) => c.name === contextName)?.context;
  if (!contextName || !context) {
    const names = (doc?.contexts ?? []).map((c) => c.name).join(", ") || "none";
    throw kubeError(
      `Kubeconfig ${path} has no usable current-context (contexts: ${names}): set current-context`,
    );
  }
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster;
  const user = doc.users?.find((u) => u.name === context.user)?.user ?? {};
  if (!cluster || typeof cluster.server !== "string") {
    throw kubeError(`Kubeconfig ${path}: context ${contextName} names no cluster with a server`);
  }
  if (cluster["insecure-skip-tls-verify"]) {
    throw kubeError(
      "The kubeconfig sets insecure-skip-tls-verify, which the worker refuses: give the cluster's CA",
    );
  }
  for (const unsupported of ["proxy-url", "tls-server-name"]) {
    if (cluster[unsupported]) {
      throw kubeError(`The kubeconfig sets ${unsupported}, which the worker does not support`);
    }
  }
  for (const unsupported of ["exec", "auth-provider"]) {
    if (user[unsupported]) {
      throw kubeError(
        `The kubeconfig user authenticates with ${unsupported}, which the worker cannot use (it may not run processes): use a token, tokenFile or client certificate`,
      );
    }
  }
  if (user.username || user.password) {
    throw kubeError(
      "The kubeconfig user uses basic auth, which Kubernetes removed: use a token or client certificate",
    );
  }

  const ca = typeof cluster["certificate-authority-data"] === "string"
    ? decodeBase64(cluster["certificate-authority-data"])
    : typeof cluster["certificate-authority"] === "string"
    ? await readText(resolvePath(base, cluster["certificate-authority"]), "certificate-authority")
    : undefined;
  const pemFrom = async (dataKey: string, fileKey: string) =>
    typeof user[dataKey] === "string"
      ? decodeBase64(user[dataKey] as string)
      : typeof user[fileKey] === "string"
      ? await readText(resolvePath(base, user[fileKey] as string), fileKey)
      : undefined;
  const cert = await pemFrom("client-certificate-data", "client-certificate");
  const key = await pemFrom("client-key-data", "client-key");
  if ((cert === undefined) !== (key === undefined)) {
    throw kubeError(
      "The kubeconfig user has a client certificate without its key, or a key without its certificate",
    );
  }
  const readToken = typeof user.token === "string"
    ? () => Promise.resolve(user.token as string)
    : typeof user.tokenFile === "string"
    ? tokenFile(resolvePath(base, user.tokenFile), now)
    : undefined;
  if (!readToken && !cert) {
    throw kubeError("The kubeconfig user has no token, tokenFile or client certificate");
  }
  if (readToken) await readToken(); // fail at startup, not on the first event
  return {
    server: cluster.server.replace(/\/+$/, ""),
    httpClient: Deno.createHttpClient({
      caCerts: ca ? [ca] : undefined,
      ...(cert && key ? { cert, key } : {}),
    }),
    authorization: async () => readToken ? `Bearer ${await readToken()}` : undefined,
    description: {
      server: cluster.server,
      source: "kubeconfig",
      context: contextName,
      auth: cert ? "client certificate" : "token",
    },
  };
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
  const server = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const ca = await readText(`${options.serviceAccountDir}/ca.crt`, "service-account CA");
  const readToken = tokenFile(`${options.serviceAccountDir}/token`, options.now);
  await readToken();
  return {
    server,
    httpClient: Deno.createHttpClient({ caCerts: [ca] }),
    authorization: async () => `Bearer ${await readToken()}`,
    description: {
      server,
      source: "in-cluster",
      context: "in-cluster",
      auth: "service-account token",
    },
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
