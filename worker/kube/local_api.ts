/**
 * Development only: a KubeApi over a YAML file of Deployments instead of a
 * cluster. Restarts change the in-memory copy and are logged as local, so
 * `deno task dev` shows what would be restarted without touching any cluster.
 * The file is the developer's own; it is still checked for shape.
 */

import { parseAllDocuments, YAMLError } from "yaml";
import { sleep } from "../../lib/backoff.ts";
import { AppError } from "../../shared/errors.ts";
import { describeError } from "../../lib/error_text.ts";
import type { Logger } from "../../lib/log.ts";
import { BOOKMARK_INTERVAL_MS } from "../inventory/inventory.ts";
import type { KubeApi, KubeVerb } from "./api.ts";
import { KubeApiError } from "./errors.ts";
import type { Deployment } from "./objects.ts";
import { describeYamlError } from "./kubeconfig_yaml.ts";
import { RESTARTED_AT_ANNOTATION } from "../plan.ts";

/** Reads Deployments from a YAML file (documents of other kinds are ignored). */
export async function loadLocalInventory(path: string): Promise<Deployment[]> {
  let docs: unknown[];
  try {
    const parsed = parseAllDocuments(await Deno.readTextFile(path));
    const failed = parsed.find((d) => d.errors.length > 0);
    if (failed) throw failed.errors[0];
    docs = parsed.map((d) => d.toJS());
  } catch (err) {
    // Security: a yaml error's message quotes the lines around it (env values, say).
    const problem = err instanceof YAMLError ? describeYamlError(err) : describeError(err);
    throw new AppError("ERR_CONFIG", `Cannot read LOCAL_INVENTORY ${path}: ${problem}`);
  }
  const deployments = docs.filter((d): d is Deployment =>
    !!d && typeof d === "object" && (d as { kind?: string }).kind === "Deployment"
  );
  for (const d of deployments) {
    if (!d.metadata?.name || !d.metadata?.namespace) {
      throw new AppError(
        "ERR_CONFIG",
        `LOCAL_INVENTORY ${path}: every Deployment needs metadata.name and metadata.namespace`,
      );
    }
  }
  return deployments;
}

/** A KubeApi answering from memory; `onRequest` counts calls like the real one. */
export function createLocalApi(
  deployments: Deployment[],
  logger: Logger,
  onRequest?: (verb: KubeVerb) => void,
  bookmarkEveryMs = BOOKMARK_INTERVAL_MS,
): KubeApi {
  const items = new Map(deployments.map((d, i) => {
    const copy = structuredClone(d);
    copy.metadata.resourceVersion = String(i + 1);
    copy.metadata.generation = 1;
    return [`${d.metadata.namespace}/${d.metadata.name}`, copy];
  }));
  let version = items.size;
  const find = (namespace: string, name: string) => {
    const d = items.get(`${namespace}/${name}`);
    if (!d) {
      throw new KubeApiError(
        404,
        "NotFound",
        `deployment ${namespace}/${name} is not in the local inventory`,
      );
    }
    return d;
  };
  return {
    listDeployments(namespace) {
      onRequest?.("list");
      const list = [...items.values()].filter((d) =>
        namespace === undefined || d.metadata.namespace === namespace
      );
      return Promise.resolve({ items: structuredClone(list), resourceVersion: String(version) });
    },
    // The file is not watched: nothing changes behind our back. Like kube-apiserver, the
    // watch sends a bookmark now and then, so the inventory's idle deadline sees it alive.
    async *watchDeployments(_namespace, { signal, onOpen, sendInitialEvents }) {
      onRequest?.("watch");
      // As a server without the streaming list: the inventory lists in pages instead.
      if (sendInitialEvents) throw new KubeApiError(422, "Invalid", "no streaming list here");
      onOpen?.();
      while (!signal.aborted) {
        await sleep(bookmarkEveryMs, signal);
        if (signal.aborted) return;
        yield { type: "BOOKMARK", object: { metadata: { resourceVersion: String(version) } } };
      }
    },
    getDeployment(namespace, name) {
      onRequest?.("get");
      return Promise.resolve(structuredClone(find(namespace, name)));
    },
    patchDeployment(namespace, name, patch) {
      onRequest?.("patch");
      const d = find(namespace, name);
      const wanted = (patch as { metadata?: { resourceVersion?: string } }).metadata
        ?.resourceVersion;
      if (wanted && wanted !== d.metadata.resourceVersion) {
        return Promise.reject(new KubeApiError(409, "Conflict", "the object has been modified"));
      }
      const at =
        (patch as { spec: { template: { metadata: { annotations: Record<string, string> } } } })
          .spec.template.metadata.annotations[RESTARTED_AT_ANNOTATION];
      d.spec ??= {};
      d.spec.template ??= {};
      d.spec.template.metadata ??= {};
      d.spec.template.metadata.annotations = {
        ...d.spec.template.metadata.annotations,
        [RESTARTED_AT_ANNOTATION]: at,
      };
      d.metadata.resourceVersion = String(++version);
      d.metadata.generation = (d.metadata.generation ?? 1) + 1;
      logger.warn("LOCAL INVENTORY: restart recorded in memory only; no cluster was touched", {
        namespace,
        deployment: name,
        restarted_at: at,
      });
      return Promise.resolve(structuredClone(d));
    },
    createEvent(namespace, event) {
      onRequest?.("create_event");
      logger.info("LOCAL INVENTORY: Kubernetes Event recorded in the log only", {
        namespace,
        deployment: event.involvedObject.name,
        reason: event.reason,
        message: event.message,
      });
      return Promise.resolve();
    },
  };
}
