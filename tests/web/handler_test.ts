/**
 * The web handler in-process with small fakes for its effects: which status
 * each request gets, what is logged and counted. The same promises are proven
 * against the real program in tests/e2e/web_test.ts.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { orgOnlyPolicy } from "../helpers/issuer.ts";
import { AppError } from "../../shared/errors.ts";
import { createLogger, type LogFields } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import { createHandler } from "../../web/handler.ts";
import { createWebMetrics } from "../../web/metrics.ts";
import type { GitHubClaims, TokenVerifier } from "../../web/oidc.ts";
import { createAuthorizer } from "../../web/policy.ts";
import type { ReplayGuard } from "../../web/replay.ts";
import { parseRepositoryRules, type RepositoryRules } from "../../config/repository_rules.ts";
import { createSigner, type EventSigner } from "../../web/event_signer.ts";
import { parseSigningKey } from "../../shared/event_keys.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { memoryStatus, type MemoryStatusOptions, permissiveReplay } from "../helpers/web_deps.ts";

const BODY = '{"image":"ghcr.io/acme/app:dev"}';
const INFO = { remoteAddr: { hostname: "127.0.0.1", port: 1 } };

interface Options {
  replay?: ReplayGuard["once"];
  publish?: MemoryStatusOptions["publish"];
  subscribers?: number;
  clusters?: string[];
  unreachable?: string[];
  verify?: TokenVerifier;
  /** The handler's shutdown signal. */
  signal?: AbortSignal;
  rules?: RepositoryRules;
  signer?: EventSigner;
  /** Claims the good token carries besides the defaults. */
  claims?: Record<string, unknown>;
}

function setUp(options: Options = {}) {
  const lines: LogFields[] = [];
  const status = memoryStatus({
    publish: options.publish,
    subscribers: options.subscribers,
    clusters: options.clusters,
    unreachable: options.unreachable,
  });
  const published = status.published;
  const registry = createRegistry();
  const claims = {
    iss: "https://issuer",
    jti: "j1",
    iat: 1000,
    exp: 1300,
    repository: "acme/app",
    repository_owner: "acme",
    repository_id: "2002",
    ...options.claims,
  } as GitHubClaims;
  const handler = createHandler({
    verify: options.verify ??
      ((token) =>
        token === "good" ? Promise.resolve(claims) : Promise.reject(new Error("unreachable"))),
    authorize: createAuthorizer(orgOnlyPolicy()),
    publisher: status.publisher,
    statusReader: status.statusReader,
    statusWaiters: status.statusWaiters,
    statusReportTimeoutMs: 30_000,
    replay: { ...permissiveReplay(), ...(options.replay ? { once: options.replay } : {}) },
    prefixes: ["ghcr.io/acme"],
    logger: createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) }),
    metrics: createWebMetrics(registry),
    registry,
    readiness: {},
    signal: options.signal,
    rules: options.rules,
    signer: options.signer,
  });
  const post = (headers: Record<string, string> = {}, body: BodyInit = BODY) =>
    handler(
      new Request("http://127.0.0.1/event", {
        method: "POST",
        headers: { authorization: "Bearer good", "content-type": "application/json", ...headers },
        body,
      }),
      INFO,
    );
  const requestLog = () => lines.filter((l) => l.msg === "request").at(-1)!;
  return { handler, post, published, registry, requestLog, lines, status };
}

Deno.test("createHandler() publishes a body sent with Content-Encoding identity", async () => {
  const { post, published } = setUp();
  const res = await post({ "content-encoding": "identity" });
  assertEquals(res.status, 202);
  assertEquals(published.length, 1);
});

Deno.test("security: createHandler() refuses a body in a coding it does not decode with 415", async (t) => {
  for (
    const [name, headers] of [
      ["gzip", { "content-encoding": "gzip" }],
      ["deflate in upper case", { "content-encoding": "DEFLATE" }],
      ["two codings", { "content-encoding": "identity, gzip" }],
      ["an empty coding", { "content-encoding": "" }],
      ["a transfer coding other than chunked", { "transfer-encoding": "gzip, chunked" }],
    ] as const
  ) {
    await t.step(name, async () => {
      const { post, published } = setUp();
      const res = await post(headers);
      assertEquals(res.status, 415);
      assertMatch((await res.json()).error, /encoding must be/);
      assertEquals(published.length, 0);
    });
  }
});

