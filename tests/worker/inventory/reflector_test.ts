/**
 * runReflector() driven directly, with the real index and sync tracker and a
 * small fake API: attempt after attempt, the watch resumes where a streaming
 * list ended, and a 410 Gone leads to a relist. Each attempt's list and watch
 * calls are proven on their own in list_watch_test.ts; the watch discipline in
 * detail (idle deadline, bookmarks, backoff, malformed answers) through
 * createInventory() in inventory_test.ts and against a real API server in
 * tests/integration/watch_test.ts. What a failed list leaves as its reason
 * comes from the real API client's errors.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { fakeClock, settle } from "../../helpers/fake_clock.ts";
import { createLogger } from "../../../lib/log.ts";
import type { KubeApi, WatchOptions } from "../../../worker/kube/api.ts";
import type { Deployment, DeploymentList } from "../../../worker/kube/objects.ts";
import type { WatchEvent } from "../../../worker/kube/watch_stream.ts";
import { createDeploymentIndex } from "../../../worker/inventory/index.ts";
import { failureAnswer, runReflector } from "../../../worker/inventory/reflector.ts";
import { createKubeApi } from "../../../worker/kube/api.ts";
import { KubeApiError } from "../../../worker/kube/errors.ts";
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
      listTimeoutMs: 15_000,
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

/** The real API client over a fetch that answers every request with `answer`. */
function apiAnswering(answer: () => Promise<Response>) {
  return createKubeApi({
    server: "https://k8s.test",
    fetch: () => answer(),
    authorization: () => Promise.resolve("Bearer worker-token-canary"),
  });
}

const forbiddenStatus = {
  kind: "Status",
  apiVersion: "v1",
  status: "Failure",
  message: 'deployments.apps is forbidden: User "system:serviceaccount:krt:worker" cannot list' +
    ' resource "deployments" in API group "apps" in the namespace "b"',
  reason: "Forbidden",
  code: 403,
};

Deno.test("failureAnswer() gives the API's answer without the request line, from the real client's errors", async (t) => {
  const cases: [string, () => Promise<unknown>, string][] = [
    [
      "403 on a paged list's next page",
      () =>
        apiAnswering(() => Promise.resolve(Response.json(forbiddenStatus, { status: 403 })))
          .listDeployments("b", { continueToken: "continue-token-canary" }),
      `403 Forbidden: ${forbiddenStatus.message}`,
    ],
    [
      "403 on a streaming list",
      async () => {
        const api = apiAnswering(() =>
          Promise.resolve(Response.json(forbiddenStatus, { status: 403 }))
        );
        const stream = api.watchDeployments("b", {
          resourceVersion: "",
          sendInitialEvents: true,
          signal: new AbortController().signal,
        });
        for await (const _ of stream) break;
      },
      `403 Forbidden: ${forbiddenStatus.message}`,
    ],
    [
      "no answer at all",
      () => apiAnswering(() => Promise.reject(new TypeError("fetch failed"))).listDeployments("b"),
      "NetworkError: fetch failed",
    ],
    [
      "a body that is not a Status",
      () =>
        apiAnswering(() => Promise.resolve(new Response("<html>", { status: 502 })))
          .listDeployments("b"),
      "502 Error",
    ],
    [
      "an error from the reflector itself",
      () => Promise.reject(new Error("the list answer carries no resourceVersion")),
      "the list answer carries no resourceVersion",
    ],
  ];
  for (const [name, call, expected] of cases) {
    await t.step(name, async () => {
      const err = await call().then(() => undefined, (e) => e);
      const answer = failureAnswer(err);
      assertEquals(answer, expected);
      // Security: the query (a continue token) and the credentials stay out of reports.
      assert(!answer.includes("canary"), answer);
    });
  }
  assertEquals(
    failureAnswer(new KubeApiError(500, "InternalError", "watch error 500: etcd timeout")),
    "watch error 500: etcd timeout",
  );
});
