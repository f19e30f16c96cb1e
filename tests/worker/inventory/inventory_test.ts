/**
 * The inventory's list+watch decisions, in-process: a fake KubeApi whose
 * watches the test feeds by hand, and a fake clock so the idle deadline fires
 * exactly when the test says. tests/integration/watch_test.ts proves the same
 * paths against the real API server through a stalling proxy.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/cluster.ts";
import { createLogger } from "../../../lib/log.ts";
import type { KubeApi, WatchOptions } from "../../../worker/kube/api.ts";
import { KubeApiError, WatchEventError } from "../../../worker/kube/errors.ts";
import type { Deployment, DeploymentList } from "../../../worker/kube/objects.ts";
import type { WatchEvent } from "../../../worker/kube/watch_stream.ts";
import { fakeClock, settle } from "../../helpers/fake_clock.ts";
import { createRegistry } from "../../../lib/metrics.ts";
import { parseLabelSelector } from "../../../lib/label_selector.ts";
import {
  createWorkerMetrics,
  exportScopeAvailability,
  exportScopes,
} from "../../../worker/metrics.ts";
import {
  createInventory,
  type Inventory,
  type InventoryOptions,
  MIN_WATCH_TIMEOUT_SECONDS,
  randomWatchTimeout,
  WATCH_IDLE_TIMEOUT_MS,
} from "../../../worker/inventory/inventory.ts";

const IDLE = 1000;

/** One watch request the fake received; the test feeds it. */
interface FakeWatch {
  namespace: string | undefined;
  options: WatchOptions;
  aborted: () => boolean;
  /** Accepts the watch (the server answered 200). */
  open(): void;
  send(...events: WatchEvent[]): void;
  fail(err: Error): void;
  /** The server closes the stream, as it does at timeoutSeconds. */
  end(): void;
}

function deployment(namespace: string, name: string, image: string, rv = "1") {
  return {
    metadata: { namespace, name, resourceVersion: rv },
    spec: { template: { spec: { containers: [{ name: "c", image }] } } },
  } as Deployment & { metadata: { resourceVersion: string } };
}

const added = (d: ReturnType<typeof deployment>): WatchEvent => ({ type: "ADDED", object: d });
const bookmark = (rv: string): WatchEvent => ({
  type: "BOOKMARK",
  object: { metadata: { resourceVersion: rv } },
});

/**
 * A KubeApi whose lists answer with `answer` at once (or, without it, wait for
 * the test to release them) and whose watches the test drives.
 */
function fakeApi(
  options: {
    openWatches?: boolean;
    answer?: (ns: string | undefined) => DeploymentList | undefined;
    /** Serve the streaming list (sendInitialEvents) as a watch the test feeds; default: refuse it. */
    serveStreamingList?: boolean;
  } = {},
) {
  const watches: FakeWatch[] = [];
  const lists: { namespace: string | undefined; release: (page: DeploymentList) => void }[] = [];
  const answer = options.answer;
  let refusedStreamingLists = 0;
  const api: KubeApi = {
    listDeployments(namespace) {
      const page = answer?.(namespace);
      if (page) {
        lists.push({ namespace, release: () => {} });
        return Promise.resolve(structuredClone(page));
      }
      return new Promise((resolve) => lists.push({ namespace, release: resolve }));
    },
    watchDeployments(namespace, watchOptions) {
      if (watchOptions.sendInitialEvents && !options.serveStreamingList) {
        refusedStreamingLists++;
        // What kube-apiserver answers with the WatchList feature gate off.
        const refusal = new KubeApiError(
          422,
          "Invalid",
          'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled',
        );
        return {
          [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(refusal) }),
        };
      }
      const queue: (WatchEvent | Error | "end")[] = [];
      let wake = () => {};
      const push = (item: WatchEvent | Error | "end") => {
        queue.push(item);
        wake();
      };
      const watch: FakeWatch = {
        namespace,
        options: watchOptions,
        aborted: () => watchOptions.signal.aborted,
        open: () => watchOptions.onOpen?.(),
        send: (...events) => events.forEach(push),
        fail: push,
        end: () => push("end"),
      };
      watches.push(watch);
      if (options.openWatches ?? true) watch.open();
      return (async function* () {
        while (true) {
          if (watchOptions.signal.aborted) throw new DOMException("aborted", "AbortError");
          const item = queue.shift();
          if (item === undefined) {
            await new Promise<void>((resolve) => {
              wake = resolve;
              watchOptions.signal.addEventListener("abort", () => resolve(), { once: true });
            });
          } else if (item === "end") return;
          else if (item instanceof Error) throw item;
          else yield item;
        }
      })();
    },
    getDeployment: () => Promise.reject(new Error("not used")),
    patchDeployment: () => Promise.reject(new Error("not used")),
    createEvent: () => Promise.reject(new Error("not used")),
  };
  return { api, watches, lists, refusedStreamingLists: () => refusedStreamingLists };
}

