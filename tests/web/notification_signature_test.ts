import { createHmac } from "node:crypto";
import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { notificationHeaders, verifyNotification } from "../../web/notification_signature.ts";

Deno.test("notificationHeaders() names the delivery and signs timestamp and body", async (t) => {
  const body = JSON.stringify({ event_id: "ev-1", state: "failed", clusters: [] });
  const options = { eventId: "ev-1", deliveryId: "dl-1", body, timestampSeconds: 1_796_000_000 };
  await t.step("known answer: HMAC-SHA256 over `<timestamp>.<body>`, lower-case hex", () => {
    const expected = createHmac("sha256", "s3cret").update(`1796000000.${body}`).digest("hex");
    assertEquals(notificationHeaders({ ...options, secret: "s3cret" }), {
      "Content-Type": "application/json",
      "User-Agent": "kuberollouttrigger",
      "X-Kuberollouttrigger-Event": "ev-1",
      "X-Kuberollouttrigger-Delivery": "dl-1",
      "X-Kuberollouttrigger-Timestamp": "1796000000",
      "X-Kuberollouttrigger-Signature-256": `sha256=${expected}`,
    });
  });
  await t.step("fixed vector", () => {
    const h = notificationHeaders({ ...options, body: "{}", secret: "key" });
    assertEquals(
      h["X-Kuberollouttrigger-Signature-256"],
      `sha256=${createHmac("sha256", "key").update("1796000000.{}").digest("hex")}`,
    );
    assertMatch(h["X-Kuberollouttrigger-Signature-256"], /^sha256=[0-9a-f]{64}$/);
  });
  await t.step("no secret: no signature header", () => {
    assertEquals("X-Kuberollouttrigger-Signature-256" in notificationHeaders(options), false);
  });
  await t.step("security: an id that could split a header, an empty secret, a bad clock", () => {
    assertThrows(() => notificationHeaders({ ...options, eventId: "a\r\nX-Evil: 1" }), {
      message: /eventId/,
    });
    assertThrows(() => notificationHeaders({ ...options, deliveryId: "" }));
    assertThrows(() => notificationHeaders({ ...options, secret: "" }), { message: /empty/ });
    assertThrows(() => notificationHeaders({ ...options, timestampSeconds: 1.5 }));
  });
});

Deno.test("verifyNotification() accepts only the exact, fresh, signed delivery", async (t) => {
  const body = JSON.stringify({ event_id: "ev-1", state: "failed", clusters: [] });
  const now = 1_796_000_000;
  const headers = notificationHeaders({
    eventId: "ev-1",
    deliveryId: "dl-1",
    body,
    timestampSeconds: now,
    secret: "s3cret",
  });
  const check = (extra: Partial<Parameters<typeof verifyNotification>[0]> = {}) =>
    verifyNotification({ secret: "s3cret", body, headers, nowSeconds: now + 10, ...extra });
  await t.step("the delivery as sent: true", () => assert(check()));
  await t.step("as a Headers object, names in another case: true", () => {
    const h = new Headers();
    for (const [k, v] of Object.entries(headers)) h.set(k.toLowerCase(), v);
    assert(check({ headers: h }));
    const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    assert(check({ headers: upper }));
  });
  await t.step("the body changed by one byte: false", () => {
    assert(!check({ body: body.replace('"failed"', '"faile4"') }));
    assert(!check({ body: body + " " }));
  });
  await t.step("another secret: false", () => assert(!check({ secret: "s3cret2" })));
  await t.step("older or newer than the tolerance: false; at the edge: true", () => {
    assert(!check({ nowSeconds: now + 301 }));
    assert(!check({ nowSeconds: now - 301 }));
    assert(check({ nowSeconds: now + 300 }));
    assert(!check({ nowSeconds: now + 61, toleranceSeconds: 60 }));
    assert(!check({ nowSeconds: NaN }));
  });
  await t.step("a timestamp header changed to look fresh: false", () => {
    assert(
      !check({
        headers: { ...headers, "X-Kuberollouttrigger-Timestamp": String(now + 3600) },
        nowSeconds: now + 3600,
      }),
    );
  });
  await t.step("a missing or malformed header: false", () => {
    const without = (name: string) =>
      Object.fromEntries(Object.entries(headers).filter(([k]) => k !== name));
    assert(!check({ headers: without("X-Kuberollouttrigger-Signature-256") }));
    assert(!check({ headers: without("X-Kuberollouttrigger-Timestamp") }));
    const signature = headers["X-Kuberollouttrigger-Signature-256"];
    for (
      const bad of [
        signature.toUpperCase(),
        signature.slice(0, -2),
        signature.replace("sha256=", "sha1="),
        `${signature}, ${signature}`,
      ]
    ) {
      assert(!check({ headers: { ...headers, "X-Kuberollouttrigger-Signature-256": bad } }), bad);
    }
  });
  await t.step("two spellings of the header in a record: false", () => {
    const twice = { ...headers, "x-kuberollouttrigger-signature-256": "sha256=" + "0".repeat(64) };
    assert(!check({ headers: twice }));
  });
});
