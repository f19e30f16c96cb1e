/**
 * Event signatures end to end in process (shared/event_keys.ts,
 * shared/event_signature.ts, web/event_signer.ts, worker/event_verifier.ts): key parsing (and that its
 * errors never quote key material), key ids web and worker agree on, and every
 * reason a worker with verify keys drops a message. The real programs are
 * proven in tests/e2e/signing_test.ts.
 */

import { calculateJwkThumbprint } from "jose";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../helpers/assert.ts";
import { generateKeyPair, type TestKeyPair } from "../helpers/signing_keys.ts";
import { parseCommandLine, summarizeConfig } from "../../config/command_line.ts";
import { ConfigError } from "../../shared/errors.ts";
import { encodeEventMessage, type EventMessage } from "../../shared/event.ts";
import { encodeSender, type Sender } from "../../shared/event_sender.ts";
import { parseBinding } from "../../shared/event_status.ts";
import {
  EVENT_CONTEXT,
  importVerifyKeys,
  keyIdOf,
  openMessage,
} from "../../shared/event_signature.ts";
import { createEventVerifier } from "../../worker/event_verifier.ts";
import { createSigner, type EventSigner, verifyBinding } from "../../web/event_signer.ts";
import { parseSigningKey, parseVerifyKeys } from "../../shared/event_keys.ts";

const NOW = Date.parse("2026-12-01T10:00:00.000Z");
const REP = "a".repeat(64);

/** The message web publishes for `event`, posted by the repository hashed as `rep`. */
async function sealed(s: EventSigner, event: string, rep = REP): Promise<string> {
  return (await s.signEvent(event, rep)).message;
}

function message(overrides: Partial<EventMessage> = {}): EventMessage {
  return {
    id: "0b7d7a56-3c1e-4c8e-9d6a-2f5e8f7a9b10",
    time: new Date(NOW).toISOString(),
    image: "ghcr.io/acme/app",
    tags: ["v1"],
    ...overrides,
  };
}

async function setup(verifyPems: string[]) {
  const keys = await importVerifyKeys(parseVerifyKeys(verifyPems.join("")));
  return createEventVerifier({ keys, maxAgeMs: 120_000, now: () => NOW });
}

async function signer(pair: TestKeyPair): Promise<EventSigner> {
  return await createSigner(parseSigningKey(pair.privatePem)!);
}

const pairs = await Promise.all([generateKeyPair(), generateKeyPair()]);
const [web, other] = pairs;
// Web's key as a bare WebCrypto key, for signatures the module would never make.
const rawSigningKey = await crypto.subtle.importKey(
  "pkcs8",
  Uint8Array.fromBase64(web.privatePem.replace(/-----[^-]+-----|\s/g, "")),
  "Ed25519",
  false,
  ["sign"],
);

Deno.test("a key id is the RFC 7638 thumbprint; web's private key and the worker's public key agree in PEM and JWK", async () => {
  const fromPem = await signer(web);
  const fromJwk = await createSigner(parseSigningKey(web.privateJwk)!);
  const [pemKey] = parseVerifyKeys(web.publicPem);
  const [jwkKey] = parseVerifyKeys(web.publicJwk);
  const expected = await calculateJwkThumbprint(JSON.parse(web.publicJwk), "sha256");
  assertEquals(fromPem.keyId, expected);
  assertEquals(fromJwk.keyId, expected);
  assertEquals(await keyIdOf(pemKey.raw), expected);
  assertEquals(await keyIdOf(jwkKey.raw), expected);
});

Deno.test("a worker with the key accepts web's signed message and hands on the exact event bytes", async () => {
  const verifier = await setup([web.publicPem]);
  const event = encodeEventMessage(message());
  const checked = await verifier.check(await sealed(await signer(web), event));
  assertEquals(checked, { ok: true, event, keyId: (await signer(web)).keyId });
  assertEquals(verifier.admit(message()), { ok: true });
});

