/**
 * NOTIFY_URLS and NOTIFY_STATES: where web's notifications go and for which
 * final states. A URL may hold a secret (Slack's webhook path, a key in a
 * query): errors name an entry by its position only, and only its label
 * (scheme and host) is ever logged.
 */

import { isLoopbackHost } from "../lib/setting_values.ts";
import { FINAL_OVERALL_STATES, type OverallState } from "../shared/event_status.ts";

/** One configured target: the URL and a label safe to log (scheme://host[:port] only). */
export interface NotifyTarget {
  url: URL;
  label: string;
}

/** Most entries in NOTIFY_URLS. */
export const MAX_NOTIFY_URLS = 10;

function notifyTarget(entry: string, position: number): NotifyTarget {
  // Security: the entry may hold a secret, and URL's own error quotes it: say where and what only.
  const bad = (what: string) => new Error(`entry ${position} ${what}`);
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    throw bad("is not a URL");
  }
  if (entry.includes("#")) throw bad("has a fragment (#…), which is never sent; remove it");
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw bad("uses http://; use https:// (plain http:// only to a loopback host)");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw bad("must use https://");
  return { url, label: `${url.protocol}//${url.host}` };
}

/**
 * Parses NOTIFY_URLS: comma or newline separated (a comma inside a URL as
 * %2C), https or http to a loopback host, no fragment, no repeats, at most
 * MAX_NOTIFY_URLS. Errors name entries by position, never quoting them.
 */
export function parseNotifyUrls(raw: string): NotifyTarget[] {
  const entries = raw.split(/[,\r\n]/).map((e) => e.trim()).filter((e) => e !== "");
  if (entries.length > MAX_NOTIFY_URLS) {
    throw new Error(`has ${entries.length} entries; at most ${MAX_NOTIFY_URLS}`);
  }
  const seen = new Map<string, number>();
  return entries.map((entry, i) => {
    const target = notifyTarget(entry, i + 1);
    const first = seen.get(target.url.href);
    if (first !== undefined) throw new Error(`entry ${i + 1} repeats entry ${first}`);
    seen.set(target.url.href, i + 1);
    return target;
  });
}

/** Parses NOTIFY_STATES: comma-separated final overall states; empty means all of them. */
export function parseNotifyStates(raw: string): OverallState[] {
  const wanted = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const state of wanted) {
    if (!(FINAL_OVERALL_STATES as readonly string[]).includes(state)) {
      throw new Error(
        `${JSON.stringify(printable(state))} is not a final state; expected a comma-separated ` +
          `list of ${FINAL_OVERALL_STATES.join(", ")} (empty: all of them)`,
      );
    }
  }
  return FINAL_OVERALL_STATES.filter((s) => wanted.length === 0 || wanted.includes(s));
}

/** At most 40 characters of a value, without control characters, for an error line. */
function printable(value: string): string {
  // deno-lint-ignore no-control-regex
  return value.slice(0, 40).replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, " ");
}