Deno.test("createHandler() answers 400, not 500, when the body ends before it is complete", async () => {
  const { post, published, requestLog } = setUp();
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(new TextEncoder().encode('{"image":'));
      // What Deno's body stream does when the client half-closes early.
      controller.error(new Deno.errors.BadResource("underlying resource unavailable"));
    },
  });
  const res = await post({}, body);
  assertEquals(res.status, 400);
  assertEquals(await res.json(), { error: "request body ended before it was complete" });
  assertEquals(requestLog().reason, "body_incomplete");
  assertEquals(published.length, 0);
});

Deno.test("security: createHandler() refuses a Host header that is not host[:port] with 400", async (t) => {
  for (const host of ["x/metrics?", "a b", "[::1", "u@x:1", "x#", "x\\y", "x:99999"]) {
    await t.step(JSON.stringify(host), async () => {
      const { handler, requestLog } = setUp();
      // Deno builds req.url from the Host header; this is the URL it would make.
      let url = "http://127.0.0.1/healthz";
      try {
        url = new URL(`http://${host}/healthz`).href;
      } catch {
        // Deno hands such a URL over as a string that does not parse; keep ours.
      }
      const res = await handler(new Request(url, { headers: { host } }), INFO);
      assertEquals(res.status, 400);
      assertEquals(requestLog().reason, "bad_host");
    });
  }
  await t.step("a normal Host with a port is served", async () => {
    const { handler } = setUp();
    const res = await handler(
      new Request("http://127.0.0.1:8080/healthz", { headers: { host: "rollouts.example:8080" } }),
      INFO,
    );
    assertEquals(res.status, 200);
  });
});

Deno.test("createHandler() answers a token still in flight with 409 and Retry-After, not as a publish failure", async () => {
  const { post, published, registry, requestLog } = setUp({
    replay: () => Promise.reject(new AppError("ERR_REPLAY_IN_PROGRESS", "first still in progress")),
  });
  const res = await post();
  assertEquals(res.status, 409);
  assertEquals(res.headers.get("retry-after"), "1");
  assertMatch((await res.json()).error, /still in progress; retry/);
  assertEquals(requestLog().reason, "replay_in_progress");
  assertEquals(requestLog().code, "ERR_REPLAY_IN_PROGRESS");
  const metrics = registry.render();
  assertMatch(metrics, /kuberollouttrigger_token_reuse_total\{outcome="in_progress"\} 1/);
  assert(!/kuberollouttrigger_publish_failures_total\{[^}]*\} [1-9]/.test(metrics), metrics);
  assertEquals(published.length, 0);
});

Deno.test("createHandler() logs an unexpected error as ERR_INTERNAL and answers 500", async () => {
  const { post, requestLog } = setUp({ publish: () => Promise.reject(new TypeError("bug")) });
  const res = await post();
  assertEquals(res.status, 500);
  assertEquals(requestLog().code, "ERR_INTERNAL");
});

Deno.test("createHandler() accepts an event with 202, publishes it once and logs who sent it", async () => {
  const { post, published, registry, requestLog } = setUp();
  const res = await post({}, '{"image":"ghcr.io/acme/app","tags":["dev","v1"]}');
  assertEquals(res.status, 202);
  const body = await res.json();
  assertMatch(body.id, /^[0-9a-f-]{36}$/);
  assertEquals(body, {
    id: body.id,
    subscribers: 1,
    clusters: ["test"],
    status: `/event/${body.id}`,
  });
  assertEquals(published.length, 1);
  assertEquals(published[0].eventId, body.id);
  assertEquals(JSON.parse(published[0].message).image, "ghcr.io/acme/app");
  const log = requestLog();
  assertEquals(log.level, "info");
  assertEquals([log.status, log.event_id, log.image, log.repository], [
    202,
    body.id,
    "ghcr.io/acme/app",
    "acme/app",
  ]);
  assertEquals(log.tags, ["dev", "v1"]);
  assertMatch(registry.render(), /kuberollouttrigger_events_published_total 1\n/);
  assertMatch(
    registry.render(),
    /kuberollouttrigger_http_requests_total\{code="202",route="\/event"\} 1/,
  );
});

