import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  containerImageKey,
  isAllowedRepository,
  parseImagePrefix,
  parseImageRef,
} from "../../shared/image_ref.ts";

Deno.test("parseImageRef() normalises references the way Docker does", async (t) => {
  const cases: [string, string, string | undefined][] = [
    ["nginx", "docker.io/library/nginx", undefined],
    ["nginx:1.27", "docker.io/library/nginx", "1.27"],
    ["docker.io/library/nginx:latest", "docker.io/library/nginx", "latest"],
    ["index.docker.io/library/nginx", "docker.io/library/nginx", undefined],
    ["acme/app:dev", "docker.io/acme/app", "dev"],
    ["GHCR.io/acme/app:dev", "ghcr.io/acme/app", "dev"],
    ["localhost:5000/app:v1", "localhost:5000/app", "v1"],
    ["localhost/app", "localhost/app", undefined],
    [
      "registry.example.com:8443/team/sub/app:1.0.0-rc.1",
      "registry.example.com:8443/team/sub/app",
      "1.0.0-rc.1",
    ],
    ["[::1]:5000/app:dev", "[::1]:5000/app", "dev"],
    ["ghcr.io/acme/my_app__x-y.z:T_1", "ghcr.io/acme/my_app__x-y.z", "T_1"],
  ];
  for (const [input, repository, tag] of cases) {
    await t.step(input, () => {
      const ref = parseImageRef(input);
      assertEquals(ref.repository, repository);
      assertEquals(ref.tag, tag);
    });
  }
});

Deno.test("parseImageRef() keeps digests so callers can refuse them", () => {
  const digest = `sha256:${"a".repeat(64)}`;
  assertEquals(parseImageRef(`ghcr.io/acme/app@${digest}`).digest, digest);
  assertEquals(parseImageRef(`ghcr.io/acme/app:dev@${digest}`).tag, "dev");
});

Deno.test("parseImageRef() rejects text outside the grammar", async (t) => {
  for (
    const bad of [
      "",
      "ghcr.io/acme/App",
      "ghcr.io/acme/app:-dev",
      "ghcr.io/acme/app:" + "a".repeat(129),
      "ghcr.io/acme/../app",
      "ghcr.io/acme/./app",
      "ghcr.io/acme//app",
      "ghcr.io/acme/app ",
      "ghcr.io/acme/app\n",
      "ghcr.io/acme/app\u0000",
      "ghcr.io/acme/äpp",
      "ghcr.io/acme/app@sha256:short",
      "ghcr.io/-acme/app",
      "-ghcr.io/acme/app",
      "ghcr.io:99999999/acme/app",
      "ghcr.io/" + "a".repeat(260),
      "ghcr.io/acme/app:",
      "/acme/app",
    ]
  ) {
    await t.step(JSON.stringify(bad), () => void assertThrows(() => parseImageRef(bad)));
  }
});

Deno.test("parseImagePrefix() needs a registry host and drops a trailing slash", () => {
  assertEquals(parseImagePrefix("ghcr.io/acme/"), "ghcr.io/acme");
  assertEquals(parseImagePrefix("GHCR.IO/acme"), "ghcr.io/acme");
  assertEquals(parseImagePrefix("ghcr.io"), "ghcr.io");
  assertEquals(parseImagePrefix("localhost:5000/team"), "localhost:5000/team");
  assertEquals(parseImagePrefix("docker.io/acme"), "docker.io/acme");
  for (
    const bad of [
      "acme",
      "acme/app",
      "ghcr.io/Acme",
      "ghcr.io/acme:dev",
      "ghcr.io/acme/..",
      "",
      "ghcr.io/acme@sha256:x",
    ]
  ) {
    assertThrows(() => parseImagePrefix(bad));
  }
});

Deno.test("security: isAllowedRepository() matches on a path-component boundary only", async (t) => {
  const prefixes = [
    parseImagePrefix("ghcr.io/acme"),
    parseImagePrefix("registry.example.com:5000/team/"),
  ];
  const cases: [string, boolean][] = [
    ["ghcr.io/acme/app", true],
    ["ghcr.io/acme/sub/app", true],
    ["ghcr.io/acme", true],
    ["ghcr.io/acme-evil/app", false],
    ["ghcr.io/acmeapp", false],
    ["ghcr.io.evil.com/acme/app", false],
    ["evil.com/ghcr.io/acme/app", false],
    ["registry.example.com:5000/team/app", true],
    ["registry.example.com:5001/team/app", false],
    ["registry.example.com/team/app", false],
  ];
  for (const [repository, allowed] of cases) {
    await t.step(
      `${repository} → ${allowed}`,
      () => assertEquals(isAllowedRepository(repository, prefixes), allowed),
    );
  }
  await t.step("a normalised upper-case host matches", () => {
    assertEquals(
      isAllowedRepository(parseImageRef("GHCR.IO/acme/app:dev").repository, prefixes),
      true,
    );
  });
});

Deno.test("containerImageKey() defaults the tag to latest", () => {
  assertEquals(containerImageKey(parseImageRef("nginx")), "docker.io/library/nginx:latest");
  assertEquals(containerImageKey(parseImageRef("ghcr.io/acme/app:dev")), "ghcr.io/acme/app:dev");
});

Deno.test("security: parseImageRef() refuses a registry host recognised only by its upper case", () => {
  // "GHCo/app" would normalise to "ghco/app", which reads back as docker.io/ghco/app.
  assertThrows(() => parseImageRef("GHCo/ame/app:dev"));
  assertThrows(() => parseImagePrefix("GHCo/ame"));
  assertEquals(parseImageRef("LOCALHOST/app").repository, "localhost/app");
});
