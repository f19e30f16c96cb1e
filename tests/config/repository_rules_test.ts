import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import type { Sender } from "../../shared/event_sender.ts";
import {
  MAX_PATTERNS,
  MAX_RULES,
  MAX_RULES_TEXT,
  parseRepositoryRules,
} from "../../config/repository_rules.ts";

const SENDER: Sender = {
  repository: "acme/app",
  repositoryId: "123",
  ref: "refs/heads/main",
  workflowRef: "acme/app/.github/workflows/release.yml@refs/heads/main",
};

const sender = (extra: Partial<Sender> = {}): Sender => ({ ...SENDER, ...extra });

/** "allowed", or "denied" when check() gives a reason. */
function decide(raw: string, image: string, extra: Partial<Sender> = {}): string {
  return parseRepositoryRules(raw).check(sender(extra), image) === undefined ? "allowed" : "denied";
}

/** The problem messages parseRepositoryRules() throws; fails when it does not throw an AggregateError. */
function problems(raw: string): string[] {
  const err = assertThrows(() => parseRepositoryRules(raw), { instanceOf: AggregateError });
  const errors = (err as AggregateError).errors as Error[];
  assertEquals(err.message, `${errors.length} problem${errors.length === 1 ? "" : "s"}`);
  for (const e of errors) assert(e instanceof Error, "every problem is an Error");
  return errors.map((e) => e.message);
}

type Case = [name: string, raw: string, image: string, extra: Partial<Sender>, expected: string];

async function table(t: Deno.TestContext, cases: readonly Case[]): Promise<void> {
  for (const [name, raw, image, extra, expected] of cases) {
    await t.step(name, () => assertEquals(decide(raw, image, extra), expected));
  }
}

Deno.test("parseRepositoryRules() set but holding no rule is a mistake, not an open door", () => {
  for (const raw of [" ; ;\n\t;", ";"]) {
    assertThrows(() => parseRepositoryRules(raw), { instanceOf: AggregateError });
  }
});

Deno.test("parseRepositoryRules() with no rules restricts nothing", async (t) => {
  for (const raw of ["", "   ", "\n\n"]) {
    await t.step(JSON.stringify(raw), () => {
      const rules = parseRepositoryRules(raw);
      assertEquals(rules.size, 0);
      assertEquals(rules.check(SENDER, "docker.io/library/anything"), undefined);
      assertEquals(rules.unreachable(["ghcr.io/acme"]), []);
    });
  }
});

Deno.test("parseRepositoryRules() counts rules separated by newlines or ;", () => {
  assertEquals(
    parseRepositoryRules("a/b -> ghcr.io/a\n\nc/d -> ghcr.io/c ; e/* -> ghcr.io/e;").size,
    3,
  );
  assertEquals(parseRepositoryRules("a/b -> ghcr.io/a\r\nc/d -> ghcr.io/c\r\n").size, 2);
});

Deno.test("parseRepositoryRules() allows an image on a path-component boundary only", async (t) => {
  const rule = "acme/app -> ghcr.io/acme/app";
  await table(t, [
    ["the pattern itself", rule, "ghcr.io/acme/app", {}, "allowed"],
    ["a repository below it", rule, "ghcr.io/acme/app/sub", {}, "allowed"],
    ["two levels below it", rule, "ghcr.io/acme/app/sub/deeper", {}, "allowed"],
    ["a look-alike with a suffix", rule, "ghcr.io/acme/app-evil", {}, "denied"],
    ["a look-alike with a dot suffix", rule, "ghcr.io/acme/app.evil", {}, "denied"],
    ["a shorter name", rule, "ghcr.io/acme/ap", {}, "denied"],
    ["the parent", rule, "ghcr.io/acme", {}, "denied"],
    ["a sibling", rule, "ghcr.io/acme/other", {}, "denied"],
    ["another registry", rule, "docker.io/acme/app", {}, "denied"],
    ["a registry look-alike", rule, "ghcr.io.evil.com/acme/app", {}, "denied"],
    ["the same path under another first component", rule, "evil.io/ghcr.io/acme/app", {}, "denied"],
  ]);
});

