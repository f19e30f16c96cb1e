/**
 * Web's waiting reads and its shutdown, through the real program (deno run
 * -P=web), a real Valkey-compatible server and a loopback OIDC issuer: what
 * only a real process and real sockets prove. SIGTERM finishes the requests
 * in progress (a held `?wait=` read answers 200 with the status as it is, a
 * POST whose body is still arriving publishes and answers 202, a new request
 * gets 503) before Valkey is closed and the process exits 0; a waiting read whose client disconnects
 * gives its slot back at once; one repository holds at most its fair share
 * of the slots. Each decision is proven in-process in
 * tests/web/status_route_test.ts, tests/web/status_waiters_test.ts and
 * tests/web/handler_test.ts.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { eventually } from "../helpers/eventually.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import {
  type RecordingSubscriber,
  registerCluster,
  startValkey,
  subscribe,
  type TestValkey,
} from "../helpers/valkey.ts";
import { SHUTDOWN_GRACE_MS } from "../../web/server.ts";

const CHANNEL = "krt-e2e-shutdown";
const IMAGE = '{"image":"ghcr.io/acme/app:dev"}';

interface Env {
  issuer: TestIssuer;
  valkey: TestValkey;
  sub: RecordingSubscriber;
  program: Program;
  url: string;
}

async function setUp(extra: Record<string, string> = {}): Promise<Env> {
  const issuer = await startIssuer();
  const valkey = await startValkey();
  const sub = await subscribe(valkey, CHANNEL);
  await registerCluster(valkey);
  const { program, url } = await startWeb({
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_OIDC_ISSUER: issuer.url,
    GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
    GITHUB_ALLOWED_ORG: "Acme",
    // The cluster never reports: every event stays pending while the tests run.
    STATUS_REPORT_TIMEOUT: "5m",
    LOG_LEVEL: "debug",
    ...extra,
  });
  return { issuer, valkey, sub, program, url };
}

async function tearDown(env: Env): Promise<void> {
  await env.sub.close();
  await env.program.stop();
  await env.valkey.stop();
  await env.issuer.stop();
}

/** Claims of a token for another repository of the same organisation. */
const OTHER_REPOSITORY = { repository: "acme/other", repository_id: "2003" };

