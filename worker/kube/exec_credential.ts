/**
 * The client-go credential plugin protocol (client.authentication.k8s.io v1
 * and v1beta1), without running anything: the kubeconfig's `exec` entry read
 * and checked, the KUBERNETES_EXEC_INFO a plugin is given, and the
 * ExecCredential it prints read and checked. exec_plugin.ts runs the plugin;
 * exec_source.ts caches what it prints.
 *
 * Trusts the kubeconfig's `exec` entry as the operator's (the command runs as
 * the worker's user); trusts nothing the plugin prints. Security: the plugin's
 * output is a credential, and `exec.env` values may be secrets: no error here
 * quotes either; errors name the command, the field and the kind of problem.
 */

import { AppError } from "../../shared/errors.ts";
import { fieldsOf, type Mapping } from "./kubeconfig_yaml.ts";
import type { SourcedEntry } from "./kubeconfig_merge.ts";

/** The plugin API versions kubectl still speaks (v1alpha1 was removed in Kubernetes 1.24). */
export const EXEC_API_VERSIONS = [
  "client.authentication.k8s.io/v1",
  "client.authentication.k8s.io/v1beta1",
] as const;

/** The cluster extension whose value a plugin gets as spec.cluster.config (client-go). */
const EXEC_EXTENSION = "client.authentication.k8s.io/exec";

/** A kubeconfig user's exec plugin, checked. */
export interface ExecPlugin {
  /** As the kubeconfig names it; a relative path with a '/' resolved against its folder. */
  command: string;
  args: string[];
  /** Added to the worker's environment. Security: values may be secrets; never logged. */
  env: Record<string, string>;
  apiVersion: typeof EXEC_API_VERSIONS[number];
  /** Shown when the command is not installed, as kubectl shows it. */
  installHint?: string;
  /** The KUBERNETES_EXEC_INFO value. */
  execInfo: string;
  /** Where it is, e.g. `Kubeconfig /k: users[0].user.exec`: a position, never a value. */
  where: string;
}

/** What a plugin printed: a token, a client certificate, or both, and when they expire. */
export interface ExecCredential {
  token?: string;
  clientCertificate?: string;
  clientKey?: string;
  /** Milliseconds since the epoch; undefined: valid until the API server refuses it. */
  expiresAt?: number;
}

/** What spec.cluster may carry, when the kubeconfig sets provideClusterInfo. */
export interface ExecClusterInfo {
  server: string;
  /** The cluster's CA bundle (PEM), if the kubeconfig gives one. */
  caPem?: string;
  /** The cluster's extensions, where the plugin's config may be. */
  extensions?: unknown;
}

function kubeError(message: string): AppError {
  return new AppError("ERR_KUBE", message);
}

/** A command for messages: one line, bounded. It is the operator's, not a secret. */
export function commandName(command: string): string {
  return JSON.stringify(command.replace(/\p{Cc}+/gu, " ").slice(0, 200));
}

function textList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    throw kubeError(`${field} must be a list of text`);
  }
  return value;
}

function envList(exec: Mapping, where: string): Record<string, string> {
  const env: Record<string, string> = {};
  fieldsOf(exec, where).list("env").forEach((item, i) => {
    const fields = fieldsOf(item, `${where}.env[${i}]`);
    const name = fields.text("name");
    const value = fields.text("value") ?? "";
    if (!name || !/^[^=\0]+$/.test(name)) {
      throw kubeError(`${where}.env[${i}].name must be a variable name`);
    }
    env[name] = value;
  });
  return env;
}

/**
 * KUBERNETES_EXEC_INFO as kubectl sets it: the apiVersion, kind ExecCredential,
 * spec.interactive false (the worker's stdin is never a terminal), and
 * spec.cluster only when the kubeconfig sets provideClusterInfo.
 */
export function execInfo(
  apiVersion: string,
  cluster: ExecClusterInfo | undefined,
): string {
  const spec: Record<string, unknown> = { interactive: false };
  if (cluster) {
    const extension = Array.isArray(cluster.extensions)
      ? cluster.extensions.find((e) => e?.name === EXEC_EXTENSION)?.extension
      : undefined;
    spec.cluster = {
      server: cluster.server,
      ...(cluster.caPem ? { "certificate-authority-data": btoa(cluster.caPem) } : {}),
      ...(extension !== undefined ? { config: extension } : {}),
    };
  }
  return JSON.stringify({ apiVersion, kind: "ExecCredential", spec });
}

/**
 * Reads the user's `exec` entry. A relative command with a '/' is relative to
 * the kubeconfig's folder, as client-go resolves it; a bare name is looked up
 * on PATH. interactiveMode Always is refused: the worker has no terminal.
 */
