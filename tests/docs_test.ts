import { assertEquals } from "./helpers/assert.ts";
import { CONFIGURATION_DOC, normalizeTables, withGeneratedTable } from "./helpers/settings_doc.ts";

Deno.test("docs/configuration.md lists every setting exactly as the code defines it (run `deno task docs` after changing a setting)", async () => {
  const text = await Deno.readTextFile(CONFIGURATION_DOC);
  assertEquals(normalizeTables(text), normalizeTables(withGeneratedTable(text)));
});