/** POSTs an event with a fresh token (with `claims`); resolves to its id. */
async function postEvent(env: Env, claims: Record<string, unknown> = {}): Promise<string> {
  const res = await fetch(`${env.url}/event`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await env.issuer.sign({ claims })}`,
      "content-type": "application/json",
    },
    body: IMAGE,
  });
  assertEquals(res.status, 202);
  return (await res.json()).id;
}

/** Sends `GET /event/<id>?wait=<seconds>` with a fresh token (with `claims`); the answer is pending. */
async function startWait(
  env: Env,
  id: string,
  options: { seconds?: number; claims?: Record<string, unknown>; signal?: AbortSignal } = {},
): Promise<{ answer: Promise<Response> }> {
  const token = await env.issuer.sign({ claims: options.claims ?? {} });
  const answer = fetch(`${env.url}/event/${id}?wait=${options.seconds ?? 30}`, {
    headers: { authorization: `Bearer ${token}` },
    signal: options.signal,
  });
  return { answer };
}

/** The kuberollouttrigger_status_waiters gauge web exports now. */
async function waitersNow(env: Env): Promise<number> {
  const text = await (await fetch(`${env.url}/metrics`)).text();
  return Number(/^kuberollouttrigger_status_waiters (\d+)$/m.exec(text)?.[1] ?? NaN);
}

/** Resolves once web holds exactly `count` waiting reads. */
function waiters(env: Env, count: number, timeoutMs = 10_000): Promise<true> {
  return eventually(
    `${count} waiting reads`,
    async () => (await waitersNow(env)) === count || undefined,
    timeoutMs,
    20,
  );
}

/** A raw HTTP/1.1 exchange the test controls byte by byte. */
async function openRaw(url: string): Promise<Deno.TcpConn> {
  return await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
}

/** Reads one response (status and body, by Content-Length) from `conn`; fails on a short read. */
async function readResponse(conn: Deno.Conn): Promise<{ status: number; body: string }> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(16_384);
  let text = "";
  for (;;) {
    const end = text.indexOf("\r\n\r\n");
    const length = /\r\ncontent-length: *(\d+)/i.exec(text)?.[1];
    if (end >= 0 && length !== undefined && text.length >= end + 4 + Number(length)) {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      return { status, body: text.slice(end + 4, end + 4 + Number(length)) };
    }
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`connection closed after ${JSON.stringify(text)}`);
    text += decoder.decode(buffer.subarray(0, n));
  }
}

Deno.test({
  name:
    "web stopped by SIGTERM answers a held wait with the status, finishes a POST in flight, then closes Valkey and exits 0",
  ignore: withoutValkey(),
  async fn() {
    // A short cooldown: the POST below fetches the issuer's rotated keys, which shows it is in flight.
    const env = await setUp({ GITHUB_OIDC_JWKS_COOLDOWN: "1ms" });
    let post: Deno.TcpConn | undefined;
    try {
      const id = await postEvent(env);
      const held = await startWait(env, id, { seconds: 30 });
      await waiters(env, 1);

      // A POST whose headers are in and whose body is still arriving when SIGTERM comes.
      await env.issuer.rotate();
      const fetches = env.issuer.hits.get("/.well-known/jwks") ?? 0;
      post = await openRaw(env.url);
      const head = [
        "POST /event HTTP/1.1",
        "Host: 127.0.0.1",
        `Authorization: Bearer ${await env.issuer.sign()}`,
        "Content-Type: application/json",
        `Content-Length: ${IMAGE.length}`,
      ].join("\r\n");
      await post.write(new TextEncoder().encode(`${head}\r\n\r\n${IMAGE.slice(0, 10)}`));
      await eventually(
        "web verifying the POST's token",
        () => (env.issuer.hits.get("/.well-known/jwks") ?? 0) > fetches,
        10_000,
        10,
      );
      env.sub.messages.length = 0;

      const stopped = Date.now();
      env.program.child.kill("SIGTERM");

      // The held wait is answered at once, with the status as it is.
      const res = await held.answer;
      assertEquals(res.status, 200);
      const status = await res.json();
      assertEquals([status.id, status.state, status.final], [id, "pending", false]);
      assert(Date.now() - stopped < 5000, "the held wait was answered at shutdown");

      // A new request while the POST finishes is not taken on: 503, retry elsewhere.
      const late = await fetch(`${env.url}/event/${id}`, {
        headers: { authorization: `Bearer ${await env.issuer.sign()}` },
      });
      assertEquals([late.status, late.headers.get("retry-after")], [503, "1"]);
      assertEquals(await late.json(), { error: "web is shutting down; retry" });

      // The rest of the body arrives after SIGTERM: the event is published and answered.
      await post.write(new TextEncoder().encode(IMAGE.slice(10)));
      const answer = await readResponse(post);
      assertEquals(answer.status, 202, answer.body);
      const accepted = JSON.parse(answer.body);
      assertEquals(JSON.parse((await env.sub.waitFor(1))[0]).id, accepted.id);

      const exit = await env.program.status;
      assertEquals(exit.code, 0);
      assert(
        Date.now() - stopped < SHUTDOWN_GRACE_MS,
        `web exited ${Date.now() - stopped} ms after SIGTERM`,
      );
      // Valkey is closed only after the last request was answered; nothing new was handled.
      const index = (p: (l: Record<string, unknown>) => boolean) => env.program.logs.findIndex(p);
      const lastRequest = env.program.logs.findLastIndex((l) => l.msg === "request");
      assertEquals(env.program.logs[lastRequest].event_id, accepted.id);
      assertEquals(
        env.program.logs.filter((l) => l.reason === "shutting_down").length,
        1,
        "the late request",
      );
      assert(lastRequest < index((l) => l.msg === "web stopped; disconnecting from valkey"));
      const afterSignal = env.program.logs.slice(index((l) => l.msg === "shutting down"));
      assertEquals(
        afterSignal.filter((l) => l.level === "error" || l.level === "warn").map((l) => l.msg),
        [],
        "a requested shutdown warns of nothing",
      );
      assertEquals(afterSignal.filter((l) => l.msg === "valkey connection closed").length, 2);
    } finally {
      post?.close();
      await tearDown(env);
    }
  },
});

Deno.test({
  name:
    "web frees a waiting read's slot the moment its client disconnects, and holds each repository to its fair share",
  ignore: withoutValkey(),
  async fn(t) {
    // A bound of 4: each repository may hold one waiting read (a quarter).
    const env = await setUp({ STATUS_MAX_WAITERS: "4" });
    try {
      const mine = await postEvent(env);
      const theirs = await postEvent(env, OTHER_REPOSITORY);

      await t.step("a repository past its share gets 429 with Retry-After", async () => {
        const client = new AbortController();
        const held = await startWait(env, mine, { signal: client.signal });
        await waiters(env, 1);
        // wait=2: were it admitted, it would answer 200 within 2 s.
        const refused = await (await startWait(env, mine, { seconds: 2 })).answer;
        assertEquals(refused.status, 429);
        assertEquals(refused.headers.get("retry-after"), "5");
        assertMatch((await refused.json()).error, /of this repository/);
        const line = await env.program.waitForLog((l) => l.reason === "repository_waiters");
        assertEquals([line.status, line.repository], [429, "acme/app"]);
        // Another repository still finds a slot.
        const other = await startWait(env, theirs, { claims: OTHER_REPOSITORY, seconds: 1 });
        await waiters(env, 2);
        assertEquals((await other.answer).status, 200);
        client.abort();
        await held.answer.catch(() => {});
        await waiters(env, 0, 2000);
      });

      await t.step(
        "clients that disconnect give their slots back at once, and new waits are admitted",
        async () => {
          const clients = [new AbortController(), new AbortController()];
          const held = [
            await startWait(env, mine, { signal: clients[0].signal, seconds: 60 }),
            await startWait(env, theirs, {
              signal: clients[1].signal,
              seconds: 60,
              claims: OTHER_REPOSITORY,
            }),
          ];
          await waiters(env, 2);
          for (const client of clients) client.abort();
          for (const wait of held) await wait.answer.catch(() => {});
          // Nothing changed and no deadline passed: only the disconnect frees them.
          await waiters(env, 0, 2000);
          const again = await startWait(env, mine, { seconds: 1 });
          await waiters(env, 1);
          const res = await again.answer;
          assertEquals([res.status, (await res.json()).state], [200, "pending"]);
          assertEquals(
            env.program.logs.filter((l) => l.reason === "client_gone").length,
            3,
            "each disconnected wait is logged as client_gone",
          );
        },
      );
    } finally {
      await tearDown(env);
    }
  },
});