Deno.test("createHandler() takes POST /v1/event as /event, any Bearer case and UTF-8 JSON, and publishes each tag once", async () => {
  const { handler, published } = setUp();
  const res = await handler(
    new Request("http://127.0.0.1/v1/event", {
      method: "POST",
      headers: { authorization: "BeArEr good", "content-type": "application/json; charset=utf-8" },
      body: '{"image":"ghcr.io/acme/app","tags":["dev","v1.2.3","dev"]}',
    }),
    INFO,
  );
  assertEquals(res.status, 202);
  assertEquals(published.length, 1);
  assertEquals(JSON.parse(published[0].message).tags, ["dev", "v1.2.3"]);
});

Deno.test("createHandler() refuses each bad payload from an authenticated caller with 400 and a reason of its own, publishing nothing", async (t) => {
  const digest = `sha256:${"a".repeat(64)}`;
  for (
    const [name, body] of [
      ["unknown fields", '{"image":"ghcr.io/acme/app:dev","cluster":"prod"}'],
      ["duplicate keys", '{"image":"ghcr.io/acme/app:dev","image":"ghcr.io/acme-evil/app:dev"}'],
      ["trailing data", '{"image":"ghcr.io/acme/app:dev"}{}'],
      ["a JSON array", '[{"image":"ghcr.io/acme/app:dev"}]'],
      ["an image of the wrong type", '{"image":42}'],
      ["a digest instead of a tag", `{"image":"ghcr.io/acme/app@${digest}"}`],
      ["a tag and a digest", `{"image":"ghcr.io/acme/app:dev@${digest}"}`],
      ["bad tag grammar", '{"image":"ghcr.io/acme/app:-dev"}'],
      ["a bad tag in the list", '{"image":"ghcr.io/acme/app","tags":["dev","a/b"]}'],
      ["an upper-case path", '{"image":"ghcr.io/acme/App:dev"}'],
      ["a space", '{"image":"ghcr.io/acme/app :dev"}'],
      ["a control character", '{"image":"ghcr.io/acme/app\\u0000:dev"}'],
      ["'..' in the path", '{"image":"ghcr.io/acme/../evil/app:dev"}'],
      ["a look-alike org (prefix boundary)", '{"image":"ghcr.io/acme-evil/x:dev"}'],
      ["a look-alike registry host", '{"image":"ghcr.io.evil.com/acme/x:dev"}'],
      ["no tag at all", '{"image":"ghcr.io/acme/app"}'],
      ["a tag in image and a tags list", '{"image":"ghcr.io/acme/app:dev","tags":["v1"]}'],
      ["an empty tag list", '{"image":"ghcr.io/acme/app","tags":[]}'],
      [
        "an oversized tag list",
        JSON.stringify({
          image: "ghcr.io/acme/app",
          tags: Array.from({ length: 33 }, (_, i) => `t${i}`),
        }),
      ],
      ["a body that is not JSON", "image=ghcr.io/acme/app:dev"],
    ] as const
  ) {
    await t.step(name, async () => {
      const { post, published, requestLog } = setUp();
      const res = await post({}, body);
      assertEquals(res.status, 400);
      const answer = await res.json();
      assertEquals(typeof answer.error, "string");
      assert(answer.error !== "access denied" && answer.error !== "", answer.error);
      assertMatch(String(requestLog().code), /^ERR_(EVENT_INVALID|IMAGE_NOT_ALLOWED)$/);
      assertEquals(published.length, 0);
    });
  }
});

