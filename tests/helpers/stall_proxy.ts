/**
 * A loopback HTTP proxy between the worker and the real kube-apiserver, for
 * fault tests of list+watch. It forwards every request (plain HTTP on
 * 127.0.0.1 towards the worker, TLS with the cluster CA towards the API
 * server) and, on demand, stalls watch streams without closing them (the
 * "dead connection": bytes stop, the socket stays open), holds list answers,
 * ends open watches as the server does at timeoutSeconds, or answers the next
 * watch itself (410 Gone, a line that is not JSON). A streaming list counts
 * and is held as a list, and stalls as a watch once it streams.
 *
 * Test-only: it listens on 127.0.0.1 only, holds nothing after close(), and
 * forwards the worker's Authorization header unchanged (never logs it).
 */

/** One request the proxy received. */
export interface ProxiedRequest {
  verb: "list" | "watch" | "other";
  method: string;
  url: URL;
}

/** What the proxy answers the next watch with, instead of the API server. */
export type InjectedWatchAnswer =
  | { kind: "gone-event" }
  | { kind: "gone-status" }
  | { kind: "line"; line: string };

/** A running proxy. */
export interface StallProxy {
  /** `http://127.0.0.1:<port>`: the server to put in the worker's kubeconfig. */
  url: string;
  requests: ProxiedRequest[];
  /** Stops forwarding watch bytes, on open streams and new watches, until resumeWatches(). */
  stallWatches(): void;
  resumeWatches(): void;
  /** Holds list requests (the API server is not asked) until releaseLists(). */
  holdLists(): void;
  releaseLists(): void;
  /** Ends every open watch stream cleanly, as the API server does when a watch times out. */
  endWatches(): void;
  /** Answers the next watch request with `answer` instead of forwarding it. */
  injectNextWatch(answer: InjectedWatchAnswer): void;
  /** Answers every streaming list as kube-apiserver does with the WatchList feature gate off. */
  refuseStreamingLists(): void;
  /** Watch streams currently open towards the worker. */
  openWatches(): number;
  close(): Promise<void>;
}

/** Options for startStallProxy. */
export interface StallProxyOptions {
  /** The real API server, `https://127.0.0.1:<port>`. */
  server: string;
  caPem: string;
}

/** kube-apiserver's answer to sendInitialEvents with WatchList off (apimachinery ValidateListOptions). */
const WATCH_LIST_REFUSAL = {
  kind: "Status",
  apiVersion: "v1",
  metadata: {},
  status: "Failure",
  message: 'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: ' +
    "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
  reason: "Invalid",
  details: {
    group: "meta.k8s.io",
    kind: "ListOptions",
    causes: [{
      reason: "FieldValueForbidden",
      message: "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList " +
        "feature gate is enabled",
      field: "sendInitialEvents",
    }],
  },
  code: 422,
};

const GONE_STATUS = {
  kind: "Status",
  apiVersion: "v1",
  metadata: {},
  status: "Failure",
  message: "too old resource version: 1 (2)",
  reason: "Expired",
  code: 410,
};

