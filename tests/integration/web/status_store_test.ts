/**
 * Web's reading of the status record on a real Valkey-compatible server: the
 * clusters that were not live, and records or fields web did not write. What
 * the publish script writes is proven in tests/integration/web/publisher_test.ts.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { connectValkey, startValkey } from "../../helpers/valkey.ts";
import {
  BINDING_FIELD,
  reportField,
  statusKey,
  UNREACHABLE_FIELD,
} from "../../../shared/event_status.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { createStatusReader } from "../../../web/status_store.ts";

const BINDING = {
  repository: "b".repeat(64),
  image: "ghcr.io/acme/app",
  tags: ["dev"],
  time: "2026-12-01T10:00:00.000Z",
};

Deno.test({
  name:
    "createStatusReader() reads web's list of clusters that were not live, and ignores a damaged one",
  ignore: withoutValkey(),
  async fn(t) {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const lines: LogFields[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const reader = createStatusReader(client, logger);
    const secret = "s3cret-from-valkey";
    const bound = async (unreachable?: string) => {
      const id = crypto.randomUUID();
      const binding = JSON.stringify({ ...BINDING, clusters: ["east", "west"] });
      await client.call("HSET", statusKey(id), BINDING_FIELD, binding);
      if (unreachable !== undefined) {
        await client.call("HSET", statusKey(id), UNREACHABLE_FIELD, unreachable);
      }
      return id;
    };
    try {
      await t.step("the list web wrote", async () => {
        assertEquals((await reader.read(await bound('["west"]')))?.unreachable, ["west"]);
      });
      await t.step("no list (every cluster was live, or an older web wrote it): none", async () => {
        assertEquals((await reader.read(await bound()))?.unreachable, []);
      });
      for (
        const [name, raw] of [
          ["not JSON", `["${secret}`],
          ["a name that is not one", JSON.stringify([`${secret} x`])],
          ["more than 1000 names", JSON.stringify(Array.from({ length: 1001 }, (_, i) => `c${i}`))],
        ]
      ) {
        await t.step(
          `security: ${name}: the record still reads, logged, never quoted`,
          async () => {
            lines.length = 0;
            const stored = await reader.read(await bound(raw));
            assertEquals(stored?.binding.clusters, ["east", "west"]);
            assertEquals(stored?.unreachable, []);
            assert(
              lines.some((l) => l.msg === "unreachable list unreadable"),
              JSON.stringify(lines),
            );
            assert(!JSON.stringify(lines).includes(secret));
          },
        );
      }
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  name: "security: createStatusReader() answers unknown for records web did not bind",
  ignore: withoutValkey(),
  async fn(t) {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const lines: LogFields[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const reader = createStatusReader(client, logger);
    const secret = "s3cret-from-valkey";
    try {
      await t.step("a report without a binding (a worker, or anyone, wrote it)", async () => {
        const id = crypto.randomUUID();
        await client.call("HSET", statusKey(id), reportField("east"), "{}");
        assertEquals(await reader.read(id), undefined);
      });
      await t.step(
        "a forged, unreadable binding: unknown, logged without its content",
        async () => {
          const id = crypto.randomUUID();
          await client.call("HSET", statusKey(id), BINDING_FIELD, `{"repository":"${secret}`);
          assertEquals(await reader.read(id), undefined);
          assert(lines.some((l) => l.msg === "status binding unreadable; answering not found"));
          assert(!JSON.stringify(lines).includes(secret));
        },
      );
      await t.step("an unreadable report fails its cluster, never quoted", async () => {
        const id = crypto.randomUUID();
        await client.call(
          "HSET",
          statusKey(id),
          BINDING_FIELD,
          JSON.stringify({ ...BINDING, clusters: [] }),
        );
        await client.call("HSET", statusKey(id), reportField("east"), `{"x":"${secret}"}`);
        await client.call("HSET", statusKey(id), "cluster:bad name", "{}");
        const stored = await reader.read(id);
        assertEquals(stored?.unreadable, ["east"]);
        assertEquals(stored?.reports.size, 0);
        assert(!JSON.stringify(lines).includes(secret));
      });
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});
