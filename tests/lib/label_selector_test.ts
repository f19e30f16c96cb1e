import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { parseLabelSelector } from "../../lib/label_selector.ts";

type Labels = Record<string, string> | undefined;

Deno.test("parseLabelSelector() matches each operator as the API server does", async (t) => {
  const cases: [string, Labels, boolean][] = [
    ["app", { app: "web" }, true],
    ["app", { app: "" }, true],
    ["app", { tier: "web" }, false],
    ["app", undefined, false],
    ["!app", { tier: "web" }, true],
    ["!app", undefined, true],
    ["!app", { app: "" }, false],
    ["app=web", { app: "web" }, true],
    ["app=web", { app: "api" }, false],
    ["app=web", {}, false],
    ["app==web", { app: "web" }, true],
    ["app=", { app: "" }, true],
    ["app=", { app: "web" }, false],
    ["app=", {}, false],
    ["app!=web", { app: "api" }, true],
    ["app!=web", { app: "web" }, false],
    ["app!=web", {}, true],
    ["app!=web", undefined, true],
    ["app!=", { app: "" }, false],
    ["app!=", {}, true],
    ["app in (web,api)", { app: "api" }, true],
    ["app in (web,api)", { app: "db" }, false],
    ["app in (web,api)", {}, false],
    ["app in (,web)", { app: "" }, true],
    ["app notin (web,api)", { app: "db" }, true],
    ["app notin (web,api)", { app: "web" }, false],
    ["app notin (web,api)", {}, true],
    ["app notin (web,api)", undefined, true],
    ["app=web,tier", { app: "web", tier: "front" }, true],
    ["app=web,tier", { app: "web" }, false],
    ["app=web,!canary,env in (prod)", { app: "web", env: "prod" }, true],
    ["app=web,!canary,env in (prod)", { app: "web", env: "prod", canary: "1" }, false],
    ["app=a,app=b", { app: "a" }, false],
    ["example.com/team=ops", { "example.com/team": "ops" }, true],
    ["example.com/team=ops", { team: "ops" }, false],
  ];
  for (const [selector, labels, expected] of cases) {
    await t.step(`${selector} on ${JSON.stringify(labels)}`, () => {
      assertEquals(parseLabelSelector(selector).matches(labels), expected);
    });
  }
});

Deno.test("parseLabelSelector() allows whitespace around tokens", async (t) => {
  const cases: [string, string][] = [
    ["  app = web ", "app=web"],
    ["app\t!=\tweb", "app!=web"],
    ["app in(web , api )", "app in (api,web)"],
    ["app   notin   (  web  )", "app notin (web)"],
    ["! app , tier", "!app,tier"],
    ["app=web ,tier == front", "app=web,tier=front"],
    ["\r\napp=web\n", "app=web"],
  ];
  for (const [input, text] of cases) {
    await t.step(JSON.stringify(input), () => assertEquals(parseLabelSelector(input).text, text));
  }
});

Deno.test("parseLabelSelector() writes canonical text that reads back as itself", async (t) => {
  const cases: [string, string][] = [
    ["app", "app"],
    ["!app", "!app"],
    ["app==web", "app=web"],
    ["app=", "app="],
    ["app!=", "app!="],
    ["app in (web,api,web)", "app in (api,web)"],
    ["app notin (b,a)", "app notin (a,b)"],
    // apimachinery: an empty entry in a set is the empty value.
    ["app in (a,,b)", "app in (,a,b)"],
    ["app in (a,)", "app in (,a)"],
    ["app in (,)", "app in (,)"],
    ["tier=front,app in (b,a),!canary", "tier=front,app in (a,b),!canary"],
    ["example.com/team=ops", "example.com/team=ops"],
    ["in in (notin)", "in in (notin)"],
    ["notin=in", "notin=in"],
  ];
  for (const [input, text] of cases) {
    await t.step(input, () => {
      assertEquals(parseLabelSelector(input).text, text);
      assertEquals(parseLabelSelector(text).text, text);
    });
  }
});

