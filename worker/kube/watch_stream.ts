/**
 * The watch stream: the API server sends one JSON event per line (newline-
 * delimited), and every event is checked for shape (parseWatchEvent) before
 * anyone sees it. A streaming list's stream begins with an ADDED event per
 * existing Deployment and a bookmark marked initialEventsEnd. Lines are
 * untrusted: errors name the line or the field, never the content.
 */

import { KubeApiError, WatchEventError } from "./errors.ts";
import type { Deployment } from "./objects.ts";

/** One event of a watch stream. */
export type WatchEvent =
  | {
    type: "ADDED" | "MODIFIED" | "DELETED";
    object: Deployment & { metadata: { resourceVersion: string } };
  }
  | {
    type: "BOOKMARK";
    /** `initialEventsEnd`: the bookmark that ends a streaming list's initial events. */
    object: { metadata: { resourceVersion: string }; initialEventsEnd?: true };
  }
  | { type: "ERROR"; object: { code: number; reason?: string; message?: string } };

/**
 * The annotation on the bookmark that ends a streaming list's initial events
 * (KEP-3157 watch-list; apiserver storage InitialEventsAnnotationKey).
 */
export const INITIAL_EVENTS_END_ANNOTATION = "k8s.io/initial-events-end";

/** The watch event types the API server sends (apimachinery pkg/watch). */
export const WATCH_EVENT_TYPES = ["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"] as const;

/** Longest watch line accepted (etcd's object limit is 1.5 MiB; its JSON may be larger). */
export const MAX_WATCH_LINE_CHARS = 16 * 1024 * 1024;

type JsonObject = Record<string, unknown>;
const isObject = (v: unknown): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isNonEmptyString = (v: unknown): v is string => typeof v === "string" && v !== "";

/**
 * Checks one decoded watch line and returns it typed, or throws WatchEventError
 * naming the missing field. Only what the inventory relies on is checked:
 * a known type; an ERROR's numeric code; a resourceVersion on every other
 * object; a name and namespace on ADDED, MODIFIED and DELETED objects.
 */
export function parseWatchEvent(value: unknown): WatchEvent {
  if (!isObject(value)) throw new WatchEventError("watch event is not a JSON object");
  const type = value.type;
  if (typeof type !== "string" || !(WATCH_EVENT_TYPES as readonly string[]).includes(type)) {
    throw new WatchEventError(`watch event type is not one of ${WATCH_EVENT_TYPES.join(", ")}`);
  }
  const object = value.object;
  if (!isObject(object)) throw new WatchEventError(`${type} watch event has no object`);
  if (type === "ERROR") {
    if (typeof object.code !== "number" || !Number.isInteger(object.code)) {
      throw new WatchEventError("ERROR watch event has no numeric code");
    }
    return {
      type,
      object: {
        code: object.code,
        reason: typeof object.reason === "string" ? object.reason : undefined,
        message: typeof object.message === "string" ? object.message : undefined,
      },
    };
  }
  const metadata = object.metadata;
  if (!isObject(metadata)) throw new WatchEventError(`${type} watch event object has no metadata`);
  if (!isNonEmptyString(metadata.resourceVersion)) {
    throw new WatchEventError(`${type} watch event has no metadata.resourceVersion string`);
  }
  if (type === "BOOKMARK") {
    const annotations = metadata.annotations;
    const end = isObject(annotations) && annotations[INITIAL_EVENTS_END_ANNOTATION] === "true";
    return {
      type,
      object: {
        metadata: { resourceVersion: metadata.resourceVersion },
        ...(end ? { initialEventsEnd: true } : {}),
      },
    };
  }
  for (const field of ["name", "namespace"]) {
    if (!isNonEmptyString(metadata[field])) {
      throw new WatchEventError(`${type} watch event has no metadata.${field} string`);
    }
  }
  return {
    type: type as "ADDED" | "MODIFIED" | "DELETED",
    object: object as unknown as Deployment & { metadata: { resourceVersion: string } },
  };
}

/** Splits a watch body into its non-empty lines (the API server sends one JSON event per line). */
async function* watchLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  // Where the search for the next newline resumes: a large event arrives in many chunks, and
  // rescanning what came before would cost quadratic time.
  let scanned = 0;
  for await (const chunk of body) {
    pending += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = pending.indexOf("\n", scanned)) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      scanned = 0;
      if (line) yield line;
    }
    scanned = pending.length;
    if (pending.length > MAX_WATCH_LINE_CHARS) {
      throw new WatchEventError(`watch event longer than ${MAX_WATCH_LINE_CHARS} characters`);
    }
  }
  pending += decoder.decode();
  if (pending.trim()) {
    // The connection ended inside an event: nothing was applied, so resuming is safe.
    throw new KubeApiError(0, "NetworkError", "watch stream ended in the middle of an event");
  }
}

/** The events of a watch body, each checked by parseWatchEvent. */
export async function* readWatchEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<WatchEvent> {
  let n = 0;
  for await (const line of watchLines(body)) {
    n++;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // Security: SyntaxError messages quote the input; report where, not what.
      throw new WatchEventError(`watch stream line ${n} is not JSON (${line.length} characters)`);
    }
    yield parseWatchEvent(value);
  }
}
