/** cannotFollow(): when a later event may follow a restart recorded in the dedup window. */

import { assertEquals } from "../helpers/assert.ts";
import { parseEventMessage } from "../../shared/event.ts";
import type { MadeRestart } from "../../worker/coordination.ts";
import { cannotFollow } from "../../worker/followed_restart.ts";
import type { Deployment } from "../../worker/kube/objects.ts";

const TIME = "2026-12-06T10:00:00.000Z";
const EVENT = parseEventMessage(
  JSON.stringify({ id: crypto.randomUUID(), time: TIME, image: "ghcr.io/acme/app", tags: ["dev"] }),
  ["ghcr.io/acme"],
);
const AT = Date.parse(TIME) - 2000;
const MADE: MadeRestart = {
  eventId: crypto.randomUUID(),
  generation: 4,
  restartedAt: AT,
  patchedAt: Date.parse(TIME) + 300,
};

function current(edit: (d: Deployment) => void = () => {}): Deployment {
  const d = {
    metadata: { name: "api", namespace: "shop", generation: 4 },
    spec: {
      template: {
        metadata: {
          annotations: { "kubectl.kubernetes.io/restartedAt": new Date(AT).toISOString() },
        },
        spec: { containers: [{ name: "c", image: "ghcr.io/acme/app:dev" }] },
      },
    },
  } as Deployment;
  edit(d);
  return d;
}

Deno.test("cannotFollow() follows only a restart the Deployment bears out, made after this event", async (t) => {
  const cases: [string, MadeRestart, Deployment, string | undefined][] = [
    ["the restart as recorded", MADE, current(), undefined],
    [
      "a later generation (the controller moved on)",
      MADE,
      current((d) => d.metadata.generation = 5),
      undefined,
    ],
    [
      "patched the moment the event was accepted",
      { ...MADE, patchedAt: Date.parse(TIME) },
      current(),
      undefined,
    ],
    [
      "behind the recorded generation",
      MADE,
      current((d) => d.metadata.generation = 3),
      "the Deployment is not at the generation that restart produced",
    ],
    [
      "no generation at all",
      MADE,
      current((d) => delete d.metadata.generation),
      "the Deployment is not at the generation that restart produced",
    ],
    [
      "another restartedAt (a later or forged restart)",
      { ...MADE, restartedAt: AT - 1 },
      current(),
      "the Deployment's template does not carry that restart",
    ],
    [
      "patched before this event was accepted: its pods may run the previous push",
      { ...MADE, patchedAt: Date.parse(TIME) - 1 },
      current(),
      "that restart was made before this event was accepted",
    ],
    [
      "another image now",
      MADE,
      current((d) => d.spec!.template!.spec!.containers![0].image = "ghcr.io/acme/app:other"),
      "the Deployment no longer runs the image with this event's tags",
    ],
    [
      "paused now",
      MADE,
      current((d) => d.spec!.paused = true),
      "the Deployment no longer runs the image with this event's tags",
    ],
  ];
  for (const [name, made, deployment, expected] of cases) {
    await t.step(name, () => assertEquals(cannotFollow(made, deployment, EVENT), expected));
  }
});
