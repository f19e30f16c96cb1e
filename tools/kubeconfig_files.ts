/**
 * The files a kubeconfig makes the worker read, so `deno task dev --kubeconfig`
 * can grant read access to exactly those (least privilege) instead of to the
 * whole disk. Follows worker/kube/config.ts: only the current context's cluster
 * and user count, and a relative path is relative to the kubeconfig's folder.
 *
 * Security: the kubeconfig holds credentials. Nothing read here is logged or
 * put into an error; a file that cannot be read or parsed yields just its own
 * path, and the worker then reports the problem with its careful parser.
 */

import { parse } from "yaml";

/**
 * kube/config.ts's file-valued fields, each with the inline field that wins
 * over it (then the file is never read, so it gets no grant).
 */
const CLUSTER_FILES = [["certificate-authority", "certificate-authority-data"]];
const USER_FILES = [
  ["client-certificate", "client-certificate-data"],
  ["client-key", "client-key-data"],
  ["tokenFile", "token"],
];

type Named<T> = { name?: unknown } & T;
interface Kubeconfig {
  "current-context"?: unknown;
  contexts?: Named<{ context?: { cluster?: unknown; user?: unknown } }>[];
  clusters?: Named<{ cluster?: Record<string, unknown> }>[];
  users?: Named<{ user?: Record<string, unknown> }>[];
}

/** The folder a path is in, as kube/config.ts resolves it. */
function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : path.slice(0, i);
}

/** The kubeconfig's own path, then every file its current context names, deduplicated. */
export function kubeconfigFiles(path: string, text: string): string[] {
  let doc: Kubeconfig;
  try {
    doc = parse(text) as Kubeconfig;
  } catch {
    return [path];
  }
  const list = <T>(value: T[] | undefined) => Array.isArray(value) ? value : [];
  const context = list(doc?.contexts).find((c) => c?.name === doc?.["current-context"])?.context;
  const cluster = list(doc?.clusters).find((c) => c?.name === context?.cluster)?.cluster;
  const user = list(doc?.users).find((u) => u?.name === context?.user)?.user;
  const fileOf = (entry: Record<string, unknown> | undefined, [file, inline]: string[]) =>
    typeof entry?.[inline] === "string" ? undefined : entry?.[file];
  const named = [
    ...CLUSTER_FILES.map((keys) => fileOf(cluster, keys)),
    ...USER_FILES.map((keys) => fileOf(user, keys)),
  ].filter((value): value is string => typeof value === "string" && value !== "");
  const base = dirOf(path);
  const files = named.map((file) => file.startsWith("/") ? file : `${base}/${file}`);
  return [...new Set([path, ...files])];
}

/** Reads the kubeconfig at `path` and returns kubeconfigFiles() of it. */
export async function readKubeconfigFiles(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return [path];
  }
  return kubeconfigFiles(path, text);
}
