/**
 * The probe and metrics endpoints both modes serve: /healthz (the process
 * answers), /readyz (every named check passes; a failing check may add one
 * line of detail) and /metrics (Prometheus text).
 */

import { json } from "./json_response.ts";
import type { Registry } from "./metrics.ts";

/**
 * A readiness check's answer: passing or not, or that with a short detail that
 * /readyz shows while the check fails. Security: /readyz answers anyone who
 * reaches the port; a detail must name what is wrong, never a credential.
 */
export type Readiness = boolean | { ok: boolean; detail?: string };

/** The longest detail /readyz shows per check, in characters. */
export const READINESS_DETAIL_MAX_CHARS = 500;

/** Options for probeRoutes. */
export interface ProbeOptions {
  /** Readiness checks by name; all must pass for /readyz to answer 200. */
  readiness: Record<string, () => Promise<Readiness> | Readiness>;
  registry: Registry;
  /** Runs before /metrics renders, to refresh gauges. */
  beforeScrape?: () => void;
}

/** GET handlers for /healthz, /readyz and /metrics. */
export function probeRoutes(options: ProbeOptions): Record<string, () => Promise<Response>> {
  return {
    "/healthz": () => Promise.resolve(json(200, { status: "ok" })),
    "/readyz": async () => {
      const names = Object.keys(options.readiness);
      const results = await Promise.all(names.map((n) => runCheck(options.readiness[n])));
      const checks = Object.fromEntries(names.map((n, i) => [n, results[i].ok ? "ok" : "failing"]));
      // Only failing checks say why; a ready answer is the same as before details existed.
      const details = Object.fromEntries(
        names.flatMap((n, i) => results[i].detail ? [[n, results[i].detail]] : []),
      );
      const ok = results.every((r) => r.ok);
      return json(ok ? 200 : 503, {
        status: ok ? "ready" : "not ready",
        checks,
        ...(Object.keys(details).length > 0 ? { details } : {}),
      });
    },
    "/metrics": () => {
      options.beforeScrape?.();
      return Promise.resolve(
        new Response(options.registry.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        }),
      );
    },
  };
}

/**
 * One check's answer, as pass/fail and a failing check's detail. A check that
 * throws fails without detail: its error's message may quote anything.
 */
async function runCheck(
  check: () => Promise<Readiness> | Readiness,
): Promise<{ ok: boolean; detail?: string }> {
  try {
    const answer = await check();
    if (typeof answer !== "object" || answer === null) return { ok: Boolean(answer) };
    const ok = answer.ok === true;
    return ok || typeof answer.detail !== "string"
      ? { ok }
      : { ok, detail: oneLine(answer.detail) };
  } catch {
    return { ok: false };
  }
}

/** One line without control or format characters, at most READINESS_DETAIL_MAX_CHARS long. */
function oneLine(text: string): string | undefined {
  const chars = [...text.replace(/[\p{Cc}\p{Cf}\s]+/gu, " ").trim()];
  if (chars.length === 0) return undefined;
  return chars.length <= READINESS_DETAIL_MAX_CHARS
    ? chars.join("")
    : `${chars.slice(0, READINESS_DETAIL_MAX_CHARS - 1).join("")}…`;
}
