/**
 * `deno task dev`: the whole flow on this machine with one command. Web runs
 * in dev mode (a local issuer instead of GitHub, loopback only), a worker runs
 * against the labelled local inventory in k8s/dev/ (no cluster is touched
 * unless --kubeconfig is given), and a Valkey-compatible server is used from
 * VALKEY_ADDR or started here. Web signs events with a key pair made for this
 * run only and the worker verifies them, as in production. Ctrl-C stops everything.
 *
 * With --kubeconfig (one path, or a ':' list merged as kubectl merges it) the
 * worker keeps its permission set and may read exactly the kubeconfig files
 * and the files they name (CA, client certificate and key, token file), and
 * run exactly the exec credential plugin the current user names (e.g.
 * gke-gcloud-auth-plugin), as docs/deployment.md runs it outside a cluster.
 * Such a plugin also gets the user's cloud CLI variables (AWS_*, CLOUDSDK_*,
 * AZURE_*, proxies), which the worker's otherwise clean environment lacks.
 */

import { parseArgs } from "node:util";
import { type Program, ROOT, startProgram } from "./program.ts";
import { generateKeyPair } from "./signing_keys.ts";
import { findValkeyBinary, startValkey, type TestValkey } from "./valkey_server.ts";
import { DEFAULT_WEB_ADDR, DEFAULT_WEB_URL, DEV_IMAGE, TASK_COMMAND } from "./dev_defaults.ts";
import { readKubeconfigNeeds } from "./kubeconfig_files.ts";

/** The embedded default configuration of the local flow. */
export const DEV_DEFAULTS = {
  ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
  GITHUB_OIDC_AUDIENCE: "kuberollouttrigger-dev",
  GITHUB_ALLOWED_ORG: "acme",
  VALKEY_CHANNEL: "kuberollouttrigger-dev",
  LOG_LEVEL: "info",
};
/** The dev worker's CLUSTER_NAME, whose report key web is given. */
const DEV_CLUSTER = "local";

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
  /** The worker's WATCH_NAMESPACES (comma-separated); empty means cluster-wide. */
  watchNamespaces?: string;
  /** The user's environment, of which an exec plugin gets what userPluginEnvironment() keeps. */
  userEnv?: Record<string, string>;
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

/** What the dev worker is granted beyond its permission set, and whether it runs a plugin. */
export interface WorkerGrants {
  /** Deno flags: --allow-read of exactly its files, --allow-run of exactly its plugin. */
  flags: string[];
  /** The exec plugins the kubeconfig names (none for the local inventory). */
  commands: string[];
}

/**
 * The worker's grants: read its kubeconfig files and the files they name, or
 * the local inventory; run the exec plugin the kubeconfig names, if any.
 */
export async function workerGrants(kubeconfig: string | undefined): Promise<WorkerGrants> {
  const needs = kubeconfig
    ? await readKubeconfigNeeds(kubeconfig)
    : { files: [LOCAL_INVENTORY], commands: [] };
  for (const [what, list] of [["file", needs.files], ["exec plugin", needs.commands]] as const) {
    const comma = list.find((f) => f.includes(","));
    if (comma !== undefined) {
      throw new Error(
        `The kubeconfig names a ${what} whose path has a comma, which a Deno --allow flag cannot grant: ${comma}; move or rename it`,
      );
    }
  }
  const flags = [`--allow-read=${needs.files.join(",")}`];
  if (needs.commands.length > 0) flags.push(`--allow-run=${needs.commands.join(",")}`);
  return { flags, commands: needs.commands };
}

/**
 * The variables of the user's environment an exec plugin may need: the cloud
 * CLIs' profiles, regions, config folders and credentials, the locale and
 * proxies. The dev worker otherwise starts with a clean environment, where
 * `aws eks get-token` would miss AWS_PROFILE.
 */
const PLUGIN_ENV =
  /^(?:(?:AWS|AZURE|AAD|CLOUDSDK|GOOGLE|KUBELOGIN)_\w+|KUBECACHEDIR|USE_GKE_GCLOUD_AUTH_PLUGIN|USER|LOGNAME|LANG|LC_ALL|SSL_CERT_FILE|SSL_CERT_DIR|(?:HTTPS?|NO)_PROXY|(?:https?|no)_proxy)$/;

/** The part of `env` an exec plugin gets (see PLUGIN_ENV). */
export function userPluginEnvironment(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([name]) => PLUGIN_ENV.test(name)));
}

