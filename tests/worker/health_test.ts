/**
 * The worker's health server: which request reaches a probe, and what every
 * other one gets (404 for another path, 405 for another method).
 */

import { assertEquals } from "../helpers/assert.ts";
import { createLogger } from "../../lib/log.ts";
import { routeProbes, serveHealth } from "../../worker/health.ts";

const probes = {
  "/healthz": () => Promise.resolve(new Response("healthz")),
  "/readyz": () => Promise.resolve(new Response("readyz")),
};

Deno.test("routeProbes() answers a probe's path with GET or HEAD only", async (t) => {
  const route = routeProbes(probes);
  const cases: [string, string, number, string, string | null][] = [
    ["GET", "/healthz", 200, "healthz", null],
    ["HEAD", "/readyz", 200, "readyz", null],
    ["GET", "/readyz?verbose=1", 200, "readyz", null],
    ["POST", "/healthz", 405, '{"error":"method not allowed"}', "GET"],
    ["GET", "/metrics", 404, '{"error":"not found"}', null],
    ["POST", "/nothing", 404, '{"error":"not found"}', null],
  ];
  for (const [method, path, status, body, allow] of cases) {
    await t.step(`${method} ${path} → ${status}`, async () => {
      const res = await route(new Request(`http://worker${path}`, { method }));
      assertEquals(res.status, status);
      assertEquals(await res.text(), body);
      assertEquals(res.headers.get("allow"), allow);
    });
  }
});

Deno.test("serveHealth() listens, says where, and stops when its signal aborts", async () => {
  const lines: string[] = [];
  const controller = new AbortController();
  const listening = Promise.withResolvers<{ hostname: string; port: number }>();
  const server = serveHealth({
    addr: { host: "127.0.0.1", port: 0 },
    probes,
    logger: createLogger({ level: "info", write: (l) => lines.push(l) }),
    signal: controller.signal,
    onListen: listening.resolve,
  });
  const { port } = await listening.promise;
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  assertEquals(await res.text(), "healthz");
  const logged = JSON.parse(lines[0]);
  assertEquals([logged.msg, logged.addr], ["worker health server listening", `127.0.0.1:${port}`]);
  controller.abort();
  await server.finished;
});
