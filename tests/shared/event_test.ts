import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { AppError } from "../../shared/errors.ts";
import { encodeEventMessage, parseEventMessage, parseEventRequest } from "../../shared/event.ts";

const PREFIXES = ["ghcr.io/acme"];

function code(fn: () => unknown): string {
  const err = assertThrows(fn);
  return err instanceof AppError ? err.code : "not an AppError";
}

Deno.test("parseEventRequest() accepts both payload forms", () => {
  assertEquals(parseEventRequest('{"image":"ghcr.io/acme/app:dev"}', PREFIXES), {
    image: "ghcr.io/acme/app",
    tags: ["dev"],
  });
  assertEquals(
    parseEventRequest('{"image":"GHCR.io/acme/app","tags":["dev","v1.2.3"]}', PREFIXES),
    {
      image: "ghcr.io/acme/app",
      tags: ["dev", "v1.2.3"],
    },
  );
});

Deno.test("parseEventRequest() rejects invalid events with ERR_EVENT_INVALID", async (t) => {
  for (
    const body of [
      '{"image":"ghcr.io/acme/app:dev","extra":1}',
      '{"image":"ghcr.io/acme/app:dev","image":"ghcr.io/acme/app:dev"}',
      '{"image":"ghcr.io/acme/app"}',
      '{"image":"ghcr.io/acme/app","tags":"dev"}',
      '{"image":"ghcr.io/acme/app","tags":[1]}',
      '{"image":"ghcr.io/acme/app","tags":[]}',
      '{"image":"ghcr.io/acme/app:dev","tags":["x"]}',
      `{"image":"ghcr.io/acme/app@sha256:${"b".repeat(64)}"}`,
      '{"tags":["dev"]}',
      "null",
      '"ghcr.io/acme/app:dev"',
    ]
  ) {
    await t.step(
      body.slice(0, 60),
      () => assertEquals(code(() => parseEventRequest(body, PREFIXES)), "ERR_EVENT_INVALID"),
    );
  }
});

Deno.test("security: parseEventRequest() refuses images outside the prefixes with ERR_IMAGE_NOT_ALLOWED", () => {
  for (
    const image of [
      "ghcr.io/acme-evil/app:dev",
      "ghcr.io.evil.com/acme/app:dev",
      "docker.io/acme/app:dev",
      "acme/app:dev",
    ]
  ) {
    assertEquals(
      code(() => parseEventRequest(JSON.stringify({ image }), PREFIXES)),
      "ERR_IMAGE_NOT_ALLOWED",
    );
  }
});

Deno.test("parseEventMessage() reads what encodeEventMessage() writes", () => {
  const message = {
    id: "0b6f8c1e-3a52-4d8e-9d55-0d7c1f3b2a10",
    time: "2026-11-21T20:00:00.000Z",
    image: "ghcr.io/acme/app",
    tags: ["dev"],
  };
  assertEquals(parseEventMessage(encodeEventMessage(message), PREFIXES), message);
});

Deno.test("security: parseEventMessage() holds channel messages to web's rules", async (t) => {
  const good = {
    id: "0b6f8c1e-3a52-4d8e-9d55-0d7c1f3b2a10",
    time: "2026-11-21T20:00:00Z",
    image: "ghcr.io/acme/app",
    tags: ["dev"],
  };
  const cases: [string, unknown][] = [
    ["an image outside the prefixes", { ...good, image: "ghcr.io/evil/app" }],
    ["an image that is not normalised", { ...good, image: "GHCR.io/acme/app" }],
    ["a tag inside image", { ...good, image: "ghcr.io/acme/app:dev" }],
    ["a missing id", { time: good.time, image: good.image, tags: good.tags }],
    ["a bad time", { ...good, time: "yesterday" }],
    ["an extra field", { ...good, namespace: "kube-system" }],
    ["missing tags", { id: good.id, time: good.time, image: good.image }],
  ];
  for (const [name, message] of cases) {
    await t.step(
      name,
      () => void assertThrows(() => parseEventMessage(JSON.stringify(message), PREFIXES)),
    );
  }
  await t.step(
    "not JSON",
    () => void assertThrows(() => parseEventMessage("\u0000garbage", PREFIXES)),
  );
});