interface Harness {
  inventory: Inventory;
  fake: ReturnType<typeof fakeApi>;
  clock: ReturnType<typeof fakeClock>;
  logs: Record<string, unknown>[];
  counts: Record<string, number>;
  stop(): Promise<void>;
}

function start(
  namespaces: string[],
  extra: Partial<InventoryOptions> & {
    openWatches?: boolean;
    lists?: (ns: string | undefined) => DeploymentList | undefined;
    serveStreamingList?: boolean;
  } = {},
): Harness {
  const { openWatches, lists, serveStreamingList, ...overrides } = extra;
  const fake = fakeApi({ openWatches, answer: lists, serveStreamingList });
  const clock = fakeClock();
  const logs: Record<string, unknown>[] = [];
  const counts: Record<string, number> = { relist: 0, error: 0, idle: 0, malformed: 0 };
  const inventory = createInventory({
    api: fake.api,
    namespaces,
    logger: createLogger({ level: "debug", write: (line) => logs.push(JSON.parse(line)) }),
    clock,
    watchIdleTimeoutMs: IDLE,
    random: () => 0,
    onRelist: () => counts.relist++,
    onWatchError: () => counts.error++,
    onWatchIdle: () => counts.idle++,
    onMalformedEvent: () => counts.malformed++,
    // The paged list and watch; the streaming list has its own tests below.
    streamingList: false,
    ...overrides,
  });
  const controller = new AbortController();
  const running = inventory.run(controller.signal);
  return {
    inventory,
    fake,
    clock,
    logs,
    counts,
    async stop() {
      controller.abort();
      await running;
    },
  };
}

const page = (rv: string, ...items: Deployment[]): DeploymentList => ({
  items,
  resourceVersion: rv,
});
const names = (inventory: Inventory, repository: string) =>
  inventory.candidates(repository).map((d) => `${d.namespace}/${d.name}`).sort();

async function watchNumber(h: Harness, n: number): Promise<FakeWatch> {
  return await eventually(`watch #${n}`, () => h.fake.watches[n - 1], 5000);
}

Deno.test("randomWatchTimeout() is uniform in [min, 2*min) as client-go's reflector", async (t) => {
  const cases: [number, number][] = [[0, 300], [0.5, 450], [0.9999, 599], [1, 300], [-1, 300]];
  for (const [r, expected] of cases) {
    await t.step(`random ${r} → ${expected} s`, () => {
      assertEquals(randomWatchTimeout(MIN_WATCH_TIMEOUT_SECONDS, () => r), expected);
    });
  }
});

Deno.test("the default idle deadline outlasts two bookmark intervals of kube-apiserver (one minute)", () => {
  assert(WATCH_IDLE_TIMEOUT_MS > 2 * 60_000, String(WATCH_IDLE_TIMEOUT_MS));
  assert(WATCH_IDLE_TIMEOUT_MS < MIN_WATCH_TIMEOUT_SECONDS * 1000, "shorter than any watch");
});

Deno.test("createInventory() asks every watch for a fresh random timeout", async () => {
  const randoms = [0, 0.5, 0.25];
  const h = start(["a"], {
    random: () => randoms.shift() ?? 0,
    minWatchTimeoutSeconds: 100,
    lists: () => page("10"),
  });
  try {
    for (let n = 1; n <= 3; n++) {
      const watch = await watchNumber(h, n);
      watch.send(bookmark(String(10 + n)));
      watch.end();
    }
    assertEquals(h.fake.watches.map((w) => w.options.timeoutSeconds), [100, 150, 125]);
    assertEquals(h.fake.watches.map((w) => w.options.resourceVersion), ["10", "11", "12"]);
  } finally {
    await h.stop();
  }
});

