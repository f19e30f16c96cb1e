/**
 * Property test over the whole token path of web's handler (verifier,
 * authorizer, content type, body, event): 100,000 requests built from valid
 * signed tokens and bodies with random mutations, seeded (KRT_FUZZ_SEED).
 * Every answer must be a documented status, never a 5xx other than 503, and
 * an event may only be published for a token whose signed bytes are intact,
 * whose header and claims name no member twice, and an image under the
 * allowed prefixes.
 */

import { generateKeyPair, SignJWT } from "jose";
import { assert } from "../helpers/assert.ts";
import { orgOnlyPolicy } from "../helpers/issuer.ts";
import { createRandom, fuzzSeed, mutate } from "../helpers/random.ts";
import { createLogger } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import { isAllowedRepository } from "../../shared/image_ref.ts";
import { memoryStatus, permissiveReplay } from "../helpers/web_deps.ts";
import { createHandler } from "../../web/handler.ts";
import { createWebMetrics } from "../../web/metrics.ts";
import { createTokenVerifier } from "../../web/oidc.ts";
import { createAuthorizer } from "../../web/policy.ts";

const RUNS = 100_000;
const ISSUER = "https://token.actions.githubusercontent.com";
const AUDIENCE = "https://rollouts.example.com";
const PREFIXES = ["ghcr.io/acme"];
const DOCUMENTED = new Set([202, 400, 403, 404, 405, 408, 413, 415, 503]);

function decode(part: string): string {
  try {
    return atob(
      part.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - part.length % 4) % 4),
    );
  } catch {
    return "\u0000invalid";
  }
}

Deno.test(`security: the token path answers only documented statuses over ${RUNS} mutated requests (seed ${fuzzSeed()})`, async () => {
  const rnd = createRandom(fuzzSeed() + 3);
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const now = Math.floor(Date.now() / 1000);
  const owners = ["acme", "ACME", "acme-evil", "evil"];
  const tokens: string[] = [];
  for (let i = 0; i < 200; i++) {
    const owner = rnd.pick(owners);
    tokens.push(
      await new SignJWT({
        repository: `${owner}/app`,
        repository_owner: owner,
        repository_id: "2002",
        ref: "refs/heads/main",
      })
        .setProtectedHeader({ alg: "RS256", kid: "k1", typ: "JWT" })
        .setIssuer(ISSUER).setAudience(AUDIENCE).setIssuedAt(now).setExpirationTime(now + 300)
        .setJti(crypto.randomUUID()).sign(privateKey),
    );
  }
  // Correctly signed tokens that name a member twice, the allowed value last
  // (what JSON.parse, and so jose alone, would keep): none may ever be accepted.
  const b64bytes = (bytes: Uint8Array) =>
    btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const b64 = (text: string) => b64bytes(new TextEncoder().encode(text));
  const ambiguous = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const header = i % 2 === 0
      ? '{"alg":"RS256","kid":"k1","typ":"JWT"}'
      : '{"alg":"none","kid":"k1","alg":"RS256"}';
    const claims = JSON.stringify({
      iss: ISSUER,
      aud: AUDIENCE,
      iat: now,
      exp: now + 300,
      jti: crypto.randomUUID(),
      ref: "refs/heads/main",
      repository_owner: i % 2 === 0 ? "evil" : "acme",
      repository: "acme/app",
      repository_id: "2002",
    }).slice(0, -1) + (i % 2 === 0 ? ',"repository_owner":"acme"}' : "}");
    const input = `${b64(header)}.${b64(claims)}`;
    const signature = new Uint8Array(
      await crypto.subtle.sign("RSASSA-PKCS1-v1_5", privateKey, new TextEncoder().encode(input)),
    );
    const token = `${input}.${b64bytes(signature)}`;
    ambiguous.add(token.split(".").map(decode).join("\u0001"));
    tokens.push(token);
  }
  const signedParts = new Set(tokens.map((t) => t.split(".").map(decode).join("\u0001")));
  const status = memoryStatus();
  const published = status.published;
  const registry = createRegistry();
  const handler = createHandler({
    verify: createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      keys: {
        getKey: (kid) => Promise.resolve(kid === "k1" ? publicKey as CryptoKey : undefined),
        ready: () => Promise.resolve(true),
      },
      clockToleranceMs: 15_000,
      maxTokenAgeMs: 600_000,
    }),
    authorize: createAuthorizer(orgOnlyPolicy()),
    publisher: status.publisher,
    statusReader: status.statusReader,
    statusWaiters: status.statusWaiters,
    statusReportTimeoutMs: 30_000,
    replay: permissiveReplay(),
    prefixes: PREFIXES,
    logger: createLogger({ level: "error", write: () => {} }),
    metrics: createWebMetrics(registry),
    registry,
    readiness: {},
  });
  const bodies = [
    '{"image":"ghcr.io/acme/app:dev"}',
    '{"image":"ghcr.io/acme/app","tags":["dev","v1"]}',
  ];
  const info = { remoteAddr: { hostname: "127.0.0.1", port: 1 } };
  const counts = new Map<number, number>();
  let skipped = 0;
  for (let handled = 0; handled < RUNS; handled++) {
    const original = rnd.pick(tokens);
    const token = rnd.int(2) === 0 ? mutate(original, rnd) : original;
    const body = rnd.int(3) === 0 ? mutate(rnd.pick(bodies), rnd) : rnd.pick(bodies);
    const headers = new Headers();
    try {
      headers.set(
        "authorization",
        rnd.int(10) === 0 ? mutate(`Bearer ${token}`, rnd) : `Bearer ${token}`,
      );
      headers.set(
        "content-type",
        rnd.int(10) === 0 ? mutate("application/json", rnd) : "application/json",
      );
    } catch {
      // Not a valid header value at all (no HTTP client could send it): draw again.
      skipped++;
      handled--;
      continue;
    }
    const method = rnd.int(50) === 0 ? rnd.pick(["GET", "PUT", "DELETE"]) : "POST";
    const before = published.length;
    const res = await handler(
      new Request("http://127.0.0.1/event", {
        method,
        headers,
        body: method === "GET" ? undefined : body,
      }),
      info,
    );
    await res.body?.cancel();
    counts.set(res.status, (counts.get(res.status) ?? 0) + 1);
    assert(
      DOCUMENTED.has(res.status),
      `status ${res.status} for ${token.slice(0, 40)}… / ${JSON.stringify(body)}`,
    );
    if (res.status === 202) {
      assert(published.length === before + 1);
      const message = JSON.parse(published[published.length - 1].message);
      assert(
        isAllowedRepository(message.image, PREFIXES),
        `published outside the prefixes: ${message.image}`,
      );
      // The header mutation may undo the token mutation: judge what was actually sent.
      const sent = /^bearer +(\S+)$/i.exec(headers.get("authorization") ?? "")?.[1] ?? "";
      const parts = sent.split(".").map(decode).join("\u0001");
      assert(signedParts.has(parts), `accepted a token whose signed bytes changed: ${sent}`);
      assert(!ambiguous.has(parts), `accepted a token that names a member twice: ${sent}`);
    } else assert(published.length === before, `published with status ${res.status}`);
  }
  console.error(
    `token fuzz: ${
      JSON.stringify(Object.fromEntries(counts))
    }; ${skipped} unsendable headers redrawn`,
  );
  assert(
    (counts.get(202) ?? 0) > 100 && (counts.get(403) ?? 0) > 100,
    "the generator exercised both outcomes",
  );
});
