import { assert, assertEquals, assertNotEquals, assertThrows } from "../helpers/assert.ts";
import { orgOnlyPolicy } from "../helpers/issuer.ts";
import { AuthError } from "../../web/reasons.ts";
import type { LogFields } from "../../lib/log.ts";
import type { GitHubClaims } from "../../web/oidc.ts";
import { createAuthorizer } from "../../web/policy.ts";
import {
  auditFields,
  bearerToken,
  createAuthenticate,
  repositoryBinding,
} from "../../web/request_steps.ts";

const withAuth = (value?: string) =>
  new Request("http://x/", { headers: value === undefined ? {} : { authorization: value } });

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof AuthError) return err.reason;
    throw err;
  }
  return "none";
}

Deno.test("bearerToken() reads exactly one Bearer token, the scheme in any case", () => {
  assertEquals(bearerToken(withAuth("Bearer a.b.c")), "a.b.c");
  assertEquals(bearerToken(withAuth("bearer   a.b.c")), "a.b.c");
  assertEquals(bearerToken(withAuth("BEARER a.b.c")), "a.b.c");
  assertEquals(bearerToken(withAuth("BeArEr a.b.c")), "a.b.c");
  assertEquals(reasonOf(() => bearerToken(withAuth())), "missing_token");
  for (
    const bad of [
      "Basic dXNlcg==",
      "Bearer",
      "Bearer a b",
      "Bearer a, Bearer b",
      "Bearer a,b",
      "Bearera",
    ]
  ) {
    assertEquals(reasonOf(() => bearerToken(withAuth(bad))), "malformed_authorization", bad);
  }
});

Deno.test("security: auditFields() keeps only string claims, cut to 300 characters, and nothing of the token", () => {
  const fields = auditFields({
    jti: "j1",
    iat: 1,
    exp: 2,
    repository: "acme/app",
    repository_id: 2002,
    ref: "r".repeat(400),
    actor: "octocat",
  } as unknown as GitHubClaims);
  assertEquals(fields.repository, "acme/app");
  assertEquals(fields.repository_id, undefined, "a number is not what GitHub sends");
  assertEquals((fields.ref as string).length, 300);
  assertEquals([fields.actor, fields.token_jti], ["octocat", "j1"]);
  assertEquals(Object.keys(fields).includes("token"), false);
});

Deno.test("createAuthenticate() logs who the token names even when the policy then denies it", async () => {
  const claims = { jti: "j", iat: 1, exp: 2, repository: "evil/app", repository_owner: "evil" };
  const tokens: string[] = [];
  const authenticate = createAuthenticate((token) => {
    tokens.push(token);
    return Promise.resolve(claims as GitHubClaims);
  }, createAuthorizer(orgOnlyPolicy()));
  const log: LogFields = {};
  const err = await authenticate(withAuth("Bearer t.o.k"), log).then(() => undefined, (e) => e);
  assert(err instanceof AuthError);
  assertEquals(err.reason, "org_not_allowed");
  assertEquals(tokens, ["t.o.k"]);
  assertEquals([log.repository, log.repository_owner], ["evil/app", "evil"]);
});

Deno.test("repositoryBinding() is a stable hash of the numeric repository_id and refuses any other", () => {
  const bind = (id: unknown) => repositoryBinding({ repository_id: id } as GitHubClaims);
  assertEquals(bind("2002"), bind("2002"));
  assertNotEquals(bind("2002"), bind("2003"));
  assertEquals(/^[0-9a-f]{64}$/.test(bind("2002")), true);
  assertEquals(bind("2002").includes("2002"), false);
  for (const bad of [undefined, 2002, "", "12a", "1".repeat(21)]) {
    assertThrows(() => bind(bad), { instanceOf: AuthError, reason: "claim_repository_id" });
  }
});
