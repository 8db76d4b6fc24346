/**
 * A cluster of machines simulated on this one: a network namespace per machine, each with one
 * interface (eth0) on a veth pair to a bridge in a switch namespace, and the link shaped in both
 * directions (tbf on the machine's egress and on the switch port towards it). Names carry a
 * per-run prefix and addresses a per-run 10.x.y.0/24, and both exist only inside the namespaces:
 * nothing is created in the host's own namespace, and no traffic can leave the machine.
 *
 * Processes started with spawn() run inside their machine's namespace. destroy() (also run on
 * Ctrl-C, SIGTERM and any exit: teardown.ts) stops them, kills anything still inside the run's
 * namespaces, and deletes the namespaces, which takes their links and bridge with them.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { type Subnet, pickSubnet, runPrefix } from './addressing.js';
import { SimNetError, command, commandSync, requireRoot } from './system.js';
import { onEveryExit } from './teardown.js';

export interface LinkShape {
  /** Rate of each machine's link, each direction, in Mbit/s. */
  mbit: number;
  /** One-way delay added on each machine's outgoing side (needs the kernel's netem qdisc). */
  delayMs?: number;
}

export interface Machine {
  name: string;
  namespace: string;
  address: string;
}

/**
 * The interface counters of a machine's link (/sys/class/net/eth0/statistics inside its namespace: the
 * kernel's dev_get_stats).
 */
export interface LinkCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

const MACHINE_IFACE = 'eth0';
/** Processes get this long to exit on SIGTERM before everything left in the namespaces is killed. */
const GRACE_MS = 3000;

/** tbf wants a bucket of at least one tick's worth of bytes at the rate, and room for a 64 KB GSO packet. */
const burstBytes = (mbit: number) => Math.max(65_536, Math.ceil((mbit * 1e6) / 8 / 1000));

function tbf(mbit: number): string[] {
  return ['tbf', 'rate', `${mbit}mbit`, 'burst', String(burstBytes(mbit)), 'latency', '100ms'];
}

/** The host's own IPv4 addresses and routes, so the run's subnet can avoid them. */
async function hostCidrs(): Promise<string[]> {
  const addrs = await command('ip', ['-4', '-o', 'addr', 'show']);
  const routes = await command('ip', ['-4', 'route', 'show']);
  return [
    ...[...addrs.matchAll(/inet (\S+)/g)].map((m) => m[1]),
    ...routes
      .split('\n')
      .map((l) => l.split(' ')[0])
      .filter((t) => t && t !== 'default'),
  ];
}

/** The run's namespaces in `ip netns list` output ("name (id: 3)" per line). */
const ofRun = (list: string, prefix: string) =>
  list
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(`${prefix}-`));
const namespacesWith = async (prefix: string) => ofRun(await command('ip', ['netns', 'list']), prefix);

/** `ip netns pids` output: one pid a line. */
const parsePids = (output: string) =>
  output
    .split('\n')
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 0);

/** A delay's worth of full-size packets at the rate, twice over: netem drops what its queue cannot hold. */
const netemLimit = (mbit: number, delayMs: number) =>
  Math.max(1000, Math.ceil((2 * mbit * 1e6 * delayMs) / 1000 / 8 / 1500));

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * One machine's eth0 line of /proc/<pid>/net/dev ("eth0: rxBytes rxPackets errs drop fifo frame
 * compressed multicast txBytes txPackets …"): the same counters sysfs shows inside the namespace.
 */
export function parseNetDev(text: string, iface: string): LinkCounters {
  const line = text.split('\n').find((l) => l.trim().startsWith(`${iface}:`));
  const f = line
    ?.slice(line.indexOf(':') + 1)
    .trim()
    .split(/\s+/)
    .map(Number);
  if (!f || f.length < 10 || f.some((v) => !Number.isSafeInteger(v)))
    throw new SimNetError(`no counters for ${iface} in net/dev: ${line ?? 'no such line'}`);
  return { rxBytes: f[0], rxPackets: f[1], txBytes: f[8], txPackets: f[9] };
}

