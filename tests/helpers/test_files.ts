/** Which test files there are, and which of them need the shared Kubernetes control plane. */

import { ROOT } from "../../tools/program.ts";

/**
 * Folders run only by the full suite: real servers or the real program
 * (integration, e2e, helm), and differential fuzzing over 100,000 inputs
 * (fuzz), which is in process but takes minutes.
 */
export const FULL_SUITE_FOLDERS = [
  "tests/integration/",
  "tests/e2e/",
  "tests/helm/",
  "tests/fuzz/",
];

/** Every `*_test.ts` under `dir` (relative to the root, or absolute inside it), sorted. */
export function testFilesUnder(dir: string): string[] {
  const path = (dir.startsWith(ROOT) ? dir.slice(ROOT.length) : dir).replace(/\/+$/, "");
  const info = Deno.statSync(`${ROOT}${path}`);
  if (info.isFile) return path.endsWith(".ts") ? [path] : [];
  const out: string[] = [];
  for (const entry of Deno.readDirSync(`${ROOT}${path}`)) {
    const child = `${path}/${entry.name}`;
    if (entry.isDirectory) out.push(...testFilesUnder(child));
    else if (entry.name.endsWith("_test.ts")) out.push(child);
  }
  return out.sort();
}

// A test that uses the shared control plane asks for it by one of these names.
const CONTROL_PLANE_USE = /\b(requireControlPlane|requireRolloutCluster)\b/;

/** True when any of `files` uses the shared control plane tests/run.ts starts. */
export function needsControlPlane(files: readonly string[]): boolean {
  return files.some((file) => CONTROL_PLANE_USE.test(Deno.readTextFileSync(`${ROOT}${file}`)));
}

/**
 * The test files and folders named among a task's arguments (the rest go to
 * `deno test` as they are). A folder named without its trailing slash counts.
 */
export function pathArguments(args: readonly string[]): string[] {
  return args.filter((arg, i) =>
    !arg.startsWith("-") && args[i - 1] !== "--filter" && (/\.ts$|\/$/.test(arg) || isPath(arg))
  );
}

function isPath(arg: string): boolean {
  try {
    Deno.statSync(arg.startsWith("/") ? arg : `${ROOT}${arg}`);
    return true;
  } catch {
    return false;
  }
}
