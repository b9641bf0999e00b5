// Channel settings shared by our servers and clients.
import type { ChannelOptions } from '@grpc/grpc-js';

/** Largest message either side sends or accepts: weight chunks and rollout batches fit well under it. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * Server defaults: large messages; keepalive pings every minute to find clients that went away
 * without closing (their calls are then cancelled and the handlers' signals abort).
 */
export const SERVER_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
};

/**
 * Client defaults for long runs: large messages; keepalive pings every 30 s, also between calls, so
 * that long quiet streams (WatchRun, GenerateRollouts between batches) survive idle-connection
 * timeouts of proxies and a dead server is noticed within 40 s; reconnect backoff capped at 10 s so
 * that a restarted service is reached again quickly (the default cap is 2 min).
 */
export const CLIENT_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 1_000,
  'grpc.max_reconnect_backoff_ms': 10_000,
};
