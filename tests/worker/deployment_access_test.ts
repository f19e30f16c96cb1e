import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import type { Sender } from "../../shared/event_sender.ts";
import {
  type AccessDecision,
  accessDetail,
  type AccessList,
  decideAccess,
  parseAccessList,
} from "../../worker/deployment_access.ts";

function sender(repository: string, repositoryId = "123"): Sender {
  return {
    repository,
    repositoryId,
    ref: "refs/heads/main",
    workflowRef: `${repository}/.github/workflows/release.yml@refs/heads/main`,
  };
}

const APP = sender("acme/app", "123");

/** Runs table cases of annotation value × sender × requireOptIn → decision. */
async function decisions(
  t: Deno.TestContext,
  cases: [string, unknown, Sender | undefined, boolean, AccessDecision][],
) {
  for (const [name, value, who, requireOptIn, want] of cases) {
    await t.step(name, () => {
      assertEquals(decideAccess(parseAccessList(value), who, requireOptIn), want);
    });
  }
}

function entries(n: number): string {
  return Array.from({ length: n }, (_, i) => `acme/app${i}`).join(",");
}

Deno.test("parseAccessList() reads owner/name, owner/* and id: entries, lower-casing names", async (t) => {
  const cases: [string, unknown, AccessList][] = [
    ["no annotation", undefined, undefined],
    ["one repository", "acme/app", { entries: [{ repository: "acme/app" }] }],
    ["a repository in any case", "ACME/My.App", { entries: [{ repository: "acme/my.app" }] }],
    ["an owner", "Acme/*", { entries: [{ owner: "acme" }] }],
    ["an id", "id:0123", { entries: [{ repositoryId: "0123" }] }],
    ["an id of 20 digits", `id:${"9".repeat(20)}`, { entries: [{ repositoryId: "9".repeat(20) }] }],
    [
      "commas and whitespace mixed",
      " acme/app,\n\tacme/*  ,id:7,,other/x\r\n",
      {
        entries: [
          { repository: "acme/app" },
          { owner: "acme" },
          { repositoryId: "7" },
          { repository: "other/x" },
        ],
      },
    ],
    ["a leading and a trailing comma", ",acme/app,", { entries: [{ repository: "acme/app" }] }],
    ["names with '_', '-' and '.'", "a_b/c-d.e", { entries: [{ repository: "a_b/c-d.e" }] }],
  ];
  for (const [name, value, want] of cases) {
    await t.step(name, () => assertEquals(parseAccessList(value), want));
  }
  await t.step("100 entries", () => {
    const list = parseAccessList(entries(100));
    assert(list !== undefined && "entries" in list);
    assertEquals(list.entries.length, 100);
  });
});

Deno.test("parseAccessList() marks the whole annotation invalid with a one-line reason", async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ["empty", "", /^value is empty/],
    ["whitespace only", " \n\t ", /^value is empty/],
    ["commas only", ", ,", /^value is empty/],
    ["an owner alone", "acme", /^entry "acme" is not owner\/name, owner\/\* or id:<digits>$/],
    ["three parts", "acme/app/x", /^entry "acme\/app\/x" is not/],
    ["a valid entry beside an invalid one", "acme/app acme", /^entry "acme" is not/],
    ["an empty owner", "/app", /^entry "\/app" is not/],
    ["an empty name", "acme/", /^entry "acme\/" is not/],
    ["a wildcard owner", "*/*", /^entry "\*\/\*" is not/],
    ["a partial wildcard", "acme/app*", /^entry "acme\/app\*" is not/],
    ["'..' as a name", "acme/..", /^entry "acme\/\.\." is not/],
    ["a 101-character name", `acme/${"a".repeat(101)}`, /is not owner\/name/],
    ["id: with letters", "id:abc", /^entry "id:abc" is not id: with 1-20 digits$/],
    ["id: with nothing", "id:", /^entry "id:" is not id: with 1-20 digits$/],
    ["id: with 21 digits", `id:${"1".repeat(21)}`, /is not id: with 1-20 digits/],
    ["id: with a sign", "id:-1", /is not id: with 1-20 digits/],
    ["ID: in capitals", "ID:123", /^entry "ID:123" is not/],
    ["a Unicode space inside", "acme/app\u00a0other/x", /^entry "acme\/app\\u00a0other\/x" is not/],
    ["101 entries", entries(101), /^value has 101 entries; at most 100/],
    ["5000 characters", "a/b ".repeat(1250), /^value is 5000 characters long; at most 4096$/],
    ["256 KiB", "a/b ".repeat(65536), /^value is 262144 characters long/],
    ["a number", 123, /^value is not a string$/],
    ["null", null, /^value is not a string$/],
    ["a list", ["acme/app"], /^value is not a string$/],
  ];
  for (const [name, value, want] of cases) {
    await t.step(name, () => {
      const list = parseAccessList(value);
      assert(list !== undefined && "invalid" in list, `expected invalid, got ${list}`);
      assertMatch(list.invalid, want);
      assert(!list.invalid.includes("\n"), "one line");
    });
  }
});

Deno.test("decideAccess() without the annotation follows requireOptIn", async (t) => {
  await decisions(t, [
    ["allowed when opt-in is not required", undefined, APP, false, "allowed"],
    ["not_opted_in when opt-in is required", undefined, APP, true, "not_opted_in"],
    ["an unsigned event when opt-in is required", undefined, undefined, true, "not_opted_in"],
    ["an unsigned event when opt-in is not required", undefined, undefined, false, "allowed"],
  ]);
});