Deno.test("parseRepositoryRules() matches the subject", async (t) => {
  const owner = "acme/* -> ghcr.io/acme";
  await table(t, [
    ["owner/name", "acme/app -> ghcr.io/acme", "ghcr.io/acme/x", {}, "allowed"],
    [
      "owner/name written in another case",
      "ACME/App -> ghcr.io/acme",
      "ghcr.io/acme/x",
      {},
      "allowed",
    ],
    ["another name of the owner", "acme/app -> ghcr.io/acme", "ghcr.io/acme/x", {
      repository: "acme/app2",
    }, "denied"],
    ["owner/* for a repository of the owner", owner, "ghcr.io/acme/x", {}, "allowed"],
    ["owner/* for another of the owner's", owner, "ghcr.io/acme/x", {
      repository: "acme/zzz",
    }, "allowed"],
    ["owner/* for another owner", owner, "ghcr.io/acme/x", { repository: "other/x" }, "denied"],
    ["OWNER/* in another case", "ACME/* -> ghcr.io/acme", "ghcr.io/acme/x", {}, "allowed"],
    ["id: for the same repository", "id:123 -> ghcr.io/acme", "ghcr.io/acme/x", {}, "allowed"],
    ["id: after a rename", "id:123 -> ghcr.io/acme", "ghcr.io/acme/x", {
      repository: "acme/renamed",
    }, "allowed"],
    ["id: for a new repository with the old name", "id:123 -> ghcr.io/acme", "ghcr.io/acme/x", {
      repositoryId: "456",
    }, "denied"],
  ]);
});

Deno.test("parseRepositoryRules() gives each repository the images named after it with {repository}", async (t) => {
  const rule = "acme/* -> ghcr.io/{repository}";
  await table(t, [
    ["its own image", rule, "ghcr.io/acme/app", {}, "allowed"],
    ["an image below its own", rule, "ghcr.io/acme/app/worker", {}, "allowed"],
    ["a neighbour's image with a longer name", rule, "ghcr.io/acme/app2", {}, "denied"],
    ["a neighbour's image with a shorter name", rule, "ghcr.io/acme/ap", {}, "denied"],
    ["the neighbour acme/app2 naming acme/app", rule, "ghcr.io/acme/app", {
      repository: "acme/app2",
    }, "denied"],
    ["the neighbour acme/app2 naming its own", rule, "ghcr.io/acme/app2", {
      repository: "acme/app2",
    }, "allowed"],
    ["another owner's repository", rule, "ghcr.io/other/x", { repository: "other/x" }, "denied"],
    ["the owner's bare image", rule, "ghcr.io/acme", {}, "denied"],
    [
      "{repository} in the middle",
      "acme/* -> ghcr.io/team/{repository}/*",
      "ghcr.io/team/acme/app/web",
      {},
      "allowed",
    ],
    [
      "{repository} in the middle needs the component after it",
      "acme/* -> ghcr.io/team/{repository}/*",
      "ghcr.io/team/acme/app",
      {},
      "denied",
    ],
  ]);
});

Deno.test("parseRepositoryRules() matches * as exactly one whole component", async (t) => {
  const rule = "acme/app -> ghcr.io/*/app";
  await table(t, [
    ["any one component", rule, "ghcr.io/team/app", {}, "allowed"],
    ["and below", rule, "ghcr.io/team/app/sub", {}, "allowed"],
    ["not zero components", rule, "ghcr.io/app", {}, "denied"],
    ["not two components", rule, "ghcr.io/a/b/app", {}, "denied"],
    ["not a look-alike after it", rule, "ghcr.io/team/app-evil", {}, "denied"],
    [
      "a trailing * needs one more component",
      "acme/app -> ghcr.io/acme/*",
      "ghcr.io/acme",
      {},
      "denied",
    ],
  ]);
});

