/**
 * `gradfleet bench scale`: the data plane on a simulated cluster of machines with shaped links
 * (bench/scale.ts).
 */
import { setPriority } from 'node:os';
import Table from 'cli-table3';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLogger } from '../../common/logger.js';
import { localStepsPair } from '../run-options.js';
import {
  type LinkTraffic,
  NATS_TOPOLOGIES,
  type NatsTopology,
  SCALE_SHARDINGS,
  SCALE_TRANSPORTS,
  type ScaleReport,
  type ScaleRow,
  type ScaleSharding,
  benchmarkScale,
} from '../../bench/scale.js';
import { SIGNAL_EXIT_CODES, interruptedBy } from '../../bench/simnet/teardown.js';
import { DEFAULT_SYNTHETIC_MS } from '../../training/backends/synthetic.js';
import { getModel, modelNames } from '../../training/models/zoo.js';
import type { WireDtype } from '../../protocol/wire-dtype.js';
import { nonNegativeNumber, oneOf, positiveInt, positiveNumber, printJson, wireDtype } from '../options.js';

interface ScaleFlags {
  workersList: number[];
  steps: number;
  warmup: number;
  model: string;
  microBatch: number;
  linkMbit: number;
  linkDelayMs?: number;
  transport: (typeof SCALE_TRANSPORTS)[number];
  wire: WireDtype;
  syntheticMs: number;
  bucketMb: number;
  natsTopology: NatsTopology;
  localSteps?: number;
  replicas?: number;
  validateWorkers?: number;
  validate: boolean;
  json?: boolean;
  shards: ScaleSharding[];
}

function shardings(value: string): ScaleSharding[] {
  const list = value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  const bad = list.find((v) => !(SCALE_SHARDINGS as readonly string[]).includes(v));
  if (list.length === 0 || bad !== undefined)
    throw new InvalidArgumentError(
      `expected a comma-separated list of ${SCALE_SHARDINGS.join(', ')}${bad ? ` (not ${bad})` : ''}`,
    );
  return list as ScaleSharding[];
}

function workerCounts(value: string): number[] {
  const counts = value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean)
    .map(Number);
  if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n <= 0))
    throw new InvalidArgumentError('expected comma-separated positive integers, e.g. 1,2,4,8');
  return counts;
}

const ms = (v: number) => v.toFixed(0);
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const inOut = (t: LinkTraffic | null) => (t ? `${mb(t.in_bytes)} / ${mb(t.out_bytes)}` : '–');

function rowCells(r: ScaleRow, nats: boolean): string[] {
  return [
    String(r.workers),
    String(r.shards),
    String(r.batch),
    String(r.link_mbit),
    ms(r.step_ms),
    ms(r.compute_ms),
    ms(r.transfer_ms),
    ms(r.link_ms),
    `${(100 * r.hidden_share).toFixed(0)}%`,
    ms(r.reduce_ms),
    ms(r.optimizer_ms),
    ms(r.broadcast_ms),
    r.samples_per_s.toFixed(1),
    `${(100 * r.efficiency).toFixed(0)}%`,
    inOut(r.coordinator),
    inOut(r.worker),
    `${r.busiest.machine} ${r.busiest.x_model.toFixed(2)}×`,
    `${(100 * r.host_cpu_busy).toFixed(0)}%`,
    `${ms(r.step_ms_median)} / ${ms(r.step_ms_max)}`,
    ...(nats ? [inOut(r.nats_server), String(r.repeats)] : []),
  ];
}

