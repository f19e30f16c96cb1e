import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { githubClaims } from "../helpers/issuer.ts";
import {
  encodeSender,
  isOwnerName,
  parseSender,
  senderFields,
  senderOf,
} from "../../shared/event_sender.ts";

const claims = (extra: Record<string, unknown> = {}) => ({
  ...githubClaims("https://i", 0),
  ...extra,
});

Deno.test("senderOf() takes the public claims only, the repository lower-cased", () => {
  const sender = senderOf(claims({ repository: "ACME/App", environment: "production" }));
  assertEquals(sender, {
    repository: "acme/app",
    repositoryId: "2002",
    ref: "refs/heads/main",
    environment: "production",
    workflowRef: "acme/app/.github/workflows/build.yml@refs/heads/main",
  });
  // No environment: the member is absent, not empty.
  assertEquals(typeof senderOf(claims({ environment: "" })) === "object", true);
  assertEquals("environment" in (senderOf(claims({ environment: "" })) as object), false);
});

Deno.test("senderOf() names any branch or workflow GitHub allows: spaces, non-ASCII letters", () => {
  const sender = senderOf(claims({
    ref: "refs/heads/機能-ブランチ",
    workflow_ref: "acme/app/.github/workflows/build and push.yml@refs/heads/main",
  }));
  if (typeof sender === "string") throw new Error(sender);
  assertEquals(parseSender(encodeSender(sender)), sender);
});

Deno.test("senderOf() says why claims cannot name a sender", async (t) => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["no repository", { repository: undefined }, /repository is not owner\/name/],
    ["a repository with a third part", { repository: "acme/app/x" }, /owner\/name/],
    ["a numeric repository_id", { repository_id: 2002 }, /not numeric/],
    ["no ref", { ref: undefined }, /ref is missing/],
    ["a ref with a control character", { ref: "refs/heads/a\u0007b" }, /ref is missing or not/],
    ["a ref with a bidi override", { ref: "refs/heads/a\u202eb" }, /ref is missing or not/],
    [
      "claims too long to sign (an environment of quotes doubles when escaped)",
      { environment: '"'.repeat(500), workflow_ref: "w".repeat(500), ref: "r".repeat(500) },
      /too long/,
    ],
    ["no workflow_ref", { workflow_ref: undefined }, /workflow_ref/],
    ["an environment with a newline", { environment: "prod\nx" }, /environment/],
    ["an environment that is not a string", { environment: 7 }, /environment/],
  ];
  for (const [name, extra, pattern] of cases) {
    await t.step(name, () => {
      const sender = senderOf(claims(extra));
      assertEquals(typeof sender, "string");
      assertEquals(pattern.test(sender as string), true, String(sender));
    });
  }
});

Deno.test("parseSender() reads back exactly what encodeSender() wrote, and nothing else", async (t) => {
  const sender = senderOf(claims({ environment: "staging" }));
  if (typeof sender === "string") throw new Error(sender);
  assertEquals(parseSender(encodeSender(sender)), sender);
  const text = encodeSender(sender);
  const cases: [string, string][] = [
    ["members in another order", JSON.stringify({ ...JSON.parse(text), ref: undefined, x: 1 })],
    ["an upper-case repository", text.replace("acme/app", "ACME/app")],
    ["an unknown member", text.replace("{", '{"token":"x",')],
    ["a duplicate member", text.replace("{", '{"ref":"refs/heads/evil",')],
    ["spaces", text.replaceAll(",", ", ")],
    ["not JSON", "acme/app"],
    ["an array", "[]"],
    ["too long", "x".repeat(5000)],
  ];
  for (const [name, bad] of cases) {
    await t.step(name, () => {
      assertThrows(() => parseSender(bad));
    });
  }
});

Deno.test("security: isOwnerName() refuses look-alikes; log fields name the sender or say unsigned", () => {
  assertEquals(isOwnerName("acme/app"), true);
  for (const bad of ["acme", "acme/", "/app", "acme/app/x", "\u212Acme/app", "acme/../x"]) {
    assertEquals(isOwnerName(bad), false, bad);
  }
  assertEquals(senderFields(undefined), {});
});
