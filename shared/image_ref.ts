/**
 * Container image references: the OCI/Docker reference grammar, the
 * normalisation Docker applies (registry host case, `docker.io` default,
 * `library/` for single-name Docker Hub images, `latest` default tag) and
 * allowed-prefix matching on a path-component boundary. Input is untrusted text
 * from HTTP bodies, Valkey messages and Deployment specs.
 *
 * Grammar: github.com/distribution/reference (reference.go), restated here.
 */

/** A parsed, normalised image reference. */
export interface ImageRef {
  /** Registry host (lower case) with optional port, e.g. `ghcr.io`, `localhost:5000`. */
  domain: string;
  /** Repository path below the registry, e.g. `acme/app`, `library/nginx`. */
  path: string;
  /** `domain/path`: what prefixes and events match on. */
  repository: string;
  tag?: string;
  digest?: string;
}

/** Longest repository name the grammar allows (distribution's NameTotalLengthMax). */
export const MAX_NAME_LENGTH = 255;
/** Longest reference text accepted at all, before parsing. */
export const MAX_REFERENCE_LENGTH = 512;

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_NAME =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV6 = /^\[[0-9A-Fa-f:.]+\]$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const DEFAULT_DOMAIN = "docker.io";
const LEGACY_DEFAULT_DOMAIN = "index.docker.io";

/** Returns true when `tag` matches the tag grammar `[\w][\w.-]{0,127}`. */
export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

function isValidDomain(domain: string): boolean {
  const portAt = domain.startsWith("[") ? domain.indexOf("]:") + 1 : domain.lastIndexOf(":");
  const host = portAt > 0 ? domain.slice(0, portAt) : domain;
  const port = portAt > 0 ? domain.slice(portAt + 1) : undefined;
  if (port !== undefined && !/^\d{1,5}$/.test(port)) return false;
  return DOMAIN_NAME.test(host) || IPV6.test(host);
}

// Docker's rule (distribution's splitDockerDomain): the first component is a
// registry when it has a dot, a colon, upper case, or is "localhost".
function looksLikeDomain(component: string): boolean {
  return component === "localhost" || /[.:]/.test(component) ||
    component !== component.toLowerCase();
}

// Security: a host recognised only by its upper case ("GHCo/app") would,
// once lower-cased, read back as a Docker Hub path, so one repository would
// have two meanings. Such hosts are refused; real registries have a dot or port.
function checkUnambiguousDomain(domain: string): void {
  if (domain.toLowerCase() !== "localhost" && !/[.:]/.test(domain)) {
    throw new Error(`registry host "${domain}" must contain a dot or a port, or be localhost`);
  }
}

function normaliseDomain(domain: string): string {
  const lower = domain.toLowerCase();
  return lower === LEGACY_DEFAULT_DOMAIN ? DEFAULT_DOMAIN : lower;
}

function checkPath(path: string): void {
  for (const component of path.split("/")) {
    if (!PATH_COMPONENT.test(component)) {
      throw new Error(
        `path component "${component}" must be lower-case letters and digits joined by ".", "_", "__" or "-"`,
      );
    }
  }
}

function splitName(name: string): { domain: string; path: string } {
  const slash = name.indexOf("/");
  const first = slash < 0 ? name : name.slice(0, slash);
  let domain = DEFAULT_DOMAIN;
  let path = name;
  if (slash >= 0 && looksLikeDomain(first)) {
    if (!isValidDomain(first)) throw new Error(`registry host "${first}" is not valid`);
    checkUnambiguousDomain(first);
    domain = normaliseDomain(first);
    path = name.slice(slash + 1);
  }
  checkPath(path);
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = `library/${path}`;
  return { domain, path };
}

/**
 * Parses and normalises an image reference. Throws an Error describing the
 * first problem when the text does not follow the grammar.
 */
export function parseImageRef(text: string): ImageRef {
  if (text.length === 0) throw new Error("image is empty");
  if (text.length > MAX_REFERENCE_LENGTH) {
    throw new Error(`image is longer than ${MAX_REFERENCE_LENGTH} characters`);
  }
  if (!/^[\x21-\x7e]+$/.test(text)) {
    throw new Error("image must not contain spaces, control or non-ASCII characters");
  }
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new Error("digest is not valid");
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) {
      throw new Error(`tag "${tag}" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
    }
  }
  if (rest.length > MAX_NAME_LENGTH) {
    throw new Error(`repository name is longer than ${MAX_NAME_LENGTH} characters`);
  }
  const { domain, path } = splitName(rest);
  return { domain, path, repository: `${domain}/${path}`, tag, digest };
}

/**
 * Parses an allowed-image prefix such as `ghcr.io/acme` (a trailing `/` is
 * ignored). Prefixes must name the registry explicitly, so `acme/` can never
 * silently mean Docker Hub.
 */
export function parseImagePrefix(text: string): string {
  const trimmed = text.trim().replace(/\/+$/, "");
  if (trimmed === "") throw new Error("prefix is empty");
  if (!/^[\x21-\x7e]+$/.test(trimmed)) {
    throw new Error("prefix must not contain spaces, control or non-ASCII characters");
  }
  const slash = trimmed.indexOf("/");
  const first = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const path = slash < 0 ? "" : trimmed.slice(slash + 1);
  if (!looksLikeDomain(first) || !isValidDomain(first)) {
    throw new Error("must start with a registry host, such as ghcr.io/acme");
  }
  checkUnambiguousDomain(first);
  // A tag or digest in the path fails the path grammar below.
  if (path !== "") checkPath(path);
  const domain = normaliseDomain(first);
  return path === "" ? domain : `${domain}/${path}`;
}

/**
 * True when `repository` (already normalised) is one of the prefixes or lies
 * below one on a path-component boundary: `ghcr.io/acme` allows
 * `ghcr.io/acme/app` but never `ghcr.io/acme-evil/app`.
 */
export function isAllowedRepository(repository: string, prefixes: readonly string[]): boolean {
  return prefixes.some((p) => repository === p || repository.startsWith(p + "/"));
}

/** The reference a container image runs, for matching: tag defaults to `latest`. */
export function containerImageKey(ref: ImageRef): string {
  return `${ref.repository}:${ref.tag ?? "latest"}`;
}
