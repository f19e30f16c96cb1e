/** Sealed worker state: opened only under its own key and context, by this cluster. */

import { assertEquals } from "../helpers/assert.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { parseSigningKey } from "../../shared/event_keys.ts";
import { importSigningKey } from "../../shared/signing_key.ts";
import { createStateSeal, UNSEALED } from "../../worker/sealed_state.ts";

const [mine, theirs] = await Promise.all([generateKeyPair(), generateKeyPair()]);
const seal = await createStateSeal(await importSigningKey(parseSigningKey(mine.privatePem)!, "k"));
const other = await createStateSeal(
  await importSigningKey(parseSigningKey(theirs.privatePem)!, "k"),
);

Deno.test("createStateSeal() opens what it sealed, under the same context only", async (t) => {
  const text = '{"generation":4,"note":"a.b"}';
  const sealed = seal.seal("window:a", text);
  await t.step("its own", async () => assertEquals(await seal.open("window:a", sealed), text));
  const refused: [string, string, string][] = [
    ["moved to another key", "window:b", sealed],
    ["unsealed", "window:a", text],
    ["another cluster's seal", "window:a", other.seal("window:a", text)],
    ["altered after sealing", "window:a", sealed.replace("4", "5")],
    ["a seal that is not one", "window:a", `${"A".repeat(86)}.${text}`],
    ["empty", "window:a", ""],
  ];
  for (const [name, context, raw] of refused) {
    await t.step(name, async () => assertEquals(await seal.open(context, raw), undefined));
  }
});

Deno.test("UNSEALED stores and reads state as it is (no key, nothing to prove)", async () => {
  assertEquals(UNSEALED.seal("x", "text"), "text");
  assertEquals(await UNSEALED.open("x", "text"), "text");
});