/** The report as a table, its caption, the validity verdict and how to read it. */
function formatScaleReport(report: ScaleReport): string {
  const nats = report.transport === 'nats';
  const table = new Table({
    // Colour codes would garble the table once piped into a file or the README.
    style: process.stdout.isTTY ? {} : { head: [], border: [] },
    head: [
      'workers',
      'shards',
      'batch',
      'Mbit/s',
      'step ms',
      'compute',
      'transfer',
      'links',
      'hidden',
      'reduce',
      'optimizer',
      'broadcast',
      'samples/s',
      'efficiency',
      'coordinator MB in / out',
      'worker MB in / out',
      'busiest link',
      'CPU busy',
      'step median / max',
      ...(nats ? ['NATS server MB in / out', 'repeats'] : []),
    ],
  });
  const v = report.validity;
  const allRows = [...report.rows, ...(v ? [v.half_rate_row] : [])];
  const loud = allRows.flatMap((r) => r.samples_quiet).filter((quiet) => !quiet).length;
  for (const r of allRows) table.push(rowCells(r, nats));
  const resent = (v?.half_rate_row.repeats ?? 0) > 0;
  const verdict = !v
    ? 'not checked (--no-validate)'
    : v.link_bound
      ? `link-bound: at half the link rate, ${v.workers} workers' transfer grew ×${v.ratio.toFixed(2)} (${ms(v.transfer_ms)} → ${ms(v.half_rate_transfer_ms)} ms)` +
        (v.ratio > 2.5 && resent ? '; more than the rate alone explains: chunks were resent (repeats)' : '')
      : `CPU-bound, not link-bound: at half the link rate, ${v.workers} workers' transfer grew only ×${v.ratio.toFixed(2)} (${ms(v.transfer_ms)} → ${ms(v.half_rate_transfer_ms)} ms, under ×1.6)`;
  return (
    `${report.model} over ${report.transport}${report.nats_topology ? ` (${report.nats_topology === 'central' ? 'one central server' : 'a server on every machine'})` : ''}, wire ${report.wire}, synthetic compute ${report.synthetic_ms} ms per micro-batch of ${report.micro_batch}, ` +
    `${report.bucket_mb > 0 ? `gradients in ${report.bucket_mb} MB buckets during backward` : 'nodes sent whole after compute'}, ` +
    (report.local_steps
      ? `rounds of local steps (${report.local_steps.replicas} replicas × ${report.local_steps.steps} inner steps: each row's step is a round), `
      : '') +
    `one machine per process on links of ${report.link_mbit} Mbit/s each way${report.link_delay_ms ? ` (+${report.link_delay_ms} ms)` : ''}; ` +
    `steps ${report.warmup_steps + 1}–${report.warmup_steps + report.steps} of a ${report.warmup_steps + report.steps}-step run per row:\n` +
    `${table.toString()}\n` +
    `Validity: ${verdict}.${v ? ` (The last row is that rerun at ${v.half_rate_mbit} Mbit/s.)` : ''}\n` +
    'Times are ms per step. transfer = gather − compute: weights out and tree nodes back, framing and decoding included, as far as the step waited for them; ' +
    "links = the busiest link's bytes per step at its rate (the least time they take); hidden = 1 − transfer ÷ links, the share of it overlap with compute hid; broadcast is only handing the " +
    "weights to the transport. busiest link = the machine whose link carried the most bytes in one direction per step, × the model's fp32 size; " +
    "CPU busy = share of this machine's cores busy over the measured steps (every simulated machine shares them: near 100% the CPU sets the pace); " +
    "shards = shard reducers (1: the coordinator reduced in process; N: one `gradfleet shard` on each worker's machine). efficiency = samples/s ÷ (workers × micro-batch ÷ synthetic time). MB are 10^6 bytes per step through the link of " +
    `the coordinator's machine, worker 1's${nats ? " and the NATS server's" : ''} (interface counters, headers included), read as the last warm-up step's ` +
    "and the last step's tree nodes were all in and before their new weights went out, when nothing of the cluster is on the wire" +
    `${loud > 0 ? ` (${loud} of ${2 * allRows.length} reads came after the weights began to leave: those rows may be off by part of a weights frame)` : ''}.\n` +
    (nats
      ? "repeats = chunks that arrived twice anywhere in the cluster (coordinator, workers, shard reducers) over the whole run (a NATS link resends a chunk shown lost by a later one's ack, or when no ack has made progress for its retransmission timeout, learnt from the round trips).\n"
      : '')
  );
}

