/** NATS: coordinator and workers meet on a NATS server, with the connection options NATS users expect. */
import { Option } from 'commander';
import type { Logger } from '../../common/logger.js';
import { type NatsOptions, connectNats, listenNats } from '../../protocol/nats-transport.js';
import { positiveInt } from '../options.js';
import type { TransportFlags } from './flags.js';
import type { CliTransport } from './transport.js';
import { UsageError } from '../../common/errors.js';

/** Secrets come from the environment as well as flags, so they stay out of `ps` and shell history. */
const SECRET_ENV = { natsPass: 'GRADFLEET_NATS_PASS', natsToken: 'GRADFLEET_NATS_TOKEN' } as const;

/** Flags passed on to a local worker as they are, when given. */
const PASSED_ON: Array<[keyof TransportFlags, string]> = [
  ['natsUser', '--nats-user'],
  ['natsCreds', '--nats-creds'],
  ['natsNkey', '--nats-nkey'],
  ['natsTlsCa', '--nats-tls-ca'],
  ['natsTlsCert', '--nats-tls-cert'],
  ['natsTlsKey', '--nats-tls-key'],
];

function natsOptionsOf(f: TransportFlags): NatsOptions {
  const servers = f.natsUrl
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (servers.length === 0) throw new UsageError('--nats-url needs at least one server');
  return {
    servers,
    subject: f.natsSubject,
    user: f.natsUser,
    pass: f.natsPass,
    token: f.natsToken,
    credsFile: f.natsCreds,
    nkeySeedFile: f.natsNkey,
    tls: { caFile: f.natsTlsCa, certFile: f.natsTlsCert, keyFile: f.natsTlsKey },
    requireTls: f.natsRequireTls,
    deadAfterMs: f.natsDeadAfter * 1000,
  };
}

function natsStatusLogger(log: Logger): (event: string, detail: string) => void {
  return (event, detail) => {
    if (event === 'disconnect')
      log.warn({ server: detail }, `NATS connection lost (${detail}): reconnecting`);
    else if (event === 'reconnect')
      log.info({ server: detail }, `NATS reconnected to ${detail}: resending what the gap lost`);
    else if (event === 'error') log.warn({ detail }, `NATS: ${detail}`);
  };
}

export const natsTransport: CliTransport = {
  summary: 'nats: everyone meets on a NATS server',
  addOptions: (cmd) =>
    cmd
      .option(
        '--nats-url <urls>',
        'NATS server(s), comma-separated (nats://host:4222, tls://host:4222)',
        'nats://127.0.0.1:4222',
      )
      .option(
        '--nats-subject <prefix>',
        'subject prefix of the run (coordinator and workers must agree)',
        'gradfleet',
      )
      .option('--nats-user <name>', 'NATS user')
      .addOption(new Option('--nats-pass <password>', 'NATS password').env(SECRET_ENV.natsPass))
      .addOption(new Option('--nats-token <token>', 'NATS token').env(SECRET_ENV.natsToken))
      .option('--nats-creds <file>', 'NATS credentials file (JWT + NKey seed)')
      .option('--nats-nkey <file>', 'NATS NKey seed file')
      .option('--nats-tls-ca <file>', 'CA that signed the NATS server certificate')
      .option('--nats-tls-cert <file>', 'client certificate for NATS (mutual TLS)')
      .option('--nats-tls-key <file>', 'client key for NATS (mutual TLS)')
      .option(
        '--nats-require-tls',
        'connect only over TLS (implied by tls:// URLs): credentials never cross a plaintext connection',
      )
      .option('--nats-dead-after <s>', 'a NATS peer silent this long is treated as gone', positiveInt, 30),
  listener: (f, _host, _port, log) => {
    if (f.tlsCert !== undefined || f.tlsKey !== undefined)
      throw new UsageError(
        '--tls-cert/--tls-key are for --transport ws; NATS has its own TLS (--nats-tls-*)',
      );
    const nats = natsOptionsOf(f);
    return (maxFrameBytes) => listenNats(nats, { maxFrameBytes, onStatus: natsStatusLogger(log) });
  },
  connector: (f, workerId, log, joinPass) => {
    const nats = natsOptionsOf(f);
    return {
      where: `${nats.servers.join(',')} (${nats.subject})`,
      connect: () => connectNats(nats, workerId, { onStatus: natsStatusLogger(log), joinPass: joinPass?.() }),
    };
  },
  // The coordinator's listener URL names no server a worker could use: the NATS flags do.
  joinArgs: (f) => {
    const args = [
      '--transport',
      'nats',
      '--nats-url',
      f.natsUrl,
      '--nats-subject',
      f.natsSubject,
      '--nats-dead-after',
      String(f.natsDeadAfter),
    ];
    if (f.natsRequireTls) args.push('--nats-require-tls');
    for (const [key, flag] of PASSED_ON) if (f[key] !== undefined) args.push(flag, String(f[key]));
    const env: Record<string, string> = {};
    for (const [key, name] of Object.entries(SECRET_ENV)) {
      const value = f[key as keyof typeof SECRET_ENV];
      if (value !== undefined) env[name] = value;
    }
    return { args, env };
  },
  serveShard: (f, { shardId }, log) => {
    if (f.tlsCert !== undefined || f.tlsKey !== undefined)
      throw new UsageError(
        '--tls-cert/--tls-key are for --transport ws; NATS has its own TLS (--nats-tls-*)',
      );
    // A subject token may not hold '.', '*', '>' or spaces: the id is made into one.
    const serves = `${f.natsSubject}.shard.${shardId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const nats = { ...natsOptionsOf(f), subject: serves };
    return async (maxFrameBytes) => ({
      listener: await listenNats(nats, { maxFrameBytes, onStatus: natsStatusLogger(log) }),
      serves,
    });
  },
  reachShard: (f, serves, workerId, log, joinPass) => {
    if (!serves.startsWith(`${f.natsSubject}.shard.`))
      throw new Error(
        `the shard map names ${serves}, which is no shard subject of ${f.natsSubject}: do the coordinator and this worker use the same --transport and --nats-subject?`,
      );
    return natsTransport.connector({ ...f, natsSubject: serves }, workerId, log, joinPass);
  },
};
