/**
 * Slow and hostile clients against the real web process on loopback: idle
 * connections, headers trickled byte by byte (slowloris), bodies trickled or
 * oversized, huge headers. Throughout, a valid request must be answered
 * within 1 s, and memory must stay bounded. Every load here is bounded in
 * count and time and stops by itself.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { startIssuer, TEST_AUDIENCE } from "../helpers/issuer.ts";
import { startWeb } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { registerCluster, startValkey, subscribe } from "../helpers/valkey.ts";

const encoder = new TextEncoder();

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

async function openConnection(port: number): Promise<Deno.TcpConn | undefined> {
  try {
    return await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return undefined;
  }
}

/** Reads what the server sends until it closes or `ms` passes; returns the status code seen, if any. */
async function readStatus(conn: Deno.TcpConn, ms: number): Promise<number | undefined> {
  const buffer = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    const n = await conn.read(buffer);
    if (n === null) return undefined;
    const m = /^HTTP\/1\.1 (\d{3})/.exec(new TextDecoder().decode(buffer.subarray(0, n)));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name:
    "security: web keeps answering valid requests within 1 s while slow and hostile clients attack",
  ignore: withoutValkey(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const issuer = await startIssuer();
    const valkey = await startValkey();
    const sub = await subscribe(valkey, "krt-hostile");
    await registerCluster(valkey);
    const { program, url } = await startWeb({
      VALKEY_ADDR: valkey.addr,
      VALKEY_CHANNEL: "krt-hostile",
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      GITHUB_OIDC_ISSUER: issuer.url,
      GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
      GITHUB_ALLOWED_ORG: "acme",
      LOG_LEVEL: "info",
    });
    const port = Number(new URL(url).port);
    const pid = program.child.pid;
    const connections: Deno.TcpConn[] = [];
    const stop = new AbortController();
    const valid = async () => {
      const token = await issuer.sign();
      const started = performance.now();
      const res = await fetch(`${url}/event`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: '{"image":"ghcr.io/acme/app:dev"}',
      });
      await res.body?.cancel();
      return { status: res.status, ms: performance.now() - started };
    };
    try {
      await valid(); // warm up (keys fetched, connection to Valkey ready)
      const rssBefore = rssKiB(pid);

      // 300 idle connections that never send a byte.
      for (let i = 0; i < 300; i++) {
        const conn = await openConnection(port);
        if (conn) connections.push(conn);
      }
      // 50 slowloris connections: one header byte every 200 ms.
      const slowloris = Array.from({ length: 50 }, async () => {
        const conn = await openConnection(port);
        if (!conn) return;
        connections.push(conn);
        const request = encoder.encode(
          "POST /event HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a".repeat(1000),
        );
        for (let i = 0; i < request.length && !stop.signal.aborted; i++) {
          await conn.write(request.subarray(i, i + 1)).catch(() => {});
          await new Promise((r) => setTimeout(r, 200));
        }
      });
      // 20 authenticated requests whose bodies trickle in: cut off with 408.
      const trickled = Array.from({ length: 20 }, async () => {
        const conn = await openConnection(port);
        if (!conn) return undefined;
        connections.push(conn);
        const head =
          `POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await issuer.sign()}\r\n` +
          "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
        await conn.write(encoder.encode(head));
        const dribble = (async () => {
          while (!stop.signal.aborted) {
            await new Promise((r) => setTimeout(r, 500));
            await conn.write(encoder.encode(" ")).catch(() => {});
          }
        })();
        const status = await readStatus(conn, 14_000);
        void dribble;
        return status;
      });
      // 20 requests with 64 KiB headers and 20 that announce a 10 MB body.
      const oversized = Array.from({ length: 40 }, async (_, i) => {
        const conn = await openConnection(port);
        if (!conn) return undefined;
        connections.push(conn);
        const head = i < 20
          ? `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(64 * 1024)}\r\n\r\n`
          : `POST /event HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await issuer
            .sign()}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n`;
        await conn.write(encoder.encode(head)).catch(() => {});
        return await readStatus(conn, 5000);
      });

      // Meanwhile: a valid request every 250 ms for 12 s.
      const latencies: number[] = [];
      const statuses: number[] = [];
      const deadline = Date.now() + 12_000;
      while (Date.now() < deadline) {
        const { status, ms } = await valid();
        statuses.push(status);
        latencies.push(ms);
        await new Promise((r) => setTimeout(r, 250));
      }
      const trickledStatuses = await Promise.all(trickled);
      const oversizedStatuses = await Promise.all(oversized);
      stop.abort();
      await Promise.all(slowloris);
      const rssAfter = rssKiB(pid);
      const max = Math.max(...latencies);
      console.error(
        `hostile clients: ${latencies.length} valid requests, max ${max.toFixed(0)} ms; ` +
          `trickled bodies answered ${JSON.stringify(trickledStatuses)}; oversized ${
            JSON.stringify(oversizedStatuses)
          }; ` +
          `RSS ${rssBefore} KiB -> ${rssAfter} KiB`,
      );
      assert(statuses.every((s) => s === 202), `valid requests: ${statuses}`);
      assert(max < 1000, `a valid request took ${max.toFixed(0)} ms`);
      assert(
        trickledStatuses.every((s) => s === 408 || s === undefined),
        `trickled: ${trickledStatuses}`,
      );
      assert(trickledStatuses.some((s) => s === 408), "trickled bodies are cut off with 408");
      assertEquals(
        oversizedStatuses.slice(20).every((s) => s === 413),
        true,
        `announced 10 MB: ${oversizedStatuses.slice(20)}`,
      );
      assert(
        oversizedStatuses.slice(0, 20).every((s) => s === undefined || s === 431 || s === 400),
        `big headers: ${oversizedStatuses.slice(0, 20)}`,
      );
      assert(rssAfter - rssBefore < 64 * 1024, `RSS grew by ${rssAfter - rssBefore} KiB`);
    } finally {
      stop.abort();
      for (const c of connections) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await sub.close();
      await program.stop();
      await valkey.stop();
      await issuer.stop();
    }
  },
});
