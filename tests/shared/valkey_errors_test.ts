/**
 * Valkey errors as one line an operator can act on, never quoting what the
 * server echoed. The same lines from real servers: tests/integration/shared/.
 */

import { assertEquals } from "../helpers/assert.ts";
import { ReplyError } from "../../lib/resp.ts";
import { describeConnectionError, describeValkeyError } from "../../shared/valkey_errors.ts";

const SECRET = `krtsecret${crypto.randomUUID().replaceAll("-", "")}`;

Deno.test("security: a reply that quotes the command keeps only its words before the quote", () => {
  const reply = new ReplyError(
    `ERR unknown command 'auth', with args beginning with: 'web' '${SECRET}'`,
  );
  assertEquals(describeValkeyError(reply), "ERR unknown command (rest of the reply not shown)");
  assertEquals(
    describeValkeyError(new ReplyError("NOPERM this user has no permissions")),
    "NOPERM this user has no permissions",
  );
});

Deno.test("a cluster's redirection met with VALKEY_ADDR says to give the cluster's nodes", () => {
  assertEquals(
    describeValkeyError(new ReplyError("MOVED 3686 10.0.0.7:6379")),
    "MOVED 3686 10.0.0.7:6379: a Valkey Cluster node answered; give the cluster's nodes as VALKEY_CLUSTER_NODES instead of VALKEY_ADDR",
  );
  // Not a redirection: said as it is.
  assertEquals(describeValkeyError(new ReplyError("ERR MOVED nowhere")), "ERR MOVED nowhere");
});

Deno.test("connection errors say what to fix: certificate codes, and a TLS mismatch either way", () => {
  const coded = (code: string, message = code) => Object.assign(new Error(message), { code });
  assertEquals(
    describeConnectionError(coded("CERT_HAS_EXPIRED"), true),
    "Valkey's TLS certificate has expired; renew the server's certificate [CERT_HAS_EXPIRED]",
  );
  assertEquals(
    describeConnectionError(coded("ETIMEDOUT", "connect ETIMEDOUT 10.0.0.1:6379"), true),
    "connect ETIMEDOUT 10.0.0.1:6379: no TLS handshake within VALKEY_TIMEOUT; the server may not speak TLS on that port (or is unreachable)",
  );
  assertEquals(
    describeConnectionError(coded("ECONNRESET", "read ECONNRESET"), false),
    "read ECONNRESET: the server closed the connection; if it expects TLS, set VALKEY_TLS_ENABLED=true",
  );
});