export function parseExecPlugin(
  user: SourcedEntry,
  cluster: ExecClusterInfo,
): ExecPlugin {
  const where = `${user.where}.exec`;
  const exec = user.fields.mapping("exec");
  const fields = fieldsOf(exec, where);
  const command = fields.text("command");
  if (!command) throw kubeError(`${where}.command is missing: name the plugin to run`);
  const apiVersion = fields.text("apiVersion");
  if (!EXEC_API_VERSIONS.includes(apiVersion as ExecPlugin["apiVersion"])) {
    throw kubeError(
      `${where}.apiVersion must be ${EXEC_API_VERSIONS.join(" or ")} (found ${
        apiVersion === undefined ? "nothing" : "another"
      }): update the kubeconfig, e.g. with the cloud CLI that wrote it`,
    );
  }
  // kubectl defaults v1beta1 to IfAvailable; v1 requires the field, here it defaults the same way.
  const mode = fields.text("interactiveMode") ?? "IfAvailable";
  if (mode === "Always") {
    throw kubeError(
      `${where} sets interactiveMode: Always, but the worker has no terminal to ask on: use a plugin mode that needs no input (IfAvailable or Never)`,
    );
  }
  if (mode !== "IfAvailable" && mode !== "Never") {
    throw kubeError(`${where}.interactiveMode must be Never, IfAvailable or Always`);
  }
  const provide = exec.provideClusterInfo;
  if (provide !== undefined && provide !== null && typeof provide !== "boolean") {
    throw kubeError(`${where}.provideClusterInfo must be true or false`);
  }
  const installHint = fields.text("installHint")?.replace(/\s+/g, " ").trim().slice(0, 300);
  return {
    command: command.includes("/") && !command.startsWith("/")
      ? `${user.base}/${command}`
      : command,
    args: textList(exec.args, `${where}.args`),
    env: envList(exec, where),
    apiVersion: apiVersion as ExecPlugin["apiVersion"],
    installHint: installHint || undefined,
    execInfo: execInfo(apiVersion!, provide === true ? cluster : undefined),
    where,
  };
}

/**
 * Reads the ExecCredential a plugin printed: the same apiVersion it was given,
 * kind ExecCredential, and a status with a token, or a client certificate and
 * its key, or both (client-go's rules). Security: stdout is the credential,
 * so it is described by size and field, never quoted.
 */
export function parseExecCredential(stdout: string, plugin: ExecPlugin): ExecCredential {
  const from = `Exec plugin ${commandName(plugin.command)}`;
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw kubeError(
      `${from} printed no ExecCredential: its output (${stdout.length} characters) is not JSON`,
    );
  }
  const object = (v: unknown): v is Mapping =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (!object(doc) || doc.kind !== "ExecCredential") {
    throw kubeError(`${from} printed JSON that is not an ExecCredential (kind ExecCredential)`);
  }
  if (doc.apiVersion !== plugin.apiVersion) {
    const said = typeof doc.apiVersion === "string" && /^[\w./-]{1,80}$/.test(doc.apiVersion)
      ? doc.apiVersion
      : "another";
    throw kubeError(
      `${from} answered with apiVersion ${said}, but the kubeconfig asks for ${plugin.apiVersion}: make them agree`,
    );
  }
  if (!object(doc.status)) throw kubeError(`${from} printed an ExecCredential without a status`);
  const status = doc.status;
  const text = (key: string) => {
    const value = status[key];
    if (value === undefined || value === null || value === "") return undefined;
    if (typeof value !== "string") throw kubeError(`${from}: status.${key} must be text`);
    return value;
  };
  const token = text("token");
  const clientCertificate = text("clientCertificateData");
  const clientKey = text("clientKeyData");
  if ((clientCertificate === undefined) !== (clientKey === undefined)) {
    throw kubeError(
      `${from} printed only one of status.clientCertificateData and status.clientKeyData: both are needed`,
    );
  }
  if (token === undefined && clientCertificate === undefined) {
    throw kubeError(
      `${from} printed neither status.token nor status.clientCertificateData and clientKeyData`,
    );
  }
  const expiry = text("expirationTimestamp");
  const expiresAt = expiry === undefined ? undefined : Date.parse(expiry);
  if (
    expiresAt !== undefined && !(/^\d{4}-\d\d-\d\dT/.test(expiry!) && Number.isFinite(expiresAt))
  ) {
    throw kubeError(`${from}: status.expirationTimestamp is not an RFC 3339 time`);
  }
  return { token, clientCertificate, clientKey, expiresAt };
}
