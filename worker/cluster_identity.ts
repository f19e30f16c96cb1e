/**
 * Which Kubernetes cluster this worker acts on, as a few short fingerprints,
 * so two clusters configured with one CLUSTER_NAME can be told apart
 * (worker/cluster_registration.ts). It needs no API call and so no RBAC: the
 * identity is what the worker already trusts to reach its API server.
 *
 * - With a CA (in-cluster ca.crt, or the kubeconfig's certificate-authority):
 *   one fingerprint per CA certificate, the first 16 hex digits of the SHA-256
 *   of its DER bytes, which is what `openssl x509 -noout -fingerprint -sha256`
 *   prints. DER, not the PEM text, so whitespace, comments and order in the
 *   bundle do not matter. Two workers are one cluster when they share one
 *   fingerprint: during a CA rotation a replica started with the old bundle
 *   and one started with old+new still agree.
 * - Without a CA (the system trust store), or with a bundle of more than
 *   MAX_CA_CERTIFICATES (a trust store, which many clusters share): the API
 *   server's URL.
 * - Dev mode's local inventory (no cluster): the inventory file's real path.
 *
 * Trusted input: the CA and server the worker was configured with, checked in
 * kube/config.ts. Nothing here is secret: CA certificates and URLs are public
 * (the URL carries no user or password, config.ts refuses that).
 */

import { createHash } from "node:crypto";

/** What identifies the cluster this worker acts on. */
export interface ClusterIdentity {
  /** Sorted, 16 lowercase hex digits each; two workers are one cluster when they share one. */
  fingerprints: readonly string[];
  /** For the conflict line: the API server and CA, printable ASCII, at most ABOUT_MAX_LENGTH. */
  about: string;
}

/** Longest `about` written or read back. */
export const ABOUT_MAX_LENGTH = 240;
/** A CA bundle with more certificates is a trust store, not one cluster's CA. */
export const MAX_CA_CERTIFICATES = 8;
/** The shape of one fingerprint. */
export const FINGERPRINT = /^[0-9a-f]{16}$/;

function shortSha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex").slice(0, 16);
}

/** The DER bytes of each CERTIFICATE block of a PEM bundle (already checked by credentials.ts). */
function certificates(pem: string): Uint8Array[] {
  const blocks = pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g);
  return [...blocks].map(([, body]) =>
    Uint8Array.from(atob(body.replace(/\s+/g, "")), (c) => c.charCodeAt(0))
  );
}

/** `text` as printable ASCII (anything else becomes `?`), cut to ABOUT_MAX_LENGTH. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?");
  return clean.length <= ABOUT_MAX_LENGTH ? clean : `${clean.slice(0, ABOUT_MAX_LENGTH - 3)}...`;
}

/** The server as one canonical string: lowercase host, no default port, no trailing slash. */
function canonicalServer(server: string): string {
  const url = new URL(server);
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/**
 * The identity of the cluster behind an API server: its CA certificates, or
 * its URL when the worker trusts the system roots (`caPem` undefined).
 */
export function apiServerIdentity(access: { server: string; caPem?: string }): ClusterIdentity {
  const server = canonicalServer(access.server);
  const certs = access.caPem === undefined ? [] : certificates(access.caPem);
  if (certs.length === 0 || certs.length > MAX_CA_CERTIFICATES) {
    const trust = certs.length === 0
      ? "system trust store"
      : `a ${certs.length}-certificate bundle`;
    return {
      fingerprints: [shortSha256(`server ${server}`)],
      about: printable(`${server}, ${trust}`),
    };
  }
  const fingerprints = [...new Set(certs.map((der) => shortSha256(der)))].sort();
  const ca = fingerprints.map((f) => `sha256:${f}`).join(" + ");
  return { fingerprints, about: printable(`${server}, CA ${ca}`) };
}

/**
 * Dev mode's local inventory stands for a cluster: its file's real path, so
 * two checkouts sharing one Valkey are two clusters. Falls back to the path
 * as given when it cannot be resolved.
 */
export async function localInventoryIdentity(path: string): Promise<ClusterIdentity> {
  const real = await Deno.realPath(path).catch(() => path);
  return {
    fingerprints: [shortSha256(`local-inventory ${real}`)],
    about: printable(`local inventory ${real}`),
  };
}

/** An identity named by the host, for a worker whose Kubernetes API is injected (tests, tools). */
export function labelIdentity(label: string): ClusterIdentity {
  return { fingerprints: [shortSha256(`label ${label}`)], about: printable(label) };
}
