/**
 * `deno task dev`: the whole flow on this machine with one command. Web runs
 * in dev mode (a local issuer instead of GitHub, loopback only), a worker runs
 * against the labelled local inventory in k8s/dev/ (no cluster is touched
 * unless --kubeconfig is given), and a Valkey-compatible server is used from
 * VALKEY_ADDR or started here. Ctrl-C stops everything.
 */

import { parseArgs } from "node:util";
import { type Program, ROOT, startProgram } from "../helpers/program.ts";
import { findValkeyBinary, startValkey, type TestValkey } from "../helpers/valkey.ts";

/** The embedded default configuration of the local flow. */
export const DEV_DEFAULTS = {
  ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
  GITHUB_OIDC_AUDIENCE: "kuberollouttrigger-dev",
  GITHUB_ALLOWED_ORG: "acme",
  VALKEY_CHANNEL: "kuberollouttrigger-dev",
  LOG_LEVEL: "info",
};

/** The local inventory the dev worker uses. */
export const LOCAL_INVENTORY = `${ROOT}k8s/dev/local-inventory.yaml`;

/** Options for startLocalFlow. */
export interface LocalFlowOptions {
  webAddr?: string;
  healthAddr?: string;
  /** A reachable Valkey to use instead of starting one. */
  valkeyAddr?: string;
  /** Use a real cluster through this kubeconfig instead of the local inventory. */
  kubeconfig?: string;
  echo?: (line: string) => void;
}

/** A running local flow. */
export interface LocalFlow {
  webUrl: string;
  healthUrl: string;
  valkeyAddr: string;
  web: Program;
  worker: Program;
  stop(): Promise<void>;
}

async function reachable(addr: string): Promise<boolean> {
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(addr);
  if (!m) return false;
  try {
    const conn = await Deno.connect({ hostname: m[1], port: Number(m[2]) });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Starts Valkey (if needed), web in dev mode and a worker. */
export async function startLocalFlow(options: LocalFlowOptions = {}): Promise<LocalFlow> {
  let valkey: TestValkey | undefined;
  let valkeyAddr = options.valkeyAddr;
  if (!valkeyAddr || !(await reachable(valkeyAddr))) {
    if (!findValkeyBinary()) {
      throw new Error(
        `No Valkey-compatible server: ${
          valkeyAddr ? `VALKEY_ADDR ${valkeyAddr} is not reachable and ` : ""
        }` +
          "neither valkey-server nor redis-server is installed. Install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install valkey) or set VALKEY_ADDR to a running server.",
      );
    }
    valkey = await startValkey();
    valkeyAddr = valkey.addr;
  }
  const env = { ...DEV_DEFAULTS, VALKEY_ADDR: valkeyAddr };
  const web = startProgram({
    args: ["web", "--dev-mode", "--listen-addr", options.webAddr ?? "127.0.0.1:8080"],
    env,
    echo: options.echo,
  });
  const source: Record<string, string> = options.kubeconfig
    ? { KUBECONFIG: options.kubeconfig }
    : { LOCAL_INVENTORY: LOCAL_INVENTORY };
  const worker = startProgram({
    args: ["worker", "--health-listen-addr", options.healthAddr ?? "127.0.0.1:8081"],
    env: { ...env, ...source },
    permissions: ["-P=worker", `--allow-read=${options.kubeconfig ?? LOCAL_INVENTORY}`],
    echo: options.echo,
  });
  const stop = async () => {
    await Promise.all([web.stop(), worker.stop()]);
    await valkey?.stop();
  };
  try {
    const listening = await web.waitForLog((l) => l.msg === "web listening");
    const health = await worker.waitForLog((l) => l.msg === "worker health server listening");
    await worker.waitForLog((l) => l.msg === "subscribed");
    return {
      webUrl: `http://${listening.addr}`,
      healthUrl: `http://${health.addr}`,
      valkeyAddr,
      web,
      worker,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      kubeconfig: { type: "string" },
      "web-addr": { type: "string" },
      "health-addr": { type: "string" },
    },
    strict: true,
  });
  const echo = (line: string) => console.log(line);
  let flow: LocalFlow;
  try {
    flow = await startLocalFlow({
      webAddr: values["web-addr"],
      healthAddr: values["health-addr"],
      valkeyAddr: Deno.env.get("VALKEY_ADDR"),
      kubeconfig: values.kubeconfig,
      echo,
    });
  } catch (err) {
    console.error(`deno task dev: ${(err as Error).message}`);
    Deno.exit(1);
  }
  console.log(`
================================================================================
 kuberollouttrigger local flow (DEV MODE: not GitHub, ${
    values.kubeconfig ? `cluster from ${values.kubeconfig}` : "LOCAL INVENTORY, no cluster"
  })
   web     ${flow.webUrl}   (dev tokens: POST ${flow.webUrl}/dev/token, loopback only)
   worker  ${flow.healthUrl}/readyz
   valkey  ${flow.valkeyAddr}
 Trigger an event from another terminal:
   deno task trigger ghcr.io/acme/app:dev
 or by hand:
   TOKEN=$(curl -s -X POST ${flow.webUrl}/dev/token | jq -r .token)
   curl -i -X POST ${flow.webUrl}/event -H "Authorization: Bearer $TOKEN" \\
     -H "Content-Type: application/json" -d '{"image":"ghcr.io/acme/app","tags":["dev"]}'
 Ctrl-C stops everything.
================================================================================
`);
  const done = Promise.race([flow.web.status, flow.worker.status]);
  const stopped = new Promise<void>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => resolve());
    }
  });
  await Promise.race([done, stopped]);
  await flow.stop();
  Deno.exit(0);
}
