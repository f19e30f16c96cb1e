/**
 * Permission reporting and dropping, in a child Deno with a known permission
 * set: revoking is for the whole process, so it cannot run in the test's own.
 */

import { assertEquals } from "../helpers/assert.ts";
import { ROOT } from "../helpers/program.ts";

/** Runs `code` as a script with exactly `flags` (deno eval would grant everything). */
async function inChild(flags: string[], code: string): Promise<unknown> {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(script, code);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...flags, script],
      cwd: ROOT,
      stdin: "null",
      stderr: "inherit",
      env: { NO_COLOR: "1" },
    }).output();
    assertEquals(out.code, 0);
    return JSON.parse(new TextDecoder().decode(out.stdout));
  } finally {
    await Deno.remove(script);
  }
}

const MODULE = JSON.stringify(`file://${ROOT}lib/permissions.ts`);

Deno.test("describePermissions() names every permission's state and the read paths that are granted", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const described = await inChild(
      [`--allow-read=${dir}`],
      `const { describePermissions } = await import(${MODULE});
       console.log(JSON.stringify(await describePermissions([${JSON.stringify(dir)}, "/etc"])));`,
    );
    assertEquals(described, {
      read: `granted: ${dir}`,
      write: "prompt",
      net: "prompt",
      env: "prompt",
      run: "prompt",
      ffi: "prompt",
      sys: "prompt",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dropPermissions() revokes what a mode does not need and leaves the rest", async () => {
  const after = await inChild(
    ["--allow-net", "--allow-env", "--allow-run"],
    `const { describePermissions, dropPermissions } = await import(${MODULE});
     await dropPermissions(["env", "run"]);
     const d = await describePermissions();
     console.log(JSON.stringify({ net: d.net, env: d.env, run: d.run }));`,
  );
  assertEquals(after, { net: "granted", env: "prompt", run: "prompt" });
});
