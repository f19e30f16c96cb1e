/**
 * Web mode end to end: the real program (deno run -P=web), a real
 * Valkey-compatible server and a loopback OIDC issuer. Only what a real
 * process proves is here: the program's permission set, configuration and
 * wiring, its sockets and HTTP framing, its log output, the bytes that reach
 * Valkey, and Valkey going away and coming back. Each HTTP decision is proven
 * in full in-process (tests/web/handler_test.ts, oidc_test.ts, policy_test.ts,
 * event_route_test.ts, replay_test.ts, jwks_test.ts, tests/shared/); this file
 * sends one representative of each to the real program.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import {
  connectValkey,
  fieldsOf,
  type RecordingSubscriber,
  registerCluster,
  startValkey,
  subscribe,
  type TestValkey,
} from "../helpers/valkey.ts";
import { CLUSTERS_KEY, statusKey } from "../../shared/event_status.ts";
import { EVENTS_STREAM } from "../../shared/event_stream.ts";
import { productKey } from "../../shared/valkey_keys.ts";

const ACCESS_DENIED = '{"error":"access denied"}';
const CHANNEL = "krt-e2e";

interface Env {
  issuer: TestIssuer;
  valkey: TestValkey;
  sub: RecordingSubscriber;
  program: Program;
  url: string;
}

function webEnv(issuer: TestIssuer, valkey: TestValkey, extra: Record<string, string> = {}) {
  return {
    VALKEY_ADDR: valkey.addr,
    VALKEY_CHANNEL: CHANNEL,
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_OIDC_ISSUER: issuer.url,
    GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
    GITHUB_ALLOWED_ORG: "Acme",
    GITHUB_ALLOWED_OWNER_IDS: "1001",
    GITHUB_OIDC_JWKS_COOLDOWN: "1m",
    LOG_LEVEL: "debug",
    ...extra,
  };
}

async function setUp(extra: Record<string, string> = {}): Promise<Env> {
  const issuer = await startIssuer();
  const valkey = await startValkey();
  const sub = await subscribe(valkey, CHANNEL);
  await registerCluster(valkey);
  const { program, url } = await startWeb(webEnv(issuer, valkey, extra));
  return { issuer, valkey, sub, program, url };
}

async function tearDown(env: Env): Promise<void> {
  await env.sub.close();
  await env.program.stop();
  await env.valkey.stop();
  await env.issuer.stop();
}

/** POSTs `body` to web's /event with `token` as the Bearer (none when null). */
function post(web: { url: string }, token: string | null, body: string) {
  const h = new Headers({ "content-type": "application/json" });
  if (token !== null) h.set("authorization", `Bearer ${token}`);
  return fetch(`${web.url}/event`, { method: "POST", headers: h, body });
}

