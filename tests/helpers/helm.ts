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
