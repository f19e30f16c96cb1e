import { assertEquals } from "../helpers/assert.ts";
import { json } from "../../lib/json_response.ts";

Deno.test("json() sends a string body as it is and anything else as JSON, never cached", async () => {
  const raw = json(403, '{"error":"access denied"}', { "retry-after": "5" });
  assertEquals(await raw.text(), '{"error":"access denied"}');
  assertEquals(raw.headers.get("retry-after"), "5");
  const encoded = json(200, { a: [1] });
  assertEquals(await encoded.text(), '{"a":[1]}');
  assertEquals(encoded.headers.get("content-type"), "application/json");
  assertEquals(encoded.headers.get("cache-control"), "no-store");
});