Deno.test("decideAccess() allows a listed repository and no other", async (t) => {
  await decisions(t, [
    ["owner/name", "acme/app", APP, false, "allowed"],
    ["owner/name in another case", "ACME/App", APP, true, "allowed"],
    ["one of several entries", "other/x, acme/app", APP, true, "allowed"],
    ["owner/*", "acme/*", APP, true, "allowed"],
    ["owner/* in another case", "AcMe/*", sender("acme/other"), true, "allowed"],
    ["id", "id:123", APP, true, "allowed"],
    ["another repository of the owner", "acme/api", APP, false, "not_allowed"],
    ["another owner's repository of the same name", "other/app", APP, false, "not_allowed"],
    ["another id", "id:124", APP, false, "not_allowed"],
  ]);
});

Deno.test("security: decideAccess() fails closed", async (t) => {
  await decisions(t, [
    [
      "acme/* does not allow acme-evil/app",
      "acme/*",
      sender("acme-evil/app"),
      false,
      "not_allowed",
    ],
    ["acme/* does not allow acm/app", "acme/*", sender("acm/app"), false, "not_allowed"],
    ["acme/* does not allow acme.x/app", "acme/*", sender("acme.x/app"), false, "not_allowed"],
    [
      "acme/app does not allow acme/app-evil",
      "acme/app",
      sender("acme/app-evil"),
      false,
      "not_allowed",
    ],
    ["acme/app does not allow acme/ap", "acme/app", sender("acme/ap"), false, "not_allowed"],
    ["an owner entry matches no repository name", "app/*", APP, false, "not_allowed"],
    [
      "an id entry allows the repository renamed",
      "id:123",
      sender("acme/new-name", "123"),
      true,
      "allowed",
    ],
    [
      "an id entry allows the repository transferred",
      "id:123",
      sender("other/app", "123"),
      true,
      "allowed",
    ],
    [
      "a new repository reusing an old name does not match an id entry",
      "id:123",
      sender("acme/app", "999"),
      false,
      "not_allowed",
    ],
    ["id:0123 is not id 123", "id:0123", APP, false, "not_allowed"],
    ["id:123 is not id 0123", "id:123", sender("acme/app", "0123"), false, "not_allowed"],
    ["a name entry does not match an id", "acme/123", APP, false, "not_allowed"],
    ["an unsigned event with the annotation", "acme/app", undefined, false, "not_allowed"],
    ["an unsigned event with owner/*", "acme/*", undefined, true, "not_allowed"],
    ["an unsigned event with an id", "id:123", undefined, true, "not_allowed"],
    [
      "an invalid annotation refuses even a listed repository",
      "acme/app acme",
      APP,
      false,
      "not_allowed",
    ],
    ["an empty annotation", "", APP, false, "not_allowed"],
    ["a Cyrillic а look-alike", "\u0430cme/app", APP, false, "not_allowed"],
    ["a Kelvin sign K look-alike", "\u212acme/app", sender("kcme/app"), false, "not_allowed"],
    [
      "a 5000-character value listing the repository",
      "acme/app ".repeat(556),
      APP,
      false,
      "not_allowed",
    ],
    ["101 entries listing the repository", `acme/app,${entries(100)}`, APP, false, "not_allowed"],
    ["a non-string value", 1, APP, false, "not_allowed"],
  ]);
});

Deno.test("accessDetail() says which repository was refused or what is wrong with the annotation", async (t) => {
  const cases: [string, unknown, Sender | undefined, boolean, RegExp][] = [
    [
      "no annotation, opt-in required",
      undefined,
      APP,
      true,
      /^the Deployment has no kuberollouttrigger\/allowed-repositories annotation and opt-in is required$/,
    ],
    [
      "an invalid annotation",
      "acme",
      APP,
      false,
      /^kuberollouttrigger\/allowed-repositories is invalid, so no repository may restart it: entry "acme" is not/,
    ],
    [
      "an unsigned event",
      "acme/app",
      undefined,
      false,
      /^the event is unsigned, so its repository cannot be checked against kuberollouttrigger\/allowed-repositories$/,
    ],
    [
      "a repository not listed",
      "other/*",
      APP,
      false,
      /^repository acme\/app \(id 123\) is not listed in kuberollouttrigger\/allowed-repositories$/,
    ],
    [
      "a listed repository",
      "acme/app",
      APP,
      false,
      /^repository acme\/app \(id 123\) is listed in/,
    ],
  ];
  for (const [name, value, who, requireOptIn, want] of cases) {
    await t.step(
      name,
      () => assertMatch(accessDetail(parseAccessList(value), who, requireOptIn), want),
    );
  }
});

Deno.test("security: an invalid entry is quoted escaped and cut to 100 characters", async (t) => {
  const invalid = (value: string) => {
    const list = parseAccessList(value);
    assert(list !== undefined && "invalid" in list);
    return list.invalid;
  };
  await t.step("a look-alike letter shows as its escape", () => {
    assertEquals(
      invalid("\u0430cme/app"),
      'entry "\\u0430cme/app" is not owner/name, owner/* or id:<digits>',
    );
  });
  await t.step("a control or bidi character shows as its escape", () => {
    assertMatch(invalid("acme/app\u0000\u202e"), /^entry "acme\/app\\u0000\\u202e" is not/);
  });
  await t.step("a long entry is cut", () => {
    assertEquals(
      invalid("x".repeat(3000)),
      `entry "${"x".repeat(100)}" is not owner/name, owner/* or id:<digits>`,
    );
  });
  await t.step("the detail is all printable ASCII", () => {
    const detail = accessDetail(parseAccessList("\u0430cme/app\u2028"), APP, false);
    assertMatch(detail, /^[\x20-\x7e]+$/);
  });
});
