/** Free TCP ports on loopback, for servers the tools and tests start. */

/** `count` distinct free TCP ports on 127.0.0.1: all listeners stay open until each is picked. */
export function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** A free TCP port on 127.0.0.1 (closed again before returning). */
export function freePort(): number {
  return freePorts(1)[0];
}
