/**
 * Web's reading of the status record on a real Valkey-compatible server: the
 * clusters that were not live, and records or fields web did not write. What
 * the publish script writes is proven in tests/integration/web/publisher_test.ts.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { connectValkey, startValkey } from "../../helpers/valkey.ts";
import { generateKeyPair } from "../../helpers/signing_keys.ts";
import { report } from "../../helpers/status_fixtures.ts";
import {
  BINDING_FIELD,
  reportField,
  type StatusBinding,
  statusKey,
  UNREACHABLE_FIELD,
} from "../../../shared/event_status.ts";
import { encodeEventMessage } from "../../../shared/event.ts";
import { parseClusterKeys, parseSigningKey } from "../../../shared/event_keys.ts";
import { importVerifyKeys } from "../../../shared/event_signature.ts";
import { importSigningKey } from "../../../shared/signing_key.ts";
import { clusterName } from "../../../config/worker_settings.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { createSigner } from "../../../web/event_signer.ts";
import { createReportVerifier } from "../../../web/report_verifier.ts";
import { createStatusReader } from "../../../web/status_store.ts";
import { reportValue } from "../../../worker/feedback/store.ts";

const BINDING_EVENT = {
  image: "ghcr.io/acme/app",
  tags: ["dev"],
  time: "2026-12-01T10:00:00.000Z",
};
const BINDING = { repository: "b".repeat(64), ...BINDING_EVENT };

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

Deno.test({
  name:
    "security: with report keys, createStatusReader() reads only reports their cluster signed, and only web's cluster list",
  ignore: withoutValkey(),
  async fn(t) {
    const [web, east, west] = await Promise.all([
      generateKeyPair(),
      generateKeyPair(),
      generateKeyPair(),
    ]);
    const signer = await createSigner(parseSigningKey(web.privatePem)!);
    const bindingKeys = await importVerifyKeys([{ raw: signer.publicKey }]);
    const verifier = await createReportVerifier(
      parseClusterKeys(`east=${east.publicLine},west=${west.publicLine}`, clusterName),
    );
    const eastKey = await importSigningKey(parseSigningKey(east.privatePem)!, "k");
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const lines: LogFields[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const rejected: string[] = [];
    const reader = createStatusReader(client, logger, bindingKeys, {
      verifier,
      clusters: ["east", "west"],
      rejected: (reason) => rejected.push(reason),
    });
    /** A record as web writes it: binding signed, cluster list signed. */
    const published = async (clusters = ["east", "west"], edit?: (b: StatusBinding) => void) => {
      const id = crypto.randomUUID();
      const event = encodeEventMessage({ id, ...BINDING_EVENT });
      const { kid, sig } = await signer.signEvent(event, BINDING.repository);
      const binding: StatusBinding = {
        ...BINDING,
        clusters,
        kid,
        sig,
        csig: signer.signClusters(id, clusters),
      };
      edit?.(binding);
      await client.call("HSET", statusKey(id), BINDING_FIELD, JSON.stringify(binding));
      return id;
    };
    const succeeded = (cluster: string) =>
      JSON.stringify(report(cluster, { restarted: 1, complete: 1 }));
    try {
      await t.step("a report its cluster signed counts; one it did not is not there", async () => {
        const id = await published();
        await client.call(
          "HSET",
          statusKey(id),
          reportField("east"),
          reportValue(id, JSON.parse(succeeded("east")), eastKey),
        );
        // Forged: unsigned, and east's key filed as west's.
        await client.call("HSET", statusKey(id), reportField("west"), succeeded("west"));
        const stored = await reader.read(id);
        assertEquals([...stored!.reports.keys()], ["east"]);
        assertEquals(stored!.unreadable, []);
        await client.call(
          "HSET",
          statusKey(id),
          reportField("west"),
          reportValue(id, JSON.parse(succeeded("west")), eastKey),
        );
        assertEquals([...(await reader.read(id))!.reports.keys()], ["east"]);
        assertEquals(rejected, ["unsigned", "unknown_key"]);
      });
      await t.step("each ignored field is logged once, however often it is read", async () => {
        const id = await published();
        await client.call("HSET", statusKey(id), reportField("west"), succeeded("west"));
        lines.length = 0;
        for (let i = 0; i < 3; i++) await reader.read(id);
        const ignored = lines.filter((l) => l.msg === "cluster report ignored");
        assertEquals(ignored.map((l) => [l.cluster, l.reason]), [["west", "unsigned"]]);
      });
      await t.step("east's signed report moved to another event is ignored", async () => {
        const from = await published();
        const to = await published();
        const value = reportValue(from, JSON.parse(succeeded("east")), eastKey);
        await client.call("HSET", statusKey(to), reportField("east"), value);
        assertEquals((await reader.read(to))!.reports.size, 0);
      });
      await t.step(
        "a cluster list cut, or not signed by web (an older replica), still waits for every cluster",
        async () => {
          const cut = await published(["east", "west"], (b) => b.clusters = ["east"]);
          assertEquals((await reader.read(cut))?.binding.clusters, ["east", "west"]);
          const bare = await published(["east"], (b) => delete b.csig);
          assertEquals((await reader.read(bare))?.binding.clusters, ["east", "west"]);
          // The list is signed in code-unit order, whatever order Valkey stored it in.
          const reordered = await published(["east", "west"], (b) => b.clusters = ["west", "east"]);
          assertEquals((await reader.read(reordered))?.binding.clusters, ["west", "east"]);
        },
      );
      await t.step(
        "reports of clusters the event does not wait for are not read, however many",
        async () => {
          const id = await published(["east"]);
          for (let i = 0; i < 50; i++) {
            await client.call(
              "HSET",
              statusKey(id),
              reportField(`junk${i}`),
              succeeded(`junk${i}`),
            );
          }
          await client.call(
            "HSET",
            statusKey(id),
            reportField("west"),
            reportValue(id, JSON.parse(succeeded("west")), eastKey),
          );
          lines.length = 0;
          rejected.length = 0;
          const stored = await reader.read(id);
          assertEquals([stored!.reports.size, stored!.unreadable], [0, []]);
          // Counted and logged once for the event, not per field nor per read.
          await reader.read(id);
          assertEquals(rejected, ["not_waited_for"]);
          const logged = lines.filter((l) => l.msg === "cluster report ignored");
          assertEquals(logged.length, 1, "one line for the event, not one per field");
        },
      );
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test({
  name: "security: a status key holding another type is no record (404), not a failure (503)",
  ignore: withoutValkey(),
  async fn() {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const lines: LogFields[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    try {
      const id = crypto.randomUUID();
      await client.call("SET", statusKey(id), "not a hash");
      assertEquals(await createStatusReader(client, logger).read(id), undefined);
      assert(lines.some((l) => l.msg === "status record is not a hash; answering not found"));
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});
