/**
 * How the worker reaches the API server: a kubeconfig file or the in-cluster
 * service account, loaded with @kubernetes/client-node's KubeConfig, turned
 * into a Deno HTTP client (CA, client certificate) and an Authorization header
 * that is re-derived per request so rotated service-account tokens are used.
 * The kubeconfig is trusted as the operator's choice; its secrets are never logged.
 */

import { KubeConfig } from "@kubernetes/client-node";
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

type TlsOptions = { ca?: unknown; cert?: unknown; key?: unknown; headers?: Record<string, string> };

function pem(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return value.map(pem).join("\n");
  return typeof value === "string" ? value : new TextDecoder().decode(value as Uint8Array);
}

function kubeError(message: string, cause?: unknown): AppError {
  return new AppError("ERR_KUBE", message, { cause });
}

/**
 * Loads access from `kubeconfigPath`, or from the in-cluster service account
 * when it is empty. Throws ERR_KUBE with what to do when that is impossible.
 */
export async function loadKubeAccess(kubeconfigPath: string): Promise<KubeAccess> {
  const kc = new KubeConfig();
  try {
    if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
    else {
      if (!Deno.env.get("KUBERNETES_SERVICE_HOST")) {
        throw new Error(
          "KUBECONFIG is empty and KUBERNETES_SERVICE_HOST is unset: not running in a cluster; set KUBECONFIG",
        );
      }
      kc.loadFromCluster();
    }
  } catch (err) {
    const where = kubeconfigPath ? `kubeconfig ${kubeconfigPath}` : "in-cluster config";
    const hint = err instanceof Deno.errors.NotCapable
      ? " (the worker may only read its kubeconfig: run with --allow-read=<that file>, or mount it at /etc/kuberollouttrigger/kubeconfig)"
      : "";
    throw kubeError(`Cannot load ${where}: ${describeError(err)}${hint}`, err);
  }
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster) throw kubeError("The kubeconfig has no current cluster: set current-context");
  if (cluster.skipTLSVerify) {
    throw kubeError(
      "The kubeconfig sets insecure-skip-tls-verify, which the worker refuses: give the cluster's CA",
    );
  }
  if (cluster.proxyUrl) {
    throw kubeError("The kubeconfig sets proxy-url, which the worker does not support");
  }
  if (user?.exec) {
    throw kubeError(
      "The kubeconfig user authenticates with an exec plugin, which the worker cannot run (no run permission): use a token or client certificate",
    );
  }
  const options: TlsOptions = {};
  try {
    await kc.applyToHTTPSOptions(options as never);
  } catch (err) {
    throw kubeError(`Cannot read the credentials the kubeconfig names: ${describeError(err)}`, err);
  }
  const ca = pem(options.ca);
  const cert = pem(options.cert);
  const key = pem(options.key);
  const httpClient = Deno.createHttpClient({
    caCerts: ca ? [ca] : undefined,
    ...(cert && key ? { cert, key } : {}),
  });
  const authKind = cert ? "client certificate" : options.headers?.Authorization ? "token" : "none";
  return {
    server: cluster.server.replace(/\/+$/, ""),
    httpClient,
    async authorization() {
      const fresh: TlsOptions = {};
      await kc.applyToHTTPSOptions(fresh as never);
      return fresh.headers?.Authorization;
    },
    description: {
      server: cluster.server,
      source: kubeconfigPath ? "kubeconfig" : "in-cluster",
      context: kc.getCurrentContext(),
      auth: authKind,
    },
  };
}