Deno.test("parseRepositoryRules() applies ref, environment and workflow conditions", async (t) => {
  const img = "ghcr.io/acme/app";
  const wf = "acme/app/.github/workflows/release.yml@refs/heads/main";
  await table(t, [
    ["ref exact", "acme/app ref=refs/heads/main -> ghcr.io/acme", img, {}, "allowed"],
    ["ref exact, other ref", "acme/app ref=refs/heads/main -> ghcr.io/acme", img, {
      ref: "refs/heads/main2",
    }, "denied"],
    [
      "ref exact is case-sensitive",
      "acme/app ref=refs/heads/Main -> ghcr.io/acme",
      img,
      {},
      "denied",
    ],
    ["ref prefix", "acme/app ref=refs/tags/v* -> ghcr.io/acme", img, {
      ref: "refs/tags/v1.2.3",
    }, "allowed"],
    ["ref prefix, other ref", "acme/app ref=refs/tags/v* -> ghcr.io/acme", img, {}, "denied"],
    ["environment exact", "acme/app environment=prod -> ghcr.io/acme", img, {
      environment: "prod",
    }, "allowed"],
    ["environment exact, other", "acme/app environment=prod -> ghcr.io/acme", img, {
      environment: "production",
    }, "denied"],
    ["environment missing", "acme/app environment=prod -> ghcr.io/acme", img, {}, "denied"],
    [
      "environment=* needs some environment",
      "acme/app environment=* -> ghcr.io/acme",
      img,
      {},
      "denied",
    ],
    ["environment=* with one", "acme/app environment=* -> ghcr.io/acme", img, {
      environment: "dev",
    }, "allowed"],
    ["workflow exact", `acme/app workflow=${wf} -> ghcr.io/acme`, img, {}, "allowed"],
    [
      "workflow prefix",
      "acme/app workflow=acme/app/.github/workflows/release.yml@* -> ghcr.io/acme",
      img,
      {},
      "allowed",
    ],
    [
      "workflow, other file",
      "acme/app workflow=acme/app/.github/workflows/build.yml@* -> ghcr.io/acme",
      img,
      {},
      "denied",
    ],
    [
      "all conditions must hold",
      "acme/app ref=refs/heads/main environment=prod -> ghcr.io/acme",
      img,
      {},
      "denied",
    ],
    ["all conditions hold", "acme/app ref=refs/heads/main environment=prod -> ghcr.io/acme", img, {
      environment: "prod",
    }, "allowed"],
  ]);
});

Deno.test("parseRepositoryRules() grants the union of its rules and patterns", async (t) => {
  const raw = [
    "acme/app -> ghcr.io/acme/app, ghcr.io/acme/shared docker.io/library/nginx",
    "acme/app ref=refs/tags/* -> ghcr.io/acme/release",
    "id:123 -> ghcr.io/acme/by-id",
    "acme/* -> ghcr.io/{repository}",
  ].join("\n");
  await table(t, [
    ["first pattern of the first rule", raw, "ghcr.io/acme/app", {}, "allowed"],
    ["second pattern (after a comma)", raw, "ghcr.io/acme/shared", {}, "allowed"],
    ["third pattern (after a space)", raw, "docker.io/library/nginx", {}, "allowed"],
    ["a rule whose condition fails", raw, "ghcr.io/acme/release", {}, "denied"],
    [
      "a rule whose condition holds",
      raw,
      "ghcr.io/acme/release",
      { ref: "refs/tags/v1" },
      "allowed",
    ],
    ["the id rule", raw, "ghcr.io/acme/by-id", {}, "allowed"],
    ["the {repository} rule for a neighbour", raw, "ghcr.io/acme/web", {
      repository: "acme/web",
      repositoryId: "9",
    }, "allowed"],
    ["nothing grants", raw, "ghcr.io/acme/other", {}, "denied"],
  ]);
});

Deno.test("parseRepositoryRules() says who was refused which image", () => {
  const rules = parseRepositoryRules("acme/app -> ghcr.io/acme/app");
  assertEquals(
    rules.check(sender({ repository: "acme/web" }), "ghcr.io/acme/other"),
    "no rule in REPOSITORY_RULES gives acme/web (repository_id 123) ghcr.io/acme/other",
  );
});