Deno.test("security: createHandler() answers an unauthenticated body over the limit with the denial, not 413", async () => {
  const { handler, published, requestLog } = setUp();
  const res = await handler(
    new Request("http://127.0.0.1/event", {
      method: "POST",
      // As a real client sends it: the length is announced before the body.
      headers: { "content-type": "application/json", "content-length": "20000" },
      body: "x".repeat(20_000),
    }),
    INFO,
  );
  assertEquals([res.status, await res.text()], [403, '{"error":"access denied"}']);
  assertEquals(requestLog().reason, "missing_token");
  assertEquals(published.length, 0);
});

Deno.test("createHandler() answers a wrong method with 405 and Allow, an unknown path with 404", async (t) => {
  const { handler, requestLog } = setUp();
  for (
    const [method, path, status, allow] of [
      ["GET", "/event", 405, "POST"],
      ["PUT", "/v1/event", 405, "POST"],
      ["POST", "/healthz", 405, "GET"],
      ["DELETE", "/event/0b6f8c1e-0000-4000-8000-000000000000", 405, "GET"],
      ["GET", "/nope", 404, null],
    ] as const
  ) {
    await t.step(`${method} ${path}`, async () => {
      const res = await handler(new Request(`http://127.0.0.1${path}`, { method }), INFO);
      assertEquals(res.status, status);
      assertEquals(res.headers.get("allow"), allow);
      assertEquals(requestLog().status, status);
      assertEquals(requestLog().level, "warn");
    });
  }
});

Deno.test("createHandler() refuses a body that is not JSON by type with 415 and one over the limit with 413, publishing nothing", async (t) => {
  for (
    const [name, headers, body, status] of [
      ["text/plain", { "content-type": "text/plain" }, BODY, 415],
      [
        "JSON in another charset",
        { "content-type": "application/json; charset=latin1" },
        BODY,
        415,
      ],
      ["9 KiB", {}, JSON.stringify({ image: "ghcr.io/acme/app:dev", pad: "x".repeat(9000) }), 413],
    ] as const
  ) {
    await t.step(name, async () => {
      const { post, published } = setUp();
      const res = await post(headers, body);
      assertEquals(res.status, status);
      assertEquals(published.length, 0);
    });
  }
});

Deno.test("security: createHandler() denies with the same 403 bytes whatever failed, and logs the reason but never the token", async (t) => {
  const { AuthError } = await import("../../web/reasons.ts");
  const token = "eyJhbGciOiJSUzI1NiJ9.eyJzZWNyZXQiOjF9.c2lnbmF0dXJl";
  for (
    const [name, headers, verify, reason] of [
      ["no Authorization", { authorization: "" }, undefined, "missing_token"],
      [
        "Basic credentials",
        { authorization: "Basic dXNlcjpwYXNz" },
        undefined,
        "malformed_authorization",
      ],
      [
        "a token the verifier refuses",
        { authorization: `Bearer ${token}` },
        () => Promise.reject(new AuthError("bad_signature", "signature does not verify")),
        "bad_signature",
      ],
      [
        "an org outside ALLOWED_ORGS",
        { authorization: `Bearer ${token}` },
        () =>
          Promise.resolve(
            {
              jti: "j",
              iat: 1,
              exp: 2,
              repository: "evil/app",
              repository_owner: "evil",
            } as GitHubClaims,
          ),
        "org_not_allowed",
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      const { handler, published, registry, lines } = setUp({ verify });
      const h = new Headers({ "content-type": "application/json", ...headers });
      if (headers.authorization === "") h.delete("authorization");
      const res = await handler(
        new Request("http://127.0.0.1/event", { method: "POST", headers: h, body: BODY }),
        INFO,
      );
      assertEquals(res.status, 403);
      assertEquals(await res.text(), '{"error":"access denied"}');
      const log = lines.filter((l) => l.msg === "request").at(-1)!;
      assertEquals([log.reason, log.level], [reason, "warn"]);
      assert(typeof log.detail === "string" && log.detail !== "");
      assertEquals(published.length, 0);
      assertMatch(
        registry.render(),
        new RegExp(`kuberollouttrigger_auth_denied_total\\{reason="${reason}"\\} 1`),
      );
      const everything = JSON.stringify(lines) + registry.render();
      assert(!everything.includes(token) && !everything.includes("dXNlcjpwYXNz"), everything);
    });
  }
});