Deno.test("a watch silent past the idle deadline is aborted and resumed from the last resourceVersion, without a relist", async () => {
  const h = start(["a"], { lists: () => page("10") });
  try {
    const first = await watchNumber(h, 1);
    first.send(bookmark("12"));
    await settle();
    await h.clock.advance(IDLE);
    const second = await watchNumber(h, 2);
    assert(first.aborted(), "the silent watch is aborted");
    assertEquals(second.options.resourceVersion, "12");
    assertEquals(h.counts, { relist: 1, error: 0, idle: 1, malformed: 0 });
    const warn = h.logs.find((l) => String(l.msg).startsWith("watch idle"));
    assertEquals(warn?.level, "warn");
    assertEquals(warn?.idle_timeout_ms, IDLE);
  } finally {
    await h.stop();
  }
});

Deno.test("a bookmark resets the idle deadline", async () => {
  const h = start(["a"], { lists: () => page("10") });
  try {
    const first = await watchNumber(h, 1);
    await h.clock.advance(IDLE - 100);
    first.send(bookmark("11"));
    await settle();
    await h.clock.advance(200);
    assert(!first.aborted(), "a watch that delivered a bookmark 200 ms ago is alive");
    assertEquals(h.fake.watches.length, 1);
    await h.clock.advance(IDLE);
    assert(first.aborted(), "then silent for the whole deadline: aborted");
  } finally {
    await h.stop();
  }
});

Deno.test("a watch the server never answers is aborted at the idle deadline", async () => {
  const h = start(["a"], { openWatches: false, lists: () => page("10") });
  try {
    const first = await watchNumber(h, 1);
    await h.clock.advance(IDLE);
    assert(first.aborted());
    assertEquals((await watchNumber(h, 2)).options.resourceVersion, "10");
    assertEquals(h.counts.idle, 1);
  } finally {
    await h.stop();
  }
});

Deno.test("current() is false while nothing is heard past the idle deadline, and true again on the next event", async () => {
  const h = start(["a"], { openWatches: false, lists: () => page("10") });
  try {
    await watchNumber(h, 1);
    assert(h.inventory.current(), "just listed");
    await h.clock.advance(IDLE - 1);
    assert(h.inventory.current(), "heard from within the deadline");
    await h.clock.advance(2);
    assertEquals(h.inventory.current(), false);
    assertEquals(h.inventory.scopes(), { a: false });
    assert(h.inventory.synced(), "synced stays true: the first list did complete");
    const second = await watchNumber(h, 2);
    assertEquals(h.inventory.current(), false, "a watch that has not answered proves nothing");
    second.send(bookmark("11"));
    await eventually("current again", () => h.inventory.current() || undefined, 5000);
    assertEquals(h.inventory.scopes(), { a: true });
  } finally {
    await h.stop();
  }
});

Deno.test("current() survives a watch failure within the deadline and turns false when failing past it", async () => {
  // Watches are opened by hand: the resumed watch follows a real backoff, and one that opened
  // on its own before the clock moves would count as contact and make this race the machine.
  const h = start(["a"], { openWatches: false, lists: () => page("10") });
  try {
    const first = await watchNumber(h, 1);
    first.open();
    first.fail(new KubeApiError(0, "NetworkError", "connection reset"));
    await eventually("the failure is counted", () => h.counts.error === 1 || undefined, 5000);
    assert(h.inventory.current(), "one failed watch a moment after contact");
    await h.clock.advance(IDLE + 1);
    assertEquals(h.inventory.current(), false);
    assertEquals(h.counts.relist, 1, "a failed watch resumes; it does not relist");
  } finally {
    await h.stop();
  }
});