Deno.test("parseRepositoryRules() refuses each kind of bad rule with a message", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["no arrow", "acme/app ghcr.io/acme", /needs exactly one ->/],
    ["an arrow without spaces", "acme/app->ghcr.io/acme", /needs exactly one ->/],
    ["two arrows", "acme/app -> ghcr.io/acme -> ghcr.io/x", /needs exactly one ->/],
    ["no subject", "-> ghcr.io/acme", /no subject/],
    ["no pattern", "acme/app ->", /no pattern/],
    ["only commas as patterns", "acme/app -> , ,", /no pattern/],
    ["a subject without a name", "acme -> ghcr.io/acme", /subject "acme" must be owner\/name/],
    ["a subject with a path", "acme/app/x -> ghcr.io/acme", /subject "acme\/app\/x" must be/],
    ["a subject */*", "*/* -> ghcr.io/acme", /subject "\*\/\*" must be/],
    [
      "a subject with a * in the name",
      "acme/app* -> ghcr.io/acme",
      /subject "acme\/app\*" must be/,
    ],
    ["an id without digits", "id:abc -> ghcr.io/acme", /subject "id:abc" must be/],
    ["an id too long", `id:${"1".repeat(21)} -> ghcr.io/acme`, /subject "id:1+" must be/],
    [
      "an unknown condition key",
      "acme/app branch=main -> ghcr.io/acme",
      /condition "branch=main" must be ref=/,
    ],
    ["a condition without =", "acme/app main -> ghcr.io/acme", /condition "main" must be ref=/],
    ["an empty condition value", "acme/app ref= -> ghcr.io/acme", /condition "ref=" needs a value/],
    [
      "a comma in a condition value",
      "acme/app ref=a,b -> ghcr.io/acme",
      /condition "ref=a,b" needs a value/,
    ],
    [
      "a * inside a condition value",
      "acme/app ref=refs/*/main -> ghcr.io/acme",
      /\* only at the end/,
    ],
    [
      "a condition key twice",
      "acme/app ref=a ref=b -> ghcr.io/acme",
      /condition "ref=b" repeats its key; write alternatives as two rules/,
    ],
    ["a * inside a component", "acme/app -> ghcr.io/acme/app-*", /only as whole path components/],
    ["a **", "acme/app -> ghcr.io/acme/**", /only as whole path components/],
    ["{repo}", "acme/app -> ghcr.io/{repo}", /only as whole path components/],
    ["a stray brace", "acme/app -> ghcr.io/acme}", /only as whole path components/],
    ["a wildcard registry host", "acme/app -> */acme/app", /must start with a registry host/],
    [
      "{repository} as the registry host",
      "acme/app -> {repository}/x",
      /must start with a registry host/,
    ],
    ["upper case in the path", "acme/app -> ghcr.io/ACME/App", /write it as ghcr\.io\/acme\/app$/],
    ["upper case in the host", "acme/app -> GHCR.IO/acme/*", /write it as ghcr\.io\/acme\/\*$/],
    ["Docker Hub shorthand", "acme/app -> nginx", /write it as docker\.io\/library\/nginx$/],
    [
      "Docker Hub without library/",
      "acme/app -> docker.io/nginx",
      /write it as docker\.io\/library\/nginx$/,
    ],
    [
      "the legacy Docker Hub host",
      "acme/app -> index.docker.io/acme/{repository}",
      /write it as docker\.io\/acme\/\{repository\}$/,
    ],
    ["a tag", "acme/app -> ghcr.io/acme/app:v1", /without a tag or digest/],
    [
      "a digest",
      `acme/app -> ghcr.io/acme/app@sha256:${"a".repeat(64)}`,
      /without a tag or digest/,
    ],
    ["an empty component", "acme/app -> ghcr.io//app", /is not an image repository/],
    ["a trailing slash", "acme/app -> ghcr.io/acme/", /is not an image repository/],
  ];
  for (const [name, raw, expected] of cases) {
    await t.step(name, () => {
      const found = problems(raw);
      assertEquals(found.length, 1, found.join("\n"));
      assertMatch(found[0], /^rule 1: /);
      assertMatch(found[0], expected);
    });
  }
});

Deno.test("parseRepositoryRules() lists every problem at once, numbered by rule", () => {
  const raw = [
    "acme/app -> ghcr.io/acme/app",
    "",
    "acme -> ghcr.io/acme",
    "acme/web -> ghcr.io/acme/web ; acme/x branch=main -> ghcr.io/acme/x",
    "acme/y -> ghcr.io/acme/y-*",
  ].join("\n");
  const found = problems(raw);
  assertEquals(found.length, 3);
  assertMatch(found[0], /^rule 2: subject "acme"/);
  assertMatch(found[1], /^rule 4: condition "branch=main"/);
  assertMatch(found[2], /^rule 5: pattern "ghcr.io\/acme\/y-\*"/);
  // Several problems in one rule are each listed.
  assertEquals(problems("acme ref=a ref=b -> ghcr.io/ACME, ghcr.io/a:b").length, 4);
});

