/** Runs `deno task trigger` as a user types it, with no stdin and no colour. */

import { ROOT } from "./program.ts";

/** What the task printed and its exit code. */
export interface TaskRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `deno task -q trigger <args>` from the repository root. */
export async function runTriggerTask(args: string[]): Promise<TaskRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "trigger", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}
