/** JSON answers of the HTTP servers both modes run: never cached, JSON content type. */

/** Builds a JSON response (a string body is sent as it is: it is already JSON). */
export function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return new Response(text, {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}
