/**
 * Deno permission handling at startup: drop what a mode does not need (the
 * compiled binary carries the union of both modes' permissions) and report
 * what remains, so the startup log shows the effective sandbox.
 */

const KINDS = ["read", "write", "net", "env", "run", "ffi", "sys"] as const;
/** A top-level Deno permission name. */
export type PermissionKind = typeof KINDS[number];

/** Revokes each listed permission (a no-op for ones never granted). */
export async function dropPermissions(kinds: readonly PermissionKind[]): Promise<void> {
  for (const name of kinds) await Deno.permissions.revoke({ name });
}

/**
 * The state of every top-level permission (granted, prompt or denied). For
 * read, a grant limited to some of `readPaths` shows as "granted: <paths>", so
 * path-scoped grants are visible too.
 */
export async function describePermissions(
  readPaths: readonly string[] = [],
): Promise<Record<PermissionKind, string>> {
  const out = {} as Record<PermissionKind, string>;
  for (const name of KINDS) out[name] = (await Deno.permissions.query({ name })).state;
  if (out.read !== "granted") {
    const granted: string[] = [];
    for (const path of readPaths) {
      if ((await Deno.permissions.query({ name: "read", path })).state === "granted") {
        granted.push(path);
      }
    }
    if (granted.length > 0) out.read = `granted: ${granted.join(", ")}`;
  }
  return out;
}