Deno.test("parseLabelSelector() accepts keys and values at the grammar's limits", async (t) => {
  const name = "a" + "-_.".repeat(20) + "z";
  const prefix = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
  const cases: [string, string][] = [
    ["63-character name", `${"n".repeat(63)}=v`],
    ["name with - _ . inside", `${name}=${name}`],
    ["253-character prefix", `${prefix}/app=web`],
    ["upper-case name and value", "App=Web"],
    ["63-character value", `app=${"v".repeat(63)}`],
    ["digits only", "1=2"],
  ];
  assertEquals(prefix.length, 253);
  for (const [what, input] of cases) {
    await t.step(what, () => assertEquals(parseLabelSelector(input).text, input));
  }
});

Deno.test("parseLabelSelector() refuses text outside the grammar, naming the first problem", async (t) => {
  const cases: [string, RegExp][] = [
    ["", /^is empty$/],
    [" \t\n ", /^is empty$/],
    [
      "a b",
      /^expected an operator \(=, ==, !=, in, notin\), "," or the end after "a" at offset 2, found "b"$/,
    ],
    ["a in b", /^expected "\(" after "in" at offset 5, found "b"$/],
    ["a notin", /^expected "\(" after "notin" at offset 7, found the end$/],
    ["a in ()", /^the set after "in" at offset 2 is empty; list at least one value$/],
    ["a notin ( )", /^the set after "notin" at offset 2 is empty/],
    ["a>1", /^operator ">" at offset 1 is not supported \(gt\/lt\); use =, ==, !=, in or notin$/],
    ["a < 1", /^operator "<" at offset 2 is not supported/],
    ["a$b=c", /^key "a\$b" at offset 0 has a name that is not letters, digits/],
    ["-a=b", /^key "-a" at offset 0 has a name that is not/],
    ["a_=b", /^key "a_" at offset 0 has a name that is not/],
    [`${"n".repeat(64)}=v`, /^key "n{64}" at offset 0 has a name longer than 63 characters$/],
    ["Example.com/app=web", /^key "Example.com\/app" at offset 0 has a prefix that is not a DNS/],
    [`${"p".repeat(254)}/app`, /has a prefix longer than 253 characters$/],
    ["example..com/app", /has a prefix that is not a DNS subdomain/],
    ["/app=web", /^key "\/app" at offset 0 has an empty prefix before "\/"$/],
    ["example.com/=web", /^key "example.com\/" at offset 0 has an empty name$/],
    ["a/b/c=d", /^key "a\/b\/c" at offset 0 has more than one "\/"$/],
    ["a=b,", /^ends with "," at offset 3; remove it or add a requirement$/],
    ["a=b,,c", /^expected a key or "!" at offset 4, found ","$/],
    [",a", /^expected a key or "!" at offset 0, found ","$/],
    ["a in (b", /^expected "," or "\)" at offset 7, found the end$/],
    ["a in (b,", /^expected a value, "," or "\)" at offset 8, found the end$/],
    ["a in b)", /^expected "\(" after "in" at offset 5, found "b"$/],
    ["a=b)", /^expected "," or the end at offset 3, found "\)"$/],
    ["a in ((b))", /^expected a value, "," or "\)" at offset 6, found "\("$/],
    ["a in (b c)", /^expected "," or "\)" at offset 8, found "c"$/],
    ["=v", /^expected a key or "!" at offset 0, found "="$/],
    ["!=v", /^expected a key or "!" at offset 0, found "!="$/],
    ["!", /^expected a key after "!" at offset 1, found the end$/],
    ["!a=b", /^expected "," or the end after "!a" at offset 2, found "="$/],
    ["a=b=c", /^expected "," or the end at offset 3, found "="$/],
    ["a=!b", /^expected a value after "=" at offset 2, found "!"$/],
    ["a=-b", /^value "-b" at offset 2 is not letters, digits/],
    [`a=${"v".repeat(64)}`, /^value "v{64}" at offset 2 is longer than 63 characters$/],
    ["a in (b,c_)", /^value "c_" at offset 8 is not letters/],
    ["a(b)", /^expected an operator .* at offset 1, found "\("$/],
  ];
  for (const [input, message] of cases) {
    await t.step(
      JSON.stringify(input),
      () => void assertThrows(() => parseLabelSelector(input), { message }),
    );
  }
});

