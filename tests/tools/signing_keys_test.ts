import { generateKeyPair } from "../../tools/signing_keys.ts";
import { parseSigningKey, parseVerifyKeys } from "../../shared/event_keys.ts";
import { keyIdOf } from "../../shared/event_signature.ts";
import { assertEquals, assertNotEquals } from "../helpers/assert.ts";

Deno.test("generateKeyPair() gives a fresh pair in every form an operator uses, halves that belong together", async () => {
  const [pair, other] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  assertNotEquals(pair.privatePem, other.privatePem);
  const fromPem = parseSigningKey(pair.privatePem);
  const fromJwk = parseSigningKey(pair.privateJwk);
  assertEquals([fromPem?.format, fromJwk?.format], ["pkcs8", "jwk"]);
  const [pemPublic] = parseVerifyKeys(pair.publicPem);
  const [jwkPublic] = parseVerifyKeys(pair.publicJwk);
  assertEquals(await keyIdOf(pemPublic.raw), await keyIdOf(jwkPublic.raw));
  // The private JWK names the same public half the public forms hold.
  const x = fromJwk?.format === "jwk" ? fromJwk.x : "";
  assertEquals(x, pemPublic.raw.toBase64({ alphabet: "base64url", omitPadding: true }));
});
