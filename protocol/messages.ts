/**
 * Every message between coordinator and workers: a discriminated union on `type`, validated at
 * runtime by these schemas (the TypeScript types are inferred from them, so the two cannot drift).
 * Tensors never travel inside a message: they ride in the frame's aligned float32 payload
 * (codec.ts), and `payloadValues` says how many values the payload must hold.
 */
import { z } from 'zod';
import { NONCE_BYTES, PROOF_BYTES } from './auth.js';
import { ERROR_CODES, REJECTION_REASONS } from './errors.js';
import { gpuAdapterSchema } from './gpu-adapter.js';
import { WIRE_DTYPES } from './wire-dtype.js';

const id = z.string().min(1).max(128);
const count = z.number().int().nonnegative();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);

const MAX_LAYOUT_ENTRIES = 1024;
/** Samples per dataChunk, and its pixel bytes: 8192 MNIST images are 6.4 MB, well under the frame limit. */
export const MAX_CHUNK_SAMPLES = 8192;
export const MAX_CHUNK_IMAGE_BYTES = 8 * 1024 * 1024;
const MAX_EVAL_CHUNKS = 4096;

const SPLITS = ['train', 'test'] as const;
export type Split = (typeof SPLITS)[number];
const split = z.enum(SPLITS);
// msgpack 'bin' decodes to a Uint8Array over any buffer, so the type is not narrowed to ArrayBuffer.
const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'expected bytes');

const nonce = bytes.refine((b) => b.length === NONCE_BYTES, `expected ${NONCE_BYTES} bytes`);
const proof = bytes.refine((b) => b.length === PROOF_BYTES, `expected ${PROOF_BYTES} bytes`);

/**
 * The worker's first message; `nonce` is what the coordinator must prove it knows the secret
 * against. `adapter`: the GPU a webgpu worker computes on (optional: older workers send none).
 */
const helloSchema = z.object({
  type: z.literal('hello'),
  workerId: id,
  backend: z.string().max(64),
  adapter: gpuAdapterSchema.optional(),
  /**
   * Set by a shard reducer (shard/), not a worker: where workers reach it (a ws:// URL, or its NATS subject).
   */
  serves: z.string().min(1).max(512).optional(),
  nonce,
});

/** Sent instead of a welcome when the coordinator has a secret: its proof, and a nonce for the worker's. */
const challengeSchema = z.object({ type: z.literal('challenge'), nonce, proof });

/** The worker's answer to a challenge. */
const authSchema = z.object({ type: z.literal('auth'), proof });

/**
 * A worker allocates count × height × width bytes for a data set it is sent: a welcome cannot make
 * it allocate gigabytes (a million MNIST images at most).
 */
export const MAX_DATASET_SAMPLES = 1_000_000;
const MAX_DATASET_BYTES = MAX_DATASET_SAMPLES * 28 * 28;
const side = z.number().int().positive().max(4096);
const datasetInfo = z
  .object({
    spec: z.string().max(4096),
    fingerprint: sha256,
    count: z.number().int().positive().max(MAX_DATASET_SAMPLES),
    /** Every image's size: a property of the data set, which the worker's copy must share. */
    height: side,
    width: side,
  })
  .refine(
    (d) => d.count * d.height * d.width <= MAX_DATASET_BYTES,
    `a data set may hold at most ${MAX_DATASET_BYTES} pixel bytes`,
  );

/** At most this many shard reducers serve one run. */
const MAX_SHARDS = 256;
const paramSlice = z.object({ offset: count, size: z.number().int().positive() });

/** The run's contract, agreed once: model, geometry, the flat tensor layout, and the data sets. */
const welcomeSchema = z.object({
  type: z.literal('welcome'),
  runId: id,
  model: id,
  seed: count,
  batchSize: z.number().int().positive(),
  microBatchSize: z.number().int().positive(),
  layout: z
    .array(z.object({ name: z.string().max(256), shape: z.array(count).max(8), offset: count }))
    .max(MAX_LAYOUT_ENTRIES),
  layoutSize: count,
  /** Dtype of tensor payloads in both directions (f32 unless the run chose fp16/bf16). */
  wire: z.enum(WIRE_DTYPES),
  /**
   * Local steps: each micro-batch is a replica, whose `steps` inner batches of `batchSize` samples lie back to back;
   * its contribution is its delta after that many inner Adam steps from the weights (Adam at `adam`'s rate ×
   * `lrDecay`^epoch). Absent: each micro-batch's contribution is its gradient.
   */
  localSteps: z
    .object({
      steps: z.number().int().positive().max(1_000_000),
      batchSize: z.number().int().positive(),
      adam: z.object({
        learningRate: z.number().positive(),
        beta1: z.number().min(0).max(1),
        beta2: z.number().min(0).max(1),
        epsilon: z.number().positive(),
      }),
      lrDecay: z.number().positive().max(1),
    })
    .optional(),
  /**
   * --bucket-mb: a node's values go ahead in buckets of about this many values as backward makes them final,
   * the node's contribution closing them. Absent: each node goes whole, once computed.
   */
  bucketValues: z.number().int().positive().optional(),
  /**
   * Each side sends a heartbeat this often, and drops a peer it has not heard from in `heartbeatTimeoutMs`.
   */
  heartbeatMs: z.number().int().positive(),
  heartbeatTimeoutMs: z.number().int().positive(),
  train: datasetInfo,
  test: datasetInfo,
  /**
   * The shard map, when reduce and Adam run on shard reducers: slices covering the flat vector in
   * order, and where each one's reducer listens. Workers send each node's slices to these and
   * assemble the weights from their slices. Absent: the coordinator holds the whole vector.
   */
  shards: z
    .array(paramSlice.extend({ url: z.string().min(1).max(512) }))
    .min(1)
    .max(MAX_SHARDS)
    .optional(),
});

