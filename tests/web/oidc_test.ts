/**
 * The token verifier in-process against a loopback issuer (real discovery,
 * real JWKS, real RS256 signatures): the JOSE edge cases jose alone lets
 * through, and what an error may say about the token.
 */

import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { startIssuer, TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { githubClaims } from "../helpers/issuer.ts";
import { AuthError } from "../../shared/errors.ts";
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
