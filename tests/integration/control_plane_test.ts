// Proves the test control plane behaves like a real cluster where our tests
// rely on it: RBAC, TokenRequest, server-side apply, Pod Security warnings,
// ValidatingAdmissionPolicy, and the strategic-merge patch that
// `kubectl rollout restart` sends. Uses the control plane of tests/run.ts
// (KRT_TEST_* env) or, run standalone, starts and stops its own.

import assert from "node:assert/strict";
import {
  type ControlPlane,
  controlPlaneFromEnv,
  type ControlPlaneInfo,
  createKubeClient,
  ensureControlPlaneAssets,
  KubeApiError,
  type KubeClient,
  startControlPlane,
} from "../helpers/control_plane.ts";
import { eventually } from "../helpers/eventually.ts";
import { waitForSettled } from "../helpers/rollout.ts";

let shared: { info: ControlPlaneInfo; owned?: ControlPlane } | undefined;

async function controlPlane(): Promise<ControlPlaneInfo> {
  if (shared === undefined) {
    const fromEnv = controlPlaneFromEnv();
    if (fromEnv !== undefined) {
      shared = { info: fromEnv };
    } else {
      const owned = await startControlPlane({ assetsDir: await ensureControlPlaneAssets() });
      shared = { info: owned, owned };
    }
  }
  return shared.info;
}

async function adminClient(): Promise<KubeClient> {
  const info = await controlPlane();
  return createKubeClient({ server: info.server, caPem: info.caPem, token: info.adminToken });
}

// The shared control plane's processes outlive each test, so the op and
// resource sanitizers would report them; every test closes its own clients.
function integrationTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });
}

function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

function deploymentYaml(name: string, extra = ""): string {
  return `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  labels: { app: ${name} }
spec:
  replicas: 1
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata:
      labels: { app: ${name} }
      annotations: { example.com/kept: "yes" }
    spec:
      containers:
        - name: app
          image: ghcr.io/acme/app:dev
${extra}`;
}

integrationTest(
  "control plane: a ServiceAccount may list Deployments only after a RoleBinding grants it",
  async () => {
    const admin = await adminClient();
    const namespace = uniqueName("krt-rbac");
    let reader: KubeClient | undefined;
    try {
      await admin.createNamespace(namespace);
      await admin.applyYaml(deploymentYaml("app"), { fieldManager: "krt-test", namespace });
      await admin.createServiceAccount(namespace, "reader");
      const info = await controlPlane();
      const token = await admin.serviceAccountToken(namespace, "reader", 600);
      reader = createKubeClient({ server: info.server, caPem: info.caPem, token });
      const listPath = `/apis/apps/v1/namespaces/${namespace}/deployments`;

      assert.equal((await reader.request("GET", listPath)).status, 403);

      await admin.applyYaml(
        `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: list-deployments }
rules:
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: reader-lists-deployments }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: list-deployments }
subjects:
  - { kind: ServiceAccount, name: reader, namespace: ${namespace} }
`,
        { fieldManager: "krt-test", namespace },
      );
      // The RBAC authorizer reads through an informer: the grant lands within moments.
      let listed: unknown;
      await eventually("the RoleBinding to take effect", async () => {
        const response = await reader!.request("GET", listPath);
        listed = response.json;
        return response.status === 200 || undefined;
      });
      const names = (listed as { items: { metadata: { name: string } }[] }).items
        .map((item) => item.metadata.name);
      assert.deepEqual(names, ["app"]);
      // The grant is exactly list: reading another resource stays forbidden.
      const configMaps = await reader.request("GET", `/api/v1/namespaces/${namespace}/configmaps`);
      assert.equal(configMaps.status, 403);
    } finally {
      reader?.close();
      await admin.deleteNamespace(namespace);
      admin.close();
    }
  },
);

integrationTest(
  "control plane: the `kubectl rollout restart` patch changes only restartedAt and bumps generation by one",
  async () => {
    const admin = await adminClient();
    const namespace = uniqueName("krt-restart");
    try {
      await admin.createNamespace(namespace);
      await admin.applyYaml(deploymentYaml("app"), { fieldManager: "krt-test", namespace });
      const path = `/apis/apps/v1/namespaces/${namespace}/deployments/app`;
      // With controllers, "before" is read once the first rollout wrote its status.
      if ((await controlPlane()).controllers) await waitForSettled(admin, namespace, "app");
      const before = (await admin.request("GET", path)).json as Deployment;

      // kubectl formats the time as Go's time.RFC3339 (seconds, no fraction).
      const restartedAt = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
      const patched = await admin.request(
        "PATCH",
        path,
        {
          spec: {
            template: {
              metadata: { annotations: { "kubectl.kubernetes.io/restartedAt": restartedAt } },
            },
          },
        },
        "application/strategic-merge-patch+json",
      );
      assert.equal(patched.status, 200);
      const after = patched.json as Deployment;

      const annotations = after.spec.template.metadata.annotations ?? {};
      assert.equal(annotations["kubectl.kubernetes.io/restartedAt"], restartedAt);
      assert.equal(after.metadata.generation, before.metadata.generation + 1);
      const afterSpec = structuredClone(after.spec);
      delete afterSpec.template.metadata.annotations?.["kubectl.kubernetes.io/restartedAt"];
      assert.deepEqual(afterSpec, before.spec);
      assert.deepEqual(comparableMetadata(after), comparableMetadata(before));
    } finally {
      await admin.deleteNamespace(namespace);
      admin.close();
    }
  },
);

