/**
 * `deno task test`: prepares the real servers the suite needs, runs every test
 * under tests/ once, and stops the servers. A Valkey-compatible server is
 * started per test (it is cheap); one kube-apiserver + etcd is started here
 * for the whole run, only when a selected test file uses it, and handed to
 * tests through KRT_TEST_* variables. Missing servers fail the run under
 * CI=true and are reported loudly otherwise.
 * The shared cluster runs kube-controller-manager (Deployment, ReplicaSet,
 * ServiceAccount controllers) and a test node, so Deployments roll out; a
 * second cluster is started only by the tests that need one.
 * Extra arguments go to `deno test` (e.g. `--filter web`); test files or folders
 * among them replace the default `tests/`.
 */

import {
  ASSETS_ENV,
  type ControlPlane,
  controlPlaneEnv,
  describeTimings,
  ensureControlPlaneAssets,
  KUBECTL_ENV,
  startControlPlane,
} from "./helpers/control_plane.ts";
import { ROOT } from "./helpers/program.ts";
import { IN_CI } from "./helpers/skip.ts";
import { needsControlPlane, pathArguments, testFilesUnder } from "./helpers/test_files.ts";
import { findValkeyBinary } from "./helpers/valkey.ts";

function say(text: string): void {
  console.error(`[test] ${text}`);
}

function problem(text: string): void {
  if (IN_CI) {
    say(`ERROR: ${text}`);
    Deno.exit(1);
  }
  say(`WARNING: ${text}; the tests that need it are skipped`);
}

async function locateControlPlane(): Promise<string | undefined> {
  try {
    return await ensureControlPlaneAssets();
  } catch {
    problem(
      "kube-apiserver, etcd, kube-controller-manager and kubectl are not available (see the message above)",
    );
    return undefined;
  }
}

if (!findValkeyBinary()) {
  problem(
    "no valkey-server or redis-server on PATH: install one (Debian: apt-get install redis-server)",
  );
}

// Paths among the arguments replace the whole suite: `deno task test tests/web/x_test.ts`.
const paths = pathArguments(Deno.args);
const selected = (paths.length ? paths : ["tests/"]).flatMap(testFilesUnder);

const env: Record<string, string> = {};
let controlPlane: ControlPlane | undefined;
if (!needsControlPlane(selected)) {
  say("no selected test uses the control plane; not starting it");
} else if (Deno.env.get("KRT_TEST_KUBE_SERVER")) {
  say("using the control plane named by KRT_TEST_KUBE_SERVER");
} else {
  const assets = await locateControlPlane();
  if (assets) {
    const started = performance.now();
    try {
      controlPlane = await startControlPlane({ assetsDir: assets, controllers: true });
    } catch (err) {
      problem(`the control plane did not start: ${(err as Error).message}`);
    }
    if (controlPlane) {
      say(
        `control plane up at ${controlPlane.server} in ${
          Math.round(performance.now() - started)
        } ms (${describeTimings(controlPlane.timings)})`,
      );
      Object.assign(env, controlPlaneEnv(controlPlane), {
        [KUBECTL_ENV]: `${assets}/kubectl`,
        [ASSETS_ENV]: assets,
      });
    }
  }
}

let code = 1;
const stop = async () => {
  await controlPlane?.stop();
};
const onSignal = () => {
  stop().finally(() => Deno.exit(130));
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);
try {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "--allow-all", "--no-prompt", ...Deno.args, ...(paths.length ? [] : ["tests/"])],
    cwd: ROOT,
    env,
    stdin: "null",
  }).spawn();
  code = (await child.status).code;
} finally {
  await stop();
}
Deno.exit(code);