export function scaleCommand(): Command {
  return new Command('scale')
    .description(
      'the data plane on a simulated cluster (root): a network namespace with a shaped link per machine, coordinator (and NATS server) ' +
        'on machines of their own, one synthetic-compute worker per machine; step time split into phases, samples/s, scaling efficiency and bytes per step per link',
    )
    .addOption(
      new Option('--workers-list <n,n,…>', 'worker counts to run, one worker per machine')
        .argParser(workerCounts)
        .default([1, 2, 4, 8], '1,2,4,8'),
    )
    .option('--steps <n>', 'measured steps per worker count (after the warm-up steps)', positiveInt, 10)
    .option(
      '--warmup <n>',
      'steps run before the measured window opens (joining, the first steps)',
      positiveInt,
      2,
    )
    .option('--model <name>', `model (${modelNames().join(', ')})`, 'mnist-cnn')
    .option(
      '--micro-batch <n>',
      'samples per micro-batch; the global batch is workers × this (one micro-batch per worker)',
      positiveInt,
      32,
    )
    .option('--link-mbit <n>', "every machine's link rate, each direction, Mbit/s", positiveNumber, 1000)
    .option(
      '--link-delay-ms <ms>',
      "one-way delay added on each machine's outgoing side (needs the kernel's netem)",
      nonNegativeNumber,
    )
    .addOption(
      new Option(
        '--transport <name>',
        'ws: workers connect to the coordinator; nats: everyone meets on a NATS server of its own machine',
      )
        .argParser(oneOf(SCALE_TRANSPORTS))
        .default('ws'),
    )
    .addOption(
      new Option(
        '--nats-topology <where>',
        'with --transport nats: central (one server on a machine of its own, every byte through its link) or per-machine (a server on every machine, clustered by routes, each process on its own)',
      )
        .argParser(oneOf(NATS_TOPOLOGIES))
        .default('central'),
    )
    .option('--wire <dtype>', 'payload dtype of gradients and weights: fp32, fp16 or bf16', wireDtype, 'f32')
    .option(
      '--synthetic-ms <ms>',
      "each micro-batch's compute time (a wait: the workers use no CPU for it)",
      positiveNumber,
      DEFAULT_SYNTHETIC_MS,
    )
    .option(
      '--bucket-mb <MB>',
      "the coordinator's --bucket-mb: gradients leave in buckets of about MB megabytes as backward makes them final (0: each node whole, after compute)",
      nonNegativeNumber,
      0,
    )
    .option(
      '--local-steps <h>',
      'rounds of local steps instead of synchronous steps: each step of a row is a round of --replicas replicas × H inner steps of one micro-batch each',
      positiveInt,
    )
    .option('--replicas <k>', 'replicas per round with --local-steps', positiveInt)
    .option(
      '--validate-workers <n>',
      'the worker count rerun at half the link rate to check the link, not the CPU, is the limit (default: the largest)',
      positiveInt,
    )
    .option('--no-validate', 'skip that rerun')
    .addOption(
      new Option(
        '--shards <list>',
        'where reduce and Adam run, each listed mode per worker count: none (the coordinator, S = 1) or N (a shard reducer on every worker machine, S = workers)',
      )
        .argParser(shardings)
        .default(['none'], 'none'),
    )
    .option('--json', 'print the report as one JSON object')
    .action(async (flags: ScaleFlags) => {
      const log = createLogger('bench');
      // The links are sampled when the coordinator's step-end line reaches this process: on a loaded
      // machine a normal-priority wake-up can lag 20 ms, 2.5 MB at 1 Gbit/s. Root may raise its own.
      try {
        setPriority(-10);
      } catch {
        // Only root may: without it the bench runs as well, its samples a little less punctual.
        log.debug("could not raise this process's priority: the links' samples may lag on a busy machine");
      }
      const report = await benchmarkScale({
        workersList: flags.workersList,
        steps: flags.steps,
        warmup: flags.warmup,
        model: getModel(flags.model).name,
        microBatch: flags.microBatch,
        link: { mbit: flags.linkMbit, delayMs: flags.linkDelayMs },
        transport: flags.transport,
        wire: flags.wire,
        syntheticMs: flags.syntheticMs,
        bucketMb: flags.bucketMb,
        natsTopology: flags.natsTopology,
        localSteps: localStepsPair(flags),
        shardings: flags.shards,
        validateWorkers: flags.validate ? (flags.validateWorkers ?? Math.max(...flags.workersList)) : null,
        onRun: ({ workers, shards, maxSteps, mbit }) =>
          log.info(
            { workers, shards, max_steps: maxSteps, link_mbit: mbit },
            `${workers} worker(s), ${shards} shard(s), ${maxSteps} steps at ${mbit} Mbit/s`,
          ),
      }).catch((err: unknown) => {
        // Ctrl-C stopped the cluster's processes, which is why the run failed: say nothing more, exit as
        // interrupted.
        const signal = interruptedBy();
        if (signal) process.exit(SIGNAL_EXIT_CODES[signal]);
        throw err;
      });
      if (flags.json) printJson(report);
      else process.stdout.write(formatScaleReport(report));
    });
}
