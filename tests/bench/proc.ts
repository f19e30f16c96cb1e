/**
 * What the bench reads about a process from /proc (Linux): CPU time of all its
 * threads and its resident memory now and at its peak.
 */

// USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on every Linux
// the bench runs on (getconf CLK_TCK), and fixed by the kernel ABI.
const TICKS_PER_SECOND = 100;

/** User + system CPU seconds the process has used so far, all threads. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces: count fields after its ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

function statusKiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
}

/** Resident memory now, MiB. */
export function rssMiB(pid: number): number {
  return statusKiB(pid, "VmRSS") / 1024;
}

/**
 * Starts a new peak: VmHWM drops to the resident size now (clear_refs 5, Linux
 * 4.0+). False when the kernel or the permissions do not allow it; VmHWM then
 * keeps counting from the process start.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** Peak resident memory since the process started or the last resetPeakRss (VmHWM), MiB. */
export function peakRssMiB(pid: number): number {
  return statusKiB(pid, "VmHWM") / 1024;
}