/** What a program said last about why it is not running: its error line, else stderr. */
function lastWords(program: Program): string {
  const line = program.logs.findLast((l) => l.level === "error") ??
    program.logs.findLast((l) => l.level === "warn");
  if (line) return `${line.msg}${typeof line.error === "string" ? `: ${line.error}` : ""}`;
  const stderr = program.stderr().split("\n").filter((l) =>
    l.trim() !== "" && !l.includes("Permissions in the config file is an experimental feature")
  );
  return stderr.at(-1) ?? "no output";
}

/** A worker log line saying the API server refused its list or watch (403). */
function isRefusal(l: Record<string, unknown>): boolean {
  return typeof l.scope === "string" && typeof l.error === "string" && /: 403 /.test(l.error);
}

/** What the dev flow says when the API server refuses the worker. */
function refusalMessage(line: Record<string, unknown>): string {
  return `the API server does not let the worker list Deployments ${
    line.scope === "(cluster)" ? "cluster-wide" : `in ${line.scope}`
  } (403): set WATCH_NAMESPACES (or --watch-namespaces) to namespaces the kubeconfig's user may list and watch, or grant it the cluster-wide RBAC in k8s/rbac/`;
}

/**
 * Waits for a startup log line. A program that exits, or a worker the API
 * server refuses (403: it would retry forever), fails at once with the
 * program's own words; a timeout says what was awaited and the last warning.
 */
async function awaitStartup(
  program: Program,
  { name, msg, timeoutMs }: { name: string; msg: string; timeoutMs: number },
): Promise<Record<string, unknown>> {
  const refused = isRefusal;
  let line;
  try {
    line = await program.waitForLog((l) => l.msg === msg || refused(l), timeoutMs);
  } catch {
    const exited = await Promise.race([
      program.status.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 100)),
    ]);
    throw new Error(
      exited
        ? `${name} exited at startup: ${lastWords(program)}`
        : `${name} did not log "${msg}" within ${timeoutMs / 1000} s; last: ${lastWords(program)}`,
    );
  }
  if (refused(line)) throw new Error(refusalMessage(line));
  return line;
}

/**
 * Waits until the worker's /readyz answers 200 (subscribed and every
 * namespace synced). A 403 from the API server or an exit fails at once, as
 * in awaitStartup.
 */
async function awaitReady(program: Program, healthUrl: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const refused = program.logs.find(isRefusal);
    if (refused) throw new Error(refusalMessage(refused));
    const exited = await Promise.race([
      program.status.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 200)),
    ]);
    if (exited) throw new Error(`the worker exited at startup: ${lastWords(program)}`);
    const ready = await fetch(`${healthUrl}/readyz`).then(async (res) => {
      await res.body?.cancel();
      return res.ok;
    }, () => false);
    if (ready) return;
  }
  throw new Error(
    `the worker was not ready within ${timeoutMs / 1000} s; last: ${lastWords(program)}`,
  );
}

