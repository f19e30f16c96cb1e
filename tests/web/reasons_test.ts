import { assertEquals } from "../helpers/assert.ts";
import {
  AuthError,
  claimDenial,
  isReason,
  Reason,
  REASON_KINDS,
  REASONS,
  renderReasonTables,
} from "../../web/reasons.ts";

Deno.test("Reason names each reason of the table by itself, and only those", () => {
  assertEquals(Object.keys(Reason), Object.keys(REASONS));
  for (const [name, value] of Object.entries(Reason)) assertEquals(value, name);
  assertEquals(isReason("missing_token"), true);
  assertEquals(isReason("missing-token"), false);
  assertEquals(isReason("toString"), false);
});

Deno.test("claimDenial() gives claim_<name> for a listed claim and invalid_token for any other", () => {
  assertEquals(claimDenial("aud"), "claim_aud");
  assertEquals(claimDenial("repository_owner_id"), "claim_repository_owner_id");
  // Every claim the verifier or a policy rule reads has its own tag.
  for (
    const name of [
      "iss",
      "aud",
      "exp",
      "iat",
      "nbf",
      "jti",
      "repository",
      "repository_owner",
      "repository_id",
      "ref",
      "event_name",
      "environment",
      "workflow_ref",
      "job_workflow_ref",
      "repository_owner_id",
    ]
  ) {
    assertEquals(claimDenial(name), `claim_${name}`, name);
  }
  // jose may name a claim we never configured it to check; the tag stays one the docs list.
  assertEquals(claimDenial("sub"), "invalid_token");
  assertEquals(claimDenial("typ"), "invalid_token");
  assertEquals(claimDenial(""), "invalid_token");
});

Deno.test("an AuthError carries its table reason and the ERR_AUTH code", () => {
  const err = new AuthError(Reason.org_not_allowed, "repository_owner evil is not an allowed org");
  assertEquals([err.code, err.reason], ["ERR_AUTH", "org_not_allowed"]);
});

Deno.test("renderReasonTables() writes one table per kind with every reason in it once", () => {
  const text = renderReasonTables();
  for (const intro of Object.values(REASON_KINDS)) assertEquals(text.split(intro).length, 2);
  for (const name of Object.keys(REASONS)) {
    assertEquals(text.split(`| \`${name}\` |`).length, 2, name);
  }
});
