/**
 * `gradfleet bench scale`: the data plane on a simulated cluster. One machine (network namespace,
 * shaped link) for the coordinator, one for the NATS server with --transport nats, one per worker;
 * the real CLI runs in each (`gradfleet coordinator` / `gradfleet worker --backend synthetic`), so
 * the step's communication is what a cluster with links of that speed would see, and compute is a
 * timer that takes no CPU.
 *
 * How each figure is measured, per worker count: one run of `warmup + steps` steps. The coordinator
 * runs at debug level and logs a line when a step's tree nodes have all arrived, and one when the
 * step ends (coordinator/step-log.ts). The network is quiet between the two until the new weights go
 * out: every worker held this step's weights before it could send its node, and every node is in.
 * The benchmark reads every link's counters at the last warm-up step's line and at the last step's
 * (a file read of each machine's interface counters: microseconds), and checks that each read came
 * before that step's broadcast began. Bytes per step are the difference ÷ steps, exactly the
 * weights out and the nodes back of the measured steps: joining, any dataset streaming (workers
 * holding the data load it themselves), the first steps and the final evaluation, checkpoint and
 * shutdown lie outside the window. Phases are the means of the measured steps' lines.
 *
 * transfer = gather − compute, where compute is the slowest worker's reported compute (the synthetic
 * wait): moving the weights to the workers (sent at the end of the previous step, they travel
 * during this step's gather) and the tree nodes back, with the framing and decoding on both sides.
 * broadcast is only the coordinator handing the new weights to the transport (encoding; for NATS,
 * publishing into its client's buffer); their time on the wire lands in the next step's transfer.
 *
 * Validity: one worker count is rerun at half the link rate. Where the link is the limit, transfer
 * about doubles; under ×1.6 the CPU (2 cores shared by every simulated machine) is the limit and
 * the report says so.
 */
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { RunSummary } from '../coordinator/launch.js';
import { type StepLogLine, parseStepLogLine } from '../coordinator/step-log.js';
import type { WireDtype } from '../protocol/wire-dtype.js';
import { SYNTHETIC_BACKEND } from '../training/backends/synthetic.js';
import { paramLayout } from '../training/models/spec.js';
import { getModel } from '../training/models/zoo.js';
import { summaryOf, tail } from './child-summary.js';
import { type LinkCounters, type LinkShape, SimNet } from './simnet/simnet.js';
import { requireRoot } from './simnet/system.js';
import { onEveryExit } from './simnet/teardown.js';

const mainScript = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export const SCALE_TRANSPORTS = ['ws', 'nats'] as const;
type ScaleTransport = (typeof SCALE_TRANSPORTS)[number];

/**
 * Where NATS runs: `central`, one server on a machine of its own, through whose link every byte goes twice;
 * `per-machine`, a server on every machine (the coordinator's and each worker's), clustered by routes, each
 * process connected to its own machine's: a message crosses a route once to each server with subscribers, so
 * each machine's link carries its own traffic, as over ws.
 */
export const NATS_TOPOLOGIES = ['central', 'per-machine'] as const;
export type NatsTopology = (typeof NATS_TOPOLOGIES)[number];
const NATS_ROUTE_PORT = 6222;

/**
 * Where reduce and Adam run: `none`, on the coordinator (S = 1, in process); `N`, on one shard
 * reducer per worker machine (S = workers, `gradfleet shard` beside each worker).
 */
export const SCALE_SHARDINGS = ['none', 'N'] as const;
export type ScaleSharding = (typeof SCALE_SHARDINGS)[number];
const SHARD_PORT = 7171;

/** Transfer must grow at least this much at half the link rate for the link to be the limit. */
const LINK_BOUND_RATIO = 1.6;
const COORDINATOR_PORT = 7070;
const NATS_PORT = 4222;
/** The shipped cluster's limits (deploy/nats/cluster.conf), without its routes: today's design. */
const NATS_LIMITS = 'max_payload: 8MB\nmax_pending: 64MB\nwrite_deadline: "10s"\n';