/** The worker is ready to compute, or first needs the listed data sets streamed to it. */
const readySchema = z.object({ type: z.literal('ready'), missing: z.array(split).max(SPLITS.length) });

/** Samples [first, first + count) of a data set the worker lacks; pixels as bytes, as stored. */
export const dataChunkSchema = z.object({
  type: z.literal('dataChunk'),
  split,
  first: count,
  count: z.number().int().positive().max(MAX_CHUNK_SAMPLES),
  total: z.number().int().positive(),
  images: bytes.refine((b) => b.length <= MAX_CHUNK_IMAGE_BYTES, 'too many pixels'),
  labels: bytes.nullable(),
});

/** Weights `version`: the whole vector, or (from a shard reducer) the slice starting at `offset`. */
const weightsSchema = z.object({
  type: z.literal('weights'),
  version: count,
  offset: count.optional(),
  payloadValues: count,
});

/**
 * The worker holds weights `version` and is free to use them: the coordinator sends work for a
 * version only after this, so the time from its assignment to the result is the worker's own
 * (no wait for the weights' transfer in it), measured on the coordinator's clock.
 */
const holdingSchema = z.object({ type: z.literal('holding'), version: count });

/**
 * Compute micro-batches [first, first + count) of `step`, whose batch is [batchStart, +batchSamples) of the
 * epoch order.
 */
const assignSchema = z.object({
  type: z.literal('assign'),
  step: count,
  epoch: count,
  batchStart: count,
  batchSamples: z.number().int().positive(),
  weightsVersion: count,
  first: count,
  count: z.number().int().positive(),
});

const treeLevel = z.number().int().nonnegative().max(31);
/** A node's values travel in at most this many buckets (a receiver keeps one range per bucket until the node closes). */
const MAX_BUCKETS_PER_NODE = 4096;

/**
 * One reduction-tree node of a step (see training/parallel/reduction-tree.ts); its sums in the
 * payload. In a sharded run the coordinator gets it with no payload, and each shard reducer its
 * slice of the sums, starting at `offset`.
 */
const contributionSchema = z.object({
  type: z.literal('contribution'),
  step: count,
  level: treeLevel,
  index: count,
  offset: count.optional(),
  lossSum: z.number().finite(),
  correct: count,
  samples: z.number().int().positive(),
  computeSeconds: z.number().nonnegative().finite(),
  payloadValues: count,
  /**
   * The values came ahead in this many `bucket` frames (--bucket-mb), and this frame, with no payload, closes
   * the node: the receiver takes the node as if its values had come here.
   */
  buckets: z.number().int().positive().max(MAX_BUCKETS_PER_NODE).optional(),
  /**
   * With `buckets`: each bucket as the worker sent it (before any split between shard reducers), its values
   * and when, in ms after the node's compute began (the worker's clock); compute ended at computeSeconds.
   */
  bucketsSent: z
    .array(z.object({ values: z.number().int().positive(), ms: z.number().nonnegative().finite() }))
    .max(MAX_BUCKETS_PER_NODE)
    .optional(),
});

/**
 * Values [offset, offset + payloadValues) of a tree node's sums, sent as soon as backward has made them final,
 * before the node's `contribution` (which says how many buckets it had) closes it.
 */
const bucketSchema = z.object({
  type: z.literal('bucket'),
  step: count,
  level: treeLevel,
  index: count,
  offset: count,
  payloadValues: z.number().int().positive(),
});

