/**
 * `deno task test:unit`: the in-process tier. Every test file outside the
 * full-suite folders (tests/integration/, tests/e2e/, tests/helm/, tests/fuzz/)
 * runs in parallel with no server: NO_SERVERS_ENV makes the helpers refuse to start
 * Valkey, the control plane or the program, and nothing may be skipped, so a
 * real-server test left in an in-process folder fails here instead of passing
 * quietly. Named test files or folders narrow the tier; other arguments go to
 * `deno test` (e.g. `--filter web`).
 */

import { ROOT } from "../tools/program.ts";
import { NO_SERVERS_ENV } from "./helpers/skip.ts";
import { FULL_SUITE_FOLDERS, pathArguments, testFilesUnder } from "./helpers/test_files.ts";

// Named files or folders narrow the tier, as with `deno task test`; they are passed on as files.
const paths = pathArguments(Deno.args);
const named = (paths.length ? paths : ["tests"]).flatMap(testFilesUnder);
const files = named.filter((file) => !FULL_SUITE_FOLDERS.some((folder) => file.startsWith(folder)));
if (files.length < named.length) {
  console.error(
    `[test:unit] ${
      named.length - files.length
    } named file(s) need servers or minutes: run them with deno task test`,
  );
}
const options = Deno.args.filter((arg) => !paths.includes(arg));
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "--allow-all", "--no-prompt", "--parallel", ...options, ...files],
  cwd: ROOT,
  env: { [NO_SERVERS_ENV]: "1" },
  stdin: "null",
}).spawn();
Deno.exit((await child.status).code);
