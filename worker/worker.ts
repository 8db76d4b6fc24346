/**
 * A worker: connects to the coordinator, agrees on the run (model, layout, data fingerprints),
 * gets any data set it lacks streamed, then computes whatever it is assigned with the weights it is
 * sent, until the coordinator says shutdown.
 */
import type { Logger } from 'pino';
import { type SharedSecret, newNonce, proofsMatch } from '../protocol/auth.js';
import { Channel, type ChannelMeter, RejectionCounts } from '../protocol/channel.js';
import type { Frame } from '../protocol/codec.js';
import type { MessageOf, Split } from '../protocol/messages.js';
import type { Link } from '../protocol/transport.js';
import { type Dataset, fingerprint, loadDataset } from '../training/data/index.js';
import { getModel } from '../training/models/zoo.js';
import { paramLayout } from '../training/models/spec.js';
import { type RunnerFactory, WorkerCompute } from './compute.js';
import { checkDataSpec } from './data-policy.js';
import { DatasetReceiver } from './dataset-receiver.js';

/** Failures a test can inject to prove the coordinator copes (hidden CLI flags --fault-*). */
export interface FaultPlan {
  /** Poison the first contribution of this step with NaN. */
  nanAtStep?: number;
  /** Exit the process abruptly when assigned this step. */
  exitAtStep?: number;
  /** Burn this much CPU before each assignment, counted as compute: a slower machine. */
  slowMs?: number;
  /** Report this many seconds of compute for every node, whatever it took: a worker lying to grab a bigger share. */
  reportComputeSeconds?: number;
  /** Multiply the first contribution of this step by OUTLIER_FAULT_SCALE: finite, in range, and wrong. */
  scaleAtStep?: number;
}

/** Large enough to stand out from the step's median node, small enough to pass every range check. */
export const OUTLIER_FAULT_SCALE = 1000;

/** What a worker reports as it goes (metrics); every part is optional. */
export interface WorkerObserver {
  meter?: ChannelMeter;
  welcomed?(model: string): void;
  /** An assignment computed: its compute time and the micro-batches it covered. */
  computed?(seconds: number, microBatches: number): void;
}

export interface WorkerOptions {
  link: Link;
  workerId: string;
  /** The backend's name, told to the coordinator (and shown in its summary). */
  backend: string;
  runnerFor: RunnerFactory;
  log: Logger;
  /** Prove this to the coordinator, and demand its proof back (protocol/auth.ts). */
  secret?: SharedSecret;
  faults?: FaultPlan;
  maxFrameBytes?: number;
  observer?: WorkerObserver;
  /** Folders local data files may be loaded from (worker/data-policy.ts); none: only mnist:*. */
  dataDirs?: readonly string[];
}

/**
 * How a session ended. `shutdown`: the coordinator is done with us. `lost`: the link died or went
 * silent, or the coordinator turned us away for now (full, name still taken): worth reconnecting.
 * `refused`: authentication failed either way, which waiting does not fix.
 */
export interface WorkerOutcome {
  end: 'shutdown' | 'lost' | 'refused';
  reason: string;
  steps: number;
  rejections: Record<string, number>;
}

const HANDSHAKE_TIMEOUT_MS = 30_000;

/** Coordinator error codes that end a session for good. */
const FATAL_CODES = new Set(['auth_failed', 'unauthenticated']);

/** Busy-waits (a slower processor, not an idle one); returns the seconds spent. */
function burn(ms: number): number {
  const started = performance.now();
  while (performance.now() - started < ms);
  return (performance.now() - started) / 1000;
}

/** Loads a data set by the coordinator's spec when this machine has the same one; else null. */
function localCopy(spec: string, expected: string, dataDirs: readonly string[], log: Logger): Dataset | null {
  const allowed = checkDataSpec(spec, dataDirs);
  if (!allowed.ok) {
    log.warn({ spec }, `refusing to load the coordinator's data spec: ${allowed.reason}; it will be streamed`);
    return null;
  }
  try {
    const data = loadDataset(spec);
    if (fingerprint(data) === expected) return data;
    log.warn({ spec }, `local ${spec} differs from the coordinator's: it will be streamed`);
  } catch (err) {
    log.info({ spec, reason: (err as Error).message }, `no local ${spec}: it will be streamed`);
  }
  return null;
}