Deno.test("parseLabelSelector() bounds the text and the number of requirements", () => {
  const hundred = Array.from({ length: 100 }, (_, i) => `k${i}`).join(",");
  assertEquals(parseLabelSelector(hundred).text, hundred);
  assertThrows(() => parseLabelSelector(`${hundred},k100`), {
    message: /^has more than 100 requirements$/,
  });
  const long = `app in (${Array.from({ length: 1000 }, (_, i) => `v${i}`).join(",")})`;
  assert(long.length > 4096);
  assertThrows(() => parseLabelSelector(long), { message: /^is longer than 4096 characters$/ });
  assertThrows(() => parseLabelSelector(" ".repeat(4097)), { message: /longer than 4096/ });
});

Deno.test("security: parseLabelSelector() refuses characters that would change a URL query", async (t) => {
  const cases: [string, RegExp][] = [
    ["app=web&watch=false", /^value "web&watch" at offset 4 is not/],
    ["app=web%26x", /^value "web%26x" at offset 4 is not/],
    ["app=web%0A", /^value "web%0A" at offset 4 is not/],
    ["app=we\nb", /^expected "," or the end at offset 7, found "b"$/],
    ["app=web\n,x=y\r\nz", /^expected "," or the end at offset 14, found "z"$/],
    ["app=web#frag", /^value "web#frag" at offset 4 is not/],
    ["app=web?x", /^value "web\?x" at offset 4 is not/],
    ["app=web+x", /^value "web\+x" at offset 4 is not/],
    ["app=web;x", /^value "web;x" at offset 4 is not/],
    ["app=web\u0000x", /^value "web\\u0000x" at offset 4 is not/],
    ["app=web\u00a0", /^value "web\\u00a0" at offset 4 is not/],
    ["app=w\u00e9b", /^value "w\\u00e9b" at offset 4 is not/],
    ["app&x=web", /^key "app&x" at offset 0 has a name that is not/],
    ["app in (a&b)", /^value "a&b" at offset 8 is not/],
    ["\u212Aey=v", /^key "\\u212aey" at offset 0 has a name that is not/],
  ];
  for (const [input, message] of cases) {
    await t.step(
      JSON.stringify(input),
      () => void assertThrows(() => parseLabelSelector(input), { message }),
    );
  }
});

Deno.test("security: parseLabelSelector() quotes input on one ASCII line, cut to 100 characters", () => {
  const err = assertThrows(() => parseLabelSelector(`app=${"x".repeat(200)}\u2028\u202e&`));
  assertEquals(err.message, `value "${"x".repeat(100)}" at offset 4 is longer than 63 characters`);
  const bidi = assertThrows(() => parseLabelSelector("app=\u202eevil\u2028\r\x1b[0m"));
  assertMatch(bidi.message, /^value "\\u202eevil\\u2028" at offset 4 is not /);
  assertMatch(bidi.message, /^[\x20-\x7e]+$/);
});

Deno.test("security: matches() reads only the labels' own properties", async (t) => {
  const cases: [string, Labels, boolean][] = [
    ["constructor", {}, false],
    ["!constructor", {}, true],
    ["toString!=x", {}, true],
    ["hasOwnProperty in (x)", {}, false],
    ["constructor=x", Object.assign(Object.create({ constructor: "x" }), {}), false],
    ["app=web", Object.assign(Object.create(null), { app: "web" }), true],
    ["app", { app: 1 } as unknown as Labels, false],
  ];
  for (const [selector, labels, expected] of cases) {
    await t.step(
      selector,
      () => assertEquals(parseLabelSelector(selector).matches(labels), expected),
    );
  }
});
