/**
 * Web mode end to end: the real program (deno run -P=web), a real
 * Valkey-compatible server and a loopback OIDC issuer. Asserts what a caller
 * sees (status, body) and what reaches the channel (bytes).
 */

import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch, assertNotEquals } from "../helpers/assert.ts";
import { githubClaims, startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { type Program, startWeb } from "../helpers/program.ts";
import { withoutValkey } from "../helpers/skip.ts";
import {
  type RecordingSubscriber,
  startValkey,
  subscribe,
  type TestValkey,
} from "../helpers/valkey.ts";

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
  const { program, url } = await startWeb(webEnv(issuer, valkey, extra));
  return { issuer, valkey, sub, program, url };
}

async function tearDown(env: Env): Promise<void> {
  env.sub.close();
  await env.program.stop();
  await env.valkey.stop();
  await env.issuer.stop();
}

function post(env: Env, token: string | null, body: string, headers: Record<string, string> = {}) {
  const h = new Headers({ "content-type": "application/json", ...headers });
  if (token !== null) h.set("authorization", `Bearer ${token}`);
  return fetch(`${env.url}/event`, { method: "POST", headers: h, body });
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

/** The replay key and in-flight record web writes for a token's first use with `body`. */
function replayRecord(issuer: string, token: string, body: string) {
  const claims = JSON.parse(
    atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")),
  );
  const sha = (text: string) => createHash("sha256").update(text).digest("hex");
  return {
    key: `kuberollouttrigger:jti:${sha(`${issuer}\n${claims.jti}`)}`,
    value: JSON.stringify({ h: sha(body) }),
  };
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

      await t.step(
        "the image-plus-tags form of the existing GitHub Action is accepted",
        async () => {
          const res = await post(
            env,
            await env.issuer.sign(),
            JSON.stringify({ image: "ghcr.io/acme/app", tags: ["dev", "v1.2.3", "dev"] }),
          );
          assertEquals(res.status, 202);
          await res.body?.cancel();
          const [raw] = await env.sub.waitFor(1);
          assertEquals(JSON.parse(raw).tags, ["dev", "v1.2.3"]);
          env.sub.messages.length = 0;
        },
      );

      await t.step(
        "the Bearer scheme is case-insensitive and charset=utf-8 is accepted",
        async () => {
          for (const scheme of ["bearer", "BEARER", "BeArEr"]) {
            const res = await fetch(`${env.url}/event`, {
              method: "POST",
              headers: {
                authorization: `${scheme} ${await env.issuer.sign()}`,
                "content-type": "application/json; charset=utf-8",
              },
              body: '{"image":"ghcr.io/acme/app:dev"}',
            });
            assertEquals(res.status, 202, scheme);
            await res.body?.cancel();
          }
          await env.sub.waitFor(3);
          env.sub.messages.length = 0;
        },
      );

      await t.step(
        "the versioned alias /v1/event works and X-Request-Id is echoed when well-formed",
        async () => {
          const res = await fetch(`${env.url}/v1/event`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${await env.issuer.sign()}`,
              "content-type": "application/json",
              "x-request-id": "abc-123",
            },
            body: '{"image":"ghcr.io/acme/app:dev"}',
          });
          assertEquals(res.status, 202);
          assertEquals(res.headers.get("x-request-id"), "abc-123");
          await res.body?.cancel();
          await env.sub.waitFor(1);
          env.sub.messages.length = 0;
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
    const now = Math.floor(Date.now() / 1000);
    const valid = '{"image":"ghcr.io/acme/app:dev"}';
    try {
      // Warm the key cache so later cases do not depend on first-load timing.
      const warm = await post(env, await env.issuer.sign(), valid);
      assertEquals(warm.status, 202);
      await warm.body?.cancel();
      await env.sub.waitFor(1);
      env.sub.messages.length = 0;

      const cases: [string, string, () => Promise<Response>][] = [
        ["no Authorization header", "missing_token", () => post(env, null, valid)],
        ["two Authorization headers", "malformed_authorization", async () => {
          const h = new Headers({ "content-type": "application/json" });
          h.append("authorization", `Bearer ${await env.issuer.sign()}`);
          h.append("authorization", `Bearer ${await env.issuer.sign()}`);
          return fetch(`${env.url}/event`, { method: "POST", headers: h, body: valid });
        }],
        ["a non-JWT bearer", "malformed", () => post(env, "not-a-jwt", valid)],
        [
          "a Basic scheme",
          "malformed_authorization",
          () =>
            fetch(`${env.url}/event`, {
              method: "POST",
              headers: { authorization: "Basic YTpi", "content-type": "application/json" },
              body: valid,
            }),
        ],
        ["alg none with an empty signature", "malformed", async () => {
          const good = await env.issuer.sign();
          const payload = JSON.parse(
            atob(good.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")),
          );
          return post(
            env,
            env.issuer.unsigned({ alg: "none", typ: "JWT", kid: env.issuer.kid }, payload),
            valid,
          );
        }],
        ["alg none with a signature", "alg_not_allowed", async () => {
          const good = await env.issuer.sign();
          const payload = JSON.parse(
            atob(good.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")),
          );
          return post(
            env,
            env.issuer.unsigned(
              { alg: "none", typ: "JWT", kid: env.issuer.kid },
              payload,
              new Uint8Array([1, 2, 3]),
            ),
            valid,
          );
        }],
        ["HS256 signed with the RSA public key", "alg_not_allowed", async () => {
          const good = await env.issuer.sign();
          const payload = JSON.parse(
            atob(good.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")),
          );
          const pem = new TextEncoder().encode(await env.issuer.publicKeyPem());
          const key = await crypto.subtle.importKey(
            "raw",
            pem,
            { name: "HMAC", hash: "SHA-256" },
            false,
            ["sign"],
          );
          const unsigned = env.issuer.unsigned(
            { alg: "HS256", typ: "JWT", kid: env.issuer.kid },
            payload,
          );
          const input = unsigned.slice(0, unsigned.lastIndexOf("."));
          const sig = new Uint8Array(
            await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input)),
          );
          return post(
            env,
            env.issuer.unsigned({ alg: "HS256", typ: "JWT", kid: env.issuer.kid }, payload, sig),
            valid,
          );
        }],
        [
          "RS384",
          "alg_not_allowed",
          async () => post(env, await env.issuer.sign({ alg: "RS384" }), valid),
        ],
        [
          "ES256",
          "alg_not_allowed",
          async () => post(env, await env.issuer.sign({ alg: "ES256" }), valid),
        ],
        [
          "an unknown kid",
          "unknown_kid",
          async () => post(env, await env.issuer.sign({ header: { kid: "nope" } }), valid),
        ],
        [
          "a jku header pointing at another key set",
          "untrusted_header_key",
          async () =>
            post(env, await env.issuer.sign({ header: { jku: `${attackerUrl}/jwks` } }), valid),
        ],
        [
          "an x5u header pointing at another certificate",
          "untrusted_header_key",
          async () =>
            post(env, await env.issuer.sign({ header: { x5u: `${attackerUrl}/cert` } }), valid),
        ],
        [
          "an embedded jwk header",
          "untrusted_header_key",
          async () =>
            post(
              env,
              await env.issuer.sign({ header: { jwk: { kty: "RSA", n: "AQAB", e: "AQAB" } } }),
              valid,
            ),
        ],
        [
          "an expired token",
          "expired",
          async () => post(env, await env.issuer.sign({ now: now - 3600 }), valid),
        ],
        [
          "a token without exp",
          "claim_exp",
          async () => post(env, await env.issuer.sign({ omit: ["exp"] }), valid),
        ],
        [
          "a token without jti",
          "claim_jti",
          async () => post(env, await env.issuer.sign({ omit: ["jti"] }), valid),
        ],
        [
          "a token without iat",
          "claim_iat",
          async () => post(env, await env.issuer.sign({ omit: ["iat"] }), valid),
        ],
        [
          "nbf in the future",
          "claim_nbf",
          async () => post(env, await env.issuer.sign({ claims: { nbf: now + 600 } }), valid),
        ],
        [
          "iat too old (but not expired)",
          "claim_iat",
          async () =>
            post(
              env,
              await env.issuer.sign({ claims: { iat: now - 1200, exp: now + 600 } }),
              valid,
            ),
        ],
        [
          "iat in the future",
          "claim_iat",
          async () =>
            post(env, await env.issuer.sign({ claims: { iat: now + 600, exp: now + 900 } }), valid),
        ],
        [
          "iss with a trailing slash",
          "claim_iss",
          async () =>
            post(env, await env.issuer.sign({ claims: { iss: env.issuer.url + "/" } }), valid),
        ],
        [
          "iss with https instead of http",
          "claim_iss",
          async () =>
            post(
              env,
              await env.issuer.sign({ claims: { iss: env.issuer.url.replace("http:", "https:") } }),
              valid,
            ),
        ],
        [
          "iss on a look-alike host",
          "claim_iss",
          async () =>
            post(
              env,
              await env.issuer.sign({
                claims: { iss: "https://token.actions.githubusercontent.com.evil.com" },
              }),
              valid,
            ),
        ],
        [
          "the real GitHub iss (not the configured one)",
          "claim_iss",
          async () =>
            post(
              env,
              await env.issuer.sign({
                claims: { iss: "https://token.actions.githubusercontent.com" },
              }),
              valid,
            ),
        ],
        [
          "a wrong aud",
          "claim_aud",
          async () =>
            post(env, await env.issuer.sign({ claims: { aud: "https://other.example" } }), valid),
        ],
        [
          "an aud array holding our audience and another",
          "claim_aud",
          async () =>
            post(
              env,
              await env.issuer.sign({ claims: { aud: [TEST_AUDIENCE, "https://other.example"] } }),
              valid,
            ),
        ],
        [
          "another org",
          "org_not_allowed",
          async () =>
            post(
              env,
              await env.issuer.sign({
                claims: { repository_owner: "evil", repository: "evil/app" },
              }),
              valid,
            ),
        ],
        [
          "a repository outside the owner",
          "repository_mismatch",
          async () =>
            post(env, await env.issuer.sign({ claims: { repository: "evil/app" } }), valid),
        ],
        [
          "an owner id that does not match the pinned one",
          "owner_id_not_allowed",
          async () =>
            post(env, await env.issuer.sign({ claims: { repository_owner_id: "9999" } }), valid),
        ],
        [
          "an owner id sent as a number instead of a string",
          "claim_repository_owner_id",
          async () =>
            post(env, await env.issuer.sign({ claims: { repository_owner_id: 1001 } }), valid),
        ],
        [
          "a claims set naming repository_owner twice (last would win)",
          "duplicate_claims_member",
          async () => {
            const claims = JSON.stringify(githubClaims(env.issuer.url, now));
            const twice = `${claims.slice(0, -1)},"repository_owner":"acme"}`
              .replace('"repository_owner":"acme"', '"repository_owner":"evil"');
            return post(
              env,
              await env.issuer.signRaw(
                `{"alg":"RS256","kid":"${env.issuer.kid}","typ":"JWT"}`,
                twice,
              ),
              valid,
            );
          },
        ],
        [
          "a header naming alg twice",
          "duplicate_header_member",
          async () =>
            post(
              env,
              await env.issuer.signRaw(
                `{"alg":"HS256","kid":"${env.issuer.kid}","alg":"RS256"}`,
                JSON.stringify(githubClaims(env.issuer.url, now)),
              ),
              valid,
            ),
        ],
        [
          "a repository with an empty name",
          "claim_repository",
          async () => post(env, await env.issuer.sign({ claims: { repository: "acme/" } }), valid),
        ],
        [
          "a repository with a further path segment",
          "claim_repository",
          async () =>
            post(env, await env.issuer.sign({ claims: { repository: "acme/app/x" } }), valid),
        ],
        [
          "an owner spelled with a Kelvin sign (U+212A lower-cases to k)",
          "claim_repository_owner",
          async () =>
            post(
              env,
              await env.issuer.sign({
                claims: { repository_owner: "\u212Aube", repository: "\u212Aube/app" },
              }),
              valid,
            ),
        ],
        ["a tampered payload", "bad_signature", async () => {
          const [h, , s] = (await env.issuer.sign()).split(".");
          const other =
            (await env.issuer.sign({ claims: { repository_owner: "evil" } })).split(".")[1];
          return post(env, `${h}.${other}.${s}`, valid);
        }],
      ];
      for (const [name, reason, send] of cases) {
        await t.step(`rejects ${name} (logged as ${reason})`, async () => {
          const res = await send();
          await expectDenied(env, res);
          const id = res.headers.get("x-request-id");
          const line = await env.program.waitForLog((l) =>
            l.request_id === id && l.msg === "request"
          );
          assertEquals(line.reason, reason);
        });
      }
      await t.step("accepts an array aud holding only our audience", async () => {
        const res = await post(
          env,
          await env.issuer.sign({ claims: { aud: [TEST_AUDIENCE] } }),
          valid,
        );
        assertEquals(res.status, 202);
        await res.body?.cancel();
        await env.sub.waitFor(1);
        env.sub.messages.length = 0;
      });
      await t.step("no request ever left for a URL named in a token header", () => {
        assertEquals(attacker.hits, 0);
      });
      await t.step(
        "a burst of unknown kids causes at most one key refetch per cooldown",
        async () => {
          const before = env.issuer.hits.get("/.well-known/jwks") ?? 0;
          const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
            const res = await post(
              env,
              await env.issuer.sign({ header: { kid: `bogus-${i}` } }),
              valid,
            );
            await res.body?.cancel();
            return res.status;
          }));
          assert(results.every((s) => s === 403));
          const after = env.issuer.hits.get("/.well-known/jwks") ?? 0;
          assert(after - before <= 1, `JWKS fetched ${after - before} times`);
        },
      );
      await t.step("denials are logged with a reason and without the token", () => {
        const denied = env.program.logs.filter((l) => l.msg === "request" && l.status === 403);
        assert(denied.length >= cases.length);
        assert(denied.every((l) => typeof l.reason === "string"));
        const reasons = new Set(denied.map((l) => l.reason));
        for (
          const r of [
            "missing_token",
            "alg_not_allowed",
            "unknown_kid",
            "untrusted_header_key",
            "expired",
            "claim_aud",
            "org_not_allowed",
            "owner_id_not_allowed",
          ]
        ) {
          assert(reasons.has(r), `expected a denial logged with reason ${r}; saw ${[...reasons]}`);
        }
      });
    } finally {
      await attackerServer.shutdown();
      await tearDown(env);
    }
  },
});

Deno.test({
  name: "web rejects bad payloads from an authenticated caller",
  ignore: withoutValkey(),
  async fn(t) {
    const env = await setUp();
    try {
      const badBodies: [string, string, number][] = [
        ["unknown fields", '{"image":"ghcr.io/acme/app:dev","cluster":"prod"}', 400],
        [
          "duplicate keys",
          '{"image":"ghcr.io/acme/app:dev","image":"ghcr.io/acme-evil/app:dev"}',
          400,
        ],
        ["trailing data", '{"image":"ghcr.io/acme/app:dev"}{}', 400],
        ["a JSON array", '[{"image":"ghcr.io/acme/app:dev"}]', 400],
        ["an image of the wrong type", '{"image":42}', 400],
        ["a digest instead of a tag", `{"image":"ghcr.io/acme/app@sha256:${"a".repeat(64)}"}`, 400],
        ["a tag and a digest", `{"image":"ghcr.io/acme/app:dev@sha256:${"a".repeat(64)}"}`, 400],
        ["bad tag grammar", '{"image":"ghcr.io/acme/app:-dev"}', 400],
        ["a bad tag in the list", '{"image":"ghcr.io/acme/app","tags":["dev","a/b"]}', 400],
        ["an upper-case path", '{"image":"ghcr.io/acme/App:dev"}', 400],
        ["a space", '{"image":"ghcr.io/acme/app :dev"}', 400],
        ["a control character", '{"image":"ghcr.io/acme/app\\u0000:dev"}', 400],
        ["'..' in the path", '{"image":"ghcr.io/acme/../evil/app:dev"}', 400],
        ["a look-alike org (prefix boundary)", '{"image":"ghcr.io/acme-evil/x:dev"}', 400],
        ["a look-alike registry host", '{"image":"ghcr.io.evil.com/acme/x:dev"}', 400],
        ["no tag at all", '{"image":"ghcr.io/acme/app"}', 400],
        ["a tag in image and a tags list", '{"image":"ghcr.io/acme/app:dev","tags":["v1"]}', 400],
        ["an empty tag list", '{"image":"ghcr.io/acme/app","tags":[]}', 400],
        [
          "an oversized tag list",
          JSON.stringify({
            image: "ghcr.io/acme/app",
            tags: Array.from({ length: 33 }, (_, i) => `t${i}`),
          }),
          400,
        ],
        ["a body that is not JSON", "image=ghcr.io/acme/app:dev", 400],
        [
          "a body over the limit",
          JSON.stringify({ image: "ghcr.io/acme/app:dev", pad: "x".repeat(10_000) }),
          413,
        ],
      ];
      for (const [name, body, status] of badBodies) {
        await t.step(`rejects ${name} with ${status}`, async () => {
          const res = await post(env, await env.issuer.sign(), body);
          assertEquals(res.status, status);
          const answer = await res.json();
          assertEquals(typeof answer.error, "string");
          assertNotEquals(answer.error, "access denied");
        });
      }
      await t.step("rejects a wrong content type with 415", async () => {
        const res = await post(env, await env.issuer.sign(), '{"image":"ghcr.io/acme/app:dev"}', {
          "content-type": "text/plain",
        });
        assertEquals(res.status, 415);
        await res.body?.cancel();
      });
      await t.step("rejects GET /event with 405 and an Allow header", async () => {
        const res = await fetch(`${env.url}/event`);
        assertEquals(res.status, 405);
        assertEquals(res.headers.get("allow"), "POST");
        await res.body?.cancel();
      });
      await t.step(
        "an unauthenticated oversized body gets the access-denied answer, not 413",
        async () => {
          const res = await post(env, null, "x".repeat(20_000));
          assertEquals(res.status, 403);
          await res.body?.cancel();
        },
      );
      await t.step("nothing was published for any rejected payload", () => {
        assertEquals(env.sub.messages.length, 0);
      });
    } finally {
      await tearDown(env);
    }
  },
});

Deno.test({
  name: "web answers 503, never 202, when the issuer is down, slow or redirecting",
  ignore: withoutValkey(),
  async fn(t) {
    for (const mode of ["down", "slow", "redirect"] as const) {
      await t.step(`issuer ${mode}`, async () => {
        const issuer = await startIssuer();
        issuer.mode = mode;
        const valkey = await startValkey();
        const sub = await subscribe(valkey, CHANNEL);
        const { program, url } = await startWeb(
          webEnv(issuer, valkey, { GITHUB_OIDC_HTTP_TIMEOUT: "1s" }),
        );
        try {
          const res = await fetch(`${url}/event`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${await issuer.sign()}`,
              "content-type": "application/json",
            },
            body: '{"image":"ghcr.io/acme/app:dev"}',
          });
          assertEquals(res.status, 503);
          await res.body?.cancel();
          const ready = await fetch(`${url}/readyz`);
          assertEquals(ready.status, 503);
          assertEquals((await ready.json()).checks.issuer_keys, "failing");
          assertEquals(sub.messages.length, 0);
          if (mode === "redirect") {
            assertEquals(issuer.hits.get("/elsewhere/.well-known/openid-configuration") ?? 0, 0);
          }
        } finally {
          sub.close();
          await program.stop();
          await valkey.stop();
          await issuer.stop();
        }
      });
    }
  },
});

