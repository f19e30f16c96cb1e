import { base64url, exportJWK, generateKeyPair } from "jose";
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { startIssuer } from "../helpers/issuer.ts";
import { AppError } from "../../shared/errors.ts";
import { createKeyStore, modulusBits } from "../../web/jwks.ts";

const ISSUER = "https://issuer.example";

async function fakeIssuer() {
  const { publicKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "RS256", use: "sig" };
  const state = {
    calls: [] as string[],
    fail: false,
    jwks: { keys: [jwk] } as { keys: unknown[] },
    /** When set, served as the JWKS body byte for byte. */
    rawJwks: undefined as string | undefined,
    discovery: { issuer: ISSUER, jwks_uri: `${ISSUER}/.well-known/jwks` } as Record<
      string,
      unknown
    >,
  };
  const fetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    state.calls.push(url);
    assertEquals(init?.redirect, "error");
    if (state.fail) return Promise.reject(new TypeError("connection refused"));
    if (url.endsWith("/openid-configuration")) {
      return Promise.resolve(Response.json(state.discovery));
    }
    if (state.rawJwks !== undefined) return Promise.resolve(new Response(state.rawJwks));
    return Promise.resolve(Response.json(state.jwks));
  };
  return { state, fetch: fetch as typeof globalThis.fetch, jwk };
}

Deno.test("createKeyStore() refetches an unknown kid at most once per cooldown", async () => {
  const issuer = await fakeIssuer();
  let now = 0;
  const store = createKeyStore({
    issuer: ISSUER,
    fetch: issuer.fetch,
    now: () => now,
    cooldownMs: 10_000,
    ttlMs: 3_600_000,
    timeoutMs: 1000,
  });
  assert(await store.getKey("k1"));
  assertEquals(issuer.state.calls.length, 2);
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) => store.getKey(`bogus-${i}`)),
  );
  assert(results.every((k) => k === undefined));
  assertEquals(issuer.state.calls.length, 2, "no refetch inside the cooldown");
  now = 10_001;
  await Promise.all(Array.from({ length: 100 }, (_, i) => store.getKey(`bogus-${i}`)));
  assertEquals(
    issuer.state.calls.length,
    4,
    "exactly one refetch (discovery + keys) after the cooldown",
  );
});

Deno.test("createKeyStore() picks up a rotated key after the cooldown", async () => {
  const issuer = await fakeIssuer();
  let now = 0;
  const store = createKeyStore({
    issuer: ISSUER,
    fetch: issuer.fetch,
    now: () => now,
    cooldownMs: 5000,
    ttlMs: 3_600_000,
    timeoutMs: 1000,
  });
  assert(await store.getKey("k1"));
  issuer.state.jwks = { keys: [{ ...issuer.jwk, kid: "k2" }] };
  now = 6000;
  assert(await store.getKey("k2"));
  assertEquals(await store.getKey("k1"), undefined);
});

Deno.test("createKeyStore() keeps serving cached keys while the issuer is down", async () => {
  const issuer = await fakeIssuer();
  let now = 0;
  const store = createKeyStore({
    issuer: ISSUER,
    fetch: issuer.fetch,
    now: () => now,
    cooldownMs: 1000,
    ttlMs: 60_000,
    timeoutMs: 1000,
  });
  assert(await store.getKey("k1"));
  issuer.state.fail = true;
  now = 120_000;
  assert(
    await store.getKey("k1"),
    "a stale key is better than none while the issuer is unreachable",
  );
});

Deno.test("createKeyStore() reports ERR_AUTH_UNAVAILABLE when no keys were ever loaded", async () => {
  const issuer = await fakeIssuer();
  issuer.state.fail = true;
  const store = createKeyStore({
    issuer: ISSUER,
    fetch: issuer.fetch,
    now: () => 0,
    cooldownMs: 1000,
    ttlMs: 60_000,
    timeoutMs: 1000,
  });
  const err = await assertRejects(() => store.getKey("k1"));
  assertEquals((err as AppError).code, "ERR_AUTH_UNAVAILABLE");
  assertEquals(await store.ready(), false);
});

Deno.test("security: createKeyStore() refuses keys from another origin or a discovery document for another issuer", async (t) => {
  for (
    const [name, discovery] of [
      ["jwks_uri on another host", { issuer: ISSUER, jwks_uri: "https://evil.example/jwks" }],
      ["a different issuer", {
        issuer: "https://evil.example",
        jwks_uri: `${ISSUER}/.well-known/jwks`,
      }],
      ["no jwks_uri", { issuer: ISSUER }],
    ] as const
  ) {
    await t.step(name, async () => {
      const issuer = await fakeIssuer();
      issuer.state.discovery = discovery;
      const store = createKeyStore({
        issuer: ISSUER,
        fetch: issuer.fetch,
        now: () => 0,
        cooldownMs: 1000,
        ttlMs: 60_000,
        timeoutMs: 1000,
      });
      const err = await assertRejects(() => store.getKey("k1"));
      assertEquals((err as AppError).code, "ERR_AUTH_UNAVAILABLE");
      assert(!issuer.state.calls.some((u) => u.includes("evil")));
    });
  }
});

