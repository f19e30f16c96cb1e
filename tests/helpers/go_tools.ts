/**
 * The Go-built test tools (actionlint, helm, act): tests/gotools/ensure_<tool>.sh
 * builds one on first use and caches it (tests/gotools/go_tool.sh).
 */

import { ROOT } from "./program.ts";
import { missing } from "./skip.ts";

/** Where the tool is, built on first use; undefined when there is no Go to build it. */
export async function locateGoTool(
  tool: "actionlint" | "helm" | "act",
): Promise<string | undefined> {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}tests/gotools/ensure_${tool}.sh`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (out.code === 3) {
    missing(`${tool} (and Go to build it)`, stderr.trim());
    return undefined;
  }
  if (out.code !== 0) throw new Error(`ensure_${tool}.sh failed (${out.code}): ${stderr}`);
  return new TextDecoder().decode(out.stdout).trim().split("\n").at(-1);
}