Deno.test("a 410 Gone relists; current() is false until the list completes, and the index is replaced", async (t) => {
  for (
    const [how, gone] of [
      [
        "ERROR event with code 410",
        (w: FakeWatch) =>
          w.send({ type: "ERROR", object: { code: 410, reason: "Expired", message: "too old" } }),
      ],
      ["HTTP 410 answer", (w: FakeWatch) => w.fail(new KubeApiError(410, "Expired", "410 Gone"))],
    ] as const
  ) {
    await t.step(how, async () => {
      const h = start(["a"]);
      try {
        (await eventually("first list", () => h.fake.lists[0], 5000)).release(
          page("10", deployment("a", "old", "ghcr.io/acme/app:1")),
        );
        const first = await watchNumber(h, 1);
        assert(h.inventory.current());
        gone(first);
        const relist = await eventually("relist", () => h.fake.lists[1], 5000);
        assertEquals(h.inventory.current(), false, "not current while relisting");
        assert(h.inventory.synced());
        relist.release(page("20", deployment("a", "new", "ghcr.io/acme/app:1")));
        const second = await watchNumber(h, 2);
        assertEquals(second.options.resourceVersion, "20");
        assert(h.inventory.current());
        assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/new"]);
        assertEquals(h.counts, { relist: 2, error: 0, idle: 0, malformed: 0 });
        assert(h.logs.some((l) => l.msg === "watch expired (410 Gone); relisting"));
        assert(h.logs.some((l) => l.msg === "inventory relisted" && l.deployments === 1));
      } finally {
        await h.stop();
      }
    });
  }
});

Deno.test("a 410 right after a relist backs off before relisting again", async () => {
  const h = start(["a"], { lists: () => page("10") });
  const gone: WatchEvent = { type: "ERROR", object: { code: 410, message: "too old" } };
  try {
    (await watchNumber(h, 1)).send(gone);
    (await watchNumber(h, 2)).send(gone);
    await watchNumber(h, 3);
    const expired = h.logs.filter((l) => l.msg === "watch expired (410 Gone); relisting");
    assertEquals(expired.length, 2);
    assertEquals(expired[0].retry_in_ms, undefined, "the first expiry relists at once");
    assertEquals(typeof expired[1].retry_in_ms, "number");
  } finally {
    await h.stop();
  }
});

Deno.test("a watch error other than 410 resumes the watch without a relist", async () => {
  const h = start(["a"], { lists: () => page("10") });
  try {
    const first = await watchNumber(h, 1);
    first.send(bookmark("11"), { type: "ERROR", object: { code: 500, message: "etcd down" } });
    assertEquals((await watchNumber(h, 2)).options.resourceVersion, "11");
    assertEquals(h.counts, { relist: 1, error: 1, idle: 0, malformed: 0 });
  } finally {
    await h.stop();
  }
});

Deno.test("a malformed answer is counted, logged, and repaired by a relist", async (t) => {
  await t.step("a malformed event (as kube/api.ts reports it)", async () => {
    const h = start(["a"], {
      lists: () => page("10", deployment("a", "app", "ghcr.io/acme/app:1")),
    });
    try {
      (await watchNumber(h, 1)).fail(new WatchEventError("ADDED watch event has no metadata"));
      await eventually("relist", () => h.counts.relist === 2 || undefined, 5000);
      assertEquals(h.counts.malformed, 1);
      const warn = h.logs.find((l) => l.msg === "malformed answer from the API server; relisting");
      assertEquals(warn?.error, "ADDED watch event has no metadata");
      assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/app"]);
    } finally {
      await h.stop();
    }
  });
  await t.step("security: an event for another namespace is not indexed", async () => {
    const h = start(["a"], { lists: () => page("10") });
    try {
      (await watchNumber(h, 1)).send(added(deployment("b", "intruder", "ghcr.io/acme/app:1")));
      await eventually("relist", () => h.counts.relist === 2 || undefined, 5000);
      assertEquals(h.counts.malformed, 1);
      assertEquals(names(h.inventory, "ghcr.io/acme/app"), []);
    } finally {
      await h.stop();
    }
  });
  await t.step("a list item without a name", async () => {
    const bad = { metadata: { namespace: "a" } } as Deployment;
    const h = start(["a"], { lists: () => page("10", bad) });
    try {
      await eventually("counted", () => h.counts.malformed > 0 || undefined, 5000);
      assertEquals(h.inventory.synced(), false);
    } finally {
      await h.stop();
    }
  });
});

Deno.test("a watch that closes at once without an event counts as a failure, not a healthy end", async () => {
  const h = start(["a"], { lists: () => page("10") });
  try {
    (await watchNumber(h, 1)).end();
    await eventually("counted", () => h.counts.error === 1 || undefined, 5000);
    const warn = h.logs.find((l) => l.msg === "inventory list/watch failed; retrying");
    assertEquals(warn?.error, "the watch closed within a second without an event");
  } finally {
    await h.stop();
  }
});

