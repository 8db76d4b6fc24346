/** Why a frame was rejected: one reason per check, so every rejection can be counted by reason. */
export const REJECT_REASONS = [
  'too_short',
  'too_large',
  'bad_magic',
  'unknown_version',
  'bad_header_length',
  'malformed_header',
  'invalid_message',
  'misaligned_payload',
  'wrong_payload_size',
  'non_finite',
  'unknown_dtype',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Rejections decided by a role after a frame decoded fine (a result nobody asked for, a name taken). */
const ROLE_REJECT_REASONS = [
  'unexpected_message',
  'stale_result',
  'late_result',
  'duplicate_worker',
  'out_of_range',
  'outlier',
  // A spot check (--verify-fraction): the node or test chunk differed from the coordinator's own computation.
  'verification_failed',
] as const;

/** Connections turned away before or during the handshake (authentication and the coordinator's limits). */
const ADMISSION_REJECT_REASONS = [
  'auth_failed',
  'unauthenticated',
  'too_many_connections',
  'join_rate_limited',
  'cluster_full',
  'preauth_too_large',
  'preauth_budget',
  // A sharded run's workers wait for its shard reducers to join (the welcome names them).
  'awaiting_shards',
  // Caught lying (for the run) or abusing the protocol (for a back-off period): evicted and refused.
  'banned',
] as const;

/** Dropped by a chunking transport (NATS) before any frame exists; it resends what was lost. */
export const TRANSPORT_REJECT_REASONS = [
  'lost_chunk',
  'duplicate_chunk',
  'corrupt_chunk',
  'malformed_chunk',
  'send_buffer_full',
] as const;

/**
 * A sealed session's messages (sealing.ts): forged, altered or moved (`bad_seal`); genuine but out of place
 * (`replayed`).
 */
const SEAL_REJECT_REASONS = ['bad_seal', 'replayed'] as const;

/** Every reason a rejection may be counted under (metrics export each, zero until it happens). */
export const REJECTION_REASONS = [
  ...REJECT_REASONS,
  ...ROLE_REJECT_REASONS,
  ...ADMISSION_REJECT_REASONS,
  ...TRANSPORT_REJECT_REASONS,
  ...SEAL_REJECT_REASONS,
] as const;
/**
 * The one vocabulary of rejections: what `reject` takes, what a `Verdict` refuses with, what metrics count.
 */
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/**
 * The `code` of an `error` message: the reason of a rejection the sender made, or a failure of its
 * own (`internal`: a bug on its side; `worker_failed`: the worker cannot go on and leaves).
 */
export const ERROR_CODES = [...REJECTION_REASONS, 'internal', 'worker_failed'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes that end a worker's session for good: waiting and reconnecting do not fix authentication. */
export const FATAL_ERROR_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'auth_failed',
  'unauthenticated',
  'banned',
]);

/**
 * A peer's frame or message refused, carrying the reason it is counted under: thrown by the codec (a
 * `RejectReason`) or by a role's message handler (any `RejectionReason`), and caught by the Channel, which
 * records, logs and may answer it as a rejection of that reason rather than a failure of its own.
 */
export class ProtocolError<Reason extends RejectionReason = RejectionReason> extends Error {
  override name = 'ProtocolError';
  constructor(
    readonly reason: Reason,
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}