/** What one raw HTTP/1.1 exchange over TCP got back: the status, if the server sent one. */
async function rawExchange(
  env: Env,
  text: string | Uint8Array,
  options: { halfClose?: boolean; timeoutMs?: number } = {},
): Promise<{ status?: number; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(env.url).port) });
  const timer = setTimeout(() => conn.close(), options.timeoutMs ?? 15_000);
  let received = "";
  try {
    await conn.write(typeof text === "string" ? new TextEncoder().encode(text) : text);
    // The client stops sending: whatever it announced and did not send never comes.
    if (options.halfClose) await conn.closeWrite();
    const buffer = new Uint8Array(16_384);
    while (!/\r\n\r\n/.test(received)) {
      const n = await conn.read(buffer);
      if (n === null) break;
      received += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } catch {
    // Closed by the server or by the timer: report what arrived.
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(received);
  return { status: m ? Number(m[1]) : undefined, text: received };
}

async function expectDenied(env: Env, res: Response): Promise<void> {
  assertEquals(res.status, 403);
  assertEquals(await res.text(), ACCESS_DENIED);
  assertEquals(env.sub.messages.length, 0, "nothing may be published for a denied request");
}

Deno.test({
  name: "web accepts signed events, publishes exactly the event and nothing of the token",
  ignore: withoutValkey(),
  async fn(t) {
    const env = await setUp();
    try {
      await t.step("an image with one tag is accepted with 202 and published", async () => {
        const token = await env.issuer.sign();
        const res = await post(env, token, JSON.stringify({ image: "ghcr.io/acme/app:dev" }));
        assertEquals(res.status, 202);
        const body = await res.json();
        assertEquals(body.subscribers, 1);
        assertMatch(res.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
        const [raw] = await env.sub.waitFor(1);
        const message = JSON.parse(raw);
        assertEquals(Object.keys(message), ["id", "time", "image", "tags"]);
        assertEquals(message.id, body.id);
        assertEquals(message.image, "ghcr.io/acme/app");
        assertEquals(message.tags, ["dev"]);
        // Security: nothing from the token or its claims reaches Valkey.
        const [header, payload, signature] = token.split(".");
        for (
          const secret of [
            header,
            payload,
            signature,
            "octocat",
            "refs/heads/main",
            "4f2a1b0c9d8e",
            "1001",
            "2002",
            "Bearer",
            env.issuer.kid,
          ]
        ) {
          assert(!raw.includes(secret), `message must not contain ${secret.slice(0, 20)}`);
        }
        env.sub.messages.length = 0;
      });

      await t.step("the program serves health, readiness of both checks and metrics", async () => {
        const health = await fetch(`${env.url}/healthz`);
        assertEquals(health.status, 200);
        await health.body?.cancel();
        const ready = await fetch(`${env.url}/readyz`);
        assertEquals(ready.status, 200);
        assertEquals((await ready.json()).checks, { valkey: "ok", issuer_keys: "ok" });
        const metrics = await fetch(`${env.url}/metrics`);
        assertEquals(metrics.status, 200);
        assertMatch(metrics.headers.get("content-type") ?? "", /^text\/plain/);
        const text = await metrics.text();
        assertMatch(text, /kuberollouttrigger_http_requests_total\{code="202",route="\/event"\} 1/);
        assertMatch(text, /# TYPE kuberollouttrigger_http_request_duration_seconds histogram/);
      });

      await t.step(
        "an image outside ALLOWED_IMAGE_PREFIX is refused with 400 and a reason",
        async () => {
          const res = await post(
            env,
            await env.issuer.sign(),
            JSON.stringify({ image: "ghcr.io/acme-evil/app:dev" }),
          );
          assertEquals(res.status, 400);
          const answer = await res.json();
          assertEquals(typeof answer.error, "string");
          assert(answer.error !== "access denied", answer.error);
          assertEquals(env.sub.messages.length, 0);
        },
      );

      await t.step("the token never appears in the program's output", async () => {
        const token = await env.issuer.sign();
        const res = await post(env, token, JSON.stringify({ image: "ghcr.io/acme-evil/app:dev" }));
        await res.body?.cancel();
        const res2 = await post(env, token + "x", "{}");
        await res2.body?.cancel();
        const all = JSON.stringify(env.program.logs) + env.program.stderr();
        for (const part of token.split(".")) {
          assert(!all.includes(part), "a token part leaked into the logs");
        }
        env.sub.messages.length = 0;
      });
      await t.step(
        "Valkey holds hashes of the jti and of repository_id, never the token or its claims",
        async () => {
          const client = await connectValkey(env.valkey);
          try {
            const keys = (await client.call("KEYS", "*") as unknown[]).map(String);
            // The product's own key names: its hash tag, then the kind, then a hash or an event id.
            const named = (prefix: string, rest: RegExp) => (k: string) =>
              k.startsWith(prefix) && rest.test(k.slice(prefix.length));
            const replayKey = named(productKey("jti", ""), /^[0-9a-f]{64}$/);
            const isStatusKey = named(statusKey(""), /^[0-9a-f-]{36}$/);
            assert(keys.some(replayKey), keys.join());
            assert(keys.includes(EVENTS_STREAM), "the event stream");
            const known = [EVENTS_STREAM, CLUSTERS_KEY];
            assert(
              keys.every((k) => replayKey(k) || isStatusKey(k) || known.includes(k)),
              keys.join(),
            );
            const read = async (k: string) => {
              if (isStatusKey(k)) return JSON.stringify(fieldsOf(await client.call("HGETALL", k)));
              if (k === EVENTS_STREAM) {
                return JSON.stringify(await client.call("XRANGE", k, "-", "+"));
              }
              if (k === CLUSTERS_KEY) return JSON.stringify(await client.call("ZRANGE", k, 0, -1));
              return String(await client.call("GET", k));
            };
            const values = await Promise.all(keys.map(read));
            const all = keys.join() + values.join();
            // The image names acme/app too; the claim would stand as a JSON string of its own.
            for (
              const secret of ['"acme/app"', '"2002"', "octocat", "refs/heads", "Bearer", "eyJ"]
            ) {
              assert(!all.includes(secret), `Valkey must not hold ${secret}`);
            }
          } finally {
            client.disconnect();
          }
        },
      );
    } finally {
      await tearDown(env);
    }
  },
});

/** The claims that lead from a Kubernetes Event back to the workflow run (docs/operations.md). */
const AUDIT_CLAIMS = {
  repository: "acme/audit-trail",
  repository_id: "20020",
  run_id: "987654321",
  run_attempt: "3",
  sha: "0123456789abcdef0123456789abcdef01234567",
  ref: "refs/heads/release-7",
  workflow_ref: "acme/audit-trail/.github/workflows/deliver.yml@refs/heads/release-7",
};

Deno.test({
  name:
    "web logs the accepted event's request line with every claim that leads back to the workflow run",
  ignore: withoutValkey(),
  async fn() {
    const env = await setUp();
    try {
      const token = await env.issuer.sign({ claims: AUDIT_CLAIMS });
      const res = await post(env, token, JSON.stringify({ image: "ghcr.io/acme/app:dev" }));
      assertEquals(res.status, 202);
      const { id } = await res.json();
      const line = await env.program.waitForLog((l) => l.msg === "request" && l.event_id === id);
      assertEquals(line.status, 202);
      for (const [claim, value] of Object.entries(AUDIT_CLAIMS)) {
        assertEquals(line[claim], value, `the accepted event's log line has ${claim}`);
      }
    } finally {
      await tearDown(env);
    }
  },
});

Deno.test({
  name: "security: web denies every bad token with one identical answer",
  ignore: withoutValkey(),
  async fn(t) {
    const env = await setUp({ GITHUB_ALLOWED_ORG: "Acme,Kube" });
    const attacker = { hits: 0 };
    const attackerServer = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => {
        attacker.hits++;
        return Response.json({ keys: [] });
      },
    );
    const attackerUrl = `http://127.0.0.1:${attackerServer.addr.port}`;
    const valid = '{"image":"ghcr.io/acme/app:dev"}';
    try {
      // Warm the key cache so later cases do not depend on first-load timing.
      const warm = await post(env, await env.issuer.sign(), valid);
      assertEquals(warm.status, 202);
      await warm.body?.cancel();
      await env.sub.waitFor(1);
      env.sub.messages.length = 0;

      // Security: every token sent below; none of it may reach the program's output.
      const sent: string[] = [];
      const send = async (token: string | Promise<string>) => {
        const t = await token;
        sent.push(t);
        return post(env, t, valid);
      };
      // One representative per piece of the real program's wiring: the
      // Authorization header as the real server hands it over, the issuer's real
      // keys, the real network for header URLs, the configured audience and the
      // configured policy. Every other token is in tests/web/oidc_test.ts and
      // tests/web/policy_test.ts.
      const cases: [string, string, () => Promise<Response>][] = [
        ["no Authorization header", "missing_token", () => post(env, null, valid)],
        ["two Authorization headers", "malformed_authorization", async () => {
          const h = new Headers({ "content-type": "application/json" });
          for (const token of [await env.issuer.sign(), await env.issuer.sign()]) {
            sent.push(token);
            h.append("authorization", `Bearer ${token}`);
          }
          return fetch(`${env.url}/event`, { method: "POST", headers: h, body: valid });
        }],
        ["a tampered payload", "bad_signature", async () => {
          const [h, , s] = (await env.issuer.sign()).split(".");
          const other =
            (await env.issuer.sign({ claims: { repository_owner: "evil" } })).split(".")[1];
          return send(`${h}.${other}.${s}`);
        }],
        [
          "a jku header pointing at another key set",
          "untrusted_header_key",
          () => send(env.issuer.sign({ header: { jku: `${attackerUrl}/jwks` } })),
        ],
        [
          "an x5u header pointing at another certificate",
          "untrusted_header_key",
          () => send(env.issuer.sign({ header: { x5u: `${attackerUrl}/cert` } })),
        ],
        [
          "a wrong aud",
          "claim_aud",
          () => send(env.issuer.sign({ claims: { aud: "https://other.example" } })),
        ],
        [
          "another org",
          "org_not_allowed",
          () =>
            send(
              env.issuer.sign({ claims: { repository_owner: "evil", repository: "evil/app" } }),
            ),
        ],
        [
          "an owner id that does not match the pinned one",
          "owner_id_not_allowed",
          () => send(env.issuer.sign({ claims: { repository_owner_id: "9999" } })),
        ],
      ];
      for (const [name, reason, run] of cases) {
        await t.step(`rejects ${name} (logged as ${reason})`, async () => {
          const res = await run();
          await expectDenied(env, res);
          const id = res.headers.get("x-request-id");
          const line = await env.program.waitForLog((l) =>
            l.request_id === id && l.msg === "request"
          );
          assertEquals(line.reason, reason);
        });
      }
      await t.step("no request ever left for a URL named in a token header", () => {
        assertEquals(attacker.hits, 0);
      });
      await t.step("denials are logged with their reason and without the token", () => {
        const denied = env.program.logs.filter((l) => l.msg === "request" && l.status === 403);
        assertEquals(
          denied.map((l) => l.reason).sort(),
          cases.map(([, reason]) => reason).sort(),
        );
        const all = JSON.stringify(env.program.logs) + env.program.stderr();
        for (const token of sent) {
          for (const part of token.split(".")) {
            assert(!all.includes(part), "a token part leaked into the logs");
          }
        }
      });
    } finally {
      await attackerServer.shutdown();
      await tearDown(env);
    }
  },
});

Deno.test({
  name:
    "web warns when it runs unsigned, and answers 503, never 202, and is not ready while the issuer is down",
  ignore: withoutValkey(),
  async fn() {
    // Slow and redirecting issuers, through the same real fetch, are in
    // tests/web/jwks_test.ts; here the real program's answer and readiness.
    const issuer = await startIssuer();
    issuer.mode = "down";
    const valkey = await startValkey();
    const sub = await subscribe(valkey, CHANNEL);
    const { program, url } = await startWeb(webEnv(issuer, valkey));
    try {
      // Started unsigned both ways: one loud line for each missing key.
      const unsigned = program.logs.filter((l) =>
        /^(EVENT_SIGNING_KEY|REPORT_VERIFY_KEYS) is not set/.test(l.msg)
      );
      assertEquals(unsigned.map((l) => [l.level, l.msg.split(" ")[0]]), [
        ["warn", "EVENT_SIGNING_KEY"],
        ["warn", "REPORT_VERIFY_KEYS"],
      ]);
      const res = await post({ url }, await issuer.sign(), '{"image":"ghcr.io/acme/app:dev"}');
      assertEquals(res.status, 503);
      await res.body?.cancel();
      const ready = await fetch(`${url}/readyz`);
      assertEquals(ready.status, 503);
      assertEquals((await ready.json()).checks.issuer_keys, "failing");
      assertEquals(sub.messages.length, 0);
    } finally {
      await sub.close();
      await program.stop();
      await valkey.stop();
      await issuer.stop();
    }
  },
});

Deno.test({
  name: "web answers 503 while Valkey is down, and recovers by itself",
  ignore: withoutValkey(),
  async fn(t) {
    const env = await setUp();
    const send = async () => {
      const res = await post(env, await env.issuer.sign(), '{"image":"ghcr.io/acme/app:dev"}');
      return { status: res.status, body: await res.json() };
    };
    try {
      await t.step("202 while healthy", async () => {
        assertEquals((await send()).status, 202);
        await env.sub.waitFor(1);
      });
      await t.step("503 while Valkey is down, and /readyz fails", async () => {
        await env.valkey.stop();
        assertEquals((await send()).status, 503);
        assertEquals(await fetch(`${env.url}/readyz`).then((r) => r.status), 503);
      });
      await t.step("202 again after Valkey returns, without restarting web", async () => {
        await env.valkey.start();
        await env.sub.close();
        env.sub = await subscribe(env.valkey, CHANNEL);
        // A Valkey without persistence lost the registration; the worker's next beat restores it.
        await registerCluster(env.valkey);
        const deadline = Date.now() + 10_000;
        let status = 0;
        while (Date.now() < deadline && status !== 202) {
          status = (await send()).status;
          if (status !== 202) await new Promise((r) => setTimeout(r, 200));
        }
        assertEquals(status, 202);
        assertEquals(
          await fetch(`${env.url}/readyz`).then(async (r) => (await r.body?.cancel(), r.status)),
          200,
        );
      });
    } finally {
      await tearDown(env);
    }
  },
});

Deno.test({
  name: "web authenticates to Valkey with an ACL user and never logs the password",
  ignore: withoutValkey(),
  async fn(t) {
    const issuer = await startIssuer();
    const valkey = await startValkey([
      "--user",
      "default",
      "off",
      "--user",
      "krt",
      "on",
      ">s3cret-acl-pw",
      "~*",
      "&*",
      "+@all",
    ]);
    const sub = await subscribe(valkey, CHANNEL, { username: "krt", password: "s3cret-acl-pw" });
    await registerCluster(valkey, "test-cluster", { username: "krt", password: "s3cret-acl-pw" });
    try {
      await t.step("the right user and password publish", async () => {
        const { program, url } = await startWeb(
          webEnv(issuer, valkey, { VALKEY_USERNAME: "krt", VALKEY_PASSWORD: "s3cret-acl-pw" }),
        );
        try {
          const res = await post({ url }, await issuer.sign(), '{"image":"ghcr.io/acme/app:dev"}');
          assertEquals(res.status, 202);
          await res.body?.cancel();
          await sub.waitFor(1);
        } finally {
          await program.stop();
        }
        assert(!JSON.stringify(program.logs).includes("s3cret-acl-pw"));
      });
      await t.step(
        "a wrong password makes web unready and answers 503, without logging it",
        async () => {
          const { program, url } = await startWeb(
            webEnv(issuer, valkey, { VALKEY_USERNAME: "krt", VALKEY_PASSWORD: "wrong-pw-value" }),
          );
          try {
            const res = await post(
              { url },
              await issuer.sign(),
              '{"image":"ghcr.io/acme/app:dev"}',
            );
            assertEquals(res.status, 503);
            await res.body?.cancel();
            const ready = await fetch(`${url}/readyz`);
            assertEquals((await ready.json()).checks.valkey, "failing");
          } finally {
            await program.stop();
          }
          const all = JSON.stringify(program.logs) + program.stderr();
          assert(!all.includes("wrong-pw-value"), "the password must never be logged");
          assert(
            program.logs.some((l) => l.msg === "valkey connection error"),
            "the auth failure is logged",
          );
        },
      );
    } finally {
      await sub.close();
      await valkey.stop();
      await issuer.stop();
    }
  },
});

Deno.test({
  name: "security: web answers malformed HTTP from any client with 4xx, never 5xx",
  ignore: withoutValkey(),
  async fn(t) {
    const env = await setUp();
    const event = '{"image":"ghcr.io/acme/app:dev"}';
    const head = async (extra: string) =>
      `POST /event HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${await env.issuer
        .sign()}\r\nContent-Type: application/json\r\n${extra}`;
    try {
      const cases: [string, () => Promise<string | Uint8Array>, number, boolean?][] = [
        [
          "a body shorter than its Content-Length (the client half-closes)",
          async () => `${await head("Content-Length: 100\r\n\r\n")}{"image":`,
          400,
          true,
        ],
        [
          "a chunked body that stops mid-chunk (the client half-closes)",
          async () => `${await head("Transfer-Encoding: chunked\r\n\r\n")}20\r\n{"image"`,
          400,
          true,
        ],
        [
          "a transfer coding other than chunked",
          async () =>
            `${await head("Transfer-Encoding: gzip, chunked\r\n\r\n")}${
              event.length.toString(16)
            }\r\n${event}\r\n0\r\n\r\n`,
          415,
        ],
        [
          "a Host with a space",
          () => Promise.resolve("GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n"),
          400,
        ],
        [
          "a Host with a port over 65535",
          () => Promise.resolve("GET /healthz HTTP/1.1\r\nHost: x:99999\r\n\r\n"),
          400,
        ],
        [
          "a Host that would move the path (x/metrics?)",
          () => Promise.resolve("GET /healthz HTTP/1.1\r\nHost: x/metrics?\r\n\r\n"),
          400,
        ],
        [
          "a Content-Length that is not a number",
          async () => `${await head("Content-Length: abc\r\n\r\n")}${event}`,
          400,
        ],
        [
          "Content-Length and Transfer-Encoding together",
          async () =>
            `${await head(`Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`)}0\r\n\r\n`,
          400,
        ],
        [
          "a bad percent-encoding and a raw byte in the path",
          () => Promise.resolve("GET /%zz%%/\xff HTTP/1.1\r\nHost: x\r\n\r\n"),
          404,
        ],
        [
          "a 100 KB request target",
          () => Promise.resolve(`GET /${"a".repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`),
          400,
        ],
      ];
      for (const [name, build, status, halfClose] of cases) {
        await t.step(`${name}: ${status}`, async () => {
          const answer = await rawExchange(env, await build(), { halfClose });
          assertEquals(answer.status, status, answer.text.slice(0, 200));
        });
      }
      await t.step(
        "a chunk size that is not hex closes the connection, without a 5xx",
        async () => {
          const answer = await rawExchange(
            env,
            `${await head("Transfer-Encoding: chunked\r\n\r\n")}zz\r\n{}\r\n0\r\n\r\n`,
          );
          assert(answer.status === undefined || answer.status === 400, answer.text.slice(0, 200));
        },
      );
      await t.step("nothing was published and nothing answered 5xx", () => {
        assertEquals(env.sub.messages.length, 0);
        const fivexx = env.program.logs.filter((l) => Number(l.status) >= 500);
        assertEquals(fivexx, []);
        assert(!env.program.stderr().includes("unhandled"), env.program.stderr());
        assert(!env.program.logs.some((l) => l.msg === "unhandled request error"));
      });
    } finally {
      await tearDown(env);
    }
  },
});
