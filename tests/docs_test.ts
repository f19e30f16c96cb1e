import { assertEquals } from "./helpers/assert.ts";
import { ROOT } from "../tools/program.ts";
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

/** The product's modules: main.ts and every .ts file of the product's rooms and tools/. */
function productModules(): string[] {
  const out = ["main.ts"];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.name.endsWith(".ts")) out.push(path);
    }
  };
  for (const room of ["lib", "shared", "config", "web", "worker", "tools"]) walk(room);
  return out.sort();
}

/** The text of `## heading` (or `### heading`) up to the next heading of its level or above. */
function section(text: string, heading: string): string {
  const start = text.indexOf(`${heading}\n`);
  if (start < 0) throw new Error(`no "${heading}" section`);
  const level = heading.split(" ")[0];
  const rest = text.slice(start + heading.length);
  const end = rest.search(new RegExp(`^#{1,${level.length}} `, "m"));
  return end < 0 ? rest : rest.slice(0, end);
}

Deno.test("docs/architecture.md's code map names every product module, and only modules that exist", async () => {
  const map = section(await Deno.readTextFile(`${ROOT}docs/architecture.md`), "## Code map");
  const named = new Set(
    [...map.matchAll(/`((?:[a-z0-9_]+\/)*[a-z0-9_]+\.ts)`/g)].map((m) => m[1]),
  );
  const modules = productModules();
  assertEquals(modules.filter((m) => !named.has(m)), [], "modules missing from the code map");
  assertEquals([...named].filter((m) => !modules.includes(m)), [], "named but not there");
});

Deno.test("every product module has its own _test.ts, or docs/development.md names the test that proves it", async () => {
  const table = section(
    await Deno.readTextFile(`${ROOT}docs/development.md`),
    "### Modules proven by another test",
  );
  // A row names its modules, then the test files that prove them or "types only".
  const provenElsewhere = new Map<string, { tests: string[]; typesOnly: boolean }>();
  for (const row of table.split("\n").filter((l) => /^\| `/.test(l))) {
    const [modulesCell, provenCell] = row.split("|").slice(1, 3);
    const tests = [...provenCell.matchAll(/`(tests\/[^`]+_test\.ts)`/g)].map((m) => m[1]);
    const typesOnly = provenCell.includes("types only");
    for (const [, module] of modulesCell.matchAll(/`([^`]+)`/g)) {
      provenElsewhere.set(module, { tests, typesOnly });
    }
  }
  const exists = (path: string) => {
    try {
      return Deno.statSync(`${ROOT}${path}`).isFile;
    } catch {
      return false;
    }
  };
  const problems: string[] = [];
  for (const module of productModules()) {
    const own = module.replace(/\.ts$/, "_test.ts");
    const hasOwn = exists(`tests/${own}`) || exists(`tests/integration/${own}`);
    const elsewhere = provenElsewhere.get(module);
    if (hasOwn && elsewhere) problems.push(`${module} has its own test: drop its docs line`);
    if (!hasOwn && !elsewhere) problems.push(`${module} has no test and no docs line`);
    if (elsewhere && elsewhere.tests.length === 0 && !elsewhere.typesOnly) {
      problems.push(`${module}: its docs line names no test file`);
    }
    if (elsewhere?.typesOnly) {
      const code = /^export (?:(?:async )?function|const|let|var|class|enum|default)\b|^export \{/m;
      if (code.test(await Deno.readTextFile(`${ROOT}${module}`))) {
        problems.push(`${module} is said to hold types only, but exports code`);
      }
    }
    for (const test of elsewhere?.tests ?? []) {
      if (!exists(test)) problems.push(`${module}: ${test} does not exist`);
    }
    provenElsewhere.delete(module);
  }
  for (const module of provenElsewhere.keys()) problems.push(`${module} is not a product module`);
  assertEquals(problems, []);
});

Deno.test("every test file the docs name exists (tests move; the evidence must follow)", async () => {
  const missing: string[] = [];
  const docs = [
    "README.md",
    ...[...Deno.readDirSync(`${ROOT}docs`)].filter((e) => e.isFile)
      .map((e) => `docs/${e.name}`),
  ];
  for (const doc of docs.filter((name) => name.endsWith(".md"))) {
    const text = await Deno.readTextFile(`${ROOT}${doc}`);
    for (const [, path] of text.matchAll(/`(tests\/[A-Za-z0-9_./-]+\.ts)`/g)) {
      try {
        Deno.statSync(`${ROOT}${path}`);
      } catch {
        missing.push(`${doc}: ${path}`);
      }
    }
  }
  assertEquals(missing, []);
});