export function runWorker(options: WorkerOptions): Promise<WorkerOutcome> {
  const { link, workerId, log, faults = {}, observer, secret } = options;
  const rejections = new RejectionCounts();
  const nonce = newNonce();
  let compute: WorkerCompute | undefined;
  let welcome: MessageOf<'welcome'> | undefined;
  let challenged = false;
  const data: Partial<Record<Split, Dataset>> = {};
  const receivers: Partial<Record<Split, DatasetReceiver>> = {};
  let steps = 0;
  let nanInjected = false;
  let scaleInjected = false;
  let lastHeard = performance.now();
  let heartbeat: NodeJS.Timeout | undefined;
  // Compute runs one message at a time, in arrival order (weights before the assignment that uses them).
  let queue = Promise.resolve();

  return new Promise<WorkerOutcome>((resolve, reject) => {
    let finished = false;
    const finish = (end: WorkerOutcome['end'], reason: string, error?: Error) => {
      if (finished) return;
      finished = true;
      clearInterval(heartbeat);
      clearTimeout(handshakeTimer);
      // Let a share in progress notice `finished` and stop before its model goes away.
      void queue.finally(() => compute?.dispose());
      if (error) reject(error);
      else resolve({ end, reason, steps, rejections: rejections.byReason });
    };
    const serially = (task: () => void | Promise<void>) => {
      queue = queue.then(async () => {
        if (!finished) await task();
      }).catch((err: unknown) => fail(err as Error));
    };
    const fail = (err: Error) => {
      if (finished) return;
      // A fault of this worker's own (layout mismatch, bad assignment): report and leave.
      channel.send({ type: 'error', code: 'worker_failed', message: err.message });
      // Settle first: closing the link reports it lost, which would otherwise win.
      finish('refused', 'failed', err);
      link.close('worker failed');
    };
    const refuse = (reason: string) => {
      log.error(reason);
      finish('refused', reason);
      link.close(reason);
    };

    const startCompute = (w: MessageOf<'welcome'>) => {
      const model = getModel(w.model);
      compute = new WorkerCompute(model, w.seed, { trainCount: w.train.count, batchSize: w.batchSize, microBatchSize: w.microBatchSize }, data.train!, data.test!, options.runnerFor);
      channel.send({ type: 'ready', missing: [] });
      log.info({ model: w.model, run: w.runId }, `ready to train ${w.model} (run ${w.runId})`);
    };

    const onChallenge = (c: MessageOf<'challenge'>) => {
      if (!secret) return refuse('the coordinator requires a shared secret: pass --secret-file FILE (or GRADFLEET_SECRET)');
      if (challenged || welcome) return channel.reject('unexpected_message', 'a second challenge');
      if (!proofsMatch(secret.coordinatorProof(nonce, c.nonce), c.proof)) return refuse('the coordinator does not hold our secret: refusing to work for it');
      challenged = true;
      channel.send({ type: 'auth', proof: secret.workerProof(c.nonce, nonce, workerId) });
      // Everything after our auth is sealed both ways (protocol/sealing.ts).
      channel.secure(secret, { workerNonce: nonce, coordinatorNonce: c.nonce, workerId }, 'worker');
    };

    // A coordinator that neither challenges nor welcomes us (refused us mid-join, or hung) must not hold us forever.
    const handshakeTimer = setTimeout(() => {
      if (!welcome) link.close(`no welcome from the coordinator within ${HANDSHAKE_TIMEOUT_MS / 1000} s`);
    }, HANDSHAKE_TIMEOUT_MS);
    handshakeTimer.unref();

    const keepAlive = (w: MessageOf<'welcome'>) => {
      heartbeat = setInterval(() => {
        const silent = performance.now() - lastHeard;
        if (silent > w.heartbeatTimeoutMs) link.close(`the coordinator has been silent for ${(silent / 1000).toFixed(1)} s`);
        else channel.send({ type: 'heartbeat', sentAt: Date.now() });
      }, w.heartbeatMs);
      heartbeat.unref();
    };

    const onWelcome = (w: MessageOf<'welcome'>) => {
      if (secret && !challenged) return refuse('the coordinator did not authenticate (it has no secret, or is not ours): refusing to work for it');
      if (welcome) return channel.reject('unexpected_message', 'a second welcome');
      const ours = paramLayout(getModel(w.model));
      const agrees = ours.size === w.layoutSize && ours.entries.length === w.layout.length
        && ours.entries.every((e, i) => e.name === w.layout[i].name && e.offset === w.layout[i].offset && e.shape.join() === w.layout[i].shape.join());
      if (!agrees) throw new Error(`the coordinator's ${w.model} layout differs from this build's: upgrade one side`);
      welcome = w;
      channel.wire = w.wire;
      observer?.welcomed?.(w.model);
      keepAlive(w);
      const missing: Split[] = [];
      for (const split of ['train', 'test'] as const) {
        const info = w[split];
        const local = localCopy(info.spec, info.fingerprint, options.dataDirs ?? [], log);
        if (local) data[split] = local;
        else {
          missing.push(split);
          receivers[split] = new DatasetReceiver(split, info.count, info.fingerprint);
        }
      }
      if (missing.length > 0) channel.send({ type: 'ready', missing });
      else startCompute(w);
    };

    const onChunk = (chunk: MessageOf<'dataChunk'>) => {
      const receiver = receivers[chunk.split];
      if (!receiver || !welcome) return channel.reject('unexpected_message', `${chunk.split} data that was not asked for`);
      const complete = receiver.add(chunk);
      if (!complete) return;
      data[chunk.split] = complete;
      delete receivers[chunk.split];
      log.info({ split: chunk.split, samples: complete.count }, `received the ${chunk.split} set`);
      if (data.train && data.test) startCompute(welcome);
    };

    const onAssign = async (assign: MessageOf<'assign'>) => {
      if (!compute) return channel.reject('unexpected_message', 'assign before ready');
      if (faults.exitAtStep === assign.step) {
        log.warn(`fault injection: exiting at step ${assign.step}`);
        process.exit(3);
      }
      let stall = faults.slowMs ? burn(faults.slowMs) : 0;
      let computeSeconds = 0;
      await compute.contributions(assign, ({ message, payload }) => {
        message.computeSeconds += stall;
        stall = 0;
        if (faults.nanAtStep === assign.step && !nanInjected) {
          nanInjected = true;
          payload[0] = Number.NaN;
          log.warn(`fault injection: NaN in step ${assign.step}'s contribution`);
        }
        if (faults.scaleAtStep === assign.step && !scaleInjected) {
          scaleInjected = true;
          for (let i = 0; i < payload.length; i++) payload[i] *= OUTLIER_FAULT_SCALE;
          log.warn(`fault injection: step ${assign.step}'s contribution scaled by ${OUTLIER_FAULT_SCALE}`);
        }
        if (faults.reportComputeSeconds !== undefined) message.computeSeconds = faults.reportComputeSeconds;
        computeSeconds += message.computeSeconds;
        channel.send(message, payload);
      }, () => finished);
      observer?.computed?.(computeSeconds, assign.count);
      steps++;
    };

    const onError = (e: MessageOf<'error'>) => {
      if (FATAL_CODES.has(e.code)) return refuse(`the coordinator refused us: ${e.message}`);
      log.warn({ code: e.code }, `coordinator reports: ${e.message}`);
    };

    const onMessage = ({ message, payload }: Frame) => {
      lastHeard = performance.now();
      switch (message.type) {
        case 'challenge': return onChallenge(message);
        case 'welcome': return onWelcome(message);
        case 'dataChunk': return onChunk(message);
        case 'weights':
          if (!compute) return channel.reject('unexpected_message', 'weights before ready');
          // The payload views this frame's buffer, which nothing else holds: no copy needed.
          return serially(() => {
            compute!.setWeights(message.version, payload);
            channel.send({ type: 'holding', version: message.version });
          });
        case 'assign': return serially(() => onAssign(message));
        case 'evaluate':
          if (!compute) return channel.reject('unexpected_message', 'evaluate before ready');
          return serially(async () => {
            const { message: result, payload: predictions } = await compute!.evaluate(message);
            if (!finished) channel.send(result, predictions);
          });
        case 'error': return onError(message);
        case 'shutdown':
          log.info({ reason: message.reason }, `coordinator says shutdown: ${message.reason}`);
          finish('shutdown', message.reason);
          return link.close('shutdown');
        case 'heartbeat': return;
        default:
          return channel.reject('unexpected_message', `${message.type} is not a coordinator's message`);
      }
    };

    const channel = new Channel(link, {
      log, rejections, maxFrameBytes: options.maxFrameBytes, replyToRejections: false,
      onMessage: (frame) => {
        try {
          onMessage(frame);
        } catch (err) {
          fail(err as Error);
        }
      },
      onClose: (reason) => finish('lost', `connection to the coordinator lost: ${reason}`),
    });
    channel.meter = observer?.meter;
    channel.send({ type: 'hello', workerId, backend: options.backend, nonce });
  });
}
