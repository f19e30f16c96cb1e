/**
 * What `deno task dev` and `deno task trigger` agree on, and what the README
 * tells a newcomer to type: the banner prints these commands verbatim.
 */

/** How the README runs tasks on a fresh machine (Deno from npm, pinned). */
export const TASK_COMMAND = "npx -y deno@2.9.6 task";
/** Where dev-mode web listens unless --web-addr says otherwise. */
export const DEFAULT_WEB_ADDR = "127.0.0.1:8080";
/** `deno task trigger`'s default --url: the default web address. */
export const DEFAULT_WEB_URL = `http://${DEFAULT_WEB_ADDR}`;
/** The image the banner's trigger command sends (the local inventory runs it). */
export const DEV_IMAGE = "ghcr.io/acme/app:dev";
