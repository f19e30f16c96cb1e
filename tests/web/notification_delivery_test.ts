import { assert, assertEquals } from "../helpers/assert.ts";
import { deliverNotification, type DeliveryResult } from "../../web/notification_delivery.ts";

const MARKER = "SECRETMARKER";
const REQUEST = { body: "{}", headers: { "content-type": "application/json" } };

/** What a loopback receiver saw of one request. */
interface Seen {
  method: string;
  path: string;
  body: string;
  headers: Record<string, string>;
}

/** A loopback HTTP server answering with `answer(hit)`; close it in `finally`. */
function startReceiver(answer: (hit: number) => Response | Promise<Response>) {
  const seen: Seen[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const url = new URL(req.url);
      seen.push({
        method: req.method,
        path: url.pathname + url.search,
        body: await req.text(),
        headers: Object.fromEntries(req.headers),
      });
      return answer(seen.length);
    },
  );
  const url = (path = "/hook") => new URL(`http://127.0.0.1:${server.addr.port}${path}`);
  return { seen, url, close: () => server.shutdown() };
}

/** A loopback port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** A sleep that records the wait and returns at once. */
function recordingSleep() {
  const waits: number[] = [];
  const sleep = (ms: number) => {
    waits.push(ms);
    return Promise.resolve();
  };
  return { waits, sleep };
}

/** Fails the test instead of hanging it when `promise` does not settle within `ms`. */
async function bounded<T>(promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) =>
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms)
  );
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** A body that never ends: a chunk for every read. */
function endlessBody(): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(16 * 1024);
  return new ReadableStream({ pull: (controller) => controller.enqueue(chunk) });
}

Deno.test("deliverNotification() succeeds on a first 200 without waiting", async () => {
  const receiver = startReceiver(() => new Response("ok"));
  const { waits, sleep } = recordingSleep();
  const failures: string[] = [];
  try {
    const result = await bounded(deliverNotification(receiver.url(), REQUEST, {
      sleep,
      onAttemptFailed: (_, reason) => failures.push(reason),
    }));
    assertEquals(result, { ok: true, attempts: 1, status: 200 });
    assertEquals([waits, failures, receiver.seen.length], [[], [], 1]);
  } finally {
    await receiver.close();
  }
});

Deno.test("deliverNotification() posts the exact body and headers to the configured path", async () => {
  const receiver = startReceiver(() => new Response(null, { status: 204 }));
  const request = {
    body: '{"text":"déployé ✓\\n","n":1}\n',
    headers: {
      "content-type": "application/json; charset=utf-8",
      "x-signature-256": "sha256=0123abcd",
      "authorization": "Bearer not-a-real-token",
    },
  };
  try {
    const result = await bounded(
      deliverNotification(receiver.url("/hooks/a%20b?x=1&y=2"), request),
    );
    assertEquals(result, { ok: true, attempts: 1, status: 204 });
    const [seen] = receiver.seen;
    assertEquals([seen.method, seen.path, seen.body], [
      "POST",
      "/hooks/a%20b?x=1&y=2",
      request.body,
    ]);
    for (const [name, value] of Object.entries(request.headers)) {
      assertEquals(seen.headers[name], value, name);
    }
  } finally {
    await receiver.close();
  }
});

Deno.test("deliverNotification() retries 5xx with waits of 1 s then 2 s until a 200", async () => {
  const receiver = startReceiver((hit) => new Response(null, { status: hit < 3 ? 500 : 200 }));
  const { waits, sleep } = recordingSleep();
  const failures: [number, string][] = [];
  try {
    const result = await bounded(deliverNotification(receiver.url(), REQUEST, {
      sleep,
      onAttemptFailed: (attempt, reason) => failures.push([attempt, reason]),
    }));
    assertEquals(result, { ok: true, attempts: 3, status: 200 });
    assertEquals(waits, [1000, 2000]);
    assertEquals(failures, [[1, "HTTP 500"], [2, "HTTP 500"]]);
  } finally {
    await receiver.close();
  }
});

Deno.test("deliverNotification() gives up after three 5xx with a retryable failure", async () => {
  const receiver = startReceiver(() => new Response("down", { status: 500 }));
  const { waits, sleep } = recordingSleep();
  try {
    const result = await bounded(deliverNotification(receiver.url(), REQUEST, { sleep }));
    assertEquals(result, { ok: false, attempts: 3, reason: "HTTP 500", retryable: true });
    assertEquals([waits, receiver.seen.length], [[1000, 2000], 3]);
  } finally {
    await receiver.close();
  }
});

