/**
 * POST /event in-process, through createHandler, with web's real publisher and
 * replay guard on a real Valkey-compatible server: what reaches the stream and
 * the channel, what a retry with the same token gets, and what happens while
 * Valkey is away or no worker cluster is known. Only the token verifier is a
 * stand-in (its claims come from the token text); tests/e2e/web_test.ts proves
 * the same with the real program.
 */

import { assert, assertEquals, assertMatch } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/eventually.ts";
import { orgOnlyPolicy } from "../../helpers/issuer.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import {
  type RecordingSubscriber,
  startValkey,
  subscribe,
  valkeyCall,
} from "../../helpers/valkey.ts";
import { valkeyWebParts } from "../../helpers/web_deps.ts";
import { AuthError } from "../../../web/reasons.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { createRegistry } from "../../../lib/metrics.ts";
import { parseHostPort } from "../../../lib/setting_values.ts";
import { CLUSTERS_KEY } from "../../../shared/event_status.ts";
import { EVENTS_STREAM } from "../../../shared/event_stream.ts";
import { createValkeyClient } from "../../../shared/valkey_client.ts";
import { createEventRoute } from "../../../web/event_route.ts";
import { createHandler } from "../../../web/handler.ts";
import { createWebMetrics } from "../../../web/metrics.ts";
import type { GitHubClaims } from "../../../web/oidc.ts";
import { createAuthorizer } from "../../../web/policy.ts";
import { createBodyReader } from "../../../web/request_body.ts";
import { createStatusWaiters } from "../../../web/status_waiters.ts";

const CHANNEL = "krt-event-route-test";
const INFO = { remoteAddr: { hostname: "127.0.0.1", port: 1 } };

/** Claims of a verified token whose jti is the token itself. */
function claimsFor(token: string): GitHubClaims {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: "https://issuer",
    jti: token,
    iat: now,
    exp: now + 300,
    repository: "acme/app",
    repository_owner: "acme",
    repository_id: "2002",
  } as GitHubClaims;
}

