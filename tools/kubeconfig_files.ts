/**
 * What a kubeconfig makes the worker read and run, so `deno task dev
 * --kubeconfig` can grant exactly that (least privilege): read access to the
 * kubeconfig files and the files their current context names, and run access
 * to the exec plugin it names, instead of the whole disk and every program.
 * Follows worker/kube/config.ts: a KUBECONFIG list is merged as kubectl merges
 * it (the first file to set a value wins), only the current context's cluster
 * and user count, and a relative path is relative to the folder of the file
 * that names it.
 *
 * Security: the kubeconfig holds credentials. Nothing read here is logged or
 * put into an error; a file that cannot be read or parsed yields just its own
 * path, and the worker then reports the problem with its careful parser.
 */

import { parse } from "yaml";
import { dirOf, splitKubeconfigPaths } from "../worker/kube/kubeconfig_merge.ts";

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

type Named = { name?: unknown } & Record<string, unknown>;
type Kubeconfig = Record<string, unknown> | undefined;

/** What the worker needs for a kubeconfig: files to read and commands to run. */
export interface KubeconfigNeeds {
  /** The kubeconfig files, then every file their current context names, deduplicated. */
  files: string[];
  /** The exec plugin of the current user, if any, as the worker will run it. */
  commands: string[];
}

function parseLeniently(text: string | undefined): Kubeconfig {
  if (text === undefined) return undefined;
  try {
    const doc = parse(text);
    return typeof doc === "object" && doc !== null ? doc as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The needs of the kubeconfig files `sources` (in KUBECONFIG order; `text`
 * undefined for a file that could not be read, which is still granted).
 */
export function kubeconfigNeeds(sources: { path: string; text?: string }[]): KubeconfigNeeds {
  const docs = sources.map(({ path, text }) => ({ path, doc: parseLeniently(text) }));
  const list = (value: unknown) => Array.isArray(value) ? value as Named[] : [];
  /** The first definition of `name` in `key`, with the folder of its file (kubectl's merge). */
  const find = (key: string, body: string, name: unknown) => {
    if (typeof name !== "string") return undefined;
    for (const { path, doc } of docs) {
      const entry = list(doc?.[key]).find((e) => e?.name === name);
      if (entry) {
        const value = entry[body];
        return typeof value === "object" && value !== null
          ? { body: value as Record<string, unknown>, base: dirOf(path) }
          : undefined;
      }
    }
    return undefined;
  };
  const current = docs.map(({ doc }) => doc?.["current-context"])
    .find((name) => typeof name === "string" && name !== "");
  const context = find("contexts", "context", current)?.body;
  const cluster = find("clusters", "cluster", context?.cluster);
  const user = find("users", "user", context?.user);
  const resolve = (base: string, file: string) => file.startsWith("/") ? file : `${base}/${file}`;
  const filesOf = (
    entry: { body: Record<string, unknown>; base: string } | undefined,
    fields: string[][],
  ) =>
    fields.map(([file, inline]) =>
      typeof entry?.body[inline] === "string" ? undefined : entry?.body[file]
    )
      .filter((value): value is string => typeof value === "string" && value !== "")
      .map((file) => resolve(entry!.base, file));
  const exec = user?.body.exec as Record<string, unknown> | undefined;
  const command = typeof exec?.command === "string" && exec.command !== ""
    ? exec.command
    : undefined;
  return {
    files: [
      ...new Set([
        ...sources.map((s) => s.path),
        ...filesOf(cluster, CLUSTER_FILES),
        ...filesOf(user, USER_FILES),
      ]),
    ],
    // As client-go: a command with a '/' is relative to its kubeconfig's folder; a name is on PATH.
    commands: command === undefined
      ? []
      : [command.includes("/") ? resolve(user!.base, command) : command],
  };
}

/** The kubeconfig's own path, then every file its current context names, deduplicated. */
export function kubeconfigFiles(path: string, text: string): string[] {
  return kubeconfigNeeds([{ path, text }]).files;
}

/** Reads the files of a KUBECONFIG value (one path or a ':' list) and returns their needs. */
export async function readKubeconfigNeeds(value: string): Promise<KubeconfigNeeds> {
  const sources = await Promise.all(
    splitKubeconfigPaths(value).map(async (path) => ({
      path,
      text: await Deno.readTextFile(path).catch(() => undefined),
    })),
  );
  return kubeconfigNeeds(sources);
}
