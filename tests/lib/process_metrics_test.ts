/**
 * The process families and build_info as a scraper reads them: conventional
 * names and types, values read at each scrape from the sources, a value the
 * process cannot read left out rather than faked, and the real sources giving
 * plausible numbers. Which series the real programs export under their
 * permission sets is proven in tests/e2e/metrics_at_start_test.ts.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { createRegistry } from "../../lib/metrics.ts";
import {
  type ProcessSources,
  processSources,
  registerBuildInfo,
  registerProcessMetrics,
} from "../../lib/process_metrics.ts";

/** Samples by metric name from a render, and each family's TYPE. */
function read(text: string): { values: Map<string, number>; types: Map<string, string> } {
  const values = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1], type[2]);
    const sample = /^([a-z_]+) (\S+)$/.exec(line);
    if (sample) values.set(sample[1], Number(sample[2]));
  }
  return { values, types };
}

const FIXED: ProcessSources = {
  cpuSeconds: () => 1.25,
  residentMemoryBytes: () => 52_428_800,
  startTimeSeconds: () => 1_800_000_000.5,
  openFds: () => 17,
};

Deno.test("registerProcessMetrics() exports the four families under the client libraries' names and types", () => {
  const registry = createRegistry();
  registerProcessMetrics(registry, FIXED);
  const { values, types } = read(registry.render());
  assertEquals(Object.fromEntries(values), {
    process_cpu_seconds_total: 1.25,
    process_resident_memory_bytes: 52_428_800,
    process_start_time_seconds: 1_800_000_000.5,
    process_open_fds: 17,
  });
  assertEquals(Object.fromEntries(types), {
    process_cpu_seconds_total: "counter",
    process_resident_memory_bytes: "gauge",
    process_start_time_seconds: "gauge",
    process_open_fds: "gauge",
  });
});

Deno.test("registerProcessMetrics() reads the sources at each scrape", () => {
  const registry = createRegistry();
  let cpu = 1;
  registerProcessMetrics(registry, { ...FIXED, cpuSeconds: () => cpu });
  assertEquals(read(registry.render()).values.get("process_cpu_seconds_total"), 1);
  cpu = 3.5;
  assertEquals(read(registry.render()).values.get("process_cpu_seconds_total"), 3.5);
});

Deno.test("registerProcessMetrics() leaves out what the process cannot read, and only that", () => {
  const registry = createRegistry();
  registerProcessMetrics(registry, {
    ...FIXED,
    openFds: () => undefined,
    residentMemoryBytes: () => {
      throw new Deno.errors.NotCapable('Requires all access to "/proc/self/fd"');
    },
  });
  const text = registry.render();
  assert(!text.includes("process_open_fds"), text);
  assert(!text.includes("process_resident_memory_bytes"), text);
  assertEquals([...read(text).values.keys()], [
    "process_cpu_seconds_total",
    "process_start_time_seconds",
  ]);
});

Deno.test("registerBuildInfo() exports one series at 1 with the version and the mode", () => {
  const registry = createRegistry();
  registerBuildInfo(registry, "app_build_info", { version: "1.2.3", mode: "web" });
  assertEquals(registry.render().split("\n").slice(1), [
    "# TYPE app_build_info gauge",
    'app_build_info{mode="web",version="1.2.3"} 1',
    "",
  ]);
});

Deno.test("processSources() reads this process: plausible CPU, memory and start time, growing CPU", () => {
  const sources = processSources();
  const rss = sources.residentMemoryBytes()!;
  assert(rss > 10 * 2 ** 20 && rss < 16 * 2 ** 30, `resident memory ${rss}`);
  const started = sources.startTimeSeconds()!;
  const now = Date.now() / 1000;
  // Started before this test and not before the test run (an hour is generous).
  assert(started <= now && started > now - 3600, `start time ${started}, now ${now}`);
  const cpu = sources.cpuSeconds()!;
  assert(cpu > 0, `cpu ${cpu}`);
  let spin = 0;
  const until = performance.now() + 30;
  while (performance.now() < until) spin++;
  assert(sources.cpuSeconds()! > cpu, `cpu grows with work (${spin} turns)`);
});

/** Deno opens /proc/self/fd only to a process with every permission (the unit tier runs with -A). */
const ALL_GRANTED = (["read", "write", "net", "env", "run", "ffi", "sys"] as const).every((name) =>
  Deno.permissions.querySync({ name }).state === "granted"
);

Deno.test({
  name:
    "processSources() counts open descriptors where it may read /proc/self/fd (Linux, --allow-all)",
  ignore: Deno.build.os !== "linux" || !ALL_GRANTED,
  fn() {
    const sources = processSources();
    const before = sources.openFds()!;
    assert(before >= 3, `stdin, stdout and stderr at least: ${before}`);
    // `deno test --parallel` runs other modules in this process: count many files, loosely.
    const files = Array.from({ length: 32 }, () => Deno.openSync(Deno.execPath()));
    try {
      const during = sources.openFds()!;
      assert(during - before >= 24 && during - before <= 64, `${before} → ${during} open`);
    } finally {
      for (const file of files) file.close();
    }
  },
});
