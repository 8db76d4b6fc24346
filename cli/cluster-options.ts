/**
 * How the coordinator runs its cluster: liveness (heartbeats, step deadline), admission limits,
 * authentication and how often it checkpoints. Shared by `train` and `coordinator`.
 */
import type { Command } from 'commander';
import type { Logger } from 'pino';
import type { RefereeFactory } from '../coordinator/referee.js';
import type { ClusterPolicy } from '../coordinator/launch.js';
import { type AdmissionFlags, addAdmissionOptions, admissionLimitsOf } from './admission-options.js';
import { nonNegativeInt, nonNegativeNumber, positiveInt, positiveNumber, share } from './options.js';
import { type SecretFlags, addSecretOptions, secretOf } from './secret-options.js';
import { UsageError } from '../common/errors.js';

export interface ClusterFlags extends SecretFlags, AdmissionFlags {
  minWorkers: number;
  stepDeadline: number;
  heartbeat: number;
  heartbeatTimeout: number;
  checkpointEvery: number;
  outlierFactor?: number;
  verifyFraction: number;
  shards?: number;
  bucketMb: number;
}

export function addClusterOptions(cmd: Command): Command {
  addAdmissionOptions(cmd)
    .option(
      '--min-workers <n>',
      'workers needed to take a step: the run waits (paused) while fewer are ready',
      positiveInt,
      1,
    )
    .option(
      '--step-deadline <s>',
      'a worker that has not delivered its share this long after assignment loses it for the step (with --local-steps H: H × this for a round)',
      positiveNumber,
      30,
    )
    .option('--heartbeat <s>', 'heartbeat period, both ways', positiveNumber, 2)
    .option(
      '--heartbeat-timeout <s>',
      'a worker (or, for workers, the coordinator) silent this long is dropped',
      positiveNumber,
      20,
    )
    .option(
      '--verify-fraction <p>',
      'recompute this share of tree nodes and test chunks on another worker, chosen by a secret draw; a worker caught lying is evicted and its work undone (0: off)',
      share,
      0,
    )
    .option(
      '--outlier-factor <f>',
      "recompute on another worker any tree node whose mean-gradient norm exceeds F × the step's median, and reject it if the two differ (off by default)",
      positiveNumber,
    )
    .option(
      '--shards <S>',
      "run reduce and Adam on S shard reducers (`gradfleet shard`), each for a slice of the parameters, so no one link carries every worker's gradient (default, or 0: this process, whole)",
      nonNegativeInt,
    )
    .option(
      '--bucket-mb <MB>',
      "workers send each tree node's gradient in buckets of about MB megabytes (float32) as backward makes them final, so the bytes cross while backward goes on; the result is the same bits (0: each node whole, after its compute)",
      nonNegativeNumber,
      0,
    )
    .option(
      '--checkpoint-every <steps>',
      'checkpoint every N steps as well as after each epoch (0: epochs only)',
      nonNegativeInt,
      0,
    )
    // --shards 0 is no flag at all: deployments pass it from a variable whose default is "off"
    // (compose's ${GRADFLEET_SHARDS:-0}, a Kubernetes env var), since they cannot leave it out.
    // (A parser cannot return undefined: commander turns that into ''.)
    .hook('preAction', (_self, action) => {
      if (action.getOptionValue('shards') === 0) action.setOptionValue('shards', undefined);
    });
  return addSecretOptions(cmd, 'workers must prove they hold');
}

export function clusterPolicyOf(f: ClusterFlags): ClusterPolicy {
  if (f.heartbeatTimeout <= f.heartbeat)
    throw new UsageError(
      `--heartbeat-timeout (${f.heartbeatTimeout} s) must be longer than --heartbeat (${f.heartbeat} s)`,
    );
  return {
    stepDeadlineMs: f.stepDeadline * 1000,
    heartbeat: {
      intervalMs: Math.round(f.heartbeat * 1000),
      timeoutMs: Math.round(f.heartbeatTimeout * 1000),
    },
    limits: admissionLimitsOf(f),
    secret: secretOf(f),
    checkpointEvery: f.checkpointEvery,
    outlierFactor: f.outlierFactor,
    verifyFraction: f.verifyFraction,
    bucketValues: bucketValuesOf(f.bucketMb),
  };
}

/** --bucket-mb in float32 values (at least one); 0 stays 0, whole nodes. */
function bucketValuesOf(megabytes: number): number {
  return megabytes === 0 ? 0 : Math.max(1, Math.round((megabytes * 2 ** 20) / 4));
}

/** The referee of --verify-fraction, loaded (with a compute backend) only when a run asks for spot checks. */
export function lazyReferee(log: Logger): RefereeFactory {
  return async (context) => (await import('./referee.js')).refereeFactory(log)(context);
}
