import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  asciiLowerCase,
  formatDuration,
  isGitHubName,
  isLoopbackHost,
  parseBool,
  parseDuration,
  parseHostPort,
  parseList,
  parseListenAddr,
} from "../../lib/setting_values.ts";

Deno.test("parseBool() reads Go's spellings and yes/no in any case, and nothing else", () => {
  for (const t of ["1", "t", "TRUE", " yes ", "on"]) assertEquals(parseBool(t), true, t);
  for (const f of ["0", "F", "false", "No", "off"]) assertEquals(parseBool(f), false, f);
  for (const bad of ["", "2", "enabled"]) {
    assertThrows(() => parseBool(bad), { message: /expected true or false/ });
  }
});

Deno.test("parseList() trims entries and drops empty ones", () => {
  assertEquals(parseList(" a, b ,,c,"), ["a", "b", "c"]);
  assertEquals(parseList(""), []);
});

Deno.test("parseDuration() reads unit sequences into milliseconds and formatDuration() writes them back", () => {
  const cases: [string, number][] = [["500ms", 500], ["5s", 5000], ["1h30m", 5_400_000], [
    "1.5s",
    1500,
  ]];
  for (const [text, ms] of cases) assertEquals(parseDuration(text), ms, text);
  for (const bad of ["", "5", "5d", "s", "5s x", "-1s"]) {
    assertThrows(() => parseDuration(bad), { message: /duration/ });
  }
  assertThrows(() => parseDuration("9000h"), { message: /out of range/ });
  for (const ms of [0, 250, 5000, 600_000, 3_600_000]) {
    assertEquals(parseDuration(formatDuration(ms)), ms, String(ms));
  }
  assertEquals([formatDuration(90_000), formatDuration(7_200_000)], ["90s", "2h"]);
});

Deno.test("parseHostPort() takes host:port and [ipv6]:port, and says what is wrong otherwise", () => {
  assertEquals(parseHostPort("valkey:6379"), { host: "valkey", port: 6379 });
  assertEquals(parseHostPort("[::1]:6380"), { host: "::1", port: 6380 });
  const wrong: [string, RegExp][] = [
    ["valkey", /expected host:port/],
    [":6379", /expected host:port/],
    ["::1:6379", /in brackets/],
    ["va lkey:1", /invalid characters/],
    ["valkey:x", /port must be a number/],
    ["valkey:0", /between 1 and 65535/],
    ["valkey:65536", /between 1 and 65535/],
  ];
  for (const [text, message] of wrong) assertThrows(() => parseHostPort(text), { message });
});

Deno.test("parseListenAddr() takes :port for every IPv4 interface and port 0 for a free one", () => {
  assertEquals(parseListenAddr(":8080"), { host: "0.0.0.0", port: 8080 });
  assertEquals(parseListenAddr("127.0.0.1:0"), { host: "127.0.0.1", port: 0 });
  assertEquals(parseListenAddr("[::]:8080"), { host: "::", port: 8080 });
  assertThrows(() => parseListenAddr("8080"), { message: /host:port/ });
});

Deno.test("security: isLoopbackHost() is true only for addresses that stay on this machine", () => {
  for (const h of ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]"]) {
    assertEquals(isLoopbackHost(h), true, h);
  }
  for (
    const h of ["0.0.0.0", "10.0.0.1", "127.0.0.1.evil", "localhost.evil", "::", "::ffff:10.0.0.1"]
  ) {
    assertEquals(isLoopbackHost(h), false, h);
  }
});

Deno.test("security: GitHub names are ASCII and compared with ASCII-only lower-casing", () => {
  for (const ok of ["acme", "Acme-Inc", "my_user", "repo.js"]) {
    assertEquals(isGitHubName(ok), true, ok);
  }
  for (const bad of ["", ".", "..", "a/b", "a b", "\u212Acme", "x".repeat(101)]) {
    assertEquals(isGitHubName(bad), false, bad);
  }
  // The Kelvin sign folds to "k" under toLowerCase(); ASCII folding leaves it alone.
  assertEquals(asciiLowerCase("\u212AACME"), "\u212Aacme");
  assertEquals("\u212AACME".toLowerCase(), "kacme");
});
