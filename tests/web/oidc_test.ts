/**
 * The token verifier in-process against a loopback issuer (real discovery,
 * real JWKS, real RS256 signatures): the JOSE edge cases jose alone lets
 * through, and what an error may say about the token.
 */

import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { githubClaims, startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { AuthError } from "../../web/reasons.ts";
import { createKeyStore } from "../../web/jwks.ts";
import { createTokenVerifier, type TokenVerifier } from "../../web/oidc.ts";

function verifierFor(issuer: TestIssuer): TokenVerifier {
  return createTokenVerifier({
    issuer: issuer.url,
    audience: TEST_AUDIENCE,
    keys: createKeyStore({ issuer: issuer.url, cooldownMs: 0, ttlMs: 60_000, timeoutMs: 2000 }),
    clockToleranceMs: 15_000,
    maxTokenAgeMs: 600_000,
  });
}

/** The default claims as JSON text, with `extra` spliced in raw before the closing brace. */
function claimsText(issuer: TestIssuer, extra = ""): string {
  const text = JSON.stringify(githubClaims(issuer.url, Math.floor(Date.now() / 1000)));
  return extra === "" ? text : `${text.slice(0, -1)},${extra}}`;
}

Deno.test("security: createTokenVerifier() refuses JOSE edge cases", async (t) => {
  const issuer = await startIssuer();
  const verify = verifierFor(issuer);
  const header = (extra = "") =>
    `{"alg":"RS256","kid":"${issuer.kid}","typ":"JWT"${extra === "" ? "" : "," + extra}}`;
  try {
    await t.step(
      "a well-formed raw-signed token verifies (the helper signs correctly)",
      async () => {
        const claims = await verify(await issuer.signRaw(header(), claimsText(issuer)));
        assertEquals(claims.repository, "acme/app");
      },
    );
    await t.step("a NumericDate with a sub-millisecond fraction verifies", async () => {
      const now = Date.now() / 1000;
      const claims = await verify(
        await issuer.sign({ claims: { exp: Math.floor(now) + 300.0004, iat: now - 0.0004 } }),
      );
      assert(!Number.isInteger(claims.exp * 1000), "the fraction reaches the replay guard");
    });
    const cases: [string, () => string, string, string][] = [
      [
        "a repeated repository_owner in the claims (last would win)",
        () => header(),
        '"repository_owner":"acme"',
        "duplicate_claims_member",
      ],
      [
        "a repeated aud in the claims",
        () => header(),
        `"aud":"${TEST_AUDIENCE}"`,
        "duplicate_claims_member",
      ],
      [
        "a repeated member inside a nested claim object",
        () => header(),
        '"x":{"a":1,"a":2}',
        "duplicate_claims_member",
      ],
      [
        "a repeated alg in the header",
        () => header('"alg":"RS256"'),
        "",
        "duplicate_header_member",
      ],
      [
        "a repeated kid in the header",
        () => header(`"kid":"${issuer.kid}"`),
        "",
        "duplicate_header_member",
      ],
      ["exp of 1e400 (Infinity to JSON.parse)", () => header(), "", "claim_exp"],
      ["nbf of -1e400", () => header(), "", "claim_nbf"],
      ["a header that is not an object", () => "[1]", "", "malformed"],
      [
        "a crit header (extensions we do not implement)",
        () => header('"crit":["exp"]'),
        "",
        "unsupported_header",
      ],
      [
        "b64 false (RFC 7797 unencoded payload)",
        () => header('"b64":false'),
        "",
        "unsupported_header",
      ],
      ["b64 true", () => header('"b64":true'), "", "unsupported_header"],
      [
        "a jku header",
        () => header('"jku":"https://evil.example/jwks"'),
        "",
        "untrusted_header_key",
      ],
      ["alg none", () => `{"alg":"none","kid":"${issuer.kid}"}`, "", "alg_not_allowed"],
      ["alg PS256", () => `{"alg":"PS256","kid":"${issuer.kid}"}`, "", "alg_not_allowed"],
    ];
    for (const [name, makeHeader, extra, reason] of cases) {
      await t.step(`rejects ${name} as ${reason}`, async () => {
        let claims = claimsText(issuer, extra);
        if (name.startsWith("exp of")) claims = claims.replace(/"exp":\d+/, '"exp":1e400');
        if (name.startsWith("nbf of")) claims = claims.replace(/"nbf":\d+/, '"nbf":-1e400');
        const token = await issuer.signRaw(makeHeader(), claims);
        await assertRejects(() => verify(token), { instanceOf: AuthError, reason });
      });
    }
    await t.step(
      "a signature that does not verify is bad_signature, whatever the claims",
      async () => {
        const token = await issuer.signRaw(header(), claimsText(issuer));
        const [h, c, sig] = token.split(".");
        const flipped = sig[10] === "A" ? "B" : "A";
        for (
          const bad of [
            `${h}.${c}.${sig.slice(0, 10)}${flipped}${sig.slice(11)}`,
            `${h}.${c}.${sig.slice(4)}`,
            `${h}.${btoa(claimsText(issuer, '"aud":"other"')).replace(/=+$/, "")}.${sig}`,
          ]
        ) {
          await assertRejects(() => verify(bad), { instanceOf: AuthError });
        }
        await assertRejects(
          () => verify(`${h}.${c}.${sig.slice(0, 10)}${flipped}${sig.slice(11)}`),
          {
            instanceOf: AuthError,
            reason: "bad_signature",
          },
        );
      },
    );
    await t.step(
      "claims still go through jose's checks: another issuer, audience, an old token",
      async () => {
        const now = Math.floor(Date.now() / 1000);
        for (
          const [claims, reason] of [
            [{ iss: "https://evil.example" }, "claim_iss"],
            [{ aud: "https://other.example" }, "claim_aud"],
            [{ exp: now - 3600, iat: now - 4000 }, "expired"],
            [{ iat: now - 3600, exp: now + 300 }, "claim_iat"],
            [{ nbf: now + 3600 }, "claim_nbf"],
          ] as const
        ) {
          await assertRejects(() => issuer.sign({ claims }).then(verify), {
            instanceOf: AuthError,
            reason,
          });
        }
      },
    );
    await t.step("an unparsable claims set is described by position, never quoted", async () => {
      const token = await issuer.signRaw(header(), '{"repository":"acme/app","secret":eyJsecret}');
      const err = await assertRejects(() => verify(token), {
        instanceOf: AuthError,
        reason: "malformed",
        message: /^token claims is not valid JSON at offset \d+$/,
      });
      assert(!err.message.includes("secret"), err.message);
    });
    await t.step("a repeated member is reported by position, never by name", async () => {
      const token = await issuer.signRaw(header(), claimsText(issuer, '"sha":"eyJsecret"'));
      const err = await assertRejects(() => verify(token), {
        reason: "duplicate_claims_member",
      });
      assert(!err.message.includes("sha") && !err.message.includes("eyJ"), err.message);
    });
  } finally {
    await issuer.stop();
  }
});

Deno.test("security: createTokenVerifier() denies each bad token with its own reason", async (t) => {
  const issuer = await startIssuer();
  const verify = verifierFor(issuer);
  const now = Math.floor(Date.now() / 1000);
  const payload = () => githubClaims(issuer.url, now);
  try {
    const cases: [string, string, () => Promise<string>][] = [
      ["a non-JWT bearer", "malformed", () => Promise.resolve("not-a-jwt")],
      [
        "alg none with an empty signature",
        "malformed",
        () =>
          Promise.resolve(issuer.unsigned({ alg: "none", typ: "JWT", kid: issuer.kid }, payload())),
      ],
      [
        "alg none with a signature",
        "alg_not_allowed",
        () =>
          Promise.resolve(
            issuer.unsigned(
              { alg: "none", typ: "JWT", kid: issuer.kid },
              payload(),
              new Uint8Array([1, 2, 3]),
            ),
          ),
      ],
      ["HS256 signed with the RSA public key", "alg_not_allowed", async () => {
        const header = { alg: "HS256", typ: "JWT", kid: issuer.kid };
        const key = await crypto.subtle.importKey(
          "raw",
          new TextEncoder().encode(await issuer.publicKeyPem()),
          { name: "HMAC", hash: "SHA-256" },
          false,
          ["sign"],
        );
        const unsigned = issuer.unsigned(header, payload());
        const input = unsigned.slice(0, unsigned.lastIndexOf("."));
        const sig = new Uint8Array(
          await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input)),
        );
        return issuer.unsigned(header, payload(), sig);
      }],
      ["RS384", "alg_not_allowed", () => issuer.sign({ alg: "RS384" })],
      ["ES256", "alg_not_allowed", () => issuer.sign({ alg: "ES256" })],
      ["an unknown kid", "unknown_kid", () => issuer.sign({ header: { kid: "nope" } })],
      [
        "an x5u header",
        "untrusted_header_key",
        () => issuer.sign({ header: { x5u: "https://evil.example/cert" } }),
      ],
      [
        "an embedded jwk header",
        "untrusted_header_key",
        () => issuer.sign({ header: { jwk: { kty: "RSA", n: "AQAB", e: "AQAB" } } }),
      ],
      ["an expired token", "expired", () => issuer.sign({ now: now - 3600 })],
      ["a token without exp", "claim_exp", () => issuer.sign({ omit: ["exp"] })],
      ["a token without jti", "claim_jti", () => issuer.sign({ omit: ["jti"] })],
      ["a token without iat", "claim_iat", () => issuer.sign({ omit: ["iat"] })],
      [
        "iat too old (but not expired)",
        "claim_iat",
        () => issuer.sign({ claims: { iat: now - 1200, exp: now + 600 } }),
      ],
      [
        "iat in the future",
        "claim_iat",
        () => issuer.sign({ claims: { iat: now + 600, exp: now + 900 } }),
      ],
      [
        "iss with a trailing slash",
        "claim_iss",
        () => issuer.sign({ claims: { iss: issuer.url + "/" } }),
      ],
      [
        "iss with https instead of http",
        "claim_iss",
        () => issuer.sign({ claims: { iss: issuer.url.replace("http:", "https:") } }),
      ],
      [
        "iss on a look-alike host",
        "claim_iss",
        () =>
          issuer.sign({ claims: { iss: "https://token.actions.githubusercontent.com.evil.com" } }),
      ],
      [
        "the real GitHub iss (not the configured one)",
        "claim_iss",
        () => issuer.sign({ claims: { iss: "https://token.actions.githubusercontent.com" } }),
      ],
      [
        "an aud array holding our audience and another",
        "claim_aud",
        () => issuer.sign({ claims: { aud: [TEST_AUDIENCE, "https://other.example"] } }),
      ],
      ["a tampered payload", "bad_signature", async () => {
        const [h, , s] = (await issuer.sign()).split(".");
        const other = (await issuer.sign({ claims: { repository_owner: "evil" } })).split(".")[1];
        return `${h}.${other}.${s}`;
      }],
    ];
    for (const [name, reason, make] of cases) {
      await t.step(`rejects ${name} as ${reason}`, async () => {
        const token = await make();
        await assertRejects(() => verify(token), { instanceOf: AuthError, reason });
      });
    }
    await t.step("accepts an aud array holding only our audience", async () => {
      const claims = await verify(await issuer.sign({ claims: { aud: [TEST_AUDIENCE] } }));
      assertEquals(claims.aud, [TEST_AUDIENCE]);
    });
  } finally {
    await issuer.stop();
  }
});
