/**
 * Restart claims against a real Valkey-compatible server: one claim per event
 * and Deployment, and a burst window per Deployment and image repository
 * (tags play no part), as RESTART_DEDUP_WINDOW's help says.
 */

import { assertEquals, assertMatch } from "../helpers/assert.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkey } from "../helpers/valkey.ts";
import { createLogger } from "../../shared/log.ts";
import { parseHostPort } from "../../shared/setting_values.ts";
import { settingsFor } from "../../shared/settings.ts";
import { createValkeyConnection } from "../../shared/valkey.ts";
import { createCoordinator } from "../../worker/coordination.ts";

const REPO = "ghcr.io/acme/app";

Deno.test("RESTART_DEDUP_WINDOW's help says the window is per repository, not per tag", () => {
  const help = settingsFor("worker").find(([, s]) => s.env === "RESTART_DEDUP_WINDOW")![1].help;
  assertMatch(help, /image repository/);
  assertMatch(help, /\(any tag\)/);
});

Deno.test({
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  name:
    "createCoordinator() claims once per event and Deployment, and windows per Deployment and repository",
  async fn(t) {
    const valkey = await startValkey();
    const logger = createLogger({ level: "error", write: () => {} });
    const client = createValkeyConnection({
      valkeyAddr: parseHostPort(valkey.addr),
      valkeyUsername: "",
      valkeyPassword: "",
      valkeyTls: false,
      valkeyTimeout: 2000,
    }, { name: "test", logger, offlineQueue: true });
    const id = () => crypto.randomUUID();
    try {
      await t.step("with a window", async () => {
        const c = createCoordinator({ client, clusterName: "t1", windowMs: 60_000, logger });
        const first = id();
        assertEquals(await c.claim(first, "ns/d", REPO), "claimed");
        assertEquals(await c.claim(first, "ns/d", REPO), "duplicate", "the other replica");
        // The next event for the repository (whatever tag it names) falls in the window.
        assertEquals(await c.claim(id(), "ns/d", REPO), "recent");
        assertEquals(await c.claim(id(), "ns/other", REPO), "claimed", "another Deployment");
        assertEquals(await c.claim(id(), "ns/d", "ghcr.io/acme/tool"), "claimed", "another repo");
        await c.release("ns/d", REPO);
        assertEquals(await c.claim(id(), "ns/d", REPO), "claimed", "released after a failure");
      });
      await t.step("without a window, each event claims", async () => {
        const c = createCoordinator({ client, clusterName: "t2", windowMs: 0, logger });
        assertEquals(await c.claim(id(), "ns/d", REPO), "claimed");
        assertEquals(await c.claim(id(), "ns/d", REPO), "claimed");
      });
    } finally {
      client.disconnect();
      await valkey.stop();
    }
  },
});