Deno.test({
  name: "web answers 503 while Valkey is down or nobody is subscribed, and recovers by itself",
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
        env.sub.close();
        env.sub = await subscribe(env.valkey, CHANNEL);
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
      await t.step("503 with a clear reason when no worker is subscribed", async () => {
        env.sub.close();
        await new Promise((r) => setTimeout(r, 100));
        const { status, body } = await send();
        assertEquals(status, 503);
        assertMatch(body.error, /no worker is subscribed/);
      });
    } finally {
      await tearDown(env);
    }
  },
});

Deno.test({
  name: "web serves health, readiness and Prometheus metrics",
  ignore: withoutValkey(),
  async fn() {
    const env = await setUp();
    try {
      const health = await fetch(`${env.url}/healthz`);
      assertEquals(health.status, 200);
      await health.body?.cancel();
      const ready = await fetch(`${env.url}/readyz`);
      assertEquals(ready.status, 200);
      assertEquals((await ready.json()).checks, { valkey: "ok", issuer_keys: "ok" });
      const denied = await post(env, null, "{}");
      await denied.body?.cancel();
      const metrics = await fetch(`${env.url}/metrics`);
      assertEquals(metrics.status, 200);
      assertMatch(metrics.headers.get("content-type") ?? "", /^text\/plain/);
      const text = await metrics.text();
      assertMatch(text, /kuberollouttrigger_auth_denied_total\{reason="missing_token"\} 1/);
      assertMatch(text, /kuberollouttrigger_http_requests_total\{code="403",route="\/event"\} 1/);
      assertMatch(text, /# TYPE kuberollouttrigger_http_request_duration_seconds histogram/);
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
    try {
      await t.step("the right user and password publish", async () => {
        const { program, url } = await startWeb(
          webEnv(issuer, valkey, { VALKEY_USERNAME: "krt", VALKEY_PASSWORD: "s3cret-acl-pw" }),
        );
        try {
          const res = await fetch(`${url}/event`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${await issuer.sign()}`,
              "content-type": "application/json",
            },
            body: '{"image":"ghcr.io/acme/app:dev"}',
          });
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
            const res = await fetch(`${url}/event`, {
              method: "POST",
              headers: {
                authorization: `Bearer ${await issuer.sign()}`,
                "content-type": "application/json",
              },
              body: '{"image":"ghcr.io/acme/app:dev"}',
            });
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
      sub.close();
      await valkey.stop();
      await issuer.stop();
    }
  },
});

Deno.test({
  name: "security: replay protection remembers each token's jti until it expires",
  ignore: withoutValkey(),
  async fn(t) {
    const env = await setUp();
    const body = '{"image":"ghcr.io/acme/app:dev"}';
    try {
      await t.step(
        "the same token and body again get the same answer and publish once",
        async () => {
          const token = await env.issuer.sign();
          const first = await post(env, token, body);
          const firstBody = await first.text();
          assertEquals(first.status, 202);
          const answers = await Promise.all(Array.from({ length: 5 }, async () => {
            const res = await post(env, token, body);
            return { status: res.status, body: await res.text() };
          }));
          for (const a of answers) assertEquals(a, { status: 202, body: firstBody });
          await new Promise((r) => setTimeout(r, 200));
          assertEquals(env.sub.messages.length, 1, "published exactly once");
          const replayed = env.program.logs.filter((l) =>
            l.msg === "request" && l.replayed === true
          );
          assertEquals(replayed.length, 5);
          env.sub.messages.length = 0;
        },
      );
      await t.step("concurrent first uses of one token still publish once", async () => {
        const token = await env.issuer.sign();
        const answers = await Promise.all(Array.from({ length: 8 }, async () => {
          const res = await post(env, token, body);
          return `${res.status} ${await res.text()}`;
        }));
        assertEquals(new Set(answers).size, 1);
        assertMatch(answers[0], /^202 /);
        await new Promise((r) => setTimeout(r, 200));
        assertEquals(env.sub.messages.length, 1);
        env.sub.messages.length = 0;
      });
      await t.step("the same token with a different body is denied", async () => {
        const token = await env.issuer.sign();
        const first = await post(env, token, body);
        assertEquals(first.status, 202);
        await first.body?.cancel();
        await env.sub.waitFor(1);
        env.sub.messages.length = 0;
        const other = await post(env, token, '{"image":"ghcr.io/acme/other:dev"}');
        await expectDenied(env, other);
        const line = await env.program.waitForLog((l) =>
          l.request_id === other.headers.get("x-request-id") && l.msg === "request"
        );
        assertEquals(line.reason, "replay_different_body");
      });
      await t.step("a token whose first use delivered nothing (503) may be retried", async () => {
        const token = await env.issuer.sign();
        env.sub.close();
        await new Promise((r) => setTimeout(r, 100));
        const first = await post(env, token, body);
        assertEquals(first.status, 503);
        await first.body?.cancel();
        env.sub = await subscribe(env.valkey, CHANNEL);
        const retry = await post(env, token, body);
        assertEquals(retry.status, 202);
        await retry.body?.cancel();
        await env.sub.waitFor(1);
      });
      await t.step(
        "Valkey holds hashes of the jti and of repository_id, never the token or its claims",
        async () => {
          const { Valkey } = await import("iovalkey");
          const client = new Valkey({ host: env.valkey.host, port: env.valkey.port });
          try {
            const keys = await client.keys("*");
            const replayKey = /^kuberollouttrigger:jti:[0-9a-f]{64}$/;
            const statusKey = /^kuberollouttrigger:event-status:[0-9a-f-]{36}$/;
            assert(keys.some((k) => replayKey.test(k)), keys.join());
            assert(keys.every((k) => replayKey.test(k) || statusKey.test(k)), keys.join());
            const values = await Promise.all(
              keys.map(async (k) =>
                statusKey.test(k) ? JSON.stringify(await client.hgetall(k)) : await client.get(k)
              ),
            );
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
        ["a gzip Content-Encoding", async () => {
          const gz = new Uint8Array(
            await new Response(
              new Blob([event]).stream().pipeThrough(new CompressionStream("gzip")),
            ).arrayBuffer(),
          );
          const h = new TextEncoder().encode(
            await head(`Content-Encoding: gzip\r\nContent-Length: ${gz.length}\r\n\r\n`),
          );
          return new Uint8Array([...h, ...gz]);
        }, 415],
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

Deno.test({
  name: "web answers a token still in flight with 409, and a NumericDate with a fraction with 202",
  ignore: withoutValkey(),
  async fn(t) {
    const env = await setUp();
    const body = '{"image":"ghcr.io/acme/app:dev"}';
    const { Valkey } = await import("iovalkey");
    const client = new Valkey({ host: env.valkey.host, port: env.valkey.port });
    try {
      await t.step("an exp with a sub-millisecond fraction is accepted (not 503)", async () => {
        const now = Math.floor(Date.now() / 1000);
        const res = await post(
          env,
          await env.issuer.sign({ claims: { exp: now + 300.0004 } }),
          body,
        );
        assertEquals(res.status, 202, await res.text());
        await env.sub.waitFor(1);
        env.sub.messages.length = 0;
      });
      await t.step(
        "a request whose token another request (here: another replica) is still using gets 409",
        async () => {
          const token = await env.issuer.sign();
          const record = replayRecord(env.issuer.url, token, body);
          await client.set(record.key, record.value, "PX", 60_000);
          const res = await post(env, token, body);
          assertEquals(res.status, 409);
          assertEquals(res.headers.get("retry-after"), "1");
          assertMatch((await res.json()).error, /still in progress; retry shortly/);
          const line = await env.program.waitForLog((l) =>
            l.request_id === res.headers.get("x-request-id") && l.msg === "request"
          );
          assertEquals(line.reason, "replay_in_progress");
          assertEquals(line.code, "ERR_REPLAY_IN_PROGRESS");
          const metrics = await fetch(`${env.url}/metrics`).then((r) => r.text());
          assertMatch(metrics, /kuberollouttrigger_token_reuse_total\{outcome="in_progress"\} 1/);
          assert(
            !/kuberollouttrigger_publish_failures_total\{[^}]*\} [1-9]/.test(metrics),
            metrics,
          );
          assertEquals(env.sub.messages.length, 0);
          await client.del(record.key);
          const retry = await post(env, token, body);
          assertEquals(retry.status, 202, "once the first use is gone, a retry goes through");
          await retry.body?.cancel();
          await env.sub.waitFor(1);
          env.sub.messages.length = 0;
        },
      );
      await t.step("security: a corrupt replay record answers 503 without quoting it", async () => {
        const token = await env.issuer.sign();
        const record = replayRecord(env.issuer.url, token, body);
        await client.set(record.key, "stolen=eyJhbGciOi.corrupt", "PX", 60_000);
        const res = await post(env, token, body);
        assertEquals(res.status, 503);
        await res.body?.cancel();
        const line = await env.program.waitForLog((l) =>
          l.request_id === res.headers.get("x-request-id") && l.msg === "request"
        );
        assertMatch(String(line.detail), /replay record is not valid JSON/);
        const all = JSON.stringify(env.program.logs) + env.program.stderr();
        assert(!all.includes("stolen=") && !all.includes("eyJhbGciOi"), "the record leaked");
      });
    } finally {
      client.disconnect();
      await tearDown(env);
    }
  },
});