Deno.test("web's signatures are RFC 8032 Ed25519: WebCrypto verifies them, and a repository that is not a hash is refused", async () => {
  const s = await signer(web);
  const event = encodeEventMessage(message());
  const rep = "c".repeat(64);
  const { message: sealedMessage, sig } = await s.signEvent(event, rep);
  const publicKey = await crypto.subtle.importKey("raw", s.publicKey, "Ed25519", false, [
    "verify",
  ]);
  const bytes = new TextEncoder().encode(`${EVENT_CONTEXT}${rep}\n${event}`);
  const raw = Uint8Array.fromBase64(sig, { alphabet: "base64url" });
  assert(await crypto.subtle.verify("Ed25519", publicKey, raw, bytes), "WebCrypto verifies it");
  // Ed25519 is deterministic: the same key and bytes give WebCrypto's own signature.
  const own = new Uint8Array(await crypto.subtle.sign("Ed25519", rawSigningKey, bytes));
  assertEquals(raw, own);
  assertEquals(JSON.parse(sealedMessage).sig, sig);
  await assertRejects(() => s.signEvent(event, "not-a-hash"), { message: /sha256 hex hash/ });
});

Deno.test("security: with verify keys every forgery is dropped with its reason", async (t) => {
  const verifier = await setup([web.publicPem]);
  const good = await signer(web);
  const event = encodeEventMessage(message());
  const signed = JSON.parse(await sealed(good, event));
  const otherBody = JSON.parse(
    await sealed(good, encodeEventMessage(message({ image: "ghcr.io/acme/other" }))),
  );
  const cases: [string, string, string][] = [
    ["unsigned event", event, "unsigned"],
    ["not JSON at all", "restart everything", "unsigned"],
    ["signed by another key", await sealed(await signer(other), event), "unknown_key"],
    [
      "another key's signature under web's key id",
      JSON.stringify({
        ...JSON.parse(await sealed(await signer(other), event)),
        kid: good.keyId,
      }),
      "bad_signature",
    ],
    [
      "the signature of a different body",
      JSON.stringify({ ...signed, sig: otherBody.sig }),
      "bad_signature",
    ],
    [
      "the body changed after signing",
      JSON.stringify({ ...signed, event: event.replace("ghcr.io/acme/app", "ghcr.io/acme/db") }),
      "bad_signature",
    ],
    [
      "the event moved to another repository",
      JSON.stringify({ ...signed, rep: "b".repeat(64) }),
      "bad_signature",
    ],
    [
      "a repository that is not a hash",
      JSON.stringify({ ...signed, rep: "acme/app" }),
      "malformed",
    ],
    [
      "a signature without the context string",
      JSON.stringify({
        ...signed,
        sig: new Uint8Array(
          await crypto.subtle.sign("Ed25519", rawSigningKey, new TextEncoder().encode(event)),
        ).toBase64({ alphabet: "base64url", omitPadding: true }),
      }),
      "bad_signature",
    ],
    ["an extra member", JSON.stringify({ ...signed, admin: true }), "malformed"],
    [
      "a duplicate member (not strict JSON, so no envelope)",
      `{"event":${
        JSON.stringify(event)
      },"kid":"${good.keyId}","sig":"${signed.sig}","sig":"${signed.sig}"}`,
      "unsigned",
    ],
    ["a signature that is not base64url", JSON.stringify({ ...signed, sig: "!" }), "malformed"],
    ["the event as an object", JSON.stringify({ ...signed, event: message() }), "malformed"],
    [
      "an oversized message",
      JSON.stringify({ ...signed, event: event + " ".repeat(40_000) }),
      "malformed",
    ],
  ];
  for (const [name, raw, reason] of cases) {
    await t.step(name, async () => {
      const checked = await verifier.check(raw);
      assertEquals(checked.ok ? "accepted" : checked.reason, reason);
    });
  }
  // The raw signature bytes over the context and the event verify: the format is what docs say.
  const sig = Uint8Array.fromBase64(signed.sig, { alphabet: "base64url" });
  const key = await crypto.subtle.importKey(
    "spki",
    Uint8Array.fromBase64(web.publicPem.replace(/-----[^-]+-----|\s/g, "")),
    "Ed25519",
    false,
    ["verify"],
  );
  assert(
    await crypto.subtle.verify(
      "Ed25519",
      key,
      sig,
      new TextEncoder().encode(`${EVENT_CONTEXT}${REP}\n${event}`),
    ),
  );
});