interface ScaleLocalSteps {
  steps: number;
  replicas: number;
}

export interface ScaleOptions {
  workersList: number[];
  /** Measured steps per worker count (after the warm-up steps). */
  steps: number;
  warmup: number;
  model: string;
  microBatch: number;
  link: LinkShape;
  transport: ScaleTransport;
  wire: WireDtype;
  syntheticMs: number;
  /** --bucket-mb for the coordinator: workers send gradient buckets during backward (0: nodes whole). */
  bucketMb: number;
  /** With --transport nats: one central server, or one on every machine. */
  natsTopology: NatsTopology;
  /**
   * Rounds of local steps instead of synchronous steps (--local-steps H --replicas K): each row's step is a round
   * of K replicas × H inner steps of one micro-batch each. null: synchronous, one micro-batch per worker a step.
   */
  localSteps: ScaleLocalSteps | null;
  /** Each worker count is run once per sharding listed (S = 1 and S = N side by side). */
  shardings: ScaleSharding[];
  /** The worker count rerun at half the link rate; null: no check. */
  validateWorkers: number | null;
  /** Called as each run starts, for progress lines. */
  onRun?: (run: { workers: number; shards: number; maxSteps: number; mbit: number }) => void;
}

/** Per step, through one machine's link: in = received (rx), out = sent (tx). */
export interface LinkTraffic {
  in_bytes: number;
  out_bytes: number;
  in_packets: number;
  out_packets: number;
}

export interface ScaleRow {
  workers: number;
  /** Shard reducers (1: the coordinator reduced in process). */
  shards: number;
  batch: number;
  link_mbit: number;
  step_ms: number;
  compute_ms: number;
  transfer_ms: number;
  reduce_ms: number;
  optimizer_ms: number;
  broadcast_ms: number;
  samples_per_s: number;
  /** samples/s ÷ (workers × micro-batch ÷ synthetic seconds): against pure compute on a free network. */
  efficiency: number;
  coordinator: LinkTraffic;
  worker: LinkTraffic;
  nats_server: LinkTraffic | null;
  /**
   * The machine whose link carried the most bytes in one direction per step, and that figure ÷ the model's
   * fp32 size.
   */
  busiest: { machine: string; bytes: number; x_model: number };
  /** The busiest link's bytes per step at its rate: the least time the step's transfer takes, ms. */
  link_ms: number;
  /**
   * Share of link_ms not seen as transfer (1 − transfer ÷ link_ms, within [0, 1]): what overlap with compute hid.
   * About 0 when every byte moves after compute.
   */
  hidden_share: number;
  /**
   * How long after the coordinator logged the window's first and last gathered step the links were read, ms.
   */
  sample_lag_ms: [number, number];
  /**
   * Share of this machine's CPU time that was busy over the measured steps (all cores, /proc/stat):
   * every simulated machine shares them, so near 1 the CPU, not the links, sets the pace.
   */
  host_cpu_busy: number;
  /**
   * Whether each read came before that step's new weights started to go out (else it may hold part of a
   * weights frame).
   */
  samples_quiet: [boolean, boolean];
  weights_sha256: string;
  /**
   * Frames the coordinator rejected over the whole run, by reason. Over NATS, duplicate_chunk counts
   * chunks that arrived twice: resent because no ack made progress within the link's retransmission timeout (protocol/retransmit-timeout.ts).
   */
  rejected_frames: Record<string, number>;
  /**
   * Over NATS, chunks that arrived twice anywhere (coordinator, workers, shard reducers) over the whole run,
   * joins and warm-up included.
   */
  repeats: number;
  /** The measured steps' median and longest step, ms (step_ms is their mean). */
  step_ms_median: number;
  step_ms_max: number;
}

