/**
 * A worker: connects to the coordinator, agrees on the run (model, layout, data fingerprints),
 * gets any data set it lacks streamed, then computes whatever it is assigned with the weights it is
 * sent, until the coordinator says shutdown.
 */
import type { Logger } from 'pino';
import { Channel, type ChannelMeter, RejectionCounts } from '../protocol/channel.js';
import type { Frame } from '../protocol/codec.js';
import type { MessageOf, Split } from '../protocol/messages.js';
import type { Link } from '../protocol/transport.js';
import { type Dataset, fingerprint, loadDataset } from '../training/data/index.js';
import { getModel } from '../training/models/zoo.js';
import { paramLayout } from '../training/models/spec.js';
import { WorkerCompute } from './compute.js';
import { DatasetReceiver } from './dataset-receiver.js';

/** Failures a test can inject to prove the coordinator copes (hidden CLI flag --fault). */
export interface FaultPlan {
  /** Poison the first contribution of this step with NaN. */
  nanAtStep?: number;
  /** Exit the process abruptly when assigned this step. */
  exitAtStep?: number;
}

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
  backend: string;
  log: Logger;
  faults?: FaultPlan;
  maxFrameBytes?: number;
  observer?: WorkerObserver;
}

export interface WorkerOutcome {
  reason: string;
  steps: number;
  rejections: Record<string, number>;
}

/** Loads a data set by the coordinator's spec when this machine has the same one; else null. */
function localCopy(spec: string, expected: string, log: Logger): Dataset | null {
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
  const { link, workerId, log, faults = {}, observer } = options;
  const rejections = new RejectionCounts();
  let compute: WorkerCompute | undefined;
  let welcome: MessageOf<'welcome'> | undefined;
  const data: Partial<Record<Split, Dataset>> = {};
  const receivers: Partial<Record<Split, DatasetReceiver>> = {};
  let steps = 0;
  let nanInjected = false;

  return new Promise<WorkerOutcome>((resolve, reject) => {
    let finished = false;
    const finish = (reason: string, error?: Error) => {
      if (finished) return;
      finished = true;
      compute?.dispose();
      if (error) reject(error);
      else resolve({ reason, steps, rejections: rejections.byReason });
    };

    const startCompute = (w: MessageOf<'welcome'>) => {
      const model = getModel(w.model);
      compute = new WorkerCompute(model, w.seed, { trainCount: w.train.count, batchSize: w.batchSize, microBatchSize: w.microBatchSize }, data.train!, data.test!);
      channel.send({ type: 'ready', missing: [] });
      log.info({ model: w.model, run: w.runId }, `ready to train ${w.model} (run ${w.runId})`);
    };

    const onWelcome = (w: MessageOf<'welcome'>) => {
      const ours = paramLayout(getModel(w.model));
      const agrees = ours.size === w.layoutSize && ours.entries.length === w.layout.length
        && ours.entries.every((e, i) => e.name === w.layout[i].name && e.offset === w.layout[i].offset && e.shape.join() === w.layout[i].shape.join());
      if (!agrees) throw new Error(`the coordinator's ${w.model} layout differs from this build's: upgrade one side`);
      welcome = w;
      channel.wire = w.wire;
      observer?.welcomed?.(w.model);
      const missing: Split[] = [];
      for (const split of ['train', 'test'] as const) {
        const info = w[split];
        const local = localCopy(info.spec, info.fingerprint, log);
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

    const onAssign = (assign: MessageOf<'assign'>) => {
      if (!compute) return channel.reject('unexpected_message', 'assign before ready');
      if (faults.exitAtStep === assign.step) {
        log.warn(`fault injection: exiting at step ${assign.step}`);
        process.exit(3);
      }
      let computeSeconds = 0;
      compute.contributions(assign, ({ message, payload }) => {
        if (faults.nanAtStep === assign.step && !nanInjected) {
          nanInjected = true;
          payload[0] = Number.NaN;
          log.warn(`fault injection: NaN in step ${assign.step}'s contribution`);
        }
        computeSeconds += message.computeSeconds;
        channel.send(message, payload);
      });
      observer?.computed?.(computeSeconds, assign.count);
      steps++;
    };

    const onMessage = ({ message, payload }: Frame) => {
      switch (message.type) {
        case 'welcome': return onWelcome(message);
        case 'dataChunk': return onChunk(message);
        case 'weights':
          if (!compute) return channel.reject('unexpected_message', 'weights before ready');
          // The payload views this frame's buffer, which nothing else holds: no copy needed.
          return compute.setWeights(message.version, payload);
        case 'assign': return onAssign(message);
        case 'evaluate': {
          if (!compute) return channel.reject('unexpected_message', 'evaluate before ready');
          const { message: result, payload: predictions } = compute.evaluate(message);
          return channel.send(result, predictions);
        }
        case 'error':
          return log.warn({ code: message.code }, `coordinator reports: ${message.message}`);
        case 'shutdown':
          log.info({ reason: message.reason }, `coordinator says shutdown: ${message.reason}`);
          finish(message.reason);
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
          // A fault of this worker's own (layout mismatch, bad assignment): report and leave.
          channel.send({ type: 'error', code: 'worker_failed', message: (err as Error).message });
          link.close('worker failed');
          finish('failed', err as Error);
        }
      },
      onClose: (reason) => finish(reason, new Error(`connection to the coordinator lost: ${reason}`)),
    });
    channel.meter = observer?.meter;
    channel.send({ type: 'hello', workerId, backend: options.backend });
  });
}