Deno.test("security: a verified event outside the window or seen before is not admitted", async () => {
  const verifier = await setup([web.publicPem]);
  const at = (ms: number) =>
    message({ id: crypto.randomUUID(), time: new Date(NOW + ms).toISOString() });
  const reason = (m: EventMessage) => {
    const a = verifier.admit(m);
    return a.ok ? "admitted" : a.reason;
  };
  assertEquals(reason(at(-120_001)), "expired");
  assertEquals(reason(at(-119_000)), "admitted");
  assertEquals(reason(at(30_001)), "future");
  assertEquals(reason(at(29_000)), "admitted");
  const once = at(0);
  assertEquals(reason(once), "admitted");
  assertEquals(reason(once), "replayed");
  assertEquals(reason({ ...once }), "replayed");
});

Deno.test("rotation: a worker with two keys accepts both; with only the new one refuses the old", async () => {
  const event = encodeEventMessage(message());
  const fromOld = await sealed(await signer(web), event);
  const fromNew = await sealed(await signer(other), event);
  const both = await setup([web.publicPem, other.publicPem]);
  assertEquals((await both.check(fromOld)).ok, true);
  assertEquals((await both.check(fromNew)).ok, true);
  const onlyNew = await setup([other.publicPem]);
  const refused = await onlyNew.check(fromOld);
  assertEquals(refused.ok ? "accepted" : refused.reason, "unknown_key");
  assertEquals((await onlyNew.check(fromNew)).ok, true);
});

Deno.test("a worker without verify keys accepts signed and unsigned messages unchecked", async () => {
  const verifier = createEventVerifier({ maxAgeMs: 120_000, now: () => NOW });
  const event = encodeEventMessage(message());
  assertEquals(verifier.enforcing, false);
  assertEquals(await verifier.check(event), { ok: true, event });
  assertEquals(await verifier.check(await sealed(await signer(other), event)), {
    ok: true,
    event,
  });
  // Without keys the time window is not applied: the behaviour from before signing.
  assertEquals(verifier.admit(message({ time: "2020-01-01T00:00:00Z" })), { ok: true });
  // A message that claims a signature but is malformed is still an invalid message.
  assertThrows(() => openMessage('{"sig":"x","event":"{}"}'), { code: "ERR_EVENT_INVALID" });
  await assertRejects(() => verifier.check('{"kid":1}'), { code: "ERR_EVENT_INVALID" });
});

Deno.test("security: a status binding verifies only unchanged, for its event, and with a known key", async () => {
  const good = await signer(web);
  const keys = await importVerifyKeys(parseVerifyKeys(web.publicPem));
  const m = message();
  const id = m.id;
  const fields = { repository: REP, image: m.image, tags: m.tags, time: m.time };
  const { kid, sig } = await good.signEvent(encodeEventMessage(m), REP);
  const signed = { ...fields, kid, sig };
  assert(await verifyBinding(keys, id, signed));
  assert(!(await verifyBinding(keys, id, fields)), "unsigned");
  assert(!(await verifyBinding(keys, id, { ...signed, repository: "b".repeat(64) })), "rebound");
  assert(!(await verifyBinding(keys, id, { ...signed, tags: ["v2"] })), "tags");
  assert(!(await verifyBinding(keys, id, { ...signed, time: new Date(0).toISOString() })), "time");
  assert(!(await verifyBinding(keys, crypto.randomUUID(), signed)), "another event");
  const foreign = await (await signer(other)).signEvent(encodeEventMessage(m), REP);
  assert(!(await verifyBinding(keys, id, { ...fields, kid: foreign.kid, sig: foreign.sig })));
  // The message web published for the event carries the very signature its binding stores.
  const published = JSON.parse((await good.signEvent(encodeEventMessage(m), REP)).message);
  assertEquals([published.kid, published.sig, published.rep], [kid, sig, REP]);
});

