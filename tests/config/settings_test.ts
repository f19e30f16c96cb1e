/** The assembled table: each row from exactly one owner, in the order --help shows. */

import { assertEquals } from "../helpers/assert.ts";
import { IMAGE_SETTINGS, LOG_SETTINGS } from "../../config/common_settings.ts";
import { checkCombinations, SETTINGS, settingsFor } from "../../config/settings.ts";
import { VALKEY_SETTINGS } from "../../config/valkey_settings.ts";
import { WEB_SETTINGS } from "../../config/web_settings.ts";
import { WORKER_SETTINGS } from "../../config/worker_settings.ts";
import { parseCommandLine } from "../../config/command_line.ts";

const OWNERS = [LOG_SETTINGS, VALKEY_SETTINGS, IMAGE_SETTINGS, WEB_SETTINGS, WORKER_SETTINGS];

Deno.test("SETTINGS holds every owner's rows once, in the owners' order (a key in two owners would be lost)", () => {
  const owned = OWNERS.flatMap((rows) => Object.keys(rows));
  assertEquals(Object.keys(SETTINGS), owned);
  assertEquals(new Set(owned).size, owned.length);
});

Deno.test("settingsFor() gives a mode its rows only, in table order", () => {
  const web = settingsFor("web").map(([key]) => key);
  const worker = settingsFor("worker").map(([key]) => key);
  assertEquals(web[0], "logLevel");
  assertEquals(worker[0], "logLevel");
  assertEquals(web.includes("kubeconfig"), false);
  assertEquals(worker.includes("oidcAudience"), false);
  assertEquals(web.includes("eventVerifyKeys") && worker.includes("eventVerifyKeys"), true);
});

Deno.test("checkCombinations() lists web's own problems before Valkey's, and the worker's after", () => {
  const env = (values: Record<string, string>) => (name: string) => values[name];
  const base = {
    VALKEY_ADDR: "127.0.0.1:6379",
    ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
  };
  const web = parseCommandLine(
    "web",
    [],
    env({ ...base, GITHUB_OIDC_AUDIENCE: "a", GITHUB_ALLOWED_ORG: "acme" }),
  );
  const worker = parseCommandLine("worker", [], env(base));
  if (web.kind !== "config" || worker.kind !== "config") throw new Error("expected a config");
  // Only after parsing: the combination checks see valid values.
  const webProblems = checkCombinations("web", {
    ...web.config,
    valkeySentinelMaster: "m",
    devMode: true,
    listenAddr: { host: "0.0.0.0", port: 8080 },
  });
  assertEquals(webProblems.map((p) => p.split(" ")[0]), ["DEV_MODE", "VALKEY_SENTINEL_MASTER"]);
  const workerProblems = checkCombinations("worker", {
    ...worker.config,
    valkeySentinelMaster: "m",
    localInventory: "/x.yaml",
    kubeconfig: "/k",
  });
  assertEquals(workerProblems.map((p) => p.split(" ")[0]), [
    "VALKEY_SENTINEL_MASTER",
    "LOCAL_INVENTORY",
  ]);
});

Deno.test("CLUSTERS keeps each cluster once and refuses more than a status record can name", () => {
  const parse = WEB_SETTINGS.clusters.parse;
  assertEquals(parse("west, east,west"), ["west", "east"]);
  let message = "";
  try {
    parse(Array.from({ length: 1001 }, (_, i) => `c${i}`).join(","));
  } catch (err) {
    message = (err as Error).message;
  }
  assertEquals(message, "names 1001 clusters; at most 1000");
});

Deno.test("CATCH_UP_WINDOW is read by both modes: web keeps the stream for it, workers accept events within it", () => {
  assertEquals(WORKER_SETTINGS.catchUpWindow.modes, ["web", "worker"]);
  assertEquals(WORKER_SETTINGS.catchUpWindow.parse("1h"), 3_600_000);
});