Deno.test("deliverNotification() retries only the answers a receiver may recover from", async (t) => {
  let status = 200;
  const receiver = startReceiver(() => new Response(null, { status }));
  const cases: [number, DeliveryResult][] = [
    [201, { ok: true, attempts: 1, status: 201 }],
    [400, { ok: false, attempts: 1, reason: "HTTP 400", retryable: false }],
    [401, { ok: false, attempts: 1, reason: "HTTP 401", retryable: false }],
    [404, { ok: false, attempts: 1, reason: "HTTP 404", retryable: false }],
    [410, { ok: false, attempts: 1, reason: "HTTP 410", retryable: false }],
    [408, { ok: false, attempts: 3, reason: "HTTP 408", retryable: true }],
    [429, { ok: false, attempts: 3, reason: "HTTP 429", retryable: true }],
    [502, { ok: false, attempts: 3, reason: "HTTP 502", retryable: true }],
    [503, { ok: false, attempts: 3, reason: "HTTP 503", retryable: true }],
  ];
  try {
    for (const [code, expected] of cases) {
      await t.step(`HTTP ${code}`, async () => {
        status = code;
        const before = receiver.seen.length;
        const { sleep } = recordingSleep();
        const result = await bounded(deliverNotification(receiver.url(), REQUEST, { sleep }));
        assertEquals(result, expected);
        assertEquals(receiver.seen.length - before, expected.attempts);
      });
    }
  } finally {
    await receiver.close();
  }
});

Deno.test("deliverNotification() ignores an answer's body that never ends", async (t) => {
  for (const status of [200, 500]) {
    await t.step(`HTTP ${status}`, async () => {
      const receiver = startReceiver(() => new Response(endlessBody(), { status }));
      try {
        const { sleep } = recordingSleep();
        const options = { sleep, attempts: 1, timeoutMs: 2000 };
        const result = await bounded(deliverNotification(receiver.url(), REQUEST, options), 5000);
        assertEquals(result.ok, status === 200);
      } finally {
        await receiver.close();
      }
    });
  }
});

Deno.test("deliverNotification() fails an attempt whose receiver never answers within timeoutMs", async () => {
  const gate = Promise.withResolvers<void>();
  const receiver = startReceiver(async () => {
    await gate.promise;
    return new Response("too late");
  });
  const { waits, sleep } = recordingSleep();
  const failures: string[] = [];
  const started = performance.now();
  try {
    const result = await bounded(
      deliverNotification(receiver.url(), REQUEST, {
        sleep,
        timeoutMs: 200,
        attempts: 2,
        onAttemptFailed: (_, reason) => failures.push(reason),
      }),
      5000,
    );
    const elapsed = performance.now() - started;
    assertEquals(result, {
      ok: false,
      attempts: 2,
      reason: "timed out after 200 ms",
      retryable: true,
    });
    assertEquals([waits.length, failures], [1, [
      "timed out after 200 ms",
      "timed out after 200 ms",
    ]]);
    assert(elapsed >= 350 && elapsed < 3000, `two 200 ms attempts took ${elapsed} ms`);
  } finally {
    gate.resolve();
    await receiver.close();
  }
});

Deno.test("deliverNotification() reports a closed port as connection refused and retries it", async () => {
  const { waits, sleep } = recordingSleep();
  const url = new URL(`http://127.0.0.1:${closedPort()}/hook`);
  const result = await bounded(deliverNotification(url, REQUEST, { sleep, attempts: 2 }));
  assertEquals(result, { ok: false, attempts: 2, reason: "connection refused", retryable: true });
  assertEquals(waits, [1000]);
});

Deno.test("deliverNotification() clamps attempts to between 1 and 10", async (t) => {
  const receiver = startReceiver(() => new Response(null, { status: 503 }));
  try {
    for (const [attempts, made] of [[50, 10], [0, 1], [-3, 1], [Number.NaN, 3]]) {
      await t.step(`attempts ${attempts}`, async () => {
        const before = receiver.seen.length;
        const { sleep } = recordingSleep();
        const result = await bounded(
          deliverNotification(receiver.url(), REQUEST, { sleep, attempts }),
        );
        assertEquals([result.attempts, receiver.seen.length - before], [made, made]);
      });
    }
  } finally {
    await receiver.close();
  }
});

