/**
 * createMessageReader(): verify → parse, then admit, and what a dropped message
 * leaves behind (a count by reason and a log line that never quotes it).
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { createLogger } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import { importVerifyKeys } from "../../shared/event_signature.ts";
import { createSigner } from "../../web/event_signer.ts";
import { encodeSender } from "../../shared/event_sender.ts";
import { parseSigningKey, parseVerifyKeys } from "../../shared/event_keys.ts";
import { createEventVerifier, type EventVerifier } from "../../worker/event_verifier.ts";
import { createMessageReader } from "../../worker/message_reader.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";

function readerWith(verifier: EventVerifier = createEventVerifier({ maxAgeMs: 0 })) {
  const lines: string[] = [];
  const metrics = createWorkerMetrics(createRegistry());
  const { read, admit } = createMessageReader({
    verifier,
    prefixes: ["ghcr.io/acme"],
    logger: createLogger({ level: "debug", write: (l) => lines.push(l) }),
    metrics,
  });
  return { read, admit, lines, metrics };
}

const event = (image: string, id: string = crypto.randomUUID()) =>
  JSON.stringify({ id, time: new Date().toISOString(), image, tags: ["dev"] });

Deno.test("createMessageReader() hands on an event web would accept", async () => {
  const { read, lines } = readerWith();
  const id = crypto.randomUUID();
  const message = await read(event("ghcr.io/acme/app", id));
  assertEquals(message?.id, id);
  assertEquals(message?.image, "ghcr.io/acme/app");
  assertEquals(lines, []);
});

Deno.test("createMessageReader() drops what web's rules refuse, counted as invalid", async (t) => {
  for (
    const [name, raw] of [
      ["not JSON", "{not json SECRET-ISH"],
      ["an image outside the prefixes", event("docker.io/evil/app")],
    ]
  ) {
    await t.step(name, async () => {
      const { read, lines, metrics } = readerWith();
      assertEquals(await read(raw), undefined);
      assertEquals(metrics.events.get({ result: "invalid" }), 1);
      assertEquals(lines.length, 1);
      const line = JSON.parse(lines[0]);
      assertEquals(line.msg, "dropped an invalid message");
      assertEquals(line.bytes, raw.length);
      assert(!lines[0].includes("SECRET-ISH"), "the message's text reached the log");
    });
  }
});

Deno.test("security: createMessageReader() with verify keys drops an unsigned message by reason, never quoting it", async () => {
  const pair = await generateKeyPair();
  const keys = await importVerifyKeys(parseVerifyKeys(pair.publicPem));
  const { read, admit, lines, metrics } = readerWith(
    createEventVerifier({ keys, maxAgeMs: 60_000 }),
  );
  const raw = event("ghcr.io/acme/app");
  assertEquals(await read(raw), undefined);
  assertEquals(metrics.droppedMessages.get({ reason: "unsigned" }), 1);
  assertEquals(metrics.events.get({ result: "invalid" }), 0);
  assertEquals(JSON.parse(lines[0]).msg, "dropped a message that failed authentication");
  assert(!lines[0].includes("ghcr.io/acme/app"), "the message's content is not logged");
  // The same event signed by web's key is read and admitted, and a replay of it is not admitted.
  const signer = await createSigner(parseSigningKey(pair.privatePem)!);
  const signed = (await signer.signEvent(raw, "a".repeat(64))).message;
  const first = await read(signed);
  assertEquals(first?.id, JSON.parse(raw).id);
  assertEquals(admit(first!), true);
  const again = await read(signed);
  assertEquals(again?.id, first?.id, "reading verifies; admitting remembers");
  assertEquals(admit(again!), false);
  assertEquals(metrics.droppedMessages.get({ reason: "replayed" }), 1);
});

Deno.test("security: createMessageReader() hands on a sender only when its signature verified", async () => {
  const pair = await generateKeyPair();
  const signer = await createSigner(parseSigningKey(pair.privatePem)!);
  const sender = {
    repository: "acme/app",
    repositoryId: "2002",
    ref: "refs/heads/main",
    workflowRef: "acme/app/.github/workflows/build.yml@refs/heads/main",
  };
  const signed = await signer.signEvent(
    event("ghcr.io/acme/app"),
    "a".repeat(64),
    encodeSender(sender),
  );
  const keys = await importVerifyKeys(parseVerifyKeys(pair.publicPem));
  const verifying = readerWith(createEventVerifier({ keys, maxAgeMs: 60_000 }));
  assertEquals((await verifying.read(signed.message, signed.senderField))?.sender, sender);
  // A worker without verify keys reads the same message, but nobody vouched for its sender.
  const open = readerWith();
  const read = await open.read(signed.message, signed.senderField);
  assertEquals(read?.image, "ghcr.io/acme/app");
  assertEquals(read?.sender, undefined);
});
