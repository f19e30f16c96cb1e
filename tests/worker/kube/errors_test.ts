/**
 * The errors of Kubernetes access: what each carries for the code that
 * decides on it (status, reason, the ERR_KUBE code) and for the log.
 */

import { assertEquals } from "../../helpers/assert.ts";
import { AppError } from "../../../shared/errors.ts";
import { KubeApiError, WatchEventError } from "../../../worker/kube/errors.ts";

Deno.test("KubeApiError carries the HTTP status, the API's reason and the cause", () => {
  const cause = new TypeError("fetch failed");
  const err = new KubeApiError(0, "NetworkError", "GET /apis: fetch failed", { cause });
  assertEquals(err instanceof AppError, true);
  assertEquals(
    [err.name, err.code, err.status, err.reason, err.message, err.cause],
    ["KubeApiError", "ERR_KUBE", 0, "NetworkError", "GET /apis: fetch failed", cause],
  );
});

Deno.test("WatchEventError is an ERR_KUBE error of its own kind, so the inventory relists on it", () => {
  const err = new WatchEventError("watch stream line 3 is not JSON (12 characters)");
  assertEquals(err instanceof AppError, true);
  assertEquals(err instanceof KubeApiError, false);
  assertEquals([err.name, err.code], ["WatchEventError", "ERR_KUBE"]);
});
