/**
 * How the worker reaches the API server: a kubeconfig (one file, or a
 * KUBECONFIG list merged as kubectl merges it, kubeconfig_merge.ts), or the
 * in-cluster ServiceAccount (token, CA, KUBERNETES_SERVICE_HOST/PORT).
 * Produces the credentials of each request: a Deno HTTP client (cluster CA,
 * client certificate) and an Authorization header, from a token file re-read
 * so rotated ServiceAccount tokens are picked up, or from an exec plugin
 * (exec_source.ts). The kubeconfig is the operator's; its secrets never reach
 * a log or an error. Every value is checked here at startup (shape in
 * kubeconfig_yaml.ts; base64, PEM and tokens in credentials.ts; the server URL
 * below; the plugin by running it once), so a malformed input stops the worker
 * with one ERR_KUBE line naming the field by position.
 *
 * Supported: token, tokenFile, client certificates (inline or files), exec
 * plugins (client.authentication.k8s.io v1 and v1beta1; only with Deno's run
 * permission for that command). Refused with a clear error: auth providers,
 * basic auth, impersonation, insecure-skip-tls-verify, proxy-url,
 * tls-server-name, and exec beside a token or client certificate.
 */

import { AppError } from "../../shared/errors.ts";
import { describeError } from "../../lib/error_text.ts";
import type { Logger } from "../../lib/log.ts";
import {
  checkPem,
  checkToken,
  createTlsClient,
  decodeBase64Field,
  type KubeCredentials,
  type PemKind,
} from "./credentials.ts";
import { type ExecPlugin, parseExecPlugin } from "./exec_credential.ts";
import {
  checkRunPermission,
  type PluginOutput,
  runExecPlugin,
  type RunPermission,
} from "./exec_plugin.ts";
import { createExecSource } from "./exec_source.ts";
import { loadKubeconfigs, type SourcedEntry } from "./kubeconfig_merge.ts";
import { checkServer, present, refuseUnsupported, selectContext } from "./kubeconfig_select.ts";

/** What kube/api.ts needs to talk to the API server. */
export interface KubeAccess {
  server: string;
  /** The HTTP client in use now (an exec plugin's new certificate replaces it: prefer credentials()). */
  readonly httpClient: Deno.HttpClient;
  /** The current Authorization header value, if the user authenticates by token. */
  authorization(): Promise<string | undefined>;
  /** The credentials for the next request. */
  credentials(): Promise<KubeCredentials>;
  /** Set for an exec plugin: after a 401 to `refused`, the plugin's next credentials. */
  renewCredentials?(refused: KubeCredentials): Promise<KubeCredentials>;
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
  /** A kubeconfig path, or a ':'-separated list merged as kubectl does; empty means in-cluster. */
  kubeconfig: string;
  serviceAccountDir?: string;
  env?: (name: string) => string | undefined;
  now?: () => number;
  /** Where an exec plugin's runs and stderr are logged. */
  logger?: Logger;
  /** Deno's run permission for a command; default Deno.permissions.query. */
  runPermission?: RunPermission;
  /** Runs an exec plugin once; default runExecPlugin (bounded in time and output). */
  runPlugin?: (plugin: ExecPlugin) => Promise<PluginOutput>;
}

/** What fromKubeconfig needs besides the kubeconfig. */
type KubeconfigOptions = Omit<KubeAccessOptions, "kubeconfig" | "serviceAccountDir" | "env"> & {
  now: () => number;
};

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

function resolvePath(base: string, path: string): string {
  return path.startsWith("/") ? path : `${base}/${path}`;
}

async function fromKubeconfig(value: string, options: KubeconfigOptions): Promise<KubeAccess> {
  const kubeconfig = await loadKubeconfigs(value, (path) => readText(path, "kubeconfig"));
  const { contextName, cluster, user, server } = selectContext(kubeconfig);
  refuseUnsupported(cluster.body, user?.body ?? {});
  const ca = await pemField(cluster, {
    data: "certificate-authority-data",
    file: "certificate-authority",
    kind: "certificate",
  });
  const description = { server, source: "kubeconfig", context: contextName };
  if (user && present(user.body, "exec")) {
    return await fromExecPlugin({ user, cluster, server, ca, description }, options);
  }
  const cert = await pemField(user, {
    data: "client-certificate-data",
    file: "client-certificate",
    kind: "certificate",
  });
  const key = await pemField(user, {
    data: "client-key-data",
    file: "client-key",
    kind: "private key",
  });
  if ((cert === undefined) !== (key === undefined)) {
    throw kubeError(
      "The kubeconfig user has a client certificate without its key, or a key without its certificate",
    );
  }
  const readToken = tokenSource(user, options.now);
  if (!readToken && !cert) {
    throw kubeError("The kubeconfig user has no token, tokenFile, client certificate or exec");
  }
  if (readToken) await readToken(); // fail at startup, not on the first event
  const httpClient = createTlsClient({ ca, cert, key });
  const authorization = async () => readToken ? `Bearer ${await readToken()}` : undefined;
  return {
    server,
    httpClient,
    authorization,
    credentials: async () => ({ authorization: await authorization(), httpClient }),
    description: { ...description, auth: cert ? "client certificate" : "token" },
    caPem: ca?.pem,
  };
}

