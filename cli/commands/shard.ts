/**
 * `gradfleet shard`: a shard reducer. It joins a coordinator started with --shards S, is given a
 * slice of the parameter vector, and serves the run's workers: they send it their slice of every
 * tree node and get its slice of the new weights. Run one per worker machine (each machine's link
 * then carries about twice the model per step, whatever the worker count).
 */
import { hostname } from 'node:os';
import { Command } from 'commander';
import { createLogger } from '../../common/logger.js';
import { type AdmissionFlags, addAdmissionOptions, admissionLimitsOf } from '../admission-options.js';
import { runShard } from '../../shard/shard.js';
import { connectWithRetry } from '../connect-retry.js';
import { checkExposure } from '../exposure.js';
import { LinkStopper } from '../signals.js';
import { port, positiveInt } from '../options.js';
import { type SecretFlags, addSecretOptions, secretOf } from '../secret-options.js';
import {
  type TlsListenFlags,
  type TransportFlags,
  addTlsConnectOptions,
  addTlsListenOptions,
  addTransportOptions,
  connectorFor,
  shardServerFor,
} from '../transport-options.js';
import { UsageError } from '../../common/errors.js';

interface ShardFlags extends TransportFlags, TlsListenFlags, SecretFlags, AdmissionFlags {
  connect?: string;
  tlsCa?: string;
  id: string;
  host: string;
  port: number;
  advertise?: string;
  connectTimeout: number;
  maxFrameMb: number;
  insecure?: boolean;
}

export function shardCommand(): Command {
  const cmd = new Command('shard')
    .description(
      'run a shard reducer: join a coordinator started with --shards, reduce and apply Adam to one slice of the parameters, serve workers',
    )
    .option('--connect <url>', 'coordinator address, e.g. ws://10.0.0.5:7070 (with --transport ws)')
    .option(
      '--id <name>',
      'shard name shown in logs and metrics (unique per coordinator)',
      `shard-${hostname()}-${process.pid}`,
    )
    .option('--host <addr>', 'where workers connect to this shard (ws)', '127.0.0.1')
    .option('--port <n>', 'port for workers (ws; 0: any free port)', port, 0)
    .option(
      '--advertise <url>',
      'the address workers are told (ws; default: the listening address, e.g. when --host is 0.0.0.0 give ws://THIS-HOST:PORT)',
    )
    .option(
      '--connect-timeout <s>',
      'keep retrying the coordinator this long before giving up',
      positiveInt,
      60,
    )
    .option('--max-frame-mb <n>', 'largest frame accepted, in MiB', positiveInt, 64)
    .option('--insecure', 'serve workers beyond loopback without a secret (anyone who reaches it may join)');
  // Workers join a shard as they join the coordinator: the same limits, with the same defaults.
  return addTlsConnectOptions(
    addTlsListenOptions(
      addSecretOptions(
        addTransportOptions(addAdmissionOptions(cmd)),
        'to prove to the coordinator and ask of workers',
      ),
    ),
  ).action(async (flags: ShardFlags) => {
    const log = createLogger(`shard ${flags.id}`);
    const secret = secretOf(flags);
    // A shard serves workers as the coordinator does, so it is held to the same rule: beyond loopback, a
    // secret or --insecure.
    const natsServers = flags.natsUrl.split(',');
    checkExposure(
      {
        transport: flags.transport,
        host: flags.host,
        natsServers,
        secret: secret !== undefined,
        insecure: flags.insecure === true,
        tls:
          flags.transport === 'ws'
            ? flags.tlsCert !== undefined
            : natsServers.every((u) => u.trim().startsWith('tls://')) || flags.natsRequireTls === true,
      },
      log,
    );
    if (
      flags.transport === 'ws' &&
      flags.advertise === undefined &&
      (flags.host === '0.0.0.0' || flags.host === '::')
    ) {
      throw new UsageError(
        `--host ${flags.host} is no address workers can use: give --advertise ws://THIS-HOST:PORT`,
      );
    }
    const maxFrameBytes = flags.maxFrameMb * 1024 * 1024;
    const { listener, serves } = await shardServerFor(
      flags,
      { host: flags.host, port: flags.port, shardId: flags.id, advertise: flags.advertise },
      log,
    )(maxFrameBytes);
    const stopper = new LinkStopper('shard');
    try {
      const link = stopper.hold(
        await connectWithRetry(
          connectorFor(flags, flags.id, log, secret),
          flags.connectTimeout,
          log,
          () => stopper.stopping,
        ),
      );
      if (!link) return;
      log.info({ serves }, `shard ${flags.id} serving workers at ${serves}`);
      // One session: a shard's state lives and dies with it (the coordinator rolls back and admits a
      // replacement).
      const outcome = await runShard({
        id: flags.id,
        link,
        listener,
        serves,
        secret,
        log,
        maxFrameBytes,
        limits: admissionLimitsOf(flags),
      });
      if (outcome.end !== 'shutdown' && !stopper.stopping)
        process.exitCode = outcome.end === 'refused' ? 2 : 1;
      log.info({ ...outcome }, `shard ${flags.id} done after ${outcome.steps} steps: ${outcome.reason}`);
    } finally {
      await listener.close();
    }
  });
}