/** Evaluate test chunks [first, first + count) of `chunkSize` samples each. */
const evaluateSchema = z.object({
  type: z.literal('evaluate'),
  round: count,
  weightsVersion: count,
  chunkSize: z.number().int().positive(),
  first: count,
  count: z.number().int().positive().max(MAX_EVAL_CHUNKS),
});

/** Per-chunk loss sums; the payload holds the predicted class of every sample evaluated. */
const evaluationSchema = z.object({
  type: z.literal('evaluation'),
  round: count,
  first: count,
  count: z.number().int().positive().max(MAX_EVAL_CHUNKS),
  lossSums: z.array(z.number().finite()).max(MAX_EVAL_CHUNKS),
  payloadValues: count,
});

/** A shard reducer's slice of the flat vector (its place in the welcome's shard map). */
const shardAssignSchema = z.object({
  type: z.literal('shardAssign'),
  index: z
    .number()
    .int()
    .nonnegative()
    .max(MAX_SHARDS - 1),
  ...paramSlice.shape,
  /** --outlier-factor: each sliceVerdict carries its slice's Σg² (a pass over the slice, paid only then). */
  nodeSquares: z.boolean().optional(),
});

export const SHARD_TENSORS = ['weights', 'adam_m', 'adam_v'] as const;
export type ShardTensor = (typeof SHARD_TENSORS)[number];

/**
 * One of a shard's three tensors at weights `version` (Adam at `adamStep`), its slice in the payload:
 * to the shard when it is loaded (start, resume, rollback), from it when the coordinator collects
 * them for a checkpoint.
 */
const shardStateSchema = z.object({
  type: z.literal('shardState'),
  tensor: z.enum(SHARD_TENSORS),
  version: count,
  adamStep: count,
  payloadValues: count,
});

/** The shard holds all three tensors of `version` and serves them. */
const shardLoadedSchema = z.object({ type: z.literal('shardLoaded'), version: count });

/** Ask for the shard's tensors (shardState × 3) at its current version. */
const collectSchema = z.object({ type: z.literal('collect'), version: count });

/**
 * The update a reduced step applies (training/optimizer/apply-update.ts): Adam with the epoch's learning rate,
 * or, in a run of local steps, the outer Nesterov step on the replicas' mean delta.
 */
const updateRuleSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('adam'),
    learningRate: z.number().positive(),
    beta1: z.number(),
    beta2: z.number(),
    epsilon: z.number().positive(),
  }),
  z.object({
    kind: z.literal('nesterov'),
    learningRate: z.number().positive(),
    momentum: z.number().min(0).max(1),
  }),
]);

/**
 * Reduce `step`: exactly these nodes (each from the worker named), over the tree of `microBatches`,
 * then the update `rule` and the BatchNorm statistics, then publish.
 */
const reduceSchema = z.object({
  type: z.literal('reduce'),
  step: count,
  microBatches: z.number().int().positive(),
  nodes: z
    .array(z.object({ level: treeLevel, index: count, worker: id }))
    .min(1)
    .max(65_536),
  rule: updateRuleSchema,
  /**
   * --max-grad-norm: after the reduce, send the slice's exact Σg² (sliceSquares) and wait for the step's
   * clipScale before Adam.
   */
  clip: z.literal(true).optional(),
});

/**
 * Bins of an exact Σg² (training/optimizer/exact-squares.ts): three integer parts below 2^24 per float32
 * exponent.
 */
export const SQUARES_BINS = 255 * 3;

/** A shard's exact Σg² over the trainable part of its slice of the step's averaged gradient. */
const sliceSquaresSchema = z.object({
  type: z.literal('sliceSquares'),
  step: count,
  bins: z
    .array(
      z
        .number()
        .int()
        .nonnegative()
        .max(2 ** 53),
    )
    .length(SQUARES_BINS),
});

/** The factor every shard scales its slice's trainable gradient by before Adam (1: not clipped). */
const clipScaleSchema = z.object({
  type: z.literal('clipScale'),
  step: count,
  scale: z.number().positive().max(1),
});

const nodeRef = z.object({ level: treeLevel, index: count, worker: id });

/**
 * --outlier-factor: compare the slice of node `node` with `against` (a recomputation of the same node by
 * another worker).
 */
const compareSchema = z.object({ type: z.literal('compare'), step: count, node: nodeRef, against: nodeRef });

/** A shard's comparison of two slices: Σ(a − b)², Σa², Σb² (float64) and whether every bit matched. */
const comparisonSchema = z.object({
  type: z.literal('comparison'),
  step: count,
  node: nodeRef,
  against: nodeRef,
  diffSquares: z.number().nonnegative(),
  squares: z.number().nonnegative(),
  againstSquares: z.number().nonnegative(),
  identical: z.boolean(),
});

