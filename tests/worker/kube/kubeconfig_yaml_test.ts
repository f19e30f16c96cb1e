/**
 * The kubeconfig read as YAML: a file that does not parse, or parses to the
 * wrong shape, fails with one line naming the position, never the content
 * (it may hold a token).
 */

import { assertEquals, assertThrows } from "../../helpers/assert.ts";
import { fieldsOf, findNamed, parseKubeconfigYaml } from "../../../worker/kube/kubeconfig_yaml.ts";

const SECRET = "krt-secret-in-the-file";

function message(fn: () => unknown): string {
  const err = assertThrows(fn) as Error & { code?: string };
  assertEquals(err.code, "ERR_KUBE");
  assertEquals(err.message.includes(SECRET), false, "the content is not quoted");
  return err.message;
}

Deno.test("security: parseKubeconfigYaml() reports a YAML error by code and position only", () => {
  const text = `users:\n- name: u\n  user:\n    token: ${SECRET}\n   bad: [\n`;
  assertEquals(
    /^Cannot parse kubeconfig \/k: YAML error \w+ at line \d+, column \d+ \(the line is not shown/
      .test(message(() => parseKubeconfigYaml(text, "/k"))),
    true,
  );
});

Deno.test("parseKubeconfigYaml() wants a mapping", async (t) => {
  for (
    const [text, found] of [["- a\n", "a list"], [`${SECRET}\n`, "text"], ["", "nothing"]]
  ) {
    await t.step(found, () => {
      assertEquals(
        message(() => parseKubeconfigYaml(text, "/k")),
        `Kubeconfig /k must be a YAML mapping (found ${found})`,
      );
    });
  }
  assertEquals(parseKubeconfigYaml("clusters: []\n", "/k"), { clusters: [] });
});

Deno.test("fieldsOf() reads text, mappings and lists, naming a field of the wrong kind by position", async (t) => {
  const fields = fieldsOf(
    { token: 5, user: [SECRET], users: { a: SECRET }, contexts: [{}, SECRET], name: "u" },
    "Kubeconfig /k: users[0].user",
  );
  assertEquals([fields.text("name"), fields.text("none")], ["u", undefined]);
  assertEquals([fields.mapping("none"), fields.list("none")], [{}, []]);
  const cases: [string, () => unknown, string][] = [
    ["text", () => fields.text("token"), "users[0].user.token must be text (found a number)"],
    [
      "mapping",
      () => fields.mapping("user"),
      "users[0].user.user must be a mapping (found a list)",
    ],
    ["list", () => fields.list("users"), "users[0].user.users must be a list (found a mapping)"],
    [
      "list item",
      () => fields.list("contexts"),
      "users[0].user.contexts[1] must be a mapping (found text)",
    ],
  ];
  for (const [name, read, expected] of cases) {
    await t.step(name, () => assertEquals(message(read), `Kubeconfig /k: ${expected}`));
  }
  // A top-level position ends with a colon: the key follows after a space.
  assertEquals(
    message(() => fieldsOf({ clusters: 5 }, "Kubeconfig /k:").list("clusters")),
    "Kubeconfig /k: clusters must be a list (found a number)",
  );
});

Deno.test("findNamed() finds an entry by name and says where it is", () => {
  const doc = {
    users: [{ name: "a", user: { token: "x" } }, { name: "b", user: { token: SECRET } }],
  };
  const entry = findNamed(doc, "/k", "users", "user", "b")!;
  assertEquals(entry.where, "Kubeconfig /k: users[1].user");
  assertEquals(entry.fields.text("token"), SECRET);
  assertEquals(findNamed(doc, "/k", "users", "user", "c"), undefined);
  assertEquals(
    message(() => findNamed({ users: [{ name: "a", user: SECRET }] }, "/k", "users", "user", "a")),
    "Kubeconfig /k: users[0].user must be a mapping (found text)",
  );
});
