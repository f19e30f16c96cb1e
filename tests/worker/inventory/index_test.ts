/**
 * The inventory's pure index as tables: add, update, delete and replace, and
 * what candidates() and count() answer after each sequence.
 */

import { assertEquals } from "../../helpers/assert.ts";
import type { Deployment } from "../../../worker/kube/objects.ts";
import { createDeploymentIndex, type DeploymentIndex } from "../../../worker/inventory/index.ts";

function deployment(namespace: string, name: string, ...images: string[]): Deployment {
  return {
    metadata: { namespace, name, resourceVersion: "1" },
    spec: {
      template: { spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) } },
    },
  };
}

const APP = "ghcr.io/acme/app";
const WEB = "ghcr.io/acme/web";

/** What the index answers: candidates per repository (as ns/name, sorted) and counts. */
function view(index: DeploymentIndex) {
  const names = (repo: string) =>
    index.candidates(repo).map((s) => `${s.namespace}/${s.name}`).sort();
  return {
    app: names(APP),
    web: names(WEB),
    total: index.count(),
    a: index.count("a"),
    b: index.count("b"),
  };
}

interface Case {
  name: string;
  steps: (index: DeploymentIndex) => void;
  expected: ReturnType<typeof view>;
}

const CASES: Case[] = [
  {
    name: "empty",
    steps: () => {},
    expected: { app: [], web: [], total: 0, a: 0, b: 0 },
  },
  {
    name: "add: one Deployment per repository it uses, counted once",
    steps: (i) => void i.upsert(deployment("a", "x", `${APP}:1`, `${WEB}:1`, `${APP}:2`)),
    expected: { app: ["a/x"], web: ["a/x"], total: 1, a: 1, b: 0 },
  },
  {
    name: "add: two users of one repository, in two namespaces",
    steps: (i) => {
      i.upsert(deployment("a", "x", `${APP}:1`));
      i.upsert(deployment("b", "y", `${APP}:2`));
    },
    expected: { app: ["a/x", "b/y"], web: [], total: 2, a: 1, b: 1 },
  },
  {
    name: "update: a Deployment that changed image leaves its old repository",
    steps: (i) => {
      i.upsert(deployment("a", "x", `${APP}:1`));
      i.upsert(deployment("a", "y", `${APP}:1`));
      i.upsert(deployment("a", "x", `${WEB}:1`));
    },
    expected: { app: ["a/y"], web: ["a/x"], total: 2, a: 2, b: 0 },
  },
  {
    name: "update: a Deployment whose image no longer parses matches nothing",
    steps: (i) => {
      i.upsert(deployment("a", "x", `${APP}:1`));
      i.upsert(deployment("a", "x", "UPPER CASE is not an image"));
    },
    expected: { app: [], web: [], total: 1, a: 1, b: 0 },
  },
  {
    name: "delete: gone from every repository and from the counts",
    steps: (i) => {
      i.upsert(deployment("a", "x", `${APP}:1`, `${WEB}:1`));
      i.upsert(deployment("a", "y", `${APP}:1`));
      i.remove("a", "x");
    },
    expected: { app: ["a/y"], web: [], total: 1, a: 1, b: 0 },
  },
  {
    name: "delete: of what is not there changes nothing",
    steps: (i) => {
      i.upsert(deployment("a", "x", `${APP}:1`));
      i.remove("a", "nothing");
      i.remove("nowhere", "x");
    },
    expected: { app: ["a/x"], web: [], total: 1, a: 1, b: 0 },
  },
  {
    name: "add: an object without a name or namespace is ignored",
    steps: (i) => {
      i.upsert({ metadata: { namespace: "a" } } as Deployment);
      i.upsert({ metadata: { name: "x" } } as Deployment);
    },
    expected: { app: [], web: [], total: 0, a: 0, b: 0 },
  },
  {
    name: "replace a namespace: what is not listed again is removed, other namespaces stay",
    steps: (i) => {
      i.upsert(deployment("a", "kept", `${APP}:1`));
      i.upsert(deployment("a", "gone", `${APP}:1`));
      i.upsert(deployment("b", "other", `${APP}:1`));
      const r = i.replace("a");
      r.add(deployment("a", "kept", `${WEB}:1`));
      r.add(deployment("a", "new", `${APP}:1`));
      r.finish(() => {});
    },
    expected: { app: ["a/new", "b/other"], web: ["a/kept"], total: 3, a: 2, b: 1 },
  },
  {
    name: "replace everything: every namespace not listed again is emptied",
    steps: (i) => {
      i.upsert(deployment("a", "x", `${APP}:1`));
      i.upsert(deployment("b", "y", `${APP}:1`));
      const r = i.replace(undefined);
      r.add(deployment("b", "y", `${APP}:2`));
      r.finish(() => {});
    },
    expected: { app: ["b/y"], web: [], total: 1, a: 0, b: 1 },
  },
  {
    name: "replace, unfinished: nothing is removed yet",
    steps: (i) => {
      i.upsert(deployment("a", "x", `${APP}:1`));
      i.replace("a").add(deployment("a", "y", `${APP}:1`));
    },
    expected: { app: ["a/x", "a/y"], web: [], total: 2, a: 2, b: 0 },
  },
];

Deno.test("createDeploymentIndex() answers candidates and counts after add, update, delete, replace", async (t) => {
  for (const c of CASES) {
    await t.step(c.name, () => {
      const index = createDeploymentIndex();
      c.steps(index);
      assertEquals(view(index), c.expected);
    });
  }
});

Deno.test("replace() names each removed Deployment once, after it is removed", () => {
  const index = createDeploymentIndex();
  index.upsert(deployment("a", "x", `${APP}:1`));
  index.upsert(deployment("a", "y", `${APP}:1`));
  const r = index.replace("a");
  r.add(deployment("a", "y", `${APP}:1`));
  const removed: string[] = [];
  r.finish((gone) => removed.push(`${gone.namespace}/${gone.name}:${index.count("a")}`));
  assertEquals(removed, ["a/x:1"]);
  r.finish(() => removed.push("again"));
  assertEquals(removed, ["a/x:1"], "a finished replacement removes nothing more");
});

Deno.test("upsert() returns the summary it replaced", () => {
  const index = createDeploymentIndex();
  assertEquals(index.upsert(deployment("a", "x", `${APP}:1`)), undefined);
  assertEquals(index.upsert(deployment("a", "x", `${APP}:2`))?.containers[0].tag, "1");
});
