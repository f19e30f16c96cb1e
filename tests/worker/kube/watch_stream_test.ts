/**
 * The watch stream (worker/kube/watch_stream.ts) and the watch half of the API
 * client that reads it: the request it sends, how the stream is split, and the
 * shape check every event passes before the inventory sees it. The API server
 * is a fake fetch here; tests/integration/watch_test.ts runs the same code
 * against the real one.
 */

import { assert, assertEquals, assertRejects, assertThrows } from "../../helpers/assert.ts";
import { createKubeApi } from "../../../worker/kube/api.ts";
import { KubeApiError, WatchEventError } from "../../../worker/kube/errors.ts";
import {
  parseWatchEvent,
  readWatchEvents,
  type WatchEvent,
} from "../../../worker/kube/watch_stream.ts";

const SECRET = "s3cr3t-token-in-an-object";

/** A KubeApi whose watch answers with `chunks` (strings, sent as they are). */
function apiStreaming(chunks: string[], seen: URL[] = []) {
  return createKubeApi({
    server: "https://api.test",
    fetch: (input) => {
      seen.push(new URL(String(input)));
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const c of chunks) controller.enqueue(encoder.encode(c));
          controller.close();
        },
      });
      return Promise.resolve(new Response(body, { status: 200 }));
    },
  });
}

async function collect(chunks: string[], onOpen?: () => void): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  const api = apiStreaming(chunks);
  for await (
    const e of api.watchDeployments("ns", {
      resourceVersion: "5",
      signal: new AbortController().signal,
      onOpen,
    })
  ) events.push(e);
  return events;
}

const added = {
  type: "ADDED",
  object: { metadata: { name: "app", namespace: "ns", resourceVersion: "6" } },
};
const bookmark = { type: "BOOKMARK", object: { metadata: { resourceVersion: "7" } } };
const gone = {
  type: "ERROR",
  object: { kind: "Status", code: 410, reason: "Expired", message: "too old resource version" },
};

Deno.test("parseWatchEvent() accepts each event type the API server sends", async (t) => {
  for (const type of ["ADDED", "MODIFIED", "DELETED"]) {
    await t.step(type, () => {
      const event = { ...added, type };
      assertEquals(parseWatchEvent(event), event as WatchEvent);
    });
  }
  await t.step("BOOKMARK keeps only the resourceVersion", () => {
    const withBody = { ...bookmark, object: { ...bookmark.object, spec: { replicas: 0 } } };
    assertEquals(parseWatchEvent(withBody), bookmark as WatchEvent);
  });
  await t.step("ERROR keeps code, reason and message", () => {
    assertEquals(parseWatchEvent(gone), {
      type: "ERROR",
      object: { code: 410, reason: "Expired", message: "too old resource version" },
    });
  });
});

Deno.test("parseWatchEvent() refuses an event missing what the inventory relies on", async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ["not an object", [added], /not a JSON object/],
    ["null", null, /not a JSON object/],
    ["an unknown type", { ...added, type: "UPSERTED" }, /type is not one of ADDED, MODIFIED/],
    ["a type that is not a string", { ...added, type: 1 }, /type is not one of/],
    ["no object", { type: "ADDED" }, /ADDED watch event has no object/],
    ["ERROR without a code", { type: "ERROR", object: { reason: "Expired" } }, /numeric code/],
    ["ERROR with a string code", { type: "ERROR", object: { code: "410" } }, /numeric code/],
    ["no metadata", { type: "MODIFIED", object: { spec: {} } }, /MODIFIED .* no metadata$/],
    [
      "a numeric resourceVersion",
      { type: "BOOKMARK", object: { metadata: { resourceVersion: 7 } } },
      /BOOKMARK .*metadata\.resourceVersion string/,
    ],
    [
      "no name",
      { type: "ADDED", object: { metadata: { namespace: "ns", resourceVersion: "6" } } },
      /ADDED .*metadata\.name string/,
    ],
    [
      "an empty namespace",
      { type: "DELETED", object: { metadata: { name: "a", namespace: "", resourceVersion: "6" } } },
      /DELETED .*metadata\.namespace string/,
    ],
  ];
  for (const [what, value, message] of cases) {
    await t.step(what, () => {
      assertThrows(() => parseWatchEvent(value), { instanceOf: WatchEventError, message });
    });
  }
});

