// The test control plane's public surface, kept in one place so tests keep
// importing from here. The parts live in their own modules:
//   ./processes.ts         server child processes, free ports
//   ./certificates.ts      each cluster's CA, serving cert, SA key, tokens
//   ./test_cluster.ts      starting etcd, kube-apiserver, kube-controller-manager
//   ./test_node.ts         the node that binds pods and reports them Running
//   ./kube_client.ts       the Kubernetes API client for tests, kubeconfigs
//   ./control_plane_env.ts the KRT_TEST_* variables and the skip policy

export {
  type ControlPlane,
  type ControlPlaneInfo,
  describeTimings,
  ensureControlPlaneAssets,
  startControlPlane,
  type StartControlPlaneOptions,
  type StartTimings,
} from "./test_cluster.ts";
export {
  ASSETS_ENV,
  CONTROL_PLANE_ENV,
  CONTROLLERS_ENV,
  controlPlaneEnv,
  controlPlaneFromEnv,
  KUBECTL_ENV,
  requireControlPlane,
  requireRolloutCluster,
  type RolloutCluster,
} from "./control_plane_env.ts";
export {
  type ApplyResult,
  createKubeClient,
  KubeApiError,
  type KubeClient,
  type KubeConnection,
  type KubeResponse,
  parseWarnings,
  resourcePath,
  writeKubeconfig,
} from "./kube_client.ts";
export { READY_LABEL, startTestNode, type TestNode } from "./test_node.ts";
