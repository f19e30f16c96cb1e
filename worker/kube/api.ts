/**
 * The few Kubernetes API calls the worker makes: on apps/v1 Deployments list
 * (paged), watch (streamed NDJSON; optionally a streaming list, which begins
 * with every existing Deployment), get and patch, and one core/v1 Event
 * create per restart (the audit trail in the cluster). Every call is counted
 * by verb so tests and benchmarks can prove how many requests an event costs.
 * Responses are untrusted JSON; callers validate what they use, except watch
 * events, which watch_stream.ts checks for shape before anyone sees them.
 * Each request takes the credentials of that moment; a 401 to credentials an
 * exec plugin gave renews them and retries the request once (client-go's
 * exec authenticator does the same).
 */

import { AppError } from "../../shared/errors.ts";
import { describeError } from "../../lib/error_text.ts";
import type { KubeCredentials } from "./credentials.ts";
import { KubeApiError, WatchEventError } from "./errors.ts";
import type { Deployment, DeploymentList, KubeEvent } from "./objects.ts";
import { readWatchEvents, type WatchEvent } from "./watch_stream.ts";

/** The verbs the worker's requests are counted by. */
export type KubeVerb = "list" | "watch" | "get" | "patch" | "create_event";

/** Options for one watch request. */
export interface WatchOptions {
  /**
   * Where the watch resumes: the list's or the last event's resourceVersion.
   * With `sendInitialEvents`, "" asks for the most recent state (a consistent read).
   */
  resourceVersion: string;
  /**
   * A streaming list (watch-list, Kubernetes 1.32+ by default): the stream begins with an
   * ADDED event per existing Deployment, then a bookmark marked initialEventsEnd, then
   * continues as a watch. A server without it answers 422 (WatchList feature gate off).
   */
  sendInitialEvents?: boolean;
  /** Aborting it ends the request and the stream. */
  signal: AbortSignal;
  /** The server-side bound on the watch (it sends a bookmark ~2 s before, then closes). */
  timeoutSeconds?: number;
  /** Called once the API server has accepted the watch (response headers received). */
  onOpen?: () => void;
}

/** Options for createKubeApi. */
export interface KubeApiOptions {
  server: string;
  httpClient?: Deno.HttpClient;
  authorization?: () => Promise<string | undefined>;
  /** The credentials of each request; replaces httpClient and authorization when given. */
  credentials?: () => Promise<KubeCredentials>;
  /** After a 401: new credentials for one retry (an exec plugin's); unset: no retry. */
  renewCredentials?: (refused: KubeCredentials) => Promise<KubeCredentials>;
  fetch?: typeof fetch;
  /** Called once per request with its verb, for metrics. */
  onRequest?: (verb: KubeVerb) => void;
  /** Bound on each non-watch request. */
  timeoutMs?: number;
  /** DEPLOYMENT_SELECTOR: lists and watches return only the Deployments it selects. */
  labelSelector?: string;
}

/** The worker's view of the API. `namespace` undefined means cluster-wide. */
export interface KubeApi {
  listDeployments(
    namespace: string | undefined,
    options?: { limit?: number; continueToken?: string },
  ): Promise<DeploymentList>;
  /** Yields only events that passed parseWatchEvent; throws WatchEventError otherwise. */
  watchDeployments(namespace: string | undefined, options: WatchOptions): AsyncIterable<WatchEvent>;
  getDeployment(namespace: string, name: string): Promise<Deployment>;
  /** Strategic-merge patch; returns the updated Deployment. */
  patchDeployment(namespace: string, name: string, patch: unknown): Promise<Deployment>;
  /** Creates a core/v1 Event in `namespace`. */
  createEvent(namespace: string, event: KubeEvent): Promise<void>;
}

function collectionPath(namespace: string | undefined): string {
  return namespace === undefined
    ? "/apis/apps/v1/deployments"
    : `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments`;
}

