import { assert, assertEquals } from "../helpers/assert.ts";
import {
  codingProblem,
  createBodyReader,
  isJsonContentType,
  MAX_BODY_BYTES,
} from "../../web/request_body.ts";

const readBody = (req: Request) => createBodyReader().read(req);

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
  return streamedWith({}, ...chunks);
}

function streamedWith(headers: Record<string, string>, ...chunks: (Uint8Array | Error)[]): Request {
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks.shift();
      if (next === undefined) controller.close();
      else if (next instanceof Error) controller.error(next);
      else controller.enqueue(next);
    },
  });
  return new Request("http://x/", { method: "POST", headers, body });
}

/** The outcome of `promise`, or "no answer" after `ms` (a broken deadline fails, not hangs). */
async function within<T>(ms: number, promise: Promise<T>): Promise<T | "no answer"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<"no answer">((resolve) => timer = setTimeout(resolve, ms, "no answer"));
  try {
    return await Promise.race([promise, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** A body that sends `first` and then nothing, ever (until cancelled). */
function stalled(headers: Record<string, string>, first: Uint8Array): Request {
  let sent = false;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) controller.enqueue(first);
      sent = true;
      return new Promise(() => {});
    },
  }, { highWaterMark: 0 });
  return new Request("http://x/", { method: "POST", headers, body });
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

Deno.test("readBody() reads a body of declared length whole, and one shorter or longer than declared as cut short", async () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const declared = (n: number) => ({ "content-length": String(n) });
  assertEquals(await readBody(streamedWith(declared(7), enc('{"a":'), enc("1}"))), '{"a":1}');
  assertEquals(await readBody(streamedWith(declared(8), enc('{"a":1}'))), "cut_short");
  assertEquals(await readBody(streamedWith(declared(3), enc('{"a":1}'))), "cut_short");
  assertEquals(
    await readBody(
      streamedWith(declared(MAX_BODY_BYTES), new Uint8Array(MAX_BODY_BYTES), enc("x")),
    ),
    "too_large",
  );
  assertEquals(
    await readBody(streamedWith(declared(2), enc("{"), new Error("reset"))),
    "cut_short",
  );
  assertEquals(
    await readBody(streamedWith(declared(3), new Uint8Array([0x7b, 0xff, 0x7d]))),
    "bad_encoding",
  );
  // Chunked framing goes the chunk by chunk way even with a length beside it.
  assertEquals(
    await readBody(
      streamedWith({ ...declared(7), "transfer-encoding": "chunked" }, enc('{"a":'), enc("1}")),
    ),
    '{"a":1}',
  );
});

Deno.test("security: readBody() gives up on a body that stops arriving, declared or chunked, after the timeout", async () => {
  const reader = createBodyReader({ timeoutMs: 60, tickMs: 5 });
  const enc = new TextEncoder();
  const started = performance.now();
  const [declared, chunked] = await Promise.all([
    within(2000, reader.read(stalled({ "content-length": "100" }, enc.encode("{")))),
    within(2000, reader.read(stalled({}, enc.encode("{")))),
  ]);
  assertEquals([declared, chunked], ["too_slow", "too_slow"]);
  assert(performance.now() - started >= 55, "gave up before the timeout");
});

Deno.test("readBody() times each read from its own start, whatever finished around it", async () => {
  const reader = createBodyReader({ timeoutMs: 80, tickMs: 5 });
  const enc = new TextEncoder();
  const slow = reader.read(stalled({}, enc.encode("{")));
  // Reads that finish while the slow one waits leave its deadline where it was.
  for (let i = 0; i < 5; i++) {
    assertEquals(await reader.read(streamed(enc.encode(`{"n":${i}}`))), `{"n":${i}}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 40));
  const laterStart = performance.now();
  const later = reader.read(stalled({}, enc.encode("{")));
  assertEquals(await within(2000, slow), "too_slow");
  // The later read is not cut off with the first: it gets its own 80 ms.
  const outcome = await Promise.race([
    later,
    new Promise((resolve) => setTimeout(() => resolve("still waiting"), 30)),
  ]);
  assertEquals(outcome, "still waiting");
  assertEquals(await within(2000, later), "too_slow");
  assert(performance.now() - laterStart >= 75, "the later read was cut off early");
});
