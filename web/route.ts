/** The shape every web route has, so the handler can compose them. */

import type { LogFields } from "../lib/log.ts";

/** Connection facts Deno.serve passes along with each request. */
export interface RequestInfo {
  remoteAddr: { hostname: string; port: number };
}

/** A request handler for one route; `log` collects the fields of the request's one log line. */
export type Route = (req: Request, info: RequestInfo, log: LogFields) => Promise<Response>;