Deno.test("security: key parse errors are one actionable line and never quote the key", async (t) => {
  const secret = web.privatePem.split("\n")[1];
  const seed = JSON.parse(web.privateJwk).d as string;
  const signingCases: [string, string, RegExp][] = [
    ["a public key", web.publicPem, /public key: web signs with the private key/],
    [
      "an encrypted key",
      web.privatePem.replaceAll("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
      /encrypted/,
    ],
    [
      "a damaged PEM",
      web.privatePem.replace(secret, secret.slice(0, 20) + "*" + secret.slice(21)),
      /not base64/,
    ],
    ["two keys", web.privatePem + other.privatePem, /exactly one PEM block/],
    ["a public JWK", web.publicJwk, /without a private "d"/],
    ["an RSA-shaped JWK", `{"kty":"RSA","d":"${seed}"}`, /not an Ed25519 key/],
    ["a truncated JWK", web.privateJwk.slice(0, 40), /neither PEM nor valid JSON/],
    ["a stray line", web.privatePem + "x", /text outside its PEM blocks/],
  ];
  for (const [name, raw, expected] of signingCases) {
    await t.step(`EVENT_SIGNING_KEY: ${name}`, () => {
      const err = assertThrows(() => parseSigningKey(raw));
      assertMatch(err.message, expected);
      assert(
        !err.message.includes(secret.slice(0, 12)) && !err.message.includes(seed.slice(0, 12)),
      );
    });
  }
  const verifyCases: [string, string, RegExp][] = [
    ["a private PEM", web.privatePem, /private key: give workers only the public half/],
    ["a private JWK", web.privateJwk, /private JWK/],
    [
      "a JWK Set with a private key",
      `{"keys":[${web.publicJwk},${other.privateJwk}]}`,
      /private JWK/,
    ],
    ["a certificate", web.publicPem.replaceAll("PUBLIC KEY", "CERTIFICATE"), /BEGIN PUBLIC KEY/],
  ];
  for (const [name, raw, expected] of verifyCases) {
    await t.step(`EVENT_VERIFY_KEYS: ${name}`, () => {
      const err = assertThrows(() => parseVerifyKeys(raw));
      assertMatch(err.message, expected);
      assert(
        !err.message.includes(secret.slice(0, 12)) && !err.message.includes(seed.slice(0, 12)),
      );
    });
  }
  await t.step("a JWK whose x is not the public half of d", async () => {
    const mismatched = { ...JSON.parse(web.privateJwk), x: JSON.parse(other.publicJwk).x };
    await assertRejects(() => createSigner(parseSigningKey(JSON.stringify(mismatched))!), {
      code: "ERR_CONFIG",
      message: /"x" is not the public half/,
    });
  });
  assertEquals(
    parseVerifyKeys(`{"keys":[${web.publicJwk},${other.publicJwk},${web.publicJwk}]}`).length,
    2,
  );
  assertEquals(parseVerifyKeys(web.publicPem + "\n" + other.publicPem).length, 2);
});

Deno.test("security: the startup summary and config errors never show the signing key", () => {
  const env: Record<string, string> = {
    VALKEY_ADDR: "127.0.0.1:6379",
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
    GITHUB_OIDC_AUDIENCE: "https://example",
    GITHUB_ALLOWED_ORG: "acme",
    EVENT_SIGNING_KEY: web.privatePem,
  };
  const parsed = parseCommandLine("web", [], (name) => env[name]);
  assert(parsed.kind === "config");
  const summary = summarizeConfig("web", parsed.origins);
  assertEquals(summary.EVENT_SIGNING_KEY, "(set)");
  assert(!JSON.stringify(summary).includes("PRIVATE"));
  const broken = web.privatePem.replace("MC4C", "MC4C\u0000");
  const err = assertThrows(() =>
    parseCommandLine("web", [], (name) => ({ ...env, EVENT_SIGNING_KEY: broken })[name])
  );
  assert(err instanceof ConfigError);
  const text = err.problems.join("\n");
  assertMatch(text, /^EVENT_SIGNING_KEY \(--event-signing-key\): /);
  assert(!text.includes("MC4C"), text);
});

Deno.test("security: a stored binding carries kid and sig together or neither", async () => {
  const good = await signer(web);
  const fields = { repository: REP, image: "ghcr.io/acme/app", tags: ["v1"], time: "t" };
  const { kid, sig } = await good.signEvent(encodeEventMessage(message()), REP);
  const signature = { kid, sig };
  const stored = (extra: object) => JSON.stringify({ ...fields, clusters: ["c"], ...extra });
  assertEquals(parseBinding(stored(signature)), { ...fields, clusters: ["c"], ...signature });
  assertEquals(parseBinding(stored({})), { ...fields, clusters: ["c"] });
  assertThrows(() => parseBinding(stored({ kid: signature.kid })), { code: "ERR_STATUS_CORRUPT" });
  assertThrows(() => parseBinding(stored({ sig: signature.sig })), { code: "ERR_STATUS_CORRUPT" });
  assertThrows(() => parseBinding(stored({ ...signature, sig: "x" })), {
    code: "ERR_STATUS_CORRUPT",
  });
});

const SENDER_A: Sender = {
  repository: "acme/team-a",
  repositoryId: "1001",
  ref: "refs/heads/main",
  environment: "production",
  workflowRef: "acme/team-a/.github/workflows/release.yml@refs/heads/main",
};
const SENDER_B: Sender = { ...SENDER_A, repository: "acme/team-b", repositoryId: "1002" };

Deno.test("a signed message names its sender beside it: the worker hands on exactly what web signed", async () => {
  const verifier = await setup([web.publicPem]);
  const event = encodeEventMessage(message());
  const signed = await (await signer(web)).signEvent(event, REP, encodeSender(SENDER_A));
  // The message itself is the envelope workers of the previous version read.
  assertEquals(Object.keys(JSON.parse(signed.message)).sort(), ["event", "kid", "rep", "sig"]);
  assertEquals(await verifier.check(signed.message, signed.senderField), {
    ok: true,
    event,
    keyId: (await signer(web)).keyId,
    sender: SENDER_A,
  });
  // Without the field (an older web, or the field removed): verified, with no sender.
  const bare = await verifier.check(signed.message);
  assertEquals(bare.ok && bare.sender, undefined);
});

Deno.test("security: a sender cannot be swapped, moved to another event, or read unverified", async (t) => {
  const verifier = await setup([web.publicPem]);
  const good = await signer(web);
  const event = encodeEventMessage(message());
  const otherEvent = encodeEventMessage(message({ image: "ghcr.io/acme/other" }));
  const fromA = await good.signEvent(event, REP, encodeSender(SENDER_A));
  const fromB = await good.signEvent(event, REP, encodeSender(SENDER_B));
  const otherFromB = await good.signEvent(otherEvent, REP, encodeSender(SENDER_B));
  const field = (f: string | undefined) => JSON.parse(f!);
  // Web's own key signing a sender web would never write (upper case): refused when read.
  const odd = JSON.stringify({ ...JSON.parse(encodeSender(SENDER_A)), repository: "ACME/team-a" });
  const oddSigned = await good.signEvent(event, REP, odd);
  const cases: [string, string, string][] = [
    [
      "B's sender with A's signature",
      JSON.stringify({ ...field(fromA.senderField), sender: field(fromB.senderField).sender }),
      "bad_signature",
    ],
    ["B's sender and signature from another event", otherFromB.senderField!, "bad_signature"],
    [
      "a sender without its signature",
      JSON.stringify({ sender: encodeSender(SENDER_B) }),
      "malformed",
    ],
    ["an extra member", JSON.stringify({ ...field(fromA.senderField), x: 1 }), "malformed"],
    ["not JSON", "acme/team-b", "malformed"],
    ["a sender that is not canonical, signed by web's key", oddSigned.senderField!, "malformed"],
  ];
  for (const [name, sent, reason] of cases) {
    await t.step(name, async () => {
      const checked = await verifier.check(fromA.message, sent);
      assertEquals(checked.ok ? "accepted" : checked.reason, reason);
    });
  }
  await t.step("a worker without keys never reads a sender", async () => {
    const open = createEventVerifier({ maxAgeMs: 120_000, now: () => NOW });
    const checked = await open.check(fromA.message, fromA.senderField);
    assertEquals(checked, { ok: true, event });
  });
});