export interface ScaleReport {
  model: string;
  transport: ScaleTransport;
  wire: WireDtype;
  micro_batch: number;
  synthetic_ms: number;
  /** --bucket-mb the runs used (0: nodes whole). */
  bucket_mb: number;
  /** Rounds of local steps (each row's steps are rounds), or null: synchronous steps. */
  local_steps: ScaleLocalSteps | null;
  /** Over NATS, where its servers ran; null over ws. */
  nats_topology: NatsTopology | null;
  link_mbit: number;
  link_delay_ms: number;
  warmup_steps: number;
  steps: number;
  /** The run's namespace prefix and subnet (gone when the report is printed). */
  prefix: string;
  subnet: string;
  rows: ScaleRow[];
  validity: {
    workers: number;
    half_rate_mbit: number;
    transfer_ms: number;
    half_rate_transfer_ms: number;
    ratio: number;
    link_bound: boolean;
    half_rate_row: ScaleRow;
  } | null;
}

/**
 * A program on PATH, or in the sbin directories a non-login root shell may lack (Debian's nats-server is
 * /usr/sbin).
 */
function findProgram(name: string): string {
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter),
    '/usr/sbin',
    '/usr/bin',
    '/usr/local/bin',
    '/usr/local/sbin',
  ];
  for (const dir of dirs.filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  throw new Error(`${name} is not installed (Debian: apt-get install ${name}); --transport nats needs it`);
}

/** Resolves at the first line of `child`'s stderr that matches; rejects when it exits first or `ms` pass. */
function stderrLine(child: ChildProcess, pattern: RegExp, what: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`${what}: not ready after ${ms / 1000} s: ${tail(seen)}`)),
      ms,
    );
    createInterface({ input: child.stderr! }).on('line', (line) => {
      seen = `${seen.slice(-10_000)}${line}\n`;
      if (!pattern.test(line)) return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (code ${code}) before it was ready: ${tail(seen)}`));
    });
  });
}

/** A chunk that arrived twice, as a worker or shard logs it (at warn, the level they run at here). */
const REPEAT_LINE = /"reason":"duplicate_chunk"/;

/**
 * Resolves when the worker has exited cleanly; rejects with its stderr otherwise. Counts the chunks it
 * received twice into `repeats`.
 */
function workerExit(child: ChildProcess, what: string, repeats: { count: number }): Promise<void> {
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
  createInterface({ input: child.stderr! }).on('line', (line) => {
    if (REPEAT_LINE.test(line)) repeats.count++;
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${what} exited with code ${code}: ${tail(stderr).trim()}`)),
    );
  });
}

/** (to − from) ÷ steps: one step's traffic through a link. */
function perStep(from: LinkCounters, to: LinkCounters, steps: number): LinkTraffic {
  return {
    in_bytes: (to.rxBytes - from.rxBytes) / steps,
    out_bytes: (to.txBytes - from.txBytes) / steps,
    in_packets: (to.rxPackets - from.rxPackets) / steps,
    out_packets: (to.txPackets - from.txPackets) / steps,
  };
}

/** The links a row reports, read at one instant. */
interface Sample {
  step: number;
  /** When it was read (ms since the epoch), and how long after the coordinator logged the gathered step. */
  takenAt: number;
  lagMs: number;
  /** Read before the step's broadcast began: known once the step's done line arrives. */
  quiet?: boolean;
  /** Every machine's link, by machine name. */
  links: Record<string, LinkCounters>;
  cpu: HostCpu;
}

/** The host's CPU time so far, in clock ticks: busy (everything but idle and iowait) and total. */
interface HostCpu {
  busy: number;
  total: number;
}

function hostCpu(): HostCpu {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const ticks = fields.slice(0, 8).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busy: total - ticks[3] - ticks[4], total };
}

interface RunResult {
  summary: RunSummary;
  /** Chunks the workers and shard reducers received twice over the whole run. */
  repeats: number;
  /** The done lines of the measured steps, in order. */
  timed: DoneLine[];
  /** The links at the end of the last warm-up step and of the last timed step. */
  from: Sample;
  to: Sample;
}

type DoneLine = Extract<StepLogLine, { kind: 'done' }>;

const mean = (values: number[]) => values.reduce((a, v) => a + v, 0) / values.length;

