import { assertEquals } from "../../helpers/assert.ts";
import {
  COMPONENT,
  ROLLOUT_TRIGGERED,
  rolloutTriggeredEvent,
} from "../../../worker/kube/events.ts";

Deno.test("rolloutTriggeredEvent() names the Deployment, the event id and every image, in whole seconds", () => {
  const event = rolloutTriggeredEvent(
    { metadata: { name: "api", namespace: "shop", uid: "u-1", resourceVersion: "42" } },
    {
      id: "0b6f8c1e-0000-4000-8000-000000000000",
      time: "2026-01-02T03:04:05.678Z",
      image: "ghcr.io/acme/app",
      tags: ["dev", "v1"],
    },
    "prod-eu",
    new Date("2026-01-02T03:04:06.789Z"),
  );
  assertEquals(event, {
    apiVersion: "v1",
    kind: "Event",
    metadata: { generateName: "api.", namespace: "shop" },
    involvedObject: {
      apiVersion: "apps/v1",
      kind: "Deployment",
      namespace: "shop",
      name: "api",
      uid: "u-1",
      resourceVersion: "42",
    },
    reason: ROLLOUT_TRIGGERED,
    message:
      "Restarted by kuberollouttrigger for event 0b6f8c1e-0000-4000-8000-000000000000: ghcr.io/acme/app:dev, ghcr.io/acme/app:v1",
    type: "Normal",
    source: { component: COMPONENT },
    reportingComponent: COMPONENT,
    reportingInstance: "kuberollouttrigger-prod-eu",
    firstTimestamp: "2026-01-02T03:04:06Z",
    lastTimestamp: "2026-01-02T03:04:06Z",
    count: 1,
  });
});

Deno.test("rolloutTriggeredEvent() keeps the message within the API's 1024 characters", () => {
  const event = rolloutTriggeredEvent(
    { metadata: { name: "api", namespace: "shop" } },
    {
      id: "0b6f8c1e-0000-4000-8000-000000000000",
      time: "2026-01-02T03:04:05Z",
      image: `ghcr.io/acme/${"a".repeat(200)}`,
      tags: Array.from({ length: 20 }, (_, i) => `tag-${i}`),
    },
    "c",
    new Date(0),
  );
  assertEquals(event.message.length, 1024);
});

Deno.test("rolloutTriggeredEvent() names the verified sender's repository and ref", () => {
  const event = rolloutTriggeredEvent(
    { metadata: { name: "api", namespace: "shop" } },
    {
      id: "0b6f8c1e-0000-4000-8000-000000000000",
      time: "2026-01-02T03:04:05.678Z",
      image: "ghcr.io/acme/app",
      tags: ["dev"],
      sender: {
        repository: "acme/app",
        repositoryId: "2002",
        ref: "refs/heads/main",
        workflowRef: "acme/app/.github/workflows/build.yml@refs/heads/main",
      },
    },
    "prod-eu",
    new Date("2026-01-02T03:04:06.789Z"),
  );
  assertEquals(
    event.message,
    "Restarted by kuberollouttrigger for event 0b6f8c1e-0000-4000-8000-000000000000 from acme/app (refs/heads/main): ghcr.io/acme/app:dev",
  );
});
