import { freePort, freePorts } from "../../tools/ports.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

Deno.test("freePorts() gives distinct loopback ports a server can listen on", () => {
  const ports = freePorts(5);
  assertEquals(new Set(ports).size, 5);
  for (const port of ports) {
    assert(port > 0 && port < 65536, `${port} is a TCP port`);
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    listener.close();
  }
  const one = freePort();
  Deno.listen({ hostname: "127.0.0.1", port: one }).close();
});
