/**
 * The local dev flow as a newcomer runs it (`deno task dev`'s entry point),
 * and the safety rails of dev mode.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { startIssuer } from "../helpers/issuer.ts";
import { startProgram } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { freePort } from "../helpers/valkey.ts";
import { startLocalFlow } from "../dev/local_flow.ts";
import { triggerDevEvent } from "../dev/trigger.ts";

const options = { ignore: withoutValkey(), sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    "the dev flow: one command starts web, worker and Valkey; a dev event restarts the local inventory's matches",
  ...options,
  async fn(t) {
    const flow = await startLocalFlow({
      webAddr: `127.0.0.1:${freePort()}`,
      healthAddr: `127.0.0.1:${freePort()}`,
    });
    try {
      await t.step(
        "a dev event is accepted and the local inventory reports the expected restarts",
        async () => {
          const { status, body } = await triggerDevEvent(flow.webUrl, "ghcr.io/acme/app:dev");
          assertEquals(status, 202);
          const id = JSON.parse(body).id;
          const summary = await flow.worker.waitForLog((l) =>
            l.msg === "event handled" && l.event_id === id
          );
          assertEquals(summary.restarted, ["apps/web", "apps/migrations"]);
          assertEquals(summary.skipped, [{ deployment: "apps/pinned", reason: "digest_pinned" }]);
          assertEquals(summary.local_inventory, true);
          const recorded = flow.worker.logs.filter((l) =>
            l.msg.startsWith("LOCAL INVENTORY: restart recorded")
          );
          assertEquals(recorded.map((l) => l.deployment), ["web", "migrations"]);
        },
      );
      await t.step("dev mode is loud on the lines that matter", async () => {
        const warning = await flow.web.waitForLog((l) => l.msg.startsWith("DEV MODE"));
        assertEquals(warning.level, "warn");
        const requests = flow.web.logs.filter((l) => l.msg === "request");
        assert(requests.length > 0 && requests.every((l) => l.dev_mode === true));
      });
      await t.step(
        "dev mode keeps every other check: a token not signed by the dev key is denied",
        async () => {
          const issuer = await startIssuer();
          try {
            const res = await fetch(`${flow.webUrl}/event`, {
              method: "POST",
              headers: {
                authorization: `Bearer ${await issuer.sign()}`,
                "content-type": "application/json",
              },
              body: '{"image":"ghcr.io/acme/app:dev"}',
            });
            assertEquals(res.status, 403);
            await res.body?.cancel();
          } finally {
            await issuer.stop();
          }
          const minted = await (await fetch(`${flow.webUrl}/dev/token`, { method: "POST" })).json();
          const [h, p, s] = minted.token.split(".");
          const flipped = s.slice(0, -2) + (s.endsWith("AA") ? "BB" : "AA");
          const res = await fetch(`${flow.webUrl}/event`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${h}.${p}.${flipped}`,
              "content-type": "application/json",
            },
            body: '{"image":"ghcr.io/acme/app:dev"}',
          });
          assertEquals(res.status, 403);
          await res.body?.cancel();
          const outside = await triggerDevEvent(flow.webUrl, "ghcr.io/evil/app:dev");
          assertEquals(outside.status, 400);
        },
      );
    } finally {
      await flow.stop();
    }
    assertEquals(await flow.web.status.then((s) => s.code), 0);
    assertEquals(await flow.worker.status.then((s) => s.code), 0);
  },
});

Deno.test("security: dev mode refuses to listen on anything but loopback", async () => {
  const program = startProgram({
    args: ["web", "--dev-mode", "--listen-addr", ":0"],
    env: {
      VALKEY_ADDR: "127.0.0.1:1",
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      GITHUB_OIDC_AUDIENCE: "x",
      GITHUB_ALLOWED_ORG: "acme",
    },
  });
  assertEquals((await program.status).code, 2);
  assertMatch(program.stderr(), /DEV_MODE \(--dev-mode\) needs a loopback WEB_LISTEN_ADDR/);
});

Deno.test("security: without DEV_MODE there is no dev token endpoint", async () => {
  const program = startProgram({
    args: ["web", "--listen-addr", "127.0.0.1:0"],
    env: {
      VALKEY_ADDR: "127.0.0.1:1",
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      GITHUB_OIDC_AUDIENCE: "x",
      GITHUB_ALLOWED_ORG: "acme",
    },
  });
  try {
    const line = await program.waitForLog((l) => l.msg === "web listening");
    const res = await fetch(`http://${line.addr}/dev/token`, { method: "POST" });
    assertEquals(res.status, 404);
    await res.body?.cancel();
    assert(!program.logs.some((l) => l.dev_mode));
  } finally {
    await program.stop();
  }
});
