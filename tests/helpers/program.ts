/**
 * The real program for tests: tools/program.ts starts it as users do; here,
 * web and the worker started and awaited the way most tests want them.
 */

import {
  type Program,
  type ProgramOptions,
  startProgram as startRealProgram,
} from "../../tools/program.ts";
import { assertServersAllowed } from "./skip.ts";
import { eventually } from "./eventually.ts";

export { type LogLine, type Program, ROOT } from "../../tools/program.ts";

/** tools/program.ts's startProgram, refused in the in-process tier. */
export function startProgram(options: ProgramOptions): Program {
  assertServersAllowed("the real program");
  return startRealProgram(options);
}

/** Starts web and resolves once it listens; returns the program and its base URL. */
export async function startWeb(
  env: Record<string, string>,
  extraArgs: string[] = [],
  permissions?: string[],
): Promise<{ program: Program; url: string }> {
  const program = startProgram({
    args: ["web", "--listen-addr", "127.0.0.1:0", ...extraArgs],
    env,
    permissions,
  });
  const line = await program.waitForLog((l) => l.msg === "web listening");
  return { program, url: `http://${line.addr}` };
}

/**
 * Starts the worker with the worker permission set plus read access to its
 * kubeconfig (exactly how docs/deployment.md says to run it outside a
 * cluster); resolves once it is subscribed and its inventory synced.
 */
export async function startWorker(
  env: Record<string, string>,
  kubeconfig: string,
  extraArgs: string[] = [],
): Promise<{ program: Program; healthUrl: string }> {
  const program = startProgram({
    args: ["worker", "--health-listen-addr", "127.0.0.1:0", ...extraArgs],
    env: { KUBECONFIG: kubeconfig, ...env },
    permissions: ["-P=worker", `--allow-read=${kubeconfig}`],
  });
  const listening = await program.waitForLog(
    (l) => l.msg === "worker health server listening",
    20_000,
  );
  await program.waitForLog((l) => l.msg === "reading the event stream", 20_000);
  // It subscribes before its inventory is synced (events are held meanwhile); tests start
  // from a worker that handles them at once.
  await program.waitForLog((l) => l.msg === "inventory synced", 20_000);
  const healthUrl = `http://${listening.addr}`;
  // Ready means web counts the cluster as known and live: a POST from now on is for it.
  await eventually(
    "the worker to be ready",
    async () => {
      const res = await fetch(`${healthUrl}/readyz`).catch(() => undefined);
      await res?.body?.cancel();
      return res?.status === 200;
    },
    20_000,
    50,
  );
  return { program, healthUrl };
}
