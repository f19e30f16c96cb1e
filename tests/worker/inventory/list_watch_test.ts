/**
 * listAndWatch() driven directly, one attempt at a time, with the real index
 * and sync tracker and a small fake API: which list it makes, where its watch
 * resumes, and what it throws to the loop (runReflector(), whose recovery is
 * proven in reflector_test.ts).
 */

import { assert, assertEquals, assertRejects } from "../../helpers/assert.ts";
import { fakeClock } from "../../helpers/fake_clock.ts";
import { createLogger } from "../../../lib/log.ts";
import type { KubeApi, WatchOptions } from "../../../worker/kube/api.ts";
import { KubeApiError, WatchEventError } from "../../../worker/kube/errors.ts";
import type { Deployment, DeploymentList } from "../../../worker/kube/objects.ts";
import type { WatchEvent } from "../../../worker/kube/watch_stream.ts";
import { createDeploymentIndex } from "../../../worker/inventory/index.ts";
import {
  type Attempt,
  Gone,
  listAndWatch,
  type Reflector,
} from "../../../worker/inventory/list_watch.ts";
import { createSyncTracker } from "../../../worker/inventory/sync.ts";

function deployment(name: string, rv = "1", namespace = "ns") {
  return {
    metadata: { namespace, name, resourceVersion: rv },
    spec: { template: { spec: { containers: [{ name: "c", image: "ghcr.io/acme/app:1" }] } } },
  } as Deployment & { metadata: { resourceVersion: string } };
}

/**
 * One attempt over a fake API: `lists` answers each list call in turn,
 * `events` is the one watch's stream, which the server then closes.
 * `resourceVersion` set: no list is due.
 */
function setUp(
  { lists = [], events = [], streamingList = false, resourceVersion }: {
    lists?: DeploymentList[];
    events?: WatchEvent[];
    streamingList?: boolean;
    resourceVersion?: string;
  },
) {
  const watches: WatchOptions[] = [];
  const listCalls: unknown[] = [];
  const relists: string[] = [];
  const api = {
    listDeployments: (_ns: string | undefined, options: unknown) => {
      listCalls.push(options);
      return Promise.resolve(lists[listCalls.length - 1]);
    },
    async *watchDeployments(_ns: string | undefined, options: WatchOptions) {
      watches.push(options);
      options.onOpen?.();
      yield* events;
    },
  } as unknown as KubeApi;
  const clock = fakeClock();
  const index = createDeploymentIndex();
  const sync = createSyncTracker(["ns"], { clock, idleTimeoutMs: 150_000 });
  const logger = createLogger({ level: "error", write: () => {} });
  const r: Reflector = {
    options: {
      api,
      index,
      sync,
      logger,
      clock,
      random: () => 0.5,
      pageSize: 10,
      idleTimeoutMs: 150_000,
      listTimeoutMs: 15_000,
      minWatchTimeoutSeconds: 300,
      streamingList,
      onRelist: (scope) => relists.push(scope),
    },
    scope: "ns",
    label: "ns",
    log: logger,
    signal: new AbortController().signal,
    resourceVersion,
    failures: 3,
    expiredInARow: 2,
    streamingList,
    refused: false,
  };
  const attempt: Attempt = {
    signal: new AbortController().signal,
    idle: false,
    listing: undefined,
    arm: () => {},
    contact: () => {},
    close: () => {},
  };
  const run = () => listAndWatch(r, attempt);
  return { r, attempt, run, index, sync, watches, listCalls, relists };
}

Deno.test("listAndWatch() lists in pages, then watches from the list's resourceVersion", async () => {
  const t = setUp({
    lists: [
      { items: [deployment("a")], resourceVersion: "4", continueToken: "next" },
      { items: [deployment("b")], resourceVersion: "5" },
    ],
    events: [{ type: "MODIFIED", object: deployment("a", "6") }],
  });
  await t.run();
  assertEquals(t.listCalls, [
    { limit: 10, continueToken: undefined },
    { limit: 10, continueToken: "next" },
  ]);
  assertEquals(t.index.count("ns"), 2);
  assertEquals(t.sync.synced(), true);
  assertEquals(t.relists, ["ns"]);
  assertEquals(t.watches.length, 1);
  assertEquals(t.watches[0].resourceVersion, "5");
  assertEquals(t.watches[0].sendInitialEvents, false);
  assertEquals(t.watches[0].timeoutSeconds, 450, "a random timeout in [min, 2*min)");
  assertEquals(t.r.resourceVersion, "6", "the next watch resumes from the last event");
  assertEquals([t.r.failures, t.r.expiredInARow], [0, 0], "an event resets the backoff");
});

Deno.test("listAndWatch() fills the index from a streaming list and resumes from its end bookmark", async () => {
  const t = setUp({
    streamingList: true,
    events: [
      { type: "ADDED", object: deployment("a", "3") },
      { type: "BOOKMARK", object: { metadata: { resourceVersion: "9" }, initialEventsEnd: true } },
    ],
  });
  await t.run();
  assertEquals(t.listCalls.length, 0, "no paged list");
  assertEquals(t.index.count("ns"), 1);
  assertEquals(t.sync.synced(), true);
  assertEquals(t.relists, ["ns"]);
  assertEquals(t.watches.map((w) => [w.sendInitialEvents, w.resourceVersion]), [[true, ""]]);
  assertEquals(t.r.resourceVersion, "9");
  assertEquals(t.attempt.listing, undefined, "the stream goes on as a watch");
});

Deno.test("listAndWatch() throws when a streaming list ends before its end bookmark, and the scope is not synced", async () => {
  const t = setUp({ streamingList: true, events: [{ type: "ADDED", object: deployment("a") }] });
  await assertRejects(t.run, { message: /ended before its initial events did/ });
  assertEquals(t.sync.synced(), false);
  assertEquals(t.r.resourceVersion, undefined, "a list is still due");
});

Deno.test("listAndWatch() throws Gone on a 410 watch event and a KubeApiError on any other ERROR", async () => {
  const gone = setUp({
    resourceVersion: "5",
    events: [{ type: "ERROR", object: { code: 410, reason: "Expired" } }],
  });
  await assertRejects(gone.run, { instanceOf: Gone });
  assertEquals(gone.relists, [], "no list was due");
  const other = setUp({
    resourceVersion: "5",
    events: [{ type: "ERROR", object: { code: 500, reason: "InternalError", message: "etcd" } }],
  });
  const err = await assertRejects(other.run, { instanceOf: KubeApiError });
  assert(err instanceof KubeApiError && err.status === 500, "the event's code");
});

Deno.test("security: listAndWatch() rejects a watch event or a list item from another namespace", async () => {
  const watched = setUp({
    resourceVersion: "5",
    events: [{ type: "ADDED", object: deployment("x", "6", "other") }],
  });
  await assertRejects(watched.run, { instanceOf: WatchEventError, message: /outside ns/ });
  assertEquals(watched.index.count(), 0);
  const listed = setUp({
    lists: [{ items: [deployment("x", "1", "other")], resourceVersion: "5" }],
  });
  await assertRejects(listed.run, { instanceOf: WatchEventError, message: /outside ns/ });
  assertEquals(listed.index.count(), 0);
  assertEquals(listed.sync.synced(), false);
});
