/**
 * The replay guard with web's one publish script against a real
 * Valkey-compatible server: what it stores, for how long, in how many calls,
 * and how it answers repeats, other bodies, no known cluster, records still in
 * flight, values that are not its own and a Valkey that is down.
 */

import { assert, assertEquals, assertRejects } from "../../helpers/assert.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import {
  connectValkey,
  type RecordingSubscriber,
  startValkey,
  subscribe,
  testSettings,
} from "../../helpers/valkey.ts";
import { createLogger } from "../../../lib/log.ts";
import { AppError } from "../../../shared/errors.ts";
import { AuthError } from "../../../web/reasons.ts";
import { CLUSTERS_KEY, statusKey } from "../../../shared/event_status.ts";
import { EVENTS_STREAM } from "../../../shared/event_stream.ts";
import { createValkeyClient, type ValkeyCommands } from "../../../shared/valkey_client.ts";
import { createPublisher, type PublisherOptions } from "../../../web/publisher.ts";
import { createReplayGuard, replayTtlMs } from "../../../web/replay.ts";

const BINDING = {
  repository: "acme/app",
  image: "ghcr.io/acme/app",
  tags: ["dev"],
  time: "2026-12-01T10:00:00.000Z",
};

const TOLERANCE = 15_000;
const MAX_AGE = 600_000;
/** The publisher's settings but its connection and channel: the settings' defaults. */
const WINDOWS = {
  statusTtlMs: 60_000,
  catchUpWindowMs: 3_600_000,
  forgetAfterMs: 168 * 3_600_000,
} satisfies Partial<PublisherOptions>;

Deno.test("replayTtlMs() is a whole number of ms until the token can no longer verify", async (t) => {
  const nowMs = 1_000_000_000_000;
  const now = nowMs / 1000;
  const opts = { clockToleranceMs: TOLERANCE, maxTokenAgeMs: MAX_AGE, nowMs };
  const cases: [string, { exp: number; iat: number }, number][] = [
    ["whole seconds: until exp + tolerance", { exp: now + 300, iat: now }, 315_000],
    ["exp with a sub-millisecond fraction", { exp: now + 300.0004, iat: now }, 315_001],
    ["iat with a fraction", { exp: now + 3600, iat: now - 0.0004 }, 615_000],
    ["exp after iat + max age: the age bound", { exp: now + 86_400, iat: now }, 615_000],
    ["far-future exp (1e300)", { exp: 1e300, iat: now }, 615_000],
    ["infinite exp", { exp: Infinity, iat: now }, 615_000],
    ["no iat (NaN)", { exp: now + 300, iat: NaN }, 630_000],
    ["already expired: the minimum", { exp: now - 60, iat: now - 120 }, 1000],
  ];
  for (const [name, token, expected] of cases) {
    await t.step(name, () => {
      const ttl = replayTtlMs(token, opts);
      assertEquals(ttl, expected);
      assert(Number.isSafeInteger(ttl));
    });
  }
});

/** The command counts of INFO commandstats, by command name. */
async function commandCounts(client: ValkeyCommands): Promise<Record<string, number>> {
  const info = String(await client.call("INFO", "commandstats"));
  const counts: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) counts[m[1]] = Number(m[2]);
  return counts;
}

