import { assert, assertEquals, assertRejects } from "../../helpers/assert.ts";
import { AppError } from "../../../shared/errors.ts";
import { createLogger } from "../../../lib/log.ts";
import type { WatchEvent } from "../../../worker/kube/watch_stream.ts";
import { createLocalApi, loadLocalInventory } from "../../../worker/kube/local_api.ts";
/** The dev mode's in-memory KubeApi, where its behaviour meets the inventory's watch discipline. */

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

Deno.test("security: loadLocalInventory() reports a YAML error by position, never quoting the file", async () => {
  const secret = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(
      path,
      `kind: Deployment\nmetadata: { name: a, namespace: b }\nspec:\n  env: [{ name: DB_PASSWORD, value: "${secret}" }\n`,
    );
    const err = await assertRejects(() => loadLocalInventory(path), {
      instanceOf: AppError,
      code: "ERR_CONFIG",
      message: /Cannot read LOCAL_INVENTORY .*: YAML error [A-Z_]+ at line \d+, column \d+$/,
    });
    assert(!err.message.includes(secret), err.message);
  } finally {
    await Deno.remove(path);
  }
});
