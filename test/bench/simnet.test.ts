/**
 * The simulated cluster's parts: per-run addresses, counter parsing, the coordinator's step line; and (root)
 * counters that are the interface's.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { overlaps, pickSubnet, runPrefix } from '../../bench/simnet/addressing.js';
import { SimNet, parseNetDev } from '../../bench/simnet/simnet.js';
import { STEP_DONE_MSG, STEP_GATHERED_MSG, parseStepLogLine } from '../../coordinator/step-log.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot)
  console.log(
    'test/bench/simnet.test.ts: the counters test is skipped: not root (it creates network namespaces)',
  );

describe('addresses private to a run', () => {
  it("names the run after its pid, and picks a 10.x.y.0/24 that overlaps none of the host's ranges", () => {
    expect(runPrefix(0x1a2b)).toBe('gf1a2b');
    expect(overlaps('10.77.3.0/24', '10.77.3.9')).toBe(true);
    expect(overlaps('10.77.3.0/24', '10.77.4.0/24')).toBe(false);
    expect(overlaps('10.64.0.0/10', '10.100.7.0/24')).toBe(true);
    expect(overlaps('192.168.1.0/24', '10.100.7.0/24')).toBe(false);
    const free = pickSubnet(1234, []);
    expect(free.cidr).toMatch(/^10\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.0\/24$/);
    expect(pickSubnet(1234, [])).toEqual(free); // the same pid, the same range
    const taken = pickSubnet(1234, [free.cidr, '172.17.0.1/16']);
    expect(taken.cidr).not.toBe(free.cidr);
    expect(overlaps(taken.cidr, free.cidr)).toBe(false);
    // A host route over all of 10.64/10 leaves no candidate: say so rather than collide.
    expect(() => pickSubnet(1, ['10.64.0.0/10'])).toThrow(/no 10\.x\.y\.0\/24 is free/);
  });
});

describe('reading counters and step ends', () => {
  it("parses an interface's line of /proc/<pid>/net/dev", () => {
    const text =
      'Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n' +
      '    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n' +
      '  eth0: 51254490   19001    0    0    0     0          0         0   548432    8308    0    0    0     0       0          0\n';
    expect(parseNetDev(text, 'eth0')).toEqual({
      rxBytes: 51_254_490,
      rxPackets: 19_001,
      txBytes: 548_432,
      txPackets: 8308,
    });
    expect(() => parseNetDev(text, 'eth1')).toThrow(/no counters for eth1/);
  });

  it("recognises the coordinator's step lines (nodes all in; step done) and nothing else", () => {
    const done = {
      level: 20,
      time: 1700000000123,
      msg: STEP_DONE_MSG,
      step: 3,
      compute_s: 0.5,
      seconds: { total: 1, gather: 0.9, reduce: 0.05, optimizer: 0.03, broadcast: 0.02 },
    };
    expect(parseStepLogLine(JSON.stringify(done))).toMatchObject({
      kind: 'done',
      step: 3,
      compute_s: 0.5,
      time: 1700000000123,
      seconds: { gather: 0.9 },
    });
    expect(
      parseStepLogLine(JSON.stringify({ level: 20, time: 1700000000100, msg: STEP_GATHERED_MSG, step: 3 })),
    ).toEqual({ kind: 'gathered', step: 3, time: 1700000000100 });
    expect(parseStepLogLine(JSON.stringify({ level: 30, msg: 'epoch 1 256/60000 samples' }))).toBeUndefined();
    expect(parseStepLogLine(`${STEP_DONE_MSG} but not JSON`)).toBeUndefined();
    expect(parseStepLogLine(JSON.stringify({ ...done, step: '3' }))).toBeUndefined();
    expect(parseStepLogLine(JSON.stringify({ ...done, seconds: undefined }))).toBeUndefined();
  });
});

describe.skipIf(!isRoot)('SimNet (root)', () => {
  it("reads each machine's counters as /sys/class/net/eth0/statistics shows them inside its namespace, and counts what crosses the link", async () => {
    const net = await SimNet.create(['a', 'b'], { mbit: 100 }, process.pid + 0x100000);
    try {
      const sysfs = (ns: string) =>
        execFileSync(
          'ip',
          [
            'netns',
            'exec',
            ns,
            'cat',
            ...['rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets'].map(
              (c) => `/sys/class/net/eth0/statistics/${c}`,
            ),
          ],
          { encoding: 'utf8' },
        )
          .trim()
          .split(/\s+/)
          .map(Number);
      const [a, b] = net.machines;
      // 1 MB over TCP from a to b: b listens, a connects and sends it.
      const server = net.spawn('b', process.execPath, [
        '-e',
        `require('net').createServer((s) => s.resume().on('end', () => process.exit())).listen(5000, '${b.address}', () => console.log('up'))`,
      ]);
      await new Promise((resolve) => server.stdout!.once('data', resolve));
      const before = net.counters('a');
      execFileSync('ip', [
        'netns',
        'exec',
        a.namespace,
        process.execPath,
        '-e',
        `const s = require('net').connect(5000, '${b.address}', () => s.end(Buffer.alloc(1e6)))`,
      ]);
      await new Promise((resolve) => server.once('exit', resolve));
      // The server's last ACK can still be arriving while we read, so the counters are bracketed by two
      // reads of sysfs rather than compared with one.
      const early = sysfs(a.namespace);
      const after = net.counters('a');
      const late = sysfs(a.namespace);
      const read = [after.rxBytes, after.txBytes, after.rxPackets, after.txPackets];
      read.forEach((value, i) => {
        expect(value).toBeGreaterThanOrEqual(early[i]!);
        expect(value).toBeLessThanOrEqual(late[i]!);
      });
      const sent = after.txBytes - before.txBytes;
      const packets = after.txPackets - before.txPackets;
      expect(sent).toBeGreaterThan(1e6);
      // Less 66 bytes of Ethernet, IPv4 and TCP headers per packet: the megabyte, give or take the
      // handshake's and ARP's odd sizes.
      expect(Math.abs(sent - 66 * packets - 1e6)).toBeLessThan(200);
    } finally {
      await net.destroy();
    }
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(net.prefix);
  }, 30_000);
});
