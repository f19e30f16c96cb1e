import { assertEquals } from "../helpers/assert.ts";
import {
  codingProblem,
  isJsonContentType,
  MAX_BODY_BYTES,
  readBody,
} from "../../web/request_body.ts";

Deno.test("isJsonContentType() takes application/json, in any case, with at most a UTF-8 charset", () => {
  for (
    const ok of [
      "application/json",
      "Application/JSON",
      "application/json; charset=utf-8",
      'application/json;charset="UTF-8"',
    ]
  ) {
    assertEquals(isJsonContentType(ok), true, ok);
  }
  for (
    const no of [
      null,
      "",
      "text/json",
      "application/json; charset=latin1",
      "application/json; x=1",
      "application/jsonx",
    ]
  ) {
    assertEquals(isJsonContentType(no), false, String(no));
  }
});

Deno.test("codingProblem() refuses any content coding but identity and any transfer coding but chunked", () => {
  const problem = (headers: Record<string, string>) =>
    codingProblem(new Request("http://x/", { method: "POST", headers }));
  assertEquals(problem({}), undefined);
  assertEquals(problem({ "content-encoding": " Identity " }), undefined);
  assertEquals(problem({ "content-encoding": "br" }), "content encoding must be identity");
});

function streamed(...chunks: (Uint8Array | Error)[]): Request {
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks.shift();
      if (next === undefined) controller.close();
      else if (next instanceof Error) controller.error(next);
      else controller.enqueue(next);
    },
  });
  return new Request("http://x/", { method: "POST", body });
}

Deno.test("readBody() returns the text, or why it could not: too large, cut short, not UTF-8", async () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  assertEquals(
    await readBody(new Request("http://x/", { method: "POST", body: '{"a":"é"}' })),
    '{"a":"é"}',
  );
  assertEquals(await readBody(new Request("http://x/", { method: "POST" })), "");
  assertEquals(await readBody(streamed(enc("{"), enc('"a":1}'))), '{"a":1}');
  assertEquals(
    await readBody(
      new Request("http://x/", {
        method: "POST",
        headers: { "content-length": String(MAX_BODY_BYTES + 1) },
        body: "{}",
      }),
    ),
    "too_large",
  );
  assertEquals(await readBody(streamed(new Uint8Array(MAX_BODY_BYTES), enc("x"))), "too_large");
  assertEquals(
    await readBody(streamed(new Uint8Array(MAX_BODY_BYTES))),
    "\0".repeat(MAX_BODY_BYTES),
  );
  assertEquals(await readBody(streamed(enc("{"), new Error("connection reset"))), "cut_short");
  assertEquals(await readBody(streamed(new Uint8Array([0x7b, 0xff, 0x7d]))), "bad_encoding");
});
