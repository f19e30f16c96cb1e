/**
 * runWorker() in this process, as main.ts starts it, on the dev local
 * inventory (k8s/dev/local-inventory.yaml) and a real Valkey-compatible
 * server: it syncs, subscribes, becomes ready, restarts the Deployments an
 * event names, and stops when its signal aborts. tests/e2e/worker_test.ts
 * proves the real program against the real API server.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { eventually } from "../../helpers/eventually.ts";
import { ROOT } from "../../helpers/program.ts";
import { withoutValkey } from "../../helpers/skip.ts";
import { appendEvent, startValkey } from "../../helpers/valkey.ts";
import { parseCommandLine } from "../../../config/command_line.ts";
import { encodeEventMessage } from "../../../shared/event.ts";
import { createLogger, type LogFields } from "../../../lib/log.ts";
import { runWorker } from "../../../worker/worker.ts";

const CHANNEL = "krt-worker-test";

Deno.test({
  name:
    "runWorker() on the local inventory: ready once subscribed, restarts what an event names, stops on its signal",
  ignore: withoutValkey(),
  async fn() {
    const valkey = await startValkey();
    const env: Record<string, string> = {
      VALKEY_ADDR: valkey.addr,
      VALKEY_CHANNEL: CHANNEL,
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      HEALTH_LISTEN_ADDR: "127.0.0.1:0",
      LOCAL_INVENTORY: `${ROOT}k8s/dev/local-inventory.yaml`,
    };
    const parsed = parseCommandLine("worker", [], (name) => env[name]);
    if (parsed.kind !== "config") throw new Error("expected a config");
    const lines: LogFields[] = [];
    const logger = createLogger({ level: "info", write: (l) => lines.push(JSON.parse(l)) });
    const controller = new AbortController();
    const listening = Promise.withResolvers<{ hostname: string; port: number }>();
    const running = runWorker(parsed.config, {
      logger,
      signal: controller.signal,
      onListen: listening.resolve,
    });
    try {
      const { port } = await listening.promise;
      await eventually(
        "the worker to be ready",
        async () => {
          const res = await fetch(`http://127.0.0.1:${port}/readyz`);
          await res.body?.cancel();
          return res.status === 200 || undefined;
        },
        10_000,
        50,
      );
      const id = crypto.randomUUID();
      const message = {
        id,
        time: new Date().toISOString(),
        image: "ghcr.io/acme/app",
        tags: ["dev"],
      };
      await appendEvent(valkey, encodeEventMessage(message));
      const handled = await eventually(
        "the event to be handled",
        () => lines.find((l) => l.msg === "event handled" && l.event_id === id),
        10_000,
        20,
      );
      assertEquals(handled.matched, 2);
      assertEquals((handled.restarted as string[]).sort(), ["apps/migrations", "apps/web"]);
      assertEquals(handled.failed, []);
      const restarted = lines.filter((l) => l.msg === "restarted deployment" && l.event_id === id)
        .map((l) => `${l.namespace}/${l.deployment}`).sort();
      assertEquals(restarted, ["apps/migrations", "apps/web"]);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assertEquals(
        metrics.includes('kuberollouttrigger_worker_restarts_total{result="restarted"} 2'),
        true,
        metrics,
      );
    } finally {
      controller.abort();
      await running;
      await valkey.stop();
    }
  },
});
