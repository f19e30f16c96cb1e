/**
 * The rooms of the house and who may import whom (docs/architecture.md):
 * lib/ knows nothing of the product, shared/ holds only what both modes use,
 * web/ and worker/ never reach into each other, the product never imports
 * tools/ or tests/, and tools/ never import tests/. Read from the import
 * statements themselves (type imports count: a type is part of the contract).
 */

import { assertEquals } from "./helpers/assert.ts";
import { ROOT } from "../tools/program.ts";

/** Every .ts file under `dir` (relative to the root), tests excluded. */
function sources(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of Deno.readDirSync(`${ROOT}${rel}`)) {
      const path = `${rel}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) out.push(path);
    }
  };
  walk(dir);
  return out.sort();
}

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["']([^"']+)["']/gm;

/** The files `file` imports, as root-relative paths (local imports only). */
export function localImports(file: string, text: string): string[] {
  const dir = file.split("/").slice(0, -1);
  const out: string[] = [];
  for (const [, spec] of text.matchAll(SPECIFIER)) {
    if (!spec.startsWith(".")) continue;
    const parts = [...dir];
    for (const piece of spec.split("/")) {
      if (piece === "..") parts.pop();
      else if (piece !== ".") parts.push(piece);
    }
    out.push(parts.join("/"));
  }
  return out;
}

const ROOMS = ["lib", "shared", "config", "web", "worker", "tools"] as const;
const graph = new Map<string, string[]>();
for (const room of ROOMS) {
  for (const file of sources(room)) {
    graph.set(file, localImports(file, Deno.readTextFileSync(`${ROOT}${file}`)));
  }
}
graph.set("main.ts", localImports("main.ts", Deno.readTextFileSync(`${ROOT}main.ts`)));
const roomOf = (path: string) => path.includes("/") ? path.split("/")[0] : path;

/** Imports from files of `from` into files whose room is not allowed. */
function crossings(from: string, allowed: readonly string[]): string[] {
  return [...graph].filter(([file]) => roomOf(file) === from).flatMap(([file, imports]) =>
    imports.filter((target) => !allowed.includes(roomOf(target))).map((t) => `${file} -> ${t}`)
  );
}

/** The shared/ modules reachable from `room`'s files through shared/ and lib/ alone. */
function sharedReachedFrom(room: string): Set<string> {
  const seen = new Set<string>();
  const stack = [...graph].filter(([file]) => roomOf(file) === room).flatMap(([, i]) => i);
  while (stack.length) {
    const next = stack.pop()!;
    if (seen.has(next) || !["shared", "lib"].includes(roomOf(next))) continue;
    seen.add(next);
    stack.push(...(graph.get(next) ?? []));
  }
  return new Set([...seen].filter((path) => roomOf(path) === "shared"));
}

Deno.test("lib/ imports nothing from the product", () => {
  assertEquals(crossings("lib", ["lib", "deno.json"]), []);
});

Deno.test("shared/ imports only shared/ and lib/", () => {
  assertEquals(crossings("shared", ["shared", "lib"]), []);
});

Deno.test("every shared/ module is used by both web/ and worker/ (else it belongs to one mode)", () => {
  const web = sharedReachedFrom("web");
  const worker = sharedReachedFrom("worker");
  const oneSided = sources("shared").filter((path) => !web.has(path) || !worker.has(path))
    .map((path) =>
      `${path}: ${web.has(path) ? "web only" : worker.has(path) ? "worker only" : "neither"}`
    );
  assertEquals(oneSided, []);
});

Deno.test("web/ and worker/ never import each other, tools/ or tests/", () => {
  assertEquals(crossings("web", ["web", "shared", "lib", "config"]), []);
  assertEquals(crossings("worker", ["worker", "shared", "lib", "config"]), []);
});

Deno.test("config/ imports only shared/ and lib/; main.ts never imports tools/ or tests/", () => {
  assertEquals(crossings("config", ["config", "shared", "lib"]), []);
  assertEquals(
    crossings("main.ts", ["main.ts", "deno.json", "config", "shared", "lib", "web", "worker"]),
    [],
  );
});

Deno.test("tools/ never import tests/", () => {
  assertEquals(crossings("tools", ["tools", "config", "shared", "lib", "web", "worker"]), []);
});

Deno.test("localImports() resolves relative specifiers of every import form", () => {
  const text = [
    'import { a } from "../lib/a.ts";',
    'import type { B } from "./b.ts";',
    "import {\n  c,\n} from '../../x/c.ts';",
    'export { d } from "./d.ts";',
    'const e = await import("../shared/e.ts");',
    'import "./side_effect.ts";',
    'import { parse } from "yaml";',
  ].join("\n");
  assertEquals(localImports("web/sub/file.ts", text), [
    "web/lib/a.ts",
    "web/sub/b.ts",
    "x/c.ts",
    "web/sub/d.ts",
    "web/shared/e.ts",
    "web/sub/side_effect.ts",
  ]);
});