class ScaleBench {
  private runs = 0;

  constructor(
    private readonly settings: ScaleOptions,
    private readonly net: SimNet,
    private readonly outRoot: string,
    private readonly machines: string[],
  ) {}

  /** The NATS arguments of a process on `machine`: it connects to its own machine's server, or the central one. */
  private transportArgs(subject: string, machine: string): string[] {
    if (this.settings.transport === 'ws') return [];
    const server = this.settings.natsTopology === 'central' ? 'nats' : machine;
    return [
      '--transport',
      'nats',
      '--nats-url',
      `nats://${this.net.machine(server).address}:${NATS_PORT}`,
      '--nats-subject',
      subject,
    ];
  }

  /** How a worker or shard on `machine` reaches the run's coordinator. */
  private joinArgs(subject: string, machine: string): string[] {
    return this.settings.transport === 'ws'
      ? ['--connect', `ws://${this.net.machine('coordinator').address}:${COORDINATOR_PORT}`]
      : this.transportArgs(subject, machine);
  }

  /**
   * The NATS server(s): one on the `nats` machine, or one on every machine, routed to the coordinator's (the
   * cluster's seed: the others learn of each other from it). Resolves once each serves and, clustered, has a
   * route.
   */
  async startNats(): Promise<void> {
    const central = this.settings.natsTopology === 'central';
    const hosts = central ? ['nats'] : this.machines;
    const seed = this.net.machine(hosts[0]).address;
    await Promise.all(
      hosts.map(async (host) => {
        const { address } = this.net.machine(host);
        const cluster = central
          ? ''
          : `cluster {\n  name: gradfleet-bench\n  listen: ${address}:${NATS_ROUTE_PORT}\n  routes: [nats-route://${seed}:${NATS_ROUTE_PORT}]\n}\n`;
        const config = join(this.outRoot, `nats-${host}.conf`);
        await writeFile(
          config,
          `server_name: ${host}\nlisten: ${address}:${NATS_PORT}\n${NATS_LIMITS}${cluster}`,
        );
        const server = this.net.spawn(host, findProgram('nats-server'), ['-c', config], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        const ready = central ? /Server is ready/ : /Route connection created/;
        await stderrLine(server, ready, `nats-server on ${host}`, 15_000);
      }),
    );
  }

  /**
   * Every reported link's counters now, `loggedAt` being when the coordinator logged that the step's nodes
   * were in.
   */
  private sample(step: number, loggedAt: number): Sample {
    const takenAt = Date.now();
    return {
      step,
      takenAt,
      lagMs: takenAt - loggedAt,
      links: Object.fromEntries(this.machines.map((m) => [m, this.net.counters(m)])),
      cpu: hostCpu(),
    };
  }

  /** A shard reducer on worker machine i (from 1), beside its worker. */
  private startShard(i: number, subject: string, repeats: { count: number }): Promise<void> {
    const { net } = this;
    const machine = net.machine(`worker-${i}`);
    const id = `${net.prefix}-s${i}`;
    const child = net.spawn(
      `worker-${i}`,
      process.execPath,
      [
        mainScript,
        'shard',
        '--id',
        id,
        '--connect-timeout',
        '60',
        '--host',
        machine.address,
        '--port',
        String(SHARD_PORT),
        // A simulated cluster's private addresses: no secret is needed there, as for its coordinator.
        '--insecure',
        ...this.joinArgs(subject, `worker-${i}`),
      ],
      { env: { ...process.env, GRADFLEET_LOG_LEVEL: 'warn' } },
    );
    return workerExit(child, `shard ${id}`, repeats);
  }

  /**
   * One run of warmup + steps steps with `workers` workers, each on its own machine, sampled at the timed
   * steps' ends.
   */
  private async run(workers: number, shards: number): Promise<RunResult> {
    const { settings, net } = this;
    const k = ++this.runs;
    const maxSteps = settings.warmup + settings.steps;
    const out = join(this.outRoot, `run-${k}`);
    const what = `coordinator (${workers} worker(s), ${maxSteps} steps)`;
    const subject = `${net.prefix}r${k}`;
    const coordinator = net.spawn(
      'coordinator',
      process.execPath,
      [
        mainScript,
        'coordinator',
        '--host',
        net.machine('coordinator').address,
        '--port',
        String(COORDINATOR_PORT),
        '--min-workers',
        String(workers),
        '--model',
        settings.model,
        ...batchArgs(settings, workers),
        '--max-steps',
        String(maxSteps),
        '--wire',
        settings.wire,
        '--out',
        out,
        '--json',
        ...this.transportArgs(subject, 'coordinator'),
        ...(shards > 1 ? ['--shards', String(shards)] : []),
        ...(settings.bucketMb > 0 ? ['--bucket-mb', String(settings.bucketMb)] : []),
        // No secret (unsealed frames, today's bytes): its address exists only inside this run's namespaces.
        '--insecure',
      ],
      { env: { ...process.env, GRADFLEET_LOG_LEVEL: 'debug' } },
    );
    const summary = summaryOf(coordinator, what);
    summary.catch(() => {}); // awaited below; a failure before then must not go unhandled
    const samples: Partial<Pick<RunResult, 'from' | 'to'>> = {};
    const timed: DoneLine[] = [];
    createInterface({ input: coordinator.stderr! }).on('line', (line) => {
      const entry = parseStepLogLine(line);
      if (!entry) return;
      if (entry.kind === 'gathered') {
        // Read here, as the line arrives: the network is quiet until this step's broadcast.
        if (entry.step === settings.warmup - 1) samples.from = this.sample(entry.step, entry.time);
        if (entry.step === maxSteps - 1) samples.to = this.sample(entry.step, entry.time);
        return;
      }
      if (entry.step >= settings.warmup) timed.push(entry);
      for (const s of [samples.from, samples.to]) {
        if (s?.step === entry.step) s.quiet = s.takenAt <= entry.time - 1000 * entry.seconds.broadcast;
      }
    });
    const timer = setTimeout(() => coordinator.kill('SIGKILL'), 120_000 + maxSteps * 30_000);
    const repeats = { count: 0 };
    try {
      await stderrLine(coordinator, /coordinator listening on/, what, 60_000);
      const shardExits =
        shards > 1 ? Array.from({ length: shards }, (_, i) => this.startShard(i + 1, subject, repeats)) : [];
      shardExits.forEach((e) => e.catch(() => {})); // awaited below with the workers'
      // Workers run with --no-reconnect: one turned away while the shards join would not come back.
      if (shards > 1)
        await stderrLine(coordinator, /shard reducer\(s\) serving: workers may join/, what, 60_000);
      const exits = Array.from({ length: workers }, (_, i) => {
        const id = `${net.prefix}-w${i + 1}`;
        const child = net.spawn(
          `worker-${i + 1}`,
          process.execPath,
          [
            mainScript,
            'worker',
            '--id',
            id,
            '--backend',
            SYNTHETIC_BACKEND,
            '--synthetic-ms',
            String(settings.syntheticMs),
            '--no-reconnect',
            '--connect-timeout',
            '60',
            ...this.joinArgs(subject, `worker-${i + 1}`),
          ],
          { env: { ...process.env, GRADFLEET_LOG_LEVEL: 'warn' } },
        );
        return workerExit(child, `worker ${id}`, repeats);
      });
      const workersDone = Promise.all([...exits, ...shardExits]);
      // awaited below, after the summary; a worker failing first must not go unhandled
      workersDone.catch(() => {});
      const result = await summary;
      await workersDone;
      if (result.steps !== maxSteps || result.workers !== workers || result.backend !== SYNTHETIC_BACKEND) {
        throw new Error(
          `${what}: ran ${result.steps} steps with ${result.workers} ${result.backend} worker(s)`,
        );
      }
      if (!samples.from || !samples.to || timed.length !== settings.steps) {
        throw new Error(
          `${what}: logged ${timed.length} of ${settings.steps} timed steps' ends (is the coordinator's debug log reaching the benchmark?)`,
        );
      }
      return { summary: result, repeats: repeats.count, timed, from: samples.from, to: samples.to };
    } catch (err) {
      if (coordinator.exitCode === null) coordinator.kill('SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
      // Checkpoints and the exported model: ~60 MB a run for mnist-cnn, of no use here.
      await rm(out, { recursive: true, force: true });
    }
  }

  /** The steady-state row for `workers` (and `shards`) at `mbit`. */
  async row(workers: number, shards: number, mbit: number): Promise<ScaleRow> {
    const { settings } = this;
    settings.onRun?.({ workers, shards, maxSteps: settings.warmup + settings.steps, mbit });
    const { summary, repeats, timed, from, to } = await this.run(workers, shards);
    const stepsMs = timed.map((s) => 1000 * s.seconds.total).sort((a, b) => a - b);
    const traffic = (machine: string) => perStep(from.links[machine], to.links[machine], settings.steps);
    const modelBytes = 4 * paramLayout(getModel(settings.model)).size;
    const busiest = this.machines
      .filter(
        (m) => m in from.links && (m === 'coordinator' || m === 'nats' || Number(m.split('-')[1]) <= workers),
      )
      .map((machine) => ({ machine, bytes: Math.max(traffic(machine).in_bytes, traffic(machine).out_bytes) }))
      .reduce((a, b) => (b.bytes > a.bytes ? b : a));
    const phase = (pick: (s: DoneLine) => number) => 1000 * mean(timed.map(pick));
    const stepMs = phase((s) => s.seconds.total);
    const computeMs = phase((s) => s.compute_s);
    const local = settings.localSteps;
    const batch = local ? local.replicas * local.steps * settings.microBatch : workers * settings.microBatch;
    const samplesPerS = (1000 * batch) / stepMs;
    const transferMs = Math.max(0, phase((s) => s.seconds.gather) - computeMs);
    const linkMs = (busiest.bytes * 8) / (mbit * 1000);
    return {
      workers,
      shards,
      batch,
      link_mbit: mbit,
      busiest: { ...busiest, x_model: busiest.bytes / modelBytes },
      step_ms: stepMs,
      compute_ms: computeMs,
      link_ms: linkMs,
      hidden_share: Math.min(1, Math.max(0, 1 - transferMs / Math.max(1e-9, linkMs))),
      transfer_ms: transferMs,
      reduce_ms: phase((s) => s.seconds.reduce),
      optimizer_ms: phase((s) => s.seconds.optimizer),
      broadcast_ms: phase((s) => s.seconds.broadcast),
      samples_per_s: samplesPerS,
      // Each worker computes one micro-batch per --synthetic-ms, synchronous or in inner steps.
      efficiency: samplesPerS / ((workers * settings.microBatch) / (settings.syntheticMs / 1000)),
      coordinator: traffic('coordinator'),
      worker: traffic('worker-1'),
      nats_server:
        settings.transport === 'nats' && settings.natsTopology === 'central' ? traffic('nats') : null,
      sample_lag_ms: [from.lagMs, to.lagMs],
      host_cpu_busy: (to.cpu.busy - from.cpu.busy) / Math.max(1, to.cpu.total - from.cpu.total),
      samples_quiet: [from.quiet === true, to.quiet === true],
      weights_sha256: summary.weights_sha256,
      rejected_frames: summary.rejected_frames,
      repeats: repeats + (summary.rejected_frames.duplicate_chunk ?? 0),
      step_ms_median: stepsMs[Math.floor((stepsMs.length - 1) / 2)],
      step_ms_max: stepsMs[stepsMs.length - 1],
    };
  }
}

/**
 * The coordinator's batch flags: one micro-batch per worker a step, or a round of local steps whose inner
 * batch is the micro-batch (each inner step then costs one --synthetic-ms).
 */
function batchArgs(settings: ScaleOptions, workers: number): string[] {
  const local = settings.localSteps;
  return local
    ? [
        '--batch-size',
        String(settings.microBatch),
        '--local-steps',
        String(local.steps),
        '--replicas',
        String(local.replicas),
      ]
    : ['--batch-size', String(workers * settings.microBatch), '--micro-batch', String(settings.microBatch)];
}

function validateScaleOptions(settings: ScaleOptions): void {
  if (settings.workersList.length === 0) throw new Error('--workers-list needs at least one worker count');
  if (settings.validateWorkers !== null && !settings.workersList.includes(settings.validateWorkers)) {
    throw new Error(
      `--validate-workers ${settings.validateWorkers} is not in --workers-list (${settings.workersList.join(',')})`,
    );
  }
  if (!(settings.warmup >= 1))
    throw new Error("--warmup must be at least 1: the window opens as the last warm-up step's nodes are in");
  if (!(settings.syntheticMs > 0))
    throw new Error('--synthetic-ms must be above 0: efficiency is measured against it');
  if (settings.shardings.length === 0) throw new Error('--shards needs at least one of none, N');
}

export async function benchmarkScale(settings: ScaleOptions): Promise<ScaleReport> {
  validateScaleOptions(settings);
  requireRoot('bench scale');
  const most = Math.max(...settings.workersList);
  const machines = [
    'coordinator',
    ...(settings.transport === 'nats' && settings.natsTopology === 'central' ? ['nats'] : []),
    ...Array.from({ length: most }, (_, i) => `worker-${i + 1}`),
  ];
  const outRoot = await mkdtemp(join(tmpdir(), 'gradfleet-scale-'));
  const removeOutRoot = onEveryExit({
    run: () => rm(outRoot, { recursive: true, force: true }),
    runSync: () => rmSync(outRoot, { recursive: true, force: true }),
  });
  let net: SimNet | undefined;
  try {
    net = await SimNet.create(machines, settings.link);
    const bench = new ScaleBench(settings, net, outRoot, machines);
    if (settings.transport === 'nats') await bench.startNats();
    const rows: ScaleRow[] = [];
    const shardsFor = (sharding: ScaleSharding, workers: number) => (sharding === 'N' ? workers : 1);
    for (const workers of settings.workersList)
      for (const sharding of settings.shardings)
        rows.push(await bench.row(workers, shardsFor(sharding, workers), settings.link.mbit));
    let validity: ScaleReport['validity'] = null;
    if (settings.validateWorkers !== null) {
      const half = settings.link.mbit / 2;
      await net.shape({ ...settings.link, mbit: half });
      // The last sharding listed at that worker count: the design under test.
      const shards = shardsFor(settings.shardings[settings.shardings.length - 1], settings.validateWorkers);
      const halfRow = await bench.row(settings.validateWorkers, shards, half);
      const full = rows.find((r) => r.workers === settings.validateWorkers && r.shards === shards)!;
      const ratio = halfRow.transfer_ms / Math.max(1e-9, full.transfer_ms);
      validity = {
        workers: settings.validateWorkers,
        half_rate_mbit: half,
        transfer_ms: full.transfer_ms,
        half_rate_transfer_ms: halfRow.transfer_ms,
        ratio,
        link_bound: ratio >= LINK_BOUND_RATIO,
        half_rate_row: halfRow,
      };
    }
    return {
      model: settings.model,
      transport: settings.transport,
      wire: settings.wire,
      micro_batch: settings.microBatch,
      synthetic_ms: settings.syntheticMs,
      bucket_mb: settings.bucketMb,
      local_steps: settings.localSteps,
      nats_topology: settings.transport === 'nats' ? settings.natsTopology : null,
      link_mbit: settings.link.mbit,
      link_delay_ms: settings.link.delayMs ?? 0,
      warmup_steps: settings.warmup,
      steps: settings.steps,
      prefix: net.prefix,
      subnet: net.subnet.cidr,
      rows,
      validity,
    };
  } finally {
    await net?.destroy();
    await removeOutRoot();
  }
}