Deno.test("deliverNotification() stops at once when the signal aborts", async (t) => {
  await t.step("during the wait before a retry", async () => {
    const receiver = startReceiver(() => new Response(null, { status: 500 }));
    const controller = new AbortController();
    const started = performance.now();
    try {
      // The real sleep and a minute's backoff: only the abort can end the wait.
      const result = await bounded(
        deliverNotification(receiver.url(), REQUEST, {
          signal: controller.signal,
          backoffMs: () => 60_000,
          onAttemptFailed: () => setTimeout(() => controller.abort(), 50),
        }),
        5000,
      );
      assertEquals(result, { ok: false, attempts: 1, reason: "stopped", retryable: true });
      assertEquals(receiver.seen.length, 1);
      assert(performance.now() - started < 2000, "the wait ended with the abort");
    } finally {
      await receiver.close();
    }
  });

  await t.step("during an attempt", async () => {
    const gate = Promise.withResolvers<void>();
    const receiver = startReceiver(async () => {
      await gate.promise;
      return new Response("too late");
    });
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 100);
    const started = performance.now();
    try {
      const result = await bounded(
        deliverNotification(receiver.url(), REQUEST, {
          signal: controller.signal,
          timeoutMs: 60_000,
        }),
        5000,
      );
      assertEquals(result, { ok: false, attempts: 1, reason: "stopped", retryable: true });
      assert(performance.now() - started < 2000, "the attempt ended with the abort");
    } finally {
      clearTimeout(timer);
      gate.resolve();
      await receiver.close();
    }
  });

  await t.step("before the first attempt", async () => {
    const receiver = startReceiver(() => new Response("ok"));
    try {
      const result = await bounded(
        deliverNotification(receiver.url(), REQUEST, { signal: AbortSignal.abort() }),
      );
      assertEquals(result, { ok: false, attempts: 0, reason: "stopped", retryable: true });
      assertEquals(receiver.seen.length, 0);
    } finally {
      await receiver.close();
    }
  });
});

Deno.test("deliverNotification() resolves even when its hooks throw", async () => {
  const fetch = () => Promise.resolve(new Response(null, { status: 500 }));
  const result = await bounded(deliverNotification(new URL("https://hooks.example/x"), REQUEST, {
    fetch: fetch as typeof globalThis.fetch,
    sleep: () => Promise.reject(new Error("sleep broke")),
    backoffMs: () => Number.POSITIVE_INFINITY,
    onAttemptFailed: () => {
      throw new Error("logger broke");
    },
  }));
  assertEquals(result, { ok: false, attempts: 3, reason: "HTTP 500", retryable: true });
});

Deno.test("security: deliverNotification() never follows a redirect", async (t) => {
  const elsewhere = startReceiver(() => new Response("ok"));
  let status = 302;
  const receiver = startReceiver(() =>
    new Response(null, { status, headers: { location: elsewhere.url("/stolen").href } })
  );
  try {
    for (const code of [301, 302, 303, 307, 308]) {
      await t.step(`HTTP ${code}`, async () => {
        status = code;
        const { sleep } = recordingSleep();
        const result = await bounded(deliverNotification(receiver.url(), REQUEST, { sleep }));
        assertEquals(result, {
          ok: false,
          attempts: 1,
          reason: `redirect not followed (HTTP ${code})`,
          retryable: false,
        });
      });
    }
    assertEquals(elsewhere.seen.length, 0, "the redirect target received nothing");
  } finally {
    await receiver.close();
    await elsewhere.close();
  }
});

Deno.test("security: deliverNotification() never quotes the URL in a reason", async (t) => {
  const gate = Promise.withResolvers<void>();
  let mode = "500";
  const receiver = startReceiver(async () => {
    if (mode === "hang") await gate.promise;
    if (mode === "redirect") {
      const location = `http://127.0.0.1:${closedPort()}/${MARKER}?k=${MARKER}`;
      return new Response(null, { status: 302, headers: { location } });
    }
    return new Response(`${MARKER} failed`, { status: 500 });
  });
  // A secret in userinfo, path and query; the path also reads like other errors' words.
  const secretUrl = (port: number) =>
    new URL(`http://u:${MARKER}@127.0.0.1:${port}/alerts/tls/Expired/${MARKER}?token=${MARKER}`);
  const port = Number(receiver.url().port);
  const cases: [string, URL, string][] = [
    ["closed", secretUrl(closedPort()), "connection refused"],
    ["hang", secretUrl(port), "timed out after 200 ms"],
    ["redirect", secretUrl(port), "redirect not followed (HTTP 302)"],
    ["500", secretUrl(port), "HTTP 500"],
  ];
  try {
    for (const [name, url, reason] of cases) {
      await t.step(name, async () => {
        mode = name;
        const logged: string[] = [];
        const { sleep } = recordingSleep();
        const result = await bounded(deliverNotification(url, REQUEST, {
          sleep,
          timeoutMs: 200,
          attempts: 2,
          onAttemptFailed: (attempt, text) => logged.push(`${attempt} ${text}`),
        }));
        assert(!result.ok);
        for (const text of [result.reason, ...logged]) assert(!text.includes(MARKER), text);
        assertEquals(result.reason, reason);
      });
    }
  } finally {
    gate.resolve();
    await receiver.close();
  }
});