/** A shard's check of one node's slice from one worker: `reason` null when it is fine. */
const sliceVerdictSchema = z.object({
  type: z.literal('sliceVerdict'),
  step: count,
  level: treeLevel,
  index: count,
  worker: id,
  reason: z.enum(REJECTION_REASONS).nullable(),
  detail: z.string().max(4096),
  /** Σg² (float64) over the trainable part of the slice, for --outlier-factor (0 when refused). */
  squares: z.number().nonnegative(),
});

/**
 * The shard reduced `step` and published weights `version` of its slice; its timings and Σg² of its trainable
 * part.
 */
const reducedSchema = z.object({
  type: z.literal('reduced'),
  step: count,
  version: count,
  gradSquares: z.number().nonnegative(),
  seconds: z.object({
    reduce: z.number().nonnegative(),
    optimizer: z.number().nonnegative(),
    broadcast: z.number().nonnegative(),
  }),
  bytesIn: count,
  bytesOut: count,
});

const heartbeatSchema = z.object({ type: z.literal('heartbeat'), sentAt: z.number().finite() });

const errorSchema = z.object({
  type: z.literal('error'),
  code: z.enum(ERROR_CODES),
  message: z.string().max(4096),
});

const shutdownSchema = z.object({ type: z.literal('shutdown'), reason: z.string().max(1024) });

export const messageSchema = z.discriminatedUnion('type', [
  helloSchema,
  challengeSchema,
  authSchema,
  welcomeSchema,
  readySchema,
  dataChunkSchema,
  weightsSchema,
  holdingSchema,
  assignSchema,
  contributionSchema,
  bucketSchema,
  evaluateSchema,
  evaluationSchema,
  heartbeatSchema,
  errorSchema,
  shutdownSchema,
  shardAssignSchema,
  shardStateSchema,
  shardLoadedSchema,
  collectSchema,
  reduceSchema,
  sliceVerdictSchema,
  reducedSchema,
  sliceSquaresSchema,
  clipScaleSchema,
  compareSchema,
  comparisonSchema,
]);

export type Message = z.infer<typeof messageSchema>;
type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

/** What a worker sends: the coordinator's side of a channel accepts only these. */
export const WORKER_MESSAGE_TYPES = [
  'hello',
  'auth',
  'ready',
  'holding',
  'contribution',
  'bucket',
  'evaluation',
  'heartbeat',
  'error',
  'shutdown',
] as const;
/** What the coordinator sends: a worker's side of a channel accepts only these. */
export const COORDINATOR_MESSAGE_TYPES = [
  'challenge',
  'welcome',
  'dataChunk',
  'weights',
  'assign',
  'evaluate',
  'heartbeat',
  'error',
  'shutdown',
] as const;
/**
 * What a shard reducer sends the coordinator (workers talk to a shard as to a coordinator: the two lists
 * above).
 */
export const SHARD_MESSAGE_TYPES = [
  'hello',
  'auth',
  'heartbeat',
  'error',
  'shutdown',
  'shardLoaded',
  'shardState',
  'sliceVerdict',
  'reduced',
  'sliceSquares',
  'comparison',
] as const;
/** What the coordinator sends a shard reducer. */
export const TO_SHARD_MESSAGE_TYPES = [
  'challenge',
  'welcome',
  'heartbeat',
  'error',
  'shutdown',
  'shardAssign',
  'shardState',
  'collect',
  'reduce',
  'clipScale',
  'compare',
] as const;
export type WorkerMessage = MessageOf<(typeof WORKER_MESSAGE_TYPES)[number]>;
export type CoordinatorMessage = MessageOf<(typeof COORDINATOR_MESSAGE_TYPES)[number]>;
export type ShardMessage = MessageOf<(typeof SHARD_MESSAGE_TYPES)[number]>;
export type ToShardMessage = MessageOf<(typeof TO_SHARD_MESSAGE_TYPES)[number]>;
/**
 * What the coordinator's end of a link hears before it knows who joined: a worker's or a shard's messages.
 */
export const PEER_MESSAGE_TYPES = [...new Set([...WORKER_MESSAGE_TYPES, ...SHARD_MESSAGE_TYPES])];
export type PeerMessage = WorkerMessage | ShardMessage;

/** Compile-time guard: a new message type must be given a direction, or this line stops compiling. */
const everyTypeHasADirection: Record<
  Exclude<MessageType, PeerMessage['type'] | CoordinatorMessage['type'] | ToShardMessage['type']>,
  never
> = {};
void everyTypeHasADirection;

/** How many payload values a message declares (0 for those that carry no tensor). */
export function declaredPayloadValues(message: Message): number {
  return 'payloadValues' in message ? message.payloadValues : 0;
}
