/**
 * The replay guard against a real Valkey-compatible server: what it stores,
 * for how long, and how it answers repeats, records still in flight and values
 * that are not its own.
 */

import { Valkey } from "iovalkey";
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkey } from "../helpers/valkey.ts";
import { AppError } from "../../shared/errors.ts";
import { createReplayGuard, replayTtlMs } from "../../web/replay.ts";

const TOLERANCE = 15_000;
const MAX_AGE = 600_000;

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

Deno.test({
  name: "createReplayGuard() against Valkey",
  ignore: withoutValkey(),
  async fn(t) {
    const valkey = await startValkey();
    const client = new Valkey({ host: valkey.host, port: valkey.port, lazyConnect: false });
    const nowMs = Date.now();
    const guard = createReplayGuard({
      client,
      clockToleranceMs: TOLERANCE,
      maxTokenAgeMs: MAX_AGE,
      waitMs: 200,
    });
    const use = (jti: string, extra: Partial<{ exp: number; iat: number; body: string }> = {}) => ({
      issuer: "https://issuer",
      jti,
      exp: nowMs / 1000 + 300,
      iat: nowMs / 1000,
      body: "{}",
      ...extra,
    });
    try {
      await t.step(
        "a NumericDate with a sub-millisecond fraction is remembered, not a Valkey error",
        async () => {
          const start = await guard.begin(use("frac", { exp: nowMs / 1000 + 300.0004 }));
          assertEquals(start.kind, "first");
          if (start.kind !== "first") return;
          const pttl = await client.pttl(start.claim.key);
          assert(pttl > 300_000 && pttl <= 315_001, `PTTL ${pttl}`);
          await guard.complete(start.claim, 202, '{"id":"x"}');
          assertEquals(await guard.begin(use("frac")), {
            kind: "repeat",
            status: 202,
            body: '{"id":"x"}',
          });
        },
      );
      await t.step("a far-future exp is remembered for at most max age + tolerance", async () => {
        const start = await guard.begin(use("far", { exp: 1e15 }));
        assert(start.kind === "first");
        const pttl = await client.pttl(start.claim.key);
        assert(pttl > 0 && pttl <= MAX_AGE + 2 * TOLERANCE, `PTTL ${pttl}`);
      });
      await t.step(
        "a repeat while the first is still in flight gets ERR_REPLAY_IN_PROGRESS",
        async () => {
          const start = await guard.begin(use("busy"));
          assert(start.kind === "first");
          await assertRejects(() => guard.begin(use("busy")), {
            instanceOf: AppError,
            code: "ERR_REPLAY_IN_PROGRESS",
          });
          await guard.abandon(start.claim);
          assertEquals((await guard.begin(use("busy"))).kind, "first");
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
            const first = await guard.begin(use(`corrupt-${i}`));
            assert(first.kind === "first");
            await client.set(first.claim.key, raw);
            const err = await assertRejects(() => guard.begin(use(`corrupt-${i}`)), {
              instanceOf: AppError,
              code: "ERR_PUBLISH_FAILED",
            });
            assert(!err.message.includes("eyJ"), err.message);
            assert(!err.message.includes("secret"), err.message);
          }
        },
      );
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});
