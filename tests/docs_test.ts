import { assertEquals } from "./helpers/assert.ts";
import {
  CONFIGURATION_DOC,
  normalizeTables,
  OPERATIONS_DOC,
  withGeneratedBlocks,
} from "../tools/docs.ts";

Deno.test("docs/configuration.md lists every setting exactly as the code defines it (run `deno task docs` after changing a setting)", async () => {
  const text = await Deno.readTextFile(CONFIGURATION_DOC);
  assertEquals(
    normalizeTables(text),
    normalizeTables(withGeneratedBlocks(CONFIGURATION_DOC, text)),
  );
});

Deno.test("docs/operations.md lists every reason and error code exactly as web/reasons.ts and shared/errors.ts define them (run `deno task docs` after adding one)", async () => {
  const text = await Deno.readTextFile(OPERATIONS_DOC);
  assertEquals(normalizeTables(text), normalizeTables(withGeneratedBlocks(OPERATIONS_DOC, text)));
});
