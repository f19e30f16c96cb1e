import { assert, assertRejects } from "../helpers/assert.ts";
import { AppError } from "../../shared/errors.ts";
import { loadLocalInventory } from "../../worker/local_api.ts";

Deno.test("security: loadLocalInventory() reports a YAML error by position, never quoting the file", async () => {
  const secret = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(
      path,
      `kind: Deployment\nmetadata: { name: a, namespace: b }\nspec:\n  env: [{ name: DB_PASSWORD, value: "${secret}" }\n`,
    );
    const err = await assertRejects(() => loadLocalInventory(path), {
      instanceOf: AppError,
      code: "ERR_CONFIG",
      message: /Cannot read LOCAL_INVENTORY .*: YAML error [A-Z_]+ at line \d+, column \d+$/,
    });
    assert(!err.message.includes(secret), err.message);
  } finally {
    await Deno.remove(path);
  }
});
