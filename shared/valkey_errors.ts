/**
 * Valkey and connection errors as one line an operator can act on, for both
 * clients. Security: Valkey's error replies can quote the command they refuse
 * ("unknown command 'auth', with args beginning with: 'user' 'password'"), so
 * a reply keeps only its words before the first quote.
 */

import { describeError } from "../lib/error_text.ts";

// Node's certificate-check codes, each with what an operator can do about it.
const TLS_PROBLEMS: [RegExp, string][] = [
  [
    /^ERR_TLS_CERT_ALTNAME_INVALID$/,
    "Valkey's TLS certificate does not name the host connected to; connect by a name or IP address in its subjectAltName, or reissue it",
  ],
  [
    /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE)$/,
    "Valkey's TLS certificate is not signed by a trusted CA; set VALKEY_TLS_CA_CERT to the CA that signed it",
  ],
  [
    /^CERT_HAS_EXPIRED$/,
    "Valkey's TLS certificate has expired; renew the server's certificate",
  ],
  [
    /^CERT_NOT_YET_VALID$/,
    "Valkey's TLS certificate is not valid yet; check the clocks or the certificate's dates",
  ],
  [
    /CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE|UNKNOWN_CA/,
    "Valkey refused the TLS handshake; if it requires client certificates, set VALKEY_TLS_CLIENT_CERT and VALKEY_TLS_CLIENT_KEY to one its CA signed",
  ],
];

/**
 * The connection error as one actionable line: TLS verification failures say
 * what to fix, with Node's code in brackets; a timeout over TLS and a reset
 * without it hint at a TLS mismatch with the server.
 */
export function describeConnectionError(err: unknown, tls: boolean): string {
  const code = String((err as { code?: unknown })?.code ?? "");
  for (const [pattern, advice] of TLS_PROBLEMS) {
    if (code && pattern.test(code)) return `${advice} [${code}]`;
  }
  const text = describeValkeyError(err);
  if (tls && /ETIMEDOUT/.test(text)) {
    return `${text}: no TLS handshake within VALKEY_TIMEOUT; the server may not speak TLS on that port (or is unreachable)`;
  }
  if (!tls && code === "ENOREPLY") {
    return `${text} within VALKEY_TIMEOUT; if the server expects TLS, set VALKEY_TLS_ENABLED=true (or it is too busy to answer)`;
  }
  if (!tls && /ECONNRESET/.test(text)) {
    return `${text}: the server closed the connection; if it expects TLS, set VALKEY_TLS_ENABLED=true`;
  }
  return text;
}

/**
 * A one-line description of a Valkey or connection error. A server reply keeps
 * its error code and the words before the first quoted argument; the rest,
 * which may echo command arguments (a password, a key), is dropped.
 */
export function describeValkeyError(err: unknown): string {
  if (!(err instanceof Error) || err.name !== "ReplyError") return describeError(err);
  const text = describeError(err);
  if (/^(MOVED|ASK) \d+ \S+$/.test(text)) {
    return `${text}: a Valkey Cluster node answered; give the cluster's nodes as VALKEY_CLUSTER_NODES instead of VALKEY_ADDR`;
  }
  const quote = text.search(/['"`]/);
  if (quote < 0) return text;
  return `${text.slice(0, quote).replace(/[\s,:;(]+$/, "")} (rest of the reply not shown)`;
}
