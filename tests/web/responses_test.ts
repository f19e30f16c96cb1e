import { assertEquals } from "../helpers/assert.ts";
import { AppError, ERROR_CODES, type ErrorCode } from "../../shared/errors.ts";
import { AuthError } from "../../web/reasons.ts";
import { ACCESS_DENIED_BODY, errorResponse } from "../../web/responses.ts";

/** What each code answers: status, Retry-After, and whether the message reaches the caller. */
const ANSWERS: Record<ErrorCode, [number, string | null, boolean]> = {
  ERR_USAGE: [500, null, false],
  ERR_CONFIG: [500, null, false],
  ERR_AUTH: [403, null, false],
  ERR_AUTH_UNAVAILABLE: [503, "5", false],
  ERR_EVENT_INVALID: [400, null, true],
  ERR_IMAGE_NOT_ALLOWED: [400, null, true],
  ERR_PUBLISH_FAILED: [503, "5", false],
  ERR_NO_SUBSCRIBER: [503, "5", false],
  ERR_REPLAY_IN_PROGRESS: [409, "1", false],
  ERR_KUBE: [500, null, false],
  ERR_STATUS_CORRUPT: [500, null, false],
  ERR_SYSTEM: [500, null, false],
  ERR_INTERNAL: [500, null, false],
};

Deno.test("security: errorResponse() passes only payload errors' messages to the caller", async (t) => {
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    await t.step(code, async () => {
      const [status, retryAfter, says] = ANSWERS[code];
      const res = errorResponse(new AppError(code, "internal detail 10.0.0.7"));
      assertEquals([res.status, res.headers.get("retry-after")], [status, retryAfter]);
      assertEquals((await res.text()).includes("internal detail"), says);
    });
  }
});

Deno.test("security: errorResponse() answers every denial with the same bytes", async () => {
  const a = errorResponse(new AuthError("bad_signature", "signature does not verify"));
  const b = errorResponse(new AuthError("org_not_allowed", "repository_owner evil"));
  assertEquals([a.status, await a.text()], [403, ACCESS_DENIED_BODY]);
  assertEquals([b.status, await b.text()], [403, ACCESS_DENIED_BODY]);
});

Deno.test("errorResponse() answers anything that is not an AppError with 500 and no detail", async () => {
  const res = errorResponse(new TypeError("cannot read properties of undefined (token abc)"));
  assertEquals([res.status, await res.json()], [500, { error: "internal error" }]);
});