Deno.test("events keep the index current: added, modified, deleted", async () => {
  const h = start(["a"], { lists: () => page("10", deployment("a", "one", "ghcr.io/acme/app:1")) });
  try {
    const watch = await watchNumber(h, 1);
    watch.send(
      added(deployment("a", "two", "ghcr.io/acme/app:1", "11")),
      { type: "MODIFIED", object: deployment("a", "one", "ghcr.io/acme/other:1", "12") },
    );
    await eventually(
      "two added",
      () => names(h.inventory, "ghcr.io/acme/app")[0] === "a/two" || undefined,
      5000,
    );
    assertEquals(names(h.inventory, "ghcr.io/acme/other"), ["a/one"]);
    watch.send({ type: "DELETED", object: deployment("a", "two", "ghcr.io/acme/app:1", "13") });
    await eventually("two deleted", () => h.inventory.size() === 1 || undefined, 5000);
  } finally {
    await h.stop();
  }
});

Deno.test("'inventory synced' logs the scope's own count and the total, named as such", async () => {
  const h = start(["a", "b"]);
  try {
    const lists = await eventually("both lists", () => h.fake.lists[1] && h.fake.lists, 5000);
    const forA = lists.find((l) => l.namespace === "a")!;
    const forB = lists.find((l) => l.namespace === "b")!;
    forA.release(page("10", deployment("a", "x", "i:1"), deployment("a", "y", "i:1")));
    await settle();
    forB.release(page("11", deployment("b", "z", "i:1")));
    await eventually("both synced", () => h.inventory.synced() || undefined, 5000);
    const synced = h.logs.filter((l) => l.msg === "inventory synced")
      .map((l) => [l.scope, l.deployments, l.total_deployments]);
    assertEquals(synced, [["a", 2, 2], ["b", 1, 3]]);
  } finally {
    await h.stop();
  }
});

const initialEventsEnd = (rv: string): WatchEvent => ({
  type: "BOOKMARK",
  object: { metadata: { resourceVersion: rv }, initialEventsEnd: true },
});

Deno.test("the streaming list fills the index from its initial events, then the same stream goes on as the watch", async () => {
  const h = start(["a"], { streamingList: true, serveStreamingList: true });
  try {
    const stream = await watchNumber(h, 1);
    assertEquals(stream.options.sendInitialEvents, true);
    assertEquals(stream.options.resourceVersion, "", "the most recent state");
    let synced = false;
    void h.inventory.whenSynced(new AbortController().signal).then(() => synced = true);
    stream.send(
      added(deployment("a", "one", "ghcr.io/acme/app:1", "5")),
      added(deployment("a", "two", "ghcr.io/acme/app:1", "7")),
    );
    await settle();
    assertEquals(h.inventory.synced(), false, "not synced before the end bookmark");
    assertEquals(h.inventory.current(), false);
    assertEquals(synced, false);
    stream.send(initialEventsEnd("9"));
    await eventually("synced", () => synced || undefined, 5000);
    assert(h.inventory.current());
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/one", "a/two"]);
    stream.send({ type: "DELETED", object: deployment("a", "one", "ghcr.io/acme/app:1", "10") });
    await eventually("deleted", () => h.inventory.size() === 1 || undefined, 5000);
    stream.end();
    const watch = await watchNumber(h, 2);
    assertEquals(watch.options.sendInitialEvents, false, "a plain watch resumes it");
    assertEquals(watch.options.resourceVersion, "10");
    assertEquals(h.fake.lists.length, 0, "no paged list");
    assertEquals(h.counts, { relist: 1, error: 0, idle: 0, malformed: 0 });
    assert(h.logs.some((l) => l.msg === "inventory synced" && l.streamed === true));
  } finally {
    await h.stop();
  }
});

