/**
 * How createKubeApi() turns answers into errors. Bodies are untrusted: a
 * Status keeps its reason and a bounded one-line message; anything else (a
 * proxy's page, an echo) is described by size and type, never quoted.
 */

import { assert, assertEquals, assertRejects } from "../../helpers/assert.ts";
import { createKubeApi } from "../../../worker/kube/api.ts";
import { KubeApiError } from "../../../worker/kube/errors.ts";

const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;

function apiAnswering(
  status: number,
  body: string,
  contentType = "application/json",
  authorization = () => Promise.resolve<string | undefined>("Bearer ok"),
) {
  return createKubeApi({
    server: "https://127.0.0.1:1",
    authorization,
    fetch: () =>
      Promise.resolve(new Response(body, { status, headers: { "content-type": contentType } })),
  });
}

Deno.test("security: createKubeApi() never quotes an answer that is not a Kubernetes Status", async (t) => {
  const cases: [string, number, string, string, RegExp][] = [
    [
      "a 200 whose body is not JSON",
      200,
      `<html>${SECRET}</html>`,
      "text/html",
      /GET .*: the answer is not JSON \(\d+ characters of text\/html\)/,
    ],
    [
      "a 200 whose body is JSON cut short",
      200,
      `{"items":[{"token":"${SECRET}`,
      "application/json",
      /the answer is not JSON/,
    ],
    [
      "an error whose body is not JSON",
      502,
      `upstream said ${SECRET}`,
      "text/plain",
      /: 502 Error$/,
    ],
    [
      "an error whose JSON is not a Status",
      400,
      JSON.stringify({ message: SECRET, reason: "Echo" }),
      "application/json",
      /: 400 Error$/,
    ],
    [
      "a Status whose reason is not a word",
      403,
      JSON.stringify({ kind: "Status", reason: `Forbidden ${SECRET}`, message: "no" }),
      "application/json",
      /: 403 Error: no$/,
    ],
  ];
  for (const [name, status, body, type, message] of cases) {
    await t.step(name, async () => {
      const err = await assertRejects(
        () => apiAnswering(status, body, type).getDeployment("ns", "d"),
        { instanceOf: KubeApiError, message },
      );
      assertEquals((err as KubeApiError).status, status);
      assert(!err.message.includes(SECRET), err.message);
    });
  }
});

Deno.test("createKubeApi() keeps a Status's reason and message, on one bounded line", async () => {
  const message = `deployments.apps "d" is forbidden:\nUser "x"\tcannot patch ${"y".repeat(400)}`;
  const err = await assertRejects(
    () =>
      apiAnswering(403, JSON.stringify({ kind: "Status", reason: "Forbidden", message }))
        .patchDeployment("ns", "d", {}),
    { instanceOf: KubeApiError, reason: "Forbidden" },
  );
  assert(err.message.startsWith("PATCH /apis/apps/v1/namespaces/ns/deployments/d"), err.message);
  assert(
    err.message.includes(
      ': 403 Forbidden: deployments.apps "d" is forbidden: User "x" cannot patch yyy',
    ),
  );
  assert(!/[\n\t]/.test(err.message), "one line");
  assert(err.message.length < 450, `bounded: ${err.message.length}`);
});

Deno.test("security: createKubeApi() reports a token that cannot be a header without quoting it", async () => {
  const api = apiAnswering(
    200,
    "{}",
    "application/json",
    () => Promise.resolve(`Bearer abc\n${SECRET}`),
  );
  const err = await assertRejects(() => api.listDeployments("ns"), {
    instanceOf: KubeApiError,
    reason: "CredentialsUnavailable",
  });
  assertEquals((err as KubeApiError).status, 0);
  assert(!err.message.includes(SECRET), err.message);
});

Deno.test("createKubeApi() says why a request did not reach the server, not only that fetch failed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // nothing listens there now
  const api = createKubeApi({ server: `https://127.0.0.1:${port}` });
  await assertRejects(() => api.getDeployment("ns", "d"), {
    instanceOf: KubeApiError,
    reason: "NetworkError",
    message: /failed: fetch failed: .*(refused|connect)/i,
  });
});

Deno.test("createKubeApi() retries a 401 once with renewed credentials, only when it can renew them", async (t) => {
  const unauthorized = () =>
    new Response(JSON.stringify({ kind: "Status", reason: "Unauthorized" }), { status: 401 });
  await t.step(
    "with renewCredentials: renewed once, retried once, both requests counted",
    async () => {
      const sent: (string | null)[] = [];
      const renewed: (string | undefined)[] = [];
      const verbs: string[] = [];
      const api = createKubeApi({
        server: "https://127.0.0.1:1",
        credentials: () => Promise.resolve({ authorization: "Bearer old" }),
        renewCredentials: (refused) => {
          renewed.push(refused.authorization);
          return Promise.resolve({ authorization: "Bearer new" });
        },
        onRequest: (verb) => verbs.push(verb),
        fetch: (_url, init) => {
          const auth = new Headers(init?.headers).get("authorization");
          sent.push(auth);
          return Promise.resolve(auth === "Bearer new" ? Response.json({}) : unauthorized());
        },
      });
      await api.getDeployment("ns", "d");
      assertEquals(sent, ["Bearer old", "Bearer new"]);
      assertEquals(renewed, ["Bearer old"]);
      assertEquals(verbs, ["get", "get"]);
    },
  );
  await t.step("without renewCredentials (a static token): the 401 is the answer", async () => {
    let calls = 0;
    const api = createKubeApi({
      server: "https://127.0.0.1:1",
      authorization: () => Promise.resolve("Bearer static"),
      fetch: () => {
        calls++;
        return Promise.resolve(unauthorized());
      },
    });
    await assertRejects(() => api.getDeployment("ns", "d"), {
      instanceOf: KubeApiError,
      reason: "Unauthorized",
    });
    assertEquals(calls, 1);
  });
});