interface Deployment {
  metadata: Record<string, unknown> & { generation: number };
  spec: { template: { metadata: { annotations?: Record<string, string> } } };
}

/** Object metadata without the fields every write changes. */
function comparableMetadata(object: Deployment): Record<string, unknown> {
  const { resourceVersion: _rv, generation: _g, managedFields: _mf, ...rest } = object.metadata;
  return rest;
}

integrationTest(
  "control plane: Pod Security warnings for the restricted level reach applyYaml() callers",
  async () => {
    const admin = await adminClient();
    const namespace = uniqueName("krt-psa");
    try {
      await admin.createNamespace(namespace, { "pod-security.kubernetes.io/warn": "restricted" });

      const loose = await admin.applyYaml(deploymentYaml("loose"), {
        fieldManager: "krt-test",
        namespace,
      });
      assert.ok(
        loose.warnings.some((w) => w.includes('violate PodSecurity "restricted')),
        `expected a restricted warning, got ${JSON.stringify(loose.warnings)}`,
      );

      const restricted = await admin.applyYaml(
        deploymentYaml(
          "restricted",
          `          securityContext:
            allowPrivilegeEscalation: false
            capabilities: { drop: [ALL] }
      securityContext:
        runAsNonRoot: true
        seccompProfile: { type: RuntimeDefault }`,
        ),
        { fieldManager: "krt-test", namespace },
      );
      assert.deepEqual(restricted.warnings, []);
    } finally {
      await admin.deleteNamespace(namespace);
      admin.close();
    }
  },
);

integrationTest(
  "control plane: a ValidatingAdmissionPolicy applied with applyYaml() rejects what it forbids",
  async () => {
    const admin = await adminClient();
    const namespace = uniqueName("krt-vap");
    const policy = uniqueName("krt-test-max-replicas");
    try {
      await admin.createNamespace(namespace, { "krt-test/policy": policy });
      await admin.applyYaml(
        `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: { name: ${policy} }
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [apps]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [deployments]
  validations:
    - expression: "object.spec.replicas <= 2"
      message: at most 2 replicas in tests
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: { name: ${policy} }
spec:
  policyName: ${policy}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: { krt-test/policy: ${policy} }
`,
        { fieldManager: "krt-test" },
      );
      const wide = deploymentYaml("wide").replace("replicas: 1", "replicas: 3");
      // Policies are compiled and picked up asynchronously.
      let rejection: unknown;
      await eventually("the policy to be enforced", async () => {
        try {
          await admin.applyYaml(wide, { fieldManager: "krt-test", namespace });
          return undefined;
        } catch (error) {
          rejection = error;
          return true;
        }
      });
      assert.ok(rejection instanceof KubeApiError, String(rejection));
      assert.equal(rejection.status, 422);
      assert.match(rejection.message, /at most 2 replicas in tests/);
      await admin.applyYaml(deploymentYaml("narrow"), { fieldManager: "krt-test", namespace });
    } finally {
      const admissionApi = "/apis/admissionregistration.k8s.io/v1";
      await admin.request("DELETE", `${admissionApi}/validatingadmissionpolicybindings/${policy}`);
      await admin.request("DELETE", `${admissionApi}/validatingadmissionpolicies/${policy}`);
      await admin.deleteNamespace(namespace);
      admin.close();
    }
  },
);

integrationTest("control plane: the standalone control plane stops within its bound", async () => {
  const owned = shared?.owned;
  shared = undefined;
  if (owned === undefined) return; // tests/run.ts owns the shared one
  const started = Date.now();
  await owned.stop();
  assert.ok(Date.now() - started < 25_000, "stop() took longer than SIGTERM + SIGKILL bounds");
  const port = Number(new URL(owned.server).port);
  const status = await Deno.connect({ hostname: "127.0.0.1", port }).then(
    (conn) => (conn.close(), "listening"),
    () => "refused",
  );
  assert.equal(status, "refused");
});