/** A gate that is open until close() and wakes its waiters on open(). */
function createGate() {
  let open = true;
  let waiters: (() => void)[] = [];
  return {
    isOpen: () => open,
    close() {
      open = false;
    },
    open() {
      open = true;
      const woken = waiters;
      waiters = [];
      woken.forEach((w) => w());
    },
    /** Resolves when the gate is open or `signal` aborts. */
    wait(signal: AbortSignal): Promise<void> {
      if (open || signal.aborted) return Promise.resolve();
      return new Promise((resolve) => {
        waiters.push(resolve);
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    },
  };
}

/** Starts the proxy on a free loopback port. */
export function startStallProxy(options: StallProxyOptions): StallProxy {
  const upstream = options.server.replace(/\/+$/, "");
  const client = Deno.createHttpClient({ caCerts: [options.caPem] });
  const requests: ProxiedRequest[] = [];
  const watchGate = createGate();
  const listGate = createGate();
  const streams = new Set<{ end(): void }>();
  const shutdown = new AbortController();
  let injected: InjectedWatchAnswer | undefined;
  let refuseWatchList = false;

  const forward = async (req: Request, url: URL, signal: AbortSignal): Promise<Response> => {
    const headers = new Headers();
    for (const name of ["authorization", "accept", "content-type"]) {
      const value = req.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.text();
    return await fetch(`${upstream}${url.pathname}${url.search}`, {
      method: req.method,
      headers,
      body,
      signal,
      redirect: "manual",
      client,
    });
  };

  /**
   * Pipes a watch body towards the worker, pausing while the gate is closed.
   * `upstream` aborts the API server's side when the worker goes away (cancel).
   */
  const pipeWatch = (body: ReadableStream<Uint8Array>, upstream: AbortController) => {
    const reader = body.getReader();
    const entry = {
      end() {
        upstream.abort();
        reader.cancel().catch(() => {});
      },
    };
    streams.add(entry);
    const finish = () => {
      streams.delete(entry);
      entry.end();
    };
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          await watchGate.wait(upstream.signal);
          const { value, done } = upstream.signal.aborted
            ? { value: undefined, done: true }
            : await reader.read();
          // A chunk that arrived just as the stall began is held too.
          await watchGate.wait(upstream.signal);
          if (done || upstream.signal.aborted) {
            finish();
            controller.close();
          } else controller.enqueue(value);
        } catch {
          finish();
          try {
            controller.close();
          } catch {
            // already closed
          }
        }
      },
      cancel: finish,
    });
  };

  const answerInjected = (answer: InjectedWatchAnswer): Response => {
    const json = { "content-type": "application/json" };
    if (answer.kind === "gone-status") {
      return new Response(JSON.stringify(GONE_STATUS), { status: 410, headers: json });
    }
    const line = answer.kind === "gone-event"
      ? JSON.stringify({ type: "ERROR", object: GONE_STATUS })
      : answer.line;
    return new Response(line + "\n", { status: 200, headers: json });
  };

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: shutdown.signal,
    onListen: () => {},
  }, async (req) => {
    const url = new URL(req.url);
    const isDeployments = url.pathname.endsWith("/deployments") && req.method === "GET";
    const streamed = url.searchParams.get("watch") === "1" ||
      url.searchParams.get("watch") === "true";
    // A streaming list (sendInitialEvents) is the list, though it streams like a watch.
    const verb = !isDeployments
      ? "other"
      : streamed && url.searchParams.get("sendInitialEvents") !== "true"
      ? "watch"
      : "list";
    requests.push({ verb, method: req.method, url });
    // req.signal is not used: Deno.serve warns on any use of it (legacy abort behaviour). A
    // request the worker gave up on while held is forwarded late; Deno then cancels its
    // response stream, and cancel() aborts the upstream side.
    const upstream = new AbortController();
    const abortUpstream = () => upstream.abort();
    shutdown.signal.addEventListener("abort", abortUpstream, { once: true });
    try {
      if (verb === "list") await listGate.wait(upstream.signal);
      if (streamed && verb === "list" && refuseWatchList) {
        return new Response(JSON.stringify(WATCH_LIST_REFUSAL), {
          status: 422,
          headers: { "content-type": "application/json" },
        });
      }
      if (verb === "watch") {
        if (injected) {
          const answer = injected;
          injected = undefined;
          return answerInjected(answer);
        }
        // A watch started during a stall hangs before its headers, like one sent into a dead link.
        await watchGate.wait(upstream.signal);
      }
      if (upstream.signal.aborted) return new Response(null, { status: 499 });
      const response = await forward(req, url, upstream.signal);
      const headers = new Headers();
      const type = response.headers.get("content-type");
      if (type) headers.set("content-type", type);
      if (!streamed || !response.body || !response.ok) {
        return new Response(await response.arrayBuffer(), { status: response.status, headers });
      }
      return new Response(pipeWatch(response.body, upstream), {
        status: response.status,
        headers,
      });
    } catch {
      return new Response(JSON.stringify({ kind: "Status", code: 502, reason: "ProxyError" }), {
        status: 502,
        headers: { "content-type": "application/json" },
      });
    }
  });

  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    stallWatches: () => watchGate.close(),
    resumeWatches: () => watchGate.open(),
    holdLists: () => listGate.close(),
    releaseLists: () => listGate.open(),
    endWatches() {
      for (const s of [...streams]) s.end();
    },
    injectNextWatch(answer) {
      injected = answer;
    },
    refuseStreamingLists() {
      refuseWatchList = true;
    },
    openWatches: () => streams.size,
    async close() {
      for (const s of [...streams]) s.end();
      watchGate.open();
      listGate.open();
      shutdown.abort();
      await server.finished;
      client.close();
    },
  };
}
