import { assertEquals } from "../helpers/assert.ts";
import type { Deployment } from "../../worker/kube/objects.ts";
import { planRestarts, summarizeDeployment } from "../../worker/plan.ts";
import { ALLOWED_REPOSITORIES_ANNOTATION } from "../../worker/deployment_access.ts";
import type { Sender } from "../../shared/event_sender.ts";

type C = { name?: string; image: string; imagePullPolicy?: string };

function deployment(
  name: string,
  containers: C[],
  extra: { init?: C[]; paused?: boolean; annotations?: Record<string, string> } = {},
): Deployment {
  return {
    metadata: { name, namespace: "ns", resourceVersion: "7", annotations: extra.annotations },
    spec: {
      paused: extra.paused,
      template: {
        spec: {
          containers: containers.map((c, i) => ({ name: c.name ?? `c${i}`, ...c })),
          initContainers: extra.init?.map((c, i) => ({ name: c.name ?? `i${i}`, ...c })),
        },
      },
    },
  };
}

function plan(image: string, tags: string[], ds: Deployment[]) {
  return planRestarts({ image, tags }, ds.map(summarizeDeployment));
}

const DIGEST = `sha256:${"c".repeat(64)}`;

Deno.test("planRestarts() matches container images after normalisation", async (t) => {
  const cases: [string, string, string[], C[], C[] | undefined, boolean][] = [
    [
      "nginx matches docker.io/library/nginx:latest",
      "docker.io/library/nginx",
      ["latest"],
      [{ image: "nginx" }],
      undefined,
      true,
    ],
    [
      "nginx:latest matches docker.io/library/nginx:latest",
      "docker.io/library/nginx",
      ["latest"],
      [{ image: "nginx:latest" }],
      undefined,
      true,
    ],
    [
      "library/nginx matches",
      "docker.io/library/nginx",
      ["latest"],
      [{ image: "library/nginx" }],
      undefined,
      true,
    ],
    [
      "GHCR.io host case",
      "ghcr.io/acme/app",
      ["dev"],
      [{ image: "GHCR.io/acme/app:dev" }],
      undefined,
      true,
    ],
    [
      "a registry with a port",
      "registry.example.com:5000/team/app",
      ["v1"],
      [{ image: "registry.example.com:5000/team/app:v1" }],
      undefined,
      true,
    ],
    [
      "another port does not match",
      "registry.example.com:5000/team/app",
      ["v1"],
      [{ image: "registry.example.com:5001/team/app:v1" }],
      undefined,
      false,
    ],
    [
      "an initContainer-only use",
      "ghcr.io/acme/migrate",
      ["dev"],
      [{ image: "ghcr.io/acme/app:dev" }],
      [{ image: "ghcr.io/acme/migrate:dev" }],
      true,
    ],
    [
      "one of several containers",
      "ghcr.io/acme/sidecar",
      ["dev"],
      [{ image: "ghcr.io/acme/app:dev" }, { image: "ghcr.io/acme/sidecar:dev" }],
      undefined,
      true,
    ],
    [
      "one of several tags in the event",
      "ghcr.io/acme/app",
      ["dev", "v1.2.3"],
      [{ image: "ghcr.io/acme/app:v1.2.3" }],
      undefined,
      true,
    ],
    [
      "the same repository with another tag",
      "ghcr.io/acme/app",
      ["dev"],
      [{ image: "ghcr.io/acme/app:prod" }],
      undefined,
      false,
    ],
    [
      "a longer repository with the same prefix",
      "ghcr.io/acme/app",
      ["dev"],
      [{ image: "ghcr.io/acme/app-worker:dev" }],
      undefined,
      false,
    ],
    [
      "a repository below it",
      "ghcr.io/acme/app",
      ["dev"],
      [{ image: "ghcr.io/acme/app/sub:dev" }],
      undefined,
      false,
    ],
    [
      "docker.io/acme/app vs acme/app",
      "docker.io/acme/app",
      ["dev"],
      [{ image: "acme/app:dev" }],
      undefined,
      true,
    ],
    [
      "an image that does not parse",
      "ghcr.io/acme/app",
      ["dev"],
      [{ image: "GHCR.io/Acme/App:dev" }],
      undefined,
      false,
    ],
  ];
  for (const [name, image, tags, containers, init, expected] of cases) {
    await t.step(name, () => {
      const result = plan(image, tags, [deployment("d", containers, { init })]);
      assertEquals(result.restarts.length, expected ? 1 : 0);
    });
  }
});

