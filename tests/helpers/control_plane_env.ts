// How tests find the shared test cluster that tests/run.ts started: KRT_TEST_*
// environment variables, and the suite's skip policy (./skip.ts) when they
// are missing. Test-only code; nothing here enters the product.

import { missing } from "./skip.ts";
import type { ControlPlane, ControlPlaneInfo } from "./test_cluster.ts";

/** The env var names tests/run.ts exports for one shared control plane. */
export const CONTROL_PLANE_ENV = {
  server: "KRT_TEST_KUBE_SERVER",
  caFile: "KRT_TEST_KUBE_CA_FILE",
  token: "KRT_TEST_KUBE_TOKEN",
  kubeconfig: "KRT_TEST_KUBECONFIG",
} as const;

/** Set to "true" by tests/run.ts when the shared cluster runs the controllers and a test node. */
export const CONTROLLERS_ENV = "KRT_TEST_KUBE_CONTROLLERS";
/** The kubectl of the same release as the cluster. */
export const KUBECTL_ENV = "KRT_TEST_KUBECTL";
/** The folder with the cluster binaries, for tests that start a cluster of their own. */
export const ASSETS_ENV = "KRT_TEST_CONTROL_PLANE_ASSETS";

const HOW_TO_GET = "run the tests through `deno task test` (tests/run.ts), which starts one";

/** The control plane tests/run.ts exported, or undefined when KRT_TEST_KUBE_SERVER is unset. */
export function controlPlaneFromEnv(): ControlPlaneInfo | undefined {
  const values = {
    server: Deno.env.get(CONTROL_PLANE_ENV.server),
    caFile: Deno.env.get(CONTROL_PLANE_ENV.caFile),
    token: Deno.env.get(CONTROL_PLANE_ENV.token),
    kubeconfig: Deno.env.get(CONTROL_PLANE_ENV.kubeconfig),
  };
  if (values.server === undefined || values.server === "") return undefined;
  const missingNames = (Object.keys(values) as (keyof typeof values)[])
    .filter((key) => !values[key])
    .map((key) => CONTROL_PLANE_ENV[key]);
  if (missingNames.length > 0) {
    throw new Error(
      `${CONTROL_PLANE_ENV.server} is set but ${missingNames.join(", ")} is not; set all four`,
    );
  }
  return {
    server: values.server,
    caPem: Deno.readTextFileSync(values.caFile!),
    adminToken: values.token!,
    adminKubeconfigPath: values.kubeconfig!,
    controllers: Deno.env.get(CONTROLLERS_ENV) === "true",
  };
}

/** The env vars that make controlPlaneFromEnv() return this control plane (for tests/run.ts). */
export function controlPlaneEnv(controlPlane: ControlPlane): Record<string, string> {
  return {
    [CONTROL_PLANE_ENV.server]: controlPlane.server,
    [CONTROL_PLANE_ENV.caFile]: controlPlane.caFile,
    [CONTROL_PLANE_ENV.token]: controlPlane.adminToken,
    [CONTROL_PLANE_ENV.kubeconfig]: controlPlane.adminKubeconfigPath,
    [CONTROLLERS_ENV]: String(controlPlane.controllers === true),
  };
}

/**
 * controlPlaneFromEnv(), with the suite's policy for when it is missing: under
 * CI=true it throws (a skipped integration test would hide a broken setup);
 * elsewhere it prints a loud skip reason and returns undefined.
 */
export function requireControlPlane(what = "this test"): ControlPlaneInfo | undefined {
  const info = controlPlaneFromEnv();
  if (info !== undefined) return info;
  missing(`The Kubernetes control plane (${CONTROL_PLANE_ENV.server}) for ${what}`, HOW_TO_GET);
  return undefined;
}

/** What rollout tests need: the shared cluster with its controllers, and kubectl. */
export interface RolloutCluster {
  info: ControlPlaneInfo;
  kubectl: string;
  /** For tests that start a second cluster. */
  assetsDir: string;
}

/** requireControlPlane(), plus the controllers and kubectl, under the same policy. */
export function requireRolloutCluster(what = "this test"): RolloutCluster | undefined {
  const info = requireControlPlane(what);
  if (info === undefined) return undefined;
  const kubectl = Deno.env.get(KUBECTL_ENV);
  const assetsDir = Deno.env.get(ASSETS_ENV);
  if (!info.controllers || !kubectl || !assetsDir) {
    missing(
      `A control plane with kube-controller-manager and a test node (${CONTROLLERS_ENV}=true,` +
        ` ${KUBECTL_ENV}, ${ASSETS_ENV}) for ${what}`,
      HOW_TO_GET,
    );
    return undefined;
  }
  return { info, kubectl, assetsDir };
}