/**
 * Credentials from the user's exec plugin, which must be allowed to run and
 * runs once now: a plugin that cannot work stops the worker at startup.
 */
async function fromExecPlugin(
  { user, cluster, server, ca, description }: {
    user: SourcedEntry;
    cluster: SourcedEntry;
    server: string;
    ca?: { pem: string; field: string };
    description: Record<string, string>;
  },
  options: KubeconfigOptions,
): Promise<KubeAccess> {
  const plugin = parseExecPlugin(user, {
    server,
    caPem: ca?.pem,
    extensions: cluster.body.extensions,
  });
  await checkRunPermission(plugin, options.runPermission);
  const baseClient = createTlsClient({ ca });
  const source = createExecSource({
    plugin,
    run: options.runPlugin ?? ((p) => runExecPlugin(p)),
    ca,
    baseClient,
    now: options.now,
    logger: options.logger,
  });
  let current: KubeCredentials;
  try {
    current = await source.credentials();
  } catch (err) {
    baseClient.close();
    throw err;
  }
  const track = (credentials: KubeCredentials) => (current = credentials);
  return {
    server,
    get httpClient() {
      return current.httpClient ?? baseClient;
    },
    authorization: async () => track(await source.credentials()).authorization,
    credentials: async () => track(await source.credentials()),
    renewCredentials: async (refused) => track(await source.renew(refused)),
    description: { ...description, auth: "exec plugin", exec_command: plugin.command },
    caPem: ca?.pem,
  };
}

/**
 * A checked PEM from the entry's inline `data` field, or else from its `file`
 * (relative to the kubeconfig's folder); undefined when neither is set.
 */
async function pemField(
  entry: SourcedEntry | undefined,
  keys: { data: string; file: string; kind: PemKind },
) {
  if (!entry) return undefined;
  const data = entry.fields.text(keys.data);
  if (data !== undefined) {
    const field = `${entry.where}.${keys.data}`;
    return { pem: checkPem(decodeBase64Field(data, field), field, keys.kind), field };
  }
  const file = entry.fields.text(keys.file);
  if (file === undefined) return undefined;
  const resolved = resolvePath(entry.base, file);
  const field = `${entry.where}.${keys.file} (${resolved})`;
  return { pem: checkPem(await readText(resolved, keys.file), field, keys.kind), field };
}

/** The user's token: inline (checked now), or a tokenFile re-read as it rotates. */
function tokenSource(
  user: SourcedEntry | undefined,
  now: () => number,
): (() => Promise<string>) | undefined {
  // An empty token counts as none, as in client-go.
  const token = user?.fields.text("token") || undefined;
  const tokenPath = user?.fields.text("tokenFile") || undefined;
  if (token !== undefined) {
    checkToken(token, `${user?.where}.token`);
    return () => Promise.resolve(token);
  }
  return tokenPath !== undefined && user
    ? tokenFile(resolvePath(user.base, tokenPath), now)
    : undefined;
}

async function inCluster(
  options: {
    serviceAccountDir: string;
    env: (name: string) => string | undefined;
    now: () => number;
  },
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
  const httpClient = createTlsClient({ ca: { pem: ca, field: caField } });
  const authorization = async () => `Bearer ${await readToken()}`;
  return {
    server,
    httpClient,
    authorization,
    credentials: async () => ({ authorization: await authorization(), httpClient }),
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
  if (options.kubeconfig) return await fromKubeconfig(options.kubeconfig, { ...options, now });
  return await inCluster({
    serviceAccountDir: options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR,
    env: options.env ?? ((name) => Deno.env.get(name)),
    now,
  });
}