Deno.test("a streaming list cut before its end bookmark is not synced; the next one replaces the index", async () => {
  const h = start(["a"], { streamingList: true, serveStreamingList: true });
  try {
    const first = await watchNumber(h, 1);
    first.send(added(deployment("a", "one", "ghcr.io/acme/app:1")));
    first.end();
    const second = await watchNumber(h, 2);
    assertEquals(h.inventory.synced(), false);
    assertEquals(second.options.sendInitialEvents, true, "asked again from the start");
    second.send(
      added(deployment("a", "one", "ghcr.io/acme/app:1")),
      added(deployment("a", "two", "ghcr.io/acme/app:1")),
      initialEventsEnd("20"),
    );
    await eventually("synced", () => h.inventory.synced() || undefined, 5000);
    // A 410 relists by streaming again; what it does not bring any more is gone.
    second.send({ type: "ERROR", object: { code: 410, reason: "Expired", message: "too old" } });
    const third = await watchNumber(h, 3);
    assertEquals(third.options.sendInitialEvents, true);
    assertEquals(h.inventory.current(), false, "not current while relisting");
    third.send(added(deployment("a", "two", "ghcr.io/acme/app:1")), initialEventsEnd("30"));
    await eventually("relisted", () => h.inventory.current() || undefined, 5000);
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/two"]);
    assert(h.logs.some((l) => l.msg === "inventory relisted" && l.deployments === 1));
  } finally {
    await h.stop();
  }
});

Deno.test("a server that refuses the streaming list (422, WatchList off) is listed in pages, and asked only once", async () => {
  const h = start(["a"], {
    streamingList: true,
    lists: () => page("10", deployment("a", "one", "ghcr.io/acme/app:1")),
  });
  try {
    const watch = await watchNumber(h, 1);
    assertEquals(watch.options.sendInitialEvents, false);
    assertEquals(watch.options.resourceVersion, "10");
    assert(h.inventory.synced());
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/one"]);
    assertEquals(h.fake.refusedStreamingLists(), 1);
    watch.send({ type: "ERROR", object: { code: 410, reason: "Expired", message: "too old" } });
    await eventually("relisted in pages", () => h.fake.lists[1], 5000);
    assertEquals(h.fake.refusedStreamingLists(), 1, "not asked again");
    assertEquals(h.counts.relist, 2, "one relist each, the refusal included in the first");
    assertEquals(h.counts.error, 0, "a refusal is not a failure");
    assert(
      h.logs.some((l) =>
        l.msg === "the API server does not offer the streaming list; listing in pages"
      ),
    );
  } finally {
    await h.stop();
  }
});

Deno.test("a streaming-list event outside the namespace is refused and relisted", async () => {
  const h = start(["a"], { streamingList: true, serveStreamingList: true });
  try {
    const stream = await watchNumber(h, 1);
    stream.send(added(deployment("b", "intruder", "ghcr.io/acme/app:1")));
    const next = await watchNumber(h, 2);
    assertEquals(next.options.sendInitialEvents, true);
    assertEquals(h.counts.malformed, 1);
    assertEquals(h.inventory.candidates("ghcr.io/acme/app"), []);
  } finally {
    await h.stop();
  }
});

const FORBIDDEN_B =
  '403 Forbidden: deployments.apps is forbidden: User "system:serviceaccount:krt:worker"' +
  ' cannot list resource "deployments" in API group "apps" in the namespace "b"';

/** The worker's scope gauges after a scrape, as the worker sets them. */
function scrapeUnavailable(inventory: Inventory): string[] {
  const registry = createRegistry();
  const metrics = createWorkerMetrics(registry);
  exportScopes(metrics, Object.keys(inventory.scopes()));
  exportScopeAvailability(metrics, inventory);
  return registry.render().split("\n")
    .filter((l) => l.startsWith("kuberollouttrigger_worker_inventory_scope_unavailable{"));
}

