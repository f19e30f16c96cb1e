/**
 * The credential checks, as tables: base64 fields, PEM text and bearer
 * tokens, each refused with one line naming the field and the problem, never
 * the value. createTlsClient() is proven with real certificates in
 * config_test.ts.
 */

import { assertEquals, assertThrows } from "../../helpers/assert.ts";
import { checkPem, checkToken, decodeBase64Field } from "../../../worker/kube/credentials.ts";

const FIELD = "Kubeconfig /k: users[0].user.client-key-data";
const SECRET = "c2VjcmV0LXRva2Vu"; // base64 of "secret-token"
const block = (label: string, body = "TUlJQg==") =>
  `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;

/** Asserts one ERR_KUBE error naming the field, without the value. */
function refuses(fn: () => unknown, message: RegExp, value: string) {
  const err = assertThrows(fn) as Error & { code?: string };
  assertEquals(err.code, "ERR_KUBE");
  assertEquals(message.test(err.message), true, err.message);
  assertEquals(err.message.includes(value), false, "the value is not quoted");
}

Deno.test("decodeBase64Field() decodes standard base64 to text, ignoring line breaks", () => {
  assertEquals(decodeBase64Field("c2VjcmV0\nLXRva2Vu", FIELD), "secret-token");
});

Deno.test("security: decodeBase64Field() says what is wrong and where, never the value", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["empty", "  \n", /is empty$/],
    ["a character outside the alphabet", `${SECRET}!`, /character 17 is not in the alphabet/],
    ["wrong padding", SECRET.slice(0, -1), /its length or padding is wrong/],
    ["bytes that are not UTF-8 (a DER file)", btoa("\xff\xfe\xfd"), /does not decode to PEM text/],
  ];
  for (const [name, value, message] of cases) {
    await t.step(name, () => {
      refuses(
        () => decodeBase64Field(value, FIELD),
        new RegExp(`^${RegExp.escape(FIELD)} `),
        value,
      );
      refuses(() => decodeBase64Field(value, FIELD), message, value);
    });
  }
});

Deno.test("checkPem() accepts a certificate bundle with comments, or one plain private key", async (t) => {
  const bundle = `# first\n${block("CERTIFICATE")}comment\n${block("CERTIFICATE")}`;
  await t.step("a bundle", () => assertEquals(checkPem(bundle, FIELD, "certificate"), bundle));
  for (const label of ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]) {
    await t.step(
      label,
      () => assertEquals(checkPem(block(label), FIELD, "private key"), block(label)),
    );
  }
});

Deno.test("security: checkPem() refuses what Deno would misread, naming the line, never the text", async (t) => {
  const cases: [string, string, "certificate" | "private key", RegExp][] = [
    ["no block", SECRET, "certificate", /holds no PEM certificate/],
    [
      "a key where a certificate belongs",
      block("PRIVATE KEY"),
      "certificate",
      /line 1 that is not a CERTIFICATE/,
    ],
    [
      "a BEGIN inside a block",
      `-----BEGIN CERTIFICATE-----\n${block("CERTIFICATE")}`,
      "certificate",
      /BEGIN line at line 2 inside another/,
    ],
    [
      "an END without its BEGIN",
      `${SECRET}\n-----END CERTIFICATE-----`,
      "certificate",
      /END line at line 2 that matches no BEGIN/,
    ],
    [
      "a block without its END",
      `-----BEGIN CERTIFICATE-----\n${SECRET}`,
      "certificate",
      /line 1 without its END line/,
    ],
    [
      "a body that is not base64",
      block("CERTIFICATE", `${SECRET}!`),
      "certificate",
      /whose body is not base64/,
    ],
    [
      "PEM headers (an encrypted key)",
      block("RSA PRIVATE KEY", `Proc-Type: 4,ENCRYPTED\n${SECRET}`),
      "private key",
      /has PEM headers/,
    ],
    [
      "an encrypted PKCS#8 key",
      block("ENCRYPTED PRIVATE KEY"),
      "private key",
      /encrypted private key/,
    ],
    [
      "two keys",
      block("PRIVATE KEY") + block("PRIVATE KEY"),
      "private key",
      /exactly one PEM private key/,
    ],
    [
      "a certificate where a key belongs",
      block("CERTIFICATE"),
      "private key",
      /exactly one PEM private key/,
    ],
  ];
  for (const [name, text, kind, message] of cases) {
    await t.step(name, () => refuses(() => checkPem(text, FIELD, kind), message, SECRET));
  }
});

Deno.test("security: checkToken() refuses a token that cannot be a header, by position, never quoting it", async (t) => {
  assertEquals(checkToken("abc.DEF-123_~", "token"), "abc.DEF-123_~");
  const cases: [string, string, RegExp][] = [
    ["empty", "", /^token is empty$/],
    ["a space", "secret token", /at position 7\)$/],
    ["a line break", "secret\n", /at position 7\)$/],
    ["non-ASCII", "secrét", /at position 5\)$/],
  ];
  for (const [name, token, message] of cases) {
    await t.step(name, () => refuses(() => checkToken(token, "token"), message, token || "\0"));
  }
});