Deno.test("planRestarts() restarts a Deployment once however many containers and tags match", () => {
  const result = plan("ghcr.io/acme/app", ["dev", "v1"], [
    deployment("d", [{ name: "a", image: "ghcr.io/acme/app:dev" }, {
      name: "b",
      image: "ghcr.io/acme/app:v1",
    }], {
      init: [{ name: "m", image: "ghcr.io/acme/app:dev" }],
    }),
  ]);
  assertEquals(result.restarts.length, 1);
  assertEquals(result.restarts[0].containers, ["init:m", "a", "b"]);
});

Deno.test("planRestarts() skips digest pins, paused and opted-out Deployments with a reason", () => {
  const result = plan("ghcr.io/acme/app", ["dev"], [
    deployment("pinned", [{ image: `ghcr.io/acme/app@${DIGEST}` }]),
    deployment("pinned-tag", [{ image: `ghcr.io/acme/app:dev@${DIGEST}` }]),
    deployment("paused", [{ image: "ghcr.io/acme/app:dev" }], { paused: true }),
    deployment("ignored", [{ image: "ghcr.io/acme/app:dev" }], {
      annotations: { "kuberollouttrigger/ignore": "true" },
    }),
    deployment("not-ignored", [{ image: "ghcr.io/acme/app:dev" }], {
      annotations: { "kuberollouttrigger/ignore": "false" },
    }),
    deployment("other", [{ image: "ghcr.io/acme/other:dev" }]),
  ]);
  assertEquals(result.restarts.map((r) => r.name), ["not-ignored"]);
  assertEquals(result.skipped.map((s) => [s.name, s.reason]), [
    ["pinned", "digest_pinned"],
    ["pinned-tag", "digest_pinned"],
    ["paused", "paused"],
    ["ignored", "opted_out"],
  ]);
  assertEquals(result.matched, 3, "not-ignored, paused and ignored use ghcr.io/acme/app:dev");
});

Deno.test("planRestarts() counts as matched only Deployments that use the image with an event tag", async (t) => {
  const cases: [string, string[], Deployment[], number, [string, string][]][] = [
    [
      "a tag nothing uses, beside a digest pin: nothing matched, the pin skipped",
      ["nothing"],
      [
        deployment("pinned", [{ image: `ghcr.io/acme/app@${DIGEST}` }]),
        deployment("dev", [{ image: "ghcr.io/acme/app:dev" }]),
      ],
      0,
      [["pinned", "digest_pinned"]],
    ],
    [
      "a pinned container beside an unpinned one of the tag: matched",
      ["dev"],
      [
        deployment("mixed", [
          { image: `ghcr.io/acme/app:dev@${DIGEST}` },
          { image: "ghcr.io/acme/app:dev" },
        ]),
      ],
      1,
      [],
    ],
    [
      "paused and opted out use the image: matched and skipped",
      ["dev"],
      [
        deployment("paused", [{ image: "ghcr.io/acme/app:dev" }], { paused: true }),
        deployment("ignored", [{ image: "ghcr.io/acme/app:dev" }], {
          annotations: { "kuberollouttrigger/ignore": "true" },
        }),
      ],
      2,
      [["paused", "paused"], ["ignored", "opted_out"]],
    ],
  ];
  for (const [name, tags, ds, matched, skipped] of cases) {
    await t.step(name, () => {
      const result = plan("ghcr.io/acme/app", tags, ds);
      assertEquals(result.matched, matched);
      assertEquals(result.skipped.map((s) => [s.name, s.reason]), skipped);
    });
  }
});