Deno.test({
  name: "the replay guard with the one publish script against Valkey",
  ignore: withoutValkey(),
  async fn(t) {
    const valkey = await startValkey();
    const client = await connectValkey(valkey);
    const nowMs = Date.now();
    const guard = createReplayGuard({
      clockToleranceMs: TOLERANCE,
      maxTokenAgeMs: MAX_AGE,
      waitMs: 200,
    });
    const publisher = createPublisher({ client, channel: "ch", ...WINDOWS });
    // One worker cluster has registered (worker/cluster_registration.ts).
    await client.call("ZADD", CLUSTERS_KEY, nowMs, "east");
    const use = (jti: string, extra: Partial<{ exp: number; iat: number; body: string }> = {}) => ({
      issuer: "https://issuer",
      jti,
      exp: nowMs / 1000 + 300,
      iat: nowMs / 1000,
      body: "{}",
      ...extra,
    });
    // What web's event route does: one script call per try (web/event_route.ts).
    const post = (token: ReturnType<typeof use>, message = `m-${token.jti}`) => {
      const claim = guard.claim(token);
      return guard.once(claim, async () => {
        const id = crypto.randomUUID();
        const published = await publisher.publish({
          eventId: id,
          message,
          binding: BINDING,
          replay: { claim, answer: { head: `{"id":"${id}"`, tail: `,"status":"/event/${id}"}` } },
        });
        if (published.taken !== undefined) return { kind: "taken", record: published.taken };
        return { kind: "done", value: published };
      });
    };
    let sub: RecordingSubscriber | undefined = await subscribe(valkey, "ch");
    try {
      await t.step(
        "a first use publishes once in one script call; a repeat gets the same answer and publishes nothing",
        async () => {
          await client.call("CONFIG", "RESETSTAT");
          const first = await post(use("once", { exp: nowMs / 1000 + 300.0004 }));
          assert(first.kind === "first");
          assertEquals(first.value.subscribers, 1);
          const answer = JSON.parse(first.value.answer!);
          assertEquals(Object.keys(answer), ["id", "subscribers", "clusters", "status"]);
          assertEquals(answer.subscribers, 1);
          assertEquals(answer.clusters, ["east"]);
          // commandstats counts the script's own calls too: one EVAL, and inside it
          // one GET of the replay key, one SET of the finished record, one append
          // to the stream and one publish.
          const counts = await commandCounts(client);
          assertEquals(
            [counts.eval, counts.get, counts.set, counts.xadd, counts.publish],
            [1, 1, 1, 1, 1],
            JSON.stringify(counts),
          );
          const key = guard.claim(use("once")).key;
          const pttl = Number(await client.call("PTTL", key));
          assert(pttl > 300_000 && pttl <= 315_001, `PTTL ${pttl}`);
          await sub!.waitFor(1);
          for (let i = 0; i < 3; i++) {
            assertEquals(await post(use("once"), "again"), {
              kind: "repeat",
              status: 202,
              body: first.value.answer!,
            });
          }
          await new Promise((r) => setTimeout(r, 50));
          assertEquals(sub!.messages, ["m-once"], "nothing published twice");
          assertEquals(await client.call("XLEN", EVENTS_STREAM), 1, "nothing appended twice");
          sub!.messages.length = 0;
        },
      );
      await t.step("a far-future exp is remembered for at most max age + tolerance", async () => {
        assert((await post(use("far", { exp: 1e15 }))).kind === "first");
        const pttl = Number(await client.call("PTTL", guard.claim(use("far")).key));
        assert(pttl > 0 && pttl <= MAX_AGE + 2 * TOLERANCE, `PTTL ${pttl}`);
        await sub!.waitFor(1);
        sub!.messages.length = 0;
      });
      await t.step("the same token with another body is denied and publishes nothing", async () => {
        assert((await post(use("body"))).kind === "first");
        await sub!.waitFor(1);
        sub!.messages.length = 0;
        await assertRejects(() => post(use("body", { body: '{"image":"x"}' })), {
          instanceOf: AuthError,
          reason: "replay_different_body",
        });
        await new Promise((r) => setTimeout(r, 50));
        assertEquals(sub!.messages, []);
      });
      await t.step(
        "no channel subscriber but a known cluster: the answer is stored as for any other",
        async () => {
          const unheard = createPublisher({ client, channel: "nobody", ...WINDOWS });
          const claim = guard.claim(use("unheard"));
          const published = await unheard.publish({
            eventId: "e0",
            message: "m",
            binding: BINDING,
            replay: { claim, answer: { head: '{"id":"e0"', tail: "}" } },
          });
          assertEquals(published, {
            subscribers: 0,
            clusters: ["east"],
            unreachable: [],
            answer: '{"id":"e0","subscribers":0,"clusters":["east"]}',
          });
          assertEquals(await client.call("EXISTS", claim.key), 1);
        },
      );
      await t.step(
        "no known cluster: nothing is written or remembered, so a retry may try again",
        async () => {
          await client.call("DEL", CLUSTERS_KEY);
          const length = await client.call("XLEN", EVENTS_STREAM);
          const claim = guard.claim(use("lonely"));
          const published = await publisher.publish({
            eventId: "e1",
            message: "m",
            binding: BINDING,
            replay: { claim, answer: { head: '{"id":"e1"', tail: "}" } },
          });
          assertEquals(published, { subscribers: 0, clusters: [], unreachable: [] });
          assertEquals(await client.call("EXISTS", claim.key), 0);
          assertEquals(await client.call("EXISTS", statusKey("e1")), 0);
          assertEquals(await client.call("XLEN", EVENTS_STREAM), length);
          await new Promise((r) => setTimeout(r, 50));
          assertEquals(sub!.messages, [], "nothing published");
          await client.call("ZADD", CLUSTERS_KEY, Date.now(), "east");
          assert((await post(use("lonely"))).kind === "first", "the retry goes through");
          await sub!.waitFor(1);
          sub!.messages.length = 0;
        },
      );
      await t.step(
        "a record still in flight (another replica) gets ERR_REPLAY_IN_PROGRESS, then goes once it is gone",
        async () => {
          const claim = guard.claim(use("busy"));
          await client.call("SET", claim.key, JSON.stringify({ h: claim.bodyHash }), "PX", 60_000);
          await assertRejects(() => post(use("busy")), {
            instanceOf: AppError,
            code: "ERR_REPLAY_IN_PROGRESS",
          });
          assertEquals(sub!.messages, []);
          await client.call("DEL", claim.key);
          assertEquals((await post(use("busy"))).kind, "first");
          await sub!.waitFor(1);
          sub!.messages.length = 0;
        },
      );
      await t.step(
        "security: a stored value that is not our record fails without quoting it",
        async () => {
          for (
            const [i, raw] of [
              "token=eyJhbGciOiJSUzI1NiJ9.secret",
              '{"h":"eyJsecret"',
              '["eyJsecret"]',
              '{"h":1}',
              '{"h":"x","s":"eyJsecret","b":"y"}',
            ].entries()
          ) {
            await client.call("SET", guard.claim(use(`corrupt-${i}`)).key, raw);
            const err = await assertRejects(() => post(use(`corrupt-${i}`)), {
              instanceOf: AppError,
              code: "ERR_PUBLISH_FAILED",
            });
            assert(!err.message.includes("eyJ"), err.message);
            assert(!err.message.includes("secret"), err.message);
          }
          assertEquals(sub!.messages, []);
        },
      );
      await t.step("Valkey down: ERR_PUBLISH_FAILED (503), nothing claimed", async () => {
        // The subscriber goes first: its close asks the server to confirm.
        await sub!.close();
        sub = undefined;
        await valkey.stop();
        // A client of the stopped server never connects: its commands fail at once.
        const offline = createValkeyClient(testSettings(valkey), {
          name: "krt-test-offline",
          logger: createLogger({ level: "error", write: () => {} }),
        });
        const down = createPublisher({ client: offline, channel: "ch", ...WINDOWS });
        const claim = guard.claim(use("down"));
        await assertRejects(
          () =>
            guard.once(claim, async () => {
              await down.publish({
                eventId: "e2",
                message: "m",
                binding: BINDING,
                replay: { claim, answer: { head: '{"id":"e2"', tail: "}" } },
              });
              return { kind: "done", value: 0 };
            }),
          { instanceOf: AppError, code: "ERR_PUBLISH_FAILED" },
        );
        offline.disconnect();
      });
    } finally {
      await sub?.close();
      client.disconnect();
      await valkey.stop();
    }
  },
});
