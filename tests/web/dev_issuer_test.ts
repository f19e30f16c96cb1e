/**
 * Dev mode's token endpoint: loopback only, GitHub-shaped claims with the few
 * overrides it allows, and tokens that pass the same verifier as GitHub's.
 */

import { assertEquals, assertMatch, assertRejects } from "../helpers/assert.ts";
import { AuthError } from "../../web/reasons.ts";
import { createDevIssuer, DEV_TOKEN_PATH } from "../../web/dev_issuer.ts";
import { createTokenVerifier } from "../../web/oidc.ts";

const LOOPBACK = { remoteAddr: { hostname: "127.0.0.1", port: 1 } };

async function setUp() {
  const dev = await createDevIssuer({ audience: "krt-dev", allowedOrgs: ["acme"] });
  const mint = (body = "", info = LOOPBACK) =>
    dev.routes[DEV_TOKEN_PATH](
      new Request("http://127.0.0.1/dev/token", { method: "POST", body }),
      info,
      {},
    );
  const verify = createTokenVerifier({
    issuer: dev.issuer,
    audience: "krt-dev",
    keys: dev.keys,
    clockToleranceMs: 15_000,
    maxTokenAgeMs: 600_000,
  });
  return { dev, mint, verify };
}

Deno.test("POST /dev/token mints a token the real verifier accepts, with the first org as owner", async () => {
  const { dev, mint, verify } = await setUp();
  const res = await mint();
  assertEquals(res.status, 200);
  const { token, expires_in, dev_mode } = await res.json();
  assertEquals([expires_in, dev_mode], [300, true]);
  const claims = await verify(token);
  assertEquals([claims.iss, claims.aud, claims.repository, claims.repository_owner], [
    dev.issuer,
    "krt-dev",
    "acme/dev",
    "acme",
  ]);
  assertMatch(dev.issuer, /^urn:kuberollouttrigger:dev:/);
  assertEquals(await dev.keys.ready(), true);
});

Deno.test("POST /dev/token takes the overrides it lists and refuses any other claim or body", async () => {
  const { mint, verify } = await setUp();
  const res = await mint('{"repository":"acme/web","ref":"refs/tags/v1"}');
  const claims = await verify((await res.json()).token);
  assertEquals([claims.repository, claims.repository_owner, claims.ref, claims.sub], [
    "acme/web",
    "acme",
    "refs/tags/v1",
    "repo:acme/web:ref:refs/tags/v1",
  ]);
  for (const body of ['{"repository_owner":"evil"}', '{"ref":1}', "[1]", "{not json"]) {
    const refused = await mint(body);
    assertEquals(refused.status, 400, body);
  }
});

Deno.test("security: POST /dev/token refuses a client that is not on this machine", async () => {
  const { mint } = await setUp();
  await assertRejects(
    () => mint("", { remoteAddr: { hostname: "10.0.0.7", port: 1 } }),
    { instanceOf: AuthError, reason: "dev_token_not_loopback" },
  );
  assertEquals((await mint("", { remoteAddr: { hostname: "::1", port: 1 } })).status, 200);
});

Deno.test("security: a dev token does not verify against another dev issuer's keys", async () => {
  const a = await setUp();
  const b = await setUp();
  const { token } = await (await a.mint()).json();
  await assertRejects(() => b.verify(token), { instanceOf: AuthError });
});
