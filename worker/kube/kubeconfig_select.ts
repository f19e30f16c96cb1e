/**
 * What a kubeconfig selects and what of it the worker refuses: the current
 * context, its cluster (whose server URL is checked here, as the in-cluster
 * one is) and its user, from the merged files (kubeconfig_merge.ts); then
 * every setting the worker cannot honour safely, refused with one line saying
 * what to change. Security: the server URL is logged and prefixed to every
 * request, so it is checked before use; no value is quoted, only positions.
 */

import { AppError } from "../../shared/errors.ts";
import { isLoopbackHost } from "../../lib/setting_values.ts";
import type { MergedKubeconfig } from "./kubeconfig_merge.ts";
import type { Mapping } from "./kubeconfig_yaml.ts";

function kubeError(message: string): AppError {
  return new AppError("ERR_KUBE", message);
}

/**
 * The API server's base URL, without a trailing slash. It is logged at startup
 * and prefixed to every request, so it must be a plain https URL (http only to
 * this machine, e.g. `kubectl proxy`). Security: a URL with a user or password
 * is refused without quoting it.
 */
export function checkServer(raw: string, field: string): string {
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

/** The current context, its cluster (which must have a server) and its user. */
export function selectContext(kubeconfig: MergedKubeconfig) {
  const paths = kubeconfig.paths.join(":");
  const contextName = kubeconfig.currentContext?.name;
  const context = contextName ? kubeconfig.find("contexts", contextName) : undefined;
  if (!contextName || !context) {
    const names = kubeconfig.names("contexts").map((n) => n.slice(0, 63)).join(", ") || "none";
    throw kubeError(
      `Kubeconfig ${paths} has no usable current-context (contexts: ${names}): set current-context`,
    );
  }
  const clusterName = context.fields.text("cluster");
  const userName = context.fields.text("user");
  const cluster = clusterName === undefined ? undefined : kubeconfig.find("clusters", clusterName);
  const user = userName === undefined ? undefined : kubeconfig.find("users", userName);
  const rawServer = cluster?.fields.text("server");
  if (!cluster || !rawServer) {
    throw kubeError(`Kubeconfig ${paths}: context ${contextName} names no cluster with a server`);
  }
  const server = checkServer(rawServer, `${cluster.where}.server`);
  return { contextName, cluster, user, server };
}

/** Set, as client-go reads a field: not missing, null, false or empty. */
export function present(body: Mapping, key: string): boolean {
  return body[key] !== undefined && body[key] !== null && body[key] !== false && body[key] !== "";
}

/** Refuses what the worker cannot do safely (or at all), saying what to change. */
export function refuseUnsupported(clusterBody: Mapping, userBody: Mapping): void {
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
  if (present(userBody, "auth-provider")) {
    throw kubeError(
      "The kubeconfig user authenticates with auth-provider, which the worker cannot use (kubectl dropped it too): use exec, a token, tokenFile or client certificate",
    );
  }
  const statics = [
    "token",
    "tokenFile",
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
  ];
  if (present(userBody, "exec") && statics.some((key) => present(userBody, key))) {
    // kubectl would silently use the token or certificate and never run the plugin.
    throw kubeError(
      "The kubeconfig user has a token, tokenFile or client certificate and also exec, which the worker cannot use together: keep one",
    );
  }
  if (present(userBody, "username") || present(userBody, "password")) {
    throw kubeError(
      "The kubeconfig user uses basic auth, which Kubernetes removed: use a token or client certificate",
    );
  }
  const impersonation = ["as", "as-uid", "as-groups", "as-user-extra"].filter((key) =>
    present(userBody, key)
  );
  if (impersonation.length > 0) {
    throw kubeError(
      `The kubeconfig user sets ${
        impersonation.join(", ")
      } (impersonation), which the worker does not support: give the worker credentials of its own identity (see k8s/rbac/)`,
    );
  }
}