export class SimNet {
  private readonly children = new Set<ChildProcess>();
  /**
   * A sleeping process per machine, inside its namespace: /proc/<its pid>/net/dev shows that namespace's
   * interfaces.
   */
  private readonly anchors = new Map<string, number>();
  private readonly byName: Map<string, Machine>;
  readonly destroy: () => Promise<void>;

  private constructor(
    readonly prefix: string,
    readonly subnet: Subnet,
    names: readonly string[],
  ) {
    this.byName = new Map(
      names.map((name, i) => [
        name,
        { name, namespace: `${prefix}-${name}`, address: `${subnet.base}.${i + 1}` },
      ]),
    );
    this.destroy = onEveryExit({ run: () => this.teardown(), runSync: () => this.teardownSync() });
  }

  /**
   * Builds the network: `machines` (names, in address order) behind one switch, every link shaped
   * to `link`. Refuses, with the reason, where it cannot (not root, no namespaces allowed, names taken).
   */
  static async create(machines: readonly string[], link: LinkShape, pid = process.pid): Promise<SimNet> {
    requireRoot('a simulated cluster');
    if (machines.length === 0 || machines.length > 250)
      throw new SimNetError(`a simulated cluster needs 1 to 250 machines, not ${machines.length}`);
    const prefix = runPrefix(pid);
    const stale = await namespacesWith(prefix);
    if (stale.length > 0) {
      throw new SimNetError(
        `network namespaces named ${prefix}-… exist already (${stale.join(', ')}): left by a run that was killed? Remove them with \`ip netns del NAME\``,
      );
    }
    const net = new SimNet(prefix, pickSubnet(pid, await hostCidrs()), machines);
    try {
      await net.build(link);
      return net;
    } catch (err) {
      await net.destroy();
      throw err;
    }
  }

  private get switchNs(): string {
    return `${this.prefix}-switch`;
  }

  get machines(): Machine[] {
    return [...this.byName.values()];
  }

  machine(name: string): Machine {
    const m = this.byName.get(name);
    if (!m)
      throw new Error(`no machine ${name} in the simulated cluster (${[...this.byName.keys()].join(', ')})`);
    return m;
  }

  private async build(link: LinkShape): Promise<void> {
    try {
      await command('ip', ['netns', 'add', this.switchNs]);
    } catch (err) {
      throw new SimNetError(
        `cannot create network namespaces (${(err as Error).message}): the simulated cluster needs root and a kernel that allows them`,
      );
    }
    const sw = ['-n', this.switchNs];
    await command('ip', [...sw, 'link', 'add', 'br0', 'type', 'bridge']);
    await command('ip', [...sw, 'link', 'set', 'br0', 'up']);
    for (const [i, m] of this.machines.entries()) {
      const port = `p${i + 1}`;
      await command('ip', ['netns', 'add', m.namespace]);
      // Both ends are created straight inside their namespaces: no name ever appears in the host's.
      await command('ip', [
        'link',
        'add',
        MACHINE_IFACE,
        'netns',
        m.namespace,
        'type',
        'veth',
        'peer',
        'name',
        port,
        'netns',
        this.switchNs,
      ]);
      await command('ip', [...sw, 'link', 'set', port, 'master', 'br0']);
      await command('ip', [...sw, 'link', 'set', port, 'up']);
      const mn = ['-n', m.namespace];
      await command('ip', [...mn, 'addr', 'add', `${m.address}/24`, 'dev', MACHINE_IFACE]);
      await command('ip', [...mn, 'link', 'set', MACHINE_IFACE, 'up']);
      await command('ip', [...mn, 'link', 'set', 'lo', 'up']);
      this.anchors.set(m.name, await this.anchor(m));
    }
    await this.shape(link);
  }