/** The media type of an answer, for errors: a bare token, or "an unknown type". */
function contentType(response: Response): string {
  const type = (response.headers.get("content-type") ?? "").split(";")[0].trim();
  return /^[\w.+-]{1,40}\/[\w.+-]{1,60}$/.test(type) ? type : "an unknown type";
}

/**
 * The reason and message of a failed call. Only a `kind: Status` object is
 * read (metav1.Status): its reason must be a CamelCase word and its message is
 * kept to one bounded line, as the operator needs it ("deployments.apps is
 * forbidden: …"). Security: any other body (a proxy's page, an echo of the
 * request) is never quoted.
 */
async function readStatus(response: Response): Promise<{ reason: string; message: string }> {
  const fallback = /^[\w -]{1,40}$/.test(response.statusText) ? response.statusText : "Error";
  let status: unknown;
  try {
    status = JSON.parse(await response.text());
  } catch {
    return { reason: fallback, message: "" };
  }
  if (
    typeof status !== "object" || status === null ||
    (status as { kind?: unknown }).kind !== "Status"
  ) {
    return { reason: fallback, message: "" };
  }
  const { reason, message } = status as { reason?: unknown; message?: unknown };
  return {
    reason: typeof reason === "string" && /^[A-Za-z]{1,64}$/.test(reason) ? reason : fallback,
    message: typeof message === "string"
      ? message.replace(/\p{Cc}+/gu, " ").replace(/\s+/g, " ").trim().slice(0, 300)
      : "",
  };
}

/** What one request sends besides its verb, method and path. */
interface RequestParts {
  body?: string;
  contentType?: string;
  /** A watch's own signal; other requests are bounded by the client's timeout. */
  signal?: AbortSignal;
}

/** Sends one request as `createKubeApi` needs it; resolves only with a successful answer. */
type SendRequest = (
  verb: KubeVerb,
  method: string,
  path: string,
  parts?: RequestParts,
) => Promise<Response>;

/**
 * The credentials for one request. Security: Headers quote an invalid value
 * (the token) in their TypeError, and a plugin's failure is an operator's
 * line, so either becomes a CredentialsUnavailable error without the value.
 */
async function credentialsFor(
  get: () => Promise<KubeCredentials>,
  line: string,
): Promise<KubeCredentials> {
  try {
    const credentials = await get();
    if (credentials.authorization) new Headers({ authorization: credentials.authorization });
    return credentials;
  } catch (err) {
    throw new KubeApiError(
      0,
      "CredentialsUnavailable",
      `${line}: no usable credentials${
        err instanceof AppError ? `: ${err.message}` : " (the token cannot be sent as a header)"
      }`,
    );
  }
}

/** The request headers: JSON, the credentials, and the body's type. */
function requestHeaders(
  credentials: KubeCredentials,
  contentType: string | undefined,
): Headers {
  const headers = new Headers({ accept: "application/json" });
  if (credentials.authorization) headers.set("authorization", credentials.authorization);
  if (contentType) headers.set("content-type", contentType);
  return headers;
}

/** Counts, authorizes and sends each request; a failed call is thrown as a KubeApiError. */
function createRequest(options: KubeApiOptions): SendRequest {
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const current = options.credentials ?? (async () => ({
    authorization: await options.authorization?.(),
    httpClient: options.httpClient,
  }));
  return async (verb, method, path, parts = {}) => {
    const line = `${method} ${path}`;
    const send = async (credentials: KubeCredentials): Promise<Response> => {
      options.onRequest?.(verb);
      try {
        return await doFetch(`${options.server}${path}`, {
          method,
          headers: requestHeaders(credentials, parts.contentType),
          body: parts.body,
          signal: parts.signal ?? AbortSignal.timeout(timeoutMs),
          redirect: "error",
          client: credentials.httpClient,
        } as RequestInit);
      } catch (err) {
        if (parts.signal?.aborted) throw err;
        // Deno's "fetch failed" keeps what happened (refused, DNS, TLS) in its cause.
        const cause = err instanceof Error && err.cause !== undefined
          ? `: ${describeError(err.cause)}`
          : "";
        throw new KubeApiError(0, "NetworkError", `${line} failed: ${describeError(err)}${cause}`, {
          cause: err,
        });
      }
    };
    const credentials = await credentialsFor(current, line);
    let response = await send(credentials);
    const renew = options.renewCredentials;
    if (response.status === 401 && renew) {
      // The plugin's credentials were revoked or expired early: run it again, retry once.
      await response.body?.cancel();
      response = await send(await credentialsFor(() => renew(credentials), line));
    }
    if (!response.ok) {
      const { reason, message } = await readStatus(response);
      throw new KubeApiError(
        response.status,
        reason,
        `${line}: ${response.status} ${reason}${message ? `: ${message}` : ""}`,
      );
    }
    return response;
  };
}