Deno.test("planRestarts() warns when the effective pull policy is not Always", () => {
  const result = plan("ghcr.io/acme/app", ["dev", "latest"], [
    deployment("explicit", [{ image: "ghcr.io/acme/app:dev", imagePullPolicy: "IfNotPresent" }]),
    deployment("defaulted", [{ image: "ghcr.io/acme/app:dev" }]),
    deployment("always", [{ image: "ghcr.io/acme/app:dev", imagePullPolicy: "Always" }]),
    deployment("latest", [{ image: "ghcr.io/acme/app" }]),
  ]);
  assertEquals(result.restarts.map((r) => [r.name, r.pullPolicyWarnings.length]), [
    ["explicit", 1],
    ["defaulted", 1],
    ["always", 0],
    ["latest", 0],
  ]);
});

const SENDER_A: Sender = {
  repository: "acme/team-a",
  repositoryId: "1001",
  ref: "refs/heads/main",
  workflowRef: "acme/team-a/.github/workflows/build.yml@refs/heads/main",
};

Deno.test("security: planRestarts() gives the Deployment's owner a say over who restarts it", async (t) => {
  const allowed = { [ALLOWED_REPOSITORIES_ANNOTATION]: "acme/team-a" };
  const forB = { [ALLOWED_REPOSITORIES_ANNOTATION]: "acme/team-b, id:2002" };
  const cases: [string, Record<string, string> | undefined, Sender | undefined, boolean, string][] =
    [
      ["no annotation, opt-in optional: restarted", undefined, SENDER_A, false, "restart"],
      ["no annotation, opt-in mandatory: not_opted_in", undefined, SENDER_A, true, "not_opted_in"],
      ["listed sender: restarted", allowed, SENDER_A, true, "restart"],
      ["another repository's Deployment: not_allowed", forB, SENDER_A, false, "not_allowed"],
      ["an unsigned event (no sender): not_allowed", allowed, undefined, false, "not_allowed"],
      [
        "an annotation that does not parse: not_allowed",
        { [ALLOWED_REPOSITORIES_ANNOTATION]: "acme" },
        SENDER_A,
        false,
        "not_allowed",
      ],
      [
        "the owner's opt-out comes first",
        { ...allowed, "kuberollouttrigger/ignore": "true" },
        SENDER_A,
        false,
        "opted_out",
      ],
    ];
  for (const [name, annotations, sender, requireOptIn, expected] of cases) {
    await t.step(name, () => {
      const p = planRestarts(
        { image: "ghcr.io/acme/app", tags: ["v1"], sender },
        [summarizeDeployment(deployment("d", [{ image: "ghcr.io/acme/app:v1" }], { annotations }))],
        { requireOptIn },
      );
      assertEquals(p.restarts.length === 1 ? "restart" : p.skipped[0].reason, expected);
      // Skipped for who may restart it, the Deployment still runs the image: matched.
      assertEquals(p.matched, 1);
    });
  }
  await t.step("a refused Deployment's skip names the refused repository for the log", () => {
    const p = planRestarts(
      { image: "ghcr.io/acme/app", tags: ["v1"], sender: SENDER_A },
      [summarizeDeployment(
        deployment("d", [{ image: "ghcr.io/acme/app:v1" }], { annotations: forB }),
      )],
    );
    assertEquals(p.skipped[0].detail?.includes("acme/team-a"), true);
  });
  await t.step("who may restart it comes before paused (the reason that needs a person)", () => {
    const p = planRestarts(
      { image: "ghcr.io/acme/app", tags: ["v1"], sender: SENDER_A },
      [
        summarizeDeployment(
          deployment("d", [{ image: "ghcr.io/acme/app:v1" }], { annotations: forB, paused: true }),
        ),
      ],
    );
    assertEquals(p.skipped[0].reason, "not_allowed");
  });
});
