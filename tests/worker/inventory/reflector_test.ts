/**
 * runReflector() driven directly, with the real index and sync tracker and a
 * small fake API: attempt after attempt, the watch resumes where a streaming
 * list ended, and a 410 Gone leads to a relist. Each attempt's list and watch
 * calls are proven on their own in list_watch_test.ts; the watch discipline in
 * detail (idle deadline, bookmarks, backoff, malformed answers) through
 * createInventory() in inventory_test.ts and against a real API server in
 * tests/integration/watch_test.ts.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { fakeClock, settle } from "../../helpers/fake_clock.ts";
import { createLogger } from "../../../lib/log.ts";
import type { KubeApi, WatchOptions } from "../../../worker/kube/api.ts";
import type { Deployment, DeploymentList } from "../../../worker/kube/objects.ts";
import type { WatchEvent } from "../../../worker/kube/watch_stream.ts";
import { createDeploymentIndex } from "../../../worker/inventory/index.ts";
import { runReflector } from "../../../worker/inventory/reflector.ts";
import { createSyncTracker } from "../../../worker/inventory/sync.ts";

function deployment(name: string, rv = "1") {
  return {
    metadata: { namespace: "ns", name, resourceVersion: rv },
    spec: { template: { spec: { containers: [{ name: "c", image: "ghcr.io/acme/app:1" }] } } },
  } as Deployment & { metadata: { resourceVersion: string } };
}

/** Resolves when `signal` aborts. */
const aborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));

/**
 * A reflector over a fake API: `lists` answers each list call in turn (a
 * promise the test may hold), `streams` each watch call (its events, then the
 * server closes it or it waits for its abort).
 */
function setUp(
  { lists = [], streams = [], streamingList = false }: {
    lists?: Promise<DeploymentList>[];
    streams?: { events: WatchEvent[]; close?: boolean }[];
    streamingList?: boolean;
  },
) {
  const watches: WatchOptions[] = [];
  const relists: string[] = [];
  let listCalls = 0;
  const api = {
    listDeployments: () => lists[listCalls++] ?? new Promise(() => {}),
    async *watchDeployments(_ns: string | undefined, options: WatchOptions) {
      const stream = streams[watches.length] ?? { events: [] };
      watches.push(options);
      options.onOpen?.();
      yield* stream.events;
      if (!stream.close) await aborted(options.signal);
    },
  } as unknown as KubeApi;
  const clock = fakeClock();
  const index = createDeploymentIndex();
  const sync = createSyncTracker(["ns"], { clock, idleTimeoutMs: 150_000 });
  const controller = new AbortController();
  const running = runReflector(
    {
      api,
      index,
      sync,
      logger: createLogger({ level: "error", write: () => {} }),
      clock,
      random: () => 0.5,
      pageSize: 10,
      idleTimeoutMs: 150_000,
      minWatchTimeoutSeconds: 300,
      streamingList,
      onRelist: (scope) => relists.push(scope),
    },
    "ns",
    controller.signal,
  );
  const stop = async () => {
    controller.abort();
    await running;
  };
  return { index, sync, watches, relists, stop, lists: () => listCalls };
}

Deno.test("runReflector() fills the index from a streaming list and resumes from its end bookmark", async () => {
  const end: WatchEvent = {
    type: "BOOKMARK",
    object: { metadata: { resourceVersion: "9" }, initialEventsEnd: true },
  };
  const r = setUp({
    streamingList: true,
    // The server closes the stream after the bookmark, as at the watch's timeout.
    streams: [{ events: [{ type: "ADDED", object: deployment("a", "3") }, end], close: true }],
  });
  await settle();
  assertEquals(r.lists(), 0, "no paged list");
  assertEquals(r.index.count("ns"), 1);
  assertEquals(r.sync.synced(), true);
  assertEquals(r.relists, ["ns"]);
  assertEquals(r.watches.map((w) => [w.sendInitialEvents, w.resourceVersion]), [
    [true, ""],
    [false, "9"],
  ]);
  await r.stop();
});

Deno.test("runReflector() relists after 410 Gone and reports the scope relisting until the list completes", async () => {
  const second = Promise.withResolvers<DeploymentList>();
  const r = setUp({
    lists: [
      Promise.resolve({ items: [deployment("a"), deployment("b")], resourceVersion: "5" }),
      second.promise,
    ],
    streams: [{ events: [{ type: "ERROR", object: { code: 410, reason: "Expired" } }] }],
  });
  await settle();
  assertEquals(r.lists(), 2, "the expired watch led to a second list");
  assertEquals(r.relists, ["ns", "ns"]);
  assertEquals(r.sync.current(), false, "not current while relisting");
  second.resolve({ items: [deployment("b", "6")], resourceVersion: "7" });
  await settle();
  assert(r.sync.current(), "current again once the relist completes");
  assertEquals(r.index.count("ns"), 1, "what the relist did not see again is gone");
  assertEquals(r.watches.at(-1)?.resourceVersion, "7");
  await r.stop();
});