Deno.test("security: deliverNotification() classifies fetch errors into fixed texts", async (t) => {
  // Deno 2.9's messages; the URL as Deno shows it (no userinfo) holds the secret and
  // words that must not be read as the error's.
  const url = new URL(`https://user:${MARKER}@hooks.example/${MARKER}/Expired?tls=${MARKER}`);
  const shown = `https://hooks.example/${MARKER}/Expired?tls=${MARKER}`;
  const connect = (detail: string) =>
    new TypeError("fetch failed", {
      cause: new Error(
        `error sending request for url (${shown}): client error (Connect): ${detail}`,
      ),
    });
  const send = (detail: string) =>
    new TypeError("fetch failed", {
      cause: new Error(
        `error sending request from 127.0.0.1:1 for ${shown} (127.0.0.1:443): ` +
          `client error (SendRequest): ${detail}`,
      ),
    });
  const cert = "TLS handshake failed: certificate";
  const cases: [string, unknown, string][] = [
    [
      "refused",
      connect("tcp connect error: Connection refused (os error 111)"),
      "connection refused",
    ],
    ["dns", connect("dns error: failed to lookup address information"), "DNS lookup failed"],
    ["untrusted", connect("invalid peer certificate: UnknownIssuer"), `${cert} not trusted`],
    [
      "self-signed",
      connect("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))"),
      `${cert} not trusted`,
    ],
    [
      "wrong name",
      connect("invalid peer certificate: NotValidForName"),
      `${cert} does not match the host`,
    ],
    ["expired", connect("invalid peer certificate: Expired"), `${cert} expired or not yet valid`],
    [
      "not TLS",
      connect("received corrupt message of type InvalidContentType"),
      "TLS handshake failed",
    ],
    ["reset", connect("connection reset by peer"), "connection reset"],
    ["other connect", connect("something new"), "connection failed"],
    [
      "closed",
      send("connection closed before message completed"),
      "connection closed before an answer",
    ],
    ["not HTTP", send("invalid HTTP version parsed"), "invalid HTTP answer"],
    [
      "permission",
      new Deno.errors.NotCapable(`Requires net access to "${shown}"`),
      "network access not permitted",
    ],
    ["unknown", new Error(`boom ${shown}`), "request failed"],
    ["not an error", `thrown string ${shown}`, "request failed"],
  ];
  for (const [name, thrown, reason] of cases) {
    await t.step(name, async () => {
      const fetch = () => Promise.reject(thrown);
      const { sleep } = recordingSleep();
      const result = await deliverNotification(url, REQUEST, {
        fetch: fetch as typeof globalThis.fetch,
        sleep,
      });
      // Only a refusal by the runtime itself cannot heal between attempts.
      const retryable = name !== "permission";
      assertEquals(result, { ok: false, attempts: retryable ? 3 : 1, reason, retryable });
    });
  }
});

Deno.test("security: deliverNotification() refuses a bad scheme or header without quoting it or sending", async (t) => {
  let calls = 0;
  const fetch = () => {
    calls++;
    return Promise.resolve(new Response("ok"));
  };
  const cases: [string, URL, Record<string, string>, string][] = [
    ["scheme", new URL(`ftp://hooks.example/${MARKER}`), {}, "URL scheme must be http or https"],
    [
      "header",
      new URL("https://hooks.example/x"),
      { "x-token": `${MARKER}\r\nx: y` },
      "invalid request header",
    ],
  ];
  for (const [name, url, headers, reason] of cases) {
    await t.step(name, async () => {
      const result = await deliverNotification(url, { body: "{}", headers }, {
        fetch: fetch as typeof globalThis.fetch,
      });
      assertEquals(result, { ok: false, attempts: 0, reason, retryable: false });
      assertEquals(calls, 0);
    });
  }
});
