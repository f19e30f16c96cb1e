// Child processes of the test servers (etcd, kube-apiserver,
// kube-controller-manager) and the loopback ports they listen on. Test-only
// code; nothing here enters the product.

const STOP_GRACE_MS = 10_000;

/** A server process whose output is kept (last 60 lines) for error messages. */
export class ManagedProcess {
  readonly #tail: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<unknown>;
  readonly status: Promise<Deno.CommandStatus>;
  exited = false;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    log: ((line: string) => void) | undefined,
  ) {
    this.#child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // Security: a clean environment, so ETCD_*, KUBECONFIG or proxy variables
      // of the developer's shell cannot change what the tests run against.
      clearEnv: true,
      env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    }).spawn();
    const onLine = (line: string) => {
      this.#tail.push(line);
      if (this.#tail.length > 60) this.#tail.shift();
      log?.(`${name}: ${line}`);
    };
    this.#pumps = Promise.all([
      pumpLines(this.#child.stdout, onLine),
      pumpLines(this.#child.stderr, onLine),
    ]);
    this.status = this.#child.status.then((status) => {
      this.exited = true;
      return status;
    });
  }

  tail(): string {
    return this.#tail.join("\n");
  }

  /** Synchronous last resort for the unload handler. */
  killNow(): void {
    if (this.exited) return;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process and its output ended. */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (!this.exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // Exited between the check and the signal.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        this.status.then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), graceMs)),
      ]);
      clearTimeout(timer);
      if (timedOut) this.killNow();
    }
    await this.status;
    await this.#pumps;
  }
}

async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  }
  if (rest !== "") onLine(rest);
}

/** Polls `ready` every 250 ms until true, the process exits, or the bound passes. */
export async function waitUntilReady(
  process: ManagedProcess,
  timeoutMs: number,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (process.exited) {
      const status = await process.status;
      throw new Error(
        `${process.name} exited with code ${status.code} before it was ready; last output:\n${process.tail()}`,
      );
    }
    if (await ready()) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${process.name} was not ready after ${timeoutMs} ms; last output:\n${process.tail()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export { freePort, freePorts } from "../../tools/ports.ts";
