/**
 * What the API server alone takes to hand over every Deployment: the floor
 * under the worker's start → ready. Reads each answer as bytes and parses
 * nothing (a continue token or the end-of-initial-events marker is found by
 * searching the bytes), so the figure is the server's serving time plus
 * loopback, not the worker's. Bounded: one pass per form.
 */

import type { ControlPlane } from "../helpers/control_plane.ts";
import type { Row } from "./run.ts";

const JSON_TYPE = "application/json";
const PROTOBUF_TYPE = "application/vnd.kubernetes.protobuf";
const END_MARKER = new TextEncoder().encode("k8s.io/initial-events-end");
const decoder = new TextDecoder();

/** Index of `needle` in `hay`, or -1. */
function indexOf(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  outer: for (let i = from; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

async function get(
  plane: ControlPlane,
  client: Deno.HttpClient,
  path: string,
  accept: string,
  signal?: AbortSignal,
): Promise<Response> {
  const res = await fetch(`${plane.server}${path}`, {
    client,
    signal,
    headers: { authorization: `Bearer ${plane.adminToken}`, accept },
  });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  return res;
}

/** Reads a whole body; returns its size and, for a JSON list page, its continue token. */
async function readAll(res: Response): Promise<{ bytes: number; head: string }> {
  let bytes = 0;
  let head = "";
  for await (const chunk of res.body!) {
    if (head.length < 4096) head += decoder.decode(chunk.subarray(0, 4096 - head.length));
    bytes += chunk.length;
  }
  return { bytes, head };
}

async function pagedJson(plane: ControlPlane, client: Deno.HttpClient): Promise<number> {
  let token = "";
  let bytes = 0;
  do {
    const res = await get(
      plane,
      client,
      `/apis/apps/v1/deployments?limit=500${token ? `&continue=${encodeURIComponent(token)}` : ""}`,
      JSON_TYPE,
    );
    const page = await readAll(res);
    bytes += page.bytes;
    // The list's metadata comes first in the JSON the API server writes.
    token = /"continue":"([^"]*)"/.exec(page.head)?.[1] ?? "";
  } while (token);
  return bytes;
}

async function whole(plane: ControlPlane, client: Deno.HttpClient, accept: string) {
  return (await readAll(await get(plane, client, "/apis/apps/v1/deployments", accept))).bytes;
}

async function streamed(plane: ControlPlane, client: Deno.HttpClient, accept: string) {
  const stop = new AbortController();
  const res = await get(
    plane,
    client,
    "/apis/apps/v1/deployments?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan" +
      "&allowWatchBookmarks=true",
    accept,
    stop.signal,
  );
  let bytes = 0;
  let tail = new Uint8Array(0);
  try {
    for await (const chunk of res.body!) {
      bytes += chunk.length;
      const joined = new Uint8Array(tail.length + chunk.length);
      joined.set(tail);
      joined.set(chunk, tail.length);
      if (indexOf(joined, END_MARKER) >= 0) return bytes;
      tail = joined.slice(Math.max(0, joined.length - END_MARKER.length));
    }
  } finally {
    stop.abort();
  }
  throw new Error("the streaming list ended before its initial-events-end bookmark");
}

/** Times each form of reading every Deployment and records it. */
export async function benchListFloor(options: {
  plane: ControlPlane;
  scenario: string;
  record: (row: Row) => void;
}): Promise<void> {
  const client = Deno.createHttpClient({ caCerts: [options.plane.caPem] });
  const forms: [string, () => Promise<number>][] = [
    ["paged list of 500, JSON", () => pagedJson(options.plane, client)],
    ["one list, JSON", () => whole(options.plane, client, JSON_TYPE)],
    ["one list, protobuf", () => whole(options.plane, client, PROTOBUF_TYPE)],
    ["streaming list, JSON", () => streamed(options.plane, client, JSON_TYPE)],
    ["streaming list, protobuf", () => streamed(options.plane, client, PROTOBUF_TYPE)],
  ];
  try {
    // One page first, so no form pays for the connection or a cold cache.
    await readAll(
      await get(options.plane, client, "/apis/apps/v1/deployments?limit=500", JSON_TYPE),
    );
    for (const [form, read] of forms) {
      const started = performance.now();
      const bytes = await read();
      const ms = performance.now() - started;
      options.record({
        scenario: options.scenario,
        metric: `API server alone: ${form}`,
        value: ms,
        unit: "ms",
      });
      options.record({
        scenario: options.scenario,
        metric: `  bytes, ${form}`,
        value: bytes / 1e6,
        unit: "MB",
      });
    }
  } finally {
    client.close();
  }
}