Deno.test("createHandler() answers 503 with Retry-After when the issuer, Valkey or every worker is away", async (t) => {
  for (
    const [name, options, code, metric] of [
      [
        "the issuer's keys cannot be had",
        {
          verify: () => Promise.reject(new AppError("ERR_AUTH_UNAVAILABLE", "issuer unreachable")),
        },
        "ERR_AUTH_UNAVAILABLE",
        undefined,
      ],
      [
        "Valkey fails",
        { publish: () => Promise.reject(new AppError("ERR_PUBLISH_FAILED", "connection refused")) },
        "ERR_PUBLISH_FAILED",
        'kuberollouttrigger_publish_failures_total{reason="error"} 1',
      ],
      [
        "no worker cluster is known",
        { clusters: [] },
        "ERR_NO_SUBSCRIBER",
        'kuberollouttrigger_publish_failures_total{reason="no_subscriber"} 1',
      ],
    ] as const
  ) {
    await t.step(name, async () => {
      const { post, registry, requestLog, status } = setUp(options as Options);
      const res = await post();
      assertEquals(res.status, 503);
      assertEquals(res.headers.get("retry-after"), "5");
      assertEquals([requestLog().code, requestLog().level], [code, "error"]);
      if (code === "ERR_NO_SUBSCRIBER") {
        assertMatch((await res.json()).error, /no worker cluster is registered/);
        assertEquals(status.records.size, 0, "nothing stored for an event nobody could handle");
      }
      if (metric) assert(registry.render().includes(metric), registry.render());
    });
  }
});

Deno.test("createHandler() accepts an event with 202 when a cluster is known, though no channel subscriber got it", async () => {
  // Workers read the event stream; a PubSub subscriber count of 0 decides nothing now.
  const { post, requestLog, status } = setUp({ subscribers: 0, clusters: ["east", "west"] });
  const res = await post();
  assertEquals(res.status, 202);
  const body = await res.json();
  assertEquals([body.subscribers, body.clusters], [0, ["east", "west"]]);
  assertEquals(status.records.get(body.id)?.binding.clusters, ["east", "west"]);
  assertEquals([requestLog().subscribers, requestLog().clusters], [0, ["east", "west"]]);
});

Deno.test("createHandler() logs the known clusters that were not live when it published", async () => {
  const { post, requestLog } = setUp({ clusters: ["east", "west"], unreachable: ["west"] });
  const res = await post();
  assertEquals(res.status, 202);
  assertEquals((await res.json()).clusters, ["east", "west"]);
  assertEquals([requestLog().clusters, requestLog().unreachable], [["east", "west"], ["west"]]);
});

Deno.test("createHandler() keeps a well-formed X-Request-Id, replaces any other, and returns it on every answer", async (t) => {
  for (
    const [name, incoming, kept] of [
      ["a well-formed id", "run-42.attempt_1", true],
      ["an id with a space", "a b", false],
      ["a 65-character id", "x".repeat(65), false],
      ["none", undefined, false],
    ] as const
  ) {
    await t.step(name, async () => {
      const { handler, requestLog } = setUp();
      const headers: Record<string, string> = incoming === undefined
        ? {}
        : { "x-request-id": incoming };
      const res = await handler(new Request("http://127.0.0.1/nope", { headers }), INFO);
      const id = res.headers.get("x-request-id")!;
      assertEquals(requestLog().request_id, id);
      if (kept) assertEquals(id, incoming);
      else assertMatch(id, /^[0-9a-f-]{36}$/);
    });
  }
});

