/**
 * `deno task trigger <image[:tag]> [--tags a,b] [--url http://127.0.0.1:8080]`:
 * mints a dev token from a web running in dev mode and sends one event, as a
 * workflow would. Prints the status and body; exits 1 unless the answer is 202.
 */

import { parseArgs } from "node:util";
import { DEFAULT_WEB_URL, TASK_COMMAND } from "./defaults.ts";

/**
 * One line for a request that got no answer: the URL, why (the innermost
 * cause, e.g. "Connection refused"), and what to check. fetch() itself only
 * says "fetch failed".
 */
export function unreachable(url: string, err: unknown): Error {
  let cause = err;
  while (cause instanceof Error && cause.cause !== undefined) cause = cause.cause;
  const detail = (cause instanceof Error ? cause.message : String(cause)).split("\n")[0];
  const why = detail.slice(detail.lastIndexOf(": ") + 1).replace(/\s*\(os error \d+\)$/, "")
    .trim();
  return new Error(
    `Cannot reach ${url} (${why}): check that \`${TASK_COMMAND} dev\` is running and that --url is the "web" address its banner prints`,
    { cause: err },
  );
}

async function post(url: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(url, { method: "POST", ...init });
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) {
      // Security: the task may only reach loopback, where dev-mode web listens.
      throw new Error(
        `Cannot reach ${url}: dev-mode web listens on loopback only, so --url must name 127.0.0.1, localhost or [::1]`,
        { cause: err },
      );
    }
    throw unreachable(url, err);
  }
}

/** Sends one event through a dev-mode web; returns the HTTP status and body. */
export async function triggerDevEvent(
  url: string,
  image: string,
  tags?: string[],
): Promise<{ status: number; body: string }> {
  const minted = await post(`${url}/dev/token`);
  if (minted.status !== 200) {
    throw new Error(
      `could not mint a dev token (${minted.status}): is web running with --dev-mode at ${url}?`,
    );
  }
  const { token } = await minted.json();
  const res = await post(`${url}/event`, {
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
      url: { type: "string", default: DEFAULT_WEB_URL },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    console.error(
      `usage: deno task trigger <image[:tag]> [--tags a,b] [--url ${DEFAULT_WEB_URL}]`,
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