Deno.test("a namespace whose list is refused holds nothing back: settled at its first failure, named with the API's answer, available once it lists", async () => {
  let forbidden = true;
  const calls: Record<string, number> = { a: 0, b: 0 };
  const h = start(["a", "b"], {
    lists: (ns) => {
      calls[ns!]++;
      if (ns === "b" && forbidden) {
        // As kube/api.ts words it: the request line (with the page's query), then the answer.
        throw new KubeApiError(
          403,
          "Forbidden",
          `GET /apis/apps/v1/namespaces/b/deployments?limit=500: ${FORBIDDEN_B}`,
        );
      }
      return page("10", deployment(ns!, "app", "ghcr.io/acme/app:1"));
    },
  });
  try {
    await eventually("settled", () => h.inventory.settled() || undefined, 5000);
    assertEquals(calls.b, 1, "settled at the first failure, not after the retries");
    assertEquals(h.inventory.synced(), false, "synced still means every scope listed");
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/app"]);
    assertEquals(h.inventory.unavailable(), [{
      scope: "b",
      reason: `namespace b: ${FORBIDDEN_B}`,
    }]);
    assertEquals(h.inventory.readiness(), { ok: false, detail: `namespace b: ${FORBIDDEN_B}` });
    assertEquals(h.inventory.current(), false);
    assertEquals(scrapeUnavailable(h.inventory), [
      'kuberollouttrigger_worker_inventory_scope_unavailable{scope="a"} 0',
      'kuberollouttrigger_worker_inventory_scope_unavailable{scope="b"} 1',
    ]);
    const warn = h.logs.filter((l) => String(l.msg).startsWith("inventory scope cannot be listed"));
    assertEquals(warn.map((l) => [l.level, l.scope, l.error]), [["warn", "b", FORBIDDEN_B]]);

    forbidden = false;
    await eventually("b listed", () => h.inventory.synced() || undefined, 5000);
    assertEquals(h.inventory.unavailable(), []);
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/app", "b/app"]);
    assertEquals(h.inventory.readiness(), { ok: true });
    assertEquals(scrapeUnavailable(h.inventory), [
      'kuberollouttrigger_worker_inventory_scope_unavailable{scope="a"} 0',
      'kuberollouttrigger_worker_inventory_scope_unavailable{scope="b"} 0',
    ]);
  } finally {
    await h.stop();
  }
});

Deno.test("a scope whose first list is still running keeps the inventory unsettled until it answers", async () => {
  const h = start(["a", "b"], { lists: (ns) => ns === "a" ? page("10") : undefined });
  try {
    await eventually("a listed", () => h.inventory.scopes().a || undefined, 5000);
    let settled = false;
    void h.inventory.whenSettled(new AbortController().signal).then(() => settled = true);
    await settle();
    assertEquals([h.inventory.settled(), settled], [false, false], "b's list is still running");
    assertEquals(h.inventory.unavailable(), []);
    assertEquals(h.inventory.readiness(), { ok: false, detail: "namespace b: not listed yet" });
    // kube/api.ts bounds each list request; here the fake answers when told.
    h.fake.lists.find((l) => l.namespace === "b")!.release(page("11"));
    await eventually("settled", () => settled || undefined, 5000);
    assertEquals([h.inventory.synced(), h.inventory.unavailable()], [true, []]);
  } finally {
    await h.stop();
  }
});

Deno.test("a streaming list that sends nothing fails at the list deadline: its scope is unavailable, and the retry makes it available", async () => {
  const h = start(["a"], {
    streamingList: true,
    serveStreamingList: true,
    openWatches: false,
    listTimeoutMs: 400,
  });
  try {
    const first = await watchNumber(h, 1);
    await h.clock.advance(399);
    assertEquals([first.aborted(), h.inventory.settled()], [false, false]);
    await h.clock.advance(1);
    assert(first.aborted(), "aborted at the list deadline, not the idle one");
    await eventually("settled", () => h.inventory.settled() || undefined, 5000);
    assertEquals(h.inventory.unavailable(), [
      { scope: "a", reason: "namespace a: the streaming list sent nothing for 0.4 s" },
    ]);
    assertEquals(h.counts, { relist: 1, error: 1, idle: 0, malformed: 0 }, "a failed list");
    const second = await watchNumber(h, 2);
    assertEquals(second.options.sendInitialEvents, true, "listed again");
    second.open();
    second.send(initialEventsEnd("5"));
    await eventually("available", () => h.inventory.synced() || undefined, 5000);
    assertEquals(h.inventory.unavailable(), []);
  } finally {
    await h.stop();
  }
});