  /** Starts the machine's anchor and waits until it has entered the namespace (ip netns exec has exec'd). */
  private async anchor(m: Machine): Promise<number> {
    const child = this.spawn(m.name, 'sleep', ['infinity'], { stdio: 'ignore' });
    const want = statSync(`/run/netns/${m.namespace}`).ino;
    for (let tries = 0; tries < 100; tries++) {
      try {
        if (child.pid && readlinkSync(`/proc/${child.pid}/ns/net`) === `net:[${want}]`) return child.pid;
      } catch {
        // not started yet
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new SimNetError(`the anchor process of ${m.name} did not enter ${m.namespace}`);
  }

  /** Sets every link's rate (and delay) in both directions; also while processes run. */
  async shape(link: LinkShape): Promise<void> {
    if (!(link.mbit > 0)) throw new SimNetError(`link rate must be above 0 Mbit/s, not ${link.mbit}`);
    const delay = link.delayMs ?? 0;
    for (const [i, m] of this.machines.entries()) {
      const out =
        delay > 0
          ? // netem shapes the rate itself: one qdisc, no classful parent needed to stack tbf under it.
            [
              'netem',
              'delay',
              `${delay}ms`,
              'rate',
              `${link.mbit}mbit`,
              'limit',
              String(netemLimit(link.mbit, delay)),
            ]
          : tbf(link.mbit);
      try {
        await command('ip', [
          'netns',
          'exec',
          m.namespace,
          'tc',
          'qdisc',
          'replace',
          'dev',
          MACHINE_IFACE,
          'root',
          ...out,
        ]);
      } catch (err) {
        if (delay > 0 && /unknown/i.test((err as Error).message)) {
          throw new SimNetError(
            'this kernel has no netem qdisc (sch_netem): --link-delay-ms cannot be simulated here; leave it out',
          );
        }
        throw err;
      }
      await command('ip', [
        'netns',
        'exec',
        this.switchNs,
        'tc',
        'qdisc',
        'replace',
        'dev',
        `p${i + 1}`,
        'root',
        ...tbf(link.mbit),
      ]);
    }
  }

  /**
   * The machine's link counters now. Read from /proc/<anchor>/net/dev, a file read (microseconds),
   * rather than `ip netns exec cat /sys/…`, a process start (milliseconds, during which a 1 Gbit/s
   * link moves about a megabyte): a benchmark samples them at step boundaries while traffic flows.
   */
  counters(name: string): LinkCounters {
    const pid = this.anchors.get(this.machine(name).name);
    if (pid === undefined)
      throw new SimNetError(`machine ${name} has no anchor process (the network is not built, or torn down)`);
    return parseNetDev(readFileSync(`/proc/${pid}/net/dev`, 'utf8'), MACHINE_IFACE);
  }

  /**
   * Starts `file args` inside machine `name`, in a process group of its own (Ctrl-C reaches the benchmark,
   * which stops it).
   */
  spawn(
    name: string,
    file: string,
    args: readonly string[],
    options: { env?: NodeJS.ProcessEnv; stdio?: StdioOptions } = {},
  ): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.machine(name).namespace, file, ...args], {
      detached: true,
      env: options.env ?? process.env,
      stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'],
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  private async teardown(): Promise<void> {
    this.anchors.clear();
    const live = [...this.children];
    for (const child of live) if (child.pid) killQuietly(child.pid, 'SIGTERM');
    await Promise.race([
      Promise.all(
        live.map(
          (c) =>
            new Promise<void>((resolve) =>
              c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()),
            ),
        ),
      ),
      new Promise((resolve) => setTimeout(resolve, GRACE_MS).unref()),
    ]);
    const namespaces = await namespacesWith(this.prefix);
    for (const ns of namespaces) {
      for (const pid of parsePids(await command('ip', ['netns', 'pids', ns]))) killQuietly(pid, 'SIGKILL');
    }
    // A killed process leaves its namespace only once it is reaped: wait until none is left inside.
    for (const ns of namespaces) {
      for (
        let tries = 0;
        tries < 50 && parsePids(await command('ip', ['netns', 'pids', ns])).length > 0;
        tries++
      )
        await new Promise((r) => setTimeout(r, 100));
      await command('ip', ['netns', 'del', ns]);
    }
  }

  private teardownSync(): void {
    for (const child of this.children) if (child.pid) killQuietly(child.pid, 'SIGKILL');
    for (const ns of ofRun(commandSync('ip', ['netns', 'list']), this.prefix)) {
      for (const pid of parsePids(commandSync('ip', ['netns', 'pids', ns]))) killQuietly(pid, 'SIGKILL');
      commandSync('ip', ['netns', 'del', ns]);
    }
  }
}