Deno.test("watchDeployments() asks for bookmarks from the given resourceVersion with the given timeout", async () => {
  const seen: URL[] = [];
  const api = apiStreaming([], seen);
  for await (
    const _ of api.watchDeployments("ns", {
      resourceVersion: "42",
      signal: new AbortController().signal,
      timeoutSeconds: 417,
    })
  ) {
    // no events
  }
  assertEquals(seen[0].pathname, "/apis/apps/v1/namespaces/ns/deployments");
  assertEquals(Object.fromEntries(seen[0].searchParams), {
    watch: "1",
    allowWatchBookmarks: "true",
    resourceVersion: "42",
    timeoutSeconds: "417",
  });
});

Deno.test("watchDeployments() calls onOpen once the server accepted the watch, before any event", async () => {
  const order: string[] = [];
  const api = apiStreaming([JSON.stringify(bookmark) + "\n"]);
  for await (
    const e of api.watchDeployments("ns", {
      resourceVersion: "5",
      signal: new AbortController().signal,
      onOpen: () => order.push("open"),
    })
  ) order.push(e.type);
  assertEquals(order, ["open", "BOOKMARK"]);
});

Deno.test("watchDeployments() reassembles events split across chunks", async () => {
  const text = `${JSON.stringify(added)}\n\n${JSON.stringify(bookmark)}\n`;
  const chunks = [text.slice(0, 10), text.slice(10, 60), text.slice(60)];
  assertEquals((await collect(chunks)).map((e) => e.type), ["ADDED", "BOOKMARK"]);
  // One character per chunk: every boundary, including a newline arriving alone.
  assertEquals((await collect([...text])).map((e) => e.type), ["ADDED", "BOOKMARK"]);
});

Deno.test("watchDeployments() reports a stream cut inside an event as a network error", async () => {
  const partial = JSON.stringify(added).slice(0, 20);
  await assertRejects(() => collect([JSON.stringify(bookmark) + "\n", partial]), {
    instanceOf: KubeApiError,
    reason: "NetworkError",
    message: /ended in the middle of an event/,
  });
});

Deno.test("watchDeployments() refuses a malformed event instead of yielding it", async () => {
  const malformed = { type: "ADDED", object: { metadata: { namespace: "ns" } } };
  await assertRejects(() => collect([JSON.stringify(malformed) + "\n"]), {
    instanceOf: WatchEventError,
    code: "ERR_KUBE",
    message: /ADDED watch event has no metadata.resourceVersion string/,
  });
});

Deno.test("watchDeployments() refuses a line longer than any Deployment", async () => {
  const mib = "x".repeat(1024 * 1024);
  await assertRejects(() => collect(Array.from({ length: 17 }, () => mib)), {
    instanceOf: WatchEventError,
    message: /longer than 16777216 characters/,
  });
});

Deno.test("security: watch errors name the line or field, never the content", async (t) => {
  await t.step("a line that is not JSON", async () => {
    const line = `{"type":"ADDED","object":{"token":"${SECRET}"`;
    const err = await assertRejects(
      () => collect([JSON.stringify(bookmark) + "\n", line + "\n"]),
      {
        instanceOf: WatchEventError,
        message: /^watch stream line 2 is not JSON \(\d+ characters\)$/,
      },
    );
    assert(!err.message.includes(SECRET), err.message);
    assertEquals(err.cause, undefined, "the SyntaxError (which quotes the line) is not kept");
  });
  await t.step("an event of the wrong shape", async () => {
    const event = { type: SECRET, object: { metadata: { name: SECRET } } };
    const err = await assertRejects(() => collect([JSON.stringify(event) + "\n"]), {
      instanceOf: WatchEventError,
    });
    assert(!err.message.includes(SECRET), err.message);
  });
});

Deno.test("readWatchEvents() yields each checked event of a body, whatever its chunks", async () => {
  const text = `${JSON.stringify(added)}\n${JSON.stringify(gone)}\n`;
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of [text.slice(0, 7), text.slice(7)]) controller.enqueue(encoder.encode(c));
      controller.close();
    },
  });
  const events: WatchEvent[] = [];
  for await (const e of readWatchEvents(body)) events.push(e);
  assertEquals(events, [
    added as WatchEvent,
    {
      type: "ERROR",
      object: { code: 410, reason: "Expired", message: "too old resource version" },
    },
  ]);
});
