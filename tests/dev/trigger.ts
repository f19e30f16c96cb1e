/**
 * `deno task trigger <image[:tag]> [--tags a,b] [--url http://127.0.0.1:8080]`:
 * mints a dev token from a web running in dev mode and sends one event, as a
 * workflow would. Prints the status and body; exits 1 unless the answer is 202.
 */

import { parseArgs } from "node:util";

/** Sends one event through a dev-mode web; returns the HTTP status and body. */
export async function triggerDevEvent(
  url: string,
  image: string,
  tags?: string[],
): Promise<{ status: number; body: string }> {
  const minted = await fetch(`${url}/dev/token`, { method: "POST" });
  if (minted.status !== 200) {
    throw new Error(
      `could not mint a dev token (${minted.status}): is web running with --dev-mode at ${url}?`,
    );
  }
  const { token } = await minted.json();
  const res = await fetch(`${url}/event`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(tags ? { image, tags } : { image }),
  });
  return { status: res.status, body: await res.text() };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      tags: { type: "string" },
      url: { type: "string", default: "http://127.0.0.1:8080" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    console.error(
      "usage: deno task trigger <image[:tag]> [--tags a,b] [--url http://127.0.0.1:8080]",
    );
    Deno.exit(2);
  }
  try {
    const tags = values.tags?.split(",").map((t) => t.trim()).filter(Boolean);
    const { status, body } = await triggerDevEvent(values.url!, positionals[0], tags);
    console.log(`${status} ${body}`);
    Deno.exit(status === 202 ? 0 : 1);
  } catch (err) {
    console.error(`deno task trigger: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
