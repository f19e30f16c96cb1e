/**
 * The one mapping from error codes to HTTP answers. Bodies are fixed strings
 * except for payload errors, whose short reason was written by us. Security:
 * every authentication and authorization failure gets the same status and the
 * same bytes, so a caller learns nothing about which check failed.
 */

import { AppError } from "../shared/errors.ts";
import { json } from "../lib/json_response.ts";

/** The body of every authentication or authorization failure. */
export const ACCESS_DENIED_BODY = '{"error":"access denied"}';

/** Maps any thrown value to the response the caller sees. */
export function errorResponse(err: unknown): Response {
  if (!(err instanceof AppError)) return json(500, { error: "internal error" });
  switch (err.code) {
    case "ERR_AUTH":
      return json(403, ACCESS_DENIED_BODY);
    case "ERR_EVENT_INVALID":
    case "ERR_IMAGE_NOT_ALLOWED":
      return json(400, { error: err.message });
    case "ERR_AUTH_UNAVAILABLE":
      return json(503, { error: "token verification is temporarily unavailable" }, {
        "retry-after": "5",
      });
    case "ERR_PUBLISH_FAILED":
      return json(503, { error: "event bus unavailable" }, { "retry-after": "5" });
    case "ERR_REPLAY_IN_PROGRESS":
      return json(409, { error: "a request with this token is still in progress; retry shortly" }, {
        "retry-after": "1",
      });
    case "ERR_NO_SUBSCRIBER":
      return json(503, { error: "no worker cluster is registered; the event was not delivered" }, {
        "retry-after": "5",
      });
    default:
      return json(500, { error: "internal error" });
  }
}
