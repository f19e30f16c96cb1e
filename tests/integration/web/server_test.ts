/**
 * runWeb() in this process, as main.ts starts it, in dev mode (its own issuer)
 * against a real Valkey-compatible server: it listens, is ready, takes a
 * token from /dev/token and publishes an event to the clusters that registered
 * (or those CLUSTERS names), and stops when its signal aborts. The subprocess
 * tests in tests/e2e/ prove the same through the real program's command line
 * and permission set.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { startValkey, subscribe, type TestValkey, valkeyCall } from "../../helpers/valkey.ts";
import { parseCommandLine } from "../../../config/command_line.ts";
import { CLUSTERS_KEY } from "../../../shared/event_status.ts";
import { EVENTS_STREAM, MESSAGE_FIELD } from "../../../shared/event_stream.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { runWeb } from "../../../web/server.ts";

/** Runs web with `extra` settings, posts one event; returns the 202 body and the message sent. */
async function postOne(
  valkey: TestValkey,
  extra: Record<string, string>,
): Promise<{ body: { id: string; clusters: string[] }; message: string }> {
  const env: Record<string, string> = {
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: "krt-server-test",
    WEB_LISTEN_ADDR: "127.0.0.1:0",
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_ALLOWED_ORG: "acme",
    GITHUB_OIDC_AUDIENCE: "krt-test",
    DEV_MODE: "true",
    ...extra,
  };
  const parsed = parseCommandLine("web", [], (name) => env[name]);
  if (parsed.kind !== "config") throw new Error("expected a config");
  const lines: LogFields[] = [];
  const logger = createLogger({ level: "info", write: (l) => lines.push(JSON.parse(l)) });
  const controller = new AbortController();
  const listening = Promise.withResolvers<{ hostname: string; port: number }>();
  const worker = await subscribe(valkey, "krt-server-test");
  const running = runWeb(parsed.config, {
    logger,
    signal: controller.signal,
    onListen: listening.resolve,
  });
  let sent: { body: { id: string; clusters: string[] }; message: string };
  try {
    const { port } = await listening.promise;
    const base = `http://127.0.0.1:${port}`;
    const ready = await fetch(`${base}/readyz`);
    assertEquals([ready.status, (await ready.json()).status], [200, "ready"]);
    const { token } = await (await fetch(`${base}/dev/token`, { method: "POST" })).json();
    const res = await fetch(`${base}/event`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: '{"image":"ghcr.io/acme/app:dev"}',
    });
    assertEquals(res.status, 202);
    const body = await res.json();
    const [message] = await worker.waitFor(1);
    assertEquals([JSON.parse(message).id, JSON.parse(message).tags], [body.id, ["dev"]]);
    const request = lines.find((l) => l.msg === "request" && l.path === "/event")!;
    assertEquals([request.status, request.event_id], [202, body.id]);
    sent = { body, message };
  } finally {
    controller.abort();
    await running;
    await worker.close();
  }
  assertEquals(lines.some((l) => l.msg === "web stopped; disconnecting from valkey"), true);
  return sent;
}

Deno.test({
  name:
    "runWeb() listens, becomes ready, publishes an event to the registered clusters and stops on its signal",
  ignore: withoutValkey(),
  async fn() {
    const valkey = await startValkey();
    try {
      await valkeyCall(valkey, "ZADD", CLUSTERS_KEY, Date.now(), "alpha");
      const { body, message } = await postOne(valkey, {});
      assertEquals(body.clusters, ["alpha"]);
      // The workers' copy: one stream entry holding the message.
      assertEquals(
        await valkeyCall(valkey, "XRANGE", EVENTS_STREAM, "-", "+").then((r) =>
          (r as [string, unknown][]).map(([, fields]) => fields)
        ),
        [[MESSAGE_FIELD, message]],
      );
    } finally {
      await valkey.stop();
    }
  },
});

Deno.test({
  name: "runWeb() with CLUSTERS publishes every event to exactly the listed clusters",
  ignore: withoutValkey(),
  async fn() {
    const valkey = await startValkey();
    try {
      await valkeyCall(valkey, "ZADD", CLUSTERS_KEY, Date.now(), "alpha");
      const { body } = await postOne(valkey, { CLUSTERS: "west,east" });
      assertEquals(body.clusters, ["east", "west"]);
    } finally {
      await valkey.stop();
    }
  },
});