/** The JSON body of a successful answer; a body that is not JSON is never quoted. */
async function readJson(response: Response, method: string, path: string) {
  const text = await response.text().catch((err) => {
    throw new KubeApiError(
      0,
      "NetworkError",
      `${method} ${path}: reading the answer failed: ${describeError(err)}`,
    );
  });
  try {
    return JSON.parse(text);
  } catch {
    throw new KubeApiError(
      response.status,
      "InvalidResponse",
      `${method} ${path}: the answer is not JSON (${text.length} characters of ${
        contentType(response)
      }): is the server a Kubernetes API server?`,
    );
  }
}

/** Creates the API client. */
export function createKubeApi(options: KubeApiOptions): KubeApi {
  const request = createRequest(options);

  return {
    async listDeployments(namespace, { limit = 500, continueToken } = {}) {
      const params = new URLSearchParams({ limit: String(limit) });
      if (continueToken) params.set("continue", continueToken);
      if (options.labelSelector) params.set("labelSelector", options.labelSelector);
      const path = `${collectionPath(namespace)}?${params}`;
      const body = await readJson(await request("list", "GET", path), "GET", path);
      return {
        items: Array.isArray(body.items) ? body.items : [],
        resourceVersion: String(body.metadata?.resourceVersion ?? ""),
        continueToken: body.metadata?.continue || undefined,
      };
    },
    async *watchDeployments(
      namespace,
      { resourceVersion, signal, timeoutSeconds = 300, onOpen, sendInitialEvents },
    ) {
      const params = new URLSearchParams({ watch: "1", allowWatchBookmarks: "true" });
      if (options.labelSelector) params.set("labelSelector", options.labelSelector);
      if (resourceVersion) params.set("resourceVersion", resourceVersion);
      if (sendInitialEvents) {
        params.set("sendInitialEvents", "true");
        params.set("resourceVersionMatch", "NotOlderThan");
      }
      params.set("timeoutSeconds", String(timeoutSeconds));
      // A streaming list is counted as the list it replaces (it goes on as a watch).
      const verb = sendInitialEvents ? "list" : "watch";
      const response = await request(verb, "GET", `${collectionPath(namespace)}?${params}`, {
        signal,
      });
      if (!response.body) throw new WatchEventError("watch response has no body");
      onOpen?.();
      yield* readWatchEvents(response.body);
    },
    async getDeployment(namespace, name) {
      const path = `${collectionPath(namespace)}/${encodeURIComponent(name)}`;
      return await readJson(await request("get", "GET", path), "GET", path);
    },
    async patchDeployment(namespace, name, patch) {
      const path = `${collectionPath(namespace)}/${
        encodeURIComponent(name)
      }?fieldManager=kuberollouttrigger`;
      const response = await request("patch", "PATCH", path, {
        body: JSON.stringify(patch),
        contentType: "application/strategic-merge-patch+json",
      });
      return await readJson(response, "PATCH", path);
    },
    async createEvent(namespace, event) {
      const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`;
      const response = await request("create_event", "POST", path, {
        body: JSON.stringify(event),
        contentType: "application/json",
      });
      // Nothing of the created object is needed.
      await response.body?.cancel();
    },
  };
}