Deno.test("the list deadline bounds the silence between a streaming list's events, and gives way to the idle deadline at its end", async () => {
  const h = start(["a"], { streamingList: true, serveStreamingList: true, listTimeoutMs: 400 });
  try {
    const stream = await watchNumber(h, 1);
    for (const name of ["one", "two", "three"]) {
      await h.clock.advance(300);
      stream.send(added(deployment("a", name, "ghcr.io/acme/app:1")));
      await settle();
    }
    await h.clock.advance(300);
    stream.send(initialEventsEnd("9"));
    await eventually("synced", () => h.inventory.synced() || undefined, 5000);
    assert(!stream.aborted(), "a list that keeps sending is not cut, however long it takes");
    await h.clock.advance(IDLE - 1);
    assert(!stream.aborted(), "listed: the idle deadline applies, not the list's");
    await h.clock.advance(1);
    assert(stream.aborted());
    assertEquals(h.counts, { relist: 1, error: 0, idle: 1, malformed: 0 });
    assertEquals(h.inventory.unavailable(), []);
  } finally {
    await h.stop();
  }
});

Deno.test("a relist refused after a list keeps the stale index: the scope is not current, but not unavailable", async () => {
  let forbidden = false;
  const refusal = "403 Forbidden: deployments.apps is forbidden";
  const h = start(["a"], {
    lists: () => {
      if (forbidden) throw new KubeApiError(403, "Forbidden", `GET /x?limit=500: ${refusal}`);
      return page("10", deployment("a", "app", "ghcr.io/acme/app:1"));
    },
  });
  try {
    const first = await watchNumber(h, 1);
    forbidden = true;
    first.send({ type: "ERROR", object: { code: 410, reason: "Expired", message: "too old" } });
    await eventually("the relist failed", () => h.counts.error > 0 || undefined, 5000);
    assertEquals(h.inventory.unavailable(), []);
    assertEquals([h.inventory.settled(), h.inventory.synced()], [true, true]);
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/app"], "the stale index answers");
    assertEquals(h.inventory.readiness(), {
      ok: false,
      detail: `namespace a: relisting; the last list failed: ${refusal}`,
    });
    assertEquals(scrapeUnavailable(h.inventory), [
      'kuberollouttrigger_worker_inventory_scope_unavailable{scope="a"} 0',
    ]);
    assert(!h.logs.some((l) => String(l.msg).startsWith("inventory scope cannot be listed")));
  } finally {
    await h.stop();
  }
});

Deno.test("a watch refused after a list keeps the index, and readiness names the refusal once the scope is not current", async () => {
  const refusal = "403 Forbidden: deployments.apps is forbidden";
  const h = start(["a"], {
    openWatches: false,
    lists: () => page("10", deployment("a", "app", "ghcr.io/acme/app:1")),
  });
  try {
    const first = await watchNumber(h, 1);
    first.fail(new KubeApiError(403, "Forbidden", `GET /x?watch=1: ${refusal}`));
    await eventually("the failure is counted", () => h.counts.error === 1 || undefined, 5000);
    await h.clock.advance(IDLE + 1);
    assertEquals(h.inventory.readiness(), {
      ok: false,
      detail:
        `namespace a: nothing heard from the API server within 1 s; the last watch failed: ${refusal}`,
    });
    assertEquals([h.inventory.unavailable(), h.inventory.settled()], [[], true]);
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["a/app"]);
    const second = await watchNumber(h, 2);
    second.open();
    assertEquals(h.inventory.readiness(), { ok: true }, "answered again: current");
  } finally {
    await h.stop();
  }
});

Deno.test("security: with DEPLOYMENT_SELECTOR, a Deployment read by name that no longer matches leaves the index instead of coming back", async () => {
  const labelled = (labels: Record<string, string>) => {
    const d = deployment("ns", "app", "ghcr.io/acme/app:dev");
    d.metadata.labels = labels;
    return d;
  };
  const h = start(["ns"], {
    selector: parseLabelSelector("team=a"),
    lists: () => page("1", labelled({ team: "a" })),
  });
  try {
    await eventually(
      "listed",
      () => names(h.inventory, "ghcr.io/acme/app").length === 1 || undefined,
    );
    // A restart's fresh read finds the label gone (the watch's DELETED may come later, or not).
    h.inventory.upsert(labelled({ team: "b" }));
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), []);
    h.inventory.upsert(labelled({ team: "a" }));
    assertEquals(names(h.inventory, "ghcr.io/acme/app"), ["ns/app"]);
  } finally {
    await h.stop();
  }
});
