/**
 * `gradfleet bench scale` on a real simulated cluster (network namespaces, veth, a bridge, tbf):
 * its byte counts are what the protocol sends, its runs train the same weights as loopback, and it
 * leaves nothing behind, whether it finishes, fails or is interrupted. Root only: namespaces need it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeFrame } from '../../protocol/codec.js';
import type { Message } from '../../protocol/messages.js';
import { SimNet } from '../../bench/simnet/simnet.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { bin, expectOk, run, start, tempDir } from '../helpers/gradfleet.js';
import { until } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot)
  console.log(
    'test/bench/scale.test.ts: skipped: not root (bench scale creates network namespaces, which needs root)',
  );

/**
 * Ethernet (14) + IPv4 (20) + TCP with the timestamp option Linux uses by default (32): every packet's
 * headers.
 */
const HEADER_BYTES_PER_PACKET = 66;

/** RFC 6455: 2 bytes, then a 16- or 64-bit extended length, then the 4-byte mask on client frames. */
const wsFrameBytes = (payload: number, fromClient: boolean) =>
  payload + 2 + (payload < 126 ? 0 : payload < 65_536 ? 2 : 8) + (fromClient ? 4 : 0);

/**
 * What one step of a one-worker ws run puts on the coordinator's link, from the protocol's own
 * encoder: the new weights and the next assignment out, the worker's confirmation that it holds
 * the weights and its tree node (the whole batch's root, one micro-batch) in. Header fields take their values
 * from a mid-run step; msgpack's
 * variable-length integers move that by a few bytes at most.
 */
function protocolBytesPerStep(model: string, microBatch: number): number {
  const values = paramLayout(getModel(model)).size;
  const payload = new Float32Array(values);
  const frame = (m: Message, p?: Float32Array) => encodeFrame(m, p).length;
  const weights = frame({ type: 'weights', version: 3, payloadValues: values }, payload);
  const assign = frame({
    type: 'assign',
    step: 3,
    epoch: 0,
    batchStart: 3 * microBatch,
    batchSamples: microBatch,
    weightsVersion: 3,
    first: 0,
    count: 1,
  });
  const contribution = frame(
    {
      type: 'contribution',
      step: 3,
      level: 0,
      index: 0,
      lossSum: 73.68272297580961,
      correct: 3,
      samples: microBatch,
      computeSeconds: 0.0501234,
      payloadValues: values,
    },
    payload,
  );
  const holding = frame({ type: 'holding', version: 3 });
  return (
    wsFrameBytes(weights, false) +
    wsFrameBytes(holding, true) +
    wsFrameBytes(assign, false) +
    wsFrameBytes(contribution, true)
  );
}

function namespaces(prefix: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(`${prefix}-`));
}

/**
 * Processes whose command line names the run (workers' ids and NATS subjects carry the prefix, the
 * coordinator's --host the subnet).
 */
function processesOf(prefix: string, subnetBase: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue; // exited meanwhile
    }
    if (cmdline.includes(prefix) || cmdline.includes(`${subnetBase}.`)) found.push(`${pid}: ${cmdline}`);
  }
  return found;
}

/**
 * The netem qdisc, which --link-delay-ms needs: some kernels (this project's CI machine's among them) lack
 * it.
 */