Deno.test("security: createKeyStore() skips keys that are not RS256 signing keys of at least 2048 bits", async () => {
  const issuer = await fakeIssuer();
  const small = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 1024,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  issuer.state.jwks = {
    keys: [
      { ...issuer.jwk, kid: "enc", use: "enc" },
      { ...issuer.jwk, kid: "ps", alg: "PS256" },
      { ...(await exportJWK(small.publicKey)), kid: "small" },
      { kty: "oct", k: "c2VjcmV0", kid: "hmac" },
      issuer.jwk,
    ],
  };
  const store = createKeyStore({
    issuer: ISSUER,
    fetch: issuer.fetch,
    now: () => 0,
    cooldownMs: 1000,
    ttlMs: 60_000,
    timeoutMs: 1000,
  });
  assert(await store.getKey("k1"));
  for (const kid of ["enc", "ps", "small", "hmac"]) {
    assertEquals(await store.getKey(kid), undefined, kid);
  }
});

Deno.test("modulusBits() counts the bits of the modulus, ignoring leading zero bytes", async (t) => {
  const n = (...bytes: number[][]) => base64url.encode(new Uint8Array(bytes.flat()));
  const cases: [string, string, number][] = [
    ["256 bytes, top bit set", n(Array(256).fill(0xff)), 2048],
    ["the same with a leading zero byte", n([0], Array(256).fill(0xff)), 2048],
    ["255 bytes behind a leading zero byte", n([0], Array(255).fill(0xff)), 2040],
    ["256 bytes whose top bit is clear", n([0x7f], Array(255).fill(0xff)), 2047],
    ["only zero bytes", n(Array(300).fill(0)), 0],
    ["not base64url", "!!!", 0],
  ];
  for (const [name, value, bits] of cases) {
    await t.step(name, () => assertEquals(modulusBits(value), bits));
  }
});

Deno.test("security: createKeyStore() skips a short modulus padded with zero bytes to look 2048 bits", async () => {
  const issuer = await fakeIssuer();
  const n = base64url.encode(new Uint8Array([0, ...Array(255).fill(0xff)]));
  issuer.state.jwks = { keys: [{ kty: "RSA", kid: "padded", n, e: "AQAB" }, issuer.jwk] };
  const store = createKeyStore({
    issuer: ISSUER,
    fetch: issuer.fetch,
    now: () => 0,
    cooldownMs: 1000,
    ttlMs: 60_000,
    timeoutMs: 1000,
  });
  assert(await store.getKey("k1"));
  assertEquals(await store.getKey("padded"), undefined);
});

Deno.test("security: createKeyStore() refuses an unreadable key set without quoting it", async (t) => {
  const secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
  for (
    const [name, raw] of [
      ["not JSON", `{"keys":[{"kty":"RSA","d":${secret}}]}`],
      ["cut short", `{"keys":[{"kty":"RSA","d":"${secret}"`],
      ["a repeated keys member", `{"keys":[],"keys":[{"d":"${secret}"}]}`],
    ] as const
  ) {
    await t.step(name, async () => {
      const issuer = await fakeIssuer();
      issuer.state.rawJwks = raw;
      const errors: string[] = [];
      const store = createKeyStore({
        issuer: ISSUER,
        fetch: issuer.fetch,
        now: () => 0,
        cooldownMs: 1000,
        ttlMs: 60_000,
        timeoutMs: 1000,
        onFetch: ({ error }) => error && errors.push(error),
      });
      const err = await assertRejects(() => store.getKey("k1"), {
        instanceOf: AppError,
        code: "ERR_AUTH_UNAVAILABLE",
        message: /document (is not valid JSON|repeats a member)/,
      });
      assertEquals(errors.length, 1);
      for (const text of [err.message, ...errors]) {
        assert(!text.includes(secret.slice(0, 12)), text);
      }
    });
  }
});

Deno.test("security: createKeyStore() gives up on an issuer that sends headers and then stalls the body", async () => {
  const bodies: ReadableStreamDefaultController<Uint8Array>[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            bodies.push(controller);
            controller.enqueue(new TextEncoder().encode('{"issuer":'));
          },
        }),
        { headers: { "content-type": "application/json" } },
      ),
  );
  const issuer = `http://127.0.0.1:${server.addr.port}`;
  try {
    const store = createKeyStore({ issuer, cooldownMs: 0, ttlMs: 60_000, timeoutMs: 300 });
    // Generous bound under load; without a deadline on the body getKey never settles.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<"hung">((resolve) =>
      timer = setTimeout(() => resolve("hung"), 10_000)
    );
    const outcome = await Promise.race([
      store.getKey("k1").then(() => "resolved", (err: unknown) => err),
      hung,
    ]);
    clearTimeout(timer);
    assert(outcome instanceof AppError, `the timeout covers the body too; got ${String(outcome)}`);
    assertEquals(outcome.code, "ERR_AUTH_UNAVAILABLE");
  } finally {
    for (const body of bodies) {
      try {
        body.close();
      } catch {
        // already closed by the aborted client
      }
    }
    await server.shutdown();
  }
});

Deno.test("createKeyStore() with the real fetch: an issuer down, slow or redirecting leaves it unavailable and unready, and no redirect is followed", async (t) => {
  for (const mode of ["down", "slow", "redirect"] as const) {
    await t.step(mode, async () => {
      const issuer = await startIssuer();
      issuer.mode = mode;
      try {
        const store = createKeyStore({
          issuer: issuer.url,
          cooldownMs: 60_000,
          ttlMs: 60_000,
          timeoutMs: 1000,
        });
        const started = Date.now();
        const err = await assertRejects(() => store.getKey(issuer.kid));
        assertEquals((err as AppError).code, "ERR_AUTH_UNAVAILABLE");
        assert(Date.now() - started < 2500, `gave up after ${Date.now() - started} ms`);
        assertEquals(await store.ready(), false);
        assertEquals(issuer.hits.get("/elsewhere/.well-known/openid-configuration") ?? 0, 0);
      } finally {
        await issuer.stop();
      }
    });
  }
});