/** Starts Valkey (if needed), web in dev mode and a worker. */
export async function startLocalFlow(options: LocalFlowOptions = {}): Promise<LocalFlow> {
  const grants = await workerGrants(options.kubeconfig);
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
  // Ephemeral key pairs, web's and the cluster's: the local flow takes the signed path
  // production takes, both ways.
  const [keys, clusterKeys] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const web = startProgram({
    args: ["web", "--dev-mode", "--listen-addr", options.webAddr ?? DEFAULT_WEB_ADDR],
    env: {
      ...env,
      EVENT_SIGNING_KEY: keys.privatePem,
      REPORT_VERIFY_KEYS: `${DEV_CLUSTER}=${clusterKeys.publicLine}`,
    },
    echo: options.echo,
  });
  const source: Record<string, string> = options.kubeconfig
    ? { KUBECONFIG: options.kubeconfig }
    : { LOCAL_INVENTORY: LOCAL_INVENTORY };
  if (options.watchNamespaces) source.WATCH_NAMESPACES = options.watchNamespaces;
  // Only a worker that runs a plugin gets any of the user's environment.
  const pluginEnv = grants.commands.length > 0 ? userPluginEnvironment(options.userEnv ?? {}) : {};
  const worker = startProgram({
    args: ["worker", "--health-listen-addr", options.healthAddr ?? "127.0.0.1:8081"],
    env: {
      ...pluginEnv,
      ...env,
      ...source,
      CLUSTER_NAME: DEV_CLUSTER,
      EVENT_VERIFY_KEYS: keys.publicPem,
      REPORT_SIGNING_KEY: clusterKeys.privatePem,
    },
    permissions: ["-P=worker", ...grants.flags],
    echo: options.echo,
  });
  const stop = async () => {
    await Promise.all([web.stop(), worker.stop()]);
    await valkey?.stop();
  };
  // A real cluster may take a while to list; the local inventory does not.
  const syncMs = options.kubeconfig ? 60_000 : 20_000;
  try {
    const listening = await awaitStartup(web, {
      name: "web",
      msg: "web listening",
      timeoutMs: 20_000,
    });
    const health = await awaitStartup(worker, {
      name: "the worker",
      msg: "worker health server listening",
      timeoutMs: 20_000,
    });
    await awaitStartup(worker, {
      name: "the worker",
      msg: "reading the event stream",
      timeoutMs: syncMs,
    });
    // The worker subscribes while its inventory syncs; ready means both.
    await awaitReady(worker, `http://${health.addr}`, syncMs);
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

/** What the banner needs to know about how the flow was started. */
export interface BannerOptions {
  kubeconfig?: string;
  watchNamespaces?: string;
}

/** The text `deno task dev` prints once everything runs; its commands are the README's. */
export function renderBanner(
  flow: Pick<LocalFlow, "webUrl" | "healthUrl" | "valkeyAddr">,
  options: BannerOptions = {},
): string {
  // `deno task trigger` defaults to the default address; any other needs --url.
  const url = flow.webUrl === DEFAULT_WEB_URL ? "" : ` --url ${flow.webUrl}`;
  const source = options.kubeconfig
    ? `cluster from ${options.kubeconfig}, namespaces: ${options.watchNamespaces || "all"}`
    : "LOCAL INVENTORY, no cluster";
  return `
================================================================================
 kuberollouttrigger local flow (DEV MODE: not GitHub, ${source})
   web     ${flow.webUrl}   (dev tokens: POST ${flow.webUrl}/dev/token, loopback only)
   worker  ${flow.healthUrl}/readyz
   valkey  ${flow.valkeyAddr}
 Trigger an event from another terminal:
   ${TASK_COMMAND} trigger ${DEV_IMAGE}${url}
 or by hand:
   TOKEN=$(curl -s -X POST ${flow.webUrl}/dev/token | jq -r .token)
   curl -i -X POST ${flow.webUrl}/event -H "Authorization: Bearer $TOKEN" \\
     -H "Content-Type: application/json" -d '{"image":"ghcr.io/acme/app","tags":["dev"]}'
 Ctrl-C stops everything.
================================================================================
`;
}

/**
 * Paths the user typed (one, or a ':' list as KUBECONFIG takes), each made
 * absolute against the folder they ran the task from.
 */
function fromUserDir(paths: string): string {
  // `deno task` runs in deno.json's folder and keeps the user's folder in INIT_CWD.
  const dir = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  return paths.split(":").map((path) =>
    path === "" || path.startsWith("/") ? path : `${dir}/${path}`
  )
    .join(":");
}

const USAGE =
  "usage: deno task dev [--kubeconfig PATH[:PATH…]] [--watch-namespaces a,b] [--web-addr 127.0.0.1:8080] [--health-addr 127.0.0.1:8081]";

if (import.meta.main) {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        kubeconfig: { type: "string" },
        "watch-namespaces": { type: "string" },
        "web-addr": { type: "string" },
        "health-addr": { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`deno task dev: ${(err as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
  const echo = (line: string) => console.log(line);
  const kubeconfig = values.kubeconfig ? fromUserDir(values.kubeconfig) : undefined;
  // The task starts the worker with a clean environment; WATCH_NAMESPACES is
  // the one worker setting the dev flow takes from the user's.
  const watchNamespaces = values["watch-namespaces"] ?? Deno.env.get("WATCH_NAMESPACES");
  let flow: LocalFlow;
  try {
    flow = await startLocalFlow({
      webAddr: values["web-addr"],
      healthAddr: values["health-addr"],
      valkeyAddr: Deno.env.get("VALKEY_ADDR"),
      kubeconfig,
      watchNamespaces,
      userEnv: Deno.env.toObject(),
      echo,
    });
  } catch (err) {
    console.error(`deno task dev: ${(err as Error).message}`);
    Deno.exit(1);
  }
  console.log(renderBanner(flow, { kubeconfig, watchNamespaces }));
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