Deno.test("parseRepositoryRules() bounds text, rules and patterns with a problem each", async (t) => {
  const rule = "acme/app -> ghcr.io/acme/app";
  await t.step("the most rules", () => {
    assertEquals(parseRepositoryRules(Array(MAX_RULES).fill(rule).join("\n")).size, MAX_RULES);
  });
  await t.step("one rule too many", () => {
    assertEquals(problems(Array(MAX_RULES + 1).fill(rule).join("\n")), [
      `rule ${MAX_RULES + 1}: more than ${MAX_RULES} rules`,
    ]);
  });
  await t.step("too many rules and a bad one are both listed", () => {
    const found = problems(["acme -> ghcr.io/acme", ...Array(MAX_RULES).fill(rule)].join("\n"));
    assertEquals(found.length, 2);
  });
  await t.step("the most patterns", () => {
    const patterns = Array.from({ length: MAX_PATTERNS }, (_, i) => `ghcr.io/acme/p${i}`);
    assertEquals(parseRepositoryRules(`acme/app -> ${patterns.join(",")}`).size, 1);
  });
  await t.step("one pattern too many", () => {
    const patterns = Array.from({ length: MAX_PATTERNS + 1 }, (_, i) => `ghcr.io/acme/p${i}`);
    assertEquals(problems(`acme/app -> ${patterns.join(" ")}`), [
      `rule 1: has ${MAX_PATTERNS + 1} patterns, more than ${MAX_PATTERNS}`,
    ]);
  });
  await t.step("text longer than 64 KiB", () => {
    const found = problems(`${rule}\n`.repeat(Math.ceil(MAX_RULES_TEXT / rule.length)));
    assertEquals(found.length, 1);
    assertMatch(found[0], /^rule \d+: REPOSITORY_RULES is longer than 65536 characters$/);
  });
  await t.step("megabytes of text are refused quickly", () => {
    const started = performance.now();
    assertEquals(problems("x".repeat(10_000_000)).length, 1);
    assert(performance.now() - started < 1000, "bounded work");
  });
  await t.step("offending tokens are quoted and cut to 100 characters", () => {
    const [found] = problems(`${"a".repeat(500)} -> ghcr.io/acme`);
    assertEquals(
      found,
      `rule 1: subject "${
        "a".repeat(100)
      }" must be owner/name, owner/* or id:<repository_id> (1-20 digits), in ASCII`,
    );
  });
});

Deno.test("parseRepositoryRules() reports patterns no allowed image can match", async (t) => {
  const raw = [
    "acme/app -> ghcr.io/acme/app, ghcr.io/other/app, ghcr.io/other/app",
    "acme/* -> ghcr.io/{repository}, docker.io/library/nginx",
    "acme/web -> ghcr.io/*/web, quay.io/acme",
  ].join("\n");
  const rules = parseRepositoryRules(raw);
  const cases: [string, string[], string[]][] = [
    ["one prefix", ["ghcr.io/acme"], [
      "rule 1: ghcr.io/other/app is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme)",
      "rule 2: docker.io/library/nginx is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme)",
      "rule 3: quay.io/acme is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme)",
    ]],
    ["a whole registry", ["ghcr.io", "quay.io"], [
      "rule 2: docker.io/library/nginx is not under ALLOWED_IMAGE_PREFIX (ghcr.io, quay.io)",
    ]],
    ["a prefix deeper than the pattern", [
      "ghcr.io/acme/app/web",
      "quay.io/acme/x",
      "docker.io/library",
    ], [
      "rule 1: ghcr.io/other/app is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme/app/web, quay.io/acme/x, docker.io/library)",
      "rule 3: ghcr.io/*/web is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme/app/web, quay.io/acme/x, docker.io/library)",
    ]],
    ["* agrees with any one component", ["ghcr.io/team/web/x", "quay.io", "docker.io"], [
      "rule 1: ghcr.io/acme/app is not under ALLOWED_IMAGE_PREFIX (ghcr.io/team/web/x, quay.io, docker.io)",
      "rule 1: ghcr.io/other/app is not under ALLOWED_IMAGE_PREFIX (ghcr.io/team/web/x, quay.io, docker.io)",
    ]],
    ["no prefix at all", [], [
      "rule 1: ghcr.io/acme/app is not under ALLOWED_IMAGE_PREFIX ()",
      "rule 1: ghcr.io/other/app is not under ALLOWED_IMAGE_PREFIX ()",
      "rule 2: ghcr.io/{repository} is not under ALLOWED_IMAGE_PREFIX ()",
      "rule 2: docker.io/library/nginx is not under ALLOWED_IMAGE_PREFIX ()",
      "rule 3: ghcr.io/*/web is not under ALLOWED_IMAGE_PREFIX ()",
      "rule 3: quay.io/acme is not under ALLOWED_IMAGE_PREFIX ()",
    ]],
    ["a look-alike prefix", ["ghcr.io/acme-evil"], [
      "rule 1: ghcr.io/acme/app is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme-evil)",
      "rule 1: ghcr.io/other/app is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme-evil)",
      "rule 2: docker.io/library/nginx is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme-evil)",
      "rule 3: quay.io/acme is not under ALLOWED_IMAGE_PREFIX (ghcr.io/acme-evil)",
    ]],
    ["{repository} spans two components", ["ghcr.io/x/y/z"], [
      "rule 1: ghcr.io/acme/app is not under ALLOWED_IMAGE_PREFIX (ghcr.io/x/y/z)",
      "rule 1: ghcr.io/other/app is not under ALLOWED_IMAGE_PREFIX (ghcr.io/x/y/z)",
      "rule 2: docker.io/library/nginx is not under ALLOWED_IMAGE_PREFIX (ghcr.io/x/y/z)",
      "rule 3: ghcr.io/*/web is not under ALLOWED_IMAGE_PREFIX (ghcr.io/x/y/z)",
      "rule 3: quay.io/acme is not under ALLOWED_IMAGE_PREFIX (ghcr.io/x/y/z)",
    ]],
  ];
  for (const [name, prefixes, expected] of cases) {
    await t.step(name, () => assertEquals(rules.unreachable(prefixes), expected));
  }
});

