/**
 * The process metrics Prometheus client libraries export, under their names
 * (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_start_time_seconds, process_open_fds), and a build_info gauge.
 * Each value is read when /metrics renders, only through what the process may
 * read without asking: a value its permissions or platform hide is left out
 * of the scrape, never estimated. Trusts the runtime's own numbers only.
 */

import process from "node:process";
import type { Registry } from "./metrics.ts";

/** Where each process value comes from; undefined: not readable here. */
export interface ProcessSources {
  /** User plus system CPU time since the process started, in seconds. */
  cpuSeconds(): number | undefined;
  /** Resident set size, in bytes. */
  residentMemoryBytes(): number | undefined;
  /** When the process started, in seconds since the Unix epoch. */
  startTimeSeconds(): number | undefined;
  /** Open file descriptors. */
  openFds(): number | undefined;
}

const FD_DIR = "/proc/self/fd";

/**
 * The running process's values. CPU, memory and start time need no
 * permission (getrusage, the runtime's own counters and time origin); open
 * descriptors need /proc/self/fd, which Deno opens only to a process with
 * every permission (--allow-all), so under the shipped permission sets, and
 * off Linux, they are unknown.
 */
export function processSources(): ProcessSources {
  return {
    cpuSeconds: () => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1e6;
    },
    residentMemoryBytes: () => Deno.memoryUsage().rss,
    // The runtime's time origin: set as it starts, milliseconds after exec.
    startTimeSeconds: () => performance.timeOrigin / 1000,
    openFds: () => {
      // Query first: a read without the grant would prompt on a terminal.
      if (Deno.permissions.querySync({ name: "read", path: FD_DIR }).state !== "granted") {
        return undefined;
      }
      // Throws (and the series is left out) where Deno wants --allow-all or there is no /proc.
      let count = 0;
      for (const _ of Deno.readDirSync(FD_DIR)) count++;
      return count;
    },
  };
}

/** Registers the four process families on `registry`, read from `sources` at each render. */
export function registerProcessMetrics(
  registry: Registry,
  sources: ProcessSources = processSources(),
): void {
  registry.sampled(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
    "counter",
    sources.cpuSeconds,
  );
  registry.sampled(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
    "gauge",
    sources.residentMemoryBytes,
  );
  registry.sampled(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    "gauge",
    sources.startTimeSeconds,
  );
  registry.sampled(
    "process_open_fds",
    "Number of open file descriptors.",
    "gauge",
    sources.openFds,
  );
}

/** What `<name>{version,mode} 1` says: which program version runs, in which mode. */
export interface BuildInfo {
  version: string;
  mode: string;
}

/** Registers a build_info gauge (always 1; the labels carry the facts), as exporters do. */
export function registerBuildInfo(registry: Registry, name: string, info: BuildInfo): void {
  registry
    .gauge(name, "Always 1: the version of the program that runs (labels version, mode).")
    .set(1, { version: info.version, mode: info.mode });
}