Deno.test("createHandler() logs probe requests at debug, and one request line per request with its fields", async () => {
  const { handler, lines } = setUp();
  const res = await handler(new Request("http://127.0.0.1/healthz"), INFO);
  assertEquals(res.status, 200);
  const log = lines.filter((l) => l.msg === "request");
  assertEquals(log.length, 1);
  assertEquals(log[0].level, "debug");
  assertEquals(
    Object.keys(log[0]).sort(),
    ["duration_ms", "level", "method", "msg", "path", "remote_addr", "request_id", "status", "ts"],
  );
  assertEquals([log[0].method, log[0].path, log[0].remote_addr], ["GET", "/healthz", "127.0.0.1"]);
});

Deno.test("createHandler() answers every request that arrives once shutdown began 503 with Retry-After, logged at info", async (t) => {
  const shutdown = new AbortController();
  const { handler, post, published, lines, requestLog } = setUp({ signal: shutdown.signal });
  assertEquals((await post()).status, 202, "before shutdown");
  shutdown.abort();
  for (
    const [name, request] of [
      ["an event", () => post()],
      [
        "a status read",
        () => handler(new Request(`http://127.0.0.1/event/${"0".repeat(8)}`), INFO),
      ],
      ["a probe", () => handler(new Request("http://127.0.0.1/healthz"), INFO)],
    ] as const
  ) {
    await t.step(name, async () => {
      const res = await request();
      assertEquals([res.status, res.headers.get("retry-after")], [503, "1"]);
      assertEquals(await res.json(), { error: "web is shutting down; retry" });
      assertEquals([requestLog().reason, requestLog().level], ["shutting_down", "info"]);
    });
  }
  assertEquals(published.length, 1, "nothing published after shutdown began");
  assertEquals(lines.filter((l) => l.level === "error" || l.level === "warn"), []);
});

const SENDER_CLAIMS = {
  ref: "refs/heads/main",
  workflow_ref: "acme/app/.github/workflows/build.yml@refs/heads/main",
};

Deno.test("security: with REPOSITORY_RULES an image the rules do not give the sender gets the same 403, logged with why", async (t) => {
  const rules = parseRepositoryRules("acme/app -> ghcr.io/acme/app; acme/web -> ghcr.io/acme/web");
  await t.step("its own image: 202", async () => {
    const { post, published } = setUp({ rules, claims: SENDER_CLAIMS });
    assertEquals((await post()).status, 202);
    assertEquals(published.length, 1);
  });
  await t.step("another repository's image: 403 access denied, nothing published", async () => {
    const { post, published, requestLog } = setUp({ rules, claims: SENDER_CLAIMS });
    const res = await post({}, '{"image":"ghcr.io/acme/web:dev"}');
    assertEquals([res.status, await res.text()], [403, '{"error":"access denied"}']);
    assertEquals(published.length, 0);
    assertEquals(requestLog().reason, "image_not_granted");
    assertMatch(String(requestLog().detail), /acme\/app .*ghcr\.io\/acme\/web/);
  });
  await t.step("claims that cannot name a sender: refused while rules need one", async () => {
    const { post, published, requestLog } = setUp({ rules });
    assertEquals((await post()).status, 403);
    assertEquals(requestLog().reason, "sender_unnamed");
    assertEquals(published.length, 0);
  });
  await t.step("without rules or a signing key no sender is needed", async () => {
    const { post } = setUp();
    assertEquals((await post()).status, 202);
  });
});

Deno.test("createHandler() signs the sender into the published message", async () => {
  const signer = await createSigner(parseSigningKey((await generateKeyPair()).privatePem)!);
  const { post, published } = setUp({ signer, claims: { ...SENDER_CLAIMS, environment: "prod" } });
  assertEquals((await post()).status, 202);
  const field = JSON.parse(published[0].senderField!);
  assertEquals(JSON.parse(field.sender), {
    repository: "acme/app",
    repository_id: "2002",
    ref: "refs/heads/main",
    environment: "prod",
    workflow_ref: "acme/app/.github/workflows/build.yml@refs/heads/main",
  });
  assert(typeof field.ssig === "string", "the sender is signed");
});
