/** The dev mode's in-memory KubeApi, where its behaviour meets the inventory's watch discipline. */

import { assertEquals } from "../helpers/assert.ts";
import { createLogger } from "../../shared/log.ts";
import type { WatchEvent } from "../../worker/kube_api.ts";
import { createLocalApi } from "../../worker/local_api.ts";

Deno.test("createLocalApi() keeps its never-changing watch alive with bookmarks, as kube-apiserver does", async () => {
  const api = createLocalApi([], createLogger({ level: "error", write: () => {} }), undefined, 10);
  const stop = new AbortController();
  const bound = setTimeout(() => stop.abort(), 5000);
  const events: WatchEvent[] = [];
  let opened = 0;
  try {
    for await (
      const e of api.watchDeployments("ns", {
        resourceVersion: "0",
        signal: stop.signal,
        onOpen: () => opened++,
      })
    ) {
      events.push(e);
      if (events.length === 2) break;
    }
  } finally {
    clearTimeout(bound);
  }
  assertEquals(opened, 1);
  assertEquals(events, [
    { type: "BOOKMARK", object: { metadata: { resourceVersion: "0" } } },
    { type: "BOOKMARK", object: { metadata: { resourceVersion: "0" } } },
  ]);
});