Deno.test("security: parseRepositoryRules() cannot be talked into a wider grant", async (t) => {
  const kelvin = "\u212A";
  await t.step("a path that climbs out of the pattern is refused", () => {
    assertMatch(problems("acme/app -> ghcr.io/acme/app/../evil")[0], /is not an image repository/);
  });
  await t.step("owner/* never matches an owner that only starts with it", () => {
    assertEquals(
      decide("acme/* -> ghcr.io/acme", "ghcr.io/acme/x", { repository: "acme-evil/x" }),
      "denied",
    );
  });
  await t.step("owner/name never matches a name that only starts with it", () => {
    assertEquals(
      decide("acme/app -> ghcr.io/acme", "ghcr.io/acme/x", { repository: "acme/app-evil" }),
      "denied",
    );
  });
  await t.step("a Unicode look-alike in the subject is refused", () => {
    assertMatch(problems(`${kelvin}ube/app -> ghcr.io/kube`)[0], /subject .* must be owner\/name/);
    assertMatch(problems(`acme/${kelvin}ube -> ghcr.io/kube`)[0], /subject .* must be owner\/name/);
  });
  await t.step("a Unicode look-alike in a pattern is refused", () => {
    assertMatch(problems(`acme/app -> ghcr.io/acme/${kelvin}ube`)[0], /not an image repository/);
  });
  await t.step("a no-break space does not separate tokens", () => {
    assertMatch(problems("acme/app\u00a0-> ghcr.io/acme")[0], /needs exactly one ->/);
  });
  await t.step("id:0123 and id:123 are different repositories", () => {
    assertEquals(decide("id:0123 -> ghcr.io/acme", "ghcr.io/acme/x"), "denied");
    assertEquals(
      decide("id:123 -> ghcr.io/acme", "ghcr.io/acme/x", { repositoryId: "0123" }),
      "denied",
    );
  });
  await t.step("a condition value is text, not a regular expression", () => {
    assertEquals(
      decide("acme/app ref=refs/heads/ma.n -> ghcr.io/acme", "ghcr.io/acme/x"),
      "denied",
    );
    assertEquals(
      decide("acme/app ref=refs/heads/ma.* -> ghcr.io/acme", "ghcr.io/acme/x"),
      "denied",
    );
  });
  await t.step("a sender that is not owner/name is never granted", () => {
    assertEquals(
      decide("acme/* -> ghcr.io/acme", "ghcr.io/acme/x", { repository: "acme" }),
      "denied",
    );
    assertEquals(
      decide("id:123 -> ghcr.io/acme", "ghcr.io/acme/x", { repository: "acme/app/x" }),
      "denied",
    );
  });
});