Deno.test({
  name: "POST /event against a real Valkey: one message per event, the first answer to a retry",
  ignore: withoutValkey(),
  async fn(t) {
    const valkey = await startValkey();
    const lines: LogFields[] = [];
    const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
    const client = createValkeyClient({
      valkeyAddr: parseHostPort(valkey.addr),
      valkeyUsername: "",
      valkeyPassword: "",
      valkeyTls: false,
      valkeyTimeout: 1000,
    }, { name: "test-web", logger });
    const registry = createRegistry();
    const handler = createHandler({
      ...valkeyWebParts(client, { channel: CHANNEL, logger }),
      verify: (token) => Promise.resolve(claimsFor(token)),
      authorize: createAuthorizer(orgOnlyPolicy()),
      statusWaiters: createStatusWaiters({ max: 10 }),
      statusReportTimeoutMs: 30_000,
      prefixes: ["ghcr.io/acme"],
      logger,
      metrics: createWebMetrics(registry),
      registry,
      readiness: {},
    });
    const post = (token: string, body = '{"image":"ghcr.io/acme/app:dev"}') =>
      handler(
        new Request("http://127.0.0.1/event", {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body,
        }),
        INFO,
      );
    const requestLog = () => lines.filter((l) => l.msg === "request").at(-1)!;
    // A worker cluster registers itself with a heartbeat (worker/cluster_registration.ts).
    const register = () => valkeyCall(valkey, "ZADD", CLUSTERS_KEY, Date.now(), "east");
    const streamLength = async () => Number(await valkeyCall(valkey, "XLEN", EVENTS_STREAM));
    await register();
    let worker: RecordingSubscriber | undefined = await subscribe(valkey, CHANNEL);
    /** Every message so far, once a marker event sent after them has arrived. */
    const settled = async () => {
      const marker = await post(crypto.randomUUID(), '{"image":"ghcr.io/acme/marker:x"}');
      const { id } = await marker.json();
      await eventually(
        "the marker",
        () => worker!.messages.some((m) => m.includes(id)) || undefined,
        3000,
        10,
      );
      return worker!.messages.filter((m) => !m.includes(id)).map((m) => JSON.parse(m));
    };
    try {
      await t.step("an event reaches the channel once and the 202 names it", async () => {
        const res = await post("t1");
        assertEquals(res.status, 202);
        const body = await res.json();
        const [message] = await worker!.waitFor(1);
        assertEquals(JSON.parse(message).id, body.id);
        assertEquals(JSON.parse(message).image, "ghcr.io/acme/app");
        assertEquals([body.subscribers, body.clusters], [1, ["east"]]);
        assertEquals(await streamLength(), 1, "the workers' copy is in the stream");
      });

      await t.step(
        "a retry with the same token and body gets the same answer; nothing is published again",
        async () => {
          const first = worker!.messages.length;
          const res = await post("t2");
          const text = await res.text();
          const again = await post("t2");
          assertEquals([again.status, await again.text()], [202, text]);
          assertEquals(requestLog().replayed, true);
          const seen = (await settled()).slice(first);
          assertEquals(seen.map((m) => m.id), [JSON.parse(text).id]);
          assertMatch(
            registry.render(),
            /kuberollouttrigger_token_reuse_total\{outcome="repeat"\} 1/,
          );
        },
      );

      await t.step(
        "two requests with one token at once: both get the one answer, one message",
        async () => {
          const first = worker!.messages.length;
          const [a, b] = await Promise.all([post("t3"), post("t3")]);
          const [textA, textB] = [await a.text(), await b.text()];
          assertEquals([a.status, b.status], [202, 202]);
          assertEquals(textA, textB);
          const seen = (await settled()).slice(first);
          assertEquals(seen.map((m) => m.id), [JSON.parse(textA).id]);
        },
      );

      await t.step(
        "the same token with another body is denied, and nothing is published",
        async () => {
          const first = worker!.messages.length;
          const res = await post("t2", '{"image":"ghcr.io/acme/other:dev"}');
          assertEquals([res.status, await res.text()], [403, '{"error":"access denied"}']);
          assertEquals(requestLog().reason, "replay_different_body");
          assertEquals((await settled()).slice(first), []);
        },
      );

      await t.step(
        "no channel subscriber but a known cluster: 202, and the event waits in the stream",
        async () => {
          await worker!.close();
          worker = undefined;
          const before = await streamLength();
          const res = await post("t6");
          assertEquals(res.status, 202);
          const body = await res.json();
          assertEquals([body.subscribers, body.clusters], [0, ["east"]]);
          assertEquals(await streamLength(), before + 1);
          worker = await subscribe(valkey, CHANNEL);
        },
      );

      await t.step(
        "with no known cluster: 503, nothing written, and the same token goes through once one registers",
        async () => {
          await valkeyCall(valkey, "DEL", CLUSTERS_KEY);
          const before = await streamLength();
          const res = await post("t4");
          assertEquals(res.status, 503);
          assertEquals(requestLog().code, "ERR_NO_SUBSCRIBER");
          assertEquals(await streamLength(), before, "nothing appended");
          await new Promise((r) => setTimeout(r, 50));
          assertEquals(worker!.messages, [], "nothing published");
          await register();
          const retry = await post("t4");
          assertEquals(retry.status, 202);
          const { id } = await retry.json();
          await worker!.waitFor(1);
          assertEquals(JSON.parse(worker!.messages[0]).id, id);
        },
      );

      await t.step(
        "while Valkey is down: 503 with Retry-After; the same token works once it is back",
        async () => {
          await worker!.close();
          await valkey.stop();
          const res = await post("t5");
          assertEquals(res.status, 503);
          assertEquals(res.headers.get("retry-after"), "5");
          assertEquals(requestLog().code, "ERR_PUBLISH_FAILED");
          await valkey.start();
          // The server kept nothing (no persistence): the cluster's next heartbeat registers it.
          await register();
          worker = await subscribe(valkey, CHANNEL);
          const retry = await eventually(
            "web to reconnect and publish",
            async () => {
              const r = await post("t5");
              if (r.status !== 202) throw new Error(`status ${r.status}`);
              return await r.json();
            },
            10_000,
            100,
          );
          await worker.waitFor(1);
          assertEquals(JSON.parse(worker.messages[0]).id, retry.id);
        },
      );
    } finally {
      await worker?.close();
      client.disconnect();
      await valkey.stop();
    }
  },
});

Deno.test("createEventRoute() verifies the token and its repository_id before it reads the body", async (t) => {
  for (
    const [name, authenticate, reason] of [
      [
        "a denied token",
        () => Promise.reject(new AuthError("bad_signature", "signature does not verify")),
        "bad_signature",
      ],
      [
        "a token without a numeric repository_id",
        () => Promise.resolve({ ...claimsFor("t"), repository_id: "acme" } as GitHubClaims),
        "claim_repository_id",
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      let pulled = false;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          pulled = true;
          controller.close();
        },
      }, { highWaterMark: 0 });
      const published: unknown[] = [];
      const route = createEventRoute({
        authenticate,
        publisher: {
          publish: (input) => {
            published.push(input);
            return Promise.resolve({ subscribers: 1, clusters: ["east"], unreachable: [] });
          },
          ping: () => Promise.resolve(true),
        },
        replay: {
          claim: () => {
            throw new Error("the replay guard must not be reached");
          },
          once: () => Promise.reject(new Error("the replay guard must not be reached")),
        },
        prefixes: ["ghcr.io/acme"],
        bodies: createBodyReader(),
        metrics: createWebMetrics(createRegistry()),
        now: () => new Date(),
        newId: () => crypto.randomUUID(),
      }, "/event");
      const req = new Request("http://127.0.0.1/event", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      const err = await route(req, INFO, {}).then(() => undefined, (e) => e);
      assert(err instanceof AuthError, String(err));
      assertEquals(err.reason, reason);
      assertEquals(pulled, false, "the body was read");
      assertEquals(published, []);
    });
  }
});