function kernelHasNetem(): boolean {
  if (!isRoot) return false;
  const ns = `gfnetem${process.pid.toString(16)}`;
  try {
    execFileSync('ip', ['netns', 'add', ns]);
    return (
      spawnSync('ip', [
        'netns',
        'exec',
        ns,
        'tc',
        'qdisc',
        'add',
        'dev',
        'lo',
        'root',
        'netem',
        'delay',
        '1ms',
      ]).status === 0
    );
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

/** Decided once: exactly one of the two --link-delay-ms tests runs as root, whichever this kernel allows. */
const netem = kernelHasNetem();
if (isRoot)
  console.log(
    netem
      ? 'test/bench/scale.test.ts: this kernel has netem: the --link-delay-ms test runs, the no-netem refusal test is skipped'
      : 'test/bench/scale.test.ts: this kernel has no netem qdisc (sch_netem): the no-netem refusal test runs, the --link-delay-ms test is skipped',
  );

/**
 * Milliseconds from a TCP connect from machine `from` to machine `to` until it is established (SYN out, SYN-ACK
 * back: one round trip), the least of `tries`.
 */
async function connectRttMs(net: SimNet, from: string, to: string, tries = 5): Promise<number> {
  const [a, b] = [net.machine(from), net.machine(to)];
  const server = net.spawn(to, process.execPath, [
    '-e',
    `require('net').createServer((s) => s.end()).listen(5001, '${b.address}', () => console.log('up'))`,
  ]);
  try {
    await new Promise((resolve) => server.stdout!.once('data', resolve));
    const out = execFileSync(
      'ip',
      [
        'netns',
        'exec',
        a.namespace,
        process.execPath,
        '-e',
        `const net = require('net'); const rtts = []; (function one() { const t = process.hrtime.bigint(); const s = net.connect(5001, '${b.address}', () => { rtts.push(Number(process.hrtime.bigint() - t) / 1e6); s.destroy(); if (rtts.length < ${tries}) one(); else console.log(Math.min(...rtts)); }); })()`,
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    return Number(out.trim());
  } finally {
    server.kill('SIGKILL');
  }
}

const dir = tempDir();
const quick = [
  'bench',
  'scale',
  '--model',
  'mnist-small',
  '--workers-list',
  '1',
  '--synthetic-ms',
  '50',
  '--no-validate',
];

/** The same run as a simulated cluster's, on loopback: one synthetic worker of `quick`'s 50 ms. */
const onLoopback = async (name: string, ...geometry: string[]) =>
  expectOk(
    await run([
      'train',
      ...['--model', 'mnist-small', '--backend', 'synthetic', '--synthetic-ms', '50', '--workers', '1'],
      ...geometry,
      ...['--out', `${dir}/${name}`, '--json'],
    ]),
  );

/** Two worker machines on 50 Mbit/s links, 4 measured steps, as JSON. */
const twoMachines = [
  ...quick.map((a) => (a === '1' ? '2' : a)),
  '--link-mbit',
  '50',
  '--warmup',
  '1',
  '--steps',
  '4',
  '--json',
];

describe.skipIf(!isRoot)('gradfleet bench scale (root)', () => {
  it("2 machines at 20 Mbit/s: the coordinator's link carries the protocol's bytes per step, the weights match loopback, nothing is left behind", async () => {
    const report = expectOk(
      await run([...quick, '--link-mbit', '20', '--warmup', '1', '--steps', '6', '--json']),
    );
    expect(report).toMatchObject({
      model: 'mnist-small',
      transport: 'ws',
      wire: 'f32',
      link_mbit: 20,
      steps: 6,
      warmup_steps: 1,
      validity: null,
    });
    expect(report.prefix).toMatch(/^gf[0-9a-f]+$/);
    expect(report.subnet).toMatch(/^10\.\d+\.\d+\.0\/24$/);
    const [row] = report.rows;
    expect(row).toMatchObject({ workers: 1, batch: 32, link_mbit: 20 });

    const expected = protocolBytesPerStep('mnist-small', 32);
    const link = row.coordinator;
    const measured = link.in_bytes + link.out_bytes;
    const tcpPayload = measured - HEADER_BYTES_PER_PACKET * (link.in_packets + link.out_packets);
    // Headers only add bytes: the interface carries a little more than the frames.
    expect(measured).toBeGreaterThan(expected);
    expect(measured).toBeLessThan(expected * 1.1);
    // Less the headers of every packet it counted, it carried the frames, within 5% (we see ~0.1%).
    expect(Math.abs(tcpPayload - expected) / expected).toBeLessThan(0.05);
    // The one worker's link carries the same step, seen from the other end.
    expect(Math.abs(row.worker.in_bytes - link.out_bytes) / link.out_bytes).toBeLessThan(0.05);
    // The timed steps move no dataset: a 47 MB training set would be 15 MB a step here.
    expect(measured).toBeLessThan(1e6);

    // The same 7 steps of the same run on loopback: the simulated network changes nothing but time.
    const loopback = await onLoopback(
      'loopback',
      '--batch-size',
      '32',
      '--micro-batch',
      '32',
      '--max-steps',
      '7',
    );
    expect(loopback.steps).toBe(7);
    expect(row.weights_sha256).toBe(loopback.weights_sha256);

    expect(namespaces(report.prefix)).toEqual([]);
    expect(processesOf(report.prefix, report.subnet.split('.').slice(0, 3).join('.'))).toEqual([]);
  }, 60_000);

  it("--shards none,N: one shard per worker machine takes the gradients off the coordinator's link, same weights", async () => {
    const report = expectOk(await run([...twoMachines, '--shards', 'none,N']));
    const [whole, sharded] = report.rows;
    expect(whole).toMatchObject({ workers: 2, shards: 1 });
    expect(sharded).toMatchObject({ workers: 2, shards: 2 });
    expect(sharded.weights_sha256).toBe(whole.weights_sha256);
    const bytes = (t: { in_bytes: number; out_bytes: number }) => t.in_bytes + t.out_bytes;
    // Unsharded, every gradient and every weights copy crosses the coordinator's link; sharded, only headers
    // and losses.
    expect(whole.busiest.machine).toBe('coordinator');
    expect(bytes(sharded.coordinator)).toBeLessThan(0.05 * bytes(whole.coordinator));
    // Each worker machine carries its slice's share both ways: about one model per direction for 2 machines.
    expect(sharded.busiest.machine).toMatch(/^worker-/);
    expect(sharded.busiest.x_model).toBeLessThan(whole.busiest.x_model);
    for (const row of report.rows) {
      expect(row.host_cpu_busy).toBeGreaterThan(0);
      expect(row.host_cpu_busy).toBeLessThanOrEqual(1);
    }
  }, 90_000);

  it('--transport nats --nats-topology per-machine: a server on every machine, each link carrying about what it carries over ws, the same weights', async () => {
    const sharded = [...twoMachines, '--shards', 'N'];
    const ws = expectOk(await run(sharded));
    const nats = expectOk(await run([...sharded, '--transport', 'nats', '--nats-topology', 'per-machine']));
    expect(nats.nats_topology).toBe('per-machine');
    const [wsRow] = ws.rows;
    const [natsRow] = nats.rows;
    expect(natsRow.nats_server).toBeNull();
    expect(natsRow.weights_sha256).toBe(wsRow.weights_sha256);
    // No central server to cross twice: the busiest machine is a worker's, within a tenth of ws's bytes
    // (NATS adds its chunk headers and acks).
    expect(natsRow.busiest.machine).toMatch(/^worker-/);
    expect(natsRow.busiest.bytes).toBeLessThan(1.1 * wsRow.busiest.bytes);
    expect(natsRow.busiest.bytes).toBeGreaterThan(0.9 * wsRow.busiest.bytes);
  }, 120_000);

  it('--local-steps 3 --replicas 4: a step is a round of 4 replicas × 3 inner steps, one exchange per round, the weights of loopback', async () => {
    const sync = expectOk(await run(twoMachines));
    const local = expectOk(await run([...twoMachines, '--local-steps', '3', '--replicas', '4']));
    expect(local.local_steps).toEqual({ steps: 3, replicas: 4 });
    const [syncRow] = sync.rows;
    const [row] = local.rows;
    // Each machine computes 2 replicas of 3 inner steps a round, 50 ms each.
    expect(row).toMatchObject({ workers: 2, batch: 4 * 3 * 32 });
    expect(row.compute_ms).toBeGreaterThanOrEqual(6 * 50);
    // One exchange of the model per round, as a synchronous step has per step: 12× the samples per byte.
    const bytes = (r: typeof row) => r.coordinator.in_bytes + r.coordinator.out_bytes;
    expect(Math.abs(bytes(row) - bytes(syncRow)) / bytes(syncRow)).toBeLessThan(0.05);
    const loopback = await onLoopback(
      'loopback-local',
      ...['--batch-size', '32', '--local-steps', '3', '--replicas', '4', '--max-steps', '5'],
    );
    expect(row.weights_sha256).toBe(loopback.weights_sha256);
  }, 120_000);

  it.each(['SIGINT', 'SIGTERM'] as const)(
    '%s in the middle of a run removes the namespaces and stops every process of the cluster',
    async (signal) => {
      const bench = start([...quick, '--steps', '500']);
      const prefix = `gf${bench.child.pid!.toString(16)}`;
      await bench.waitFor(/1 worker\(s\), 1 shard\(s\), 502 steps/);
      // The cluster is up and its coordinator and worker are running inside it.
      const pids = await until(
        'the coordinator and worker inside their namespaces',
        async () => {
          const inside = namespaces(prefix).flatMap((ns) =>
            execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean),
          );
          return inside.length >= 2 && inside;
        },
        20_000,
      );
      bench.child.kill(signal);
      const done = await bench.done;
      expect(done.status, done.stderr.slice(-3000)).toBe(signal === 'SIGINT' ? 130 : 143);
      expect(done.stderr).toContain(`${signal}: removing the simulated cluster`);
      expect(namespaces(prefix)).toEqual([]);
      for (const pid of pids) expect(() => process.kill(Number(pid), 0)).toThrow();
    },
    60_000,
  );

  it.runIf(netem)(
    '--link-delay-ms 100: netem holds every packet 100 ms each way (a round trip between machines takes ≥ 200 ms), every step pays it, the weights are unchanged',
    async () => {
      const delay = 100;
      // The simulated network alone: a TCP handshake between two machines crosses each one's delayed egress.
      const net = await SimNet.create(['a', 'b'], { mbit: 100, delayMs: delay }, process.pid + 0x200000);
      let rtt: number;
      try {
        rtt = await connectRttMs(net, 'a', 'b');
      } finally {
        await net.destroy();
      }
      console.log(`netem: connect round trip ${rtt.toFixed(1)} ms with ${delay} ms each way`);
      expect(rtt).toBeGreaterThanOrEqual(2 * delay);

      // The benchmark with the same delay: a step needs the weights out and the node back, at least one round
      // trip; on a free veth link a step is the 50 ms of synthetic compute and a few ms.
      const report = expectOk(
        await run([
          ...quick,
          '--link-mbit',
          '100',
          '--link-delay-ms',
          String(delay),
          '--warmup',
          '1',
          '--steps',
          '3',
          '--json',
        ]),
      );
      expect(report.link_delay_ms).toBe(delay);
      const [row] = report.rows;
      expect(row.step_ms).toBeGreaterThanOrEqual(2 * delay);
      // The same 4 steps on loopback: the delay changes nothing but time.
      const loopback = expectOk(
        await run([
          'train',
          '--model',
          'mnist-small',
          '--backend',
          'synthetic',
          '--synthetic-ms',
          '50',
          '--workers',
          '1',
          '--batch-size',
          '32',
          '--micro-batch',
          '32',
          '--max-steps',
          '4',
          '--out',
          `${dir}/loopback-4`,
          '--json',
        ]),
      );
      expect(row.weights_sha256).toBe(loopback.weights_sha256);
      expect(namespaces(report.prefix)).toEqual([]);
    },
    60_000,
  );

  it.skipIf(netem)(
    'a failure after the namespaces exist (--link-delay-ms without netem) still removes them, and says why',
    async () => {
      const bench = start([...quick, '--link-delay-ms', '5']);
      const prefix = `gf${bench.child.pid!.toString(16)}`;
      const done = await bench.done;
      expect(done.status).toBe(1);
      expect(done.stderr).toMatch(/no netem qdisc.*--link-delay-ms cannot be simulated here/);
      expect(namespaces(prefix)).toEqual([]);
    },
    30_000,
  );

  it('refuses clearly when not run as root', () => {
    const r = spawnSync(
      'setpriv',
      ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, bin, ...quick],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bench scale needs root: it creates network namespaces/);
  });
});
