/**
 * A small Prometheus registry: counters, gauges and histograms with labels,
 * and sampled families read when /metrics renders, in the text exposition
 * format (version 0.0.4). Label values come from our own code (status codes,
 * reason tags), never from request input or tokens.
 */

type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  /** The family's samples; undefined leaves the family, HELP and TYPE too, out of this render. */
  render(): string[] | undefined;
}

/** A monotonically increasing count, optionally per label set. */
export interface Counter {
  inc(labels?: Labels, by?: number): void;
  get(labels?: Labels): number;
}

/** A value that goes up and down. */
export interface Gauge {
  set(value: number, labels?: Labels): void;
  get(labels?: Labels): number;
}

/** Observations counted into fixed buckets. */
export interface Histogram {
  observe(value: number, labels?: Labels): void;
}

/**
 * Reads one value when /metrics renders. Undefined means "not known here" (a
 * permission or a platform hides it): the family is then absent, not faked.
 */
export type Sampler = () => number | undefined;

/** Holds metric families and renders them for /metrics. */
export interface Registry {
  counter(name: string, help: string): Counter;
  gauge(name: string, help: string): Gauge;
  histogram(name: string, help: string, buckets: readonly number[]): Histogram;
  /**
   * A family of one unlabelled sample, read by `read` at each render. A read
   * that returns undefined, a non-finite number or throws leaves the family out
   * of that render; the other families still render.
   */
  sampled(name: string, help: string, type: "counter" | "gauge", read: Sampler): void;
  render(): string;
}

/** Default latency buckets in seconds. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const NEEDS_ESCAPE = /[\\"\n]/;

function labelKey(labels: Labels = {}): string {
  // Called on every inc/observe: no sort for one label, no replace for the
  // usual value that holds nothing to escape.
  const keys = Object.keys(labels);
  if (keys.length > 1) keys.sort();
  let key = "";
  for (const k of keys) {
    const raw = labels[k];
    const value = NEEDS_ESCAPE.test(raw)
      ? raw.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")
      : raw;
    key += `${key === "" ? "" : ","}${k}="${value}"`;
  }
  return key;
}

function sample(name: string, key: string, value: number): string {
  return key === "" ? `${name} ${value}` : `${name}{${key}} ${value}`;
}

/** Creates an empty registry. */
export function createRegistry(): Registry {
  const families: Family[] = [];

  const valueFamily = (name: string, help: string, type: "counter" | "gauge") => {
    const values = new Map<string, number>();
    families.push({
      name,
      help,
      type,
      render: () => [...values].map(([k, v]) => sample(name, k, v)),
    });
    return values;
  };

  return {
    counter(name, help) {
      const values = valueFamily(name, help, "counter");
      return {
        inc: (labels, by = 1) => {
          const k = labelKey(labels);
          values.set(k, (values.get(k) ?? 0) + by);
        },
        get: (labels) => values.get(labelKey(labels)) ?? 0,
      };
    },
    gauge(name, help) {
      const values = valueFamily(name, help, "gauge");
      return {
        set: (value, labels) => void values.set(labelKey(labels), value),
        get: (labels) => values.get(labelKey(labels)) ?? 0,
      };
    },
    histogram(name, help, buckets) {
      const series = new Map<string, { counts: number[]; sum: number; count: number }>();
      families.push({
        name,
        help,
        type: "histogram",
        render: () => {
          const lines: string[] = [];
          for (const [k, s] of series) {
            const sep = k === "" ? "" : ",";
            buckets.forEach((b, i) =>
              lines.push(`${name}_bucket{${k}${sep}le="${b}"} ${s.counts[i]}`)
            );
            lines.push(`${name}_bucket{${k}${sep}le="+Inf"} ${s.count}`);
            lines.push(sample(`${name}_sum`, k, s.sum));
            lines.push(sample(`${name}_count`, k, s.count));
          }
          return lines;
        },
      });
      return {
        observe: (value, labels) => {
          const k = labelKey(labels);
          let s = series.get(k);
          if (!s) series.set(k, s = { counts: buckets.map(() => 0), sum: 0, count: 0 });
          buckets.forEach((b, i) => {
            if (value <= b) s!.counts[i]++;
          });
          s.sum += value;
          s.count++;
        },
      };
    },
    sampled(name, help, type, read) {
      families.push({
        name,
        help,
        type,
        render: () => {
          let value: number | undefined;
          try {
            value = read();
          } catch {
            // A scrape never fails for one value the process cannot read.
            return undefined;
          }
          return typeof value === "number" && Number.isFinite(value)
            ? [sample(name, "", value)]
            : undefined;
        },
      });
    },
    render() {
      const out: string[] = [];
      for (const f of families) {
        const samples = f.render();
        if (samples === undefined) continue;
        out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...samples);
      }
      return out.join("\n") + "\n";
    },
  };
}
