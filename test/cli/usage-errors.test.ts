/**
 * Usage errors: flags that cannot run as given throw a UsageError, which the binary prints as one line
 * (the message, no stack even under GRADFLEET_DEBUG) and exits non-zero; other errors keep their stack
 * for GRADFLEET_DEBUG.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type ClusterFlags, clusterPolicyOf } from '../../cli/cluster-options.js';
import { type Exposure, checkExposure } from '../../cli/exposure.js';
import { secretOf } from '../../cli/secret-options.js';
import type { TlsListenFlags, TransportFlags } from '../../cli/transports/flags.js';
import { natsTransport } from '../../cli/transports/nats.js';
import { wsTransport } from '../../cli/transports/ws.js';
import { UsageError } from '../../common/errors.js';
import { silentLogger } from '../../common/logger.js';

const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function gradfleet(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, GRADFLEET_DEBUG: '1' },
  });
}

const transportFlags = (flags: Partial<TransportFlags & TlsListenFlags & { connect: string }>) =>
  flags as TransportFlags & TlsListenFlags;

describe('flags that cannot run as given throw a UsageError', () => {
  it.each([
    [
      'the secret twice',
      () => secretOf({ secret: 'a-secret-of-sixteen-bytes', secretFile: '/some/file' }),
      /give the secret once/,
    ],
    [
      'a heartbeat timeout no longer than the heartbeat',
      () => clusterPolicyOf({ heartbeat: 10, heartbeatTimeout: 5 } as ClusterFlags),
      /--heartbeat-timeout \(5 s\) must be longer than --heartbeat \(10 s\)/,
    ],
    [
      'a worker with no --connect',
      () => wsTransport.connector(transportFlags({}), 'w1', silentLogger),
      /--connect ws:\/\/HOST:PORT is required/,
    ],
    [
      'a --connect that is no ws:// URL',
      () => wsTransport.connector(transportFlags({ connect: 'http://x:1' }), 'w1', silentLogger),
      /--connect http:\/\/x:1: expected ws:\/\/HOST:PORT/,
    ],
    [
      '--tls-cert without --tls-key',
      () => wsTransport.listener(transportFlags({ tlsCert: 'cert.pem' }), '127.0.0.1', 0, silentLogger),
      /wss:\/\/ needs both --tls-cert and --tls-key/,
    ],
    [
      '--tls-cert with NATS',
      () => natsTransport.listener(transportFlags({ tlsCert: 'cert.pem' }), '127.0.0.1', 0, silentLogger),
      /--tls-cert\/--tls-key are for --transport ws/,
    ],
    [
      'an empty --nats-url',
      () => natsTransport.listener(transportFlags({ natsUrl: ' , ' }), '127.0.0.1', 0, silentLogger),
      /--nats-url needs at least one server/,
    ],
    [
      'a reachable coordinator with no secret',
      () =>
        checkExposure(
          {
            transport: 'ws',
            host: '0.0.0.0',
            natsServers: [],
            secret: false,
            tls: false,
            insecure: false,
          } satisfies Exposure,
          silentLogger,
        ),
      /reachable beyond this machine and no secret is set/,
    ],
  ])('%s', (_, run, message) => {
    expect(run).toThrow(UsageError);
    expect(run).toThrow(message);
  });
});

describe('the binary', () => {
  it('prints a usage error as exactly one stderr line, no stack even under GRADFLEET_DEBUG, and exits 1', () => {
    const r = gradfleet('coordinator', '--min-workers', '3', '--max-workers', '2');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'gradfleet: error: --min-workers 3 is above --max-workers 2: the run could never start\n',
    );
  });

  it('prints the same one line for usage errors found deeper in (flags that exclude each other)', () => {
    const r = gradfleet('coordinator', '--heartbeat', '10', '--heartbeat-timeout', '5');
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      'gradfleet: error: --heartbeat-timeout (5 s) must be longer than --heartbeat (10 s)\n',
    );
  });

  it('keeps the stack of any other error for GRADFLEET_DEBUG', () => {
    const r = gradfleet('eval', '--checkpoint', '/nonexistent/ckpt.gfck');
    expect(r.status).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines.some((l) => l.startsWith('gradfleet: error: '))).toBe(true);
    expect(lines.some((l) => /^\s+at /.test(l))).toBe(true);
  });
});
