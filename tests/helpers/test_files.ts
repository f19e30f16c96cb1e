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

/** Every `*_test.ts` under `dir` (relative to the root), sorted. */
export function testFilesUnder(dir: string): string[] {
  const path = dir.replace(/\/+$/, "");
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
