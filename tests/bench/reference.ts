/**
 * The Go implementation of the same product, measured on this kind of machine
 * (2 cores, same redis, issuer stand-in and load generator, c=32, a fresh token
 * per request; issue #14). Printed beside our figures so the gap stays visible.
 */
export const GO_REFERENCE = {
  acceptedPerSecond: "Go 7300–8650",
  cpuPerEventMs: "Go 0.10–0.13",
  p50Ms: "Go 3.2–3.9",
  peakRssMiB: "Go 32",
} as const;
