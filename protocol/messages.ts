/**
 * Every message between coordinator and workers: a discriminated union on `type`, validated at
 * runtime by these schemas (the TypeScript types are inferred from them, so the two cannot drift).
 * Tensors never travel inside a message: they ride in the frame's aligned float32 payload
 * (codec.ts), and `payloadValues` says how many values the payload must hold.
 */
import { z } from 'zod';

const id = z.string().min(1).max(128);
const count = z.number().int().nonnegative();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);

export const helloSchema = z.object({
  type: z.literal('hello'),
  workerId: id,
  backend: z.string().max(64),
  dataFingerprint: sha256.nullable(),
});

export const welcomeSchema = z.object({
  type: z.literal('welcome'),
  runId: id,
  model: id,
  seed: count,
  microBatchSize: z.number().int().positive(),
  dataFingerprint: sha256,
  weightsVersion: count,
  payloadValues: count,
});

/** Compute the contributions of micro-batches [first, first + count) of `step`. */
export const assignSchema = z.object({
  type: z.literal('assign'),
  step: count,
  weightsVersion: count,
  first: count,
  count: z.number().int().positive(),
});

/** The sum of the contributions of micro-batches [first, first + count), in the payload. */
export const contributionSchema = z.object({
  type: z.literal('contribution'),
  step: count,
  first: count,
  count: z.number().int().positive(),
  lossSum: z.number().finite(),
  correct: count,
  samples: count,
  payloadValues: count,
});

export const weightsSchema = z.object({
  type: z.literal('weights'),
  version: count,
  payloadValues: count,
});

export const heartbeatSchema = z.object({ type: z.literal('heartbeat'), sentAt: z.number().finite() });

export const errorSchema = z.object({ type: z.literal('error'), code: z.string().max(64), message: z.string().max(4096) });

export const shutdownSchema = z.object({ type: z.literal('shutdown'), reason: z.string().max(1024) });

export const messageSchema = z.discriminatedUnion('type', [
  helloSchema, welcomeSchema, assignSchema, contributionSchema, weightsSchema, heartbeatSchema, errorSchema, shutdownSchema,
]);

export type Message = z.infer<typeof messageSchema>;
export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

/** How many payload values a message declares (0 for those that carry no tensor). */
export function declaredPayloadValues(message: Message): number {
  return 'payloadValues' in message ? message.payloadValues : 0;
}
