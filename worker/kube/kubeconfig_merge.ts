/**
 * KUBECONFIG as kubectl reads it: one path, or a colon-separated list of paths
 * whose files are merged in order (client-go clientcmd, "merging" rules). The
 * first file to set a value wins: current-context comes from the first file
 * that sets it, and a cluster, user or context comes from the first file that
 * defines its name, whatever later files say. A file of a list that does not
 * exist is skipped, as kubectl skips it; a list of which no file exists, or a
 * single path that does not exist, is an error. Every entry keeps the file it
 * came from, so its relative paths resolve against that file's folder and its
 * errors name that file.
 *
 * Trusts nothing in the files: shapes are checked by kubeconfig_yaml.ts, and
 * no value is ever quoted (Security: the files hold tokens and keys).
 */

import { AppError } from "../../shared/errors.ts";
import {
  type Entry,
  fieldsOf,
  findNamed,
  type Mapping,
  parseKubeconfigYaml,
} from "./kubeconfig_yaml.ts";

/** A kubeconfig list entry, with the folder of the file that defined it. */
export interface SourcedEntry extends Entry {
  /** The folder its relative paths resolve against. */
  base: string;
}

/** The named lists of a kubeconfig and the key of each entry's body. */
const BODY = { clusters: "cluster", users: "user", contexts: "context" } as const;

/** The merged view of every kubeconfig file that was read. */
export interface MergedKubeconfig {
  /** The files read, in order (the missing ones of a list left out). */
  paths: string[];
  /** The first current-context set, with the file that set it. */
  currentContext?: { name: string; path: string };
  /** The first definition of `name` in `list`, searching the files in order. */
  find(list: keyof typeof BODY, name: string): SourcedEntry | undefined;
  /** Every name `list` defines, first definitions first, for error messages. */
  names(list: keyof typeof BODY): string[];
}

function kubeError(message: string, cause?: unknown): AppError {
  return new AppError("ERR_KUBE", message, { cause });
}

/** The folder a path is in, as kubectl resolves a relative path against it. */
export function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : path.slice(0, i);
}

/**
 * The paths of a KUBECONFIG value: split at ':' (client-go's filepath.SplitList
 * on POSIX), empty parts dropped, a path named twice read once.
 */
export function splitKubeconfigPaths(value: string): string[] {
  return [...new Set(value.split(":").filter((path) => path !== ""))];
}

/** Merges parsed files, first file first (see the header for the rules). */
export function mergeKubeconfigs(files: { path: string; doc: Mapping }[]): MergedKubeconfig {
  let currentContext: MergedKubeconfig["currentContext"];
  for (const { path, doc } of files) {
    const name = fieldsOf(doc, `Kubeconfig ${path}:`).text("current-context");
    if (name) {
      currentContext = { name, path };
      break;
    }
  }
  return {
    paths: files.map((f) => f.path),
    currentContext,
    find(list, name) {
      for (const { path, doc } of files) {
        const entry = findNamed(doc, path, list, BODY[list], name);
        if (entry) return { ...entry, base: dirOf(path) };
      }
      return undefined;
    },
    names(list) {
      const names = files.flatMap(({ path, doc }) =>
        fieldsOf(doc, `Kubeconfig ${path}:`).list(list).map((e) => e.name)
      ).filter((n): n is string => typeof n === "string");
      return [...new Set(names)];
    },
  };
}

/**
 * Reads and merges the files of a KUBECONFIG value. `read` reads one file,
 * throwing an AppError whose cause is Deno's error; a NotFound in a list of
 * several files skips that file.
 */
export async function loadKubeconfigs(
  value: string,
  read: (path: string) => Promise<string>,
): Promise<MergedKubeconfig> {
  const paths = splitKubeconfigPaths(value);
  if (paths.length === 0) throw kubeError("KUBECONFIG names no file (it holds only ':')");
  const files: { path: string; doc: Mapping }[] = [];
  const missing: string[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = await read(path);
    } catch (err) {
      // As kubectl: a missing file of a list is skipped; one that may not be read is not.
      if (
        paths.length > 1 && err instanceof AppError && err.cause instanceof Deno.errors.NotFound
      ) {
        missing.push(path);
        continue;
      }
      throw err;
    }
    files.push({ path, doc: parseKubeconfigYaml(text, path) });
  }
  if (files.length === 0) {
    throw kubeError(`None of the KUBECONFIG files exists: ${missing.join(", ")}`);
  }
  return mergeKubeconfigs(files);
}
