/**
 * The errors of Kubernetes access: a failed call (with its HTTP status, 0 for
 * a network failure) and a watch answer that is not shaped as expected. Their
 * messages never quote an answer's content (Security: API objects and error
 * bodies are untrusted).
 */

import { AppError } from "../../shared/errors.ts";

/**
 * A watch stream line that is not JSON or not shaped like a watch event. The
 * message names the line and the field, never the content (Security: API
 * objects are untrusted and may hold anything).
 */
export class WatchEventError extends AppError {
  constructor(message: string) {
    super("ERR_KUBE", message);
    this.name = "WatchEventError";
  }
}

/** A failed API call: HTTP status (0 for a network failure) and the API's reason. */
export class KubeApiError extends AppError {
  readonly status: number;
  readonly reason: string;

  constructor(status: number, reason: string, message: string, options?: { cause?: unknown }) {
    super("ERR_KUBE", message, options);
    this.name = "KubeApiError";
    this.status = status;
    this.reason = reason;
  }
}
