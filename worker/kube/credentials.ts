/**
 * Credentials from a kubeconfig or the ServiceAccount, checked before Deno
 * sees them: base64 fields decoded, PEM blocks checked, tokens checked to be
 * sendable as a header, and the HTTP client built. A malformed value stops the
 * worker at startup with one line naming the field, instead of a DOMException,
 * a stack trace, or (for a CA without any certificate) a silent fallback to
 * the system roots.
 *
 * Security: the values are tokens, CA certificates, client certificates and
 * private keys. No error here quotes a value or a decoder's message about it;
 * errors say which field and what kind of problem, with a position where useful.
 */

import { AppError } from "../../shared/errors.ts";

/** What a PEM field must hold. */
export type PemKind = "certificate" | "private key";

const KEY_LABELS = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function kubeError(message: string): AppError {
  return new AppError("ERR_KUBE", message);
}

function fail(field: string, problem: string): AppError {
  return kubeError(`${field} ${problem}`);
}

/**
 * Decodes a kubeconfig `*-data` field (standard base64, as client-go reads it)
 * to text. `field` names it in errors, e.g. `Kubeconfig /k: clusters[0].cluster.certificate-authority-data`.
 */
export function decodeBase64Field(value: string, field: string): string {
  const compact = value.replace(/\s+/g, "");
  if (compact === "") throw fail(field, "is empty");
  const bad = compact.search(/[^A-Za-z0-9+/=]/);
  if (bad >= 0) throw fail(field, `is not base64: character ${bad + 1} is not in the alphabet`);
  if (!BASE64.test(compact) || compact.length % 4 !== 0) {
    throw fail(field, "is not base64: its length or padding is wrong");
  }
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(compact), (c) => c.charCodeAt(0));
  } catch {
    throw fail(field, "is not base64");
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw fail(
      field,
      "does not decode to PEM text (is it base64 of a DER file? encode the PEM file)",
    );
  }
}

/**
 * Checks that `text` is PEM holding what `kind` needs: one or more CERTIFICATE
 * blocks (a bundle may carry comments between them), or exactly one
 * unencrypted private key. Throws ERR_KUBE naming `field`; returns `text`.
 */
export function checkPem(text: string, field: string, kind: PemKind): string {
  const blocks: { label: string; line: number }[] = [];
  const lines = text.split(/\r?\n/);
  let open: { label: string; line: number; body: string[] } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    const begin = /^-----BEGIN ([A-Z0-9 ]+)-----$/.exec(line);
    const end = /^-----END ([A-Z0-9 ]+)-----$/.exec(line);
    if (begin) {
      if (open) throw fail(field, `has a BEGIN line at line ${i + 1} inside another PEM block`);
      open = { label: begin[1], line: i + 1, body: [] };
    } else if (end) {
      if (!open || end[1] !== open.label) {
        throw fail(field, `has an END line at line ${i + 1} that matches no BEGIN line`);
      }
      if (open.body.some((l) => /^[\w-]+:/.test(l))) {
        throw fail(
          field,
          `has PEM headers in the block at line ${open.line} (an encrypted key?): the worker needs plain, unencrypted PEM`,
        );
      }
      const body = open.body.join("");
      if (body === "" || !BASE64.test(body) || body.length % 4 !== 0) {
        throw fail(field, `has a PEM block at line ${open.line} whose body is not base64`);
      }
      blocks.push({ label: open.label, line: open.line });
      open = undefined;
    } else if (open && line !== "") {
      open.body.push(line);
    }
  }
  if (open) throw fail(field, `has a PEM block at line ${open.line} without its END line`);
  if (kind === "certificate") {
    if (blocks.length === 0) throw fail(field, "holds no PEM certificate (BEGIN CERTIFICATE)");
    const other = blocks.find((b) => b.label !== "CERTIFICATE");
    if (other) {
      throw fail(field, `holds a PEM block at line ${other.line} that is not a CERTIFICATE`);
    }
  } else {
    if (blocks.some((b) => b.label === "ENCRYPTED PRIVATE KEY")) {
      throw fail(field, "holds an encrypted private key: the worker needs it unencrypted");
    }
    const keys = blocks.filter((b) => KEY_LABELS.includes(b.label));
    if (keys.length !== 1 || blocks.length !== 1) {
      throw fail(
        field,
        "must hold exactly one PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
      );
    }
  }
  return text;
}

/**
 * A bearer token must be sendable as a header value. Security: Deno's Headers
 * quote an invalid value in their TypeError, so it is checked here first.
 */
export function checkToken(token: string, what: string): string {
  if (token === "") throw kubeError(`${what} is empty`);
  const bad = [...token].findIndex((c) => c < "!" || c > "~");
  if (bad >= 0) {
    throw kubeError(
      `${what} holds a character that cannot be sent in an Authorization header (whitespace, control or non-ASCII, at position ${
        bad + 1
      })`,
    );
  }
  return token;
}

/** What one request authenticates with. */
export interface KubeCredentials {
  /** The Authorization header value, if the user authenticates by token. */
  authorization?: string;
  /** The cluster's CA, and the user's client certificate if there is one; unset: Deno's default. */
  httpClient?: Deno.HttpClient;
}

/** TLS material for createHttpClient, with the names of the fields it came from. */
export interface Tls {
  ca?: { pem: string; field: string };
  cert?: { pem: string; field: string };
  key?: { pem: string; field: string };
}

/**
 * Builds the HTTP client. The PEM text is checked beforehand; what remains is
 * DER inside the blocks and whether the key fits the certificate, which only
 * Deno checks. Its message is matched, never quoted, to name the field.
 */
export function createTlsClient(tls: Tls): Deno.HttpClient {
  if (tls.ca) {
    try {
      Deno.createHttpClient({ caCerts: [tls.ca.pem] }).close();
    } catch {
      throw kubeError(`${tls.ca.field} holds a PEM certificate whose content is not valid X.509`);
    }
  }
  try {
    return Deno.createHttpClient({
      caCerts: tls.ca ? [tls.ca.pem] : undefined,
      ...(tls.cert && tls.key ? { cert: tls.cert.pem, key: tls.key.pem } : {}),
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : "";
    const problem = /mismatch|consistent/i.test(message)
      ? `${tls.key?.field} is not the private key of ${tls.cert?.field}`
      : /private key|key data/i.test(message)
      ? `${tls.key?.field} holds a private key Deno cannot read (use unencrypted PKCS#8, PKCS#1 or SEC1)`
      : /certificate/i.test(message)
      ? `${tls.cert?.field} holds a PEM certificate whose content is not valid X.509`
      : `${tls.cert?.field} and ${tls.key?.field} cannot be used for TLS`;
    throw kubeError(problem);
  }
}
