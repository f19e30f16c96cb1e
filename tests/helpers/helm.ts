// Rendered manifests are indexed freely.
// deno-lint-ignore-file no-explicit-any
/**
 * helm, built from the version pinned in tests/gotools/helm/go.mod by
 * tests/gotools/ensure_helm.sh and cached, run on the chart in
 * k8s/helm/kuberollouttrigger with no user's repositories or plugins.
 */

import { ROOT } from "./program.ts";
import { locateGoTool } from "./go_tools.ts";
import { parseAllDocuments } from "yaml";

/** The chart's directory. */
export const CHART = `${ROOT}k8s/helm/kuberollouttrigger`;

/** Where helm is, built on first use; undefined when there is no Go to build it. */
export const locateHelm = (): Promise<string | undefined> => locateGoTool("helm");

/** Runs helm; returns its exit code and output. */
export async function helm(bin: string, args: string[]) {
  const out = await new Deno.Command(bin, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // No user's repositories or plugins: only the chart on disk.
    env: { HELM_CACHE_HOME: "/nonexistent", HELM_CONFIG_HOME: "/nonexistent" },
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** `helm template` of the chart with `args` (values files, --set), as documents. */
export async function render(bin: string, namespace: string, args: string[] = []) {
  const out = await helm(bin, ["template", "krt", CHART, "--namespace", namespace, ...args]);
  if (out.code !== 0) throw new Error(`helm template failed: ${out.stderr}`);
  return {
    text: out.stdout,
    docs: parseAllDocuments(out.stdout).map((d) => d.toJS() as Record<string, any>).filter(Boolean),
  };
}

/** The objects k8s/signing makes, which the signed test installs name (docs/deployment.md, "Signing keys"). */
export const SIGNING_OBJECTS = {
  eventSigning: { name: "kuberollouttrigger-event-signing", key: "EVENT_SIGNING_KEY" },
  eventVerify: { name: "kuberollouttrigger-event-verify", key: "EVENT_VERIFY_KEYS" },
  reportSigning: { name: "kuberollouttrigger-report-signing", key: "REPORT_SIGNING_KEY" },
  reportVerify: { name: "kuberollouttrigger-report-verify", key: "REPORT_VERIFY_KEYS" },
} as const;

/** A cluster's report public key as web's REPORT_VERIFY_KEYS takes it: the body line of its SPKI PEM. */
export function reportKeyLine(publicPem: string): string {
  return publicPem.trim().split("\n").slice(1, -1).join("");
}

/**
 * `--set` arguments that give both modes their signing keys: the Secret and
 * ConfigMap names of k8s/signing, and web's REPORT_VERIFY_KEYS inline as
 * `cluster` with `reportPublicKey` (an SPKI body line or a JWK's x).
 */
export function signedArgs(cluster: string, reportPublicKey: string): string[] {
  const o = SIGNING_OBJECTS;
  return [
    ["signing.events.signingKeySecret.name", o.eventSigning.name],
    ["signing.events.verifyKeysConfigMap.name", o.eventVerify.name],
    ["signing.reports.signingKeySecret.name", o.reportSigning.name],
    ["signing.reports.verifyKeys[0].cluster", cluster],
    ["signing.reports.verifyKeys[0].key", reportPublicKey],
  ].flatMap(([k, v]) => ["--set-string", `${k}=${v}`]);
}

/**
 * What `helm install` would print (NOTES.txt) for `args`, without a cluster:
 * `helm template` skips NOTES.txt and `helm install --dry-run` needs an API
 * server, so a copy of the chart gets a template that renders NOTES.txt's
 * define (krt.notes) into a ConfigMap.
 */
export async function renderNotes(bin: string, args: string[] = []): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "krt-chart-" });
  try {
    const copy = `${dir}/kuberollouttrigger`;
    await Deno.mkdir(`${copy}/templates`, { recursive: true });
    for (const entry of Deno.readDirSync(CHART)) {
      if (entry.isFile) await Deno.copyFile(`${CHART}/${entry.name}`, `${copy}/${entry.name}`);
    }
    for (const entry of Deno.readDirSync(`${CHART}/templates`)) {
      await Deno.copyFile(`${CHART}/templates/${entry.name}`, `${copy}/templates/${entry.name}`);
    }
    const notes = Deno.readTextFileSync(`${CHART}/templates/NOTES.txt`).trim();
    if (notes !== '{{ include "krt.notes" . }}') {
      throw new Error(`NOTES.txt must be the krt.notes define, not: ${notes.slice(0, 80)}`);
    }
    await Deno.writeTextFile(
      `${copy}/templates/notes-probe.yaml`,
      'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: notes }\ndata:\n  notes: {{ include "krt.notes" . | toJson }}\n',
    );
    const out = await helm(bin, [
      "template",
      "krt",
      copy,
      "--namespace",
      "krt",
      "--show-only",
      "templates/notes-probe.yaml",
      ...args,
    ]);
    if (out.code !== 0) throw new Error(`helm template failed: ${out.stderr}`);
    const [doc] = parseAllDocuments(out.stdout).map((d) => d.toJS() as Record<string, any>);
    return doc.data.notes;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
