/**
 * What the product asks of Valkey, whichever client serves it: commands,
 * transactions and subscriptions. Types only; shared/valkey_client.ts makes
 * the clients.
 */

import type { Logger } from "../lib/log.ts";

/** One argument of a command. */
export type ValkeyArg = string | number;

/** What the product asks of Valkey. */
export interface ValkeyCommands {
  /** Sends one command and resolves with its reply; an error reply rejects with a ReplyError. */
  call(command: string, ...args: ValkeyArg[]): Promise<unknown>;
  /**
   * Runs the commands as one MULTI/EXEC on one connection: none runs when one
   * is refused while queueing (a wrong command, a MOVED), and no other
   * client's command runs between them. Valkey does not roll back, so a
   * command refused while running (WRONGTYPE) leaves the others done. In a
   * cluster their keys must share a slot. Resolves with their replies;
   * rejects with the first refusal.
   */
  transaction(commands: ValkeyArg[][]): Promise<unknown[]>;
}

/** A command connection (call) or a subscriber (subscription in the options). */
export interface ValkeyClient extends ValkeyCommands {
  /** True between "valkey connected" and the connection's loss or close. */
  readonly connected: boolean;
  /** Closes the connection for good; pending commands reject. */
  disconnect(): void;
}

/** What a subscriber connection listens to. */
export interface ValkeySubscription {
  channels: string[];
  /**
   * Sharded PubSub (SSUBSCRIBE) in a cluster: the subscription goes to the
   * primary serving the channel's slot and follows it when the slot moves.
   * Outside a cluster, and when false, classic SUBSCRIBE.
   */
  sharded?: boolean;
  onMessage(channel: string, message: string): void;
}

/** Options for createValkeyClient. */
export interface ValkeyClientOptions {
  /** Shown in CLIENT LIST and in our logs. */
  name: string;
  logger: Logger;
  /** Reports every transition between connected and disconnected. */
  onStateChange?: (connected: boolean) => void;
  /** Makes this a subscriber: these channels are subscribed on every connect. */
  subscription?: ValkeySubscription;
}
